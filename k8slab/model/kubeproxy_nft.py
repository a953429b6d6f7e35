"""kube-proxy's nftables mode, rebuilt: the transaction ``syncProxyRules`` sends to ``nft -f``.

Follows kubernetes ``pkg/proxy/nftables/proxier.go`` (``setupNFTables`` for the fixed objects,
``syncProxyRules`` and ``writeServiceToEndpointRules`` for each service port) in the version whose
unit test TestOverallNFTablesRules (``proxier_test.go``) expects ``nft-overall.nft``:

- base chains ``filter-prerouting-pre-dnat`` / ``filter-output-pre-dnat`` at -110, ``filter-forward`` /
  ``filter-input`` / ``filter-output`` at 0, ``nat-*`` at -100 / 100 (older builds used ``dstnat - 10``);
- the ClusterIP masquerade rule is ``ip daddr IP ip saddr != CIDR jump mark-for-masquerade`` (some
  builds add ``tcp dport PORT`` after the address; the golden file has none).

Object names come from :mod:`k8slab.netfilter.nft.names` (``hashAndTruncate``); which endpoints a
service port uses comes from the iptables renderer's ``service_ports``/``_categorize`` (both proxiers
call the same ``proxy.CategorizeEndpoints``).

Layout. kube-proxy sends one transaction whose order its own test does not check (the test compares
sorted lines). The text here is laid out as that test's expected text: ``baseRules`` first (the
fixed sets, maps, chains and rules in the test's order), then one block per Service, headed
``# <name>``, service ports sorted by name. Within a block: the affinity sets, the service/local/
external chains, the endpoint chains (sorted by name), the firewall chain, then the elements
(cluster-ips, service-ips or the internal no-endpoint verdict, service-nodeports, firewall-ips), then
the external no-endpoint verdicts (sorted). Blank lines separate those groups as the test's text
does; the endpoint chains follow the external chain without one unless the port has affinity.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import ManifestError
from ..netfilter.nft.names import chain_base, endpoint_chain_base
from .kubeproxy import _categorize, service_ports
from .objects import EndpointSlice, Service
from .settings import ProxierSettings, read_settings_section

TABLE = "kube-proxy"

# proxier.go constants
CLUSTER_IPS = "cluster-ips"
NODEPORT_IPS = "nodeport-ips"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
FIREWALL_IPS = "firewall-ips"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
MARK_MASQ = "mark-for-masquerade"
MASQUERADING = "masquerading"
REJECT_CHAIN = "reject-chain"
SERVICES = "services"


@dataclass(frozen=True)
class NftProxierSettings:
    """The iptables proxier's settings plus what only the nftables proxier reads (``serviceCIDRs``)."""
    base: ProxierSettings = field(default_factory=ProxierSettings)
    service_cidrs: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, d: dict, where: str = "settings") -> "NftProxierSettings":
        base = ProxierSettings.from_mapping(d, where)
        raw = d.get("serviceCIDRs") or ()
        cidrs = [raw] if isinstance(raw, str) else list(raw)
        out = []
        for c in cidrs:
            for part in str(c).split(","):
                part = part.strip()
                if not part:
                    continue
                try:
                    net = ipaddress.ip_network(part, strict=False)
                except ValueError:
                    raise ManifestError(f"{where}: serviceCIDRs: {part!r} is not a CIDR") from None
                # OnServiceCIDRsChanged keeps the proxier's family only
                if (net.version == 6) == base.ipv6:
                    out.append(part)
        return cls(base=base, service_cidrs=tuple(out))

    @classmethod
    def from_file(cls, spec: str | Path) -> "NftProxierSettings":
        text = str(spec)
        data = read_settings_section(text, default_section="nftables")
        return cls.from_mapping(data, where=text)


