"""Parse ``iptables-save`` text (and ``iptables-restore`` input) into a :class:`Ruleset`.

Accepted: the output of ``iptables-save``, ``iptables-legacy-save``, ``iptables-nft-save`` and
``ip6tables-save`` (with or without ``-c``), in any table order, with or without ``#`` lines and
blank lines; and restore input as kube-proxy writes it: its argument order, addresses without
``/32``, unquoted (even multi-word) comments, ``--or-mark``/``--xor-mark``, 10-decimal
probabilities, ``-c pkts bytes``, rules without ``-j`` and the restore-only commands ``-N``,
``-X``, ``-F``, ``-I``, ``-D``, ``-R``, ``-P``, ``-Z`` and ``-E`` (applied in order, as
``iptables-restore --noflush`` would). A ``:CHAIN`` line for a chain that already has rules flushes
it, as in restore input. Old postfix negations (``-s ! 10.0.0.1``, ``--dport ! 80``) are read as
prefix ones. Unknown match modules and target options are kept (as Match/Option), never dropped;
``[unsupported revision]`` (an older iptables-save printing a newer extension) becomes an Option
of that name.

Excerpts and the ``strict`` flag. Text such as ``iptables-save | grep HOSTPORT`` has no ``*table``
line and refers to chains it never declares. By default (``strict=False``) the parser:

* infers the table of lines that come before any ``*table`` line from well-known chain names
  (``CNI-HOSTPORT-*``, ``CNI-DN-*``, ``KUBE-SVC-*``, ``KUBE-MARK-MASQ``, ``DOCKER_OUTPUT`` ... mean nat;
  ``KUBE-FORWARD``, ``KUBE-PROXY-FIREWALL``, ``DOCKER-USER`` ... mean filter; ``KUBE-SERVICES`` and
  ``KUBE-NODEPORTS`` lean to nat) and says so in ``Ruleset.warnings``. Built-in chain names say
  nothing (``-A INPUT`` exists in several tables): a headless text with no such clue is a
  :class:`~k8slab.errors.ParseError`;
* accepts a table without its ``COMMIT`` (with a warning, except for an inferred table);
* creates the chains that rules append to, or jump/goto, without declaring them, with
  ``Chain.declared = False`` (one warning lists them).

``parse(text, strict=True)`` refuses the first two with a ParseError, and also a rule appended to a
user chain that was never declared (``iptables-restore`` would refuse it too). Undeclared jump
targets stay a warning in both modes: an extension target this module does not list looks the same.

Errors: every malformed line raises exactly one :class:`~k8slab.errors.ParseError` that names the
line number and the line. ``Ruleset.fragment`` is True for kube-proxy restore input that has no
built-in chains and where nothing jumps into ``KUBE-SERVICES`` (the tracer then adds kube-proxy's
own entry jumps).

Speed. A 16 MB dump of 110,000 rules (``benchmarks/gen_dump.py``) should parse, and get both pandas
views, in about the time ``iptables-restore --test`` takes to check it (``benchmarks/netfilter.py``
measures both); a token-by-token parse of every line takes several times that in Python. So:

* the five rule shapes kube-proxy writes per service and endpoint (``KUBE-SERVICES``, ``KUBE-SVC-*``
  and ``KUBE-SEP-*`` rules, most of a big dump) are checked and taken apart by one anchored regex
  (``_KP_RULE_RE``) in a single ``match()``; a line it does not match goes on to the general path:
* an ``-A`` line is cut with ``str.split`` at ``" -m "`` and ``" -j "``; each distinct piece of text
  (the header, every ``-m ...`` piece, the ``-j ...`` part) is checked once and its view facts
  (addresses, ports, comment, probability, DNAT destination) are cached by its text;
* every line is fully validated at parse time, but no object is made per rule: a checked line is
  one row of the parse's :class:`RuleRows` (chain id, target, counters, line, line number, and codes
  into three :class:`~k8slab.netfilter.views.InfoTable` of header, match and target facts). At the
  end of the parse the rows and the info tables become numpy columns: the views read them as
  they are, and the cyclic garbage collector does not walk them (a list of a million references
  would cost every full collection about 0.1 s for as long as the Ruleset lives).
* the chains are :class:`LazyChain`, a :class:`Chain` whose Rule objects (with their Match and
  Option objects) are built from its rows when its ``rules`` is first used. Building them cannot
  fail: they come from lines that were already checked.
* lines the fast paths do not take (quotes hiding ``-m``, backslashes, kube-proxy's argument order
  with ``-p``/``-d`` after ``-m``, restore commands, ``-c``, ``-f``, undeclared chains) go through the
  complete token-by-token parser, and their chain is materialised at once. Such input is slower
  (about 10-20 us a line) but is only ever small: kube-proxy's unit-test files, hand-written rules.
* the cyclic garbage collector is paused while parsing (no cycles are made; with it on, each
  collection would walk every object made so far).
"""
from __future__ import annotations

import functools
import gc
import ipaddress
import re
import sys
from collections import Counter
from pathlib import Path

from ...errors import K8sLabError, ParseError
from .rules import BUILTIN_CHAINS, STANDARD_TARGETS, TABLES, Addr, Chain, Match, Option, Rule, Ruleset
from .views import (_NAT_TO, ENTRY, ROW, InfoTable, addr_text, canonical_cidr, match_info, rule_info, service_port_of,
                    target_info)

__all__ = ["parse", "parse_file", "tokenize", "DumpReadError", "LazyChain", "RuleRows", "ENTRY", "ROW",
           "rule_entries"]


class DumpReadError(K8sLabError, OSError):
    """The dump file could not be read (missing, a directory, not text)."""


# ---------------------------------------------------------------------------------------------------
# Tokens

# A token is a run of plain characters, backslash escapes and double-quoted sections.
_TOKEN_RE = re.compile(r'(?:[^\s"\\]|\\.|"(?:[^"\\]|\\.)*")+')
_UNQUOTE_RE = re.compile(r'\\(.)|"')
_COUNTER_RE = re.compile(r"\[(\d+):(\d+)\]\Z")
_WS = " \t\r\f\v"


def _unquote(tok: str) -> str:
    if '"' not in tok and "\\" not in tok:
        return tok
    return _UNQUOTE_RE.sub(lambda m: m.group(1) or "", tok)


def _tokens_slow(line: str) -> list[str]:
    out = []
    pos = 0
    for m in _TOKEN_RE.finditer(line):
        if line[pos:m.start()].strip():
            raise ValueError("unterminated quote or a stray backslash")
        out.append(_unquote(m.group()))
        pos = m.end()
    if line[pos:].strip():
        raise ValueError("unterminated quote or a stray backslash")
    return out


def tokenize(line: str) -> list[str]:
    """Split one line the way ``iptables-restore`` does: whitespace, ``"..."`` and ``\\`` escapes."""
    if '"' not in line:
        if "\\" not in line:
            return line.split()
        return _tokens_slow(line)
    if "\\" in line:
        return _tokens_slow(line)
    parts = line.split('"')
    if not len(parts) & 1:
        raise ValueError("unterminated quote")
    out = parts[0].split()
    last = len(parts) - 1
    for k in range(1, last, 2):
        before, quoted, after = parts[k - 1], parts[k], parts[k + 1]
        # A quote glued to other characters ("a"b, a"b") is one token: leave that to the regex.
        if (before and before[-1] not in _WS) or (after and after[0] not in _WS and k + 1 != last) \
                or (k + 1 == last and after and after[0] not in _WS):
            return _tokens_slow(line)
        out.append(quoted)
        if after:
            out += after.split()
    return out


# ---------------------------------------------------------------------------------------------------
# The grammar of one rule

_SRC, _DST, _PROTO, _IIF, _OIF, _MATCH, _JUMP, _GOTO, _FRAG, _COUNTERS, _NOT = range(11)
_FLAGS = {
    "-s": _SRC, "--source": _SRC, "--src": _SRC,
    "-d": _DST, "--destination": _DST, "--dst": _DST,
    "-p": _PROTO, "--protocol": _PROTO,
    "-i": _IIF, "--in-interface": _IIF,
    "-o": _OIF, "--out-interface": _OIF,
    "-m": _MATCH, "--match": _MATCH,
    "-j": _JUMP, "--jump": _JUMP,
    "-g": _GOTO, "--goto": _GOTO,
    "-f": _FRAG, "--fragment": _FRAG,
    "-c": _COUNTERS, "--set-counters": _COUNTERS,
    "!": _NOT,
}
_ADDR_NAMES = {_SRC: "-s", _DST: "-d", _PROTO: "-p", _IIF: "-i", _OIF: "-o"}

