"""What a sim node's kernel would show besides its rules: conntrack, source ports, routes, sockets.

Owns :func:`conntrack` and :func:`_track` (one TIME_WAIT entry per predicted connection, per node
or the host), :func:`_next_sport` (the client ports the predictions use, from :data:`FIRST_SPORT`),
:func:`routes` (kind's node routing table: Docker's network, kindnet's route per other node's pod
CIDR, ptp's /32 per local pod) and :func:`sockets`/:func:`_pod_sockets` (who listens where on a node
and in a pod: kubelet, kube-proxy, the control plane, the app, nginx, CoreDNS).
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
           Socket("tcp", f"127.0.0.1:{_stable_port(b.seed, n.name, 'containerd')}", "containerd")]
    if n.role == "control-plane":
        out += [Socket("tcp", "0.0.0.0:6443", "kube-apiserver"),
                Socket("tcp", "127.0.0.1:2379", "etcd"), Socket("tcp", f"{n.ip}:2379", "etcd"),
                Socket("tcp", f"{n.ip}:2380", "etcd"), Socket("tcp", "127.0.0.1:2381", "etcd"),
                Socket("tcp", "127.0.0.1:10257", "kube-controller-manager"),
                Socket("tcp", "127.0.0.1:10259", "kube-scheduler")]
    out.append(Socket("tcp", f"127.0.0.11:{_stable_port(b.seed, n.name, 'dns')}", "dockerd (embedded DNS)"))
    # No socket for any ClusterIP or NodePort: kube-proxy (iptables mode) only writes rules, and a
    # hostPort is a DNAT rule too; the ingress controller listens inside its own pod.
    del c
    return out


def _pod_sockets(b: "SimBackend", p) -> list[Socket]:
    if p.host_network:
        return b.sockets(p.node_name)
    out: list[Socket] = []
    if p is controller_pod(b._need()):
        out += [Socket("tcp", "0.0.0.0:80", "nginx"), Socket("tcp", "0.0.0.0:443", "nginx"),
                Socket("tcp", "0.0.0.0:8443", "nginx-ingress-controller (admission webhook)"),
                Socket("tcp", "0.0.0.0:10254", "nginx-ingress-controller (health, metrics)")]
        return out
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
