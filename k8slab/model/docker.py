"""Docker's rules: inside each kind node (the embedded DNS), and on the learner's host (published ports).

In a node, Docker's embedded DNS listens on 127.0.0.11 at random ports; Docker DNATs port 53 to them.
kind's entrypoint rewrites those rules to the network gateway (172.18.0.1 on Linux, where
host.docker.internal does not resolve) and adds the PREROUTING copy so pods can use it too.

On the host, ``extraPortMappings`` are ``docker run --publish``: nat DOCKER DNATs the host port to the
node's container port for packets that did not come from the bridge, entered from PREROUTING (any
LOCAL destination) and OUTPUT (LOCAL but not 127/8). Connections to 127.0.0.1 therefore skip the DNAT
and are relayed by the userland ``docker-proxy`` (``userland-proxy=true`` is Docker's default). The
filter table follows Docker 27's layout (DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2); Docker 28 renamed
some filter chains, the nat rules the course traces are the same.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .iptables import IptRule, Table, render_tables

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster
    from .objects import Node

DEFAULT_BRIDGE = ("docker0", "172.17.0.0/16")
EMBEDDED_DNS = "127.0.0.11"


def _port(*key: object, lo: int = 32768, hi: int = 60999) -> int:
    digest = hashlib.sha256("/".join(map(str, key)).encode()).digest()
    return lo + int.from_bytes(digest[:4], "big") % (hi - lo + 1)


def bridge_name(cluster: "Cluster") -> str:
    return cluster.bridge_name()


def api_server_host_port(cluster: "Cluster") -> int:
    """The random 127.0.0.1 port kind publishes the API server on (seeded)."""
    return _port(cluster.seed, cluster.name, "apiserver")


def dns_ports(cluster: "Cluster", node: "Node") -> tuple[int, int]:
    return _port(cluster.seed, node.name, "dns-tcp"), _port(cluster.seed, node.name, "dns-udp")


def docker_dns_jumps(cluster: "Cluster") -> dict[str, list[IptRule]]:
    gw = cluster.gateway
    return {"PREROUTING": [IptRule("PREROUTING", ("-d", f"{gw}/32", "-j", "DOCKER_OUTPUT"))],
            "OUTPUT": [IptRule("OUTPUT", ("-d", f"{gw}/32", "-j", "DOCKER_OUTPUT"))],
            "POSTROUTING": [IptRule("POSTROUTING", ("-d", f"{gw}/32", "-j", "DOCKER_POSTROUTING"))]}


def docker_dns_tables(cluster: "Cluster", node: "Node | str", *, jumps: bool = True) -> list[Table]:
    n = cluster.node(node) if isinstance(node, str) else node
    gw = cluster.gateway
    tcp, udp = dns_ports(cluster, n)
    t = Table("nat")
    if jumps:
        t.declare("PREROUTING", "OUTPUT", "POSTROUTING")
        for rules in docker_dns_jumps(cluster).values():
            t.rules.extend(rules)
    t.declare("DOCKER_OUTPUT", "DOCKER_POSTROUTING")
    t.add("DOCKER_OUTPUT", "-d", f"{gw}/32", "-p", "tcp", "-m", "tcp", "--dport", "53", "-j", "DNAT",
          "--to-destination", f"{EMBEDDED_DNS}:{tcp}")
    t.add("DOCKER_OUTPUT", "-d", f"{gw}/32", "-p", "udp", "-m", "udp", "--dport", "53", "-j", "DNAT",
          "--to-destination", f"{EMBEDDED_DNS}:{udp}")
    t.add("DOCKER_POSTROUTING", "-s", f"{EMBEDDED_DNS}/32", "-p", "tcp", "-m", "tcp", "--sport", str(tcp),
          "-j", "SNAT", "--to-source", f"{gw}:53")
    t.add("DOCKER_POSTROUTING", "-s", f"{EMBEDDED_DNS}/32", "-p", "udp", "-m", "udp", "--sport", str(udp),
          "-j", "SNAT", "--to-source", f"{gw}:53")
    return [t]


def published_ports(cluster: "Cluster") -> list[tuple["Node", str, int, int, str]]:
    """(node, listen address, host port, container port, protocol) for every published port,
    including kind's own API server mapping (127.0.0.1:<random> -> control-plane:6443)."""
    out = [(cluster.control_plane, "127.0.0.1", api_server_host_port(cluster), 6443, "tcp")]
    cfg = cluster.config
    if cfg is not None:
        ordered = [k for k in cfg.nodes if k.role == "control-plane"] + [k for k in cfg.nodes if k.role == "worker"]
        for kn, node in zip(ordered, cluster.nodes):
            for m in kn.extra_port_mappings:
                out.append((node, m.listen_address, m.host_port or m.container_port, m.container_port,
                            m.protocol.lower()))
    return out


