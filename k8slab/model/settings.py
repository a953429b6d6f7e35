"""kube-proxy's configuration as the iptables proxier sees it (what changes the rules it writes)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import ManifestError

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster
    from .objects import Node

LOCALHOST_NPS_COUNTER = "localhost_nps_accepted_pkts"
CT_INVALID_COUNTER = "ct_state_invalid_dropped_pkts"


def read_settings_section(spec: str, default_section: str | None = None) -> dict:
    """The mapping of ``FILE#SECTION`` (a settings file of kube-proxy's tests). Without a section, a
    file of several sections gives ``default_section`` where it has one, else its first."""
    path, _, section = str(spec).partition("#")
    p = Path(path)
    if not p.exists():
        raise ManifestError(f"{p}: no such settings file (give FILE or FILE#SECTION)")
    data = yaml.safe_load(p.read_text()) or {}
    if section:
        if section not in data:
            raise ManifestError(f"{p}: no section {section!r}; sections: {', '.join(map(str, data))}")
        return data[section]
    if "nodeName" not in data and data:
        return (data.get(default_section) if default_section else None) or next(iter(data.values()))
    return data


@dataclass(frozen=True)
class ProxierSettings:
    """The proxier fields that shape the rules. Defaults are kube-proxy's own defaults.

    ``masquerade_mark`` is the literal string kube-proxy writes: real kube-proxy formats
    ``1<<14`` with ``%#08x`` and writes ``0x004000``; its unit tests set ``0x4000``.
    """
    node_name: str = "test-node"
    node_ip: str = "192.168.0.2"
    cluster_cidr: str | None = "10.0.0.0/8"     # the ClusterCIDR local-traffic detector; None: no detector
    masquerade_mark: str = "0x004000"
    masquerade_all: bool = False
    localhost_node_ports: bool = True
    node_port_addresses: tuple[str, ...] = ()   # () = MatchAll -> "-m addrtype --dst-type LOCAL"
    conntrack_tcp_liberal: bool = False
    nfacct_counters: frozenset[str] = frozenset()
    random_fully: bool = False
    large_cluster_mode: bool = False
    ipv6: bool = False
    interface_addresses: tuple[str, ...] = ("127.0.0.1/8",)   # used when node_port_addresses is set

    def replace(self, **changes: Any) -> "ProxierSettings":
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, d: dict, where: str = "settings") -> "ProxierSettings":
        """Read the shape of the golden settings files (nodeName, nodeIP, localDetector, ...)."""
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: expected a mapping of proxier settings, got {d!r}")
        det = d.get("localDetector") or {}
        cidr = det.get("clusterCIDR") if det.get("mode", "ClusterCIDR") == "ClusterCIDR" else None
        nfacct = d.get("nfacctCounters") or {}
        ifaces = d.get("interfaceAddresses") or {}
        addrs = tuple(a for lst in ifaces.values() for a in (lst or []) if ":" not in a)
        npa = d.get("nodePortAddresses") or []
        if not isinstance(npa, list):
            raise ManifestError(f"{where}: nodePortAddresses: expected a list of CIDRs, got {npa!r}")
        return cls(
            node_name=str(d.get("nodeName") or "test-node"),
            node_ip=str(d.get("nodeIP") or "192.168.0.2"),
            cluster_cidr=cidr,
            masquerade_mark=str(d.get("masqueradeMark") or "0x004000"),
            masquerade_all=bool(d.get("masqueradeAll", False)),
            localhost_node_ports=bool(d.get("localhostNodePorts", True)),
            node_port_addresses=tuple(str(x) for x in npa),
            conntrack_tcp_liberal=bool(d.get("conntrackTCPLiberal", False)),
            nfacct_counters=frozenset(k for k, v in nfacct.items() if v),
            random_fully=bool(d.get("iptablesHasRandomFully", False)),
            large_cluster_mode=bool(d.get("largeClusterMode", False)),
            ipv6=str(d.get("ipFamily", "IPv4")) == "IPv6",
            interface_addresses=addrs or ("127.0.0.1/8",),
        )

    @classmethod
    def from_file(cls, spec: str | Path) -> "ProxierSettings":
        """``"overall-settings.yaml#iptables"``: a settings file, and the section to read."""
        text = str(spec)
        data = read_settings_section(text)
        return cls.from_mapping(data, where=text)

    @classmethod
    def for_kind_node(cls, cluster: "Cluster", node: "Node | str") -> "ProxierSettings":
        """kube-proxy as kind runs it on ``node``: iptables mode, ClusterCIDR detector on the pod
        subnet, mark bit 14 written ``0x004000``, localhost NodePorts on, ``--random-fully``
        available (iptables >= 1.6.2 in the node image). nfacct counters are left off here: kube-proxy
        only uses them when it could create them in the kernel, which depends on the host."""
        n = cluster.node(node) if isinstance(node, str) else node
        return cls(node_name=n.name, node_ip=n.ip, cluster_cidr=cluster.pod_subnet, masquerade_mark="0x004000",
                   localhost_node_ports=True, random_fully=True,
                   interface_addresses=("127.0.0.1/8", f"{n.ip}/16"))

    @property
    def mark_int(self) -> int:
        return int(self.masquerade_mark, 16)

    def node_port_ips(self) -> list[str]:
        """Node IPs the NodePort jump is limited to (``--nodeport-addresses``), IPv4 only."""
        out = []
        nets = [ipaddress.ip_network(c.strip(), strict=False) for c in self.node_port_addresses]
        for a in self.interface_addresses:
            ip = ipaddress.ip_interface(a).ip
            if any(ip in n for n in nets if n.version == ip.version) and str(ip) not in out:
                out.append(str(ip))
        return out
