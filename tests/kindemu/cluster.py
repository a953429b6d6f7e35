"""One emulated kind cluster, owned by its daemon: the netns backend's real data plane (namespaces,
CNI plugins, kube-proxy's rules, nginx, the app) behind what ``docker exec``, ``kind load`` and
``kubectl`` do to a cluster.

The netns backend (``k8slab.backends.netns``) builds and owns the lab; this module only adds what a real
cluster has and the netns lab does not: pod status as the kubelet reports it (readiness from the real
processes, image pulls), a "pause" process per pod sandbox, the container runtime's ``crictl`` views,
objects the model does not simulate (stored and listed as the API server would), and the published
ports of Docker Desktop. It imports nothing from ``k8slab.backends.kind``.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from k8slab import model as m
from k8slab.backends import nsrelay
from k8slab.backends.netns import NetnsBackend
from k8slab.backends.netns import plumbing as pl
from k8slab.backends.netns import text as tx
from k8slab.errors import K8sLabError, NotFound
from k8slab.progress import Progress

from . import common as c
from .common import Out, kube_json, take, take_all

# kind: (Kind, plural, group, namespaced)
KINDS = {}
for _kind, _plural, _group, _ns, _aliases in (
    ("Pod", "pods", "", True, ("pod", "po")),
    ("Service", "services", "", True, ("service", "svc")),
    ("Node", "nodes", "", False, ("node", "no")),
    ("Namespace", "namespaces", "", False, ("namespace", "ns")),
    ("Deployment", "deployments", "apps", True, ("deployment", "deploy")),
    ("ReplicaSet", "replicasets", "apps", True, ("replicaset", "rs")),
    ("DaemonSet", "daemonsets", "apps", True, ("daemonset", "ds")),
    ("EndpointSlice", "endpointslices", "discovery.k8s.io", True, ("endpointslice",)),
    ("Ingress", "ingresses", "networking.k8s.io", True, ("ingress", "ing")),
    ("IngressClass", "ingressclasses", "networking.k8s.io", False, ("ingressclass",)),
    ("ConfigMap", "configmaps", "", True, ("configmap", "cm")),
    ("Secret", "secrets", "", True, ("secret",)),
    ("ServiceAccount", "serviceaccounts", "", True, ("serviceaccount", "sa")),
    ("Job", "jobs", "batch", True, ("job",)),
    ("Role", "roles", "rbac.authorization.k8s.io", True, ("role",)),
    ("RoleBinding", "rolebindings", "rbac.authorization.k8s.io", True, ("rolebinding",)),
    ("ClusterRole", "clusterroles", "rbac.authorization.k8s.io", False, ("clusterrole",)),
    ("ClusterRoleBinding", "clusterrolebindings", "rbac.authorization.k8s.io", False, ("clusterrolebinding",)),
    ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations", "admissionregistration.k8s.io", False,
     ("validatingwebhookconfiguration",)),
    ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations", "admissionregistration.k8s.io", False,
     ("mutatingwebhookconfiguration",)),
):
    for _a in (_plural, *_aliases, _kind.lower()):
        KINDS[_a] = (_kind, _plural, _group, _ns)
BY_KIND = {v[0]: v for v in KINDS.values()}
MODEL_KINDS = {"Pod", "Service", "Node", "Deployment", "EndpointSlice", "Ingress", "IngressClass"}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system", "local-path-storage")
KUBELET_VERSION = "v1.35.8"
ETC_NETNS = Path("/etc/netns")


def write_resolv_conf(netns: str, text: str) -> None:
    d = ETC_NETNS / netns
    d.mkdir(parents=True, exist_ok=True)
    (d / "resolv.conf").write_text(text)


def resolve_kind(word: str) -> tuple[str, str, str, bool] | None:
    w = word.lower()
    if w in KINDS:
        return KINDS[w]
    base = w.split(".", 1)[0]           # deployments.apps, ingresses.networking.k8s.io
    return KINDS.get(base)


def resource_name(kind: str) -> str:
    """``deployments.apps``, ``pods``: how API errors name a resource."""
    _, plural, group, _ = BY_KIND.get(kind, (kind, kind.lower() + "s", "", True))
    return f"{plural}.{group}" if group else plural


def kind_group(kind: str) -> str:
    """``deployment.apps``, ``service``: how kubectl's name printer names a kind
    (cli-runtime pkg/printers/name.go; yaml k4a-apply-server-side-ok)."""
    _, _, group, _ = BY_KIND.get(kind, (kind, "", "", True))
    return f"{kind.lower()}.{group}" if group else kind.lower()


def not_found(kind: str, name: str) -> str:
    """An API NotFound through kubectl's checkErr: 'Error from server (NotFound): pods "x" not found'
    (yaml k6a-exec-pod-missing, k8a-delete-notfound)."""
    return f'Error from server (NotFound): {resource_name(kind)} "{name}" not found\n'


def now_iso(t: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t or time.time()))


# --------------------------------------------------------------------------------------------------
# The netns backend, with what a kubelet and containerd add to a pod.
# --------------------------------------------------------------------------------------------------
class EmuNetns(NetnsBackend):
    """NetnsBackend plus: a pause process in every pod sandbox (``sleep infinity``, whose pid
    ``crictl inspectp`` reports for ``nsenter -t PID -n``), and app containers that start only once
    their image is on the node (``kind load``)."""

    def __init__(self, *a, image_ok=None, zone: Path | None = None, **kw):
        super().__init__(*a, **kw)
        self.image_ok = image_ok or (lambda pod: True)
        self.zone = zone
        self.pause: dict[tuple[str, str], pl.Proc] = {}
        self.dns: dict[tuple[str, str], pl.Proc] = {}
        self.created: dict[tuple[str, str], float] = {}

    def _add_pod(self, pod) -> None:
        # The kubelet's resolv.conf for dnsPolicy ClusterFirst (`ip netns exec` mounts
        # /etc/netns/<ns>/resolv.conf over /etc/resolv.conf for everything run in the pod's namespace)
        ns_name = tx.pod_netns(self.name, pod.name, pod.namespace)
        write_resolv_conf(ns_name, f"search {pod.namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
                                   "nameserver 10.96.0.10\noptions ndots:5\n")
        super()._add_pod(pod)
        pnet = self._pods[pod.key]
        key = f"pause-{pod.namespace}-{pod.name}"
        self.pause[pod.key] = pl.start(self.name, key, ["ip", "netns", "exec", pnet.netns, "sleep", "infinity"],
                                       info=f"pause of {pod.namespace}/{pod.name}")
        self.created[pod.key] = time.time()
        if pod.labels.get("k8s-app") == "kube-dns" and self.zone is not None:
            # CoreDNS stands in as tests/kindemu/dns.py on :53 in the pod (kube-dns's endpoints)
            self.dns[pod.key] = pl.start(self.name, f"coredns-{pod.name}", [
                "ip", "netns", "exec", pnet.netns, sys.executable, str(Path(__file__).with_name("dns.py")),
                "--zone", str(self.zone), "--listen", "0.0.0.0:53"], info=f"DNS in {pod.name}")

    def _remove_pod(self, pod) -> None:
        for d in (self.pause, self.dns):
            proc = d.pop((pod.namespace, pod.name), None)
            if proc is not None:
                pl.stop(self.name, proc)
        super()._remove_pod(pod)
        shutil.rmtree(ETC_NETNS / pod.netns, ignore_errors=True)

    def _start_app(self, pod) -> None:
        mpod = next((p for p in self._cluster.pods if p.key == (pod.namespace, pod.name)), None)
        if mpod is not None and not self.image_ok(mpod):
            return                       # the kubelet cannot start a container without its image
        super()._start_app(pod)


class EmuCluster:
    def __init__(self, name: str, root: Path, mode: str, machine_ns: str | None):
        self.name = name
        self.root = root
        self.mode = mode
        self.machine_ns = machine_ns
        self.lock = threading.RLock()
        self.loaded: dict[str, dict[str, str]] = {}       # node -> {fully qualified image: id}
        self.ready_since: dict[tuple[str, str], float] = {}
        self.waiting: dict[tuple[str, str], dict] = {}
        self.desktop_relays: list[pl.Proc] = []
        self.backend: EmuNetns | None = None
        self.config_path: Path | None = None
        self.created = time.time()
        self.node_image = c.DEFAULT_NODE_IMAGE
        self.managed: dict[tuple, dict[str, dict]] = {}      # object -> manager -> {field path: value}
        self.confirmed: set[tuple[str, str]] = set()          # pods whose process answered a probe

    # ------------------------------------------------------------------ create / delete
    def create(self, config_path: Path | None, kubeconfig: str | None, wait: str | None, o: Out) -> int:
        cfg_text = config_path.read_text() if config_path else "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        cfg = yaml.safe_load(cfg_text) or {}
        nodes = cfg.get("nodes") or [{"role": "control-plane"}]
        images = [n.get("image") for n in nodes if n.get("image")]
        self.node_image = images[0] if images else c.DEFAULT_NODE_IMAGE
        shown = self.node_image.split("@")[0]
        # kind pkg/cluster/internal/create/create.go: Infof("Creating cluster %q ...\n"); status lines
        # from pkg/internal/cli/status.go (" • %s  ..." then " ✓ %s" without a TTY)
        o.err(f'Creating cluster "{self.name}" ...\n')
        o.err(f" • Ensuring node image ({shown}) 🖼  ...\n ✓ Ensuring node image ({shown}) 🖼\n")
        o.err(" • Preparing nodes " + "📦 " * len(nodes) + "  ...\n")
        busy = self._busy_host_port(nodes)
        if busy is not None:
            hp, cp, ip = busy
            o.err(" ✗ Preparing nodes " + "📦 " * len(nodes) + "\n")
            o.err(self._port_taken_error(nodes, hp, cp, ip))
            return 1
        work = Path(c.cluster_dir(self.name))
        tmp_cfg = work / "config.yaml"
        tmp_cfg.write_text(cfg_text)
        self.config_path = tmp_cfg
        host_ns = self.machine_ns if self.mode == "linux" and self.machine_ns else None
        self.zone = work / "zone.json"
        self.backend = EmuNetns(self.name, root=self.root, progress=Progress(quiet=True), host_netns=host_ns,
                                image_ok=self.image_ok, zone=self.zone)
        try:
            # NetnsBackend.up refuses a lab name another live process owns and removes what it made
            # itself when it fails: never call down() for it here (that would remove the other lab).
            self.backend.up(tmp_cfg)
        except BaseException as exc:  # noqa: BLE001 - reported like kind reports a failed step
            o.err(" ✗ Preparing nodes " + "📦 " * len(nodes) + "\n")
            o.err(f"ERROR: failed to create cluster: {exc}\n")
            self.backend = None
            return 1
        try:
            self.write_zone()
            self._node_dns()
        except BaseException as exc:  # noqa: BLE001
            o.err(f"ERROR: failed to create cluster: {exc}\n")
            self.backend.down()
            self.backend = None
            return 1
        if self.mode == "desktop" and self.machine_ns:
            self._desktop_port_relays()
        for n in self.backend.model()._nodes.values():
            self.loaded[n.name] = {}
        self.write_nodes()
        for step in ("Preparing nodes " + "📦 " * len(nodes), "Writing configuration 📜", "Starting control-plane 🕹️",
                     "Installing CNI 🔌", "Installing StorageClass 💾"):
            if step.startswith("Preparing"):
                o.err(f" ✓ {step}\n")
            else:
                o.err(f" • {step}  ...\n ✓ {step}\n")
        if any(n.get("role") == "worker" for n in nodes):
            o.err(" • Joining worker nodes 🚜  ...\n ✓ Joining worker nodes 🚜\n")
        if wait:
            w = c.go_duration(c.parse_duration(wait, 0))
            o.err(f" • Waiting ≤ {w} for control-plane = Ready ⏳  ...\n ✓ Waiting ≤ {w} for control-plane = Ready ⏳\n"
                  " • Ready after 0s 💚\n")
        kc = kubeconfig
        if kc:
            p = Path(kc)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(c.kubeconfig_text(self.name, c.api_port(self.name)))
            p.chmod(0o600)
        o.err(f'Set kubectl context to "kind-{self.name}"\n')
        o.err(f"You can now use your cluster with:\n\nkubectl cluster-info --context kind-{self.name}"
              + (f" --kubeconfig {kc}" if kc else "") + "\n\nHave a nice day! 👋\n")
        return 0

    def _busy_host_port(self, nodes: list[dict]):
        """A published port some other process holds in the learner's machine (Docker would fail to
        bind it)."""
        for i, n in enumerate(nodes):
            for pm in n.get("extraPortMappings") or []:
                hp = int(pm.get("hostPort", pm["containerPort"]))
                addr = pm.get("listenAddress", "0.0.0.0")
                try:
                    s = nsrelay.listen_in(self.machine_ns, addr, hp)
                    s.close()
                except OSError:
                    return hp, int(pm["containerPort"]), f"172.18.0.{2 + i}"
        return None

    def _port_taken_error(self, nodes, hp: int, cp: int, ip: str) -> str:
        """kind's report of a failed `docker run` (yaml d12-kind-create-hostport-taken): Docker 28's
        daemon text for a port held by a non-Docker process (moby libnetwork/drivers/bridge/
        port_mapping_linux.go "failed to bind host port for %s: %w", prefixed by daemon/start_linux.go
        errSetupNetworking), Docker Desktop's "Ports are not available" (kind#3681); CLI >= 28 appends
        "Run 'docker run --help'"."""
        node = f"{self.name}-control-plane"
        publish = " ".join(f"--publish={pm.get('listenAddress', '0.0.0.0')}:{pm.get('hostPort', pm['containerPort'])}:"
                           f"{pm['containerPort']}/{str(pm.get('protocol', 'TCP')).upper()}"
                           for n in nodes[:1] for pm in n.get("extraPortMappings") or [])
        if self.mode == "desktop":
            daemon = (f"Ports are not available: exposing port TCP 0.0.0.0:{hp} -> 0.0.0.0:0: listen tcp "
                      f"0.0.0.0:{hp}: bind: address already in use")
        else:
            daemon = (f"failed to set up container networking: failed to bind host port for "
                      f"0.0.0.0:{hp}:{ip}:{cp}/tcp: address already in use")
        cid = hashlib.sha256(f"{self.name}/failed".encode()).hexdigest()
        names = json.dumps([f"{self.name}-control-plane"])
        return (f"Deleted nodes: {names}\n"
                f'ERROR: failed to create cluster: command "docker run --name {node} --hostname {node} '
                f"--label io.x-k8s.kind.role=control-plane --privileged --security-opt seccomp=unconfined "
                f"--security-opt apparmor=unconfined --tmpfs /tmp --tmpfs /run --volume /var "
                f"--volume /lib/modules:/lib/modules:ro -e KIND_EXPERIMENTAL_CONTAINERD_SNAPSHOTTER "
                f"--detach --tty --label io.x-k8s.kind.cluster={self.name} --net kind --restart=on-failure:1 "
                f"--init=false --cgroupns=private {publish} --publish=127.0.0.1:{c.api_port(self.name)}:6443/TCP "
                f'-e KUBECONFIG=/etc/kubernetes/admin.conf {self.node_image}" failed with error: exit status 125\n'
                f"\nCommand Output: {cid}\ndocker: Error response from daemon: {daemon}\n\n"
                "Run 'docker run --help' for more information\n")

    def _desktop_port_relays(self) -> None:
        """Docker Desktop publishes a port on the Mac/PC side: a relay listening in the learner's
        machine on 127.0.0.1:hostPort that dials node_ip:containerPort inside the VM (the netns
        lab's host namespace). Node IPs themselves stay unreachable from the machine."""
        b = self.backend
        for hp, cp, ip in b._port_mappings():
            proc, _ = pl.start_relay(self.name, f"desktop-publish-{hp}", listen_netns=self.machine_ns,
                                     listen=f"127.0.0.1:{hp}", dial_netns=b.host_ns, dial=f"{ip}:{cp}",
                                     info=f"Docker Desktop port {hp} -> {ip}:{cp}")
            self.desktop_relays.append(proc)

    def write_zone(self) -> None:
        """The names the cluster's DNS answers: Services (headless: their ready pods) and, for Docker's
        embedded DNS, the node containers."""
        cl = self.backend.model()
        names: dict[str, list[str]] = {}
        for svc in cl.services:
            fq = f"{svc.name}.{svc.namespace}.svc.cluster.local."
            if svc.headless:
                names[fq] = [p.ip for p in cl.selected_pods(svc) if p.ready and p.ip]
            elif svc.cluster_ip:
                names[fq] = [svc.cluster_ip]
        for n in cl.nodes:
            names[f"{n.name}."] = [n.ip]
        text = json.dumps(names, indent=1, sort_keys=True)
        if not self.zone.exists() or self.zone.read_text() != text:
            tmp = self.zone.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(self.zone)

    def _node_dns(self) -> None:
        """Docker's embedded DNS in each node: 127.0.0.11 at the ports the node's DOCKER_OUTPUT rules
        DNAT the gateway's port 53 to; the node's resolv.conf names the gateway, as kind's entrypoint
        writes it."""
        from k8slab.model.docker import dns_ports
        b = self.backend
        for node in b.model().nodes:
            nn = b._node(node.name)
            tcp, udp = dns_ports(b.model(), node)
            write_resolv_conf(nn.netns, "nameserver 172.18.0.1\noptions ndots:0\n")
            pl.start(self.name, f"docker-dns-{node.name}", [
                "ip", "netns", "exec", nn.netns, sys.executable, str(Path(__file__).with_name("dns.py")),
                "--zone", str(self.zone), "--listen", f"127.0.0.11:{udp}:{tcp}"], info=f"Docker DNS in {node.name}")

    def write_nodes(self) -> None:
        (c.cluster_dir(self.name) / "nodes.json").write_text(json.dumps(self.node_inspect(), indent=1))

    def node_inspect(self) -> list[dict]:
        """``docker inspect`` of each node container (the fields the callers read: Name, Id, State,
        Config.Image/Labels, HostConfig.PortBindings, NetworkSettings.Networks.kind)."""
        cfg = yaml.safe_load(self.config_path.read_text()) or {}
        kind_nodes = cfg.get("nodes") or [{"role": "control-plane"}]
        ordered = [k for k in kind_nodes if k.get("role", "control-plane") == "control-plane"] + \
            [k for k in kind_nodes if k.get("role") == "worker"]
        out = []
        for kn, node in zip(ordered, self.backend.model().nodes):
            bindings = {}
            for pm in kn.get("extraPortMappings") or []:
                key = f"{pm['containerPort']}/{str(pm.get('protocol', 'TCP')).lower()}"
                bindings.setdefault(key, []).append({"HostIp": pm.get("listenAddress", "0.0.0.0"),
                                                     "HostPort": str(pm.get("hostPort", pm["containerPort"]))})
            if node.role == "control-plane":
                bindings["6443/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": str(c.api_port(self.name))}]
            cid = hashlib.sha256(f"{self.name}/{node.name}/container".encode()).hexdigest()
            out.append({
                "Id": cid, "Created": now_iso(self.created), "Name": f"/{node.name}",
                "State": {"Status": "running", "Running": True, "Paused": False, "Restarting": False,
                          "Pid": 0, "ExitCode": 0, "StartedAt": now_iso(self.created)},
                "Image": "sha256:" + hashlib.sha256(self.node_image.encode()).hexdigest(),
                "Config": {"Hostname": node.name, "Image": kn.get("image") or self.node_image,
                           "Labels": {"io.x-k8s.kind.cluster": self.name, "io.x-k8s.kind.role": node.role}},
                "HostConfig": {"PortBindings": bindings, "Privileged": True, "NetworkMode": "kind"},
                "NetworkSettings": {"Networks": {"kind": {
                    "IPAddress": node.ip, "Gateway": "172.18.0.1", "IPPrefixLen": 16,
                    "MacAddress": "02:42:ac:12:00:%02x" % (int(node.ip.rsplit('.', 1)[1]) % 256),
                    "Aliases": [node.name]}}},
                "k8slab-emu": {"netns": self.backend._node(node.name).netns},
            })
        return out

    def down(self) -> None:
        for proc in self.desktop_relays:
            pl.stop(self.name, proc)
        self.desktop_relays.clear()
        if self.backend is None:             # never came up (or the lab name belongs to another process)
            return
        self.backend.down()
        for d in ETC_NETNS.glob(f"{self.name}-*") if ETC_NETNS.is_dir() else []:
            shutil.rmtree(d, ignore_errors=True)
        if ETC_NETNS.is_dir() and not any(ETC_NETNS.iterdir()):
            ETC_NETNS.rmdir()

    # ------------------------------------------------------------------ images on nodes
    def image_ok(self, pod) -> bool:
        return not self._missing_images(pod)

    def _missing_images(self, pod) -> list[str]:
        """Images the kubelet cannot get: locally built ``k8slab/...`` images not loaded on the pod's
        node (every other image stands for one the registry serves)."""
        have = self.loaded.get(pod.node_name or "", {})
        return [ct.image for ct in pod.containers if ct.image.startswith("k8slab/")
                and c.fully_qualified(ct.image) not in have]

    def _pull_policy(self, pod, image: str) -> str:
        raw = pod.raw or {}
        specs = ((raw.get("spec") or {}).get("containers") or [])
        if not specs and pod.owner and pod.owner.startswith("Deployment/"):
            d = next((d for d in self.backend.model().deployments if f"Deployment/{d.name}" == pod.owner
                      and d.namespace == pod.namespace), None)
            specs = (((d.template or {}).get("spec") or {}).get("containers") or []) if d else []
        for s in specs:
            if s.get("image") == image and s.get("imagePullPolicy"):
                return s["imagePullPolicy"]
        return "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1] else "IfNotPresent"

    def load_images(self, entries: list[dict], nodes: list[str] | None, o: Out, archive: bool = False) -> int:
        """kind load docker-image / image-archive (kind pkg/cmd/kind/load/docker-image/docker-image.go
        runE; yaml d14a-kind-load-success)."""
        targets = nodes or list(self.loaded)
        for n in targets:
            if n not in self.loaded:
                o.err(f'ERROR: unknown node: "{n}"\n')
                return 1
        pending = {}
        for e in entries:
            ref, iid = e["ref"], e["id"]
            fq = c.fully_qualified(ref)
            # With the containerd image store the ID kind compares is the index digest, which the node
            # never reports for an imported image: kind never finds it present (kind#4236).
            desktop_store = self.mode == "desktop"
            need = [n for n in targets if desktop_store or self.loaded[n].get(fq) != iid]
            if not archive:
                for n in need:
                    o.err(f'Image: "{ref}" with ID "{iid}" not yet present on node "{n}", loading...\n')
                if not need:
                    o.err(f'Image: "{ref}" with ID "{iid}" found to be already present on all nodes.\n')
            for n in need if not archive else targets:
                pending.setdefault(n, []).append(e)
        for n, es in pending.items():
            missing = next((e["missing_blob"] for e in es if e.get("missing_blob")), None)
            if missing:
                # kind pkg/cluster/nodeutils/util.go LoadImageArchive ("failed to load image") running
                # `ctr ... images import --all-platforms`; ctr cannot find the attestation manifest that
                # `docker save` left out (kind#3795, kind#4236, containerd#11344); cmd/kind/app/main.go
                # logError prints "ERROR: %v" then "\nCommand Output: %s".
                o.err(f'ERROR: failed to load image: command "docker exec --privileged -i {n} ctr '
                      f'--namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -" '
                      f"failed with error: exit status 1\n\nCommand Output: ctr: content digest {missing}: not found\n")
                return 1
            for e in es:
                self.loaded[n][c.fully_qualified(e["ref"])] = e["id"]
        with self.lock:
            self._start_waiting_apps()
        return 0

    def _start_waiting_apps(self) -> None:
        b = self.backend
        for key, pnet in b._pods.items():
            mpod = next((p for p in b.model().pods if p.key == key), None)
            if mpod is None or pnet.role != "app":
                continue
            if (pnet.proc is None or not pnet.proc.alive) and self.image_ok(mpod):
                b._start_app(pnet)

    # ------------------------------------------------------------------ pod status (the kubelet's view)
    def refresh(self) -> None:
        """Set each model pod's phase and readiness from the real processes: an app pod is Ready when
        its /healthz answers, the controller when nginx listens, others once wired; a pod whose image
        cannot be had stays Pending. When readiness changes, kube-proxy's rules and nginx follow."""
        with self.lock:
            b = self.backend
            changed = False
            for pod in b.model().pods:
                if pod.host_network:
                    continue
                pnet = b._pods.get(pod.key)
                missing = self._missing_images(pod)
                if missing:
                    img = missing[0]
                    policy = self._pull_policy(pod, img)
                    if policy == "Never":
                        # kubelet pkg/kubelet/images/image_manager.go: ErrImageNeverPull
                        w = {"reason": "ErrImageNeverPull",
                             "message": f'Container image "{img}" is not present with pull policy of Never'}
                    else:
                        fq = c.fully_qualified(img)
                        # kubelet image_manager.go "Back-off pulling image %q: %v" after ErrImagePull
                        w = {"reason": "ImagePullBackOff",
                             "message": f'Back-off pulling image "{img}": ErrImagePull: failed to pull and unpack '
                                        f'image "{fq}": failed to resolve reference "{fq}": pull access denied, '
                                        "repository does not exist or may require authorization: server message: "
                                        "insufficient_scope: authorization failed"}
                    self.waiting[pod.key] = {**w, "image": img}
                    phase, ready = "Pending", False
                else:
                    self.waiting.pop(pod.key, None)
                    phase = "Running"
                    ready = self._probe(pnet) if pnet is not None else True
                if pod.ready != ready or pod.phase != phase:
                    changed = changed or pod.ready != ready
                    pod.ready, pod.phase = ready, phase
                    if ready:
                        self.ready_since[pod.key] = time.time()
            if changed:
                b._sync_rules()
                b._sync_nginx()
            self.write_zone()

    def _probe(self, pnet) -> bool:
        key = (pnet.namespace, pnet.name)
        if pnet.role not in ("app", "controller"):
            return True
        if pnet.proc is None or not pnet.proc.alive:
            self.confirmed.discard(key)
            return False
        if key in self.confirmed:
            return True                  # probed Ready once: stays Ready while its process runs
        ok = self.backend._probe(pnet, "/healthz" if pnet.role == "app" else None)
        if ok:
            self.confirmed.add(key)
        return ok

    # ------------------------------------------------------------------ objects as the API shows them
    def _other(self) -> dict:
        return self.backend.model()._other

    def namespaces(self) -> list[str]:
        names = set(SYSTEM_NAMESPACES) | {k[2] for k in self._other() if k[0] == "Namespace"}
        return sorted(names)

    def objects(self, kind: str) -> list[dict]:
        """Every object of a Kind, API-shaped (the model's, with the status a cluster would show)."""
        cl = self.backend.model()
        if kind in MODEL_KINDS:
            items = cl.to_dicts(kind)
            if kind == "Pod":
                items = [self._pod_status(d) for d in items]
            elif kind == "Node":
                items = [self._node_status(d) for d in items]
            elif kind == "Deployment":
                items = [self._deployment_status(d) for d in items]
            return items
        if kind == "Namespace":
            out = []
            for ns in self.namespaces():
                d = copy.deepcopy(self._other().get(("Namespace", "", ns)) or
                                  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
                d["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns
                d["spec"] = {"finalizers": ["kubernetes"]}
                d["status"] = {"phase": "Active"}
                out.append(d)
            return out
        if kind == "ReplicaSet":
            return [self._replicaset(d) for d in cl.deployments]
        out = []
        for (k, _ns, _n), obj in list(self._other().items()):
            if k == kind:
                d = copy.deepcopy(obj)
                if kind == "Job":
                    d["status"] = {"succeeded": 1, "active": 0, "conditions": [
                        {"type": "Complete", "status": "True", "lastProbeTime": now_iso(), "lastTransitionTime": now_iso()}]}
                out.append(d)
        return out

    def _pod_status(self, d: dict) -> dict:
        key = (d["metadata"]["namespace"], d["metadata"]["name"])
        created = self.backend.created.get(key, self.created)
        d["metadata"]["creationTimestamp"] = now_iso(created)
        d["metadata"]["uid"] = _uid(key)
        st = d["status"]
        ready = st["conditions"][0]["status"] == "True"
        t = now_iso(self.ready_since.get(key, created))
        running = st["phase"] == "Running"
        st["conditions"] = [
            {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now_iso(created)},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now_iso(created)},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": t,
             **({} if ready else {"reason": "ContainersNotReady",
                                  "message": "containers with unready status: [" +
                                  " ".join(ct["name"] for ct in d["spec"]["containers"]) + "]"})},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": t},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso(created)},
        ]
        st["qosClass"] = "BestEffort"
        st["startTime"] = now_iso(created)
        w = self.waiting.get(key)
        statuses = []
        for ct in d["spec"]["containers"]:
            cs = {"name": ct["name"], "image": ct["image"], "imageID": "", "ready": ready, "restartCount": 0,
                  "started": running, "containerID": ""}
            if w and ct["image"] == w["image"]:
                cs["state"] = {"waiting": {"reason": w["reason"], "message": w["message"]}}
                cs["started"] = False
            else:
                cs["state"] = {"running": {"startedAt": now_iso(created)}}
                cs["containerID"] = "containerd://" + _cid(key, ct["name"])
                cs["imageID"] = c.fully_qualified(ct["image"]).split(":")[0] + "@sha256:" + \
                    hashlib.sha256(ct["image"].encode()).hexdigest()
            statuses.append(cs)
        st["containerStatuses"] = statuses
        if not st.get("podIP"):
            st.pop("podIP", None)
        return d

    def _node_status(self, d: dict) -> dict:
        name = d["metadata"]["name"]
        d["metadata"]["creationTimestamp"] = now_iso(self.created)
        d["spec"]["providerID"] = f"kind://docker/{self.name}/{name}"
        if not d["spec"].get("taints"):
            d["spec"].pop("taints", None)
        d["status"]["conditions"] = [{"type": t, "status": "False", "reason": r, "lastTransitionTime": now_iso(self.created)}
                                     for t, r in (("MemoryPressure", "KubeletHasSufficientMemory"),
                                                  ("DiskPressure", "KubeletHasNoDiskPressure"),
                                                  ("PIDPressure", "KubeletHasSufficientPID"))] + \
            [{"type": "Ready", "status": "True", "reason": "KubeletReady",
              "message": "kubelet is posting ready status", "lastTransitionTime": now_iso(self.created)}]
        d["status"]["nodeInfo"] = {"architecture": "amd64", "containerRuntimeVersion": "containerd://2.1.4",
                                   "kernelVersion": c.docker_info()["KernelVersion"], "kubeProxyVersion": "",
                                   "kubeletVersion": KUBELET_VERSION, "operatingSystem": "linux",
                                   "osImage": "Debian GNU/Linux 12 (bookworm)"}
        return d

    def _deployment_status(self, d: dict) -> dict:
        ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
        pods = [p for p in self.backend.model().pods if p.namespace == ns and p.owner == f"Deployment/{name}"]
        ready = sum(1 for p in pods if p.ready)
        want = d["spec"]["replicas"]
        d["metadata"]["generation"] = 1
        d["status"] = {"observedGeneration": 1, "replicas": len(pods), "updatedReplicas": len(pods),
                       "readyReplicas": ready, "availableReplicas": ready,
                       "unavailableReplicas": max(0, want - ready),
                       "conditions": [{"type": "Available", "status": "True" if ready >= want else "False",
                                       "reason": "MinimumReplicasAvailable" if ready >= want else
                                       "MinimumReplicasUnavailable"},
                                      {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"
                                       if ready >= want else "ReplicaSetUpdated"}]}
        for k in ("readyReplicas", "availableReplicas", "unavailableReplicas"):
            if not d["status"][k]:
                del d["status"][k]
        return d

    def _replicaset(self, dep) -> dict:
        pods = [p for p in self.backend.model().pods if p.namespace == dep.namespace and p.owner == f"Deployment/{dep.name}"]
        rs = pods[0].name.rsplit("-", 1)[0] if pods else f"{dep.name}-0"
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": rs, "namespace": dep.namespace, "labels": dict(dep.template_labels),
                             "ownerReferences": [{"kind": "Deployment", "name": dep.name}]},
                "spec": {"replicas": dep.replicas, "selector": {"matchLabels": dict(dep.selector)}},
                "status": {"replicas": len(pods), "readyReplicas": sum(1 for p in pods if p.ready)}}

    # ------------------------------------------------------------------ kubectl
    def kubectl(self, argv: list[str], stdin: str | None, cwd: str, env: dict, o: Out) -> int:
        args = list(argv)
        c.kubeconfig_cluster(args, env, cwd)
        ns = take(args, "-n", "--namespace")
        all_ns = take(args, "-A", "--all-namespaces", flag=True)
        take(args, "--request-timeout")
        take(args, "-v", "--v")
        pos = [a for a in args if not a.startswith("-")]
        if not args:
            o.err("error: no command\n")
            return 1
        verb = args[0]
        rest = args[1:]
        handler = getattr(self, f"k_{verb.replace('-', '_')}", None)
        if handler is None:
            o.err(f'error: unknown command "{verb}" for "kubectl"\n')
            return 1
        if verb not in ("exec", "version"):
            self.refresh()
        return handler(rest, ns, bool(all_ns), stdin, cwd, env, o)

    def k_version(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        out = take(rest, "-o", "--output")
        client_only = take(rest, "--client", flag=True)
        server = {"major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
                  "minCompatibilityMajor": "1", "minCompatibilityMinor": "34", "gitVersion": KUBELET_VERSION,
                  "gitCommit": hashlib.sha1(KUBELET_VERSION.encode()).hexdigest(), "gitTreeState": "clean",
                  "buildDate": "2026-05-12T09:00:00Z", "goVersion": "go1.25.9", "compiler": "gc",
                  "platform": "linux/amd64"}
        data = {"clientVersion": c.KUBECTL_CLIENT, "kustomizeVersion": c.KUSTOMIZE_VERSION}
        if not client_only:
            data["serverVersion"] = server
        if out == "json":
            # kubectl pkg/cmd/version/version.go: json.MarshalIndent(versionInfo, "", "  ")
            o.out(json.dumps(data, indent=2) + "\n")
        else:
            o.out(f"Client Version: {c.KUBECTL_CLIENT['gitVersion']}\nKustomize Version: {c.KUSTOMIZE_VERSION}\n"
                  + ("" if client_only else f"Server Version: {KUBELET_VERSION}\n"))
        return 0

    # --- get
    def _select(self, items: list[dict], ns: str | None, all_ns: bool, namespaced: bool, selector: str | None,
                field_selector: str | None = None) -> list[dict]:
        if namespaced and not all_ns:
            items = [i for i in items if i["metadata"].get("namespace") == (ns or "default")]
        if selector:
            items = [i for i in items if match_labels(i["metadata"].get("labels") or {}, selector)]
        if field_selector:
            for part in field_selector.split(","):
                k, _, v = part.partition("=")
                items = [i for i in items if str(_path(i, k.lstrip("."))) == v.lstrip("=")]
        return items

    def k_get(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        out = take(rest, "-o", "--output")
        selector = take(rest, "-l", "--selector")
        fsel = take(rest, "--field-selector")
        take(rest, "--show-labels", flag=True)
        take(rest, "--sort-by")
        ignore_nf = take(rest, "--ignore-not-found", flag=True)
        pos = [a for a in rest if not a.startswith("-")]
        if not pos:
            o.err("You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list "
                  "of supported resources.\n\nerror: Required resource not specified.\n")
            return 1
        names: list[tuple[str, str]] = []
        kinds: list[str] = []
        if "/" in pos[0]:
            for p in pos:
                k, _, n = p.partition("/")
                names.append((k, n))
        else:
            kinds = pos[0].split(",")
            names = [(kinds[0], n) for n in pos[1:]]
        with self.lock:
            if names:
                found, errs = [], []
                for kword, name in names:
                    info = resolve_kind(kword)
                    if info is None:
                        o.err(f'error: the server doesn\'t have a resource type "{kword}"\n')
                        return 1
                    items = self._select(self.objects(info[0]), ns, False, info[3], None)
                    hit = [i for i in items if i["metadata"]["name"] == name]
                    if hit:
                        found.append(hit[0])
                    else:
                        errs.append(not_found(info[0], name))
                if errs and (len(names) == 1 or ignore_nf):
                    # kubectl pkg/cmd/get/get.go printGeneric: a single implied item's error is returned
                    # before anything is printed; --ignore-not-found prints nothing for it
                    if ignore_nf:
                        return 0
                    o.err(errs[0])
                    return 1
                if out == "json":
                    o.out(kube_json(found[0] if len(found) == 1 and len(names) == 1 else _list(found)))
                elif out in ("yaml",):
                    o.out(yaml.safe_dump(found[0] if len(found) == 1 else _list(found), sort_keys=True))
                elif out and out.startswith("jsonpath"):
                    o.out(jsonpath(out, found[0] if len(found) == 1 and len(names) == 1 else _list(found)))
                elif found:
                    o.out(table(found, all_ns=False, ns=ns))
                for e in errs:
                    o.err(e)
                return 1 if errs else 0
            items = []
            for kword in kinds:
                info = resolve_kind(kword)
                if info is None:
                    o.err(f'error: the server doesn\'t have a resource type "{kword}"\n')
                    return 1
                items += self._select(self.objects(info[0]), ns, all_ns, info[3], selector, fsel)
        if out == "json":
            # yaml k9b-pods-all-namespaces-json: a List, "items": [] when empty, exit 0
            o.out(kube_json(_list(items)))
        elif out == "yaml":
            o.out(yaml.safe_dump(_list(items), sort_keys=True))
        elif out == "name":
            o.out("".join(f"{kind_group(i['kind'])}/{i['metadata']['name']}\n" for i in items))
        elif out and out.startswith("jsonpath"):
            o.out(jsonpath(out, _list(items)))
        elif not items:
            # kubectl pkg/cmd/get/get.go: "No resources found in %s namespace." / "No resources found" (stderr)
            info = resolve_kind(kinds[0])
            o.err("No resources found\n" if all_ns or not info[3] else f"No resources found in {ns or 'default'} namespace.\n")
        else:
            o.out(table(items, all_ns=all_ns, ns=ns))
        return 0

    # --- apply / delete / scale / label / run
    def _docs(self, files: list[str], stdin: str | None, cwd: str) -> list[tuple[dict, str]]:
        docs = []
        for f in files:
            text = stdin or "" if f == "-" else Path(cwd, f).read_text()
            source = "STDIN" if f == "-" else f
            for d in yaml.safe_load_all(text):
                if not d:
                    continue
                if d.get("kind", "").endswith("List") and isinstance(d.get("items"), list):
                    docs += [(i, source) for i in d["items"]]
                else:
                    docs.append((d, source))
        return docs

    def k_apply(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        files = take_all(rest, "-f", "--filename")
        server_side = take(rest, "--server-side", flag=True)
        manager = take(rest, "--field-manager") or ("kubectl" if server_side else "kubectl-client-side-apply")
        force = take(rest, "--force-conflicts", flag=True)
        docs = self._docs(files, stdin, cwd)
        lines = []
        errors = []
        with self.lock:
            objs = []
            for d, _src in docs:
                d = copy.deepcopy(d)
                info = BY_KIND.get(d.get("kind", ""))
                meta = d.setdefault("metadata", {})
                if (info is None or info[3]) and not meta.get("namespace"):
                    meta["namespace"] = ns or "default"
                if server_side:
                    conflict = self._claim_fields(d, manager, bool(force))
                    if conflict:
                        errors.append(conflict)
                        continue
                objs.append(d)
            existed = [self._exists(d) for d in objs]
            try:
                names = self.backend.apply(objs)
            except (K8sLabError, ValueError) as exc:
                o.err(f"error: {exc}\n")
                return 1
            self._ttl_jobs()
            for obj, n, was in zip(objs, names, existed):
                kname = kind_group(obj["kind"]) + "/" + obj["metadata"]["name"]
                if server_side:
                    lines.append(f"{kname} serverside-applied\n")      # yaml k4a-apply-server-side-ok
                else:
                    # client-side apply (kubectl apply.go): "created" / "configured"
                    lines.append(f"{kname} {'configured' if was else 'created'}\n")
        self.refresh()
        o.out("".join(lines))
        if len(errors) == 1:
            o.err("error: " + errors[0])
        elif errors:
            o.err("".join(errors))          # an aggregate: no "error: " prefix (yaml k4b notes)
        return 1 if errors else 0

    def _claim_fields(self, obj: dict, manager: str, force: bool) -> str | None:
        """Server-side apply's field ownership, for Apply managers: a field another manager set to a
        different value is a conflict unless --force-conflicts (then it changes hands). Message:
        apimachinery pkg/util/managedfields/internal/conflict.go and kubectl apply.go (yaml k4b)."""
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        owners = self.managed.setdefault(key, {})
        mine = dict(leaf_fields(obj))
        clashes: dict[str, list[str]] = {}
        for other, fields in owners.items():
            if other == manager:
                continue
            for path, value in fields.items():
                if path in mine and mine[path] != value:
                    clashes.setdefault(other, []).append(path)
        if clashes and not force:
            n = sum(len(v) for v in clashes.values())
            if n == 1:
                (who, paths), = clashes.items()
                head = f'Apply failed with 1 conflict: conflict with "{who}": {paths[0]}'
            else:
                parts = [f'conflicts with "{who}":\n' + "".join(f"- {p}\n" for p in paths) for who, paths in clashes.items()]
                head = f"Apply failed with {n} conflicts: " + "".join(parts).rstrip("\n")
            return (head + "\nPlease review the fields above--they currently have other managers. Here\n"
                    "are the ways you can resolve this warning:\n"
                    "* If you intend to manage all of these fields, please re-run the apply\n"
                    "  command with the `--force-conflicts` flag.\n"
                    "* If you do not intend to manage all of the fields, please edit your\n"
                    "  manifest to remove references to the fields that should keep their\n"
                    "  current managers.\n"
                    "* You may co-own fields by updating your manifest to match the existing\n"
                    "  value; in this case, you'll become the manager if the other manager(s)\n"
                    "  stop managing the field (remove it from their configuration).\n"
                    "See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts\n")
        for who, paths in clashes.items():
            for p in paths:
                owners[who].pop(p, None)
        owners[manager] = mine
        return None

    def _exists(self, d: dict) -> bool:
        kind, meta = d.get("kind", ""), d.get("metadata") or {}
        if kind in MODEL_KINDS:
            info = BY_KIND[kind]
            return any(i["metadata"]["name"] == meta.get("name") and
                       (not info[3] or i["metadata"].get("namespace") == meta.get("namespace"))
                       for i in self.backend.model().to_dicts(kind))
        return (kind, meta.get("namespace", "") if BY_KIND.get(kind, (0, 0, 0, True))[3] else "",
                meta.get("name")) in self._other()

    def _ttl_jobs(self) -> None:
        """Jobs complete at once (nothing to run) and, with ttlSecondsAfterFinished: 0, the TTL
        controller deletes them right after, as on a real cluster."""
        other = self._other()
        for key in [k for k, v in other.items() if k[0] == "Job" and
                    (v.get("spec") or {}).get("ttlSecondsAfterFinished") == 0]:
            del other[key]

    def _delete_one(self, kind: str, name: str, ns: str) -> bool:
        info = BY_KIND[kind]
        self.managed.pop((kind, ns if info[3] else "", name), None)
        if kind in MODEL_KINDS:
            try:
                self.backend.delete(kind, name, ns if info[3] else "default")
                return True
            except NotFound:
                return False
        other = self._other()
        key = (kind, ns if info[3] else "", name)
        if kind == "Namespace":
            key = ("Namespace", "", name)
        if key in other:
            del other[key]
            if kind == "Namespace":
                for k in [k for k in other if k[1] == name]:
                    del other[k]
                for d in [d for d in self.backend.model().deployments if d.namespace == name]:
                    self.backend.delete("deployment", d.name, name)
                for s in [s for s in self.backend.model().services if s.namespace == name]:
                    self.backend.delete("service", s.name, name)
                for p in [p for p in self.backend.model().pods if p.namespace == name]:
                    self.backend.delete("pod", p.name, name)
            return True
        return False

    def k_delete(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        files = take_all(rest, "-f", "--filename")
        ignore = take(rest, "--ignore-not-found", flag=True)
        take(rest, "--wait", flag=True)
        take(rest, "--now", flag=True)
        grace = take(rest, "--grace-period")
        selector = take(rest, "-l", "--selector")
        take(rest, "--force", flag=True)
        op = "force deleted" if grace == "0" else "deleted"
        pos = [a for a in rest if not a.startswith("-")]
        targets: list[tuple[str, str, str, str]] = []     # kind, name, ns, source
        with self.lock:
            if files:
                for d, src in self._docs(files, stdin, cwd):
                    info = BY_KIND.get(d.get("kind", ""))
                    if info is None:
                        continue
                    targets.append((info[0], d["metadata"]["name"], d["metadata"].get("namespace") or ns or "default", src))
            elif pos and "/" in pos[0]:
                for p in pos:
                    k, _, n = p.partition("/")
                    info = resolve_kind(k)
                    targets.append((info[0], n, ns or "default", ""))
            elif pos:
                info = resolve_kind(pos[0])
                if info is None:
                    o.err(f'error: the server doesn\'t have a resource type "{pos[0]}"\n')
                    return 1
                if selector:
                    ignore = True
                    for i in self._select(self.objects(info[0]), ns, all_ns, info[3], selector):
                        targets.append((info[0], i["metadata"]["name"], i["metadata"].get("namespace", ""), ""))
                    if not targets:
                        o.out("No resources found\n")
                        return 0
                for n in pos[1:]:
                    targets.append((info[0], n, ns or "default", ""))
            rc = 0
            for kind, name, tns, src in targets:
                if self._delete_one(kind, name, tns):
                    where = f" from {tns} namespace" if BY_KIND[kind][3] else ""
                    # kubectl pkg/cmd/delete/delete.go PrintObj (1.34+: "... deleted from NS namespace")
                    o.out(f'{kind_group(kind)} "{name}" {op}{where}\n')
                elif not ignore:
                    rc = 1
                    if src:
                        # yaml k8b-delete-file-notfound (AddSourceToErr)
                        o.err(f'Error from server (NotFound): error when deleting "{src}": '
                              f'{resource_name(kind)} "{name}" not found\n')
                    else:
                        o.err(not_found(kind, name))          # yaml k8a-delete-notfound
            self.write_nodes()
        return rc

    def k_scale(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        replicas = take(rest, "--replicas")
        pos = [a for a in rest if not a.startswith("-")]
        kind, _, name = pos[0].partition("/") if "/" in pos[0] else (pos[0], "/", pos[1] if len(pos) > 1 else "")
        info = resolve_kind(kind)
        if replicas is None:
            o.err("error: required flag(s) \"replicas\" not set\n")
            return 1
        with self.lock:
            try:
                self.backend.scale(name, int(replicas), ns or "default")
            except NotFound:
                o.err(not_found(info[0], name))
                return 1
        o.out(f"{kind_group(info[0])}/{name} scaled\n")
        self.refresh()
        return 0

    def k_label(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        overwrite = take(rest, "--overwrite", flag=True)
        pos = [a for a in rest if not a.startswith("-")]
        if "/" in pos[0]:
            kind, _, name = pos[0].partition("/")
            changes = pos[1:]
        else:
            kind, name, changes = pos[0], pos[1], pos[2:]
        info = resolve_kind(kind)
        with self.lock:
            cl = self.backend.model()
            obj = None
            if info[0] == "Node":
                obj = cl._nodes.get(name)
            elif info[0] == "Pod":
                obj = cl._pods.get((ns or "default", name))
            elif info[0] == "Service":
                obj = cl._services.get((ns or "default", name))
            elif info[0] == "Deployment":
                obj = cl._deployments.get((ns or "default", name))
            if obj is None:
                o.err(not_found(info[0], name))
                return 1
            for ch in changes:
                if ch.endswith("-"):
                    obj.labels.pop(ch[:-1], None)
                    continue
                k, _, v = ch.partition("=")
                if k in obj.labels and obj.labels[k] != v and not overwrite:
                    # kubectl pkg/cmd/label/label.go validateNoOverwrites
                    o.err(f"error: '{k}' already has a value ({obj.labels[k]}), and --overwrite is false\n")
                    return 1
                obj.labels[k] = v
            self.backend._reconcile()
        o.out(f"{kind_group(info[0])}/{name} labeled\n")
        return 0

    def k_run(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        before, cmd = c.split_dashdash(rest)
        image = take(before, "--image")
        take(before, "--restart")
        labels = take(before, "--labels", "-l")
        rm = take(before, "--rm", flag=True)
        interactive = take(before, "-i", "--stdin", flag=True)
        take(before, "-t", "--tty", flag=True)
        quiet = take(before, "-q", "--quiet", flag=True)
        take(before, "--command", flag=True)
        take(before, "--pod-running-timeout")
        take(before, "--image-pull-policy")
        name = [a for a in before if not a.startswith("-")][0]
        namespace = ns or "default"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace,
                            "labels": dict(x.split("=", 1) for x in labels.split(",")) if labels else {"run": name}},
               "spec": {"containers": [{"name": name, "image": image}]}}
        with self.lock:
            if (namespace, name) in self.backend.model()._pods:
                o.err(f'Error from server (AlreadyExists): pods "{name}" already exists\n')
                return 1
            self.backend.apply([pod])
        self.refresh()
        if not (interactive and cmd):
            o.out(f"pod/{name} created\n")
            return 0
        rc = self._exec_in_pod(namespace, name, cmd, stdin, o, quiet=True)
        if rm:
            with self.lock:
                self.backend.delete("pod", name, namespace)
            if not quiet:
                o.out(f'pod "{name}" deleted from {namespace} namespace\n')
        return rc

    # --- wait / rollout
    def _wait_targets(self, rest: list[str], ns, all_ns) -> tuple[list[tuple[str, str, str]], str | None]:
        selector = take(rest, "-l", "--selector")
        everything = take(rest, "--all", flag=True)
        pos = [a for a in rest if not a.startswith("-")]
        targets = []
        if pos and "/" in pos[0]:
            for p in pos:
                k, _, n = p.partition("/")
                info = resolve_kind(k)
                targets.append((info[0], n, ns or "default"))
            return targets, None
        info = resolve_kind(pos[0])
        if info is None:
            return [], f'error: the server doesn\'t have a resource type "{pos[0]}"\n'
        if len(pos) > 1:
            return [(info[0], n, ns or "default") for n in pos[1:]], None
        if not (selector or everything):
            return [], "error: resource(s) were provided, but no name was specified\n"
        items = self._select(self.objects(info[0]), ns, all_ns, info[3], selector)
        return [(info[0], i["metadata"]["name"], i["metadata"].get("namespace", "")) for i in items], None

    def _condition(self, kind: str, name: str, ns: str, cond: str) -> bool | None:
        """Whether the object meets ``condition=cond`` now; None: it does not exist."""
        objs = [i for i in self.objects(kind) if i["metadata"]["name"] == name
                and (not BY_KIND[kind][3] or i["metadata"].get("namespace") == ns)]
        if not objs:
            return None
        st = objs[0].get("status") or {}
        for cnd in st.get("conditions") or []:
            if cnd.get("type", "").lower() == cond.lower():
                return cnd.get("status") == "True"
        return False

    def k_wait(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        """kubectl wait --for=condition=C|delete: one deadline for the whole command; each object that
        meets it prints "<kind>/<name> condition met" (kubectl pkg/cmd/wait; yaml k2b, k2c)."""
        fors = take_all(rest, "--for")
        timeout = c.parse_duration(take(rest, "--timeout"), 30.0)
        deadline = time.monotonic() + timeout
        with self.lock:
            targets, err = self._wait_targets(rest, ns, all_ns)
        if err:
            o.err(err)
            return 1
        if not targets and not any(f == "delete" for f in fors):
            # kubectl pkg/cmd/wait/wait.go: errNoMatchingResources = errors.New("no matching resources found")
            o.err("error: no matching resources found\n")
            return 1
        cond = next((f.split("=", 1)[1] for f in fors if f.startswith("condition=")), None)
        errors = []
        for kind, name, tns in targets:
            resource = BY_KIND[kind][1]
            while True:
                with self.lock:
                    self.refresh()
                    if fors == ["delete"]:
                        state = self._condition(kind, name, tns, "Ready")
                        met = state is None
                    else:
                        state = self._condition(kind, name, tns, cond or "Ready")
                        if state is None:
                            errors.append(not_found(kind, name).rstrip("\n"))
                            break
                        met = state
                if met:
                    o.out(f"{kind.lower()}/{name} condition met\n")
                    break
                if time.monotonic() >= deadline:
                    errors.append(f"timed out waiting for the condition on {resource}/{name}")
                    break
                time.sleep(0.05)
        if not errors:
            return 0
        if len(errors) == 1:
            o.err(("error: " + errors[0] if not errors[0].startswith("Error from server") else errors[0]) + "\n")
        else:
            o.err("".join(e + "\n" for e in errors))           # yaml k2c: aggregate, no "error: " prefix
        return 1

    def k_rollout(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        if not rest or rest[0] != "status":
            o.err(f'error: unknown command "{rest[0] if rest else ""}" for "kubectl rollout"\n')
            return 1
        rest = rest[1:]
        timeout = c.parse_duration(take(rest, "--timeout"), 0.0)
        take(rest, "-w", "--watch", flag=True)
        pos = [a for a in rest if not a.startswith("-")]
        kind, _, name = pos[0].partition("/") if "/" in pos[0] else (pos[0], "/", pos[1])
        info = resolve_kind(kind)
        namespace = ns or "default"
        deadline = time.monotonic() + timeout if timeout else None
        last = None
        while True:
            with self.lock:
                self.refresh()
                dep = next((d for d in self.objects("Deployment") if d["metadata"]["name"] == name
                            and d["metadata"]["namespace"] == namespace), None)
            if dep is None:
                o.err(not_found(info[0], name))             # yaml k3b notes: deployment missing
                return 1
            st, want = dep["status"], dep["spec"]["replicas"]
            updated, avail = st.get("updatedReplicas", 0), st.get("availableReplicas", 0)
            replicas = st.get("replicas", 0)
            # kubectl pkg/polymorphichelpers/rollout_status.go DeploymentStatusViewer.Status
            if updated < want:
                line = f'Waiting for deployment "{name}" rollout to finish: {updated} out of {want} new replicas have been updated...\n'
            elif replicas > updated:
                line = f'Waiting for deployment "{name}" rollout to finish: {replicas - updated} old replicas are pending termination...\n'
            elif avail < updated:
                line = f'Waiting for deployment "{name}" rollout to finish: {avail} of {updated} updated replicas are available...\n'
            else:
                o.out(f'deployment "{name}" successfully rolled out\n')     # yaml k3a
                return 0
            if line != last:
                o.out(line)
                last = line
            if deadline is not None and time.monotonic() >= deadline:
                o.err("error: timed out waiting for the condition\n")        # yaml k3b
                return 1
            time.sleep(0.05)

    # --- exec
    def _pod_for(self, target: str, ns: str) -> tuple[object | None, str]:
        """A pod from POD, pod/NAME, deploy/NAME or svc/NAME (first active pod, as kubectl picks)."""
        cl = self.backend.model()
        if "/" in target:
            k, _, name = target.partition("/")
            info = resolve_kind(k)
            if info is None:
                return None, f'error: the server doesn\'t have a resource type "{k}"\n'
        else:
            info, name = KINDS["pod"], target
        kind = info[0]
        if kind == "Pod":
            p = cl._pods.get((ns, name))
            return (p, "") if p else (None, not_found("Pod", name))
        if kind == "Deployment":
            d = cl._deployments.get((ns, name))
            if d is None:
                return None, not_found("Deployment", name)
            pods = [p for p in cl.pods if p.namespace == ns and p.owner == f"Deployment/{name}"]
        elif kind == "Service":
            s = cl._services.get((ns, name))
            if s is None:
                return None, not_found("Service", name)
            if not s.selector:
                return None, (f"error: cannot attach to *v1.Service: invalid service '{name}': Service is defined "
                              "without a selector\n")
            pods = [p for p in cl.pods if p.namespace == ns and all(p.labels.get(k) == v for k, v in s.selector.items())]
        else:
            return None, f"error: cannot attach to {kind}\n"
        # sort.Reverse(podutils.ActivePods): Running and Ready pods first
        pods.sort(key=lambda p: (p.phase != "Running", not p.ready, p.name))
        if not pods:
            return None, "error: timed out waiting for the condition\n"
        return pods[0], ""

    def k_exec(self, rest, ns, all_ns, stdin, cwd, env, o) -> int:
        before, cmd = c.split_dashdash(rest)
        take(before, "-c", "--container")
        take(before, "-i", "--stdin", flag=True)
        take(before, "-t", "--tty", flag=True)
        take(before, "-q", "--quiet", flag=True)
        pos = [a for a in before if not a.startswith("-")]
        if not pos:
            o.err("error: pod, type/name or --filename must be specified\n")
            return 1
        if not cmd:
            o.err("error: you must specify at least one command for the container\n")
            return 1
        with self.lock:
            self.refresh()
            pod, err = self._pod_for(pos[0], ns or "default")
        if pod is None:
            o.err(err)
            return 1
        return self._exec_in_pod(pod.namespace, pod.name, cmd, stdin, o)

    def _exec_in_pod(self, ns: str, name: str, cmd: list[str], stdin: str | None, o: Out, quiet=False) -> int:
        b = self.backend
        pod = b.model()._pods.get((ns, name))
        if pod is not None and pod.phase in ("Succeeded", "Failed"):
            o.err(f"error: cannot exec into a container in a completed pod; current phase is {pod.phase}\n")
            return 1
        if pod is not None and pod.key in self.waiting:
            # the container was never created (its image could not be had)
            o.err(f'error: Internal error occurred: unable to upgrade connection: container not found ("{pod.containers[0].name}")\n')
            return 1
        pnet = b._pods.get((ns, name))
        if pnet is None:           # a hostNetwork pod: the node's namespace
            netns = b._node(pod.node_name).netns
        else:
            netns = pnet.netns
        if pnet is not None and pnet.role == "controller":
            # The controller's container filesystem: the netns backend keeps nginx's real files under its
            # state dir; /etc/nginx/nginx.conf in the pod stands for that file.
            real = str(b.state / "nginx" / "nginx.conf")
            cmd = [real if a == "/etc/nginx/nginx.conf" else a for a in cmd]
        if pod is not None and len(pod.containers) > 1:
            names = ", ".join(ct.name for ct in pod.containers)
            o.err(f'Defaulted container "{pod.containers[0].name}" out of: {names}\n')
        rc = run_streamed(["ip", "netns", "exec", netns, *cmd], stdin, o, cwd="/")
        if rc != 0:
            # client-go tools/remotecommand/v4.go errorDecoderV4 (yaml k6b-exec-nonzero-exit)
            o.err(f"command terminated with exit code {rc}\n")
        return rc

    # --- port-forward: resolved here, relayed by the kubectl client itself
    def resolve_forward(self, argv: list[str], cwd: str, env: dict) -> dict:
        """Which pod namespace and container port ``kubectl port-forward TARGET LOCAL:REMOTE`` reaches
        (kubectl pkg/cmd/portforward/portforward.go translateServicePortToTargetPort; yaml k5a, k5c)."""
        args = list(argv)
        c.kubeconfig_cluster(args, env, cwd)
        ns = take(args, "-n", "--namespace") or "default"
        take(args, "--address")
        take(args, "--pod-running-timeout")
        pos = [a for a in args if not a.startswith("-")][1:]       # after "port-forward"
        if len(pos) < 2:
            return {"err": "error: TYPE/NAME and list of ports are required for port-forward\n", "rc": 1}
        target, specs = pos[0], pos[1:]
        with self.lock:
            self.refresh()
            pod, err = self._pod_for(target, ns)
            if pod is None:
                return {"err": err, "rc": 1}
            ports = []
            cl = self.backend.model()
            for spec in specs:
                local, _, remote = spec.partition(":")
                remote = remote or local
                rport = int(remote) if remote.isdigit() else remote
                if target.split("/")[0] in ("svc", "service", "services"):
                    svc = cl._services[(ns, target.split("/", 1)[1])]
                    sp = next((p for p in svc.ports if p.port == rport or p.name == rport), None)
                    if sp is None:
                        return {"err": f"error: Service {svc.name} does not have a service port {remote}\n", "rc": 1}
                    if svc.headless:
                        cport = sp.port
                    else:
                        cport = pod.resolve_port(sp.effective_target_port, sp.protocol)
                elif isinstance(rport, str):
                    cport = next((p.container_port for p in pod.container_ports() if p.name == rport), None)
                    if cport is None:
                        return {"err": f"error: Pod '{pod.name}' does not have a named port '{rport}'\n", "rc": 1}
                else:
                    cport = rport
                ports.append([int(local) if local else 0, int(cport)])
            if pod.phase != "Running":
                return {"err": f"error: unable to forward port because pod is not running. Current status={pod.phase}\n",
                        "rc": 1}                                          # yaml k5c
            pnet = self.backend._pods.get(pod.key)
            netns = pnet.netns if pnet else self.backend._node(pod.node_name).netns
        return {"netns": netns, "ports": ports, "pod": pod.name, "namespace": pod.namespace}

    # ------------------------------------------------------------------ docker exec NODE ...
    def docker_exec(self, argv: list[str], stdin: str | None, o: Out) -> int:
        # docker exec [OPTIONS] CONTAINER COMMAND [ARG...]: options end at the container's name
        i = 0
        while i < len(argv) and argv[i].startswith("-"):
            i += 2 if argv[i] in ("-e", "--env", "-w", "--workdir", "-u", "--user", "--env-file") else 1
        node, cmd = argv[i], argv[i + 1:]
        b = self.backend
        nn = next((n for n in b._nodes.values() if n.name == node or
                   hashlib.sha256(f"{self.name}/{n.name}/container".encode()).hexdigest().startswith(node)), None)
        if nn is None:
            o.err(f"Error response from daemon: No such container: {node}\n")
            return 1
        if cmd and cmd[0] == "crictl":
            return self.crictl(nn.name, cmd[1:], o)
        if cmd and shutil.which(cmd[0], path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None \
                and "/" not in cmd[0]:
            # docker/cli: the runtime's error for a missing program, exit 127
            o.err(f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{cmd[0]}": '
                  "executable file not found in $PATH: unknown\n")
            return 127
        return run_streamed(["ip", "netns", "exec", nn.netns, *cmd], stdin, o, cwd="/")

    def crictl(self, node: str, args: list[str], o: Out) -> int:
        """crictl on a node, in cri-tools' JSON (protojson, 2-space indent, defaults emitted:
        cmd/crictl/util.go outputProtobufObjAsJSON; ListContainersResponse {"containers"} in
        container.go, ListPodSandboxResponse {"items"} in sandbox.go; inspectp {"status", "info"})."""
        b = self.backend
        with self.lock:
            self.refresh()
            pods = [p for p in b.model().pods if p.node_name == node]
        out = take(args, "-o", "--output")
        if args[:1] == ["ps"]:
            rest = args[1:]
            name = take(rest, "--name")
            pod_id = take(rest, "--pod", "-p")
            take(rest, "-a", "--all", flag=True)
            conts = []
            for p in pods:
                if p.key in self.waiting:
                    continue
                for ct in p.containers:
                    if name and not re.search(name, ct.name):
                        continue
                    if pod_id and not p.container_id.startswith(pod_id):
                        continue
                    conts.append({
                        "id": _cid(p.key, ct.name), "podSandboxId": p.container_id,
                        "metadata": {"name": ct.name, "attempt": 0},
                        "image": {"image": c.fully_qualified(ct.image) if ct.image else "", "annotations": {},
                                  "userSpecifiedImage": ct.image, "runtimeHandler": ""},
                        "imageRef": "sha256:" + hashlib.sha256(ct.image.encode()).hexdigest(),
                        "state": "CONTAINER_RUNNING", "createdAt": str(int(b.created.get(p.key, self.created) * 1e9)),
                        "labels": {"io.kubernetes.container.name": ct.name, "io.kubernetes.pod.name": p.name,
                                   "io.kubernetes.pod.namespace": p.namespace, "io.kubernetes.pod.uid": _uid(p.key)},
                        "annotations": {"io.kubernetes.container.restartCount": "0"}, "imageId": ""})
            if out == "json":
                o.out(json.dumps({"containers": conts}, indent=2) + "\n")
            else:
                o.out("CONTAINER           IMAGE               CREATED             STATE               NAME"
                      "                ATTEMPT             POD ID              POD\n")
                for ct in conts:
                    o.out(f"{ct['id'][:13]}       {ct['imageRef'][7:20]}       now                 Running"
                          f"             {ct['metadata']['name']:<19} 0                   {ct['podSandboxId'][:13]}"
                          f"       {ct['labels']['io.kubernetes.pod.name']}\n")
            return 0
        if args[:1] == ["pods"]:
            rest = args[1:]
            name = take(rest, "--name")
            nsf = take(rest, "--namespace")
            items = []
            for p in pods:
                if p.host_network and p.key not in b._pods:
                    pass
                if name and not re.search(name, p.name):
                    continue
                if nsf and not re.search(nsf, p.namespace):
                    continue
                items.append({"id": p.container_id, "metadata": {"name": p.name, "uid": _uid(p.key),
                                                                 "namespace": p.namespace, "attempt": 0},
                              "state": "SANDBOX_READY", "createdAt": str(int(b.created.get(p.key, self.created) * 1e9)),
                              "labels": {**p.labels, "io.kubernetes.pod.name": p.name,
                                         "io.kubernetes.pod.namespace": p.namespace, "io.kubernetes.pod.uid": _uid(p.key)},
                              "annotations": {}, "runtimeHandler": ""})
            if out == "json":
                o.out(json.dumps({"items": items}, indent=2) + "\n")
            else:
                o.out("POD ID              CREATED             STATE               NAME                NAMESPACE"
                      "           ATTEMPT             RUNTIME\n")
                for i in items:
                    o.out(f"{i['id'][:13]}       now                 Ready               {i['metadata']['name']}"
                          f"   {i['metadata']['namespace']}   0                   (default)\n")
            return 0
        if args[:1] == ["inspectp"]:
            ids = [a for a in args[1:] if not a.startswith("-")]
            p = next((p for p in pods if ids and p.container_id.startswith(ids[0])), None)
            if p is None:
                # cri-tools sandbox.go: "get pod sandbox status: rpc error: code = NotFound desc = an error
                # occurred when try to find sandbox: not found" (containerd's message)
                o.err(f'E0000 00:00:00.000000 1 remote_runtime.go:448] "PodSandboxStatus from runtime service failed" '
                      f'err="rpc error: code = NotFound desc = an error occurred when try to find sandbox: not found" '
                      f'podSandboxID="{ids[0] if ids else ""}"\nFATA[0000] getting the pod sandbox status for '
                      f'"{ids[0] if ids else ""}": rpc error: code = NotFound desc = an error occurred when try to find sandbox: not found\n')
                return 1
            pause = b.pause.get(p.key)
            status = {"id": p.container_id, "metadata": {"name": p.name, "uid": _uid(p.key), "namespace": p.namespace,
                                                          "attempt": 0},
                      "state": "SANDBOX_READY", "createdAt": now_iso(b.created.get(p.key, self.created)),
                      "network": {"additionalIps": [], "ip": p.ip or ""},
                      "linux": {"namespaces": {"options": {"ipc": "POD", "network": "NODE" if p.host_network else "POD",
                                                           "pid": "CONTAINER", "targetId": "", "usernsOptions": None}}},
                      "labels": dict(p.labels), "annotations": {}, "runtimeHandler": "", "containersStatuses": []}
            info = {"pid": pause.pid if pause else 0, "processStatus": "running",
                    "netNamespaceClosed": False, "image": "registry.k8s.io/pause:3.10",
                    "runtimeHandler": "", "runtimeType": "io.containerd.runc.v2"}
            o.out(json.dumps({"status": status, "info": info}, indent=2) + "\n")
            return 0
        o.err(f'No help topic for \'{args[0] if args else ""}\'\n')
        return 1


# --------------------------------------------------------------------------------------------------
def _uid(key) -> str:
    h = hashlib.sha256(("uid/" + "/".join(key)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _cid(key, container: str) -> str:
    return hashlib.sha256(("container/" + "/".join(key) + "/" + container).encode()).hexdigest()


def leaf_fields(obj, path: str = ""):
    """(field path, value) of every leaf an applied object sets, in SSA's path form:
    ``.spec.replicas``, ``.spec.template.spec.containers[name="app"].image``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if path == "" and k in ("apiVersion", "kind"):
                continue
            if path == ".metadata" and k in ("name", "namespace"):
                continue
            yield from leaf_fields(v, f"{path}.{k}")
    elif isinstance(obj, list) and obj and all(isinstance(i, dict) and "name" in i for i in obj):
        for i in obj:
            yield from leaf_fields({k: v for k, v in i.items() if k != "name"}, f'{path}[name="{i["name"]}"]')
    else:
        yield path, json.dumps(obj, sort_keys=True)


def _list(items: list[dict]) -> dict:
    """kubectl's List wrapper (kubectl pkg/cmd/get/get.go printGeneric; yaml k9a/k9b)."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _path(obj, dotted: str):
    cur = obj
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def match_labels(labels: dict, selector: str) -> bool:
    """Equality (=, ==, !=), set-based (in, notin) and existence (k, !k) label selectors."""
    for part in re.findall(r"[^,(]+(?:\([^)]*\))?", selector):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", part)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            if (labels.get(m.group(1)) in vals) != (m.group(2) == "in"):
                return False
        elif "!=" in part:
            k, v = part.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in part:
            k, v = re.split(r"==?", part, maxsplit=1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif part.startswith("!"):
            if part[1:] in labels:
                return False
        elif part not in labels:
            return False
    return True


def jsonpath(expr: str, obj) -> str:
    """A small subset of kubectl's jsonpath: {.a.b}, {.items[*].a}, {.a[0].b}."""
    body = expr.split("=", 1)[1] if "=" in expr else expr
    body = body.strip("'\"")
    out = []
    for tmpl in re.findall(r"\{([^}]*)\}", body):
        vals = [obj]
        for part in re.findall(r"[^.\[\]]+|\[[^\]]*\]", tmpl.lstrip(".")):
            nxt = []
            for v in vals:
                if part.startswith("["):
                    idx = part[1:-1]
                    if isinstance(v, list):
                        nxt += v if idx == "*" else ([v[int(idx)]] if idx.lstrip("-").isdigit() and v else [])
                elif isinstance(v, dict) and part in v:
                    nxt.append(v[part])
            vals = nxt
        out.append(" ".join(json.dumps(v) if isinstance(v, (dict, list)) else str(v) for v in vals))
    return "".join(out)


def table(items: list[dict], all_ns: bool, ns) -> str:
    """kubectl's default table for the common kinds (NAME first; -A adds NAMESPACE)."""
    if not items:
        return ""
    kind = items[0]["kind"]
    rows = []
    for i in items:
        meta, spec, st = i["metadata"], i.get("spec") or {}, i.get("status") or {}
        if kind == "Pod":
            cs = st.get("containerStatuses") or []
            ready = sum(1 for x in cs if x.get("ready"))
            waiting = next(((x.get("state") or {}).get("waiting", {}).get("reason") for x in cs
                            if (x.get("state") or {}).get("waiting")), None)
            row = [meta["name"], f"{ready}/{len(cs)}", waiting or st.get("phase", ""), "0", "1m"]
            head = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        elif kind == "Node":
            roles = ",".join(k.split("/", 1)[1] for k in (meta.get("labels") or {}) if k.startswith("node-role.kubernetes.io/")) or "<none>"
            row = [meta["name"], "Ready", roles, "1m", KUBELET_VERSION]
            head = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
        elif kind == "Service":
            ports = ",".join(f"{p['port']}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
                             for p in spec.get("ports") or [])
            ext = "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"
            row = [meta["name"], spec.get("type", ""), spec.get("clusterIP", ""), ext, ports, "1m"]
            head = ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
        elif kind == "Deployment":
            row = [meta["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
                   str(st.get("updatedReplicas", 0)), str(st.get("availableReplicas", 0)), "1m"]
            head = ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        else:
            row = [meta["name"], "1m"]
            head = ["NAME", "AGE"]
        if all_ns:
            row, head = [meta.get("namespace", "")] + row, ["NAMESPACE"] + head
        rows.append(row)
    widths = [max(len(str(r[k])) for r in rows + [head]) for k in range(len(head))]
    fmt = lambda r: "   ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() + "\n"  # noqa: E731
    return fmt(head) + "".join(fmt(r) for r in rows)


def run_streamed(argv: list[str], stdin: str | None, o: Out, cwd: str = "/") -> int:
    """Run a real program, passing its stdout and stderr on as they come; returns its exit code."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root",
           "LANG": "C.UTF-8"}
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)

    def pump(stream, write):
        for chunk in iter(lambda: stream.read1(65536), b""):
            write(chunk.decode("utf-8", "replace"))
    t1 = threading.Thread(target=pump, args=(proc.stdout, o.out), daemon=True)
    t2 = threading.Thread(target=pump, args=(proc.stderr, o.err), daemon=True)
    t1.start()
    t2.start()
    if stdin is not None:
        try:
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass
    rc = proc.wait()
    t1.join()
    t2.join()
    return rc


# kube-proxy's DaemonSet: kubectl patch ds kube-proxy, its pods going and coming back (kubeproxy.py)
from .kubeproxy import install as _install_kube_proxy  # noqa: E402
_install_kube_proxy(EmuCluster)
