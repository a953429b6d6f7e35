"""The sim's rules and counters: each node's (and the host's) rules, rendered, parsed and traced.

Owns :class:`_Rules` (a node's rendered text, its parse and its counter layout, cached per model
version and counter generation), :func:`_rules_for`, the parsed views (:func:`iptables_ruleset`,
:func:`nft_ruleset`, :func:`nft_list_ruleset` in kube-proxy's nftables mode), :func:`_with_counters`
(``iptables-save -c`` text with the predicted counters), :func:`_count` (a predicted connection's
first packet on every rule it matched), :func:`_trace` (one packet through a node's rules, by the
iptables or the nft tracer) and :func:`_choose` (one outcome, drawn by the seeded generator).
:class:`~k8slab.backends.sim.backend.SimBackend` delegates its rule verbs here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...counters import CounterStore, Layout

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SimBackend

BYTES_PER_PACKET = 60
HOST = "host"


@dataclass
class _Rules:
    version: int
    text: str                      # rendered without counters
    ruleset: Any                   # parsed once per model version (counters as they were then)
    layout: Layout                 # where each rule's counters go; (table, chain, position) -> key
    generation: int                # the counter generation ``ruleset`` was parsed with
    rendered: tuple[int, str] | None = None      # (counter generation, text with counters)
    counted: tuple[int, Any] | None = None       # (counter generation, parse of that text)


def _rules_for(b: "SimBackend", where: str) -> _Rules:
    """Rendered and parsed rules of a node (or the host), cached per model version."""
    from ...netfilter.parser import parse
    from ...model import render_host_docker, render_node_dump
    cached = b._rules.get(where)
    if cached is not None and cached.version == b._version:
        return cached
    c = b._need()
    if where == HOST:
        text = render_host_docker(c, form="save")
    else:
        text = render_node_dump(c, b._node(where), form="save")
        text = b._kube_proxy_view(where, text)
    layout = Layout.of(text)
    store = b._counters.setdefault(where, CounterStore())
    with_counters = store.render(text, layout)
    # one parse serves both: the tracer ignores counters, and iptables() gets this very object
    # until a predicted connection moves a counter
    rules = _Rules(b._version, text, parse(with_counters, source=f"sim {where}"), layout,
                   store.generation, (store.generation, with_counters))
    b._rules[where] = rules
    return rules


def iptables_ruleset(b: "SimBackend", node: str):
    """``parse(iptables_save(node))``, cached per model version and counter generation."""
    from ...netfilter.parser import parse
    where = b._node(node).name if node != HOST else HOST
    rules = b._rules_for(where)
    gen = b._counters.setdefault(where, CounterStore()).generation
    if gen == rules.generation:
        return rules.ruleset
    if rules.counted is None or rules.counted[0] != gen:
        rules.counted = (gen, parse(b._with_counters(where), source=f"sim {where}"))
    return rules.counted[1]


def nft_ruleset(b: "SimBackend", node: str):
    """The node's whole ``nft list ruleset``, parsed (cached per model version and counters): the
    iptables-nft tables of the other writers (with their predicted counters), then kube-proxy's
    table rendered from the model. Its rules carry no counters, as kube-proxy writes none."""
    from ...netfilter.nft import parse_nft
    where = b._node(node).name
    text = b.nft_list_ruleset(where)
    cache = b.__dict__.setdefault("_nft_cache", {})
    hit = cache.get(where)
    if hit is None or hit[0] != text:
        rs = parse_nft(text)
        rs.source = f"sim {where} (nft list ruleset)"
        hit = cache[where] = (text, rs)
    return hit[1]


def nft_list_ruleset(b: "SimBackend", node: str) -> str:
    from ...netfilter.nft.node import iptables_to_nft, render_node_kube_proxy
    where = b._node(node).name
    cache = b.__dict__.setdefault("_nft_kp", {})
    kp = cache.get(where)
    if kp is None or kp[0] != b._version:
        kp = cache[where] = (b._version, render_node_kube_proxy(b._need(), b._node(where),
                                                                   form="ruleset"))
    tables = iptables_to_nft(b._with_counters(where))
    return tables + (b._kube_proxy_nft(where, kp[1]) if b.proxy_mode == "nftables" else "")


def _with_counters(b: "SimBackend", where: str) -> str:
    rules = b._rules_for(where)
    store = b._counters.setdefault(where, CounterStore())
    if rules.rendered is None or rules.rendered[0] != store.generation:
        rules.rendered = (store.generation, store.render(rules.text, rules.layout))
    return rules.rendered[1]


def _count(b: "SimBackend", where: str, outcome) -> None:
    rules = b._rules_for(where)
    store = b._counters.setdefault(where, CounterStore())
    for h in outcome.hops:
        if h.rule is None or h.action.startswith("no match"):
            continue
        key = rules.layout.positions.get((h.table, h.chain, h.position))
        if key is not None:
            store.add(key, 1, BYTES_PER_PACKET)


def _trace(b: "SimBackend", where: str, src: str, dst: str, dport: int, sport: int, in_interface: str | None,
           out_interface: str | None = None):
    from ...netfilter.tracer import NodeContext, Packet, trace
    if where == HOST:
        ctx = NodeContext(local_ips=frozenset(("127.0.0.1", b._need().gateway)), name=HOST)
    else:
        n = b._node(where)
        ctx = NodeContext(local_ips=frozenset(b._local_ips(n)), pod_cidrs=(n.pod_cidr,), name=n.name)
        if b.proxy_mode == "nftables":        # the node's whole nft ruleset, kube-proxy's table too
            from ...netfilter.nft import trace_nft
            return trace_nft(b.nft_ruleset(where), Packet(src=src, dst=dst, dport=int(dport), sport=sport,
                             in_interface=in_interface, out_interface=out_interface), ctx)
    return trace(b._rules_for(where).ruleset,
                 Packet(src=src, dst=dst, dport=int(dport), sport=sport, in_interface=in_interface,
                        out_interface=out_interface), ctx)


def _choose(b: "SimBackend", tr):
    """One outcome, drawn by the seeded generator with the outcomes' exact probabilities."""
    outs = tr.baseline() or list(tr.outcomes)
    if len(outs) == 1:
        return outs[0]
    total = sum(o.probability for o in outs)
    r = b._rng.random() * float(total)
    acc = 0.0
    for o in outs:
        acc += float(o.probability)
        if r < acc:
            return o
    return outs[-1]
