"""The kind backend's verbs against a real cluster (``pytest -m live tests/live``).

Uses the cluster named by ``$K8SLAB_LIVE_NAME`` (default ``k8slab``) from kind/cluster.yaml: reuses it
when it exists (and then leaves it), otherwise creates it and deletes it at the end.
"""
from __future__ import annotations

import os

import pytest

from k8slab.backends import kind as k
from k8slab.progress import Progress

from live_checks import ROOT, live_skip_reason

pytestmark = pytest.mark.live
REASON = live_skip_reason()
if REASON:
    pytestmark = [pytest.mark.live, pytest.mark.skip(reason=REASON)]


@pytest.fixture(scope="module")
def backend():
    b = k.KindBackend(os.environ.get("K8SLAB_LIVE_NAME", "k8slab"), root=ROOT, progress=Progress())
    created = not b.is_up()
    b.up()
    try:
        yield b
    finally:
        k.close_all_port_forwards()
        if created:
            b.down()


def test_doctor_passes(backend):
    failed = [f for f in backend.doctor() if not f.ok and f.blocking]
    assert failed == []


def test_app_and_controller(backend):
    from k8slab.model import load_manifests
    backend.deploy_app(load_manifests(ROOT / "kind" / "manifests" / "app.yaml"), replicas=2)
    backend.install_ingress_controller()
    svc = next(s for s in backend.objects("services") if s["metadata"]["name"] == "ingress-nginx-controller")
    assert k.service_row(svc)["TYPE"] == "LoadBalancer"


def test_node_data_plane(backend):
    text = backend.iptables_save()
    assert ":KUBE-SERVICES" in text and backend.iptables_mode in ("nft", "legacy")
    [cp] = [n for n in backend.nodes() if n.role == "control-plane"]
    assert cp.ip and "127.0.0.1" in cp.local_ips
    assert any(s.local.endswith(":10250") for s in backend.sockets())
    assert isinstance(backend.conntrack(), list)
    assert backend.containers()


def test_port_forward_and_requests(backend):
    with backend.port_forward("svc/url-shortener", 18080, 80) as pf:
        r = backend.request("http://localhost:18080/whoami")
        assert r.ok and r.client == "127.0.0.1"
    assert not pf.alive
    r = backend.request("http://localhost:18080/whoami", timeout=2)
    assert r.status is None
    node = backend.request("http://localhost/whoami", from_="node")
    assert node.status is not None


def test_model_round_trip(backend):
    c = backend.model()
    assert c.pods


def test_ingress_path_from_the_host_and_a_pod(backend):
    """The seed's path on the real cluster: localhost:8080 -> Docker -> node:80 -> hostPort DNAT ->
    controller -> pod, and the same Service from inside the cluster."""
    import time
    from k8slab.model import load_manifests
    backend.apply(load_manifests(ROOT / "kind" / "manifests" / "ingress.yaml"))
    deadline = time.monotonic() + 60
    while True:      # the controller picks the Ingress up asynchronously
        r = backend.request("http://localhost:8080/whoami", host="shortener.localtest.me")
        if r.ok or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert r.ok and r.whoami and r.whoami["x_forwarded_host"] == "shortener.localtest.me", r.error
    pod_view = backend.request("http://url-shortener.default.svc/whoami", from_="pod")
    assert pod_view.ok and pod_view.client and pod_view.client.startswith("10.244.")
    assert any(route.dev.startswith("veth") for route in backend.routes())


def test_record_and_replay(backend, tmp_path):
    from k8slab import Lab
    from k8slab.recording import load
    lab = Lab(backend="kind", name=backend.name, quiet=True)
    lab.up()
    lab.request("http://localhost:8080/whoami", host="shortener.localtest.me")
    manifest = lab.record(tmp_path / "run")
    rec = load(tmp_path / "run")
    assert rec.nodes and rec.iptables_save(rec.nodes[0].name)
    replay = Lab(backend="sim", replay=tmp_path / "run", quiet=True)
    assert not replay.live and manifest


def test_selftest_every_way_in_agrees_with_the_tracer(backend, tmp_path):
    """What an instructor runs before a class: every way in answers as this cluster's rules predict."""
    from k8slab import Lab, selftest
    lab = Lab(backend="kind", name=backend.name, root=ROOT)
    selftest.prepare(lab)
    checks = selftest.run(lab)
    assert all(c.agrees for c in checks), selftest.frame(checks).to_string()
    selftest.record(lab, tmp_path / "rec")
    assert any((tmp_path / "rec").iterdir())
