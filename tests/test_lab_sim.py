"""The Lab on the sim backend: picking a backend, names, manifests, the get() frames, labels, the CLI."""
from __future__ import annotations

import sys
import types

import pytest

from conftest import ROOT
from k8slab import lab as labmod
from k8slab.errors import BackendUnavailable, K8sLabError, LabStateError, ManifestError, NotFound
from k8slab.lab import Lab, choose_backend, find_root, load_manifests, validate_name
from conftest import course_lab




# --------------------------------------------------------------------------------------------
# names, root, backend choice

@pytest.mark.parametrize("name", ["k8slab", "a", "lab-2", "x" * 63])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "K8slab", "-lab", "lab-", "lab_1", "lab.one", "x" * 64, "ünï"])
def test_invalid_names_say_the_rule(name):
    with pytest.raises(ManifestError) as err:
        Lab(backend="sim", name=name, quiet=True)
    assert "DNS-1123" in str(err.value)
    assert isinstance(err.value, ValueError) and isinstance(err.value, K8sLabError)


def test_find_root_searches_upward(tmp_path, monkeypatch):
    assert find_root([ROOT / "k8slab" / "backends"]) == ROOT
    monkeypatch.chdir(ROOT / "kind" / "manifests")
    assert Lab(backend="sim", quiet=True).root == ROOT
    with pytest.raises(NotFound):
        find_root([tmp_path])


class _Fake:
    def __init__(self, ok, why):
        self._ok, self._why = ok, why

    def available(self):
        return self._ok, self._why


def test_auto_picks_sim_when_kind_is_unusable_and_says_why(monkeypatch):
    monkeypatch.delenv("K8SLAB_BACKEND", raising=False)
    monkeypatch.setattr(labmod, "load_backend_class",
                        lambda kind: _Fake(False, "docker: Cannot connect to the Docker daemon"))
    chosen, why = choose_backend("auto", env={})
    assert chosen == "sim"
    assert "Cannot connect to the Docker daemon" in why and "predicts" in why


def test_auto_picks_kind_where_it_works():
    import k8slab.lab as m
    orig = m.load_backend_class
    try:
        m.load_backend_class = lambda kind: _Fake(True, "docker 27, kind v0.31")
        assert choose_backend("auto", env={})[0] == "kind"
    finally:
        m.load_backend_class = orig


def test_env_overrides_auto_only():
    assert choose_backend("auto", env={"K8SLAB_BACKEND": "netns"}) == ("netns", "netns: set by K8SLAB_BACKEND")
    assert "not a live cluster" in choose_backend("auto", env={"K8SLAB_BACKEND": "sim"})[1]
    assert choose_backend("sim", env={"K8SLAB_BACKEND": "kind"})[0] == "sim"


def test_env_override_builds_that_backend(monkeypatch):
    monkeypatch.setenv("K8SLAB_BACKEND", "sim")
    lab = Lab(quiet=True)
    assert lab.backend_name == "sim" and "K8SLAB_BACKEND" in lab.why
    assert lab.progress.lines and lab.why in lab.progress.lines[0]


def test_missing_backend_module_is_backend_unavailable(monkeypatch):
    real = labmod.importlib.import_module

    def fake(name, *a):
        if name == "k8slab.backends.netns":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a)
    monkeypatch.setattr(labmod.importlib, "import_module", fake)
    with pytest.raises(BackendUnavailable) as err:
        Lab(backend="netns", quiet=True)
    assert "netns" in str(err.value) and "backend='sim'" in str(err.value)


def test_unavailable_backend_gives_reason_and_fix(monkeypatch):
    class Never:
        @classmethod
        def available(cls):
            return False, "no Docker daemon at /var/run/docker.sock"
    monkeypatch.setattr(labmod, "load_backend_class", lambda kind: Never)
    with pytest.raises(BackendUnavailable) as err:
        Lab(backend="kind", quiet=True)
    assert "no Docker daemon" in str(err.value) and "Fix:" in str(err.value)


def test_unknown_backend():
    with pytest.raises(BackendUnavailable):
        Lab(backend="minikube", quiet=True)


# --------------------------------------------------------------------------------------------
# state, labels, repr

def test_verbs_before_up_say_what_to_do():
    lab = Lab(backend="sim", quiet=True)
    with pytest.raises(LabStateError, match="lab.up"):
        lab.get("pods")
    with pytest.raises(LabStateError):
        lab.request("http://localhost:8080/")


