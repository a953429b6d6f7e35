"""Each way into the cluster as an ordered list of hops, each owned by one component.

The types (Component, Way, Hop, Path) live in :mod:`k8slab.hops` and are re-exported here; the
builders below derive a path from a backend's actual rules, from the shared model views and
trace-to-hops helpers of :mod:`k8slab.path_parts` (re-exported here).
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable

from .hops import (EPHEMERAL_PORT, LOOPBACK_CLIENT_PORT, NEW_CONNECTION, REWROTE_BOTH,  # noqa: F401
                   REWROTE_DST, REWROTE_NOTHING, REWROTE_SRC, Component, Hop, Path, Way)

#: port-forward's default local port: 8080 belongs to kind's extraPortMappings (the Ingress path).
PORT_FORWARD_LOCAL_PORT = 18080


# =============================================================================================
# Builders: each way in, derived from a cluster model and the rules actually installed.
#
# The kernel hops are not drawn by hand: they come from tracing the given Ruleset, so when the rules
# change (scale, delete, a NodePort added) the path changes with them. Only the user-space hops
# (kubectl, API server, kubelet, docker-proxy, the ingress controller, the app) are described from
# the cluster model, because no iptables rule makes them happen.

from .path_parts import (_alternatives, _answer_hop, _app_hop, APP_NAME, _app_pods, client_pod_ip,  # noqa: E402,F401
                         _component_for, _control_plane, controller_pod, COURSE_CLIENT_POD, _effective_hops,
                         _EFFECTS, _gateway, INGRESS_NAMESPACE, _is_app, kernel_hops, _local_ips,
                         masquerade_source, _node_named, OWNER_COMPONENTS, owner_of, pick_outcome, _pod_by_ip,
                         _pod_place, _randomizes_port, _rewrote, _routing_describer, _service, _strip_counter,
                         _trace)


# --------------------------------------------------------------------------------------------
# the five ways

def build_path(way, *, cluster_model, node_rules, host_rules=None, nodes=None, backend: str = "",
               predicted: bool = False, service: str | None = None, namespace: str = "default",
               host: str | None = None, url_path: str = "/whoami", prefer: str | None = None,
               local_port: int = PORT_FORWARD_LOCAL_PORT) -> Path:
    """``way`` as hops. ``node_rules`` is the control-plane's Ruleset (every way in enters there);
    ``host_rules`` the learner's machine's Docker rules (None: not visible, e.g. Docker Desktop).
    ``service`` overrides the Service the way targets; ``prefer`` picks the endpoint drawn;
    ``local_port`` is port-forward's local port (the Lab's default, off kind's 8080 mapping)."""
    way = Way(way)
    nodes = list(nodes) if nodes else list(cluster_model.nodes)
    kw = dict(cluster=cluster_model, rules=node_rules, host_rules=host_rules, nodes=nodes,
              namespace=namespace, prefer=prefer)
    if way is Way.PORT_FORWARD:
        path = _port_forward(service=service or APP_NAME, local_port=local_port, **kw)
    elif way is Way.CLUSTER_IP:
        path = _cluster_ip(service=service or APP_NAME, **kw)
    elif way is Way.NODE_PORT:
        path = _node_port(service=service, **kw)
    elif way is Way.HOST_PORT:
        path = _host_port(**kw)
    else:
        path = _ingress(host=host, url_path=url_path, **kw)
    path.backend = backend
    path.predicted = predicted
    _mark_stand_ins(path, nodes)
    if predicted:
        path.notes.append("predicted by a model (sim), not read off a live cluster")
    return path


def _api_server_endpoint(cluster, cp) -> str:
    """The API server's ip:port: the endpoint of Service default/kubernetes, else the control-plane:6443."""
    try:
        eps = cluster.endpoints_of("kubernetes", "default")
    except Exception:       # no such Service in a hand-made model
        eps = []
    return eps[0] if eps else f"{cp.ip}:6443"


