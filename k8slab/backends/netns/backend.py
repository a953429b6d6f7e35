"""NetnsBackend: a kind node's data plane rebuilt on the real Linux kernel, without Docker.

What stands for what (every piece is real kernel state or a real process):

- ``<lab>-host``: a network namespace for the learner's machine (never the root namespace), with a
  Linux bridge for Docker's network ``kind`` (172.18.0.1/16 on the bridge), Docker's nat rules for
  the published ports, and a ``docker-proxy``-like relay on 127.0.0.1:<hostPort>.
- ``<lab>-control-plane`` (one per node): eth0 172.18.0.x/16 on a veth to the bridge, default route
  via 172.18.0.1, ip_forward=1; kube-proxy's rules (rendered by :mod:`k8slab.model`) loaded with
  ``iptables-restore --noflush`` the way kube-proxy does; portmap's rules written by the real plugin.
- ``<lab>-pod-<pod>`` (one per pod): wired by the real CNI plugins (ptp + host-local + portmap,
  kindnet's conflist) executed inside the node namespace. App pods run ``app/server.py``; the ingress
  controller pod runs a real ``nginx`` configured from the Ingress objects.
- Stand-ins, labelled as such: the relay for port-forward replaces kubectl + API server + kubelet +
  the runtime's streaming server (it dials 127.0.0.1:<port> inside the pod, as the runtime does);
  CoreDNS pods are namespaces with an address and no process; nothing listens on the API server's
  endpoint 172.18.0.2:6443 (its Service rules exist; a connection is refused).

nginx runs as root (its master; workers drop to nginx's default user) because it is started with
``ip netns exec``, which needs root anyway.

Like a kind cluster, the lab belongs to no Python process: ``/run/k8slab/<lab>/state.json`` holds its
nodes, pods (addresses, CNI attachments), helper processes (pid and start time), the model of the
applied objects and nginx's configuration. ``up()`` in any process attaches to a running lab of the
same name and configuration; every change (apply, delete, scale, port-forward) is made under the
lab's flock and written back, and every call first reads what another process changed. Only
``down()`` removes the lab; a process that exits leaves it running.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import pickle
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ... import runner
from ...errors import BackendUnavailable, K8sLabError, LabStateError, NotFound
from ...progress import Progress
from .. import cni, nsrelay
from . import nft
from ..base import Backend, ConntrackEntry, Finding, NodeInfo, PortForward, Response, Route, Socket, parse_ip_route, resolves_to_loopback
from . import plumbing as pl
from . import shared
from . import text as tx

APT_FIX = "apt-get install -y iptables conntrack nginx-light containernetworking-plugins iproute2"
TOOLS = ("ip", "iptables-restore", "iptables-save", "conntrack", "nginx", "ss", "sysctl")
CNI_BINARIES = tuple(f"{cni.CNI_PATH}/{p}" for p in cni.KINDNET_PLUGINS)
KIND_GATEWAY = "172.18.0.1"
APP_IMAGE_HINT = "url-shortener"
CONTROLLER_IMAGE_HINT = "ingress-nginx/controller"
CLIENT_POD = "k8slab-client"                 # kind/manifests/client.yaml


@dataclass
class NodeNet:
    name: str
    netns: str
    ip: str
    pod_cidr: str
    role: str
    index: int
    rules_loaded: bool = False


@dataclass
class PodNet:
    name: str
    namespace: str
    netns: str
    node: str
    ip: str
    attachment: cni.Attachment
    role: str = "pod"                      # app | controller | client | pod
    port: int | None = None                # the port its process serves on
    proc: pl.Proc | None = None


class NetnsPortForward(PortForward):
    """A port-forward whose listener is in the lab's host namespace. Stands in for kubectl + API
    server + kubelet + the runtime's streaming server: one relay process that opens each connection
    inside the pod's namespace to 127.0.0.1:<port>. No iptables rule is involved."""

    def __init__(self, backend: "NetnsBackend", proc: pl.Proc, local_port: int, target: str,
                 remote_port: int, pod: str, pod_port: int):
        self._backend = backend
        self._proc = proc
        self.local_port = local_port
        self.target = target
        self.remote_port = remote_port
        self.pod = pod
        self.pod_port = pod_port
        self.netns = backend.host_ns
        self._closed = False

    @property
    def alive(self) -> bool:
        return not self._closed and self._proc.alive

    @property
    def pgid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            b = self._backend
            if not b.is_up():                   # the lab is gone (down() in some process): the relay too
                pl.stop(b.name, self._proc)
            else:
                with b._changing():
                    pl.stop(b.name, self._proc)
                    b._procs.pop(self._proc.key, None)
            if self in b._forwards:
                b._forwards.remove(self)

    def __repr__(self) -> str:
        state = "open" if self.alive else "closed"
        return (f"<port-forward 127.0.0.1:{self.local_port} (netns {self.netns}) -> {self.pod} "
                f"127.0.0.1:{self.pod_port} [{state}] stands in for kubectl+API server+kubelet+runtime>")


def _missing_tools() -> list[str]:
    missing = [t for t in TOOLS if runner.which(t) is None and runner.which(t, path="/usr/sbin:/sbin") is None]
    missing += [b for b in CNI_BINARIES if not os.access(b, os.X_OK)]
    return missing


