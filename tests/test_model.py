"""The cluster model: kind's addresses, determinism, manifest errors, endpoints, ingress routing."""
from __future__ import annotations

import ipaddress

import pytest

from conftest import ROOT
from k8slab.errors import ManifestError, NotFound
from k8slab.model import (Cluster, ProxierSettings, container_id, ingress_routes, load_objects, match_route, nginx_conf,
                          render_kube_proxy, render_node_dump, render_portmap)
from k8slab.netfilter import names

KIND = ROOT / "kind"


def course(seed: int = 0, config: str = "cluster.yaml") -> Cluster:
    c = Cluster.kind(KIND / config, seed=seed)
    for m in ("app.yaml", "app-nodeport.yaml", "ingress-nginx.yaml", "ingress.yaml"):
        c.apply(KIND / "manifests" / m)
    return c


def test_kind_addresses():
    c = Cluster.kind(KIND / "cluster-multinode.yaml")
    assert [(n.name, n.ip, n.pod_cidr) for n in c.nodes] == [
        ("kind-control-plane", "172.18.0.2", "10.244.0.0/24"),
        ("kind-worker", "172.18.0.3", "10.244.1.0/24"),
        ("kind-worker2", "172.18.0.4", "10.244.2.0/24")]
    assert c.gateway == "172.18.0.1"
    assert c.service("kubernetes").cluster_ip == "10.96.0.1"
    assert c.service("kube-dns", "kube-system").cluster_ip == "10.96.0.10"
    assert c.node("kind-control-plane").labels["ingress-ready"] == "true"
    assert c.node("kind-control-plane").taints and not c.node("kind-worker").taints
    single = Cluster.kind(KIND / "cluster.yaml")
    assert not single.control_plane.taints        # kind untaints a lone control-plane
    # the first pods on a fresh node: local-path-provisioner .2, CoreDNS .3 and .4 (as in real dump 07)
    pod_ips = [p.ip for p in single.pods if not p.host_network]
    assert pod_ips == ["10.244.0.2", "10.244.0.3", "10.244.0.4"]
    assert all(p.ip == "172.18.0.2" for p in single.pods if p.host_network)
    kp = [p for p in single.pods if p.name.startswith("kube-proxy-")]
    assert len(kp) == 1 and kp[0].host_network
    # the kubernetes Service points at the API server on the control-plane
    assert single.endpoints_of("kubernetes") == ["172.18.0.2:6443"]


def test_app_addresses_and_names():
    c = course()
    app = [p for p in c.pods if p.labels.get("app") == "url-shortener"]
    assert len(app) == 2
    for p in app:
        assert ipaddress.ip_address(p.ip) in ipaddress.ip_network("10.244.0.0/24")
        dep, template_hash, suffix = p.name.rsplit("-", 2)
        assert dep == "url-shortener" and len(template_hash) == 10 and len(suffix) == 5
        assert len(p.container_id) == 64 and int(p.container_id, 16) >= 0
    svc = c.service("url-shortener")
    net = ipaddress.ip_network("10.96.0.0/16")
    assert ipaddress.ip_address(svc.cluster_ip) in net
    assert int(ipaddress.ip_address(svc.cluster_ip)) - int(net.network_address) > 256   # dynamic band
    assert c.service("url-shortener-nodeport").ports[0].node_port == 30080
    lb = c.service("ingress-nginx-controller", "ingress-nginx")
    assert all(30000 <= p.node_port <= 32767 for p in lb.ports)
    assert c.pod_by_ip(app[0].ip) is app[0]


def test_deterministic_per_seed():
    a, b, other = course(0), course(0), course(7)
    assert render_node_dump(a) == render_node_dump(b)
    assert [p.name for p in a.pods] == [p.name for p in b.pods]
    assert a.service("url-shortener").cluster_ip == b.service("url-shortener").cluster_ip
    assert [p.name for p in a.pods if p.namespace == "default"] != \
        [p.name for p in other.pods if p.namespace == "default"]
    assert a.service("url-shortener").cluster_ip != other.service("url-shortener").cluster_ip


