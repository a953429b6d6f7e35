"""kube-proxy's nftables mode on the netns backend.

A kind node in nftables mode (kind/cluster-nftables.yaml) has kube-proxy's rules in the nft table
``ip kube-proxy`` and everyone else's (kindnet, portmap, Docker's DNS, kubelet) in iptables-nft's
tables. The backend's resync (``NetnsBackend._sync_rules``) keeps restoring the iptables part (the
model writes no kube-proxy iptables rules in this mode) and calls :func:`sync` here for kube-proxy's
part: the rendered ``nft -f`` transaction (what kube-proxy sends, :mod:`k8slab.model.kubeproxy_nft`)
loaded into the node's namespace as one atomic transaction that first removes the table, so a
resync leaves exactly the rendered state (kube-proxy's own full sync does the same work with
``flush``/``delete`` of what is stale, in one transaction too).

The transaction as loaded is kept in the lab's state dir (``last-nft-NODE.nft``) to inspect.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ... import runner
from ...errors import BackendUnavailable
from . import plumbing as pl

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend

NFT_FIX = "apt-get install -y nftables"
TABLE = "ip kube-proxy"


def proxy_mode(backend: "NetnsBackend") -> str | None:
    c = getattr(backend, "_cluster", None)
    return c.config.kube_proxy_mode if c is not None else None


def transaction(backend: "NetnsBackend", node: str) -> str:
    """The ``nft -f`` text that makes the node's kube-proxy table exactly the rendered one."""
    from ...netfilter.nft.listing import loadable
    from ...netfilter.nft.node import render_node_kube_proxy
    rendered = render_node_kube_proxy(backend._cluster, node, form="transaction")
    # "add table" first so that "delete table" never fails on the first load; one transaction
    return f"add table {TABLE}\ndelete table {TABLE}\n" + loadable(rendered)


def sync(backend: "NetnsBackend", node) -> None:
    """kube-proxy's nftables sync on one node (``node`` a NodeNet). A no-op in iptables mode and
    while kube-proxy is stopped (its table stays as it was, as a real node's would)."""
    if proxy_mode(backend) != "nftables":
        return
    state = getattr(backend, "kube_proxy_state", lambda: "running")()
    if state != "running":
        return
    if runner.which("nft") is None and runner.which("nft", path="/usr/sbin:/sbin") is None:
        raise BackendUnavailable(f"kube-proxy's nftables mode needs the nft program: {NFT_FIX}")
    text = transaction(backend, node.name)
    (backend.state / f"last-nft-{node.name}.nft").write_text(text)
    pl.exec_in(node.netns, ["nft", "-f", "-"], input=text, timeout=60,
               hint=f"The transaction is kept in the lab's state dir (last-nft-{node.name}.nft) to inspect.")


def list_ruleset(backend: "NetnsBackend", netns: str) -> str:
    """``nft list ruleset`` in the node's namespace (iptables-nft's tables and kube-proxy's)."""
    return pl.exec_in(netns, ["nft", "list", "ruleset"], timeout=30).stdout
