"""The types a way in is made of: :class:`Component`, :class:`Way`, :class:`Hop`, :class:`Path`.

The currency the Lab, the plots, the widgets and recordings share; :mod:`k8slab.paths` builds them
from a backend's rules (and re-exports them, so ``from k8slab.paths import Hop`` keeps working).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar


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

    @property
    def label(self) -> str:
        """What a learner reads for this component in a path's table and figures (:data:`COMPONENT_LABELS`):
        a program's name, or for the hops the kernel makes by walking rules a program wrote once,
        ``"kernel (<author>'s rules)"``. ``value`` stays the program's name (exercise answers, recordings)."""
        return COMPONENT_LABELS.get(self, self.value)

    @classmethod
    def from_label(cls, text: str) -> "Component":
        """The component a :attr:`label` (or a value) names."""
        for c in cls:
            if text in (c.value, c.label):
                return c
        raise ValueError(f"{text!r} is neither a component nor its label")


#: The hops no program carries: kube-proxy, the CNI portmap plugin, Docker and kindnet write rules
#: (or routes) once and then the kernel applies them to every packet; none of them is in the path.
#: The label says who acts (the kernel) and whose rules it walks.
COMPONENT_LABELS: dict[Component, str] = {
    Component.KUBE_PROXY: "kernel (kube-proxy's rules)",
    Component.CNI_PORTMAP: "kernel (CNI portmap's rules)",
    Component.DOCKER: "kernel (Docker's rules)",
    Component.KINDNET: "kernel (kindnet's rules)",
}
#: The components that are kernel rules (or routes), not a process on the way.
KERNEL_COMPONENTS = frozenset(COMPONENT_LABELS) | {Component.ROUTING}


class Way(str, Enum):
    """The ways in the course compares."""
    PORT_FORWARD = "port-forward"
    CLUSTER_IP = "clusterip"
    NODE_PORT = "nodeport"
    HOST_PORT = "hostport"
    INGRESS = "ingress"


#: What a hop did to the packet's addresses (``Hop.rewrote``): nothing, the destination (DNAT), the
#: source (MASQUERADE/SNAT), both, or a proxy that accepted the connection and opened a new one.
#: The source ports drawn for a client's connection: any ephemeral port the kernel picks stands here
#: (50000 for the learner's curl to a loopback address, 40000 for every other new connection).
EPHEMERAL_PORT = 40000
LOOPBACK_CLIENT_PORT = 50000
REWROTE_NOTHING = ""
REWROTE_DST = "dst"
REWROTE_SRC = "src"
REWROTE_BOTH = "src and dst"
NEW_CONNECTION = "new connection"


@dataclass(frozen=True)
class Hop:
    """One step of a path. ``place`` is the box it happens in (host, node, a pod's namespace).

    ``src`` and ``dst`` are the packet's addresses (``ip:port``) *after* this hop: what the next hop
    receives. ``rewrote`` says which of them this hop changed (:data:`REWROTE_DST` for a DNAT, ...,
    :data:`NEW_CONNECTION` for a proxy); ``stand_in`` is True where the backend has no such
    component and something else does its job (the netns backend's relay for kubectl, the API
    server, the kubelet, the runtime and docker-proxy)."""
    index: int
    component: Component
    place: str
    action: str                      # what happens, in a learner's words
    src: str | None = None           # the packet's source address:port after the hop
    dst: str | None = None           # the packet's destination address:port after the hop
    plane: str = "data"              # "data" or "control"
    evidence: tuple[str, ...] = ()   # rule lines, chain names, config lines that make this hop happen
    rewrote: str = REWROTE_NOTHING   # which address this hop changed (see REWROTE_*, NEW_CONNECTION)
    stand_in: bool = False           # a stand-in does this hop's job on this backend

    @property
    def packet(self) -> str:
        """The packet after this hop, ``"src → dst"`` (empty when the hop moves no packet)."""
        if not self.src and not self.dst:
            return ""
        return f"{self.src or '?'} → {self.dst or '?'}"


@dataclass
class Path:
    way: Way
    hops: list[Hop]
    client: str                       # where the request starts
    destination: str | None           # the pod ip:port that answers (None when nothing answers)
    predicted: bool                   # True when built from a model (sim), not read off a live system
    backend: str = ""
    notes: list[str] = field(default_factory=list)
    # Filled in by the builders below (optional, so hand-made Paths stay valid):
    client_seen: str | None = None    # the client address the answering app sees
    forwarded_for: str | None = None  # what an HTTP proxy on the way puts into X-Forwarded-For
    # Set by the builders as plain attributes, not dataclass fields, so that a Path stays JSON-able
    # field by field (k8slab.recording) while these keep their exact types:
    probability: ClassVar[Any] = None     # Fraction: how likely the drawn destination is
    alternatives: ClassVar[Any] = ()      # [(destination, Fraction)]: everywhere it can end
    trace: ClassVar[Any] = None           # the netfilter Trace the kernel hops came from
    outcome: ClassVar[Any] = None         # the Outcome drawn

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

    @property
    def answered_at(self) -> str | None:
        """Where the answering process accepts: the last hop's destination. For port-forward that is
        127.0.0.1:PORT inside the pod's network namespace, not the pod IP (``destination``)."""
        if self.destination is None or not self.hops:
            return None
        return self.hops[-1].dst

    def headline(self) -> str:
        """One line for a title: the way, where it starts, and who accepts at which address."""
        last = self.hops[-1] if self.hops else None
        if self.destination is None or last is None:
            end = "nothing answers"
        else:
            end = f"{last.component.value} in {last.place} at {last.dst}"
        return f"{self.way.value}: {self.client} → {end}"

    def frame(self):
        """One row per hop: who acts where (``component``: :attr:`Component.label`, so a hop made by
        the kernel walking kube-proxy's rules reads "kernel (kube-proxy's rules)"), what it does, the packet after it (``src → dst``), which
        address it rewrote, and whether a stand-in does it on this backend."""
        import pandas as pd
        return pd.DataFrame([{
            "hop": h.index, "component": h.component.label, "place": h.place, "action": h.action,
            "packet after this hop": h.packet, "rewrote": h.rewrote, "stand-in": h.stand_in, "plane": h.plane,
        } for h in self.hops], columns=["hop", "component", "place", "action", "packet after this hop",
                                         "rewrote", "stand-in", "plane"])
