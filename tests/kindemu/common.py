"""What the emulated ``docker``, ``kind`` and ``kubectl`` share: the state directory, the image store,
argv parsing, the texts the real tools print (each with the upstream source that prints it), and the
answers that need no cluster (``docker info``, ``docker build``, ``kind get clusters``, ...).

The ground truth for the texts is ``../shared/notes/real-cli-behaviours.yaml`` (entry ids are quoted
beside each text); texts that file leaves out were read in the upstream sources named beside them.

Versions emulated: Docker Engine/CLI 28.5.2, kind v0.32.0, kubectl v1.35.0 against Kubernetes v1.35.8
(the node image of kind/cluster.yaml).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import sys
import tarfile
import io
from pathlib import Path
from typing import Callable

DOCKER_VERSION = "28.5.2"
KIND_VERSION_LINE = "kind v0.32.0 go1.26.3 linux/amd64"          # yaml d15-kind-version (v0.32.0 example)
KUBECTL_CLIENT = {"major": "1", "minor": "35", "gitVersion": "v1.35.0", "gitCommit": "66452049f3d692768c39c797b21b793dce80314e",
                  "gitTreeState": "clean", "buildDate": "2025-12-17T12:41:01Z", "goVersion": "go1.25.5",
                  "compiler": "gc", "platform": "linux/amd64"}
KUSTOMIZE_VERSION = "v5.7.1"
DEFAULT_NODE_IMAGE = "kindest/node:v1.35.8"

MODES = ("linux", "desktop")


# --------------------------------------------------------------------------------------------------
# where things live
# --------------------------------------------------------------------------------------------------
def state_root() -> Path:
    return Path(os.environ.get("K8SLAB_EMU_STATE") or "/run/k8slab-emu/default")


def mode() -> str:
    m = os.environ.get("K8SLAB_EMU_MODE", "linux")
    return m if m in MODES else "linux"


def machine_netns() -> str | None:
    """The namespace that is the learner's machine (set by tests/kindemu/run)."""
    return os.environ.get("K8SLAB_EMU_MACHINE") or None


def cluster_dir(name: str) -> Path:
    return state_root() / "clusters" / name


def socket_path(name: str) -> Path:
    return cluster_dir(name) / "sock"


def daemon_alive(name: str) -> bool:
    """A cluster exists while its daemon answers on its socket."""
    path = socket_path(name)
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2)
        s.connect(str(path))
        s.sendall(b'{"op": "ping"}\n')
        return s.makefile("rb").readline().strip() != b""
    except OSError:
        return False
    finally:
        s.close()


def clusters() -> list[str]:
    d = state_root() / "clusters"
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "nodes.json").exists() and daemon_alive(p.name))


