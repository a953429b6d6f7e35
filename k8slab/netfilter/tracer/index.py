"""What the tracer precomputes for one Ruleset, built lazily and cached on it (``ruleset._views``).

* Per chain, a dispatch index: large chains of ``-d IP -p P --dport N`` rules (kube-proxy's
  KUBE-SERVICES) are looked up by that triple; every other rule is still scanned in order, so
  first-match semantics stay exact.
* Per rule, its compiled checks (:class:`~.matches.Compiled`).
* For a kube-proxy restore fragment (no built-in chains), the jump rules kube-proxy installs in the
  built-in chains, synthesized without touching the caller's Ruleset.
"""
from __future__ import annotations

import ipaddress

from ..iptables.names import JUMP_CHAINS, KUBELET_JUMP_CHAINS
from ..iptables.rules import Chain, Match, Option, Rule, Ruleset
from .matches import Compiled
from .packet import PROTOCOLS

SMALL_CHAIN = 24            # chains shorter than this are scanned without a dispatch index

#: The jump rules kube-proxy (and kubelet, for KUBE-FIREWALL) puts into the built-in chains, in the
#: order they end up in: kube-proxy prepends each of names.JUMP_CHAINS, so its list comes out
#: reversed; kubelet's own jumps were there first and stay last. (table, built-in chain, ctstate NEW?,
#: comment, target).
KUBE_PROXY_JUMPS: tuple[tuple[str, str, bool, str | None, str], ...] = tuple(
    (table, builtin, "NEW" in extra, comment or None, target)
    for table, target, builtin, comment, extra in (*reversed(JUMP_CHAINS), *KUBELET_JUMP_CHAINS))


def _host(addr) -> str | None:
    """The single address a non-negated ``-d`` selects, or None."""
    if addr is None or addr.negated:
        return None
    try:
        net = ipaddress.ip_network(addr.value, strict=False)
    except ValueError:
        return None
    if net.prefixlen != net.max_prefixlen:
        return None
    return str(net.network_address)


def _dispatch_key(rule: Rule) -> tuple[str | None, str, int] | None:
    """(dst or None, proto, dport) when the rule can only match that triple; None otherwise."""
    p = rule.protocol
    if p is None or p.negated or p.value.lower() not in PROTOCOLS:
        return None
    proto = p.value.lower()
    if rule.destination is not None:
        dst = _host(rule.destination)
        if dst is None:
            return None
    else:
        dst = None
    for m in rule.matches:
        if m.module != proto:
            continue
        for opt in m.options:
            if opt.name in ("--dport", "--destination-port") and not opt.negated:
                v = opt.value or ""
                if v.isdigit():
                    return (dst, proto, int(v))
    return None


class ChainIndex:
    __slots__ = ("n", "all", "buckets", "others")

    def __init__(self, chain: Chain, small: int):
        n = len(chain.rules)
        self.n = n
        self.all = range(1, n + 1)
        self.buckets: dict[tuple, list[int]] | None = None
        self.others: list[int] = []
        if n < small:
            return
        buckets: dict[tuple, list[int]] = {}
        others: list[int] = []
        for i, rule in enumerate(chain.rules, 1):
            key = _dispatch_key(rule)
            if key is None:
                others.append(i)
            else:
                buckets.setdefault(key, []).append(i)
        if len(others) > n // 2:
            return                    # not worth it: mostly rules of other shapes
        self.buckets = buckets
        self.others = others

    def candidates(self, st):
        if self.buckets is None:
            return self.all
        b = self.buckets
        parts = [b.get((st.dst, st.proto, st.dport)), b.get((None, st.proto, st.dport)), self.others]
        parts = [p for p in parts if p]
        if not parts:
            return ()
        if len(parts) == 1:
            return parts[0]
        return sorted(set().union(*parts))


class Index:
    """Everything the tracer precomputes for one Ruleset, built lazily and cached on it."""

    def __init__(self, ruleset: Ruleset):
        self.ruleset = ruleset
        self.chains: dict[tuple[str, str], tuple[Chain, ChainIndex]] = {}
        self.compiled: dict[int, tuple[Rule, Compiled]] = {}
        self.synthetic: dict[tuple[str, str], Chain] = {}
        self.synthesized = False
        has_builtin = any(ch.builtin for chains in ruleset.tables.values() for ch in chains.values())
        if ruleset.fragment or not has_builtin:
            self._synthesize()

    def __reduce__(self):
        # A pickled or deep-copied Ruleset does not carry the index (it holds closures): the copy
        # gets None in its place and builds its own index on first use.
        return (_no_index, ())

    def _synthesize(self) -> None:
        rs = self.ruleset
        for table, chain, new_only, comment, target in KUBE_PROXY_JUMPS:
            if rs.chain(table, target) is None or rs.chain(table, chain) is not None:
                continue
            key = (table, chain)
            ch = self.synthetic.get(key)
            if ch is None:
                ch = self.synthetic[key] = Chain(table, chain, policy="ACCEPT", declared=False)
            matches: list[Match] = []
            text = ["-A", chain]
            if new_only:
                matches.append(Match("conntrack", (Option("--ctstate", ("NEW",)),)))
                text += ["-m", "conntrack", "--ctstate", "NEW"]
            if comment:
                matches.append(Match("comment", (Option("--comment", (comment,)),)))
                text += ["-m", "comment", "--comment", f'"{comment}"']
            text += ["-j", target]
            ch.rules.append(Rule(table, chain, len(ch.rules) + 1, matches=tuple(matches),
                                 target=target, line=" ".join(text) + "  # synthesized: kube-proxy's jump"))
            self.synthesized = True

    def chain(self, table: str, name: str) -> tuple[Chain, ChainIndex] | None:
        key = (table, name)
        hit = self.chains.get(key)
        ch = self.ruleset.chain(table, name)
        if hit is not None and hit[1].n == len(hit[0].rules) and (
                ch is hit[0] or (ch is None and hit[0] is self.synthetic.get(key))):
            return hit
        if ch is None:
            ch = self.synthetic.get(key)
        if ch is None:
            return None
        entry = (ch, ChainIndex(ch, SMALL_CHAIN))
        self.chains[key] = entry
        return entry

    def compile(self, rule: Rule) -> Compiled:
        hit = self.compiled.get(id(rule))
        if hit is not None and hit[0] is rule:
            return hit[1]
        c = Compiled(rule)
        self.compiled[id(rule)] = (rule, c)
        return c


def _no_index() -> None:
    return None


def index_for(ruleset: Ruleset) -> Index:
    views = ruleset._views
    idx = views.get("tracer")
    if not isinstance(idx, Index) or idx.ruleset is not ruleset:     # (a reloaded module's too)
        idx = views["tracer"] = Index(ruleset)
    return idx