def _published_api_server(host_rules, api: str) -> tuple[str, int, str] | None:
    """(listen address, host port, rule line) of the host's published port that leads to the API
    server ``api`` (ip:6443), read off Docker's DNAT rule for it in the host's rules; None when the
    host's rules hold none (not visible, e.g. Docker Desktop). kind publishes the control-plane's
    6443 on ``networking.apiServerAddress`` (default 127.0.0.1) and a random host port
    (``apiServerPort``; kind docs, configuration.md "API Server"), as ``docker run --publish
    127.0.0.1:PORT:6443/TCP``, and writes https://127.0.0.1:PORT into the kubeconfig."""
    if host_rules is None:
        return None
    for r in host_rules.iter_rules():
        to = r.target_option("--to-destination") if r.table == "nat" and r.target == "DNAT" else None
        dport = r.option("tcp", "--dport") if to is not None else None
        if to is None or dport is None or to.value != api or not (dport.value or "").isdigit():
            continue
        listen = r.destination.value.split("/", 1)[0] if r.destination is not None else "0.0.0.0"
        return listen, int(dport.value), _strip_counter(r.line) if r.line else ""
    return None


#: The components the netns backend has no process for, and what does their job instead: its relay
#: (k8slab.backends.nsrelay) accepts on 127.0.0.1:PORT of the host's namespace and dials
#: 127.0.0.1:PORT inside the pod (port-forward), or the node's IP (docker-proxy). See the docstring
#: of k8slab/backends/netns/backend.py, "Stand-ins, labelled as such".
NETNS_STAND_INS = frozenset({Component.KUBECTL, Component.API_SERVER, Component.KUBELET, Component.RUNTIME,
                             Component.DOCKER_PROXY})


def stand_ins(nodes: Iterable[Any]) -> frozenset:
    """The components a stand-in replaces, read off how the backend describes its nodes
    (``NodeInfo.runs_as``): a node that is a network namespace (the netns backend) runs no kubelet,
    no container runtime and no API server, and its host has no kubectl or docker-proxy; a Docker
    container (kind) or a model (sim, whose every hop is a prediction anyway) has none stood in."""
    for n in nodes or ():
        if "network namespace" in (getattr(n, "runs_as", "") or ""):
            return NETNS_STAND_INS
    return frozenset()


def _mark_stand_ins(path: Path, nodes) -> None:
    stood = stand_ins(nodes)
    marked = [h.component.value for h in path.hops if h.component in stood]
    if not marked:
        return
    from dataclasses import replace
    path.hops[:] = [replace(h, stand_in=True) if h.component in stood else h for h in path.hops]
    runs_as = next((n.runs_as for n in nodes if getattr(n, "runs_as", "")), "")
    path.notes.append(f"stand-in: the nodes here are {runs_as}; no {', '.join(dict.fromkeys(marked))} "
                      "process runs, and the backend's relay (k8slab.backends.nsrelay) does those hops' job: "
                      "it accepts on the host's side and opens the connection the last of them would open")


def _svc_port(svc, port: int | None = None):
    if not svc.ports:
        return None
    if port is None:
        return svc.ports[0]
    return next((p for p in svc.ports if p.port == port), svc.ports[0])


