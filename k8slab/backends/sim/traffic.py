"""The sim's predicted traffic: a request followed hop by hop, and the Response built from the traces.

Owns :func:`request` (resolve the name, then from the host, a node or a pod) and the hops:
:func:`_from_host` (loopback, docker-proxy, the kind bridge's gateway), :func:`_to_node_ip`,
:func:`_enter` (a new connection meets a node's rules: REJECT, DROP, DNAT/MASQUERADE, conntrack, on
to a pod, a node or a local socket), :func:`_deliver_pod`, and the user-space programs on the way:
:func:`_ingress` (ingress-nginx: host/path match, round-robin upstreams, its proxy headers) and
:func:`_app` (app/server.py's answers), plus :class:`_Http` (what travels with a request) and the
helpers that name a verdict's rule. Rules, counters and the draw among outcomes are :mod:`.rules`;
conntrack and sockets :mod:`.kernel`.
"""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ...errors import NotFound
from ...paths import APP_NAME, controller_pod, masquerade_source
from ..base import Response, resolves_to_loopback
from .kernel import _is_app
from .rules import HOST

if TYPE_CHECKING:  # pragma: no cover
    from .backend import SimBackend
    from .portforward import SimPortForward


@dataclass
class _Http:
    """What travels with a predicted request from hop to hop."""
    host: str
    path: str
    xff: str | None = None
    counted: bool = True
    notes: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)   # request headers as the app receives them


def request(b: "SimBackend", url: str, *, host: str | None = None, from_: str = "host",
            source: str | None = None, timeout: float = 10.0) -> Response:
    c = b._need()
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host_header = host or parts.netloc.rpartition("@")[2]
    http = _Http(host=host_header, path=path,
                 headers={"Host": host_header, "User-Agent": "curl/8.5.0", "Accept": "*/*"})

    def fail(error: str, **kw) -> Response:
        return Response(url, None, "", from_=from_, backend=b.kind, predicted=True, error=error, **kw)

    if parts.scheme == "https":
        return fail("the sim models plain HTTP only (no TLS); use http://")
    ip = _resolve(b, parts.hostname, from_)
    if ip is None:
        return fail(f"could not resolve host {parts.hostname!r} from the {from_} (the sim knows "
                    "localhost, *.localtest.me, IP addresses, and Service names from inside pods)")
    if from_ == "host":
        resp = _from_host(b, ip, port, http)
    elif from_ == "node":
        n = b._node(source)
        resp = _enter(b, n.name, n.ip, b._next_sport(), ip, port, None, http)
    elif from_ == "pod":
        pod = _source_pod(b, source)
        if ip == pod.ip:
            resp = _deliver_pod(b, pod, pod.ip, b._next_sport(), port, http)
        else:
            resp = _enter(b, pod.node_name, pod.ip, b._next_sport(), ip, port, _veth(pod), http)
    else:
        raise ValueError(f"from_ must be 'host', 'node' or 'pod', not {from_!r}")
    resp.url, resp.from_, resp.backend, resp.predicted = url, from_, b.kind, True
    del c
    return resp


def _resolve(b: "SimBackend", hostname: str, from_: str) -> str | None:
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    h = hostname.lower().rstrip(".")
    if resolves_to_loopback(h):
        return "127.0.0.1"
    if from_ == "pod":
        # CoreDNS answers Service names inside the cluster (the DNS lookup itself is not modelled)
        labels = h.split(".")
        ns = labels[1] if len(labels) > 1 and labels[1] != "svc" else "default"
        if len(labels) == 1 or (len(labels) >= 2 and (len(labels) == 2 or labels[2] == "svc")):
            try:
                svc = b._need().service(labels[0], ns)
                return svc.cluster_ip
            except NotFound:
                return None
    return None


def _source_pod(b: "SimBackend", source: str | None):
    c = b._need()
    if source is None:
        from ...paths import client_pod_ip
        ip = client_pod_ip(c.pods, c.control_plane)
        pod = c.pod_by_ip(ip)
        if pod is None:
            raise NotFound("no client pod on the control-plane; pass source='<pod name>'")
        return pod
    return b._find_pod(source)


