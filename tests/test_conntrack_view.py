"""Connection tracking per way in: the frame of k8slab.conntrack, the sim's predicted entries, and the
real kernel's entries (netns backend, root) compared with the sim's.

Real lines: tests/data/conntrack/netns-node.txt and netns-host.txt were captured with conntrack-tools
1.4.7 (Debian 12) in the netns backend's node and host namespaces after one request per way in (the
files' headers say which line is which). What they taught the sim: kube-proxy's MASQUERADE carries
``--random-fully``, so the client's source port changes as well as its address (46886 -> 47692), while
portmap's MASQUERADE keeps it (50738 stays 50738); Docker's DNAT for the published port is in the
host's table, the node's entry for the same connection has only portmap's DNAT; an Ingress request is
two entries (host -> controller through the hostPort DNAT, nginx -> pod IP with no NAT); port-forward
leaves no entry in the node's table.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import ROOT, course_lab, skip_unless_root
from k8slab import conntrack as ct
from k8slab.backends.base import ConntrackEntry
from k8slab.backends.kind.parse import parse_conntrack as parse_kind
from k8slab.backends.netns.text import parse_conntrack as parse_netns

DATA = ROOT / "tests" / "data" / "conntrack"
HOST_NAME = "shortener.localtest.me"


def captured(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture(scope="module")
def sim():
    return course_lab()


def _names(lab):
    cluster, nodes = lab._cluster_and_nodes()
    return ct.address_names(cluster, nodes)


# --- pure: the frame of real `conntrack -L` lines --------------------------------------------------

@pytest.mark.parametrize("parse", [parse_netns, parse_kind], ids=["netns-parser", "kind-parser"])
def test_frame_of_real_lines(parse, sim):
    entries = parse(captured("netns-node.txt"))
    assert len(entries) == 6
    df = ct.connections_frame(entries, _names(sim))
    assert list(df.columns) == ct.COLUMNS
    nodeport = df.iloc[0]
    assert nodeport["original"] == "172.18.0.1:46886 -> 172.18.0.2:30080"
    assert nodeport["reply"] == "10.244.0.5:8080 -> 10.244.0.1:47692"
    assert nodeport["dnat"] == "dst 172.18.0.2:30080 -> 10.244.0.5:8080"
    assert nodeport["snat"] == "src 172.18.0.1:46886 -> 10.244.0.1:47692"
    assert nodeport["reply_translated_back"] == ("reply from 10.244.0.5:8080 to 10.244.0.1:47692 leaves as "
                                                 "from 172.18.0.2:30080 to 172.18.0.1:46886")
    assert nodeport["state"] == "TIME_WAIT"
    assert nodeport["client"] == "172.18.0.1 (host (kind network gateway))"
    assert nodeport["answered_by"].startswith("10.244.0.5 (pod default/url-shortener-")
    assert nodeport["server_saw"] == "10.244.0.1 (node k8slab-control-plane (its end of the pod veths))"
    assert nodeport["purpose"] == "app traffic"
    upstream, hostport = df.iloc[1], df.iloc[2]
    assert (upstream["dnat"], upstream["snat"]) == ("", "")          # nginx dials the pod IP: no NAT
    assert upstream["reply_translated_back"].startswith("unchanged")
    assert upstream["client"].startswith("10.244.0.7 (pod ingress-nginx/ingress-nginx-controller-")
    assert hostport["dnat"] == "dst 172.18.0.2:80 -> 10.244.0.7:80" and hostport["snat"] == ""
    assert hostport["reply_translated_back"] == ("reply from 10.244.0.7:80 to 172.18.0.1 leaves as from "
                                                 "172.18.0.2:80 to 172.18.0.1")
    clusterip = df.iloc[3]
    assert clusterip["dnat"] == "dst 10.96.30.168:80 -> 10.244.0.6:8080" and clusterip["snat"] == ""
    assert clusterip["dialled"] == "10.96.30.168 (ClusterIP of default/url-shortener)"
    hairpin = df.iloc[4]
    assert hairpin["snat"] == "src 10.244.0.8 -> 10.244.0.1"          # portmap keeps the port


def test_host_table_and_portless_lines():
    kind = parse_kind(captured("netns-host.txt"))          # keeps the IGMP line, without ports
    netns = parse_netns(captured("netns-host.txt"))        # skips it
    assert len(kind) == 4 and len(netns) == 3
    df = ct.connections_frame(kind, ct.address_names(host="172.18.0.1"))
    docker = df.iloc[0]
    assert docker["dnat"] == "dst 172.18.0.1:8080 -> 172.18.0.2:80" and docker["snat"] == ""
    igmp = df.iloc[1]
    assert igmp["original"] == "172.18.0.1 -> 224.0.0.22" and igmp["purpose"].startswith("other (no ports")


def test_control_plane_connections_are_labelled_not_hidden(sim):
    # Constructed in conntrack -L's form (no kind capture here): CoreDNS watching the API server through
    # the kubernetes Service (10.96.0.1:443 -> the API server's :6443), and the API server's exec/logs
    # connection to the kubelet (:10250), a DNS lookup, and a readiness probe from the node's veth end.
    text = ("tcp      6 86398 ESTABLISHED src=10.244.0.3 dst=10.96.0.1 sport=51234 dport=443 "
            "src=172.18.0.2 dst=10.244.0.3 sport=6443 dport=51234 [ASSURED] mark=0 use=1\n"
            "tcp      6 86398 ESTABLISHED src=172.18.0.2 dst=172.18.0.2 sport=40100 dport=10250 "
            "src=172.18.0.2 dst=172.18.0.2 sport=10250 dport=40100 [ASSURED] mark=0 use=1\n"
            "udp      17 27 src=10.244.0.8 dst=10.96.0.10 sport=38811 dport=53 src=10.244.0.3 "
            "dst=10.244.0.8 sport=53 dport=38811 mark=0 use=1\n"
            "tcp      6 118 TIME_WAIT src=10.244.0.1 dst=10.244.0.5 sport=43512 dport=8080 src=10.244.0.5 "
            "dst=10.244.0.1 sport=8080 dport=43512 [ASSURED] mark=0 use=1\n")
    entries = parse_kind(text)
    df = ct.connections_frame(entries, _names(sim))
    assert list(df["purpose"]) == ["control plane (API server :6443)", "control plane (kubelet :10250)", "DNS",
                                   "node -> pod directly (the kubelet's probes look like this)"]
    cluster, nodes = sim._cluster_and_nodes()
    nets = ct.lab_networks(cluster, nodes)
    assert all(ct.concerns_lab(e, nets) for e in entries)


def test_new_entries_and_lab_filter():
    a = ConntrackEntry("tcp", "10.244.0.8", "10.96.30.168", 1, 80, "10.244.0.5", "10.244.0.8", 8080, 1, "TIME_WAIT")
    b = ConntrackEntry("tcp", "192.0.2.7", "198.51.100.1", 2, 443, "198.51.100.1", "192.0.2.7", 443, 2)
    later = ConntrackEntry("tcp", "10.244.0.8", "10.96.30.168", 1, 80, "10.244.0.5", "10.244.0.8", 8080, 1,
                           "CLOSE")
    assert ct.new_entries([a], [later, b]) == [b]            # same original tuple: not new
    assert ct.new_entries([], [a, a]) == [a]
    nets = ct.lab_networks(None, [type("N", (), {"ip": "172.18.0.2", "pod_cidr": "10.244.0.0/24"})()])
    assert ct.concerns_lab(a, nets) and not ct.concerns_lab(b, nets)


def test_in_path_order_puts_the_ingress_hop_first():
    # conntrack -L listed nginx's connection first (netns-node.txt): the request reached nginx first
    nginx_to_app, host_to_nginx = parse_netns(captured("netns-node.txt"))[1:3]
    assert ct.in_path_order([nginx_to_app, host_to_nginx]) == [host_to_nginx, nginx_to_app]
    assert ct.in_path_order([host_to_nginx, nginx_to_app]) == [host_to_nginx, nginx_to_app]


# --- sim: the predicted entries per way in ----------------------------------------------------------

def test_sim_nodeport_dnat_and_masquerade(sim):
    node_ip = sim.get("nodes").iloc[0]["ip"]
    with sim.connections() as c:
        r = sim.request(f"http://{node_ip}:30080/whoami", from_="host")
    assert r.ok and len(c.entries) == 1
    e = c.entries[0]
    assert (e.src, e.dst, e.dport) == ("172.18.0.1", node_ip, 30080)
    assert f"{e.reply_src}:{e.reply_sport}" == r.destination              # DNAT to the pod that answered
    assert e.reply_dst == "10.244.0.1" == r.client                         # MASQUERADE: the veth's end
    assert e.reply_dport != e.sport and 1024 <= e.reply_dport <= 65535     # --random-fully
    assert r.whoami["client_port"] == e.reply_dport                        # the app sees the new port
    row = c.frame.iloc[0]
    assert row["dnat"] and row["snat"] and row["purpose"] == "app traffic"
    assert c.frame.attrs["predicted"] is True


def test_sim_clusterip_from_pod_dnat_only(sim):
    cip = sim.get("services").query("name == 'url-shortener'").iloc[0]["cluster_ip"]
    with sim.connections() as c:
        r = sim.request(f"http://{cip}/whoami", from_="pod")
    (e,) = c.entries
    assert e.dnat and not e.snat and e.dst == cip and r.client == e.src


def test_sim_ingress_is_two_connections(sim):
    with sim.connections() as c:
        r = sim.request("http://localhost:8080/whoami", host=HOST_NAME)
    assert r.ok and len(c.entries) == 2
    ctrl_ip = next(e.reply_src for e in c.entries if e.dnat)
    first = next(e for e in c.entries if e.dnat)
    second = next(e for e in c.entries if not e.dnat)
    assert (first.src, first.dport, first.reply_sport, first.snat) == ("172.18.0.1", 80, 80, False)
    assert (second.src, second.dst, second.dport) == (ctrl_ip, r.destination.split(":")[0], 8080)
    assert not second.snat and r.client == ctrl_ip
    assert list(c.frame["snat"]) == ["", ""]


def test_sim_hostport_from_the_host_gateway(sim):
    with sim.connections() as node, sim.connections("host") as host:
        r = sim.request("http://172.18.0.1:8080/whoami", host=HOST_NAME)
    assert r.ok
    (docker,) = host.entries                                   # Docker's DNAT: on the host only
    assert (docker.dst, docker.dport, docker.reply_src, docker.reply_sport) == ("172.18.0.1", 8080,
                                                                                "172.18.0.2", 80)
    hostport = next(e for e in node.entries if e.dport == 80)
    assert hostport.sport == docker.sport and hostport.dst == "172.18.0.2" and not hostport.snat


def test_sim_hostport_hairpin_from_a_pod_keeps_the_port(sim):
    with sim.connections() as c:
        r = sim.request("http://172.18.0.2:80/whoami", host=HOST_NAME, from_="pod")
    assert r.ok
    e = next(e for e in c.entries if e.dport == 80)
    assert e.dnat and e.snat and e.reply_dst == "10.244.0.1" and e.reply_dport == e.sport


def test_sim_port_forward_leaves_nothing_on_the_node(sim):
    with sim.port_forward("svc/url-shortener", local_port=18123, remote_port=80) as pf:
        with sim.connections() as c:
            r = sim.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    assert r.ok and c.entries == [] and len(c.frame) == 0


def test_sim_port_forward_start_opens_three_control_plane_connections_on_the_node(sim):
    # client-go's PortForwarder.ForwardPorts dials the API server before it listens; the API server
    # dials the kubelet (:10250), the kubelet containerd's streaming server (127.0.0.1:<random>):
    # all when the port-forward starts, none per request (requests are new streams over them).
    cp = sim.backend.model().control_plane
    with sim.connections() as start:
        pf = sim.port_forward("svc/url-shortener", local_port=18124, remote_port=80)
    try:
        with sim.connections() as during:
            assert sim.request(f"http://127.0.0.1:{pf.local_port}/whoami").client == "127.0.0.1"
    finally:
        pf.close()
    stream_port = next(int(s.local.rsplit(":", 1)[1]) for s in sim.backend.sockets(cp.name)
                       if s.process == "containerd")
    gw = sim.backend.model().gateway
    assert [(e.src, e.dst, e.dport, e.state) for e in start.entries] == [
        (gw, cp.ip, 6443, "ESTABLISHED"), (cp.ip, cp.ip, 10250, "ESTABLISHED"),
        ("127.0.0.1", "127.0.0.1", stream_port, "ESTABLISHED")]
    assert list(start.frame["purpose"]) == [
        "control plane (API server :6443)", "control plane (kubelet :10250)",
        f"control plane (container runtime's streaming server :{stream_port})"]
    assert not (start.entries[0].dnat or start.entries[0].snat)      # docker-proxy dialled: no NAT on the node
    assert during.entries == []                                       # per request: nothing new on the node
    # closed: the same connections, now TIME_WAIT
    after = {ct.key_of(e): e.state for e in sim.backend.conntrack(cp.name)}
    assert all(after[ct.key_of(e)] == "TIME_WAIT" for e in start.entries)


def test_sim_port_forward_host_side_goes_through_docker_proxy(sim):
    from k8slab.model.docker import api_server_host_port
    m = sim.backend.model()
    with sim.connections(node="host") as host:
        with sim.port_forward("svc/url-shortener", local_port=18125, remote_port=80):
            pass
    assert [(e.src, e.dst, e.dport) for e in host.entries] == [
        ("127.0.0.1", "127.0.0.1", api_server_host_port(m)), (m.gateway, m.control_plane.ip, 6443)]


def test_sim_port_forward_to_a_worker_pod_dials_that_workers_kubelet():
    # the API server runs on the control plane; the kubelet and containerd of the pod's node
    lab = course_lab(config="kind/cluster-multinode.yaml")
    m = lab.backend.model()
    cp = m.control_plane
    pod = next(p for p in m.pods if p.name.startswith("url-shortener") and p.node_name != cp.name)
    worker = next(n for n in m.nodes if n.name == pod.node_name)
    with lab.connections(node=cp.name) as on_cp, lab.connections(node=worker.name) as on_worker:
        lab.port_forward(f"pod/{pod.name}", local_port=18126, remote_port=8080).close()
    assert [(e.src, e.dst, e.dport) for e in on_cp.entries] == [(m.gateway, cp.ip, 6443), (cp.ip, worker.ip, 10250)]
    assert [(e.dst, e.dport) for e in on_worker.entries][0] == (worker.ip, 10250)
    assert on_worker.entries[1].dst == "127.0.0.1" and list(on_worker.frame["purpose"])[1].startswith(
        "control plane (container runtime's streaming server")


def test_purpose_names_the_streaming_server_by_its_listener():
    e = ConntrackEntry("tcp", "127.0.0.1", "127.0.0.1", 40004, 41235, "127.0.0.1", "127.0.0.1", 41235, 40004,
                       "ESTABLISHED")
    assert ct.purpose_of(e, ct.address_names()) == "other"
    sock = type("S", (), {"local": "127.0.0.1:41235", "process": "containerd"})()
    names = ct.address_names(listeners=[sock])
    assert ct.purpose_of(e, names) == "control plane (container runtime's streaming server :41235)"


def test_connections_is_read_after_the_block(sim):
    w = sim.connections()
    assert "watching" in repr(w) and w.frame is None


# --- the real kernel (netns backend) against the sim ------------------------------------------------

TOOLS = ("ip", "iptables-save", "iptables-restore", "conntrack", "nginx", "ss",
         "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")
NAME = f"k8s-ctv-{os.getpid()}"


@pytest.fixture(scope="module")
def kernel():
    skip_unless_root(*TOOLS)
    from k8slab import Lab
    from k8slab.backends.netns import force_cleanup
    lab = Lab(backend="netns", name=NAME, quiet=True)
    try:
        lab.up()
        lab.deploy_app(replicas=2)
        lab.install_ingress_controller()
        lab.apply("kind/manifests/ingress.yaml")
        lab.apply("kind/manifests/app-nodeport.yaml")
        yield lab
    finally:
        try:
            lab.down()
        finally:
            force_cleanup(NAME)


def _roles(lab, e: ConntrackEntry) -> tuple:
    """An entry's shape: who is at each end (pods by their workload, not their generated names) and
    the ports that do not depend on the kernel's random choices."""
    names = _names(lab)

    def role(ip):
        name = names.get(ip, "?").replace(f"node {lab.name}-", "node LAB-")
        return re.sub(r"-[a-z0-9]{5,10}-[a-z0-9]{5}$", "", name) if name.startswith("pod ") else name

    return (e.proto, role(e.src), role(e.dst), e.dport, role(e.reply_src), e.reply_sport, role(e.reply_dst),
            e.dnat, e.snat)