def test_repr_says_model_not_live():
    lab = Lab(backend="sim", quiet=True)
    assert lab.live is False and lab.backend_name == "sim"
    assert "predictions of a model, not a live cluster" in repr(lab)
    assert "state: down" in repr(lab)
    lab.up()
    text = repr(lab)
    assert "state: up" in text and "k8slab-control-plane" in text
    assert "predictions of a model" in lab._repr_html_() and "<li>" in lab._repr_html_()
    lab.down()
    assert "state: down" in repr(lab)


def test_doctor_frame():
    df = Lab(backend="sim", quiet=True).doctor()
    assert list(df.columns) == ["check", "ok", "detail", "fix"]
    assert df["ok"].all() and df.attrs["source"] == "sim model"


# --------------------------------------------------------------------------------------------
# get() frames

def test_get_frames_have_the_documented_columns():
    lab = course_lab()
    expected = {
        "nodes": ["name", "role", "ip", "pod_cidr", "runs_as"],
        "pods": ["namespace", "name", "node", "ip", "ready", "host_ports", "app"],
        "services": ["namespace", "name", "type", "cluster_ip", "external_ip", "ports"],
        "endpoints": ["namespace", "service", "port_name", "endpoint", "ready", "node"],
        "ingresses": ["namespace", "name", "class", "host", "path", "service", "port"],
    }
    for kind, cols in expected.items():
        df = lab.get(kind)
        assert list(df.columns) == cols, kind
        assert len(df) > 0, kind
        assert df.attrs["source"] == "sim model" and df.attrs["predicted"] is True
    deps = lab.get("deployments").set_index("name")
    assert list(lab.get("deployments").columns) == ["namespace", "name", "replicas", "ready", "available", "image"]
    assert deps.loc["url-shortener", "replicas"] == 2 and deps.loc["url-shortener", "ready"] == 2
    assert list(lab.get("svc").columns) == expected["services"]       # kubectl's short names work


def test_services_print_like_kubectl():
    lab = course_lab()
    svc = lab.get("services").set_index("name")
    model = lab.backend.model()
    lb = model.service("ingress-nginx-controller", "ingress-nginx")
    assert svc.loc["ingress-nginx-controller", "type"] == "LoadBalancer"
    assert svc.loc["ingress-nginx-controller", "external_ip"] == "<pending>"
    ports = ",".join(f"{p.port}:{p.node_port}/TCP" for p in lb.ports)
    assert svc.loc["ingress-nginx-controller", "ports"] == ports
    assert ports.startswith("80:") and ",443:" in ports
    assert svc.loc["url-shortener", "ports"] == "80/TCP"
    assert svc.loc["url-shortener", "external_ip"] == "<none>"
    assert svc.loc["url-shortener-nodeport", "ports"] == "80:30080/TCP"
    assert svc.loc["url-shortener", "cluster_ip"] == model.service("url-shortener").cluster_ip


def test_pods_endpoints_and_ingresses_agree_with_the_model():
    lab = course_lab()
    model = lab.backend.model()
    pods = lab.get("pods")
    app = pods[pods["app"] == "url-shortener"]
    assert len(app) == 2 and app["ready"].all()
    ctrl = pods[pods["namespace"] == "ingress-nginx"]
    assert set(ctrl["host_ports"]) == {"80->80/TCP,443->443/TCP"}
    eps = lab.get("endpoints")
    mine = eps[(eps["service"] == "url-shortener")]
    assert sorted(mine["endpoint"]) == sorted(model.endpoints_of("url-shortener"))
    assert set(mine["port_name"]) == {"http"} and mine["ready"].all()
    assert sorted(mine["endpoint"].str.split(":").str[0]) == sorted(app["ip"])
    ing = lab.get("ingresses")
    assert ing.iloc[0][["host", "path", "service", "port", "class"]].tolist() == [
        "shortener.localtest.me", "/", "url-shortener", 80, "nginx"]
    with pytest.raises(NotFound):
        lab.get("secrets")


def test_deploy_app_replicas_and_scale():
    lab = Lab(backend="sim", quiet=True)
    lab.up()
    lab.deploy_app(replicas=3)
    assert (lab.get("pods")["app"] == "url-shortener").sum() == 3
    lab.scale("url-shortener", 1)
    assert (lab.get("pods")["app"] == "url-shortener").sum() == 1
    with pytest.raises(ValueError):
        lab.scale("url-shortener", -1)


# --------------------------------------------------------------------------------------------
# apply: every form

