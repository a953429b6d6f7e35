"""The kind cluster as kind builds it, deterministic for a seed.

How kind assigns addresses, and what the model does (facts from ../shared/notes/kind-networking-facts.md
and kind's sources; choices marked as such):

- Nodes are containers on the Docker network ``kind`` (172.18.0.0/16 on a typical Linux host; the
  bridge's gateway is 172.18.0.1). Docker hands out addresses from .2 in container-creation order;
  kind starts nodes in parallel, so the real order varies. *Choice*: control-plane(s) first, then
  workers, in config order: ``<name>-control-plane`` 172.18.0.2, ``<name>-worker`` .3, ``-worker2`` .4.
- kube-controller-manager gives each node a /24 of the pod subnet 10.244.0.0/16 in registration
  order; the control-plane registers first (10.244.0.0/24), then the workers (.1.0/24, .2.0/24...).
- kindnet's CNI config is ptp + host-local over the node's pod CIDR. host-local's gateway defaults to
  the first address (.1), which it never hands out, so pods get .2, .3, ... in creation order; it
  continues after the last address it reserved (it does not reuse a freed address at once). On a
  fresh kind node the first pods are local-path-provisioner (.2) and the two CoreDNS pods (.3, .4), as
  in the real kind dump (coredns at 10.244.0.3 and .4). hostNetwork pods (kube-proxy, kindnet, the
  static control-plane pods) use the node IP.
- Services: 10.96.0.0/16 (kind uses a /16). ``kubernetes`` is 10.96.0.1 and kube-dns 10.96.0.10 (both
  fixed); others are drawn, seeded by (seed, namespace, name), from the dynamic band above the first
  256 addresses, like the API server's allocator prefers (KEP-3070). NodePorts: seeded in 30000-32767.
- Pods of a Deployment are named ``<deployment>-<pod-template-hash>-<5 chars>`` from the Kubernetes
  "safe" alphabet; both parts are hashes of the template / seed, so they are stable per seed.
- Scheduling: nodes whose labels match the nodeSelector and whose taints the pod tolerates; among
  them the one with the fewest pods of the same owner (kube-scheduler spreads replicas), then the
  fewest pods, then config order. Every pod becomes Ready at once (the model has no start-up time).
- kind removes the control-plane taint in a single-node cluster and keeps it when there are workers.
"""
from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
from pathlib import Path
from typing import Any, Iterable

from ..errors import ManifestError, NotFound
from .manifests import load_objects
from .objects import (
    Container, ContainerPort, Deployment, Endpoint, EndpointPort, EndpointSlice, Ingress, IngressClass,
    KindConfig, Node, Pod, PodSpec, Service, ServicePort, Toleration, parse_kind_config,
)

DEFAULT_SEED = 0
DOCKER_NETWORK = "172.18.0.0/16"
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"   # k8s.io/apimachinery/pkg/util/rand
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
API_SERVER_PORT = 6443

_KIND_GROUPS = {
    "Deployment": "deployment.apps", "Service": "service", "Pod": "pod", "Ingress": "ingress.networking.k8s.io",
    "IngressClass": "ingressclass.networking.k8s.io", "EndpointSlice": "endpointslice.discovery.k8s.io",
    "Node": "node", "Namespace": "namespace", "ServiceAccount": "serviceaccount", "ConfigMap": "configmap",
    "ClusterRole": "clusterrole.rbac.authorization.k8s.io", "Role": "role.rbac.authorization.k8s.io",
    "ClusterRoleBinding": "clusterrolebinding.rbac.authorization.k8s.io",
    "RoleBinding": "rolebinding.rbac.authorization.k8s.io", "DaemonSet": "daemonset.apps", "Job": "job.batch",
    "ValidatingWebhookConfiguration": "validatingwebhookconfiguration.admissionregistration.k8s.io",
}
_KIND_ALIASES = {
    "deployment": "Deployment", "deployments": "Deployment", "deploy": "Deployment",
    "service": "Service", "services": "Service", "svc": "Service",
    "pod": "Pod", "pods": "Pod", "po": "Pod",
    "ingress": "Ingress", "ingresses": "Ingress", "ing": "Ingress",
    "ingressclass": "IngressClass", "ingressclasses": "IngressClass",
    "endpointslice": "EndpointSlice", "endpointslices": "EndpointSlice",
    "node": "Node", "nodes": "Node", "no": "Node",
}


