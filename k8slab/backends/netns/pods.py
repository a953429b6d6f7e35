"""Pods on the netns backend: what the kubelet and the runtime do when the model's pods change.

Owns the reconcile (:func:`reconcile`: a namespace per pod of the model, wired by the real CNI
plugins, kindnet's conflist, run inside the node's namespace; pods the model no longer has are
deleted with CNI DEL), which process a pod runs (:func:`role`: the app, the ingress controller, the
course's client pod, or none) and the app's process (:func:`start_app`). The rules resync and nginx
that follow every reconcile are :mod:`.kube_proxy`'s and :mod:`.ingress`'s.

:class:`~.backend.NetnsBackend` keeps ``_reconcile``, ``_add_pod``, ``_remove_pod`` and
``_start_app`` as methods that call these (a subclass, e.g. the kind emulator's, extends them), and
these call back through those methods.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ...errors import K8sLabError
from .. import cni
from . import ingress
from . import plumbing as pl
from . import text as tx

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend, NodeNet, PodNet

APP_IMAGE_HINT = "url-shortener"
CONTROLLER_IMAGE_HINT = "ingress-nginx/controller"
CLIENT_POD = "k8slab-client"                 # kind/manifests/client.yaml


def reconcile(b: "NetnsBackend") -> None:
    """Make the namespaces and processes match the model's pods, then resync rules and nginx."""
    desired = {}
    for pod in b._cluster.pods:
        if pod.host_network or pod.node_name not in b._nodes:
            continue
        desired[pod.key] = pod
    for key in [k for k in b._pods if k not in desired]:
        b._remove_pod(b._pods.pop(key))
    for key, pod in desired.items():
        if key not in b._pods:
            b._add_pod(pod)
    b._sync_rules()
    b._sync_nginx()


def role(pod) -> tuple[str, int | None]:
    images = " ".join(c.image for c in pod.containers)
    ports = [p.container_port for p in pod.container_ports() if p.protocol == "TCP"]
    if CONTROLLER_IMAGE_HINT in images:
        return "controller", 80
    if APP_IMAGE_HINT in images:
        return "app", (ports[0] if ports else 8080)
    if pod.name == CLIENT_POD:
        return "client", None
    return "pod", None


def add(b: "NetnsBackend", pod) -> None:
    from .backend import PodNet
    node = b._nodes[pod.node_name]
    ns = tx.pod_netns(b.name, pod.name, pod.namespace)
    cid = getattr(pod, "container_id", "") or cni.container_id(b.name, pod.namespace, pod.name)
    mappings = tuple(cni.PortMapping(p.host_port, p.container_port, p.protocol.lower(), p.host_ip)
                     for p in pod.host_ports())
    att = cni.Attachment(container_id=cid, netns=f"{pl.NETNS_DIR}/{ns}", port_mappings=mappings)
    pl.netns_add(b.name, ns)
    try:
        result = cni.add(conflist(b, node), att, exec_in=node.netns)   # DELs itself on failure
    except BaseException:
        pl.netns_delete(ns)
        raise
    pod_role, port = role(pod)
    pnet = PodNet(pod.name, pod.namespace, ns, node.name, result.ip, att, pod_role, port)
    b._pods[pod.key] = pnet
    # The model learns the address host-local really gave (the model's own guess may differ).
    pod.ip = result.ip
    pod.host_ip = node.ip
    pod.container_id = cid
    if pod_role == "app":
        b._start_app(pnet)
    b.progress.step(f"pod {pod.namespace}/{pod.name}: {ns}, {result.ip} via CNI ptp+portmap"
                    + (f", hostPorts {', '.join(str(m.host_port) for m in mappings)}" if mappings else "")
                    + ("" if pod_role in ("app", "controller") else " (no process)"))


def remove(b: "NetnsBackend", pod: "PodNet") -> None:
    if pod.proc is not None:
        pl.stop(b.name, pod.proc)
        b._procs.pop(pod.proc.key, None)
        pod.proc = None
    if pod.role == "controller":
        ingress.stop(b)
    node = b._nodes.get(pod.node)
    if node is not None and pl.netns_exists(node.netns) and pl.netns_exists(pod.netns):
        errors = cni.delete(conflist(b, node), pod.attachment, exec_in=node.netns)
        for err in errors:
            b.progress.step(f"warning: {err}")
    pl.netns_delete(pod.netns)


def conflist(b: "NetnsBackend", node: "NodeNet") -> dict:
    return cni.kindnet_conflist(node.pod_cidr, b.state / "ipam", mtu=1500)


def start_app(b: "NetnsBackend", pod: "PodNet") -> None:
    server = b.root / "app" / "server.py"
    if not server.exists():
        raise K8sLabError(f"{server} is missing: the netns backend runs the course's app from there")
    key = f"app-{pod.namespace}-{pod.name}"
    env = {"POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace, "POD_IP": pod.ip,
           "NODE_NAME": pod.node, "PYTHONUNBUFFERED": "1"}
    argv = ["ip", "netns", "exec", pod.netns, sys.executable, str(server), "--port", str(pod.port)]
    pod.proc = pl.start(b.name, key, argv, env=env, cwd=str(b.root),
                        log=b.state / "logs" / f"{key}.log", info=f"url-shortener in {pod.netns}")
    b._procs[key] = pod.proc