def _port_forward(*, cluster, rules, host_rules, nodes, namespace, prefer, service, local_port) -> Path:
    svc = _service(cluster, service, namespace)
    cp = _control_plane(nodes)
    notes = ["no iptables rule is involved: the bytes travel inside the API server's and kubelet's "
             "streams, and the runtime dials the port inside the pod's network namespace"]
    if svc is None:
        pods = [p for p in cluster.pods if p.name == service and p.namespace == namespace]
        sp = None
    else:
        pods = [p for p in _app_pods(cluster, svc) if p.ready]
        sp = _svc_port(svc)
    # kubectl resolves svc/NAME to one pod (the first ready one) and the service port to the pod's
    # container port: the Service's ClusterIP and its kube-proxy rules are never used.
    pods = sorted(pods, key=lambda p: p.name)
    if prefer:
        pods = sorted(pods, key=lambda p: p.ip != prefer.rsplit(":", 1)[0])
    pod = pods[0] if pods else None
    local = f"127.0.0.1:{local_port}"
    if pod is None:
        return Path(Way.PORT_FORWARD, [Hop(1, Component.CLIENT, "host", f"curl http://{local}/", None,
                                           local)], "host", None, False,
                    notes=notes + [f"{service} has no ready pod: kubectl port-forward fails"])
    target = sp.effective_target_port if sp is not None else 8080
    cport = pod.resolve_port(target, "TCP") if hasattr(pod, "resolve_port") else None
    cport = cport or (target if isinstance(target, int) else 8080)
    pnode = _node_named(nodes, pod.node_name) or cp
    api = _api_server_endpoint(cluster, cp)
    gw = _gateway(cluster)
    stream = (f"POST /api/v1/namespaces/{namespace}/pods/{pod.name}/portforward",)
    kubectl_does = f"kubectl accepts on {local}, picked pod {pod.name} for svc/{service}, and carries the bytes " \
        "in a pods/portforward stream over its own connection to the API server"
    # The packet after each hop: every user-space component accepts the bytes and opens a new
    # connection of its own (../shared/notes/kind-networking-facts.md, "kubectl port-forward").
    hops = [Hop(1, Component.CLIENT, "host", f"curl http://{local}/", f"127.0.0.1:{LOOPBACK_CLIENT_PORT}", local)]
    published = _published_api_server(host_rules, api)
    if published is not None:
        # kubectl dials the kubeconfig's https://127.0.0.1:PORT; for a loopback destination Docker's
        # DNAT is skipped (OUTPUT ! -d 127.0.0.0/8), so docker-proxy accepts and dials the node's :6443
        # (as for the hostPort/Ingress path, _host_hops).
        listen, hport, rule = published
        at = f"{'127.0.0.1' if listen in ('0.0.0.0', '') else listen}:{hport}"
        hops += [
            Hop(2, Component.KUBECTL, "host", f"{kubectl_does} at {at}, the port kind published it on (the "
                "kubeconfig's server)", f"127.0.0.1:{EPHEMERAL_PORT}", at, "control", stream, NEW_CONNECTION),
            Hop(3, Component.DOCKER_PROXY, "host", f"docker-proxy listens on {listen}:{hport}; for a loopback "
                f"destination Docker's DNAT is skipped, so docker-proxy accepts and opens a new connection to "
                f"the API server {api} from the bridge address {gw}", f"{gw}:{EPHEMERAL_PORT}", api, "control",
                tuple(x for x in (rule, f"docker run --publish {listen}:{hport}:6443/TCP (kind's API server "
                                        "mapping)") if x), NEW_CONNECTION)]
    else:
        hops.append(Hop(2, Component.KUBECTL, "host", f"{kubectl_does} {api} (kind publishes it on a 127.0.0.1 "
                        "port of the host, through docker-proxy)", f"{gw}:{EPHEMERAL_PORT}", api, "control",
                        stream, NEW_CONNECTION))
    n = len(hops)
    hops += [
        Hop(n + 1, Component.API_SERVER, f"node {cp.name}", "authorizes pods/portforward and proxies the stream "
            f"over a new connection to the kubelet of the pod's node, {pnode.ip}:10250",
            f"{cp.ip}:{EPHEMERAL_PORT}", f"{pnode.ip}:10250", "control", (f"/portForward/{namespace}/{pod.name}",),
            NEW_CONNECTION),
        Hop(n + 2, Component.KUBELET, f"node {pnode.name}", "hands the stream to the container runtime (CRI "
            "PortForward) and proxies it to containerd's streaming server on the node's loopback (a random "
            "port)", f"127.0.0.1:{EPHEMERAL_PORT}", "127.0.0.1:(random)", "control", (), NEW_CONNECTION),
        Hop(n + 3, Component.RUNTIME, f"node {pnode.name}", f"enters the pod's network namespace and dials "
            f"127.0.0.1:{cport} there: the packet never leaves the pod", f"127.0.0.1:{EPHEMERAL_PORT}",
            f"127.0.0.1:{cport}", "control", (), NEW_CONNECTION),
        Hop(n + 4, Component.APP, _pod_place(pod), f"the app accepts on the pod's loopback, 127.0.0.1:{cport} "
            f"(not the pod IP {pod.ip}); it sees the client as 127.0.0.1", f"127.0.0.1:{EPHEMERAL_PORT}",
            f"127.0.0.1:{cport}", "data", ()),
    ]
    p = Path(Way.PORT_FORWARD, hops, "host", f"{pod.ip}:{cport}", False, notes=notes)
    p.probability = Fraction(1)
    p.alternatives = [(f"{pod.ip}:{cport}", Fraction(1))]
    p.client_seen = "127.0.0.1"
    return p


