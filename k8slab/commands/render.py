"""``k8slab render``: print the rules and configs the model predicts.

    k8slab render kube-proxy MANIFEST... [--settings FILE[#SECTION]] [--form restore|save]
    k8slab render kube-proxy MANIFEST... --mode nftables [--settings FILE[#SECTION]] [--form transaction|ruleset]
    k8slab render node  [MANIFEST...] [--config kind/cluster.yaml] [--node NAME] [--form save|restore]
    k8slab render host  [MANIFEST...] [--config kind/cluster.yaml] [--form save|restore]
    k8slab render nginx [MANIFEST...] [--config ...] [--listen-port 80] [--prefix-dir DIR]
    k8slab render routes [MANIFEST...] [--config ...]

kube-proxy: with ``--settings`` or EndpointSlices among the inputs, the objects are rendered as given
(kube-proxy's own test inputs); otherwise they are applied to the course's kind cluster (addresses
allocated, EndpointSlices derived) and rendered with kind's kube-proxy settings for ``--node``.
``--mode nftables``: kube-proxy's nftables mode, as the ``nft -f`` transaction it sends
(``--form transaction``, the default) or as ``nft list ruleset`` prints it once loaded (``--form ruleset``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ManifestError
from ..model import (Cluster, EndpointSlice, ProxierSettings, ingress_routes, load_objects, nginx_conf,
                     render_host_docker, render_kube_proxy, render_node_dump)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "kind" / "cluster.yaml"


def _cluster(args) -> Cluster:
    config = args.config if args.config else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    c = Cluster.kind(config, name=args.name, seed=args.seed)
    for m in args.manifests:
        c.apply(m)
    return c


_FORMS = {"iptables": ("restore", "save"), "nftables": ("transaction", "ruleset")}


def _kube_proxy(args) -> int:
    form = args.form or _FORMS[args.mode][0]
    if form not in _FORMS[args.mode]:
        raise ManifestError(f"--form {form} is not a form of --mode {args.mode}: "
                            f"choose {' or '.join(_FORMS[args.mode])}")
    if args.mode == "nftables":
        return _kube_proxy_nft(args, form)
    objs = [o for m in args.manifests for o in load_objects(m)]
    if args.settings or any(isinstance(o, EndpointSlice) for o in objs):
        c = Cluster.from_objects(objs)
        settings = ProxierSettings.from_file(args.settings) if args.settings else ProxierSettings()
    else:
        c = _cluster(args)
        settings = ProxierSettings.for_kind_node(c, c.node(args.node))
    sys.stdout.write(render_kube_proxy(c.services, c.endpoint_slices(), settings, form=form))
    return 0


def _kube_proxy_nft(args, form: str) -> int:
    from ..model.kubeproxy_nft import NftProxierSettings, render_kube_proxy_nft
    objs = [o for m in args.manifests for o in load_objects(m)]
    if args.settings or any(isinstance(o, EndpointSlice) for o in objs):
        c = Cluster.from_objects(objs)
        settings = NftProxierSettings.from_file(args.settings) if args.settings else NftProxierSettings()
    else:
        c = _cluster(args)
        node = c.node(args.node)
        # nftables mode: an unset --nodeport-addresses means the node's primary IPs, not all of them
        # (KEP-3866; cmd/kube-proxy's "primary" default), so NodePorts go through @nodeport-ips
        base = ProxierSettings.for_kind_node(c, node).replace(node_port_addresses=(f"{node.ip}/32",))
        settings = NftProxierSettings(base=base, service_cidrs=(c.service_subnet,))
    sys.stdout.write(render_kube_proxy_nft(c.services, c.endpoint_slices(), settings, form=form))
    return 0


def _node(args) -> int:
    c = _cluster(args)
    sys.stdout.write(render_node_dump(c, c.node(args.node), form=args.form))
    return 0


def _host(args) -> int:
    sys.stdout.write(render_host_docker(_cluster(args), form=args.form))
    return 0


def _nginx(args) -> int:
    sys.stdout.write(nginx_conf(_cluster(args), listen_port=args.listen_port, prefix_dir=args.prefix_dir))
    return 0


def _routes(args) -> int:
    for r in ingress_routes(_cluster(args)):
        host = r.host or "*"
        ups = ", ".join(r.upstreams) or "(no endpoints)"
        sys.stdout.write(f"{host}\t{r.path}\t{r.path_type}\t{r.namespace}/{r.service}:{r.port}\t{ups}\n")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("render", help="print the rules/configs the model predicts (kube-proxy, node, host, nginx)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True

    def common(sp, manifests_required=False):
        sp.add_argument("manifests", nargs="+" if manifests_required else "*", metavar="MANIFEST",
                        help="manifest files or directories")
        sp.add_argument("--config", help="kind cluster config (default: kind/cluster.yaml)")
        sp.add_argument("--name", default="kind", help="cluster name (node names <name>-control-plane...)")
        sp.add_argument("--seed", type=int, default=0, help="seed for allocated addresses and names")
        sp.add_argument("--node", default=None, help="node name (default: the control-plane)")

    kp = sub.add_parser("kube-proxy", help="kube-proxy's iptables (or nftables) rules for Services + EndpointSlices")
    common(kp, manifests_required=True)
    kp.add_argument("--settings", help="proxier settings FILE[#SECTION] (golden settings file shape)")
    kp.add_argument("--mode", choices=("iptables", "nftables"), default="iptables")
    kp.add_argument("--form", choices=("restore", "save", "transaction", "ruleset"), default=None,
                    help="iptables: restore (default) | save; nftables: transaction (default) | ruleset")
    kp.set_defaults(func=_kube_proxy)

    nd = sub.add_parser("node", help="a kind node's whole iptables-save")
    common(nd)
    nd.add_argument("--form", choices=("save", "restore"), default="save")
    nd.set_defaults(func=_node)

    ho = sub.add_parser("host", help="the host's Docker rules for the kind network")
    common(ho)
    ho.add_argument("--form", choices=("save", "restore"), default="save")
    ho.set_defaults(func=_host)

    ng = sub.add_parser("nginx", help="the nginx.conf ingress-nginx would run")
    common(ng)
    ng.add_argument("--listen-port", type=int, default=80)
    ng.add_argument("--prefix-dir", default="/tmp/k8slab-nginx")
    ng.set_defaults(func=_nginx)

    ro = sub.add_parser("routes", help="the ingress routing table")
    common(ro)
    ro.set_defaults(func=_routes)
