"""The nftables tracer: kube-proxy's rendered nftables rules, one new connection at a time, checked
against what kube-proxy's rules mean (the golden flows' semantics) and against the kernel itself: the
same ruleset loaded in a throwaway network namespace, a client in another one, and conntrack's entry
(or the connection's fate: refused, or no entry at all) for each flow."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import FIXTURES
from k8slab.errors import TraceError
from k8slab.model import Cluster, load_objects
from k8slab.model.kubeproxy_nft import NftProxierSettings, render_kube_proxy_nft
from k8slab.netfilter.nft.listing import loadable
from k8slab.netfilter.nft.parser import parse_nft
from k8slab.netfilter.nft.trace import trace_nft
from k8slab.netfilter.tracer import Packet
from nft_kernel import NODE_IPS, assert_kernel_agrees, fate as _fate, node_namespace as _node

GOLDEN = FIXTURES / "kube-proxy-golden"

# (src, dst, dport) -> {destination: probability} and (verdict, masquerade), from what kube-proxy's
# rules say (proxier.go): svc1 ClusterIP, svc2 ETP=Local with no local endpoint, svc3 NodePort 3003,
# svc4 two endpoints + externalIP, svc5 LB 5.6.7.8 with source range 203.0.113.0/25 and NodePort
# 3002, svc6 no endpoints; 172.30.0.0/16 the service CIDR.
FLOWS = [
    ("10.0.0.2", "172.30.0.41", 80, {"10.180.0.1:80": 1}, "ACCEPT", False),       # pod -> ClusterIP
    ("203.0.113.2", "172.30.0.41", 80, {"10.180.0.1:80": 1}, "ACCEPT", True),     # off-cluster -> ClusterIP
    ("10.0.0.2", "172.30.0.44", 80, {"10.180.0.4:80": Fraction(1, 2), "10.180.0.5:80": Fraction(1, 2)}, "ACCEPT", False),
    ("203.0.113.2", "192.168.99.33", 80, {"10.180.0.4:80": Fraction(1, 2), "10.180.0.5:80": Fraction(1, 2)}, "ACCEPT", True),
    ("203.0.113.2", "5.6.7.8", 80, {"10.180.0.3:80": 1}, "ACCEPT", True),        # inside the source range
    ("203.0.113.130", "5.6.7.8", 80, {None: 1}, "DROP", False),                   # outside it
    ("10.0.0.2", "172.30.0.46", 80, {None: 1}, "REJECT", False),                  # no endpoints
    ("10.0.0.2", "172.30.0.41", 81, {None: 1}, "REJECT", False),                  # ClusterIP, wrong port
    ("10.0.0.2", "172.30.0.47", 80, {None: 1}, "DROP", False),                    # unallocated ClusterIP
    ("203.0.113.2", "192.168.0.2", 3001, {None: 1}, "DROP", False),               # ETP=Local, none local
    ("203.0.113.2", "192.168.0.2", 3003, {"10.180.0.3:80": 1}, "ACCEPT", True),   # NodePort
    ("10.0.0.2", "1.2.3.4", 80, {"10.180.0.2:80": 1}, "ACCEPT", False),           # pod -> LB IP short-circuits
    ("203.0.113.2", "1.2.3.4", 80, {None: 1}, "DROP", False),                     # ETP=Local, none local
    ("192.168.0.2", "192.168.0.2", 3002, {"10.180.0.3:80": 1}, "ACCEPT", True),   # node -> own NodePort
    ("192.168.0.2", "172.30.0.43", 80, {"10.180.0.3:80": 1}, "ACCEPT", True),     # node -> ClusterIP
    ("10.0.0.2", "10.180.0.9", 80, {None: 1}, "ACCEPT", False),                   # not a service
]


def _golden_ruleset(shared_fixtures):
    return parse_nft(loadable((GOLDEN / "nft-overall.nft").read_text()))


@pytest.mark.parametrize("src, dst, dport, dests, verdict, masq", FLOWS)
def test_golden_flows(shared_fixtures, src, dst, dport, dests, verdict, masq):
    t = trace_nft(_golden_ruleset(shared_fixtures), Packet(src=src, dst=dst, dport=dport), NODE_IPS)
    assert t.by_destination() == {k: Fraction(v) for k, v in dests.items()}
    assert {o.verdict for o in t.outcomes} == {verdict}
    assert {o.masquerade for o in t.outcomes} == {masq}
    assert sum(o.probability for o in t.outcomes) == 1
    assert not any(o.unknown for o in t.outcomes)


def test_numgen_probabilities_are_exact_for_n_endpoints():
    from k8slab.model.settings import ProxierSettings
    from conftest import ROOT
    c = Cluster.kind(ROOT / "kind" / "cluster.yaml", name="kind", seed=0)
    c.apply(load_objects(ROOT / "kind" / "manifests" / "app.yaml"))
    c.scale("url-shortener", 3)
    node = c.nodes[0]
    base = ProxierSettings.for_kind_node(c, node).replace(node_port_addresses=(f"{node.ip}/32",))
    rs = parse_nft(loadable(render_kube_proxy_nft(c.services, c.endpoint_slices(),
                                                  NftProxierSettings(base=base, service_cidrs=(c.service_subnet,)))))
    svc = c.service("url-shortener", "default")
    t = trace_nft(rs, Packet(src="10.244.0.200", dst=svc.cluster_ip, dport=80), [node.ip])
    dist = t.by_destination()
    assert len(dist) == 3 and set(dist.values()) == {Fraction(1, 3)}
    hop = [h for h in t.outcomes[0].hops if h.chain.startswith("service-") and h.position][-1]
    assert "numgen random mod 3 vmap" in hop.line


def test_trace_schema_is_the_iptables_tracers(shared_fixtures):
    t = trace_nft(_golden_ruleset(shared_fixtures), Packet(src="203.0.113.2", dst="5.6.7.8", dport=80), NODE_IPS)
    d = t.to_dict()
    assert set(d) == {"packet", "local_ips", "synthesized_jumps", "warnings", "outcomes"}
    hops = d["outcomes"][0]["hops"]
    assert [h["chain"] for h in hops[:2]] == ["filter-prerouting-pre-dnat", "firewall-check"]
    assert hops[-1]["rule"] == "masquerade fully-random"
    assert list(t.frame().columns)[:3] == ["outcome", "verdict", "destination"]
    assert "10.180.0.3:80" in t.text()


def test_iptables_nft_and_kube_proxy_nat_chains_share_prerouting():
    """Two nat chains at prerouting -100: the one registered last (kube-proxy's here) runs first, and
    the first mapping ends the hook's nat chains (nf_nat_inet_fn), so the other never sees the
    connection; where the first does not map, the second runs. The kernel test below checks both."""
    text = """table ip nat {
\tchain PREROUTING {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 192.168.0.2 tcp dport 8080 counter packets 0 bytes 0 dnat to 10.244.0.7:80
\t}
}
table ip kube-proxy {
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 192.168.0.2 tcp dport 8080 dnat to 10.244.0.8:80
\t\tip daddr 192.168.0.2 tcp dport 9090 dnat to 10.244.0.8:90
\t}
}
"""
    rs = parse_nft(text)
    t = trace_nft(rs, Packet(src="203.0.113.2", dst="192.168.0.2", dport=8080), NODE_IPS)
    assert t.by_destination() == {"10.244.0.8:80": 1}
    assert not any(h.table == "nat" and h.position for h in t.outcomes[0].hops)
    assert any("share hook prerouting priority -100" in w for w in t.warnings)
    t = trace_nft(rs, Packet(src="203.0.113.2", dst="192.168.0.2", dport=9090), NODE_IPS)
    assert t.by_destination() == {"10.244.0.8:90": 1}
    t = trace_nft(rs, Packet(src="203.0.113.2", dst="192.168.0.2", dport=7070), NODE_IPS)
    assert t.by_destination() == {None: 1}
    assert [h.table for h in t.outcomes[0].hops if h.hook == "prerouting"] == []


def test_iptables_nft_random_is_exact():
    rs = parse_nft("""table ip nat {
\tchain OUTPUT {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta random & 2147483647 < 715827883 dnat to 10.0.0.1:80
\t\tdnat to 10.0.0.2:80
\t}
}
""")
    t = trace_nft(rs, Packet(src="127.0.0.1", dst="10.96.0.1", dport=80))
    assert t.by_destination() == {"10.0.0.1:80": Fraction(715827883, 2 ** 31),
                                  "10.0.0.2:80": 1 - Fraction(715827883, 2 ** 31)}


def test_errors():
    with pytest.raises(TraceError):
        trace_nft("not a ruleset", Packet(src="10.0.0.1", dst="10.0.0.2", dport=80))
    rs = parse_nft("table ip t {\n\tchain a {\n\t\ttype filter hook input priority 0; policy accept;\n"
                   "\t\tjump b\n\t}\n\tchain b {\n\t\tjump b\n\t}\n}\n")
    with pytest.raises(TraceError, match="loop"):
        trace_nft(rs, Packet(src="10.0.0.1", dst="127.0.0.1", dport=80))


# --- the kernel's verdict -----------------------------------------------------------------------

@pytest.fixture
def kernel_node(shared_fixtures):
    with _node(loadable((GOLDEN / "nft-overall.nft").read_text())) as nc:
        yield nc


@pytest.mark.parametrize("src, dst, dport, dests, verdict, masq", FLOWS)
def test_golden_flows_against_the_kernel(kernel_node, src, dst, dport, dests, verdict, masq):
    N, C = kernel_node
    rs = parse_nft(loadable((GOLDEN / "nft-overall.nft").read_text()))
    # several tries where the tracer gives several destinations: the kernel must reach each
    assert_kernel_agrees(N, C, trace_nft(rs, Packet(src=src, dst=dst, dport=dport), NODE_IPS), tries=16)


_HOSTPORT = """table ip nat {
\tchain PREROUTING {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 192.168.0.2 tcp dport 8080 dnat to 10.180.0.7:80
\t}
}
"""
_KUBE_PROXY = """table ip kube-proxy {
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr 192.168.0.2 tcp dport 8080 dnat to 10.180.0.8:80
\t}
}
"""


@pytest.mark.parametrize("first, second", [(_HOSTPORT, _KUBE_PROXY), (_KUBE_PROXY, _HOSTPORT)],
                         ids=["iptables-nft first", "kube-proxy first"])
def test_two_nat_chains_at_one_priority_against_the_kernel(first, second):
    """Equal priorities run in registration order, and the first DNAT ends the hook's nat chains
    (nf_nat_inet_fn): the tracer and conntrack agree on which one wins, in both orders."""
    text = first + second
    t = trace_nft(parse_nft(text), Packet(src="203.0.113.2", dst="192.168.0.2", dport=8080), NODE_IPS)
    predicted = t.by_destination()
    assert len(predicted) == 1
    with _node(text) as (N, C):
        how, dnat, _masq, entry = _fate(N, C, "203.0.113.2", "192.168.0.2", 8080)
    assert entry and dnat in predicted


def _kind_rendered(replicas: int = 3):
    from conftest import ROOT
    from k8slab.model.settings import ProxierSettings
    c = Cluster.kind(ROOT / "kind" / "cluster.yaml", name="kind", seed=0)
    for m in ("app.yaml", "app-nodeport.yaml"):
        c.apply(load_objects(ROOT / "kind" / "manifests" / m))
    c.scale("url-shortener", replicas)
    node = c.nodes[0]
    base = ProxierSettings.for_kind_node(c, node).replace(node_port_addresses=(f"{node.ip}/32",))
    tx = render_kube_proxy_nft(c.services, c.endpoint_slices(),
                               NftProxierSettings(base=base, service_cidrs=(c.service_subnet,)))
    return c, node, tx


def test_kind_cluster_flows_against_the_kernel():
    """The course's cluster rendered in nftables mode: a pod, the node and the learner's host (the
    Docker gateway) open connections to the ClusterIPs, the NodePort, a wrong port and an unallocated
    ClusterIP; the tracer's outcome for each is what conntrack (or the connection's fate) shows."""
    c, node, tx = _kind_rendered(3)
    rs = parse_nft(loadable(tx))
    app = c.service("url-shortener", "default")
    np_svc = c.service("url-shortener-nodeport", "default")
    host = "172.18.0.1"
    pod = "10.244.0.200"
    flows = [(pod, app.cluster_ip, 80), (host, node.ip, np_svc.ports[0].node_port), (node.ip, app.cluster_ip, 80),
             (pod, "10.96.0.10", 53), (pod, app.cluster_ip, 81), (pod, "10.96.250.250", 80), (host, node.ip, 30999)]
    net = dict(node_ips=[node.ip], prefix=16, pods_side="10.244.255.254/16", to_pods=("10.244.0.0/16", "10.96.0.0/16"),
               to_clients=(f"{pod}/32",))
    seen = {}
    with _node(loadable(tx), **net) as (N, C):
        for src, dst, dport in flows:
            t = trace_nft(rs, Packet(src=src, dst=dst, dport=dport), [node.ip])
            (how, dnat, masq, entry), = assert_kernel_agrees(N, C, t, node_ips=[node.ip])
            seen[(src, dst, dport)] = (sorted({o.verdict for o in t.outcomes}), dnat)
            print(src, dst, dport, "predicted", {k: str(v) for k, v in t.by_destination().items()},
                  seen[(src, dst, dport)][0], "kernel", how, dnat, "masq" if masq else "",
                  "entry" if entry else "no entry")
    # the flows cover a 1/3 spread, a NodePort, a reject and a drop
    assert set(trace_nft(rs, Packet(src=pod, dst=app.cluster_ip, dport=80), [node.ip]).by_destination().values()) \
        == {Fraction(1, 3)}
    assert seen[(pod, app.cluster_ip, 81)][0] == ["REJECT"] and seen[(pod, "10.96.250.250", 80)][0] == ["DROP"]
    assert seen[(host, node.ip, np_svc.ports[0].node_port)][1] is not None


def test_real_k3s_dump(shared_fixtures):
    """A real `nft list table ip kube-proxy` (k3s, nftables mode): a pod's connections to its services."""
    rs = parse_nft((FIXTURES / "real-dumps" / "09-k3s-nftables-mode-nft-list-table.nft").read_text())
    node = ["10.34.4.142"]
    t = trace_nft(rs, Packet(src="10.42.0.5", dst="10.43.0.1", dport=443), node)
    assert t.by_destination() == {"10.34.4.142:6443": 1}
    t = trace_nft(rs, Packet(src="10.42.0.5", dst="10.43.0.10", dport=53, proto="udp"), node)
    assert t.by_destination() == {"10.42.0.171:53": 1}
    t = trace_nft(rs, Packet(src="10.42.0.5", dst="10.43.195.72", dport=8000), node)
    dist = t.by_destination()
    assert len(dist) == 9 and set(dist.values()) == {Fraction(1, 9)}
    t = trace_nft(rs, Packet(src="10.42.0.5", dst="10.43.0.1", dport=444), node)
    assert t.by_verdict() == {"REJECT": 1}
    assert not any(o.unknown for o in t.outcomes)
