"""The sim backend's class: the model's lifecycle and objects, and the verbs, which delegate.

:class:`SimBackend` owns the lifecycle (``up`` builds a :class:`k8slab.model.Cluster` from the kind
config, ``down`` forgets it, ``version`` counts the model's changes), the objects (apply, delete,
scale, nodes, pod lookup) and the state the other modules read and write (the seeded generator,
rules and counters per node, conntrack entries, round-robin positions, source ports, open
port-forwards). Its verbs delegate to :mod:`.rules` (rules, counters, traces), :mod:`.kernel`
(conntrack, routes, sockets), :mod:`.traffic` (requests), :mod:`.portforward` and
:mod:`.kube_proxy`.
"""
from __future__ import annotations

import ipaddress
import random
from pathlib import Path

from ...counters import CounterStore
from ...errors import LabStateError, NotFound
from ...progress import Progress
from ..base import Backend, ConntrackEntry, Finding, NodeInfo, PortForward, Response, Route, Socket
from . import kernel, kube_proxy, portforward, rules, traffic
from .kernel import FIRST_SPORT
from .portforward import SimPortForward
from .rules import HOST, _Rules


class SimBackend(Backend):
    kind = "sim"
    live = False

    def __init__(self, name: str, *, root: Path, progress: Progress, seed: int = 0):
        super().__init__(name, root=root, progress=progress)
        self.seed = seed
        self._cluster = None
        self._version = 0
        self._reset()

    def _reset(self) -> None:
        self._rng = random.Random(self.seed)
        self._rules: dict[str, _Rules] = {}
        self._counters: dict[str, CounterStore] = {}
        self._conntrack: dict[str, list[ConntrackEntry]] = {}
        self._rr: dict[str, int] = {}
        self._sport = FIRST_SPORT
        self._forwards: dict[int, SimPortForward] = {}

    # ------------------------------------------------------------------ availability, lifecycle
    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, "pure Python: runs anywhere (its outputs are predictions of a model)"

    def doctor(self) -> list[Finding]:
        return [Finding("sim", True, "pure-Python model of a kind cluster: runs anywhere; every output is "
                        "a prediction, not a measurement", blocking=False)]

    def up(self, config: Path) -> None:
        from ...model import Cluster
        if self._cluster is not None:
            self.progress.step(f"sim cluster {self.name} is already up (a model in memory)")
            return
        config = Path(config)
        if not config.is_file():
            raise NotFound(f"kind config {config} not found: run from the project checkout or pass "
                           "Lab(root=...)")
        self.progress.step(f"building the model of kind cluster {self.name} from {config.name} "
                           "(sim: nothing is started)")
        self._cluster = Cluster.kind(config, name=self.name, seed=self.seed)
        self._changed()
        self._reset()

    def down(self) -> None:
        if self._cluster is not None:
            self.progress.step(f"forgetting the sim cluster {self.name}")
        self._cluster = None
        self._changed()
        self._reset()

    def is_up(self) -> bool:
        return self._cluster is not None

    def _need(self):
        if self._cluster is None:
            raise LabStateError(f"the sim lab {self.name!r} is not up: call lab.up() first")
        return self._cluster

    def _changed(self) -> None:
        self._version += 1

    @property
    def version(self) -> int:
        """Bumped on every change of the model (apply, delete, scale, up, down)."""
        return self._version

    def model(self):
        return self._need()

    # ------------------------------------------------------------------ objects
    def apply(self, objects: list[dict]) -> list[str]:
        c = self._need()
        out = c.apply(objects)
        self._changed()
        return out

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self._need().delete(kind, name, namespace)
        self._changed()

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        self._need().scale(deployment, int(replicas), namespace)
        self._changed()

    def wait_ready(self, timeout: float = 120.0) -> None:
        self._need()        # every modelled pod is Ready at once

    def objects(self, kind: str) -> list[dict]:
        out = self._need().to_dicts(kind)
        if kind.lower() in ("pod", "pods") and self.kube_proxy_state() != "running":
            from ..kubeproxy import without_kube_proxy_pods
            out = without_kube_proxy_pods(out)
        return out

    def nodes(self) -> list[NodeInfo]:
        c = self._need()
        out = []
        for n in c.nodes:
            out.append(NodeInfo(n.name, n.role, n.ip, n.pod_cidr, self._local_ips(n),
                                f"Docker container {n.name} (modelled: nothing runs)"))
        return out

    @staticmethod
    def _local_ips(n) -> tuple[str, ...]:
        # lo and eth0, plus the pod CIDR's gateway: ptp puts that address on the host side of every
        # pod veth, so addrtype LOCAL matches it too (kindnet's CNI is ptp).
        ips = list(n.local_ips)
        if n.pod_cidr:
            gw = str(ipaddress.ip_network(n.pod_cidr).network_address + 1)
            if gw not in ips:
                ips.append(gw)
        return tuple(ips)

    def _node(self, name: str | None):
        c = self._need()
        if name is None:
            return c.control_plane
        for n in c.nodes:
            if n.name == name or n.ip == name:
                return n
        return c.node(name)

    def _find_pod(self, name: str):
        c = self._need()
        ns, _, short = name.rpartition("/")
        for p in c.pods:
            if p.name == short and (not ns or p.namespace == ns):
                return p
        for p in c.pods:       # a Deployment name or prefix picks its first pod
            if p.name.startswith(short + "-") and (not ns or p.namespace == ns):
                return p
        raise NotFound(f"no pod {name!r}; pods: {', '.join(p.name for p in c.pods)}")

    # ------------------------------------------------------------------ rules and counters (rules.py)
    def _rules_for(self, where: str) -> _Rules:
        return rules._rules_for(self, where)

    def iptables_ruleset(self, node: str):
        return rules.iptables_ruleset(self, node)

    def ruleset(self, node: str):
        """The parsed rules of ``node`` without counters (cached per model version)."""
        return self._rules_for(self._node(node).name).ruleset

    # --- kube-proxy's nftables mode (networking.kubeProxyMode: nftables in the kind config) ---
    @property
    def proxy_mode(self) -> str | None:
        """kube-proxy's mode in the modelled cluster (None while down)."""
        return self._cluster.config.kube_proxy_mode if self._cluster is not None else None

    def nft_ruleset(self, node: str):
        return rules.nft_ruleset(self, node)

    def nft_list_ruleset(self, node: str) -> str:
        return rules.nft_list_ruleset(self, node)

    def host_ruleset(self):
        """The host's parsed Docker rules without counters (cached per model version)."""
        return self._rules_for(HOST).ruleset

    def _with_counters(self, where: str) -> str:
        return rules._with_counters(self, where)

    def iptables_save(self, node: str) -> str:
        return self._with_counters(self._node(node).name)

    def host_iptables_save(self) -> str:
        return self._with_counters(HOST)

    def _count(self, where: str, outcome) -> None:
        return rules._count(self, where, outcome)

    def _trace(self, where: str, src: str, dst: str, dport: int, sport: int, in_interface: str | None,
               out_interface: str | None = None):
        return rules._trace(self, where, src, dst, dport, sport, in_interface, out_interface)

    def _choose(self, tr):
        return rules._choose(self, tr)

    # ------------------------------------------------------------------ conntrack, routes, sockets (kernel.py), config
    def _next_sport(self) -> int:
        return kernel._next_sport(self)

    def conntrack(self, node: str) -> list[ConntrackEntry]:
        return kernel.conntrack(self, node)

    def _track(self, where: str, src, sport, dst, dport, rsrc, rsport, rdst, rdport) -> None:
        return kernel._track(self, where, src, sport, dst, dport, rsrc, rsport, rdst, rdport)

    def routes(self, node: str) -> list[Route]:
        return kernel.routes(self, node)

    def sockets(self, node: str, pod: str | None = None) -> list[Socket]:
        return kernel.sockets(self, node, pod)

    def _pod_sockets(self, p) -> list[Socket]:
        return kernel._pod_sockets(self, p)

    def ingress_config(self) -> str:
        from ...model import nginx_conf
        return nginx_conf(self._need())

    # ------------------------------------------------------------------ port-forward (portforward.py)
    def port_forward(self, target: str, local_port: int, remote_port: int,
                     namespace: str = "default") -> PortForward:
        return portforward.port_forward(self, target, local_port, remote_port, namespace)

    def resolve_target(self, target: str, remote_port: int, namespace: str = "default"):
        return portforward.resolve_target(self, target, remote_port, namespace)

    # ------------------------------------------------------------------ requests (traffic.py)
    def request(self, url: str, *, host: str | None = None, from_: str = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        return traffic.request(self, url, host=host, from_=from_, source=source, timeout=timeout)

    # ------------------------------------------------------------------ kube-proxy out of the data path (kube_proxy.py)
    def kube_proxy_state(self) -> str:
        return kube_proxy.kube_proxy_state(self)

    def _kube_proxy_view(self, where: str, text: str) -> str:
        return kube_proxy._kube_proxy_view(self, where, text)

    def _kube_proxy_nft(self, where: str, text: str) -> str:
        return kube_proxy._kube_proxy_nft(self, where, text)

    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        return kube_proxy.stop_kube_proxy(self, timeout)

    def flush_kube_proxy_rules(self) -> None:
        return kube_proxy.flush_kube_proxy_rules(self)

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        return kube_proxy.start_kube_proxy(self, timeout)
