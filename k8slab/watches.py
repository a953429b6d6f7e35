"""Before/after watches around a with-block: what the rules and the conntrack table did meanwhile.

Owns :class:`CounterWatch` (``with lab.counters() as c:``: the rules whose packet counters rose,
from two ``iptables-save -c`` snapshots) and :class:`ConnectionWatch` (``with lab.connections() as
ct:``: the connections the node's kernel began tracking, from two ``conntrack -L`` snapshots). Both
read through the :class:`k8slab.lab.Lab` that made them; ``k8slab.lab`` re-exports them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import K8sLabError, LabStateError

if TYPE_CHECKING:
    from .lab import Lab


class CounterWatch:
    """``with lab.counters() as c: ...`` then ``c.frame``: the rules whose packet counters rose."""

    def __init__(self, lab: "Lab", node: str):
        self.lab = lab
        self.node = node
        self._before = None
        self.frame = None

    def __enter__(self) -> "CounterWatch":
        self._before = self.lab._fresh_ruleset(self.node)
        return self

    def __exit__(self, *exc) -> None:
        from .counters import counter_delta
        from .netfilter.owners import owner_of
        after = self.lab._fresh_ruleset(self.node)
        self.frame = self.lab._label(counter_delta(self._before, after, owner_of))
        self.frame.attrs["node"] = self.node

    @property
    def translations(self):
        """The moved rules that rewrite an address (DNAT, SNAT, MASQUERADE). On a live node other
        traffic (kubelet's probes, DNS) also walks the built-in chains while you watch, but it is not
        translated by your Service's or hostPort's rules: this is the view to compare paths with."""
        if self.frame is None:
            raise LabStateError("counters are read when the with-block ends; use them after it")
        return self.frame[self.frame["target"].isin(["DNAT", "SNAT", "MASQUERADE"])]

    def moved(self, chain_prefix: str) -> bool:
        """True when a rule of a chain whose name starts with ``chain_prefix`` counted packets."""
        if self.frame is None:
            raise LabStateError("counters are read when the with-block ends; call moved() after it")
        return bool(self.frame["chain"].astype(str).str.startswith(chain_prefix).any())

    def __repr__(self) -> str:
        if self.frame is None:
            return f"<counters on {self.node}: watching>"
        return f"<counters on {self.node}: {len(self.frame)} rules moved>"


class ConnectionWatch:
    """``with lab.connections() as ct: ...`` then ``ct.frame``: the connections the kernel began
    tracking on the node during the block (one row each: DNAT, SNAT, how the reply is translated
    back, who the addresses are; see :mod:`k8slab.conntrack`). Two snapshots of ``conntrack -L``,
    diffed by the original tuple; entries that touch none of the lab's networks (node IPs, pod
    CIDRs, Service subnet, host gateway, loopback) are left out unless ``only_lab=False``, and
    counted in ``ct.frame.attrs["left_out"]``. Control-plane connections that start meanwhile stay
    in, labelled in the ``purpose`` column."""

    def __init__(self, lab: "Lab", node: str, only_lab: bool = True):
        self.lab = lab
        self.node = node
        self.only_lab = only_lab
        self._before = None
        self.entries = None
        self.frame = None

    def __enter__(self) -> "ConnectionWatch":
        self._before = self.lab.backend.conntrack(self.node)
        return self

    def __exit__(self, *exc) -> None:
        from . import conntrack as ct
        after = self.lab.backend.conntrack(self.node)
        new = ct.new_entries(self._before, after)
        cluster, nodes = self.lab._cluster_and_nodes()
        left_out = 0
        if self.only_lab:
            nets = ct.lab_networks(cluster, nodes)
            kept = [e for e in new if ct.concerns_lab(e, nets)]
            left_out, new = len(new) - len(kept), kept
        self.entries = ct.in_path_order(new)
        listeners = self._listeners(self.entries)
        self.frame = self.lab._label(ct.connections_frame(self.entries, ct.address_names(
            cluster, nodes, listeners=listeners)))
        self.frame.attrs["node"] = self.node
        self.frame.attrs["left_out"] = left_out

    def _listeners(self, entries) -> list:
        """The node's listening sockets, read only when a new connection went to a loopback port
        that is no well-known one (containerd's streaming server listens on a random port)."""
        from . import conntrack as ct
        if self.node == "host" or not any(
                e.reply_src.startswith("127.") and e.reply_sport not in ct.CONTROL_PLANE_PORTS for e in entries):
            return []
        try:
            return list(self.lab.backend.sockets(self.node))
        except K8sLabError:        # a label is not worth failing the watch for
            return []

    def __repr__(self) -> str:
        if self.frame is None:
            return f"<connections on {self.node}: watching>"
        return f"<connections on {self.node}: {len(self.frame)} new>"