# Options whose value is one free-text string (its words are joined back with single spaces).
_TEXT_OPTIONS = frozenset({"--comment", "--log-prefix", "--nflog-prefix", "--ulog-prefix"})
# Options that are nothing without a value: "--dport" alone is a malformed line.
_NEEDS_VALUE = frozenset({
    "--comment", "--dport", "--sport", "--dports", "--sports", "--ports", "--destination-port",
    "--source-port", "--destination-ports", "--source-ports", "--to-destination", "--to-source",
    "--to-ports", "--to", "--probability", "--mode", "--every", "--packet", "--ctstate", "--state",
    "--mark", "--set-xmark", "--set-mark", "--or-mark", "--xor-mark", "--and-mark", "--dst-type",
    "--src-type", "--match-set", "--set-class", "--reject-with", "--name", "--seconds", "--hitcount",
    "--nfacct-name", "--tcp-flags", "--icmp-type", "--log-prefix", "--log-level", "--limit",
    "--limit-burst", "--uid-owner", "--gid-owner", "--mac-source", "--physdev-in", "--physdev-out",
    "--ctorigdst", "--ctorigsrc", "--ctstatus", "--nflog-group", "--queue-num", "--set-dscp",
    "--zone", "--helper", "--ttl-set", "--save-mark", "--restore-mark", "--mask",
})
# Options that take exactly one word: "--probability 0.5 KUBE-SEP-X" lost its "-j".
_ONE_VALUE = frozenset({
    "--dport", "--sport", "--dports", "--sports", "--ports", "--destination-port", "--source-port",
    "--to-destination", "--to-source", "--to-ports", "--probability", "--mode", "--every", "--packet",
    "--ctstate", "--state", "--mark", "--set-xmark", "--set-mark", "--or-mark", "--xor-mark", "--and-mark",
    "--dst-type", "--src-type", "--reject-with", "--name", "--seconds", "--hitcount", "--nfacct-name",
    "--icmp-type", "--limit", "--limit-burst", "--uid-owner", "--gid-owner", "--mac-source", "--zone",
    "--queue-num", "--nflog-group", "--log-level", "--mask", "--ctstatus", "--helper",
})
# A jump target that names a chain is a word of these characters; anything else is not a chain.
_CHAIN_NAME_RE = re.compile(r"[^\s!\"'\[\]]+\Z")


def _is_flag(tok: str) -> bool:
    """``-x`` / ``--xyz``: an option name (not a value such as ``-1`` or ``->``)."""
    return len(tok) > 1 and tok[0] == "-" and (tok[1] == "-" or tok[1].isalpha())


class _RuleSpecError(ValueError):
    pass


class _Interner:
    """Caches of one parse: equal Option/Match/Addr objects are shared, and each distinct piece of
    rule text is checked (and its view facts computed) once."""

    __slots__ = ("opts", "matches", "mtuples", "addrs", "naddrs", "topts", "heads", "pieces", "tpieces",
                 "mtuples_fast", "t_heads", "t_pieces", "t_minfo", "t_targets", "h_vals", "m_vals", "t_vals")

    def __init__(self):
        # objects (used when rules are materialised, and by the token-by-token path)
        self.opts: dict = {}
        self.matches: dict = {}
        self.mtuples: dict = {}
        self.addrs: dict = {}
        self.naddrs: dict = {}
        self.topts: dict = {}
        self.heads: dict = {}
        self.pieces: dict = {}
        self.tpieces: dict = {}
        self.mtuples_fast: dict = {}
        # text -> facts, for the parse-time scan
        self.t_heads: dict = {}
        self.t_pieces: dict = {}
        self.t_minfo: dict = {}
        self.t_targets: dict = {}
        # the header/match/target infos (columns, see InfoTable); parsed rules keep their index
        # (code) in these, and code 0 is "none" (no header fields, no matches, no target options)
        self.h_vals = InfoTable(_NO_HEAD_INFO)
        self.m_vals = InfoTable(_NO_MATCH_INFO)
        self.t_vals = InfoTable(_NO_TARGET_INFO)


def _parse_spec(toks: list[str], i: int, cache: _Interner):
    """Parse a rule specification from ``toks[i:]``.

    Returns ``(src, dst, proto, iif, oif, frag, matches, target, goto, target_options, pkts, bytes)``.
    Raises :class:`_RuleSpecError` with a short reason.
    """
    n = len(toks)
    src = dst = proto = iif = oif = frag = None
    target = None
    goto = False
    pkts = nbytes = None
    mlist: list = []            # finished matches
    mod = None                  # current match module
    opts: list | None = None    # where "--options" go: the current match's or the target's
    topts: list | None = None
    neg = False
    flags = _FLAGS
    opt_cache = cache.opts
    while i < n:
        t = toks[i]
        i += 1
        k = flags.get(t)
        if k is None:
            if t[:2] == "--" and len(t) > 2:
                if opts is None:
                    if proto is not None and not proto.negated and proto.value in ("tcp", "udp", "sctp",
                                                                                    "icmp", "icmpv6"):
                        # "-p tcp --dport 80" without "-m tcp": iptables loads the match implicitly.
                        mod = proto.value
                        opts = []
                    else:
                        raise _RuleSpecError(f"option {t} outside a match (missing -m MODULE before it?)")
                pneg = False
                if i < n and toks[i] == "!" and i + 1 < n and not _is_flag(toks[i + 1]):
                    # old postfix negation: "--dport ! 80"
                    if neg:
                        raise _RuleSpecError("two negations")
                    pneg = True
                    i += 1
                j = i
                if t in _TEXT_OPTIONS:
                    # Free text: every word up to the next real flag (or "!" before a flag).
                    while j < n:
                        v = toks[j]
                        if v in flags and v != "!" or (v[:2] == "--" and len(v) > 2):
                            break
                        if v == "!" and (j + 1 >= n or _is_flag(toks[j + 1])):
                            break
                        j += 1
                    vals = (" ".join(toks[i:j]),) if j > i else ()
                else:
                    while j < n:
                        v = toks[j]
                        if v == "!" or (v[:1] == "-" and _is_flag(v)):
                            break
                        j += 1
                    vals = tuple(toks[i:j])
                if not vals and t in _NEEDS_VALUE:
                    raise _RuleSpecError(f"option {t} needs a value")
                if len(vals) > 1 and t in _ONE_VALUE:
                    raise _RuleSpecError(f"unexpected {vals[1]!r} after {t} {vals[0]}")
                i = j
                key = (t, vals, neg or pneg)
                o = opt_cache.get(key)
                if o is None:
                    o = opt_cache[key] = Option(t, vals, neg or pneg)
                opts.append(o)
                neg = False
            elif t[:1] == "[":
                # "[unsupported revision]" printed by an older iptables-save for a newer extension
                j = i - 1
                while not toks[j].endswith("]"):
                    j += 1
                    if j >= n:
                        raise _RuleSpecError(f"unclosed {t!r}")
                if opts is None or neg:
                    raise _RuleSpecError(f"unexpected {' '.join(toks[i - 1:j + 1])!r}")
                opts.append(Option(" ".join(toks[i - 1:j + 1])))
                i = j + 1
            else:
                raise _RuleSpecError(f"unexpected {t!r}" + (" (unknown option)" if t[:1] == "-" else ""))
            continue
        if k == _NOT:
            if neg:
                raise _RuleSpecError("two negations in a row")
            neg = True
            if i >= n:
                raise _RuleSpecError("'!' at the end of the line")
            continue
        if k <= _OIF:
            if i >= n:
                raise _RuleSpecError(f"{t} needs a value")
            v = toks[i]
            i += 1
            if v == "!" and not neg and i < n:       # old postfix form "-s ! 10.0.0.1"
                neg = True
                v = toks[i]
                i += 1
            if not v or _is_flag(v) or v == "!":
                raise _RuleSpecError(f"{t} needs a value")
            if k <= _DST:
                why = _bad_address(v)
                if why:
                    raise _RuleSpecError(f"{t} {why}")
            amap = cache.naddrs if neg else cache.addrs
            a = amap.get(v)
            if a is None:
                a = amap[v] = Addr(v, neg)
            neg = False
            if (src, dst, proto, iif, oif)[k] is not None:
                raise _RuleSpecError(f"{_ADDR_NAMES[k]} given twice in one rule")
            if k == _SRC:
                src = a
            elif k == _DST:
                dst = a
            elif k == _PROTO:
                proto = a
            elif k == _IIF:
                iif = a
            else:
                oif = a
            continue
        if neg and k != _FRAG:
            raise _RuleSpecError(f"'!' cannot negate {t}")
        if k == _MATCH:
            if i >= n or not toks[i] or _is_flag(toks[i]) or toks[i] == "!":
                raise _RuleSpecError(f"{t} needs a module name")
            if mod is not None:
                mlist.append(_match(mod, opts, cache))
            mod = toks[i]
            opts = []
            i += 1
        elif k == _JUMP or k == _GOTO:
            if target is not None:
                raise _RuleSpecError("two targets (-j/-g) in one rule")
            if i >= n or not toks[i] or _is_flag(toks[i]) or toks[i] == "!":
                raise _RuleSpecError(f"{t} needs a target")
            if mod is not None:
                mlist.append(_match(mod, opts, cache))
                mod = None
            target = toks[i]
            goto = k == _GOTO
            opts = topts = []
            i += 1
        elif k == _FRAG:
            frag = not neg
            neg = False
        else:  # _COUNTERS: "-c PKTS BYTES"
            if i + 1 >= n or not toks[i].isdigit() or not toks[i + 1].isdigit():
                raise _RuleSpecError(f"{t} needs two numbers (packets bytes)")
            pkts, nbytes = int(toks[i]), int(toks[i + 1])
            i += 2
    if neg:
        raise _RuleSpecError("'!' at the end of the line")
    if mod is not None:
        mlist.append(_match(mod, opts, cache))
    if mlist:
        key = tuple(map(id, mlist))
        matches = cache.mtuples.get(key)
        if matches is None:
            matches = cache.mtuples[key] = tuple(mlist)
    else:
        matches = ()
    if topts:
        key = tuple(map(id, topts))
        tt = cache.topts.get(key)
        if tt is None:
            tt = cache.topts[key] = tuple(topts)
    else:
        tt = ()
    return src, dst, proto, iif, oif, frag, matches, target, goto, tt, pkts, nbytes