def _finish_kernel_path(way, cluster, rules, node, hops, client, client_src, dst_ip, dport, prefer,
                        in_interface=None, place=None, notes=None):
    """Trace (client_src -> dst_ip:dport) in ``rules`` on ``node``, append its hops and the app hop."""
    tr = _trace(rules, client_src, dst_ip, dport, node, in_interface)
    out = pick_outcome(tr, prefer)
    notes = list(notes or [])
    p = Path(way, hops, client, None, False, notes=notes)
    p.trace = tr
    p.alternatives = _alternatives(tr)
    if out is None:
        return p, None
    dest_guess = out.destination
    masq = masquerade_source(cluster, node, dest_guess.rsplit(":", 1)[0]) if dest_guess else node.ip
    khops, src, dst = kernel_hops(out, place=place or f"node {node.name}", start=len(hops) + 1,
                                  src=f"{client_src}:{EPHEMERAL_PORT}", dst=f"{dst_ip}:{dport}",
                                  routing=_routing_describer(cluster, node), masq_source=masq)
    hops.extend(khops)
    p.probability = out.nominal
    p.outcome = out
    if out.verdict != "ACCEPT":
        p.notes.append(f"{out.verdict}: the connection is refused here ({khops[-1].action if khops else ''})")
        return p, out
    if out.destination is None:
        p.notes.append(f"no rule rewrote {dst_ip}:{dport}: the packet stays addressed to it")
        return p, out
    p.destination = out.destination
    return p, out


def _seen(src: str | None) -> str | None:
    return src.rsplit(":", 1)[0] if src else None


def _cluster_ip(*, cluster, rules, host_rules, nodes, namespace, prefer, service) -> Path:
    svc = _service(cluster, service, namespace)
    node = _control_plane(nodes)
    if svc is None or not svc.cluster_ip or svc.cluster_ip == "None":
        raise ValueError(f"no Service {namespace}/{service} with a ClusterIP: deploy the app first")
    sp = _svc_port(svc)
    src_ip = client_pod_ip(cluster.pods, node)
    client_pod = _pod_by_ip(cluster, src_ip)
    place = _pod_place(client_pod, f"a pod on {node.name}")
    hops = [Hop(1, Component.CLIENT, place, f"curl http://{svc.cluster_ip}:{sp.port}/ (the Service's "
                "ClusterIP: no process listens there)", f"{src_ip}:{EPHEMERAL_PORT}",
                f"{svc.cluster_ip}:{sp.port}")]
    p, out = _finish_kernel_path(Way.CLUSTER_IP, cluster, rules, node, hops, place, src_ip, svc.cluster_ip,
                                 sp.port, prefer)
    if out is not None and p.destination:
        seen = _seen(hops[-1].src) or src_ip
        p.client_seen = seen
        hop = _app_hop(len(hops) + 1, cluster, p.destination, seen, hops[-1].src)
        hops.append(hop)
    return p


def _node_port_service(cluster, service: str | None, namespace: str):
    if service:
        for s in cluster.services:
            if s.name == service and (s.namespace == namespace or namespace == "default"):
                return s
        return None
    typed = [s for s in cluster.services if s.type in ("NodePort", "LoadBalancer")
             and any(p.node_port for p in s.ports)]
    # the app's own NodePort Service first, then any other (e.g. ingress-nginx's LoadBalancer)
    typed.sort(key=lambda s: (not (s.selector or {}).get("app") == APP_NAME, s.type != "NodePort",
                              s.namespace, s.name))
    return typed[0] if typed else None


