"""Predicted requests on the sim backend: who answers, which source address the app sees, errors."""
from __future__ import annotations

import ipaddress
import json

import pytest

from k8slab.backends.sim import PortInUse
from k8slab.errors import K8sLabError, NotFound
from k8slab.paths import controller_pod
from conftest import course_lab

HOST = "shortener.localtest.me"




@pytest.fixture
def lab():
    return course_lab()


def model(lab):
    return lab.backend.model()


def app_pods(lab):
    m = model(lab)
    return {p.ip: p for p in m.selected_pods(m.service("url-shortener"))}


def cluster_ip(lab, name="url-shortener"):
    return model(lab).service(name).cluster_ip


def test_ingress_via_localhost(lab):
    r = lab.request(f"http://{HOST}:8080/whoami")
    assert r.ok and r.predicted and r.backend == "sim"
    who = r.whoami
    pods = app_pods(lab)
    assert who["pod_ip"] in pods and who["pod"] == pods[who["pod_ip"]].name
    assert who["node"] == pods[who["pod_ip"]].node_name
    # nginx dials the pod from its own address and forwards the address it saw: docker-proxy's
    assert who["client_ip"] == controller_pod(model(lab)).ip
    assert who["x_forwarded_for"] == model(lab).gateway == who["x_real_ip"]
    assert who["host"] == HOST and who["x_forwarded_host"] == HOST
    assert r.destination == f"{who['pod_ip']}:8080"
    assert json.loads(r.body) == who


def test_host_header_picks_the_ingress_rule(lab):
    assert lab.request("http://localhost:8080/whoami").status == 404
    r = lab.request("http://127.0.0.1:8080/whoami", host=HOST)
    assert r.status == 200 and r.whoami["host"] == HOST
    miss = lab.request("http://localhost:8080/", host="nope.example")
    assert miss.status == 404
    assert miss.destination == f"{controller_pod(model(lab)).ip}:80"