_IP_FLAGS = {"-s": 0, "-d": 1, "-p": 2, "-i": 3, "-o": 4}
_NO_HEAD = (None, None, None, None, None, (None, None, None, None, None))
_NO_TARGET_INFO = target_info(None, ())


def _head_value(h: str, cache: _Interner):
    """The text before the first ``-m``: ``[!] -s/-d/-p/-i/-o VALUE`` pairs only, else False.

    Returns ``(src, dst, proto, iif, oif, header_info)``.
    """
    pairs = _head_pairs(h)
    if pairs is False:
        return False
    fields = [None, None, None, None, None]
    for k, v, neg in pairs:
        amap = cache.naddrs if neg else cache.addrs
        addr = amap.get(v)
        if addr is None:
            addr = amap[v] = Addr(v, neg)
        fields[k] = addr
    src, dst, proto, iif, oif = fields
    return (src, dst, proto, iif, oif,
            (addr_text(src, True), addr_text(dst, True), addr_text(proto), addr_text(iif), addr_text(oif)))


def _piece_match(piece: str, cache: _Interner):
    """One ``-m MODULE ...`` piece (without the ``-m ``) as a Match; False if it holds anything else."""
    if piece[:18] == "comment --comment ":
        v = piece[18:]
        if v[:1] == '"':
            ok = len(v) > 1 and v[-1] == '"' and v.count('"') == 2
            text = v[1:-1]
        else:
            words = v.split()
            ok = '"' not in v and bool(words) and not any(w == "!" or _is_flag(w) for w in words)
            text = " ".join(words)
        if ok:
            key = ("--comment", (text,), False)
            o = cache.opts.get(key)
            if o is None:
                o = cache.opts[key] = Option("--comment", (text,), False)
            return _match("comment", [o], cache)
    try:
        toks = tokenize(piece)
        toks.insert(0, "-m")
        m = _parse_spec(toks, 0, cache)
    except ValueError:
        return False
    if len(m[6]) == 1 and m[:6] == _EMPTY_SPEC[:6] and m[7:] == _EMPTY_SPEC[7:]:
        return m[6][0]
    return False


def _target_value(tpiece: str, goto: bool, cache: _Interner):
    """The text after ``-j``/``-g``: ``(target, options, target_info)``, or False."""
    try:
        toks = tokenize(tpiece)
        toks.insert(0, "-g" if goto else "-j")
        t = _parse_spec(toks, 0, cache)
    except ValueError:
        return False
    if t[:7] != _EMPTY_SPEC[:7] or t[10] is not None or t[7] is None:
        return False
    return (t[7], t[9], target_info(t[7], t[9]))


_EMPTY_SPEC = (None, None, None, None, None, None, (), None, False, (), None, None)
_NAT_TO_OPTS = frozenset({"--to-destination", "--to-source"})


def _fast_rule(rest: str, cache: _Interner):
    """Parse a rule specification by cached pieces of text: the part before the first ``-m``,
    the ``-m ...`` pieces and the ``-j ...`` part are each parsed once per distinct text.

    Returns ``(src, dst, proto, iif, oif, matches, target, goto, target_options, header_info,
    match_info, target_info)``, or None when the line needs the token-by-token path: backslashes,
    IP-header flags after ``-m`` (kube-proxy's own order), ``-f``, ``-c``, quoted ``-m``/``-j`` ...
    A ``" -m "`` inside quotes splits a quoted string, leaving a piece with an odd number of quotes:
    such a piece fails here, and the slow path then parses the line correctly.
    """
    if "\\" in rest:
        return None
    pieces = (" " + rest).split(" -m ")
    last = pieces[-1]
    head, sep, tpiece = last.rpartition(" -j ")
    goto = False
    if not sep:
        head, sep, tpiece = last.rpartition(" -g ")
        goto = True
    if sep:
        pieces[-1] = head
    h = pieces[0]
    if h:
        hv = cache.heads.get(h)
        if hv is None:
            hv = cache.heads[h] = _head_value(h, cache)
        if hv is False:
            return None
    else:
        hv = _NO_HEAD
    if len(pieces) > 1:
        pieces[0] = ""
        key = tuple(pieces)
        mv = cache.mtuples_fast.get(key)
        if mv is None:
            pc = cache.pieces
            mlist = []
            for k in range(1, len(pieces)):
                piece = pieces[k]
                m = pc.get(piece)
                if m is None:
                    m = pc[piece] = _piece_match(piece, cache)
                if m is False:
                    return None
                mlist.append(m)
            mt = tuple(mlist)
            mv = cache.mtuples_fast[key] = (mt, match_info(mt))
        matches, minfo = mv
    else:
        matches = ()
        minfo = _NO_MATCH_INFO
    if sep:
        if " " not in tpiece and tpiece and tpiece[0] not in '-![' and '"' not in tpiece \
                and "\t" not in tpiece:
            return (hv[0], hv[1], hv[2], hv[3], hv[4], matches, tpiece, goto, (), hv[5], minfo,
                    _NO_TARGET_INFO)
        key = (tpiece, goto)
        tv = cache.tpieces.get(key)
        if tv is None:
            tv = cache.tpieces[key] = _target_value(tpiece, goto, cache)
        if tv is False:
            return None
        return (hv[0], hv[1], hv[2], hv[3], hv[4], matches, tv[0], goto, tv[1], hv[5], minfo, tv[2])
    return (hv[0], hv[1], hv[2], hv[3], hv[4], matches, None, False, (), hv[5], minfo, _NO_TARGET_INFO)


_NO_MATCH_INFO = match_info(())
_NO_HEAD_INFO = (None, None, None, None, None)


def _match(mod: str, opts: list, cache: _Interner) -> Match:
    key = (mod, *map(id, opts))
    m = cache.matches.get(key)
    if m is None:
        m = cache.matches[key] = Match(mod, tuple(opts))
    return m


# ---------------------------------------------------------------------------------------------------
# The parse-time scan: text pieces -> (validity, view facts), without building rule objects

_NUMERIC_ADDR = re.compile(r"[0-9a-fA-F.:]+(?:/[0-9a-fA-F.:]*)?\Z")
# a dotted quad without leading zeros and an optional prefix length of 0-32: valid without more ado
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_CIDR = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?\Z")


@functools.lru_cache(maxsize=65536)
def _bad_address(value: str) -> str | None:
    """Why ``-s``/``-d`` ``value`` is not an address (None when it is). A numeric value must be an
    IPv4/IPv6 address with an optional prefix length or dotted mask; anything else is left alone
    (restore input may name a host, which iptables resolves when it loads the rule)."""
    if _IPV4_CIDR.match(value) or not _NUMERIC_ADDR.match(value):
        return None
    addr, _, mask = value.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return f"{value!r} is not an IP address"
    if mask:
        if mask.isdigit():
            if int(mask) > ip.max_prefixlen:
                return f"{value!r}: a prefix length of at most {ip.max_prefixlen}"
        else:
            try:
                ipaddress.ip_address(mask)
            except ValueError:
                return f"{value!r}: the mask is neither a prefix length nor an address"
    return None


