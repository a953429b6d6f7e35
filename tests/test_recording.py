"""Recording a lab (here: the kind backend on fake tools) and replaying it where no cluster exists."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from fakes.harness import fake_tools
from k8slab import recording
from k8slab.backends import kind as k
from k8slab.errors import LabStateError, NotFound
from k8slab.progress import Progress

NOW = dt.datetime(2026, 3, 24, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    ft = fake_tools(tmp_path, monkeypatch)
    ft.seed_cluster("k8slab")
    b = k.KindBackend("k8slab", root=ft.root, progress=Progress(quiet=True))
    b.request("http://10.96.120.7/whoami", host="hello.local", from_="node")
    b.request("http://10.96.120.7/whoami", from_="pod")
    out = tmp_path / "rec"
    manifest = recording.record(b, out, now=NOW)
    return b, out, manifest


def test_record_writes_files_and_a_manifest(recorded):
    b, out, manifest = recorded
    data = json.loads(manifest.read_text())
    assert data["format"] == recording.FORMAT and data["created"] == "2026-03-24T10:00:00+00:00"
    assert (data["backend"], data["cluster"], data["live"]) == ("kind", "k8slab", True)
    assert data["versions"]["kind"] == "v0.32.0" and data["versions"]["kubernetes"] == "v1.35.0"
    assert data["versions"]["ingress-controller"] == "ingress-nginx controller-v1.15.1" and data["versions"]["k8slab"]
    assert [n["name"] for n in data["nodes"]] == ["k8slab-control-plane"]
    assert (out / "iptables" / "k8slab-control-plane.rules").read_text() == b.iptables_save()
    assert set(data["files"]["objects"]) == set(recording.KINDS)
    pods = json.loads((out / "objects" / "pods.json").read_text())
    assert {p["metadata"]["name"] for p in pods} >= {"url-shortener-6d9c7b5f4-abcde"}
    assert (out / "ingress" / "nginx.conf").read_text().startswith("# Configuration checksum")
    assert [r["request"]["from_"] for r in data["responses"]] == ["node", "pod"]
    assert data["responses"][0]["request"]["host"] == "hello.local"
    assert "iptables/host" not in data["files"] or data["files"].get("host_iptables")


def test_load_gives_back_what_was_recorded(recorded):
    b, out, _ = recorded
    rec = recording.load(out)
    assert rec.describe().startswith("replaying a recording of kind cluster 'k8slab' made 2026-03-24T10:00:00")
    assert rec.objects("Pod") == rec.objects("pods") == b.objects("pods")
    assert rec.nodes == b.nodes()
    assert rec.iptables_save() == b.iptables_save("k8slab-control-plane")
    assert rec.conntrack() == b.conntrack() and rec.sockets() == b.sockets()
    r = rec.response_for("http://10.96.120.7/whoami", "hello.local", "node")
    assert r.status == 200 and r.client == "10.244.0.1"
    assert rec.response_for("http://10.96.120.7/whoami", None, "pod").client == "10.244.0.9"
    assert rec.response_for("http://elsewhere/", None, "host") is None
    with pytest.raises(NotFound, match="no iptables dump of node 'nope'"):
        rec.iptables_save("nope")


def test_the_replay_backend_serves_it_read_only_and_says_so(recorded):
    b, out, _ = recorded
    progress = Progress(quiet=True)
    rb = recording.replay_backend(out, name="k8slab", root=out, progress=progress)
    assert rb.live is False and rb.is_up()
    assert any("replaying a recording of kind cluster 'k8slab'" in l for l in progress.lines)
    r = rb.request("http://10.96.120.7/whoami", host="hello.local", from_="node")
    assert r.predicted and r.backend == "replay of kind" and r.pod == "url-shortener-6d9c7b5f4-abcde"
    with pytest.raises(NotFound, match="Recorded: http://10.96.120.7/whoami host=hello.local from node"):
        rb.request("http://localhost:8080/", from_="host")
    with pytest.raises(LabStateError, match="read-only"):
        rb.apply([{"kind": "Namespace", "metadata": {"name": "x"}}])
    with rb.port_forward("svc/url-shortener", 8080, 80) as pf:
        assert pf.alive
    assert not pf.alive
    assert rb.iptables_save("k8slab-control-plane") == b.iptables_save()
    assert {p.ip for p in rb.model().pods} >= {"10.244.0.7"}


def test_lab_replays_a_recording(recorded):
    _, out, _ = recorded
    lab_mod = pytest.importorskip("k8slab.lab", reason="k8slab.lab is not installed")
    lab = lab_mod.Lab(backend="sim", replay=out, root=out, quiet=True)
    assert not lab.live
    frame = lab.get("pods")
    assert len(frame) == len(recording.load(out).objects("pods"))


def test_load_errors_say_what_to_do(tmp_path):
    with pytest.raises(NotFound, match=r"lab.record"):
        recording.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(LabStateError, match="record it again"):
        recording.load(tmp_path)


def test_a_half_built_lab_is_still_recorded_with_its_errors(tmp_path, monkeypatch):
    ft = fake_tools(tmp_path, monkeypatch)
    ft.seed_cluster("k8slab")
    b = k.KindBackend("k8slab", root=ft.root, progress=Progress(quiet=True))
    ft.scenario("docker-down")        # kubectl still answers; node access fails
    data = json.loads(recording.record(b, tmp_path / "rec", now=NOW).read_text())
    assert [n["ip"] for n in data["nodes"]] == ["172.18.0.2"]     # from the API server's InternalIP
    for part in ("iptables/k8slab-control-plane", "conntrack/k8slab-control-plane"):
        assert "Cannot connect to the Docker daemon" in data["errors"][part]
    assert data["files"]["objects"]["services"] == "objects/services.json"


def test_a_recorded_path_keeps_what_each_hop_rewrote(tmp_path):
    """Paths read back from a recording keep the packet-at-each-hop fields (rewrote, stand-in)."""
    from k8slab import Lab
    lab = Lab(backend="sim", name="rec-paths")
    lab.up()
    lab.deploy_app(replicas=2)
    lab.apply("kind/manifests/app-nodeport.yaml")
    lab.record(tmp_path / "rec")
    back = recording.load(tmp_path / "rec").paths["nodeport"]
    live = lab.path("nodeport")
    assert [h.rewrote for h in back.hops] == [h.rewrote for h in live.hops]
    assert any(h.rewrote for h in back.hops)
    assert [h.stand_in for h in back.hops] == [h.stand_in for h in live.hops]
