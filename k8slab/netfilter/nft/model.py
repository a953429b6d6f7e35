"""One model for nft's three forms: tables (family, name), their sets/maps with elements, their chains
(hook, type, priority, policy) and rules (the expression text, the verdict, comment, counters).

Rule expressions are kept as nft's own words (``ip daddr . meta l4proto . th dport vmap @service-ips``):
the listing form the kernel prints back is :func:`k8slab.netfilter.nft.listing.canonical`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")

#: nft's standard priority names (nftables src/rule.c std_prios) and the hooks each may name.
STD_PRIOS = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_VERDICT = re.compile(r"(?:^|\s)(accept|drop|return|continue|queue|reject(?:\s+with\s+\S+(?:\s+\S+)?)?|"
                      r"(?:jump|goto)\s+\S+|dnat\s+to\s+\S+|snat\s+to\s+\S+|masquerade(?:\s+[\w,-]+)*|"
                      r"redirect(?:\s+to\s+\S+)?|vmap\s+(?:@\S+|\{.*\}))\s*$")


@dataclass
class Element:
    key: str                     # "172.30.0.41 . tcp . 80"
    value: str | None = None     # "goto service-..." for maps
    comment: str | None = None


@dataclass
class Set:
    family: str
    table: str
    name: str
    type: str                    # "ipv4_addr . inet_proto . inet_service" (the key type)
    map_type: str | None = None  # "verdict" for a vmap, None for a set
    flags: tuple[str, ...] = ()
    timeout: str | None = None
    size: int | None = None
    comment: str | None = None
    elements: list[Element] = field(default_factory=list)
    lineno: int = 0

    @property
    def is_map(self) -> bool:
        return self.map_type is not None


@dataclass
class Rule:
    family: str
    table: str
    chain: str
    expr: str                    # without the trailing comment and handle
    comment: str | None = None
    packets: int | None = None
    bytes: int | None = None
    handle: int | None = None
    lineno: int = 0

    @property
    def line(self) -> str:
        """The rule as ``nft list`` prints it (what a trace hop shows)."""
        from .listing import canonical
        return canonical(self.expr) + (f' comment "{self.comment}"' if self.comment else "")

    @property
    def verdict(self) -> str:
        """The statement that decides: ``jump X``, ``goto X``, ``dnat to A:P``, ``vmap @m``, ``drop`` ... or ''."""
        m = _VERDICT.search(self.expr)
        return m.group(1) if m else ""

    @property
    def target(self) -> str | None:
        """The chain a ``jump``/``goto`` names (as the iptables Rule's ``target``), else None."""
        v = self.verdict.split()
        return v[1] if len(v) == 2 and v[0] in ("jump", "goto") else None

    @property
    def matches(self) -> str:
        v = self.verdict
        text = self.expr[: len(self.expr) - len(v)].rstrip() if v and self.expr.endswith(v) else self.expr
        return re.sub(r"\s*\bcounter(?:\s+packets\s+\d+\s+bytes\s+\d+)?", "", text).strip()


@dataclass
class Chain:
    family: str
    table: str
    name: str
    type: str | None = None      # filter / nat / route, None for a regular chain
    hook: str | None = None
    priority: int | None = None
    policy: str | None = None
    device: str | None = None
    comment: str | None = None
    rules: list[Rule] = field(default_factory=list)
    lineno: int = 0

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass
class Table:
    family: str
    name: str
    comment: str | None = None
    flags: tuple[str, ...] = ()
    sets: dict[str, Set] = field(default_factory=dict)
    chains: dict[str, Chain] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.family, self.name)


@dataclass
class NftRuleset:
    tables: list[Table] = field(default_factory=list)
    source: str = ""             # "transaction" | "ruleset" | "json"

    def table(self, family: str, name: str) -> Table | None:
        for t in self.tables:
            if t.family == family and t.name == name:
                return t
        return None

    def chain(self, family: str, table: str, name: str) -> Chain | None:
        t = self.table(family, table)
        return t.chains.get(name) if t else None

    def base_chains(self, hook: str | None = None) -> list[Chain]:
        """Base chains (of one hook), in the order the kernel runs them: by priority."""
        out = [c for t in self.tables for c in t.chains.values() if c.is_base and (hook is None or c.hook == hook)]
        return sorted(out, key=lambda c: c.priority or 0)

    def rules(self):
        for t in self.tables:
            for c in t.chains.values():
                yield from c.rules


def parse_priority(text: str, where: str = "") -> int:
    """``-110``, ``dstnat``, ``dstnat - 10``, ``filter + 5`` -> an integer."""
    t = text.strip()
    m = re.fullmatch(r"(-?\d+)", t)
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"([a-z]+)\s*(?:([+-])\s*(\d+))?", t)
    if not m or m.group(1) not in STD_PRIOS:
        raise ValueError(f"{where}bad chain priority {text!r}")
    base = STD_PRIOS[m.group(1)]
    off = int(m.group(3) or 0)
    return base + off if m.group(2) != "-" else base - off


def _frames():
    from . import views
    return views


NftRuleset.rules_frame = property(lambda self: _frames().rules_frame(self))      # type: ignore[attr-defined]
NftRuleset.chains_frame = property(lambda self: _frames().chains_frame(self))    # type: ignore[attr-defined]
NftRuleset.sets_frame = property(lambda self: _frames().sets_frame(self))        # type: ignore[attr-defined]
NftRuleset.elements_frame = property(lambda self: _frames().elements_frame(self))  # type: ignore[attr-defined]
