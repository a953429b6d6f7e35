"""``k8slab trace FILE --dst IP --dport N``: follow one new connection through an iptables dump (or
nft rules: ``nft list ruleset`` text, ``nft -j`` JSON, an ``nft -f`` transaction) and print every way
it can end (verdict, DNAT destination, masquerade, probability) with its hops.

One row per effect: paths that end the same way are merged, and a condition (an interface the packet
does not name, whether an address is the node's own, session affinity, a match the tracer cannot
evaluate) stays on a row only where it changes the effect. Warnings (an excerpt's inferred table,
undeclared chains, what the answer depends on) go to stderr as ``k8slab rules`` prints them."""
from __future__ import annotations

import json
import sys

DEFAULT_SRC = "10.244.0.100"     # a pod address in kind's default pod CIDR (10.244.0.0/16)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "trace", help="trace a new connection through an iptables-save dump or nft rules",
        description="Follow the first packet of a new connection through an iptables-save dump "
                    "(or kube-proxy restore input), or nft rules (nft list ruleset, nft -j JSON, or an "
                    "nft -f transaction; detected), the way netfilter does, and print every outcome "
                    "with its probability, the conditions it holds under, and the rules it passed.")
    p.add_argument("file", metavar="FILE", help="the dump (iptables-save or nft output); '-' reads stdin")
    p.add_argument("--dst", required=True, help="destination IP (a ClusterIP, node IP, pod IP ...)")
    p.add_argument("--dport", required=True, type=int, help="destination port")
    p.add_argument("--src", default=DEFAULT_SRC,
                   help=f"source IP (default {DEFAULT_SRC}, a pod); a local IP means the node itself")
    p.add_argument("--sport", type=int, default=40000, help="source port (default 40000)")
    p.add_argument("--proto", choices=("tcp", "udp", "sctp"), default="tcp")
    p.add_argument("--local-ip", action="append", default=[], metavar="IP",
                   help="an address of the node (what addrtype LOCAL matches); repeat for each. "
                        "127.0.0.0/8 is always local. Without any, whether an address is the "
                        "node's own is a condition wherever a rule asks")
    p.add_argument("--in-interface", "-i", default=None, help="the interface the packet came in on")
    p.add_argument("--out-interface", "-o", default=None, help="the interface it leaves by")
    p.add_argument("--routes", metavar="FILE", default=None,
                   help="the node's 'ip route' output: the interface each destination leaves by, "
                        "and the one the source comes in on, when -i/-o do not say")
    p.add_argument("--mark", default="0", help="the packet's starting mark (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--no-hops", action="store_true", help="text output: only the outcomes table")
    p.set_defaults(func=cmd_trace)


def _routes(path: str | None) -> tuple[tuple[str, str], ...]:
    if path is None:
        return ()
    from ..backends.base import parse_ip_route
    from ..errors import TraceError
    from ..netfilter.tracer.packet import route_network
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise TraceError(f"--routes {path}: {exc.strerror or exc}") from None
    # route types other than unicast ("local ...", "blackhole ...") carry no usable destination here
    return tuple((r.dst, r.dev) for r in parse_ip_route(text)
                 if r.dev and (r.dst == "default" or route_network(r.dst) is not None))


def cmd_trace(args) -> int:
    from ..errors import TraceError
    from ..netfilter.nft import trace_nft
    from ..netfilter.nft.files import read_rules
    from ..netfilter.tracer import NodeContext, Packet, trace

    try:
        mark = int(args.mark, 0)
    except ValueError:
        raise TraceError(f"--mark {args.mark!r} is not a number (e.g. 0x4000)") from None
    form, ruleset = read_rules(args.file)
    packet = Packet(src=args.src, dst=args.dst, dport=args.dport, proto=args.proto, sport=args.sport,
                    in_interface=args.in_interface, out_interface=args.out_interface, mark=mark)
    tracer = trace if form == "iptables" else trace_nft
    result = tracer(ruleset, packet, NodeContext(frozenset(args.local_ip), routes=_routes(args.routes)))
    for warning in result.warnings:
        print(f"k8slab: warning: {warning}", file=sys.stderr)
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(result.text(hops=not args.no_hops, warnings=False))
    return 0
