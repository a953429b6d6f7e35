"""nft's three forms (transaction, ``nft list ruleset``, ``nft -j list ruleset``) read into one model;
pandas views and owners; malformed input is one error naming the line. The kernel (a throwaway
network namespace) supplies the listing and JSON forms where the test runs as root."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import FIXTURES, ROOT
from k8slab.errors import ParseError
from k8slab.model import Cluster, load_objects, render_node_restore
from k8slab.model.kubeproxy_nft import NftProxierSettings, render_kube_proxy_nft
from k8slab.netfilter.nft.listing import _elem_sort_key, canonical, list_ruleset, loadable
from k8slab.netfilter.nft.parser import detect_form, parse_nft

GOLDEN = FIXTURES / "kube-proxy-golden"
DUMP09 = FIXTURES / "real-dumps" / "09-k3s-nftables-mode-nft-list-table.nft"


def _kind_transaction() -> str:
    from k8slab.model.settings import ProxierSettings
    c = Cluster.kind(ROOT / "kind" / "cluster.yaml", name="kind", seed=0)
    for m in ("app.yaml", "app-nodeport.yaml"):
        c.apply(load_objects(ROOT / "kind" / "manifests" / m))
    node = c.nodes[0]
    base = ProxierSettings.for_kind_node(c, node).replace(node_port_addresses=(f"{node.ip}/32",))
    return render_kube_proxy_nft(c.services, c.endpoint_slices(),
                                 NftProxierSettings(base=base, service_cidrs=(c.service_subnet,)))


def _summary(rs, table=None):
    """Everything the model holds, in nft's printed words, comparable across forms."""
    out = []
    for t in rs.tables:
        if table and t.name != table:
            continue
        for c in t.chains.values():
            out.append(("chain", t.family, t.name, c.name, c.type, c.hook, c.priority, c.policy or ("accept" if c.hook else None),
                        tuple((canonical(r.expr), r.comment) for r in c.rules)))
        for s in t.sets.values():
            out.append(("set", t.family, t.name, s.name, s.type, s.map_type, s.comment,
                        tuple(sorted((e.key, e.value, e.comment) for e in s.elements))))
    return sorted(out, key=repr)


def test_forms_are_detected():
    assert detect_form("add table ip t\n") == "transaction"
    assert detect_form("# c\n\ntable ip t {\n}\n") == "ruleset"
    assert detect_form('{"nftables": []}') == "json"


def test_transaction_and_its_listing_are_one_model():
    tx = _kind_transaction()
    a = parse_nft(loadable(tx))
    b = parse_nft(list_ruleset(a))
    assert a.source == "transaction" and b.source == "ruleset"
    assert _summary(a) == _summary(b)
    kp = a.table("ip", "kube-proxy")
    assert kp.comment == "rules for kube-proxy"
    pre = kp.chains["nat-prerouting"]
    assert (pre.type, pre.hook, pre.priority) == ("nat", "prerouting", -100)
    assert [c.name for c in a.base_chains("output")] == ["filter-output-pre-dnat", "nat-output", "filter-output"]
    assert kp.sets["service-ips"].is_map and kp.sets["service-ips"].map_type == "verdict"


def test_views_and_owners():
    rs = parse_nft(loadable(_kind_transaction()))
    rules, chains, sets, elems = rs.rules_frame, rs.chains_frame, rs.sets_frame, rs.elements_frame
    assert set(rules.owner) == {"kube-proxy"}
    svc = rules[rules.chain.str.startswith("service-") & rules.chain.str.contains("/") & rules.verdict.str.startswith("vmap")]
    assert len(svc) >= 1 and svc.matches.str.startswith("numgen random mod").all()
    mm = rules[rules.chain == "mark-for-masquerade"].iloc[0]
    assert mm.verdict == "" and "mark set mark or" in mm.matches
    ext = chains.set_index("chain").loc["mark-for-masquerade"]
    assert ext.hook is None and "endpoint-" in ext.jumped_from
    row = chains.set_index("chain").loc["nat-prerouting"]
    assert (row.hook, row.priority) == ("prerouting", -100)
    assert sets.set_index("set").loc["service-ips", "kind"] == "map"
    e = elems[(elems.set == "service-ips") & elems.key.str.startswith("10.96.0.1 . tcp . 443")].iloc[0]
    assert e.target.startswith("service-") and e.target.endswith("default/kubernetes/tcp/https")


