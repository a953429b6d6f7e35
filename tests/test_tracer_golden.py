"""The tracer against kube-proxy's own packet-flow tests (../shared/fixtures/kube-proxy-golden).

Each ``NAME.flows.json`` case is a packet that kube-proxy's unit tests trace through ``NAME.rules``
with their own little tracer; we trace it with ours and compare.

How the expected values map onto a :class:`~k8slab.netfilter.tracer.Trace` (README of the fixtures):

* ``output`` "ip:port, ip:port": every outcome is DNATed, the SET of destinations is exactly that
  list, every outcome is ACCEPTed, and the probabilities sum to exactly 1.
* ``output`` "DROP"/"REJECT": every outcome has that verdict, given by a kube-proxy (KUBE-*) rule
  of the filter table, and nothing was DNATed.
* ``output`` "ACCEPT": a kube-proxy filter rule accepted the packet (the health-check node port in
  filter KUBE-NODEPORTS), and nothing was DNATed. KUBE-FORWARD's generic ACCEPTs (marked or
  established traffic) do not count: kube-proxy's tracer only runs the filter chains KUBE-SERVICES,
  KUBE-EXTERNAL-SERVICES, KUBE-NODEPORTS and KUBE-PROXY-FIREWALL, and reports a DNAT destination
  even when KUBE-FORWARD later accepts the marked packet ("external to nodePort").
* ``output`` "": no kube-proxy rule translated or judged the packet: ACCEPT by policy, no DNAT, and
  no KUBE-* filter rule with a verdict on the way.
* ``masq``: the packet reached KUBE-MARK-MASQ. We check both that and what the kernel would do with
  it: ``Outcome.masquerade`` (KUBE-POSTROUTING applied MASQUERADE) must be the same.

Local IPs (what addrtype LOCAL matches and what makes a source "the node itself", i.e. nat OUTPUT):
for ``tracepacket``, 127.0.0.1, ::1 and every node IP (192.168.0.2, 192.168.1.2, 192.168.99.11);
for the other cases, 192.168.0.2 and 127.0.0.1 only. The cases other than ``tracepacket`` have no
built-in chains; the tracer enters them the way kube-proxy installs its jumps.
"""
from __future__ import annotations

import json
from fractions import Fraction

import pytest

from conftest import FIXTURES, shared_files
from k8slab.netfilter.tracer import NodeContext, Packet, trace
from trace_worlds import check_against_paths, check_worlds

parser = pytest.importorskip("k8slab.netfilter.parser", reason="the parser (k8slab.netfilter.parser) is not there yet")

LOCAL_IPS = {
    "tracepacket": frozenset({"127.0.0.1", "::1", "192.168.0.2", "192.168.1.2", "192.168.99.11"}),
}
DEFAULT_LOCAL = frozenset({"192.168.0.2", "127.0.0.1"})
KUBE_PROXY_FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS",
                            "KUBE-PROXY-FIREWALL")


def _cases():
    out = []
    for path in shared_files("kube-proxy-golden/*.flows.json"):
        case = path.name[: -len(".flows.json")]
        for flow in json.loads(path.read_text()):
            out.append(pytest.param(case, flow, id=f"{case}: {flow['name']}"))
    return out


CASES = _cases()
_rulesets: dict = {}


def _ruleset(case: str):
    if case not in _rulesets:
        _rulesets[case] = parser.parse_file(FIXTURES / "kube-proxy-golden" / f"{case}.rules")
    return _rulesets[case]


def _filter_verdict_hops(outcome):
    """The hops where a kube-proxy filter rule said ACCEPT/DROP/REJECT."""
    return [h for h in outcome.hops
            if h.table == "filter" and h.rule is not None and h.chain.startswith("KUBE-")
            and h.action in ("ACCEPT", "DROP", "REJECT")]


def test_fixtures_present(shared_fixtures):
    assert CASES, "no *.flows.json under kube-proxy-golden"
    assert len(CASES) == 15


@pytest.mark.shared
@pytest.mark.parametrize("case,flow", CASES)
def test_golden_flow(shared_fixtures, case, flow):
    rs = _ruleset(case)
    proto = flow.get("protocol", "tcp").lower()
    packet = Packet(flow["sourceIP"], flow["destIP"], int(flow["destPort"]), proto)
    node = NodeContext(LOCAL_IPS.get(case, DEFAULT_LOCAL))
    t = trace(rs, packet, node)
    outcomes = t.outcomes
    assert outcomes, "the tracer returned no outcome"
    assert all(not o.conditions and not o.unknown for o in outcomes), [o.conditions + o.unknown for o in outcomes]
    assert sum(o.probability for o in outcomes) == 1
    assert check_worlds(t) == 1 and check_against_paths(t) == 1
    # one outcome per effect: no two rows end the same way
    assert len({(o.verdict, o.destination, o.masquerade, o.marked) for o in outcomes}) == len(outcomes)

    expected = flow["output"]
    if expected in ("DROP", "REJECT"):
        for o in outcomes:
            assert o.verdict == expected, t.text()
            assert o.destination is None
            last = _filter_verdict_hops(o)
            assert last and last[-1].action == expected and last[-1] is o.hops[-1], t.text()
    elif expected == "ACCEPT":
        for o in outcomes:
            assert o.verdict == "ACCEPT" and o.destination is None, t.text()
            accepts = [h for h in _filter_verdict_hops(o) if h.chain != "KUBE-FORWARD"]
            assert [h.action for h in accepts] == ["ACCEPT"], t.text()
            assert accepts[0].chain in KUBE_PROXY_FILTER_CHAINS
    elif expected == "":
        for o in outcomes:
            assert o.verdict == "ACCEPT" and o.destination is None, t.text()
            assert not _filter_verdict_hops(o), t.text()
            assert o.hops[-1].action.startswith("policy") or o.hops[-1].hook == "routing", t.text()
    else:
        want = {d.strip() for d in expected.split(",")}
        assert {o.destination for o in outcomes} == want, t.text()
        assert all(o.verdict == "ACCEPT" for o in outcomes), t.text()
        assert set(t.by_destination()) == want and sum(t.by_destination().values()) == 1
        # kube-proxy's chain of 1/n, 1/(n-1), ... probabilities: each endpoint 1/n
        assert {p.limit_denominator(1000) for p in t.by_destination().values()} == {Fraction(1, len(want))}

    for o in outcomes:
        assert o.reached_mark_masq == flow["masq"], t.text()
        assert o.masquerade == flow["masq"], t.text()
