"""The model's objects back to API-shaped dicts (what ``kubectl get -o json`` would show)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .objects import Deployment, EndpointSlice, Ingress, IngressClass, Node, Pod, Service

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import Cluster


def _meta(name: str, namespace: str | None = None, labels: dict | None = None,
          annotations: dict | None = None) -> dict:
    m: dict[str, Any] = {"name": name}
    if namespace:
        m["namespace"] = namespace
    if labels:
        m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    return m


def _pod_spec(spec) -> dict:
    out: dict[str, Any] = {"containers": []}
    for c in spec.containers:
        cd: dict[str, Any] = {"name": c.name, "image": c.image}
        if c.ports:
            cd["ports"] = []
            for p in c.ports:
                pd: dict[str, Any] = {"containerPort": p.container_port, "protocol": p.protocol}
                if p.name:
                    pd["name"] = p.name
                if p.host_port:
                    pd["hostPort"] = p.host_port
                cd["ports"].append(pd)
        if c.readiness_probe:
            cd["readinessProbe"] = c.readiness_probe
        out["containers"].append(cd)
    if spec.host_network:
        out["hostNetwork"] = True
    if spec.node_selector:
        out["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        out["tolerations"] = [{k: v for k, v in (("key", t.key), ("operator", t.operator), ("value", t.value),
                                                 ("effect", t.effect)) if v} for t in spec.tolerations]
    return out


def to_dict(obj: Any, cluster: "Cluster | None" = None) -> dict:
    if isinstance(obj, Node):
        return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(obj.name, labels=obj.labels),
                "spec": {"podCIDR": obj.pod_cidr, "podCIDRs": [obj.pod_cidr], "taints": list(obj.taints)},
                "status": {"addresses": [{"type": "InternalIP", "address": obj.ip},
                                         {"type": "Hostname", "address": obj.name}],
                           "conditions": [{"type": "Ready", "status": "True"}]}}
    if isinstance(obj, Pod):
        spec = _pod_spec(obj.spec)
        spec["nodeName"] = obj.node_name
        meta = _meta(obj.name, obj.namespace, obj.labels, obj.annotations)
        if obj.owner:
            kind, name = obj.owner.split("/", 1)
            meta["ownerReferences"] = [{"kind": "ReplicaSet" if kind == "Deployment" else kind,
                                        "name": name if kind != "Deployment" else obj.name.rsplit("-", 1)[0]}]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
                "status": {"phase": obj.phase, "podIP": obj.ip, "podIPs": [{"ip": obj.ip}] if obj.ip else [],
                           "hostIP": obj.host_ip,
                           "conditions": [{"type": "Ready", "status": "True" if obj.ready else "False"}],
                           "containerStatuses": [{"name": c.name, "ready": obj.ready, "restartCount": 0}
                                                 for c in obj.spec.containers]}}
    if isinstance(obj, Service):
        ports = []
        for p in obj.ports:
            pd: dict[str, Any] = {"port": p.port, "protocol": p.protocol, "targetPort": p.effective_target_port}
            if p.name:
                pd["name"] = p.name
            if p.node_port:
                pd["nodePort"] = p.node_port
            ports.append(pd)
        spec: dict[str, Any] = {"type": obj.type, "clusterIP": obj.cluster_ip, "clusterIPs": [obj.cluster_ip],
                                "ports": ports, "sessionAffinity": obj.session_affinity,
                                "internalTrafficPolicy": obj.internal_traffic_policy}
        if obj.selector is not None:
            spec["selector"] = dict(obj.selector)
        if obj.type in ("NodePort", "LoadBalancer"):
            spec["externalTrafficPolicy"] = obj.external_traffic_policy
        if obj.external_ips:
            spec["externalIPs"] = list(obj.external_ips)
        if obj.health_check_node_port:
            spec["healthCheckNodePort"] = obj.health_check_node_port
        if obj.load_balancer_source_ranges:
            spec["loadBalancerSourceRanges"] = list(obj.load_balancer_source_ranges)
        status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in obj.load_balancer_ips]}
                  if obj.load_balancer_ips else {}}
        return {"apiVersion": "v1", "kind": "Service",
                "metadata": _meta(obj.name, obj.namespace, obj.labels, obj.annotations), "spec": spec,
                "status": status}
    if isinstance(obj, EndpointSlice):
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": obj.address_type,
                "metadata": _meta(obj.name, obj.namespace, obj.labels),
                "endpoints": [{"addresses": list(e.addresses), "nodeName": e.node_name,
                               "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                               **({"targetRef": {"kind": "Pod", "name": e.target_ref}} if e.target_ref else {})}
                              for e in obj.endpoints],
                "ports": [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in obj.ports]}
    if isinstance(obj, Deployment):
        ready = len([p for p in (cluster.pods if cluster else []) if p.owner == f"Deployment/{obj.name}"
                     and p.namespace == obj.namespace and p.ready])
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": _meta(obj.name, obj.namespace, obj.labels),
                "spec": {"replicas": obj.replicas, "selector": {"matchLabels": dict(obj.selector)},
                         "template": {"metadata": {"labels": dict(obj.template_labels)},
                                      "spec": _pod_spec(obj.template_spec)}},
                "status": {"replicas": obj.replicas, "readyReplicas": ready, "availableReplicas": ready}}
    if isinstance(obj, Ingress):
        def backend(b):
            port = {"number": b.service_port} if isinstance(b.service_port, int) else {"name": b.service_port}
            return {"service": {"name": b.service_name, "port": port}}
        spec = {"rules": [{**({"host": r.host} if r.host else {}),
                           "http": {"paths": [{"path": p.path, "pathType": p.path_type,
                                               "backend": backend(p.backend)} for p in r.paths]}}
                          for r in obj.rules]}
        if obj.ingress_class_name:
            spec["ingressClassName"] = obj.ingress_class_name
        if obj.default_backend:
            spec["defaultBackend"] = backend(obj.default_backend)
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": _meta(obj.name, obj.namespace, obj.labels, obj.annotations), "spec": spec,
                "status": {"loadBalancer": {"ingress": [{"hostname": "localhost"}]}}}
    if isinstance(obj, IngressClass):
        return {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": _meta(obj.name),
                "spec": {"controller": obj.controller}}
    raise TypeError(f"cannot serialise {type(obj).__name__}")
