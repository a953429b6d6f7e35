"""kube-proxy on the netns backend: its rule resync, and kube-proxy taken out of the data path.

kube-proxy is no process here: :func:`sync_rules` plays its part (and kindnet's and the kubelet's
chains): after every change it loads each node's rules rendered by :mod:`k8slab.model` with
``iptables-restore --noflush`` the way kube-proxy does, leaving portmap's ``CNI-`` chains alone (the
text is kept in the lab's state dir, ``last-restore-NODE.rules``); in nftables mode it also has
:mod:`.nft` load kube-proxy's nft table. Stopped (:func:`stop`), the resync leaves every KUBE-*
chain alone (nothing reprograms them: endpoint changes are not programmed, as on a node whose
kube-proxy is gone); flushed (:func:`flush`), the node's rules are what ``kube-proxy --cleanup``
leaves, removed with real iptables commands (:mod:`k8slab.backends.kubeproxy`); :func:`start` puts
them back. The state (:func:`state`) is a file in the lab's state dir, ``kube-proxy``, so every
process sharing the lab sees it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LabStateError
from . import nft
from . import plumbing as pl
from . import text as tx

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend


def sync_rules(b: "NetnsBackend") -> None:
    """kube-proxy's resync (and kindnet's/kubelet's chains) in every node, portmap's chains untouched."""
    from ... import model as m
    for node in b._nodes.values():
        rendered = m.render_node_restore(b._cluster, node.name)
        live = None if not node.rules_loaded else tx.chains_by_table(
            pl.exec_in(node.netns, ["iptables-save"], timeout=20).stdout)
        text = tx.node_restore(rendered, live_chains=live, first_load=not node.rules_loaded,
                               skip_prefixes=skip_prefixes(b))
        (b.state / f"last-restore-{node.name}.rules").write_text(text)
        pl.iptables_restore(node.netns, text)
        node.rules_loaded = True
        nft.sync(b, node)              # kube-proxy's nftables mode: its nft table (netns/nft.py)


def state(b: "NetnsBackend") -> str:
    f = b.state / "kube-proxy"
    try:
        return f.read_text().strip() or "running"
    except OSError:
        return "running"


def skip_prefixes(b: "NetnsBackend") -> tuple[str, ...]:
    return (tx.CNI_PREFIX,) if b.kube_proxy_state() == "running" else (tx.CNI_PREFIX, "KUBE-")


def stop(b: "NetnsBackend", timeout: float = 120.0) -> None:
    b._require_up()
    if b.kube_proxy_state() == "running":
        (b.state / "kube-proxy").write_text("stopped\n")
    b.progress.step("kube-proxy stopped (its pod gone from every node); its rules stay in the kernel "
                    "and nothing updates them")


def flush(b: "NetnsBackend") -> None:
    from ..kubeproxy import STOPPED_WHY, cleanup_plan
    b._require_up()
    if b.kube_proxy_state() == "running":
        raise LabStateError(STOPPED_WHY)
    for node in b._nodes.values():
        if getattr(b, "proxy_mode", None) == "nftables":      # nftables' CleanupLeftovers
            from ..kubeproxy import NFT_CLEANUP
            if pl.exec_in(node.netns, ["nft", "list", "table", "ip", "kube-proxy"], timeout=20, check=False).ok:
                pl.exec_in(node.netns, list(NFT_CLEANUP), timeout=20)
        plan = cleanup_plan(pl.exec_in(node.netns, ["iptables-save"], timeout=20).stdout)
        for argv in plan.delete_argvs():          # CleanupLeftovers: ipt.DeleteRule per jump
            pl.exec_in(node.netns, argv, timeout=20)
        for table in ("nat", "filter"):           # then flush + delete its chains, noflush restore
            pl.iptables_restore(node.netns, plan.restore.get(table, ""))
        b.progress.step(f"{node.name}: kube-proxy's rules removed ({len(plan.deletes)} jumps, "
                        f"{sum(t.count(chr(10) + '-X ') for t in plan.restore.values())} chains) "
                        "as kube-proxy --cleanup does")
    (b.state / "kube-proxy").write_text("flushed\n")


def start(b: "NetnsBackend", timeout: float = 180.0) -> None:
    from ..kubeproxy import JUMP_CHAINS, ensure_jump_argvs
    b._require_up()
    (b.state / "kube-proxy").unlink(missing_ok=True)
    b._sync_rules()                            # its chains, from the model as it is now
    nft_mode = getattr(b, "proxy_mode", None) == "nftables"     # no iptables chains then
    for node in ([] if nft_mode else b._nodes.values()):        # EnsureRule(Prepend) per jump
        for table, chain, builtin, _c, _e in JUMP_CHAINS:
            check, insert = ensure_jump_argvs(table, chain, builtin)
            if not pl.exec_in(node.netns, check, timeout=20, check=False).ok:
                pl.exec_in(node.netns, insert, timeout=20)
    b.progress.step("kube-proxy running again: its pod is back and its rules re-synced")
