"""The Lab: every verb a notebook calls, the same on every backend.

``Lab(backend="auto")`` picks a real kind cluster where Docker and kind work and the pure-Python
model (``sim``) elsewhere, and says which and why. Everything the Lab returns from a model says so:
``Response.predicted``, ``Path.predicted`` and ``df.attrs["source"] == "sim model"``.

This module owns :class:`Lab`, its name and root (:func:`validate_name`, :func:`find_root`) and the
course's manifest paths. The choice of backend and kube-proxy mode lives in
:mod:`k8slab.backend_choice`, manifests in and ``get()`` tables out in :mod:`k8slab.objects`, the
``counters()``/``connections()`` watches in :mod:`k8slab.watches`; their names stay importable here.
"""
from __future__ import annotations

import importlib
import os
import re
from pathlib import Path as FsPath
from typing import Any, Iterable

from . import backend_choice as _choice
from .backend_choice import (BACKENDS, CLASS_NAMES, CLUSTER_CONFIG, CLUSTER_CONFIGS, FIXES, _available,
                             choose_proxy_mode, load_backend_class)
from .backends.base import Backend, NodeInfo, Response
from .errors import BackendUnavailable, K8sLabError, LabStateError, ManifestError, NotFound
from .objects import (API_KIND, FRAME_COLUMNS, KIND_ALIASES, _external_ip, _labels, _pod_ready, _ports_text,
                      load_manifests, object_rows)
from .progress import Progress
from .paths import PORT_FORWARD_LOCAL_PORT
from .watches import ConnectionWatch, CounterWatch

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
APP = "url-shortener"
MAX_RESPONSES = 200
APP_MANIFEST = "kind/manifests/app.yaml"
INGRESS_CONTROLLER_MANIFEST = "kind/manifests/ingress-nginx.yaml"
CLIENT_MANIFEST = "kind/manifests/client.yaml"
CLIENT_POD = "default/k8slab-client"


class InvalidName(ManifestError):
    """A lab name that is not a DNS-1123 label."""


# ---------------------------------------------------------------------------------------------
# small pure helpers

def validate_name(name: str) -> str:
    """A lab name must be a DNS-1123 label: it names the kind cluster, containers and namespaces."""
    if not isinstance(name, str) or not name or len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise InvalidName(
            f"lab name {name!r} is not a DNS-1123 label: use 1 to 63 characters, lowercase letters, "
            "digits and '-', starting and ending with a letter or digit (e.g. 'k8slab')")
    return name


def find_root(start: Iterable[FsPath] | None = None) -> FsPath:
    """The project root: the nearest directory holding both ``kind/`` and ``app/``, searched upward
    from the working directory and from this package's location."""
    starts = list(start) if start is not None else [FsPath.cwd(), FsPath(__file__).resolve().parent]
    for base in starts:
        for d in (base, *base.parents):
            if (d / "kind").is_dir() and (d / "app").is_dir():
                return d
    raise NotFound("cannot find the k8slab project root (a directory with kind/ and app/); run from "
                   "inside the checkout or pass Lab(root='/path/to/k8slab')")


def choose_backend(requested: str = "auto", env: dict | None = None) -> tuple[str, str]:
    """(backend, why) for ``requested``: :func:`k8slab.backend_choice.choose_backend`, probing kind
    through this module's :func:`load_backend_class` (the name tests replace)."""
    return _choice.choose_backend(requested, env, load_class=load_backend_class)


