"""The netns backend's plumbing on the real kernel (root): CNI plugins, relays, force_cleanup.

These do not need the cluster model: they build two or three namespaces by hand, under lab names
that start with ``k8s-plumb`` and are removed even when an assertion fails.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading

import pytest

from conftest import skip_unless_root
from k8slab import runner
from k8slab.backends import cni, nsrelay
from k8slab.backends.netns import plumbing as pl
from k8slab.backends.netns import text as tx

TOOLS = ("ip", "iptables-save", "iptables-restore", "conntrack", "/usr/lib/cni/ptp",
         "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")

pytestmark = pytest.mark.root


@pytest.fixture
def lab():
    skip_unless_root(*TOOLS)
    name = f"k8s-plumb-{os.getpid()}"
    pl.force_cleanup(name)
    yield name
    pl.force_cleanup(name)
    assert not [n for n in pl.netns_list() if n.startswith(f"{name}-")]


def _serve_once_in(netns: str, port: int) -> tuple[socket.socket, threading.Thread, list]:
    """A one-shot TCP server inside ``netns`` that answers with the peer address it saw."""
    server = nsrelay.listen_in(netns, "0.0.0.0", port)
    seen: list = []

    def run():
        conn, peer = server.accept()
        seen.append(peer[0])
        conn.sendall(f"peer={peer[0]}\n".encode())
        conn.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return server, t, seen


def test_cni_chain_add_and_del_in_node_namespace(lab):
    node, pod = f"{lab}-node", f"{lab}-pod-web"
    pl.netns_add(lab, node)
    pl.netns_add(lab, pod)
    conf = cni.kindnet_conflist("10.250.0.0/24", pl.state_dir(lab) / "ipam")
    att = cni.Attachment(cni.container_id(lab, "default", "web"), f"/run/netns/{pod}",
                         port_mappings=(cni.PortMapping(8088, 80),))
    res = cni.add(conf, att, exec_in=node)
    assert res.ip == "10.250.0.2" and res.gateway == "10.250.0.1"
    # the host end of the veth, the /32 route and portmap's chains are in the node namespace
    routes = runner.run(["ip", "-n", node, "route"]).stdout
    assert f"10.250.0.2 dev {res.host_interface}" in routes
    saved = runner.run(["ip", "netns", "exec", node, "iptables-save"]).stdout
    from k8slab.netfilter.names import portmap_chain
    chain = portmap_chain("kindnet", att.container_id)
    assert f"-j DNAT --to-destination 10.250.0.2:80" in saved and chain in saved
    assert "default via 10.250.0.1 dev eth0" in runner.run(["ip", "-n", pod, "route"]).stdout
    ipam = pl.state_dir(lab) / "ipam" / "kindnet" / "10.250.0.2"
    assert ipam.read_text().strip().startswith(att.container_id)
    # DEL with the same runtime config removes the pod's DNAT chain and frees the address
    assert cni.delete(conf, att, exec_in=node) == []
    saved = runner.run(["ip", "netns", "exec", node, "iptables-save"]).stdout
    assert chain not in saved and not ipam.exists()


def test_relay_carries_connections_between_namespaces_and_stops(lab):
    a, b = f"{lab}-a", f"{lab}-b"
    pl.netns_add(lab, a)
    pl.netns_add(lab, b)
    server, t, seen = _serve_once_in(b, 9099)
    try:
        proc, port = pl.start_relay(lab, "relay-test", listen_netns=a, listen="127.0.0.1:0",
                                    dial_netns=b, dial="127.0.0.1:9099")
        assert port > 0
        # nothing listens on that port in the namespace this test runs in
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        sock = nsrelay.connect_in(a, "127.0.0.1", port, timeout=5)
        data = sock.makefile().readline()
        sock.close()
        t.join(5)
        assert data.strip() == "peer=127.0.0.1" and seen == ["127.0.0.1"]
        assert proc.pid in pl.netns_pids(b)  # the relay lives in the dial namespace
        pl.stop(lab, proc)
        assert not runner.group_alive(proc.pid)
    finally:
        server.close()


def test_setns_thread_leaves_the_caller_in_its_namespace(lab):
    ns = f"{lab}-x"
    pl.netns_add(lab, ns)
    mine = os.readlink("/proc/thread-self/ns/net")
    inside = nsrelay.run_in(ns, lambda: os.readlink("/proc/thread-self/ns/net"))
    assert inside != mine and os.readlink("/proc/thread-self/ns/net") == mine


def test_force_cleanup_after_a_crash_spares_other_labs(lab):
    other = f"{lab}-b"                       # a lab whose name starts with ours
    pl.force_cleanup(other)
    try:
        mine = [f"{lab}-host", f"{lab}-node", f"{lab}-pod-a"]
        for ns in mine:
            pl.netns_add(lab, ns)
        pl.netns_add(other, f"{other}-host")
        # a process inside one namespace, and a recorded helper process group, as a crash leaves them
        sleeper = subprocess.Popen(["ip", "netns", "exec", f"{lab}-pod-a", "sleep", "300"],
                                   start_new_session=True)
        helper = pl.start(lab, "helper", ["sleep", "300"])
        (pl.state_dir(lab) / "ipam").mkdir(parents=True, exist_ok=True)
        removed = pl.force_cleanup(lab)
        assert all(f"netns {ns}" in removed for ns in mine)
        assert any(r.startswith("process group") for r in removed)
        assert sleeper.wait(timeout=5) is not None and helper.popen.wait(timeout=5) is not None
        assert not pl.state_dir(lab).exists()
        assert f"{other}-host" in pl.netns_list()
        assert pl.force_cleanup(lab) == []     # idempotent
    finally:
        pl.force_cleanup(other)


def test_root_snapshot_sees_the_root_namespace(lab):
    snap = pl.root_netns_snapshot()
    assert "links" in snap and "lo" in snap["links"] and "sysctl net/ipv4/ip_forward" in snap
    json.dumps(snap)
    assert tx.node_veth_ifname(lab, 0) not in snap["links"]


def test_k8slab_down_force_removes_a_crashed_lab_from_the_command_line(lab, capsys):
    from k8slab.cli import main
    for ns in (f"{lab}-host", f"{lab}-pod-x"):
        pl.netns_add(lab, ns)
    assert main(["down", "--force", "--backend", "netns", lab]) == 0
    out = capsys.readouterr().out
    assert f"netns {lab}-host" in out and f"netns {lab}-pod-x" in out
    assert not [n for n in pl.netns_list() if n.startswith(f"{lab}-")]
    assert main(["down", "--force", "--backend", "netns", lab]) == 0
    assert "nothing of lab" in capsys.readouterr().out


def test_refused_without_root_with_the_reason(monkeypatch):
    from k8slab.backends.netns import NetnsBackend
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ok, why = NetnsBackend.available()
    assert not ok and "needs root" in why


def test_refused_without_the_tools_with_the_apt_line(monkeypatch):
    from k8slab.backends.netns import NetnsBackend
    from k8slab.backends.netns import backend as nb
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(nb, "_missing_tools", lambda: ["conntrack", "/usr/lib/cni/portmap"])
    ok, why = NetnsBackend.available()
    assert not ok and "conntrack" in why
    assert "apt-get install -y iptables conntrack nginx-light containernetworking-plugins iproute2" in why
