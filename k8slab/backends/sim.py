"""The ``sim`` backend: a kind cluster as a pure-Python model, and predictions of what it would do.

Nothing runs: the cluster is a :class:`k8slab.model.Cluster` built from ``kind/cluster.yaml``; the
node's rules are rendered from it; every request is *predicted* by tracing the rules each hop would
meet (the host's Docker rules, the node's kube-proxy/portmap/kindnet rules) and by modelling the
user-space programs on the way (docker-proxy, the ingress controller, the app). Every Response it
returns has ``predicted=True``.

Deterministic: where the kernel would pick at random (``statistic --mode random``), a
``random.Random(seed)`` picks among the tracer's outcomes by their exact probabilities, so the same
seed and the same calls give the same answers and the same counters.

What the sim keeps, as a node would:

* packet/byte counters on every rule a predicted connection matched (the first packet of each
  connection, 60 bytes: exactly what the nat table sees; on a real node filter rules would also count
  the later packets of the connection);
* conntrack entries for the connections it predicted (state TIME_WAIT: each request is over);
* round-robin positions of the ingress controller's upstreams.

The app is modelled minimally: ``/whoami`` (JSON like app/server.py's) and ``/healthz``; any other
path answers 404. HTTPS is not modelled.
"""
from __future__ import annotations

import ipaddress
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..counters import CounterStore, Layout
from ..errors import K8sLabError, LabStateError, NotFound
from ..paths import APP_NAME, controller_pod, masquerade_source
from ..progress import Progress
from .base import Backend, ConntrackEntry, Finding, NodeInfo, PortForward, Response, Route, Socket, resolves_to_loopback

BYTES_PER_PACKET = 60
HOST = "host"
FIRST_SPORT = 40000


class PortInUse(K8sLabError):
    """A predicted local port is taken (docker-proxy's published port, or another port-forward)."""


@dataclass
class _Rules:
    version: int
    text: str                      # rendered without counters
    ruleset: Any                   # parsed once per model version (counters as they were then)
    layout: Layout                 # where each rule's counters go; (table, chain, position) -> key
    generation: int                # the counter generation ``ruleset`` was parsed with
    rendered: tuple[int, str] | None = None      # (counter generation, text with counters)
    counted: tuple[int, Any] | None = None       # (counter generation, parse of that text)


