"""kube-proxy's golden packet flows (``nodeport`` and ``etp-local``, ../shared/fixtures/kube-proxy-golden)
in nftables mode: each input rendered by k8slab's nftables renderer, each flow traced with ``trace_nft``
and held to the iptables golden flow's expectation (destinations with their probabilities, verdict,
masquerade), then loaded with ``nft -f`` into a throwaway namespace pair where the kernel decides
(conntrack's DNAT destination and masquerade, or the connection's fate).

Settings: what the fixtures' README prescribes for both inputs, ``fork-settings.yaml#base``
(``nodePortAddresses: []``, i.e. MatchAll: NodePorts through ``fib daddr type local``, no service
CIDR), and, as a second variant, the same with the nftables proxier test's own ``NewFakeProxier``
values (pkg/proxy/nftables/proxier_test.go: ``nodePortAddresses`` 192.168.0.2/32, so NodePorts go
through ``@nodeport-ips``; ``serviceCIDRs`` 172.30.0.0/16). Every shared flow targets 192.168.0.2 or
a service IP, so both variants must give the same answers.

Which flows the nftables mode shares (kubernetes pkg/proxy/nftables/proxier_test.go runs the same
``packetFlowTest`` cases against its own rules):

- ``etp-local``: all 4. The nftables TestExternalTrafficPolicyLocal has these four flows with the
  same outputs and masq values (plus three pod flows the iptables fixture does not list).
- ``nodeport``: 3 of 4 ("pod to cluster IP", "external to nodePort", "node to nodePort", all three
  in the nftables TestNodePorts). Left out: "localhost to nodePort gets masqueraded". It depends on
  an iptables-only feature, ``--localhost-nodeports`` (route_localnet and the KUBE-FIREWALL guard).
  The nftables proxier does not support localhost NodePorts: its NodePort rule is
  ``fib daddr type local ip daddr != 127.0.0.0/8 … vmap @service-nodeports`` (MatchAll), or
  ``@nodeport-ips``, which never holds a loopback address. Its nftables TestNodePorts has no such
  flow. :func:`test_localhost_nodeport_is_iptables_only` checks the nftables mode's own answer
  instead: not translated, and on the kernel the connection is refused by the node itself.

Besides, ``NFT_FLOWS``: seven flows of the nftables proxier test itself over the same objects (pod
traffic to ETP=Local's external IP, LB IP and NodePort, the secondary node IP with and without
nodeport-ips, a wrong port, an unallocated ClusterIP), traced and judged by the kernel the same way.
"""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

from conftest import FIXTURES
from k8slab.model import Cluster, load_objects
from k8slab.model.kubeproxy_nft import NftProxierSettings, render_kube_proxy_nft
from k8slab.netfilter.nft.listing import loadable
from k8slab.netfilter.nft.parser import parse_nft
from k8slab.netfilter.nft.trace import trace_nft
from k8slab.netfilter.tracer import Packet
from nft_kernel import NODE_IPS, assert_kernel_agrees, node_namespace

GOLDEN = FIXTURES / "kube-proxy-golden"
INPUTS = ("nodeport", "etp-local")
VARIANTS = ("readme", "nodeport-ips")

# flows of the iptables goldens whose expectation the nftables mode does not share (see the docstring)
IPTABLES_ONLY = {
    ("nodeport", "localhost to nodePort gets masqueraded"):
        "localhost NodePorts (--localhost-nodeports, route_localnet) are iptables-only; the nftables "
        "proxier matches NodePorts with 'ip daddr != 127.0.0.0/8' and has no such flow",
}
SHARED_COUNTS = {"nodeport": 3, "etp-local": 4}