def _head_pairs(head: str):
    """``[(field, value, negated)]`` for an IP header (the text between the chain name and the first
    ``-m``/``-j``) that holds only ``[!] -s/-d/-p/-i/-o VALUE`` pairs, each field once and every address
    valid; else False (the line then takes the token-by-token path, which names what is wrong).
    ``field`` indexes src, dst, proto, in, out."""
    if '"' in head:
        return False
    toks = head.split()
    n = len(toks)
    seen = [False, False, False, False, False]
    out = []
    i = 0
    while i < n:
        t = toks[i]
        neg = t == "!"
        if neg:
            i += 1
            if i >= n:
                return False
            t = toks[i]
        k = _IP_FLAGS.get(t)
        if k is None or seen[k] or i + 1 >= n:
            return False
        v = toks[i + 1]
        if v == "!" or (v[0] == "-" and _is_flag(v)):
            return False
        if k < 2 and _bad_address(v):
            return False
        seen[k] = True
        out.append((k, v, neg))
        i += 2
    return out


def _scan_head(head: str):
    """The IP header's header_info (what the frames show: CIDRs made canonical, "!" kept), or False."""
    pairs = _head_pairs(head)
    if pairs is False:
        return False
    fields = [None, None, None, None, None]
    for k, v, neg in pairs:
        if k < 2 and "/" not in v:
            v = canonical_cidr(v)
        fields[k] = "!" + v if neg else v
    return tuple(fields)


def _scan_matches(pieces: list[str], cache: _Interner):
    """The ``-m ...`` pieces of one line (``pieces[0]`` unused): their combined match_info, or False."""
    tp = cache.t_pieces
    if len(pieces) == 2:
        piece = pieces[1]
        info = tp.get(piece)
        if info is None:
            info = tp[piece] = _scan_piece(piece, cache)
        return info
    infos = []
    for k in range(1, len(pieces)):
        piece = pieces[k]
        info = tp.get(piece)
        if info is None:
            info = tp[piece] = _scan_piece(piece, cache)
        if info is False:
            return False
        infos.append(info)
    if len(infos) == 2:
        a, b = infos
        first = a if a[1] is not None else b
        return (a[0] + "," + b[0], first[1],
                b[2] if b[2] is not None else a[2], b[3] if b[3] is not None else a[3],
                b[4] if b[4] is not None else a[4], first[5])
    modules = ",".join([i[0] for i in infos])
    comment = sport = dport = prob = spn = None
    for i in infos:
        if comment is None:
            comment, spn = i[1], i[5]
        if i[2] is not None:
            sport = i[2]
        if i[3] is not None:
            dport = i[3]
        if i[4] is not None:
            prob = i[4]
    return (modules, comment, sport, dport, prob, spn)


def _scan_piece(piece: str, cache: _Interner):
    """One ``-m MODULE ...`` piece (without the ``-m ``): its match_info, or False."""
    if piece[:18] == "comment --comment ":
        v = piece[18:]
        if v[:1] == '"':
            if len(v) > 1 and v[-1] == '"' and v.count('"') == 2:
                text = v[1:-1]
                return ("comment", text, None, None, None, service_port_of(text))
        else:
            words = v.split()
            if '"' not in v and words and not any(w == "!" or _is_flag(w) for w in words):
                text = " ".join(words)
                return ("comment", text, None, None, None, service_port_of(text))
    m = cache.pieces.get(piece)
    if m is None:
        m = cache.pieces[piece] = _piece_match(piece, cache)
    if m is False:
        return False
    return match_info((m,))


def _code(vals: InfoTable, info: tuple) -> int:
    return vals.add(info)


def _scan_target(tpiece: str, goto: bool, cache: _Interner):
    """The text after ``-j``/``-g``: ``(target, target_info, has_options)``, or False."""
    toks = tpiece.split()
    if len(toks) == 3 and toks[1] in _NAT_TO_OPTS and '"' not in tpiece:
        v = toks[2]
        target, opt = toks[0], toks[1]
        if v != "!" and not _is_flag(v) and target[0] not in "-![":
            # "DNAT --to-destination 10.244.0.5:8080", the most common target with options
            # (the same facts as target_info() gives, without building an Option)
            if _NAT_TO.get(target) == opt:
                return (target, _code(cache.t_vals, (v, v if target == "DNAT" else None)), True)
            return (target, _code(cache.t_vals, (f"{opt} {v}", None)), True)
    key = (tpiece, goto)
    tv = cache.tpieces.get(key)
    if tv is None:
        tv = cache.tpieces[key] = _target_value(tpiece, goto, cache)
    if tv is False:
        return False
    return (tv[0], _code(cache.t_vals, tv[2]), bool(tv[1]))


# ---------------------------------------------------------------------------------------------------
# The checked rule lines of one parse, and chains whose Rule objects are built on first use

# ROW (from views): slots per row in RuleRows.flat: chain id, target, packets, bytes, line, lineno,
# and the codes of the header, match and target infos (indexes into the _Interner's h_vals/m_vals/t_vals)


class RuleRows:
    """Every checked rule line of one parse, in input order, with no object per rule (a big dump has
    100,000 of them). While parsing, a row is :data:`ROW` slots appended to one flat list; at the
    end of the parse :meth:`seal` turns them into numpy columns, which the views read as they are
    and which the cyclic garbage collector does not walk (a list of a million references would cost
    every full collection about 0.1 s for as long as the Ruleset lives). A row belongs to the chain
    ``chains[cid]`` for as long as that chain's ``_cid`` is ``cid``; once a chain is materialised
    (or flushed) its rows here are dead."""

    __slots__ = ("flat", "cols", "chains", "cache", "_index", "_indexed")

    _DTYPES = ("intp", object, object, object, object, "int64", "intp", "intp", "intp")

    def __init__(self, cache: "_Interner"):
        self.flat: list = []
        self.cols: tuple | None = None  # after seal(): ROW numpy columns
        self.chains: list = []          # cid -> LazyChain
        self.cache = cache
        self._index = None              # cid -> row numbers (built on first use)
        self._indexed = 0               # rows of flat indexed so far

    def add_chain(self, chain: "LazyChain") -> int:
        self.chains.append(chain)
        return len(self.chains) - 1

    def seal(self) -> None:
        """The parse is over: the flat rows become numpy columns (no rows are added after this)."""
        if self.cols is not None:
            return
        import numpy as np
        flat = self.flat
        n = len(flat) // ROW
        self.cols = tuple(np.fromiter(flat[k::ROW], dtype=dt, count=n) for k, dt in enumerate(self._DTYPES))
        self.flat = []
        self._index = None

    def rows_of(self, cid: int):
        """Row numbers of chain ``cid``, in input order."""
        if self.cols is not None:
            if self._index is None:
                import numpy as np
                cids = self.cols[0]
                order = np.argsort(cids, kind="stable")
                self._index = (order, np.searchsorted(cids[order], np.arange(len(self.chains) + 1)))
            order, starts = self._index
            if cid + 1 >= len(starts):      # a chain added after the index was built has no rows
                return order[:0]
            return order[starts[cid]:starts[cid + 1]]
        # during the parse (a chain materialised by a restore command): an index that grows with the rows
        if self._index is None:
            self._index = {}
        n = len(self.flat) // ROW
        if self._indexed < n:
            index = self._index
            for k, c in enumerate(self.flat[self._indexed * ROW::ROW], self._indexed):
                rows = index.get(c)
                if rows is None:
                    index[c] = [k]
                else:
                    rows.append(k)
            self._indexed = n
        return self._index.get(cid, [])

    def rows(self, cid: int) -> list[tuple]:
        """Chain ``cid``'s rows as ``(target, packets, bytes, line, lineno, hc, mc, tc)``, in input order."""
        ks = self.rows_of(cid)
        if self.cols is not None:
            return list(zip(*[c[ks].tolist() for c in self.cols[1:]]))
        flat = self.flat
        return [tuple(flat[k * ROW + 1:k * ROW + ROW]) for k in ks]

    def entries(self, cid: int) -> list:
        """:meth:`LazyChain.view_entries` of chain ``cid``: :data:`ENTRY` slots per rule, infos decoded."""
        cache = self.cache
        hvals, mvals, tvals = cache.h_vals, cache.m_vals, cache.t_vals
        out: list = []
        for pos, (target, pk, by, line, lineno, hc, mc, tc) in enumerate(self.rows(cid), 1):
            out += (pos, target, pk, by, line, lineno, hvals[hc], mvals[mc], tvals[tc])
        return out


