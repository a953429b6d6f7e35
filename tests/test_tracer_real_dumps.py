"""The tracer on real nodes' dumps (../shared/fixtures/real-dumps): every ClusterIP rule, from a pod.

Two questions for each ClusterIP rule of every shared dump:

* Traced with nothing but the dump (the CLI's default: no local IPs, no interfaces), the answer may
  depend on facts the dump cannot tell (which interface, whether an endpoint is the node's own
  address). Whatever those facts are, the outcomes that hold have exact probabilities summing to 1,
  every endpoint is among the destinations, and the merged rows give each effect exactly what the
  walk's own paths give it (tests/trace_worlds.py).
* Traced from a pod the way ``Lab.trace`` does it, with the node's routes and addresses (below, as
  far as the dump itself shows them), there is exactly one outcome per endpoint, with no condition,
  and each is 1/n.

The "no endpoints" ClusterIP rules (filter KUBE-SERVICES REJECT) give one REJECT outcome.
"""
from __future__ import annotations

import ipaddress
from fractions import Fraction

import pytest

from conftest import shared_files
from k8slab.netfilter.tracer import NodeContext, Packet, trace
from trace_worlds import check_against_paths, check_worlds

parser = pytest.importorskip("k8slab.netfilter.parser")

DUMPS = {p.name: p for p in shared_files("real-dumps/*.rules")}

#: What a pod on each dump's node sees, from the dump itself: the pod subnet (the masquerade
#: rule's ``! -s`` or flannel's rules), the node's own addresses, and routes like the CNI's.
NODES = {
    # kubeadm + flannel (vxlan) + Docker + libvirt. flanneld's "! -s 10.244.0.0/16 -d 10.244.0.0/24
    # RETURN" says this node's pods are 10.244.0.0/24 (flannel's bridge cni0); the PREROUTING DNATs
    # to -d 10.210.52.212 and the SNAT --to-source 172.25.11.254 (-o eth1) are the node's own.
    "01-kubeadm-1.22-flannel-docker.rules": (
        "10.244.0.100", {"10.210.52.212", "172.25.11.254"},
        (("10.244.0.0/24", "cni0"), ("10.244.0.0/16", "flannel.1"), ("172.17.0.0/16", "docker0"),
         ("192.168.122.0/24", "virbr0"), ("172.25.11.0/24", "eth1"), ("default", "eth0"))),
    # K3s (flannel): pods 10.42.0.0/24 on cni0; the API server endpoint 10.0.20.5 is the server
    # node this dump comes from (K3s runs the API server in its own process).
    "02-k3s-counters-c.rules": (
        "10.42.0.100", {"10.0.20.5"},
        (("10.42.0.0/24", "cni0"), ("10.42.0.0/16", "flannel.1"), ("172.17.0.0/16", "docker0"),
         ("default", "eth0"))),
    # kubeadm + flannel, iptables-nft; the API server 172.31.7.91 is the control-plane node.
    "06-nftables-backend-v1.8.10-flannel.rules": (
        "10.244.0.100", {"172.31.7.91"},
        (("10.244.0.0/24", "cni0"), ("10.244.0.0/16", "flannel.1"), ("default", "eth0"))),
    # kind: kindnet's ptp gives each pod a /32 route to its veth; the API server 172.18.0.5 is the
    # control-plane node (kind's kubernetes endpoint), whose dump this is.
    "07-kind-v1.23.5-kindnet-traefik.rules": (
        "10.244.0.100", {"172.18.0.5"},
        (("10.244.0.100", "veth3a1b2c3d"), ("10.244.0.2", "veth0002"), ("10.244.0.3", "veth0003"),
         ("10.244.0.4", "veth0004"), ("10.244.0.5", "veth0005"), ("172.18.0.0/16", "eth0"),
         ("default", "eth0"))),
}


def _clusterip_rules(rs):
    """(rule, endpoints "ip:port" in rule order) for every ClusterIP rule: nat KUBE-SERVICES jumps to
    a KUBE-SVC/KUBE-SVL chain, filter KUBE-SERVICES "has no endpoints" rejects (endpoints ())."""
    out = []
    nat = rs.chain("nat", "KUBE-SERVICES")
    for r in (nat.rules if nat is not None else []):
        if (r.target or "").startswith(("KUBE-SVC-", "KUBE-SVL-")) and r.destination is not None:
            eps = []
            for j in rs.chain("nat", r.target).rules:
                if (j.target or "").startswith("KUBE-SEP-"):
                    dnat = [x for x in rs.chain("nat", j.target).rules if x.target == "DNAT"]
                    eps.append(dnat[0].target_option("--to-destination").value)
            out.append((r, eps))
    flt = rs.chain("filter", "KUBE-SERVICES")
    for r in (flt.rules if flt is not None else []):
        if r.target == "REJECT" and "has no endpoints" in (r.comment or ""):
            out.append((r, []))
    return out