@dataclass
class _Http:
    """What travels with a predicted request from hop to hop."""
    host: str
    path: str
    xff: str | None = None
    counted: bool = True
    notes: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)   # request headers as the app receives them


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

    @property
    def alive(self) -> bool:
        return self._open and self.backend._forwards.get(self.local_port) is self

    def close(self) -> None:
        if self._open:
            self._open = False
            if self.backend._forwards.get(self.local_port) is self:
                del self.backend._forwards[self.local_port]

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return (f"<predicted port-forward 127.0.0.1:{self.local_port} -> {self.target}:{self.remote_port} "
                f"(pod {self.pod.name}:{self.container_port}), {state}>")


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
        from ..model import Cluster
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
            from .kubeproxy import without_kube_proxy_pods
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

    # ------------------------------------------------------------------ rules and counters
    def _rules_for(self, where: str) -> _Rules:
        """Rendered and parsed rules of a node (or the host), cached per model version."""
        from ..netfilter.parser import parse
        from ..model import render_host_docker, render_node_dump
        cached = self._rules.get(where)
        if cached is not None and cached.version == self._version:
            return cached
        c = self._need()
        if where == HOST:
            text = render_host_docker(c, form="save")
        else:
            text = render_node_dump(c, self._node(where), form="save")
            text = self._kube_proxy_view(where, text)
        layout = Layout.of(text)
        store = self._counters.setdefault(where, CounterStore())
        with_counters = store.render(text, layout)
        # one parse serves both: the tracer ignores counters, and iptables() gets this very object
        # until a predicted connection moves a counter
        rules = _Rules(self._version, text, parse(with_counters, source=f"sim {where}"), layout,
                       store.generation, (store.generation, with_counters))
        self._rules[where] = rules
        return rules

    def iptables_ruleset(self, node: str):
        """``parse(iptables_save(node))``, cached per model version and counter generation."""
        from ..netfilter.parser import parse
        where = self._node(node).name if node != HOST else HOST
        rules = self._rules_for(where)
        gen = self._counters.setdefault(where, CounterStore()).generation
        if gen == rules.generation:
            return rules.ruleset
        if rules.counted is None or rules.counted[0] != gen:
            rules.counted = (gen, parse(self._with_counters(where), source=f"sim {where}"))
        return rules.counted[1]

    def ruleset(self, node: str):
        """The parsed rules of ``node`` without counters (cached per model version)."""
        return self._rules_for(self._node(node).name).ruleset

    # --- kube-proxy's nftables mode (networking.kubeProxyMode: nftables in the kind config) ---
    @property
    def proxy_mode(self) -> str | None:
        """kube-proxy's mode in the modelled cluster (None while down)."""
        return self._cluster.config.kube_proxy_mode if self._cluster is not None else None

    def nft_ruleset(self, node: str):
        """The node's whole ``nft list ruleset``, parsed (cached per model version and counters): the
        iptables-nft tables of the other writers (with their predicted counters), then kube-proxy's
        table rendered from the model. Its rules carry no counters, as kube-proxy writes none."""
        from ..netfilter.nft import parse_nft
        where = self._node(node).name
        text = self.nft_list_ruleset(where)
        cache = self.__dict__.setdefault("_nft_cache", {})
        hit = cache.get(where)
        if hit is None or hit[0] != text:
            rs = parse_nft(text)
            rs.source = f"sim {where} (nft list ruleset)"
            hit = cache[where] = (text, rs)
        return hit[1]

    def nft_list_ruleset(self, node: str) -> str:
        from ..netfilter.nft.node import iptables_to_nft, render_node_kube_proxy
        where = self._node(node).name
        cache = self.__dict__.setdefault("_nft_kp", {})
        kp = cache.get(where)
        if kp is None or kp[0] != self._version:
            kp = cache[where] = (self._version, render_node_kube_proxy(self._need(), self._node(where),
                                                                       form="ruleset"))
        tables = iptables_to_nft(self._with_counters(where))
        return tables + (self._kube_proxy_nft(where, kp[1]) if self.proxy_mode == "nftables" else "")

    def host_ruleset(self):
        """The host's parsed Docker rules without counters (cached per model version)."""
        return self._rules_for(HOST).ruleset

    def _with_counters(self, where: str) -> str:
        rules = self._rules_for(where)
        store = self._counters.setdefault(where, CounterStore())
        if rules.rendered is None or rules.rendered[0] != store.generation:
            rules.rendered = (store.generation, store.render(rules.text, rules.layout))
        return rules.rendered[1]

    def iptables_save(self, node: str) -> str:
        return self._with_counters(self._node(node).name)

    def host_iptables_save(self) -> str:
        return self._with_counters(HOST)

    def _count(self, where: str, outcome) -> None:
        rules = self._rules_for(where)
        store = self._counters.setdefault(where, CounterStore())
        for h in outcome.hops:
            if h.rule is None or h.action.startswith("no match"):
                continue
            key = rules.layout.positions.get((h.table, h.chain, h.position))
            if key is not None:
                store.add(key, 1, BYTES_PER_PACKET)

    def _trace(self, where: str, src: str, dst: str, dport: int, sport: int, in_interface: str | None,
               out_interface: str | None = None):
        from ..netfilter.tracer import NodeContext, Packet, trace
        if where == HOST:
            ctx = NodeContext(local_ips=frozenset(("127.0.0.1", self._need().gateway)), name=HOST)
        else:
            n = self._node(where)
            ctx = NodeContext(local_ips=frozenset(self._local_ips(n)), pod_cidrs=(n.pod_cidr,), name=n.name)
            if self.proxy_mode == "nftables":        # the node's whole nft ruleset, kube-proxy's table too
                from ..netfilter.nft import trace_nft
                return trace_nft(self.nft_ruleset(where), Packet(src=src, dst=dst, dport=int(dport), sport=sport,
                                 in_interface=in_interface, out_interface=out_interface), ctx)
        return trace(self._rules_for(where).ruleset,
                     Packet(src=src, dst=dst, dport=int(dport), sport=sport, in_interface=in_interface,
                            out_interface=out_interface), ctx)

    def _choose(self, tr):
        """One outcome, drawn by the seeded generator with the outcomes' exact probabilities."""
        outs = tr.baseline() or list(tr.outcomes)
        if len(outs) == 1:
            return outs[0]
        total = sum(o.probability for o in outs)
        r = self._rng.random() * float(total)
        acc = 0.0
        for o in outs:
            acc += float(o.probability)
            if r < acc:
                return o
        return outs[-1]

    def _next_sport(self) -> int:
        self._sport += 1
        if self._sport > 60999:
            self._sport = FIRST_SPORT
        return self._sport

    def conntrack(self, node: str) -> list[ConntrackEntry]:
        if node == HOST:         # the learner's machine: Docker's DNAT and docker-proxy's connections
            return list(self._conntrack.get(HOST, []))
        return list(self._conntrack.get(self._node(node).name, []))

    def _track(self, where: str, src, sport, dst, dport, rsrc, rsport, rdst, rdport) -> None:
        self._conntrack.setdefault(where, []).append(ConntrackEntry(
            "tcp", src, dst, sport, dport, rsrc, rdst, rsport, rdport, "TIME_WAIT"))

    # ------------------------------------------------------------------ routes, sockets, config
    def routes(self, node: str) -> list[Route]:
        """The routing table kind's node would have (modelled): Docker's network on eth0, kindnet's
        route to every other node's pod CIDR via that node, and ptp's /32 route per local pod."""
        c = self._need()
        n = self._node(node)
        out = [Route("default", "eth0", c.gateway),
               Route(c.docker_network, "eth0", src=n.ip, scope="link")]
        out += [Route(o.pod_cidr, "eth0", o.ip) for o in c.nodes if o.name != n.name and o.pod_cidr]
        for p in sorted(c.pods, key=lambda p: p.ip or ""):
            if p.node_name == n.name and p.ip and not p.host_network:
                out.append(Route(p.ip, "veth" + (p.container_id or "0" * 8)[:8], scope="host"))
        return out

    def sockets(self, node: str, pod: str | None = None) -> list[Socket]:
        c = self._need()
        n = self._node(node)
        if pod is not None:
            p = self._find_pod(pod)
            return self._pod_sockets(p)
        out = [Socket("tcp", "0.0.0.0:10250", "kubelet"), Socket("tcp", "127.0.0.1:10248", "kubelet"),
               Socket("tcp", "127.0.0.1:10249", "kube-proxy"), Socket("tcp", "0.0.0.0:10256", "kube-proxy"),
               Socket("tcp", f"127.0.0.1:{_stable_port(self.seed, n.name, 'containerd')}", "containerd")]
        if n.role == "control-plane":
            out += [Socket("tcp", "0.0.0.0:6443", "kube-apiserver"),
                    Socket("tcp", "127.0.0.1:2379", "etcd"), Socket("tcp", f"{n.ip}:2379", "etcd"),
                    Socket("tcp", f"{n.ip}:2380", "etcd"), Socket("tcp", "127.0.0.1:2381", "etcd"),
                    Socket("tcp", "127.0.0.1:10257", "kube-controller-manager"),
                    Socket("tcp", "127.0.0.1:10259", "kube-scheduler")]
        out.append(Socket("tcp", f"127.0.0.11:{_stable_port(self.seed, n.name, 'dns')}", "dockerd (embedded DNS)"))
        # No socket for any ClusterIP or NodePort: kube-proxy (iptables mode) only writes rules, and a
        # hostPort is a DNAT rule too; the ingress controller listens inside its own pod.
        del c
        return out

    def _pod_sockets(self, p) -> list[Socket]:
        if p.host_network:
            return self.sockets(p.node_name)
        out: list[Socket] = []
        if p is controller_pod(self._need()):
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

    def ingress_config(self) -> str:
        from ..model import nginx_conf
        return nginx_conf(self._need())

    # ------------------------------------------------------------------ port-forward
    def port_forward(self, target: str, local_port: int, remote_port: int,
                     namespace: str = "default") -> PortForward:
        c = self._need()
        local_port, remote_port = int(local_port), int(remote_port)
        if not (0 < local_port < 65536 and 0 < remote_port < 65536):
            raise ValueError("ports must be between 1 and 65535")
        holder = self._host_listener(local_port)
        if holder is not None:
            raise PortInUse(f"predicted: kubectl port-forward cannot listen on 127.0.0.1:{local_port}: "
                            f"it is in use by {holder}. Fix: pick another local_port (e.g. "
                            f"lab.port_forward(local_port={local_port + 1})), or change the hostPort in "
                            "kind/cluster.yaml")
        pod, cport = self.resolve_target(target, remote_port, namespace)
        pf = SimPortForward(self, target, local_port, remote_port, pod, cport, namespace)
        self._forwards[local_port] = pf
        self.progress.step(f"predicted: kubectl port-forward {target} {local_port}:{remote_port} -> pod "
                           f"{pod.name}:{cport}")
        del c
        return pf

    def resolve_target(self, target: str, remote_port: int, namespace: str = "default"):
        """(pod, container port) kubectl would use for ``svc/NAME``, ``deployment/NAME``, ``pod/NAME``:
        the first ready pod (by name here; kubectl sorts ready pods first) and, for a Service, the
        Service port's targetPort resolved in that pod."""
        c = self._need()
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

    def _host_listener(self, port: int) -> str | None:
        """Who listens on the host's loopback ``port`` in the prediction, or None."""
        from ..model.docker import published_ports
        if port in self._forwards:
            return f"another port-forward ({self._forwards[port].target})"
        for _node, addr, hport, _cport, _proto in published_ports(self._need()):
            if hport == port and addr in ("0.0.0.0", "127.0.0.1", "", "::"):
                return f"docker-proxy (kind's extraPortMappings publish {addr or '0.0.0.0'}:{port})"
        return None

    # ------------------------------------------------------------------ requests
    def request(self, url: str, *, host: str | None = None, from_: str = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        c = self._need()
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host_header = host or parts.netloc.rpartition("@")[2]
        http = _Http(host=host_header, path=path,
                     headers={"Host": host_header, "User-Agent": "curl/8.5.0", "Accept": "*/*"})

        def fail(error: str, **kw) -> Response:
            return Response(url, None, "", from_=from_, backend=self.kind, predicted=True, error=error, **kw)

        if parts.scheme == "https":
            return fail("the sim models plain HTTP only (no TLS); use http://")
        ip = self._resolve(parts.hostname, from_)
        if ip is None:
            return fail(f"could not resolve host {parts.hostname!r} from the {from_} (the sim knows "
                        "localhost, *.localtest.me, IP addresses, and Service names from inside pods)")
        if from_ == "host":
            resp = self._from_host(ip, port, http)
        elif from_ == "node":
            n = self._node(source)
            resp = self._enter(n.name, n.ip, self._next_sport(), ip, port, None, http)
        elif from_ == "pod":
            pod = self._source_pod(source)
            if ip == pod.ip:
                resp = self._deliver_pod(pod, pod.ip, self._next_sport(), port, http)
            else:
                resp = self._enter(pod.node_name, pod.ip, self._next_sport(), ip, port, _veth(pod), http)
        else:
            raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
        resp.url, resp.from_, resp.backend, resp.predicted = url, from_, self.kind, True
        del c
        return resp

    def _resolve(self, hostname: str, from_: str) -> str | None:
        try:
            return str(ipaddress.ip_address(hostname))
        except ValueError:
            pass
        h = hostname.lower().rstrip(".")
        if resolves_to_loopback(h):
            return "127.0.0.1"
        if from_ == "pod":
            # CoreDNS answers Service names inside the cluster (the DNS lookup itself is not modelled)
            labels = h.split(".")
            ns = labels[1] if len(labels) > 1 and labels[1] != "svc" else "default"
            if len(labels) == 1 or (len(labels) >= 2 and (len(labels) == 2 or labels[2] == "svc")):
                try:
                    svc = self._need().service(labels[0], ns)
                    return svc.cluster_ip
                except NotFound:
                    return None
        return None

    def _source_pod(self, source: str | None):
        c = self._need()
        if source is None:
            from ..paths import client_pod_ip
            ip = client_pod_ip(c.pods, c.control_plane)
            pod = c.pod_by_ip(ip)
            if pod is None:
                raise NotFound("no client pod on the control-plane; pass source='<pod name>'")
            return pod
        return self._find_pod(source)

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

    def _from_host(self, ip: str, port: int, http: _Http) -> Response:
        c = self._need()
        addr = ipaddress.ip_address(ip)
        gw = c.gateway
        if addr.is_loopback:
            pf = self._forwards.get(port)
            if pf is not None and pf.alive:
                return self._via_port_forward(pf, http)
            sport = self._next_sport()
            tr = self._trace(HOST, "127.0.0.1", ip, port, sport, None)
            out = self._choose(tr)
            self._count(HOST, out)
            if out.destination:           # a DNAT on the host (not the case for 127.0.0.1 with Docker)
                dip, dport = _split(out.destination)
                return self._to_node_ip(gw, dip, dport, http)
            target = self._published(ip, port)
            if target is None:
                return _error(f"connection refused: nothing listens on {ip}:{port} on the host")
            self._track(HOST, ip, sport, ip, port, ip, port, ip, sport)   # to docker-proxy: no NAT
            node, cport = target
            # docker-proxy accepts on the host and opens its own connection to the node from the
            # host's address on the kind bridge: the node never sees 127.0.0.1.
            http.notes.append(f"docker-proxy relays {ip}:{port} to {node.ip}:{cport}")
            return self._to_node_ip(gw, node.ip, cport, http)
        if ip == gw:
            sport = self._next_sport()
            tr = self._trace(HOST, gw, ip, port, sport, None)
            out = self._choose(tr)
            self._count(HOST, out)
            if out.destination:
                dip, dport = _split(out.destination)
                # Docker's DNAT is in the host's table; the same connection reaches the node
                self._track(HOST, gw, sport, ip, port, dip, dport, gw, sport)
                return self._to_node_ip(gw, dip, dport, http, sport=sport)
            return _error(f"connection refused: nothing listens on {ip}:{port} on the host")
        return self._to_node_ip(gw, ip, port, http)

    def _published(self, ip: str, port: int):
        from ..model.docker import published_ports
        for node, addr, hport, cport, _proto in published_ports(self._need()):
            if hport == port and addr in ("0.0.0.0", "", "::", ip):
                return node, cport
        return None

    def _to_node_ip(self, src: str, ip: str, port: int, http: _Http, sport: int | None = None) -> Response:
        """A connection from the host (its kind-bridge address) to ``ip``: a node, or nowhere."""
        c = self._need()
        node = next((n for n in c.nodes if n.ip == ip), None)
        if node is None:
            if any(ipaddress.ip_address(ip) in ipaddress.ip_network(n.pod_cidr) for n in c.nodes) or \
                    ipaddress.ip_address(ip) in ipaddress.ip_network(c.service_subnet):
                return _error(f"no route to host / timeout: the host has no route to {ip}; pod and "
                              "Service addresses exist only inside the nodes (use the node IP and a "
                              "NodePort, the hostPort via localhost, or request from a pod)")
            return _error(f"no route to host / timeout: nothing has the address {ip}")
        translated = sport is not None          # already DNAT'd on the host: tracked there
        sport = sport if translated else self._next_sport()
        # the host reaches the node over the kind network's bridge: say so, so that Docker's
        # "! -o <bridge>" MASQUERADE is (correctly) not taken
        tr = self._trace(HOST, src, ip, port, sport, None, c.bridge_name())
        self._count(HOST, self._choose(tr))
        if not translated:
            self._track(HOST, src, sport, ip, port, ip, port, src, sport)
        return self._enter(node.name, src, sport, ip, port, "eth0", http)

    def _enter(self, where: str, src: str, sport: int, dst: str, dport: int, in_if: str | None,
               http: _Http) -> Response:
        """A new connection meets node ``where``'s rules; follow it to whatever answers."""
        c = self._need()
        node = self._node(where)
        tr = self._trace(node.name, src, dst, dport, sport, in_if)
        out = self._choose(tr)
        if http.counted:
            self._count(node.name, out)
        if out.verdict == "REJECT" and any(h.chain == "cluster-ips-check" for h in out.hops):
            return _error(f"connection refused (REJECT by kube-proxy's nftables rules: {dst} is a ClusterIP, "
                          f"but no Service has port {dport} there)")
        if out.verdict == "REJECT":
            return _error(f"connection refused (REJECT by kube-proxy: {_rejected_service(out)} has no endpoints)")
        if out.verdict == "DROP":
            return _error(f"timeout: dropped on {node.name} by {_last_rule(out)}")
        fip, fport = _split(out.destination) if out.destination else (dst, dport)
        seen, seen_port = src, sport
        if out.masquerade:
            seen = out.source or masquerade_source(c, node, fip)
            seen_port = _nat_port(self.seed, out, src, sport, dst, dport)
        self._track(node.name, src, sport, dst, dport, fip, fport, seen, seen_port)
        if fip in self._local_ips(node):
            return self._local(node, fip, fport)
        pod = _pod_at(c, fip)
        if pod is None:
            if any(n.ip == fip for n in c.nodes):
                other = next(n for n in c.nodes if n.ip == fip)
                return self._enter(other.name, seen, seen_port, fip, fport, "eth0", http)
            return _error(f"no route to host / timeout: nothing has the address {fip} (from {node.name})")
        if pod.node_name != node.name:
            # routed to the pod's node (kindnet's route via that node's IP): its rules see a new packet
            other = self._node(pod.node_name)
            tr2 = self._trace(other.name, seen, fip, fport, seen_port, "eth0")
            out2 = self._choose(tr2)
            if http.counted:
                self._count(other.name, out2)
            self._track(other.name, seen, seen_port, fip, fport, fip, fport, seen, seen_port)
        return self._deliver_pod(pod, seen, seen_port, fport, http)

    def _local(self, node, ip: str, port: int) -> Response:
        for s in self.sockets(node.name):
            lip, _, lport = s.local.rpartition(":")
            if int(lport) == port and lip in ("0.0.0.0", ip):
                return _error(f"connected to {s.process} on {node.name} ({ip}:{port}); the sim answers HTTP "
                              "only for the app and the ingress controller", destination=f"{ip}:{port}")
        return _error(f"connection refused: nothing listens on {ip}:{port} on {node.name} (no NAT rule "
                      "matched, and no process has this port)")

    def _deliver_pod(self, pod, client_ip: str, client_port: int, port: int, http: _Http) -> Response:
        c = self._need()
        dest = f"{pod.ip}:{port}"
        listening = {int(s.local.rsplit(":", 1)[1]) for s in self._pod_sockets(pod)}
        if port not in listening:
            return _error(f"connection refused: nothing listens on {dest} in pod {pod.name}", destination=dest)
        if pod is controller_pod(c) and port == 80:
            return self._ingress(pod, client_ip, client_port, http)
        if _is_app(pod):
            return self._app(pod, port, client_ip, client_port, http)
        return _error(f"connected to {pod.name} ({dest}); the sim answers HTTP only for the app and the "
                      "ingress controller", destination=dest)

    def _ingress(self, ctrl, client_ip: str, client_port: int, http: _Http) -> Response:
        """ingress-nginx: match host and path, then dial an endpoint (pod IP) directly."""
        from ..model import ingress_routes, match_route
        c = self._need()
        route = match_route(ingress_routes(c), http.host, http.path)
        head = {"Server": "nginx"}
        if route is None:
            return Response("", 404, "default backend - 404\n", dict(head), destination=f"{ctrl.ip}:80")
        if not route.upstreams:
            return Response("", 503, "503 Service Temporarily Unavailable\n", dict(head),
                            destination=f"{ctrl.ip}:80")
        n = self._rr.get(route.upstream_name, 0)
        self._rr[route.upstream_name] = n + 1
        upstream = route.upstreams[n % len(route.upstreams)]
        uip, uport = _split(upstream)
        # nginx sets X-Forwarded-For to the address it saw ($remote_addr), Host to $host (no port), and
        # connects from its own pod IP (see model.nginx_conf's proxy_set_header lines)
        hostname = http.host.rsplit(":", 1)[0] if not http.host.startswith("[") else http.host
        headers = {"Host": hostname, "X-Request-ID": _request_id(self.seed, self._sport),
                   "X-Real-IP": client_ip, "X-Forwarded-For": client_ip, "X-Forwarded-Host": hostname,
                   "X-Forwarded-Port": "80", "X-Forwarded-Proto": "http", "X-Forwarded-Scheme": "http",
                   "X-Scheme": "http", "User-Agent": http.headers.get("User-Agent", ""),
                   "Accept": http.headers.get("Accept", "*/*")}
        fwd = _Http(host=hostname, path=http.path, xff=client_ip, counted=http.counted, headers=headers)
        resp = self._enter(ctrl.node_name, ctrl.ip, self._next_sport(), uip, uport, _veth(ctrl), fwd)
        resp.headers = {**head, **resp.headers}
        return resp

    def _app(self, pod, port: int, client_ip: str, client_port: int, http: _Http) -> Response:
        # What app/server.py answers (GET only): /healthz, /whoami, / (usage), /<code> (404: the
        # model's store is empty, POST /shorten is not modelled).
        dest = f"{pod.ip}:{port}"
        path = http.path.split("?", 1)[0]
        head = {"Server": "url-shortener/0.1", "X-Pod-Name": pod.name}
        if path == "/healthz":
            return Response("", 200, "ok", {**head, "Content-Type": "text/plain; charset=utf-8"},
                            destination=dest)
        ctype = {**head, "Content-Type": "application/json"}
        if path == "/whoami":
            h = http.headers
            who = {"pod": pod.name, "pod_ip": pod.ip, "node": pod.node_name, "client_ip": client_ip,
                   "client_port": client_port, "host": h.get("Host", http.host), "path": http.path,
                   "method": "GET", "x_forwarded_for": h.get("X-Forwarded-For"),
                   "x_real_ip": h.get("X-Real-IP"), "x_forwarded_host": h.get("X-Forwarded-Host"),
                   "x_forwarded_proto": h.get("X-Forwarded-Proto"), "headers": dict(h)}
            return Response("", 200, json.dumps(who, sort_keys=True) + "\n", ctype, whoami=who,
                            destination=dest)
        if path == "/":
            body = {"service": APP_NAME, "pod": pod.name,
                    "usage": "POST /shorten {\"url\": ...}; GET /<code>; GET /whoami; GET /healthz"}
            return Response("", 200, json.dumps(body, sort_keys=True) + "\n", ctype, destination=dest)
        code = path.lstrip("/")
        return Response("", 404, json.dumps({"code": code, "error": "unknown code"}, sort_keys=True) + "\n",
                        ctype, destination=dest)

    def _via_port_forward(self, pf: SimPortForward, http: _Http) -> Response:
        """kubectl -> API server -> kubelet -> runtime -> 127.0.0.1 inside the pod: no rule counts."""
        quiet = _Http(host=http.host, path=http.path, xff=http.xff, counted=False, headers=http.headers)
        return self._deliver_pod(pf.pod, "127.0.0.1", self._next_sport(), pf.container_port, quiet)

    # ------------------------------------------------------------------ kube-proxy out of the data path
    # The model keeps what a kind node would: stopped, kube-proxy's chains stay as they were when it
    # stopped (nothing reprograms them; everyone else's chains still follow the model); flushed, they
    # are what CleanupLeftovers leaves (k8slab.backends.kubeproxy). Predictions follow these rules.
    def _kube_proxy(self) -> dict:
        st = getattr(self, "_kube_proxy_st", None)
        if st is None or st["cluster"] is not self._cluster:      # a new model: kube-proxy runs
            st = self._kube_proxy_st = {"cluster": self._cluster, "state": "running", "frozen": {}}
        return st

    def kube_proxy_state(self) -> str:
        return self._kube_proxy()["state"] if self._cluster is not None else "running"

    def _kube_proxy_view(self, where: str, text: str) -> str:
        from .kubeproxy import apply_cleanup, freeze
        st = self._kube_proxy()
        if st["state"] == "running" or where not in st["frozen"]:
            return text
        text = freeze(text, st["frozen"][where])
        return apply_cleanup(text) if st["state"] == "flushed" else text

    def _kube_proxy_nft(self, where: str, text: str) -> str:
        """kube-proxy's nft table in nftables mode: as rendered, as it was when it stopped, or none
        once flushed (its CleanupLeftovers deletes the table)."""
        st = self._kube_proxy()
        if st["state"] == "running":
            return text
        return "" if st["state"] == "flushed" else st.get("frozen_nft", {}).get(where, text)

    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        from ..model import render_node_dump
        c = self._need()
        st = self._kube_proxy()
        if st["state"] != "running":
            self.progress.step("kube-proxy is already stopped (sim)")
            return
        st["frozen"] = {n.name: render_node_dump(c, n, form="save") for n in c.nodes}
        if self.proxy_mode == "nftables":
            from ..netfilter.nft.node import render_node_kube_proxy
            st["frozen_nft"] = {n.name: render_node_kube_proxy(c, n, form="ruleset") for n in c.nodes}
        st["state"] = "stopped"
        self._changed()
        self.progress.step("kube-proxy's DaemonSet now selects no node: its pod is gone, its rules stay "
                           "(sim: predicted)")

    def flush_kube_proxy_rules(self) -> None:
        self._need()
        st = self._kube_proxy()
        if st["state"] == "running":
            from .kubeproxy import STOPPED_WHY
            raise LabStateError(STOPPED_WHY)
        st["state"] = "flushed"
        self._changed()
        self.progress.step("kube-proxy's rules removed from every node as kube-proxy --cleanup does "
                           "(sim: predicted)")

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        self._need()
        st = self._kube_proxy()
        if st["state"] != "running":
            st["state"], st["frozen"] = "running", {}
            self._changed()
        self.progress.step("kube-proxy back on every node; its rules re-synced (sim: predicted)")


# ---------------------------------------------------------------------------------------------
# helpers

def _request_id(seed: int, n: int) -> str:
    import hashlib
    return hashlib.sha256(f"{seed}/request/{n}".encode()).hexdigest()[:32]


def _split(dest: str) -> tuple[str, int]:
    ip, _, port = dest.rpartition(":")
    return ip.strip("[]"), int(port)


def _error(text: str, **kw) -> Response:
    return Response("", None, "", error=text, **kw)


def _veth(pod) -> str:
    return "veth" + (pod.container_id or "0" * 8)[:8]


def _pod_at(cluster, ip: str):
    for p in cluster.pods:
        if p.ip == ip and not p.host_network:
            return p
    return None


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


def _nat_port(seed: int, outcome, src: str, sport: int, dst: str, dport: int) -> int:
    """The source port after the outcome's MASQUERADE/SNAT. kube-proxy's MASQUERADE carries
    ``--random-fully``: the kernel then picks the port at random in 1024-65535 (nf_nat's unique-tuple
    search for a source port >= 1024; measured in the netns backend: 46886 became 47692, 50518 became
    25236), so the sim predicts one with a seeded hash. Without it (portmap's MASQUERADE) the port is
    kept, as the kernel does when the tuple is free (measured: 50738 stayed 50738)."""
    import hashlib
    for h in outcome.hops:
        rule = h.rule
        if rule is not None and (rule.target or "").upper() in ("MASQUERADE", "SNAT"):
            if "--random-fully" in (rule.line or "") or any(
                    getattr(o, "name", "") == "--random-fully" for o in rule.target_options):
                d = hashlib.sha256(f"{seed}/nat-port/{src}:{sport}/{dst}:{dport}".encode()).digest()
                return 1024 + int.from_bytes(d[:4], "big") % (65535 - 1024 + 1)
            return sport
    return sport


def _rejected_service(outcome) -> str:
    for h in reversed(outcome.hops):
        if h.rule is not None and (h.rule.target or "").upper() == "REJECT":
            comment = h.rule.comment or ""
            return comment.split(" has no", 1)[0] or f"{h.chain}#{h.position}"
    return "the service"


def _last_rule(outcome) -> str:
    for h in reversed(outcome.hops):
        if h.rule is not None:
            return f"{h.table} {h.chain}#{h.position}"
        if h.action.startswith("policy"):
            return f"{h.table} {h.chain} policy"
    return "a rule"
