"""The CNI ``portmap`` plugin's hostPort rules on a kind node (kindnet chains ptp -> portmap).

From containernetworking/plugins ``plugins/meta/portmap/portmap_iptables.go``: a top-level
CNI-HOSTPORT-DNAT chain entered from PREROUTING and OUTPUT for LOCAL destinations, one CNI-DN-<hash>
chain per container (hairpin and localhost mark rules first, then the DNAT), the CNI-HOSTPORT-SETMARK
chain (mark 0x2000) and CNI-HOSTPORT-MASQ (prepended to POSTROUTING) masquerading marked packets.
Rules are the plugin's argv; ``iptables-save`` adds the implicit ``-m tcp``.

The hairpin rule's source is the *container network*, not the pod's address: ``fillDnatRules`` in
``plugins/meta/portmap/portmap_iptables.go`` writes ``masqCIDR := containerNet.String()``, and
``containerNet`` is the pod's address from the previous plugin's result with that result's mask
(``parseConfig`` in ``plugins/meta/portmap/main.go`` takes ``ip.Address``). kindnet chains ptp with
host-local over the node's pod CIDR, so the result is e.g. ``10.244.0.5/24``: the plugin passes
``-s 10.244.0.5/24`` and the kernel keeps (and ``iptables-save`` prints) ``-s 10.244.0.0/24``, which
marks every pod of the node that connects to a hostPort, not only the pod itself. The netns backend's
dump from the real plugin (tests/data/netns) shows exactly that.
"""
from __future__ import annotations

import hashlib
import ipaddress
from typing import TYPE_CHECKING

from ..netfilter import names
from .iptables import IptRule, Table, render_tables

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster
    from .objects import Node, Pod

NETWORK = "kindnet"
TOP_DNAT = "CNI-HOSTPORT-DNAT"
SETMARK = "CNI-HOSTPORT-SETMARK"
MASQ = "CNI-HOSTPORT-MASQ"
MARK_BIT = 13


def container_id(pod: "Pod", seed: int = 0) -> str:
    """The pod sandbox's 64-hex ID (what CNI_CONTAINERID carries); deterministic per pod."""
    return pod.container_id or hashlib.sha256(f"{seed}/{pod.namespace}/{pod.name}/sandbox".encode()).hexdigest()


def _mark() -> str:
    v = 1 << MARK_BIT
    return f"{v:#x}/{v:#x}"


def _split(ports: list[int], size: int = 15) -> list[str]:
    return [",".join(str(p) for p in ports[i:i + size]) for i in range(0, len(ports), size)]


def container_net(pod: "Pod", node: "Node") -> str:
    """What portmap writes as the hairpin rule's source: ``containerNet.String()``, the pod's address
    with the mask of host-local's range (the node's pod CIDR on kind), e.g. ``10.244.0.5/24``."""
    if not node.pod_cidr:
        return f"{pod.ip}/32"
    return f"{pod.ip}/{ipaddress.ip_network(node.pod_cidr, strict=False).prefixlen}"


def portmap_jumps() -> dict[str, list[IptRule]]:
    """The plugin's jumps into built-in chains: (chain -> rules), and whether it prepends them."""
    return {
        "PREROUTING": [IptRule("PREROUTING", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT))],
        "OUTPUT": [IptRule("OUTPUT", ("-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT))],
        "POSTROUTING": [IptRule("POSTROUTING", ("-m", "comment", "--comment", "CNI portfwd requiring masquerade",
                                                "-j", MASQ))],
    }


def portmap_tables(cluster: "Cluster", node: "Node | str", *, jumps: bool = True) -> list[Table]:
    """The nat table portmap leaves on ``node`` for its hostPort pods (empty list: no hostPort pod)."""
    n = cluster.node(node) if isinstance(node, str) else node
    pods = cluster.host_port_pods(n)
    if not pods:
        return []
    t = Table("nat")
    if jumps:
        t.declare("PREROUTING", "OUTPUT", "POSTROUTING")
        for rules in portmap_jumps().values():
            t.rules.extend(rules)
    t.declare(SETMARK, MASQ, TOP_DNAT)
    t.add(SETMARK, "-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", _mark())
    t.add(MASQ, "-m", "mark", "--mark", _mark(), "-j", "MASQUERADE")
    for pod in pods:
        cid = container_id(pod, cluster.seed)
        chain = names.portmap_chain(NETWORK, cid)
        t.declare(chain)
        entries = pod.host_ports()
        by_proto: dict[str, list[int]] = {}
        for e in entries:
            by_proto.setdefault(e.protocol.lower(), []).append(e.host_port)
        comment = f'dnat name: "{NETWORK}" id: "{cid}"'
        for proto in sorted(by_proto):
            for spec in _split(by_proto[proto]):
                t.add(TOP_DNAT, "-m", "comment", "--comment", comment, "-m", "multiport", "-p", proto,
                      "--destination-ports", spec, "-j", chain)
        masq_cidr = container_net(pod, n)
        for e in entries:
            base = ("-p", e.protocol.lower(), "--dport", str(e.host_port)) + (("-d", e.host_ip) if e.host_ip else ())
            t.add(chain, *base, "-s", masq_cidr, "-j", SETMARK)        # hairpin: the container network
            t.add(chain, *base, "-s", "127.0.0.1", "-j", SETMARK)      # localhost
            t.add(chain, *base, "-j", "DNAT", "--to-destination", f"{pod.ip}:{e.container_port}")
    return [t]


def render_portmap(cluster: "Cluster", node: "Node | str", form: str = "restore") -> str:
    """portmap's chains on ``node`` as text (restore: the plugin's argv; save: as iptables-save shows)."""
    return render_tables(portmap_tables(cluster, node), form=form)
