"""``Lab.trace`` on the sim backend: the node's addresses and routes go with the rules, so a lab trace
names its interfaces and never carries a condition (what the course's notebooks show)."""
from __future__ import annotations

from fractions import Fraction

import pytest

from conftest import course_lab
from trace_worlds import check_worlds


@pytest.fixture(scope="module")
def lab():
    return course_lab()


def _node(lab):
    return lab.get("nodes").query("role == 'control-plane'").iloc[0]


def test_lab_traces_have_no_condition(lab):
    node = _node(lab)
    svc = lab.get("services").set_index("name").loc["url-shortener"]
    cases = [(svc["cluster_ip"], 80, None), (node["ip"], 30080, "172.18.0.1"), (node["ip"], 80, "172.18.0.1"),
             (node["ip"], 80, None), ("10.96.0.1", 443, None), (node["ip"], 30099, "172.18.0.1")]
    for dst, port, src in cases:
        t = lab.trace(dst, port, src=src)
        assert not t.facts and not t.warnings, t.text(hops=False)
        assert all(not o.conditions and not o.unknown for o in t.outcomes), t.text(hops=False)
        assert check_worlds(t) == 1


def test_lab_trace_knows_the_interfaces_from_the_routes(lab):
    t = lab.trace(lab.get("services").set_index("name").loc["url-shortener"]["cluster_ip"], 80)
    routes = dict(t.node.routes)
    assert routes.get("default") == "eth0"
    assert {o.nominal for o in t.outcomes} == {Fraction(1, 2)} and len(t.outcomes) == 2
    for o in t.outcomes:
        ip = o.destination.split(":")[0]
        assert routes[ip].startswith("veth")                  # ptp's /32 route to the pod's veth
        (routing,) = [h.action for h in o.hops if h.hook == "routing"]
        assert routing.endswith(f"(out via {routes[ip]})")
    assert t.node.local_ips and t.node.pod_cidrs


def test_a_pod_reaching_a_hostport_is_masqueraded(lab):
    # portmap marks the whole container network (-s 10.244.0.0/24) for masquerade, so a pod of the
    # node that reaches the controller's hostPort through the node's address is masqueraded
    node = _node(lab)
    (o,) = lab.trace(node["ip"], 80).outcomes
    assert o.masquerade and any(h.chain == "CNI-HOSTPORT-SETMARK" for h in o.hops)
    (o,) = lab.trace(node["ip"], 80, src="172.18.0.1").outcomes
    assert not o.masquerade


def test_trace_frames_name_each_chain_with_its_table_and_print_line_numbers_as_integers(lab):
    """03's trace table: KUBE-SERVICES exists in nat and in filter, so the chains column says which
    (``nat:KUBE-SERVICES > … > filter:KUBE-SERVICES``); hops_frame's lineno is an integer column
    (68, not 68.0), empty for a policy or the routing decision."""
    svc = lab.get("services").query("name == 'url-shortener'").iloc[0]
    t = lab.trace(svc["cluster_ip"], 80)
    chains = t.frame()["chains"].iloc[0].split(" > ")
    assert chains[:2] == ["nat:PREROUTING", "nat:KUBE-SERVICES"]
    assert "filter:KUBE-SERVICES" in chains and "KUBE-SERVICES" not in chains
    assert t.outcomes[0].chains[:2] == ["PREROUTING", "KUBE-SERVICES"]        # the property keeps bare names
    hops = t.hops_frame(0)
    assert str(hops["lineno"].dtype) == "Int64"
    assert hops["lineno"].isna().any() and hops["lineno"].dropna().gt(0).all()
    assert "68.0" not in hops.to_string() and ".0 " not in hops[["lineno"]].to_string()