def _node_port(*, cluster, rules, host_rules, nodes, namespace, prefer, service) -> Path:
    svc = _node_port_service(cluster, service, namespace)
    node = _control_plane(nodes)
    if svc is None:
        raise ValueError("no NodePort (or LoadBalancer) Service: apply kind/manifests/app-nodeport.yaml")
    sp = next((p for p in svc.ports if p.node_port), None)
    gw = _gateway(cluster)
    hops = [Hop(1, Component.CLIENT, "host", f"curl http://{node.ip}:{sp.node_port}/ (the node's IP and "
                f"the NodePort of {svc.namespace}/{svc.name})", f"{gw}:{EPHEMERAL_PORT}",
                f"{node.ip}:{sp.node_port}"),
            Hop(2, Component.ROUTING, "host", f"route {node.ip} over the Docker bridge of the kind network; "
                f"the packet leaves from the host's address {gw}", f"{gw}:{EPHEMERAL_PORT}",
                f"{node.ip}:{sp.node_port}",
                "data", ())]
    p, out = _finish_kernel_path(Way.NODE_PORT, cluster, rules, node, hops, "host", gw, node.ip, sp.node_port,
                                 prefer, in_interface="eth0",
                                 notes=[f"service {svc.namespace}/{svc.name} ({svc.type}), NodePort {sp.node_port}"])
    if out is not None and p.destination:
        seen = _seen(hops[-1].src) or gw
        p.client_seen = seen
        hops.append(_answer_hop(len(hops) + 1, cluster, p.destination, seen, hops[-1].src))
    return p


def _host_mapping(cluster, container_port: int = 80) -> tuple[str, int, int]:
    """(listen address, host port, node port) of the control-plane's extraPortMapping to ``container_port``."""
    cfg = getattr(cluster, "config", None)
    for kn in getattr(cfg, "nodes", []) or []:
        if kn.role != "control-plane":
            continue
        for m in kn.extra_port_mappings:
            if m.container_port == container_port:
                return m.listen_address, m.host_port, m.container_port
    return "0.0.0.0", 8080, container_port


def _host_hops(cluster, host_rules, node, hops: list[Hop]) -> tuple[str, int]:
    """The host part of hostPort/Ingress: localhost:HOSTPORT -> docker-proxy -> node:80.
    Returns the (src, dport) the node then sees."""
    listen, hport, cport = _host_mapping(cluster)
    gw = _gateway(cluster)
    hops.append(Hop(len(hops) + 1, Component.CLIENT, "host", f"curl http://localhost:{hport}/ (or a name "
                    "that resolves to 127.0.0.1)",
                    f"127.0.0.1:{LOOPBACK_CLIENT_PORT}", f"127.0.0.1:{hport}"))
    evidence: list[str] = []
    dnat_dst = None
    if host_rules is not None:
        tr = _trace(host_rules, "127.0.0.1", "127.0.0.1", hport, _HostNode(gw))
        out = pick_outcome(tr)
        if out is not None:
            dnat_dst = out.destination
        for r in host_rules.iter_rules():
            if r.table == "nat" and r.target == "DNAT" and (r.option("tcp", "--dport") or
                                                             r.option("multiport", "--dports")):
                opt = r.option("tcp", "--dport")
                if opt is not None and opt.value == str(hport):
                    evidence.append(_strip_counter(r.line) if r.line else "")
    if dnat_dst:
        # the host routes the DNATed connection out of the kind bridge: from 127.0.0.1 it is
        # masqueraded to the bridge address when the host's rules say so (the trace's outcome)
        masq = bool(getattr(out, "masquerade", False))
        hops.append(Hop(len(hops) + 1, Component.DOCKER, "host", f"Docker's DNAT rule sends "
                        f"127.0.0.1:{hport} to {dnat_dst}" + (f"; MASQUERADE: the source becomes {gw}" if masq
                                                              else ""),
                        f"{gw if masq else '127.0.0.1'}:{LOOPBACK_CLIENT_PORT}", dnat_dst, "data", tuple(evidence),
                        REWROTE_BOTH if masq else REWROTE_DST))
        return gw, int(dnat_dst.rsplit(":", 1)[1])
    hops.append(Hop(len(hops) + 1, Component.DOCKER_PROXY, "host",
                    f"docker-proxy listens on {listen}:{hport}; for 127.0.0.1 the kernel DNAT is skipped "
                    f"(the DOCKER rule needs a non-loopback destination), so docker-proxy accepts and opens "
                    f"a new connection to {node.ip}:{cport} from the bridge address {gw}",
                    f"{gw}:{EPHEMERAL_PORT}", f"{node.ip}:{cport}", "data",
                    tuple(evidence) + (f"docker run --publish {listen}:{hport}:{cport}/TCP (extraPortMappings)",),
                    NEW_CONNECTION))
    return gw, cport