@pytest.mark.parametrize("doc,message", [
    ("""apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: eighty}]}""",
     "Service default/web: spec.ports[0].port: expected an integer 1-65535, got 'eighty'"),
    ("""apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80, protocol: HTTP}]}""",
     "Service shop/web: spec.ports[0].protocol: expected one of TCP, UDP, SCTP, got 'HTTP'"),
    ("""apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: Ingress, ports: [{port: 80}]}""",
     "Service default/web: spec.type: expected one of ClusterIP, NodePort, LoadBalancer, ExternalName, got 'Ingress'"),
    ("""apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: x}]}""",
     "Deployment default/api: spec.template.metadata.labels: expected to contain the selector label app=api"),
    ("""apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: ing}
spec:
  rules:
  - http:
      paths:
      - {path: /, pathType: Regex, backend: {service: {name: s, port: {number: 80}}}}""",
     "Ingress default/ing: spec.rules[0].http.paths[0].pathType: expected Exact, Prefix or ImplementationSpecific"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "object x: kind: expected a string"),
])
def test_manifest_errors_name_object_and_field(doc, message):
    with pytest.raises(ManifestError) as exc:
        load_objects(doc)
    assert str(exc.value).startswith(message)


def test_bad_yaml_and_missing_file():
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_objects("kind: Service\n  bad: [indent\n")
    with pytest.raises(ManifestError, match="no such file"):
        load_objects("no/such/file.yaml")


SVC = """
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec:
  selector: {{app: url-shortener}}
  ports: [{{name: http, port: 80, targetPort: {target}}}]
"""


@pytest.mark.parametrize("target,expected_port", [("http", 8080), ("8080", 8080), ("9090", 9090)])
def test_named_and_numeric_target_port(target, expected_port):
    c = course()
    c.apply(SVC.format(target=target))
    eps = c.endpoints_of("web")
    assert len(eps) == 2 and all(e.endswith(f":{expected_port}") for e in eps)
    assert {e.split(":")[0] for e in eps} == {p.ip for p in c.pods if p.labels.get("app") == "url-shortener"}


def test_unresolvable_named_port_gives_no_endpoints():
    c = course()
    c.apply(SVC.format(target="nope"))
    assert c.endpoints_of("web") == []


def test_scaling_changes_endpoints_and_rules():
    c = course()
    before = c.endpoints_of("url-shortener")
    c.scale("url-shortener", 3)
    after = c.endpoints_of("url-shortener")
    assert len(before) == 2 and len(after) == 3 and set(before) < set(after)
    s = ProxierSettings.for_kind_node(c, c.control_plane)
    rules = render_kube_proxy(c.services, c.endpoint_slices(), s)
    assert "default/url-shortener:http -> " in rules
    assert rules.count('-A KUBE-SVC-') and "--probability 0.3333333333" in rules
    c.scale("url-shortener", 1)
    assert c.endpoints_of("url-shortener") == [before[0]]
    # a freed address is not handed out again at once (host-local continues after the last one)
    c.scale("url-shortener", 2)
    assert c.endpoints_of("url-shortener")[1] not in before
    with pytest.raises(NotFound):
        c.scale("nope", 2)


def test_service_without_endpoints_rejects():
    c = course()
    c.apply(SVC.format(target="http").replace("app: url-shortener", "app: nobody"))
    assert c.endpoints_of("web") == []
    rules = render_kube_proxy(c.services, c.endpoint_slices(), ProxierSettings.for_kind_node(c, "kind-control-plane"))
    svc = c.service("web")
    assert f'-A KUBE-SERVICES -m comment --comment "default/web:http has no endpoints" -m tcp -p tcp ' \
           f'-d {svc.cluster_ip} --dport 80 -j REJECT' in rules
    assert names.service_chain("KUBE-SVC-", "default/web:http", "tcp") not in rules


def test_delete_and_multinode_spread():
    c = course(config="cluster-multinode.yaml")
    nodes = {p.node_name for p in c.pods if p.labels.get("app") == "url-shortener"}
    assert nodes == {"kind-worker", "kind-worker2"}           # tainted control-plane skipped, spread
    c.delete("service", "url-shortener")
    with pytest.raises(NotFound):
        c.service("url-shortener")
    c.delete("deployment", "url-shortener")
    assert not [p for p in c.pods if p.labels.get("app") == "url-shortener"]


def test_hostport_portmap_rules():
    c = course()
    ctrl = [p for p in c.pods if p.namespace == "ingress-nginx"][0]
    cid = container_id(ctrl)
    chain = names.portmap_chain("kindnet", cid)
    text = render_portmap(c, c.control_plane)
    assert f'-A CNI-HOSTPORT-DNAT -m comment --comment "dnat name: \\"kindnet\\" id: \\"{cid}\\"" ' \
           f'-m multiport -p tcp --destination-ports 80,443 -j {chain}' in text
    assert f"-A {chain} -p tcp --dport 80 -j DNAT --to-destination {ctrl.ip}:80" in text
    # hairpin: portmap's masqCIDR is containerNet.String(), the pod's address with host-local's
    # range mask (the node's /24), which the kernel keeps as the network: every pod of the node
    assert f"-A {chain} -p tcp --dport 80 -s {ctrl.ip}/24 -j CNI-HOSTPORT-SETMARK" in text
    assert f"-A {chain} -s 10.244.0.0/24 -p tcp -m tcp --dport 80 -j CNI-HOSTPORT-SETMARK" in \
        render_portmap(c, c.control_plane, form="save")
    assert len(chain) == 28
    dump = render_node_dump(c)
    pre = [ln for ln in dump.splitlines() if ln.startswith("-A PREROUTING")]
    assert pre[0].endswith("-j KUBE-SERVICES") and pre[-1].endswith("-j CNI-HOSTPORT-DNAT")
    assert "-j KIND-MASQ-AGENT" in dump and "DOCKER_OUTPUT" in dump and ":KUBE-IPTABLES-HINT" in dump