def _from_host(b: "SimBackend", ip: str, port: int, http: _Http) -> Response:
    c = b._need()
    addr = ipaddress.ip_address(ip)
    gw = c.gateway
    if addr.is_loopback:
        pf = b._forwards.get(port)
        if pf is not None and pf.alive:
            return _via_port_forward(b, pf, http)
        sport = b._next_sport()
        tr = b._trace(HOST, "127.0.0.1", ip, port, sport, None)
        out = b._choose(tr)
        b._count(HOST, out)
        if out.destination:           # a DNAT on the host (not the case for 127.0.0.1 with Docker)
            dip, dport = _split(out.destination)
            return _to_node_ip(b, gw, dip, dport, http)
        target = _published(b, ip, port)
        if target is None:
            return _error(f"connection refused: nothing listens on {ip}:{port} on the host")
        b._track(HOST, ip, sport, ip, port, ip, port, ip, sport)   # to docker-proxy: no NAT
        node, cport = target
        # docker-proxy accepts on the host and opens its own connection to the node from the
        # host's address on the kind bridge: the node never sees 127.0.0.1.
        http.notes.append(f"docker-proxy relays {ip}:{port} to {node.ip}:{cport}")
        return _to_node_ip(b, gw, node.ip, cport, http)
    if ip == gw:
        sport = b._next_sport()
        tr = b._trace(HOST, gw, ip, port, sport, None)
        out = b._choose(tr)
        b._count(HOST, out)
        if out.destination:
            dip, dport = _split(out.destination)
            # Docker's DNAT is in the host's table; the same connection reaches the node
            b._track(HOST, gw, sport, ip, port, dip, dport, gw, sport)
            return _to_node_ip(b, gw, dip, dport, http, sport=sport)
        return _error(f"connection refused: nothing listens on {ip}:{port} on the host")
    return _to_node_ip(b, gw, ip, port, http)


def _published(b: "SimBackend", ip: str, port: int):
    from ...model.docker import published_ports
    for node, addr, hport, cport, _proto in published_ports(b._need()):
        if hport == port and addr in ("0.0.0.0", "", "::", ip):
            return node, cport
    return None


def _to_node_ip(b: "SimBackend", src: str, ip: str, port: int, http: _Http, sport: int | None = None) -> Response:
    """A connection from the host (its kind-bridge address) to ``ip``: a node, or nowhere."""
    c = b._need()
    node = next((n for n in c.nodes if n.ip == ip), None)
    if node is None:
        if any(ipaddress.ip_address(ip) in ipaddress.ip_network(n.pod_cidr) for n in c.nodes) or \
                ipaddress.ip_address(ip) in ipaddress.ip_network(c.service_subnet):
            return _error(f"no route to host / timeout: the host has no route to {ip}; pod and "
                          "Service addresses exist only inside the nodes (use the node IP and a "
                          "NodePort, the hostPort via localhost, or request from a pod)")
        return _error(f"no route to host / timeout: nothing has the address {ip}")
    translated = sport is not None          # already DNAT'd on the host: tracked there
    sport = sport if translated else b._next_sport()
    # the host reaches the node over the kind network's bridge: say so, so that Docker's
    # "! -o <bridge>" MASQUERADE is (correctly) not taken
    tr = b._trace(HOST, src, ip, port, sport, None, c.bridge_name())
    b._count(HOST, b._choose(tr))
    if not translated:
        b._track(HOST, src, sport, ip, port, ip, port, src, sport)
    return _enter(b, node.name, src, sport, ip, port, "eth0", http)


def _enter(b: "SimBackend", where: str, src: str, sport: int, dst: str, dport: int, in_if: str | None,
           http: _Http) -> Response:
    """A new connection meets node ``where``'s rules; follow it to whatever answers."""
    c = b._need()
    node = b._node(where)
    tr = b._trace(node.name, src, dst, dport, sport, in_if)
    out = b._choose(tr)
    if http.counted:
        b._count(node.name, out)
    if out.verdict == "REJECT" and any(h.chain == "cluster-ips-check" for h in out.hops):
        return _error(f"connection refused (REJECT by kube-proxy's nftables rules: {dst} is a ClusterIP, "
                      f"but no Service has port {dport} there)")
    if out.verdict == "REJECT":
        return _error(f"connection refused (REJECT by kube-proxy: {_rejected_service(out)} has no endpoints)")
    if out.verdict == "DROP":
        return _error(f"timeout: dropped on {node.name} by {_last_rule(out)}")
    fip, fport = _split(out.destination) if out.destination else (dst, dport)
    seen, seen_port = src, sport
    if out.masquerade:
        seen = out.source or masquerade_source(c, node, fip)
        seen_port = _nat_port(b.seed, out, src, sport, dst, dport)
    b._track(node.name, src, sport, dst, dport, fip, fport, seen, seen_port)
    if fip in b._local_ips(node):
        return _local(b, node, fip, fport)
    pod = _pod_at(c, fip)
    if pod is None:
        if any(n.ip == fip for n in c.nodes):
            other = next(n for n in c.nodes if n.ip == fip)
            return _enter(b, other.name, seen, seen_port, fip, fport, "eth0", http)
        return _error(f"no route to host / timeout: nothing has the address {fip} (from {node.name})")
    if pod.node_name != node.name:
        # routed to the pod's node (kindnet's route via that node's IP): its rules see a new packet
        other = b._node(pod.node_name)
        tr2 = b._trace(other.name, seen, fip, fport, seen_port, "eth0")
        out2 = b._choose(tr2)
        if http.counted:
            b._count(other.name, out2)
        b._track(other.name, seen, seen_port, fip, fport, fip, fport, seen, seen_port)
    return _deliver_pod(b, pod, seen, seen_port, fport, http)


