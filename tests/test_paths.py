"""The path builders: each way in, derived from the rules actually installed (here the sim's).

Every expectation is read off the model (endpoints, pod IPs, the controller pod) or off the rules,
never typed in, so the tests check that the hops follow the rules."""
from __future__ import annotations

from fractions import Fraction

import pytest

from k8slab.paths import (Component, Path, Way, build_path, client_pod_ip, controller_pod, masquerade_source,
                          pick_outcome)
from conftest import course_lab

WAYS = ["port-forward", "clusterip", "nodeport", "hostport", "ingress"]




@pytest.fixture
def lab():
    return course_lab()


def app_endpoints(lab, service="url-shortener"):
    return sorted(lab.backend.model().endpoints_of(service))


def chains_of(path: Path) -> list[str]:
    """The chain each kernel hop happened in (its action starts with "<table> <chain>:")."""
    out = []
    for h in path.hops:
        if h.component in (Component.KUBE_PROXY, Component.CNI_PORTMAP, Component.DOCKER, Component.KINDNET) \
                and ":" in h.action and h.evidence:
            out.append(h.action.split(":", 1)[0].split(" ", 1)[1])
    return out


def test_every_way_builds_and_is_labelled(lab):
    for way in WAYS:
        p = lab.path(way)
        assert p.way is Way(way)
        assert p.predicted is True and p.backend == "sim"
        assert [h.index for h in p.hops] == list(range(1, len(p.hops) + 1))
        assert p.hops[0].component is Component.CLIENT
        assert p.destination is not None, way
        assert sum(pr for _, pr in p.alternatives) == 1
        df = p.frame()
        # the table says who acts: a program, or the kernel walking rules some program wrote
        assert list(df["component"]) == [c.label for c in p.components]
        assert not set(df["component"]) & {"kube-proxy", "CNI portmap", "Docker", "kindnet"}, way


def test_kernel_evidence_lines_are_rules_of_the_node(lab):
    text = lab.backend.iptables_save("k8slab-control-plane")
    rule_lines = {line.split("] ", 1)[1] for line in text.splitlines() if line.startswith("[")}
    for way in ("clusterip", "nodeport", "hostport", "ingress"):
        for h in lab.path(way).hops:
            if h.component in (Component.KUBE_PROXY, Component.CNI_PORTMAP) and h.place.startswith("node"):
                assert h.evidence, (way, h)
                for line in h.evidence:
                    assert line in rule_lines, (way, line)


def test_port_forward_is_control_plane_only(lab):
    p = lab.path("port-forward")
    assert p.uses_api_server and not p.uses_kernel_nat
    # kubectl reaches the API server through kind's published 127.0.0.1 port, i.e. docker-proxy
    assert p.components == [Component.CLIENT, Component.KUBECTL, Component.DOCKER_PROXY, Component.API_SERVER,
                            Component.KUBELET, Component.RUNTIME, Component.APP]
    assert [h.plane for h in p.hops[1:-1]] == ["control"] * 5
    model = lab.backend.model()
    first = sorted((q for q in model.selected_pods(model.service("url-shortener")) if q.ready),
                   key=lambda q: q.name)[0]
    assert p.destination == f"{first.ip}:8080"
    assert p.client_seen == "127.0.0.1"
    assert p.hops[3].dst == f"{model.control_plane.ip}:10250"
    assert all("KUBE-" not in e for h in p.hops for e in h.evidence)


def test_port_forward_path_names_the_local_port(lab):
    pf = lab.path("port-forward")
    assert pf.hops[0].dst == "127.0.0.1:18080" and "accepts on 127.0.0.1:18080" in pf.hops[1].action  # the Lab's default
    assert lab.path("port-forward", local_port=9999).hops[0].dst == "127.0.0.1:9999"


