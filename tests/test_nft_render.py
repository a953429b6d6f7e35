"""kube-proxy's nftables mode rendered from manifests: the golden transaction byte for byte, and the
``--form ruleset`` text equal to what the kernel lists after loading the transaction (in a throwaway
network namespace; never the root one)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import FIXTURES, ROOT
from k8slab.cli import main as cli_main
from k8slab.model import Cluster, load_objects
from k8slab.model.kubeproxy_nft import NftProxierSettings, render_kube_proxy_nft
from k8slab.netfilter.nft.listing import loadable
from k8slab.netfilter.nft.names import chain_base, endpoint_chain_base

GOLDEN = FIXTURES / "kube-proxy-golden"


def _golden(shared_fixtures, form="transaction") -> str:
    c = Cluster.from_objects(load_objects(GOLDEN / "overall-inputs.yaml"))
    s = NftProxierSettings.from_file(f"{GOLDEN / 'overall-settings.yaml'}#nftables")
    return render_kube_proxy_nft(c.services, c.endpoint_slices(), s, form=form)


def test_names_match_the_notes_verified_hashes():
    assert chain_base("ns1", "svc1", "tcp", "p80") == "ULMVA6XW-ns1/svc1/tcp/p80"
    assert endpoint_chain_base("ns1", "svc1", "tcp", "p80", "10.180.0.1:80") == "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"
    assert chain_base("default", "kubernetes", "tcp", "https").startswith("2QRHZV4L-")
    assert endpoint_chain_base("kube-system", "kube-dns", "udp", "dns", "10.42.0.171:53").startswith("S4FSIJI2-")
    assert chain_base("riset", "hellopod-np-svc", "tcp", "") == "P6J77WGM-riset/hellopod-np-svc/tcp/"


def test_overall_transaction_is_the_golden_file_byte_for_byte(shared_fixtures):
    assert _golden(shared_fixtures) == (GOLDEN / "nft-overall.nft").read_text()


def test_cli_renders_the_golden_file(shared_fixtures, capsys):
    rc = cli_main(["render", "kube-proxy", str(GOLDEN / "overall-inputs.yaml"), "--mode", "nftables",
                   "--settings", f"{GOLDEN / 'overall-settings.yaml'}#nftables"])
    assert rc == 0
    assert capsys.readouterr().out == (GOLDEN / "nft-overall.nft").read_text()


def test_cli_refuses_a_form_of_the_other_mode(shared_fixtures, capsys):
    rc = cli_main(["render", "kube-proxy", str(GOLDEN / "overall-inputs.yaml"), "--form", "ruleset",
                   "--settings", f"{GOLDEN / 'overall-settings.yaml'}#iptables"])
    assert rc == 2
    assert "not a form of --mode iptables" in capsys.readouterr().err


def test_settings_change_the_base_rules(shared_fixtures):
    c = Cluster.from_objects(load_objects(GOLDEN / "overall-inputs.yaml"))
    s = NftProxierSettings.from_file(f"{GOLDEN / 'overall-settings.yaml'}#nftables")
    match_all = NftProxierSettings(base=s.base.replace(node_port_addresses=()), service_cidrs=())
    text = render_kube_proxy_nft(c.services, c.endpoint_slices(), match_all)
    assert "nodeport-ips" not in text
    assert "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports" in text
    assert "Drop traffic to unallocated ClusterIPs" not in text


def _kind_cluster_transaction(replicas: int = 3) -> str:
    c = Cluster.kind(ROOT / "kind" / "cluster.yaml", name="kind", seed=0)
    for m in ("app.yaml", "app-nodeport.yaml"):
        c.apply(load_objects(ROOT / "kind" / "manifests" / m))
    c.scale("url-shortener", replicas)
    node = c.nodes[0]
    from k8slab.model.settings import ProxierSettings
    base = ProxierSettings.for_kind_node(c, node).replace(node_port_addresses=(f"{node.ip}/32",))
    s = NftProxierSettings(base=base, service_cidrs=(c.service_subnet,))
    return c, s


# --- the kernel decides -------------------------------------------------------------------------

def _kernel_list(transaction: str, as_is: bool = False) -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root (a throwaway network namespace for nft)")
    if shutil.which("nft") is None or shutil.which("ip") is None:
        pytest.skip("missing nft or ip: apt-get install -y nftables iproute2")
    ns = f"k8s-nft-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=transaction if as_is else loadable(transaction), text=True,
                       check=True, capture_output=True)
        return subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], text=True, check=True,
                              capture_output=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_golden_ruleset_form_is_what_the_kernel_lists(shared_fixtures):
    assert _golden(shared_fixtures, "ruleset") == _kernel_list(_golden(shared_fixtures))


@pytest.mark.parametrize("replicas", [1, 3, 7])
def test_kind_cluster_ruleset_form_is_what_the_kernel_lists(replicas):
    c, s = _kind_cluster_transaction(replicas)
    tx = render_kube_proxy_nft(c.services, c.endpoint_slices(), s)
    assert f"numgen random mod {replicas} vmap" in tx
    assert f"add element ip kube-proxy nodeport-ips {{ {c.nodes[0].ip} }}" in tx
    # kube-dns has three ports on one ClusterIP: one cluster-ips element (ensureElem adds a key once)
    assert tx.count("add element ip kube-proxy cluster-ips { 10.96.0.10 }") == 1
    assert tx.count("add element ip kube-proxy service-ips { 10.96.0.10 . ") == 3
    assert render_kube_proxy_nft(c.services, c.endpoint_slices(), s, form="ruleset") == _kernel_list(tx)


def test_ruleset_form_loads_and_lists_back_unchanged(shared_fixtures):
    """The --form ruleset text is itself an `nft -f` input: loaded and listed back, it is unchanged."""
    text = _golden(shared_fixtures, "ruleset")
    assert _kernel_list(text, as_is=True) == text
    c, s = _kind_cluster_transaction(3)
    text = render_kube_proxy_nft(c.services, c.endpoint_slices(), s, form="ruleset")
    assert _kernel_list(text, as_is=True) == text
