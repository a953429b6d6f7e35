"""Checks of a merged trace against the kernel-independent truth: its own unmerged paths.

``check_worlds(trace)``: under every possible assignment of the facts the outcomes' conditions name,
the outcomes that hold have exact probabilities summing to 1.

``check_against_paths(trace)``: under every possible assignment of *every* fact the walk assumed
(conditions merged away included), the merged outcomes give each effect exactly the probability the
walk's own paths give it (and those sum to 1). This is what makes "a condition stays only where it
changes the effect" safe: dropping one never changes any world's distribution.
"""
from __future__ import annotations

import itertools
from fractions import Fraction

from k8slab.netfilter.tracer.matches import possible

MAX_FACTS = 14


def _effect(o) -> tuple:
    return (o.verdict, o.destination, o.masquerade, o.source, o.marked)


def check_worlds(t) -> int:
    """Returns the number of worlds checked."""
    worlds = t.worlds()
    assert worlds, "no world at all"
    for key, outcomes in worlds.items():
        assert outcomes, f"no outcome holds where {key}"
        assert sum((o.probability for o in outcomes), Fraction(0)) == 1, (key, t.text(hops=False))
    # conditions name only facts of the trace, and never two values of one fact
    for o in t.outcomes:
        facts = [f for f, _ in o.assumptions]
        assert len(set(facts)) == len(facts) and set(facts) <= set(t.facts)
        assert possible(dict(o.assumptions)), o.conditions
        assert o.conditions == [f"assumed {'true' if v else 'false'}: {f}" for f, v in o.assumptions]
    return len(worlds)


def check_against_paths(t) -> int:
    facts: list[str] = []
    for p in t.paths:
        for f, _ in p.assumptions:
            if f not in facts:
                facts.append(f)
    assert len(facts) <= MAX_FACTS, facts
    n = 0
    for values in itertools.product((False, True), repeat=len(facts)):
        world = dict(zip(facts, values))
        if not possible(world):
            continue
        n += 1
        raw: dict[tuple, Fraction] = {}
        for p in t.paths:
            if all(world[f] == v for f, v in p.assumptions):
                raw[_effect(p)] = raw.get(_effect(p), Fraction(0)) + p.probability
        merged: dict[tuple, Fraction] = {}
        for o in t.outcomes:
            if o.applies(world):
                merged[_effect(o)] = merged.get(_effect(o), Fraction(0)) + o.probability
        assert sum(raw.values()) == 1, (world, raw)
        assert merged == raw, (world, raw, merged)
    return n
