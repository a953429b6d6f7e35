"""Docker's side of the netns lab, on the learner's machine (the lab's host namespace).

Owns what Docker does there for a kind cluster: the host namespace itself (or, given one with
``host_netns=``, what it held before, put back at down()), the bridge of Docker's network ``kind``
(``KIND_GATEWAY``/16 on it), Docker's nat/filter rules for the published ports (extraPortMappings,
rendered by :func:`k8slab.model.render_host_docker`, kept in the state dir as ``host.rules``) and a
``docker-proxy``-like relay on 127.0.0.1:<hostPort> for each (connections to loopback skip Docker's
DNAT; docker-proxy relays them). The nodes' veths on the bridge are :mod:`.backend`'s.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import BackendUnavailable
from . import plumbing as pl
from . import text as tx

if TYPE_CHECKING:  # pragma: no cover
    from .backend import NetnsBackend

KIND_GATEWAY = "172.18.0.1"


def make_host(b: "NetnsBackend") -> None:
    b.progress.step(f"host namespace {b.host_ns} with bridge {b.bridge} ({KIND_GATEWAY}/16) "
                    "for Docker's network 'kind'")
    if b.external_host:
        if not pl.netns_exists(b.host_ns):
            raise BackendUnavailable(f"host namespace {b.host_ns} does not exist (ip netns list)")
        # What the namespace's tables held before: put back at down().
        b._host_rules_before = pl.exec_in(b.host_ns, ["iptables-save"], timeout=20).stdout
    else:
        pl.netns_add(b.name, b.host_ns)
    pl.ip_batch(b.host_ns, [
        f"link add {b.bridge} type bridge",
        f"addr add {KIND_GATEWAY}/16 dev {b.bridge}",
        f"link set {b.bridge} up",
    ])


def make_host_port_mappings(b: "NetnsBackend") -> None:
    """Docker's side of extraPortMappings: its nat/filter rules in the host namespace (rendered by
    the model for this bridge) and a userland proxy on 127.0.0.1 for each published port
    (connections to loopback skip Docker's DNAT; docker-proxy relays them)."""
    from ... import model as m
    text = m.render_host_docker(b._cluster, form="restore")
    (b.state / "host.rules").write_text(text)
    pl.iptables_restore(b.host_ns, text, noflush=False)
    mappings = port_mappings(b)
    for host_port, container_port, node_ip in mappings:
        start_docker_proxy(b, host_port, container_port, node_ip)
    if mappings:
        b.progress.step("host port mappings: " + ", ".join(
            f"{hp}->{ip}:{cp}" for hp, cp, ip in mappings) + " (Docker's DNAT + docker-proxy on 127.0.0.1)")


def start_docker_proxy(b: "NetnsBackend", host_port: int, container_port: int, node_ip: str) -> None:
    key = f"docker-proxy-{host_port}"
    proc, _ = pl.start_relay(b.name, key, listen_netns=b.host_ns,
                             listen=f"127.0.0.1:{host_port}", dial_netns=b.host_ns,
                             dial=f"{node_ip}:{container_port}",
                             info=f"docker-proxy 127.0.0.1:{host_port} -> {node_ip}:{container_port}")
    b._procs[key] = proc


def port_mappings(b: "NetnsBackend") -> list[tuple[int, int, str]]:
    """(hostPort, containerPort, node IP) of every node's extraPortMappings (TCP)."""
    out = []
    cfg = b._cluster.config
    kind_nodes = [k for k in cfg.nodes if k.role == "control-plane"] + \
        [k for k in cfg.nodes if k.role == "worker"]       # the model's node order
    for kn, node in zip(kind_nodes, b._cluster.nodes):
        for pm in kn.extra_port_mappings:
            if pm.protocol.upper() == "TCP":
                out.append((pm.host_port, pm.container_port, node.ip))
    return out


def clean_external_host(b: "NetnsBackend") -> None:
    """Remove from a host namespace we were given what up() put there: the bridge (with it the
    nodes' veth ends) and Docker's rules (each table restored to its state at up())."""
    if not pl.netns_exists(b.host_ns):
        return
    if b.bridge:
        pl.exec_in(b.host_ns, ["ip", "link", "del", b.bridge], timeout=10, check=False)
    rules = b.state / "host.rules"
    if rules.exists():
        before = tx.parse_restore(b._host_rules_before or "")
        kept = {t.name for t in before}
        text = (b._host_rules_before or "") + "".join(
            f"*{t.name}\nCOMMIT\n" for t in tx.parse_restore(rules.read_text()) if t.name not in kept)
        pl.iptables_restore(b.host_ns, text, noflush=False)