def _h(*parts: Any) -> bytes:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()


def _safe(digest: bytes, n: int) -> str:
    return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:n])


def canonical_kind(kind: str) -> str:
    k = _KIND_ALIASES.get(kind.lower().split(".")[0])
    if k is None:
        raise NotFound(f"unknown kind {kind!r}; use one of deployment, service, pod, ingress, ingressclass, node")
    return k


class Cluster:
    """Nodes, pods, services, deployments, ingresses; addresses assigned like kind does.

    Build with :meth:`kind` (a whole kind cluster with its system pods and services) or
    :meth:`from_objects` (just the objects you give, e.g. Services and EndpointSlices for a renderer).
    """

    def __init__(self, name: str = "kind", *, seed: int = DEFAULT_SEED, pod_subnet: str = "10.244.0.0/16",
                 service_subnet: str = "10.96.0.0/16", docker_network: str = DOCKER_NETWORK,
                 config: KindConfig | None = None):
        self.name = name
        self.seed = seed
        self.pod_subnet = pod_subnet
        self.service_subnet = service_subnet
        self.docker_network = docker_network
        self.config = config
        self._nodes: dict[str, Node] = {}
        self._pods: dict[tuple[str, str], Pod] = {}
        self._services: dict[tuple[str, str], Service] = {}
        self._deployments: dict[tuple[str, str], Deployment] = {}
        self._ingresses: dict[tuple[str, str], Ingress] = {}
        self._ingress_classes: dict[str, IngressClass] = {}
        self._slices: dict[tuple[str, str], EndpointSlice] = {}      # given explicitly (not derived)
        self._other: dict[tuple[str, str, str], dict] = {}
        self._last_ip: dict[str, int] = {}                             # host-local's last reserved, per node
        self._pod_counter: dict[tuple[str, str], int] = {}
        self._order: list[tuple[str, str]] = []                        # pod creation order

    # ------------------------------------------------------------------ construction
    @classmethod
    def kind(cls, config: str | Path | dict | KindConfig | None = None, *, name: str | None = None,
             seed: int = DEFAULT_SEED, system: bool = True) -> "Cluster":
        """The cluster ``kind create cluster --config CONFIG --name NAME`` makes, with kind's system
        pods and Services (``system=False`` leaves them out)."""
        cfg = _read_config(config)
        cname = name or cfg.name or "kind"
        c = cls(cname, seed=seed, pod_subnet=cfg.pod_subnet, service_subnet=cfg.service_subnet, config=cfg)
        net = ipaddress.ip_network(c.docker_network)
        pod_net = ipaddress.ip_network(cfg.pod_subnet)
        pod_cidrs = list(pod_net.subnets(new_prefix=24))
        ordered = [n for n in cfg.nodes if n.role == "control-plane"] + [n for n in cfg.nodes if n.role == "worker"]
        counts: dict[str, int] = {}
        has_workers = any(n.role == "worker" for n in cfg.nodes)
        for i, kn in enumerate(ordered):
            counts[kn.role] = counts.get(kn.role, 0) + 1
            suffix = "" if counts[kn.role] == 1 else str(counts[kn.role])
            nname = f"{cname}-{kn.role}{suffix}"
            labels = {"kubernetes.io/hostname": nname, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                      "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64"}
            if kn.role == "control-plane":
                labels["node-role.kubernetes.io/control-plane"] = ""
                labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
            labels.update(kn.kubelet_node_labels)
            taints = [dict(CONTROL_PLANE_TAINT)] if kn.role == "control-plane" and has_workers else []
            c._nodes[nname] = Node(name=nname, role=kn.role, ip=str(net.network_address + 2 + i),
                                   pod_cidr=str(pod_cidrs[i]), labels=labels, taints=taints)
        if system:
            c._add_system()
        return c

    @classmethod
    def from_objects(cls, *sources: Any, name: str = "kind", seed: int = DEFAULT_SEED) -> "Cluster":
        """Only the objects given (Services and EndpointSlices as they are, no address allocation):
        the renderers' golden inputs."""
        c = cls(name, seed=seed)
        for src in sources:
            for obj in load_objects(src):
                if isinstance(obj, Service):
                    c._services[obj.key] = obj
                elif isinstance(obj, EndpointSlice):
                    c._slices[obj.key] = obj
                else:
                    c._store(obj, allocate=False)
        return c

    # ------------------------------------------------------------------ system objects
    def _add_system(self) -> None:
        cp = self.control_plane
        kubernetes = Service(name="kubernetes", namespace="default", cluster_ip=self._service_ip(1),
                             ports=[ServicePort(port=443, name="https", target_port=API_SERVER_PORT)],
                             selector=None, labels={"component": "apiserver", "provider": "kubernetes"})
        self._services[kubernetes.key] = kubernetes
        self._slices[("default", "kubernetes")] = EndpointSlice(
            name="kubernetes", namespace="default", service_name="kubernetes",
            endpoints=[Endpoint(addresses=[cp.ip])], ports=[EndpointPort(port=API_SERVER_PORT, name="https")],
            labels={"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by":
                    "endpointslicemirroring-controller.k8s.io"})
        for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            for n in self.nodes:
                if n.role == "control-plane":
                    self._add_pod(Pod(name=f"{comp}-{n.name}", namespace="kube-system",
                                      labels={"component": comp, "tier": "control-plane"},
                                      spec=PodSpec(containers=[Container(name=comp)], host_network=True),
                                      owner=f"Node/{n.name}"), node=n)
        for ds, labels in (("kindnet", {"app": "kindnet", "k8s-app": "kindnet", "tier": "node"}),
                           ("kube-proxy", {"k8s-app": "kube-proxy"})):
            for n in self.nodes:
                self._add_pod(Pod(name=f"{ds}-{_safe(_h(self.seed, ds, n.name), 5)}", namespace="kube-system",
                                  labels=dict(labels), spec=PodSpec(containers=[Container(name=ds)], host_network=True),
                                  owner=f"DaemonSet/{ds}"), node=n)
        cp_tol = [Toleration(key="node-role.kubernetes.io/control-plane", operator="Exists", effect="NoSchedule")]
        lpp = Deployment(name="local-path-provisioner", namespace="local-path-storage", replicas=1,
                         selector={"app": "local-path-provisioner"}, template_labels={"app": "local-path-provisioner"},
                         template_spec=PodSpec(containers=[Container(name="local-path-provisioner",
                                                                     image="docker.io/kindest/local-path-provisioner")],
                                               node_selector={"kubernetes.io/os": "linux"}, tolerations=cp_tol),
                         template={"metadata": {"labels": {"app": "local-path-provisioner"}}})
        dns_ports = [ContainerPort(53, "dns", "UDP"), ContainerPort(53, "dns-tcp", "TCP"),
                     ContainerPort(9153, "metrics", "TCP")]
        coredns = Deployment(name="coredns", namespace="kube-system", replicas=2, selector={"k8s-app": "kube-dns"},
                             template_labels={"k8s-app": "kube-dns"},
                             template_spec=PodSpec(containers=[Container(
                                 name="coredns", image="registry.k8s.io/coredns/coredns", ports=dns_ports,
                                 readiness_probe={"httpGet": {"path": "/ready", "port": 8181}})],
                                 node_selector={"kubernetes.io/os": "linux"}, tolerations=cp_tol),
                             template={"metadata": {"labels": {"k8s-app": "kube-dns"}}})
        for d in (lpp, coredns):
            self._deployments[d.key] = d
            self._reconcile(d)
        kube_dns = Service(name="kube-dns", namespace="kube-system", cluster_ip=self._service_ip(10),
                           ports=[ServicePort(53, "UDP", "dns", 53), ServicePort(53, "TCP", "dns-tcp", 53),
                                  ServicePort(9153, "TCP", "metrics", 9153)],
                           selector={"k8s-app": "kube-dns"},
                           labels={"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"},
                           annotations={"prometheus.io/port": "9153", "prometheus.io/scrape": "true"})
        self._services[kube_dns.key] = kube_dns

    # ------------------------------------------------------------------ allocation
    def _service_ip(self, offset: int) -> str:
        return str(ipaddress.ip_network(self.service_subnet).network_address + offset)

    def _allocate_cluster_ip(self, ns: str, name: str) -> str:
        net = ipaddress.ip_network(self.service_subnet)
        used = {s.cluster_ip for s in self._services.values()}
        size = net.num_addresses - 2
        static = min(max(16, size // 16), 256)
        span = size - static
        start = int.from_bytes(_h(self.seed, "clusterip", ns, name)[:4], "big") % span
        for k in range(span):
            ip = str(net.network_address + 1 + static + (start + k) % span)
            if ip not in used:
                return ip
        raise ManifestError(f"Service {ns}/{name}: spec.clusterIP: the range {net} is full")

    def _used_node_ports(self) -> set[int]:
        out = {p.node_port for s in self._services.values() for p in s.ports if p.node_port}
        out |= {s.health_check_node_port for s in self._services.values() if s.health_check_node_port}
        return out

    def _allocate_node_port(self, *key: Any) -> int:
        used = self._used_node_ports()
        start = int.from_bytes(_h(self.seed, "nodeport", *key)[:4], "big") % 2768
        for k in range(2768):
            port = 30000 + (start + k) % 2768
            if port not in used:
                return port
        raise ManifestError("no free NodePort in 30000-32767")

    def _allocate_pod_ip(self, node: Node) -> str:
        net = ipaddress.ip_network(node.pod_cidr)
        used = {p.ip for p in self._pods.values() if p.node_name == node.name and not p.host_network}
        first, last = 2, net.num_addresses - 2
        start = self._last_ip.get(node.name, first - 1) + 1
        span = last - first + 1
        for k in range(span):
            idx = first + (start - first + k) % span
            ip = str(net.network_address + idx)
            if ip not in used:
                self._last_ip[node.name] = idx
                return ip
        raise ManifestError(f"node {node.name}: no free pod IP left in {node.pod_cidr}")

    def _schedule(self, pod: Pod) -> Node:
        if pod.spec.node_name:
            return self.node(pod.spec.node_name)
        fits = []
        for n in self.nodes:
            if any(n.labels.get(k) != v for k, v in pod.spec.node_selector.items()):
                continue
            if any(t.get("effect") in ("NoSchedule", "NoExecute") and
                   not any(tol.tolerates(t) for tol in pod.spec.tolerations) for t in n.taints):
                continue
            if any(hp.host_port and any(hp.host_port == q.host_port and hp.protocol == q.protocol
                                        for p in self._pods.values() if p.node_name == n.name
                                        for q in p.host_ports()) for hp in pod.host_ports()):
                continue   # a hostPort can be taken only once per node
            fits.append(n)
        if not fits:
            raise ManifestError(f"Pod {pod.namespace}/{pod.name}: spec.nodeSelector/tolerations: expected a node "
                                f"that fits, got none of {[n.name for n in self.nodes]} (it would stay Pending)")
        order = {n.name: i for i, n in enumerate(self.nodes)}

        def load(n: Node) -> tuple[int, int, int]:
            mine = sum(1 for p in self._pods.values() if p.node_name == n.name and p.owner == pod.owner)
            allp = sum(1 for p in self._pods.values() if p.node_name == n.name and not p.host_network)
            return (mine, allp, order[n.name])
        return min(fits, key=load)

    def _add_pod(self, pod: Pod, node: Node | None = None) -> Pod:
        n = node or self._schedule(pod)
        pod.node_name = n.name
        pod.host_ip = n.ip
        pod.ip = n.ip if pod.host_network else self._allocate_pod_ip(n)
        pod.container_id = hashlib.sha256(f"{self.seed}/{pod.namespace}/{pod.name}/sandbox".encode()).hexdigest()
        pod.phase, pod.ready = "Running", True
        self._pods[pod.key] = pod
        self._order.append(pod.key)
        return pod

    def _template_hash(self, d: Deployment) -> str:
        text = json.dumps(d.template, sort_keys=True, default=str)
        return _safe(_h("template", text), 10)

    def _reconcile(self, d: Deployment) -> None:
        owner = f"Deployment/{d.name}"
        mine = [k for k in self._order if k in self._pods and self._pods[k].owner == owner
                and k[0] == d.namespace]
        th = self._template_hash(d)
        # pods of an older template are replaced (a rolling update, done at once)
        for k in [k for k in mine if not k[1].startswith(f"{d.name}-{th}-")]:
            del self._pods[k]
        mine = [k for k in mine if k in self._pods]
        while len(mine) > d.replicas:          # scale down: the newest pods go first
            del self._pods[mine.pop()]
        while len(mine) < d.replicas:
            n = self._pod_counter.get(d.key, 0)
            self._pod_counter[d.key] = n + 1
            name = f"{d.name}-{th}-{_safe(_h(self.seed, d.namespace, d.name, th, n), 5)}"
            pod = Pod(name=name, namespace=d.namespace, labels={**d.template_labels, "pod-template-hash": th},
                      spec=copy.deepcopy(d.template_spec), owner=owner)
            self._add_pod(pod)
            mine.append(pod.key)
        self._order = [k for k in self._order if k in self._pods]

    # ------------------------------------------------------------------ verbs
    def apply(self, objects: Any) -> list[str]:
        """Create or update objects (path, YAML text, dicts or parsed objects); returns what kubectl
        prints, e.g. ``["deployment.apps/url-shortener", "service/url-shortener"]``."""
        out = []
        for obj in load_objects(objects):
            self._store(obj, allocate=True)
            kind = obj.get("kind") if isinstance(obj, dict) else obj.kind
            name = (obj.get("metadata") or {}).get("name") if isinstance(obj, dict) else obj.name
            out.append(f"{_KIND_GROUPS.get(kind, kind.lower())}/{name}")
        return out

    def _store(self, obj: Any, allocate: bool) -> None:
        if isinstance(obj, Service):
            old = self._services.get(obj.key)
            if allocate:
                self._allocate_service(obj, old)
            self._services[obj.key] = obj
        elif isinstance(obj, Deployment):
            self._deployments[obj.key] = obj
            if allocate and self._nodes:
                self._reconcile(obj)
        elif isinstance(obj, Pod):
            if obj.key in self._pods:
                del self._pods[obj.key]
            if allocate and self._nodes:
                self._add_pod(obj)
            else:
                self._pods[obj.key] = obj
        elif isinstance(obj, Ingress):
            self._ingresses[obj.key] = obj
        elif isinstance(obj, IngressClass):
            self._ingress_classes[obj.name] = obj
        elif isinstance(obj, EndpointSlice):
            self._slices[obj.key] = obj
        elif isinstance(obj, Node):
            self._nodes[obj.name] = obj
        elif isinstance(obj, KindConfig):
            raise ManifestError("a kind Cluster config cannot be applied to a cluster; use Cluster.kind(config)")
        elif isinstance(obj, dict):
            meta = obj.get("metadata") or {}
            self._other[(obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))] = obj

    def _allocate_service(self, svc: Service, old: Service | None) -> None:
        if svc.type == "ExternalName":
            return
        if svc.cluster_ip is None:
            svc.cluster_ip = old.cluster_ip if old and old.cluster_ip else self._allocate_cluster_ip(svc.namespace, svc.name)
        elif not svc.headless:
            clash = [s for s in self._services.values() if s.cluster_ip == svc.cluster_ip and s.key != svc.key]
            if clash:
                raise ManifestError(f"Service {svc.namespace}/{svc.name}: spec.clusterIP: expected a free address, "
                                    f"got {svc.cluster_ip!r} (already used by {clash[0].namespace}/{clash[0].name})")
        if svc.type in ("NodePort", "LoadBalancer"):
            for p in svc.ports:
                if not p.node_port:
                    prev = old.port_named(p.name) if old else None
                    p.node_port = prev.node_port if prev and prev.node_port else \
                        self._allocate_node_port(svc.namespace, svc.name, p.name, p.port, p.protocol)
            if svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local" and not svc.health_check_node_port:
                svc.health_check_node_port = self._allocate_node_port(svc.namespace, svc.name, "healthcheck")

    def delete(self, kind: str, name: str, namespace: str = "default") -> None:
        k = canonical_kind(kind)
        key = (namespace, name)
        if k == "Deployment":
            d = self._deployments.pop(key, None)
            if d is None:
                raise NotFound(f"deployment {namespace}/{name} not found")
            for pk in [pk for pk, p in self._pods.items() if p.owner == f"Deployment/{name}" and pk[0] == namespace]:
                del self._pods[pk]
        elif k == "Service":
            if self._services.pop(key, None) is None:
                raise NotFound(f"service {namespace}/{name} not found")
            for sk in [sk for sk, s in self._slices.items() if s.namespace == namespace and s.service_name == name]:
                del self._slices[sk]
        elif k == "Pod":
            p = self._pods.pop(key, None)
            if p is None:
                raise NotFound(f"pod {namespace}/{name} not found")
            d = self._deployments.get((namespace, (p.owner or "/").split("/", 1)[1]))
            if d is not None and p.owner == f"Deployment/{d.name}":
                self._reconcile(d)       # the ReplicaSet replaces it
        elif k == "Ingress":
            if self._ingresses.pop(key, None) is None:
                raise NotFound(f"ingress {namespace}/{name} not found")
        elif k == "IngressClass":
            if self._ingress_classes.pop(name, None) is None:
                raise NotFound(f"ingressclass {name} not found")
        elif k == "EndpointSlice":
            if self._slices.pop(key, None) is None:
                raise NotFound(f"endpointslice {namespace}/{name} not found")
        else:
            raise NotFound(f"cannot delete a {kind}")
        self._order = [pk for pk in self._order if pk in self._pods]

    def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        d = self._deployments.get((namespace, name))
        if d is None:
            raise NotFound(f"deployment {namespace}/{name} not found; deployments: "
                           f"{', '.join(f'{k[0]}/{k[1]}' for k in self._deployments)}")
        if not isinstance(replicas, int) or replicas < 0:
            raise ManifestError(f"Deployment {namespace}/{name}: spec.replicas: expected an integer >= 0, got {replicas!r}")
        d.replicas = replicas
        self._reconcile(d)

    # ------------------------------------------------------------------ views
    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    @property
    def control_plane(self) -> Node:
        for n in self._nodes.values():
            if n.role == "control-plane":
                return n
        raise NotFound("the cluster has no control-plane node")

    @property
    def pods(self) -> list[Pod]:
        return [self._pods[k] for k in self._order if k in self._pods] + \
            [p for k, p in self._pods.items() if k not in self._order]

    @property
    def services(self) -> list[Service]:
        return list(self._services.values())

    @property
    def deployments(self) -> list[Deployment]:
        return list(self._deployments.values())

    @property
    def ingresses(self) -> list[Ingress]:
        return list(self._ingresses.values())

    @property
    def ingress_classes(self) -> list[IngressClass]:
        return list(self._ingress_classes.values())

    @property
    def gateway(self) -> str:
        """The Docker network's gateway (the host's address on the ``kind`` bridge)."""
        return str(ipaddress.ip_network(self.docker_network).network_address + 1)

    def node(self, name: str | None = None) -> Node:
        if name is None:
            return self.control_plane
        if name in self._nodes:
            return self._nodes[name]
        for n in self._nodes.values():     # "control-plane", "worker" as shorthands
            if n.name == f"{self.name}-{name}":
                return n
        raise NotFound(f"node {name!r} not found; nodes: {', '.join(self._nodes) or 'none'}")

    def pod(self, name: str, namespace: str = "default") -> Pod:
        try:
            return self._pods[(namespace, name)]
        except KeyError:
            raise NotFound(f"pod {namespace}/{name} not found") from None

    def pod_by_ip(self, ip: str) -> Pod | None:
        """The pod with this address (pod network pods first; hostNetwork pods share the node IP)."""
        hits = [p for p in self.pods if p.ip == ip]
        hits.sort(key=lambda p: p.host_network)
        return hits[0] if hits else None

    def service(self, name: str, namespace: str = "default") -> Service:
        try:
            return self._services[(namespace, name)]
        except KeyError:
            raise NotFound(f"service {namespace}/{name} not found; services: "
                           f"{', '.join(f'{k[0]}/{k[1]}' for k in self._services)}") from None

    def pods_on(self, node: str | Node) -> list[Pod]:
        n = node.name if isinstance(node, Node) else self.node(node).name
        return [p for p in self.pods if p.node_name == n]

    def selected_pods(self, svc: Service) -> list[Pod]:
        if not svc.selector:
            return []
        return [p for p in self.pods if p.namespace == svc.namespace and p.phase == "Running"
                and all(p.labels.get(k) == v for k, v in svc.selector.items())]

    def endpoint_slices(self) -> list[EndpointSlice]:
        """The EndpointSlices: the ones given explicitly, plus, for each Service with a selector, what
        the EndpointSlice controller derives from its ready pods (one slice per distinct set of
        resolved ports; a named targetPort is looked up in each pod's containers)."""
        out = list(self._slices.values())
        explicit = {(s.namespace, s.service_name) for s in out}
        for svc in self._services.values():
            if svc.selector is None or svc.key in explicit or svc.type == "ExternalName":
                continue
            groups: dict[tuple, list[Pod]] = {}
            for pod in self.selected_pods(svc):
                ports = []
                for sp in svc.ports:
                    num = pod.resolve_port(sp.effective_target_port, sp.protocol)
                    if num is not None:
                        ports.append((sp.name, num, sp.protocol))
                groups.setdefault(tuple(ports), []).append(pod)
            if not groups:
                groups[tuple()] = []
            for i, (ports, pods) in enumerate(sorted(groups.items(), key=lambda kv: kv[0])):
                name = f"{svc.name}-{_safe(_h(self.seed, svc.namespace, svc.name, 'slice', i), 5)}"
                out.append(EndpointSlice(
                    name=name, namespace=svc.namespace, service_name=svc.name,
                    endpoints=[Endpoint(addresses=[p.ip], node_name=p.node_name, ready=p.ready, serving=p.ready,
                                        target_ref=p.name) for p in pods if p.ip],
                    ports=[EndpointPort(port=num, name=n, protocol=proto) for n, num, proto in ports],
                    labels={"kubernetes.io/service-name": svc.name,
                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}))
        return out

    def endpoints_of(self, name: str, namespace: str = "default", port: str | int | None = None) -> list[str]:
        """Ready ``ip:port`` endpoints of a Service (optionally one port, by name or number)."""
        svc = self.service(name, namespace)
        sp = svc.ports[0] if port is None else next(
            (p for p in svc.ports if p.name == port or p.port == port), None)
        if sp is None:
            raise NotFound(f"service {namespace}/{name} has no port {port!r}")
        out = []
        for sl in self.endpoint_slices():
            if sl.namespace != namespace or sl.service_name != name:
                continue
            for ep in sl.ports:
                if ep.name == sp.name and ep.protocol == sp.protocol:
                    out += [f"{e.addresses[0]}:{ep.port}" for e in sl.endpoints if e.ready]
        return out

    def host_port_pods(self, node: str | Node) -> list[Pod]:
        return [p for p in self.pods_on(node) if p.host_ports() and not p.host_network]

    def bridge_name(self) -> str:
        """Docker's name for the ``kind`` network's bridge: ``br-`` + 12 hex of the network ID."""
        return "br-" + hashlib.sha256(f"{self.seed}/{self.name}/docker-network-kind".encode()).hexdigest()[:12]

    # ------------------------------------------------------------------ API-shaped dicts
    def to_dicts(self, kind: str) -> list[dict]:
        """Objects of one kind as the API server returns them (for ``Backend.objects``)."""
        from .serialize import to_dict
        k = canonical_kind(kind)
        source: Iterable[Any] = {
            "Node": self.nodes, "Pod": self.pods, "Service": self.services, "Deployment": self.deployments,
            "Ingress": self.ingresses, "IngressClass": self.ingress_classes, "EndpointSlice": self.endpoint_slices(),
        }[k]
        return [to_dict(o, self) for o in source]

    def copy(self) -> "Cluster":
        return copy.deepcopy(self)


def _read_config(config: Any) -> KindConfig:
    if config is None:
        return KindConfig()
    if isinstance(config, KindConfig):
        return config
    if isinstance(config, dict):
        return parse_kind_config(config)
    objs = load_objects(config)
    cfgs = [o for o in objs if isinstance(o, KindConfig)]
    if not cfgs:
        raise ManifestError(f"{config}: no kind Cluster config (kind: Cluster, apiVersion: kind.x-k8s.io/v1alpha4)")
    return cfgs[0]
