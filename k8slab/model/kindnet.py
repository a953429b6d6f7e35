"""kindnetd's masquerade agent: the KIND-MASQ-AGENT chain (real kind dump 07).

Pod traffic to anything outside the pod subnet is masqueraded to the node IP; traffic between pods
(10.244.0.0/16) keeps its source. The jump is appended to nat POSTROUTING.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .iptables import IptRule, Table

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster

CHAIN = "KIND-MASQ-AGENT"


def kindnet_jumps() -> dict[str, list[IptRule]]:
    return {"POSTROUTING": [IptRule("POSTROUTING", (
        "-m", "addrtype", "!", "--dst-type", "LOCAL", "-m", "comment", "--comment",
        "kind-masq-agent: ensure nat POSTROUTING directs all non-LOCAL destination traffic to our custom "
        "KIND-MASQ-AGENT chain", "-j", CHAIN))]}


def kindnet_tables(cluster: "Cluster", *, jumps: bool = True) -> list[Table]:
    t = Table("nat")
    if jumps:
        t.declare("POSTROUTING")
        t.rules.extend(kindnet_jumps()["POSTROUTING"])
    t.declare(CHAIN)
    t.add(CHAIN, "-d", cluster.pod_subnet, "-m", "comment", "--comment",
          "kind-masq-agent: local traffic is not subject to MASQUERADE", "-j", "RETURN")
    t.add(CHAIN, "-m", "comment", "--comment",
          "kind-masq-agent: outbound traffic is subject to MASQUERADE (must be last in chain)", "-j", "MASQUERADE")
    return [t]
