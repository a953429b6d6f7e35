"""From the walk's paths to one outcome per effect.

The walk is a decision tree: at a fact it could not decide it follows both values, at a probability
both branches with their weights. Each path ends with an effect (:func:`effect_key`), the facts it
assumed (a conjunction) and its probability. For any possible assignment of the facts, the paths
consistent with it are exactly one world's, and their probabilities sum to 1.

Merging keeps that property and drops every condition that does not change the effect. For each
effect, the function "world -> probability of this effect" is reduced like an ordered decision
diagram over the *variables* of the trace, in the order the walk first met them: each fact that is
free (affinity, an address being local, an unknown match) is a yes/no variable; the in-interface and
the out-interface are one variable each, whose values are the names (or name patterns) the rules
spell, plus "any other name". A variable is tested only where its values give different
sub-functions; values giving the same sub-function are grouped, and a group is written as the
fewest conditions that select it ("assumed false: in-interface virbr0" for every name but virbr0).
Each path of the reduced diagram to a non-zero probability is one outcome. An effect reached the same
way in every world becomes one outcome with no condition.
"""
from __future__ import annotations

from fractions import Fraction

from .matches import iface_matches
from .outcomes import Outcome, condition_text

#: Recursion steps per trace before merging gives up on minimising and keeps one row per set of
#: assumptions (still exact; only less compact). Far above anything a real dump needs.
MAX_STEPS = 200_000

_IFACE = ("in-interface ", "out-interface ")


def effect_key(o: Outcome) -> tuple:
    """How a path ends: verdict, destination, masquerade, SNAT source, final mark, and the notes that
    are not about a fact (a target the tracer did not understand, a DNAT range)."""
    return (o.verdict, o.destination, o.masquerade, o.source, o.marked, tuple(o.unknown))


class _Budget(Exception):
    pass


class _Var:
    """A variable of the diagram: a yes/no fact, or an interface (values: atoms, i.e. names)."""
    __slots__ = ("key", "facts", "values", "vectors")

    def __init__(self, key, facts: list[str]):
        self.key = key
        self.facts = facts                      # the facts it decides, in walk order
        if key[0] == "fact":
            self.values = (True, False)
            self.vectors = {True: (True,), False: (False,)}
            return
        specs = [f.split(" ", 1)[1] for f in facts]
        names = [s for s in specs if not s.endswith("+")]
        names += [s[:-1] + "\x00" for s in specs if s.endswith("+")] + ["\x00"]
        vectors: dict[str, tuple[bool, ...]] = {}
        seen: set[tuple[bool, ...]] = set()
        for name in names:
            vec = tuple(iface_matches(s, name) for s in specs)
            if vec not in seen:
                seen.add(vec)
                vectors[name] = vec
        self.values = tuple(vectors)
        self.vectors = vectors

    def allowed(self, literals: dict[str, bool]) -> frozenset:
        """The values consistent with ``literals`` (fact -> value) on this variable's facts."""
        pos = [(j, literals[f]) for j, f in enumerate(self.facts) if f in literals]
        return frozenset(v for v in self.values if all(self.vectors[v][j] == want for j, want in pos))

    def define(self, group: list) -> list[list[tuple[str, bool]]]:
        """Conditions selecting exactly ``group`` of this variable's values: one list, or one per
        value when no single conjunction selects the group."""
        if self.key[0] == "fact":
            return [[(self.facts[0], group[0])]]
        want = set(group)
        cands = [(j, v) for j in range(len(self.facts)) for v in (True, False)
                 if all(self.vectors[a][j] == v for a in group)]
        remaining = set(self.values)
        chosen: list[tuple[int, bool]] = []
        while remaining != want:
            best, gain = None, 0
            for j, v in cands:
                g = sum(1 for a in remaining if self.vectors[a][j] != v)
                if g > gain:
                    best, gain = (j, v), g
            if best is None:
                return [lit for a in group for lit in self.define([a])]
            chosen.append(best)
            remaining = {a for a in remaining if self.vectors[a][best[0]] == best[1]}
        chosen.sort()
        return [[(self.facts[j], v) for j, v in chosen]]