class Lab:
    """A course cluster on one backend. See docs/architecture.md for the verbs."""

    def __init__(self, backend: str = "auto", name: str = "k8slab", root: str | os.PathLike | None = None,
                 seed: int = 0, quiet: bool = False, replay: str | os.PathLike | None = None,
                 proxy_mode: str | None = None):
        self.name = validate_name(name)
        self._proxy_mode = choose_proxy_mode(proxy_mode)
        self.root = FsPath(root).resolve() if root is not None else find_root()
        self.seed = seed
        self.progress = Progress(quiet=quiet)
        self._rules_cache: dict[str, tuple[str, Any]] = {}
        self.responses: list[Response] = []       # the last MAX_RESPONSES answers, for record()
        if replay is not None:
            self.backend = self._replay_backend(replay, backend)
            self.backend_name = getattr(self.backend, "kind", "sim")
            self.why = f"{self.backend_name}: replaying the recording in {replay}"
        else:
            chosen, why = choose_backend(backend)
            cls = load_backend_class(chosen)
            ok, reason = _available(cls)
            if not ok:
                raise BackendUnavailable(f"the {chosen} backend cannot run here: {reason}. "
                                         f"Fix: {FIXES.get(chosen, '')}")
            kwargs: dict[str, Any] = {"root": self.root, "progress": self.progress}
            if chosen == "sim":
                kwargs["seed"] = seed
            self.backend = cls(self.name, **kwargs)
            self.backend_name = chosen
            self.why = why
        self.progress.step(f"backend {self.why}")

    def _replay_backend(self, replay, backend: str) -> Backend:
        try:
            recording = importlib.import_module("k8slab.recording")
        except ModuleNotFoundError as exc:
            raise BackendUnavailable("replay needs k8slab/recording.py, which this installation lacks; "
                                     "use Lab(backend='sim') without replay") from exc
        for fn in ("replay_backend", "replay", "ReplayBackend"):
            factory = getattr(recording, fn, None)
            if factory is not None:
                return factory(replay, name=self.name, root=self.root, progress=self.progress)
        raise BackendUnavailable("k8slab.recording offers no replay entry point; use backend='sim'")

    # --- identity ---
    @property
    def live(self) -> bool:
        return bool(getattr(self.backend, "live", False))

    @property
    def source(self) -> str:
        """What ``df.attrs["source"]`` says: ``sim model`` or e.g. ``kind cluster k8slab``."""
        if not self.live:
            return "sim model" if self.backend_name == "sim" else f"{self.backend_name} recording"
        if self.backend_name == "kind":
            return f"kind cluster {self.name}"
        return f"{self.backend_name} lab {self.name}"

    def _label(self, df):
        df.attrs["source"] = self.source
        df.attrs["predicted"] = not self.live
        return df

    def _state(self) -> str:
        try:
            return "up" if self.backend.is_up() else "down"
        except K8sLabError as exc:
            return f"unknown ({exc})"

    def _describe(self) -> tuple[str, list[str]]:
        kind = "live" if self.live else "model"
        head = f"Lab {self.name!r}: backend {self.backend_name} ({kind})"
        lines = [f"why: {self.why}"]
        if not self.live:
            lines.append("sim: predictions of a model, not a live cluster")
        state = self._state()
        lines.append(f"state: {state}")
        if state == "up":
            try:
                lines.append("nodes: " + ", ".join(f"{n.name} ({n.role}, {n.ip})" for n in self.backend.nodes()))
            except K8sLabError:
                pass
        return head, lines

    def __repr__(self) -> str:
        head, lines = self._describe()
        return head + "\n" + "\n".join("  " + l for l in lines)

    def _repr_html_(self) -> str:
        import html
        head, lines = self._describe()
        items = "".join(f"<li>{html.escape(l)}</li>" for l in lines)
        return f"<div><b>{html.escape(head)}</b><ul>{items}</ul></div>"

    # --- lifecycle ---
    def doctor(self):
        import pandas as pd
        rows = [{"check": f.check, "ok": f.ok, "detail": f.detail, "fix": f.fix}
                for f in self.backend.doctor()]
        return self._label(pd.DataFrame(rows, columns=["check", "ok", "detail", "fix"]))

    def up(self, config: str | os.PathLike | None = None) -> "Lab":
        """Create (or reuse) the cluster from ``kind/cluster.yaml`` (or ``config``, e.g.
        ``kind/cluster-multinode.yaml``, relative to the project root)."""
        path = self.root / CLUSTER_CONFIGS[self._proxy_mode] if config is None else FsPath(config)
        if not path.is_absolute() and not path.exists():
            path = self.root / path
        self.backend.up(path)
        self._rules_cache.clear()
        return self

    def down(self) -> None:
        self.backend.down()
        self._rules_cache.clear()

    def _require_up(self) -> None:
        if not self.backend.is_up():
            raise LabStateError(f"the {self.backend_name} lab {self.name!r} is not up: call lab.up() first")

    # --- objects ---
    def apply(self, manifest) -> list[str]:
        self._require_up()
        objects = load_manifests(manifest, self.root)
        return self.backend.apply(objects)

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self._require_up()
        self.backend.delete(kind, name, namespace)

    def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        self._require_up()
        if int(replicas) < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        self.backend.scale(name, int(replicas), namespace)

    def wait_ready(self, timeout: float = 120) -> None:
        self._require_up()
        self.backend.wait_ready(timeout)

    def deploy_app(self, replicas: int = 2) -> list[str]:
        """The url-shortener Deployment and its ClusterIP Service, waited for."""
        self._require_up()
        objects = load_manifests(self.root / APP_MANIFEST, self.root)
        return self.backend.deploy_app(objects, replicas)

    def install_ingress_controller(self) -> list[str]:
        """ingress-nginx's kind essentials (hostPort 80/443 on the control-plane), waited for."""
        self._require_up()
        objects = load_manifests(self.root / INGRESS_CONTROLLER_MANIFEST, self.root)
        return self.backend.install_ingress_controller(objects)

    def get(self, kind: str):
        import pandas as pd
        key = KIND_ALIASES.get(kind.lower(), kind.lower())
        if key not in FRAME_COLUMNS:
            raise NotFound(f"get() knows {', '.join(FRAME_COLUMNS)}; not {kind!r}")
        self._require_up()
        nodes = self.backend.nodes() if key == "nodes" else []
        objects = [] if key == "nodes" else self.backend.objects(API_KIND[key])
        rows = object_rows(key, objects, nodes)
        return self._label(pd.DataFrame(rows, columns=FRAME_COLUMNS[key]))

    # --- nodes ---
    def nodes(self) -> list[NodeInfo]:
        return self.backend.nodes()

    def _node(self, node: str | None) -> NodeInfo:
        nodes = self.backend.nodes()
        if not nodes:
            raise LabStateError("the lab has no nodes: call lab.up() first")
        if node is None:
            for n in nodes:
                if n.role == "control-plane":
                    return n
            return nodes[0]
        for n in nodes:
            if n.name == node or n.ip == node or n.name == f"{self.name}-{node}":   # "control-plane" works too
                return n
        raise NotFound(f"no node {node!r}; nodes are {', '.join(n.name for n in nodes)}")

    # --- rules ---
    def _parse(self, key: str, text: str):
        cached = self._rules_cache.get(key)
        if cached is not None and cached[0] == text:
            return cached[1]
        from .netfilter.parser import parse
        ruleset = parse(text, source=key)
        self._rules_cache[key] = (text, ruleset)
        return ruleset

    def _fresh_ruleset(self, node: str):
        """parse(backend.iptables_save(node)); a backend that caches that parse (sim) is asked for it."""
        cached = getattr(self.backend, "iptables_ruleset", None)
        if callable(cached):
            return cached(node)
        return self._parse(f"{node} (iptables-save -c)", self.backend.iptables_save(node))

    def iptables(self, node: str | None = None):
        """The node's rules (all tables, with counters) as a parsed Ruleset."""
        self._require_up()
        return self._fresh_ruleset(self._node(node).name)

    def host_iptables(self):
        """The learner's machine's rules that matter here (Docker's DNAT for extraPortMappings)."""
        self._require_up()
        return self._parse("host (iptables-save)", self.backend.host_iptables_save())

    def trace(self, dst: str, dport: int, src: str | None = None, proto: str = "tcp",
              node: str | None = None):
        """Follow one new connection through the node's rules: every outcome with its probability.

        The node's local addresses and its routes go with the rules, so the tracer knows the
        interfaces (the pod's veth, the node's eth0) and what is local: a lab trace has no condition
        about either."""
        from .errors import K8sLabError
        from .netfilter.tracer import trace as nf_trace
        from .netfilter.tracer import NodeContext, Packet
        info = self._node(node)
        if src is None:
            src = self._default_source(info)
        if self.proxy_mode == "nftables":
            return self._trace_nft(info, src, dst, dport, proto)
        ruleset = self._rules_for_tracing(info.name)
        try:
            routes = tuple((r.dst, r.dev) for r in self.backend.routes(info.name)
                           if r.dev and (r.dst == "default" or r.dst[:1].isdigit() or ":" in r.dst))
        except (NotImplementedError, K8sLabError):
            routes = ()            # no routing table from this backend: interfaces stay conditions
        return nf_trace(ruleset, Packet(src=src, dst=dst, dport=int(dport), proto=proto),
                        NodeContext(local_ips=tuple(info.local_ips),
                                    pod_cidrs=(info.pod_cidr,) if info.pod_cidr else (),
                                    name=info.name, routes=routes))

    # --- kube-proxy's nftables mode (kind/cluster-nftables.yaml) ---
    @property
    def proxy_mode(self) -> str:
        """kube-proxy's mode: what the running cluster's config says (sim, netns), else what this Lab
        was asked for (``Lab(proxy_mode=...)`` or K8SLAB_PROXY_MODE; default iptables)."""
        mode = getattr(self.backend, "proxy_mode", None)
        return mode if isinstance(mode, str) and mode else self._proxy_mode

    def nftables(self, node: str | None = None):
        """The node's whole nftables ruleset (``nft list ruleset``: kube-proxy's table in nftables mode
        and the iptables-nft tables kindnet, portmap, Docker and kubelet write) as an NftRuleset, with
        views like iptables(): ``.rules_frame``, ``.chains_frame``, ``.sets_frame``, ``.elements_frame``."""
        self._require_up()
        name = self._node(node).name
        cached = getattr(self.backend, "nft_ruleset", None)
        if callable(cached):
            return cached(name)
        key = f"{name} (nft list ruleset)"
        text = self.backend.nft_list_ruleset(name)
        hit = self._rules_cache.get(key)
        if hit is not None and hit[0] == text:
            return hit[1]
        from .netfilter.nft import parse_nft
        rs = parse_nft(text)
        rs.source = key
        self._rules_cache[key] = (text, rs)
        return rs

    def _trace_nft(self, info, src: str, dst: str, dport: int, proto: str):
        from .errors import K8sLabError
        from .netfilter.nft import trace_nft
        from .netfilter.tracer import NodeContext, Packet
        try:
            routes = tuple((r.dst, r.dev) for r in self.backend.routes(info.name)
                           if r.dev and (r.dst == "default" or r.dst[:1].isdigit() or ":" in r.dst))
        except (NotImplementedError, K8sLabError):
            routes = ()
        return trace_nft(self.nftables(info.name), Packet(src=src, dst=dst, dport=int(dport), proto=proto),
                         NodeContext(local_ips=tuple(info.local_ips),
                                     pod_cidrs=(info.pod_cidr,) if info.pod_cidr else (),
                                     name=info.name, routes=routes))

    def _rules_for_tracing(self, node: str):
        """The node's rules; counters do not matter to a trace, so a backend that keeps a parsed copy
        without them (sim: one per model version) is asked for that one. In nftables mode: the
        node's whole nft ruleset (paths and plots trace it with the same Trace types)."""
        self._require_up()
        if self.proxy_mode == "nftables":
            return self.nftables(node)
        cached = getattr(self.backend, "ruleset", None)
        if callable(cached):
            return cached(node)
        return self._fresh_ruleset(node)

    def _pods(self) -> list:
        try:
            return list(self.backend.model().pods)
        except NotImplementedError:
            return self.backend.objects("Pod")

    def _default_source(self, info: NodeInfo) -> str:
        """A pod IP on that node that is not one of the app's pods (a client inside the cluster)."""
        from .paths import client_pod_ip
        return client_pod_ip(self._pods(), info, exclude_app=APP)

    # --- traffic ---
    def client_pod(self) -> str:
        """The course's client pod (``kind/manifests/client.yaml``: curl, sleeping), created on first
        use and reused: requests "from a pod" start there. Returns ``"namespace/name"``."""
        self._require_up()
        ns, _, name = CLIENT_POD.partition("/")
        if not any((p.get("metadata") or {}).get("name") == name
                   and (p.get("metadata") or {}).get("namespace", "default") == ns
                   for p in self.backend.objects("pods")):
            self.progress.step(f"creating the course's client pod {CLIENT_POD} ({CLIENT_MANIFEST})")
            self.backend.apply(load_manifests(self.root / CLIENT_MANIFEST, self.root))
        self.backend.wait_pod(ns, name)
        return CLIENT_POD

    def pod_ref(self, pod: str) -> str:
        """``"namespace/name"`` for a pod given as ``namespace/name`` or as a bare name that exactly
        one namespace holds. Pods are named this way between every function of the course."""
        if "/" in pod:
            return pod
        found = sorted({(p.get("metadata") or {}).get("namespace", "default")
                        for p in self.backend.objects("pods")
                        if (p.get("metadata") or {}).get("name") == pod})
        if len(found) == 1:
            return f"{found[0]}/{pod}"
        if not found:
            raise NotFound(f"no pod named {pod!r} in any namespace: see lab.get('pods')")
        raise NotFound(f"pods named {pod!r} exist in {', '.join(found)}: write namespace/{pod}")

    def _source(self, from_: str, source: str | None) -> str | None:
        if from_ not in ("host", "node", "pod"):
            raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
        self._require_up()
        if from_ == "pod":
            return self.client_pod() if source is None else self.pod_ref(source)
        return source

    def _keep(self, resp: Response, question: dict) -> Response:
        if not self.live:
            resp.predicted = True
        resp.backend = resp.backend or self.backend_name
        # what was asked, for record(): a replay answers the same question with this response
        resp.request = dict(question)
        self.responses.append(resp)
        del self.responses[:-MAX_RESPONSES]
        return resp

    def request(self, url: str, host: str | None = None, from_: str = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        """One HTTP GET from the learner's machine (``host``), a node or a pod (default: the course's
        client pod). ``Response.note`` says when it had to be sent otherwise (see the kind backend).
        ``timeout`` (seconds): how long to wait for an answer that may never come."""
        source = self._source(from_, source)
        resp = self.backend.request(url, host=host, from_=from_, source=source, timeout=timeout)
        return self._keep(resp, {"url": url, "host": host, "from_": from_, "source": source})

    def requests(self, url: str, count: int, host: str | None = None, from_: str = "host",
                 source: str | None = None, timeout: float = 10.0) -> list[Response]:
        """``count`` GETs, each a new connection (to see how a Service spreads them). On kind they go
        out in one command, not one ``kubectl exec`` each."""
        if int(count) < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        source = self._source(from_, source)
        answers = self.backend.requests(url, int(count), host=host, from_=from_, source=source,
                                        timeout=timeout)
        question = {"url": url, "host": host, "from_": from_, "source": source}
        return [self._keep(r, question) for r in answers]

    def port_forward(self, target: str = f"svc/{APP}", local_port: int = PORT_FORWARD_LOCAL_PORT, remote_port: int = 80,
                     namespace: str = "default"):
        self._require_up()
        return self.backend.port_forward(target, local_port, remote_port, namespace)

    def path(self, way, **options):
        """One way in as hops, derived from the backend's current rules (see :mod:`k8slab.paths`).
        ``options`` go to :func:`k8slab.paths.build_path` (``service=``, ``host=``, ``url_path=``,
        ``prefer=`` an endpoint ``ip:port`` to draw)."""
        from .paths import Way, build_path
        self._require_up()
        way = Way(way)
        try:
            cached = getattr(self.backend, "host_ruleset", None)
            host_rules = cached() if callable(cached) else self.host_iptables()
        except K8sLabError:
            host_rules = None
        if host_rules is not None and host_rules.rule_count == 0:
            host_rules = None
        info = self._node(None)
        return build_path(way, cluster_model=self.backend.model(),
                          node_rules=self._rules_for_tracing(info.name),
                          host_rules=host_rules, nodes=self.backend.nodes(), backend=self.backend_name,
                          predicted=not self.live, **options)

    def counters(self, node: str | None = None) -> CounterWatch:
        self._require_up()
        return CounterWatch(self, self._node(node).name)

    def conntrack(self, node: str | None = None):
        import pandas as pd
        self._require_up()
        rows = []
        for e in self.backend.conntrack(self._node(node).name):
            rows.append({"proto": e.proto, "src": e.src, "sport": e.sport, "dst": e.dst, "dport": e.dport,
                         "reply_src": e.reply_src, "reply_sport": e.reply_sport,
                         "reply_dst": e.reply_dst, "reply_dport": e.reply_dport, "state": e.state,
                         "dnat": e.dnat, "snat": e.snat})
        cols = ["proto", "src", "sport", "dst", "dport", "reply_src", "reply_sport", "reply_dst",
                "reply_dport", "state", "dnat", "snat"]
        return self._label(pd.DataFrame(rows, columns=cols))

    def connections(self, node: str | None = None, only_lab: bool = True) -> ConnectionWatch:
        """``with lab.connections() as ct: lab.request(...)`` then ``ct.frame``: the connections the
        node's kernel began tracking meanwhile, with their DNAT and SNAT (see ConnectionWatch)."""
        self._require_up()
        if node == "host":
            if self.backend_name == "kind":
                raise LabStateError("the host's conntrack table is your own machine's (Docker Desktop: its "
                                    "VM's): run `sudo conntrack -L` there; lab.connections() reads a node's")
            return ConnectionWatch(self, "host", only_lab)
        return ConnectionWatch(self, self._node(node).name, only_lab)

    def _cluster_and_nodes(self):
        """The cluster model and the live nodes, for naming addresses (None/[] when unavailable)."""
        try:
            cluster = self.backend.model()
        except (K8sLabError, NotImplementedError, AttributeError):
            cluster = None
        try:
            nodes = list(self.backend.nodes())
        except K8sLabError:
            nodes = []
        return cluster, nodes

    def routes(self, node: str | None = None):
        """The node's routing table as a DataFrame (``ip route``): after the nat table has rewritten the
        destination, this decides which interface (which pod's veth, or which other node) gets it."""
        import pandas as pd
        self._require_up()
        rows = [{"dst": r.dst, "via": r.via, "dev": r.dev, "src": r.src, "scope": r.scope}
                for r in self.backend.routes(self._node(node).name)]
        return self._label(pd.DataFrame(rows, columns=["dst", "via", "dev", "src", "scope"]))

    def sockets(self, node: str | None = None, pod: str | None = None):
        import pandas as pd
        self._require_up()
        rows = [{"proto": s.proto, "local": s.local, "process": s.process}
                for s in self.backend.sockets(self._node(node).name, pod)]
        return self._label(pd.DataFrame(rows, columns=["proto", "local", "process"]))

    def ingress_routes(self):
        import pandas as pd
        self._require_up()
        from .paths import ingress_route_rows
        rows = ingress_route_rows(self.backend.model())
        cols = ["host", "path", "path_type", "namespace", "ingress", "service", "port", "upstreams"]
        return self._label(pd.DataFrame(rows, columns=cols))

    def ingress_config(self) -> str:
        self._require_up()
        return self.backend.ingress_config()

    # --- kube-proxy out of the data path (issue 13; k8slab.experiments.kube_proxy_experiment) ---
    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        """kube-proxy's pod leaves every node and stays away (its DaemonSet selects no node); its
        rules stay in the kernel, so Services keep working, but nothing updates them any more."""
        self._require_up()
        self.backend.stop_kube_proxy(timeout)
        self._rules_cache.clear()

    def flush_kube_proxy_rules(self) -> None:
        """Remove kube-proxy's rules from every node as ``kube-proxy --cleanup`` does. Stop it first
        (``lab.stop_kube_proxy()``): a running kube-proxy would write them back."""
        self._require_up()
        if self.backend.kube_proxy_state() == "running":
            from .backends.kubeproxy import STOPPED_WHY
            raise LabStateError(STOPPED_WHY)
        self.backend.flush_kube_proxy_rules()
        self._rules_cache.clear()

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        """Back to normal: kube-proxy's pod Ready on every node and its rules re-synced."""
        self._require_up()
        self.backend.start_kube_proxy(timeout)
        self._rules_cache.clear()

    def kube_proxy_status(self):
        """One row per node: kube-proxy's pod there (present?), its state (running, stopped,
        flushed) and how many rules its chains hold (and the jumps into them)."""
        import pandas as pd
        self._require_up()
        rows = self.backend.kube_proxy_status()
        cols = ["node", "kube-proxy pod", "pod present", "state", "KUBE-SERVICES", "kube-proxy rules",
                "jumps to them", "service chains", "nft table"]
        return self._label(pd.DataFrame(rows, columns=cols))

    def record(self, dir) -> Any:
        try:
            recording = importlib.import_module("k8slab.recording")
        except ModuleNotFoundError as exc:
            raise LabStateError("record() needs k8slab/recording.py, which this installation lacks") from exc
        return recording.record(self, dir)
