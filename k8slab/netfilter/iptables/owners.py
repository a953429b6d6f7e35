"""Who wrote a chain: kube-proxy, kubelet, the CNI portmap plugin, Docker, kind, a CNI, libvirt ...

``owner_of(table, chain)`` decides from the chain name alone (pure, cached). :data:`OWNERS` documents
each owner and the names it claims, in the order they are checked.
"""
from __future__ import annotations

from functools import lru_cache

from .rules import BUILTIN_CHAINS

#: owner -> (what it is, the chain names it claims). Checked top to bottom; the first claim wins.
OWNERS: dict[str, tuple[str, str]] = {
    "builtin": ("the kernel's built-in chains of each table", "PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING"),
    "kubelet": ("kubelet's own chains (KUBE-FIREWALL is also written, identically, by kube-proxy when "
                "localhostNodePorts is on; it is listed as kubelet's)",
                "KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, KUBE-MARK-DROP, KUBE-FIREWALL"),
    "kube-proxy": ("kube-proxy in iptables or IPVS mode: services, endpoints, NodePorts, masquerade",
                   "every other KUBE-*"),
    "CNI portmap": ("the CNI portmap plugin: hostPort DNAT and its masquerade", "CNI-HOSTPORT-*, CNI-DN-*"),
    "CNI": ("other CNI plugins' chains (bridge/ptp ipMasq: CNI-<hash>)", "CNI-*"),
    "Docker": ("Docker: published ports, isolation, and the embedded DNS DNAT inside kind nodes",
               "DOCKER*, incl. DOCKER_OUTPUT and DOCKER_POSTROUTING"),
    "kind": ("kind's kindnet masquerade agent", "KIND-*"),
    "Calico": ("Calico", "cali-*"),
    "flannel": ("flannel", "FLANNEL-*"),
    "libvirt": ("libvirt's virtual networks on the host", "LIBVIRT_*"),
    "other": ("anything else", "-"),
}

_KUBELET = frozenset({"KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT", "KUBE-MARK-DROP", "KUBE-FIREWALL"})
_ALL_BUILTIN = frozenset(c for chains in BUILTIN_CHAINS.values() for c in chains)


@lru_cache(maxsize=4096)
def owner_of(table: str | None, chain: str) -> str:
    """The owner of ``chain`` in ``table`` (one of the keys of :data:`OWNERS`)."""
    if table == "kube-proxy":           # kube-proxy's nftables mode: its own nft table
        return "kube-proxy"
    builtins = BUILTIN_CHAINS.get(table or "", _ALL_BUILTIN)
    if chain in builtins:
        return "builtin"
    if chain in _KUBELET:
        return "kubelet"
    if chain.startswith("KUBE-"):
        return "kube-proxy"
    if chain.startswith(("CNI-HOSTPORT-", "CNI-DN-")):
        return "CNI portmap"
    if chain.startswith("CNI-"):
        return "CNI"
    if chain.startswith("DOCKER"):
        return "Docker"
    if chain.startswith("KIND-"):
        return "kind"
    if chain.startswith("cali-"):
        return "Calico"
    if chain.startswith("FLANNEL-"):
        return "flannel"
    if chain.startswith("LIBVIRT_"):
        return "libvirt"
    return "other"


def owners_of(keys) -> list[str]:
    """:func:`owner_of` of many ``(table, chain)`` pairs. kube-proxy's own chains (most of a big dump,
    each name seen once, so a cache would not help) are told apart without a call."""
    kubelet = _KUBELET
    return ["kube-proxy" if c[:5] == "KUBE-" and c not in kubelet else owner_of(t, c) for t, c in keys]