_SLOT_RULES = Chain.__dict__["rules"]    # the storage slot of Chain.rules (LazyChain shadows it)


class LazyChain(Chain):
    """A :class:`Chain` whose rules are rows of its parse's :class:`RuleRows` until ``rules`` is first
    used; then their Rule objects are built (they come from checked lines: this cannot fail). It
    behaves as a Chain in every other way."""

    __slots__ = ("_store", "_cid", "_infos")

    def __init__(self, table, name, policy=None, packets=None, bytes=None, rules=None, declared=True,
                 store: "RuleRows | None" = None):
        # Chain's fields, set directly (this runs once per chain: 40,000 times in a big dump)
        self.table = table
        self.name = name
        self.policy = policy
        self.packets = packets
        self.bytes = bytes
        self.declared = declared
        self._store = store
        # the chain's id in the store while its rules are rows there (the Rule list, its slot unset
        # until then, is made when they are materialised); None once materialised
        if store is not None and not rules:
            self._cid: int | None = store.add_chain(self)
        else:
            self._cid = None
            _SLOT_RULES.__set__(self, list(rules) if rules else [])
        self._infos: list | None = None     # (header, match, target) infos kept from materialising

    @property  # type: ignore[override]
    def rules(self) -> list[Rule]:
        if self._cid is not None:
            self._materialise()
        return _SLOT_RULES.__get__(self)

    @rules.setter
    def rules(self, value: list[Rule]) -> None:
        _SLOT_RULES.__set__(self, value)
        self._cid = None
        self._infos = None

    @property
    def materialised(self) -> bool:
        return self._cid is None

    def _restart(self) -> None:
        """Empty again, with new rows to come from the parse (restore input re-declaring the chain)."""
        self._infos = None
        if self._store is not None:
            self._cid = self._store.add_chain(self)
            _SLOT_RULES.__set__(self, None)
        else:
            _SLOT_RULES.__set__(self, [])

    def _materialise(self) -> None:
        store = self._store
        cid, self._cid = self._cid, None
        rules: list[Rule] = []
        _SLOT_RULES.__set__(self, rules)
        cache = store.cache
        infos = []
        table, name = self.table, self.name
        hvals, mvals, tvals = cache.h_vals, cache.m_vals, cache.t_vals
        for target, pk, by, line, lineno, hc, mc, tc in store.rows(cid):
            body = line if line[0] != "[" else line[line.index("]") + 1:].lstrip()
            rest = body.split(" ", 2)[2] if body.count(" ") >= 2 else ""
            v = _fast_rule(rest, cache) if rest else None
            pos = len(rules) + 1
            if v is None:
                spec = _parse_spec(tokenize(rest), 0, cache)
                rule = Rule(table, name, pos, spec[0], spec[1], spec[2], spec[3], spec[4], spec[5], spec[6],
                            spec[7], spec[8], spec[9], pk, by, line, lineno)
            else:
                rule = Rule(table, name, pos, v[0], v[1], v[2], v[3], v[4], None, v[5], v[6], v[7], v[8],
                            pk, by, line, lineno)
            rules.append(rule)
            infos.append((rule, hvals[hc], mvals[mc], tvals[tc]))
        self._infos = infos

    def view_entries(self) -> list:
        """The facts the views need, :data:`ENTRY` flat slots per rule: position, target, packets,
        bytes, line, lineno, header info, match info, target info. From the parse-time scan while
        the rules are not materialised; else from the Rule objects."""
        if self._cid is not None:
            return self._store.entries(self._cid)
        return rule_entries(_SLOT_RULES.__get__(self), self._infos)

    def view_rows(self) -> list[tuple]:
        """:meth:`view_entries` as one tuple per rule (for tests and debugging)."""
        flat = self.view_entries()
        return [tuple(flat[k:k + ENTRY]) for k in range(0, len(flat), ENTRY)]


def rule_entries(rules: list[Rule], rows: list | None = None) -> list:
    """:meth:`LazyChain.view_entries` for Rule objects (``rows``: infos kept from materialising)."""
    out: list = []
    if rows is not None and len(rows) == len(rules) and all(r[0] is x for r, x in zip(rows, rules)):
        for r, h, m, t in rows:
            out += (r.position, r.target, r.packets, r.bytes, r.line, r.lineno, h, m, t)
        return out
    for r in rules:
        out += (r.position, r.target, r.packets, r.bytes, r.line, r.lineno) + rule_info(r)
    return out


# ---------------------------------------------------------------------------------------------------
# Guessing the table of an excerpt

_NAT_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-", "KUBE-FW-", "KUBE-XLB-", "CNI-HOSTPORT-",
                 "CNI-DN-", "DOCKER_", "KIND-MASQ", "KUBE-MARK-", "KUBE-POSTROUTING", "cali-nat",
                 "cali-fip")
_FILTER_NAMES = ("KUBE-FORWARD", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL",
                 "DOCKER-USER", "DOCKER-ISOLATION", "FLANNEL-FWD")
_WEAK_NAT = ("KUBE-SERVICES", "KUBE-NODEPORTS")   # also in filter, but mostly meant as nat


def _guess_table(lines: list[str], start: int) -> tuple[str | None, str]:
    """Vote on the table of the lines before the next ``*table`` line. Returns (table, why)."""
    votes: Counter = Counter()
    clues: list[str] = []
    for raw in lines[start:]:
        line = raw.strip()
        if line.startswith("*") or line == "COMMIT":
            break
        if line.startswith(":"):
            names = [line[1:].split(None, 1)[0]] if len(line) > 1 else []
        else:
            try:
                toks = tokenize(line)
            except ValueError:
                continue
            names = []
            for a, b in zip(toks, toks[1:]):
                if a in ("-A", "--append", "-I", "--insert", "-N", "-j", "--jump", "-g", "--goto") \
                        and b not in STANDARD_TARGETS:
                    names.append(b)
        for name in names:
            if name.startswith(_NAT_PREFIXES):
                votes["nat"] += 3
                clues.append(name)
            elif name.startswith(_FILTER_NAMES):
                votes["filter"] += 3
                clues.append(name)
            elif name in _WEAK_NAT:
                votes["nat"] += 1
                clues.append(name)
    if not votes:
        return None, ""
    table, _ = votes.most_common(1)[0]
    seen = list(dict.fromkeys(clues))
    return table, ", ".join(seen[:3]) + (" ..." if len(seen) > 3 else "")


# ---------------------------------------------------------------------------------------------------
# The line loop

_COMMANDS = {
    "-A": "A", "--append": "A", "-I": "I", "--insert": "I", "-D": "D", "--delete": "D",
    "-R": "R", "--replace": "R", "-N": "N", "--new-chain": "N", "-X": "X", "--delete-chain": "X",
    "-F": "F", "--flush": "F", "-P": "P", "--policy": "P", "-Z": "Z", "--zero": "Z",
    "-E": "E", "--rename-chain": "E",
}
_POLICIES = frozenset({"-", "ACCEPT", "DROP", "QUEUE", "RETURN"})


def _counter(tok: str) -> tuple[int, int]:
    if tok == "[0:0]":
        return 0, 0
    m = _COUNTER_RE.match(tok)
    if m is None:
        raise _RuleSpecError(f"bad counters {tok!r} (expected [packets:bytes])")
    return int(m.group(1)), int(m.group(2))


def _check_chain_name(name: str) -> str:
    if not name or name[0] in "-!" or not _CHAIN_NAME_RE.match(name):
        raise _RuleSpecError(f"bad chain name {name!r}")
    return name


