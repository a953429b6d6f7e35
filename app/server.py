#!/usr/bin/env python3
"""url-shortener: the course's app. Standard library only, so it runs in a slim image and in a netns.

    POST /shorten   {"url": "https://..."} (JSON or form)  -> 201 {"code", "short_url"}
    GET  /<code>    -> 302 Location: <url>                  (unknown code: 404 JSON)
    GET  /healthz   -> 200 "ok"                             (the readiness probe)
    GET  /whoami    -> 200 JSON: which pod answered, and who it thinks the client is

/whoami is what the course reads at every hop: ``client_ip`` shows whether the source address survived
(port-forward: 127.0.0.1; NodePort with SNAT: a node address; Ingress: the controller pod's IP) and the
X-Forwarded-* headers show what a proxy on the way added. Pod identity comes from the environment,
set by the Deployment through the downward API (POD_NAME, POD_IP, NODE_NAME).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"   # no look-alikes (l/1, o/0)


class Store:
    """Codes -> URLs in memory (each replica has its own: a lesson in itself), guarded by a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._urls: dict[str, str] = {}

    def add(self, url: str) -> str:
        with self._lock:
            while True:
                code = "".join(secrets.choice(ALPHABET) for _ in range(7))
                if code not in self._urls:
                    self._urls[code] = url
                    return code

    def get(self, code: str) -> str | None:
        with self._lock:
            return self._urls.get(code)


class Handler(BaseHTTPRequestHandler):
    server_version = "url-shortener/0.1"
    store: Store = Store()

    # -- helpers
    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Pod-Name", _env("POD_NAME", socket.gethostname()))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: dict, extra: dict[str, str] | None = None) -> None:
        self._send(status, (json.dumps(data, sort_keys=True) + "\n").encode(), "application/json", extra)

    def log_message(self, fmt: str, *args) -> None:  # one line per request on stderr, like a container log
        sys.stderr.write(f"{self.client_address[0]}:{self.client_address[1]} {fmt % args}\n")

    # -- endpoints
    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, b"ok", "text/plain; charset=utf-8")
        elif path == "/whoami":
            self._json(200, self._whoami(path))
        elif path == "/":
            self._json(200, {"service": "url-shortener", "pod": _env("POD_NAME", socket.gethostname()),
                             "usage": "POST /shorten {\"url\": ...}; GET /<code>; GET /whoami; GET /healthz"})
        else:
            code = path.lstrip("/")
            url = self.store.get(code)
            if url is None:
                self._json(404, {"error": "unknown code", "code": code})
            else:
                self._send(302, b"", "text/plain; charset=utf-8", {"Location": url})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/shorten":
            self._json(404, {"error": "not found", "path": self.path})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        url = None
        try:
            if ctype == "application/json" or raw.startswith(b"{"):
                url = json.loads(raw or b"{}").get("url")
            else:
                url = (parse_qs(raw.decode()).get("url") or [None])[0]
        except (ValueError, AttributeError):
            self._json(400, {"error": "body must be JSON {\"url\": ...} or a form with url=..."})
            return
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            self._json(400, {"error": "url must be an absolute http(s) URL", "url": url})
            return
        code = self.store.add(url)
        host = self.headers.get("Host") or f"{_env('POD_IP', '127.0.0.1')}:{self.server.server_port}"
        self._json(201, {"code": code, "short_url": f"http://{host}/{code}", "url": url},
                   {"Location": f"/{code}"})

    def _whoami(self, path: str) -> dict:
        h = self.headers
        return {
            "pod": _env("POD_NAME", socket.gethostname()),
            "pod_ip": _env("POD_IP", self.connection.getsockname()[0]),
            "node": _env("NODE_NAME", ""),
            "client_ip": self.client_address[0],
            "client_port": self.client_address[1],
            "host": h.get("Host"),
            "path": self.path,
            "method": self.command,
            "x_forwarded_for": h.get("X-Forwarded-For"),
            "x_real_ip": h.get("X-Real-IP"),
            "x_forwarded_host": h.get("X-Forwarded-Host"),
            "x_forwarded_proto": h.get("X-Forwarded-Proto"),
            "headers": {k: v for k, v in h.items()},
        }


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="url-shortener (the k8slab course app)")
    ap.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"), help="address to bind (default 0.0.0.0)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")), help="port (default 8080)")
    args = ap.parse_args(argv)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    sys.stderr.write(f"url-shortener listening on {args.host}:{httpd.server_port} "
                     f"pod={_env('POD_NAME', socket.gethostname())}\n")
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
