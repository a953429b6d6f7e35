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

This module is the lab's lifecycle (up, attach, revive, down), its shared state and the verbs; the
verbs delegate to the modules beside it: :mod:`.docker` (Docker's side on the learner's machine),
:mod:`.pods` (pods: CNI and their processes), :mod:`.kube_proxy` (the rules resync; kube-proxy
stopped, flushed, started), :mod:`.nft` (its nftables mode), :mod:`.ingress` (nginx),
:mod:`.traffic` (readiness, requests, port-forward), :mod:`.shared` (state.json), :mod:`.plumbing`
(namespaces, processes, the lock) and :mod:`.text` (pure: names, restore text, parsers).
"""
from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import pickle
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ... import runner
from ...errors import BackendUnavailable, K8sLabError, LabStateError, NotFound
from ...progress import Progress
from .. import cni
from . import nft
from ..base import Backend, ConntrackEntry, Finding, NodeInfo, PortForward, Response, Route, Socket, parse_ip_route
from . import plumbing as pl
from . import shared
from . import text as tx
from . import docker, ingress, kube_proxy, pods, traffic
# Moved to docker.py, pods.py and traffic.py; importable from here as before.
from .docker import KIND_GATEWAY
from .pods import APP_IMAGE_HINT, CLIENT_POD, CONTROLLER_IMAGE_HINT  # noqa: F401
from .traffic import NetnsPortForward, _http_get, _whoami  # noqa: F401

APT_FIX = "apt-get install -y iptables conntrack nginx-light containernetworking-plugins iproute2"
TOOLS = ("ip", "iptables-restore", "iptables-save", "conntrack", "nginx", "ss", "sysctl")
CNI_BINARIES = tuple(f"{cni.CNI_PATH}/{p}" for p in cni.KINDNET_PLUGINS)


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
                docker.start_docker_proxy(self, *mappings[key])
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
            docker.make_host(self)
            for i, node in enumerate(self._cluster.nodes):
                self._make_node(i, node)
            self._route_pod_cidrs()
            self._up = True
            # kube-proxy and kindnet run before any pod: their jumps come first in the built-in chains.
            self._sync_rules()
            self._reconcile()
            docker.make_host_port_mappings(self)
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

    def _port_mappings(self) -> list[tuple[int, int, str]]:
        """(hostPort, containerPort, node IP) of every node's extraPortMappings (TCP)."""
        return docker.port_mappings(self)

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
                docker.clean_external_host(self)
            # nodes, host, state dir (IPAM) and anything missed
            removed = pl.force_cleanup(self.name, keep_lock=True)
            pl.remove_lock(self.name)
        self._pods.clear()
        self._nodes.clear()
        self._stamp = None
        self.progress.step(f"netns lab {self.name!r} removed ({len(removed)} items)")

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

    # ------------------------------------------------------------------ reconcile: pods (pods.py), rules (kube_proxy.py)
    def _reconcile(self) -> None:
        """Make the namespaces and processes match the model's pods, then resync rules and nginx."""
        pods.reconcile(self)

    def _add_pod(self, pod) -> None:
        pods.add(self, pod)

    def _remove_pod(self, pod: PodNet) -> None:
        pods.remove(self, pod)

    def _start_app(self, pod: PodNet) -> None:
        pods.start_app(self, pod)

    def _sync_rules(self) -> None:
        """kube-proxy's resync (and kindnet's/kubelet's chains) in every node, portmap's chains untouched."""
        kube_proxy.sync_rules(self)

    # ------------------------------------------------------------------ the ingress controller (ingress.py)
    def _sync_nginx(self) -> None:
        ingress.sync(self)

    def ingress_config(self) -> str:
        return ingress.config(self)

    # ------------------------------------------------------------------ readiness (traffic.py)
    def wait_ready(self, timeout: float = 120.0) -> None:
        traffic.wait_ready(self, timeout)

    def _probe(self, pod: PodNet, path: str | None) -> bool:
        return traffic.probe(self, pod, path)

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

    # ------------------------------------------------------------------ traffic (traffic.py)
    def request(self, url: str, *, host: str | None = None, from_: str = "host",
                source: str | None = None, timeout: float = 10.0) -> Response:
        return traffic.request(self, url, host=host, from_=from_, source=source, timeout=timeout)

    def port_forward(self, target: str, local_port: int, remote_port: int,
                     namespace: str = "default") -> PortForward:
        return traffic.port_forward(self, target, local_port, remote_port, namespace)

    # ------------------------------------------------------------------ kube-proxy out of the data path (kube_proxy.py)
    def kube_proxy_state(self) -> str:
        return kube_proxy.state(self)

    def stop_kube_proxy(self, timeout: float = 120.0) -> None:
        kube_proxy.stop(self, timeout)

    def flush_kube_proxy_rules(self) -> None:
        kube_proxy.flush(self)

    def start_kube_proxy(self, timeout: float = 180.0) -> None:
        kube_proxy.start(self, timeout)


__all__ = ["NetnsBackend", "NetnsPortForward"]
