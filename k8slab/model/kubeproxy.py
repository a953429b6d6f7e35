"""kube-proxy's iptables mode, rebuilt: the rules ``syncProxyRules`` writes for Services and EndpointSlices.

Follows kubernetes ``pkg/proxy/iptables/proxier.go`` (v1.30+): one pass over the service ports, each
writing its KUBE-SERVICES captures, its filter REJECT/DROP rules, then its KUBE-EXT, KUBE-FW, KUBE-SVC,
KUBE-SVL and KUBE-SEP chains; the fixed chains last. Rules are built as kube-proxy's argv (its
``restore`` form); :mod:`k8slab.model.iptables` prints the ``save`` form the kernel gives back.

Layout: chains and rules come out grouped per chain, in the order kube-proxy's own tests sort them
(KUBE-NODEPORTS, KUBE-SERVICES, then the other chains by name; service ports by name), so two
renders of the same input are byte-identical. Within a chain the order is kube-proxy's.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from ..netfilter import names
from ..netfilter.names import JUMP_CHAINS, KUBELET_JUMP_CHAINS  # noqa: F401 (node.py reads them here)
from .iptables import IptRule, Table, render_tables
from .objects import EndpointSlice, Service
from .settings import CT_INVALID_COUNTER, LOCALHOST_NPS_COUNTER, ProxierSettings

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"   # kubelet's chain; kube-proxy writes a copy with localhostNodePorts

# The jumps into the built-in chains: JUMP_CHAINS and KUBELET_JUMP_CHAINS, in netfilter.names.


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    local: bool

    def __str__(self) -> str:   # BaseEndpointInfo.String(): JoinHostPort
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass
class _ServicePort:
    """kube-proxy's servicePortInfo: one port of one Service, with the fields the rules read."""
    spn: str
    protocol: str                 # lowercase
    cluster_ip: str
    port: int
    node_port: int
    external_ips: list[str]
    lb_vips: list[str]
    source_ranges: list[str]
    health_check_node_port: int
    external_policy_local: bool
    internal_policy_local: bool
    affinity: bool
    affinity_seconds: int
    endpoints: list[_Endpoint] = field(default_factory=list)

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.lb_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)

    def chain(self, prefix: str) -> str:
        return names.service_chain(prefix, self.spn, self.protocol)

    def sep_chain(self, ep: _Endpoint) -> str:
        return names.endpoint_chain(self.spn, self.protocol, str(ep))


def _family_ok(ip: str, ipv6: bool) -> bool:
    try:
        return (ipaddress.ip_address(ip).version == 6) == ipv6
    except ValueError:
        return False


def service_ports(services: Iterable[Service], slices: Iterable[EndpointSlice],
                  settings: ProxierSettings) -> list[_ServicePort]:
    """Services x EndpointSlices as kube-proxy's service-port map, sorted by service-port name."""
    eps: dict[tuple[str, str], dict[str, _Endpoint]] = {}
    for sl in slices:
        if sl.address_type != ("IPv6" if settings.ipv6 else "IPv4"):
            continue
        for p in sl.ports:
            spn = names.service_port_name(sl.namespace, sl.service_name, p.name)
            bucket = eps.setdefault((spn, p.protocol.lower()), {})
            for e in sl.endpoints:
                ep = _Endpoint(ip=e.addresses[0], port=p.port, ready=e.ready, serving=e.serving,
                               terminating=e.terminating, local=e.node_name == settings.node_name)
                bucket.setdefault(str(ep), ep)
    out = []
    for svc in services:
        if svc.type == "ExternalName" or not svc.cluster_ip or svc.headless:
            continue
        if not _family_ok(svc.cluster_ip, settings.ipv6):
            continue
        etp_local = svc.type in ("NodePort", "LoadBalancer") and svc.external_traffic_policy == "Local"
        lb_local_hc = svc.type == "LoadBalancer" and svc.external_traffic_policy == "Local"
        for p in svc.ports:
            spn = names.service_port_name(svc.namespace, svc.name, p.name)
            proto = p.protocol.lower()
            sp = _ServicePort(
                spn=spn, protocol=proto, cluster_ip=svc.cluster_ip, port=p.port,
                node_port=p.node_port if svc.type in ("NodePort", "LoadBalancer") else 0,
                external_ips=[ip for ip in svc.external_ips if _family_ok(ip, settings.ipv6)],
                lb_vips=[ip for ip in svc.load_balancer_ips if _family_ok(ip, settings.ipv6)]
                if svc.type == "LoadBalancer" else [],
                source_ranges=[r.strip() for r in svc.load_balancer_source_ranges],
                health_check_node_port=svc.health_check_node_port if lb_local_hc else 0,
                external_policy_local=etp_local,
                internal_policy_local=svc.internal_traffic_policy == "Local",
                affinity=svc.session_affinity == "ClientIP",
                affinity_seconds=svc.session_affinity_timeout,
                endpoints=sorted(eps.get((spn, proto), {}).values(), key=str),
            )
            out.append(sp)
    out.sort(key=lambda s: (s.spn, s.protocol))
    return out


