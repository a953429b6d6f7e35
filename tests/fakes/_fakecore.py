"""The brains of the fake ``docker``, ``kind`` and ``kubectl`` used by the kind backend's tests.

Each call appends ``{"tool", "argv", "stdin"}`` as one JSON line to ``$K8SLAB_FAKE_LOG`` and answers
in the real tool's documented output format. State (clusters, applied objects) lives in the JSON file
``$K8SLAB_FAKE_STATE``. ``$K8SLAB_FAKE_SCENARIO`` is a comma-separated list of switches:

  docker-down        the daemon is not reachable (docker info's JSON without a server, exit 1)
  rootless, desktop  docker info of rootless Docker / Docker Desktop;  nftables: FirewallBackend nftables
  port-busy          kind create cluster fails: "Bind for 0.0.0.0:8080 failed: port is already allocated"
  image-pull         app pods in ImagePullBackOff; rollout status times out
  controller-pending the ingress controller pod is Pending (node selector ingress-ready=true)
  webhook-not-ready  no ready endpoint behind the admission Service; applying an Ingress is refused
  hang               kind create, kubectl rollout/wait and port-forward never finish
  legacy-node        the node's kube-proxy rules are in iptables-legacy, not nft
  containerd-store   Docker uses the containerd image store (Docker Desktop, fresh Engine 29): docker
                     info says so; `docker build` (buildx) attaches a provenance attestation unless
                     BUILDX_NO_DEFAULT_ATTESTATIONS / --provenance=false turn it off, and `kind load
                     docker-image` of such an image fails with "content digest ... not found"
  legacy-builder     `docker build` is the legacy builder (DOCKER_BUILDKIT=0 or no buildx): it has no
                     --provenance flag
  controller-late    the ingress controller pod does not exist for the first two times kubectl is asked
                     about pods in ingress-nginx (its ReplicaSet has not created it yet: kind #2293)
  crash              app pods in CrashLoopBackOff

A cluster "exists with another config" when the state says so (tests write it with ``seed_cluster``).
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

NODE_IMAGE = "kindest/node:v1.35.0"
NODE_IP = "172.18.0.2"
DAEMON_DOWN = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"


def scenarios() -> set[str]:
    return {s.strip() for s in os.environ.get("K8SLAB_FAKE_SCENARIO", "").split(",") if s.strip()}


def state_path() -> Path:
    return Path(os.environ.get("K8SLAB_FAKE_STATE", "/tmp/k8slab-fake-state.json"))


def load_state() -> dict:
    try:
        return json.loads(state_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {"clusters": {}, "applied": {}}


def save_state(state: dict) -> None:
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(state_path())


def seed_cluster(state_file: Path, name: str, image: str = NODE_IMAGE, ports=((80, 8080), (443, 8443))) -> None:
    """Test helper: pretend ``kind create cluster`` already made ``name`` with this image and ports."""
    try:
        state = json.loads(Path(state_file).read_text())
    except (OSError, json.JSONDecodeError):
        state = {"clusters": {}, "applied": {}}
    state["clusters"][name] = {"image": image, "ports": [list(p) for p in ports]}
    Path(state_file).write_text(json.dumps(state))


def log(tool: str, argv: list[str], stdin: str | None = None) -> None:
    path = os.environ.get("K8SLAB_FAKE_LOG")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv, "stdin": stdin, "pid": os.getpid()}) + "\n")


def hang() -> None:
    while True:
        time.sleep(3600)


def out(text: str = "", err: str = "", rc: int = 0) -> int:
    if text:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if err:
        sys.stderr.write(err if err.endswith("\n") else err + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def opt(argv: list[str], name: str, default: str | None = None) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


def main(tool: str, argv: list[str]) -> int:
    stdin = None
    if tool == "kubectl" and "-f" in argv and opt(argv, "-f") == "-":
        stdin = sys.stdin.read()
    log(tool, argv, stdin)
    if tool == "curl":
        return curl(argv, os.environ.get("FAKE_CLIENT_IP", "10.244.0.9"))
    return {"docker": docker, "kind": kind, "kubectl": kubectl}[tool](argv, stdin)


# ------------------------------------------------------------------------------------------------
# docker
# ------------------------------------------------------------------------------------------------
def docker_info() -> dict:
    sc = scenarios()
    client = {"Debug": False, "Version": "28.2.2", "DefaultAPIVersion": "1.50", "Os": "linux", "Arch": "amd64",
              "Context": "default", "Plugins": [], "Warnings": None}
    if "docker-down" in sc:
        return {"ID": "", "ServerVersion": "", "OperatingSystem": "", "SecurityOptions": None, "MemTotal": 0,
                "ClientInfo": client}
    opts = ["name=seccomp,profile=builtin", "name=cgroupns"]
    if "rootless" in sc:
        opts.append("name=rootless")
    # DriverStatus as moby reports it (real-cli-behaviours.yaml o18b): the containerd image store
    # (daemon/containerd/service.go LayerStoreStatus) or the classic overlay2 graphdriver.
    if "containerd-store" in sc:
        storage = {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}
    else:
        storage = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"],
                                                         ["Using metacopy", "false"], ["Native Overlay Diff", "true"],
                                                         ["userxattr", "false"]]}
    info = {"ID": "b5c1e3a0-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "Containers": 1, "ContainersRunning": 1, **storage,
            "ServerVersion": "28.2.2", "OperatingSystem": "Docker Desktop" if "desktop" in sc else "Debian GNU/Linux 12 (bookworm)",
            "OSType": "linux", "KernelVersion": "6.1.0-28-amd64", "NCPU": 2, "MemTotal": 8 * 1024 ** 3,
            "SecurityOptions": opts, "CgroupVersion": "2", "ClientInfo": client,
            "FirewallBackend": {"Driver": "nftables" if "nftables" in sc else "iptables", "Info": None}}
    return info


def node_inspect(cluster: str, spec: dict) -> dict:
    bindings = {f"{c}/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(h)}] for c, h in spec["ports"]}
    bindings["6443/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": "38917"}]
    return {"Id": "4f3c2b1a" * 8, "Name": f"/{cluster}-control-plane",
            "State": {"Status": "running", "Running": True},
            "Config": {"Image": spec["image"], "Hostname": f"{cluster}-control-plane",
                       "Labels": {"io.x-k8s.kind.cluster": cluster, "io.x-k8s.kind.role": "control-plane"}},
            "HostConfig": {"PortBindings": bindings, "Privileged": True},
            "NetworkSettings": {"Networks": {"kind": {"IPAddress": NODE_IP, "Gateway": "172.18.0.1",
                                                      "IPPrefixLen": 16}}}}


IPTABLES_NFT = """# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Mar 24 10:00:00 2026
*nat
:PREROUTING ACCEPT [12:720]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [240:14400]
:POSTROUTING ACCEPT [250:15000]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
:CNI-DN-8fd6b5a4c3e2d1f0a9b8c7d - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-GMIQ2KX3FWVGEVVM - [0:0]
:KUBE-SEP-6E7XQMQ4RAYOWTTM - [0:0]
[12:720] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[3:180] -A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
[240:14400] -A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[250:15000] -A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
[0:0] -A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
[0:0] -A CNI-HOSTPORT-SETMARK -j MARK --set-xmark 0x2000/0x2000
[3:180] -A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"kindnet\\" id: \\"4f3c\\"" -m multiport --dports 80,443 -j CNI-DN-8fd6b5a4c3e2d1f0a9b8c7d
[3:180] -A CNI-DN-8fd6b5a4c3e2d1f0a9b8c7d -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.5:80
[0:0] -A KUBE-SERVICES -d 10.96.120.7/32 -p tcp -m comment --comment "default/url-shortener cluster IP" -m tcp --dport 80 -j KUBE-SVC-GMIQ2KX3FWVGEVVM
[0:0] -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
[0:0] -A KUBE-SVC-GMIQ2KX3FWVGEVVM -m comment --comment "default/url-shortener -> 10.244.0.7:8080" -j KUBE-SEP-6E7XQMQ4RAYOWTTM
[0:0] -A KUBE-SEP-6E7XQMQ4RAYOWTTM -p tcp -m comment --comment "default/url-shortener" -m tcp -j DNAT --to-destination 10.244.0.7:8080
[0:0] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
[0:0] -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
COMMIT
"""

IPTABLES_EMPTY = """# Generated by iptables-{mode}-save v1.8.9 on Tue Mar 24 10:00:00 2026
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
COMMIT
"""

CONNTRACK = """tcp      6 86397 ESTABLISHED src=10.244.0.1 dst=10.244.0.5 sport=51234 dport=80 src=10.244.0.5 dst=10.244.0.1 sport=80 dport=51234 [ASSURED] mark=0 use=1
tcp      6 117 TIME_WAIT src=172.18.0.1 dst=172.18.0.2 sport=40112 dport=80 src=10.244.0.5 dst=172.18.0.1 sport=80 dport=40112 [ASSURED] mark=0 use=1
udp      17 27 src=10.244.0.7 dst=10.96.0.10 sport=38811 dport=53 src=10.244.0.3 dst=10.244.0.7 sport=53 dport=38811 mark=0 use=1
"""

SS_NODE = """LISTEN 0      4096       127.0.0.1:10248      0.0.0.0:*    users:(("kubelet",pid=712,fd=20))
LISTEN 0      4096      172.18.0.2:2379       0.0.0.0:*    users:(("etcd",pid=601,fd=9))
LISTEN 0      4096               *:10250            *:*    users:(("kubelet",pid=712,fd=14))
LISTEN 0      4096               *:6443             *:*    users:(("kube-apiserver",pid=590,fd=3))
"""

SS_POD = """LISTEN 0      128          0.0.0.0:8080       0.0.0.0:*    users:(("python",pid=2201,fd=3))
"""

# `ip route` on a kind node (kindnet: ptp /32 routes per pod, Docker's network on eth0)
IP_ROUTE = """default via 172.18.0.1 dev eth0
10.244.0.3 dev veth5c1d2e3f scope host
10.244.0.7 dev veth9a8b7c6d scope host
172.18.0.0/16 dev eth0 proto kernel scope link src 172.18.0.2
"""

IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: veth5a1b2c3d    inet 10.244.0.1/32 scope global veth5a1b2c3d\\       valid_lft forever preferred_lft forever
12: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever preferred_lft forever
"""

