"""pandas views of an :class:`NftRuleset`, like the iptables ones (``k8slab.netfilter.views``).

``rules_frame(rs)``: family, table, chain, position, matches, verdict, target, comment, packets,
bytes, handle, owner, expr — one row per rule, in chain order.
``chains_frame(rs)``: family, table, chain, type, hook, priority, policy, rules, jumped_from, owner.
``sets_frame(rs)``: family, table, set, kind (set|map), type, map_type, flags, timeout, elements, comment, owner.
``elements_frame(rs)``: family, table, set, key, value, target, comment, owner.

Owners (:func:`nft_owner`): the ``kube-proxy`` tables (``ip``/``ip6 kube-proxy``) are kube-proxy's;
the tables iptables-nft keeps (``ip``/``ip6 nat``, ``filter``, ``mangle``, ``raw``, ``security``)
hold what kindnet, the CNI portmap plugin, Docker and kubelet wrote with iptables, so their chains are
owned as in an ``iptables-save`` (:func:`k8slab.netfilter.owners.owner_of`); anything else is ``other``.
"""
from __future__ import annotations

import re

from ..iptables.owners import owner_of
from .model import NftRuleset

IPTABLES_NFT_TABLES = ("nat", "filter", "mangle", "raw", "security")
RULE_COLUMNS = ("family", "table", "chain", "position", "matches", "verdict", "target", "comment", "packets",
                "bytes", "handle", "owner", "expr")
CHAIN_COLUMNS = ("family", "table", "chain", "type", "hook", "priority", "policy", "rules", "jumped_from", "owner")
SET_COLUMNS = ("family", "table", "set", "kind", "type", "map_type", "flags", "timeout", "elements", "comment", "owner")
ELEMENT_COLUMNS = ("family", "table", "set", "key", "value", "target", "comment", "owner")

_TARGET = re.compile(r"\b(?:jump|goto)\s+(\S+)")


def nft_owner(family: str, table: str, chain: str | None = None) -> str:
    if table == "kube-proxy" and family in ("ip", "ip6", "inet"):
        return "kube-proxy"
    if family in ("ip", "ip6") and table in IPTABLES_NFT_TABLES and chain:
        return owner_of(table, chain)
    return "other"


def _target(verdict: str) -> str | None:
    m = _TARGET.match(verdict)
    return m.group(1) if m else None


def _df(rows, columns):
    import pandas as pd
    return pd.DataFrame(rows, columns=list(columns))


def rules_frame(rs: NftRuleset):
    rows = []
    for t in rs.tables:
        for c in t.chains.values():
            for i, r in enumerate(c.rules, 1):
                v = r.verdict
                rows.append((t.family, t.name, c.name, i, r.matches, v, _target(v), r.comment, r.packets, r.bytes,
                             r.handle, nft_owner(t.family, t.name, c.name), r.expr))
    return _df(rows, RULE_COLUMNS)


def _references(rs: NftRuleset) -> dict[tuple[str, str, str], list[str]]:
    """(family, table, chain) -> the chains and maps that jump/goto it (vmap elements included)."""
    refs: dict[tuple[str, str, str], list[str]] = {}
    for t in rs.tables:
        for c in t.chains.values():
            for r in c.rules:
                for target in _TARGET.findall(r.expr):
                    lst = refs.setdefault((t.family, t.name, target), [])
                    if c.name not in lst:
                        lst.append(c.name)
        for s in t.sets.values():
            for e in s.elements:
                for target in _TARGET.findall(e.value or ""):
                    lst = refs.setdefault((t.family, t.name, target), [])
                    if f"@{s.name}" not in lst:
                        lst.append(f"@{s.name}")
    return refs


def chains_frame(rs: NftRuleset):
    refs = _references(rs)
    rows = [(t.family, t.name, c.name, c.type, c.hook, c.priority, c.policy, len(c.rules),
             ", ".join(refs.get((t.family, t.name, c.name), [])), nft_owner(t.family, t.name, c.name))
            for t in rs.tables for c in t.chains.values()]
    return _df(rows, CHAIN_COLUMNS)


def sets_frame(rs: NftRuleset):
    rows = [(t.family, t.name, s.name, "map" if s.is_map else "set", s.type, s.map_type, ",".join(s.flags),
             s.timeout, len(s.elements), s.comment, nft_owner(t.family, t.name, s.name))
            for t in rs.tables for s in t.sets.values()]
    return _df(rows, SET_COLUMNS)


def elements_frame(rs: NftRuleset):
    rows = [(t.family, t.name, s.name, e.key, e.value, _target(e.value or ""), e.comment,
             nft_owner(t.family, t.name, s.name))
            for t in rs.tables for s in t.sets.values() for e in s.elements]
    return _df(rows, ELEMENT_COLUMNS)
