"""Port-forwards that are always stopped, never orphaned: ``kubectl port-forward`` under a supervisor
that dies with its parent, and a pure-Python variant over the Kubernetes client."""
from __future__ import annotations

import atexit
import os
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from ... import runner
from ...errors import CommandError, CommandTimeout
from ..base import PortForward
from .errors import HostPortInUse
from .parse import busy_port_in, free_port_hint


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
