"""Which backend and which kube-proxy mode a new Lab gets.

Owns the backend names and their classes (``BACKENDS``, ``CLASS_NAMES``), what to do when one
cannot run (``FIXES``), the lazy import of a backend (:func:`load_backend_class`), ``auto``'s choice
(:func:`choose_backend`: K8SLAB_BACKEND, then kind where Docker and kind work, then sim), and
kube-proxy's mode with the cluster config each mode uses (:func:`choose_proxy_mode`,
``CLUSTER_CONFIGS``). :class:`k8slab.lab.Lab` calls these; ``k8slab.lab`` re-exports them.
"""
from __future__ import annotations

import importlib
import os
from typing import Callable

from .backends.base import Backend
from .errors import BackendUnavailable, K8sLabError

BACKENDS = ("kind", "netns", "sim")
CLASS_NAMES = {"kind": "KindBackend", "netns": "NetnsBackend", "sim": "SimBackend"}
FIXES = {
    "kind": "install Docker and kind (https://kind.sigs.k8s.io/docs/user/quick-start/), start the "
            "Docker daemon, or use Lab(backend='sim')",
    "netns": "run as root on Linux with iptables, conntrack, iproute2, nginx and the CNI plugins "
             "installed (apt-get install -y iptables conntrack nginx-light containernetworking-plugins "
             "iproute2), or use Lab(backend='sim')",
    "sim": "the sim backend needs nothing but this package; reinstall k8slab (pip install -e .)",
}
CLUSTER_CONFIG = "kind/cluster.yaml"
# kube-proxy's mode -> the cluster config Lab.up() uses (Lab(proxy_mode=...) or K8SLAB_PROXY_MODE)
CLUSTER_CONFIGS = {"iptables": CLUSTER_CONFIG, "nftables": "kind/cluster-nftables.yaml"}


def choose_proxy_mode(requested: str | None = None, env: dict | None = None) -> str:
    """kube-proxy's mode for a new Lab: ``requested``, else K8SLAB_PROXY_MODE, else iptables."""
    env = os.environ if env is None else env
    mode = (requested or env.get("K8SLAB_PROXY_MODE") or "iptables").strip().lower()
    if mode not in CLUSTER_CONFIGS:
        raise ValueError(f"proxy_mode {mode!r}: choose iptables or nftables (Lab(proxy_mode=...) or "
                         "K8SLAB_PROXY_MODE)")
    return mode


def load_backend_class(kind: str) -> type[Backend]:
    """Import ``k8slab.backends.<kind>`` lazily and return its backend class."""
    if kind not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {kind!r}: choose one of auto, {', '.join(BACKENDS)}")
    try:
        module = importlib.import_module(f"k8slab.backends.{kind}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("k8slab.backends"):
            raise BackendUnavailable(
                f"the {kind} backend is not part of this installation (k8slab/backends/{kind}.py is "
                f"missing). Fix: {FIXES[kind]}") from exc
        raise BackendUnavailable(f"the {kind} backend needs the Python module {exc.name!r}: "
                                 f"pip install -e . in the project, or {FIXES[kind]}") from exc
    cls = getattr(module, CLASS_NAMES[kind], None)
    if cls is None:
        raise BackendUnavailable(f"k8slab.backends.{kind} has no {CLASS_NAMES[kind]} class; "
                                 f"reinstall k8slab")
    return cls


def _available(cls) -> tuple[bool, str]:
    try:
        ok, why = cls.available()
    except K8sLabError as exc:
        return False, str(exc)
    except Exception as exc:  # a broken probe must not break auto-selection
        return False, f"{type(exc).__name__}: {exc}"
    return bool(ok), str(why)


def choose_backend(requested: str = "auto", env: dict | None = None,
                   load_class: Callable[[str], type[Backend]] | None = None) -> tuple[str, str]:
    """(backend, why) for ``requested``. ``auto`` honours K8SLAB_BACKEND, then prefers kind, then sim.
    ``load_class`` imports kind's class for the probe (default :func:`load_backend_class`;
    ``k8slab.lab.choose_backend`` passes its own module's, which tests replace)."""
    env = os.environ if env is None else env
    load_class = load_backend_class if load_class is None else load_class
    model = {"sim": " (a model's predictions, not a live cluster)"}
    if requested != "auto":
        return requested, f"{requested}: asked for explicitly{model.get(requested, '')}"
    forced = (env.get("K8SLAB_BACKEND") or "").strip()
    if forced and forced != "auto":
        return forced, f"{forced}: set by K8SLAB_BACKEND{model.get(forced, '')}"
    try:
        cls = load_class("kind")
        ok, why = _available(cls)
    except BackendUnavailable as exc:
        ok, why = False, str(exc)
    if ok:
        return "kind", f"kind: Docker and kind work here ({why})"
    return "sim", (f"sim: kind is not usable here ({why}); the sim backend predicts what a kind "
                   "cluster would do, it does not run one")
