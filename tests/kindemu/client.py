"""The emulated ``docker``, ``kind`` and ``kubectl`` programs (``tests/kindemu/bin/*`` run this).

Answers that need no cluster are computed here; everything a cluster does goes to that cluster's
daemon over its unix socket (``kind create cluster`` starts the daemon). ``kubectl port-forward`` is
the one command whose work happens here, as in real kubectl: the daemon says which pod namespace and
container port the target resolves to, and this process listens on 127.0.0.1:LOCAL (and [::1]) in the
caller's namespace and relays each connection into the pod's namespace to 127.0.0.1:PORT.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.kindemu import common as c  # noqa: E402
from tests.kindemu.common import Out, take  # noqa: E402

ENV_KEYS = ("HOME", "KUBECONFIG", "BUILDX_NO_DEFAULT_ATTESTATIONS", "DOCKER_BUILDKIT", "KIND_CLUSTER_NAME")


def request(cluster: str, req: dict, o: Out) -> int:
    """Send one request to a cluster's daemon and pass its output on; the daemon's exit code."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(c.socket_path(cluster)))
    s.sendall((json.dumps(req) + "\n").encode())
    f = s.makefile("rb")
    rc = 1
    for line in f:
        msg = json.loads(line)
        if "out" in msg:
            o.out(msg["out"])
        elif "err" in msg:
            o.err(msg["err"])
        elif "rc" in msg:
            rc = msg["rc"]
            break
    s.close()
    return rc


def ask(cluster: str, req: dict) -> dict:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(c.socket_path(cluster)))
    s.sendall((json.dumps(req) + "\n").encode())
    line = s.makefile("rb").readline()
    s.close()
    return json.loads(line)


def start_daemon(name: str) -> None:
    d = c.cluster_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    log = open(d / "daemon.log", "ab")
    python = sys.executable
    subprocess.Popen([python, str(Path(__file__).with_name("daemon.py")), "--name", name],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", start_new_session=True,
                     env={**os.environ, "PYTHONPATH": str(ROOT)})
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if c.socket_path(name).exists():
            try:
                ask(name, {"op": "ping"})
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise SystemExit(f"k8slab kind emulator: the daemon of {name} did not start; see {d / 'daemon.log'}")


def main(tool: str, argv: list[str]) -> int:
    if os.environ.get("K8SLAB_EMU_LOG"):          # every call, for reading what a caller runs
        with open(os.environ["K8SLAB_EMU_LOG"], "a") as f:
            f.write(json.dumps({"tool": tool, "argv": argv}) + "\n")
    o = Out.std()
    cwd = os.getcwd()
    env = {k: os.environ[k] for k in ENV_KEYS if k in os.environ}
    stdin = None
    base = {"op": "run", "tool": tool, "argv": argv, "cwd": cwd, "env": env}
    if tool == "docker":
        rc = c.docker_local(argv, None, cwd, env, o)
        if rc is not None:
            return rc
        args = list(argv)
        if args[:1] == ["exec"]:
            rest = args[1:]
            i = 0
            while i < len(rest) and rest[i].startswith("-"):
                i += 2 if rest[i] in ("-e", "--env", "-w", "--workdir", "-u", "--user", "--env-file") else 1
            node = rest[i] if i < len(rest) else None
            interactive = any(a in ("-i", "--interactive", "-it", "-ti") for a in rest[:i])
            if node is None:
                o.err('docker: \'docker exec\' requires at least 2 arguments\n')
                return 1
            cluster = c.node_owner(node)
            if cluster is None:
                # moby daemon/errors.go containerNotFound -> objNotFoundError "No such container: %s";
                # the client prefixes "Error response from daemon: " (docker/cli container/exec.go), exit 1
                o.err(f"Error response from daemon: No such container: {node}\n")
                return 1
            if interactive and not sys.stdin.isatty():
                stdin = sys.stdin.read()
            return request(cluster, {**base, "stdin": stdin}, o)
        o.err(f"docker: unknown command: docker {' '.join(argv[:1])}\n\nRun 'docker --help' for more information\n")
        return 1
    if tool == "kind":
        rc = c.kind_local(argv, o)
        if rc is not None:
            return rc
        args = list(argv)
        take(args, "-v", "--verbosity")
        take(args, "-q", "--quiet", flag=True)
        if args[:2] == ["create", "cluster"]:
            name = c.kind_name(list(args[2:]))
            if name in c.clusters() or c.daemon_alive(name):
                # kind pkg/cluster/internal/create/create.go alreadyExists, wrapped by
                # pkg/cmd/kind/create/cluster/createcluster.go "failed to create cluster"
                o.err(f'ERROR: failed to create cluster: node(s) already exist for a cluster with the name "{name}"\n')
                return 1
            start_daemon(name)
            return request(name, {**base, "argv": args}, o)
        if args[:2] == ["delete", "cluster"]:
            name = c.kind_name(list(args[2:]))
            if not c.daemon_alive(name):
                o.err(f'Deleting cluster "{name}" ...\n')          # yaml d13-kind-delete-missing
                return 0
            rc = request(name, {**base, "argv": args}, o)
            deadline = time.monotonic() + 30                      # the daemon exits after down()
            while c.cluster_dir(name).exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            return rc
        if args[:1] == ["load"] and args[1:2] in (["docker-image"], ["image-archive"]):
            rest = list(args[2:])
            name = c.kind_name(rest)
            take(rest, "--nodes")
            pos = [a for a in rest if not a.startswith("-")]
            if args[1] == "docker-image":
                images = c.load_images()
                for ref in pos:
                    if c.normalize_image(ref) not in images:
                        # kind pkg/cmd/kind/load/docker-image/docker-image.go (yaml d14b), checked before the cluster
                        o.err(f'ERROR: image: "{ref}" not present locally\n')
                        return 1
            elif not all(Path(cwd, p).is_file() for p in pos):
                missing = next(p for p in pos if not Path(cwd, p).is_file())
                o.err(f"ERROR: failed to open archive: open {missing}: no such file or directory\n")
                return 1
            if name not in c.clusters():
                o.err(f'ERROR: no nodes found for cluster "{name}"\n')        # yaml d14b notes
                return 1
            return request(name, {**base, "argv": args}, o)
        o.err(f"ERROR: unknown command \"{' '.join(argv[:2])}\" for \"kind\"\n")
        return 1
    if tool == "kubectl":
        args = list(argv)
        probe = list(args)
        cluster, server = c.kubeconfig_cluster(probe, env, cwd)
        take(probe, "-n", "--namespace")
        verb = next((a for a in probe if not a.startswith("-")), "")
        if verb == "version" and "--client" in probe:
            out = take(probe, "-o", "--output")
            data = {"clientVersion": c.KUBECTL_CLIENT, "kustomizeVersion": c.KUSTOMIZE_VERSION}
            o.out(json.dumps(data, indent=2) + "\n" if out == "json" else
                  f"Client Version: {c.KUBECTL_CLIENT['gitVersion']}\nKustomize Version: {c.KUSTOMIZE_VERSION}\n")
            return 0
        if cluster is None or not c.daemon_alive(cluster):
            if verb == "version":
                o.out(f"Client Version: {c.KUBECTL_CLIENT['gitVersion']}\nKustomize Version: {c.KUSTOMIZE_VERSION}\n")
            o.err(c.kubectl_unreachable(server))
            return 1
        if verb == "port-forward":
            return port_forward(cluster, {**base}, o)
        if "-f" in args or "--filename" in args or any(a.startswith("--filename=") for a in args) or \
                (verb in ("exec", "run") and ("-i" in args or "--stdin" in args)):
            if not sys.stdin.isatty():
                stdin = sys.stdin.read()
        return request(cluster, {**base, "stdin": stdin}, o)
    o.err(f"unknown tool {tool}\n")
    return 1