CRICTL_PS = {"containers": [
    {"id": "9b1f0c2d3e4f5a6b7c8d9e0f", "podSandboxId": "aa11bb22cc33", "metadata": {"name": "url-shortener", "attempt": 0},
     "image": {"image": "docker.io/k8slab/url-shortener:0.1.0"}, "imageRef": "sha256:1234", "state": "CONTAINER_RUNNING",
     "labels": {"io.kubernetes.pod.name": "url-shortener-6d9c7b5f4-abcde", "io.kubernetes.pod.namespace": "default"}},
    {"id": "1c2d3e4f5a6b7c8d9e0f1a2b", "podSandboxId": "dd44ee55ff66", "metadata": {"name": "controller", "attempt": 0},
     "image": {"image": "registry.k8s.io/ingress-nginx/controller:v1.15.1"}, "imageRef": "sha256:5678",
     "state": "CONTAINER_RUNNING",
     "labels": {"io.kubernetes.pod.name": "ingress-nginx-controller-5b8d9c7f6-xyz12",
                "io.kubernetes.pod.namespace": "ingress-nginx"}},
]}


def http_response(body: dict | str, status: int = 200) -> str:
    text = body if isinstance(body, str) else json.dumps(body)
    return (f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(text)}\r\nServer: fake\r\n\r\n{text}")


