"""The url-shortener, run for real on 127.0.0.1 with a free port, every endpoint exercised."""
from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT
from k8slab import runner

SERVER = ROOT / "app" / "server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start listening")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(url: str, data: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with OPENER.open(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


@pytest.fixture
def app():
    port = free_port()
    proc = runner.spawn([sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", str(port)],
                        env={"POD_NAME": "url-shortener-abc-12345", "POD_IP": "10.244.0.5",
                             "NODE_NAME": "kind-control-plane"})
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        runner.stop(proc)


def test_healthz(app):
    assert call(app + "/healthz")[::2] == (200, "ok")


def test_shorten_json_and_redirect(app):
    status, headers, body = call(app + "/shorten", json.dumps({"url": "https://example.com/a?b=1"}).encode(),
                                 {"Content-Type": "application/json"})
    assert status == 201
    doc = json.loads(body)
    assert doc["short_url"].endswith("/" + doc["code"]) and len(doc["code"]) == 7
    status, headers, _ = call(f"{app}/{doc['code']}")
    assert status == 302 and headers["Location"] == "https://example.com/a?b=1"


def test_shorten_form(app):
    status, _, body = call(app + "/shorten", b"url=http%3A%2F%2Fexample.org%2F",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201
    code = json.loads(body)["code"]
    assert call(f"{app}/{code}")[1]["Location"] == "http://example.org/"


@pytest.mark.parametrize("body", [b'{"url": "ftp://x"}', b'{"nourl": 1}', b"{not json"])
def test_shorten_rejects_bad_input(app, body):
    status, _, text = call(app + "/shorten", body, {"Content-Type": "application/json"})
    assert status == 400 and "error" in json.loads(text)


def test_unknown_code_is_404_json(app):
    status, headers, body = call(app + "/nosuchcode")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"code": "nosuchcode", "error": "unknown code"}


def test_whoami(app):
    status, headers, body = call(app + "/whoami?x=1", headers={"X-Forwarded-For": "203.0.113.9",
                                                               "X-Real-IP": "203.0.113.9",
                                                               "X-Forwarded-Host": "shortener.localtest.me",
                                                               "X-Forwarded-Proto": "http"})
    assert status == 200
    who = json.loads(body)
    assert who["pod"] == "url-shortener-abc-12345" and who["pod_ip"] == "10.244.0.5"
    assert who["node"] == "kind-control-plane"
    assert who["client_ip"] == "127.0.0.1" and isinstance(who["client_port"], int)
    assert who["method"] == "GET" and who["path"] == "/whoami?x=1"
    assert who["host"] == app.split("//")[1]
    assert who["x_forwarded_for"] == "203.0.113.9" and who["x_real_ip"] == "203.0.113.9"
    assert who["x_forwarded_host"] == "shortener.localtest.me" and who["x_forwarded_proto"] == "http"
    assert who["headers"]["X-Forwarded-For"] == "203.0.113.9"
    assert headers["X-Pod-Name"] == "url-shortener-abc-12345"
