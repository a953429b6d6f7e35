"""What a sim node's kernel would show besides its rules: conntrack, source ports, routes, sockets.

Owns :func:`conntrack` and :func:`_track` (one TIME_WAIT entry per predicted connection, per node
or the host), :func:`_next_sport` (the client ports the predictions use, from :data:`FIRST_SPORT`),
:func:`routes` (kind's node routing table: Docker's network, kindnet's route per other node's pod
CIDR, ptp's /32 per local pod) and :func:`sockets`/:func:`_pod_sockets` (who listens where on a node
and in a pod: kubelet, kube-proxy, the control plane, the app, nginx, CoreDNS), and
:func:`track_port_forward`/:func:`close_port_forward` (the control-plane connections a port-forward
opens in the host's and the nodes' tables: docker-proxy to the API server, the API server to the
kubelet, the kubelet to containerd's streaming server).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...paths import APP_NAME, controller_pod
from ..base import ConntrackEntry, Route, Socket
from .rules import HOST

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SimBackend

FIRST_SPORT = 40000


def _next_sport(b: "SimBackend") -> int:
    b._sport += 1
    if b._sport > 60999:
        b._sport = FIRST_SPORT
    return b._sport


def conntrack(b: "SimBackend", node: str) -> list[ConntrackEntry]:
    if node == HOST:         # the learner's machine: Docker's DNAT and docker-proxy's connections
        return list(b._conntrack.get(HOST, []))
    return list(b._conntrack.get(b._node(node).name, []))


def _track(b: "SimBackend", where: str, src, sport, dst, dport, rsrc, rsport, rdst, rdport) -> None:
    b._conntrack.setdefault(where, []).append(ConntrackEntry(
        "tcp", src, dst, sport, dport, rsrc, rdst, rsport, rdport, "TIME_WAIT"))


def containerd_stream_port(b: "SimBackend", node) -> int:
    """The port containerd's CRI streaming server listens on, on the node's loopback: containerd's
    defaults ``stream_server_address = "127.0.0.1"``, ``stream_server_port = "0"`` (a random port,
    seeded here; kind's containerd config does not set them)."""
    return _stable_port(b.seed, node.name, "containerd")


def track_port_forward(b: "SimBackend", pod) -> list[tuple[str, ConntrackEntry]]:
    """The connections one ``kubectl port-forward`` opens when it starts, in the tables that see
    them, ESTABLISHED while it runs (returned as (table, entry) so closing can age them):

    1. kubectl dials the API server at kind's published ``127.0.0.1:<port>`` (the kubeconfig's
       server) and upgrades that connection for ``pods/portforward``: a new connection, because an
       upgraded stream cannot share a pooled one. client-go tools/portforward/portforward.go
       ``ForwardPorts`` dials (``pf.dialer.Dial``) *before* it listens, so this happens at start,
       not per request. On the host: 127.0.0.1:p -> 127.0.0.1:<port> (loopback, no NAT: Docker's
       OUTPUT DNAT skips 127/8) to docker-proxy, which opens gateway:p' -> <control-plane>:6443; the
       node's table gets that second connection (purpose: API server :6443).
    2. The API server proxies the upgrade to the kubelet of the pod's node
       (``/portForward/<ns>/<pod>`` on :10250; apimachinery's UpgradeAwareHandler dials a new backend
       connection per upgrade; kubeadm's ``--kubelet-preferred-address-types=InternalIP,...``):
       <control-plane IP>:p -> <node IP>:10250, in the control plane's table and, when the pod runs
       on a worker, in the worker's too.
    3. The kubelet asks the runtime for a streaming URL (CRI ``PortForward`` over containerd's unix
       socket: no conntrack entry) and proxies the stream to it (kubelet server.go ``getPortForward``
       -> ``proxyStream``): 127.0.0.1:p -> 127.0.0.1:<containerd stream port> in the pod's node's
       table.
    4. Each connection kubectl then accepts becomes new streams over these same connections, and
       containerd dials ``localhost:<port>`` inside the *pod's* namespace (its own conntrack table):
       nothing new in any node's table per request.
    """
    from ...model.docker import api_server_host_port
    c = b._need()
    cp = c.control_plane
    node = b._node(pod.node_name)
    gw = c.gateway
    made: list[tuple[str, ConntrackEntry]] = []

    def est(where: str, src: str, sport: int, dst: str, dport: int) -> None:
        e = ConntrackEntry("tcp", src, dst, sport, dport, dst, src, dport, sport, "ESTABLISHED")
        b._conntrack.setdefault(where, []).append(e)
        made.append((where, e))

    # Ephemeral source ports from a seeded hash (32768-60999, Linux's default ip_local_port_range),
    # not from _next_sport: the client ports of later predicted requests stay as they were.
    nonce = str(sum(len(t) for t in b._conntrack.values()))

    def sport(leg: str) -> int:
        return _stable_port(b.seed, "port-forward", nonce, leg)

    api_port = api_server_host_port(c)
    est(HOST, "127.0.0.1", sport("kubectl"), "127.0.0.1", api_port)        # kubectl -> docker-proxy
    p = sport("docker-proxy")
    est(HOST, gw, p, cp.ip, 6443)                                          # docker-proxy -> API server
    est(cp.name, gw, p, cp.ip, 6443)
    p = sport("apiserver")
    est(cp.name, cp.ip, p, node.ip, 10250)                                 # API server -> kubelet
    if node.name != cp.name:
        est(node.name, cp.ip, p, node.ip, 10250)
    est(node.name, "127.0.0.1", sport("kubelet"), "127.0.0.1", containerd_stream_port(b, node))
    return made


def close_port_forward(b: "SimBackend", made: list[tuple[str, ConntrackEntry]]) -> None:
    """kubectl stopped: its connections close, and the kernel keeps each entry in TIME_WAIT."""
    from dataclasses import replace
    for where, e in made:
        table = b._conntrack.get(where, [])
        for i, x in enumerate(table):
            if x is e:
                table[i] = replace(e, state="TIME_WAIT")


def routes(b: "SimBackend", node: str) -> list[Route]:
    """The routing table kind's node would have (modelled): Docker's network on eth0, kindnet's
    route to every other node's pod CIDR via that node, and ptp's /32 route per local pod."""
    c = b._need()
    n = b._node(node)
    out = [Route("default", "eth0", c.gateway),
           Route(c.docker_network, "eth0", src=n.ip, scope="link")]
    out += [Route(o.pod_cidr, "eth0", o.ip) for o in c.nodes if o.name != n.name and o.pod_cidr]
    for p in sorted(c.pods, key=lambda p: p.ip or ""):
        if p.node_name == n.name and p.ip and not p.host_network:
            out.append(Route(p.ip, "veth" + (p.container_id or "0" * 8)[:8], scope="host"))
    return out


def sockets(b: "SimBackend", node: str, pod: str | None = None) -> list[Socket]:
    c = b._need()
    n = b._node(node)
    if pod is not None:
        p = b._find_pod(pod)
        return b._pod_sockets(p)
    out = [Socket("tcp", "0.0.0.0:10250", "kubelet"), Socket("tcp", "127.0.0.1:10248", "kubelet"),
           Socket("tcp", "127.0.0.1:10249", "kube-proxy"), Socket("tcp", "0.0.0.0:10256", "kube-proxy"),
           Socket("tcp", f"127.0.0.1:{containerd_stream_port(b, n)}", "containerd")]
    if n.role == "control-plane":
        out += [Socket("tcp", "0.0.0.0:6443", "kube-apiserver"),
                Socket("tcp", "127.0.0.1:2379", "etcd"), Socket("tcp", f"{n.ip}:2379", "etcd"),
                Socket("tcp", f"{n.ip}:2380", "etcd"), Socket("tcp", "127.0.0.1:2381", "etcd"),
                Socket("tcp", "127.0.0.1:10257", "kube-controller-manager"),
                Socket("tcp", "127.0.0.1:10259", "kube-scheduler")]
    # the same port Docker's DNAT rule sends DNS over TCP to (model.docker: one source for both)
    from ...model.docker import dns_ports
    out.append(Socket("tcp", f"127.0.0.11:{dns_ports(c, n)[0]}", "dockerd (embedded DNS)"))
    # No socket for any ClusterIP or NodePort: kube-proxy (iptables mode) only writes rules, and a
    # hostPort is a DNAT rule too; the ingress controller listens inside its own pod.
    del c
    return out


def _pod_sockets(b: "SimBackend", p) -> list[Socket]:
    if p.host_network:
        return b.sockets(p.node_name)
    out: list[Socket] = []
    if p is controller_pod(b._need()):
        from ...model.ingress import controller_sockets
        return [Socket("tcp", local, proc) for local, proc in controller_sockets()]
    proc = _process_of(p)
    for cp in p.container_ports():
        if cp.protocol.upper() == "TCP":
            out.append(Socket("tcp", f"0.0.0.0:{cp.container_port}", proc))
    if p.labels.get("k8s-app") == "kube-dns":
        out += [Socket("tcp", "0.0.0.0:8080", "coredns (health)"), Socket("tcp", "0.0.0.0:8181", "coredns (ready)")]
    return out


# ---------------------------------------------------------------------------------------------
# helpers

def _is_app(pod) -> bool:
    return pod.labels.get("app") == APP_NAME or pod.labels.get("app.kubernetes.io/name") == APP_NAME


def _process_of(pod) -> str:
    if _is_app(pod):
        return "python3 (app/server.py)"
    if pod.containers:
        return pod.containers[0].name
    return pod.name


def _stable_port(seed: int, *key: str) -> int:
    import hashlib
    h = hashlib.sha256("/".join((str(seed),) + key).encode()).digest()
    return 32768 + int.from_bytes(h[:4], "big") % 28000
