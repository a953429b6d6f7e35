"""The netns backend end to end on the real kernel (root): every way in, checked three ways.

For each way in, a real HTTP request is made and
1. the app's /whoami names the pod that answered and the client address it saw;
2. the tracer, run over the node's *live* ``iptables-save -c``, predicts the destination that the
   kernel's conntrack table recorded for that connection;
3. the rules whose packet counters rose are exactly the rules the predicted outcome passes through
   (nat table: nat sees only the first packet of a connection, so the sets must be equal; filter
   table: it sees every packet, so the predicted hops must be among the rules that rose).

One lab (module scope) serves most tests; the last test takes it down and checks that the root
namespace's rules, links, routes and sysctls are byte-identical to before.
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, skip_unless_root
from k8slab import runner
from k8slab.backends.netns.plumbing import wait_until
from k8slab.progress import Progress

TOOLS = ("ip", "iptables-save", "iptables-restore", "conntrack", "nginx", "ss",
         "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")
# Lab names carry this test run's pid, so that two runs (a developer's and CI's) never collide.
NAME = f"k8s-nt-{os.getpid()}"
OTHER = f"{NAME}-b"
CRASHED = f"k8s-ntc-{os.getpid()}"
HOST = "shortener.localtest.me"

pytestmark = pytest.mark.root


def manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "kind" / "manifests" / name).read_text()) if d]


def cleanup_stale_runs() -> None:
    """Labs of earlier runs of this module that were killed before their clean-up (dead pid)."""
    import re
    from k8slab.backends.netns import force_cleanup
    from k8slab.backends.netns.plumbing import STATE_ROOT, netns_list
    names = set(netns_list()) | ({p.name for p in STATE_ROOT.iterdir()} if STATE_ROOT.is_dir() else set())
    for name in names:
        m = re.match(r"(k8s-ntc?-(\d+)(?:-[bm])?)(?:-|$)", name)
        if m and not Path(f"/proc/{m.group(2)}").exists():
            force_cleanup(m.group(1))


@pytest.fixture(scope="module")
def lab():
    skip_unless_root(*TOOLS)
    from k8slab.backends.netns import NetnsBackend, force_cleanup, root_netns_snapshot
    cleanup_stale_runs()
    before = root_netns_snapshot()
    backend = NetnsBackend(NAME, root=ROOT, progress=Progress(quiet=True))
    backend.root_before = before
    try:
        backend.up(ROOT / "kind" / "cluster.yaml")
        backend.apply(manifests("app.yaml"))
        backend.wait_ready(60)
        backend.apply(manifests("ingress-nginx.yaml"))
        backend.wait_ready(60)
        backend.apply(manifests("ingress.yaml"))
        backend.apply(manifests("app-nodeport.yaml"))
        yield backend
    finally:
        backend.down()
        force_cleanup(NAME)


# --- helpers ---

def counters(text: str) -> dict[tuple[str, str, int], int]:
    from k8slab.netfilter.parser import parse
    return {(r.table, r.chain, r.position): r.packets or 0 for r in parse(text).iter_rules()}


def moved(before: str, after: str) -> set[tuple[str, str, int]]:
    b, a = counters(before), counters(after)
    return {k for k, v in a.items() if v != b.get(k, 0)}


def taken_hops(outcome) -> set[tuple[str, str, int]]:
    """Rules the packet matched on its way (the tracer also lists rules it looked at and passed)."""
    return {(h.table, h.chain, h.position) for h in outcome.hops
            if h.rule is not None and not h.action.startswith("no match")}


def measure(backend, where: str, do):
    """Run ``do()`` with ``where``'s conntrack emptied; return (response, rules before, after, conntrack)."""
    save = backend.host_iptables_save if where == "host" else (lambda: backend.iptables_save(where))
    backend.conntrack_flush(where)
    before = save()
    resp = do()
    after = save()
    return resp, before, after, backend.conntrack(where)


def entry_for(entries, dst: str, dport: int, src: str | None = None):
    hits = [e for e in entries if e.dst == dst and e.dport == dport and (src is None or e.src == src)]
    assert len(hits) == 1, f"expected one conntrack entry to {dst}:{dport}, got {hits}"
    return hits[0]


