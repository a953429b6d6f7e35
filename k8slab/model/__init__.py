"""The cluster model: kind's cluster as objects, and the rules every component writes for it.

Everything here is a pure function of its inputs (no commands, no clock, no global randomness):
the same manifests and seed give the same addresses, names and rules on every machine.

Objects (``objects.py``), read from manifests (``manifests.py``)::

    objs = load_objects("kind/manifests/app.yaml")     # path, YAML text (multi-doc), dict or list
    Service, ServicePort, Pod, Deployment, Node, EndpointSlice, Endpoint, EndpointPort,
    Ingress, IngressRule, IngressPath, IngressBackend, IngressClass, KindConfig, KindNode, PortMapping

Invalid input raises :class:`k8slab.errors.ManifestError` naming the object and the field.

The cluster (``cluster.py``)::

    c = Cluster.kind(config="kind/cluster.yaml", name="kind", seed=0)   # nodes + system pods/services
    c.apply(load_objects("kind/manifests/app.yaml"))   # -> ["deployment.apps/url-shortener", ...]
    c.scale("url-shortener", 3); c.delete("service", "url-shortener")
    c.nodes, c.pods, c.services, c.deployments, c.ingresses, c.ingress_classes
    c.endpoint_slices()             # derived from Services x ready Pods (as the controller would)
    c.node("kind-control-plane"), c.pod("name", ns), c.pod_by_ip("10.244.0.5"), c.service("web", ns)
    c.to_dicts("pods")              # API-shaped dicts (for Backend.objects)
    Cluster.from_objects(services, endpoint_slices)    # renderer inputs only (golden tests)

Addresses as kind assigns them (see ``cluster.py`` for the reasoning): nodes 172.18.0.2.. on the
Docker network ``kind`` (gateway 172.18.0.1), control-plane first; pod CIDR 10.244.<i>.0/24 per node;
pod IPs from .2 (host-local skips the .1 gateway); ClusterIPs from 10.96.0.0/16 (kubernetes .0.1,
kube-dns .0.10, others seeded from the dynamic band); NodePorts seeded in 30000-32767.

Renderers (each a pure function returning text; ``form="restore"`` is what the component writes,
``form="save"`` is what ``iptables-save`` prints back after the kernel loaded it)::

    render_kube_proxy(services, endpoint_slices, settings, form="restore")   # kubeproxy.py
    ProxierSettings.from_file("overall-settings.yaml#iptables"); ProxierSettings.for_kind_node(c, node)
    render_portmap(cluster, node)              # CNI portmap chains of the node's hostPort pods
    render_node_dump(cluster, node, form="save", counters=None)   # the whole node's iptables-save
    render_node_restore(cluster, node)         # the same, for iptables-restore into a fresh netns
    render_host_docker(cluster, form="save")   # the learner's host: Docker's DNAT for extraPortMappings
    ingress_routes(cluster) -> list[Route]; match_route(routes, host, path) -> Route | None
    nginx_conf(cluster, listen_port=80, prefix_dir=..., pid_path=..., error_log=..., access_log=...)

Lower level (``iptables.py``): :class:`IptRule` (one rule as the component's argv), ``save_tokens``
(the kernel's normal form), ``render_tables``.
"""
from __future__ import annotations

from .objects import (
    Container, ContainerPort, Deployment, Endpoint, EndpointPort, EndpointSlice, Ingress,
    IngressBackend, IngressClass, IngressPath, IngressRule, KindConfig, KindNode, Node, Pod,
    PortMapping, Service, ServicePort, Toleration, parse_object,
)
from .manifests import load_manifests, load_objects
from .cluster import Cluster, DEFAULT_SEED
from .settings import ProxierSettings
from .iptables import IptRule, Table, render_tables, save_tokens, restore_line, save_line
from .kubeproxy import kube_proxy_tables, render_kube_proxy
from .portmap import portmap_tables, render_portmap, container_id
from .kindnet import kindnet_tables
from .docker import docker_dns_tables, host_docker_tables, render_host_docker, bridge_name
from .node import node_tables, render_node_dump, render_node_restore
from .ingress import Route, ingress_routes, match_route, nginx_conf

__all__ = [
    "Container", "ContainerPort", "Deployment", "Endpoint", "EndpointPort", "EndpointSlice",
    "Ingress", "IngressBackend", "IngressClass", "IngressPath", "IngressRule", "KindConfig",
    "KindNode", "Node", "Pod", "PortMapping", "Service", "ServicePort", "Toleration", "parse_object",
    "load_manifests", "load_objects", "Cluster", "DEFAULT_SEED", "ProxierSettings",
    "IptRule", "Table", "render_tables", "save_tokens", "restore_line", "save_line",
    "kube_proxy_tables", "render_kube_proxy", "portmap_tables", "render_portmap", "container_id",
    "kindnet_tables", "docker_dns_tables", "host_docker_tables", "render_host_docker", "bridge_name",
    "node_tables", "render_node_dump", "render_node_restore",
    "Route", "ingress_routes", "match_route", "nginx_conf",
]