SVC_YAML = """apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  selector: {app: url-shortener}
  ports: [{port: 81, targetPort: http}]
"""


def test_apply_accepts_path_text_dict_and_list(tmp_path):
    lab = Lab(backend="sim", quiet=True)
    lab.up()
    assert lab.apply(ROOT / "kind" / "manifests" / "app.yaml") == ["deployment.apps/url-shortener",
                                                                   "service/url-shortener"]
    assert lab.apply(SVC_YAML) == ["service/extra"]
    import yaml
    d = yaml.safe_load(SVC_YAML)
    d["metadata"]["name"] = "extra2"
    assert lab.apply(d) == ["service/extra2"]
    d3 = dict(d, metadata={"name": "extra3", "namespace": "default"})
    d4 = dict(d, metadata={"name": "extra4", "namespace": "default"})
    assert lab.apply([d3, d4]) == ["service/extra3", "service/extra4"]
    f = tmp_path / "svc.yaml"
    f.write_text(SVC_YAML.replace("extra", "extra5"))
    assert lab.apply(str(f)) == ["service/extra5"]
    names = set(lab.get("services")["name"])
    assert {"extra", "extra2", "extra3", "extra4", "extra5"} <= names
    lab.delete("service", "extra5")
    assert "extra5" not in set(lab.get("services")["name"])


@pytest.mark.parametrize("bad", ["kind/manifests/nope.yaml", "a: [unclosed", "- 1\n- 2\n",
                                 {"kind": "Service"}, 42])
def test_apply_rejects_bad_manifests(bad):
    with pytest.raises(ManifestError):
        load_manifests(bad, ROOT)


# --------------------------------------------------------------------------------------------
# outputs that come from the model say so

def test_every_output_is_labelled_as_a_prediction():
    lab = course_lab()
    assert lab.request("http://shortener.localtest.me:8080/whoami").predicted is True
    assert lab.path("ingress").predicted is True
    for df in (lab.conntrack(), lab.sockets(), lab.ingress_routes(), lab.get("pods")):
        assert df.attrs["source"] == "sim model"
    with lab.counters() as c:
        pass
    assert c.frame.attrs["source"] == "sim model"


def test_iptables_is_the_parsed_node_dump_and_is_cached():
    lab = course_lab()
    a = lab.iptables()
    assert a is lab.iptables()                  # nothing changed: the same parsed Ruleset
    assert a.chain("nat", "KUBE-SERVICES") is not None and a.chain("nat", "CNI-HOSTPORT-DNAT") is not None
    host = lab.host_iptables()
    assert any(r.target == "DNAT" and "8080" in r.line for r in host.iter_rules())
    assert lab.iptables("control-plane") is a and lab.iptables("k8slab-control-plane") is a
    with pytest.raises(NotFound):
        lab.iptables("worker9")
    lab.scale("url-shortener", 3)
    b = lab.iptables()
    assert b is not a
    svc = [c for c in b.tables["nat"] if c.startswith("KUBE-SVC-")]
    assert svc


def test_ingress_routes_and_config():
    lab = course_lab()
    routes = lab.ingress_routes()
    row = routes.iloc[0]
    assert (row["host"], row["path"], row["service"]) == ("shortener.localtest.me", "/", "url-shortener")
    assert sorted(row["upstreams"].split(",")) == sorted(lab.backend.model().endpoints_of("url-shortener"))
    conf = lab.ingress_config()
    assert "server_name shortener.localtest.me;" in conf
    for ep in row["upstreams"].split(","):
        assert f"server {ep};" in conf


def test_sockets_nothing_listens_on_service_addresses():
    lab = course_lab()
    socks = lab.sockets()
    ports = {int(s.rsplit(":", 1)[1]) for s in socks["local"]}
    assert {10250, 10249, 10256, 6443, 2379} <= ports
    services = lab.get("services")
    for ip in services["cluster_ip"]:
        assert not socks["local"].str.startswith(f"{ip}:").any()
    assert 30080 not in ports and 80 not in ports       # NodePort and hostPort are rules, not sockets
    app = lab.sockets(pod=lab.get("pods").query("app == 'url-shortener'")["name"].iloc[0])
    assert list(app["local"]) == ["0.0.0.0:8080"]
    ctrl = lab.sockets(pod=lab.get("pods").query("namespace == 'ingress-nginx'")["name"].iloc[0])
    assert {"0.0.0.0:80", "0.0.0.0:443", "0.0.0.0:8443"} <= set(ctrl["local"])


