"""Port-forwards always stop: after close(), after an exception, on a second call on the same port,
at exit, and when the process that started them is killed. Nothing is ever orphaned."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from fakes.harness import fake_tools, free_port
from k8slab import runner
from k8slab.backends import kind as k
from k8slab.errors import CommandTimeout
from k8slab.progress import Progress


@pytest.fixture
def up(tmp_path, monkeypatch):
    ft = fake_tools(tmp_path, monkeypatch)
    ft.seed_cluster("k8slab")
    b = k.KindBackend("k8slab", root=ft.root, progress=Progress(quiet=True))
    b.ft = ft
    yield b
    k.close_all_port_forwards()


def pids_file(b) -> list[tuple[int, int, int]]:
    path = b.ft.log.parent / "pids.txt"
    if not path.exists():
        return []
    return [tuple(int(x) for x in line.split()) for line in path.read_text().splitlines()]


def gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` no longer exists (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:   # reap it if it is our zombie child
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


def group_gone(pgid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not runner.group_alive(pgid):
            return True
        time.sleep(0.05)
    return False


def get(port: int, path: str = "/whoami") -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def test_kubectl_port_forward_serves_and_stops_its_whole_group(up):
    port = free_port()
    pf = up.port_forward("svc/url-shortener", port, 80)
    try:
        assert pf.alive and pf.forwarding_line == f"Forwarding from 127.0.0.1:{port} -> 80"
        argv = next(a for a in up.ft.argvs("kubectl") if "port-forward" in a)
        assert argv == ["--kubeconfig", str(up.kubeconfig), "port-forward", "-n", "default", "svc/url-shortener",
                        f"{port}:80"]
        assert get(port)["client_ip"] == "127.0.0.1"   # what the app sees through port-forward
        r = up.request(f"http://localhost:{port}/whoami")
        assert r.ok and r.client == "127.0.0.1"
        [(kubectl_pid, helper_pid, pgid)] = pids_file(up)
        assert pgid == pf.pgid
    finally:
        pf.close()
    assert not pf.alive
    assert group_gone(pf.pgid)
    assert gone(kubectl_pid) and gone(helper_pid)
    assert port not in k.active_port_forwards()


def test_an_exception_in_the_with_block_still_stops_it(up):
    port = free_port()
    with pytest.raises(RuntimeError):
        with up.port_forward("svc/url-shortener", port, 80) as pf:
            assert pf.alive
            raise RuntimeError("boom")
    assert group_gone(pf.pgid)
    assert not k._connectable(port)


def test_a_second_call_on_the_same_port_stops_the_first(up):
    port = free_port()
    first = up.port_forward("svc/url-shortener", port, 80)
    second = up.port_forward("pod/url-shortener-6d9c7b5f4-abcde", port, 8080)
    try:
        assert group_gone(first.pgid) and not first.alive
        assert second.alive and k.active_port_forwards()[port] is second
        assert get(port)["pod"].startswith("url-shortener")
    finally:
        second.close()
    assert group_gone(second.pgid)


def test_a_busy_local_port_is_explained(up):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(k.HostPortInUse) as err:
            up.port_forward("svc/url-shortener", port, 80)
    finally:
        holder.close()
    assert f"127.0.0.1:{port}: it is in use" in str(err.value) and "pick another local_port" in str(err.value)
    assert all(group_gone(p[2]) for p in pids_file(up))


def test_a_port_forward_that_never_forwards_times_out_and_is_stopped(up):
    up.ft.scenario("hang")
    with pytest.raises(CommandTimeout) as err:
        up.port_forward("svc/url-shortener", free_port(), 80, timeout=1.0)
    assert "did not start forwarding within 1 s" in str(err.value) and "kubectl describe pod" in str(err.value)
    [(kubectl_pid, helper_pid, pgid)] = pids_file(up)
    assert group_gone(pgid) and gone(kubectl_pid) and gone(helper_pid)


def test_close_all_stops_everything_like_atexit_does(up):
    pfs = [up.port_forward("svc/url-shortener", free_port(), 80) for _ in range(2)]
    k.close_all_port_forwards()
    assert all(group_gone(pf.pgid) for pf in pfs)
    assert k.active_port_forwards() == {}


def test_a_killed_parent_leaves_no_kubectl_behind(up, tmp_path):
    """The notebook kernel is SIGKILLed: the supervisor sees its pipe close and ends kubectl."""
    port = free_port()
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(up.ft.root.parent.parent / 'tests')!r})
        from k8slab.backends import kind as k
        from k8slab.progress import Progress
        k.find_kubectl = lambda: k.runner.which("kubectl")
        b = k.KindBackend("k8slab", root=__import__("pathlib").Path({str(up.ft.root)!r}), progress=Progress(quiet=True))
        pf = b.port_forward("svc/url-shortener", {port}, 80)
        print(pf.pgid, flush=True)
        time.sleep(600)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        pgid = int(parent.stdout.readline())
        assert runner.group_alive(pgid) and k._connectable(port)
    finally:
        parent.kill()
        parent.wait()
    assert group_gone(pgid)
    [(kubectl_pid, helper_pid, _)] = pids_file(up)
    assert gone(kubectl_pid) and gone(helper_pid)


def test_port_forward_validates_its_target(up):
    for bad in ("url-shortener", "svc/Bad", "node/x"):
        with pytest.raises(ValueError):
            up.port_forward(bad, free_port(), 80)
    with pytest.raises(ValueError):
        up.port_forward("svc/url-shortener", 70000, 80)
    with pytest.raises(ValueError):
        up.port_forward("svc/url-shortener", free_port(), 80, via="ssh")


# --- the pure-Python variant ---------------------------------------------------------------------
class _App(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = json.dumps({"pod": "p", "client_ip": self.client_address[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_resolve_pod_maps_the_service_port_to_a_ready_pod(up):
    assert up.resolve_pod("svc", "url-shortener", 80) == ("url-shortener-6d9c7b5f4-abcde", 8080)
    assert up.resolve_pod("pod", "x", 8080) == ("x", 8080)
    assert up.resolve_pod("deployment", "url-shortener", 8080)[0] == "url-shortener-6d9c7b5f4-abcde"
    with pytest.raises(k.NotFound, match="has no port 81"):
        up.resolve_pod("svc", "url-shortener", 81)
    up.ft.scenario("image-pull")
    with pytest.raises(k.NotFound, match="no ready endpoint"):
        up.resolve_pod("svc", "url-shortener", 80)


def test_python_port_forward_relays_through_a_connector_and_stops(up):
    app = HTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    asked = []

    def connect(pod, namespace, port):
        # Stands in for kubernetes.stream.portforward's per-port socket.
        asked.append((pod, namespace, port))
        return socket.create_connection(("127.0.0.1", app.server_port))
    port = free_port()
    try:
        with up.port_forward("svc/url-shortener", port, 80, via="python", connect=connect) as pf:
            assert pf.alive
            assert get(port)["pod"] == "p"
            assert get(port)["pod"] == "p"
        assert asked == [("url-shortener-6d9c7b5f4-abcde", "default", 8080)] * 2
        assert not pf.alive and not k._connectable(port)
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # the relayed connections linger in TIME_WAIT
        busy.bind(("127.0.0.1", port))
        busy.listen()
        try:
            with pytest.raises(k.HostPortInUse):
                up.port_forward("pod/x", port, 80, via="python", connect=connect)
        finally:
            busy.close()
    finally:
        app.shutdown()
        app.server_close()
