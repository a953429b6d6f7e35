"""Follow one new connection through a parsed ruleset, the way netfilter would.

``trace(ruleset, packet, node)`` walks the first packet of a NEW TCP/UDP/SCTP connection through the
hooks it meets (PREROUTING or OUTPUT, the routing decision, INPUT or FORWARD, POSTROUTING), and at
each hook through the tables in kernel priority order (raw, mangle, nat, filter, security). It
returns every way the packet can end, with the exact probability of each.

Branching, in short:

* ``statistic --mode random`` is not guessed: both branches are followed. The weight of the "match"
  branch is the kernel's fixed point ``lround(p * 2**31) / 2**31``, so the probabilities of a trace
  are exact :class:`fractions.Fraction` values that sum to exactly 1. ``Outcome.nominal`` rounds
  them to the fraction a learner expects (1/3, not 715827883/2147483648).
* Facts the tracer cannot know (has this client been seen by ``-m recent``; which interface did the
  packet come in on when the packet does not say; what a ``physdev``/``set``/... match would answer)
  are *assumptions*. Each is followed both ways and written into ``Outcome.conditions``; unknown
  matches are also listed in ``Outcome.unknown``. An assumption carries no probability: the
  probabilities of an outcome are conditional on its assumptions, so the outcomes of each "world"
  (one set of assumptions, see :meth:`Trace.worlds`) sum to 1. The *baseline* world assumes every
  such fact is false: ``recent`` has never seen the client (what kube-proxy's own tests assume), the
  packet did not come from the named interface, the unknown match does not hold.
  :meth:`Trace.by_destination` sums the baseline world unless told otherwise.
* An assumption is made once per fact and then reused, so ``-i docker0 -j RETURN`` followed by
  ``! -i docker0 -j DNAT`` stays consistent.

A kube-proxy restore fragment (no built-in chains) is entered the way kube-proxy installs it: the
jump rules from the built-in chains are synthesized (see :data:`KUBE_PROXY_JUMPS`) without touching
the caller's Ruleset.

Speed: the ruleset is indexed lazily, per chain, and the index is cached on the Ruleset
(``ruleset._views``). Large chains of ``-d IP -p P --dport N`` rules are looked up by that triple;
every other rule is still scanned, in order, so first-match semantics are exact.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Callable, Iterable

from ..errors import TraceError
from .rules import Addr, Chain, Match, Option, Rule, Ruleset
from .names import JUMP_CHAINS, KUBELET_JUMP_CHAINS

__all__ = [
    "Packet", "NodeContext", "TraceHop", "Outcome", "Trace", "trace", "KUBE_PROXY_JUMPS",
    "MASQUERADE_MARK", "fixed_point_probability",
]

MASQUERADE_MARK = 0x4000
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58,
                  "esp": 50, "ah": 51, "gre": 47, "udplite": 136, "mh": 135, "dccp": 33}
_TWO31 = 1 << 31
_MARK_MAX = 0xFFFFFFFF
MAX_STATES = 20000          # followed branches before we give up (an explosion of unknowns)
SMALL_CHAIN = 24            # chains shorter than this are scanned without a dispatch index

# Tables met at each hook, in kernel priority order (raw -300, mangle -150, nat dst -100, filter 0,
# security 50, nat src 100).
_PREROUTING = ("raw", "mangle", "nat")
_INPUT = ("mangle", "filter", "security", "nat")
_FORWARD = ("mangle", "filter", "security")
_OUTPUT = ("raw", "mangle", "nat", "filter", "security")
_POSTROUTING = ("mangle", "nat")
# Loopback delivery of a packet made on the node for the node: it passes PREROUTING and INPUT
# again, but the nat table is skipped there because its NAT bindings were set up on the way out.
_LO_PREROUTING = ("raw", "mangle")
_LO_INPUT = ("mangle", "filter", "security")

_IN_HOOKS = {"PREROUTING", "INPUT", "FORWARD"}
_OUT_HOOKS = {"FORWARD", "OUTPUT", "POSTROUTING"}

#: The jump rules kube-proxy (and kubelet, for KUBE-FIREWALL) puts into the built-in chains, in the
#: order they end up in: kube-proxy prepends each of names.JUMP_CHAINS, so its list comes out
#: reversed; kubelet's own jumps were there first and stay last. (table, built-in chain, ctstate NEW?,
#: comment, target).
KUBE_PROXY_JUMPS: tuple[tuple[str, str, bool, str | None, str], ...] = tuple(
    (table, builtin, "NEW" in extra, comment or None, target)
    for table, target, builtin, comment, extra in (*reversed(JUMP_CHAINS), *KUBELET_JUMP_CHAINS))


# --------------------------------------------------------------------------------------------------
# Public types

@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection. ``mark`` is the skb mark it starts with."""
    src: str
    dst: str
    dport: int
    proto: str = "tcp"
    sport: int = 40000
    in_interface: str | None = None
    out_interface: str | None = None
    mark: int = 0


@dataclass(frozen=True)
class NodeContext:
    """What the node knows about itself: its local addresses (what ``addrtype LOCAL`` matches;
    127.0.0.0/8 and ::1 are always local), its pod CIDRs, its name."""
    local_ips: frozenset[str] = frozenset()
    pod_cidrs: tuple[str, ...] = ()
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.local_ips, frozenset):
            ips = [self.local_ips] if isinstance(self.local_ips, str) else self.local_ips
            object.__setattr__(self, "local_ips", frozenset(ips))
        if isinstance(self.pod_cidrs, str):
            object.__setattr__(self, "pod_cidrs", (self.pod_cidrs,))
        else:
            object.__setattr__(self, "pod_cidrs", tuple(self.pod_cidrs))


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
        return _rule_text(self.rule) if self.rule is not None else None