class _HostNode:
    """The learner's machine as the tracer needs it: its loopback and its address on the kind bridge."""
    role = "host"
    pod_cidr = ""

    def __init__(self, gw: str):
        self.name = "host"
        self.ip = gw
        self.local_ips = ("127.0.0.1", gw)


def _host_port(*, cluster, rules, host_rules, nodes, namespace, prefer) -> Path:
    node = _control_plane(nodes)
    hops: list[Hop] = []
    src, dport = _host_hops(cluster, host_rules, node, hops)
    ctrl = controller_pod(cluster)
    notes = ["this path does not use a NodePort: the CNI portmap plugin's rules DNAT the node's port "
             f"{dport} straight to the pod that asked for hostPort {dport}"]
    p, out = _finish_kernel_path(Way.HOST_PORT, cluster, rules, node, hops, "host", src, node.ip, dport,
                                 prefer, in_interface="eth0", notes=notes)
    if ctrl is None:
        p.notes.append("no pod has hostPort 80: install the ingress controller first")
    if out is not None and p.destination:
        seen = _seen(hops[-1].src) or src
        p.client_seen = seen
        pod = _pod_by_ip(cluster, p.destination.rsplit(":", 1)[0])
        comp = Component.INGRESS_CONTROLLER if pod is not None and pod is ctrl else Component.APP
        hops.append(Hop(len(hops) + 1, comp, _pod_place(pod), f"{pod.name if pod else 'the pod'} accepts "
                        f"on {p.destination}; it sees the client as {seen}", hops[-1].src, p.destination,
                        "data", ()))
    return p


def _route_get(route, *names, default=None):
    for n in names:
        if isinstance(route, dict) and n in route:
            return route[n]
        if hasattr(route, n):
            return getattr(route, n)
    return default


def ingress_route_rows(cluster) -> list[dict]:
    """The ingress controller's routing table as rows (host, path, service, upstream pod IPs)."""
    from .model import ingress_routes
    rows = []
    for r in ingress_routes(cluster):
        ups = _route_get(r, "upstreams", "endpoints", default=()) or ()
        rows.append({
            "host": _route_get(r, "host", default="") or "*",
            "path": _route_get(r, "path", default="/"),
            "path_type": _route_get(r, "path_type", "pathType", default=""),
            "namespace": _route_get(r, "namespace", default=""),
            "ingress": _route_get(r, "ingress", "ingress_name", "name", default=""),
            "service": _route_get(r, "service", "service_name", default=""),
            "port": _route_get(r, "port", "service_port", default=""),
            "upstreams": ",".join(str(u) for u in ups),
        })
    return rows


def choose_upstream(route, counter: int = 0) -> str | None:
    """Round-robin over a route's upstreams: the ``counter``-th request goes to upstream counter % n."""
    ups = list(_route_get(route, "upstreams", "endpoints", default=()) or ())
    if not ups:
        return None
    return str(ups[counter % len(ups)])