def whoami(client_ip: str, host: str = "") -> dict:
    return {"pod": "url-shortener-6d9c7b5f4-abcde", "pod_ip": "10.244.0.7", "port": 8080,
            "node": "k8slab-control-plane", "client_ip": client_ip, "host": host}


CURL_VALUE_OPTIONS = {"-H", "--header", "-w", "--write-out", "--max-time", "-m", "-o", "--output"}


def curl(argv: list[str], client_ip: str) -> int:
    """curl [-s] [-i] [--max-time T] [-H 'Host: h'] [-w FORMAT] URL..., read as curl reads it: every
    argument that is not an option or an option's value is a URL (src/tool_getparam.c), fetched in
    turn, each followed by its -w write-out (\\n and %{time_total} expanded; written even when the
    transfer failed: src/tool_writeout.c). A host that does not resolve (one without a dot, like
    "curl") is exit 6, a refused connection exit 7; curl exits with the last transfer's error."""
    urls, opts, i = [], {}, 0
    while i < len(argv):
        a = argv[i]
        if a in CURL_VALUE_OPTIONS:
            opts[a] = argv[i + 1]
            i += 2
            continue
        if not a.startswith("-"):
            urls.append(a)
        i += 1
    host = opts.get("-H", "")
    fmt = opts.get("-w")
    rc, text = 0, ""
    for url in urls:
        hostname = re.sub(r"^https?://", "", url).split("/")[0].split(":")[0]
        path = re.sub(r"^https?://[^/]+", "", url) or "/"
        if "refused" in url or ":9/" in url:
            body, rc = "", 7
        elif "." not in hostname and hostname != "localhost":
            body, rc = "", 6
        elif path.rstrip("/").endswith("whoami"):
            body = http_response(whoami(client_ip, host.replace("Host: ", "")))
        else:
            body = http_response("not found", 404)
        text += body
        if fmt is not None:
            text += fmt.replace("\\n", "\n").replace("%{time_total}", "0.004215")
    sys.stdout.write(text)
    sys.stdout.flush()
    return rc


def run_in_container(cmd: list[str], client_ip: str) -> int:
    """A command in a node or pod: curl answers as above; `sh -c SCRIPT ...` runs in the real /bin/sh
    with this fake curl first on PATH (the kind backend's request loop is a real shell script)."""
    if cmd[0] == "curl":
        return curl(cmd, client_ip)
    if cmd[0] in ("sh", "/bin/sh"):
        import subprocess
        here = os.path.dirname(os.path.realpath(__file__))
        env = dict(os.environ, PATH=here + os.pathsep + os.environ.get("PATH", ""), FAKE_CLIENT_IP=client_ip)
        return subprocess.run(["/bin/sh", *cmd[1:]], env=env).returncode
    return out(err=f'OCI runtime exec failed: exec failed: unable to start container process: exec: '
                   f'"{cmd[0]}": executable file not found in $PATH: unknown', rc=127)


def docker(argv: list[str], stdin) -> int:
    sc = scenarios()
    if argv[:1] == ["info"]:
        if "docker-down" in sc:
            return out(json.dumps(docker_info()), DAEMON_DOWN, 1)
        return out(json.dumps(docker_info()))
    if "docker-down" in sc:
        return out(err=DAEMON_DOWN, rc=1)
    state = load_state()
    if argv[:1] == ["version"]:
        return out("28.2.2")
    if argv[:1] == ["inspect"]:
        found, missing = [], []
        for name in argv[1:]:
            cluster = name[:-len("-control-plane")] if name.endswith("-control-plane") else None
            if cluster and cluster in state["clusters"]:
                found.append(node_inspect(cluster, state["clusters"][cluster]))
            else:
                missing.append(name)
        rc = 1 if missing else 0
        return out(json.dumps(found, indent=4), "".join(f"Error: No such object: {m}\n" for m in missing), rc)
    if argv[:1] == ["build"]:
        tag = opt(argv, "-t")
        if "legacy-builder" in sc:
            # docker/cli cli/command/image/build.go (the legacy builder) has no --provenance flag;
            # cli/cobra.go FlagErrorFunc: the usage text and exit status 125.
            if any(a.startswith("--provenance") for a in argv):
                return out(err="unknown flag: --provenance\n\nUsage:  docker build [OPTIONS] PATH | URL | -\n\n"
                               "Run 'docker build --help' for more information", rc=125)
            attest = False                    # the legacy builder makes no attestations
        else:
            # buildx (build/opt.go toSolveOpt): a min-mode provenance attestation by default when the
            # driver supports attestations (the docker driver does only with the containerd store),
            # unless --provenance=false or BUILDX_NO_DEFAULT_ATTESTATIONS is true (buildx v0.10.4, #1645).
            no_default = os.environ.get("BUILDX_NO_DEFAULT_ATTESTATIONS", "").lower() in ("1", "t", "true")
            attest = ("containerd-store" in sc and not no_default
                      and not any(a in ("--provenance=false", "--provenance=0") for a in argv))
        state.setdefault("images", {})[tag] = {"attestations": attest}
        save_state(state)
        return out(err="#0 building with \"default\" instance using docker driver\n#1 DONE 0.1s\n"
                   f"#9 naming to docker.io/{tag} done")
    if argv[:1] == ["exec"]:
        node, cmd = argv[1], argv[2:]
        cluster = node.rsplit("-control-plane", 1)[0]
        if cluster not in state["clusters"]:
            return out(err=f"Error response from daemon: No such container: {node}", rc=1)
        legacy = "legacy-node" in sc
        if cmd[0] == "iptables-nft-save":
            return out(IPTABLES_EMPTY.format(mode="nft") if legacy else IPTABLES_NFT)
        if cmd[0] == "iptables-legacy-save":
            return out(IPTABLES_NFT.replace("iptables-nft-save v1.8.9 (nf_tables)", "iptables-legacy-save v1.8.9")
                       if legacy else IPTABLES_EMPTY.format(mode="legacy"))
        if cmd[0] == "conntrack":
            return out(CONNTRACK, "conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.")
        if cmd[0] == "ss":
            return out(SS_NODE)
        if cmd[:1] == ["nsenter"]:
            return out(SS_POD)
        if cmd[:2] == ["ip", "-4"]:
            return out(IP_ADDR)
        if cmd[:2] == ["ip", "route"]:
            return out(IP_ROUTE)
        if cmd[:2] == ["crictl", "ps"]:
            return out(json.dumps(CRICTL_PS))
        if cmd[:2] == ["crictl", "pods"]:
            name = opt(cmd, "--name")
            items = [{"id": "aa11bb22cc33" + "0" * 52, "metadata": {"name": name, "namespace": "default"}}] \
                if name and name.startswith("url-shortener") else []
            return out(json.dumps({"items": items}))
        if cmd[:2] == ["crictl", "inspectp"]:
            return out(json.dumps({"status": {"id": cmd[2]}, "info": {"pid": 2201}}))
        return run_in_container(cmd, "10.244.0.1")
    return out(err=f"docker: unknown command: docker {' '.join(argv[:1])}", rc=1)