def host_docker_tables(cluster: "Cluster") -> list[Table]:
    br = cluster.bridge_name()
    subnet = cluster.docker_network
    d0, d0net = DEFAULT_BRIDGE
    nat = Table("nat")
    nat.declare("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "DOCKER")
    nat.add("PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER")
    nat.add("OUTPUT", "!", "-d", "127.0.0.0/8", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER")
    nat.add("POSTROUTING", "-s", d0net, "!", "-o", d0, "-j", "MASQUERADE")
    nat.add("POSTROUTING", "-s", subnet, "!", "-o", br, "-j", "MASQUERADE")
    ports = published_ports(cluster)
    for node, _addr, _hp, cport, proto in ports:
        nat.add("POSTROUTING", "-s", f"{node.ip}/32", "-d", f"{node.ip}/32", "-p", proto, "-m", proto,
                "--dport", str(cport), "-j", "MASQUERADE")
    nat.add("DOCKER", "-i", d0, "-j", "RETURN")
    nat.add("DOCKER", "-i", br, "-j", "RETURN")
    for node, addr, hp, cport, proto in ports:
        dest = () if addr in ("0.0.0.0", "", "::") else ("-d", f"{addr}/32")
        nat.add("DOCKER", *dest, "!", "-i", br, "-p", proto, "-m", proto, "--dport", str(hp), "-j", "DNAT",
                "--to-destination", f"{node.ip}:{cport}")

    flt = Table("filter")
    flt.policies["FORWARD"] = "DROP"
    flt.declare("INPUT", "FORWARD", "OUTPUT", "DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2",
                "DOCKER-USER")
    flt.add("FORWARD", "-j", "DOCKER-USER")
    flt.add("FORWARD", "-j", "DOCKER-ISOLATION-STAGE-1")
    for bridge in (br, d0):
        flt.add("FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
        flt.add("FORWARD", "-o", bridge, "-j", "DOCKER")
        flt.add("FORWARD", "-i", bridge, "!", "-o", bridge, "-j", "ACCEPT")
        flt.add("FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT")
    for node, _addr, _hp, cport, proto in ports:
        flt.add("DOCKER", "-d", f"{node.ip}/32", "!", "-i", br, "-o", br, "-p", proto, "-m", proto,
                "--dport", str(cport), "-j", "ACCEPT")
    for bridge in (br, d0):
        flt.add("DOCKER-ISOLATION-STAGE-1", "-i", bridge, "!", "-o", bridge, "-j", "DOCKER-ISOLATION-STAGE-2")
    flt.add("DOCKER-ISOLATION-STAGE-1", "-j", "RETURN")
    for bridge in (br, d0):
        flt.add("DOCKER-ISOLATION-STAGE-2", "-o", bridge, "-j", "DROP")
    flt.add("DOCKER-ISOLATION-STAGE-2", "-j", "RETURN")
    flt.add("DOCKER-USER", "-j", "RETURN")
    return [flt, nat]


def render_host_docker(cluster: "Cluster", form: str = "save") -> str:
    """The host's Docker rules for the kind network and its published ports (nat and filter)."""
    return render_tables(host_docker_tables(cluster), form=form)