def test_clusterip_path_follows_kube_proxy(lab):
    p = lab.path("clusterip")
    chains = chains_of(p)
    assert chains[0] == "PREROUTING" and chains[1] == "KUBE-SERVICES"
    assert chains[2].startswith("KUBE-SVC-") and chains[3].startswith("KUBE-SEP-")
    assert Component.KUBE_PROXY in p.components and p.components[-1] is Component.APP
    assert p.destination in app_endpoints(lab)
    assert sorted(d for d, _ in p.alternatives) == app_endpoints(lab)
    assert all(pr == Fraction(1, 2) for _, pr in p.alternatives)
    assert p.probability == Fraction(1, 2)
    dnat = next(h for h in p.hops if "DNAT" in h.action)
    assert dnat.dst == p.destination and f"--to-destination {p.destination}" in dnat.evidence[-1]
    # a pod client on the same node keeps its address (KIND-MASQ-AGENT leaves pod traffic alone)
    node = lab.nodes()[0]
    src = client_pod_ip(lab.backend.model().pods, node)
    assert p.client_seen == src and p.hops[0].src.startswith(src)
    assert any(h.component is Component.ROUTING and "veth" in h.action for h in p.hops)


def test_clusterip_probabilities_after_scaling_to_three(lab):
    lab.scale("url-shortener", 3)
    rules = lab.iptables()
    p = lab.path("clusterip")
    svc_chain = chains_of(p)[2]
    probs = [r.option("statistic", "--probability") for r in rules.chain("nat", svc_chain).rules
             if r.target and r.target.startswith("KUBE-SEP-")]
    assert [o.value if o else None for o in probs] == ["0.33333333349", "0.50000000000", None]
    assert sorted(d for d, _ in p.alternatives) == app_endpoints(lab) and len(p.alternatives) == 3
    assert {pr for _, pr in p.alternatives} == {Fraction(1, 3)}
    tr = p.trace
    assert sorted(o.nominal for o in tr.baseline()) == [Fraction(1, 3)] * 3
    # each destination can be drawn, and the hops then end there
    for dest, _ in p.alternatives:
        q = lab.path("clusterip", prefer=dest)
        assert q.destination == dest and q.hops[-1].dst == dest


def test_service_without_endpoints_is_rejected(lab):
    lab.scale("url-shortener", 0)
    p = lab.path("clusterip")
    assert p.destination is None
    last = [h for h in p.hops if h.evidence][-1]
    assert "REJECT" in last.action and "has no endpoints" in last.evidence[-1]
    assert p.outcome.verdict == "REJECT"
    assert any("REJECT" in n for n in p.notes)


def test_deleting_the_service_removes_the_path(lab):
    lab.delete("service", "url-shortener")
    with pytest.raises(ValueError, match="deploy the app"):
        lab.path("clusterip")


def test_nodeport_path_marks_and_masquerades(lab):
    p = lab.path("nodeport")
    chains = chains_of(p)
    for want in ("KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-POSTROUTING"):
        assert want in chains, (want, chains)
    assert any(c.startswith("KUBE-EXT-") for c in chains) and any(c.startswith("KUBE-SVC-") for c in chains)
    assert chains.index("KUBE-NODEPORTS") < chains.index("KUBE-MARK-MASQ") < chains.index("KUBE-POSTROUTING")
    model = lab.backend.model()
    node = model.control_plane
    assert p.hops[0].dst == f"{node.ip}:30080" and p.hops[0].src.startswith(model.gateway)
    assert p.destination in app_endpoints(lab, "url-shortener-nodeport")
    masq = next(h for h in p.hops if "MASQUERADE" in h.action)
    expected = masquerade_source(model, node, p.destination.split(":")[0])
    assert masq.src.split(":")[0] == expected == p.client_seen
    assert p.client_seen != model.gateway          # the client address did not survive
    # the app pod is on this node: the packet leaves by the pod's veth, whose host side carries the
    # pod CIDR's gateway address (ptp), so that is the source MASQUERADE picks
    import ipaddress
    assert p.client_seen == str(ipaddress.ip_network(node.pod_cidr).network_address + 1)


def test_hostport_path_is_docker_then_portmap(lab):
    p = lab.path("hostport")
    assert p.components[:2] == [Component.CLIENT, Component.DOCKER_PROXY]
    assert Component.CNI_PORTMAP in p.components
    assert Component.KUBE_PROXY not in p.components      # KUBE-SERVICES was passed, but changed nothing
    chains = chains_of(p)
    assert "CNI-HOSTPORT-DNAT" in chains and any(c.startswith("CNI-DN-") for c in chains)
    ctrl = controller_pod(lab.backend.model())
    assert p.destination == f"{ctrl.ip}:80"
    assert p.components[-1] is Component.INGRESS_CONTROLLER
    assert p.client_seen == lab.backend.model().gateway    # docker-proxy's connection, not 127.0.0.1