class _State:
    """What the line loop carries from line to line."""

    def __init__(self, ruleset: Ruleset, strict: bool):
        self.rs = ruleset
        self.strict = strict
        self.table: str | None = None
        self.chains: dict[str, Chain] | None = None
        self.table_line = 0
        self.inferred = False
        self.undeclared: dict[tuple[str, str], int] = {}   # (table, chain) -> first lineno
        self.dirty: set[int] = set()                        # id() of chains whose positions need renumbering
        self.dirty_chains: list[Chain] = []
        self.targets: dict[str, set[str]] = {}              # table -> jump/goto targets
        self.ext_targets: set[tuple[str, str]] = set()      # (table, target) seen with target options
        self.cache = _Interner()
        self.pruned = False     # restore commands removed rules or chains: jump targets are recounted
        self.store = RuleRows(self.cache)

    def open_table(self, name: str, lineno: int) -> None:
        self.table = name
        self.chains = self.rs.tables.setdefault(name, {})
        self.table_line = lineno
        self.targets.setdefault(name, set())

    def new_chain(self, name: str, policy, pk, by, declared: bool) -> LazyChain:
        chain = LazyChain(self.table, name, policy, pk, by, None, declared, self.store)
        self.chains[name] = chain  # type: ignore[index]
        return chain

    def chain_for_rule(self, name: str, lineno: int, line: str) -> Chain:
        chain = self.chains.get(name)  # type: ignore[union-attr]
        if chain is None:
            builtin = name in BUILTIN_CHAINS.get(self.table, ())  # type: ignore[arg-type]
            if self.strict and not builtin:
                raise ParseError(f"chain {name} is not declared in table {self.table} "
                                 f"(add ':{name} - [0:0]' after '*{self.table}', or parse with strict=False)",
                                 lineno, line)
            chain = self.new_chain(name, None, None, None, False)
            self.undeclared.setdefault((self.table, name), lineno)  # type: ignore[arg-type]
        return chain

    def mark_dirty(self, chain: Chain) -> None:
        if id(chain) not in self.dirty:
            self.dirty.add(id(chain))
            self.dirty_chains.append(chain)


# The kube-proxy fast path: one anchored regex that accepts (and so fully validates) only the
# shapes kube-proxy writes tens of thousands of times, and gives their view facts in one match():
#   -A KUBE-SERVICES -d VIP/32 -p tcp -m comment --comment "ns/svc:port cluster IP" -m tcp --dport N
#      -j KUBE-SVC-X
#   -A KUBE-SVC-X ! -s POD_CIDR -d VIP/32 -p tcp -m comment --comment "..." -m tcp --dport N
#      -j KUBE-MARK-MASQ
#   -A KUBE-SVC-X -m comment --comment "..." -m statistic --mode random --probability P -j KUBE-SEP-Y
#   -A KUBE-SEP-Y -s EP/32 -m comment --comment "..." -j KUBE-MARK-MASQ
#   -A KUBE-SEP-Y -p tcp -m comment --comment "..." -m tcp -j DNAT --to-destination EP:PORT
# Anything else (another order or option, quotes or backslashes inside, doubled or trailing
# blanks) does not match and takes the general path, which gives the same facts for these lines.
_KP_RULE_RE = re.compile(
    r'-A ([A-Za-z0-9_][-A-Za-z0-9_.]*)'                 # 1 chain
    r'((?:( !)? -s ([0-9a-fA-F.:]+/[0-9]+))?'           # 2 header text, 3 " !", 4 -s CIDR
    r'(?: -d ([0-9a-fA-F.:]+/[0-9]+))?'                 # 5 -d CIDR
    r'(?: -p (tcp|udp|sctp))?)'                         # 6 -p
    r' -m comment --comment "('                         # 7 comment (no quote, no backslash) ...
    r'([a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*(?::[-a-z0-9]*)?)(?: [^"\\]*)?'  # 8 ... that starts
    r'|[^"\\]*)"'                                       # with a service port (views._SPN_RE), or not
    r'(?: -m (tcp|udp|sctp)(?: --dport ([0-9]+))?)?'    # 9 port module, 10 --dport
    r'(?: -m statistic --mode random --probability ([0-9.]+))?'                # 11 probability
    r' -j (?:DNAT --to-destination ([0-9a-fA-F.:\[\]]+)'  # 12 DNAT destination
    r'|([A-Za-z0-9_][-A-Za-z0-9_]*))\Z')                 # 13 or a target without options
# match_info's "modules" text by (port module, has statistic)
_KP_MODULES = {(None, False): "comment", (None, True): "comment,statistic"}
for _m in ("tcp", "udp", "sctp"):
    _KP_MODULES[(_m, False)] = "comment," + _m
    _KP_MODULES[(_m, True)] = "comment," + _m + ",statistic"