def test_to_dicts_are_api_shaped():
    c = course()
    svc = [d for d in c.to_dicts("svc") if d["metadata"]["name"] == "url-shortener"][0]
    assert svc["spec"]["clusterIP"] == c.service("url-shortener").cluster_ip
    pods = c.to_dicts("pods")
    assert all(p["status"]["podIP"] for p in pods)
    assert load_objects(pods)[0].name == pods[0]["metadata"]["name"]


ING = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: many, namespace: default}
spec:
  ingressClassName: nginx
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: url-shortener, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
      - {path: /api/v2, pathType: Prefix, backend: {service: {name: v2, port: {number: 80}}}}
      - {path: /api, pathType: Exact, backend: {service: {name: exact, port: {number: 80}}}}
  - host: "*.example.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: wild, port: {number: 80}}}}
  - http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: any, port: {number: 80}}}}
"""


@pytest.mark.parametrize("host,path,service", [
    ("shop.example.com", "/", "url-shortener"),
    ("shop.example.com", "/api", "exact"),          # Exact beats Prefix for the same path
    ("shop.example.com", "/api/x", "api"),
    ("shop.example.com", "/api/v2/y", "v2"),        # longest prefix
    ("shop.example.com", "/apix", "url-shortener"), # Prefix matches whole path elements
    ("blog.example.com", "/api", "wild"),           # exact host missing: the wildcard
    ("a.b.example.com", "/", "any"),                # a wildcard matches one label only
    ("other.test:8080", "/x", "any"),
])
def test_ingress_precedence(host, path, service):
    c = course()
    c.apply(ING)
    route = match_route(ingress_routes(c), host, path)
    assert route is not None and route.service == service


def test_ingress_routes_upstreams():
    c = course()
    routes = ingress_routes(c)
    r = match_route(routes, "shortener.localtest.me", "/whoami")
    assert r.service == "url-shortener" and set(r.upstreams) == set(c.endpoints_of("url-shortener"))
    assert match_route(routes, "unknown.host", "/") is None          # the default server: 404
    c.apply(ING.replace("namespace: default}", "namespace: default, annotations: "
                        "{nginx.ingress.kubernetes.io/service-upstream: 'true'}}"))
    r = match_route(ingress_routes(c), "shop.example.com", "/")
    assert r.service_upstream and r.upstreams == (f"{c.service('url-shortener').cluster_ip}:80",)


DEFAULT_BACKEND = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: with-default, namespace: default}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: url-shortener, port: {number: 80}}}
  rules:
  - host: a.example
    http:
      paths:
      - {path: /x, pathType: Exact, backend: {service: {name: url-shortener, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: catch-all, namespace: default}
spec:
  ingressClassName: nginx
  defaultBackend: {service: {name: url-shortener-nodeport, port: {number: 80}}}
"""


def test_ingress_default_backend_serves_its_own_hosts_and_only_a_ruleless_one_the_catch_all():
    # ingress-nginx: an Ingress's defaultBackend answers the unmatched paths of its own hosts; the
    # catch-all server "_" only takes the defaultBackend of an Ingress without rules.
    c = course()
    c.apply(load_objects("kind/manifests/app-nodeport.yaml"))
    c.apply(load_objects(DEFAULT_BACKEND))
    routes = ingress_routes(c)
    assert match_route(routes, "a.example", "/x").service == "url-shortener"
    unmatched = match_route(routes, "a.example", "/x/y")
    assert unmatched.default and unmatched.service == "url-shortener"
    other = match_route(routes, "unknown.host", "/")
    assert other.default and other.service == "url-shortener-nodeport"
    conf = nginx_conf(c)
    a_server = conf[conf.index("server_name a.example;"):]
    a_server = a_server[:a_server.index("\n    }")]
    assert "location / {" in a_server and "proxy_pass http://default-url-shortener-80;" in a_server