def test_hostport_without_host_rules_still_explains_docker(lab):
    model = lab.backend.model()
    p = build_path("hostport", cluster_model=model, node_rules=lab.iptables(), host_rules=None,
                   nodes=lab.nodes(), backend="test", predicted=False)
    assert p.components[1] is Component.DOCKER_PROXY and p.predicted is False
    assert p.destination == f"{controller_pod(model).ip}:80"


def test_ingress_path_controller_dials_pods_directly(lab):
    p = lab.path("ingress")
    comps = p.components
    i = comps.index(Component.INGRESS_CONTROLLER)
    assert comps[i + 1:] == [Component.APP]              # no kube-proxy hop between controller and app
    assert all("KUBE-SVC" not in e for h in p.hops[i:] for e in h.evidence)
    assert p.destination in app_endpoints(lab)
    ctrl = controller_pod(lab.backend.model())
    assert p.client_seen == ctrl.ip and p.forwarded_for == lab.backend.model().gateway
    assert {d for d, _ in p.alternatives} == set(app_endpoints(lab))
    # the same first part as the hostPort path
    hp = lab.path("hostport")
    assert [h.component for h in p.hops[:i]] == hp.components[:-1]


def test_ingress_without_a_matching_rule_is_404(lab):
    p = lab.path("ingress", host="other.example")
    assert p.destination is None and "404" in p.hops[-1].action


def test_ingress_service_upstream_goes_through_kube_proxy(lab):
    import yaml
    ing = yaml.safe_load((lab.root / "kind/manifests/ingress.yaml").read_text())
    ing.setdefault("metadata", {}).setdefault("annotations", {})[
        "nginx.ingress.kubernetes.io/service-upstream"] = "true"
    lab.apply(ing)
    p = lab.path("ingress")
    i = p.components.index(Component.INGRESS_CONTROLLER)
    assert Component.KUBE_PROXY in p.components[i:]
    assert any(c.startswith("KUBE-SVC-") for c in chains_of(p))
    assert p.destination in app_endpoints(lab)


def test_multinode_paths_cross_nodes():
    lab = course_lab(config="kind/cluster-multinode.yaml", replicas=2)
    model = lab.backend.model()
    workers = {n.name for n in model.nodes if n.role == "worker"}
    app_nodes = {q.node_name for q in model.selected_pods(model.service("url-shortener"))}
    assert app_nodes <= workers                       # the control-plane keeps its taint
    p = lab.path("clusterip")
    assert any(h.component is Component.KINDNET and "route" in h.action for h in p.hops)
    assert p.client_seen == p.hops[0].src.split(":")[0]   # pod to pod across nodes: not masqueraded
    np_ = lab.path("nodeport")
    assert np_.client_seen == model.control_plane.ip      # masqueraded out of eth0 toward another node


def test_pick_outcome_prefers_accept():
    class O:
        def __init__(self, verdict, dest):
            self.verdict, self.destination = verdict, dest

    class T:
        outcomes = [O("REJECT", None), O("ACCEPT", "1.2.3.4:80")]

        def baseline(self):
            return self.outcomes
    assert pick_outcome(T()).destination == "1.2.3.4:80"
    assert pick_outcome(T(), prefer=None).verdict == "ACCEPT"


# --------------------------------------------------------------------------------------------
# the packet after each hop, and which address each hop rewrote

KERNEL_WAYS = ["clusterip", "nodeport", "hostport", "ingress"]


def _nat_of(hop) -> set[str]:
    """What the tracer's actions in this hop did, read off its action text: DNAT -> dst, MASQUERADE -> src."""
    acts = hop.action.split(": ", 1)[-1]
    return ({"dst"} if "DNAT " in acts or "REDIRECT " in acts else set()) | \
        ({"src"} if "MASQUERADE" in acts or "SNAT" in acts else set())


