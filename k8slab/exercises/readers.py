"""Reading the lab: each exercise's truth, worked out from the lab now.

Owns the small readers several exercises share (:func:`control_plane`, :func:`client_pod`,
:func:`app_pods`, :func:`controller_pod`, :func:`address_roles`, ``_service``, ``_node_port``) and
the truth functions the bank's exercises call (``expected(lab)``: a measurement or a value read off
the rules, e.g. ``_app_ruleset_probabilities``, ``_trace_chains``, and 09's nftables ones), with the
course objects they look for (``APP``, ``NODEPORT_SERVICE``, ``COURSE_INGRESS``, ...).
"""
from __future__ import annotations

import ipaddress
import re
from fractions import Fraction

APP = "url-shortener"
INGRESS_NS = "ingress-nginx"

#: The course's Ingress (host shortener.localtest.me -> url-shortener:80) and NodePort Service.
COURSE_INGRESS = "kind/manifests/ingress.yaml"
COURSE_NODEPORT = "kind/manifests/app-nodeport.yaml"
NODEPORT_SERVICE = "url-shortener-nodeport"


# ---------------------------------------------------------------------------------------------
# Reading the lab (small, shared by several exercises)

def _service(lab, name: str, namespace: str = "default") -> dict:
    svcs = lab.get("services")
    row = svcs[(svcs["name"] == name) & (svcs["namespace"] == namespace)]
    if row.empty:
        from ..errors import NotFound
        raise NotFound(f"no Service {namespace}/{name} in the lab yet: run the notebook's first cells")
    return row.iloc[0].to_dict()


def _first_port(svc: dict) -> tuple[int, int | None]:
    """(port, nodePort) of a Service's first port, from get('services')' ``ports`` column."""
    first = str(svc["ports"]).split(",")[0]
    m = re.match(r"(\d+)(?::(\d+))?/", first)
    if not m:
        raise ValueError(f"cannot read a port from {svc['ports']!r}")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def _node_port(svc: dict, port: int = 80) -> int:
    for part in str(svc["ports"]).split(","):
        m = re.match(r"(\d+)(?::(\d+))?/", part)
        if m and int(m.group(1)) == port and m.group(2):
            return int(m.group(2))
    raise ValueError(f"{svc['name']} has no NodePort for port {port} ({svc['ports']})")


def control_plane(lab) -> dict:
    nodes = lab.get("nodes")
    cp = nodes[nodes["role"] == "control-plane"]
    return (cp if not cp.empty else nodes).iloc[0].to_dict()


def client_pod(lab) -> str:
    """The pod in-cluster requests start from, as ``namespace/name``: the course's own client pod
    (curl, on the pod network, not the app's and not the ingress controller), created on first use."""
    return lab.client_pod()


def app_pods(lab):
    pods = lab.get("pods")
    return pods[(pods["app"] == APP) & (pods["namespace"] == "default")]


def controller_pod(lab) -> dict:
    pods = lab.get("pods")
    ctl = pods[(pods["namespace"] == INGRESS_NS) & (pods["host_ports"].astype(str) != "")]
    if ctl.empty:
        ctl = pods[pods["name"].astype(str).str.contains("controller")]
    if ctl.empty:
        from ..errors import NotFound
        raise NotFound("no ingress controller pod: run lab.install_ingress_controller() first")
    return ctl.iloc[0].to_dict()


def address_roles(ip: str | None, lab) -> set[str]:
    """Words that name what ``ip`` is in this lab: loopback, node, pod, controller, host, ..."""
    if not ip:
        return set()
    ip = str(ip).split(":")[0]
    roles: set[str] = {ip}
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return roles
    if addr.is_loopback:
        roles |= {"loopback", "localhost", "127.0.0.1"}
    nodes = lab.get("nodes")
    for _, n in nodes.iterrows():
        net = ipaddress.ip_network(str(n["pod_cidr"]), strict=False)
        if ip == n["ip"]:
            roles |= {"node", "node ip", n["name"]}
        if addr == net.network_address + 1:      # the node's own address on its pod network
            roles |= {"node", "node ip", "gateway"}
        node_net = ipaddress.ip_network(f"{n['ip']}/16", strict=False)
        if addr == node_net.network_address + 1:   # the Docker bridge of network "kind": the host
            roles |= {"host", "docker gateway", "gateway"}
    pods = lab.get("pods")
    hit = pods[pods["ip"] == ip]
    if not hit.empty:
        roles |= {"pod", "pod ip", str(hit.iloc[0]["name"])}
        if str(hit.iloc[0]["namespace"]) == INGRESS_NS:
            roles |= {"controller", "ingress controller"}
    svcs = lab.get("services")
    if ip in set(svcs["cluster_ip"].astype(str)):
        roles |= {"clusterip", "service", "cluster ip"}
    return roles


# ---------------------------------------------------------------------------------------------
# What the lab shows, per exercise

