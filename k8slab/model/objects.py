"""Kubernetes objects as typed dataclasses, read from API-shaped dicts with field-level validation.

Only the fields the course's data plane depends on are kept; the original dict stays in ``raw``.
Every parse error is a :class:`~k8slab.errors.ManifestError` of the form
``Service default/web: spec.ports[0].port: expected an integer 1-65535, got 'eighty'``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ManifestError

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


# --------------------------------------------------------------------------------------------
# validation helpers

class _Ctx:
    """Names the object in error messages (``Kind ns/name``)."""

    def __init__(self, kind: str, name: str, namespace: str | None):
        self.what = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"

    def fail(self, path: str, expected: str, got: Any) -> ManifestError:
        return ManifestError(f"{self.what}: {path}: expected {expected}, got {got!r}")

    def int_(self, value: Any, path: str, lo: int = 1, hi: int = 65535, default: int | None = None) -> int:
        if value is None and default is not None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(path, f"an integer {lo}-{hi}", value)
        return value

    def str_(self, value: Any, path: str, default: str | None = None) -> str:
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self.fail(path, "a string", value)
        return value

    def ip(self, value: Any, path: str) -> str:
        try:
            return str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            raise self.fail(path, "an IP address", value) from None

    def cidr(self, value: Any, path: str) -> str:
        try:
            return str(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise self.fail(path, "a CIDR such as 203.0.113.0/24", value) from None

    def list_(self, value: Any, path: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "a list", value)
        return value

    def map_(self, value: Any, path: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "a mapping", value)
        return value

    def labels(self, value: Any, path: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.map_(value, path).items()}

    def protocol(self, value: Any, path: str) -> str:
        if value is None:
            return "TCP"
        if value not in PROTOCOLS:
            raise self.fail(path, "one of TCP, UDP, SCTP", value)
        return value

    def int_or_name(self, value: Any, path: str) -> int | str:
        """An IntOrString port: 1-65535 or an IANA_SVC_NAME (a digit-only string is an error)."""
        if isinstance(value, str):
            if value.isdigit():
                return self.int_(int(value), path)
            if not value or len(value) > 15 or not value.replace("-", "").isalnum() \
                    or value.startswith("-") or value.endswith("-") or value.lower() != value:
                raise self.fail(path, "an integer 1-65535 or a port name (lowercase, <=15 chars)", value)
            return value
        return self.int_(value, path)


def _meta(d: dict, kind: str, namespaced: bool = True) -> tuple[_Ctx, str, str, dict]:
    if not isinstance(d, dict):
        raise ManifestError(f"{kind}: expected a mapping, got {type(d).__name__}")
    meta = d.get("metadata") or {}
    if not isinstance(meta, dict):
        raise ManifestError(f"{kind}: metadata: expected a mapping, got {meta!r}")
    name = meta.get("name")
    ns = (meta.get("namespace") or "default") if namespaced else ""
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{kind} {ns + '/' if ns else ''}<unnamed>: metadata.name: "
                            f"expected a non-empty string, got {name!r}")
    return _Ctx(kind, name, ns if namespaced else None), name, ns, meta


# --------------------------------------------------------------------------------------------
# Service

@dataclass
class ServicePort:
    port: int
    protocol: str = "TCP"
    name: str = ""
    target_port: int | str | None = None   # None: not set (kube-proxy then uses the slice's port)
    node_port: int = 0
    app_protocol: str | None = None

    @property
    def effective_target_port(self) -> int | str:
        """What the API server defaults an unset targetPort to: the port itself."""
        return self.port if self.target_port in (None, 0, "") else self.target_port


@dataclass
class Service:
    name: str
    namespace: str = "default"
    type: str = "ClusterIP"
    cluster_ip: str | None = None          # "None" for headless
    ports: list[ServicePort] = field(default_factory=list)
    selector: dict[str, str] | None = None  # None: no selector (slices managed by someone else)
    external_ips: list[str] = field(default_factory=list)
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity: str = "None"
    session_affinity_timeout: int = 10800
    load_balancer_source_ranges: list[str] = field(default_factory=list)
    health_check_node_port: int = 0
    load_balancer_ips: list[str] = field(default_factory=list)   # status.loadBalancer.ingress (VIP mode)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Service"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"

    @property
    def externally_accessible_types(self) -> bool:
        return self.type in ("NodePort", "LoadBalancer")

    def port_named(self, name: str) -> ServicePort | None:
        for p in self.ports:
            if p.name == name:
                return p
        return None


def parse_service(d: dict) -> Service:
    c, name, ns, meta = _meta(d, "Service")
    spec = c.map_(d.get("spec"), "spec")
    status = c.map_(d.get("status"), "status")
    stype = spec.get("type") or "ClusterIP"
    if stype not in SERVICE_TYPES:
        raise c.fail("spec.type", "one of " + ", ".join(SERVICE_TYPES), stype)
    ports: list[ServicePort] = []
    raw_ports = c.list_(spec.get("ports"), "spec.ports")
    for i, p in enumerate(raw_ports):
        path = f"spec.ports[{i}]"
        p = c.map_(p, path)
        tp = p.get("targetPort")
        ports.append(ServicePort(
            port=c.int_(p.get("port"), f"{path}.port"),
            protocol=c.protocol(p.get("protocol"), f"{path}.protocol"),
            name=c.str_(p.get("name"), f"{path}.name", ""),
            target_port=None if tp in (None, 0, "") else c.int_or_name(tp, f"{path}.targetPort"),
            node_port=c.int_(p.get("nodePort"), f"{path}.nodePort", 0, 65535, default=0),
            app_protocol=p.get("appProtocol"),
        ))
    if len(ports) > 1:
        for i, p in enumerate(ports):
            if not p.name:
                raise c.fail(f"spec.ports[{i}].name", "a name (required when a Service has several ports)", "")
    seen = set()
    for i, p in enumerate(ports):
        if (p.port, p.protocol) in seen:
            raise c.fail(f"spec.ports[{i}]", "a unique port/protocol pair", f"{p.port}/{p.protocol}")
        seen.add((p.port, p.protocol))
    cip = spec.get("clusterIP")
    if cip not in (None, "", "None"):
        cip = c.ip(cip, "spec.clusterIP")
    etp = spec.get("externalTrafficPolicy") or "Cluster"
    if etp not in ("Cluster", "Local"):
        raise c.fail("spec.externalTrafficPolicy", "Cluster or Local", etp)
    itp = spec.get("internalTrafficPolicy") or "Cluster"
    if itp not in ("Cluster", "Local"):
        raise c.fail("spec.internalTrafficPolicy", "Cluster or Local", itp)
    aff = spec.get("sessionAffinity") or "None"
    if aff not in ("None", "ClientIP"):
        raise c.fail("spec.sessionAffinity", "None or ClientIP", aff)
    timeout = 10800
    cfg = c.map_(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
    if cfg.get("clientIP") and c.map_(cfg["clientIP"], "spec.sessionAffinityConfig.clientIP").get("timeoutSeconds") is not None:
        timeout = c.int_(cfg["clientIP"]["timeoutSeconds"], "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                         1, 86400)
    lb_ips = []
    for i, ing in enumerate(c.list_(c.map_(status.get("loadBalancer"), "status.loadBalancer").get("ingress"),
                                    "status.loadBalancer.ingress")):
        ing = c.map_(ing, f"status.loadBalancer.ingress[{i}]")
        if ing.get("ip") and ing.get("ipMode", "VIP") != "Proxy":
            lb_ips.append(c.ip(ing["ip"], f"status.loadBalancer.ingress[{i}].ip"))
    selector = spec.get("selector")
    return Service(
        name=name, namespace=ns, type=stype, cluster_ip=cip or None, ports=ports,
        selector=c.labels(selector, "spec.selector") if selector is not None else None,
        external_ips=[c.ip(x, f"spec.externalIPs[{i}]") for i, x in
                      enumerate(c.list_(spec.get("externalIPs"), "spec.externalIPs"))],
        external_traffic_policy=etp, internal_traffic_policy=itp, session_affinity=aff,
        session_affinity_timeout=timeout,
        load_balancer_source_ranges=[c.cidr(x, f"spec.loadBalancerSourceRanges[{i}]") for i, x in enumerate(
            c.list_(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges"))],
        health_check_node_port=c.int_(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort", 0, 65535,
                                      default=0),
        load_balancer_ips=lb_ips,
        labels=c.labels(meta.get("labels"), "metadata.labels"),
        annotations=c.labels(meta.get("annotations"), "metadata.annotations"),
        raw=d,
    )


# --------------------------------------------------------------------------------------------
# EndpointSlice

@dataclass
class Endpoint:
    addresses: list[str]
    node_name: str | None = None
    ready: bool = True          # nil conditions read as ready/serving, not terminating (kube-proxy)
    serving: bool = True
    terminating: bool = False
    target_ref: str | None = None   # pod name
    zone: str | None = None


@dataclass
class EndpointPort:
    port: int
    name: str = ""
    protocol: str = "TCP"


@dataclass
class EndpointSlice:
    name: str
    namespace: str
    service_name: str
    endpoints: list[Endpoint] = field(default_factory=list)
    ports: list[EndpointPort] = field(default_factory=list)
    address_type: str = "IPv4"
    labels: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "EndpointSlice"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def parse_endpoint_slice(d: dict) -> EndpointSlice:
    c, name, ns, meta = _meta(d, "EndpointSlice")
    labels = c.labels(meta.get("labels"), "metadata.labels")
    svc = labels.get("kubernetes.io/service-name")
    if not svc:
        raise c.fail("metadata.labels", "the label kubernetes.io/service-name", labels)
    eps = []
    for i, e in enumerate(c.list_(d.get("endpoints"), "endpoints")):
        e = c.map_(e, f"endpoints[{i}]")
        addrs = [c.ip(a, f"endpoints[{i}].addresses[{j}]") for j, a in
                 enumerate(c.list_(e.get("addresses"), f"endpoints[{i}].addresses"))]
        if not addrs:
            raise c.fail(f"endpoints[{i}].addresses", "at least one address", [])
        cond = c.map_(e.get("conditions"), f"endpoints[{i}].conditions")
        ready = cond.get("ready")
        serving = cond.get("serving")
        ref = c.map_(e.get("targetRef"), f"endpoints[{i}].targetRef")
        eps.append(Endpoint(
            addresses=addrs, node_name=e.get("nodeName"),
            ready=True if ready is None else bool(ready),
            serving=(True if ready is None else bool(ready)) if serving is None else bool(serving),
            terminating=bool(cond.get("terminating") or False),
            target_ref=ref.get("name"), zone=e.get("zone")))
    ports = []
    for i, p in enumerate(c.list_(d.get("ports"), "ports")):
        p = c.map_(p, f"ports[{i}]")
        ports.append(EndpointPort(port=c.int_(p.get("port"), f"ports[{i}].port"),
                                  name=c.str_(p.get("name"), f"ports[{i}].name", ""),
                                  protocol=c.protocol(p.get("protocol"), f"ports[{i}].protocol")))
    at = d.get("addressType") or "IPv4"
    if at not in ("IPv4", "IPv6", "FQDN"):
        raise c.fail("addressType", "IPv4, IPv6 or FQDN", at)
    return EndpointSlice(name=name, namespace=ns, service_name=svc, endpoints=eps, ports=ports,
                         address_type=at, labels=labels, raw=d)


# --------------------------------------------------------------------------------------------
# Pods and Deployments

@dataclass
class ContainerPort:
    container_port: int
    name: str = ""
    protocol: str = "TCP"
    host_port: int = 0
    host_ip: str = ""


@dataclass
class Container:
    name: str
    image: str = ""
    ports: list[ContainerPort] = field(default_factory=list)
    readiness_probe: dict | None = None
    env: list[dict] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


@dataclass
class Toleration:
    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: dict) -> bool:
        if self.effect and self.effect != taint.get("effect"):
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.get("key")
        return self.key == taint.get("key") and self.value == (taint.get("value") or "")


@dataclass
class PodSpec:
    containers: list[Container] = field(default_factory=list)
    host_network: bool = False
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    node_name: str | None = None


def _parse_pod_spec(c: _Ctx, spec: Any, path: str) -> PodSpec:
    spec = c.map_(spec, path)
    containers = []
    raw = c.list_(spec.get("containers"), f"{path}.containers")
    if not raw:
        raise c.fail(f"{path}.containers", "at least one container", raw)
    for i, ct in enumerate(raw):
        cp = f"{path}.containers[{i}]"
        ct = c.map_(ct, cp)
        ports = []
        for j, p in enumerate(c.list_(ct.get("ports"), f"{cp}.ports")):
            pp = f"{cp}.ports[{j}]"
            p = c.map_(p, pp)
            ports.append(ContainerPort(
                container_port=c.int_(p.get("containerPort"), f"{pp}.containerPort"),
                name=c.str_(p.get("name"), f"{pp}.name", ""),
                protocol=c.protocol(p.get("protocol"), f"{pp}.protocol"),
                host_port=c.int_(p.get("hostPort"), f"{pp}.hostPort", 0, 65535, default=0),
                host_ip=c.str_(p.get("hostIP"), f"{pp}.hostIP", "")))
        containers.append(Container(name=c.str_(ct.get("name"), f"{cp}.name"), image=ct.get("image") or "",
                                    ports=ports, readiness_probe=ct.get("readinessProbe"),
                                    env=c.list_(ct.get("env"), f"{cp}.env"),
                                    args=[str(a) for a in c.list_(ct.get("args"), f"{cp}.args")]))
    tols = []
    for i, t in enumerate(c.list_(spec.get("tolerations"), f"{path}.tolerations")):
        t = c.map_(t, f"{path}.tolerations[{i}]")
        tols.append(Toleration(key=t.get("key") or "", operator=t.get("operator") or "Equal",
                               value=str(t.get("value") or ""), effect=t.get("effect") or ""))
    return PodSpec(containers=containers, host_network=bool(spec.get("hostNetwork", False)),
                   node_selector=c.labels(spec.get("nodeSelector"), f"{path}.nodeSelector"),
                   tolerations=tols, node_name=spec.get("nodeName"))


@dataclass
class Pod:
    name: str
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    spec: PodSpec = field(default_factory=PodSpec)
    node_name: str | None = None
    ip: str | None = None
    host_ip: str | None = None
    phase: str = "Running"
    ready: bool = True
    owner: str | None = None              # "Deployment/<name>", "DaemonSet/<name>", "Node/<name>" (static)
    container_id: str = ""                # 64 hex, the sandbox ID the CNI plugins see
    annotations: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Pod"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def host_network(self) -> bool:
        return self.spec.host_network

    @property
    def containers(self) -> list[Container]:
        return self.spec.containers

    def container_ports(self) -> list[ContainerPort]:
        return [p for ct in self.spec.containers for p in ct.ports]

    def host_ports(self) -> list[ContainerPort]:
        return [p for p in self.container_ports() if p.host_port]

    def resolve_port(self, target: int | str, protocol: str = "TCP") -> int | None:
        """A Service targetPort for this pod: a number as is, a name looked up in the containers."""
        if isinstance(target, int):
            return target
        for p in self.container_ports():
            if p.name == target and p.protocol == protocol:
                return p.container_port
        return None


def parse_pod(d: dict) -> Pod:
    c, name, ns, meta = _meta(d, "Pod")
    spec = _parse_pod_spec(c, d.get("spec"), "spec")
    status = c.map_(d.get("status"), "status")
    return Pod(name=name, namespace=ns, labels=c.labels(meta.get("labels"), "metadata.labels"), spec=spec,
               node_name=spec.node_name, ip=status.get("podIP"), host_ip=status.get("hostIP"),
               annotations=c.labels(meta.get("annotations"), "metadata.annotations"), raw=d)


@dataclass
class Deployment:
    name: str
    namespace: str = "default"
    replicas: int = 1
    selector: dict[str, str] = field(default_factory=dict)
    template_labels: dict[str, str] = field(default_factory=dict)
    template_spec: PodSpec = field(default_factory=PodSpec)
    template: dict = field(default_factory=dict, repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Deployment"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def parse_deployment(d: dict) -> Deployment:
    c, name, ns, meta = _meta(d, "Deployment")
    spec = c.map_(d.get("spec"), "spec")
    replicas = c.int_(spec.get("replicas"), "spec.replicas", 0, 10000, default=1)
    sel = c.map_(spec.get("selector"), "spec.selector")
    match = c.labels(sel.get("matchLabels"), "spec.selector.matchLabels")
    if not match:
        raise c.fail("spec.selector.matchLabels", "at least one label", sel.get("matchLabels"))
    tmpl = c.map_(spec.get("template"), "spec.template")
    tlabels = c.labels(c.map_(tmpl.get("metadata"), "spec.template.metadata").get("labels"),
                       "spec.template.metadata.labels")
    for k, v in match.items():
        if tlabels.get(k) != v:
            raise c.fail("spec.template.metadata.labels", f"to contain the selector label {k}={v}", tlabels)
    return Deployment(name=name, namespace=ns, replicas=replicas, selector=match, template_labels=tlabels,
                      template_spec=_parse_pod_spec(c, tmpl.get("spec"), "spec.template.spec"),
                      template=tmpl, labels=c.labels(meta.get("labels"), "metadata.labels"), raw=d)


# --------------------------------------------------------------------------------------------
# Nodes

@dataclass
class Node:
    name: str
    role: str = "worker"                  # control-plane | worker
    ip: str = ""
    pod_cidr: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Node"

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)

    @property
    def local_ips(self) -> tuple[str, ...]:
        """What ``-m addrtype --dst-type LOCAL`` matches on the node (lo and eth0)."""
        return ("127.0.0.1", self.ip) if self.ip else ("127.0.0.1",)

    @property
    def pod_gateway(self) -> str:
        """The first address of the pod CIDR: host-local's gateway, never given to a pod."""
        return str(ipaddress.ip_network(self.pod_cidr).network_address + 1)