# ------------------------------------------------------------------------------------------------
# kind
# ------------------------------------------------------------------------------------------------
def kubeconfig_text(name: str) -> str:
    return f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ZmFrZQ==
    server: https://127.0.0.1:38917
  name: kind-{name}
contexts:
- context:
    cluster: kind-{name}
    user: kind-{name}
  name: kind-{name}
current-context: kind-{name}
kind: Config
users:
- name: kind-{name}
  user:
    client-certificate-data: ZmFrZQ==
    client-key-data: ZmFrZQ==
"""


def kind(argv: list[str], stdin) -> int:
    sc = scenarios()
    state = load_state()
    if argv[:1] == ["version"]:
        return out("kind v0.32.0 go1.25.5 linux/amd64")
    if argv[:2] == ["get", "clusters"]:
        names = sorted(state["clusters"])
        return out("\n".join(names)) if names else out(err="No kind clusters found.")
    name = opt(argv, "--name", "kind")
    if argv[:2] == ["get", "nodes"]:
        if name not in state["clusters"]:
            return out(err=f"No kind nodes found for cluster \"{name}\".")
        return out(f"{name}-control-plane")
    if argv[:2] == ["get", "kubeconfig"]:
        if name not in state["clusters"]:
            return out(err=f"ERROR: could not locate any control plane nodes for cluster named '{name}'. "
                           "Use the --name option to select a different cluster", rc=1)
        return out(kubeconfig_text(name))
    if argv[:2] == ["create", "cluster"]:
        err = sys.stderr
        err.write(f'Creating cluster "{name}" ...\n')
        err.write(f" \u2713 Ensuring node image ({NODE_IMAGE}) \U0001f5bc\n")
        err.flush()
        if "hang" in sc:
            hang()
        if "port-busy" in sc:
            err.write(" \u2717 Preparing nodes \U0001f4e6\n")
            return out(err=(
                "ERROR: failed to create cluster: command \"docker run --name " + name + "-control-plane "
                "--hostname " + name + "-control-plane --label io.x-k8s.kind.role=control-plane --privileged "
                "--publish=0.0.0.0:8080:80/TCP --publish=0.0.0.0:8443:443/TCP " + NODE_IMAGE + "\" failed with "
                "error: exit status 125\nCommand Output: docker: Error response from daemon: driver failed "
                "programming external connectivity on endpoint " + name + "-control-plane (3f2a): Bind for "
                "0.0.0.0:8080 failed: port is already allocated."), rc=1)
        import yaml
        cfg = yaml.safe_load(Path(opt(argv, "--config")).read_text())
        node = (cfg.get("nodes") or [{}])[0]
        ports = [[int(p["containerPort"]), int(p["hostPort"])] for p in node.get("extraPortMappings") or []]
        state["clusters"][name] = {"image": node.get("image", NODE_IMAGE), "ports": ports}
        save_state(state)
        for line in (" \u2713 Preparing nodes \U0001f4e6", " \u2713 Writing configuration \U0001f4dc",
                     " \u2713 Starting control-plane \U0001f579\ufe0f", " \u2713 Installing CNI \U0001f50c",
                     " \u2713 Installing StorageClass \U0001f4be",
                     " \u2713 Waiting \u2264 2m0s for control-plane = Ready \u23f3", " \u2022 Ready after 15s \U0001f49a"):
            err.write(line + "\n")
        kc = opt(argv, "--kubeconfig")
        if kc:
            Path(kc).write_text(kubeconfig_text(name))
        err.write(f'Set kubectl context to "kind-{name}"\n')
        return out(f"You can now use your cluster with:\n\nkubectl cluster-info --context kind-{name} "
                   f"--kubeconfig {kc}\n\nThanks for using kind! \U0001f60a")
    if argv[:2] == ["delete", "cluster"]:
        state["clusters"].pop(name, None)
        state["applied"] = {}
        save_state(state)
        return out(err=f'Deleting cluster "{name}" ...')
    if argv[:2] == ["load", "docker-image"]:
        if name not in state["clusters"]:
            return out(err=f"ERROR: no nodes found for cluster \"{name}\"", rc=1)
        # kind logs with its logger on stderr (real-cli-behaviours.yaml d14a).
        loading = f'Image: "{argv[2]}" with ID "sha256:0123abcd" not yet present on node "{name}-control-plane", loading...'
        if (state.get("images") or {}).get(argv[2], {}).get("attestations"):
            # `docker save` of an image with an attestation manifest misses that manifest's blobs, and
            # the node's `ctr images import --all-platforms` stops on it (kind pkg/cluster/nodeutils/
            # util.go LoadImageArchive; the output as in kind issues #3845 and #4066).
            return out(err=(loading + "\nERROR: failed to load image: command \"docker exec --privileged -i "
                            f"{name}-control-plane ctr --namespace=k8s.io images import --all-platforms --digests "
                            "--snapshotter=overlayfs -\" failed with error: exit status 1\n\nCommand Output: ctr: "
                            "content digest sha256:44b2c602cb838fd6a647d6d48cf0e6f56227351b2903263d60637ebd26545a8d: "
                            "not found"), rc=1)
        return out(err=loading)
    return out(err=f"ERROR: unknown command \"{' '.join(argv[:2])}\" for \"kind\"", rc=1)


# ------------------------------------------------------------------------------------------------
# kubectl
# ------------------------------------------------------------------------------------------------
def cluster_of(argv: list[str]) -> str | None:
    kc = opt(argv, "--kubeconfig")
    if not kc or not Path(kc).is_file():
        return None
    m = re.search(r"name: kind-([a-z0-9-]+)", Path(kc).read_text())
    return m.group(1) if m else None


def ready_pod(name: str, ns: str, ip: str, labels: dict, image: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]},
            "status": {"phase": "Running", "podIP": ip, "hostIP": NODE_IP,
                       "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "c", "image": image, "ready": True,
                                              "state": {"running": {"startedAt": "2026-03-24T10:00:00Z"}}}]}}


def pods(cluster: str) -> list[dict]:
    sc = scenarios()
    node = f"{cluster}-control-plane"
    out_ = []
    for i, (suffix, ip) in enumerate((("abcde", "10.244.0.7"), ("fghij", "10.244.0.8"))):
        p = ready_pod(f"url-shortener-6d9c7b5f4-{suffix}", "default", ip, {"app": "url-shortener"},
                      "k8slab/url-shortener:0.1.0", node)
        if "image-pull" in sc:
            p["status"].update(phase="Pending", conditions=[{"type": "Ready", "status": "False"},
                                                            {"type": "PodScheduled", "status": "True"}])
            p["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {
                "reason": "ImagePullBackOff",
                "message": 'Back-off pulling image "k8slab/url-shortener:0.1.0": ErrImagePull: failed to pull and '
                           'unpack image "docker.io/k8slab/url-shortener:0.1.0": pull access denied'}})
        if "crash" in sc:
            p["status"]["conditions"][0]["status"] = "False"
            p["status"]["containerStatuses"][0].update(ready=False, state={"waiting": {
                "reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}})
        out_.append(p)
    state = load_state()
    ctl_exists = "controller-late" not in sc or state.get("ingress_pod_asks", 0) > 2
    ctl = ready_pod("ingress-nginx-controller-5b8d9c7f6-xyz12", "ingress-nginx", "10.244.0.5",
                    {"app.kubernetes.io/component": "controller", "app.kubernetes.io/name": "ingress-nginx"},
                    "registry.k8s.io/ingress-nginx/controller:v1.15.1", node)
    if "controller-pending" in sc:
        ctl["spec"].pop("nodeName")
        ctl["spec"]["nodeSelector"] = {"ingress-ready": "true", "kubernetes.io/os": "linux"}
        ctl["status"] = {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
                       "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."}]}
    forbidden = controller_forbidden(state)
    if forbidden and "controller-pending" not in sc:      # a pod that never started cannot crash
        # The controller's first API call (ingress-nginx internal/k8s GetIngressPod) is refused: it
        # exits (klog.Fatalf in cmd/nginx/main.go) and the kubelet restarts it with a back-off.
        ctl["status"]["conditions"][0]["status"] = "False"
        ctl["status"]["containerStatuses"][0].update(ready=False, restartCount=4, state={"waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 1m20s restarting failed container=controller pod={ctl['metadata']['name']}_ingress-nginx"
                       "(0d6c5e1a-7f3b-4c2d-9e8f-1a2b3c4d5e6f)"}},
            lastState={"terminated": {"exitCode": 255, "reason": "Error"}})
    if ctl_exists:
        out_.append(ctl)
    out_.append(ready_pod("coredns-7c65d6cfc9-q2w3e", "kube-system", "10.244.0.3", {"k8s-app": "kube-dns"},
                          "registry.k8s.io/coredns/coredns:v1.12.1", node))
    return out_


def controller_forbidden(state: dict) -> str:
    """When the ingress controller Deployment was applied, whether its ServiceAccount may get its own
    pod, as RBAC decides it (a RoleBinding in the namespace or a ClusterRoleBinding, to a role whose
    core-group rules allow get on pods). Returns the controller's fatal log line if it may not."""
    applied = state.get("applied", {})
    dep = next((d for d in applied.get("deployments", []) if d["metadata"]["name"] == "ingress-nginx-controller"), None)
    if dep is None:
        return ""
    ns = dep["metadata"].get("namespace", "default")
    sa = dep["spec"]["template"]["spec"].get("serviceAccountName", "default")
    for b in applied.get("rolebindings", []) + applied.get("clusterrolebindings", []):
        if b["kind"] == "RoleBinding" and b["metadata"].get("namespace", "default") != ns:
            continue
        if not any(x.get("kind") == "ServiceAccount" and x.get("name") == sa and x.get("namespace") == ns
                   for x in b.get("subjects") or []):
            continue
        ref = b["roleRef"]
        for r in applied.get("roles" if ref["kind"] == "Role" else "clusterroles", []):
            if r["metadata"]["name"] != ref["name"] or \
                    (ref["kind"] == "Role" and r["metadata"].get("namespace", "default") != b["metadata"].get("namespace")):
                continue
            if any("" in rule.get("apiGroups", []) and "pods" in rule.get("resources", []) and "get" in rule.get("verbs", [])
                   for rule in r.get("rules") or []):
                return ""
    pod = "ingress-nginx-controller-5b8d9c7f6-xyz12"
    # cmd/nginx/main.go: klog.Fatalf("Unexpected error obtaining ingress-nginx pod: %v", err);
    # internal/k8s/main.go GetIngressPod: fmt.Errorf("unable to get POD information: %v", err);
    # the API server's RBAC refusal (Forbidden) for the pod's ServiceAccount.
    return (f"F0324 10:00:03.123456       7 main.go:121] Unexpected error obtaining ingress-nginx pod: unable to get "
            f"POD information: pods \"{pod}\" is forbidden: User \"system:serviceaccount:{ns}:{sa}\" cannot get "
            f"resource \"pods\" in API group \"\" in the namespace \"{ns}\"")


