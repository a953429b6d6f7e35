"""Pure functions over what docker, kind, kubectl and the node's tools print.

Each parser reads the real tool's output format (the sources are named beside each one, and in
``../shared/notes/real-cli-behaviours.yaml``); none of them runs anything.
"""
from __future__ import annotations

import json
import re
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ...errors import LabStateError
from ..base import ConntrackEntry, Socket
from .errors import ControllerPending, ImagePullFailed, RolloutFailed


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
    storage_driver: str = ""    # "overlay2" (classic graphdriver), "overlayfs" (containerd snapshotter)
    image_store: str = ""       # "containerd", "classic", or "" when docker info does not say


#: What ``DriverStatus`` holds when Docker keeps images in containerd (moby daemon/containerd/service.go
#: ``LayerStoreStatus``: ``{"driver-type", string(plugins.SnapshotPlugin)}``, Docker 24 to 29).
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


def image_store_of(driver_status) -> str:
    """``docker info`` DriverStatus (a list of [key, value] pairs) -> "containerd" or "classic"."""
    pairs = [p for p in driver_status or [] if isinstance(p, (list, tuple)) and len(p) == 2]
    if not pairs:
        return ""
    return "containerd" if any(k == "driver-type" and v == CONTAINERD_SNAPSHOTTER for k, v in pairs) \
        else "classic"


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
        storage_driver=data.get("Driver") or "",
        image_store=image_store_of(data.get("DriverStatus")),
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


# How dockerd words a taken host port (../shared/notes/real-cli-behaviours.yaml d12): its port allocator
# for a port another container holds (libnetwork/portallocator, all versions), then a port another
# process holds: "Error starting userland proxy: listen tcp4 ...: bind: ..." (Docker 24-27,
# portmapper/proxy_linux.go), "failed to bind host port for HOSTIP:PORT:CONTAINERIP:CPORT/tcp: ..."
# (Docker 28, drivers/bridge/port_mapping_linux.go), "failed to bind host port HOSTIP:PORT/tcp: ..."
# (Docker 29, portallocator/osallocator_linux.go), and Docker Desktop's "Ports are not available".
_BIND_ERRORS = (
    re.compile(r"Bind for (?:[\d.:\[\]a-f]*?):(\d+) failed: port is already allocated"),
    re.compile(r"failed to bind host port (?:for )?(?:\[[0-9a-f:]*\]|[\d.]+):(\d+)[:/]"),
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
            # The scheduler's reasons (kube-scheduler plugins NodePorts, TaintToleration, NodeAffinity):
            # "didn't have free ports for the requested pod ports", "had untolerated taint {k: v}",
            # "didn't match Pod's node affinity/selector". ingress-nginx's kind manifest selects only
            # kubernetes.io/os=linux since v1.13 (controller-v1.15.1 included) and tolerates the
            # control-plane taint; only older manifests select on ingress-ready=true.
            fix = (f"no node matches the pod's node selector ({p.image or 'none'}) or affinity: compare it with "
                   f"`{kubectl} get nodes --show-labels`")
            if "free ports" in p.message:
                fix = ("the pod's hostPort (80/443 for the ingress controller) is already taken on every "
                       f"node that fits: find the other pod with `{kubectl} get pods -A -o wide` and delete it, "
                       "or run one controller replica per node")
            elif "untolerated taint" in p.message or "taint" in p.message and "tolerate" in p.message:
                fix = ("a node taint the pod does not tolerate (a kind control-plane carries "
                       "node-role.kubernetes.io/control-plane:NoSchedule; ingress-nginx's kind manifest "
                       "tolerates it, a changed manifest may not): see the taints with "
                       f"`{kubectl} describe node {cluster}-control-plane` and add the matching toleration")
            elif "ingress-ready" in p.image:
                fix = ("its node selector asks for the label ingress-ready=true, which older ingress-nginx kind "
                       "manifests (before v1.13) select on and no node carries: kind/cluster.yaml puts it on the "
                       "control-plane (kubeadmConfigPatches, node-labels: \"ingress-ready=true\"); on a running "
                       f"cluster: `{kubectl} label node {cluster}-control-plane ingress-ready=true`")
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

__all__ = ['PortMapping', 'KindConfig', 'kind_config_from_dict', 'read_kind_config', 'DockerInfo', 'CONTAINERD_SNAPSHOTTER', 'image_store_of', 'parse_docker_info', 'parse_kind_version', 'parse_kubectl_version', 'parse_kind_clusters', 'container_mappings', 'config_differences', 'busy_port_in', 'free_port_hint', 'parse_conntrack', 'parse_ss', 'parse_ip_addrs', 'kube_rule_count', 'pick_iptables', 'Container', 'parse_crictl_ps', 'parse_http', 'whoami_of', 'destination_of', 'PodProblem', 'pod_problems', 'explain_problems', 'service_row', 'objects_to_yaml', 'applied_names', 'CURL_ERRORS']