@pytest.mark.parametrize("way", KERNEL_WAYS)
def test_rewrote_column_matches_the_nat_the_tracer_found(lab, way):
    p = lab.path(way)
    df = p.frame()
    assert {"packet after this hop", "rewrote", "stand-in"} <= set(df.columns)
    assert list(df["packet after this hop"]) == [f"{h.src} → {h.dst}" for h in p.hops]
    model = lab.backend.model()
    node = model.control_plane
    prev = None
    for h, rewrote in zip(p.hops, df["rewrote"]):
        if h.component in (Component.KUBE_PROXY, Component.CNI_PORTMAP, Component.DOCKER) and h.evidence:
            nat = _nat_of(h)
            assert rewrote == {frozenset(): "", frozenset({"dst"}): "dst", frozenset({"src"}): "src",
                               frozenset({"src", "dst"}): "src and dst"}[frozenset(nat)], (way, h)
        if rewrote == "dst":                 # the DNAT target is the address the packet now goes to
            target = h.evidence[-1].split("--to-destination ", 1)[1].split()[0]
            assert h.dst == target and prev is not None and h.src == prev.src
        if rewrote == "src":                 # MASQUERADE: the address of the interface it leaves by
            assert h.src.split(":")[0] == masquerade_source(model, node, h.dst.split(":")[0])
            assert h.dst == prev.dst
        if rewrote == "":
            assert prev is None or (h.src, h.dst) == (prev.src, prev.dst) or h.component is Component.CLIENT, (way, h)
        prev = h
    # the tracer's outcome: where the kernel part ends is the destination it found
    kernel = [h for h in p.hops if h.rewrote == "dst"]
    assert kernel and kernel[-1].dst == p.outcome.destination
    # the answering process sees the source of the packet that reaches it
    assert p.hops[-1].src.split(":")[0] == p.client_seen


def test_proxies_open_new_connections(lab):
    ing = lab.path("ingress")
    rewrote = {h.component: h.rewrote for h in ing.hops}
    assert rewrote[Component.DOCKER_PROXY] == "new connection"
    assert rewrote[Component.INGRESS_CONTROLLER] == "new connection"
    ctrl = next(h for h in ing.hops if h.component is Component.INGRESS_CONTROLLER)
    assert ctrl.src.split(":")[0] == controller_pod(lab.backend.model()).ip and ctrl.dst == ing.destination
    nodeport = lab.path("nodeport")
    assert [h.rewrote for h in nodeport.hops if h.rewrote] == ["dst", "src"]   # one DNAT, then MASQUERADE
    # kube-proxy's MASQUERADE has --random-fully: the source port is a new, random one
    masq = next(h for h in nodeport.hops if h.rewrote == "src")
    assert "--random-fully" in masq.evidence[-1] and masq.src.endswith(":(random)")
    assert nodeport.hops[-1].src == masq.src


def test_port_forward_packets_end_on_the_pods_loopback(lab):
    p = lab.path("port-forward")
    assert [h.rewrote for h in p.hops] == ["", "new connection", "new connection", "new connection",
                                           "new connection", "new connection", ""]
    pod_ip = p.destination.split(":")[0]
    assert p.hops[-1].dst == "127.0.0.1:8080" == p.answered_at
    assert p.hops[-1].src.startswith("127.0.0.1:")
    assert "127.0.0.1:8080" in p.headline() and pod_ip not in p.headline()
    model = lab.backend.model()
    assert p.hops[2].dst == model.endpoints_of("kubernetes")[0]          # the API server, from the model
    assert p.hops[3].dst == f"{model.control_plane.ip}:10250"


def _netns_like(lab, runs_as):
    from dataclasses import replace
    return [replace(n, runs_as=runs_as) for n in lab.backend.nodes()]


@pytest.mark.parametrize("way", WAYS)
def test_stand_ins_are_marked_where_the_nodes_are_namespaces(lab, way):
    model = lab.backend.model()
    # what NetnsBackend.nodes() says of a node, and what the kind backend says
    netns = _netns_like(lab, "network namespace k8slab-control-plane (standing in for the Docker container)")
    kind = _netns_like(lab, "Docker container k8slab-control-plane (kindest/node:v1.35.8)")
    kw = dict(cluster_model=model, node_rules=lab.iptables(), host_rules=lab.host_iptables(), backend="netns")
    on_netns = build_path(way, nodes=netns, **kw)
    on_kind = build_path(way, nodes=kind, **kw)
    stood = {Component.KUBECTL, Component.API_SERVER, Component.KUBELET, Component.RUNTIME, Component.DOCKER_PROXY}
    assert [h.stand_in for h in on_netns.hops] == [h.component in stood for h in on_netns.hops]
    assert list(on_netns.frame()["stand-in"]) == [h.stand_in for h in on_netns.hops]
    assert not any(h.stand_in for h in on_kind.hops)
    assert any(h.stand_in for h in on_netns.hops) == any(n.startswith("stand-in") for n in on_netns.notes)
    if way == "port-forward":
        assert [h.component for h in on_netns.hops if h.stand_in] == [
            Component.KUBECTL, Component.DOCKER_PROXY, Component.API_SERVER, Component.KUBELET, Component.RUNTIME]