def test_record_needs_the_recording_module(monkeypatch, tmp_path):
    lab = course_lab()
    fake = types.ModuleType("k8slab.recording")
    seen = {}
    fake.record = lambda lab_, d: seen.setdefault("args", (lab_, d)) and "ok"
    monkeypatch.setitem(sys.modules, "k8slab.recording", fake)
    lab.record(tmp_path)
    assert seen["args"] == (lab, tmp_path)


# --------------------------------------------------------------------------------------------
# the CLI verbs

def test_cli_status_and_up_on_sim(capsys):
    from k8slab.cli import main
    assert main(["status", "--backend", "sim"]) == 0
    out = capsys.readouterr().out
    assert "backend: sim" in out and "state: down" in out
    assert main(["up", "--backend", "sim", "--name", "clitest"]) == 0
    out = capsys.readouterr().out
    assert "clitest-control-plane" in out and "in memory" in out
    assert main(["down", "--backend", "sim", "clitest"]) == 0
    assert "is down" in capsys.readouterr().out


def test_cli_bad_name_is_one_line_error(capsys):
    from k8slab.cli import main
    assert main(["status", "--backend", "sim", "--name", "Bad_Name"]) == 1
    assert "DNS-1123" in capsys.readouterr().out
    assert main(["up", "--backend", "sim", "--name", "Bad_Name"]) == 2
    assert "DNS-1123" in capsys.readouterr().err


def test_cli_down_force_calls_the_cleanups(monkeypatch, capsys):
    from k8slab.cli import main
    calls = []
    fake = types.ModuleType("k8slab.backends.netns")
    fake.force_cleanup = lambda name: calls.append(name) or [f"namespace {name}-node", f"namespace {name}-pod1"]
    monkeypatch.setitem(sys.modules, "k8slab.backends.netns", fake)
    assert main(["down", "--force", "--backend", "netns", "mylab"]) == 0
    out = capsys.readouterr().out
    assert calls == ["mylab"]
    assert "removed netns: namespace mylab-node" in out and "mylab-pod1" in out
    fake.force_cleanup = lambda name: []
    assert main(["down", "--force", "--backend", "netns", "mylab"]) == 0
    assert "nothing of lab 'mylab'" in capsys.readouterr().out


def test_record_then_replay_round_trip(tmp_path):
    pytest.importorskip("k8slab.recording", reason="k8slab/recording.py is not in this checkout")
    lab = course_lab()
    live = lab.request("http://shortener.localtest.me:8080/whoami")
    lab.record(tmp_path / "rec")
    replay = Lab(backend="sim", replay=tmp_path / "rec", quiet=True)
    assert replay.live is False and "replaying" in replay.why
    again = replay.request("http://shortener.localtest.me:8080/whoami")
    assert again.predicted and again.whoami == live.whoami
    pods = replay.get("pods")
    assert sorted(pods["name"]) == sorted(lab.get("pods")["name"])
    assert pods.attrs["predicted"] is True
    assert replay.iptables().rule_count == lab.iptables().rule_count


def test_routes_send_each_local_pod_to_its_veth_and_other_pod_cidrs_to_their_node():
    lab = course_lab(config="kind/cluster-multinode.yaml")
    routes = lab.routes()
    assert routes.attrs["source"] == "sim model"
    assert routes.iloc[0].to_dict()["dst"] == "default"
    nodes = lab.get("nodes").set_index("name")
    others = nodes[nodes["role"] == "worker"]
    for _, n in others.iterrows():
        assert ((routes["dst"] == n["pod_cidr"]) & (routes["via"] == n["ip"])).any()
    local = lab.get("pods").query("node == @nodes.index[0] and ip.str.startswith('10.244.')")
    assert set(local["ip"]) <= set(routes.loc[routes["dev"].str.startswith("veth"), "dst"])


def test_embedded_dns_socket_is_the_port_dockers_dnat_sends_to():
    # one source of truth (model.docker.dns_ports): the socket dockerd listens on is the TCP DNAT target
    lab = course_lab()
    rules = lab.iptables().rules
    dnat = rules[(rules.chain == "DOCKER_OUTPUT") & (rules.target == "DNAT") & (rules.protocol == "tcp")]
    targets = set(dnat["dnat_to"])
    socks = lab.sockets()
    dns = socks[socks.process.str.contains("embedded DNS")]["local"].tolist()
    assert len(targets) == 1 and dns == sorted(targets) and dns[0].startswith("127.0.0.11:")