def _var_key(fact: str):
    for prefix in _IFACE:
        if fact.startswith(prefix):
            return ("iface", prefix)
    return ("fact", fact)


def merge(paths: list[Outcome], fact_notes: dict[str, str]) -> tuple[list[Outcome], tuple[str, ...]]:
    """The merged outcomes (in rule order) and the facts their conditions name (in walk order).

    ``paths`` carry their effect, ``probability`` and ``assumptions``; their ``unknown`` holds only
    the notes that are not about a fact. ``fact_notes`` maps a fact to its "unknown: ..." note."""
    order: dict[str, int] = {}
    var_facts: dict[tuple, list[str]] = {}
    for p in paths:
        for fact, _ in p.assumptions:
            if fact not in order:
                order[fact] = len(order)
                var_facts.setdefault(_var_key(fact), []).append(fact)
    variables = [_Var(key, facts) for key, facts in var_facts.items()]
    # each path as {variable index: the values it allows}
    constraints = []
    for p in paths:
        lits = dict(p.assumptions)
        constraints.append({k: var.allowed(lits) for k, var in enumerate(variables)
                            if any(f in lits for f in var.facts)})
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(effect_key(p), []).append(i)

    steps = [0]

    def reduce(idx: list[int], fixed: dict[int, object]) -> tuple:
        steps[0] += 1
        if steps[0] > MAX_STEPS:
            raise _Budget
        cons = [i for i in idx if all(fixed[k] in allowed for k, allowed in constraints[i].items()
                                      if k in fixed)]
        if not cons:
            return ()
        free = [k for i in cons for k in constraints[i] if k not in fixed]
        if not free:
            total = sum((paths[i].probability for i in cons), Fraction(0))
            return (((), total),) if total else ()
        k = min(free)
        var = variables[k]
        by_result: dict[tuple, list] = {}
        for value in var.values:
            by_result.setdefault(reduce(cons, {**fixed, k: value}), []).append(value)
        if len(by_result) == 1:
            return next(iter(by_result))
        rows = []
        for result, values in by_result.items():
            for lits in var.define(values):
                rows += [(tuple(lits) + cube, prob) for cube, prob in result]
        return tuple(rows)

    rows: list[tuple[tuple, Fraction, list[int]]] = []
    try:
        for idx in groups.values():
            for cube, prob in reduce(idx, {}):
                rows.append((cube, prob, idx))
    except _Budget:
        rows = []
        for idx in groups.values():
            by_cube: dict[tuple, Fraction] = {}
            for i in idx:
                key = tuple(sorted(paths[i].assumptions, key=lambda fv: order[fv[0]]))
                by_cube[key] = by_cube.get(key, Fraction(0)) + paths[i].probability
            rows += [(cube, prob, idx) for cube, prob in by_cube.items()]

    out: list[tuple[int, Outcome]] = []
    for cube, prob, idx in rows:
        cube = tuple(sorted(cube, key=lambda fv: order[fv[0]]))
        lits = dict(cube)
        region = {k: var.allowed(lits) for k, var in enumerate(variables)
                  if any(f in lits for f in var.facts)}
        members = [i for i in idx if all(allowed & region[k] for k, allowed in constraints[i].items()
                                         if k in region)]
        # the path drawn: the one assuming the fewest facts true, first in rule order
        rep = min(members, key=lambda i: (sum(v for _f, v in paths[i].assumptions), i))
        p = paths[rep]
        notes = [fact_notes[f] for f, _ in cube if f in fact_notes]
        unknown = list(dict.fromkeys(notes + list(p.unknown)))
        out.append((min(members), Outcome(
            verdict=p.verdict, destination=p.destination, masquerade=p.masquerade, probability=prob,
            hops=p.hops, conditions=[condition_text(f, v) for f, v in cube], unknown=unknown,
            marked=p.marked, source=p.source, assumptions=cube, paths=len(members),
            path_assumptions=p.assumptions)))
    out.sort(key=lambda item: item[0])
    used = {f for _, o in out for f, _ in o.assumptions}
    return [o for _, o in out], tuple(f for f in order if f in used)