def test_clusterip_path_starts_at_the_course_client_pod_once_it_exists(lab):
    before = lab.path("clusterip").hops[0]
    ref = lab.client_pod()
    client = next(q for q in lab.backend.model().pods if f"{q.namespace}/{q.name}" == ref)
    first = lab.path("clusterip").hops[0]
    assert first.src.split(":")[0] == client.ip and client.name in first.place
    assert client.name not in before.place


def test_nftables_mode_paths_carry_the_same_rewrites():
    """kube-proxy's nftables mode (kind/cluster-nftables.yaml): the same DNAT, then a masquerade
    fully-random (kubernetes pkg/proxy/nftables/proxier.go), so a new source port."""
    from k8slab.paths import _randomizes_port
    lab = course_lab(config="kind/cluster-nftables.yaml")
    p = lab.path("nodeport")
    assert [h.rewrote for h in p.hops if h.rewrote] == ["dst", "src"]
    masq = next(h for h in p.hops if h.rewrote == "src")
    assert "fully-random" in masq.evidence[-1] and masq.src.endswith(":(random)")
    assert p.hops[-1].src.split(":")[0] == p.client_seen
    class R:
        def __init__(self, line):
            self.line = line
    assert _randomizes_port(R("snat to 10.0.0.1 random")) and not _randomizes_port(R("snat to 10.0.0.1"))
    assert not _randomizes_port(R("masquerade")) and not _randomizes_port(R("counter accept"))


def test_port_forward_reaches_the_api_server_through_its_published_port(lab):
    """kind publishes the API server on 127.0.0.1:<random> (kind docs, configuration "API Server";
    the kubeconfig's server): kubectl dials that, docker-proxy dials the node's :6443. The published
    port is read off Docker's DNAT rule in the host's rules."""
    from k8slab.model.docker import api_server_host_port
    model = lab.backend.model()
    p = lab.path("port-forward")
    hport = api_server_host_port(model)
    kubectl, proxy = p.hops[1], p.hops[2]
    assert kubectl.component is Component.KUBECTL and kubectl.dst == f"127.0.0.1:{hport}"
    assert kubectl.src.startswith("127.0.0.1:")
    assert proxy.component is Component.DOCKER_PROXY and proxy.place == "host"
    assert proxy.dst == f"{model.control_plane.ip}:6443" and proxy.src.startswith(f"{model.gateway}:")
    assert any(f"--dport {hport}" in e and "DNAT" in e for e in proxy.evidence)
    # without the host's rules (Docker Desktop) the hop cannot be read off: kubectl -> API server, said in words
    bare = build_path("port-forward", cluster_model=model, node_rules=lab.iptables(), host_rules=None,
                      nodes=lab.backend.nodes())
    assert Component.DOCKER_PROXY not in bare.components and "docker-proxy" in bare.hops[1].action


def test_kernel_hops_are_labelled_as_the_kernel_walking_someones_rules(lab):
    """The course's thesis: kube-proxy and the portmap plugin are not in the path, their rules are."""
    assert Component.KUBE_PROXY.label == "kernel (kube-proxy's rules)"
    assert Component.CNI_PORTMAP.label == "kernel (CNI portmap's rules)"
    assert Component.KUBE_PROXY.value == "kube-proxy" and Component.from_label("kernel (kube-proxy's rules)") \
        is Component.KUBE_PROXY is Component.from_label("kube-proxy")
    df = lab.path("nodeport").frame()
    assert "kernel (kube-proxy's rules)" in set(df["component"])
    masq = df[df["action"].str.contains("KUBE-POSTROUTING: MARK")]
    # kube-proxy's --xor-mark 0x4000 (saved as --set-xmark 0x4000/0x0) clears the bit; not "MARK 0x0"
    assert list(masq["action"].str.contains(r"--set-xmark 0x4000/0x0 \(xor 0x4000\): clears 0x4000")) == [True]