def _run(lab, way: str):
    node_ip = lab.get("nodes").iloc[0]["ip"]
    if way == "nodeport":
        return lab.request(f"http://{node_ip}:30080/whoami", from_="host")
    if way == "ingress":
        return lab.request("http://localhost:8080/whoami", host=HOST_NAME)
    if way == "clusterip":
        cip = lab.get("services").query("name == 'url-shortener'").iloc[0]["cluster_ip"]
        return lab.request(f"http://{cip}/whoami", from_="pod")
    if way == "hairpin":
        return lab.request(f"http://{node_ip}:80/whoami", host=HOST_NAME, from_="pod")
    raise ValueError(way)


@pytest.mark.root
@pytest.mark.parametrize("way", ["nodeport", "ingress", "clusterip", "hairpin"])
def test_kernel_entries_have_the_shape_the_sim_predicts(kernel, sim, way):
    with kernel.connections() as real:
        r = _run(kernel, way)
    with sim.connections() as predicted:
        p = _run(sim, way)
    assert r.ok and p.ok, (r.error, p.error)
    real_app = [e for e in real.entries if ct.purpose_of(e, _names(kernel)) == "app traffic"]
    sim_app = [e for e in predicted.entries if ct.purpose_of(e, _names(sim)) == "app traffic"]
    assert sorted(_roles(kernel, e) for e in real_app) == sorted(_roles(sim, e) for e in sim_app), \
        real.frame.to_string()
    if way == "nodeport":
        (e,) = real_app
        assert e.dnat and e.snat and e.reply_dst == r.client
    if way == "ingress":                      # the hostPort DNAT to nginx, then nginx -> pod IP, no NAT
        assert len(real_app) == 2 and [e.dnat for e in real.entries] == [True, False]
        assert real.entries[1].src == real.entries[0].reply_src
    if way == "hairpin":                       # portmap's MASQUERADE (no --random-fully) keeps the port
        (e,) = [e for e in real_app if e.dport == 80]
        assert e.reply_dport == e.sport


