"""The kind backend's pure functions: what docker, kind, kubectl, conntrack, ss and curl print."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fakes"))
import _fakecore  # noqa: E402

from k8slab.backends import kind as k  # noqa: E402


def test_validate_name_accepts_dns1123_labels_and_rejects_the_rest():
    assert k.validate_name("k8slab") == "k8slab"
    assert k.validate_name("a-1") == "a-1"
    for bad in ("", "K8slab", "-a", "a-", "a_b", "a b", "a;rm -rf /", "x" * 64, "a.b"):
        with pytest.raises(ValueError, match="DNS-1123"):
            k.validate_name(bad)


def test_validate_target():
    assert k.validate_target("svc/url-shortener") == ("svc", "url-shortener")
    assert k.validate_target("service/web") == ("svc", "web")
    assert k.validate_target("deploy/web") == ("deployment", "web")
    for bad in ("url-shortener", "svc/", "svc/a b", "node/x", "svc/$(id)"):
        with pytest.raises(ValueError):
            k.validate_target(bad)


def test_docker_info_daemon_down_is_not_reachable():
    # What the real docker 28 client prints with no daemon: client-only JSON, an error, exit 1.
    info = k.parse_docker_info('{"ID":"","ServerVersion":"","SecurityOptions":null,"MemTotal":0,'
                               '"ClientInfo":{"Version":"28.2.2"}}', _fakecore.DAEMON_DOWN, 1)
    assert not info.reachable
    assert "Is the docker daemon running" in info.error


def test_docker_info_rootless_desktop_and_firewall(monkeypatch):
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "rootless,nftables")
    info = k.parse_docker_info(json.dumps(_fakecore.docker_info()))
    assert info.reachable and info.rootless and not info.desktop
    assert info.firewall_backend == "nftables" and info.server_version == "28.2.2"
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "desktop")
    info = k.parse_docker_info(json.dumps(_fakecore.docker_info()))
    assert info.desktop and not info.rootless and info.firewall_backend == "iptables"


def test_docker_info_image_store(monkeypatch):
    # moby daemon/containerd/service.go LayerStoreStatus: [["driver-type", "io.containerd.snapshotter.v1"]]
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "containerd-store")
    info = k.parse_docker_info(json.dumps(_fakecore.docker_info()))
    assert info.image_store == "containerd" and info.storage_driver == "overlayfs"
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "")
    info = k.parse_docker_info(json.dumps(_fakecore.docker_info()))
    assert info.image_store == "classic" and info.storage_driver == "overlay2"
    assert k.parse_docker_info('{"ServerVersion": "20.10.0"}').image_store == ""      # not reported


def test_versions():
    assert k.parse_kind_version("kind v0.32.0 go1.25.5 linux/amd64") == "v0.32.0"
    assert k.parse_kubectl_version('{"clientVersion": {"gitVersion": "v1.37.1"}}') == "v1.37.1"
    assert k.parse_kubectl_version("Client Version: v1.32.4-dispatcher") == "v1.32.4-dispatcher"


def test_kind_clusters():
    assert k.parse_kind_clusters("k8slab\nother\n") == ["k8slab", "other"]
    assert k.parse_kind_clusters("") == []
    assert k.parse_kind_clusters("No kind clusters found.\n") == []


def test_config_and_container_comparison(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    from fakes.harness import CONFIG
    cfg_file.write_text(CONFIG.format(image="kindest/node:v1.35.0", http=8080, https=8443))
    cfg = k.read_kind_config(cfg_file)
    assert cfg.roles == ("control-plane",)
    assert cfg.host_ports == (8080, 8443)
    assert cfg.node_labels == ("ingress-ready=true",)
    same = _fakecore.node_inspect("k8slab", {"image": "kindest/node:v1.35.0", "ports": [[80, 8080], [443, 8443]]})
    image, maps = k.container_mappings(same)
    assert image == "kindest/node:v1.35.0"
    assert {(m.container_port, m.host_port) for m in maps} == {(80, 8080), (443, 8443), (6443, 38917)}
    assert k.config_differences(cfg, image, maps) == []    # kind's own API server mapping is ignored
    other = _fakecore.node_inspect("k8slab", {"image": "kindest/node:v1.33.1", "ports": [[80, 9090]]})
    diffs = k.config_differences(cfg, *k.container_mappings(other))
    assert any("v1.33.1" in d for d in diffs)
    assert "missing port mapping host 8080 -> node 80/TCP" in diffs
    assert "missing port mapping host 8443 -> node 443/TCP" in diffs
    # the nodes kind lists for the cluster count too: a multi-node cluster is not the course's
    assert k.config_differences(cfg, image, maps, node_names=["k8slab-control-plane"]) == []
    more = k.config_differences(cfg, image, maps,
                                node_names=["k8slab-control-plane", "k8slab-worker", "k8slab-worker2"])
    assert more == ["it has 2 worker node(s), the config asks for 0"]
    assert "extra port mapping host 9090 -> node 80/TCP" in diffs


def test_read_kind_config_errors(tmp_path):
    with pytest.raises(k.LabStateError, match="does not exist"):
        k.read_kind_config(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("kind: Pod\n")
    with pytest.raises(k.LabStateError, match="not a kind Cluster config"):
        k.read_kind_config(tmp_path / "x.yaml")


def test_busy_port_from_docker_and_kubectl_errors():
    assert k.busy_port_in("... Bind for 0.0.0.0:8080 failed: port is already allocated.") == 8080
    assert k.busy_port_in("Error listen tcp4 127.0.0.1:18080: bind: address already in use") == 18080
    assert k.busy_port_in("listen tcp 0.0.0.0:80: bind: address already in use") == 80
    assert k.busy_port_in("everything fine") is None


def test_busy_port_in_docker_28_and_29_texts():
    """dockerd 28 and 29 word a port another process holds differently (real-cli-behaviours.yaml d12;
    moby drivers/bridge/port_mapping_linux.go in 28, portallocator/osallocator_linux.go in 29)."""
    d28 = ("docker: Error response from daemon: failed to set up container networking: failed to bind host port "
           "for 0.0.0.0:8080:172.18.0.2:80/tcp: address already in use")
    d29 = ("docker: Error response from daemon: failed to set up container networking: failed to bind host port "
           "0.0.0.0:8080/tcp: address already in use")
    assert k.busy_port_in(d28) == 8080 and k.busy_port_in(d29) == 8080
    assert k.busy_port_in("failed to bind host port [::]:8443/tcp: address already in use") == 8443


def test_conntrack_plain_and_extended():
    entries = k.parse_conntrack(_fakecore.CONNTRACK)
    assert len(entries) == 3
    hostport = entries[1]
    assert (hostport.src, hostport.dst, hostport.dport) == ("172.18.0.1", "172.18.0.2", 80)
    assert (hostport.reply_src, hostport.reply_sport) == ("10.244.0.5", 80)
    assert hostport.dnat and not hostport.snat and hostport.state == "TIME_WAIT"
    assert entries[2].proto == "udp" and entries[2].state == ""
    ext = "ipv4     2 " + _fakecore.CONNTRACK.splitlines()[0]
    assert k.parse_conntrack(ext)[0] == entries[0]
    assert k.parse_conntrack("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.") == []


def test_ss_and_ip_addr():
    socks = k.parse_ss(_fakecore.SS_NODE)
    assert [s.local for s in socks] == ["127.0.0.1:10248", "172.18.0.2:2379", "*:10250", "*:6443"]
    assert socks[3].process == "kube-apiserver"
    assert k.parse_ip_addrs(_fakecore.IP_ADDR) == ["127.0.0.1", "10.244.0.1", "172.18.0.2"]


def test_pick_iptables_prefers_the_flavour_with_kube_chains():
    empty = _fakecore.IPTABLES_EMPTY.format(mode="legacy")
    assert k.pick_iptables(empty, _fakecore.IPTABLES_NFT) == ("nft", _fakecore.IPTABLES_NFT)
    assert k.pick_iptables(_fakecore.IPTABLES_NFT, empty)[0] == "legacy"
    assert k.pick_iptables(None, empty)[0] == "nft"
    assert k.pick_iptables(None, None) == ("none", "")


def test_crictl_ps():
    cs = k.parse_crictl_ps(json.dumps(_fakecore.CRICTL_PS))
    assert [(c.name, c.pod, c.namespace, c.state) for c in cs] == [
        ("url-shortener", "url-shortener-6d9c7b5f4-abcde", "default", "running"),
        ("controller", "ingress-nginx-controller-5b8d9c7f6-xyz12", "ingress-nginx", "running")]


def test_parse_http_and_whoami():
    raw = "HTTP/1.1 100 Continue\r\n\r\n" + _fakecore.http_response(_fakecore.whoami("10.244.0.9", "hello.local"))
    status, headers, body = k.parse_http(raw)
    assert status == 200 and headers["content-type"] == "application/json"
    who = k.whoami_of("http://x/whoami", body)
    assert who["client_ip"] == "10.244.0.9"
    assert k.destination_of(who) == "10.244.0.7:8080"
    assert k.whoami_of("http://x/other", body) is None
    assert k.parse_http("garbage")[0] is None


def test_pod_problems_image_pull(monkeypatch):
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "image-pull")
    probs = k.pod_problems(_fakecore.pods("k8slab"))
    assert {p.reason for p in probs} == {"ImagePullBackOff"}
    cls, text = k.explain_problems(probs, "kubectl --kubeconfig K", "k8slab")
    assert cls is k.ImagePullFailed
    assert "kind load docker-image k8slab/url-shortener:0.1.0 --name k8slab" in text
    assert "kubectl --kubeconfig K describe pod url-shortener-6d9c7b5f4-abcde -n default" in text


def test_pod_problems_controller_pending(monkeypatch):
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "controller-pending")
    probs = k.pod_problems(_fakecore.pods("k8slab"))
    assert [(p.pod, p.reason) for p in probs] == [("ingress-nginx-controller-5b8d9c7f6-xyz12", "Unschedulable")]
    cls, text = k.explain_problems(probs, "kubectl", "k8slab")
    assert cls is k.ControllerPending
    assert "ingress-ready=true" in text and "kubectl label node k8slab-control-plane ingress-ready=true" in text


def test_pod_problems_controller_pending_on_a_taken_host_port(monkeypatch):
    # ingress-nginx >= v1.13 selects no ingress-ready label: Pending then means hostPort 80/443 is taken
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "controller-pending")
    pods = _fakecore.pods("k8slab")
    ctl = next(p for p in pods if p["metadata"]["namespace"] == "ingress-nginx")
    ctl["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    ctl["status"]["conditions"][0]["message"] = (
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.")
    cls, text = k.explain_problems(k.pod_problems(pods), "kubectl", "k8slab")
    assert cls is k.ControllerPending
    assert "hostPort" in text and "kubectl get pods -A -o wide" in text and "label node" not in text


def test_pod_problems_controller_v1_15_pending_is_not_blamed_on_the_ingress_ready_label(monkeypatch):
    # controller-v1.15.1's kind manifest selects only kubernetes.io/os=linux (upstream deploy.yaml): a
    # Pending controller is then a taint it does not tolerate (the scheduler's "untolerated taint"),
    # not a missing ingress-ready label.
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "controller-pending")
    pods = _fakecore.pods("k8slab")
    ctl = next(p for p in pods if p["metadata"]["namespace"] == "ingress-nginx")
    ctl["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    ctl["status"]["conditions"][0]["message"] = (
        "0/1 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. "
        "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.")
    cls, text = k.explain_problems(k.pod_problems(pods), "kubectl", "k8slab")
    assert cls is k.ControllerPending
    assert "ingress-ready" not in text and "label node" not in text
    assert "toleration" in text and "node-role.kubernetes.io/control-plane" in text
    assert "kubectl describe node k8slab-control-plane" in text
    # ... and a selector no node matches, without any ingress-ready in it, names the selector.
    ctl["status"]["conditions"][0]["message"] = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    ctl["spec"]["nodeSelector"] = {"kubernetes.io/os": "windows"}
    cls, text = k.explain_problems(k.pod_problems(pods), "kubectl", "k8slab")
    assert "ingress-ready" not in text and "kubernetes.io/os=windows" in text and "--show-labels" in text


def test_pod_problems_crash_and_healthy(monkeypatch):
    assert k.pod_problems(_fakecore.pods("k8slab")) == []
    monkeypatch.setenv("K8SLAB_FAKE_SCENARIO", "crash")
    cls, text = k.explain_problems(k.pod_problems(_fakecore.pods("k8slab")), "kubectl", "k8slab")
    assert cls is k.RolloutFailed and "--previous" in text


def test_service_row_shows_pending_load_balancer_like_the_seed():
    svc = next(s for s in _fakecore.services() if s["metadata"]["name"] == "ingress-nginx-controller")
    row = k.service_row(svc)
    assert row["TYPE"] == "LoadBalancer" and row["EXTERNAL-IP"] == "<pending>"
    assert row["PORT(S)"] == "80:31290/TCP,443:30946/TCP"
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "172.18.0.3"}]}}
    assert k.service_row(svc)["EXTERNAL-IP"] == "172.18.0.3"


def test_applied_names():
    out = "namespace/ingress-nginx serverside-applied\ndeployment.apps/web serverside-applied\n"
    assert k.applied_names(out) == ["namespace/ingress-nginx", "deployment.apps/web"]
