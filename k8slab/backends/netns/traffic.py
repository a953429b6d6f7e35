"""Traffic into the netns lab from Python: the kubelet's readiness probe, requests, port-forward.

Owns :func:`wait_ready` and :func:`probe` (a TCP connect, and ``GET /healthz`` for the app, made
inside the pod's namespace as the kubelet's probe is), :func:`request` (one plain-http GET sent from
the host namespace, a node or a pod, over a socket opened inside that namespace by
:func:`k8slab.backends.nsrelay.connect_in`) and :func:`port_forward` with its
:class:`NetnsPortForward` (a relay process in the host namespace that dials 127.0.0.1:<port> inside
the pod: the stand-in for kubectl + API server + kubelet + the runtime's streaming server), with
kubectl's choice of pod for ``svc/``, ``deploy/`` and ``pod/`` targets (:func:`resolve_forward`).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...errors import K8sLabError, NotFound
from .. import nsrelay
from ..base import PortForward, Response, resolves_to_loopback
from . import plumbing as pl

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend, PodNet


class NetnsPortForward(PortForward):
    """A port-forward whose listener is in the lab's host namespace. Stands in for kubectl + API
    server + kubelet + the runtime's streaming server: one relay process that opens each connection
    inside the pod's namespace to 127.0.0.1:<port>. No iptables rule is involved."""

    def __init__(self, backend: "NetnsBackend", proc: pl.Proc, local_port: int, target: str,
                 remote_port: int, pod: str, pod_port: int):
        self._backend = backend
        self._proc = proc
        self.local_port = local_port
        self.target = target
        self.remote_port = remote_port
        self.pod = pod
        self.pod_port = pod_port
        self.netns = backend.host_ns
        self._closed = False

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.alive

    @property
    def pgid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            b = self._backend
            if not b.is_up():                   # the lab is gone (down() in some process): the relay too
                pl.stop(b.name, self._proc)
            else:
                with b._changing():
                    pl.stop(b.name, self._proc)
                    b._procs.pop(self._proc.key, None)
            if self in b._forwards:
                b._forwards.remove(self)

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return (f"<port-forward 127.0.0.1:{self.local_port} (netns {self.netns}) -> {self.pod} "
                f"127.0.0.1:{self.pod_port} [{state}] stands in for kubectl+API server+kubelet+runtime>")


def wait_ready(b: "NetnsBackend", timeout: float = 120.0) -> None:
    b._require_up()
    deadline = time.monotonic() + timeout
    for pod in list(b._pods.values()):
        if pod.role not in ("app", "controller"):
            continue
        path = "/healthz" if pod.role == "app" else None
        while True:
            if pod.proc is not None and not pod.proc.alive:
                raise K8sLabError(f"{pod.role} process of pod {pod.name} exited "
                                  f"(code {pod.proc.returncode}): {pod.proc.log_tail()}")
            if b._probe(pod, path):
                break
            if time.monotonic() > deadline:
                raise K8sLabError(f"pod {pod.name} did not become ready within {timeout:g} s; "
                                  f"log: {pod.proc.log_tail() if pod.proc else '(no process)'}")
            time.sleep(0.05)


def probe(b: "NetnsBackend", pod: PodNet, path: str | None) -> bool:
    try:
        sock = nsrelay.connect_in(pod.netns, "127.0.0.1", pod.port or 80, timeout=1.0)
    except OSError:
        return False
    try:
        if path is None:
            return True
        status, _, _ = _http_get(sock, "127.0.0.1", path, "127.0.0.1")
        return status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        sock.close()


def client_pod(b: "NetnsBackend") -> PodNet:
    for pod in b._pods.values():
        if pod.role == "client":
            return pod
    from ... import model as m
    with b._changing():                   # another process may have made it meanwhile
        if not any(p.role == "client" for p in b._pods.values()):
            b._cluster.apply(m.load_objects((b.root / "kind/manifests/client.yaml").read_text()))
            b._reconcile()
    return next(p for p in b._pods.values() if p.role == "client")