def _packet(rule, src: str) -> Packet:
    dport = next(o.value for m in rule.matches for o in m.options if o.name == "--dport")
    return Packet(src, rule.destination.value.split("/")[0], int(dport), rule.protocol.value)


def _pod_source(rs) -> str:
    for r in rs.iter_rules():
        if r.table == "nat" and r.chain.startswith("KUBE-SVC-") and r.source is not None and r.source.negated:
            return str(ipaddress.ip_network(r.source.value, strict=False).network_address + 100)
    return "10.244.0.100"


CASES = [pytest.param(name, id=name[:2]) for name in sorted(DUMPS)]


def test_the_dumps_have_clusterip_rules(shared_fixtures):
    counts = {name: len(_clusterip_rules(parser.parse_file(path))) for name, path in DUMPS.items()}
    assert sum(counts.values()) >= 20, counts
    assert all(counts[name] for name in NODES), counts


@pytest.mark.shared
@pytest.mark.parametrize("name", CASES)
def test_every_clusterip_sums_to_one_in_every_world(shared_fixtures, name):
    rs = parser.parse_file(DUMPS[name])
    for rule, eps in _clusterip_rules(rs):
        t = trace(rs, _packet(rule, _pod_source(rs)), NodeContext())
        check_worlds(t)
        check_against_paths(t)
        if eps:
            assert {o.destination for o in t.outcomes} == set(eps), t.text(hops=False)
            # in each world every endpoint gets 1/n, whatever happens to the packet after the DNAT
            for world in t.worlds().values():
                per = {}
                for o in world:
                    per[o.destination] = per.get(o.destination, Fraction(0)) + o.probability
                assert {d: p.limit_denominator(1000) for d, p in per.items()} == \
                    {e: Fraction(1, len(eps)) for e in eps}
        else:
            # rejected unless the ClusterIP were one of the node's own addresses (then INPUT, which
            # the older K3s of dump 02 does not send to KUBE-SERVICES): the baseline world rejects
            assert [o.verdict for o in t.baseline()] == ["REJECT"], t.text(hops=False)


@pytest.mark.shared
@pytest.mark.parametrize("name", [pytest.param(n, id=n[:2]) for n in sorted(NODES)])
def test_from_a_pod_one_outcome_per_endpoint(shared_fixtures, name):
    if name not in DUMPS:
        pytest.skip(f"{name} is not among the shared dumps")
    rs = parser.parse_file(DUMPS[name])
    src, local, routes = NODES[name]
    node = NodeContext(frozenset(local), routes=routes)
    for rule, eps in _clusterip_rules(rs):
        t = trace(rs, _packet(rule, src), node)
        assert not t.facts and not any(o.conditions for o in t.outcomes), t.text(hops=False)
        assert not t.warnings
        if not eps:
            assert [o.verdict for o in t.outcomes] == ["REJECT"]
            continue
        assert [o.destination for o in t.outcomes] == eps, t.text(hops=False)
        assert sum(o.probability for o in t.outcomes) == 1
        assert {o.nominal for o in t.outcomes} == {Fraction(1, len(eps))}
        assert all(o.verdict == "ACCEPT" for o in t.outcomes)


@pytest.mark.shared
def test_an_excerpt_says_what_was_inferred(shared_fixtures):
    """Dump 08 is ``iptables-save | grep HOSTPORT``: no table line, the CNI-DN chain never declared.
    The trace carries the parser's warnings word for word (what ``k8slab rules`` prints)."""
    name = "08-kind-2019-cilium-portmap-HOSTPORT-grep-excerpt.rules"
    if name not in DUMPS:
        pytest.skip(f"{name} is not among the shared dumps")
    rs = parser.parse_file(DUMPS[name])
    assert any("assumed '*nat'" in w for w in rs.warnings) and any("never declared" in w for w in rs.warnings)
    t = trace(rs, Packet("172.17.0.1", "172.17.0.2", 80), NodeContext(frozenset({"172.17.0.2"})))
    assert t.warnings == rs.warnings
    check_worlds(t)