# The nftables proxier test's own flows over the same objects (kubernetes pkg/proxy/nftables/
# proxier_test.go): the three pod flows of TestExternalTrafficPolicyLocal that the iptables fixture
# does not list; TestNodePorts' secondary node IP, accepted with MatchAll ("multiple
# nodeport-addresses": allowAltNodeIP) and ignored with nodeport-ips {192.168.0.2} ("secondary nodeIP
# ignores NodePorts"); TestClusterIPGeneral's wrong port (REJECT) and unallocated ClusterIP (DROP,
# only where serviceCIDRs is set; with none the packet is no service's and is routed on). Those two
# come from pod 10.180.0.2 upstream; here from pod 10.0.0.2 (the same side of the 10.0.0.0/8
# detector): in the namespace pair 10.180.0.0/16 is the endpoints' link, so the node's reset for a
# REJECT would leave through it and never reach the client.
_BOTH = "10.180.0.1:80, 10.180.2.1:80"
NFT_FLOWS = [
    (VARIANTS, "etp-local", {"name": "pod to external IP hits both endpoints, unmasqueraded",
                             "sourceIP": "10.0.0.2", "destIP": "192.168.99.11", "destPort": 80, "output": _BOTH, "masq": False}),
    (VARIANTS, "etp-local", {"name": "pod to LB IP hits only both endpoints, unmasqueraded",
                             "sourceIP": "10.0.0.2", "destIP": "1.2.3.4", "destPort": 80, "output": _BOTH, "masq": False}),
    (VARIANTS, "etp-local", {"name": "pod to NodePort hits both endpoints, unmasqueraded",
                             "sourceIP": "10.0.0.2", "destIP": "192.168.0.2", "destPort": 3001, "output": _BOTH, "masq": False}),
    (("readme",), "nodeport", {"name": "external to nodePort on secondary IP", "sourceIP": "203.0.113.2",
                               "destIP": "192.168.1.2", "destPort": 3001, "output": "10.180.0.1:80", "masq": True}),
    (("nodeport-ips",), "nodeport", {"name": "secondary nodeIP ignores NodePorts", "sourceIP": "203.0.113.2",
                                     "destIP": "192.168.1.2", "destPort": 3001, "output": "", "masq": False}),
    (VARIANTS, "nodeport", {"name": "svc1 does not accept other ports", "sourceIP": "10.0.0.2",
                            "destIP": "172.30.0.41", "destPort": 443, "output": "REJECT", "masq": False}),
    (("nodeport-ips",), "nodeport", {"name": "packet to unallocated cluster ip", "sourceIP": "10.0.0.2",
                                     "destIP": "172.30.0.50", "destPort": 80, "output": "DROP", "masq": False}),
]


def _flows(case: str) -> list[dict]:
    path = GOLDEN / f"{case}.flows.json"
    return json.loads(path.read_text()) if path.exists() else []


def _params():
    out = []
    for variant in VARIANTS:
        for case in INPUTS:
            for flow in _flows(case):
                if (case, flow["name"]) not in IPTABLES_ONLY:
                    out.append(pytest.param((variant, case), flow, id=f"{variant}: {case}: {flow['name']}"))
        for variants, case, flow in NFT_FLOWS:
            if variant in variants:
                out.append(pytest.param((variant, case), flow, id=f"{variant}: {case}: nftables test: {flow['name']}"))
    return out


PARAMS = _params()


def _settings(variant: str) -> NftProxierSettings:
    s = NftProxierSettings.from_file(f"{GOLDEN / 'fork-settings.yaml'}#base")
    if variant == "nodeport-ips":
        s = NftProxierSettings(base=s.base.replace(node_port_addresses=("192.168.0.2/32",)),
                               service_cidrs=("172.30.0.0/16",))
    return s


_rendered: dict = {}


def rendered(variant: str, case: str) -> str:
    """The ``nft -f`` transaction k8slab renders for this input (as ``k8slab render kube-proxy
    INPUT --mode nftables --settings fork-settings.yaml#base`` prints it for the README variant)."""
    if (variant, case) not in _rendered:
        c = Cluster.from_objects(load_objects(GOLDEN / f"{case}-inputs.yaml"))
        _rendered[variant, case] = render_kube_proxy_nft(c.services, c.endpoint_slices(), _settings(variant))
    return _rendered[variant, case]


def _trace(variant: str, case: str, src: str, dst: str, dport: int, proto: str = "tcp"):
    rs = parse_nft(loadable(rendered(variant, case)))
    return trace_nft(rs, Packet(src=src, dst=dst, dport=dport, proto=proto), NODE_IPS)


def expected(flow: dict) -> tuple[dict, str, bool]:
    """The iptables golden flow as ({destination: probability}, verdict, masquerade): "ip:port, ..."
    is a DNAT to each listed endpoint, 1/n each (kube-proxy's cascade of 1/n, 1/(n-1), ... and
    nftables' ``numgen random mod n`` both give that), accepted; "DROP"/"REJECT" that verdict and no
    DNAT; "" nothing translated, accepted."""
    out = flow["output"]
    if out in ("DROP", "REJECT"):
        return {None: Fraction(1)}, out, False
    if out == "":
        return {None: Fraction(1)}, "ACCEPT", False
    dests = [d.strip() for d in out.split(",")]
    return {d: Fraction(1, len(dests)) for d in dests}, "ACCEPT", bool(flow["masq"])


