"""The ingress controller on the netns backend: a real nginx in the controller pod's namespace.

Owns nginx's configuration and process: :func:`sync` renders the configuration from the model's
Ingress objects (:func:`k8slab.model.nginx_conf`) into the lab's state dir (``nginx/nginx.conf``,
nginx's pid file and logs beside it), has ``nginx -t`` check it, then starts nginx (the recorded
helper process ``nginx``) or reloads it gracefully (``nginx -s reload``, returning once the old
workers are gone); :func:`stop` stops it when the controller pod goes; :func:`config` is what
``lab.ingress_config()`` shows. The configuration last loaded is kept in ``state.json``
(``nginx_conf_text``), so an unchanged one is not reloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ... import runner
from . import plumbing as pl

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend, PodNet


def controller(b: "NetnsBackend") -> "PodNet | None":
    return next((p for p in b._pods.values() if p.role == "controller"), None)


def paths(b: "NetnsBackend") -> dict[str, str]:
    d = b.state / "nginx"
    return {"prefix_dir": str(d), "pid_path": str(d / "nginx.pid"),
            "error_log": str(d / "error.log"), "access_log": str(d / "access.log")}


def sync(b: "NetnsBackend") -> None:
    pod = controller(b)
    if pod is None:
        return
    from ... import model as m
    nginx_paths = paths(b)
    conf = m.nginx_conf(b._cluster, listen_port=pod.port or 80, **nginx_paths)
    conf_path = b.state / "nginx" / "nginx.conf"
    (b.state / "nginx" / "logs").mkdir(parents=True, exist_ok=True)
    if pod.proc is not None and pod.proc.alive and conf == b._nginx_conf_text:
        return
    conf_path.write_text(conf)
    base = ["nginx", "-c", str(conf_path), "-p", nginx_paths["prefix_dir"] + "/"]
    pl.exec_in(pod.netns, [*base, "-t"], timeout=20,
               hint=f"nginx rejected the rendered configuration in {conf_path}.")
    if pod.proc is None or not pod.proc.alive:
        daemon = [] if "daemon off" in conf else ["-g", "daemon off;"]
        key = "nginx"
        pod.proc = pl.start(b.name, key, ["ip", "netns", "exec", pod.netns, *base, *daemon],
                            log=b.state / "logs" / "nginx.log", info=f"nginx in {pod.netns}")
        b._procs[key] = pod.proc
        b.progress.step(f"ingress controller: nginx in {pod.netns} on port {pod.port} "
                        "(reached through hostPort 80)")
    else:
        before = workers(pod.proc.pid)
        runner.run([*base, "-s", "reload"], timeout=20)
        # A graceful reload: new workers (forked with the new configuration) take over, and
        # the old ones stop accepting, finish their connections and exit. apply() returns once
        # the old ones are gone, so the next request is routed by the new configuration.
        def reloaded() -> bool:
            now = workers(pod.proc.pid)
            return bool(now - before) and not (now & before)
        if not pl.wait_until(reloaded, 10.0):
            b.progress.step("ingress controller: old nginx workers still finishing connections")
        b.progress.step("ingress controller: nginx reloaded gracefully (nginx -s reload)")
    b._nginx_conf_text = conf


def stop(b: "NetnsBackend") -> None:
    proc = b._procs.pop("nginx", None)
    if proc is not None:
        pl.stop(b.name, proc)
    b._nginx_conf_text = ""


def workers(master: int) -> set[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
        return {int(x) for x in text.split()}
    except OSError:
        return set()


def config(b: "NetnsBackend") -> str:
    f = b.state / "nginx" / "nginx.conf"
    return f.read_text() if f.exists() else ""
