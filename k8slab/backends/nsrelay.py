"""Sockets in other network namespaces, and a TCP relay between two namespaces.

Linux lets one *thread* switch its network namespace (``setns(fd, CLONE_NEWNET)``); a socket belongs
to the namespace of the thread that created it, for its whole life. So a short-lived thread that
enters ``/run/netns/NAME`` and creates a socket gives the caller a socket "inside" that namespace,
without a subprocess. Python 3.11 has no ``os.setns``, hence ctypes.

Run as a helper process, this module is a relay::

    python -m k8slab.backends.nsrelay --listen-netns A --listen 127.0.0.1:8080 \\
                                      --dial-netns B --dial 172.18.0.2:80

It listens in namespace A and, for each connection, dials the target from namespace B and copies
bytes both ways. The netns backend uses it as Docker's userland ``docker-proxy`` (host namespace
127.0.0.1:8080 -> node:80) and as the stand-in for ``kubectl port-forward`` (host namespace ->
127.0.0.1:PORT inside a pod's namespace, the way the container runtime's streaming server dials).
It prints ``READY <port>`` on stdout once listening.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import threading
from typing import Callable, TypeVar

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
T = TypeVar("T")

_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)} (needs root / CAP_SYS_ADMIN)")


def netns_path(name: str) -> str:
    return name if name.startswith("/") else f"{NETNS_DIR}/{name}"


def enter(name: str) -> None:
    """Move the *calling thread* into network namespace ``name`` (a name under /run/netns or a path)."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def run_in(netns: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn`` in a fresh thread that first enters ``netns`` (``None``: the caller's namespace).
    What ``fn`` creates (sockets) stays in that namespace after the thread ends."""
    if netns is None:
        return fn()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            enter(netns)
            box["value"] = fn()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    t = threading.Thread(target=work, name=f"netns:{netns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def socket_in(netns: str | None, family: int = socket.AF_INET,
              type: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in network namespace ``netns``."""
    return run_in(netns, lambda: socket.socket(family, type))


def connect_in(netns: str | None, host: str, port: int, timeout: float = 10.0,
               bind: tuple[str, int] | None = None) -> socket.socket:
    """A TCP connection opened from inside ``netns``."""
    sock = socket_in(netns)
    try:
        sock.settimeout(timeout)
        if bind:
            sock.bind(bind)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listen_in(netns: str | None, host: str, port: int, backlog: int = 128) -> socket.socket:
    sock = socket_in(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def split_hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


# --- the relay process ---

def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        # Pass the half-close on, so HTTP/1.0-style "read until EOF" clients work.
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve(client: socket.socket, dial: tuple[str, int], timeout: float) -> None:
    try:
        upstream = socket.create_connection(dial, timeout=timeout)
    except OSError as exc:
        print(f"relay: dial {dial[0]}:{dial[1]} failed: {exc}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    client.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def relay(listen_netns: str | None, listen: tuple[str, int], dial_netns: str | None,
          dial: tuple[str, int], timeout: float = 10.0, announce=print) -> None:
    """Listen in one namespace, dial in another; runs until killed."""
    server = listen_in(listen_netns, *listen)
    # From here on the whole process lives in the dial namespace: every thread it starts inherits
    # it, so each upstream socket is created there. (`ip netns pids` also finds us by it.)
    if dial_netns is not None:
        enter(dial_netns)
    announce(f"READY {server.getsockname()[1]}")
    sys.stdout.flush()
    while True:
        client, _ = server.accept()
        threading.Thread(target=_serve, args=(client, dial, timeout), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m k8slab.backends.nsrelay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen-netns", default=None, help="namespace name under /run/netns (default: ours)")
    p.add_argument("--listen", required=True, help="address:port to listen on (port 0: any)")
    p.add_argument("--dial-netns", default=None)
    p.add_argument("--dial", required=True, help="address:port to connect to for each connection")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args(argv)
    try:
        relay(args.listen_netns, split_hostport(args.listen), args.dial_netns,
              split_hostport(args.dial), args.timeout)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"relay: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
