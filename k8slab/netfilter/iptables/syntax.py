"""The syntax of ``iptables-save``/``iptables-restore`` lines: tokens, and the checking of one rule.

Owns :func:`tokenize` (whitespace, ``"..."`` and ``\\`` escapes, as ``iptables-restore`` splits a
line), the grammar of one rule specification (:func:`_parse_spec`, the token-by-token path that
checks a line and gives its Addr/Match/Option parts, each malformed line one ``_RuleSpecError`` with
a short reason), :func:`_fast_rule` (the same parts by cached pieces of text, used when a parsed
chain's Rule objects are built), the checks of ``-s``/``-d`` addresses and of the IP header
(:func:`_bad_address`, :func:`_head_pairs`), the small line-level pieces (counters ``[p:b]``, chain
names, restore commands and policies) and :class:`_Interner`, the caches of one parse.
The line loop that uses them is :mod:`.parser`; the parse-time facts by text are :mod:`.scan`.
"""
from __future__ import annotations

import functools
import ipaddress
import re

from .rules import Addr, Match, Option
from .views import InfoTable, addr_text, match_info, target_info


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
# Addresses and the IP header (checked the same way on every path)

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


# ---------------------------------------------------------------------------------------------------
# Line-level pieces: commands, policies, counters, chain names

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
