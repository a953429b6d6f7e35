"""What restore input and excerpts hold beyond ``iptables-save`` output.

Owns :func:`_restore_command` (``-I``/``-D``/``-R``/``-N``/``-X``/``-F``/``-P``/``-Z``/``-E``, applied
in order as ``iptables-restore --noflush`` would, with :func:`_find_rule` for ``-D`` by rule
specification) and the handling of excerpts: :func:`_guess_table` (the table of lines before any
``*table`` line, voted from well-known chain names), :func:`_no_table` (infer it, or refuse with
``strict=True``) and :func:`_missing_commit`. Called from the line loop of
:func:`k8slab.netfilter.iptables.parser.parse`, on the state it carries (``_State``).
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ...errors import ParseError
from .rules import BUILTIN_CHAINS, STANDARD_TARGETS, Chain, Rule
from .syntax import _check_chain_name, _parse_spec, _RuleSpecError, tokenize

if TYPE_CHECKING:  # pragma: no cover
    from .parser import _State


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
# Excerpts: no '*table' line, no COMMIT

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


# ---------------------------------------------------------------------------------------------------
# Restore commands

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
