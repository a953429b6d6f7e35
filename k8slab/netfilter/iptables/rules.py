"""The typed currency of the netfilter core: one parsed rule, one chain, one ruleset.

The parser (:mod:`k8slab.netfilter.parser`) produces these; the tracer
(:mod:`k8slab.netfilter.tracer`) and the pandas views (:mod:`k8slab.netfilter.views`) read them.
Nothing here runs a command.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

TABLES = ("raw", "mangle", "nat", "filter", "security")
BUILTIN_CHAINS = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
#: Targets that are not chains (extension targets, plus the standard verdicts).
STANDARD_TARGETS = frozenset({
    "ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "NFQUEUE", "DNAT", "SNAT", "MASQUERADE", "REDIRECT",
    "MARK", "CONNMARK", "LOG", "NFLOG", "ULOG", "TRACE", "CT", "NOTRACK", "TCPMSS", "TPROXY", "CHECKSUM",
    "CLASSIFY", "DSCP", "TOS", "TTL", "HL", "AUDIT", "SET", "NETMAP", "CLUSTERIP", "SECMARK",
    "CONNSECMARK", "IDLETIMER", "LED", "RATEEST", "SYNPROXY", "TEE", "HMARK", "NFACCT",
})


@dataclass(frozen=True, slots=True)
class Option:
    """One ``[!] --name value...`` of a match or a target. ``values`` may be empty (``--rcheck``)."""
    name: str
    values: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str | None:
        return " ".join(self.values) if self.values else None


@dataclass(frozen=True, slots=True)
class Match:
    """One ``-m module`` with its options, in the order they were written."""
    module: str
    options: tuple[Option, ...] = ()

    def get(self, name: str) -> Option | None:
        for opt in self.options:
            if opt.name == name:
                return opt
        return None


@dataclass(frozen=True, slots=True)
class Addr:
    """An IP-header field: ``-s``/``-d`` CIDR, ``-p`` protocol, ``-i``/``-o`` interface."""
    value: str
    negated: bool = False


@dataclass(slots=True)
class Rule:
    """One ``-A`` line. ``position`` is 1-based within its chain; ``lineno`` is the line in the input."""
    table: str
    chain: str
    position: int
    source: Addr | None = None
    destination: Addr | None = None
    protocol: Addr | None = None
    in_interface: Addr | None = None
    out_interface: Addr | None = None
    fragment: bool | None = None          # -f / ! -f
    matches: tuple[Match, ...] = ()
    target: str | None = None             # None: no -j (the rule only counts)
    goto: bool = False                    # -g instead of -j
    target_options: tuple[Option, ...] = ()
    packets: int | None = None            # from a "[pkts:bytes]" prefix (iptables-save -c)
    bytes: int | None = None
    line: str = ""
    lineno: int = 0

    def match(self, module: str) -> Match | None:
        for m in self.matches:
            if m.module == module:
                return m
        return None

    def option(self, module: str, name: str) -> Option | None:
        """First option ``name`` of a match ``module`` (e.g. ``option("tcp", "--dport")``)."""
        for m in self.matches:
            if m.module == module:
                opt = m.get(name)
                if opt is not None:
                    return opt
        return None

    def target_option(self, name: str) -> Option | None:
        for opt in self.target_options:
            if opt.name == name:
                return opt
        return None

    @property
    def comment(self) -> str | None:
        opt = self.option("comment", "--comment")
        return opt.value if opt is not None else None

    @property
    def jumps_to_chain(self) -> bool:
        return self.target is not None and self.target not in STANDARD_TARGETS


@dataclass(slots=True)
class Chain:
    table: str
    name: str
    policy: str | None = None             # ACCEPT/DROP for built-ins; None for user chains ("-")
    packets: int | None = None
    bytes: int | None = None
    rules: list[Rule] = field(default_factory=list)
    declared: bool = True                 # False: only referenced (e.g. by a jump), never declared

    @property
    def builtin(self) -> bool:
        return self.name in BUILTIN_CHAINS.get(self.table, ())


@dataclass
class Ruleset:
    """All tables of one dump. ``tables[table][chain]`` is a :class:`Chain` with its rules in order.

    The pandas views are ``rules`` and ``chains`` (see :mod:`k8slab.netfilter.views`), built on first
    use and cached.
    """
    tables: dict[str, dict[str, Chain]] = field(default_factory=dict)
    header: str | None = None
    warnings: list[str] = field(default_factory=list)
    source: str | None = None             # file name or "<stdin>", for messages
    fragment: bool = False                # kube-proxy restore input with no built-in chains
    _views: dict = field(default_factory=dict, repr=False, compare=False)

    def chain(self, table: str, name: str) -> Chain | None:
        return self.tables.get(table, {}).get(name)

    def iter_rules(self) -> Iterator[Rule]:
        for chains in self.tables.values():
            for chain in chains.values():
                yield from chain.rules

    @property
    def rule_count(self) -> int:
        return sum(len(c.rules) for chains in self.tables.values() for c in chains.values())

    @property
    def chain_count(self) -> int:
        return sum(len(chains) for chains in self.tables.values())

    # The views live in views.py so that this module stays free of pandas.
    @property
    def rules(self):
        from .views import rules_frame
        if "rules" not in self._views:
            self._views["rules"] = rules_frame(self)
        return self._views["rules"]

    @property
    def chains(self):
        from .views import chains_frame
        if "chains" not in self._views:
            self._views["chains"] = chains_frame(self)
        return self._views["chains"]
