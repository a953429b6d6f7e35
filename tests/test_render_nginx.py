"""nginx.conf from the model: real nginx accepts it, and really proxies to the app with the headers."""
from __future__ import annotations

import json
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import ROOT
from k8slab import runner
from k8slab.model import Cluster, nginx_conf
from k8slab.model.ingress import nginx_error_page

KIND = ROOT / "kind"


def course() -> Cluster:
    c = Cluster.kind(KIND / "cluster.yaml")
    for m in ("app.yaml", "ingress-nginx.yaml", "ingress.yaml"):
        c.apply(KIND / "manifests" / m)
    return c


def need_nginx() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if shutil.os.path.exists("/usr/sbin/nginx") else None)
    if not path:
        pytest.skip("nginx is not installed: apt-get install -y nginx-light")
    return path


def test_conf_shape():
    c = course()
    conf = nginx_conf(c, listen_port=8081, prefix_dir="/tmp/x")
    eps = c.endpoints_of("url-shortener")
    assert "upstream default-url-shortener-80 {" in conf
    for ep in eps:
        assert f"server {ep};" in conf
    assert "server_name shortener.localtest.me;" in conf and "listen 8081 default_server;" in conf
    assert "daemon off;" in conf and "proxy_temp_path /tmp/x/proxy;" in conf
    c.scale("url-shortener", 0)
    assert "return 503;" in nginx_conf(c)


def test_unrouted_requests_go_to_the_catch_all_404_server():
    # nginx.tmpl (controller-v1.15.1): upstream-default-backend is 127.0.0.1:<--default-server-port>,
    # a server that does `return 404;` (no "default backend - 404" text: that was the defaultbackend image)
    conf = nginx_conf(course(), listen_port=8081, prefix_dir="/tmp/x")
    assert "default backend - 404" not in conf
    assert "upstream upstream-default-backend {\n        server 127.0.0.1:8181;" in conf
    tail = conf[conf.index("listen 8181 default_server;"):]
    assert tail.index("return 404;") < tail.index("}")
    assert "proxy_pass http://upstream-default-backend;" in conf


def test_nginx_accepts_conf(tmp_path):
    nginx = need_nginx()
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(course(), listen_port=18080, prefix_dir=str(tmp_path)))
    res = runner.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], timeout=30, check=False)
    assert res.returncode == 0, res.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(port: int, procs) -> None:
    for _ in range(200):
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(p.stderr.read() if p.stderr else "exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def test_nginx_proxies_to_app_with_forwarded_headers(tmp_path):
    """Loopback only: the app plays the pod (its endpoint is 127.0.0.1:PORT), nginx the controller."""
    nginx = need_nginx()
    app_port, nginx_port = free_port(), free_port()
    c = Cluster.from_objects(f"""
apiVersion: v1
kind: Service
metadata: {{name: url-shortener, namespace: default}}
spec: {{clusterIP: 10.96.10.10, ports: [{{name: http, port: 80, targetPort: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: url-shortener-x, namespace: default, labels: {{kubernetes.io/service-name: url-shortener}}}}
addressType: IPv4
endpoints: [{{addresses: [127.0.0.1]}}]
ports: [{{name: http, port: {app_port}, protocol: TCP}}]
""", (KIND / "manifests" / "ingress.yaml").read_text())
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(c, listen_port=nginx_port, prefix_dir=str(tmp_path), listen_address="127.0.0.1",
                               default_server_port=free_port()))
    (tmp_path / "logs").mkdir()
    app = runner.spawn([sys.executable, str(ROOT / "app" / "server.py"), "--host", "127.0.0.1",
                        "--port", str(app_port)], env={"POD_NAME": "pod-a"})
    ngx = runner.spawn([nginx, "-c", str(conf), "-p", str(tmp_path)])
    try:
        wait(app_port, [app])
        wait(nginx_port, [ngx])
        req = urllib.request.Request(f"http://127.0.0.1:{nginx_port}/whoami",
                                     headers={"Host": "shortener.localtest.me"})
        with urllib.request.urlopen(req, timeout=5) as r:
            who = json.loads(r.read())
        assert who["pod"] == "pod-a" and who["host"] == "shortener.localtest.me"
        assert who["x_forwarded_for"] == "127.0.0.1" and who["x_real_ip"] == "127.0.0.1"
        assert who["x_forwarded_host"] == "shortener.localtest.me" and who["x_forwarded_proto"] == "http"
        req = urllib.request.Request(f"http://127.0.0.1:{nginx_port}/whoami", headers={"Host": "other.host"})
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=5)
        assert exc.value.code == 404
        # real nginx is the judge of the default backend's answer: ingress-nginx's catch-all server
        # (`return 404;`) gives nginx's own page, the one the sim predicts
        assert exc.value.read().decode() == nginx_error_page(404)
        assert exc.value.headers["Content-Type"] == "text/html"
    finally:
        runner.stop(ngx)
        runner.stop(app)
