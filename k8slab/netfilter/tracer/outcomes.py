"""What a trace returns: :class:`Trace`, its merged :class:`Outcome` rows and their :class:`TraceHop`.

An outcome is one *effect* (verdict, DNAT destination, masquerade/SNAT source, final mark, and what
was not understood on the way), with the exact probability of that effect under its ``conditions``:
facts the tracer could not decide (an interface the packet does not name, whether an address is the
node's own when no local IPs were given, session affinity, a match module it cannot evaluate). A
condition is kept only where it changes the effect. Under every assignment of the conditions, the
outcomes whose conditions hold have probabilities that sum to exactly 1 (:meth:`Trace.worlds`).

``Outcome.hops`` is one path that ends this way (the one assuming the fewest facts true, first in
rule order); ``Outcome.paths`` says how many paths of the walk were merged into the row, and
``Trace.paths`` keeps them all.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from ..iptables.rules import Rule
from .matches import possible, rule_text
from .packet import NodeContext, Packet

MAX_WORLDS = 1 << 16


@dataclass(frozen=True)
class TraceHop:
    """One step: a rule that matched (``rule``), or a policy/routing/end-of-chain step (``rule`` None).

    ``position`` is the rule's 1-based position in its chain; 0 for steps that are not a rule."""
    hook: str
    table: str
    chain: str
    position: int
    rule: Rule | None
    action: str

    @property
    def line(self) -> str | None:
        return rule_text(self.rule) if self.rule is not None else None


def condition_text(fact: str, value: bool) -> str:
    return f"assumed {'true' if value else 'false'}: {fact}"


@dataclass
class Outcome:
    """One way the packet can end.

    ``probability`` is exact (kernel fixed point) and holds where every one of ``conditions`` does
    (``assumptions`` are the same as ``(fact, value)`` pairs); ``nominal`` is it rounded to a
    small-denominator fraction. ``masquerade`` is True iff a MASQUERADE or SNAT target was applied;
    ``marked`` is the final mark; ``unknown`` lists what the tracer did not understand on the way.
    """
    verdict: str
    destination: str | None
    masquerade: bool
    probability: Fraction
    hops: list[TraceHop]
    conditions: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    marked: int = 0
    source: str | None = None          # the SNAT address (None: not SNATed, or MASQUERADE's)
    assumptions: tuple[tuple[str, bool], ...] = ()   # (fact, assumed value)
    paths: int = 1                     # paths of the walk merged into this outcome
    path_assumptions: tuple[tuple[str, bool], ...] = ()   # what the path in ``hops`` assumed

    @property
    def nominal(self) -> Fraction:
        return self.probability.limit_denominator(1000)

    @property
    def baseline(self) -> bool:
        """True when every assumption of this outcome is "false" (the baseline world)."""
        return not any(value for _fact, value in self.assumptions)

    def applies(self, world: dict[str, bool] | None = None) -> bool:
        """Whether this outcome holds where ``world`` (fact -> value; a fact not named is false)."""
        world = world or {}
        return all(world.get(fact, False) == value for fact, value in self.assumptions)

    @property
    def reached_mark_masq(self) -> bool:
        """Whether the packet passed through kube-proxy's KUBE-MARK-MASQ chain."""
        return any(h.chain == "KUBE-MARK-MASQ" for h in self.hops)

    @property
    def final_hop(self) -> TraceHop | None:
        return self.hops[-1] if self.hops else None

    @property
    def chains(self) -> list[str]:
        """The chains the packet passed, in order, without repeats in a row."""
        out: list[str] = []
        for h in self.hops:
            if h.chain and (not out or out[-1] != h.chain):
                out.append(h.chain)
        return out

    @property
    def table_chains(self) -> list[str]:
        """The chains the packet passed as ``table:chain``, in order, without repeats in a row: the
        same name in two tables (nat's KUBE-SERVICES, then filter's) reads as two different chains."""
        out: list[str] = []
        for h in self.hops:
            name = f"{h.table}:{h.chain}" if h.table else h.chain
            if h.chain and (not out or out[-1] != name):
                out.append(name)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "destination": self.destination,
            "masquerade": self.masquerade,
            "probability": float(self.probability),
            "nominal": str(self.nominal),
            "exact": str(self.probability),
            "marked": hex(self.marked),
            "conditions": list(self.conditions),
            "unknown": list(self.unknown),
            "paths": self.paths,
            "hops": [{"hook": h.hook, "table": h.table, "chain": h.chain, "position": h.position,
                      "action": h.action, "rule": h.line} for h in self.hops],
        }


