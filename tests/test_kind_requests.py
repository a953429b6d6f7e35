"""Requests from the host, a node or a pod on the kind backend, against the fake tools.

What real kubectl and kind do that these tests pin:
- a pod is looked up in the namespace given with -n (default: default); any other is a NotFound
  (kubectl pkg/cmd/exec/exec.go; ../shared/notes/real-cli-behaviours.yaml k6a-exec-pod-missing);
- `kubectl debug` adds an ephemeral container the pod keeps for good (KEP-277; k7-debug-ephemeral-container),
  so the backend never uses it: requests from a pod go through the course's client pod with `kubectl exec`;
- Docker Desktop, colima and rootless Docker do not route the kind network from the host (kind #1890).
"""
from __future__ import annotations

import errno
import socket

import pytest

from fakes.harness import fake_tools
from k8slab import Lab
from k8slab.backends import kind as k
from k8slab.backends.kind import traffic
from k8slab.backends.kind.traffic import probe_tcp, split_curl_batch
from k8slab.errors import NotFound
from k8slab.exercises import client_pod
from k8slab.progress import Progress

URL = "http://10.96.120.7/whoami"


@pytest.fixture
def ft(tmp_path, monkeypatch):
    return fake_tools(tmp_path, monkeypatch)


@pytest.fixture
def up(ft):
    b = k.KindBackend("k8slab", root=ft.root, progress=Progress(quiet=True))
    b.up()
    ft.clear_log()
    return b


def execs(ft):
    return [a[2:] for a in ft.argvs("kubectl") if "exec" in a]


def test_a_request_from_a_pod_goes_through_the_client_pod_with_kubectl_exec(up, ft):
    r = up.request(URL, from_="pod")
    assert r.ok and r.client == "10.244.0.9" and r.from_ == "pod"
    applied = [c["stdin"] for c in ft.calls("kubectl") if c["stdin"]]
    assert any("name: k8slab-client" in s and "curlimages/curl" in s for s in applied)
    (ex,) = execs(ft)
    assert ex[:5] == ["exec", "-n", "default", "k8slab-client", "--"]
    assert not [a for a in ft.argvs("kubectl") if "debug" in a or "run" in a]


def test_the_client_pod_is_created_once(up, ft):
    up.request(URL, from_="pod")
    up.request(URL, from_="pod")
    applies = [c for c in ft.calls("kubectl") if c["stdin"] and "k8slab-client" in c["stdin"]]
    assert len(applies) == 1 and len(execs(ft)) == 2


def test_n_requests_are_one_exec_with_an_answer_each(up, ft):
    answers = up.requests(URL, 40, from_="pod")
    assert len(execs(ft)) == 1
    assert len(answers) == 40 and all(a.ok and a.pod == "url-shortener-6d9c7b5f4-abcde" for a in answers)
    assert {a.elapsed_ms for a in answers} == {4.21}     # 0.004215 s: curl's own %{time_total}, not the exec's


def test_a_pod_of_another_namespace_is_reached_in_its_namespace(up, ft):
    # On main this went to `kubectl debug ... -n default` and failed with NotFound for kube-system pods.
    r = up.request(URL, from_="pod", source="ingress-nginx/ingress-nginx-controller-5b8d9c7f6-xyz12")
    assert r.ok
    assert execs(ft)[0][:4] == ["exec", "-n", "ingress-nginx", "ingress-nginx-controller-5b8d9c7f6-xyz12"]


def test_a_bare_pod_name_is_refused_by_the_backend_with_the_fix(up):
    with pytest.raises(NotFound, match="namespace/name"):
        up.request(URL, from_="pod", source="ingress-nginx-controller-5b8d9c7f6-xyz12")


def test_the_lab_names_pods_namespace_slash_name(ft, monkeypatch):
    monkeypatch.chdir(ft.root)
    monkeypatch.setattr(k.KindBackend, "available", classmethod(lambda cls: (True, "fake tools")))
    lab = Lab(backend="kind", root=ft.root, quiet=True)
    lab.up()
    assert client_pod(lab) == "default/k8slab-client"
    assert lab.pod_ref("ingress-nginx-controller-5b8d9c7f6-xyz12") == \
        "ingress-nginx/ingress-nginx-controller-5b8d9c7f6-xyz12"
    r = lab.request(URL, from_="pod", source="ingress-nginx-controller-5b8d9c7f6-xyz12")
    assert r.ok and execs(ft)[-1][:3] == ["exec", "-n", "ingress-nginx"]


def test_a_refused_connection_in_a_batch(up):
    (r,) = up.requests("http://10.96.120.7:9/whoami", 1, from_="node")
    assert r.status is None and "connection refused" in r.error


def test_split_curl_batch_reads_answers_failures_and_a_cut_short_exec():
    tok = "ab12cd34"
    resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    out = f"{resp}\n@@k8slab-{tok} 0.002000 0@@\n\n@@k8slab-{tok} 0.000100 7@@\n"
    a = split_curl_batch(out, tok, 3, "command terminated with exit code 137")
    assert a[0][:3] == (200, {"content-length": "2"}, "hi") and a[0][4] == 2.0
    assert a[1][0] is None and "refused" in a[1][3]
    assert a[2][0] is None and "exit code 137" in a[2][3]


# --- node IPs from the host (fix 5) -----------------------------------------------------------------
def test_a_host_request_to_a_node_ip_goes_from_the_node_where_the_host_cannot_reach_it(up, ft, monkeypatch):
    monkeypatch.setattr(traffic, "probe_tcp", lambda ip, port: (False, f"{ip}:{port}: Network is unreachable"))
    r = up.request("http://172.18.0.2:30080/whoami", from_="host")
    assert r.ok and r.from_ == "node" and "cannot reach node IPs" in r.note and "172.18.0.2" in r.note
    assert ["exec", "k8slab-control-plane", "sh", "-c"] == ft.argvs("docker")[-1][:4]


def test_a_host_request_to_a_node_ip_stays_on_the_host_where_it_is_routed(up, ft, monkeypatch):
    monkeypatch.setattr(traffic, "probe_tcp", lambda ip, port: (True, "refused (routed)"))
    r = up.request("http://172.18.0.2:1/whoami", from_="host")
    assert r.from_ == "host" and r.note == ""
    assert not [a for a in ft.argvs("docker") if a[:1] == ["exec"]]


def test_localhost_is_never_redirected(up, ft, monkeypatch):
    monkeypatch.setattr(traffic, "probe_tcp", lambda ip, port: pytest.fail("no probe for localhost"))
    r = up.request("http://localhost:1/whoami", from_="host")
    assert r.from_ == "host" and r.status is None


def test_probe_tcp_tells_routed_from_unrouted(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert probe_tcp("127.0.0.1", port)[0]
    assert probe_tcp("127.0.0.1", port)[0]          # closed now: refused, so still routed

    def unreachable(*a, **kw):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")
    monkeypatch.setattr(socket, "create_connection", unreachable)
    ok, why = probe_tcp("172.18.0.2", 6443)
    assert not ok and "unreachable" in why
