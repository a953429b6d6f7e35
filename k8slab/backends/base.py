"""The small interface every backend implements, and the types its verbs return.

A backend does the side effects (or, for ``sim``, models them); :class:`k8slab.lab.Lab` turns what
it returns into DataFrames, Rulesets, traces and paths. Notebooks only ever see the Lab.
"""
from __future__ import annotations

import abc
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..progress import Progress

From = Literal["host", "node", "pod"]


def resolves_to_loopback(hostname: str) -> bool:
    """Names that public DNS answers with 127.0.0.1: ``localhost``, and ``localtest.me`` with every
    subdomain (the course's Ingress host). Backends resolve these themselves, so the course works on a
    machine without DNS."""
    h = hostname.lower().rstrip(".")
    return h == "localhost" or h == "localtest.me" or h.endswith(".localtest.me")


@dataclass(frozen=True)
class Finding:
    """One line of ``doctor``: what was checked, whether it passed, and the exact fix if not."""
    check: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = True


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: str                 # control-plane | worker
    ip: str                   # the node's address on the Docker network "kind"
    pod_cidr: str
    local_ips: tuple[str, ...]  # what addrtype LOCAL matches on that node (incl. 127.0.0.1)
    runs_as: str = ""           # what the node is on this backend: a Docker container, a netns, a model


@dataclass
class Response:
    """What ``request()`` got back, plus who answered and what source address survived the path."""
    url: str
    status: int | None
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    whoami: dict[str, Any] | None = None   # the app's /whoami JSON when the URL was /whoami
    from_: str = "host"
    backend: str = ""
    predicted: bool = False                # True: a model's prediction (sim), not a real request
    elapsed_ms: float | None = None
    destination: str | None = None         # pod ip:port that answered, when known
    error: str | None = None               # connection refused / reset / timeout, in words
    note: str = ""                         # how it was sent, when not as asked (e.g. from the node)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 400

    @property
    def pod(self) -> str | None:
        return (self.whoami or {}).get("pod")

    @property
    def client(self) -> str | None:
        """The client address the app saw (``client_ip`` of /whoami)."""
        return (self.whoami or {}).get("client_ip")


@dataclass(frozen=True)
class ConntrackEntry:
    proto: str
    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str            # where the reply comes from: the DNAT destination
    reply_dst: str            # where the reply goes to: the SNAT/MASQUERADE source
    reply_sport: int
    reply_dport: int
    state: str = ""

    @property
    def dnat(self) -> bool:
        return self.reply_src != self.dst or self.reply_sport != self.dport

    @property
    def snat(self) -> bool:
        return self.reply_dst != self.src or self.reply_dport != self.sport


@dataclass(frozen=True)
class Route:
    """One line of ``ip route``: where packets for ``dst`` go (``via`` a gateway, out of ``dev``)."""
    dst: str                  # "default" or a CIDR / address
    dev: str = ""
    via: str = ""
    src: str = ""
    scope: str = ""