def _categorize(sp: _ServicePort):
    """proxy.CategorizeEndpoints without topology: (cluster, local, all reachable, has any)."""
    cluster: list[_Endpoint] = []
    local: list[_Endpoint] = []
    has_any = False
    use_terminating = False
    if sp.uses_cluster_endpoints:
        cluster = [e for e in sp.endpoints if e.ready]
        if not cluster:
            cluster = [e for e in sp.endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return cluster, local, cluster, has_any
    has_local_ready = has_local_term = False
    for e in sp.endpoints:
        if e.ready:
            has_any = True
            has_local_ready |= e.local
        elif e.serving and e.terminating:
            has_any = True
            has_local_term |= e.local
    if has_local_ready:
        local = [e for e in sp.endpoints if e.local and e.ready]
    elif has_local_term:
        use_terminating = True
        local = [e for e in sp.endpoints if e.local and e.serving and e.terminating]
    if not sp.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not use_terminating:
        return cluster, local, cluster, has_any
    merged = {str(e): e for e in cluster + local}
    return cluster, local, sorted(merged.values(), key=str), has_any


class _Writer:
    """Rules bucketed by chain, in write order, plus declared chains per table."""

    def __init__(self) -> None:
        self.rules: dict[str, dict[str, list[IptRule]]] = {"filter": {}, "nat": {}}
        self.chains: dict[str, list[str]] = {"filter": [], "nat": []}
        self._declared: dict[str, set[str]] = {"filter": set(), "nat": set()}

    def declare(self, table: str, chain: str) -> None:
        if chain not in self._declared[table]:
            self._declared[table].add(chain)
            self.chains[table].append(chain)

    def add(self, table: str, chain: str, *args: str) -> None:
        self.rules[table].setdefault(chain, []).append(IptRule(chain, tuple(str(a) for a in args)))


def _probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


def kube_proxy_tables(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
                      settings: ProxierSettings | None = None, *, jumps: bool = False) -> list[Table]:
    """The filter and nat tables kube-proxy restores (``jumps=True`` adds the built-in chains with
    the jump rules kube-proxy ensures into them, as a complete restorable file needs)."""
    s = settings or ProxierSettings()
    w = _Writer()
    for c in (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL):
        w.declare("filter", c)
    for c in (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ):
        w.declare("nat", c)
    mark = s.masquerade_mark
    if_not_local = ("!", "-s", s.cluster_cidr) if s.cluster_cidr else ()
    if_local = ("-s", s.cluster_cidr) if s.cluster_cidr else ()

    def comment(text: str) -> tuple[str, ...]:
        return () if s.large_cluster_mode else ("-m", "comment", "--comment", text)

    node_ip = ipaddress.ip_address(s.node_ip) if s.node_ip else None
    for sp in service_ports(services, endpoint_slices, s):
        spn, proto = sp.spn, sp.protocol
        cluster_eps, local_eps, reachable, has_endpoints = _categorize(sp)
        svc_chain, svl_chain = sp.chain("KUBE-SVC-"), sp.chain("KUBE-SVL-")
        ext_chain, fw_chain = sp.chain("KUBE-EXT-"), sp.chain("KUBE-FW-")
        uses_cluster_chain = bool(cluster_eps) and sp.uses_cluster_endpoints
        uses_local_chain = bool(local_eps) and sp.uses_local_endpoints

        internal_chain, has_internal = svc_chain, has_endpoints
        if sp.internal_policy_local:
            internal_chain = svl_chain
            has_internal = has_internal and bool(local_eps)
        external_policy_chain, has_external = svc_chain, has_endpoints
        if sp.external_policy_local:
            external_policy_chain = svl_chain
            has_external = has_external and bool(local_eps)
        uses_ext_chain = has_endpoints and sp.externally_accessible
        uses_fw_chain = has_endpoints and bool(sp.lb_vips) and bool(sp.source_ranges)
        lb_chain = fw_chain if uses_fw_chain else ext_chain

        if not has_endpoints:
            int_target, int_comment = "REJECT", f"{spn} has no endpoints"
            ext_target, ext_comment = "REJECT", int_comment
        else:
            int_target = "DROP" if not has_internal else ""
            int_comment = f"{spn} has no local endpoints"
            ext_target = "DROP" if not has_external else ""
            ext_comment = f"{spn} has no local endpoints"
        vip = lambda ip, port: ("-m", proto, "-p", proto, "-d", ip, "--dport", str(port))  # noqa: E731

        # the cluster IP
        if has_internal:
            w.add("nat", KUBE_SERVICES, "-m", "comment", "--comment", f"{spn} cluster IP",
                  *vip(sp.cluster_ip, sp.port), "-j", internal_chain)
        else:
            w.add("filter", KUBE_SERVICES, "-m", "comment", "--comment", int_comment,
                  *vip(sp.cluster_ip, sp.port), "-j", int_target)
        # external IPs
        for ip in sp.external_ips:
            if has_endpoints:
                w.add("nat", KUBE_SERVICES, "-m", "comment", "--comment", f"{spn} external IP",
                      *vip(ip, sp.port), "-j", ext_chain)
            if not has_external:
                w.add("filter", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                      *vip(ip, sp.port), "-j", ext_target)
        # load-balancer IPs
        for ip in sp.lb_vips:
            if has_endpoints:
                w.add("nat", KUBE_SERVICES, "-m", "comment", "--comment", f"{spn} loadbalancer IP",
                      *vip(ip, sp.port), "-j", lb_chain)
            if uses_fw_chain:
                w.add("filter", KUBE_PROXY_FIREWALL, "-m", "comment", "--comment",
                      f"{spn} traffic not accepted by {fw_chain}", *vip(ip, sp.port), "-j", "DROP")
        if not has_external:
            for ip in sp.lb_vips:
                w.add("filter", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                      *vip(ip, sp.port), "-j", ext_target)
        # NodePorts (never subject to loadBalancerSourceRanges)
        if sp.node_port:
            if has_endpoints:
                if not s.ipv6 and s.localhost_node_ports and LOCALHOST_NPS_COUNTER in s.nfacct_counters:
                    w.add("nat", KUBE_NODEPORTS, *comment(spn), "-m", proto, "-p", proto, "-d", "127.0.0.0/8",
                          "--dport", str(sp.node_port), "-m", "nfacct", "--nfacct-name", LOCALHOST_NPS_COUNTER,
                          "-j", ext_chain)
                w.add("nat", KUBE_NODEPORTS, *comment(spn), "-m", proto, "-p", proto,
                      "--dport", str(sp.node_port), "-j", ext_chain)
            if not has_external:
                w.add("filter", KUBE_EXTERNAL_SERVICES, "-m", "comment", "--comment", ext_comment,
                      "-m", "addrtype", "--dst-type", "LOCAL", "-m", proto, "-p", proto,
                      "--dport", str(sp.node_port), "-j", ext_target)
        # health check NodePort: accepted whether or not this node has local endpoints
        if sp.health_check_node_port:
            w.add("filter", KUBE_NODEPORTS, "-m", "comment", "--comment", f"{spn} health check node port",
                  "-m", "tcp", "-p", "tcp", "--dport", str(sp.health_check_node_port), "-j", "ACCEPT")

        # masquerade off-cluster traffic to the cluster IP (it may leave the node again)
        if has_internal:
            base = ("-m", "comment", "--comment", f"{spn} cluster IP", *vip(sp.cluster_ip, sp.port))
            if s.masquerade_all:
                w.add("nat", internal_chain, *base, "-j", KUBE_MARK_MASQ)
            elif if_not_local:
                w.add("nat", internal_chain, *base, *if_not_local, "-j", KUBE_MARK_MASQ)

        # KUBE-EXT: what external destinations (externalIPs, LB IPs, NodePorts) jump to
        if uses_ext_chain:
            w.declare("nat", ext_chain)
            if not sp.external_policy_local:
                w.add("nat", ext_chain, "-m", "comment", "--comment",
                      f"masquerade traffic for {spn} external destinations", "-j", KUBE_MARK_MASQ)
            else:
                if if_local:
                    w.add("nat", ext_chain, "-m", "comment", "--comment",
                          f"pod traffic for {spn} external destinations", *if_local, "-j", svc_chain)
                w.add("nat", ext_chain, "-m", "comment", "--comment",
                      f"masquerade LOCAL traffic for {spn} external destinations",
                      "-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ)
                w.add("nat", ext_chain, "-m", "comment", "--comment",
                      f"route LOCAL traffic for {spn} external destinations",
                      "-m", "addrtype", "--src-type", "LOCAL", "-j", svc_chain)
            if has_external:
                w.add("nat", ext_chain, "-j", external_policy_chain)

        # KUBE-FW: loadBalancerSourceRanges
        if uses_fw_chain:
            w.declare("nat", fw_chain)
            allow_from_node = False
            for cidr in sp.source_ranges:
                w.add("nat", fw_chain, "-m", "comment", "--comment", f"{spn} loadbalancer IP", "-s", cidr,
                      "-j", ext_chain)
                if node_ip is not None and node_ip in ipaddress.ip_network(cidr, strict=False):
                    allow_from_node = True
            if allow_from_node:
                for ip in sp.lb_vips:
                    w.add("nat", fw_chain, "-m", "comment", "--comment", f"{spn} loadbalancer IP", "-s", ip,
                          "-j", ext_chain)
            w.add("nat", fw_chain, "-m", "comment", "--comment",
                  f"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL")

        # KUBE-SVC / KUBE-SVL: pick an endpoint
        for used, chain, eps in ((uses_cluster_chain, svc_chain, cluster_eps),
                                 (uses_local_chain, svl_chain, local_eps)):
            if not used:
                continue
            w.declare("nat", chain)
            if sp.affinity:
                for ep in eps:
                    w.add("nat", chain, *comment(f"{spn} -> {ep}"), "-m", "recent", "--name", sp.sep_chain(ep),
                          "--rcheck", "--seconds", str(sp.affinity_seconds), "--reap", "-j", sp.sep_chain(ep))
            n = len(eps)
            for i, ep in enumerate(eps):
                prob = ("-m", "statistic", "--mode", "random", "--probability", _probability(n - i)) \
                    if i < n - 1 else ()
                w.add("nat", chain, *comment(f"{spn} -> {ep}"), *prob, "-j", sp.sep_chain(ep))

        # KUBE-SEP: one per endpoint this node may send to
        for ep in reachable:
            sep = sp.sep_chain(ep)
            w.declare("nat", sep)
            w.add("nat", sep, *comment(spn), "-s", ep.ip, "-j", KUBE_MARK_MASQ)
            aff = ("-m", "recent", "--name", sep, "--set") if sp.affinity else ()
            w.add("nat", sep, *comment(spn), *aff, "-m", proto, "-p", proto, "-j", "DNAT",
                  "--to-destination", str(ep))

    # the NodePort jump: the last rule of nat KUBE-SERVICES
    np_comment = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
    if not s.node_port_addresses:
        dest: tuple[str, ...] = ("-m", "addrtype", "--dst-type", "LOCAL")
        if s.ipv6:
            dest += ("!", "-d", "::1/128")
        elif not s.localhost_node_ports:
            dest += ("!", "-d", "127.0.0.0/8")
        w.add("nat", KUBE_SERVICES, "-m", "comment", "--comment", np_comment, *dest, "-j", KUBE_NODEPORTS)
    else:
        for ip in s.node_port_ips():
            if ipaddress.ip_address(ip).is_loopback and (s.ipv6 or not s.localhost_node_ports):
                continue
            w.add("nat", KUBE_SERVICES, "-m", "comment", "--comment", np_comment, "-d", ip, "-j", KUBE_NODEPORTS)

    # fixed chains
    if not s.ipv6 and s.localhost_node_ports:
        w.declare("filter", KUBE_FIREWALL)
        w.add("filter", KUBE_FIREWALL, "-m", "comment", "--comment", "block incoming localnet connections",
              "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate",
              "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
    w.add("nat", KUBE_POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN")
    w.add("nat", KUBE_POSTROUTING, "-j", "MARK", "--xor-mark", mark)
    w.add("nat", KUBE_POSTROUTING, "-m", "comment", "--comment", "kubernetes service traffic requiring SNAT",
          "-j", "MASQUERADE", *(("--random-fully",) if s.random_fully else ()))
    w.add("nat", KUBE_MARK_MASQ, "-j", "MARK", "--or-mark", mark)
    if not s.conntrack_tcp_liberal:
        acct = ("-m", "nfacct", "--nfacct-name", CT_INVALID_COUNTER) if CT_INVALID_COUNTER in s.nfacct_counters else ()
        w.add("filter", KUBE_FORWARD, "-m", "conntrack", "--ctstate", "INVALID", *acct, "-j", "DROP")
    w.add("filter", KUBE_FORWARD, "-m", "comment", "--comment", "kubernetes forwarding rules",
          "-m", "mark", "--mark", f"{mark}/{mark}", "-j", "ACCEPT")
    w.add("filter", KUBE_FORWARD, "-m", "comment", "--comment", "kubernetes forwarding conntrack rule",
          "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

    tables = []
    for name in ("filter", "nat"):
        first = [KUBE_NODEPORTS, KUBE_SERVICES]
        order = first + sorted(c for c in w.chains[name] if c not in first)
        t = Table(name)
        if jumps:
            # each jump is prepended in turn, so the last one ensured ends up first
            ensured = JUMP_CHAINS + (KUBELET_JUMP_CHAINS if KUBE_FIREWALL in w.chains["filter"] else ())
            for table, chain, builtin, text, extra in reversed(ensured):
                if table == name:
                    t.declare(builtin)
            for table, chain, builtin, text, extra in reversed(ensured):
                if table == name:
                    comment = ("-m", "comment", "--comment", text) if text else ()
                    t.add(builtin, *extra, *comment, "-j", chain)
        t.declare(*order)
        for c in order:
            t.rules.extend(w.rules[name].get(c, []))
        tables.append(t)
    return tables


def render_kube_proxy(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
                      settings: ProxierSettings | None = None, form: str = "restore", *,
                      jumps: bool | None = None) -> str:
    """kube-proxy's rules for these objects as text.

    ``form="restore"``: kube-proxy's iptables-restore input (no built-in chains unless ``jumps``).
    ``form="save"``: what ``iptables-save`` prints once they are loaded, with the built-in chains and
    kube-proxy's jump rules into them (``jumps`` defaults to True for this form).
    """
    use_jumps = (form == "save") if jumps is None else jumps
    return render_tables(kube_proxy_tables(list(services), list(endpoint_slices), settings, jumps=use_jumps),
                         form=form)