def services() -> list[dict]:
    def svc(name, ns, ip, ports, typ="ClusterIP", selector=None):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                "spec": {"type": typ, "clusterIP": ip, "clusterIPs": [ip], "ports": ports,
                         **({"selector": selector} if selector else {})},
                "status": {"loadBalancer": {}}}
    return [
        svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]),
        svc("url-shortener", "default", "10.96.120.7", [{"name": "http", "port": 80, "protocol": "TCP",
                                                         "targetPort": 8080}], selector={"app": "url-shortener"}),
        svc("ingress-nginx-controller", "ingress-nginx", "10.96.44.120",
            [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http", "nodePort": 31290, "appProtocol": "http"},
             {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https", "nodePort": 30946,
              "appProtocol": "https"}], typ="LoadBalancer",
            selector={"app.kubernetes.io/component": "controller"}),
        svc("ingress-nginx-controller-admission", "ingress-nginx", "10.96.183.53",
            [{"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": "webhook"}],
            selector={"app.kubernetes.io/component": "controller"}),
        svc("kube-dns", "kube-system", "10.96.0.10", [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53}]),
    ]


def endpointslices() -> list[dict]:
    sc = scenarios()

    def eps(svc, ns, ports, endpoints):
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": f"{svc}-x7k2p", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
                "ports": ports, "endpoints": endpoints}

    def ep(ip, pod, ns, ready=True):
        return {"addresses": [ip], "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": "k8slab-control-plane", "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}}
    app_ready = not ({"image-pull", "crash"} & sc)
    return [
        eps("url-shortener", "default", [{"name": "http", "port": 8080, "protocol": "TCP"}],
            [ep("10.244.0.7", "url-shortener-6d9c7b5f4-abcde", "default", app_ready),
             ep("10.244.0.8", "url-shortener-6d9c7b5f4-fghij", "default", app_ready)]),
        eps("ingress-nginx-controller-admission", "ingress-nginx", [{"name": "https-webhook", "port": 8443}],
            [] if ({"webhook-not-ready", "controller-pending"} & sc) else
            [ep("10.244.0.5", "ingress-nginx-controller-5b8d9c7f6-xyz12", "ingress-nginx")]),
    ]


def deployments() -> list[dict]:
    def dep(name, ns, labels):
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                         "template": {"metadata": {"labels": labels},
                                      "spec": {"containers": [{"name": "c", "image": "k8slab/url-shortener:0.1.0"}]}}},
                "status": {"readyReplicas": 1}}
    return [dep("url-shortener", "default", {"app": "url-shortener"}),
            dep("ingress-nginx-controller", "ingress-nginx", {"app.kubernetes.io/component": "controller"}),
            dep("coredns", "kube-system", {"k8s-app": "kube-dns"})]


