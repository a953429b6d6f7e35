"""What a netns lab's ``state.json`` holds, so that any process can take the lab over: the record a
:class:`~k8slab.backends.netns.backend.NetnsBackend` writes (:func:`snapshot`) and reads
(:func:`adopt`). The file itself is written and locked by :mod:`.plumbing` (``write_state``,
``locked``).

Helper processes are recorded by pid and start time (``/proc/PID/stat`` field 22): a process that
did not spawn them knows them only so (:class:`~.plumbing.Proc` without a Popen). The model of the
applied objects is pickled (both sides run the same package; ``/run/k8slab`` is root's only).
"""
from __future__ import annotations

import base64
import dataclasses
import pickle
from typing import TYPE_CHECKING

from .. import cni
from . import plumbing as pl

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend


def snapshot(b: "NetnsBackend", status: str) -> dict:
    """The lab as ``b`` knows it; ``status`` is "creating" until up() has finished, then "up"."""
    pods = []
    for p in b._pods.values():
        a = p.attachment
        pods.append({"name": p.name, "namespace": p.namespace, "netns": p.netns, "node": p.node,
                     "ip": p.ip, "role": p.role, "port": p.port, "proc": p.proc.key if p.proc else None,
                     "attachment": {"container_id": a.container_id, "netns": a.netns, "ifname": a.ifname,
                                    "port_mappings": [dataclasses.asdict(m) for m in a.port_mappings]}})
    return {
        "version": b.STATE_VERSION, "name": b.name, "status": status, "creator": b._creator,
        "config": b._config_path, "config_sha256": b._config_sha, "root": str(b.root),
        "host_ns": b.host_ns, "external_host": b.external_host, "bridge": b.bridge,
        "host_rules_before": b._host_rules_before,
        "nodes": [dataclasses.asdict(n) for n in b._nodes.values()],
        "pods": pods,
        "procs": {k: p.record() for k, p in b._procs.items()},
        "nginx_conf_text": b._nginx_conf_text,
        "model": base64.b64encode(pickle.dumps(b._cluster)).decode() if b._cluster else None,
    }


def adopt(b: "NetnsBackend", st: dict) -> None:
    """Make ``b`` the lab ``st`` describes. Helpers ``b`` spawned itself keep their Popen; one
    another process stopped is reaped here; port-forwards closed elsewhere are marked closed."""
    from .backend import NodeNet, PodNet
    b._cluster = pickle.loads(base64.b64decode(st["model"])) if st.get("model") else None
    b.bridge = st.get("bridge", "")
    b._host_rules_before = st.get("host_rules_before")
    b._config_path, b._config_sha = st.get("config", ""), st.get("config_sha256", "")
    b._creator = st.get("creator") or {}
    b._nodes = {n["name"]: NodeNet(**n) for n in st.get("nodes", [])}
    procs: dict[str, pl.Proc] = {}
    for key, rec in (st.get("procs") or {}).items():
        mine = b._procs.get(key)
        procs[key] = mine if mine is not None and mine.pid == rec["pid"] else pl.Proc.from_record(key, rec)
    for key, proc in b._procs.items():
        if key not in procs and proc.popen is not None:
            proc.popen.poll()
    b._procs = procs
    b._pods = {}
    for p in st.get("pods", []):
        a = p["attachment"]
        att = cni.Attachment(a["container_id"], a["netns"], a.get("ifname", "eth0"),
                             tuple(cni.PortMapping(**m) for m in a.get("port_mappings", [])))
        b._pods[(p["namespace"], p["name"])] = PodNet(
            p["name"], p["namespace"], p["netns"], p["node"], p["ip"], att, p.get("role", "pod"),
            p.get("port"), procs.get(p["proc"]) if p.get("proc") else None)
    for pf in list(b._forwards):
        if pf._proc.key not in procs:
            pf._closed = True
            b._forwards.remove(pf)
    b._nginx_conf_text = st.get("nginx_conf_text", "")
    b._up = st.get("status") == "up"
