"""Record what a live lab showed, and replay it where no cluster exists.

``lab.record(dir)`` calls :func:`record`, which saves, as plain files plus ``manifest.json``:

====================  ===========================================================================
``manifest.json``     format, time (UTC), backend, cluster name, versions (k8slab, kind, docker,
                      kubectl, kubernetes, ingress controller), nodes, responses, the file index
``objects/<kind>.json``  API-shaped dicts of nodes, pods, services, endpointslices, ingresses,
                      ingressclasses, deployments (what ``kubectl get KIND -A -o json`` listed)
``iptables/<node>.rules``  each node's ``iptables-save -c``; ``iptables/host.rules`` the host's
``conntrack/<node>.json``, ``sockets/<node>.json``  parsed conntrack entries and listening sockets
``ingress/nginx.conf``  the ingress controller's live configuration
``paths/<way>.json``  each way in as hops (:class:`k8slab.paths.Path`)
====================  ===========================================================================

The API the sim backend serves a recording with::

    rec = load(dir)                       # -> Recording (raises NotFound / LabStateError with a fix)
    rec.describe()                        # "replaying a recording of kind cluster 'k8slab' made <time>"
    rec.backend, rec.cluster, rec.created, rec.versions
    rec.objects(kind)                     # list[dict]; kind as "pods", "Pod", "pod" alike
    rec.nodes -> list[NodeInfo]; rec.iptables_save(node) -> str; rec.host_iptables -> str
    rec.conntrack(node) -> list[ConntrackEntry]; rec.sockets(node) -> list[Socket]
    rec.ingress_config -> str; rec.paths -> dict[str, Path]
    rec.response_for(url, host=None, from_="host", source=None) -> Response | None
    rec.all_objects() -> list[dict]       # every recorded object (for model.Cluster.from_objects)

``replay_backend(dir, name=..., root=..., progress=...)`` is what ``Lab(replay=dir)`` calls: a
SimBackend serving the recording when the sim backend accepts ``recording=``, otherwise the small
:class:`ReplayBackend` here. Either way ``live`` is False and every output says it is a replay.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from .backends.base import Backend, ConntrackEntry, NodeInfo, PortForward, Response, Socket
from .errors import LabStateError, NotFound
from .progress import Progress

FORMAT = "k8slab-recording/1"
KINDS = ("nodes", "pods", "services", "endpointslices", "ingresses", "ingressclasses", "deployments")
_PLURAL = {"pod": "pods", "service": "services", "svc": "services", "node": "nodes",
           "endpointslice": "endpointslices", "endpoints": "endpointslices", "ingress": "ingresses",
           "ingressclass": "ingressclasses", "deployment": "deployments", "deploy": "deployments"}
WAYS = ("port-forward", "clusterip", "nodeport", "hostport", "ingress")


def plural(kind: str) -> str:
    k = kind.lower()
    return _PLURAL.get(k, k)


def _safe_file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "_" for c in name)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value    # Component, Way
    return obj


def _response_dict(r: Response) -> dict:
    d = _jsonable(r)
    d["request"] = getattr(r, "request", None) or {"url": r.url, "host": None, "from_": r.from_, "source": None}
    return d


def _response_from(d: dict) -> Response:
    fields = {f.name for f in dataclasses.fields(Response)}
    r = Response(**{k: v for k, v in d.items() if k in fields})
    r.request = d.get("request") or {}  # type: ignore[attr-defined]
    return r


def _backend_of(lab: Any) -> Backend:
    return getattr(lab, "backend", lab)


def _try(errors: dict, key: str, fn, default=None):
    """Record what worked; note what did not (a recording of a half-built lab is still useful)."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a failed part is noted in manifest.json, not fatal
        errors[key] = f"{type(exc).__name__}: {exc}"
        return default