def nodes(cluster: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Node",
             "metadata": {"name": f"{cluster}-control-plane",
                          "labels": {"ingress-ready": "true", "kubernetes.io/hostname": f"{cluster}-control-plane",
                                     "node-role.kubernetes.io/control-plane": ""}},
             "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": f"kind://docker/{cluster}/{cluster}-control-plane"},
             "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP},
                                      {"type": "Hostname", "address": f"{cluster}-control-plane"}],
                        "conditions": [{"type": "Ready", "status": "True"}],
                        "nodeInfo": {"kubeletVersion": "v1.35.0", "containerRuntimeVersion": "containerd://2.1.4"}}}]


PLURAL = {"pod": "pods", "po": "pods", "svc": "services", "service": "services", "node": "nodes",
          "deploy": "deployments", "deployment": "deployments", "ingress": "ingresses", "ing": "ingresses",
          "endpointslice": "endpointslices", "endpoints": "endpoints", "ep": "endpoints"}


def objects_of(kind: str, cluster: str, state: dict) -> list[dict]:
    kind = PLURAL.get(kind, kind)
    base = {"pods": lambda: pods(cluster), "services": services, "endpointslices": endpointslices,
            "deployments": deployments, "nodes": lambda: nodes(cluster)}.get(kind, lambda: [])()
    def key(o):
        ns = None if kind in ("nodes", "namespaces", "ingressclasses") else o["metadata"].get("namespace", "default")
        return ns, o["metadata"]["name"]
    seen = {key(o) for o in base}
    for obj in state.get("applied", {}).get(kind, []):
        if key(obj) not in seen:
            obj = json.loads(json.dumps(obj))
            if key(obj)[0]:
                obj["metadata"]["namespace"] = key(obj)[0]
            if kind == "pods" and not obj.get("status"):
                # the fake kubelet starts an applied pod at once (the course's client pod: 10.244.0.9,
                # the address the fake curl reports for requests from a pod)
                obj["status"] = {"phase": "Running", "podIP": "10.244.0.9", "hostIP": NODE_IP,
                                 "conditions": [{"type": "Ready", "status": "True"}]}
                obj.setdefault("spec", {}).setdefault("nodeName", f"{cluster}-control-plane")
            base.append(obj)
    return base