def parse_node(d: dict) -> Node:
    c, name, _, meta = _meta(d, "Node", namespaced=False)
    spec = c.map_(d.get("spec"), "spec")
    status = c.map_(d.get("status"), "status")
    ip = ""
    for a in c.list_(status.get("addresses"), "status.addresses"):
        if isinstance(a, dict) and a.get("type") == "InternalIP":
            ip = a.get("address", "")
    labels = c.labels(meta.get("labels"), "metadata.labels")
    role = "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker"
    return Node(name=name, role=role, ip=ip, pod_cidr=spec.get("podCIDR") or "", labels=labels,
                taints=c.list_(spec.get("taints"), "spec.taints"), raw=d)


# --------------------------------------------------------------------------------------------
# Ingress

@dataclass
class IngressBackend:
    service_name: str
    service_port: int | str               # number or port name


@dataclass
class IngressPath:
    path: str
    path_type: str
    backend: IngressBackend


@dataclass
class IngressRule:
    host: str                             # "" matches every host
    paths: list[IngressPath] = field(default_factory=list)


@dataclass
class Ingress:
    name: str
    namespace: str = "default"
    ingress_class_name: str | None = None
    rules: list[IngressRule] = field(default_factory=list)
    default_backend: IngressBackend | None = None
    tls_hosts: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Ingress"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