@pytest.mark.parametrize("text, lineno, words", [
    ("add table ip t\nadd chain ip t c\nadd rule ip t nope ip daddr 1.2.3.4 drop\n", 3, "no chain 'nope'"),
    ("add table ip t\nadd element ip t s { 1.2.3.4 }\n", 2, "no set or map 's'"),
    ("add table ip t\nadd chain ip t c { type filter hook input priority sideways ; }\n", 2, "priority"),
    ("add table ip t\nadd map ip t m { type ipv4_addr ; }\n", 2, "KEY : VALUE"),
    ("add table ip t\nfrobnicate\n", 2, "not an nft command"),
    ("table ip t {\n\tchain c {\n\t\tdrop\n\t}\n\tbogus line\n}\n", 5, "inside a table"),
    ("table ip t {\n\tset s {\n\t\ttype ipv4_addr\n", 3, "unterminated"),
    ('{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"warp": 9}]}}]}', None, "warp"),
    ('{"nftables": [', 1, "invalid JSON"),
])
def test_malformed_input_is_one_error_with_the_line(text, lineno, words):
    with pytest.raises(ParseError) as e:
        parse_nft(text)
    assert e.value.lineno == lineno
    assert words in str(e.value)


def test_real_k3s_dump_parses_with_its_chains_and_element_order(shared_fixtures):
    rs = parse_nft(DUMP09.read_text())
    kp = rs.table("ip", "kube-proxy")
    prios = {c.name: c.priority for c in kp.chains.values() if c.is_base}
    assert prios["filter-prerouting"] == -110 and prios["filter-output-post-dnat"] == -90
    assert prios["nat-postrouting"] == 100
    # the kernel's element order, as the dump shows it, is the order the listing sorts into
    for s in kp.sets.values():
        keys = [e.key for e in s.elements]
        assert keys == sorted(keys, key=lambda k: _elem_sort_key(s, k)), s.name
    assert len(kp.sets["service-ips"].elements) >= 5


# --- the kernel's own listing and JSON ---------------------------------------------------------

def _kernel(*loads: tuple[list[str], str]) -> tuple[str, str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a throwaway network namespace for nft)")
    for tool in ("nft", "ip", "iptables-nft-restore"):
        if shutil.which(tool) is None:
            pytest.skip(f"missing {tool}: apt-get install -y nftables iptables iproute2")
    ns = f"k8s-nft-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for argv, text in loads:
            subprocess.run(["ip", "netns", "exec", ns, *argv], input=text, text=True, check=True, capture_output=True)
        run = lambda *a: subprocess.run(["ip", "netns", "exec", ns, "nft", *a, "list", "ruleset"], text=True,
                                        check=True, capture_output=True).stdout
        return run(), run("-j")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_kernel_listing_and_json_read_as_the_transaction_says():
    tx = _kind_transaction()
    text, js = _kernel((["nft", "-f", "-"], loadable(tx)))
    a, b, c = parse_nft(loadable(tx)), parse_nft(text), parse_nft(js)
    assert (b.source, c.source) == ("ruleset", "json")
    assert _summary(a) == _summary(b) == _summary(c)
    assert list_ruleset(b) == text


def test_kernel_mixed_ruleset_owners_iptables_nft_tables_and_kube_proxy():
    """A node in nftables mode: kube-proxy's table beside the iptables-nft tables that kindnet, portmap,
    Docker and kubelet write with iptables."""
    cl = Cluster.kind(ROOT / "kind" / "cluster.yaml", name="kind", seed=0)
    for m in ("app.yaml", "ingress-nginx.yaml"):
        cl.apply(load_objects(ROOT / "kind" / "manifests" / m))
    text, js = _kernel((["iptables-nft-restore"], render_node_restore(cl, cl.nodes[0])),
                       (["nft", "-f", "-"], loadable(_kind_transaction())))
    for rs in (parse_nft(text), parse_nft(js)):
        assert {(t.family, t.name) for t in rs.tables} >= {("ip", "nat"), ("ip", "filter"), ("ip", "kube-proxy")}
        owners = rs.chains_frame.groupby("table").owner.agg(set)
        assert owners["kube-proxy"] == {"kube-proxy"}
        assert {"kind", "CNI portmap", "Docker", "builtin"} <= owners["nat"]
        pre = [(c.table, c.name, c.priority) for c in rs.base_chains("prerouting") if c.type == "nat"]
        assert ("nat", "PREROUTING", -100) in pre and ("kube-proxy", "nat-prerouting", -100) in pre
    # the kube-proxy table reads the same from both; iptables-nft's xt matches do not (JSON names them
    # "xt match comment", the text drops them), so those tables are best read from iptables-save
    assert _summary(parse_nft(text), "kube-proxy") == _summary(parse_nft(js), "kube-proxy")