def _app_ruleset_probabilities(lab) -> list[float]:
    """The ``--probability`` of each rule of the app's KUBE-SVC chain, in order (1.0 for the last)."""
    svc = _service(lab, APP)
    rs = lab.iptables()
    svc_chain = None
    for rule in rs.iter_rules():
        if rule.table == "nat" and rule.chain == "KUBE-SERVICES" and rule.target \
                and rule.target.startswith("KUBE-SVC-") and rule.destination is not None \
                and rule.destination.value.split("/")[0] == svc["cluster_ip"]:
            svc_chain = rule.target
            break
    if svc_chain is None:
        raise LookupError(f"no KUBE-SERVICES rule for {svc['cluster_ip']}: has kube-proxy synced?")
    probs = []
    for rule in rs.chain("nat", svc_chain).rules:
        if rule.target and rule.target.startswith("KUBE-SEP-"):
            opt = rule.option("statistic", "--probability")
            probs.append(float(opt.value) if opt is not None else 1.0)
    return probs


def _trace_chains(lab, dst: str, dport: int, src: str | None = None) -> list[str]:
    """The nat chains (hash stripped) a new connection passes, in order, for the first outcome."""
    tr = lab.trace(dst, dport, src=src)
    out: list[str] = []
    for hop in tr.outcomes[0].hops:
        if hop.table != "nat" or hop.hook not in ("PREROUTING", "OUTPUT"):   # the DNAT stage only
            continue
        name = re.sub(r"-[A-Z0-9]{16}$", "", hop.chain)
        name = re.sub(r"^CNI-DN-[0-9a-f]+$", "CNI-DN", name)
        if name not in out:
            out.append(name)
    return out


def _mark_masq_rule(lab) -> str | None:
    """The condition on the app's KUBE-SVC rule that jumps to KUBE-MARK-MASQ, as the rule prints it
    ("! -s 10.244.0.0/16 -d 10.96.30.168/32 ... -j KUBE-MARK-MASQ"), or None when there is none."""
    try:
        cluster_ip = str(_service(lab, APP)["cluster_ip"])
        rules = list(lab.iptables().iter_rules())
    except Exception:          # noqa: BLE001  (a hint only: no lab, no rules, no text)
        return None
    for rule in rules:
        if rule.table == "nat" and rule.chain.startswith("KUBE-SVC-") and rule.target == "KUBE-MARK-MASQ" \
                and rule.destination is not None and rule.destination.value.split("/")[0] == cluster_ip \
                and rule.source is not None:
            src = ("! " if rule.source.negated else "") + f"-s {rule.source.value}"
            return f"{src} -d {rule.destination.value} ... -j KUBE-MARK-MASQ"
    return None


def _app_endpoints(lab) -> list[str]:
    """The app Service's endpoints now, as "ip:port" (lab.get('endpoints'))."""
    eps = lab.get("endpoints")
    rows = eps[(eps["service"] == APP) & (eps["namespace"] == "default")]
    return [str(e) for e in rows["endpoint"]]


def _whoami_via_port_forward(lab):
    with lab.port_forward(f"svc/{APP}", local_port=18080, remote_port=80) as pf:
        return lab.request(f"http://127.0.0.1:{pf.local_port}/whoami")


def _nat_rules_moved_by_port_forward(lab) -> int:
    with lab.port_forward(f"svc/{APP}", local_port=18080, remote_port=80) as pf:
        with lab.counters() as c:
            lab.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    return len(c.translations)


def _nodeport_client(lab):
    svc = _service(lab, NODEPORT_SERVICE)
    node = control_plane(lab)
    return lab.request(f"http://{node['ip']}:{_node_port(svc, 80)}/whoami", from_="host").client


def _listeners_on_cluster_ip(lab) -> int:
    svc = _service(lab, APP)
    socks = lab.sockets()
    return int(socks["local"].astype(str).str.startswith(svc["cluster_ip"] + ":").sum())


def _owner_map(lab) -> dict:
    rules = lab.iptables().rules
    out = {}
    for chain in ("CNI-HOSTPORT-DNAT", "KUBE-NODEPORTS"):
        hit = rules[rules["chain"] == chain]
        if not hit.empty:
            out[chain] = str(hit.iloc[0]["owner"])
    return out


def _hostport_destination(lab) -> str:
    rs = lab.iptables()
    for rule in rs.iter_rules():
        if rule.table == "nat" and rule.chain.startswith("CNI-DN-") and rule.target == "DNAT":
            dport = rule.option("tcp", "--dport")
            if dport is not None and dport.value == "80":
                return rule.target_option("--to-destination").value
    raise LookupError("no CNI-DN-* DNAT rule for port 80: is the ingress controller installed?")