def cluster_nodes(name: str) -> list[dict]:
    """The ``docker inspect`` entries of a cluster's node containers (written by its daemon)."""
    try:
        return json.loads((cluster_dir(name) / "nodes.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []


def node_owner(node: str) -> str | None:
    """Which live cluster has a node container of this name (or ID prefix)."""
    for c in clusters():
        for n in cluster_nodes(c):
            if n["Name"].lstrip("/") == node or (len(node) >= 3 and n["Id"].startswith(node)):
                return c
    return None


# --------------------------------------------------------------------------------------------------
# the image store (docker's side) and what is loaded into nodes (kind's side, per cluster daemon)
# --------------------------------------------------------------------------------------------------
def images_path() -> Path:
    return state_root() / "images.json"


def load_images() -> dict:
    try:
        return json.loads(images_path().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def save_images(images: dict) -> None:
    images_path().parent.mkdir(parents=True, exist_ok=True)
    tmp = images_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(images, indent=1, sort_keys=True))
    tmp.replace(images_path())


def normalize_image(ref: str) -> str:
    """docker's familiar form with a tag: ``k8slab/x`` -> ``k8slab/x:latest``."""
    last = ref.rsplit("/", 1)[-1]
    if "@" not in ref and ":" not in last:
        ref += ":latest"
    return ref


def fully_qualified(ref: str) -> str:
    """containerd's name for an image reference: ``docker.io/library/busybox:1.36``."""
    ref = normalize_image(ref)
    first = ref.split("/", 1)[0]
    if "/" not in ref:
        return f"docker.io/library/{ref}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{ref}"
    return ref


def context_digest(directory: Path) -> str:
    """sha256 over the build context (paths and bytes), what `docker build` records as the image."""
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(directory)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# argv helpers
# --------------------------------------------------------------------------------------------------
def take(argv: list[str], *names: str, flag: bool = False, default=None):
    """Remove option ``names`` (``--x v``, ``--x=v``, ``-x v``; a flag: ``--x``, ``--x=true``) from argv
    and return its last value."""
    value = default
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        hit = None
        for n in names:
            if a == n:
                hit = n
                if flag:
                    value = True
                    del argv[i]
                else:
                    if i + 1 < len(argv):
                        value = argv[i + 1]
                        del argv[i:i + 2]
                    else:
                        del argv[i]
                break
            if a.startswith(n + "=") and n.startswith("--") or (a.startswith(n) and len(n) == 2 and n != a
                                                                  and not a.startswith("--") and not flag):
                hit = n
                v = a[len(n) + 1:] if a.startswith(n + "=") else a[len(n):]
                value = (v.lower() not in ("false", "0")) if flag else v
                del argv[i]
                break
        if hit is None:
            i += 1
    return value


def take_all(argv: list[str], *names: str) -> list[str]:
    out = []
    while True:
        v = take(argv, *names)
        if v is None:
            return out
        out.append(v)


def split_dashdash(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_duration(text: str | None, default: float) -> float:
    """Go durations as kubectl/kind take them: 30s, 2m0s, 1h, 500ms, 0 (0: forever)."""
    if text is None or text == "":
        return default
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text):
        total += float(num) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def go_duration(seconds: float) -> str:
    """1m0s, 30s, 2m0s: how Go prints a time.Duration (whole seconds)."""
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


# --------------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------------
class Out:
    """Where a handler writes: stdout/stderr text (flushed as it goes)."""

    def __init__(self, out: Callable[[str], None], err: Callable[[str], None]):
        self.out, self.err = out, err

    @classmethod
    def std(cls) -> "Out":
        def w(stream):
            def write(text: str) -> None:
                stream.write(text)
                stream.flush()
            return write
        return cls(w(sys.stdout), w(sys.stderr))


def kube_json(obj) -> str:
    """kubectl's -o json: json.MarshalIndent with 4 spaces, map keys sorted
    (kubernetes/cli-runtime pkg/printers/json.go JSONPrinter; yaml k9a-nodes-json-internalip)."""
    return json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False) + "\n"


def go_json(obj) -> str:
    """Go's encoding/json without indent (what `{{json .}}` prints): compact, no spaces."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"


def go_template(fmt: str, data) -> str:
    """The few Go templates the callers use: ``{{json .}}``, ``{{ .Id }}``, ``{{.Server.Version}}``."""
    def field(path: str):
        cur = data
        for part in [p for p in path.strip().lstrip(".").split(".") if p]:
            cur = cur.get(part) if isinstance(cur, dict) else None
        return cur

    def repl(m: re.Match) -> str:
        expr = m.group(1).strip()
        if expr.startswith("json "):
            v = field(expr[5:].strip()) if expr[5:].strip() != "." else data
            return json.dumps(v, separators=(",", ":"))
        v = field(expr) if expr != "." else data
        return "" if v is None else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return re.sub(r"\{\{(.*?)\}\}", repl, fmt) + "\n"


# --------------------------------------------------------------------------------------------------
# docker: the answers that need no cluster
# --------------------------------------------------------------------------------------------------
def docker_info() -> dict:
    """``docker info --format '{{json .}}'`` (yaml o18b-docker-info-fields; field names from moby
    api/types/system/info.go). Desktop: OperatingSystem "Docker Desktop", Name "docker-desktop", a
    linuxkit kernel and the containerd image store (moby daemon/containerd/service.go
    LayerStoreStatus -> DriverStatus [["driver-type", "io.containerd.snapshotter.v1"]], Driver the
    snapshotter "overlayfs"); Linux: Debian and the classic overlay2 graphdriver."""
    desktop = mode() == "desktop"
    client = {"Debug": False, "Version": DOCKER_VERSION, "GitCommit": "ecc6942", "GoVersion": "go1.24.8",
              "Os": "linux", "Arch": "amd64", "BuildTime": "Wed Oct  8 12:17:16 2025", "Context":
              "desktop-linux" if desktop else "default", "Plugins": [], "Warnings": None}
    n_nodes = sum(len(cluster_nodes(c)) for c in clusters())
    info = {
        "ID": "6c0c9a52-3f5e-4f0a-9a8f-5b8d2c1e7a41" if desktop else "b5c1e3a0-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        "Containers": n_nodes, "ContainersRunning": n_nodes, "ContainersPaused": 0, "ContainersStopped": 0,
        "Images": len(load_images()),
        "Driver": "overlayfs" if desktop else "overlay2",
        "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]] if desktop else
        [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"],
         ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "ipvlan", "macvlan", "null", "overlay"],
                    "Authorization": None, "Log": ["awslogs", "fluentd", "gcplogs", "gelf", "journald",
                                                   "json-file", "local", "splunk", "syslog"]},
        "MemoryLimit": True, "SwapLimit": True, "CpuCfsPeriod": True, "CpuCfsQuota": True,
        "IPv4Forwarding": True, "Debug": False, "NFd": 40, "OomKillDisable": False, "NGoroutines": 60,
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs" if desktop else "systemd", "CgroupVersion": "2",
        "KernelVersion": "6.10.14-linuxkit" if desktop else "6.1.0-41-amd64",
        "OperatingSystem": "Docker Desktop" if desktop else "Debian GNU/Linux 12 (bookworm)",
        "OSVersion": "" if desktop else "12", "OSType": "linux", "Architecture": "x86_64",
        "IndexServerAddress": "https://index.docker.io/v1/", "NCPU": os.cpu_count() or 2,
        "MemTotal": 8 * 1024 ** 3 if desktop else _mem_total(), "DockerRootDir": "/var/lib/docker",
        "Name": "docker-desktop" if desktop else socket.gethostname(),
        "Labels": ["com.docker.desktop.address=unix:///Users/learner/Library/Containers/com.docker.docker/Data/docker-cli.sock"]
        if desktop else [],
        "ExperimentalBuild": False, "ServerVersion": DOCKER_VERSION, "Runtimes": {"runc": {"path": "runc"}},
        "DefaultRuntime": "runc", "LiveRestoreEnabled": False, "Isolation": "",
        "InitBinary": "docker-init", "SecurityOptions": ["name=seccomp,profile=unconfined" if desktop else
                                                         "name=seccomp,profile=builtin", "name=cgroupns"],
        "FirewallBackend": {"Driver": "iptables"},
        "Warnings": None, "ClientInfo": client,
    }
    return info


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 1024 ** 3


def docker_version() -> dict:
    return {"Client": {"Version": DOCKER_VERSION, "ApiVersion": "1.51", "Os": "linux", "Arch": "amd64"},
            "Server": {"Version": DOCKER_VERSION, "ApiVersion": "1.51", "MinAPIVersion": "1.24",
                       "Os": "linux", "Arch": "amd64", "KernelVersion": docker_info()["KernelVersion"]}}


def attestations_by_default(env: dict) -> bool:
    """Whether ``docker build`` attaches a provenance attestation without being asked: BuildKit adds
    min-mode provenance by default unless ``--provenance=false`` or ``BUILDX_NO_DEFAULT_ATTESTATIONS``
    is set (docs.docker.com/build/metadata/attestations/slsa-provenance and build/building/variables
    #buildx_no_default_attestations; docker/buildx build/opt.go toSolveOpt), and only where the image
    store can hold an image index: the containerd store. The classic store's `docker` exporter cannot,
    so buildx leaves it out there (supportAttestations false)."""
    if mode() != "desktop":
        return False
    if env.get("DOCKER_BUILDKIT") == "0":
        return False
    v = env.get("BUILDX_NO_DEFAULT_ATTESTATIONS")
    if v is not None and v.strip().lower() in ("1", "true", "t", "yes"):
        return False
    return True


def docker_local(argv: list[str], stdin: str | None, cwd: str, env: dict, o: Out) -> int | None:
    """docker commands answered without a cluster; None: not one of them."""
    args = list(argv)
    while args and args[0] in ("--context", "-c", "--host", "-H", "--config", "--log-level", "-l"):
        args = args[2:]
    if not args:
        return None
    verb = args[0]
    if verb == "info":
        fmt = take(args, "--format", "-f")
        info = docker_info()
        o.out(go_template(fmt, info) if fmt else _info_text(info))
        return 0
    if verb == "version":
        fmt = take(args, "--format", "-f")
        v = docker_version()
        o.out(go_template(fmt, v) if fmt else f"Client:\n Version:           {DOCKER_VERSION}\n\n"
              f"Server:\n Engine:\n  Version:          {DOCKER_VERSION}\n")
        return 0
    if verb == "build" or args[:2] == ["buildx", "build"] or args[:2] == ["image", "build"]:
        return docker_build(args[2:] if verb != "build" else args[1:], cwd, env, o)
    if args[:2] == ["image", "inspect"]:
        return docker_image_inspect(args[2:], o)
    if verb == "save" or args[:2] == ["image", "save"]:
        return docker_save(args[2:] if verb != "save" else args[1:], cwd, o)
    if verb in ("inspect", "container") and (verb == "inspect" or args[1:2] == ["inspect"]):
        return docker_inspect(args[1:] if verb == "inspect" else args[2:], o)
    if verb == "ps":
        return docker_ps(args[1:], o)
    return None


def _info_text(info: dict) -> str:
    return (f"Client:\n Version:    {DOCKER_VERSION}\n Context:    {info['ClientInfo']['Context']}\n\n"
            f"Server:\n Containers: {info['Containers']}\n Server Version: {DOCKER_VERSION}\n"
            f" Storage Driver: {info['Driver']}\n" +
            "".join(f"  {k}: {v}\n" for k, v in info["DriverStatus"]) +
            f" Kernel Version: {info['KernelVersion']}\n Operating System: {info['OperatingSystem']}\n"
            f" Name: {info['Name']}\n")


def docker_build(args: list[str], cwd: str, env: dict, o: Out) -> int:
    """``docker build -t IMAGE [--provenance=false|true] [--attest ...] [--sbom=...] DIR``: records the
    image (ID from the build context) and whether it carries attestations; runs nothing."""
    tags = take_all(args, "-t", "--tag")
    provenance = take(args, "--provenance")
    sbom = take(args, "--sbom")
    attests = take_all(args, "--attest")
    platform = take(args, "--platform")
    take(args, "-f", "--file")
    take_all(args, "--build-arg")
    take(args, "--progress")
    take(args, "--load", flag=True)
    take(args, "--no-cache", flag=True)
    take(args, "-q", "--quiet", flag=True)
    ctx = [a for a in args if not a.startswith("-")]
    if len(ctx) != 1:
        o.err('ERROR: "docker buildx build" requires exactly 1 argument.\nSee \'docker buildx build --help\'.\n\n'
              "Usage:  docker buildx build [OPTIONS] PATH | URL | -\n\nStart a build\n")
        return 1
    d = Path(cwd, ctx[0])
    if not d.is_dir():
        o.err(f'ERROR: failed to build: unable to prepare context: path "{ctx[0]}" not found\n')
        return 1
    if not (d / "Dockerfile").exists():
        o.err("ERROR: failed to build: failed to solve: failed to read dockerfile: open Dockerfile: "
              "no such file or directory\n")
        return 1
    if provenance is not None:
        attested = provenance.lower() not in ("false", "0")
    else:
        attested = attestations_by_default(env)
    if sbom is not None and sbom.lower() not in ("false", "0"):
        attested = True
    if any("type=provenance" in a or "type=sbom" in a for a in attests):
        attested = True
    if mode() != "desktop" and attested:
        # Classic store: buildx refuses attestations on the `docker` driver before building (docker/buildx
        # build/build.go driver feature check; the classic store cannot hold an image index, buildx#1714)
        o.err("ERROR: failed to build: Attestation is not supported for the docker driver.\n")
        return 1
    digest = context_digest(d)
    # With the containerd store the ID docker prints is the index/manifest digest; an attestation
    # adds a manifest to the index, so the ID differs from the attestation-free build.
    image_id = "sha256:" + hashlib.sha256(f"{digest}/{attested}/{platform}".encode()).hexdigest()
    att_digest = "sha256:" + hashlib.sha256(f"{image_id}/attestation-manifest".encode()).hexdigest()
    images = load_images()
    for t in tags or []:
        images[normalize_image(t)] = {"id": image_id, "attestations": attested, "attestation_digest": att_digest,
                                      "context": str(d.resolve())}
    if not tags:
        images[image_id] = {"id": image_id, "attestations": attested, "attestation_digest": att_digest,
                            "context": str(d.resolve())}
    save_images(images)
    # BuildKit's progress goes to stderr (plain form when not a TTY)
    o.err('#0 building with "default" instance using docker driver\n\n'
          "#1 [internal] load build definition from Dockerfile\n#1 DONE 0.0s\n\n"
          + "".join(f"#9 naming to docker.io/{normalize_image(t)} done\n" for t in tags)
          + (f"#9 writing image {image_id} done\n" if not attested else
             f"#9 exporting manifest list {image_id} done\n#9 exporting attestation manifest {att_digest} done\n")
          + "#9 DONE 0.0s\n")
    return 0


def docker_image_inspect(args: list[str], o: Out) -> int:
    """``docker image inspect [-f FMT] IMAGE...``. Missing: "[]" (or an empty line with --format),
    then 'Error response from daemon: No such image: NAME' (moby daemon/images image.go
    ErrImageDoesNotExist "No such image: %s", with the reference normalised), exit 1."""
    fmt = take(args, "--format", "-f")
    images = load_images()
    found, missing = [], []
    for ref in [a for a in args if not a.startswith("-")]:
        img = images.get(normalize_image(ref)) or images.get(ref) or \
            next((v for k, v in images.items() if v["id"] == ref or v["id"].removeprefix("sha256:").startswith(ref)), None)
        if img is None:
            missing.append(ref)
        else:
            found.append({"Id": img["id"], "RepoTags": [k for k, v in images.items() if v["id"] == img["id"]
                                                        and not k.startswith("sha256:")],
                          "Os": "linux", "Architecture": "amd64"})
    if fmt:
        o.out("".join(go_template(fmt, f) for f in found) or "\n")
    else:
        o.out(json.dumps(found, indent=4) + "\n")
    for m in missing:
        o.err(f"Error response from daemon: No such image: {normalize_image(m)}\n")
    return 1 if missing else 0


def docker_save(args: list[str], cwd: str, o: Out) -> int:
    """``docker save -o FILE [--platform P] IMAGE...``: a small tar whose ``k8slab-emu.json`` says which
    images (IDs) it holds and whether an attestation manifest was referenced but left out (what
    `docker save` does to an attested image in the containerd store without --platform, kind#3795)."""
    dest = take(args, "-o", "--output")
    platform = take(args, "--platform")
    images = load_images()
    refs = [a for a in args if not a.startswith("-")]
    entries = []
    for ref in refs:
        img = images.get(normalize_image(ref))
        if img is None:
            o.err(f"Error response from daemon: No such image: {normalize_image(ref)}\n")
            return 1
        entries.append({"ref": normalize_image(ref), "id": img["id"],
                        "missing_blob": img["attestation_digest"] if img["attestations"] and not platform else None})
    if dest is None:
        o.err("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        return 1
    data = json.dumps({"images": entries}, indent=1).encode()
    path = Path(cwd, dest)
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("k8slab-emu.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return 0


def read_archive(path: Path) -> list[dict] | None:
    try:
        with tarfile.open(path) as tar:
            f = tar.extractfile("k8slab-emu.json")
            return json.loads(f.read())["images"] if f else None
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError):
        return None


def docker_inspect(args: list[str], o: Out) -> int:
    """``docker inspect NAME...`` of node containers. Missing: stdout "[]" (TemplateInspector: an
    empty line with --format) and "Error: No such object: NAME" (yaml o19-docker-inspect-missing,
    docker/cli cli/command/system/inspect.go, CLI 24-28), exit 1."""
    fmt = take(args, "--format", "-f")
    take(args, "--type")
    found, missing = [], []
    for name in [a for a in args if not a.startswith("-")]:
        c = node_owner(name)
        hit = next((n for n in cluster_nodes(c) if n["Name"].lstrip("/") == name or n["Id"].startswith(name)),
                   None) if c else None
        (found if hit else missing).append(hit or name)
    if fmt:
        o.out("".join(go_template(fmt, f) for f in found) or "\n")
    else:
        o.out(json.dumps(found, indent=4) + "\n")
    for m in missing:
        o.err(f"Error: No such object: {m}\n")
    return 1 if missing else 0


def docker_ps(args: list[str], o: Out) -> int:
    fmt = take(args, "--format")
    filters = take_all(args, "--filter", "-f")
    take(args, "-a", "--all", flag=True)
    rows = [n for c in clusters() for n in cluster_nodes(c)]
    for f in filters:
        k, _, v = f.partition("=")
        if k == "name":
            rows = [n for n in rows if v in n["Name"]]
        elif k == "label":
            lk, _, lv = v.partition("=")
            rows = [n for n in rows if lk in n["Config"]["Labels"] and (not lv or n["Config"]["Labels"][lk] == lv)]
    if fmt:
        for n in rows:
            o.out(go_template(fmt, {"ID": n["Id"][:12], "Names": n["Name"].lstrip("/"), "Image": n["Config"]["Image"],
                                    "Status": "Up", "Labels": n["Config"]["Labels"]}))
        return 0
    o.out("CONTAINER ID   IMAGE                  COMMAND                  CREATED   STATUS   PORTS   NAMES\n")
    for n in rows:
        o.out(f"{n['Id'][:12]}   {n['Config']['Image'].split('@')[0]}   \"/usr/local/bin/entr…\"   "
              f"now   Up   {n['Name'].lstrip('/')}\n")
    return 0


# --------------------------------------------------------------------------------------------------
# kind: the answers that need no cluster
# --------------------------------------------------------------------------------------------------
def kind_name(args: list[str]) -> str:
    return take(args, "--name", "-n") or os.environ.get("KIND_CLUSTER_NAME") or "kind"


def kubeconfig_text(name: str, port: int) -> str:
    """What `kind get kubeconfig` prints (kind pkg/cluster/internal/kubeconfig); the API server is
    kind's published 127.0.0.1:<random> -> 6443 (nothing listens there in the emulator)."""
    ca = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmVtdWxhdGVkCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
    return f"""apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:{port}
  name: kind-{name}
contexts:
- context:
    cluster: kind-{name}
    user: kind-{name}
  name: kind-{name}
current-context: kind-{name}
kind: Config
preferences: {{}}
users:
- name: kind-{name}
  user:
    client-certificate-data: {ca}
    client-key-data: {ca}
"""


def api_port(name: str) -> int:
    return 32768 + int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 28000


def kind_local(argv: list[str], o: Out) -> int | None:
    args = list(argv)
    take(args, "-v", "--verbosity")
    take(args, "-q", "--quiet", flag=True)
    if args[:1] == ["version"]:
        o.out(KIND_VERSION_LINE + "\n")          # yaml d15-kind-version
        return 0
    if args[:2] == ["get", "clusters"]:
        names = clusters()
        if not names:
            # kind pkg/cmd/kind/get/clusters/clusters.go: logger.V(0).Info("No kind clusters found.") (stderr), exit 0
            o.err("No kind clusters found.\n")
            return 0
        o.out("".join(n + "\n" for n in names))
        return 0
    if args[:2] == ["get", "nodes"]:
        name = kind_name(args)
        nodes = cluster_nodes(name) if name in clusters() else []
        if not nodes:
            # kind pkg/cmd/kind/get/nodes/nodes.go: Infof("No kind nodes found for cluster %q.")
            o.err(f'No kind nodes found for cluster "{name}".\n')
            return 0
        o.out("".join(n["Name"].lstrip("/") + "\n" for n in nodes))
        return 0
    if args[:2] == ["get", "kubeconfig"]:
        name = kind_name(args)
        take(args, "--internal", flag=True)
        if name not in clusters():
            o.err(f"ERROR: could not locate any control plane nodes for cluster named '{name}'. "
                  "Use the --name option to select a different cluster\n")      # yaml d16-kind-get-kubeconfig-missing
            return 1
        o.out(kubeconfig_text(name, api_port(name)))
        return 0
    return None


def kubeconfig_cluster(args: list[str], env: dict, cwd: str) -> tuple[str | None, str]:
    """(cluster name, server) from --kubeconfig / $KUBECONFIG / ~/.kube/config (context kind-NAME)."""
    path = take(args, "--kubeconfig")
    take(args, "--context")
    paths = [path] if path else (env.get("KUBECONFIG", "").split(":") if env.get("KUBECONFIG") else
                                 [str(Path(env.get("HOME", "/root")) / ".kube" / "config")])
    for p in paths:
        f = Path(cwd, p)
        if f.is_file():
            text = f.read_text()
            m = re.search(r"current-context: kind-([a-z0-9.-]+)", text)
            s = re.search(r"server: (\S+)", text)
            if m:
                return m.group(1), s.group(1) if s else ""
    return None, "localhost:8080"


def kubectl_unreachable(server: str) -> str:
    """No API server: kubectl prints (staging kubectl pkg/cmd/util/helpers.go checkErr,
    client-go rest "The connection to the server %s was refused - did you specify the right host or port?")."""
    host = re.sub(r"^https?://", "", server)
    return f"The connection to the server {host} was refused - did you specify the right host or port?\n"