@dataclass
class Trace:
    """Every outcome of one packet through one ruleset (merged: one row per effect)."""
    packet: Packet
    node: NodeContext
    outcomes: list[Outcome]
    source: str | None = None
    synthesized: bool = False          # kube-proxy's jump rules were synthesized (a fragment)
    paths: list[Outcome] = field(default_factory=list)   # every path of the walk, unmerged
    facts: tuple[str, ...] = ()        # the facts the outcomes' conditions name, in order
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self):
        return iter(self.outcomes)

    def world(self, assume: dict[str, bool] | None = None) -> list[Outcome]:
        """The outcomes that hold where ``assume`` (fact -> value; facts not named are false)."""
        return [o for o in self.outcomes if o.applies(assume)]

    def worlds(self) -> dict[tuple[str, ...], list[Outcome]]:
        """Every possible assignment of :attr:`facts` -> the outcomes that hold there (their
        probabilities sum to 1). The key names each fact's value as a condition string. Assignments
        no packet can have (two in-interfaces at once) are left out."""
        n = len(self.facts)
        if 1 << n > MAX_WORLDS:
            raise ValueError(f"{n} facts make {2 ** n} worlds; ask for one with world()")
        out: dict[tuple[str, ...], list[Outcome]] = {}
        for values in itertools.product((False, True), repeat=n):
            assume = dict(zip(self.facts, values))
            if not possible(assume):            # e.g. two in-interfaces at once
                continue
            key = tuple(condition_text(f, v) for f, v in zip(self.facts, values))
            out[key] = self.world(assume)
        return out

    def baseline(self) -> list[Outcome]:
        """The outcomes of the baseline world (every fact the tracer could not decide assumed false:
        no such interface, not an address of the node, no session affinity yet, the unknown match
        does not hold)."""
        return self.world({})

    def by_destination(self, baseline: bool = True, world: dict[str, bool] | None = None
                       ) -> dict[str | None, Fraction]:
        """{destination ("ip:port", None if not DNATed): probability} in one world (default the
        baseline), so the values sum to 1. ``baseline=False`` sums every row, whatever its
        conditions."""
        rows = self.world(world) if (baseline or world is not None) else self.outcomes
        out: dict[str | None, Fraction] = {}
        for o in rows:
            out[o.destination] = out.get(o.destination, Fraction(0)) + o.probability
        return out

    def by_verdict(self, baseline: bool = True, world: dict[str, bool] | None = None) -> dict[str, Fraction]:
        rows = self.world(world) if (baseline or world is not None) else self.outcomes
        out: dict[str, Fraction] = {}
        for o in rows:
            out[o.verdict] = out.get(o.verdict, Fraction(0)) + o.probability
        return out

    @property
    def destinations(self) -> set[str | None]:
        return {o.destination for o in self.outcomes}

    def frame(self):
        """One row per outcome; ``chains`` names each chain with its table
        (``nat:PREROUTING > nat:KUBE-SERVICES > … > filter:KUBE-SERVICES``)."""
        import pandas as pd
        rows = []
        for i, o in enumerate(self.outcomes):
            rows.append({
                "outcome": i, "verdict": o.verdict, "destination": o.destination,
                "masquerade": o.masquerade, "probability": float(o.probability),
                "nominal": str(o.nominal), "marked": hex(o.marked),
                "conditions": "; ".join(o.conditions), "unknown": "; ".join(o.unknown),
                "chains": " > ".join(o.table_chains), "hops": len(o.hops),
            })
        columns = ["outcome", "verdict", "destination", "masquerade", "probability", "nominal",
                   "marked", "conditions", "unknown", "chains", "hops"]
        return pd.DataFrame(rows, columns=columns)

    def hops_frame(self, i: int = 0):
        """The hops of outcome ``i``, one row each; ``lineno`` (the rule's line in the dump) is an
        integer column that is empty (<NA>) for hops without a rule (a policy, the routing decision)."""
        import pandas as pd
        o = self.outcomes[i]
        rows = [{"hook": h.hook, "table": h.table, "chain": h.chain, "position": h.position,
                 "action": h.action, "rule": h.line,
                 "lineno": h.rule.lineno if h.rule is not None else None} for h in o.hops]
        df = pd.DataFrame(rows, columns=["hook", "table", "chain", "position", "action", "rule", "lineno"])
        df["lineno"] = df["lineno"].astype("Int64")
        return df

    def to_dict(self) -> dict[str, Any]:
        p = self.packet
        return {
            "packet": {"src": p.src, "dst": p.dst, "dport": p.dport, "proto": p.proto,
                       "sport": p.sport, "in_interface": p.in_interface,
                       "out_interface": p.out_interface, "mark": hex(p.mark)},
            "local_ips": sorted(self.node.local_ips),
            "synthesized_jumps": self.synthesized,
            "warnings": list(self.warnings),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    def text(self, hops: bool = True, warnings: bool = True) -> str:
        """A plain-text report: the outcomes table, then each outcome's hops."""
        p = self.packet
        lines = [f"{p.proto} {p.src}:{p.sport} -> {p.dst}:{p.dport}"
                 + (f" (local IPs: {', '.join(sorted(self.node.local_ips))})" if self.node.local_ips
                    else " (no local IPs given)")]
        if warnings:
            lines += [f"warning: {w}" for w in self.warnings]
        if self.synthesized:
            lines.append("note: a kube-proxy fragment; kube-proxy's jump rules were synthesized")
        header = ("#", "verdict", "destination", "masq", "probability", "conditions")
        table = [header]
        for i, o in enumerate(self.outcomes):
            table.append((str(i), o.verdict, o.destination or "-", "yes" if o.masquerade else "no",
                          f"{o.nominal} ({float(o.probability):.6f})",
                          "; ".join(o.conditions + o.unknown) or "-"))
        widths = [max(len(r[c]) for r in table) for c in range(len(header))]
        for r in table:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if self.facts:
            lines.append("(probabilities hold where the outcome's conditions do; under each assignment "
                         "of the conditions, the outcomes that hold sum to 1)")
        if hops:
            for i, o in enumerate(self.outcomes):
                lines.append("")
                lines.append(f"outcome {i}: {o.verdict}"
                             + (f" -> {o.destination}" if o.destination else ""))
                if o.paths > 1:
                    shown = "; ".join(condition_text(f, v) for f, v in o.path_assumptions)
                    lines.append(f"  ({o.paths} paths end this way; the hops of one"
                                 + (f", where {shown}" if shown else "") + ")")
                for h in o.hops:
                    where = f"{h.hook:<11} {h.table:<8} {h.chain}"
                    if h.position:
                        where += f"#{h.position}"
                    lines.append(f"  {where:<48} {h.action}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()