def _ip_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def base_rules(s: NftProxierSettings) -> list[list[str]]:
    """setupNFTables, as blocks of lines in the layout of proxier_test.go's ``baseRules``."""
    b = s.base
    ipx, addr = ("ip6", "ipv6_addr") if b.ipv6 else ("ip", "ipv4_addr")
    fam = ipx
    no_localhost = "ip6 daddr != ::1" if b.ipv6 else "ip daddr != 127.0.0.0/8"
    match_all = not b.node_port_addresses
    p = f"{fam} {TABLE}"
    mark = b.masquerade_mark
    vtype = f"{addr} . inet_proto . inet_service : verdict"
    blocks: list[list[str]] = [[f'add table {p} {{ comment "rules for kube-proxy" ; }}']]
    sets = [f'add set {p} {CLUSTER_IPS} {{ type {addr} ; comment "Active ClusterIPs" ; }}']
    if not match_all:   # MatchAll: the set is added and deleted again (it does not exist afterwards)
        sets.append(f'add set {p} {NODEPORT_IPS} {{ type {addr} ; comment "IPs that accept NodePort traffic" ; }}')
    blocks.append(sets)
    blocks.append([
        f'add map {p} {FIREWALL_IPS} {{ type {vtype} ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }}',
        f'add map {p} {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }}',
        f'add map {p} {NO_ENDPOINT_SERVICES} {{ type {vtype} ; comment "vmap to drop or reject packets to services with no endpoints" ; }}',
        f'add map {p} {SERVICE_IPS} {{ type {vtype} ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }}',
        f'add map {p} {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
    ])
    blocks.append([
        f"add chain {p} cluster-ips-check",
        f"add chain {p} filter-prerouting-pre-dnat {{ type filter hook prerouting priority -110 ; }}",
        f"add chain {p} filter-output-pre-dnat {{ type filter hook output priority -110 ; }}",
        f"add chain {p} filter-forward {{ type filter hook forward priority 0 ; }}",
        f"add chain {p} filter-input {{ type filter hook input priority 0 ; }}",
        f"add chain {p} filter-output {{ type filter hook output priority 0 ; }}",
        f"add chain {p} firewall-check",
        f"add chain {p} {MARK_MASQ}",
        f"add chain {p} {MASQUERADING}",
        f"add chain {p} nat-output {{ type nat hook output priority -100 ; }}",
        f"add chain {p} nat-postrouting {{ type nat hook postrouting priority 100 ; }}",
        f"add chain {p} nat-prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"add chain {p} nodeport-endpoints-check",
        f'add chain {p} {REJECT_CHAIN} {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}',
        f"add chain {p} {SERVICES}",
        f"add chain {p} service-endpoints-check",
    ])
    r = f"add rule {p}"
    rules = [f'{r} cluster-ips-check {ipx} daddr @{CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"']
    if s.service_cidrs:
        rules.append(f'{r} cluster-ips-check {ipx} daddr {{ {",".join(s.service_cidrs)} }} drop '
                     'comment "Drop traffic to unallocated ClusterIPs"')
    rules += [
        f"{r} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"{r} filter-forward ct state new jump service-endpoints-check",
        f"{r} filter-forward ct state new jump cluster-ips-check",
        f"{r} filter-input ct state new jump nodeport-endpoints-check",
        f"{r} filter-input ct state new jump service-endpoints-check",
        f"{r} filter-output ct state new jump service-endpoints-check",
        f"{r} filter-output-pre-dnat ct state new jump firewall-check",
        f"{r} filter-output ct state new jump cluster-ips-check",
        f"{r} firewall-check {ipx} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS}",
        f"{r} {MARK_MASQ} mark set mark or {mark}",
        f"{r} {MASQUERADING} mark and {mark} == 0 return",
        f"{r} {MASQUERADING} mark set mark xor {mark}",
        f"{r} {MASQUERADING} masquerade fully-random",
        f"{r} nat-output jump {SERVICES}",
        f"{r} nat-postrouting jump {MASQUERADING}",
        f"{r} nat-prerouting jump {SERVICES}",
    ]
    if match_all:
        rules.append(f"{r} nodeport-endpoints-check {no_localhost} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}")
    else:
        rules.append(f"{r} nodeport-endpoints-check {ipx} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}")
    rules += [f"{r} {REJECT_CHAIN} reject",
              f"{r} {SERVICES} {ipx} daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"]
    if match_all:
        rules.append(f"{r} {SERVICES} fib daddr type local {no_localhost} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")
    else:
        rules.append(f"{r} {SERVICES} {ipx} daddr @{NODEPORT_IPS} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}")
    blocks.append(rules)
    last = []
    if not match_all:
        for ip in b.node_port_ips():
            if ipaddress.ip_address(ip).is_loopback:   # "localhost NodePorts are not supported"
                continue
            last.append(f"add element {p} {NODEPORT_IPS} {{ {ip} }}")
    last.append(f"{r} service-endpoints-check {ipx} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}")
    blocks.append(last)
    return blocks