# --------------------------------------------------------------------------------------------------
# kubectl port-forward, in the client like the real one
# --------------------------------------------------------------------------------------------------
def port_forward(cluster: str, req: dict, o: Out) -> int:
    from k8slab.backends import nsrelay
    where = ask(cluster, {**req, "op": "resolve-forward"})
    if "err" in where:
        o.err(where["err"])
        return where.get("rc", 1)
    netns, ports = where["netns"], where["ports"]
    stop = threading.Event()
    listeners = []
    for local, remote in ports:
        socks, errors = [], []
        for family, addr, label in ((socket.AF_INET, "127.0.0.1", "tcp4"), (socket.AF_INET6, "::1", "tcp6")):
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((addr, local))
                s.listen(128)
                if local == 0:
                    local = s.getsockname()[1]
                socks.append((s, addr))
            except OSError as exc:
                s.close()
                shown = f"[{addr}]" if ":" in addr else addr
                reason = "address already in use" if exc.errno == 98 else \
                    "cannot assign requested address" if exc.errno == 99 else (exc.strerror or str(exc)).lower()
                errors.append(f"unable to create listener: Error listen {label} {shown}:{local}: bind: {reason}")
        if not socks:
            # client-go tools/portforward/portforward.go forward / listenOnPort (yaml k5b-port-forward-port-in-use)
            o.err(f"Unable to listen on port {local}: Listeners failed to create with the following errors: "
                  f"[{' '.join(errors)}]\n")
            o.err(f"error: unable to listen on any of the requested ports: [{{{local} {remote}}}]\n")
            for s, _ in sum((l for l, _, _ in listeners), []):
                s.close()
            return 1
        listeners.append((socks, local, remote))
    # "Forwarding from %s -> %d" per listener, 127.0.0.1 first (yaml k5a-port-forward-svc-running)
    for socks, local, remote in listeners:
        for s, addr in socks:
            shown = f"[{addr}]" if ":" in addr else addr
            o.out(f"Forwarding from {shown}:{local} -> {remote}\n")
    lock = threading.Lock()

    def serve(s: socket.socket, local: int, remote: int) -> None:
        while not stop.is_set():
            try:
                conn, _ = s.accept()
            except OSError:
                return
            with lock:
                o.out(f"Handling connection for {local}\n")
            threading.Thread(target=relay, args=(conn, local, remote), daemon=True).start()

    def relay(conn: socket.socket, local: int, remote: int) -> None:
        try:
            up = nsrelay.connect_in(netns, "127.0.0.1", remote, timeout=10)
        except OSError as exc:
            # client-go portforward.go handleConnection: "an error occurred forwarding %d -> %d: %v"
            with lock:
                o.err(f"E0000 00:00:00.000000 portforward.go:424] \"Unhandled Error\" err=\"an error occurred "
                      f"forwarding {local} -> {remote}: error forwarding port {remote} to pod: failed to connect to "
                      f"localhost:{remote} inside namespace: {exc.strerror or exc}\"\n")
            conn.close()
            return
        up.settimeout(None)
        t = threading.Thread(target=nsrelay._pump, args=(up, conn), daemon=True)
        t.start()
        nsrelay._pump(conn, up)
        t.join()
        conn.close()
        up.close()

    for socks, local, remote in listeners:
        for s, _ in socks:
            threading.Thread(target=serve, args=(s, local, remote), daemon=True).start()

    def end(*_):
        stop.set()
    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    while not stop.is_set():
        stop.wait(0.5)
        if not c.daemon_alive(cluster):
            o.err("error: lost connection to pod\n")     # yaml k5a notes
            return 1
    for socks, _, _ in listeners:
        for s, _ in socks:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
