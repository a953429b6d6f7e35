"""Real kernel output captured from the netns backend (``tests/data/netns/*.rules``), parsed.

The dumps were written by ``sudo python benchmarks/netns.py --name k8s-tr-capture --rounds 1 --capture
tests/data/netns`` after one request each way in: port-forward, ClusterIP from a pod, NodePort,
hostPort via the node IP and via 127.0.0.1:8080. They are ``iptables-save -c`` of the node namespace
and of the host namespace, as iptables 1.8.9 (nf_tables) printed them. The lab name matters: the
model derives Docker's embedded-DNS ports from the node's name. No root needed here.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DATA = Path(__file__).parent / "data" / "netns"
LAB = "k8s-tr-capture"
NODE = f"{LAB}-control-plane"
RECAPTURE = f"re-capture with: sudo python benchmarks/netns.py --name {LAB} --rounds 1 --capture tests/data/netns"


@pytest.fixture(scope="module")
def node_rules():
    from k8slab.netfilter.parser import parse
    return parse((DATA / "node-control-plane.rules").read_text(), source="node-control-plane.rules")


@pytest.fixture(scope="module")
def host_rules():
    from k8slab.netfilter.parser import parse
    return parse((DATA / "host.rules").read_text(), source="host.rules")


def _targets(chain) -> list[str]:
    return [r.target for r in chain.rules]


def test_node_dump_parses_with_counters(node_rules):
    assert set(node_rules.tables) == {"mangle", "filter", "nat"}
    assert node_rules.rule_count > 50
    assert all(r.packets is not None for r in node_rules.iter_rules())   # -c was used
    pre = _targets(node_rules.chain("nat", "PREROUTING"))
    # kube-proxy's jump was there before portmap appended its own, as on a kind node
    assert pre.index("KUBE-SERVICES") < pre.index("CNI-HOSTPORT-DNAT")
    assert _targets(node_rules.chain("nat", "POSTROUTING"))[0] == "CNI-HOSTPORT-MASQ"


def test_node_dump_counters_show_the_ways_in(node_rules):
    def rule_with(chain_prefix: str, text: str):
        return [r for r in node_rules.iter_rules() if r.chain.startswith(chain_prefix) and text in r.line]

    (hostport,) = [r for r in rule_with("CNI-DN-", "--to-destination") if r.line.endswith(":80")]
    assert hostport.packets >= 2                   # node-ip:80 and 127.0.0.1:8080 (via docker-proxy)
    (nodeport,) = rule_with("KUBE-NODEPORTS", "--dport 30080")
    assert nodeport.packets >= 1
    seps = [r for r in rule_with("KUBE-SEP-", "default/url-shortener:http") if r.target == "DNAT"]
    assert len(seps) == 2 and sum(r.packets for r in seps) >= 1    # ClusterIP from the client pod


def test_host_dump_is_dockers_port_mapping(host_rules):
    docker = host_rules.chain("nat", "DOCKER")
    dnat = [r for r in docker.rules if r.target == "DNAT" and r.option("tcp", "--dport").value == "8080"]
    assert len(dnat) == 1 and dnat[0].in_interface.negated
    assert dnat[0].target_option("--to-destination").value == "172.18.0.2:80"
    assert host_rules.chain("filter", "FORWARD").policy == "DROP"


def _model_dump() -> str:
    from k8slab import model as m
    c = m.Cluster.kind(config=str(ROOT / "kind" / "cluster.yaml"), name=LAB)
    # the course's objects, then the client pod the backend creates for from_="pod" requests
    for name in ("app.yaml", "ingress-nginx.yaml", "ingress.yaml", "app-nodeport.yaml", "client.yaml"):
        c.apply([d for d in yaml.safe_load_all((ROOT / "kind" / "manifests" / name).read_text()) if d])
    return m.render_node_dump(c, NODE)


def _lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        line = re.sub(r"^\[\d+:\d+\] ", "", line)            # rule counters
        out.append(re.sub(r" \[\d+:\d+\]$", "", line))      # chain counters
    return out


def test_model_renders_what_the_kernel_printed():
    """Every line of the model's node dump equals what the kernel printed after the real plugins
    (kube-proxy's rules, the real CNI portmap plugin, kindnet, Docker's DNS) wrote theirs: the
    hairpin rule included, whose source is the container network (``-s 10.244.0.0/24``), as portmap
    writes it (``masqCIDR := containerNet.String()``), not the pod's /32."""
    live = _lines((DATA / "node-control-plane.rules").read_text())
    model = _lines(_model_dump())
    assert live == model, RECAPTURE
    hairpin = [x for x in live if re.match(r"^-A CNI-DN-\S+ -s (?!127\.0\.0\.1/32)\S+ .* -j CNI-HOSTPORT-SETMARK$", x)]
    assert hairpin and all(" -s 10.244.0.0/24 " in x for x in hairpin)
