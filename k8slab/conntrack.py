"""The kernel's connection tracking, one row per connection, in the course's words. Pure functions.

Each ``conntrack -L`` entry holds two tuples: the *original* one (the first packet as the client sent
it) and the *reply* one (what the answer must look like when it comes back). NAT shows as a
difference between them:

* DNAT (kube-proxy's Service rules, portmap's hostPort rules, Docker's published ports): the reply
  comes *from* somewhere else than the client dialled (``reply src != original dst``);
* SNAT / MASQUERADE: the reply goes *to* somewhere else than the client's address
  (``reply dst != original src``). kube-proxy's MASQUERADE carries ``--random-fully``, so the source
  *port* changes too (measured on the real kernel: 46886 became 47692);
* the kernel translates the reply back with the same entry, so the client sees an answer from the
  address it dialled, to its own address.

Conntrack tables are per network namespace: a node's table (``conntrack -L`` on the node) holds the
connections that crossed the node's own stack or were forwarded through it. A ``kubectl
port-forward`` connection goes through the API server and the kubelet into the pod's namespace, so
the node's table gets no NAT'd entry for the app; on a real kind node the control plane's own
connections (to the API server on :6443, to the kubelet on :10250, to etcd) are in the same table:
:func:`connections_frame` labels them, it does not hide them.

Real lines these functions were written against: ``tests/data/conntrack/`` (captured with
conntrack-tools 1.4.7 in the netns backend's namespaces).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from .backends.base import ConntrackEntry

#: Ports of the control plane on a kind node, and who listens there (kubeadm's defaults).
CONTROL_PLANE_PORTS = {6443: "API server", 10250: "kubelet", 2379: "etcd", 2380: "etcd peer",
                       10257: "kube-controller-manager", 10259: "kube-scheduler",
                       10248: "kubelet healthz", 10256: "kube-proxy healthz", 10249: "kube-proxy metrics"}
DNS_PORT = 53
#: Control-plane programs whose port is random, recognised by who listens there (``ss -ltnp``):
#: containerd's CRI streaming server (``stream_server_address = "127.0.0.1"``, ``stream_server_port
#: = "0"``), which the kubelet proxies every port-forward, exec and attach stream to.
CONTROL_PLANE_LISTENERS = {"containerd": "container runtime's streaming server"}

COLUMNS = ["proto", "original", "reply", "dnat", "snat", "reply_translated_back", "state",
           "client", "dialled", "answered_by", "server_saw", "purpose"]

Key = tuple[str, str, int, str, int]


def key_of(e: ConntrackEntry) -> Key:
    """A connection's identity: its original tuple (what the client sent)."""
    return (e.proto, e.src, e.sport, e.dst, e.dport)


def _ep(ip: str, port: int | None) -> str:
    if not port:
        return ip
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _tuple(src: str, sport: int, dst: str, dport: int) -> str:
    return f"{_ep(src, sport)} -> {_ep(dst, dport)}"


def dnat_text(e: ConntrackEntry) -> str:
    """``"dst 172.18.0.2:30080 -> 10.244.0.5:8080"``, or ``""`` when the destination was kept."""
    if not e.dnat:
        return ""
    return f"dst {_ep(e.dst, e.dport)} -> {_ep(e.reply_src, e.reply_sport)}"


def snat_text(e: ConntrackEntry) -> str:
    """``"src 172.18.0.1 -> 10.244.0.1"`` (ports too when the port changed), or ``""``."""
    if not e.snat:
        return ""
    if e.reply_dport != e.sport:
        return f"src {_ep(e.src, e.sport)} -> {_ep(e.reply_dst, e.reply_dport)}"
    return f"src {e.src} -> {e.reply_dst}"


def reply_back_text(e: ConntrackEntry) -> str:
    """How the kernel rewrites the answer with this entry, in words."""
    if not (e.dnat or e.snat):
        return "unchanged (no NAT): the reply leaves as it came"
    port_changed = e.reply_dport != e.sport
    to_in = _ep(e.reply_dst, e.reply_dport) if port_changed else e.reply_dst
    to_out = _ep(e.src, e.sport) if port_changed else e.src
    return (f"reply from {_ep(e.reply_src, e.reply_sport)} to {to_in} leaves as from "
            f"{_ep(e.dst, e.dport)} to {to_out}")


def purpose_of(e: ConntrackEntry, names: Mapping[str, str] | None = None) -> str:
    """``"app traffic"``, ``"control plane (API server :6443)"``, ``"DNS"`` or ``"other"``.

    The port the server really answers on (``reply_sport``) decides first: a pod dialling the
    ``kubernetes`` Service's ClusterIP:443 is DNAT'd to the API server's :6443."""
    for port in (e.reply_sport, e.dport):
        if port in CONTROL_PLANE_PORTS:
            return f"control plane ({CONTROL_PLANE_PORTS[port]} :{port})"
    listener = (names or {}).get(_ep(e.reply_src, e.reply_sport), "")     # "ip:port" -> who listens
    for proc, what in CONTROL_PLANE_LISTENERS.items():
        if listener.startswith(proc):
            return f"control plane ({what} :{e.reply_sport})"
    if DNS_PORT in (e.reply_sport, e.dport):
        return "DNS"
    if not e.sport and not e.dport:
        return "other (no ports: not TCP/UDP)"
    known = names or {}
    if not e.dnat and known.get(e.src, "").startswith("node ") and known.get(e.dst, "").startswith("pod "):
        return "node -> pod directly (the kubelet's probes look like this)"
    if any(known.get(a, "").startswith(("pod ", "ClusterIP ")) for a in (e.src, e.dst, e.reply_src, e.reply_dst)):
        return "app traffic"       # a pod or a Service at either end (the node's own traffic is "other")
    return "other"