class NetnsBackend(Backend):
    kind = "netns"
    live = True
    STATE_VERSION = 1                   # of state.json; a lab with another version is rebuilt

    def __init__(self, name: str, *, root: Path, progress: Progress, host_netns: str | None = None):
        """``host_netns``: an existing namespace to use as the host (the learner's machine) instead of
        creating ``<lab>-host``. The lab then creates and removes only its own things there: the
        bridge, Docker's rules for the published ports (the namespace's rules are restored to what
        they were at up()) and the docker-proxy relays; never the namespace itself."""
        super().__init__(name, root=Path(root), progress=progress)
        self.state = pl.state_dir(name)
        self.external_host = host_netns is not None
        if host_netns is not None and (host_netns == "" or host_netns.startswith(f"{name}-")):
            raise K8sLabError(f"host namespace {host_netns!r}: give an existing namespace whose name does not "
                              f"start with the lab's name ({name}-...), which the lab's clean-up would remove")
        self.host_ns = host_netns if host_netns is not None else tx.host_netns(name)
        self._host_rules_before: str | None = None
        self.bridge = ""                     # Docker's bridge name, from the model at up()
        self._cluster = None
        self._nodes: dict[str, NodeNet] = {}
        self._pods: dict[tuple[str, str], PodNet] = {}
        self._procs: dict[str, pl.Proc] = {}
        self._forwards: list[NetnsPortForward] = []
        self._nginx_conf_text = ""
        self._up = False
        self._stamp: tuple[int, int] | None = None      # of the state.json this object last read/wrote
        self._config_path = ""
        self._config_sha = ""
        self._creator: dict = {}

    # ------------------------------------------------------------------ availability
    @classmethod
    def available(cls) -> tuple[bool, str]:
        if sys.platform != "linux" or not Path("/proc/self/ns/net").exists():
            return False, "needs Linux network namespaces (this is not Linux)"
        if os.geteuid() != 0:
            return False, "needs root (network namespaces, iptables, CNI plugins): run as root"
        missing = _missing_tools()
        if missing:
            return False, f"missing {', '.join(missing)}: {APT_FIX}"
        return True, "root on Linux with iproute2, iptables, conntrack, nginx and the CNI plugins"

    def doctor(self) -> list[Finding]:
        ok, why = self.available()
        out = [Finding("netns backend", ok, why, "" if ok else APT_FIX)]
        leftovers = pl.owned_netns(self.name) if ok and not self.is_up() else []
        out.append(Finding("no leftovers", not leftovers,
                           f"namespaces of a previous run: {', '.join(leftovers)}" if leftovers else "none",
                           f"k8slab down --force --backend netns {self.name}" if leftovers else "",
                           blocking=False))
        return out

    # ------------------------------------------------------------------ lifecycle
    def is_up(self) -> bool:
        """True while the lab is up, whichever process made it (read from its state.json)."""
        self._refresh()
        return self._up and pl.netns_exists(self.host_ns)

    def up(self, config: Path) -> None:
        """Create the lab, or attach to the running lab of this name when it was made from the same
        cluster config (by this process or any other). A lab made from another config is left alone
        with a LabStateError saying what to do; leftovers of a crashed run are removed."""
        ok, why = self.available()
        if not ok:
            raise BackendUnavailable(f"the netns backend cannot run here: {why}")
        config = Path(config)
        sha = hashlib.sha256(config.read_bytes()).hexdigest()
        with pl.locked(self.name):
            self._stamp = None                       # read it again, whatever this object knew
            st = pl.read_state(self.name)
            if st is not None and self._running(st):
                self._attach(st, config, sha)
                return
            leftovers = pl.force_cleanup(self.name, keep_lock=True)
            if leftovers:
                self.progress.step(f"removed {len(leftovers)} leftovers of an earlier run of {self.name!r}"
                                   + (" (it never finished starting)" if st else ""))
            self._create(config, sha)

    def _running(self, st: dict) -> bool:
        """A state.json of a lab that finished starting and whose namespaces are all there."""
        if st.get("version") != self.STATE_VERSION or st.get("status") != "up":
            return False
        names = [st.get("host_ns", "")] + [n["netns"] for n in st.get("nodes", [])]
        return all(names) and all(pl.netns_exists(n) for n in names)

    def _attach(self, st: dict, config: Path, sha: str) -> None:
        if st.get("host_ns") != self.host_ns:
            raise LabStateError(
                f"a netns lab named {self.name!r} is up with host namespace {st.get('host_ns')!r}, not "
                f"{self.host_ns!r}: use that lab as it is, choose another name, or take it down first "
                f"(k8slab down --backend netns --name {self.name})")
        if st.get("config_sha256") != sha:
            raise LabStateError(
                f"a netns lab named {self.name!r} is up, made from another cluster config "
                f"({st.get('config')}), not {config}: to rebuild it from {config.name}, call lab.down() "
                f"and then lab.up({str(config)!r}) (every notebook using it loses its objects); or pass "
                f"Lab(name=...) to run a second lab beside it")
        self._adopt(st)
        creator = st.get("creator") or {}
        pid = creator.get("pid")
        where = "this process" if pid == os.getpid() else f"process {pid}" + (
            "" if pl.proc_running(pid, creator.get("start")) else ", which has exited") if pid else "?"
        self.progress.step(f"netns lab {self.name!r} is already up (made by {where}): attaching to it "
                           f"({len(self._pods)} pods; lab.down() removes it)")
        self._revive()

    def _revive(self) -> None:
        """Start again the lab's processes that have stopped (a crashed app, a relay killed with
        some kernel), as the kubelet restarts a pod's containers (restartPolicy Always) and Docker
        its proxies. A port-forward that stopped is forgotten (kubectl's would be gone too)."""
        dead = [k for k, p in self._procs.items() if not p.alive]
        if not dead:
            return
        mappings = {f"docker-proxy-{hp}": (hp, cp, ip) for hp, cp, ip in self._port_mappings()}
        for key in dead:
            proc = self._procs.pop(key)
            pl.stop(self.name, proc)                 # what is left of its group; its pidfile
            pod = next((p for p in self._pods.values() if p.proc is proc), None)
            if pod is not None:
                pod.proc = None
            if pod is not None and pod.role == "app":
                self._start_app(pod)
            elif key == "nginx":
                self._nginx_conf_text = ""
                self._sync_nginx()
            elif key in mappings:
                self._start_docker_proxy(*mappings[key])
        self._save("up")
        self.progress.step(f"restarted what had stopped: {', '.join(sorted(dead))}")

    def _create(self, config: Path, sha: str) -> None:
        from ... import model as m
        self._cluster = m.Cluster.kind(config=str(config), name=self.name)
        # Docker's name for the network's bridge (br- + 12 hex, derived from the lab's name): the
        # rendered host rules then name the real interface.
        self.bridge = self._cluster.bridge_name()
        self._config_path, self._config_sha = str(config), sha
        self._creator = {"pid": os.getpid(), "start": pl.proc_start_time(os.getpid())}
        self._nodes.clear()
        self._pods.clear()
        self._procs.clear()
        self._nginx_conf_text = ""
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            for sub in ("ipam", "logs", "nginx", "pids"):
                (self.state / sub).mkdir(exist_ok=True)
            self._save("creating")
            self._make_host()
            for i, node in enumerate(self._cluster.nodes):
                self._make_node(i, node)
            self._route_pod_cidrs()
            self._up = True
            # kube-proxy and kindnet run before any pod: their jumps come first in the built-in chains.
            self._sync_rules()
            self._reconcile()
            self._make_host_port_mappings()
            self._save("up")
        except BaseException:
            self._up = True
            self.down()
            raise

    # ------------------------------------------------------------------ the shared state (state.json)
    def _save(self, status: str = "up") -> None:
        pl.write_state(self.name, shared.snapshot(self, status))
        self._stamp = pl.state_stamp(self.name)

    def _adopt(self, st: dict) -> None:
        """Take the lab as state.json describes it. Helpers this object spawned keep their Popen."""
        shared.adopt(self, st)
        self._stamp = pl.state_stamp(self.name)

    def _refresh(self) -> None:
        """Read what another process changed (state.json replaced since this object last saw it)."""
        stamp = pl.state_stamp(self.name)
        if stamp == self._stamp:
            return
        st = pl.read_state(self.name) if stamp is not None else None
        if st is None or st.get("version") != self.STATE_VERSION or st.get("host_ns") != self.host_ns:
            if self._up or stamp is None:         # taken down (or made anew elsewhere for another host)
                self._up = False
                for proc in self._procs.values():
                    if proc.popen is not None:
                        proc.popen.poll()         # stopped by another process: reap it here
                self._pods, self._nodes, self._procs = {}, {}, {}
                for pf in self._forwards:
                    pf._closed = True
                self._forwards.clear()
            self._stamp = stamp
            return
        self._adopt(st)

    @contextlib.contextmanager
    def _changing(self):
        """A change of the lab: under its lock, on its latest state, written back afterwards (also
        when the change fails half-way: what it made is recorded for down())."""
        with pl.locked(self.name):
            self._refresh()
            if not (self._up and pl.netns_exists(self.host_ns)):
                if pl.read_state(self.name) is None:
                    pl.remove_lock(self.name)     # leave no lock file of a lab that is gone
                raise LabStateError(f"the netns lab {self.name!r} is not up: call lab.up() first")
            try:
                yield
            finally:
                if self._up:
                    self._save("up")

    def _make_host(self) -> None:
        self.progress.step(f"host namespace {self.host_ns} with bridge {self.bridge} ({KIND_GATEWAY}/16) "
                           "for Docker's network 'kind'")
        if self.external_host:
            if not pl.netns_exists(self.host_ns):
                raise BackendUnavailable(f"host namespace {self.host_ns} does not exist (ip netns list)")
            # What the namespace's tables held before: put back at down().
            self._host_rules_before = pl.exec_in(self.host_ns, ["iptables-save"], timeout=20).stdout
        else:
            pl.netns_add(self.name, self.host_ns)
        pl.ip_batch(self.host_ns, [
            f"link add {self.bridge} type bridge",
            f"addr add {KIND_GATEWAY}/16 dev {self.bridge}",
            f"link set {self.bridge} up",
        ])

    def _make_node(self, index: int, node) -> None:
        ns = tx.node_netns(self.name, node.name)
        veth = tx.node_veth_ifname(self.name, index)
        self.progress.step(f"node {node.name}: namespace {ns}, eth0 {node.ip}/16, pods {node.pod_cidr}")
        pl.netns_add(self.name, ns)
        pl.ip_batch(self.host_ns, [
            f"link add {veth} type veth peer name eth0 netns {ns}",
            f"link set {veth} master {self.bridge} up",
        ])
        pl.ip_batch(ns, [
            f"addr add {node.ip}/16 dev eth0",
            "link set eth0 up",
            f"route add default via {KIND_GATEWAY}",
        ])
        # What kindnet, kube-proxy and the kubelet set on a kind node, inside the node only.
        pl.sysctl_in(ns, {"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.route_localnet": "1"})
        self._nodes[node.name] = NodeNet(node.name, ns, node.ip, node.pod_cidr, node.role, index)

    def _route_pod_cidrs(self) -> None:
        """kindnet's routes: every other node's pod CIDR via that node's IP on the kind network."""
        for node in self._nodes.values():
            pl.ip_batch(node.netns, [f"route add {other.pod_cidr} via {other.ip}"
                                     for other in self._nodes.values() if other is not node])

    def _make_host_port_mappings(self) -> None:
        """Docker's side of extraPortMappings: its nat/filter rules in the host namespace (rendered by
        the model for this bridge) and a userland proxy on 127.0.0.1 for each published port
        (connections to loopback skip Docker's DNAT; docker-proxy relays them)."""
        from ... import model as m
        text = m.render_host_docker(self._cluster, form="restore")
        (self.state / "host.rules").write_text(text)
        pl.iptables_restore(self.host_ns, text, noflush=False)
        mappings = self._port_mappings()
        for host_port, container_port, node_ip in mappings:
            self._start_docker_proxy(host_port, container_port, node_ip)
        if mappings:
            self.progress.step("host port mappings: " + ", ".join(
                f"{hp}->{ip}:{cp}" for hp, cp, ip in mappings) + " (Docker's DNAT + docker-proxy on 127.0.0.1)")

    def _start_docker_proxy(self, host_port: int, container_port: int, node_ip: str) -> None:
        key = f"docker-proxy-{host_port}"
        proc, _ = pl.start_relay(self.name, key, listen_netns=self.host_ns,
                                 listen=f"127.0.0.1:{host_port}", dial_netns=self.host_ns,
                                 dial=f"{node_ip}:{container_port}",
                                 info=f"docker-proxy 127.0.0.1:{host_port} -> {node_ip}:{container_port}")
        self._procs[key] = proc

    def _port_mappings(self) -> list[tuple[int, int, str]]:
        """(hostPort, containerPort, node IP) of every node's extraPortMappings (TCP)."""
        out = []
        cfg = self._cluster.config
        kind_nodes = [k for k in cfg.nodes if k.role == "control-plane"] + \
            [k for k in cfg.nodes if k.role == "worker"]       # the model's node order
        for kn, node in zip(kind_nodes, self._cluster.nodes):
            for pm in kn.extra_port_mappings:
                if pm.protocol.upper() == "TCP":
                    out.append((pm.host_port, pm.container_port, node.ip))
        return out

    def down(self) -> None:
        """Remove the lab, whichever process made it (helpers are stopped only while their pid is
        still theirs). Other processes attached to it find it down on their next call."""
        if not self._up and not self.state.exists() and not pl.owned_netns(self.name):
            return
        with pl.locked(self.name):
            st = pl.read_state(self.name)
            if st is not None and st.get("host_ns") not in (None, self.host_ns):
                raise LabStateError(f"the netns lab {self.name!r} was made with host namespace "
                                    f"{st.get('host_ns')!r}, not {self.host_ns!r}: take it down from there")
            if st is not None and st.get("version") == self.STATE_VERSION:
                try:
                    self._adopt(st)               # also one that never finished starting
                except (KeyError, TypeError, ValueError, pickle.UnpicklingError, AttributeError):
                    pass                          # a damaged state: force_cleanup below finds the rest
            self._up = False
            for pf in list(self._forwards):
                pf._closed = True
                pl.stop(self.name, pf._proc)
            self._forwards.clear()
            for key, proc in list(self._procs.items()):
                pl.stop(self.name, proc)
                self._procs.pop(key, None)
            for pod in reversed(list(self._pods.values())):
                self._remove_pod(pod)
            if self.external_host:
                self._clean_external_host()
            # nodes, host, state dir (IPAM) and anything missed
            removed = pl.force_cleanup(self.name, keep_lock=True)
            pl.remove_lock(self.name)
        self._pods.clear()
        self._nodes.clear()
        self._stamp = None
        self.progress.step(f"netns lab {self.name!r} removed ({len(removed)} items)")

    def _clean_external_host(self) -> None:
        """Remove from a host namespace we were given what up() put there: the bridge (with it the
        nodes' veth ends) and Docker's rules (each table restored to its state at up())."""
        if not pl.netns_exists(self.host_ns):
            return
        if self.bridge:
            pl.exec_in(self.host_ns, ["ip", "link", "del", self.bridge], timeout=10, check=False)
        rules = self.state / "host.rules"
        if rules.exists():
            before = tx.parse_restore(self._host_rules_before or "")
            kept = {t.name for t in before}
            text = (self._host_rules_before or "") + "".join(
                f"*{t.name}\nCOMMIT\n" for t in tx.parse_restore(rules.read_text()) if t.name not in kept)
            pl.iptables_restore(self.host_ns, text, noflush=False)

    # ------------------------------------------------------------------ objects
    def apply(self, objects: list[dict]) -> list[str]:
        from ... import model as m
        with self._changing():
            applied = self._cluster.apply(m.load_objects(objects))
            self._reconcile()
        return applied

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        with self._changing():
            self._cluster.delete(kind, name, namespace)
            self._reconcile()

    def scale(self, deployment: str, replicas: int, namespace: str = "default") -> None:
        with self._changing():
            self._cluster.scale(deployment, replicas, namespace)
            self._reconcile()

    def objects(self, kind: str) -> list[dict]:
        self._require_up()
        out = self._cluster.to_dicts(kind)
        if kind.lower() in ("pod", "pods") and self.kube_proxy_state() != "running":
            from ..kubeproxy import without_kube_proxy_pods
            out = without_kube_proxy_pods(out)
        return out

    def model(self):
        self._require_up()
        return self._cluster

    def nodes(self) -> list[NodeInfo]:
        self._require_up()
        out = []
        for n in self._nodes.values():
            local = ["127.0.0.1", n.ip]
            if any(p.node == n.name for p in self._pods.values()):
                local.append(self._gateway(n))    # on every pod veth's node end
            out.append(NodeInfo(n.name, n.role, n.ip, n.pod_cidr, tuple(local),
                                f"network namespace {n.netns} (standing in for the Docker container)"))
        return out

    def _gateway(self, node: NodeNet) -> str:
        # ptp gives every pod veth's node end the range's gateway address (.1/32)
        return str(ipaddress.ip_network(node.pod_cidr).network_address + 1)

    def _require_up(self) -> None:
        if not self.is_up():                     # is_up() also reads what another process changed
            raise LabStateError(f"the netns lab {self.name!r} is not up: call lab.up() first")

    def _control_plane(self) -> NodeNet:
        for n in self._nodes.values():
            if n.role == "control-plane":
                return n
        return next(iter(self._nodes.values()))

    def _node(self, name: str | None) -> NodeNet:
        if name is None:
            return self._control_plane()
        if name in self._nodes:
            return self._nodes[name]
        for n in self._nodes.values():
            if name in (n.netns, n.name.removeprefix(f"{self.name}-")):
                return n
        raise NotFound(f"no node {name!r} in lab {self.name!r}; nodes: {', '.join(self._nodes)}")

    def _pod(self, name: str, namespace: str | None = None) -> PodNet:
        if namespace is None and "/" in name:          # "namespace/name", as the Lab names pods
            namespace, _, name = name.partition("/")
        for (ns, pname), pod in self._pods.items():
            if pname == name and (namespace is None or ns == namespace):
                return pod
        for pod in self._pods.values():   # a pod IP works too
            if pod.ip == name:
                return pod
        raise NotFound(f"no pod {name!r} in lab {self.name!r}; pods: "
                       f"{', '.join(p.name for p in self._pods.values())}")

    # ------------------------------------------------------------------ reconcile: pods, processes, rules
    def _reconcile(self) -> None:
        """Make the namespaces and processes match the model's pods, then resync rules and nginx."""
        desired = {}
        for pod in self._cluster.pods:
            if pod.host_network or pod.node_name not in self._nodes:
                continue
            desired[pod.key] = pod
        for key in [k for k in self._pods if k not in desired]:
            self._remove_pod(self._pods.pop(key))
        for key, pod in desired.items():
            if key not in self._pods:
                self._add_pod(pod)
        self._sync_rules()
        self._sync_nginx()

    def _pod_role(self, pod) -> tuple[str, int | None]:
        images = " ".join(c.image for c in pod.containers)
        ports = [p.container_port for p in pod.container_ports() if p.protocol == "TCP"]
        if CONTROLLER_IMAGE_HINT in images:
            return "controller", 80
        if APP_IMAGE_HINT in images:
            return "app", (ports[0] if ports else 8080)
        if pod.name == CLIENT_POD:
            return "client", None
        return "pod", None

    def _add_pod(self, pod) -> None:
        node = self._nodes[pod.node_name]
        ns = tx.pod_netns(self.name, pod.name, pod.namespace)
        cid = getattr(pod, "container_id", "") or cni.container_id(self.name, pod.namespace, pod.name)
        mappings = tuple(cni.PortMapping(p.host_port, p.container_port, p.protocol.lower(), p.host_ip)
                         for p in pod.host_ports())
        att = cni.Attachment(container_id=cid, netns=f"{pl.NETNS_DIR}/{ns}", port_mappings=mappings)
        pl.netns_add(self.name, ns)
        try:
            result = cni.add(self._conflist(node), att, exec_in=node.netns)   # DELs itself on failure
        except BaseException:
            pl.netns_delete(ns)
            raise
        role, port = self._pod_role(pod)
        pnet = PodNet(pod.name, pod.namespace, ns, node.name, result.ip, att, role, port)
        self._pods[pod.key] = pnet
        # The model learns the address host-local really gave (the model's own guess may differ).
        pod.ip = result.ip
        pod.host_ip = node.ip
        pod.container_id = cid
        if role == "app":
            self._start_app(pnet)
        self.progress.step(f"pod {pod.namespace}/{pod.name}: {ns}, {result.ip} via CNI ptp+portmap"
                           + (f", hostPorts {', '.join(str(m.host_port) for m in mappings)}" if mappings else "")
                           + ("" if role in ("app", "controller") else " (no process)"))

    def _remove_pod(self, pod: PodNet) -> None:
        if pod.proc is not None:
            pl.stop(self.name, pod.proc)
            self._procs.pop(pod.proc.key, None)
            pod.proc = None
        if pod.role == "controller":
            self._stop_nginx()
        node = self._nodes.get(pod.node)
        if node is not None and pl.netns_exists(node.netns) and pl.netns_exists(pod.netns):
            errors = cni.delete(self._conflist(node), pod.attachment, exec_in=node.netns)
            for err in errors:
                self.progress.step(f"warning: {err}")
        pl.netns_delete(pod.netns)

    def _conflist(self, node: NodeNet) -> dict:
        return cni.kindnet_conflist(node.pod_cidr, self.state / "ipam", mtu=1500)

    def _start_app(self, pod: PodNet) -> None:
        server = self.root / "app" / "server.py"
        if not server.exists():
            raise K8sLabError(f"{server} is missing: the netns backend runs the course's app from there")
        key = f"app-{pod.namespace}-{pod.name}"
        env = {"POD_NAME": pod.name, "POD_NAMESPACE": pod.namespace, "POD_IP": pod.ip,
               "NODE_NAME": pod.node, "PYTHONUNBUFFERED": "1"}
        argv = ["ip", "netns", "exec", pod.netns, sys.executable, str(server), "--port", str(pod.port)]
        pod.proc = pl.start(self.name, key, argv, env=env, cwd=str(self.root),
                            log=self.state / "logs" / f"{key}.log", info=f"url-shortener in {pod.netns}")
        self._procs[key] = pod.proc

    def _sync_rules(self) -> None:
        """kube-proxy's resync (and kindnet's/kubelet's chains) in every node, portmap's chains untouched."""
        from ... import model as m
        for node in self._nodes.values():
            rendered = m.render_node_restore(self._cluster, node.name)
            live = None if not node.rules_loaded else tx.chains_by_table(
                pl.exec_in(node.netns, ["iptables-save"], timeout=20).stdout)
            text = tx.node_restore(rendered, live_chains=live, first_load=not node.rules_loaded,
                                   skip_prefixes=self._kube_proxy_skip())
            (self.state / f"last-restore-{node.name}.rules").write_text(text)
            pl.iptables_restore(node.netns, text)
            node.rules_loaded = True
            nft.sync(self, node)              # kube-proxy's nftables mode: its nft table (netns/nft.py)

    # ------------------------------------------------------------------ the ingress controller
    def _controller(self) -> PodNet | None:
        return next((p for p in self._pods.values() if p.role == "controller"), None)

    def _nginx_paths(self) -> dict[str, str]:
        d = self.state / "nginx"
        return {"prefix_dir": str(d), "pid_path": str(d / "nginx.pid"),
                "error_log": str(d / "error.log"), "access_log": str(d / "access.log")}

    def _sync_nginx(self) -> None:
        pod = self._controller()
        if pod is None:
            return
        from ... import model as m
        paths = self._nginx_paths()
        conf = m.nginx_conf(self._cluster, listen_port=pod.port or 80, **paths)
        conf_path = self.state / "nginx" / "nginx.conf"
        (self.state / "nginx" / "logs").mkdir(parents=True, exist_ok=True)
        if pod.proc is not None and pod.proc.alive and conf == self._nginx_conf_text:
            return
        conf_path.write_text(conf)
        base = ["nginx", "-c", str(conf_path), "-p", paths["prefix_dir"] + "/"]
        pl.exec_in(pod.netns, [*base, "-t"], timeout=20,
                   hint=f"nginx rejected the rendered configuration in {conf_path}.")
        if pod.proc is None or not pod.proc.alive:
            daemon = [] if "daemon off" in conf else ["-g", "daemon off;"]
            key = "nginx"
            pod.proc = pl.start(self.name, key, ["ip", "netns", "exec", pod.netns, *base, *daemon],
                                log=self.state / "logs" / "nginx.log", info=f"nginx in {pod.netns}")
            self._procs[key] = pod.proc
            self.progress.step(f"ingress controller: nginx in {pod.netns} on port {pod.port} "
                               "(reached through hostPort 80)")
        else:
            before = self._nginx_workers(pod.proc.pid)
            runner.run([*base, "-s", "reload"], timeout=20)
            # A graceful reload: new workers (forked with the new configuration) take over, and
            # the old ones stop accepting, finish their connections and exit. apply() returns once
            # the old ones are gone, so the next request is routed by the new configuration.
            def reloaded() -> bool:
                now = self._nginx_workers(pod.proc.pid)
                return bool(now - before) and not (now & before)
            if not pl.wait_until(reloaded, 10.0):
                self.progress.step("ingress controller: old nginx workers still finishing connections")
            self.progress.step("ingress controller: nginx reloaded gracefully (nginx -s reload)")
        self._nginx_conf_text = conf

    def _stop_nginx(self) -> None:
        proc = self._procs.pop("nginx", None)
        if proc is not None:
            pl.stop(self.name, proc)
        self._nginx_conf_text = ""

    @staticmethod
    def _nginx_workers(master: int) -> set[int]:
        try:
            text = Path(f"/proc/{master}/task/{master}/children").read_text()
            return {int(x) for x in text.split()}
        except OSError:
            return set()

    def ingress_config(self) -> str:
        f = self.state / "nginx" / "nginx.conf"
        return f.read_text() if f.exists() else ""

    # ------------------------------------------------------------------ readiness
    def wait_ready(self, timeout: float = 120.0) -> None:
        self._require_up()
        deadline = time.monotonic() + timeout
        for pod in list(self._pods.values()):
            if pod.role not in ("app", "controller"):
                continue
            path = "/healthz" if pod.role == "app" else None
            while True:
                if pod.proc is not None and not pod.proc.alive:
                    raise K8sLabError(f"{pod.role} process of pod {pod.name} exited "
                                      f"(code {pod.proc.returncode}): {pod.proc.log_tail()}")
                if self._probe(pod, path):
                    break
                if time.monotonic() > deadline:
                    raise K8sLabError(f"pod {pod.name} did not become ready within {timeout:g} s; "
                                      f"log: {pod.proc.log_tail() if pod.proc else '(no process)'}")
                time.sleep(0.05)

    def _probe(self, pod: PodNet, path: str | None) -> bool:
        try:
            sock = nsrelay.connect_in(pod.netns, "127.0.0.1", pod.port or 80, timeout=1.0)
        except OSError:
            return False
        try:
            if path is None:
                return True
            status, _, _ = _http_get(sock, "127.0.0.1", path, "127.0.0.1")
            return status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            sock.close()

    # ------------------------------------------------------------------ the node's data plane
    def iptables_save(self, node: str) -> str:
        self._require_up()
        return pl.exec_in(self._node(node).netns, ["iptables-save", "-c"], timeout=20).stdout

    def nft_list_ruleset(self, node: str) -> str:
        self._require_up()
        return nft.list_ruleset(self, self._node(node).netns)

    @property
    def proxy_mode(self) -> str | None:
        return nft.proxy_mode(self)

    def host_iptables_save(self) -> str:
        self._require_up()
        return pl.exec_in(self.host_ns, ["iptables-save", "-c"], timeout=20).stdout

    def _node_ns(self, node: str | None) -> str:
        """A node's namespace; ``"host"`` names the learner's machine (the host namespace)."""
        return self.host_ns if node == "host" else self._node(node).netns

    def conntrack(self, node: str) -> list[ConntrackEntry]:
        """The kernel's connection tracking table of a node (or of ``"host"``)."""
        self._require_up()
        res = pl.exec_in(self._node_ns(node), ["conntrack", "-L"], timeout=20, check=False)
        return tx.parse_conntrack(res.stdout)

    def conntrack_flush(self, node: str | None = None) -> None:
        """Forget the connection tracking entries of one node (or ``"host"``), or of every node."""
        targets = [self._node_ns(node)] if node else [n.netns for n in self._nodes.values()]
        for ns in targets:
            pl.exec_in(ns, ["conntrack", "-F"], timeout=20, check=False)

    def sockets(self, node: str, pod: str | None = None) -> list[Socket]:
        self._require_up()
        ns = self._pod(pod).netns if pod else self._node(node).netns
        res = pl.exec_in(ns, ["ss", "-ltnpH"], timeout=20)
        return tx.parse_ss(res.stdout)

    def routes(self, node: str) -> list[Route]:
        self._require_up()
        return parse_ip_route(pl.exec_in(self._node(node).netns, ["ip", "route"], timeout=20).stdout)

    def netns_of(self, what: str) -> str:
        """The namespace name of ``host``, a node or a pod (for the curious: ``ip netns exec NAME ...``)."""
        if what == "host":
            return self.host_ns
        try:
            return self._node(what).netns
        except NotFound:
            return self._pod(what).netns

    # ------------------------------------------------------------------ traffic
    def _client_pod(self) -> PodNet:
        for pod in self._pods.values():
            if pod.role == "client":
                return pod
        from ... import model as m
        with self._changing():                   # another process may have made it meanwhile
            if not any(p.role == "client" for p in self._pods.values()):
                self._cluster.apply(m.load_objects((self.root / "kind/manifests/client.yaml").read_text()))
                self._reconcile()
        return next(p for p in self._pods.values() if p.role == "client")

    def request(self, url: str, *, host: str | None = None, from_: str = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        self._require_up()
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise K8sLabError(f"request() speaks plain http only, not {parts.scheme!r}: {url}")
        addr = parts.hostname or "127.0.0.1"
        if resolves_to_loopback(addr):
            addr = "127.0.0.1"
        port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if from_ == "host":
            ns, src_name = self.host_ns, "host"
        elif from_ == "node":
            n = self._node(source)
            ns, src_name = n.netns, n.name
        elif from_ == "pod":
            p = self._pod(source) if source else self._client_pod()
            ns, src_name = p.netns, p.name
        else:
            raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
        header_host = host or parts.netloc
        started = time.monotonic()
        resp = Response(url=url, status=None, body="", from_=src_name if from_ != "host" else "host",
                        backend=self.kind)
        try:
            sock = nsrelay.connect_in(ns, addr, port, timeout=timeout)
        except socket.timeout:
            resp.error = f"timed out connecting to {addr}:{port} from {src_name}"
            return resp
        except ConnectionRefusedError:
            resp.error = f"connection refused by {addr}:{port} (nothing listens there, as seen from {src_name})"
            return resp
        except OSError as exc:
            resp.error = f"cannot connect to {addr}:{port} from {src_name}: {exc.strerror or exc}"
            return resp
        try:
            status, headers, body = _http_get(sock, addr, path, header_host)
        except (OSError, http.client.HTTPException) as exc:
            resp.error = f"{type(exc).__name__}: {exc}"
            return resp
        finally:
            sock.close()
        resp.status, resp.headers, resp.body = status, headers, body
        resp.elapsed_ms = round((time.monotonic() - started) * 1000, 2)
        resp.whoami = _whoami(body)
        if resp.whoami:
            ip = resp.whoami.get("pod_ip")
            pod = next((p for p in self._pods.values() if p.ip == ip or p.name == resp.whoami.get("pod")), None)
            if pod is not None and pod.port:
                resp.destination = f"{pod.ip}:{pod.port}"
        return resp

    def port_forward(self, target: str, local_port: int, remote_port: int,
                     namespace: str = "default") -> PortForward:
        self._require_up()
        with self._changing():
            pod, pod_port = self._resolve_forward(target, remote_port, namespace)
            key = f"port-forward-{local_port}-{pod.name}-{os.getpid()}-{time.monotonic_ns()}"
            try:
                proc, port = pl.start_relay(self.name, key, listen_netns=self.host_ns,
                                            listen=f"127.0.0.1:{local_port}", dial_netns=pod.netns,
                                            dial=f"127.0.0.1:{pod_port}",
                                            info=f"port-forward {target} {local_port}:{remote_port}")
            except K8sLabError as exc:
                raise K8sLabError(f"Unable to listen on port {local_port} in {self.host_ns}: {exc} "
                                  "(docker-proxy holds the extraPortMappings ports there, or another "
                                  "port-forward; pick another local_port, or 0 for any free one)") from exc
            self._procs[key] = proc               # recorded: down() in any process stops it
        pf = NetnsPortForward(self, proc, port, target, remote_port, pod.name, pod_port)
        self._forwards.append(pf)
        self.progress.step(f"port-forward 127.0.0.1:{port} -> pod {pod.name} 127.0.0.1:{pod_port} "
                           "(kubectl -> API server -> kubelet -> runtime stand-in)")
        return pf

    def _resolve_forward(self, target: str, remote_port: int, namespace: str) -> tuple[PodNet, int]:
        """kubectl's choice: svc/NAME -> the first ready pod behind it and the service port's
        targetPort on that pod; deploy/NAME -> its first pod; pod/NAME or NAME -> that pod."""
        kind, _, name = target.rpartition("/")
        kind = (kind or "pod").lower()
        c = self._cluster
        if kind in ("svc", "service", "services"):
            svc = c.service(name, namespace)
            if svc is None:
                raise NotFound(f"service {namespace}/{name} not found")
            sp = next((p for p in svc.ports if p.port == remote_port), None)
            if sp is None:
                raise NotFound(f"service {name} has no port {remote_port} "
                               f"(ports: {', '.join(str(p.port) for p in svc.ports)})")
            pods = sorted((p for p in c.pods if p.namespace == namespace and p.ready and svc.selector
                           and all(p.labels.get(k) == v for k, v in svc.selector.items())),
                          key=lambda p: p.name)
            if not pods:
                raise NotFound(f"service {name} has no ready pod to forward to")
            pod = pods[0]
            port = pod.resolve_port(sp.effective_target_port, sp.protocol)
            if port is None:
                raise NotFound(f"pod {pod.name} has no container port named {sp.target_port!r}")
            return self._pod(pod.name, namespace), port
        if kind in ("deploy", "deployment", "deployments"):
            pods = sorted((p for p in c.pods if p.namespace == namespace
                           and p.owner == f"Deployment/{name}"), key=lambda p: p.name)
            if not pods:
                raise NotFound(f"deployment {namespace}/{name} has no pods")
            return self._pod(pods[0].name, namespace), remote_port
        if kind in ("pod", "pods", "po"):
            return self._pod(name, namespace), remote_port
        raise NotFound(f"port_forward target {target!r}: use svc/NAME, deploy/NAME or pod/NAME")

    # ------------------------------------------------------------------ kube-proxy out of the data path
    # kube-proxy is no process here: the backend's resync (_sync_rules) plays its part. Stopped, the
    # resync leaves every KUBE-* chain alone (nothing reprograms them: endpoint changes are not
    # programmed, as on a node whose kube-proxy is gone); flushed, the node's rules are what
    # `kube-proxy --cleanup` leaves, removed with real iptables commands (k8slab.backends.kubeproxy).
    # The state is a file in the lab's state dir, so every process sharing the lab sees it.
    def kube_proxy_state(self) -> str:
        f = self.state / "kube-proxy"
        try:
            return f.read_text().strip() or "running"
        except OSError:
            return "running"

    def _kube_proxy_skip(self) -> tuple[str, ...]:
        return (tx.CNI_PREFIX,) if self.kube_proxy_state() == "running" else (tx.CNI_PREFIX, "KUBE-")

    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        self._require_up()
        if self.kube_proxy_state() == "running":
            (self.state / "kube-proxy").write_text("stopped\n")
        self.progress.step("kube-proxy stopped (its pod gone from every node); its rules stay in the kernel "
                           "and nothing updates them")

    def flush_kube_proxy_rules(self) -> None:
        from ..kubeproxy import STOPPED_WHY, cleanup_plan
        self._require_up()
        if self.kube_proxy_state() == "running":
            raise LabStateError(STOPPED_WHY)
        for node in self._nodes.values():
            if getattr(self, "proxy_mode", None) == "nftables":      # nftables' CleanupLeftovers
                from ..kubeproxy import NFT_CLEANUP
                if pl.exec_in(node.netns, ["nft", "list", "table", "ip", "kube-proxy"], timeout=20, check=False).ok:
                    pl.exec_in(node.netns, list(NFT_CLEANUP), timeout=20)
            plan = cleanup_plan(pl.exec_in(node.netns, ["iptables-save"], timeout=20).stdout)
            for argv in plan.delete_argvs():          # CleanupLeftovers: ipt.DeleteRule per jump
                pl.exec_in(node.netns, argv, timeout=20)
            for table in ("nat", "filter"):           # then flush + delete its chains, noflush restore
                pl.iptables_restore(node.netns, plan.restore.get(table, ""))
            self.progress.step(f"{node.name}: kube-proxy's rules removed ({len(plan.deletes)} jumps, "
                               f"{sum(t.count(chr(10) + '-X ') for t in plan.restore.values())} chains) "
                               "as kube-proxy --cleanup does")
        (self.state / "kube-proxy").write_text("flushed\n")

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        from ..kubeproxy import JUMP_CHAINS, ensure_jump_argvs
        self._require_up()
        (self.state / "kube-proxy").unlink(missing_ok=True)
        self._sync_rules()                            # its chains, from the model as it is now
        nft_mode = getattr(self, "proxy_mode", None) == "nftables"     # no iptables chains then
        for node in ([] if nft_mode else self._nodes.values()):        # EnsureRule(Prepend) per jump
            for table, chain, builtin, _c, _e in JUMP_CHAINS:
                check, insert = ensure_jump_argvs(table, chain, builtin)
                if not pl.exec_in(node.netns, check, timeout=20, check=False).ok:
                    pl.exec_in(node.netns, insert, timeout=20)
        self.progress.step("kube-proxy running again: its pod is back and its rules re-synced")


def _http_get(sock: socket.socket, addr: str, path: str, host_header: str) -> tuple[int, dict, str]:
    conn = http.client.HTTPConnection(addr, timeout=sock.gettimeout())
    conn.sock = sock
    conn.request("GET", path, headers={"Host": host_header, "User-Agent": "k8slab-netns",
                                       "Connection": "close"})
    r = conn.getresponse()
    body = r.read().decode("utf-8", "replace")
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def _whoami(body: str) -> dict | None:
    text = body.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) and ("pod" in data or "pod_ip" in data) else None




__all__ = ["NetnsBackend", "NetnsPortForward"]