def parse_ip_route(text: str) -> list[Route]:
    """``ip route`` output (one route a line: ``DST [via GW] [dev DEV] [proto P] [scope S] [src IP]``)."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        dst, rest = words[0], words[1:]
        fields = {rest[i]: rest[i + 1] for i in range(0, len(rest) - 1) if rest[i] in ("via", "dev", "src", "scope")}
        out.append(Route(dst, fields.get("dev", ""), fields.get("via", ""), fields.get("src", ""),
                         fields.get("scope", "")))
    return out


@dataclass(frozen=True)
class Socket:
    proto: str
    local: str                # ip:port
    process: str = ""         # what ss -p shows, when it can


class PortForward(AbstractContextManager):
    """A running port-forward. ``local_port`` accepts connections while it is open; ``close()``
    (or leaving the ``with`` block) always stops everything it started."""
    local_port: int
    target: str
    remote_port: int

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...

    def __exit__(self, *exc) -> None:
        self.close()


class Backend(abc.ABC):
    """One way of running the course's cluster. Subclasses: kind, netns, sim."""
    kind: ClassVar[str]
    live: ClassVar[bool]      # False: outputs are predictions of a model and must say so

    def __init__(self, name: str, *, root: Path, progress: Progress):
        self.name = name
        self.root = root          # the project root, where kind/ and app/ live
        self.progress = progress

    # --- can it run here? ---
    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, why) when this backend can run on this machine, else (False, what is missing)."""

    def doctor(self) -> list[Finding]:
        ok, why = self.available()
        return [Finding(self.kind, ok, why)]

    # --- lifecycle ---
    @abc.abstractmethod
    def up(self, config: Path) -> None: ...
    @abc.abstractmethod
    def down(self) -> None: ...
    @abc.abstractmethod
    def is_up(self) -> bool: ...

    # --- objects ---
    @abc.abstractmethod
    def apply(self, objects: list[dict]) -> list[str]:
        """Apply manifests (dicts); return ``kind/name`` of each, as kubectl prints them."""
    def deploy_app(self, objects: list[dict], replicas: int | None = None) -> list[str]:
        """Apply the app's manifests and wait until its pods are ready. A backend that must first
        build or load the app's image (kind) overrides this."""
        if replicas is not None:
            for obj in objects:
                if obj.get("kind") == "Deployment":
                    obj.setdefault("spec", {})["replicas"] = int(replicas)
        applied = self.apply(objects)
        self.wait_ready()
        return applied

    def install_ingress_controller(self, objects: list[dict] | None = None) -> list[str]:
        """Apply the ingress controller's manifests (the repository's copy) and wait for it. A backend
        that installs a pinned upstream release instead (kind) overrides this."""
        applied = self.apply(objects or [])
        self.wait_ready()
        return applied

    @abc.abstractmethod
    def delete(self, kind: str, name: str, namespace: str = "default") -> None: ...
    @abc.abstractmethod
    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None: ...
    @abc.abstractmethod
    def wait_ready(self, timeout: float = 120.0) -> None: ...
    @abc.abstractmethod
    def objects(self, kind: str) -> list[dict]:
        """API-shaped dicts (apiVersion/kind/metadata/spec/status) of one kind, all namespaces."""
    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]: ...

    # --- the node's data plane ---
    @abc.abstractmethod
    def iptables_save(self, node: str) -> str:
        """The node's ``iptables-save -c`` text (all tables, with counters)."""
    def host_iptables_save(self) -> str:
        """The learner's machine's rules that matter to the course (Docker's DNAT); may be empty."""
        return ""
    def nft_list_ruleset(self, node: str) -> str:
        """The node's ``nft list ruleset`` text (kube-proxy's nftables mode; the iptables-nft tables too)."""
        raise NotImplementedError(f"the {self.kind} backend cannot list nftables rules: use the sim, netns "
                                  "or kind backend")
    @abc.abstractmethod
    def conntrack(self, node: str) -> list[ConntrackEntry]: ...
    @abc.abstractmethod
    def sockets(self, node: str, pod: str | None = None) -> list[Socket]:
        """Listening TCP sockets on the node (or inside one pod's namespace)."""
    def routes(self, node: str) -> list[Route]:
        """The node's routing table (``ip route``): where the kernel sends a packet after NAT."""
        raise NotImplementedError(f"the {self.kind} backend cannot show routes")

    def ingress_config(self) -> str:
        """The ingress controller's live proxy configuration (nginx.conf)."""
        return ""

    # --- traffic ---
    @abc.abstractmethod
    def request(self, url: str, *, host: str | None = None, from_: From = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        """One HTTP GET. ``source`` names the node or pod for ``from_="node"|"pod"``."""
    def requests(self, url: str, count: int, *, host: str | None = None, from_: From = "host",
                 source: str | None = None, timeout: float = 10.0) -> list[Response]:
        """``count`` HTTP GETs, each a new connection. A backend that pays for every command it runs
        (kind: one ``kubectl exec`` per request) overrides this to send them all in one go."""
        return [self.request(url, host=host, from_=from_, source=source, timeout=timeout)
                for _ in range(int(count))]

    def wait_pod(self, namespace: str, name: str, timeout: float = 120.0) -> None:
        """Return once the pod is Ready. Pods of the models (sim, netns) are ready when applied."""

    @abc.abstractmethod
    def port_forward(self, target: str, local_port: int, remote_port: int,
                     namespace: str = "default") -> PortForward: ...

    # --- the state every renderer and path builder reads ---
    def model(self):
        """The backend's cluster as a :class:`k8slab.model.Cluster` (sim/netns: what they built;
        kind: read back from the API server)."""
        raise NotImplementedError(f"{self.kind} backend has no model view")

    # --- kube-proxy out of the data path (issue 13; the shared logic is k8slab.backends.kubeproxy) ---
    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        """Keep kube-proxy's pod off every node (its DaemonSet gets a nodeSelector no node matches)
        and return once it is gone. Its rules stay in the kernel, and nothing updates them."""
        raise NotImplementedError(f"the {self.kind} backend cannot stop kube-proxy; use the sim, netns "
                                  "or kind backend")

    def flush_kube_proxy_rules(self) -> None:
        """Remove kube-proxy's rules from every node, as ``kube-proxy --cleanup`` does. kube-proxy
        must be stopped first, or it would write them back."""
        raise NotImplementedError(f"the {self.kind} backend cannot flush kube-proxy's rules; use the sim, "
                                  "netns or kind backend")

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        """Undo :meth:`stop_kube_proxy`; return once its pod is Ready and its rules are back."""
        raise NotImplementedError(f"the {self.kind} backend cannot start kube-proxy; use the sim, netns "
                                  "or kind backend")

    def kube_proxy_state(self) -> str:
        """``running``, ``stopped`` (pod gone, rules left) or ``flushed`` (pod gone, rules removed)."""
        return "running"

    def kube_proxy_status(self) -> list[dict]:
        """One row per node: the kube-proxy pod there and how much of kube-proxy its rules hold."""
        from .kubeproxy import status_rows
        nodes = self.nodes()
        dumps = {n.name: self.iptables_save(n.name) for n in nodes}
        nft = None
        if getattr(self, "proxy_mode", None) == "nftables":     # its rules are the nft table ip kube-proxy
            nft = {n.name: "table ip kube-proxy" in self.nft_list_ruleset(n.name) for n in nodes}
        return status_rows(nodes, self.objects("Pod"), dumps, self.kube_proxy_state(), nft)
