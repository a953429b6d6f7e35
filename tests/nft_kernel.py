"""The kernel as the judge of the nftables tracer: a throwaway node namespace with a ruleset loaded by
``nft -f``, a client namespace wired to it, and each connection's real fate (conntrack's DNAT
destination, masquerade, or refused/dropped with no entry) compared with what ``trace_nft`` predicted.

Shared by tests/test_nft_trace.py (``nft-overall.nft``, the course's kind cluster) and
tests/test_nft_golden_flows.py (the ``nodeport`` and ``etp-local`` golden inputs). Nothing here touches
the root network namespace: both namespaces are ours (``k8s-nft-…``), every link is created inside
them, sysctls are set in the node namespace only, and both are deleted afterwards, also after a failure.
Every command goes through :func:`k8slab.runner.run`.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os

import pytest

from k8slab import runner

# kube-proxy's test conventions (proxier_test.go): the node's addresses
NODE_IPS = ["192.168.0.2", "192.168.1.2", "192.168.99.11"]


def sh(*argv, check=True, input=None):
    return runner.run(list(argv), check=check, input=input, timeout=30)


CONNECT = """
import socket, sys, errno
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[1], 0)); s.settimeout(0.4)
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); print("connected")
except ConnectionRefusedError: print("refused")
except OSError as e: print("timeout" if isinstance(e, socket.timeout) else "error " + str(e.errno))
"""

GOLDEN_NET = dict(node_ips=NODE_IPS, prefix=24, pods_side="10.180.255.254/16",
                  to_pods=("172.30.0.0/16", "1.2.3.4/32", "5.6.7.8/32", "192.168.99.22/32", "192.168.99.33/32"),
                  to_clients=("10.0.0.0/8", "203.0.113.0/24"))


@contextlib.contextmanager
def node_namespace(ruleset: str, node_ips=NODE_IPS, prefix=24, pods_side="10.180.255.254/16",
                   to_pods=GOLDEN_NET["to_pods"], to_clients=GOLDEN_NET["to_clients"], tag: str = ""):
    """A node namespace (the node IPs, routes to the pods' side and to the clients, forwarding on) with
    ``ruleset`` loaded, and a client namespace wired to it; both deleted afterwards. Yields the
    ``ip netns exec`` prefixes (N, C). Skips (with the reason) unless root with nft, ip and conntrack."""
    if os.geteuid() != 0:
        pytest.skip("needs root (throwaway network namespaces)")
    for tool in ("nft", "ip", "conntrack"):
        if runner.which(tool) is None:
            pytest.skip(f"missing {tool}: apt-get install -y nftables conntrack iproute2")
    pid = os.getpid()
    node, client = f"k8s-nft-n{tag}{pid}", f"k8s-nft-c{tag}{pid}"
    sh("ip", "netns", "add", node)
    try:
        sh("ip", "netns", "add", client)
        N = ("ip", "netns", "exec", node)
        C = ("ip", "netns", "exec", client)
        sh("ip", "-n", client, "link", "add", "k8s-c0", "type", "veth", "peer", "name", "k8s-n0", "netns", node)
        sh(*N, "ip", "link", "set", "lo", "up")
        sh(*N, "ip", "link", "set", "k8s-n0", "up")
        for ip in node_ips:
            sh(*N, "ip", "addr", "add", f"{ip}/{prefix}", "dev", "k8s-n0")
        # the pods' side: a second veth whose far end (in the client's namespace, which owns none of
        # these addresses) swallows what is sent; no ARP, so a SYN leaves at once
        sh("ip", "-n", node, "link", "add", "k8s-pods", "type", "veth", "peer", "name", "k8s-p1", "netns", client)
        sh(*N, "ip", "addr", "add", pods_side, "dev", "k8s-pods")
        sh(*N, "ip", "link", "set", "k8s-pods", "arp", "off", "up")
        sh(*C, "ip", "link", "set", "k8s-p1", "up")
        for cidr in to_pods:
            sh(*N, "ip", "route", "replace", cidr, "dev", "k8s-pods")
        for cidr in to_clients:
            sh(*N, "ip", "route", "replace", cidr, "dev", "k8s-n0")
        sh(*N, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh(*C, "ip", "link", "set", "lo", "up")
        sh(*C, "ip", "link", "set", "k8s-c0", "up")
        # a standing address: removing a flow's source must not leave the link without one (the
        # kernel then drops the link's routes)
        sh(*C, "ip", "addr", "add", "10.255.255.1/32", "dev", "k8s-c0")
        sh(*C, "ip", "route", "add", "default", "via", node_ips[0], "dev", "k8s-c0", "onlink")
        sh(*N, "nft", "-f", "-", input=ruleset)
        yield N, C
    finally:
        sh("ip", "netns", "del", client, check=False)
        sh("ip", "netns", "del", node, check=False)


def _is_local(ip: str, node_ips) -> bool:
    return ip in node_ips or ipaddress.ip_address(ip).is_loopback


def fate(N, C, src, dst, dport, node_ips=NODE_IPS) -> tuple[str, str | None, bool, bool]:
    """(how connect() ended, the DNAT destination conntrack shows or None, masqueraded, whether
    conntrack has an entry at all: a packet dropped before postrouting never confirms one).
    A source that is a node IP or a loopback address connects from the node itself."""
    local = _is_local(src, node_ips)
    where = N if local else C
    if not local:
        sh(*C, "ip", "addr", "replace", f"{src}/32", "dev", "k8s-c0")
    sh(*N, "conntrack", "-F", check=False)
    how = sh(*where, "python3", "-c", CONNECT, src, dst, str(dport)).stdout.strip()
    out = sh(*N, "conntrack", "-L", "-p", "tcp", "--orig-src", src, "--orig-dst", dst, check=False).stdout
    lines = [ln for ln in out.splitlines() if f"dport={dport} " in ln]
    if not local:
        sh(*C, "ip", "addr", "del", f"{src}/32", "dev", "k8s-c0")
    if not lines:
        return how, None, False, False
    words = lines[0].split()
    reply = [w for w in words if "=" in w]
    # the second src=/dst=/sport= group is the reply tuple
    srcs = [w.split("=")[1] for w in reply if w.startswith("src=")]
    dsts = [w.split("=")[1] for w in reply if w.startswith("dst=")]
    sports = [w.split("=")[1] for w in reply if w.startswith("sport=")]
    r_src, r_dst, r_sport = srcs[1], dsts[1], sports[1]
    dnat = None if (r_src, int(r_sport)) == (dst, dport) else f"{r_src}:{r_sport}"
    return how, dnat, r_dst != src, True


def assert_kernel_agrees(N, C, trace, node_ips=NODE_IPS, tries: int = 1) -> list[tuple]:
    """Open the trace's connection in the namespaces and assert its fate is the predicted one:

    - REJECT: refused, and conntrack has no entry (the reject ends it before postrouting confirms it);
    - DROP: the SYN times out, no entry;
    - ACCEPT, not translated, to the node itself: nothing listens there, the node's TCP answers with a
      reset (refused), no DNAT;
    - ACCEPT otherwise: an entry, the SYN sent on (timeout: no endpoint answers), its DNAT destination
      one the tracer gives a probability > 0, and masqueraded exactly when that outcome says so.

    With ``tries`` > 1 the connection is opened again (conntrack flushed) until every predicted
    destination has been seen or the tries run out; each must be seen. Returns every fate."""
    p = trace.packet
    predicted = trace.by_destination()
    verdicts = {o.verdict for o in trace.outcomes}
    assert sum(predicted.values()) == 1 and not any(o.unknown for o in trace.outcomes), trace.text()
    fates, seen = [], set()
    for _ in range(max(1, tries)):
        how, dnat, masq, entry = f = fate(N, C, p.src, p.dst, p.dport, node_ips=node_ips)
        fates.append(f)
        where = (p.src, p.dst, p.dport, f, {k: str(v) for k, v in predicted.items()}, sorted(verdicts))
        if verdicts == {"REJECT"}:
            assert (how, entry) == ("refused", False), where
        elif verdicts == {"DROP"}:
            assert (how, entry) == ("timeout", False), where
        elif predicted == {None: 1} and _is_local(p.dst, node_ips):
            assert verdicts == {"ACCEPT"} and how == "refused" and dnat is None, where
        else:
            assert verdicts == {"ACCEPT"} and entry and how == "timeout", where
            assert dnat in predicted and predicted[dnat] > 0, where
            assert masq == {o.masquerade for o in trace.outcomes if o.destination == dnat}.pop(), where
        seen.add(dnat)
        if seen >= set(predicted):
            break
    if tries > 1:
        assert seen == set(predicted), (p, seen, predicted)
    return fates