def _service_blocks(sp, s: NftProxierSettings, seen: set | None = None) -> list[list[str]]:
    """syncProxyRules' loop body for one service port, as blocks of lines (see the module's Layout)."""
    b = s.base
    ipx, addr = ("ip6", "ipv6_addr") if b.ipv6 else ("ip", "ipv4_addr")
    p = f"{ipx} {TABLE}"
    proto = sp.protocol
    spn = sp.spn
    base = chain_base(sp.spn_ns, sp.spn_name, proto, sp.spn_port)
    cluster_chain, local_chain = f"service-{base}", f"local-{base}"
    ext_chain, fw_chain = f"external-{base}", f"firewall-{base}"

    def ep_base(ep) -> str:
        return endpoint_chain_base(sp.spn_ns, sp.spn_name, proto, sp.spn_port, _ip_port(ep.ip, ep.port))

    cluster_eps, local_eps, reachable, has_endpoints = _categorize(sp)
    uses_cluster = bool(cluster_eps) and sp.uses_cluster_endpoints
    uses_local = bool(local_eps) and sp.uses_local_endpoints
    internal_chain, has_internal = cluster_chain, has_endpoints
    if sp.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(local_eps)
    external_policy_chain, has_external = cluster_chain, has_endpoints
    if sp.external_policy_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(local_eps)
    uses_ext = has_endpoints and sp.externally_accessible
    uses_fw = bool(sp.lb_vips) and bool(sp.source_ranges)
    if not has_endpoints:
        int_verdict = ext_verdict = f"goto {REJECT_CHAIN}"
    else:
        int_verdict = "" if has_internal else "drop"
        ext_verdict = "" if has_external else "drop"

    # elements, in syncProxyRules' order of the maps (cluster-ips, service-ips, nodeports, firewall)
    ne = f'comment "{spn}"'
    elems: list[str] = [f"add element {p} {CLUSTER_IPS} {{ {sp.cluster_ip} }}"]
    cip_key = f"{sp.cluster_ip} . {proto} . {sp.port}"
    if has_internal:
        elems.append(f"add element {p} {SERVICE_IPS} {{ {cip_key} : goto {internal_chain} }}")
    else:
        elems.append(f"add element {p} {NO_ENDPOINT_SERVICES} {{ {cip_key} {ne} : {int_verdict} }}")
    ext_no_ep: list[str] = []
    for ip in sp.external_ips + sp.lb_vips:
        key = f"{ip} . {proto} . {sp.port}"
        if has_endpoints:
            elems.append(f"add element {p} {SERVICE_IPS} {{ {key} : goto {ext_chain} }}")
        if not has_external:
            ext_no_ep.append(f"add element {p} {NO_ENDPOINT_SERVICES} {{ {key} {ne} : {ext_verdict} }}")
    if sp.node_port:
        key = f"{proto} . {sp.node_port}"
        if has_endpoints:
            elems.append(f"add element {p} {SERVICE_NODEPORTS} {{ {key} : goto {ext_chain} }}")
        if not has_external:
            ext_no_ep.append(f"add element {p} {NO_ENDPOINT_NODEPORTS} {{ {key} {ne} : {ext_verdict} }}")
    if uses_fw:
        for ip in sp.lb_vips:
            elems.append(f"add element {p} {FIREWALL_IPS} {{ {ip} . {proto} . {sp.port} : goto {fw_chain} }}")

    head: list[str] = []
    if sp.affinity:
        for ep in reachable:
            head.append(f"add set {p} affinity-{ep_base(ep)} {{ type {addr} ; flags dynamic,timeout ; "
                        f"timeout {sp.affinity_seconds}s ; }}")
    if_not_local = f"{ipx} saddr != {b.cluster_cidr}" if b.cluster_cidr else ""
    if_local = f"{ipx} saddr {b.cluster_cidr}" if b.cluster_cidr else ""

    def chain_rules(chain: str, eps) -> list[str]:
        """writeServiceToEndpointRules, after the masquerade rule."""
        out = [f"add chain {p} {chain}"]
        if has_internal and chain == internal_chain:
            if b.masquerade_all:
                out.append(f"add rule {p} {chain} {ipx} daddr {sp.cluster_ip} jump {MARK_MASQ}")
            elif if_not_local:
                out.append(f"add rule {p} {chain} {ipx} daddr {sp.cluster_ip} {if_not_local} jump {MARK_MASQ}")
        if sp.affinity:
            for ep in eps:
                out.append(f"add rule {p} {chain} {ipx} saddr @affinity-{ep_base(ep)} goto endpoint-{ep_base(ep)}")
        vm = " , ".join(f"{i} : goto endpoint-{ep_base(ep)}" for i, ep in enumerate(eps))
        out.append(f"add rule {p} {chain} numgen random mod {len(eps)} vmap {{ {vm} }}")
        return out

    if uses_cluster:
        head += chain_rules(cluster_chain, cluster_eps)
    if uses_local:
        head += chain_rules(local_chain, local_eps)
    if uses_ext:
        head.append(f"add chain {p} {ext_chain}")
        if not sp.external_policy_local:
            head.append(f"add rule {p} {ext_chain} jump {MARK_MASQ}")
        else:
            if if_local:
                head.append(f'add rule {p} {ext_chain} {if_local} goto {cluster_chain} comment "short-circuit pod traffic"')
            head.append(f'add rule {p} {ext_chain} fib saddr type local jump {MARK_MASQ} comment "masquerade local traffic"')
            head.append(f'add rule {p} {ext_chain} fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if has_external:
            head.append(f"add rule {p} {ext_chain} goto {external_policy_chain}")
    eps_lines: list[str] = []
    for ep in sorted(reachable, key=lambda e: ep_base(e)):
        ch = f"endpoint-{ep_base(ep)}"
        eps_lines.append(f"add chain {p} {ch}")
        eps_lines.append(f"add rule {p} {ch} {ipx} saddr {ep.ip} jump {MARK_MASQ}")
        if sp.affinity:
            eps_lines.append(f"add rule {p} {ch} update @affinity-{ep_base(ep)} {{ {ipx} saddr }}")
        eps_lines.append(f"add rule {p} {ch} meta l4proto {proto} dnat to {_ip_port(ep.ip, ep.port)}")
    fw: list[str] = []
    if uses_fw:
        sources, allow_from_node = [], False
        node_ip = ipaddress.ip_address(b.node_ip) if b.node_ip else None
        for cidr in sp.source_ranges:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
            sources.append(str(net))
            if node_ip is not None and node_ip.version == net.version and node_ip in net:
                allow_from_node = True
        if allow_from_node:
            sources += list(sp.lb_vips)
        fw = [f"add chain {p} {fw_chain}",
              f"add rule {p} {fw_chain} {ipx} saddr != {{ {' , '.join(sources)} }} drop"]

    if seen is not None:
        # nftElementStorage.ensureElem: an element already added in this sync is not added again
        # (a ClusterIP shared by the ports of one Service is one element of cluster-ips)
        def first(lines):
            out = []
            for ln in lines:
                key = ln.split(" : ")[0].split(" comment ")[0]
                if ln.startswith("add element ") and key in seen:
                    continue
                seen.add(key)
                out.append(ln)
            return out
        elems, ext_no_ep = first(elems), first(ext_no_ep)
    blocks: list[list[str]] = []
    if uses_ext and not sp.affinity:
        blocks.append(head + eps_lines)
    else:
        blocks += [head, eps_lines]
    blocks += [fw, elems, sorted(ext_no_ep)]
    return [bl for bl in blocks if bl]


def kube_proxy_nft_blocks(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
                          settings: NftProxierSettings | None = None) -> list[list[str]]:
    s = settings or NftProxierSettings()
    out = base_rules(s)
    by_service: dict[tuple[str, str], list[list[str]]] = {}
    seen: set[str] = set()
    for sp in service_ports(list(services), list(endpoint_slices), s.base):
        ns, _, rest = sp.spn.partition("/")
        name, _, port = rest.partition(":")
        sp.spn_ns, sp.spn_name, sp.spn_port = ns, name, port
        by_service.setdefault((ns, name), []).extend(_service_blocks(sp, s, seen))
    for (ns, name), blocks in by_service.items():
        blocks[0] = [f"# {name}"] + blocks[0]
        out += blocks
    return out


def render_kube_proxy_nft(services: Iterable[Service], endpoint_slices: Iterable[EndpointSlice],
                          settings: NftProxierSettings | None = None, form: str = "transaction") -> str:
    """kube-proxy's nftables rules for these objects.

    ``form="transaction"``: the ``nft -f`` input kube-proxy sends (``add table/chain/set/map/rule/element``).
    ``form="ruleset"``: what ``nft list ruleset`` prints once that is loaded into an empty kernel.
    """
    text = "\n\n".join("\n".join(bl) for bl in kube_proxy_nft_blocks(services, endpoint_slices, settings)) + "\n"
    if form == "transaction":
        return text
    if form == "ruleset":
        from ..netfilter.nft.parser import parse_nft
        from ..netfilter.nft.listing import list_ruleset, loadable
        return list_ruleset(parse_nft(loadable(text)))
    raise ValueError(f"form must be 'transaction' or 'ruleset', not {form!r}")