def test_unrouted_request_gets_nginx_own_404_page(lab):
    # ingress-nginx controller-v1.15.1, no --default-backend-service: nginx.tmpl's catch-all server on
    # :8181 does `return 404;`, so the body is nginx's built-in page (server_tokens off: "nginx", no
    # version), byte for byte what real nginx 1.22 sent for the same config in the netns backend.
    miss = lab.request("http://localhost:8080/", host="nothing.localtest.me")
    assert miss.status == 404 and miss.body == (
        "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
        "<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    assert miss.headers.get("Content-Type") == "text/html"
    # nginx.tmpl: `more_clear_headers Server;` (server-tokens false): no Server header at all
    assert "Server" not in miss.headers
    routed = lab.request("http://localhost:8080/whoami", host=HOST)
    assert routed.ok and "Server" not in routed.headers       # the app's own is hidden by nginx's proxy


def test_ingress_without_endpoints_gets_nginx_503_page(lab):
    lab.scale("url-shortener", 0)
    r = lab.request("http://localhost:8080/whoami", host=HOST)
    assert r.status == 503 and "<title>503 Service Temporarily Unavailable</title>" in r.body


def test_controller_pod_listens_where_ingress_nginx_does(lab):
    # pkg/flags/flags.go defaults + the kind manifest's --validating-webhook=:8443; nginx.tmpl's
    # status (10246) and stream (10247) servers and the Go profiler (10245) are on 127.0.0.1 only
    socks = {s.local: s.process for s in lab.backend.sockets(None, pod=controller_pod(model(lab)).name)}
    assert set(socks) == {"0.0.0.0:80", "0.0.0.0:443", "0.0.0.0:8181", "0.0.0.0:8443", "0.0.0.0:10254",
                          "127.0.0.1:10245", "127.0.0.1:10246", "127.0.0.1:10247"}
    assert socks["0.0.0.0:8181"].startswith("nginx") and "profiler" in socks["127.0.0.1:10245"]
    ctl = controller_pod(model(lab))
    r = lab.request(f"http://{ctl.ip}:10246/nginx_status", from_="node")
    assert r.status is None and "refused" in r.error            # bound to the pod's loopback only


def test_ingress_round_robins_over_the_endpoints(lab):
    seen = [lab.request(f"http://{HOST}:8080/whoami").whoami["pod_ip"] for _ in range(4)]
    assert set(seen) == set(app_pods(lab)) and seen[0] == seen[2] and seen[1] == seen[3] and seen[0] != seen[1]


def test_nodeport_from_host_is_masqueraded(lab):
    node = model(lab).control_plane
    r = lab.request(f"http://{node.ip}:30080/whoami")
    assert r.ok and r.whoami["pod_ip"] in app_pods(lab)
    gw = str(ipaddress.ip_network(node.pod_cidr).network_address + 1)
    assert r.client == gw                          # MASQUERADE toward a local pod: the veth's address
    assert r.whoami["x_forwarded_for"] is None and r.whoami["host"] == f"{node.ip}:30080"
    lb = model(lab).service("ingress-nginx-controller", "ingress-nginx").ports[0].node_port
    r2 = lab.request(f"http://{node.ip}:{lb}/whoami", host=HOST)
    assert r2.ok and r2.whoami["client_ip"] == controller_pod(model(lab)).ip
    assert r2.whoami["x_forwarded_for"] == gw      # the controller saw the masqueraded address


def test_clusterip_from_a_pod_keeps_the_source(lab):
    m = model(lab)
    client = next(p for p in m.pods if p.labels.get("k8s-app") == "kube-dns")
    for url in (f"http://{cluster_ip(lab)}/whoami", "http://url-shortener/whoami",
                "http://url-shortener.default.svc.cluster.local/whoami"):
        r = lab.request(url, from_="pod", source=client.name)
        assert r.ok, r.error
        assert r.client == client.ip and r.whoami["pod_ip"] in app_pods(lab)
    spread = {lab.request(f"http://{cluster_ip(lab)}/whoami", from_="pod").whoami["pod_ip"]
              for _ in range(30)}
    assert spread == set(app_pods(lab))


def test_from_node_to_clusterip(lab):
    r = lab.request(f"http://{cluster_ip(lab)}/whoami", from_="node")
    assert r.ok and r.whoami["pod_ip"] in app_pods(lab)
    # made on the node: the source is an address of the node, never 127.0.0.1
    assert r.client in (model(lab).control_plane.ip,
                        str(ipaddress.ip_network(model(lab).control_plane.pod_cidr).network_address + 1))


def test_no_endpoints_is_refused_by_kube_proxy(lab):
    lab.scale("url-shortener", 0)
    r = lab.request(f"http://{cluster_ip(lab)}/whoami", from_="pod")
    assert r.status is None and not r.ok
    assert r.error == ("connection refused (REJECT by kube-proxy: default/url-shortener:http has no "
                       "endpoints)")
    r2 = lab.request(f"http://{HOST}:8080/whoami")
    assert r2.status == 503


def test_unreachable_addresses(lab):
    assert "no route" in lab.request(f"http://{cluster_ip(lab)}/whoami").error   # from the host
    assert "no route" in lab.request("http://10.244.0.5:8080/whoami").error
    assert "no route" in lab.request("http://192.0.2.7/").error
    assert "refused" in lab.request("http://127.0.0.1:9999/").error
    assert "resolve" in lab.request("http://url-shortener/whoami").error          # no cluster DNS on the host
    node = model(lab).control_plane
    assert "refused" in lab.request(f"http://{node.ip}:31999/").error             # no rule, no process
    assert "kube-apiserver" in lab.request(f"http://{node.ip}:6443/").error
    assert "TLS" in lab.request("https://localhost:8443/").error


def test_app_endpoints(lab):
    pod = next(iter(app_pods(lab).values()))
    ok = lab.request(f"http://{pod.ip}:8080/healthz", from_="node")
    assert (ok.status, ok.body) == (200, "ok")
    usage = lab.request(f"http://{pod.ip}:8080/", from_="node")
    assert usage.status == 200 and json.loads(usage.body)["pod"] == pod.name
    assert lab.request(f"http://{pod.ip}:8080/abc123", from_="node").status == 404
    assert "refused" in lab.request(f"http://{pod.ip}:9090/", from_="node").error


def test_port_forward_answers_from_the_first_ready_pod(lab):
    first = sorted(app_pods(lab).values(), key=lambda p: p.name)[0]
    with lab.port_forward(local_port=18080) as pf:
        assert pf.alive and pf.pod is first and pf.container_port == 8080
        r = lab.request("http://127.0.0.1:18080/whoami")
        assert r.ok and r.predicted and r.pod == first.name and r.client == "127.0.0.1"
        again = lab.request("http://localhost:18080/whoami")
        assert again.pod == first.name                 # one pod for the whole port-forward
        with pytest.raises(PortInUse):
            lab.port_forward(local_port=18080)
    assert not pf.alive
    assert "refused" in lab.request("http://127.0.0.1:18080/whoami").error


def test_port_forward_on_the_mapped_host_port_is_in_use(lab):
    # kind's extraPortMappings publish 0.0.0.0:8080, so kubectl cannot listen on 127.0.0.1:8080
    with pytest.raises(PortInUse) as err:
        lab.port_forward(local_port=8080)
    assert isinstance(err.value, K8sLabError) and "docker-proxy" in str(err.value)


def test_port_forward_default_port_is_free_of_the_mapping(lab):
    with lab.port_forward() as pf:
        assert pf.local_port == 18080
        assert lab.request("http://127.0.0.1:18080/whoami").client == "127.0.0.1"


def test_port_forward_targets(lab):
    pod = sorted(app_pods(lab).values(), key=lambda p: p.name)[-1]
    with lab.port_forward(f"pod/{pod.name}", local_port=18081, remote_port=8080):
        assert lab.request("http://127.0.0.1:18081/whoami").pod == pod.name
    with pytest.raises(NotFound):
        lab.port_forward("svc/url-shortener", local_port=18082, remote_port=81)
    lab.scale("url-shortener", 0)
    with pytest.raises(NotFound, match="no ready pod"):
        lab.port_forward("svc/url-shortener", local_port=18083)


def test_conntrack_shows_the_nat(lab):
    node = model(lab).control_plane
    r = lab.request(f"http://{node.ip}:30080/whoami")
    ct = lab.conntrack()
    row = ct[(ct["dport"] == 30080)].iloc[-1]
    assert row["dst"] == node.ip and row["dnat"] and row["snat"]
    assert f"{row['reply_src']}:{row['reply_sport']}" == r.destination
    assert row["reply_dst"] == r.client


def test_cross_node_requests_on_the_multinode_cluster():
    lab = course_lab(config="kind/cluster-multinode.yaml")
    m = lab.backend.model()
    cp = m.control_plane
    r = lab.request(f"http://{cp.ip}:30080/whoami")
    assert r.ok and r.whoami["node"] != cp.name
    assert r.client == cp.ip                      # masqueraded out of eth0 toward the other node
    ing = lab.request(f"http://{HOST}:8080/whoami")
    assert ing.ok and ing.client == controller_pod(m).ip
    worker = m.node(r.whoami["node"])
    moved = [x for x in lab.backend._counters[worker.name].packets.values() if x]
    assert moved                                   # the pod's node saw the packet too