def _backend(c: _Ctx, b: Any, path: str) -> IngressBackend:
    b = c.map_(b, path)
    svc = c.map_(b.get("service"), f"{path}.service")
    if not svc:
        raise c.fail(f"{path}.service", "a service backend (name and port)", b)
    port = c.map_(svc.get("port"), f"{path}.service.port")
    if "number" in port:
        p: int | str = c.int_(port["number"], f"{path}.service.port.number")
    elif "name" in port:
        p = c.str_(port["name"], f"{path}.service.port.name")
    else:
        raise c.fail(f"{path}.service.port", "number or name", port)
    return IngressBackend(service_name=c.str_(svc.get("name"), f"{path}.service.name"), service_port=p)


def parse_ingress(d: dict) -> Ingress:
    c, name, ns, meta = _meta(d, "Ingress")
    spec = c.map_(d.get("spec"), "spec")
    rules = []
    for i, r in enumerate(c.list_(spec.get("rules"), "spec.rules")):
        r = c.map_(r, f"spec.rules[{i}]")
        host = c.str_(r.get("host"), f"spec.rules[{i}].host", "")
        if host.count("*") > 1 or ("*" in host and not host.startswith("*.")):
            raise c.fail(f"spec.rules[{i}].host", "a DNS name or a wildcard *.domain", host)
        paths = []
        http = c.map_(r.get("http"), f"spec.rules[{i}].http")
        for j, p in enumerate(c.list_(http.get("paths"), f"spec.rules[{i}].http.paths")):
            pp = f"spec.rules[{i}].http.paths[{j}]"
            p = c.map_(p, pp)
            pt = p.get("pathType")
            if pt not in ("Exact", "Prefix", "ImplementationSpecific"):
                raise c.fail(f"{pp}.pathType", "Exact, Prefix or ImplementationSpecific", pt)
            path = c.str_(p.get("path"), f"{pp}.path", "/")
            if not path.startswith("/"):
                raise c.fail(f"{pp}.path", "an absolute path starting with /", path)
            paths.append(IngressPath(path=path, path_type=pt, backend=_backend(c, p.get("backend"), f"{pp}.backend")))
        rules.append(IngressRule(host=host, paths=paths))
    db = spec.get("defaultBackend")
    tls = [h for t in c.list_(spec.get("tls"), "spec.tls") for h in (t or {}).get("hosts") or []]
    return Ingress(name=name, namespace=ns, ingress_class_name=spec.get("ingressClassName"), rules=rules,
                   default_backend=_backend(c, db, "spec.defaultBackend") if db else None, tls_hosts=tls,
                   annotations=c.labels(meta.get("annotations"), "metadata.annotations"),
                   labels=c.labels(meta.get("labels"), "metadata.labels"), raw=d)


