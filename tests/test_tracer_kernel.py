"""The tracer against the real kernel.

A kube-proxy-shaped ruleset (a ClusterIP with 3 endpoints and a NodePort, a service without
endpoints, KUBE-MARK-MASQ and KUBE-POSTROUTING) is loaded with iptables-restore into a "node"
namespace of ours; real TCP connections come from a client namespace (a pod address and an outside
address) and from the node itself. We check that the tracer's predictions are what the kernel did:

(a) the DNAT destinations the tracer predicts are the ones conntrack shows (and the servers that
    answered); (b) 300 new connections spread over the 3 endpoints within a 99.9% binomial bound
    of 1/3 each, and the KUBE-SEP DNAT counters moved by exactly the per-endpoint counts;
(c) masquerade predicted <=> conntrack's reply goes to another address than the original source
    (and the endpoint saw another peer); (d) the no-endpoint service is refused (REJECT).

The dump the kernel prints back after the traffic (``iptables-save -c``) is kept in
tests/data/kernel/ (written when missing or with K8SLAB_UPDATE_KERNEL_DUMPS=1; otherwise compared,
without counters, with the committed copy). ``test_committed_kernel_dump`` re-reads that file and
runs everywhere, root or not.

Root only (skips with the reason otherwise). Everything is created in namespaces named
``k8s-tr-<pid>-*`` and deleted in the fixture's teardown, also on failure.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

import conftest
from k8slab.netfilter.tracer import NodeContext, Packet, trace
from kernel_lab import KernelLab, Service, kube_proxy_dump

parser = pytest.importorskip("k8slab.netfilter.parser", reason="the parser is not there yet")

DATA = Path(__file__).parent / "data" / "kernel"
DUMP_FILE = DATA / "kube-proxy-clusterip-nodeport.rules"

CLUSTER_IP, PORT, NODE_PORT = "10.96.77.10", 80, 30080
EMPTY_IP, EMPTY_NODE_PORT = "10.96.77.20", 30081
# The addresses KernelLab uses (kept literal here so the committed-dump test needs no lab).
NODE_IP, POD_SRC, EXT_SRC = "172.31.77.1", "10.244.70.2", "172.31.77.2"
ENDPOINTS = (("10.244.71.2", 8080), ("10.244.72.2", 8080), ("10.244.73.2", 8080))
NODE_LOCAL = frozenset({NODE_IP, "10.244.70.1", "10.244.71.1", "10.244.72.1", "10.244.73.1"})
SERVICES = [Service("default", "web", CLUSTER_IP, PORT, ENDPOINTS, node_port=NODE_PORT),
            Service("default", "empty", EMPTY_IP, PORT, (), node_port=EMPTY_NODE_PORT)]

# (name, where the client runs, source address (None: the kernel picks), destination, port)
SCENARIOS = [
    ("pod to ClusterIP", "client", POD_SRC, CLUSTER_IP, PORT),
    ("outside to ClusterIP", "client", EXT_SRC, CLUSTER_IP, PORT),
    ("outside to NodePort", "client", EXT_SRC, NODE_IP, NODE_PORT),
    ("node to ClusterIP", "node", None, CLUSTER_IP, PORT),
]
NODE_SOURCE = NODE_IP        # what the kernel picks on the node for 10.96.0.0/16 (route via "vc")


def _dump() -> str:
    return kube_proxy_dump(SERVICES, cluster_cidr="10.244.0.0/16")


def _predict(src: str, dst: str, port: int):
    return trace(parser.parse(_dump(), "kube-proxy-shaped"), Packet(src, dst, port), NodeContext(NODE_LOCAL))


@pytest.fixture(scope="module")
def lab():
    conftest.skip_unless_root("ip", "iptables-restore", "iptables-save", "conntrack")
    with KernelLab() as lab:
        assert lab.endpoints == ENDPOINTS and lab.node_ip == NODE_IP
        assert frozenset(lab.node_local_ips) == NODE_LOCAL
        lab.load(_dump())
        yield lab
    # KernelLab.__exit__ deleted every namespace (and with them every link and rule).


def _ns(lab: KernelLab, where: str) -> str:
    return lab.client if where == "client" else lab.node


def _connect(lab, where, src, dst, port, n):
    return lab.connect(_ns(lab, where), dst, port, n, src=src or "")


def _flows_for(lab, src, dst, port, sports):
    return {f.sport: f for f in lab.conntrack()
            if f.src == src and f.dst == dst and f.dport == port and f.sport in sports}


@pytest.mark.root
@pytest.mark.parametrize("name,where,src,dst,port", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_dnat_and_masquerade_match_conntrack(lab, name, where, src, dst, port):
    source = src or NODE_SOURCE
    predicted = _predict(source, dst, port)
    assert {o.verdict for o in predicted.outcomes} == {"ACCEPT"}
    want = {o.destination for o in predicted.outcomes}
    assert want == {f"{ip}:{p}" for ip, p in ENDPOINTS}
    masq = {o.masquerade for o in predicted.outcomes}
    assert len(masq) == 1
    masq = masq.pop()

    lab.flush_conntrack()
    results = _connect(lab, where, src, dst, port, 30)
    assert all(r["ok"] for r in results), results
    # The client's side never sits in TIME_WAIT (the server closes first), so a source port can
    # come back within the batch; conntrack then replaces the old entry. Keep the last per port.
    by_sport = {r["sport"]: r for r in results}
    flows = _flows_for(lab, source, dst, port, set(by_sport))
    assert len(flows) == len(by_sport), "conntrack lost connections"
    # (a) what conntrack DNATed to is what the tracer predicted (30 tries: every endpoint shows up
    # unless something is wrong; the chance of missing one by luck is 3 * (2/3)**30 ~ 1.6e-5)
    seen = {f"{f.reply_src}:{f.reply_sport}" for f in flows.values()}
    assert seen == want
    for r in by_sport.values():
        f = flows[r["sport"]]
        assert r["server"] == f.reply_src                    # the endpoint that answered
        # (c) masquerade: replies go back to another address than the original source
        assert (f.reply_dst != f.src) == masq, (name, f)
        assert (r["peer"] != source) == masq, (name, r)


@pytest.mark.root
def test_spread_over_300_connections_and_counters(lab):
    predicted = _predict(POD_SRC, CLUSTER_IP, PORT)
    nominal = {o.destination: o.nominal for o in predicted.outcomes}
    assert set(nominal.values()) == {Fraction(1, 3)}
    before = parser.parse(lab.save(), "before")
    results = _connect(lab, "client", POD_SRC, CLUSTER_IP, PORT, 300)
    after = parser.parse(lab.save(), "after")
    assert all(r["ok"] for r in results)
    counts = Counter(f"{r['server']}:8080" for r in results)
    assert set(counts) == set(nominal)
    bound = 3.3 * (300 * (1 / 3) * (2 / 3)) ** 0.5          # 99.9% two-sided, about 27
    for dest, k in counts.items():
        assert abs(k - 100) <= bound, counts
    # nat rules see only the first packet of a connection: each DNAT counter moved by its count
    def dnat_counters(rs):
        return {r.target_option("--to-destination").value: r.packets
                for r in rs.iter_rules() if r.table == "nat" and r.target == "DNAT"}
    b, a = dnat_counters(before), dnat_counters(after)
    assert {d: a[d] - b[d] for d in a} == dict(counts)


@pytest.mark.root
def test_no_endpoints_is_rejected(lab):
    for src, dst, port in ((POD_SRC, EMPTY_IP, PORT), (EXT_SRC, NODE_IP, EMPTY_NODE_PORT)):
        predicted = _predict(src, dst, port)
        assert [o.verdict for o in predicted.outcomes] == ["REJECT"]
        (r,) = _connect(lab, "client", src, dst, port, 1)
        assert not r["ok"] and r["error"] == "ConnectionRefusedError", r
    # a node port no service uses: no kube-proxy rule touches it, it is delivered to the node
    predicted = _predict(EXT_SRC, NODE_IP, 30099)
    assert [(o.verdict, o.destination) for o in predicted.outcomes] == [("ACCEPT", None)]


def _without_counters(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^\[\d+:\d+\] ", "", line)
        line = re.sub(r"^(:\S+ \S+) \[\d+:\d+\]$", r"\1", line)
        out.append(line)
    return out


@pytest.mark.root
def test_capture_kernel_dump(lab):
    for _name, where, src, dst, port in SCENARIOS:
        _connect(lab, where, src, dst, port, 10)
    _connect(lab, "client", POD_SRC, EMPTY_IP, PORT, 1)
    saved = lab.save()
    rs = parser.parse(saved, "iptables-save -c")
    assert any(r.packets for r in rs.iter_rules())
    if not DUMP_FILE.exists() or os.environ.get("K8SLAB_UPDATE_KERNEL_DUMPS") == "1":
        DATA.mkdir(parents=True, exist_ok=True)
        DUMP_FILE.write_text(saved)
    else:
        assert _without_counters(saved) == _without_counters(DUMP_FILE.read_text()), (
            f"the kernel now prints these rules differently from {DUMP_FILE}; "
            "rerun with K8SLAB_UPDATE_KERNEL_DUMPS=1 to refresh it")
    _check_dump(rs)


def _check_dump(rs) -> None:
    """What the tracer must say about the kernel's own dump of the lab's rules."""
    node = NodeContext(NODE_LOCAL)
    want = {f"{ip}:{p}" for ip, p in ENDPOINTS}
    t = trace(rs, Packet(POD_SRC, CLUSTER_IP, PORT), node)
    assert {o.destination for o in t.outcomes} == want
    assert [o.nominal for o in t.outcomes] == [Fraction(1, 3)] * 3
    assert sum(o.probability for o in t.outcomes) == 1 and not any(o.masquerade for o in t.outcomes)
    t = trace(rs, Packet(EXT_SRC, NODE_IP, NODE_PORT), node)
    assert {o.destination for o in t.outcomes} == want and all(o.masquerade for o in t.outcomes)
    t = trace(rs, Packet(NODE_SOURCE, CLUSTER_IP, PORT), node)
    assert t.outcomes[0].hops[0].hook == "OUTPUT" and all(o.masquerade for o in t.outcomes)
    assert [o.verdict for o in trace(rs, Packet(POD_SRC, EMPTY_IP, PORT), node).outcomes] == ["REJECT"]


def test_committed_kernel_dump():
    """The dump captured from the kernel (committed): counters present, kernel syntax, tracer agrees."""
    if not DUMP_FILE.exists():
        pytest.skip(f"{DUMP_FILE} is not there yet: run tests/test_tracer_kernel.py as root once")
    text = DUMP_FILE.read_text()
    rs = parser.parse(text, str(DUMP_FILE))
    assert not rs.fragment
    assert any(r.packets for r in rs.iter_rules()), "no rule counter moved"
    assert "--probability 0.33333333349" in text and "--set-xmark 0x4000/0x4000" in text
    sep = [r for r in rs.iter_rules() if r.target == "DNAT"]
    assert len(sep) == 3 and all(r.packets and r.packets > 0 for r in sep)
    _check_dump(rs)
