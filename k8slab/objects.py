"""The Lab's Kubernetes objects, pure: manifests in, tables out.

Owns :func:`load_manifests` (a path, YAML text, a dict or a list of dicts -> manifest dicts, what
``Lab.apply`` and the course's set-up verbs send to a backend) and the ``Lab.get(kind)`` tables:
:func:`object_rows` (API-shaped dicts -> rows, as ``kubectl get`` would show them), their columns
(``FRAME_COLUMNS``), the names a learner may use for a kind (``KIND_ALIASES``) and the API kind each
table reads (``API_KIND``). ``k8slab.lab`` re-exports them.
"""
from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Any

from .backends.base import NodeInfo
from .errors import ManifestError


def load_manifests(manifest: Any, root: FsPath | None = None) -> list[dict]:
    """A path, YAML text, a dict or a list of dicts -> a list of manifest dicts (List kinds flattened)."""
    import yaml
    docs: list[Any]
    if isinstance(manifest, dict):
        docs = [manifest]
    elif isinstance(manifest, (list, tuple)):
        docs = list(manifest)
    elif isinstance(manifest, (str, os.PathLike)):
        text = None
        candidate = str(manifest)
        if isinstance(manifest, os.PathLike) or ("\n" not in candidate and len(candidate) < 4096):
            for p in (FsPath(candidate), (root / candidate) if root else None):
                if p is not None and p.is_file():
                    text = p.read_text()
                    break
            if text is None and (isinstance(manifest, os.PathLike)
                                 or candidate.endswith((".yaml", ".yml", ".json"))):
                raise ManifestError(f"manifest file {candidate} does not exist; give a path relative to "
                                    f"the project root ({root}) or YAML text")
        if text is None:
            text = candidate
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(f"manifest is not valid YAML: {exc}") from exc
    else:
        raise ManifestError(f"apply() takes a path, YAML text, a dict or a list of dicts, not "
                            f"{type(manifest).__name__}")
    out: list[dict] = []
    for doc in docs:
        if not isinstance(doc, dict):
            raise ManifestError(f"a manifest document must be a mapping, got {type(doc).__name__}: {doc!r:.60}")
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(load_manifests(doc["items"], root))
            continue
        if not doc.get("kind") or not (doc.get("metadata") or {}).get("name"):
            raise ManifestError(f"manifest without kind or metadata.name: {doc!r:.80}; every object "
                                "needs both")
        out.append(doc)
    return out


def _ports_text(service: dict) -> str:
    parts = []
    for p in (service.get("spec") or {}).get("ports") or []:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            parts.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            parts.append(f"{p.get('port')}/{proto}")
    return ",".join(parts)


def _external_ip(service: dict) -> str:
    spec = service.get("spec") or {}
    ips = list(spec.get("externalIPs") or [])
    for ing in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        ips.append(ing.get("ip") or ing.get("hostname") or "")
    ips = [i for i in ips if i]
    if ips:
        return ",".join(ips)
    if spec.get("type") == "LoadBalancer":
        return "<pending>"
    return "<none>"


def _pod_ready(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return str(cond.get("status")) == "True"
    return False


def _labels(obj: dict) -> dict:
    return (obj.get("metadata") or {}).get("labels") or {}


FRAME_COLUMNS = {
    "nodes": ["name", "role", "ip", "pod_cidr", "runs_as"],
    "pods": ["namespace", "name", "node", "ip", "ready", "host_ports", "app"],
    "services": ["namespace", "name", "type", "cluster_ip", "external_ip", "ports"],
    "endpoints": ["namespace", "service", "port_name", "endpoint", "ready", "node"],
    "ingresses": ["namespace", "name", "class", "host", "path", "service", "port"],
    "deployments": ["namespace", "name", "replicas", "ready", "available", "image"],
}
KIND_ALIASES = {
    "node": "nodes", "no": "nodes", "pod": "pods", "po": "pods", "service": "services", "svc": "services",
    "endpoint": "endpoints", "ep": "endpoints", "endpointslices": "endpoints",
    "endpointslice": "endpoints", "ingress": "ingresses", "ing": "ingresses",
    "deployment": "deployments", "deploy": "deployments",
}


def object_rows(kind: str, objects: list[dict], nodes: list[NodeInfo]) -> list[dict]:
    """API-shaped dicts -> rows of the ``get(kind)`` frame (pure)."""
    rows: list[dict] = []
    if kind == "nodes":
        return [{"name": n.name, "role": n.role, "ip": n.ip, "pod_cidr": n.pod_cidr, "runs_as": n.runs_as}
                for n in nodes]
    for obj in objects:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        ns = meta.get("namespace", "default")
        if kind == "pods":
            host_ports = [f"{p['hostPort']}->{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
                          for c in spec.get("containers") or [] for p in c.get("ports") or []
                          if p.get("hostPort")]
            labels = _labels(obj)
            rows.append({"namespace": ns, "name": meta.get("name"), "node": spec.get("nodeName"),
                         "ip": status.get("podIP"), "ready": _pod_ready(obj),
                         "host_ports": ",".join(host_ports),
                         "app": labels.get("app") or labels.get("app.kubernetes.io/name") or ""})
        elif kind == "services":
            rows.append({"namespace": ns, "name": meta.get("name"), "type": spec.get("type", "ClusterIP"),
                         "cluster_ip": spec.get("clusterIP"), "external_ip": _external_ip(obj),
                         "ports": _ports_text(obj)})
        elif kind == "endpoints":
            service = _labels(obj).get("kubernetes.io/service-name", meta.get("name"))
            for port in obj.get("ports") or [{}]:
                for ep in obj.get("endpoints") or []:
                    ready = (ep.get("conditions") or {}).get("ready")
                    for addr in ep.get("addresses") or []:
                        rows.append({"namespace": ns, "service": service,
                                     "port_name": port.get("name") or "",
                                     "endpoint": f"{addr}:{port.get('port')}",
                                     "ready": ready is None or bool(ready),
                                     "node": ep.get("nodeName")})
        elif kind == "ingresses":
            cls = spec.get("ingressClassName") or (meta.get("annotations") or {}).get(
                "kubernetes.io/ingress.class") or ""
            for rule in spec.get("rules") or [{}]:
                for p in ((rule.get("http") or {}).get("paths")) or []:
                    svc = ((p.get("backend") or {}).get("service")) or {}
                    port = svc.get("port") or {}
                    rows.append({"namespace": ns, "name": meta.get("name"), "class": cls,
                                 "host": rule.get("host") or "*", "path": p.get("path", "/"),
                                 "service": svc.get("name"),
                                 "port": port.get("number") or port.get("name")})
            default = (spec.get("defaultBackend") or {}).get("service")
            if default:
                port = default.get("port") or {}
                rows.append({"namespace": ns, "name": meta.get("name"), "class": cls, "host": "*",
                             "path": "(default backend)", "service": default.get("name"),
                             "port": port.get("number") or port.get("name")})
        elif kind == "deployments":
            images = [c.get("image", "") for c in
                      ((spec.get("template") or {}).get("spec") or {}).get("containers") or []]
            rows.append({"namespace": ns, "name": meta.get("name"), "replicas": spec.get("replicas", 1),
                         "ready": status.get("readyReplicas", 0) or 0,
                         "available": status.get("availableReplicas", 0) or 0,
                         "image": ",".join(images)})
    return rows


API_KIND = {"pods": "Pod", "services": "Service", "endpoints": "EndpointSlice", "ingresses": "Ingress",
            "deployments": "Deployment", "nodes": "Node"}