def select(items: list[dict], selector: str | None, namespace: str | None) -> list[dict]:
    if namespace:
        items = [i for i in items if i["metadata"].get("namespace") == namespace]
    if selector:
        want = dict(part.split("=", 1) for part in selector.split(","))
        items = [i for i in items if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in want.items())]
    return items


GROUPS = {"Deployment": "deployment.apps", "Ingress": "ingress.networking.k8s.io", "Service": "service",
          "Namespace": "namespace", "ConfigMap": "configmap", "ServiceAccount": "serviceaccount", "Job": "job.batch",
          "Role": "role.rbac.authorization.k8s.io", "ClusterRole": "clusterrole.rbac.authorization.k8s.io",
          "RoleBinding": "rolebinding.rbac.authorization.k8s.io", "IngressClass": "ingressclass.networking.k8s.io",
          "ClusterRoleBinding": "clusterrolebinding.rbac.authorization.k8s.io",
          "ValidatingWebhookConfiguration": "validatingwebhookconfiguration.admissionregistration.k8s.io"}


def kubectl(argv: list[str], stdin) -> int:
    sc = scenarios()
    # global flags first
    args = list(argv)
    if args[:1] == ["--kubeconfig"]:
        args = args[2:]
    if args[:1] == ["version"]:
        client = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}
        if "--client" in args:
            return out(json.dumps({"clientVersion": client, "kustomizeVersion": "v5.7.1"}, indent=2))
        return out(json.dumps({"clientVersion": client, "serverVersion": {**client, "gitVersion": "v1.35.0"}}))
    cluster = cluster_of(argv)
    state = load_state()
    if cluster is None or cluster not in state["clusters"]:
        return out(err="E0324 10:00:00.000000   4242 memcache.go:265] couldn't get current server API group list: "
                       "Get \"https://127.0.0.1:38917/api?timeout=32s\": dial tcp 127.0.0.1:38917: connect: "
                       "connection refused\nThe connection to the server 127.0.0.1:38917 was refused - did you "
                       "specify the right host or port?", rc=1)
    ns = opt(args, "-n")
    verb_i = next(i for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in ("-n", "-l")))
    verb, rest = args[verb_i], args[verb_i + 1:]
    if "controller-late" in sc and ns == "ingress-nginx" and verb in ("get", "wait") and \
            any(PLURAL.get(a, a) == "pods" for a in rest):
        state["ingress_pod_asks"] = state.get("ingress_pod_asks", 0) + 1
        save_state(state)
    if verb == "get":
        kind = rest[0]
        name = rest[1] if len(rest) > 1 and not rest[1].startswith("-") else None
        items = select(objects_of(kind, cluster, state), opt(rest, "-l"), None if "-A" in rest else (ns or "default")
                       if PLURAL.get(kind, kind) != "nodes" else None)
        if name:
            match = [i for i in items if i["metadata"]["name"] == name]
            if not match:
                return out(err=f'Error from server (NotFound): {PLURAL.get(kind, kind)} "{name}" not found', rc=1)
            return out(json.dumps(match[0], indent=4))
        return out(json.dumps({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}},
                              indent=4))
    if verb == "apply":
        import yaml
        docs = [d for d in yaml.safe_load_all(stdin or "") if d]
        if "webhook-not-ready" in sc and any(d.get("kind") == "Ingress" for d in docs):
            return out(err='Error from server (InternalError): error when creating "STDIN": Internal error '
                           'occurred: failed calling webhook "validate.nginx.ingress.kubernetes.io": failed to call '
                           'webhook: Post "https://ingress-nginx-controller-admission.ingress-nginx.svc:443/'
                           'networking/v1/ingresses?timeout=10s": dial tcp 10.96.183.53:443: connect: connection '
                           'refused', rc=1)
        lines = []
        for d in docs:
            plural = PLURAL.get(d["kind"].lower(), d["kind"].lower() + "s")
            applied = state.setdefault("applied", {}).setdefault(plural, [])
            applied[:] = [o for o in applied if o["metadata"]["name"] != d["metadata"]["name"]] + [d]
            lines.append(f"{GROUPS.get(d['kind'], d['kind'].lower())}/{d['metadata']['name']} serverside-applied")
        save_state(state)
        return out("\n".join(lines))
    if verb == "rollout":
        dep = rest[1].split("/", 1)[1]
        if "hang" in sc:
            hang()
        if ({"image-pull", "crash"} & sc and (ns or "default") == "default") or \
                ("controller-pending" in sc and ns == "ingress-nginx"):
            return out(f'Waiting for deployment "{dep}" rollout to finish: 0 of 2 updated replicas are available...',
                       "error: timed out waiting for the condition", 1)
        return out(f'deployment "{dep}" successfully rolled out')
    if verb == "wait":
        if "hang" in sc:
            hang()
        words = [a for i, a in enumerate(rest) if not a.startswith("-") and (i == 0 or rest[i - 1] not in ("-n", "-l"))]
        kind, _, wanted = (words[0] if words else "").partition("/")      # `pod/NAME` or `pod -l ...`
        kind = PLURAL.get(kind, kind)
        items = select(objects_of(kind, cluster, state), opt(rest, "-l"),
                       None if kind == "nodes" or "-A" in rest else (ns or "default"))
        if wanted:
            items = [i for i in items if i["metadata"]["name"] == wanted]
            if not items:   # a named object is fetched first: the API's NotFound (k6a's form)
                return out(err=f'Error from server (NotFound): {kind} "{wanted}" not found', rc=1)
        if not items:
            # kubectl pkg/cmd/wait/wait.go RunWaitContext: nothing visited (a selector matching nothing,
            # or --all with no objects) -> errNoMatchingResources "no matching resources found", at once,
            # whatever --timeout says; cmdutil.CheckErr adds "error: " and exits 1 (kubectl 1.30 - 1.37).
            return out(err="error: no matching resources found", rc=1)
        singular = kind[:-1] if kind.endswith("s") else kind
        if kind == "pods":
            stuck = [i for i in items if not any(c.get("type") == "Ready" and c.get("status") == "True"
                                                 for c in (i.get("status") or {}).get("conditions") or [])]
            if stuck:
                # real-cli-behaviours.yaml k2b/k2c: after --timeout, one line per pod that never became
                # Ready ("error: " only when there is one), exit 1; the Ready ones print "condition met".
                met = "\n".join(f"pod/{i['metadata']['name']} condition met" for i in items if i not in stuck)
                lines = [f"timed out waiting for the condition on pods/{i['metadata']['name']}" for i in stuck]
                return out(met, ("error: " + lines[0]) if len(lines) == 1 else "\n".join(lines), 1)
        return out("\n".join(f"{singular}/{i['metadata']['name']} condition met" for i in items))
    if verb == "logs":
        line = controller_forbidden(state) if "ingress-nginx-controller" in " ".join(rest) else ""
        return out(line or "I0324 10:00:00.000000       1 main.go:1] started")
    if verb == "scale":
        return out(f"deployment.apps/{rest[0].split('/', 1)[1]} scaled")
    if verb == "delete":
        return out(f'{rest[0]} "{rest[1]}" deleted')
    if verb == "exec":
        head, cmd = rest[:rest.index("--")], rest[rest.index("--") + 1:]
        target = next(a for i, a in enumerate(head) if not a.startswith("-") and (i == 0 or head[i - 1] != "-n"))
        if not target.startswith("deploy/"):
            # kubectl pkg/cmd/exec/exec.go: the pod is looked up in -n's namespace (default: default);
            # a pod of another namespace is a NotFound (real-cli-behaviours.yaml k6a-exec-pod-missing).
            known = select(objects_of("pods", cluster, state), None, ns or "default")
            if not any(p["metadata"]["name"] == target for p in known):
                return out(err=f'Error from server (NotFound): pods "{target}" not found', rc=1)
        if cmd[:1] == ["cat"]:
            return out("# Configuration checksum: 1234\nhttp {\n    server {\n        server_name hello.local ;\n"
                       "        listen 80 ;\n    }\n}")
        return run_in_container(cmd, "10.244.0.9")
    if verb in ("run", "debug"):
        if "--" in rest and rest[rest.index("--") + 1:][:1] == ["curl"]:
            return curl(rest[rest.index("--") + 1:], "10.244.0.9")
        return out(rc=0)
    if verb == "port-forward":
        return port_forward(rest)
    return out(err=f'error: unknown command "{verb}" for "kubectl"', rc=1)