@dataclass
class Outcome:
    """One way the packet can end.

    ``probability`` is exact (kernel fixed point) and conditional on ``conditions`` (assumptions
    about facts the tracer cannot know); ``nominal`` is it rounded to a small-denominator fraction.
    ``masquerade`` is True iff a MASQUERADE or SNAT target was applied; ``marked`` is the final mark.
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
    assumptions: tuple[tuple[str, bool], ...] = ()   # (fact, assumed value), in the order made

    @property
    def nominal(self) -> Fraction:
        return self.probability.limit_denominator(1000)

    @property
    def baseline(self) -> bool:
        """True when every assumption of this outcome is "false" (the baseline world)."""
        return not any(value for _fact, value in self.assumptions)

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
            "hops": [{"hook": h.hook, "table": h.table, "chain": h.chain, "position": h.position,
                      "action": h.action, "rule": h.line} for h in self.hops],
        }


@dataclass
class Trace:
    """Every outcome of one packet through one ruleset."""
    packet: Packet
    node: NodeContext
    outcomes: list[Outcome]
    source: str | None = None
    synthesized: bool = False          # kube-proxy's jump rules were synthesized (a fragment)

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self):
        return iter(self.outcomes)

    def worlds(self) -> dict[tuple[str, ...], list[Outcome]]:
        """Outcomes grouped by their assumptions; the probabilities in each group sum to 1."""
        out: dict[tuple[str, ...], list[Outcome]] = {}
        for o in self.outcomes:
            out.setdefault(tuple(sorted(o.conditions)), []).append(o)
        return out

    def baseline(self) -> list[Outcome]:
        """The outcomes of the baseline world (every unknowable fact assumed false)."""
        return [o for o in self.outcomes if o.baseline]

    def by_destination(self, baseline: bool = True) -> dict[str | None, Fraction]:
        """{destination ("ip:port", None if not DNATed): summed probability}. By default only the
        baseline world counts, so the values sum to 1; ``baseline=False`` sums every outcome."""
        out: dict[str | None, Fraction] = {}
        for o in (self.baseline() if baseline else self.outcomes):
            out[o.destination] = out.get(o.destination, Fraction(0)) + o.probability
        return out

    def by_verdict(self, baseline: bool = True) -> dict[str, Fraction]:
        out: dict[str, Fraction] = {}
        for o in (self.baseline() if baseline else self.outcomes):
            out[o.verdict] = out.get(o.verdict, Fraction(0)) + o.probability
        return out

    @property
    def destinations(self) -> set[str | None]:
        return {o.destination for o in self.outcomes}

    def frame(self):
        """One row per outcome."""
        import pandas as pd
        rows = []
        for i, o in enumerate(self.outcomes):
            rows.append({
                "outcome": i, "verdict": o.verdict, "destination": o.destination,
                "masquerade": o.masquerade, "probability": float(o.probability),
                "nominal": str(o.nominal), "marked": hex(o.marked),
                "conditions": "; ".join(o.conditions), "unknown": "; ".join(o.unknown),
                "chains": " > ".join(o.chains), "hops": len(o.hops),
            })
        columns = ["outcome", "verdict", "destination", "masquerade", "probability", "nominal",
                   "marked", "conditions", "unknown", "chains", "hops"]
        return pd.DataFrame(rows, columns=columns)

    def hops_frame(self, i: int = 0):
        """The hops of outcome ``i``, one row each."""
        import pandas as pd
        o = self.outcomes[i]
        rows = [{"hook": h.hook, "table": h.table, "chain": h.chain, "position": h.position,
                 "action": h.action, "rule": h.line,
                 "lineno": h.rule.lineno if h.rule is not None else None} for h in o.hops]
        return pd.DataFrame(rows, columns=["hook", "table", "chain", "position", "action", "rule",
                                           "lineno"])

    def to_dict(self) -> dict[str, Any]:
        p = self.packet
        return {
            "packet": {"src": p.src, "dst": p.dst, "dport": p.dport, "proto": p.proto,
                       "sport": p.sport, "in_interface": p.in_interface,
                       "out_interface": p.out_interface, "mark": hex(p.mark)},
            "local_ips": sorted(self.node.local_ips),
            "synthesized_jumps": self.synthesized,
            "outcomes": [o.to_dict() for o in self.outcomes],
        }

    def text(self, hops: bool = True) -> str:
        """A plain-text report: the outcomes table, then each outcome's hops."""
        p = self.packet
        lines = [f"{p.proto} {p.src}:{p.sport} -> {p.dst}:{p.dport}"
                 + (f" (local IPs: {', '.join(sorted(self.node.local_ips))})" if self.node.local_ips
                    else " (no local IPs given)")]
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
        if hops:
            for i, o in enumerate(self.outcomes):
                lines.append("")
                lines.append(f"outcome {i}: {o.verdict}"
                             + (f" -> {o.destination}" if o.destination else ""))
                for h in o.hops:
                    where = f"{h.hook:<11} {h.table:<8} {h.chain}"
                    if h.position:
                        where += f"#{h.position}"
                    lines.append(f"  {where:<48} {h.action}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()


def fixed_point_probability(p: float | str) -> Fraction:
    """The probability the kernel really uses for ``statistic --probability p``: the value is stored
    as ``lround(p * 2**31)`` and compared with 31 random bits."""
    x = float(p)
    if not (0.0 <= x <= 1.0) or math.isnan(x):
        raise TraceError(f"statistic probability {p!r} is not between 0 and 1")
    return Fraction(math.floor(x * _TWO31 + 0.5), _TWO31)


# --------------------------------------------------------------------------------------------------
# Packet checks

def _check_ip(value: Any, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise TraceError(f"{what} {value!r} is not an IP address; give e.g. 10.96.0.10") from None


def _check_port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TraceError(f"{what} {value!r} is not a port number; give 1-65535") from None
    if isinstance(value, float) and value != port:
        raise TraceError(f"{what} {value!r} is not a port number; give 1-65535")
    if not 1 <= port <= 65535:
        raise TraceError(f"{what} {port} is out of range; give 1-65535")
    return port


def _check_packet(packet: Packet) -> Packet:
    if not isinstance(packet, Packet):
        raise TraceError(f"expected a Packet, got {type(packet).__name__}")
    src = _check_ip(packet.src, "source address")
    dst = _check_ip(packet.dst, "destination address")
    if src.version != dst.version:
        raise TraceError(f"source {src} and destination {dst} are not the same IP family")
    proto = str(packet.proto).lower()
    numbers = {"6": "tcp", "17": "udp", "132": "sctp"}
    proto = numbers.get(proto, proto)
    if proto not in PROTOCOLS:
        raise TraceError(f"protocol {packet.proto!r} is not traced; use tcp, udp or sctp")
    try:
        mark = int(packet.mark, 0) if isinstance(packet.mark, str) else int(packet.mark)
    except (TypeError, ValueError):
        raise TraceError(f"mark {packet.mark!r} is not a number") from None
    if not 0 <= mark <= _MARK_MAX:
        raise TraceError(f"mark {packet.mark!r} does not fit in 32 bits")
    return Packet(str(src), str(dst), _check_port(packet.dport, "destination port"), proto,
                  _check_port(packet.sport, "source port"), packet.in_interface or None,
                  packet.out_interface or None, mark)


def _node_context(node: Any) -> NodeContext:
    if node is None:
        ctx = NodeContext()
    elif isinstance(node, NodeContext):
        ctx = node
    elif isinstance(node, str):
        ctx = NodeContext(frozenset([node]))
    else:
        ctx = NodeContext(frozenset(node))
    ips = frozenset(str(_check_ip(ip, "local IP")) for ip in ctx.local_ips)
    return replace(ctx, local_ips=ips)


_LOOPBACK4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK6 = ipaddress.ip_address("::1")


def _is_local(ip, local: frozenset[str]) -> bool:
    if ip.version == 4:
        return ip in _LOOPBACK4 or str(ip) in local
    return ip == _LOOPBACK6 or str(ip) in local


# --------------------------------------------------------------------------------------------------
# The walker's state. One state per branch; copied when a branch splits.

class _Branch:
    """A condition the tracer cannot decide alone: a probability (``weight`` for "true") or a fact
    to assume (``fact``; weight None)."""
    __slots__ = ("weight", "fact", "module", "label")

    def __init__(self, weight: Fraction | None = None, fact: str | None = None,
                 module: str | None = None, label: str = ""):
        self.weight = weight
        self.fact = fact
        self.module = module      # set for matches the tracer cannot evaluate ("unknown: module")
        self.label = label


class _State:
    __slots__ = ("src", "dst", "src_ip", "dst_ip", "sport", "dport", "proto", "mark", "ctmark",
                 "orig_src", "orig_dst", "orig_sport", "orig_dport", "dnat", "snat", "masq",
                 "snat_source", "untracked", "hops", "prob", "conditions", "unknown", "facts",
                 "assumed", "steps", "step", "hook", "table", "stack", "in_if", "out_if", "recent_set",
                 "verdict")

    def copy(self) -> "_State":
        s = _State.__new__(_State)
        for name in _State.__slots__:
            setattr(s, name, getattr(self, name))
        s.hops = list(self.hops)
        s.conditions = list(self.conditions)
        s.unknown = list(self.unknown)
        s.facts = dict(self.facts)
        s.assumed = list(self.assumed)
        s.stack = list(self.stack)
        s.recent_set = set(self.recent_set)
        return s


# A stack frame is a tuple: (table, chain name, Chain, candidate positions, next index into the
# candidates, the path of chain names that led here (for loop detection)).


# --------------------------------------------------------------------------------------------------
# Helpers for rule fields

def _nets(value: str):
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            return None
    return out


def _port_ranges(text: str) -> list[tuple[int, int]] | None:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                lo, hi = part.split(":", 1)
                out.append((int(lo) if lo else 0, int(hi) if hi else 65535))
            elif "-" in part:     # nft-style range, tolerated
                lo, hi = part.split("-", 1)
                out.append((int(lo), int(hi)))
            else:
                out.append((int(part), int(part)))
        except ValueError:
            return None
    return out


def _in_ranges(port: int, ranges: list[tuple[int, int]]) -> bool:
    for lo, hi in ranges:
        if lo <= port <= hi:
            return True
    return False


def _int(text: str) -> int:
    return int(text, 0)


def _value_mask(text: str, default_mask: int = _MARK_MAX) -> tuple[int, int]:
    if "/" in text:
        v, m = text.split("/", 1)
        return _int(v), _int(m)
    return _int(text), default_mask


def _iface_matches(spec: str, name: str) -> bool:
    if spec.endswith("+"):
        return name.startswith(spec[:-1])
    return name == spec


def _opt_text(opt: Option) -> str:
    text = ("! " if opt.negated else "") + opt.name
    if opt.values:
        text += " " + " ".join(opt.values)
    return text


def _match_text(m: Match) -> str:
    return " ".join(["-m", m.module] + [_opt_text(o) for o in m.options])


def _rule_text(rule: Rule) -> str:
    if rule.line:
        line = rule.line.strip()
        if line.startswith("["):          # drop a "[pkts:bytes]" counter prefix
            end = line.find("]")
            if end > 0:
                line = line[end + 1:].strip()
        return line
    parts = ["-A", rule.chain]
    for flag, addr in (("-s", rule.source), ("-d", rule.destination), ("-i", rule.in_interface),
                       ("-o", rule.out_interface), ("-p", rule.protocol)):
        if addr is not None:
            parts += (["!"] if addr.negated else []) + [flag, addr.value]
    for m in rule.matches:
        parts.append(_match_text(m))
    if rule.target:
        parts += ["-g" if rule.goto else "-j", rule.target]
        parts += [_opt_text(o) for o in rule.target_options]
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# Compiling matches. A check is f(state, ctx) -> True | False | _Branch.

_Check = Callable[["_State", "_Ctx"], Any]


class _Ctx:
    __slots__ = ("local", "hook", "index")

    def __init__(self, local: frozenset[str], index: "_Index"):
        self.local = local
        self.hook = ""
        self.index = index


def _unknown(module: str, label: str, fact: str) -> _Check:
    branch = _Branch(None, fact, module, label)
    return lambda st, ctx: branch


def _flip(check: _Check) -> _Check:
    def neg(st, ctx):
        r = check(st, ctx)
        if isinstance(r, _Branch):
            return _Negated(r)
        return not r
    return neg


class _Negated(_Branch):
    """The same unknown fact, but the rule matches when it is false."""
    __slots__ = ("inner",)

    def __init__(self, inner: _Branch):
        super().__init__(None if inner.weight is None else 1 - inner.weight, inner.fact,
                         inner.module, inner.label)
        self.inner = inner


def _addr_check(addr, attr: str, flag: str) -> _Check:
    nets = _nets(addr.value)
    if nets is None:
        return _unknown(flag, f"{flag} {addr.value}", f"{flag} {addr.value}")
    neg = addr.negated

    if len(nets) == 1:
        net = nets[0]

        def check(st, ctx):
            ip = getattr(st, attr)
            return ((ip.version == net.version and ip in net) != neg)
        return check

    def check_many(st, ctx):
        ip = getattr(st, attr)
        return any(ip.version == n.version and ip in n for n in nets) != neg
    return check_many


def _proto_check(addr) -> _Check:
    value = addr.value.lower()
    neg = addr.negated
    if value in ("all", "0"):
        return lambda st, ctx: not neg
    number = _PROTO_NUMBERS.get(value)
    if number is None:
        try:
            number = int(value)
        except ValueError:
            return _unknown("-p", f"-p {value}", f"protocol {value}")
    return lambda st, ctx: (PROTOCOLS[st.proto] == number) != neg


def _iface_check(addr, direction: str) -> _Check:
    spec = addr.value
    neg = addr.negated
    flag = "-i" if direction == "in" else "-o"
    fact_prefix = "in-interface" if direction == "in" else "out-interface"
    hooks = _IN_HOOKS if direction == "in" else _OUT_HOOKS

    def check(st, ctx):
        if ctx.hook not in hooks:
            return neg                     # no such device at this hook: the name is empty
        name = st.in_if if direction == "in" else st.out_if
        if name is not None:
            return _iface_matches(spec, name) != neg
        # Not known: is there an assumption already about this direction?
        for fact, value in st.facts.items():
            if value and fact.startswith(fact_prefix + " ") and not fact.endswith("+"):
                return _iface_matches(spec, fact[len(fact_prefix) + 1:]) != neg
        branch = _Branch(None, f"{fact_prefix} {spec}", flag,
                         f"{flag} {spec} (the packet does not say its {direction} interface)")
        return _Negated(branch) if neg else branch
    return check


def _ports_check(module: str, opt: Option, which: str) -> _Check:
    ranges = _port_ranges(opt.value or "")
    if ranges is None:
        return _unknown(module, f"{module} {_opt_text(opt)}", f"{module} {_opt_text(opt)}")
    neg = opt.negated
    if which == "d":
        return lambda st, ctx: _in_ranges(st.dport, ranges) != neg
    if which == "s":
        return lambda st, ctx: _in_ranges(st.sport, ranges) != neg
    return lambda st, ctx: (_in_ranges(st.dport, ranges) or _in_ranges(st.sport, ranges)) != neg


_TCP_FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ECE": 64, "CWR": 128}


def _tcp_flag_bits(text: str) -> int:
    bits = 0
    for name in text.upper().split(","):
        if name == "ALL":
            bits |= 0xFF
        elif name == "NONE":
            pass
        else:
            bits |= _TCP_FLAGS[name]
    return bits


def _l4_match(m: Match) -> list[_Check]:
    module = m.module
    checks: list[_Check] = [lambda st, ctx: st.proto == module]
    for opt in m.options:
        name = opt.name
        if name in ("--dport", "--destination-port"):
            checks.append(_ports_check(module, opt, "d"))
        elif name in ("--sport", "--source-port"):
            checks.append(_ports_check(module, opt, "s"))
        elif module == "tcp" and name == "--syn":
            # The first packet of a new TCP connection is a SYN.
            checks.append(lambda st, ctx, neg=opt.negated: not neg)
        elif module == "tcp" and name == "--tcp-flags" and len(opt.values) == 2:
            try:
                mask, comp = _tcp_flag_bits(opt.values[0]), _tcp_flag_bits(opt.values[1])
            except KeyError:
                checks.append(_unknown(module, _match_text(m), _match_text(m)))
                continue
            hit = (_TCP_FLAGS["SYN"] & mask) == comp
            checks.append(lambda st, ctx, r=hit != opt.negated: r)
        else:
            checks.append(_unknown(module, f"{module} {_opt_text(opt)}", f"{module} {_opt_text(opt)}"))
    return checks


def _multiport(m: Match) -> list[_Check]:
    checks: list[_Check] = []
    for opt in m.options:
        if opt.name in ("--dports", "--destination-ports"):
            checks.append(_ports_check("multiport", opt, "d"))
        elif opt.name in ("--sports", "--source-ports"):
            checks.append(_ports_check("multiport", opt, "s"))
        elif opt.name == "--ports":
            checks.append(_ports_check("multiport", opt, "b"))
        else:
            checks.append(_unknown("multiport", _opt_text(opt), f"multiport {_opt_text(opt)}"))
    return checks


def _addrtype(m: Match) -> list[_Check]:
    checks: list[_Check] = []
    for opt in m.options:
        if opt.name not in ("--src-type", "--dst-type"):
            checks.append(_unknown("addrtype", f"addrtype {_opt_text(opt)}",
                                   f"addrtype {_opt_text(opt)}"))
            continue
        attr = "src_ip" if opt.name == "--src-type" else "dst_ip"
        types = [t.strip().upper() for t in (opt.value or "").split(",") if t.strip()]
        neg = opt.negated
        label = f"addrtype {opt.name} {opt.value}"

        def check(st, ctx, attr=attr, types=types, neg=neg, label=label):
            ip = getattr(st, attr)
            local = _is_local(ip, ctx.local)
            undecided = False
            for t in types:
                if t == "LOCAL":
                    r = local
                elif t == "MULTICAST":
                    r = ip.is_multicast
                elif t == "BROADCAST" and ip.version == 4 and str(ip) == "255.255.255.255":
                    r = True
                elif t == "UNSPEC":
                    r = ip.is_unspecified
                elif local and t in ("UNICAST", "BROADCAST", "ANYCAST", "BLACKHOLE", "UNREACHABLE",
                                     "PROHIBIT", "THROW", "NAT", "XRESOLVE"):
                    r = False          # a local address has route type LOCAL, nothing else
                else:
                    undecided = True
                    continue
                if r:
                    return not neg
            if undecided:
                branch = _Branch(None, f"{'src' if attr == 'src_ip' else 'dst'} {ip} is of type "
                                 + ",".join(t for t in types if t != "LOCAL"),
                                 "addrtype", label)
                return _Negated(branch) if neg else branch
            return neg
        checks.append(check)
    return checks


def _mark_match(m: Match, attr: str) -> list[_Check]:
    checks: list[_Check] = []
    for opt in m.options:
        if opt.name != "--mark":
            checks.append(_unknown(m.module, _opt_text(opt), f"{m.module} {_opt_text(opt)}"))
            continue
        try:
            v, mask = _value_mask(opt.value or "")
        except ValueError:
            checks.append(_unknown(m.module, _opt_text(opt), f"{m.module} {_opt_text(opt)}"))
            continue
        checks.append(lambda st, ctx, v=v, mask=mask, neg=opt.negated:
                      ((getattr(st, attr) & mask) == v) != neg)
    return checks


def _ct_states(st) -> set[str]:
    if st.untracked:
        return {"UNTRACKED"}
    states = {"NEW"}
    if st.dnat is not None:
        states.add("DNAT")
    if st.snat:
        states.add("SNAT")
    return states


def _conntrack(m: Match) -> list[_Check]:
    checks: list[_Check] = []
    module = m.module
    for opt in m.options:
        name, neg = opt.name, opt.negated
        values = [v.strip().upper() for v in (opt.value or "").split(",") if v.strip()]
        if name in ("--ctstate", "--state"):
            checks.append(lambda st, ctx, values=values, neg=neg:
                          bool(_ct_states(st).intersection(values)) != neg)
        elif module == "conntrack" and name == "--ctproto":
            checks.append(_proto_check(Addr(opt.value or "", neg)))
        elif module == "conntrack" and name in ("--ctorigsrc", "--ctorigdst", "--ctreplsrc",
                                                   "--ctrepldst"):
            nets = _nets(opt.value or "")
            if nets is None:
                checks.append(_unknown(module, _opt_text(opt), f"conntrack {_opt_text(opt)}"))
                continue
            attr = {"--ctorigsrc": "orig_src", "--ctorigdst": "orig_dst",
                    "--ctreplsrc": "dst_ip", "--ctrepldst": "orig_src"}[name]
            checks.append(lambda st, ctx, nets=nets, attr=attr, neg=neg: any(
                getattr(st, attr).version == n.version and getattr(st, attr) in n for n in nets) != neg)
        elif module == "conntrack" and name in ("--ctorigsrcport", "--ctorigdstport",
                                                   "--ctreplsrcport", "--ctrepldstport"):
            ranges = _port_ranges(opt.value or "")
            if ranges is None:
                checks.append(_unknown(module, _opt_text(opt), f"conntrack {_opt_text(opt)}"))
                continue
            attr = {"--ctorigsrcport": "orig_sport", "--ctorigdstport": "orig_dport",
                    "--ctreplsrcport": "dport", "--ctrepldstport": "orig_sport"}[name]
            checks.append(lambda st, ctx, r=ranges, attr=attr, neg=neg:
                          _in_ranges(getattr(st, attr), r) != neg)
        elif module == "conntrack" and name == "--ctstatus":
            # The first packet: not yet CONFIRMED, no reply seen, not ASSURED, not EXPECTED.
            checks.append(lambda st, ctx, neg=neg: neg)
        elif module == "conntrack" and name == "--ctdir":
            want = (opt.value or "").upper()
            checks.append(lambda st, ctx, r=(want == "ORIGINAL") != neg: r)
        else:
            checks.append(_unknown(module, _opt_text(opt), f"{module} {_opt_text(opt)}"))
    return checks


def _statistic(m: Match) -> list[_Check]:
    mode = m.get("--mode")
    mode_name = mode.value if mode is not None else "random"
    if mode_name == "random":
        opt = m.get("--probability")
        if opt is None:
            return [_unknown("statistic", _match_text(m), _match_text(m))]
        q = fixed_point_probability(opt.value or "0")
        if opt.negated:
            q = 1 - q
        label = f"random {opt.value}"
        if q == 1:
            return [lambda st, ctx: True]
        if q == 0:
            return [lambda st, ctx: False]
        branch = _Branch(q, None, None, label)
        return [lambda st, ctx: branch]
    if mode_name == "nth":
        neg = any(o.negated for o in m.options if o.name in ("--every", "--packet"))
        return _every_nth(m, "statistic", neg)
    return [_unknown("statistic", _match_text(m), _match_text(m))]


def _nth(m: Match) -> list[_Check]:
    return _every_nth(m, "nth", False)


def _every_nth(m: Match, module: str, negated: bool) -> list[_Check]:
    """``--every N`` (``statistic --mode nth`` or the old ``nth`` match): a branch taken by 1 packet in
    N (N-1 in N when negated)."""
    every = m.get("--every")
    try:
        n = int(every.value) if every is not None else 0
    except ValueError:
        n = 0
    if n < 1:
        return [_unknown(module, _match_text(m), _match_text(m))]
    q = Fraction(1, n)
    if negated:
        q = 1 - q
    if q in (0, 1):
        return [lambda st, ctx, r=q == 1: r]
    branch = _Branch(q, None, None, f"nth every {n}")
    return [lambda st, ctx: branch]


def _recent(m: Match) -> list[_Check]:
    name_opt = m.get("--name")
    name = name_opt.value if name_opt is not None else "DEFAULT"
    negated = any(o.negated for o in m.options)
    checking = next((o for o in m.options if o.name in ("--rcheck", "--update", "--remove")), None)
    if checking is None:
        if m.get("--set") is not None:
            # --set adds the address and always matches (the list is updated as a side effect).
            def set_check(st, ctx):
                st.recent_set.add(name)
                return not negated
            return [set_check]
        return [_unknown("recent", _match_text(m), _match_text(m))]
    fact = f"session affinity: client seen before ({name})"
    label = f"recent {checking.name} {name}"

    def check(st, ctx):
        if name in st.recent_set:        # --set earlier in this very packet's walk
            return not negated
        branch = _Branch(None, fact, None, label)
        return _Negated(branch) if negated else branch
    return [check]


def _iprange(m: Match) -> list[_Check]:
    checks: list[_Check] = []
    for opt in m.options:
        attr = {"--src-range": "src_ip", "--dst-range": "dst_ip"}.get(opt.name)
        if attr is None or "-" not in (opt.value or ""):
            checks.append(_unknown("iprange", _opt_text(opt), f"iprange {_opt_text(opt)}"))
            continue
        lo, hi = (ipaddress.ip_address(x) for x in opt.value.split("-", 1))
        checks.append(lambda st, ctx, lo=lo, hi=hi, attr=attr, neg=opt.negated:
                      (getattr(st, attr).version == lo.version and lo <= getattr(st, attr) <= hi) != neg)
    return checks


_ALWAYS = frozenset({"comment", "nfacct"})


def _compile_match(m: Match) -> list[_Check]:
    module = m.module
    if module in _ALWAYS:
        return []
    if module in ("tcp", "udp", "sctp"):
        return _l4_match(m)
    if module == "multiport":
        return _multiport(m)
    if module == "addrtype":
        return _addrtype(m)
    if module == "mark":
        return _mark_match(m, "mark")
    if module == "connmark":
        return _mark_match(m, "ctmark")
    if module in ("conntrack", "state"):
        return _conntrack(m)
    if module == "statistic":
        return _statistic(m)
    if module == "nth":
        return _nth(m)
    if module == "recent":
        return _recent(m)
    if module == "iprange":
        return _iprange(m)
    if module in ("icmp", "icmp6", "icmpv6"):
        return [lambda st, ctx: False]          # our packets are TCP/UDP/SCTP
    # physdev, set, mac, owner, socket, limit, hashlimit, connlimit, length, pkttype, policy, ...
    text = _match_text(m)
    opts = m.options
    if len(opts) == 1 and opts[0].negated:
        # Key the assumption on the positive form so "--x" and "! --x" stay consistent.
        positive = Match(module, (Option(opts[0].name, opts[0].values, False),))
        return [_flip(_unknown(module, _match_text(positive), _match_text(positive)))]
    return [_unknown(module, text, text)]


class _Compiled:
    __slots__ = ("checks",)

    def __init__(self, rule: Rule):
        checks: list[_Check] = []
        # Cheap header fields first; all checks are ANDed (the order only matters for branches,
        # which are always taken in the rule's own match order below).
        if rule.protocol is not None:
            checks.append(_proto_check(rule.protocol))
        if rule.destination is not None:
            checks.append(_addr_check(rule.destination, "dst_ip", "-d"))
        if rule.source is not None:
            checks.append(_addr_check(rule.source, "src_ip", "-s"))
        if rule.in_interface is not None:
            checks.append(_iface_check(rule.in_interface, "in"))
        if rule.out_interface is not None:
            checks.append(_iface_check(rule.out_interface, "out"))
        if rule.fragment is not None:
            checks.append(lambda st, ctx, f=rule.fragment: not f)   # the first packet: no fragment
        for m in rule.matches:
            checks.extend(_compile_match(m))
        self.checks = tuple(checks)


# --------------------------------------------------------------------------------------------------
# The per-ruleset index

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


class _ChainIndex:
    __slots__ = ("n", "all", "buckets", "others")

    def __init__(self, chain: Chain):
        n = len(chain.rules)
        self.n = n
        self.all = range(1, n + 1)
        self.buckets: dict[tuple, list[int]] | None = None
        self.others: list[int] = []
        if n < SMALL_CHAIN:
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

    def candidates(self, st: _State):
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


class _Index:
    """Everything the tracer precomputes for one Ruleset, built lazily and cached on it."""

    def __init__(self, ruleset: Ruleset):
        self.ruleset = ruleset
        self.chains: dict[tuple[str, str], tuple[Chain, _ChainIndex]] = {}
        self.compiled: dict[int, tuple[Rule, _Compiled]] = {}
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

    def chain(self, table: str, name: str) -> tuple[Chain, _ChainIndex] | None:
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
        entry = (ch, _ChainIndex(ch))
        self.chains[key] = entry
        return entry

    def compile(self, rule: Rule) -> _Compiled:
        hit = self.compiled.get(id(rule))
        if hit is not None and hit[0] is rule:
            return hit[1]
        c = _Compiled(rule)
        self.compiled[id(rule)] = (rule, c)
        return c


def _no_index() -> None:
    return None


def _index_for(ruleset: Ruleset) -> _Index:
    views = ruleset._views
    idx = views.get("tracer")
    if idx is None or idx.ruleset is not ruleset:
        idx = views["tracer"] = _Index(ruleset)
    return idx


# --------------------------------------------------------------------------------------------------
# The walk

def _fmt_dest(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _parse_nat_to(value: str, default_port: int) -> tuple[str, int, bool]:
    """``ip[-ip][:port[-port]]`` or ``[v6]:port`` -> (first ip, first port, was a range)."""
    text = value.strip()
    ranged = False
    port = default_port
    if text.startswith("["):
        end = text.index("]")
        ip_part, rest = text[1:end], text[end + 1:]
        port_part = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        ip_part, port_part = text.split(":")
    else:
        ip_part, port_part = text, ""
    if "-" in ip_part:
        ip_part = ip_part.split("-", 1)[0]
        ranged = True
    if port_part:
        if "-" in port_part:
            port_part = port_part.split("-", 1)[0]
            ranged = True
        port = int(port_part)
    if not ip_part:
        return "", port, ranged
    return str(ipaddress.ip_address(ip_part)), port, ranged


def _apply_mark(rule: Rule, mark: int) -> int | None:
    """New mark for a MARK/CONNMARK-style option list, or None when there is no mark option."""
    for opt in rule.target_options:
        try:
            if opt.name == "--set-xmark":
                v, m = _value_mask(opt.value or "")
                return ((mark & ~m) ^ v) & _MARK_MAX
            if opt.name == "--set-mark":
                v, m = _value_mask(opt.value or "")
                return ((mark & ~m) | v) & _MARK_MAX
            if opt.name == "--or-mark":
                return (mark | _int(opt.value or "0")) & _MARK_MAX
            if opt.name == "--xor-mark":
                return (mark ^ _int(opt.value or "0")) & _MARK_MAX
            if opt.name == "--and-mark":
                return mark & _int(opt.value or "0")
        except ValueError:
            return None
    return None


class _Walker:
    """Walks states to their end. A state that meets a branch forks: the "no match" copies wait on
    ``pending`` (a stack, so outcomes come out in rule order) while this state goes on matching."""

    def __init__(self, index: _Index, ctx: _Ctx, packet: Packet):
        self.index = index
        self.ctx = ctx
        self.packet = packet
        self.pending: list[_State] = []
        self.done: list[Outcome] = []
        self.states = 0

    # -- steps -----------------------------------------------------------------------------------
    def start(self) -> _State:
        packet = self.packet
        st = _State()
        st.src, st.dst = packet.src, packet.dst
        st.src_ip, st.dst_ip = ipaddress.ip_address(packet.src), ipaddress.ip_address(packet.dst)
        st.orig_src, st.orig_dst = st.src_ip, st.dst_ip
        st.sport, st.dport, st.proto = packet.sport, packet.dport, packet.proto
        st.orig_sport, st.orig_dport = packet.sport, packet.dport
        st.mark, st.ctmark = packet.mark, 0
        st.dnat = None
        st.snat = st.masq = st.untracked = False
        st.snat_source = None
        st.hops, st.conditions, st.unknown = [], [], []
        st.facts, st.assumed = {}, []
        st.prob = Fraction(1)
        st.stack = []
        st.recent_set = set()
        st.verdict = None
        st.hook = st.table = ""
        if _is_local(st.src_ip, self.ctx.local):
            # Made on the node: no input interface; it leaves through lo if it is for the node.
            st.in_if = None
            st.out_if = packet.out_interface or ("lo" if _is_local(st.dst_ip, self.ctx.local) else None)
            st.steps = tuple(("OUTPUT", t) for t in _OUTPUT) + (("route-out", ""),)
        else:
            st.in_if = packet.in_interface
            st.out_if = packet.out_interface
            st.steps = tuple(("PREROUTING", t) for t in _PREROUTING) + (("route-in", ""),)
        st.step = 0
        return st

    def route(self, st: _State, kind: str) -> None:
        """The routing decision after PREROUTING (route-in) or after OUTPUT (route-out: the kernel
        routes again when nat OUTPUT changed the destination)."""
        local = _is_local(st.dst_ip, self.ctx.local)
        rest = st.steps[st.step:]
        if kind == "route-in":
            if local:
                plan = tuple(("INPUT", t) for t in _INPUT)
                action = f"{st.dst} is local -> INPUT"
            else:
                plan = tuple(("FORWARD", t) for t in _FORWARD) + tuple(
                    ("POSTROUTING", t) for t in _POSTROUTING)
                action = f"{st.dst} is not local -> FORWARD"
        else:
            plan = tuple(("POSTROUTING", t) for t in _POSTROUTING)
            if local:
                st.out_if = self.packet.out_interface or "lo"
                plan += (("loopback", ""),) + tuple(("PREROUTING", t) for t in _LO_PREROUTING) + tuple(
                    ("INPUT", t) for t in _LO_INPUT)
                action = f"{st.dst} is local -> out via lo, in again through PREROUTING and INPUT"
            else:
                st.out_if = self.packet.out_interface
                action = f"{st.dst} is not local -> POSTROUTING and out"
        st.hops.append(TraceHop("routing", "", "", 0, None, action))
        st.steps = st.steps[:st.step] + plan + rest

    def enter(self, st: _State, hook: str, table: str) -> bool:
        """Push the built-in chain of (hook, table) if it exists; False to skip the step."""
        if table == "nat" and st.untracked:
            return False
        hit = self.index.chain(table, hook)
        if hit is None:
            return False
        ch, cidx = hit
        st.hook, st.table = hook, table
        st.stack = [(table, hook, ch, cidx.candidates(st), 0, (hook,))]
        return True

    # -- the loop --------------------------------------------------------------------------------
    def run(self, first: _State) -> list[Outcome]:
        self.pending.append(first)
        while self.pending:
            st = self.pending.pop()
            self.states += 1
            if self.states > MAX_STATES:
                raise TraceError(
                    f"more than {MAX_STATES} branches: too many unknown matches to follow. Give the "
                    "packet its interfaces (in_interface/out_interface) or trace a smaller ruleset.")
            self.walk(st)
        return self.done

    def finish(self, st: _State, verdict: str) -> None:
        self.done.append(Outcome(
            verdict=verdict, destination=st.dnat, masquerade=st.masq, probability=st.prob,
            hops=st.hops, conditions=st.conditions, unknown=st.unknown, marked=st.mark,
            source=st.snat_source, assumptions=tuple(st.assumed)))

    def walk(self, st: _State) -> None:
        compile_rule = self.index.compile
        ctx = self.ctx
        while True:
            if not st.stack:
                if st.step >= len(st.steps):
                    self.finish(st, "ACCEPT")
                    return
                hook, table = st.steps[st.step]
                st.step += 1
                if hook in ("route-in", "route-out"):
                    self.route(st, hook)
                    continue
                if hook == "loopback":
                    st.in_if = "lo"
                    continue
                if not self.enter(st, hook, table):
                    continue
            ctx.hook = st.hook
            table, cname, ch, cands, i, path = st.stack[-1]
            if i >= len(cands):
                if self.end_of_chain(st):
                    return
                continue
            pos = cands[i]
            st.stack[-1] = (table, cname, ch, cands, i + 1, path)
            rule = ch.rules[pos - 1]
            matched = True
            branches: list[_Branch] | None = None
            for check in compile_rule(rule).checks:
                r = check(st, ctx)
                if r is True:
                    continue
                if r is False:
                    matched = False
                    break
                if r.fact is not None and r.fact in st.facts:
                    # Assumed already on this branch: stay consistent with that assumption.
                    if st.facts[r.fact] == isinstance(r, _Negated):
                        matched = False
                        break
                    continue
                if branches is None:
                    branches = []
                branches.append(r)
            if not matched:
                continue
            label = ""
            if branches:
                label = self.split(st, rule, branches)
                if label is None:
                    continue
            if self.act(st, rule, label):
                return

    def split(self, st: _State, rule: Rule, branches: list[_Branch]) -> str | None:
        """Fork the state for each way the branch conditions can go. The kernel evaluates a rule's
        matches in order and stops at the first that fails, so k conditions give k+1 ways: all
        true (the rule matches: this state goes on), or the first false at j (a copy, no match).
        Returns the label of the "all true" way, or None when that way is impossible."""
        prefix: list[tuple[_Branch, bool]] = []
        forks: list[_State] = []
        for b in branches:
            fork = st.copy()
            if self.assume(fork, rule, prefix + [(b, False)], matched=False) is not None:
                forks.append(fork)
            prefix.append((b, True))
        self.pending.extend(reversed(forks))
        return self.assume(st, rule, prefix, matched=True)

    def assume(self, st: _State, rule: Rule, choices, matched: bool) -> str | None:
        labels = []
        for b, truth in choices:
            if b.weight is not None:
                w = b.weight if truth else 1 - b.weight
                if w == 0:
                    return None
                st.prob *= w
                labels.append(f"{b.label} {'taken' if truth else 'not taken'}"
                              f" (p={w.limit_denominator(1000)})")
                continue
            fact_value = truth != isinstance(b, _Negated)
            if b.fact in st.facts:
                if st.facts[b.fact] != fact_value:
                    return None
                continue
            st.facts[b.fact] = fact_value
            st.assumed.append((b.fact, fact_value))
            if b.fact.startswith("session affinity: client seen before"):
                text = b.fact if fact_value else b.fact.replace("seen before", "not seen before")
            else:
                text = f"assumed {'true' if fact_value else 'false'}: {b.fact}"
            st.conditions.append(text)
            if b.module is not None:
                note = f"unknown: {b.module}"
                if note not in st.unknown:
                    st.unknown.append(note)
            labels.append(text)
        label = "; ".join(labels)
        if not matched:
            st.hops.append(TraceHop(st.hook, st.table, rule.chain, rule.position, rule,
                                    "no match: " + label))
        return label

    def end_of_chain(self, st: _State) -> bool:
        """The walk fell off the end of the top chain. True when the state is finished."""
        table, cname = st.stack[-1][0], st.stack[-1][1]
        if len(st.stack) == 1:
            return self.policy(st)
        st.stack.pop()
        st.hops.append(TraceHop(st.hook, table, cname, 0, None,
                                f"end of chain: return to {st.stack[-1][1]}"))
        return False

    def policy(self, st: _State) -> bool:
        table, cname, ch = st.stack[0][0], st.stack[0][1], st.stack[0][2]
        pol = (ch.policy or "ACCEPT").upper()
        if pol == "-":
            pol = "ACCEPT"
        st.stack = []
        if ch.rules or pol != "ACCEPT":
            st.hops.append(TraceHop(st.hook, table, cname, 0, None, f"policy {pol}"))
        if pol in ("DROP", "REJECT"):
            self.finish(st, pol)
            return True
        return False

    def act(self, st: _State, rule: Rule, label: str) -> bool:
        """Apply the matched rule's target. True when the state is finished."""
        suffix = f" [{label}]" if label else ""
        target = rule.target
        table = st.table

        def hop(action: str) -> None:
            st.hops.append(TraceHop(st.hook, table, rule.chain, rule.position, rule, action + suffix))

        if target is None:
            hop("match (no target: counted, continue)")
            return False
        if rule.jumps_to_chain:
            path = st.stack[-1][5]
            if target in path:
                cycle = list(path[path.index(target):]) + [target]
                raise TraceError(f"jump loop in table {table}: {' -> '.join(cycle)}. "
                                 "The kernel refuses such a ruleset; check the dump.")
            verb = "goto" if rule.goto else "jump"
            hit = self.index.chain(table, target)
            if hit is None:
                hop(f"{verb} {target} (chain not declared: empty, returns)")
                if rule.goto:          # an empty chain reached by goto returns past this chain
                    return self.end_of_chain(st)
                return False
            ch, cidx = hit
            hop(f"{verb} {target}")
            frame = (table, target, ch, cidx.candidates(st), 0, path + (target,))
            if rule.goto:
                st.stack[-1] = frame
            else:
                st.stack.append(frame)
            return False
        t = target.upper()
        if t == "RETURN":
            if len(st.stack) == 1:
                hop("RETURN from a built-in chain: the policy decides")
                return self.policy(st)
            st.stack.pop()
            hop(f"RETURN to {st.stack[-1][1]}")
            return False
        if t == "ACCEPT":
            hop("ACCEPT")
            st.stack = []              # ends this table at this hook; the next table follows
            return False
        if t in ("DROP", "REJECT"):
            hop(t)
            self.finish(st, t)
            return True
        if t in ("DNAT", "REDIRECT"):
            self.dnat(st, rule, t, hop)
            return False
        if t in ("SNAT", "MASQUERADE"):
            if t == "SNAT":
                opt = rule.target_option("--to-source") or rule.target_option("--to")
                ip = None
                if opt is not None and opt.value:
                    try:
                        ip = _parse_nat_to(opt.value, st.sport)[0] or None
                    except ValueError:
                        ip = None
                hop(f"SNAT {opt.value if opt is not None else '?'}")
                if ip:
                    st.snat_source = ip
                    st.src, st.src_ip = ip, ipaddress.ip_address(ip)
            else:
                hop("MASQUERADE (the source becomes the outgoing interface's address)")
            st.masq = st.snat = True
            st.stack = []              # NAT targets end the nat table at this hook
            return False
        if t == "MARK":
            new = _apply_mark(rule, st.mark)
            if new is None:
                hop("MARK (options not understood: mark unchanged)")
                self._note(st, "unknown: MARK options")
            else:
                st.mark = new
                hop(f"MARK {new:#x}")
            return False
        if t == "CONNMARK":
            names = {o.name for o in rule.target_options}
            if "--restore-mark" in names:
                st.mark = st.ctmark
                hop(f"CONNMARK restore: mark {st.mark:#x}")
            elif "--save-mark" in names:
                st.ctmark = st.mark
                hop(f"CONNMARK save: ctmark {st.ctmark:#x}")
            else:
                new = _apply_mark(rule, st.ctmark)
                if new is not None:
                    st.ctmark = new
                hop(f"CONNMARK ctmark {st.ctmark:#x}")
            return False
        if t == "NOTRACK" or (t == "CT" and rule.target_option("--notrack") is not None):
            st.untracked = True
            hop(f"{t}: not tracked (no NAT for this connection)")
            return False
        if t in ("QUEUE", "NFQUEUE", "TPROXY", "SYNPROXY", "NETMAP", "CLUSTERIP"):
            hop(f"{t}: not decided by rules (assumed ACCEPT)")
            self._note(st, f"unknown: {t}")
            st.stack = []
            return False
        # LOG, NFLOG, TRACE, CT, TCPMSS, CHECKSUM, SET, ...: something on the side, then continue.
        hop(f"{target} (continue)")
        return False

    @staticmethod
    def _note(st: _State, note: str) -> None:
        if note not in st.unknown:
            st.unknown.append(note)

    def dnat(self, st: _State, rule: Rule, t: str, hop) -> None:
        if t == "REDIRECT":
            opt = rule.target_option("--to-ports")
            port = st.dport
            if opt is not None and opt.value:
                port = int(opt.value.split("-")[0].split(":")[0])
            if st.hook == "OUTPUT":
                ip = "127.0.0.1" if st.dst_ip.version == 4 else "::1"
            else:
                own = sorted(a for a in self.ctx.local if ":" not in a and not a.startswith("127."))
                ip = own[0] if own else "127.0.0.1"
                if not own:
                    self._note(st, "unknown: REDIRECT address (no local IP given)")
            ranged = False
        else:
            opt = rule.target_option("--to-destination") or rule.target_option("--to")
            if opt is None or not opt.value:
                hop(f"{t} (no --to-destination: not understood)")
                self._note(st, f"unknown: {t} options")
                st.stack = []
                return
            try:
                ip, port, ranged = _parse_nat_to(opt.value, st.dport)
            except ValueError:
                raise TraceError(f"{rule.chain}#{rule.position}: cannot read the DNAT target "
                                 f"{opt.value!r}; expected ip[:port]") from None
            if not ip:
                ip = st.dst
        if ranged:
            st.conditions.append(f"{t} to a range: the first address/port was taken")
        dest = _fmt_dest(ip, port)
        hop(f"{t} {dest}")
        st.dst, st.dst_ip, st.dport = ip, ipaddress.ip_address(ip), port
        st.dnat = dest
        st.stack = []                  # DNAT ends the nat table at this hook


def trace(ruleset: Ruleset, packet: Packet, node: NodeContext | Iterable[str] | None = None) -> Trace:
    """Every way ``packet`` (the first packet of a new connection) can go through ``ruleset`` on a
    node whose local addresses are ``node`` (a :class:`NodeContext` or an iterable of IPs).

    Raises :class:`TraceError` for a bad packet (not an IP, port out of range, unknown protocol) and
    for a jump loop. See the module docstring for how branches and assumptions work."""
    if not isinstance(ruleset, Ruleset):
        raise TraceError(f"expected a Ruleset (from k8slab.netfilter.parse), got {type(ruleset).__name__}")
    pkt = _check_packet(packet)
    ctx_node = _node_context(node)
    index = _index_for(ruleset)
    walker = _Walker(index, _Ctx(ctx_node.local_ips, index), pkt)
    outcomes = walker.run(walker.start())
    return Trace(packet=pkt, node=ctx_node, outcomes=outcomes, source=ruleset.source,
                 synthesized=index.synthesized)
