"""Each way into the cluster as an ordered list of hops, each owned by one component.

The types (Component, Way, Hop, Path) live in :mod:`k8slab.hops` and are re-exported here; the
builders below derive a path from a backend's actual rules.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable, Sequence

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

from .netfilter.owners import owner_of  # noqa: E402  (re-exported: plot.py imports it from here)

APP_NAME = "url-shortener"
COURSE_CLIENT_POD = "k8slab-client"      # kind/manifests/client.yaml (Lab.client_pod)
INGRESS_NAMESPACE = "ingress-nginx"
#: what owners.owner_of returns -> the component drawn for a hop
OWNER_COMPONENTS = {
    "kube-proxy": Component.KUBE_PROXY,
    "CNI portmap": Component.CNI_PORTMAP,
    "Docker": Component.DOCKER,
    "kind": Component.KINDNET,
    "kindnet": Component.KINDNET,
    "kubelet": Component.KUBELET,
}
#: rule actions that change the packet (a group of hops is only shown when it leads to one of these)
_EFFECTS = ("DNAT", "REDIRECT", "SNAT", "MASQUERADE", "MARK", "REJECT", "DROP")


def _component_for(table: str, chain: str, target: str | None) -> Component:
    """The component behind a hop: the author of the chain, or for a jump written into a built-in
    chain, the author of the chain it jumps to (kube-proxy's PREROUTING -> KUBE-SERVICES)."""
    owner = owner_of(table, chain)
    if owner == "builtin" and target:
        owner = owner_of(table, target)
    return OWNER_COMPONENTS.get(owner, Component.ROUTING)


def _strip_counter(line: str) -> str:
    from .counters import strip_counters
    return strip_counters(line.strip())


# --------------------------------------------------------------------------------------------
# small views of the model (work on NodeInfo and on model Nodes alike)

def _node_named(nodes: Sequence[Any], name: str | None):
    for n in nodes:
        if n.name == name:
            return n
    return None


def _control_plane(nodes: Sequence[Any]):
    for n in nodes:
        if getattr(n, "role", "") == "control-plane":
            return n
    if not nodes:
        raise ValueError("no nodes: bring the lab up first")
    return nodes[0]


def _local_ips(node) -> tuple[str, ...]:
    ips = tuple(getattr(node, "local_ips", ()) or ())
    return ips or (("127.0.0.1", node.ip) if node.ip else ("127.0.0.1",))


def _gateway(cluster) -> str:
    gw = getattr(cluster, "gateway", None)
    return gw if isinstance(gw, str) and gw else "172.18.0.1"


def _is_app(pod, app: str) -> bool:
    labels = getattr(pod, "labels", {}) or {}
    return labels.get("app") == app or labels.get("app.kubernetes.io/name") == app


def client_pod_ip(pods: Iterable[Any], node, exclude_app: str = APP_NAME) -> str:
    """A pod IP on ``node`` that is not one of ``exclude_app``'s pods: the client the course uses for
    "from inside the cluster" (its client pod ``k8slab-client`` first, when it runs there). Accepts model Pods or API dicts. Falls back to an address of the
    node's pod CIDR that no pod holds (say .250), so a trace always has a pod-network source."""
    import ipaddress
    candidates = []
    for p in pods:
        if isinstance(p, dict):
            meta, spec, status = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
            name, node_name, ip = meta.get("name", ""), spec.get("nodeName"), status.get("podIP")
            host_net = bool(spec.get("hostNetwork"))
            labels = meta.get("labels") or {}
            is_app = labels.get("app") == exclude_app or labels.get("app.kubernetes.io/name") == exclude_app
        else:
            name, node_name, ip = p.name, p.node_name, p.ip
            host_net, is_app = bool(p.host_network), _is_app(p, exclude_app)
        if node_name == node.name and ip and not host_net and not is_app and ip != node.ip:
            candidates.append((name, ip))
    if candidates:
        # the course's client pod (kind/manifests/client.yaml) when it exists: requests "from a pod" start there
        return sorted(candidates, key=lambda c: (c[0] != COURSE_CLIENT_POD, c))[0][1]
    net = ipaddress.ip_network(node.pod_cidr)
    return str(net.network_address + min(250, net.num_addresses - 2))


def masquerade_source(cluster, node, dest_ip: str) -> str:
    """The source address MASQUERADE picks on ``node`` for a packet leaving toward ``dest_ip``: the
    address of the interface the packet leaves by.

    Toward a pod on the same node the packet leaves by that pod's host-side veth. kindnet's CNI is
    ``ptp``, and ptp puts the pod CIDR's gateway address (.1, e.g. 10.244.0.1/32) on the host side of
    every veth it creates, so the app sees 10.244.0.1. (Read in the containernetworking ptp plugin;
    ../shared/notes only says kindnet chains ptp with host-local, so this is our inference, and the
    netns backend, which runs the real ptp plugin, is the check.) Toward a pod on another node the
    packet leaves by eth0, so the source is the node's IP on the Docker network (172.18.0.x)."""
    import ipaddress
    try:
        if ipaddress.ip_address(dest_ip) in ipaddress.ip_network(node.pod_cidr):
            return str(ipaddress.ip_network(node.pod_cidr).network_address + 1)
    except ValueError:
        pass
    return node.ip


def _service(cluster, name: str, namespace: str = "default"):
    for s in cluster.services:
        if s.name == name and s.namespace == namespace:
            return s
    return None


def _app_pods(cluster, svc) -> list:
    if svc is None:
        return []
    pods = cluster.selected_pods(svc) if hasattr(cluster, "selected_pods") else []
    return [p for p in pods if p.ip]


def _pod_by_ip(cluster, ip: str | None):
    if not ip:
        return None
    if hasattr(cluster, "pod_by_ip"):
        return cluster.pod_by_ip(ip)
    for p in cluster.pods:
        if p.ip == ip:
            return p
    return None


def _pod_place(pod, fallback: str = "pod") -> str:
    if pod is None:
        return fallback
    return f"pod {pod.name} ({pod.node_name})"


def controller_pod(cluster):
    """The ingress controller's pod (a hostPort 80 pod of ingress-nginx), or None."""
    best = None
    for p in cluster.pods:
        ports = {hp.host_port for hp in p.host_ports()} if hasattr(p, "host_ports") else set()
        if 80 in ports and p.ip and not p.host_network:
            if p.namespace == INGRESS_NAMESPACE or "ingress" in p.name:
                return p
            best = best or p
    return best


# --------------------------------------------------------------------------------------------
# tracing and turning a trace into hops

def pick_outcome(trace, prefer: str | None = None):
    """The outcome a path draws: the one reaching ``prefer`` (an ``ip:port``) if given, else the first
    accepted outcome of the baseline world (the tracer lists outcomes in rule order)."""
    outcomes = trace.baseline() or list(trace.outcomes)
    if prefer is not None:
        for o in outcomes:
            if o.destination == prefer:
                return o
    for o in outcomes:
        if o.verdict == "ACCEPT":
            return o
    return outcomes[0] if outcomes else None


def _effective_hops(outcome) -> set[int]:
    """Indices of the hops that made something happen: the rules that changed the packet (DNAT, mark,
    masquerade, a verdict) and the jumps that led to them. A jump into a chain that came back
    empty-handed is left out of the drawn path (it stays in the trace)."""
    keep: set[int] = set()
    stack: list[tuple[str, int | None]] = []      # (chain, index of the hop that jumped into it)
    cur: tuple[str, str] | None = None
    for i, h in enumerate(outcome.hops):
        if h.rule is None:
            if h.action.startswith("end of chain") and len(stack) > 1:
                stack.pop()
            continue
        if h.action.startswith("no match"):
            continue
        if (h.hook, h.table) != cur:
            cur = (h.hook, h.table)
            stack = [(h.chain, None)]
        names = [c for c, _ in stack]
        if h.chain in names:
            while stack[-1][0] != h.chain:
                stack.pop()
        else:
            stack.append((h.chain, None))
        act = h.action.split(" [", 1)[0]
        if act.startswith(_EFFECTS):
            keep.add(i)
            keep.update(j for _, j in stack if j is not None)
        if act.startswith(("jump ", "goto ")) and h.rule.target:
            if act.startswith("goto ") and len(stack) > 1:
                stack.pop()
            stack.append((h.rule.target, i))
        elif act.startswith("RETURN") and len(stack) > 1:
            stack.pop()
    return keep


def kernel_hops(outcome, *, place: str, start: int, src: str | None, dst: str | None,
                routing: Any = None, masq_source: str | None = None) -> tuple[list[Hop], str | None, str | None]:
    """Hops for one traced outcome: one per chain that mattered, in the order the packet met them.

    ``routing(dst) -> (component, action)`` describes the routing decision (None: not drawn).
    Returns the hops and the (src, dst) after them."""
    keep = _effective_hops(outcome)
    hops: list[Hop] = []
    groups: list[list[Any]] = []
    for i, h in enumerate(outcome.hops):
        if h.rule is None:
            if h.hook == "routing":
                groups.append([h])
            continue
        if i not in keep:
            continue
        if groups and groups[-1][0].rule is not None and (groups[-1][0].hook, groups[-1][0].table,
                                                           groups[-1][0].chain) == (h.hook, h.table, h.chain):
            groups[-1].append(h)
        else:
            groups.append([h])
    for group in groups:
        first = group[0]
        if first.rule is None:          # the routing decision
            if routing is None:
                continue
            comp, action = routing(dst)
            hops.append(Hop(start + len(hops), comp, place, action, src, dst, "data", (first.action,)))
            continue
        actions = []
        evidence = []
        changed: set[str] = set()
        for h in group:
            act = h.action
            actions.append(act)
            evidence.append(_strip_counter(h.rule.line) if h.rule.line else (h.line or ""))
            base = act.split(" [", 1)[0]
            if base.startswith(("DNAT ", "REDIRECT ")):
                new_dst = base.split(" ", 1)[1]
                if new_dst != dst:
                    changed.add("dst")
                dst = new_dst
            elif base.startswith("MASQUERADE") or base.startswith("SNAT"):
                new = masq_source
                if base.startswith("SNAT") and outcome.source:
                    new = outcome.source
                if new and src:
                    port = src.rsplit(":", 1)[1] if ":" in src else ""
                    # --random-fully (kube-proxy's MASQUERADE) and --random pick a new source port;
                    # otherwise NAT keeps the port when it is free (iptables-extensions(8), MASQUERADE)
                    if port and _randomizes_port(h.rule):
                        port = "(random)"
                    new_src = f"{new}:{port}" if port else new
                    if new_src != src:
                        changed.add("src")
                    src = new_src
        comp = _component_for(first.table, first.chain, group[-1].rule.target)
        text = f"{first.table} {first.chain}: " + "; ".join(actions)
        hops.append(Hop(start + len(hops), comp, place, text, src, dst, "data",
                        tuple(evidence), _rewrote(changed)))
    return hops, src, dst


def _randomizes_port(rule) -> bool:
    """A source NAT that picks a new port: iptables ``--random-fully``/``--random``, nftables
    ``masquerade fully-random``/``random`` (kube-proxy writes both forms)."""
    opt = getattr(rule, "target_option", None)
    if callable(opt):
        return any(opt(o) is not None for o in ("--random-fully", "--random"))
    words = str(getattr(rule, "line", "") or "").replace(",", " ").split()
    for verb in ("masquerade", "snat"):
        if verb in words:
            return any(w in ("fully-random", "random") for w in words[words.index(verb) + 1:])
    return False


def _rewrote(changed: set[str]) -> str:
    if changed >= {"src", "dst"}:
        return REWROTE_BOTH
    return REWROTE_DST if "dst" in changed else REWROTE_SRC if "src" in changed else REWROTE_NOTHING


def _routing_describer(cluster, node):
    """routing(dst) for a node: a local pod (veth), another node's pod (kindnet's route), or local."""
    import ipaddress

    def describe(dst: str | None):
        ip = dst.rsplit(":", 1)[0] if dst else ""
        pod = _pod_by_ip(cluster, ip)
        if pod is not None and pod.node_name == node.name and not pod.host_network:
            return Component.ROUTING, f"route {ip} to the pod's veth on {node.name} (ptp: one /32 route per pod)"
        for other in cluster.nodes:
            try:
                if other.name != node.name and ipaddress.ip_address(ip) in ipaddress.ip_network(other.pod_cidr):
                    return (Component.KINDNET, f"route {ip} via {other.ip} ({other.name}): kindnet's route for "
                                               f"{other.pod_cidr}")
            except ValueError:
                break
        if ip in _local_ips(node):
            return Component.ROUTING, f"{ip} is local to {node.name}: deliver to a local socket"
        return Component.ROUTING, f"route {ip} out of {node.name}"
    return describe


def _trace(ruleset, src: str, dst: str, dport: int, node, in_interface: str | None = None):
    from .netfilter.tracer import NodeContext, Packet, trace
    pod_cidr = getattr(node, "pod_cidr", "")
    ctx = NodeContext(local_ips=frozenset(_local_ips(node)), pod_cidrs=(pod_cidr,) if pod_cidr else (),
                      name=node.name)
    from .netfilter.nft import NftRuleset, trace_nft
    if isinstance(ruleset, NftRuleset):      # kube-proxy's nftables mode: the same Trace, from nft's rules
        from .netfilter.nft.trace import with_iptables_actions
        return with_iptables_actions(trace_nft(ruleset, Packet(src=src, dst=dst, dport=int(dport),
                                                               in_interface=in_interface), ctx))
    return trace(ruleset, Packet(src=src, dst=dst, dport=int(dport), in_interface=in_interface), ctx)


def _alternatives(trace) -> list[tuple[str | None, Fraction]]:
    return [(d, p.limit_denominator(1000)) for d, p in trace.by_destination().items()]


def _app_hop(index: int, cluster, dest: str | None, client_seen: str | None, src: str | None) -> Hop | None:
    if dest is None:
        return None
    pod = _pod_by_ip(cluster, dest.rsplit(":", 1)[0])
    return Hop(index, Component.APP, _pod_place(pod), f"the app accepts on {dest}; it sees the client as "
               f"{client_seen}", src, dest, "data", ())


def _answer_hop(index: int, cluster, dest: str | None, client_seen: str | None, src: str | None) -> Hop | None:
    """The last hop of a Service's path: the app, or the ingress controller when the Service is the
    controller's own (its NodePort or ClusterIP), so that hop is not labelled "app"."""
    pod = _pod_by_ip(cluster, dest.rsplit(":", 1)[0]) if dest else None
    ctrl = controller_pod(cluster)
    if pod is not None and ctrl is not None and pod is ctrl:
        return Hop(index, Component.INGRESS_CONTROLLER, _pod_place(pod), f"the ingress controller (nginx) "
                   f"accepts on {dest}; it sees the client as {client_seen}", src, dest, "data", ())
    return _app_hop(index, cluster, dest, client_seen, src)


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
