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

Where the parts live: this module owns the line loop (:func:`parse`, its hot paths, ``_State``,
``_finish``) and :func:`parse_file`; :mod:`.syntax` the tokens and the checking of one rule (the
token-by-token path); :mod:`.scan` the parse-time facts by piece of text and ``_KP_RULE_RE``;
:mod:`.rows` :class:`RuleRows` and :class:`LazyChain`; :mod:`.restore` the restore commands and
excerpts without ``*table``/``COMMIT``. Their names stay importable from here.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

from ...errors import K8sLabError, ParseError
from .rules import BUILTIN_CHAINS, STANDARD_TARGETS, TABLES, Chain, Rule, Ruleset
from .views import ENTRY, ROW, service_port_of
# The parts of the parse live beside this module (see docs/architecture.md); every name that was
# importable from here still is.
from .restore import _find_rule, _guess_table, _missing_commit, _no_table, _restore_command  # noqa: F401
from .rows import LazyChain, RuleRows, rule_entries
from .scan import _KP_MODULES, _KP_RULE_RE, _scan_head, _scan_matches, _scan_target  # noqa: F401
from .syntax import (_CHAIN_NAME_RE, _COMMANDS, _COUNTER_RE, _NUMERIC_ADDR, _POLICIES,  # noqa: F401
                     _bad_address, _check_chain_name, _counter, _fast_rule, _head_pairs, _Interner,
                     _is_flag, _parse_spec, _RuleSpecError, tokenize)

__all__ = ["parse", "parse_file", "tokenize", "DumpReadError", "LazyChain", "RuleRows", "ENTRY", "ROW",
           "rule_entries"]


class DumpReadError(K8sLabError, OSError):
    """The dump file could not be read (missing, a directory, not text)."""


# ---------------------------------------------------------------------------------------------------
# The line loop

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