# --- kubectl port-forward: really listens and serves /whoami ----------------------------------------
def port_forward(rest: list[str]) -> int:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    sc = scenarios()
    ports = next(a for a in rest if re.match(r"^\d*:\d+$|^\d+$", a))
    local, _, remote = ports.partition(":")
    local, remote = int(local), int(remote or local)
    # A grandchild in the same process group, like kubectl's helpers: it must die with the group.
    pid = os.fork()
    if pid == 0:
        while True:
            time.sleep(3600)
    if os.environ.get("K8SLAB_FAKE_PIDS"):
        with open(os.environ["K8SLAB_FAKE_PIDS"], "a") as f:
            f.write(f"{os.getpid()} {pid} {os.getpgrp()}\n")
    if "hang" in sc:
        hang()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            sys.stdout.write(f"Handling connection for {local}\n")
            sys.stdout.flush()
            if self.path.rstrip("/").endswith("whoami"):
                body = json.dumps(whoami("127.0.0.1", self.headers.get("Host", ""))).encode()
                self.send_response(200)
            else:
                body = b"not found"
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    try:
        server = ThreadingHTTPServer(("127.0.0.1", local), Handler)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        return out(err=(f"Unable to listen on port {local}: Listeners failed to create with the following errors: "
                        f"[unable to create listener: Error listen tcp4 127.0.0.1:{local}: bind: address already in use "
                        f"unable to create listener: Error listen tcp6 [::1]:{local}: bind: address already in use]\n"
                        f"error: unable to listen on any of the requested ports: [{{{local} {remote}}}]"), rc=1)
    sys.stdout.write(f"Forwarding from 127.0.0.1:{local} -> {remote}\nForwarding from [::1]:{local} -> {remote}\n")
    sys.stdout.flush()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    hang()
    return 0
