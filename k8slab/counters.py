"""Rule packet counters: keep them (for the sim), and compare two ``iptables-save -c`` snapshots.

Two small pieces, both pure:

* :class:`CounterStore` is what the sim backend uses to play the kernel's part: it remembers
  packets/bytes per rule (keyed by table, chain and the rule's text, so a rule keeps its counter
  when kube-proxy rewrites the chain around it) and writes them into a rendered dump.
* :func:`counter_delta` compares two parsed snapshots and returns the rules whose packet counter rose:
  the frame :meth:`k8slab.lab.Lab.counters` shows.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

#: ``[pkts:bytes]`` in front of a rule (iptables-save -c) or at the end of a chain line.
_COUNTER_PREFIX = re.compile(r"^\[\d+:\d+\]\s+")

RuleKey = tuple[str, str, str, int]   # table, chain, rule text without counters, occurrence


def strip_counters(line: str) -> str:
    """The rule line without a leading ``[pkts:bytes]``."""
    return _COUNTER_PREFIX.sub("", line, count=1)


def walk_rules(text: str) -> Iterator[tuple[int, str, str, int, RuleKey]]:
    """For every ``-A`` line of a dump: (line index, table, chain, 1-based position, key)."""
    table = ""
    positions: dict[tuple[str, str], int] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for i, raw in enumerate(text.splitlines()):
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        body = strip_counters(line)
        if not body.startswith("-A "):
            continue
        chain = body.split(None, 2)[1]
        pos = positions.get((table, chain), 0) + 1
        positions[(table, chain)] = pos
        n = seen.get((table, chain, body), 0)
        seen[(table, chain, body)] = n + 1
        yield i, table, chain, pos, (table, chain, body, n)


@dataclass(frozen=True)
class Layout:
    """Where the rules of one dump are: its lines, and (line index, counter key, rule text) per rule."""
    lines: tuple[str, ...]
    rules: tuple[tuple[int, RuleKey, str], ...]
    positions: dict                       # (table, chain, position) -> counter key
    trailing_newline: bool

    @classmethod
    def of(cls, text: str) -> "Layout":
        lines = text.splitlines()
        rules = []
        positions = {}
        for i, table, chain, pos, key in walk_rules(text):
            rules.append((i, key, key[2]))
            positions[(table, chain, pos)] = key
        return cls(tuple(lines), tuple(rules), positions, text.endswith("\n"))


@dataclass
class CounterStore:
    """Packet and byte counters the sim keeps per rule, as the kernel would."""
    packets: dict[RuleKey, int] = field(default_factory=dict)
    bytes: dict[RuleKey, int] = field(default_factory=dict)

    def add(self, key: RuleKey, packets: int = 1, nbytes: int = 60) -> None:
        self.packets[key] = self.packets.get(key, 0) + packets
        self.bytes[key] = self.bytes.get(key, 0) + nbytes
        self.generation += 1

    generation: int = 0                   # bumped on every change, for callers that cache renders

    def render(self, text: str, layout: "Layout | None" = None) -> str:
        """``text`` (a dump, with or without counters) with every rule prefixed by its counters.
        Pass the text's :class:`Layout` (computed once per text) to skip re-reading it."""
        layout = layout or Layout.of(text)
        lines = list(layout.lines)
        packets, nbytes = self.packets, self.bytes
        for i, key, body in layout.rules:
            lines[i] = f"[{packets.get(key, 0)}:{nbytes.get(key, 0)}] {body}"
        return "\n".join(lines) + ("\n" if layout.trailing_newline else "")

    def clear(self) -> None:
        self.packets.clear()
        self.bytes.clear()
        self.generation += 1

    def snapshot(self) -> dict[RuleKey, int]:
        return dict(self.packets)


def index_positions(text: str) -> dict[tuple[str, str, int], RuleKey]:
    """(table, chain, position) -> key, for turning a tracer hop into a counter key."""
    return {(t, c, p): key for _i, t, c, p, key in walk_rules(text)}


COUNTER_COLUMNS = ["table", "chain", "position", "owner", "comment", "target", "packets_delta",
                   "bytes_delta", "rule"]


def _rule_items(ruleset) -> Iterable[tuple[tuple[str, str, str, int], object]]:
    seen: dict[tuple[str, str, str], int] = {}
    for rule in ruleset.iter_rules():
        body = strip_counters(rule.line.strip()) if rule.line else f"-A {rule.chain} #{rule.position}"
        n = seen.get((rule.table, rule.chain, body), 0)
        seen[(rule.table, rule.chain, body)] = n + 1
        yield (rule.table, rule.chain, body, n), rule


def counter_delta(before, after, owner_of=None):
    """DataFrame of the rules of ``after`` whose packet counter rose since ``before`` (two Rulesets
    parsed from ``iptables-save -c``). Rules are matched by table, chain and text, so a chain that
    was rewritten in between does not produce false movement."""
    import pandas as pd
    old = {key: rule for key, rule in _rule_items(before)}
    rows = []
    for key, rule in _rule_items(after):
        prev = old.get(key)
        p0 = (prev.packets or 0) if prev is not None else 0
        b0 = (prev.bytes or 0) if prev is not None else 0
        dp = (rule.packets or 0) - p0
        if dp <= 0:
            continue
        rows.append({
            "table": rule.table, "chain": rule.chain, "position": rule.position,
            "owner": owner_of(rule.table, rule.chain) if owner_of else "",
            "comment": rule.comment or "", "target": rule.target or "",
            "packets_delta": dp, "bytes_delta": (rule.bytes or 0) - b0, "rule": key[2],
        })
    return pd.DataFrame(rows, columns=COUNTER_COLUMNS)