def test_shared_flows_counted(shared_fixtures):
    """Every flow of both inputs is either traced here or left out with a reason."""
    for case in INPUTS:
        flows = _flows(case)
        shared = [f for f in flows if (case, f["name"]) not in IPTABLES_ONLY]
        assert len(shared) == SHARED_COUNTS[case]
        assert len(flows) - len(shared) == sum(1 for c, _ in IPTABLES_ONLY if c == case)
    assert len(PARAMS) == len(VARIANTS) * sum(SHARED_COUNTS.values()) + sum(len(v) for v, _, _ in NFT_FLOWS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_renderings_differ_only_where_the_settings_do(shared_fixtures, variant):
    """The README's MatchAll settings give the fib rule; the nftables test's settings the nodeport-ips
    set and the unallocated-ClusterIP drop. Both render every golden input."""
    for case in INPUTS:
        tx = rendered(variant, case)
        assert "add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-" in tx
        if variant == "readme":
            assert "services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports" in tx
            assert "nodeport-ips" not in tx and "Drop traffic to unallocated ClusterIPs" not in tx
        else:
            assert "add element ip kube-proxy nodeport-ips { 192.168.0.2 }" in tx
            assert "services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports" in tx
            assert 'ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"' in tx


@pytest.mark.parametrize("key, flow", PARAMS)
def test_golden_flow_traced(shared_fixtures, key, flow):
    variant, case = key
    t = _trace(variant, case, flow["sourceIP"], flow["destIP"], int(flow["destPort"]),
               flow.get("protocol", "tcp").lower())
    dests, verdict, masq = expected(flow)
    assert t.by_destination() == dests, t.text()
    assert {o.verdict for o in t.outcomes} == {verdict}, t.text()
    assert {o.masquerade for o in t.outcomes} == {masq}, t.text()
    assert sum(o.probability for o in t.outcomes) == 1
    assert not any(o.unknown or o.conditions for o in t.outcomes), t.text()


def test_localhost_nodeport_is_iptables_only(shared_fixtures):
    """The left-out flow, as the nftables mode answers it: 127.0.0.1 -> 127.0.0.1:3001 is not a
    NodePort there (no DNAT, no masquerade) where iptables mode DNATs it to 10.180.0.1:80."""
    flow = next(f for f in _flows("nodeport") if f["name"] == "localhost to nodePort gets masqueraded")
    assert expected(flow) == ({"10.180.0.1:80": 1}, "ACCEPT", True)     # the iptables golden
    for variant in VARIANTS:
        t = _trace(variant, "nodeport", "127.0.0.1", "127.0.0.1", 3001)
        assert t.by_destination() == {None: 1} and t.by_verdict() == {"ACCEPT": 1}, t.text()
        assert {o.masquerade for o in t.outcomes} == {False}


# --- the kernel decides -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kernel(request):
    """The rendered ruleset of one (variant, input) loaded in a throwaway node namespace."""
    if not GOLDEN.is_dir():
        pytest.skip(f"{GOLDEN} is absent: the shared fixtures exist only beside the project's CI checkout")
    variant, case = request.param
    with node_namespace(loadable(rendered(variant, case)), tag="g") as (N, C):
        yield N, C, variant, case


@pytest.mark.parametrize("kernel, flow", PARAMS, indirect=["kernel"])
def test_golden_flow_against_the_kernel(kernel, flow):
    """conntrack (or the connection's fate) equals the tracer's prediction, and so the golden flow's
    expectation; where two endpoints are predicted, the kernel must reach both within 16 tries."""
    N, C, variant, case = kernel
    t = _trace(variant, case, flow["sourceIP"], flow["destIP"], int(flow["destPort"]))
    fates = assert_kernel_agrees(N, C, t, tries=16)
    dests, _verdict, masq = expected(flow)
    assert {f[1] for f in fates} == set(dests) and {f[2] for f in fates} == {masq}


@pytest.mark.parametrize("kernel", [(v, "nodeport") for v in VARIANTS], indirect=True,
                         ids=[f"{v}: nodeport" for v in VARIANTS])
def test_localhost_nodeport_against_the_kernel(kernel):
    """The left-out flow on the kernel: nftables mode leaves 127.0.0.1:3001 alone, so the node's own
    TCP refuses it (nothing listens there) and conntrack shows no DNAT."""
    N, C, variant, case = kernel
    t = _trace(variant, case, "127.0.0.1", "127.0.0.1", 3001)
    (how, dnat, _masq, _entry), = assert_kernel_agrees(N, C, t)
    assert how == "refused" and dnat is None