def record(lab: Any, dir: str | FsPath, *, now: _dt.datetime | None = None) -> FsPath:
    """Save everything the lab shows into ``dir`` (created); returns the manifest's path."""
    from . import __version__
    backend = _backend_of(lab)
    out = FsPath(dir)
    out.mkdir(parents=True, exist_ok=True)
    errors: dict[str, str] = {}
    files: dict[str, Any] = {"objects": {}, "iptables": {}, "conntrack": {}, "sockets": {}, "paths": {}}

    for kind in KINDS:
        objs = _try(errors, f"objects/{kind}", lambda k=kind: backend.objects(k))
        if objs is not None:
            rel = f"objects/{kind}.json"
            _write(out / rel, json.dumps(objs, indent=1, sort_keys=True))
            files["objects"][kind] = rel

    nodes = _try(errors, "nodes", backend.nodes, []) or []
    for n in nodes:
        text = _try(errors, f"iptables/{n.name}", lambda n=n: backend.iptables_save(n.name))
        if text is not None:
            rel = f"iptables/{_safe_file(n.name)}.rules"
            _write(out / rel, text)
            files["iptables"][n.name] = rel
        ct = _try(errors, f"conntrack/{n.name}", lambda n=n: backend.conntrack(n.name))
        if ct is not None:
            rel = f"conntrack/{_safe_file(n.name)}.json"
            _write(out / rel, json.dumps(_jsonable(ct), indent=1))
            files["conntrack"][n.name] = rel
        socks = _try(errors, f"sockets/{n.name}", lambda n=n: backend.sockets(n.name))
        if socks is not None:
            rel = f"sockets/{_safe_file(n.name)}.json"
            _write(out / rel, json.dumps(_jsonable(socks), indent=1))
            files["sockets"][n.name] = rel
    host = _try(errors, "iptables/host", backend.host_iptables_save, "")
    if host:
        _write(out / "iptables/host.rules", host)
        files["host_iptables"] = "iptables/host.rules"
    conf = _try(errors, "ingress/nginx.conf", backend.ingress_config, "")
    if conf:
        _write(out / "ingress/nginx.conf", conf)
        files["ingress_config"] = "ingress/nginx.conf"
    if hasattr(lab, "path") and lab is not backend:
        for way in WAYS:
            p = _try(errors, f"paths/{way}", lambda w=way: lab.path(w))
            if p is not None:
                rel = f"paths/{way}.json"
                _write(out / rel, json.dumps(_jsonable(p), indent=1))
                files["paths"][way] = rel

    responses = list(getattr(backend, "history", []) or []) + list(getattr(lab, "responses", []) or [])
    versions = {"k8slab": __version__, "python": platform.python_version()}
    if hasattr(backend, "versions"):
        versions.update(_try(errors, "versions", backend.versions, {}) or {})
    manifest = {
        "format": FORMAT,
        "created": (now or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
        "backend": getattr(backend, "kind", "?"),
        "live": bool(getattr(backend, "live", False)),
        "cluster": getattr(backend, "name", getattr(lab, "name", "")),
        "versions": versions,
        "nodes": _jsonable(nodes),
        "responses": [_response_dict(r) for r in responses],
        "files": files,
        "errors": errors,
    }
    path = out / "manifest.json"
    _write(path, json.dumps(manifest, indent=1, sort_keys=True))
    return path


def _write(path: FsPath, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@dataclass
class Recording:
    """A recorded lab, read back by :func:`load`. See the module docstring for the API."""
    dir: FsPath
    backend: str
    cluster: str
    created: str
    versions: dict[str, str]
    nodes: list[NodeInfo]
    responses: list[Response]
    host_iptables: str = ""
    ingress_config: str = ""
    paths: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    _objects: dict[str, list[dict]] = field(default_factory=dict, repr=False)
    _iptables: dict[str, str] = field(default_factory=dict, repr=False)
    _conntrack: dict[str, list[ConntrackEntry]] = field(default_factory=dict, repr=False)
    _sockets: dict[str, list[Socket]] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return (f"replaying a recording of {self.backend} cluster {self.cluster!r} made {self.created} "
                f"(from {self.dir})")

    def objects(self, kind: str) -> list[dict]:
        return [dict(o) for o in self._objects.get(plural(kind), [])]

    def all_objects(self) -> list[dict]:
        return [o for kind in KINDS for o in self._objects.get(kind, [])]

    def _node(self, node: str | None) -> str:
        if node is None:
            cp = [n.name for n in self.nodes if n.role == "control-plane"]
            node = cp[0] if cp else (self.nodes[0].name if self.nodes else "")
        return node

    def iptables_save(self, node: str | None = None) -> str:
        node = self._node(node)
        if node not in self._iptables:
            raise NotFound(f"the recording has no iptables dump of node {node!r}; it has "
                           f"{', '.join(self._iptables) or 'none'}")
        return self._iptables[node]

    def conntrack(self, node: str | None = None) -> list[ConntrackEntry]:
        return list(self._conntrack.get(self._node(node), []))

    def sockets(self, node: str | None = None) -> list[Socket]:
        return list(self._sockets.get(self._node(node), []))

    def response_for(self, url: str, host: str | None = None, from_: str = "host",
                     source: str | None = None) -> Response | None:
        """The last recorded answer to the same request (url, Host header, from where, source)."""
        for r in reversed(self.responses):
            req = getattr(r, "request", {}) or {}
            if (req.get("url", r.url) == url and req.get("host") == host and req.get("from_", r.from_) == from_
                    and (source is None or req.get("source") == source)):
                return dataclasses.replace(r)
        return None

    def requests(self) -> list[dict]:
        return [getattr(r, "request", {}) for r in self.responses]


def load(dir: str | FsPath) -> Recording:
    """Read a recording written by :func:`record`."""
    root = FsPath(dir)
    mf = root / "manifest.json"
    if not mf.is_file():
        raise NotFound(f"{mf} does not exist: record one with lab.record({str(root)!r}) on a live lab")
    data = json.loads(mf.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise LabStateError(f"{mf} has format {data.get('format')!r}, this k8slab reads {FORMAT!r}: "
                            "record it again with this version")
    files = data.get("files", {})

    def read(rel: str) -> str:
        return (root / rel).read_text(encoding="utf-8")

    def node_info(d: dict) -> NodeInfo:
        return NodeInfo(d["name"], d["role"], d["ip"], d["pod_cidr"], tuple(d.get("local_ips") or ()),
                        d.get("runs_as", ""))

    paths = {}
    for way, rel in (files.get("paths") or {}).items():
        paths[way] = _path_from(json.loads(read(rel)))
    return Recording(
        dir=root, backend=data.get("backend", "?"), cluster=data.get("cluster", ""),
        created=data.get("created", ""), versions=data.get("versions", {}),
        nodes=[node_info(n) for n in data.get("nodes", [])],
        responses=[_response_from(r) for r in data.get("responses", [])],
        host_iptables=read(files["host_iptables"]) if files.get("host_iptables") else "",
        ingress_config=read(files["ingress_config"]) if files.get("ingress_config") else "",
        paths=paths, errors=data.get("errors", {}),
        _objects={k: json.loads(read(rel)) for k, rel in (files.get("objects") or {}).items()},
        _iptables={n: read(rel) for n, rel in (files.get("iptables") or {}).items()},
        _conntrack={n: [ConntrackEntry(**e) for e in json.loads(read(rel))]
                    for n, rel in (files.get("conntrack") or {}).items()},
        _sockets={n: [Socket(**s) for s in json.loads(read(rel))] for n, rel in (files.get("sockets") or {}).items()},
    )


def _path_from(d: dict):
    from .paths import Component, Hop, Path, Way
    hops = [Hop(index=h["index"], component=Component(h["component"]), place=h["place"], action=h["action"],
                src=h.get("src"), dst=h.get("dst"), plane=h.get("plane", "data"),
                evidence=tuple(h.get("evidence") or ()), rewrote=h.get("rewrote", ""),
                stand_in=bool(h.get("stand_in", False))) for h in d.get("hops", [])]
    return Path(way=Way(d["way"]), hops=hops, client=d.get("client", ""), destination=d.get("destination"),
                predicted=d.get("predicted", False), backend=d.get("backend", ""), notes=list(d.get("notes") or []))


# --------------------------------------------------------------------------------------------------
# Serving a recording.
# --------------------------------------------------------------------------------------------------
class _ReplayedForward(PortForward):
    """A port-forward in a replay: nothing listens; requests through it are answered from the recording."""

    def __init__(self, target: str, local_port: int, remote_port: int):
        self.target, self.local_port, self.remote_port = target, local_port, remote_port
        self._open = True

    @property
    def alive(self) -> bool:
        return self._open

    def close(self) -> None:
        self._open = False

    def __repr__(self) -> str:
        return f"<replayed port-forward {self.target} 127.0.0.1:{self.local_port} -> {self.remote_port}>"


class ReplayBackend(Backend):
    """Serves a :class:`Recording`: reads answer from it, changes are refused (it is read-only)."""
    kind = "kind"
    live = False

    def __init__(self, name: str, *, root: FsPath, progress: Progress, recording: Recording):
        super().__init__(name, root=root, progress=progress)
        self.recording = recording
        progress.step(recording.describe())

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, "a recording needs nothing installed"

    def _read_only(self, what: str):
        raise LabStateError(f"{what}: this lab {self.recording.describe()}, which is read-only. Run it on a "
                            "live lab (Lab(backend='kind')) or on the model (Lab(backend='sim'))")

    def up(self, config=None) -> None:
        self.progress.step(self.recording.describe())

    def down(self) -> None:
        pass

    def is_up(self) -> bool:
        return True

    def apply(self, objects: list[dict]) -> list[str]:
        self._read_only("apply")

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        self._read_only("delete")

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        self._read_only("scale")

    def wait_ready(self, timeout: float = 120.0) -> None:
        pass

    def objects(self, kind: str) -> list[dict]:
        return self.recording.objects(kind)

    def nodes(self) -> list[NodeInfo]:
        return list(self.recording.nodes)

    def iptables_save(self, node: str) -> str:
        return self.recording.iptables_save(node)

    def host_iptables_save(self) -> str:
        return self.recording.host_iptables

    def conntrack(self, node: str) -> list[ConntrackEntry]:
        return self.recording.conntrack(node)

    def sockets(self, node: str, pod: str | None = None) -> list[Socket]:
        return self.recording.sockets(node)

    def ingress_config(self) -> str:
        return self.recording.ingress_config

    def request(self, url: str, *, host: str | None = None, from_="host", source: str | None = None,
                timeout: float = 10.0) -> Response:
        r = self.recording.response_for(url, host, from_, source)
        if r is None:
            known = "; ".join(f"{q.get('url')} host={q.get('host')} from {q.get('from_')}"
                              for q in self.recording.requests()) or "none"
            raise NotFound(f"the recording has no answer to {url} (host={host}, from {from_}). Recorded: {known}")
        r.predicted = True
        r.backend = f"replay of {self.recording.backend}"
        return r

    def port_forward(self, target: str, local_port: int, remote_port: int, namespace: str = "default"):
        self.progress.step(f"port-forward {target} {local_port}:{remote_port} is replayed: nothing listens; "
                           "lab.request() answers from the recording")
        return _ReplayedForward(target, local_port, remote_port)

    def model(self):
        from .model import Cluster
        return Cluster.from_objects(self.recording.all_objects(), name=self.recording.cluster or self.name)


def replay_backend(dir: str | FsPath, *, name: str = "k8slab", root: FsPath | None = None,
                   progress: Progress | None = None) -> Backend:
    """The backend ``Lab(replay=dir)`` uses: the sim backend if it serves recordings, else ReplayBackend."""
    rec = load(dir)
    progress = progress or Progress()
    root = FsPath(root) if root is not None else FsPath.cwd()
    try:
        import inspect
        from .backends.sim import SimBackend  # type: ignore
        if "recording" in inspect.signature(SimBackend.__init__).parameters:
            return SimBackend(name, root=root, progress=progress, recording=rec)
    except (ImportError, AttributeError, ValueError, TypeError):
        pass
    return ReplayBackend(name, root=root, progress=progress, recording=rec)
