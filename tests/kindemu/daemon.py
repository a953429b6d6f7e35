"""The daemon of one emulated cluster: ``kind create cluster`` starts it (a new session, detached); it
builds the netns lab, then answers the CLI clients on a unix socket until ``kind delete cluster``.

Protocol: one JSON line per request ``{"op": "run", "tool", "argv", "stdin", "cwd", "env"}``; the
answer is JSON lines ``{"out": text}`` / ``{"err": text}`` as the command writes, then ``{"rc": N}``.
``{"op": "ping"}`` answers ``{"pong": pid}``; ``{"op": "resolve-forward", ...}`` answers where a
``kubectl port-forward`` goes (the client relays the bytes itself).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.kindemu import common as c  # noqa: E402
from tests.kindemu.cluster import EmuCluster  # noqa: E402
from tests.kindemu.common import Out, take, take_all  # noqa: E402


class Handler(socketserver.StreamRequestHandler):
    server: "Server"

    def handle(self) -> None:
        line = self.rfile.readline()
        if not line:
            return
        req = json.loads(line)
        lock = threading.Lock()

        def send(obj) -> None:
            with lock:
                try:
                    self.wfile.write((json.dumps(obj) + "\n").encode())
                    self.wfile.flush()
                except OSError:
                    pass
        op = req.get("op")
        if op == "ping":
            send({"pong": os.getpid(), "ready": self.server.ready.is_set()})
            return
        emu = self.server.emu
        if op == "resolve-forward":
            send(emu.resolve_forward(req["argv"], req.get("cwd", "/"), req.get("env") or {}))
            return
        o = Out(lambda t: send({"out": t}), lambda t: send({"err": t}))
        try:
            rc = self.server.dispatch(req, o)
        except Exception:  # noqa: BLE001 - an emulator bug: say so on stderr, like a crash would
            o.err("k8slab kind emulator: internal error\n" + traceback.format_exc())
            rc = 70
        send({"rc": rc})


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, emu: EmuCluster):
        self.emu = emu
        self.ready = threading.Event()
        self.stopping = threading.Event()
        super().__init__(path, Handler)

    def dispatch(self, req: dict, o: Out) -> int:
        tool, argv = req["tool"], list(req["argv"])
        stdin, cwd, env = req.get("stdin"), req.get("cwd") or "/", req.get("env") or {}
        emu = self.emu
        if tool == "kind" and argv[:2] == ["create", "cluster"]:
            args = argv[2:]
            c.kind_name(args)
            config = take(args, "--config")
            kubeconfig = take(args, "--kubeconfig")
            wait = take(args, "--wait")
            take(args, "--image")
            take(args, "--retain", flag=True)
            rc = emu.create(Path(cwd, config) if config else None, str(Path(cwd, kubeconfig)) if kubeconfig else None,
                            wait, o)
            if rc == 0:
                self.ready.set()
            else:
                self.stop_later()
            return rc
        if tool == "kind" and argv[:2] == ["delete", "cluster"]:
            args = argv[2:]
            name = c.kind_name(args)
            kubeconfig = take(args, "--kubeconfig")
            # kind pkg/cmd/kind/delete/cluster/deletecluster.go; pkg/cluster/internal/delete/delete.go
            o.err(f'Deleting cluster "{name}" ...\n')
            nodes = [n["Name"].lstrip("/") for n in c.cluster_nodes(name)]
            emu.down()
            if kubeconfig:
                kc = Path(cwd, kubeconfig)
                if kc.is_file() and f"kind-{name}" in kc.read_text():
                    kc.write_text("apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: \"\"\n"
                                  "kind: Config\npreferences: {}\nusers: null\n")
            o.err(f"Deleted nodes: {json.dumps(nodes)}\n")
            self.stop_later()
            return 0
        if tool == "kind" and argv[:1] == ["load"]:
            return self.kind_load(argv[1:], cwd, o)
        if tool == "docker" and argv[:1] == ["exec"]:
            return emu.docker_exec(argv[1:], stdin, o)
        if tool == "kubectl":
            return emu.kubectl(argv, stdin, cwd, env, o)
        o.err(f"k8slab kind emulator: {tool} {' '.join(argv[:2])} is not emulated\n")
        return 1

    def kind_load(self, args: list[str], cwd: str, o: Out) -> int:
        what = args[0]
        rest = args[1:]
        c.kind_name(rest)
        nodes = take_all(rest, "--nodes")
        nodes = [n for x in nodes for n in x.split(",")]
        pos = [a for a in rest if not a.startswith("-")]
        if what == "docker-image":
            images = c.load_images()
            entries = []
            for ref in dict.fromkeys(pos):
                img = images.get(c.normalize_image(ref))
                entries.append({"ref": c.normalize_image(ref), "id": img["id"],
                                # kind saves with `docker save -o` (no --platform): an attested image
                                # loses its attestation manifest in the archive (kind#3795)
                                "missing_blob": img["attestation_digest"] if img["attestations"] else None})
            return self.emu.load_images(entries, nodes or None, o)
        if what == "image-archive":
            entries = []
            for f in pos:
                data = c.read_archive(Path(cwd, f))
                if data is None:
                    o.err(f"ERROR: failed to load image: command \"docker exec --privileged -i "
                          f"{self.emu.name}-control-plane ctr --namespace=k8s.io images import --all-platforms "
                          "--digests --snapshotter=overlayfs -\" failed with error: exit status 1\n\n"
                          "Command Output: ctr: unrecognized image format\n")
                    return 1
                entries += data
            return self.emu.load_images(entries, nodes or None, o, archive=True)
        o.err(f'ERROR: unknown command "{what}" for "kind load"\n')
        return 1

    def stop_later(self) -> None:
        self.stopping.set()
        threading.Thread(target=self.shutdown, daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    args = p.parse_args()
    d = c.cluster_dir(args.name)
    d.mkdir(parents=True, exist_ok=True)
    sock = c.socket_path(args.name)
    sock.unlink(missing_ok=True)
    emu = EmuCluster(args.name, ROOT, c.mode(), c.machine_netns())
    server = Server(str(sock), emu)
    (d / "pid").write_text(str(os.getpid()))

    def terminate(*_):
        server.stop_later()
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        try:
            emu.down()
        finally:
            server.server_close()
            import shutil
            shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