def check_prediction(backend, node_rules: str, packet, entry, moved_rules, node="node"):
    """The tracer over the live rules names conntrack's destination; counters rose exactly there."""
    from k8slab.netfilter.parser import parse
    from k8slab.netfilter.tracer import NodeContext, trace
    local = (backend.nodes()[0].local_ips if node == "node" else ("127.0.0.1", "172.18.0.1"))
    tr = trace(parse(node_rules), packet, NodeContext(local_ips=local))
    recorded = f"{entry.reply_src}:{entry.reply_sport}"
    dests = tr.by_destination()
    assert dests.get(recorded, 0) > 0, f"tracer predicted {dests}, conntrack recorded {recorded}"
    outcome = next(o for o in tr.baseline() if o.destination == recorded)
    hops = taken_hops(outcome)
    nat_hops = {h for h in hops if h[0] == "nat"}
    assert nat_hops == {m for m in moved_rules if m[0] == "nat"}
    assert {h for h in hops if h[0] == "filter"} <= moved_rules
    return outcome


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a killed process waiting to be reaped, state Z, does not count)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def app_pods(backend) -> dict[str, str]:
    c = backend.model()
    return {p.name: p.ip for p in c.pods if p.labels.get("app") == "url-shortener"}


# --- the lab is real ---

def test_routes_are_the_kernels_ptp_routes(lab):
    """ptp gives each pod a /32 route on the node to its own veth; the default route leaves by eth0."""
    c = lab.model()
    routes = lab.routes(c.control_plane.name)
    assert any(r.dst == "default" and r.via == c.gateway for r in routes)
    for pod in (p for p in c.pods if p.node_name == c.control_plane.name and not p.host_network and p.ip):
        r = next((r for r in routes if r.dst == pod.ip), None)
        assert r is not None and r.dev.startswith("veth"), (pod.name, routes)