@dataclass
class IngressClass:
    name: str
    controller: str = ""
    default: bool = False
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "IngressClass"

    @property
    def key(self) -> tuple[str, str]:
        return ("", self.name)


def parse_ingress_class(d: dict) -> IngressClass:
    c, name, _, meta = _meta(d, "IngressClass", namespaced=False)
    spec = c.map_(d.get("spec"), "spec")
    ann = c.labels(meta.get("annotations"), "metadata.annotations")
    return IngressClass(name=name, controller=c.str_(spec.get("controller"), "spec.controller", ""),
                        default=ann.get("ingressclass.kubernetes.io/is-default-class") == "true", raw=d)


# --------------------------------------------------------------------------------------------
# kind's cluster config

@dataclass
class PortMapping:
    container_port: int
    host_port: int
    listen_address: str = "0.0.0.0"
    protocol: str = "TCP"


@dataclass
class KindNode:
    role: str = "control-plane"
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    extra_port_mappings: list[PortMapping] = field(default_factory=list)
    kubeadm_config_patches: list[str] = field(default_factory=list)

    @property
    def kubelet_node_labels(self) -> dict[str, str]:
        """``node-labels`` set through a kubeadm patch (``kubeletExtraArgs``), plus ``labels``."""
        import yaml
        out = dict(self.labels)
        for patch in self.kubeadm_config_patches:
            try:
                doc = yaml.safe_load(patch) or {}
            except yaml.YAMLError:
                continue
            args = ((doc.get("nodeRegistration") or {}).get("kubeletExtraArgs")) or {}
            if isinstance(args, list):   # kubeadm v1beta4: a list of {name, value}
                args = {a.get("name"): a.get("value") for a in args if isinstance(a, dict)}
            for item in str(args.get("node-labels") or "").split(","):
                if "=" in item:
                    k, v = item.split("=", 1)
                    out[k.strip()] = v.strip()
        return out