def address_names(cluster: Any = None, nodes: Iterable[Any] = (), host: str | None = None,
                  listeners: Iterable[Any] = ()) -> dict[str, str]:
    """Who each address of the lab is: ``{ip: "pod default/app-1", ...}``; ``listeners`` (Sockets
    from ``ss -ltnp``: ``.local``, ``.process``) add ``{"127.0.0.1:41235": "containerd"}`` entries for
    the control-plane programs of :data:`CONTROL_PLANE_LISTENERS`, which listen on random ports.

    ``cluster`` is a :class:`k8slab.model.Cluster` (pods, services, nodes, gateway); ``nodes`` the
    backend's NodeInfo list (live addresses win). The pod CIDR's first address is the node's end of
    every pod's veth (kindnet's ptp plugin puts it there): MASQUERADE toward a local pod picks it."""
    names: dict[str, str] = {}
    gateway = host or getattr(cluster, "gateway", None)
    if gateway:
        names[gateway] = "host (kind network gateway)"
    node_list = list(nodes) or list(getattr(cluster, "nodes", []) or [])
    for n in node_list:
        ip, name, cidr = getattr(n, "ip", ""), getattr(n, "name", ""), getattr(n, "pod_cidr", "")
        if ip:
            names[ip] = f"node {name}"
        if cidr:
            try:
                gw = str(ipaddress.ip_network(cidr, strict=False).network_address + 1)
                names[gw] = f"node {name} (its end of the pod veths)"
            except ValueError:
                pass
    for p in getattr(cluster, "pods", []) or []:
        if p.ip and not getattr(p, "host_network", False) and p.ip not in names:
            names[p.ip] = f"pod {p.namespace}/{p.name}"
    for s in getattr(cluster, "services", []) or []:
        cip = getattr(s, "cluster_ip", None)
        if cip and cip != "None":
            names[cip] = f"ClusterIP of {s.namespace}/{s.name}"
    names.setdefault("127.0.0.1", "loopback (this namespace)")
    for sock in listeners:
        proc = getattr(sock, "process", "") or ""
        if any(proc.startswith(p) for p in CONTROL_PLANE_LISTENERS):
            names[getattr(sock, "local", "")] = proc
    return names


def lab_networks(cluster: Any = None, nodes: Iterable[Any] = ()) -> list[Any]:
    """The networks the lab's addresses live in: node IPs, pod CIDRs, the Service subnet, loopback."""
    nets = [ipaddress.ip_network("127.0.0.0/8")]
    for text in [getattr(cluster, "service_subnet", None), getattr(cluster, "gateway", None)]:
        if text:
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                pass
    for n in list(nodes) + list(getattr(cluster, "nodes", []) or []):
        for text in (getattr(n, "ip", None), getattr(n, "pod_cidr", None)):
            if text:
                try:
                    nets.append(ipaddress.ip_network(text, strict=False))
                except ValueError:
                    pass
    return nets


def concerns_lab(e: ConntrackEntry, networks: Iterable[Any]) -> bool:
    """True when any address of the entry lies in one of the lab's networks."""
    nets = list(networks)
    for a in (e.src, e.dst, e.reply_src, e.reply_dst):
        try:
            addr = ipaddress.ip_address(a)
        except ValueError:
            continue
        if any(addr.version == n.version and addr in n for n in nets):
            return True
    return False


def new_entries(before: Iterable[ConntrackEntry], after: Iterable[ConntrackEntry]) -> list[ConntrackEntry]:
    """The entries of ``after`` whose original tuple was not in ``before`` (order of ``after``)."""
    seen = {key_of(e) for e in before}
    out, added = [], set()
    for e in after:
        k = key_of(e)
        if k not in seen and k not in added:
            out.append(e)
            added.add(k)
    return out


def in_path_order(entries: Iterable[ConntrackEntry]) -> list[ConntrackEntry]:
    """The entries with each connection before the ones it led to: a connection that starts where
    another one was delivered (nginx dialling the app after the hostPort DNAT brought the request to
    nginx) comes after it. ``conntrack -L`` lists in hash order, so without this the Ingress's two
    connections come in either order. Otherwise the order is kept."""
    rest = list(entries)
    out: list[ConntrackEntry] = []
    while rest:
        ends = {e.reply_src for e in rest}
        first = next((e for e in rest if e.src not in ends or e.src == e.reply_src), rest[0])
        out.append(first)
        rest.remove(first)
    return out


def _who(ip: str, names: Mapping[str, str]) -> str:
    name = names.get(ip)
    return f"{ip} ({name})" if name else ip


def connection_row(e: ConntrackEntry, names: Mapping[str, str] | None = None) -> dict[str, str]:
    names = names or {}
    return {
        "proto": e.proto,
        "original": _tuple(e.src, e.sport, e.dst, e.dport),
        "reply": _tuple(e.reply_src, e.reply_sport, e.reply_dst, e.reply_dport),
        "dnat": dnat_text(e),
        "snat": snat_text(e),
        "reply_translated_back": reply_back_text(e),
        "state": e.state,
        "client": _who(e.src, names),
        "dialled": _who(e.dst, names),
        "answered_by": _who(e.reply_src, names),
        "server_saw": _who(e.reply_dst, names),
        "purpose": purpose_of(e, names),
    }


def connections_frame(entries: Iterable[ConntrackEntry], names: Mapping[str, str] | None = None):
    """One row per connection (see :data:`COLUMNS`): the original and reply tuples, the DNAT and the
    SNAT they show, how the reply is translated back, the state, who each address is (``names``:
    from :func:`address_names`), and what the connection is for (app traffic or control plane)."""
    import pandas as pd
    rows = [connection_row(e, names) for e in entries]
    return pd.DataFrame(rows, columns=COLUMNS)