def _probe_ingress(lab) -> dict:
    """Apply a throwaway Ingress, measure what changed, delete it again."""
    probe = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
             "metadata": {"name": "k8slab-probe", "namespace": "default"},
             "spec": {"ingressClassName": "nginx", "rules": [{"host": "probe.k8slab.test", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": APP, "port": {"number": 80}}}}]}}]}}
    pods0, socks0 = len(lab.get("pods")), set(lab.sockets()["local"])
    try:
        lab.apply(probe)
        pods1, socks1 = len(lab.get("pods")), set(lab.sockets()["local"])
    finally:
        lab.delete("ingress", "k8slab-probe")
    return {"new_pods": pods1 - pods0, "new_sockets": len(socks1 - socks0)}


def _ingress_request(lab, path: str = "/whoami"):
    routes = lab.ingress_routes()
    host = None
    if not routes.empty:
        h = str(routes.iloc[0]["host"])
        host = None if h in ("*", "", "None") else h
    return lab.request(f"http://localhost:8080{path}", host=host)


def _kube_svc_moved_by_ingress(lab) -> bool:
    with lab.counters() as c:
        _ingress_request(lab)
    return c.moved("KUBE-SVC-")


def _upstream_kind(lab) -> str:
    resp = _ingress_request(lab)
    dest = resp.destination or ""
    roles = address_roles(dest.split(":")[0], lab) if dest else set()
    return "pod ip" if "pod" in roles else ("clusterip" if "clusterip" in roles else dest)


def _ways_using_api_server(lab) -> set[str]:
    return {w for w in ("port-forward", "clusterip", "nodeport", "hostport", "ingress")
            if lab.path(w).uses_api_server}


def _ways_surviving_api_down(lab) -> set[str]:
    # A prediction from each path's components: a way keeps working when no hop needs the API server.
    return {w for w in ("port-forward", "clusterip", "nodeport", "hostport", "ingress")
            if not lab.path(w).uses_api_server}


def _proxy_mode(lab) -> str:
    rs = lab.iptables()
    if rs.chain("nat", "KUBE-SERVICES") is not None:
        return "iptables"
    try:        # nftables mode: kube-proxy's own nft table (kind/cluster-nftables.yaml)
        if lab.nftables().table("ip", "kube-proxy") is not None:
            return "nftables"
    except (NotImplementedError, AttributeError):
        pass
    return "not iptables"


def _mark_of(lab, chain: str) -> str:
    c = lab.iptables().chain("nat", chain)
    for rule in c.rules if c else []:
        opt = rule.target_option("--set-xmark") or rule.target_option("--or-mark")
        if opt is not None and opt.value:
            return opt.value.split("/")[0]
    raise LookupError(f"no MARK rule in nat {chain}")


def _nodeport_chain(lab) -> str:
    node = control_plane(lab)
    svc = _service(lab, NODEPORT_SERVICE)        # notebook 4's own NodePort (no controller there yet)
    chains = _trace_chains(lab, node["ip"], _node_port(svc, 80), src="172.18.0.1")
    after = chains[chains.index("KUBE-SERVICES") + 1:] if "KUBE-SERVICES" in chains else chains
    return after[0] if after else ""


# =============================================================================================
# 09: the same Service in kube-proxy's nftables mode (notebooks/09-nftables-mode.ipynb). Each truth
# is read from the lab in nftables mode (lab.nftables(), lab.trace), or on a lab in iptables mode
# predicted from kube-proxy's nftables rules rendered for the lab's own objects.

def _nft_view(lab):
    """The node's nft ruleset: the lab's own in nftables mode, else kube-proxy's nftables rules
    rendered for the lab's objects (what the same cluster would have in nftables mode)."""
    if getattr(lab, "proxy_mode", "iptables") == "nftables":
        return lab.nftables()
    from ..netfilter.nft import parse_nft
    from ..netfilter.nft.node import render_node_kube_proxy
    return parse_nft(render_node_kube_proxy(lab.backend.model(), None, form="ruleset"))


def _nft_trace(lab, dst: str, dport: int):
    from ..netfilter.nft import trace_nft
    from ..netfilter.tracer import NodeContext, Packet
    info = lab.nodes()[0]
    return trace_nft(_nft_view(lab), Packet(src=lab._default_source(info), dst=dst, dport=int(dport)),
                     NodeContext(local_ips=tuple(info.local_ips), pod_cidrs=(info.pod_cidr,) if info.pod_cidr else (),
                                 name=info.name))


def _services_rules_passed(lab) -> int:
    """How many rules of kube-proxy's `services` chain a connection to the app's ClusterIP meets."""
    t = _nft_trace(lab, _service(lab, APP)["cluster_ip"], 80)
    return max(h.position for h in t.outcomes[0].hops if h.chain == "services" and h.position)


def _numgen_probabilities(lab) -> list:
    t = _nft_trace(lab, _service(lab, APP)["cluster_ip"], 80)
    hop = next(h for h in t.outcomes[0].hops if h.rule is not None and "numgen random mod" in h.rule.expr)
    n = int(re.search(r"numgen random mod (\d+)", hop.rule.expr).group(1))
    return [Fraction(1, n)] * n


def _service_map_key(lab) -> list[str]:
    rs = _nft_view(lab)
    ch = rs.chain("ip", "kube-proxy", "services")
    rule = next(r for r in ch.rules if "@service-ips" in r.expr)
    return [f.strip() for f in rule.expr.split(" vmap ")[0].split(" . ")]