@dataclass
class KindConfig:
    name: str = "kind"
    nodes: list[KindNode] = field(default_factory=lambda: [KindNode()])
    pod_subnet: str = "10.244.0.0/16"
    service_subnet: str = "10.96.0.0/16"
    kube_proxy_mode: str = "iptables"
    ip_family: str = "ipv4"
    disable_default_cni: bool = False
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    kind = "Cluster"


def parse_kind_config(d: dict) -> KindConfig:
    c = _Ctx("Cluster", (d.get("name") if isinstance(d, dict) else None) or "kind", None)
    d = c.map_(d, "(document)")
    if d.get("apiVersion") not in (None, "kind.x-k8s.io/v1alpha4"):
        raise c.fail("apiVersion", "kind.x-k8s.io/v1alpha4", d.get("apiVersion"))
    nodes = []
    for i, n in enumerate(c.list_(d.get("nodes"), "nodes") or [{"role": "control-plane"}]):
        n = c.map_(n, f"nodes[{i}]")
        role = n.get("role") or "control-plane"
        if role not in ("control-plane", "worker"):
            raise c.fail(f"nodes[{i}].role", "control-plane or worker", role)
        maps = []
        for j, m in enumerate(c.list_(n.get("extraPortMappings"), f"nodes[{i}].extraPortMappings")):
            mp = f"nodes[{i}].extraPortMappings[{j}]"
            m = c.map_(m, mp)
            maps.append(PortMapping(container_port=c.int_(m.get("containerPort"), f"{mp}.containerPort"),
                                    host_port=c.int_(m.get("hostPort"), f"{mp}.hostPort", 0, 65535, default=0),
                                    listen_address=m.get("listenAddress") or "0.0.0.0",
                                    protocol=(m.get("protocol") or "TCP").upper()))
        patches = [str(p) for p in c.list_(n.get("kubeadmConfigPatches"), f"nodes[{i}].kubeadmConfigPatches")]
        nodes.append(KindNode(role=role, image=n.get("image") or "", labels=c.labels(n.get("labels"),
                              f"nodes[{i}].labels"), extra_port_mappings=maps, kubeadm_config_patches=patches))
    if not any(n.role == "control-plane" for n in nodes):
        raise c.fail("nodes", "at least one control-plane node", [n.role for n in nodes])
    net = c.map_(d.get("networking"), "networking")
    mode = net.get("kubeProxyMode") or "iptables"
    if mode not in ("iptables", "ipvs", "nftables", "none"):
        raise c.fail("networking.kubeProxyMode", "iptables, ipvs, nftables or none", mode)
    return KindConfig(name=d.get("name") or "kind", nodes=nodes,
                      pod_subnet=c.cidr(net.get("podSubnet") or "10.244.0.0/16", "networking.podSubnet"),
                      service_subnet=c.cidr(net.get("serviceSubnet") or "10.96.0.0/16", "networking.serviceSubnet"),
                      kube_proxy_mode=mode, ip_family=net.get("ipFamily") or "ipv4",
                      disable_default_cni=bool(net.get("disableDefaultCNI", False)), raw=d)


# --------------------------------------------------------------------------------------------

PARSERS: dict[str, Callable[[dict], Any]] = {
    "Service": parse_service,
    "EndpointSlice": parse_endpoint_slice,
    "Pod": parse_pod,
    "Deployment": parse_deployment,
    "Node": parse_node,
    "Ingress": parse_ingress,
    "IngressClass": parse_ingress_class,
    "Cluster": parse_kind_config,
}


def parse_object(d: dict) -> Any:
    """One API-shaped dict to its dataclass. Kinds the model does not use come back as the dict."""
    if not isinstance(d, dict):
        raise ManifestError(f"expected a mapping (a Kubernetes object), got {type(d).__name__}")
    kind = d.get("kind")
    if not isinstance(kind, str) or not kind:
        name = (d.get("metadata") or {}).get("name") if isinstance(d.get("metadata"), dict) else None
        raise ManifestError(f"object {name or '<unnamed>'}: kind: expected a string such as 'Service', got {kind!r}")
    parser = PARSERS.get(kind)
    return parser(d) if parser else d
