"""What a trace is asked about: the packet, and what the node knows about itself.

:class:`Packet` is the first packet of a new connection; :class:`NodeContext` holds the node's local
addresses (what ``addrtype LOCAL`` matches), its pod CIDRs and, optionally, its routes (which
interface a destination leaves by, and which one a source comes in on). The checks here turn user
input into validated values or a one-line :class:`~k8slab.errors.TraceError`.
"""
from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Iterable

from ...errors import TraceError

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
MARK_MAX = 0xFFFFFFFF
_TWO31 = 1 << 31

_LOOPBACK4 = ipaddress.ip_network("127.0.0.0/8")
_LOOPBACK6 = ipaddress.ip_address("::1")


@dataclass(frozen=True)
class Packet:
    """The first packet of a new connection. ``mark`` is the skb mark it starts with.
    ``in_interface``/``out_interface``: the interfaces, when known (None: the node's routes decide
    if the :class:`NodeContext` has them, else a rule that tests them makes a condition)."""
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
    """What the node knows about itself.

    ``local_ips``: its addresses (what ``addrtype LOCAL`` matches; 127.0.0.0/8 and ::1 always are).
    Given, the set is taken as complete; empty, whether an address is the node's own is a condition
    wherever a rule tests ``addrtype LOCAL`` (and the trace says how to give them).
    ``routes``: ``(destination, device)`` pairs as ``ip route`` prints them (``"default"``,
    ``"10.244.1.0/24"``, ``"10.244.0.5"``); with them the tracer knows the interface a packet
    leaves by (longest prefix) and the one it came in on (the route back to its source)."""
    local_ips: frozenset[str] = frozenset()
    pod_cidrs: tuple[str, ...] = ()
    name: str = ""
    routes: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        if not isinstance(self.local_ips, frozenset):
            ips = [self.local_ips] if isinstance(self.local_ips, str) else self.local_ips
            object.__setattr__(self, "local_ips", frozenset(ips))
        if isinstance(self.pod_cidrs, str):
            object.__setattr__(self, "pod_cidrs", (self.pod_cidrs,))
        else:
            object.__setattr__(self, "pod_cidrs", tuple(self.pod_cidrs))
        object.__setattr__(self, "routes", tuple((str(d), str(dev)) for d, dev in self.routes))


def fixed_point_probability(p: float | str) -> Fraction:
    """The probability the kernel really uses for ``statistic --probability p``: the value is stored
    as ``lround(p * 2**31)`` and compared with 31 random bits."""
    x = float(p)
    if not (0.0 <= x <= 1.0) or math.isnan(x):
        raise TraceError(f"statistic probability {p!r} is not between 0 and 1")
    return Fraction(math.floor(x * _TWO31 + 0.5), _TWO31)


def check_ip(value: Any, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise TraceError(f"{what} {value!r} is not an IP address; give e.g. 10.96.0.10") from None


def check_port(value: Any, what: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise TraceError(f"{what} {value!r} is not a port number; give 1-65535") from None
    if isinstance(value, float) and value != port:
        raise TraceError(f"{what} {value!r} is not a port number; give 1-65535")
    if not 1 <= port <= 65535:
        raise TraceError(f"{what} {port} is out of range; give 1-65535")
    return port


def check_packet(packet: Packet) -> Packet:
    if not isinstance(packet, Packet):
        raise TraceError(f"expected a Packet, got {type(packet).__name__}")
    src = check_ip(packet.src, "source address")
    dst = check_ip(packet.dst, "destination address")
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
    if not 0 <= mark <= MARK_MAX:
        raise TraceError(f"mark {packet.mark!r} does not fit in 32 bits")
    return Packet(str(src), str(dst), check_port(packet.dport, "destination port"), proto,
                  check_port(packet.sport, "source port"), packet.in_interface or None,
                  packet.out_interface or None, mark)


def node_context(node: NodeContext | Iterable[str] | str | None) -> NodeContext:
    if node is None:
        ctx = NodeContext()
    elif isinstance(node, NodeContext):
        ctx = node
    elif isinstance(node, str):
        ctx = NodeContext(frozenset([node]))
    else:
        ctx = NodeContext(frozenset(node))
    ips = frozenset(str(check_ip(ip, "local IP")) for ip in ctx.local_ips)
    for dst, _dev in ctx.routes:
        if dst != "default" and route_network(dst) is None:
            raise TraceError(f"route destination {dst!r} is not an address or a CIDR; "
                             "give routes as ip route prints them")
    return replace(ctx, local_ips=ips)


def route_network(dst: str):
    if dst == "default":
        return ipaddress.ip_network("0.0.0.0/0")
    try:
        return ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return None


class Local:
    """Which addresses are the node's own: True, False, or None (not known: no local IPs given)."""
    __slots__ = ("ips", "known")

    def __init__(self, ips: frozenset[str]):
        self.ips = ips
        self.known = bool(ips)

    def __call__(self, ip) -> bool | None:
        if (ip in _LOOPBACK4) if ip.version == 4 else (ip == _LOOPBACK6):
            return True
        if str(ip) in self.ips:
            return True
        return False if self.known else None


class Routes:
    """Longest-prefix lookup over the node's routes (None: no route, or none given)."""
    __slots__ = ("table",)

    def __init__(self, routes: tuple[tuple[str, str], ...]):
        table = []
        for dst, dev in routes:
            net = route_network(dst)
            if net is not None and dev:
                table.append((net, dev))
        table.sort(key=lambda item: -item[0].prefixlen)
        self.table = tuple(table)

    def __bool__(self) -> bool:
        return bool(self.table)

    def dev(self, ip) -> str | None:
        for net, dev in self.table:
            if net.version == ip.version and ip in net:
                return dev
        return None
