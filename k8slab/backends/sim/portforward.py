"""A predicted ``kubectl port-forward`` in the sim.

Owns :class:`SimPortForward` (open until closed; while open, requests to its local port on
127.0.0.1 are answered by its pod, with no rule counted), :func:`port_forward` (refused with
:class:`PortInUse` when the prediction has the local port taken: docker-proxy's published port or
another port-forward, :func:`_host_listener`) and :func:`resolve_target` (the pod and container port
kubectl would pick for ``svc/``, ``deployment/`` and ``pod/`` targets).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import K8sLabError, NotFound
from ..base import PortForward

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SimBackend


class PortInUse(K8sLabError):
    """A predicted local port is taken (docker-proxy's published port, or another port-forward)."""


class SimPortForward(PortForward):
    """A predicted ``kubectl port-forward``: while open, ``lab.request("http://127.0.0.1:<local_port>/...")``
    is answered by the pod kubectl would pick, seen from 127.0.0.1, with no rule counted."""

    def __init__(self, backend: "SimBackend", target: str, local_port: int, remote_port: int,
                 pod, container_port: int, namespace: str):
        self.backend = backend
        self.target = target
        self.local_port = local_port
        self.remote_port = remote_port
        self.pod = pod
        self.container_port = container_port
        self.namespace = namespace
        self.predicted = True
        self._open = True
        self._tracked: list = []       # the control-plane connections it opened (kernel.track_port_forward)

    @property
    def alive(self) -> bool:
        return self._open and self.backend._forwards.get(self.local_port) is self

    def close(self) -> None:
        if self._open:
            self._open = False
            if self.backend._forwards.get(self.local_port) is self:
                del self.backend._forwards[self.local_port]
            from .kernel import close_port_forward
            close_port_forward(self.backend, self._tracked)

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return (f"<predicted port-forward 127.0.0.1:{self.local_port} -> {self.target}:{self.remote_port} "
                f"(pod {self.pod.name}:{self.container_port}), {state}>")


def port_forward(b: "SimBackend", target: str, local_port: int, remote_port: int,
                 namespace: str = "default") -> PortForward:
    c = b._need()
    local_port, remote_port = int(local_port), int(remote_port)
    if not (0 < local_port < 65536 and 0 < remote_port < 65536):
        raise ValueError("ports must be between 1 and 65535")
    holder = _host_listener(b, local_port)
    if holder is not None:
        raise PortInUse(f"predicted: kubectl port-forward cannot listen on 127.0.0.1:{local_port}: "
                        f"it is in use by {holder}. Fix: pick another local_port (e.g. "
                        f"lab.port_forward(local_port={local_port + 1})), or change the hostPort in "
                        "kind/cluster.yaml")
    pod, cport = b.resolve_target(target, remote_port, namespace)
    pf = SimPortForward(b, target, local_port, remote_port, pod, cport, namespace)
    b._forwards[local_port] = pf
    from .kernel import track_port_forward
    pf._tracked = track_port_forward(b, pod)
    b.progress.step(f"predicted: kubectl port-forward {target} {local_port}:{remote_port} -> pod "
                       f"{pod.name}:{cport}")
    del c
    return pf


def resolve_target(b: "SimBackend", target: str, remote_port: int, namespace: str = "default"):
    """(pod, container port) kubectl would use for ``svc/NAME``, ``deployment/NAME``, ``pod/NAME``:
    the first ready pod (by name here; kubectl sorts ready pods first) and, for a Service, the
    Service port's targetPort resolved in that pod."""
    c = b._need()
    kind, _, name = target.partition("/")
    if not name:
        kind, name = "pod", kind
    kind = {"svc": "service", "services": "service", "deploy": "deployment", "po": "pod",
            "pods": "pod", "deployments": "deployment"}.get(kind, kind)
    if kind == "pod":
        pod = c.pod(name, namespace)
        return pod, remote_port
    if kind == "deployment":
        d = next((d for d in c.deployments if d.name == name and d.namespace == namespace), None)
        if d is None:
            raise NotFound(f"deployment/{name} not found in {namespace}")
        pods = [p for p in c.pods if p.owner == f"Deployment/{name}" and p.namespace == namespace and p.ready]
        if not pods:
            raise NotFound(f"deployment/{name} has no ready pod")
        return sorted(pods, key=lambda p: p.name)[0], remote_port
    if kind != "service":
        raise ValueError(f"port-forward target {target!r}: use svc/NAME, deployment/NAME or pod/NAME")
    svc = c.service(name, namespace)
    sp = next((p for p in svc.ports if p.port == remote_port), None)
    if sp is None:
        raise NotFound(f"service {namespace}/{name} has no port {remote_port}; its ports: "
                       f"{', '.join(str(p.port) for p in svc.ports)}")
    pods = sorted((p for p in c.selected_pods(svc) if p.ready and p.ip), key=lambda p: p.name)
    if not pods:
        raise NotFound(f"predicted: error: unable to forward to svc/{name}: it has no ready pod")
    pod = pods[0]
    cport = pod.resolve_port(sp.effective_target_port, sp.protocol)
    if cport is None:
        raise NotFound(f"pod {pod.name} has no port named {sp.effective_target_port!r}")
    return pod, cport


def _host_listener(b: "SimBackend", port: int) -> str | None:
    """Who listens on the host's loopback ``port`` in the prediction, or None."""
    from ...model.docker import published_ports
    if port in b._forwards:
        return f"another port-forward ({b._forwards[port].target})"
    for _node, addr, hport, _cport, _proto in published_ports(b._need()):
        if hport == port and addr in ("0.0.0.0", "127.0.0.1", "", "::"):
            return f"docker-proxy (kind's extraPortMappings publish {addr or '0.0.0.0'}:{port})"
    return None