def _local(b: "SimBackend", node, ip: str, port: int) -> Response:
    for s in b.sockets(node.name):
        lip, _, lport = s.local.rpartition(":")
        if int(lport) == port and lip in ("0.0.0.0", ip):
            return _error(f"connected to {s.process} on {node.name} ({ip}:{port}); the sim answers HTTP "
                          "only for the app and the ingress controller", destination=f"{ip}:{port}")
    return _error(f"connection refused: nothing listens on {ip}:{port} on {node.name} (no NAT rule "
                  "matched, and no process has this port)")


def _deliver_pod(b: "SimBackend", pod, client_ip: str, client_port: int, port: int, http: _Http) -> Response:
    c = b._need()
    dest = f"{pod.ip}:{port}"
    # a socket bound to 127.0.0.1 (the controller's status ports) is not reachable on the pod IP
    listening = {int(s.local.rsplit(":", 1)[1]) for s in b._pod_sockets(pod)
                 if s.local.rsplit(":", 1)[0] in ("0.0.0.0", pod.ip, client_ip if client_ip.startswith("127.") else "")}
    if port not in listening:
        return _error(f"connection refused: nothing listens on {dest} in pod {pod.name}", destination=dest)
    if pod is controller_pod(c) and port == 80:
        return _ingress(b, pod, client_ip, client_port, http)
    if _is_app(pod):
        return _app(b, pod, port, client_ip, client_port, http)
    return _error(f"connected to {pod.name} ({dest}); the sim answers HTTP only for the app and the "
                  "ingress controller", destination=dest)


def _ingress(b: "SimBackend", ctrl, client_ip: str, client_port: int, http: _Http) -> Response:
    """ingress-nginx: match host and path, then dial an endpoint (pod IP) directly."""
    from ...model import ingress_routes, match_route
    from ...model.ingress import nginx_error_page
    c = b._need()
    route = match_route(ingress_routes(c), http.host, http.path)
    # ingress-nginx's nginx.tmpl (controller-v1.15.1) renders ``server_tokens off;`` and
    # ``more_clear_headers Server;`` (config server-tokens: false by default): its answers carry no
    # Server header, and nginx's proxy drops the upstream's own (proxy_hide_header's defaults).
    # No Ingress matched: the default backend, nginx's catch-all server on 127.0.0.1:8181, answers
    # with nginx's built-in 404 page (``return 404;``); an Ingress whose Service has no endpoints:
    # the Lua balancer's 503 (balancer.lua: ngx.HTTP_SERVICE_UNAVAILABLE), nginx's 503 page.
    page = {"Content-Type": "text/html"}
    if route is None:
        return Response("", 404, nginx_error_page(404), dict(page), destination=f"{ctrl.ip}:80")
    if not route.upstreams:
        return Response("", 503, nginx_error_page(503), dict(page), destination=f"{ctrl.ip}:80")
    n = b._rr.get(route.upstream_name, 0)
    b._rr[route.upstream_name] = n + 1
    upstream = route.upstreams[n % len(route.upstreams)]
    uip, uport = _split(upstream)
    # nginx sets X-Forwarded-For to the address it saw ($remote_addr), Host to $host (no port), and
    # connects from its own pod IP (see model.nginx_conf's proxy_set_header lines)
    hostname = http.host.rsplit(":", 1)[0] if not http.host.startswith("[") else http.host
    headers = {"Host": hostname, "X-Request-ID": _request_id(b.seed, b._sport),
               "X-Real-IP": client_ip, "X-Forwarded-For": client_ip, "X-Forwarded-Host": hostname,
               "X-Forwarded-Port": "80", "X-Forwarded-Proto": "http", "X-Forwarded-Scheme": "http",
               "X-Scheme": "http", "User-Agent": http.headers.get("User-Agent", ""),
               "Accept": http.headers.get("Accept", "*/*")}
    fwd = _Http(host=hostname, path=http.path, xff=client_ip, counted=http.counted, headers=headers)
    resp = _enter(b, ctrl.node_name, ctrl.ip, b._next_sport(), uip, uport, _veth(ctrl), fwd)
    resp.headers = {k: v for k, v in resp.headers.items() if k.lower() not in ("server", "date")}
    return resp


