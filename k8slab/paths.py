"""Each way into the cluster as an ordered list of hops, each owned by one component.

Types first (the currency the Lab, the plots and the widgets share); the builders that derive a
path from a backend's actual rules follow below them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Component(str, Enum):
    """Who moves the packet (or the bytes) at a hop. The value is what tables and plots show."""
    CLIENT = "client"
    KUBECTL = "kubectl"
    API_SERVER = "API server"
    KUBELET = "kubelet"
    RUNTIME = "container runtime"
    DOCKER = "Docker"
    DOCKER_PROXY = "docker-proxy"
    CNI_PORTMAP = "CNI portmap"
    KUBE_PROXY = "kube-proxy"
    KINDNET = "kindnet"
    ROUTING = "kernel routing"
    INGRESS_CONTROLLER = "ingress controller"
    APP = "app"


class Way(str, Enum):
    """The ways in the course compares."""
    PORT_FORWARD = "port-forward"
    CLUSTER_IP = "clusterip"
    NODE_PORT = "nodeport"
    HOST_PORT = "hostport"
    INGRESS = "ingress"


@dataclass(frozen=True)
class Hop:
    """One step of a path. ``place`` is the box it happens in (host, node, a pod's namespace)."""
    index: int
    component: Component
    place: str
    action: str                      # what happens, in a learner's words
    src: str | None = None           # address:port before the hop
    dst: str | None = None           # address:port after the hop
    plane: str = "data"              # "data" or "control"
    evidence: tuple[str, ...] = ()   # rule lines, chain names, config lines that make this hop happen


@dataclass
class Path:
    way: Way
    hops: list[Hop]
    client: str                       # where the request starts
    destination: str | None           # the pod ip:port that answers (None when nothing answers)
    predicted: bool                   # True when built from a model (sim), not read off a live system
    backend: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def components(self) -> list[Component]:
        return [h.component for h in self.hops]

    @property
    def uses_api_server(self) -> bool:
        return Component.API_SERVER in self.components

    @property
    def uses_kernel_nat(self) -> bool:
        return any(h.component in (Component.KUBE_PROXY, Component.CNI_PORTMAP, Component.DOCKER)
                   for h in self.hops)

    def frame(self):
        import pandas as pd
        return pd.DataFrame([{
            "hop": h.index, "component": h.component.value, "place": h.place, "action": h.action,
            "src": h.src, "dst": h.dst, "plane": h.plane,
        } for h in self.hops])