def test_namespaces_addresses_and_processes_are_real(lab):
    c = lab.model()
    node = c.control_plane
    names = runner.run(["ip", "netns", "list"]).stdout
    assert f"{NAME}-host" in names and f"{NAME}-control-plane" in names
    for pod in c.pods:
        if pod.host_network:
            continue
        ns = lab.netns_of(pod.name)
        addr = runner.run(["ip", "-n", ns, "-4", "-o", "addr", "show", "eth0"]).stdout
        assert f"inet {pod.ip}/24" in addr, (pod.name, addr)
        assert Path(f"/run/k8slab/{NAME}/ipam/kindnet/{pod.ip}").exists()
    forward = runner.run(["ip", "netns", "exec", lab.netns_of(node.name), "cat",
                          "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
    assert forward == "1"
    eth0 = runner.run(["ip", "-n", lab.netns_of(node.name), "-4", "-o", "addr", "show", "eth0"]).stdout
    assert f"inet {node.ip}/16" in eth0
    route = runner.run(["ip", "-n", lab.netns_of(node.name), "route", "show", "default"]).stdout
    assert "via 172.18.0.1 dev eth0" in route
    for name in app_pods(lab):
        socks = lab.sockets(node.name, pod=name)
        assert any(s.local.endswith(":8080") for s in socks), socks
    ctrl = next(p for p in c.pods if p.namespace == "ingress-nginx")
    assert any(s.local.endswith(":80") and s.process == "nginx" for s in lab.sockets(node.name, pod=ctrl.name))
    assert "server_name shortener.localtest.me;" in lab.ingress_config()


def test_live_rules_are_kube_proxys_and_portmaps(lab):
    from k8slab import model as m
    from k8slab.netfilter.names import portmap_chain
    c = lab.model()
    node = c.control_plane
    live = lab.iptables_save(node.name)
    rendered = m.render_node_dump(c, node.name)
    ctrl = next(p for p in c.pods if p.namespace == "ingress-nginx")
    chain = portmap_chain("kindnet", ctrl.container_id)
    # the real portmap plugin wrote the chain the model names for the controller pod
    assert f":{chain} - " in live and f":{chain} - " in rendered
    assert f"--to-destination {ctrl.ip}:80" in live
    live_chains = {line.split()[0][1:] for line in live.splitlines() if line.startswith(":")}
    model_chains = {line.split()[0][1:] for line in rendered.splitlines() if line.startswith(":")}
    assert live_chains == model_chains
    assert "--dport 30080 -j KUBE-EXT-" in live
    host = lab.host_iptables_save()
    assert f"--dport 8080 -j DNAT --to-destination {node.ip}:80" in host


# --- each way in ---

def test_port_forward_reaches_the_pod_as_localhost_without_any_rule(lab):
    node = lab.model().control_plane.name
    with lab.port_forward("svc/url-shortener", 0, 80) as pf:
        assert pf.alive and pf.pod in app_pods(lab)
        resp, before, after, entries = measure(
            lab, node, lambda: lab.request(f"http://127.0.0.1:{pf.local_port}/whoami"))
        pgid = pf.pgid
    assert resp.ok and resp.pod == pf.pod and resp.client == "127.0.0.1"
    assert moved(before, after) == set()                  # no iptables rule in the node was involved
    assert not [e for e in entries if e.dport in (80, 8080)]
    assert not pf.alive and not runner.group_alive(pgid)
    resp = lab.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    assert not resp.ok and "refused" in resp.error


def test_clusterip_from_a_pod(lab):
    c = lab.model()
    node = c.control_plane.name
    svc = c.service("url-shortener")
    lab.request("http://127.0.0.1:1/", from_="pod")       # makes sure the client pod exists first
    client = c.pod("k8slab-client")
    resp, before, after, entries = measure(
        lab, node, lambda: lab.request(f"http://{svc.cluster_ip}/whoami", from_="pod"))
    assert resp.ok and resp.client == client.ip and resp.pod in app_pods(lab)
    e = entry_for(entries, svc.cluster_ip, 80, client.ip)
    assert e.reply_src == app_pods(lab)[resp.pod] and not e.snat
    from k8slab.netfilter.tracer import Packet
    outcome = check_prediction(lab, before, Packet(client.ip, svc.cluster_ip, 80), e, moved(before, after))
    assert not outcome.masquerade and resp.destination == f"{e.reply_src}:{e.reply_sport}"


def test_clusterip_from_the_node_itself(lab):
    c = lab.model()
    svc = c.service("url-shortener")
    resp = lab.request(f"http://{svc.cluster_ip}/whoami", from_="node")
    assert resp.ok and resp.pod in app_pods(lab) and resp.from_ == c.control_plane.name
    # the node's own address is not in the pod range: kube-proxy marks it, the node masquerades it
    assert resp.client in lab.nodes()[0].local_ips and resp.client != c.control_plane.ip


def test_nodeport_from_the_host_network_is_masqueraded(lab):
    c = lab.model()
    node = c.control_plane
    resp, before, after, entries = measure(
        lab, node.name, lambda: lab.request(f"http://{node.ip}:30080/whoami"))
    assert resp.ok and resp.pod in app_pods(lab)
    e = entry_for(entries, node.ip, 30080, "172.18.0.1")
    # MASQUERADE picked the node's address toward the pod (the pod veth's .1, as on a kind node)
    assert e.snat and resp.client == e.reply_dst and resp.client in lab.nodes()[0].local_ips
    assert resp.client != "172.18.0.1"
    from k8slab.netfilter.tracer import Packet
    outcome = check_prediction(lab, before, Packet("172.18.0.1", node.ip, 30080, in_interface="eth0"),
                               e, moved(before, after))
    assert outcome.masquerade


def _ingress_request(lab, url, host=HOST):
    return lab.request(url, host=host)


@pytest.mark.parametrize("url", ["http://172.18.0.2:80/whoami", "http://127.0.0.1:8080/whoami"],
                         ids=["node-ip:80", "docker-proxy 127.0.0.1:8080"])
def test_hostport_then_ingress(lab, url):
    c = lab.model()
    node = c.control_plane
    ctrl = next(p for p in c.pods if p.namespace == "ingress-nginx")
    svc_chain = next(line.split()[-1] for line in lab.iptables_save(node.name).splitlines()
                     if "default/url-shortener:http cluster IP" in line and "KUBE-SERVICES -d" in line)
    resp, before, after, entries = measure(lab, node.name, lambda: _ingress_request(lab, url))
    assert resp.ok and resp.pod in app_pods(lab)
    assert resp.client == ctrl.ip                                   # nginx opened the last hop
    assert resp.whoami["x_forwarded_for"] == "172.18.0.1"          # the host, seen by nginx unchanged
    assert resp.whoami["host"] == HOST
    first = entry_for(entries, node.ip, 80, "172.18.0.1")
    assert f"{first.reply_src}:{first.reply_sport}" == f"{ctrl.ip}:80" and not first.snat
    second = entry_for(entries, app_pods(lab)[resp.pod], 8080, ctrl.ip)
    assert not second.dnat                                          # straight to the pod IP
    from k8slab.netfilter.parser import parse
    from k8slab.netfilter.tracer import NodeContext, Packet, trace
    rules_moved = moved(before, after)
    local = lab.nodes()[0].local_ips
    hop1 = next(o for o in trace(parse(before), Packet("172.18.0.1", node.ip, 80, in_interface="eth0"),
                                 NodeContext(local_ips=local)).baseline())
    hop2 = next(o for o in trace(parse(before), Packet(ctrl.ip, second.dst, 8080),
                                 NodeContext(local_ips=local)).baseline())
    assert hop1.destination == f"{ctrl.ip}:80" and hop2.destination in (None, f"{second.dst}:8080")
    nat = {h for h in taken_hops(hop1) | taken_hops(hop2) if h[0] == "nat"}
    assert nat == {m for m in rules_moved if m[0] == "nat"}
    # Ingress traffic never passes the Service's KUBE-SVC chain
    assert not [m for m in rules_moved if m[1] == svc_chain]
    assert any(m[1].startswith("CNI-DN-") for m in rules_moved)


def test_docker_dnat_on_the_host_for_the_hosts_own_address(lab):
    """172.18.0.1:8080 from the host itself: Docker's OUTPUT -> DOCKER DNAT rule, not docker-proxy."""
    from k8slab.netfilter.tracer import Packet
    node = lab.model().control_plane
    resp, before, after, entries = measure(lab, "host", lambda: _ingress_request(
        lab, "http://172.18.0.1:8080/whoami"))
    assert resp.ok and resp.pod in app_pods(lab)
    e = entry_for(entries, "172.18.0.1", 8080)
    assert (e.reply_src, e.reply_sport) == (node.ip, 80)
    # the kernel routes the DNATed packet out of the bridge; the tracer is told so
    packet = Packet("172.18.0.1", "172.18.0.1", 8080, out_interface=lab.bridge)
    check_prediction(lab, before, packet, e, moved(before, after),
                     node="host")


def test_ingress_routes_by_host(lab):
    ok = _ingress_request(lab, "http://127.0.0.1:8080/whoami")
    other = _ingress_request(lab, "http://127.0.0.1:8080/whoami", host="nobody.example")
    assert ok.ok and ok.pod in app_pods(lab)
    assert other.status == 404 and "<title>404 Not Found</title>" in other.body    # ingress-nginx's catch-all


PATHS_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: by-path, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: paths.localtest.me
    http:
      paths:
      - {path: /whoami, pathType: Exact, backend: {service: {name: url-shortener, port: {number: 80}}}}
      - {path: /, pathType: Prefix, backend: {service: {name: not-deployed, port: {number: 80}}}}
"""


def test_ingress_routes_by_path_on_the_real_nginx(lab):
    """Same host, two paths: /whoami goes to the app; / goes to a Service that does not exist, which
    the real nginx answers with 503 (no upstream), as the model's routing table predicts."""
    import yaml
    from k8slab.model import ingress_routes, match_route
    lab.apply([d for d in yaml.safe_load_all(PATHS_INGRESS) if d])
    try:
        routes = ingress_routes(lab.model())
        assert match_route(routes, "paths.localtest.me", "/whoami").service == "url-shortener"
        assert match_route(routes, "paths.localtest.me", "/other").service == "not-deployed"
        hit = lab.request("http://paths.localtest.me:8080/whoami")
        miss = lab.request("http://paths.localtest.me:8080/other")
        assert hit.ok and hit.pod in app_pods(lab), hit.error
        assert miss.status == 503 and miss.whoami is None
    finally:
        lab.delete("ingress", "by-path")
    assert "paths.localtest.me" not in lab.ingress_config()


def test_ingress_host_name_resolves_without_dns(lab):
    """The learner's URL, http://shortener.localtest.me:8080/, works on a machine with no DNS:
    localtest.me names are answered with 127.0.0.1 (as public DNS does), the Host header is the name."""
    resp = lab.request(f"http://{HOST}:8080/whoami")
    assert resp.ok and resp.pod in app_pods(lab), resp.error
    assert resp.whoami["host"].startswith(HOST)


# --- changes: scale, reload, delete ---

def test_scale_to_three_spreads_new_connections(lab):
    c = lab.model()
    node = c.control_plane.name
    svc = c.service("url-shortener")
    lab.scale("url-shortener", 3)
    lab.wait_ready(60)
    pods = app_pods(lab)
    assert len(pods) == 3
    conf = lab.ingress_config()
    assert all(f"server {ip}:8080;" in conf for ip in pods.values())   # nginx was reloaded
    seen = Counter()
    for _ in range(300):
        r = lab.request(f"http://{svc.cluster_ip}/whoami", from_="pod")
        assert r.ok, r.error
        seen[r.pod] += 1
    assert set(seen) == set(pods)
    # each pod gets 1/3: |k - 100| <= 27 is about 3.3 standard deviations (sd = 8.2)
    assert all(abs(k - 100) <= 27 for k in seen.values()), seen
    # the ingress reaches the new pod too (nginx round-robins over the three endpoints)
    via_ingress = {_ingress_request(lab, "http://127.0.0.1:8080/whoami").pod for _ in range(9)}
    assert via_ingress == set(pods)
    # back to two: the newest pod's namespace, veth and address are gone
    lab.scale("url-shortener", 2)
    gone = set(pods) - set(app_pods(lab))
    assert len(gone) == 1
    (gone_pod,) = gone
    assert f"{NAME}-pod-{gone_pod}" not in runner.run(["ip", "netns", "list"]).stdout
    assert not Path(f"/run/k8slab/{NAME}/ipam/kindnet/{pods[gone_pod]}").exists()
    assert f"{pods[gone_pod]}:8080" not in lab.iptables_save(node)


def test_deleting_a_service_removes_its_chains_and_keeps_portmaps(lab):
    node = lab.model().control_plane.name
    before = lab.iptables_save(node)
    chain = next(line.split()[-1] for line in before.splitlines()
                 if "url-shortener-nodeport:http cluster IP" in line and "KUBE-SERVICES -d" in line)
    cni_chains = {line.split()[0] for line in before.splitlines() if line.startswith(":CNI-")}
    lab.delete("service", "url-shortener-nodeport")
    after = lab.iptables_save(node)
    assert chain not in after and "--dport 30080" not in after
    assert cni_chains == {line.split()[0] for line in after.splitlines() if line.startswith(":CNI-")}
    assert not lab.request(f"http://{lab.model().control_plane.ip}:30080/whoami").ok
    lab.apply(manifests("app-nodeport.yaml"))
    assert lab.request(f"http://{lab.model().control_plane.ip}:30080/whoami").ok


# --- several labs, crashes ---

def test_two_labs_side_by_side(lab):
    from k8slab.backends.netns import NetnsBackend, force_cleanup
    other = NetnsBackend(OTHER, root=ROOT, progress=Progress(quiet=True))
    try:
        other.up(ROOT / "kind" / "cluster.yaml")
        other.apply(manifests("app.yaml"))
        other.wait_ready(60)
        # same addresses, different namespaces: each lab answers with its own pods
        ip = other.model().service("url-shortener").cluster_ip
        r2 = other.request(f"http://{ip}/whoami", from_="pod")
        r1 = lab.request(f"http://{lab.model().service('url-shortener').cluster_ip}/whoami", from_="pod")
        assert r1.ok and r2.ok
        assert r2.whoami["node"] == f"{OTHER}-control-plane" and r1.whoami["node"] == f"{NAME}-control-plane"
        assert other.nodes()[0].ip == lab.nodes()[0].ip
    finally:
        other.down()
        force_cleanup(OTHER)
    assert not [n for n in runner.run(["ip", "netns", "list"]).stdout.split() if n.startswith(f"{OTHER}-")]
    assert lab.request("http://127.0.0.1:8080/whoami", host=HOST).ok


def test_a_second_object_attaches_to_the_running_lab(lab):
    """Like a second kubectl on a kind cluster: up() of the same name and config attaches (the lab
    is not rebuilt, its pods keep their processes); another config is refused with what to do."""
    from k8slab.backends.netns import NetnsBackend
    from k8slab.errors import LabStateError
    pids = {k: p.pid for k, p in lab._procs.items()}
    second = NetnsBackend(NAME, root=ROOT, progress=Progress(quiet=True))
    assert second.is_up()                         # before up(): the lab is there, as with kind
    second.up(ROOT / "kind" / "cluster.yaml")
    assert {k: p.pid for k, p in second._procs.items()} == pids
    assert {p.name for p in second.model().pods} == {p.name for p in lab.model().pods}
    assert second.request("http://127.0.0.1:8080/whoami", host=HOST).ok
    with pytest.raises(LabStateError, match=r"lab.down\(\)"):
        NetnsBackend(NAME, root=ROOT, progress=Progress(quiet=True)).up(ROOT / "kind" / "cluster-multinode.yaml")
    assert lab.is_up() and lab.request("http://127.0.0.1:8080/whoami", host=HOST).ok
    assert {k: p.pid for k, p in lab._procs.items()} == pids


def test_multi_node_cluster_routes_pods_across_nodes():
    skip_unless_root(*TOOLS)
    from k8slab.backends.netns import NetnsBackend
    multi = NetnsBackend(f"{NAME}-m", root=ROOT, progress=Progress(quiet=True))
    try:
        multi.up(ROOT / "kind" / "cluster-multinode.yaml")
        app = manifests("app.yaml")
        app[0]["spec"]["replicas"] = 3
        multi.apply(app + manifests("app-nodeport.yaml"))
        multi.wait_ready(60)
        c = multi.model()
        nodes = {n.name: n for n in multi.nodes()}
        assert len(nodes) == 3 and len({n.pod_cidr for n in nodes.values()}) == 3
        where = {p.name: p.node_name for p in c.pods if p.labels.get("app") == "url-shortener"}
        assert set(where.values()) - {c.control_plane.name}          # app pods run on workers
        svc = c.service("url-shortener")
        pods = {multi.request(f"http://{svc.cluster_ip}/whoami", from_="pod").pod for _ in range(40)}
        assert pods == set(where)                                       # from the control-plane
        for node in nodes.values():
            r = multi.request(f"http://{node.ip}:30080/whoami")
            assert r.ok and r.pod in where
            # masqueraded to an address of the node that received it (its eth0 toward another node)
            assert r.client in node.local_ips
    finally:
        multi.down()


def test_force_cleanup_after_a_crashed_lab():
    skip_unless_root(*TOOLS)
    import subprocess
    import sys
    script = (
        "import sys, yaml; from pathlib import Path; from k8slab.backends.netns import NetnsBackend\n"
        "from k8slab.progress import Progress\n"
        f"root = Path({str(ROOT)!r}); b = NetnsBackend({CRASHED!r}, root=root, progress=Progress(quiet=True))\n"
        "b.up(root / 'kind/cluster.yaml')\n"
        "b.apply([d for d in yaml.safe_load_all((root / 'kind/manifests/app.yaml').read_text()) if d])\n"
        "b.wait_ready(60); print('UP', flush=True)\n"
        "import os; os._exit(0)   # a crash: no down()\n")
    from k8slab.backends.netns import force_cleanup
    force_cleanup(CRASHED)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "UP" in res.stdout, res.stderr
    left = [n for n in runner.run(["ip", "netns", "list"]).stdout.split() if n.startswith(f"{CRASHED}-")]
    assert left, "the crashed lab should have left namespaces behind"
    pids = [int(p) for ns in left for p in runner.run(["ip", "netns", "pids", ns]).stdout.split()]
    assert pids, "the app processes should still run"
    removed = force_cleanup(CRASHED)
    assert any(r.startswith("netns ") for r in removed)
    assert not [n for n in runner.run(["ip", "netns", "list"]).stdout.split() if n.startswith(f"{CRASHED}-")]
    assert wait_until(lambda: not any(alive(p) for p in pids), 5)
    assert not Path(f"/run/k8slab/{CRASHED}").exists()
    assert force_cleanup(CRASHED) == []


# --- last: down() leaves nothing, and the root namespace is untouched ---

def test_zz_down_removes_everything_and_root_namespace_is_unchanged(lab):
    from k8slab.backends.netns import root_netns_snapshot
    pids = [p.pid for p in lab._procs.values()]
    assert pids
    lab.down()
    lab.down()                                    # idempotent
    assert not lab.is_up()
    assert not [n for n in runner.run(["ip", "netns", "list"]).stdout.split() if n.startswith(f"{NAME}-")]
    assert not Path(f"/run/k8slab/{NAME}").exists()
    assert not any(runner.group_alive(p) for p in pids)
    after = root_netns_snapshot()
    assert after == lab.root_before
    assert os.path.exists("/proc/self/ns/net")