@pytest.mark.root
def test_kernel_port_forward_leaves_nothing_on_the_node(kernel):
    with kernel.port_forward("svc/url-shortener", local_port=0, remote_port=80) as pf:
        with kernel.connections() as c:
            r = kernel.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    assert r.ok and r.client == "127.0.0.1"
    assert [e for e in c.entries if ct.purpose_of(e, _names(kernel)) == "app traffic"] == []


# --- kind (fake docker/kind/kubectl, tests/fakes): the node's table read twice, the host's refused --

def test_kind_connections_read_the_node_twice_and_refuse_the_host(tmp_path, monkeypatch):
    from fakes.harness import fake_tools
    from k8slab import Lab
    from k8slab.backends import kind as k
    from k8slab.errors import LabStateError
    ft = fake_tools(tmp_path, monkeypatch)
    monkeypatch.chdir(ft.root)
    monkeypatch.setattr(k.KindBackend, "available", classmethod(lambda cls: (True, "fake tools")))
    lab = Lab(backend="kind", root=ft.root, quiet=True)
    lab.up()
    ft.clear_log()
    with lab.connections() as c:
        pass
    reads = [a for a in ft.argvs("docker") if "conntrack" in a]
    assert len(reads) == 2 and reads[0][-2:] == ["conntrack", "-L"]
    assert c.entries == [] and c.frame.attrs["predicted"] is False      # the fake's table did not change
    with pytest.raises(LabStateError, match="sudo conntrack -L"):
        lab.connections("host")
