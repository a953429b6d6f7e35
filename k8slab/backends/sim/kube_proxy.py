"""kube-proxy out of the sim's data path: stopped, flushed, started again.

The model keeps what a kind node would: stopped, kube-proxy's chains stay as they were when it
stopped (nothing reprograms them; everyone else's chains still follow the model); flushed, they
are what CleanupLeftovers leaves (k8slab.backends.kubeproxy). Predictions follow these rules.
Owns the state (:func:`_kube_proxy`, :func:`kube_proxy_state`), the rules as kube-proxy left them
(:func:`_kube_proxy_view` for iptables text, :func:`_kube_proxy_nft` for its nft table) and the
verbs :func:`stop_kube_proxy`, :func:`flush_kube_proxy_rules`, :func:`start_kube_proxy`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LabStateError

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SimBackend


def _kube_proxy(b: "SimBackend") -> dict:
    st = getattr(b, "_kube_proxy_st", None)
    if st is None or st["cluster"] is not b._cluster:      # a new model: kube-proxy runs
        st = b._kube_proxy_st = {"cluster": b._cluster, "state": "running", "frozen": {}}
    return st


def kube_proxy_state(b: "SimBackend") -> str:
    return _kube_proxy(b)["state"] if b._cluster is not None else "running"


def _kube_proxy_view(b: "SimBackend", where: str, text: str) -> str:
    from ..kubeproxy import apply_cleanup, freeze
    st = _kube_proxy(b)
    if st["state"] == "running" or where not in st["frozen"]:
        return text
    text = freeze(text, st["frozen"][where])
    return apply_cleanup(text) if st["state"] == "flushed" else text


def _kube_proxy_nft(b: "SimBackend", where: str, text: str) -> str:
    """kube-proxy's nft table in nftables mode: as rendered, as it was when it stopped, or none
    once flushed (its CleanupLeftovers deletes the table)."""
    st = _kube_proxy(b)
    if st["state"] == "running":
        return text
    return "" if st["state"] == "flushed" else st.get("frozen_nft", {}).get(where, text)


def stop_kube_proxy(b: "SimBackend", timeout: float = 120.0) -> None:
    from ...model import render_node_dump
    c = b._need()
    st = _kube_proxy(b)
    if st["state"] != "running":
        b.progress.step("kube-proxy is already stopped (sim)")
        return
    st["frozen"] = {n.name: render_node_dump(c, n, form="save") for n in c.nodes}
    if b.proxy_mode == "nftables":
        from ...netfilter.nft.node import render_node_kube_proxy
        st["frozen_nft"] = {n.name: render_node_kube_proxy(c, n, form="ruleset") for n in c.nodes}
    st["state"] = "stopped"
    b._changed()
    b.progress.step("kube-proxy's DaemonSet now selects no node: its pod is gone, its rules stay "
                       "(sim: predicted)")


def flush_kube_proxy_rules(b: "SimBackend") -> None:
    b._need()
    st = _kube_proxy(b)
    if st["state"] == "running":
        from ..kubeproxy import STOPPED_WHY
        raise LabStateError(STOPPED_WHY)
    st["state"] = "flushed"
    b._changed()
    b.progress.step("kube-proxy's rules removed from every node as kube-proxy --cleanup does "
                       "(sim: predicted)")


def start_kube_proxy(b: "SimBackend", timeout: float = 180.0) -> None:
    b._need()
    st = _kube_proxy(b)
    if st["state"] != "running":
        st["state"], st["frozen"] = "running", {}
        b._changed()
    b.progress.step("kube-proxy back on every node; its rules re-synced (sim: predicted)")