def parse(text: str, source: str | None = None, *, strict: bool = False) -> Ruleset:
    """Parse iptables-save / iptables-restore text into a :class:`Ruleset` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes str, not {type(text).__name__}")
    rs = Ruleset(source=source)
    st = _State(rs, strict)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    cache = st.cache
    store = st.store
    flat = store.flat
    heads = cache.t_heads
    minfos = cache.t_minfo
    targets_cache = cache.t_targets
    ext_targets = st.ext_targets
    scan_head = _scan_head
    scan_matches = _scan_matches
    standard = STANDARD_TARGETS
    h_vals, m_vals, t_vals = cache.h_vals, cache.m_vals, cache.t_vals
    # the info tables' columns, appended to directly on the kube-proxy fast path (see InfoTable)
    h_cols, m_cols, t_cols = h_vals.cols, m_vals.cols, t_vals.cols
    h_src, h_dst, h_proto, h_iif, h_oif = (c.append for c in h_cols)
    m_mods, m_comment, m_sport, m_dport, m_prob, m_spn = (c.append for c in m_cols)
    t_args, t_dnat = (c.append for c in t_cols)
    h_count, m_count, t_count = h_cols[0], m_cols[0], t_cols[0]
    kp_match = _KP_RULE_RE.match
    bad_address = _bad_address
    kp_modules = _KP_MODULES
    policies, chain_name_ok, lazy_chain = _POLICIES, _CHAIN_NAME_RE.match, LazyChain
    chains = table = targets = None
    lineno = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()        # hundreds of thousands of new objects, no cycles among them
    try:
        for lineno, line in enumerate(lines, 1):
            c = line[:1]
            if c == "-" and chains is not None:
                # The kube-proxy fast path (see _KP_RULE_RE): the whole line in one match().
                m = kp_match(line)
                if m is not None:
                    (name, head, neg, src, dst, proto, comment, spn, mod, dport, prob, dnat_to,
                     target) = m.groups()
                    cid = getattr(chains.get(name), "_cid", None)
                    # " -m " inside the comment: the general path splits there and then takes
                    # the token-by-token path; leave such (odd) lines to it
                    # a header seen for the first time has its addresses checked here; one the
                    # general path found wrong (cached False) goes there again, to its ParseError
                    hv = heads.get(head) if head else 0
                    if (cid is not None and " -m " not in comment and hv is not False
                            and (hv is not None
                                 or not ((src and bad_address(src)) or (dst and bad_address(dst))))):
                        if hv is None:  # a new header: _scan_head()'s info, cached by the same text
                            hv = heads[head] = len(h_count)
                            h_src(("!" + src if neg else src) if src else None)
                            h_dst(dst)
                            h_proto(proto)
                            h_iif(None)
                            h_oif(None)
                        if spn is None:     # the regex found none at the start; look further
                            spn = service_port_of(comment)
                        # match_info() of these matches
                        mc = len(m_count)
                        m_mods(kp_modules[mod, prob is not None])
                        m_comment(comment)
                        m_sport(None)
                        m_dport(dport)
                        m_prob(prob)
                        m_spn(spn)
                        if dnat_to is not None:
                            target = "DNAT"
                            tinfo = len(t_count)
                            t_args(dnat_to)
                            t_dnat(dnat_to)
                            ext_targets.add((table, "DNAT"))
                        else:
                            tinfo = 0
                            if target not in standard:
                                targets.add(target)
                        # the same ROW slots as the general path below
                        flat += (cid, target, None, None, line, lineno, hv, mc, tinfo)
                        continue
            # The general hot path: "[pkts:bytes] -A CHAIN ..." of a known chain, checked by cached pieces.
            if (c == "-" or c == "[") and chains is not None and "\\" not in line:
                pk = by = None
                body = line
                if c == "[":
                    k = line.find("] -A ")
                    m = _COUNTER_RE.match(line, 0, k + 1) if k > 0 else None
                    if m is not None:
                        pk, by = int(m.group(1)), int(m.group(2))
                        body = line[k + 2:]
                if body[:3] == "-A ":
                    pieces = body.split(" -m ")
                    last = pieces[-1]
                    pre, sep, tp = last.rpartition(" -j ")
                    goto = False
                    if not sep:
                        pre, sep, tp = last.rpartition(" -g ")
                        goto = True
                    if sep:
                        pieces[-1] = pre
                    name, _, head = pieces[0][3:].partition(" ")
                    if head:
                        hv = heads.get(head)
                        if hv is None:
                            info = scan_head(head)
                            if info is False:
                                hv = heads[head] = False
                            else:
                                hv = heads[head] = h_vals.add(info)
                    else:
                        hv = 0
                    if hv is not False:
                        chain = chains.get(name)
                        cid = getattr(chain, "_cid", None)
                        if cid is not None:
                            if len(pieces) > 1:
                                pieces[0] = ""
                                key = tuple(pieces)
                                minfo = minfos.get(key)
                                if minfo is None:
                                    info = scan_matches(pieces, cache)
                                    if info is False:
                                        minfo = minfos[key] = False
                                    else:
                                        minfo = minfos[key] = m_vals.add(info)
                            else:
                                minfo = 0
                            if minfo is not False:
                                if not sep:
                                    target = None
                                    tinfo = 0
                                elif " " not in tp and tp and tp[0] not in '-![' and '"' not in tp \
                                        and "\t" not in tp:
                                    target = tp
                                    tinfo = 0
                                else:
                                    tkey = (tp, goto)
                                    tv = targets_cache.get(tkey)
                                    if tv is None:
                                        tv = targets_cache[tkey] = _scan_target(tp, goto, cache)
                                    if tv is False:
                                        target = False
                                    else:
                                        target, tinfo, has_opts = tv
                                        if has_opts:
                                            ext_targets.add((table, target))
                                if target is not False:
                                    if target is not None and target not in standard:
                                        targets.add(target)
                                    # ROW flat slots per rule: no tuple outlives this line
                                    flat += (cid, target, pk, by, line, lineno, hv, minfo, tinfo)
                                    continue
            elif c == ":" and chains is not None:
                # a chain declaration ":NAME POLICY [pkts:bytes]" of a new chain
                parts = line[1:].split()
                if len(parts) == 3 and parts[1] in policies and parts[0] not in chains \
                        and parts[0][0] not in "-!" and chain_name_ok(parts[0]):
                    name, policy, cnt = parts
                    if cnt == "[0:0]":
                        pk = by = 0
                    else:
                        m = _COUNTER_RE.match(cnt)
                        if m is None:
                            pk = -1
                        else:
                            pk, by = int(m.group(1)), int(m.group(2))
                    if pk != -1:
                        chains[name] = lazy_chain(table, name, None if policy == "-" else policy, pk, by,
                                                  None, True, store)
                        continue
            if not line:
                continue
            _line(st, line, lineno, lines)
            table = st.table
            chains = st.chains
            targets = st.targets.get(table) if table is not None else None  # type: ignore[arg-type]
        if st.table is not None:
            _missing_commit(st, lineno + 1)
        _finish(st)
    finally:
        if gc_was_enabled:
            gc.enable()
    return rs


def _line(st: _State, line: str, lineno: int, lines: list[str]) -> None:
    """Everything but the hot path: one line, or one ParseError naming it."""
    c = line[0]
    if c in " \t\f\v":
        stripped = line.strip()
        if not stripped:
            return
        c = stripped[0]
    else:
        stripped = line.rstrip()
    try:
        if c == "-" or c == "[":
            _rule_line(st, stripped, c, lineno, line, lines)
        elif c == ":":
            parts = stripped[1:].split()
            if len(parts) not in (2, 3):
                raise _RuleSpecError("expected ':CHAIN POLICY [packets:bytes]'")
            name = _check_chain_name(parts[0])
            policy = parts[1]
            if policy not in _POLICIES:
                raise _RuleSpecError(f"bad policy {policy!r} (expected ACCEPT, DROP or -)")
            pk, by = _counter(parts[2]) if len(parts) == 3 else (None, None)
            if st.table is None:
                _no_table(st, lines, lineno, line)
            chains = st.chains
            assert chains is not None
            old = chains.get(name)
            if old is not None:
                # restore semantics: declaring an existing chain flushes it
                old.rules = []
                st.pruned = True
                old.policy = None if policy == "-" else policy
                old.packets, old.bytes = pk, by
                old.declared = True
                if isinstance(old, LazyChain):
                    old._restart()
                st.undeclared.pop((st.table, name), None)  # type: ignore[arg-type]
            else:
                st.new_chain(name, None if policy == "-" else policy, pk, by, True)
        elif c == "*":
            name = stripped[1:].strip()
            if name not in TABLES:
                raise _RuleSpecError(f"unknown table {name!r} (expected one of {', '.join(TABLES)})")
            if st.table is not None and not st.inferred:
                raise _RuleSpecError(f"table {st.table} (line {st.table_line}) has no COMMIT before this")
            if st.table is not None:
                _missing_commit(st, lineno)
            st.inferred = False
            st.open_table(name, lineno)
        elif c == "#":
            if st.rs.header is None:
                st.rs.header = stripped
        elif stripped == "COMMIT":
            if st.table is None:
                raise _RuleSpecError("COMMIT without a table (no '*table' line before it)")
            st.table = None
            st.chains = None
            st.inferred = False
        else:
            hint = ""
            if stripped.startswith(("table ", "add ", "chain ", "flush ", "define ")):
                hint = " (this looks like nftables text: k8slab reads iptables-save output)"
            raise _RuleSpecError("not an iptables-save line" + hint)
    except ParseError:
        raise
    except _RuleSpecError as exc:
        raise ParseError(str(exc), lineno, line) from None
    except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise ParseError(f"cannot parse this line ({exc or type(exc).__name__})", lineno, line) from None


def _rule_line(st: _State, stripped: str, c: str, lineno: int, line: str, lines: list[str]) -> None:
    """A rule or a restore command, token by token (also the fallback of the hot path)."""
    toks = tokenize(stripped)
    pk = by = None
    i = 0
    if c == "[":
        pk, by = _counter(toks[0])
        i = 1
        if len(toks) < 2:
            raise _RuleSpecError("counters without a rule")
    cmd = _COMMANDS.get(toks[i])
    if cmd is None:
        raise _RuleSpecError(f"unknown command {toks[i]!r} (expected -A CHAIN ...)")
    if st.table is None:
        _no_table(st, lines, lineno, line)
    if cmd != "A":
        _restore_command(st, cmd, toks, i, pk, by, lineno, line)
        return
    if len(toks) <= i + 1:
        raise _RuleSpecError("-A needs a chain name")
    name = toks[i + 1]
    chain = st.chains.get(name)  # type: ignore[union-attr]
    if chain is None:
        _check_chain_name(name)
    spec = _parse_spec(toks, i + 2, st.cache)
    if chain is None:
        chain = st.chain_for_rule(name, lineno, line)
    target = spec[7]
    if target is not None and target not in STANDARD_TARGETS:
        st.targets[st.table].add(target)  # type: ignore[index]
        if spec[9]:
            st.ext_targets.add((st.table, target))  # type: ignore[arg-type]
    if spec[10] is not None:
        pk, by = spec[10], spec[11]
    rules = chain.rules
    rules.append(Rule(st.table, name, len(rules) + 1, spec[0], spec[1], spec[2], spec[3],  # type: ignore
                      spec[4], spec[5], spec[6], target, spec[8], spec[9], pk, by, line, lineno))


def _no_table(st: _State, lines: list[str], lineno: int, line: str) -> None:
    """A chain or rule line before any ``*table`` line: infer the table, or refuse."""
    if st.strict:
        raise ParseError("rule before any '*table' line (add e.g. '*nat' above it; "
                         "strict=False infers the table of excerpts)", lineno, line)
    table, why = _guess_table(lines, lineno - 1)
    if table is None:
        raise ParseError("rule before any '*table' line, and no well-known chain name says which table "
                         "(add e.g. '*nat' above it)", lineno, line)
    st.open_table(table, lineno)
    st.inferred = True
    st.rs.warnings.append(f"line {lineno}: no '*table' line before the rules; assumed '*{table}' from {why}")


def _missing_commit(st: _State, lineno: int) -> None:
    if st.strict:
        raise ParseError(f"table {st.table} (line {st.table_line}) ends without COMMIT", lineno, None)
    if not st.inferred:
        st.rs.warnings.append(f"table {st.table} (line {st.table_line}) ends without COMMIT")
    st.table = None
    st.chains = None


def _find_rule(chain: Chain, spec: tuple) -> int | None:
    for k, r in enumerate(chain.rules):
        if (r.source, r.destination, r.protocol, r.in_interface, r.out_interface, r.fragment, r.matches,
                r.target, r.goto, r.target_options) == spec[:10]:
            return k
    return None


def _restore_command(st: _State, cmd: str, toks: list[str], i: int, pk, by, lineno: int, line: str) -> None:
    """Apply -I/-D/-R/-N/-X/-F/-P/-Z/-E as iptables-restore --noflush would."""
    args = toks[i + 1:]
    chains = st.chains
    assert chains is not None
    if cmd in ("I", "D", "R"):
        if not args:
            raise _RuleSpecError(f"{toks[i]} needs a chain name")
        name = _check_chain_name(args[0])
        chain = chains.get(name)
        if chain is None:
            if cmd != "I":
                raise _RuleSpecError(f"chain {name} does not exist")
            chain = st.chain_for_rule(name, lineno, line)
        num = None
        j = i + 2
        if j < len(toks) and toks[j].isdigit():
            num = int(toks[j])
            j += 1
        if cmd == "D" and num is not None:
            if j != len(toks):
                raise _RuleSpecError("-D CHAIN NUMBER takes nothing after the number")
            if not 1 <= num <= len(chain.rules):
                raise _RuleSpecError(f"chain {name} has no rule {num}")
            del chain.rules[num - 1]
            st.pruned = True
            st.mark_dirty(chain)
            return
        spec = _parse_spec(toks, j, st.cache)
        if spec[10] is not None:
            pk, by = spec[10], spec[11]
        if spec[7] is not None and spec[7] not in STANDARD_TARGETS:
            st.targets[st.table].add(spec[7])  # type: ignore[index]
        if cmd == "D":
            k = _find_rule(chain, spec)
            if k is None:
                if st.strict:
                    raise _RuleSpecError(f"no rule like this in chain {name} to delete")
                st.rs.warnings.append(f"line {lineno}: -D found no such rule in {name}; ignored")
                return
            del chain.rules[k]
            st.pruned = True
            st.mark_dirty(chain)
            return
        rule = Rule(st.table, name, 0, spec[0], spec[1], spec[2], spec[3], spec[4], spec[5],  # type: ignore
                    spec[6], spec[7], spec[8], spec[9], pk, by, line, lineno)
        if cmd == "I":
            pos = 1 if num is None else num
            if not 1 <= pos <= len(chain.rules) + 1:
                raise _RuleSpecError(f"cannot insert at {pos}: chain {name} has {len(chain.rules)} rules")
            chain.rules.insert(pos - 1, rule)
        else:
            if num is None or not 1 <= num <= len(chain.rules):
                raise _RuleSpecError(f"-R needs an existing rule number in chain {name}")
            chain.rules[num - 1] = rule
            st.pruned = True
        st.mark_dirty(chain)
        return
    if cmd == "N":
        if len(args) != 1:
            raise _RuleSpecError("-N takes one chain name")
        name = _check_chain_name(args[0])
        if name in chains and chains[name].declared:
            raise _RuleSpecError(f"chain {name} already exists")
        if name in chains:
            chains[name].declared = True
            st.undeclared.pop((st.table, name), None)  # type: ignore[arg-type]
        else:
            st.new_chain(name, None, 0, 0, True)
        return
    if cmd == "X":
        if len(args) > 1:
            raise _RuleSpecError("-X takes at most one chain name")
        names = [_check_chain_name(args[0])] if args else \
            [n for n, c in chains.items() if not c.builtin]
        for name in names:
            chain = chains.get(name)
            if chain is None:
                if st.strict:
                    raise _RuleSpecError(f"chain {name} does not exist")
                st.rs.warnings.append(f"line {lineno}: -X {name}: no such chain; ignored")
                continue
            if chain.builtin:
                raise _RuleSpecError(f"cannot delete built-in chain {name}")
            del chains[name]
            st.pruned = True
            st.undeclared.pop((st.table, name), None)  # type: ignore[arg-type]
        return
    if cmd == "F" or cmd == "Z":
        if len(args) > 1:
            raise _RuleSpecError(f"{toks[i]} takes at most one chain name")
        if args and args[0] not in chains:
            raise _RuleSpecError(f"chain {args[0]} does not exist")
        targets = [chains[args[0]]] if args else list(chains.values())
        for chain in targets:
            if cmd == "F":
                chain.rules.clear()
                st.pruned = True
            else:
                chain.packets = 0 if chain.packets is not None else None
                chain.bytes = 0 if chain.bytes is not None else None
                for r in chain.rules:
                    if r.packets is not None:
                        r.packets = r.bytes = 0
        return
    if cmd == "P":
        if len(args) != 2 or args[1] not in ("ACCEPT", "DROP"):
            raise _RuleSpecError("-P takes a built-in chain and ACCEPT or DROP")
        name = args[0]
        if name not in BUILTIN_CHAINS.get(st.table, ()):  # type: ignore[arg-type]
            raise _RuleSpecError(f"-P works on built-in chains only, not {name}")
        chain = chains.get(name) or st.chain_for_rule(name, lineno, line)
        chain.policy = args[1]
        return
    # "E": rename
    if len(args) != 2:
        raise _RuleSpecError("-E takes the old and the new chain name")
    old, new = args[0], _check_chain_name(args[1])
    if old not in chains:
        raise _RuleSpecError(f"chain {old} does not exist")
    if new in chains:
        raise _RuleSpecError(f"chain {new} already exists")
    chain = chains.pop(old)
    st.pruned = True
    chain.name = new
    for r in chain.rules:
        r.chain = new
    chains[new] = chain
    for c in chains.values():
        for r in c.rules:
            if r.target == old:
                r.target = new
    tg = st.targets[st.table]  # type: ignore[index]
    if old in tg:
        tg.discard(old)
        tg.add(new)


def _finish(st: _State) -> None:
    rs = st.rs
    for chain in st.dirty_chains:
        for k, r in enumerate(chain.rules, 1):
            r.position = k
    if st.pruned:
        # restore commands removed rules or chains (small inputs): count the jump targets again
        # from the rules that are left
        for table, chains in rs.tables.items():
            st.targets[table] = {r.target for c in chains.values() for r in c.rules
                                 if r.target is not None and r.target not in STANDARD_TARGETS}
            st.ext_targets = {(t, x) for t, x in st.ext_targets if t != table} | {
                (table, r.target) for c in chains.values() for r in c.rules if r.target_options}
    # Jump targets that are neither a declared chain nor a standard target: an undeclared chain
    # (an excerpt), unless it carries options (then it is an extension target we do not list).
    for table, targets in st.targets.items():
        chains = rs.tables.get(table, {})
        missing = sorted(t for t in targets if t not in chains)
        for name in missing:
            if (table, name) in st.ext_targets or not _CHAIN_NAME_RE.match(name):
                continue
            chains[name] = LazyChain(table, name, None, None, None, None, False, st.store)
            st.undeclared.setdefault((table, name), 0)
    # a built-in chain always exists in the kernel: using it undeclared (an excerpt) is no news
    user = [(t, c) for (t, c) in st.undeclared if c not in BUILTIN_CHAINS.get(t, ())]
    if user:
        listed = sorted(f"{t}/{c}" for (t, c) in user)
        shown = ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")
        rs.warnings.append(f"{len(listed)} chain(s) used but never declared (declared=False): {shown}")
    # kube-proxy restore input: no built-in chain anywhere, nothing enters KUBE-SERVICES.
    has_builtin = any(name in BUILTIN_CHAINS.get(table, ()) for table, chains in rs.tables.items()
                      for name in chains)
    enters = any("KUBE-SERVICES" in t for t in st.targets.values())
    has_kube = any(name.startswith("KUBE-") for chains in rs.tables.values() for name in chains)
    rs.fragment = bool(has_kube and not has_builtin and not enters)
    # the rows and infos become numpy columns; the scan's caches (by piece of text) are done with
    st.store.seal()
    cache = st.cache
    for table in (cache.h_vals, cache.m_vals, cache.t_vals):
        table.seal()
    cache.t_heads, cache.t_pieces, cache.t_minfo, cache.t_targets = {}, {}, {}, {}


def parse_file(path: str | Path, *, strict: bool = False) -> Ruleset:
    """Read and :func:`parse` a dump file (``"-"`` reads standard input)."""
    if str(path) == "-":
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise DumpReadError(f"standard input is not UTF-8 text ({exc.reason}); "
                                "is it really iptables-save output?") from None
        return parse(text, "<stdin>", strict=strict)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DumpReadError(f"{p}: no such file; save one with 'iptables-save > {p.name}' "
                            "or pass '-' to read standard input") from None
    except IsADirectoryError:
        raise DumpReadError(f"{p} is a directory; pass the dump file itself") from None
    except UnicodeDecodeError as exc:
        raise DumpReadError(f"{p} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "is it really iptables-save output?") from None
    except OSError as exc:
        raise DumpReadError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    return parse(text, str(p), strict=strict)
