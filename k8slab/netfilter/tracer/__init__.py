"""Follow one new connection through a parsed ruleset, the way netfilter would.

``trace(ruleset, packet, node)`` walks the first packet of a NEW TCP/UDP/SCTP connection through the
hooks it meets (PREROUTING or OUTPUT, the routing decision, INPUT or FORWARD, POSTROUTING), and at
each hook through the tables in kernel priority order. It returns a :class:`Trace`: one
:class:`Outcome` per effect (verdict, DNAT destination, masquerade, final mark), each with its exact
probability and the conditions under which it holds.

* ``statistic --mode random`` is not guessed: both branches are followed. The weight of the "match"
  branch is the kernel's fixed point ``lround(p * 2**31) / 2**31``, so probabilities are exact
  :class:`fractions.Fraction` values; ``Outcome.nominal`` rounds them to what a learner expects
  (1/3, not 715827883/2147483648).
* Facts the tracer cannot know are *conditions*: an interface the packet does not name (give
  ``in_interface``/``out_interface``, or the node's ``routes``), whether an address is the node's
  own when no local IPs were given (``addrtype LOCAL``), whether this client already has session
  affinity (``-m recent``), what a ``physdev``/``set``/... match would answer. Each is followed both
  ways, then outcomes that end the same way are merged and a condition stays only where it changes
  the effect ("DROP if in-interface docker0, else DNAT to ..."). Under every assignment of the
  conditions, the outcomes that hold sum to exactly 1 (:meth:`Trace.worlds`); the *baseline* world
  assumes every such fact false (:meth:`Trace.baseline`, what :meth:`Trace.by_destination` sums).
* Kernel edges as ``ipt_do_table`` has them: a goto does not push a return address; RETURN, or the
  end of a user chain, with nothing to return to ends in the *built-in chain's* policy.

A kube-proxy restore fragment (no built-in chains) is entered the way kube-proxy installs it (see
:data:`KUBE_PROXY_JUMPS`), without touching the caller's Ruleset. An excerpt's parse warnings (table
inferred, chains never declared) come back in ``Trace.warnings``, as ``k8slab rules`` prints them.

Modules: :mod:`.packet` (the question), :mod:`.matches` (rules as checks), :mod:`.index` (what is
precomputed per ruleset), :mod:`.walk` (hooks, chains, targets), :mod:`.merge` (one row per effect),
:mod:`.outcomes` (the answer's types and views).
"""
from __future__ import annotations

from typing import Iterable

from ...errors import TraceError
from ..iptables.rules import Ruleset
from .index import KUBE_PROXY_JUMPS, index_for
from .matches import local_fact
from .merge import merge as merge_paths
from .outcomes import Outcome, Trace, TraceHop
from .packet import NodeContext, Packet, check_packet, fixed_point_probability, node_context
from .walk import Walker

__all__ = [
    "Packet", "NodeContext", "TraceHop", "Outcome", "Trace", "trace", "KUBE_PROXY_JUMPS",
    "MASQUERADE_MARK", "fixed_point_probability",
]

MASQUERADE_MARK = 0x4000


def trace(ruleset: Ruleset, packet: Packet, node: NodeContext | Iterable[str] | None = None) -> Trace:
    """Every way ``packet`` (the first packet of a new connection) can go through ``ruleset`` on a
    node described by ``node`` (a :class:`NodeContext`, or an iterable of its local IPs).

    Raises :class:`TraceError` for a bad packet (not an IP, port out of range, unknown protocol) and
    for a jump loop. See the module docstring for how branches and conditions work."""
    if not isinstance(ruleset, Ruleset):
        raise TraceError(f"expected a Ruleset (from k8slab.netfilter.parse), got {type(ruleset).__name__}")
    pkt = check_packet(packet)
    ctx_node = node_context(node)
    index = index_for(ruleset)
    walker = Walker(index, pkt, ctx_node.local_ips, ctx_node.routes)
    paths = walker.run()
    outcomes, facts = merge_paths(paths, walker.fact_notes)
    return Trace(packet=pkt, node=ctx_node, outcomes=outcomes, source=ruleset.source,
                 synthesized=index.synthesized, paths=paths, facts=facts,
                 warnings=list(ruleset.warnings) + _warnings(facts, ctx_node))


def _warnings(facts: tuple[str, ...], node: NodeContext) -> list[str]:
    out = []
    suffix = local_fact("").lstrip()                  # "is an address of this node"
    local = [f[: -len(suffix)].strip() for f in facts if f.endswith(suffix)]
    if local:
        out.append(f"the outcome depends on whether {', '.join(local)} "
                   f"{'is an address' if len(local) == 1 else 'are addresses'} of this node "
                   "(addrtype LOCAL, and whether the routing delivers it here or forwards it), and no "
                   "local IPs were given: give each of the node's addresses with --local-ip IP "
                   "(NodeContext(local_ips=...)); 'ip -br addr' on the node lists them")
    ifaces = sorted({f.split(" ", 1)[1] for f in facts if f.startswith(("in-interface ", "out-interface "))})
    if ifaces:
        out.append(f"the outcome depends on interfaces the packet does not name ({', '.join(ifaces)}): "
                   "give them with --in-interface/--out-interface (Packet(in_interface=..., "
                   "out_interface=...)), or the node's routes (--routes FILE from 'ip route')")
    return out