def _app(b: "SimBackend", pod, port: int, client_ip: str, client_port: int, http: _Http) -> Response:
    # What app/server.py answers (GET only): /healthz, /whoami, / (usage), /<code> (404: the
    # model's store is empty, POST /shorten is not modelled).
    dest = f"{pod.ip}:{port}"
    path = http.path.split("?", 1)[0]
    head = {"Server": "url-shortener/0.1", "X-Pod-Name": pod.name}
    if path == "/healthz":
        return Response("", 200, "ok", {**head, "Content-Type": "text/plain; charset=utf-8"},
                        destination=dest)
    ctype = {**head, "Content-Type": "application/json"}
    if path == "/whoami":
        h = http.headers
        who = {"pod": pod.name, "pod_ip": pod.ip, "node": pod.node_name, "client_ip": client_ip,
               "client_port": client_port, "host": h.get("Host", http.host), "path": http.path,
               "method": "GET", "x_forwarded_for": h.get("X-Forwarded-For"),
               "x_real_ip": h.get("X-Real-IP"), "x_forwarded_host": h.get("X-Forwarded-Host"),
               "x_forwarded_proto": h.get("X-Forwarded-Proto"), "headers": dict(h)}
        return Response("", 200, json.dumps(who, sort_keys=True) + "\n", ctype, whoami=who,
                        destination=dest)
    if path == "/":
        body = {"service": APP_NAME, "pod": pod.name,
                "usage": "POST /shorten {\"url\": ...}; GET /<code>; GET /whoami; GET /healthz"}
        return Response("", 200, json.dumps(body, sort_keys=True) + "\n", ctype, destination=dest)
    code = path.lstrip("/")
    return Response("", 404, json.dumps({"code": code, "error": "unknown code"}, sort_keys=True) + "\n",
                    ctype, destination=dest)


def _via_port_forward(b: "SimBackend", pf: SimPortForward, http: _Http) -> Response:
    """kubectl -> API server -> kubelet -> runtime -> 127.0.0.1 inside the pod: no rule counts."""
    quiet = _Http(host=http.host, path=http.path, xff=http.xff, counted=False, headers=http.headers)
    return _deliver_pod(b, pf.pod, "127.0.0.1", b._next_sport(), pf.container_port, quiet)


# ---------------------------------------------------------------------------------------------
# helpers

def _request_id(seed: int, n: int) -> str:
    import hashlib
    return hashlib.sha256(f"{seed}/request/{n}".encode()).hexdigest()[:32]


def _split(dest: str) -> tuple[str, int]:
    ip, _, port = dest.rpartition(":")
    return ip.strip("[]"), int(port)


def _error(text: str, **kw) -> Response:
    return Response("", None, "", error=text, **kw)


def _veth(pod) -> str:
    return "veth" + (pod.container_id or "0" * 8)[:8]


def _pod_at(cluster, ip: str):
    for p in cluster.pods:
        if p.ip == ip and not p.host_network:
            return p
    return None


def _nat_port(seed: int, outcome, src: str, sport: int, dst: str, dport: int) -> int:
    """The source port after the outcome's MASQUERADE/SNAT. kube-proxy's MASQUERADE carries
    ``--random-fully``: the kernel then picks the port at random in 1024-65535 (nf_nat's unique-tuple
    search for a source port >= 1024; measured in the netns backend: 46886 became 47692, 50518 became
    25236), so the sim predicts one with a seeded hash. Without it (portmap's MASQUERADE) the port is
    kept, as the kernel does when the tuple is free (measured: 50738 stayed 50738)."""
    import hashlib
    for h in outcome.hops:
        rule = h.rule
        if rule is not None and (rule.target or "").upper() in ("MASQUERADE", "SNAT"):
            if "--random-fully" in (rule.line or "") or any(
                    getattr(o, "name", "") == "--random-fully" for o in rule.target_options):
                d = hashlib.sha256(f"{seed}/nat-port/{src}:{sport}/{dst}:{dport}".encode()).digest()
                return 1024 + int.from_bytes(d[:4], "big") % (65535 - 1024 + 1)
            return sport
    return sport


def _rejected_service(outcome) -> str:
    for h in reversed(outcome.hops):
        if h.rule is not None and (h.rule.target or "").upper() == "REJECT":
            comment = h.rule.comment or ""
            return comment.split(" has no", 1)[0] or f"{h.chain}#{h.position}"
    return "the service"


def _last_rule(outcome) -> str:
    for h in reversed(outcome.hops):
        if h.rule is not None:
            return f"{h.table} {h.chain}#{h.position}"
        if h.action.startswith("policy"):
            return f"{h.table} {h.chain} policy"
    return "a rule"
