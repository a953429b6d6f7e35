"""The shared pieces :mod:`k8slab.paths`' per-way builders assemble a path from: small views of the
cluster model (nodes, pods, Services, the ingress controller's pod, the client pod's IP, the source
MASQUERADE picks), and a traced packet turned into hops (:func:`pick_outcome`, :func:`kernel_hops`:
one hop per chain that changed something, the routing decision, the app's answering hop). Works on
NodeInfo and on model Nodes alike; every name here is re-exported by :mod:`k8slab.paths`.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Any, Iterable, Sequence

from .hops import REWROTE_BOTH, REWROTE_DST, REWROTE_NOTHING, REWROTE_SRC, Component, Hop
from .netfilter.owners import owner_of  # (re-exported by paths.py: chain_figure.py imports it from there)

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