def _ingress(*, cluster, rules, host_rules, nodes, namespace, prefer, host, url_path) -> Path:
    from .model import ingress_routes, match_route
    node = _control_plane(nodes)
    hops: list[Hop] = []
    src, dport = _host_hops(cluster, host_rules, node, hops)
    p, out = _finish_kernel_path(Way.INGRESS, cluster, rules, node, hops, "host", src, node.ip, dport, None,
                                 in_interface="eth0")
    if out is None or not p.destination:
        return p
    seen = _seen(hops[-1].src) or src
    ctrl_dest = p.destination
    ctrl = _pod_by_ip(cluster, ctrl_dest.rsplit(":", 1)[0])
    routes = ingress_routes(cluster)
    if host is None:
        # the host the course's Ingress names (its first rule with a host), as a browser would send it
        host = next((r.host for r in routes if r.host and not r.default and "*" not in r.host), "localhost")
    route = match_route(routes, host, url_path)
    place = _pod_place(ctrl, "the ingress controller")
    if route is None:
        hops.append(Hop(len(hops) + 1, Component.INGRESS_CONTROLLER, place,
                        f"nginx accepts on {ctrl_dest} (client {seen}); no Ingress rule matches host "
                        f"{host} path {url_path}: 404 from the default server", hops[-1].src,
                        ctrl_dest, "data", ()))
        p.destination = None
        p.notes.append("no Ingress matches: the controller answers 404 itself")
        return p
    upstream = prefer if prefer else choose_upstream(route)
    rhost = _route_get(route, "host", default="") or "*"
    rpath = _route_get(route, "path", default="/")
    rsvc = _route_get(route, "service", "service_name", default="?")
    rport = _route_get(route, "port", "service_port", default="")
    service_upstream = bool(_route_get(route, "service_upstream", default=False))
    evidence = (f"Ingress rule host={rhost} path={rpath} -> service {rsvc}:{rport}",
                "upstreams: " + ", ".join(str(u) for u in (_route_get(route, "upstreams", "endpoints",
                                                                       default=()) or ())))
    ctrl_ip = ctrl.ip if ctrl is not None else ctrl_dest.rsplit(":", 1)[0]
    if upstream is None:
        hops.append(Hop(len(hops) + 1, Component.INGRESS_CONTROLLER, place,
                        f"route host={rhost} path={rpath} -> {rsvc}, which has no endpoints: 503",
                        hops[-1].src, ctrl_dest, "data", evidence))
        p.destination = None
        p.notes.append(f"{rsvc} has no ready endpoints: the controller answers 503")
        return p
    if service_upstream:
        svc = _service(cluster, rsvc, _route_get(route, "namespace", default="default") or "default")
        hops.append(Hop(len(hops) + 1, Component.INGRESS_CONTROLLER, place,
                        f"route host={rhost} path={rpath} -> {rsvc}: service-upstream, so nginx dials the "
                        f"ClusterIP {svc.cluster_ip}:{rport}", f"{ctrl_ip}:{EPHEMERAL_PORT}",
                        f"{svc.cluster_ip}:{rport}", "data", evidence, NEW_CONNECTION))
        cnode = _node_named(nodes, ctrl.node_name) if ctrl is not None else node
        tr = _trace(rules, ctrl_ip, svc.cluster_ip, int(rport), cnode or node)
        out2 = pick_outcome(tr)
        khops, src2, dst2 = kernel_hops(out2, place=f"node {(cnode or node).name}", start=len(hops) + 1,
                                        src=f"{ctrl_ip}:{EPHEMERAL_PORT}", dst=f"{svc.cluster_ip}:{rport}",
                                        routing=_routing_describer(cluster, cnode or node),
                                        masq_source=(cnode or node).ip)
        hops.extend(khops)
        upstream = out2.destination
        p.alternatives = _alternatives(tr)
        p.probability = out2.nominal
        seen2 = _seen(src2) or ctrl_ip
    else:
        hops.append(Hop(len(hops) + 1, Component.INGRESS_CONTROLLER, place,
                        f"nginx accepts on {ctrl_dest} (client {seen}), matches host={rhost} path={rpath} -> "
                        f"service {rsvc}:{rport}, and dials the endpoint {upstream} directly (no ClusterIP, "
                        f"no kube-proxy rule)", f"{ctrl_ip}:{EPHEMERAL_PORT}", upstream, "data", evidence,
                        NEW_CONNECTION))
        ups = [str(u) for u in (_route_get(route, "upstreams", "endpoints", default=()) or ())]
        p.alternatives = [(u, Fraction(1, len(ups))) for u in ups]
        p.probability = Fraction(1, len(ups)) if ups else None
        seen2 = ctrl_ip
        p.notes.append("the controller load-balances over the endpoints itself (round-robin), "
                       "so no KUBE-SVC rule is used between it and the app")
    p.destination = upstream
    p.client_seen = seen2
    p.forwarded_for = seen
    hops.append(_app_hop(len(hops) + 1, cluster, upstream, f"{seen2} (X-Forwarded-For: {seen})", hops[-1].src))
    return p