def request(b: "NetnsBackend", url: str, *, host: str | None = None, from_: str = "host",
            source: str | None = None, timeout: float = 10.0) -> Response:
    b._require_up()
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise K8sLabError(f"request() speaks plain http only, not {parts.scheme!r}: {url}")
    addr = parts.hostname or "127.0.0.1"
    if resolves_to_loopback(addr):
        addr = "127.0.0.1"
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if from_ == "host":
        ns, src_name = b.host_ns, "host"
    elif from_ == "node":
        n = b._node(source)
        ns, src_name = n.netns, n.name
    elif from_ == "pod":
        p = b._pod(source) if source else client_pod(b)
        ns, src_name = p.netns, p.name
    else:
        raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
    header_host = host or parts.netloc
    started = time.monotonic()
    resp = Response(url=url, status=None, body="", from_=src_name if from_ != "host" else "host",
                    backend=b.kind)
    try:
        sock = nsrelay.connect_in(ns, addr, port, timeout=timeout)
    except socket.timeout:
        resp.error = f"timed out connecting to {addr}:{port} from {src_name}"
        return resp
    except ConnectionRefusedError:
        resp.error = f"connection refused by {addr}:{port} (nothing listens there, as seen from {src_name})"
        return resp
    except OSError as exc:
        resp.error = f"cannot connect to {addr}:{port} from {src_name}: {exc.strerror or exc}"
        return resp
    try:
        status, headers, body = _http_get(sock, addr, path, header_host)
    except (OSError, http.client.HTTPException) as exc:
        resp.error = f"{type(exc).__name__}: {exc}"
        return resp
    finally:
        sock.close()
    resp.status, resp.headers, resp.body = status, headers, body
    resp.elapsed_ms = round((time.monotonic() - started) * 1000, 2)
    resp.whoami = _whoami(body)
    if resp.whoami:
        ip = resp.whoami.get("pod_ip")
        pod = next((p for p in b._pods.values() if p.ip == ip or p.name == resp.whoami.get("pod")), None)
        if pod is not None and pod.port:
            resp.destination = f"{pod.ip}:{pod.port}"
    return resp


def port_forward(b: "NetnsBackend", target: str, local_port: int, remote_port: int,
                 namespace: str = "default") -> PortForward:
    b._require_up()
    with b._changing():
        pod, pod_port = resolve_forward(b, target, remote_port, namespace)
        key = f"port-forward-{local_port}-{pod.name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            proc, port = pl.start_relay(b.name, key, listen_netns=b.host_ns,
                                        listen=f"127.0.0.1:{local_port}", dial_netns=pod.netns,
                                        dial=f"127.0.0.1:{pod_port}",
                                        info=f"port-forward {target} {local_port}:{remote_port}")
        except K8sLabError as exc:
            raise K8sLabError(f"Unable to listen on port {local_port} in {b.host_ns}: {exc} "
                              "(docker-proxy holds the extraPortMappings ports there, or another "
                              "port-forward; pick another local_port, or 0 for any free one)") from exc
        b._procs[key] = proc               # recorded: down() in any process stops it
    pf = NetnsPortForward(b, proc, port, target, remote_port, pod.name, pod_port)
    b._forwards.append(pf)
    b.progress.step(f"port-forward 127.0.0.1:{port} -> pod {pod.name} 127.0.0.1:{pod_port} "
                    "(kubectl -> API server -> kubelet -> runtime stand-in)")
    return pf


def resolve_forward(b: "NetnsBackend", target: str, remote_port: int, namespace: str) -> tuple[PodNet, int]:
    """kubectl's choice: svc/NAME -> the first ready pod behind it and the service port's
    targetPort on that pod; deploy/NAME -> its first pod; pod/NAME or NAME -> that pod."""
    kind, _, name = target.rpartition("/")
    kind = (kind or "pod").lower()
    c = b._cluster
    if kind in ("svc", "service", "services"):
        svc = c.service(name, namespace)
        if svc is None:
            raise NotFound(f"service {namespace}/{name} not found")
        sp = next((p for p in svc.ports if p.port == remote_port), None)
        if sp is None:
            raise NotFound(f"service {name} has no port {remote_port} "
                           f"(ports: {', '.join(str(p.port) for p in svc.ports)})")
        pods = sorted((p for p in c.pods if p.namespace == namespace and p.ready and svc.selector
                       and all(p.labels.get(k) == v for k, v in svc.selector.items())),
                      key=lambda p: p.name)
        if not pods:
            raise NotFound(f"service {name} has no ready pod to forward to")
        pod = pods[0]
        port = pod.resolve_port(sp.effective_target_port, sp.protocol)
        if port is None:
            raise NotFound(f"pod {pod.name} has no container port named {sp.target_port!r}")
        return b._pod(pod.name, namespace), port
    if kind in ("deploy", "deployment", "deployments"):
        pods = sorted((p for p in c.pods if p.namespace == namespace
                       and p.owner == f"Deployment/{name}"), key=lambda p: p.name)
        if not pods:
            raise NotFound(f"deployment {namespace}/{name} has no pods")
        return b._pod(pods[0].name, namespace), remote_port
    if kind in ("pod", "pods", "po"):
        return b._pod(name, namespace), remote_port
    raise NotFound(f"port_forward target {target!r}: use svc/NAME, deploy/NAME or pod/NAME")


def _http_get(sock: socket.socket, addr: str, path: str, host_header: str) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection(addr, timeout=sock.gettimeout())
    conn.sock = sock
    conn.request("GET", path, headers={"Host": host_header, "User-Agent": "k8slab-netns",
                                       "Connection": "close"})
    r = conn.getresponse()
    body = r.read().decode("utf-8", "replace")
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def _whoami(body: str) -> dict | None:
    text = body.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and ("pod" in data or "pod_ip" in data) else None
