"""The lab in kube-proxy's nftables mode (kind/cluster-nftables.yaml): sim exactly, and the netns
backend on the real kernel (root): kube-proxy's table loaded with nft -f beside the iptables-nft
tables, conntrack against the tracer, the numgen spread, and the listing against the renderer."""
from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction

import pytest

from conftest import ROOT
from k8slab.lab import Lab, choose_proxy_mode
from k8slab.netfilter.nft import parse_nft
from k8slab.netfilter.nft.node import iptables_to_nft, node_iptables_save, render_node_kube_proxy, without_kube_proxy


def test_proxy_mode_choice():
    assert choose_proxy_mode(None, env={}) == "iptables"
    assert choose_proxy_mode(None, env={"K8SLAB_PROXY_MODE": "nftables"}) == "nftables"
    assert choose_proxy_mode("iptables", env={"K8SLAB_PROXY_MODE": "nftables"}) == "iptables"
    with pytest.raises(ValueError, match="iptables or nftables"):
        choose_proxy_mode("ipvs", env={})


def test_cluster_config_differs_only_in_the_mode():
    import yaml
    a = yaml.safe_load((ROOT / "kind" / "cluster.yaml").read_text())
    b = yaml.safe_load((ROOT / "kind" / "cluster-nftables.yaml").read_text())
    assert a["networking"].pop("kubeProxyMode") == "iptables"
    assert b["networking"].pop("kubeProxyMode") == "nftables"
    assert a == b


@pytest.fixture(scope="module")
def sim_lab():
    lab = Lab(backend="sim", proxy_mode="nftables", quiet=True, root=ROOT).up()
    lab.deploy_app(replicas=3)
    return lab


def test_sim_nftables(sim_lab):
    lab = sim_lab
    assert lab.proxy_mode == "nftables"
    rs = lab.nftables()
    assert [(t.family, t.name) for t in rs.tables] == [("ip", "mangle"), ("ip", "filter"), ("ip", "nat"),
                                                       ("ip", "kube-proxy")]
    # kube-proxy writes no iptables rule in nftables mode; the other writers' stay
    ipt = lab.iptables()
    assert ipt.chain("nat", "KUBE-SERVICES") is None
    assert ipt.chain("nat", "KIND-MASQ-AGENT") is not None
    assert set(rs.rules_frame["owner"]) >= {"kube-proxy", "kind", "Docker"}
    svc = lab.backend.model().service("url-shortener", "default")
    t = lab.trace(svc.cluster_ip, 80)
    dist = t.by_destination()
    assert len(dist) == 3 and set(dist.values()) == {Fraction(1, 3)}
    assert any("numgen random mod 3 vmap" in (h.line or "") for h in t.outcomes[0].hops)
    assert not any(o.unknown for o in t.outcomes)
    # the same packet in iptables mode: the probability cascade, the same spread
    lab2 = Lab(backend="sim", quiet=True, root=ROOT).up()
    lab2.deploy_app(replicas=3)
    assert lab2.proxy_mode == "iptables"
    t2 = lab2.trace(lab2.backend.model().service("url-shortener", "default").cluster_ip, 80)
    # the cascade's --probability is the kernel's fixed point (715827883 / 2^31), numgen's 1/3 exact
    assert {v.limit_denominator(100) for v in t2.by_destination().values()} == {Fraction(1, 3)}
    assert Fraction(715827883, 2 ** 31) in set(t2.by_destination().values())
    assert any("--probability" in (h.line or "") for h in t2.outcomes[0].hops)


def test_sim_paths_and_requests_in_nftables_mode(sim_lab):
    lab = sim_lab
    p = lab.path("clusterip")
    assert any("kube-proxy" in h.action and "DNAT" in h.action for h in p.hops)
    assert any(h.component.value == "kube-proxy" for h in p.hops) or any(
        "kube-proxy" in str(h.component) for h in p.hops)
    svc = lab.backend.model().service("url-shortener", "default")
    answers = lab.requests(f"http://{svc.cluster_ip}/", 30, from_="pod")
    assert all(a.status == 200 for a in answers)
    wrong_port = lab.request(f"http://{svc.cluster_ip}:81/", from_="pod")
    assert wrong_port.status is None and "no Service has port 81" in wrong_port.error


def test_without_kube_proxy_keeps_the_other_writers():
    text = """*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KIND-MASQ-AGENT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -d 172.18.0.1/32 -j DOCKER_OUTPUT
-A KUBE-SERVICES -j KUBE-NODEPORTS
-A KIND-MASQ-AGENT -j MASQUERADE
COMMIT
"""
    out = without_kube_proxy(text)
    assert "KUBE-SERVICES" not in out and "KUBE-KUBELET-CANARY" in out and "DOCKER_OUTPUT" in out


# --- the real kernel ---------------------------------------------------------------------------

def _need_root_tools(*tools):
    if os.geteuid() != 0:
        pytest.skip("needs root (throwaway network namespaces)")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"missing {tool}: apt-get install -y nftables iptables conntrack iproute2")


def _norm(line: str) -> str:
    import re
    line = re.sub(r"\s+", " ", line.strip())
    line = re.sub(r' comment ".*"$', "", line)
    return line


def test_iptables_to_nft_is_what_the_kernel_lists():
    """The course's node rules (nftables mode: no kube-proxy chains) restored with iptables-nft in a
    throwaway namespace and listed by nft: every table, chain and rule of iptables_to_nft's text
    parses to the same meaning; here, the same rules word for word once spaces and comments (which
    nft 1.0.6 does not print for iptables-nft rules) are set aside, but for the order of matches
    iptables-nft keeps."""
    _need_root_tools("nft", "iptables-restore", "ip")
    from k8slab.model import Cluster, load_objects
    c = Cluster.kind(ROOT / "kind" / "cluster-nftables.yaml", name="k8slab", seed=0)
    for m in ("app.yaml", "app-nodeport.yaml", "ingress-nginx.yaml"):
        c.apply(load_objects(ROOT / "kind" / "manifests" / m))
    restore = node_iptables_save(c, c.nodes[0], form="restore")
    ns = f"k8s-nftl-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "iptables-restore"], input=restore, text=True, check=True)
        listed = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "ruleset"], capture_output=True,
                                text=True, check=True).stdout
        saved = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-c"], capture_output=True,
                               text=True, check=True).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    kernel = parse_nft(listed)
    ours = parse_nft(iptables_to_nft(saved))
    assert [(t.family, t.name) for t in kernel.tables] == [(t.family, t.name) for t in ours.tables]
    for t in kernel.tables:
        o = ours.table(t.family, t.name)
        assert sorted(t.chains) == sorted(o.chains)     # iptables-save orders chains its own way
        for name, ch in t.chains.items():
            oc = o.chains[name]
            assert (ch.hook, ch.priority, ch.type) == (oc.hook, oc.priority, oc.type), name
            assert len(ch.rules) == len(oc.rules), name
            for a, b in zip(ch.rules, oc.rules):
                wa, wb = sorted(_norm(a.line).split()), sorted(_norm(b.line).split())
                assert a.verdict == b.verdict and (wa == wb or set(wa) - set(wb) <= {"meta", "l4proto", "tcp"}), \
                    (name, a.line, b.line)


# --- the netns backend in nftables mode (real kernel, root) --------------------------------------

NETNS_TOOLS = ("ip", "iptables-save", "iptables-restore", "nft", "conntrack", "nginx", "ss",
               "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")
NAME = f"k8s-nft-{os.getpid()}"


@pytest.fixture(scope="module")
def netns_lab():
    from conftest import skip_unless_root
    skip_unless_root(*NETNS_TOOLS)
    from k8slab.backends.netns import force_cleanup
    lab = Lab(backend="netns", name=NAME, proxy_mode="nftables", quiet=True, root=ROOT)
    try:
        lab.up()
        lab.deploy_app(replicas=3)
        lab.apply(ROOT / "kind" / "manifests" / "app-nodeport.yaml")
        lab.install_ingress_controller()
        yield lab
    finally:
        lab.down()
        force_cleanup(NAME)


def test_netns_loads_kube_proxys_table_beside_iptables(netns_lab):
    lab = netns_lab
    assert lab.proxy_mode == "nftables"
    rs = lab.nftables()
    names = [(t.family, t.name) for t in rs.tables]
    assert ("ip", "kube-proxy") in names and ("ip", "nat") in names
    # iptables() keeps working for the iptables-nft tables: portmap and kindnet, no kube-proxy chain
    ipt = lab.iptables()
    assert ipt.chain("nat", "KUBE-SERVICES") is None and ipt.chain("nat", "KIND-MASQ-AGENT") is not None
    assert any(c.startswith("CNI-DN-") for c in ipt.chains_frame["chain"]) if hasattr(ipt, "chains_frame") else True
    # the loaded table listed back equals the renderer's --form ruleset
    from k8slab.netfilter.nft.listing import list_ruleset
    from k8slab.netfilter.nft.model import NftRuleset
    node = lab.backend.model().control_plane
    kernel = NftRuleset([rs.table("ip", "kube-proxy")])
    assert list_ruleset(kernel) == render_node_kube_proxy(lab.backend.model(), node, form="ruleset")


def _conntrack_dnat(lab, node, src, dst, dport):
    hits = [e for e in lab.backend.conntrack(node) if e.dst == dst and e.dport == dport and e.src == src]
    assert hits, f"no conntrack entry {src} -> {dst}:{dport}"
    return f"{hits[-1].reply_src}:{hits[-1].reply_sport}"


def test_netns_every_way_in_equals_the_trace(netns_lab):
    """ClusterIP from a pod and from the node, NodePort and hostPort from the host: the DNAT
    conntrack recorded is one the nft tracer predicted, over the node's live nft ruleset."""
    lab = netns_lab
    c = lab.backend.model()
    node = c.control_plane
    svc = c.service("url-shortener", "default")
    client = lab.client_pod()
    client_ip = next(p.ip for p in c.pods if f"{p.namespace}/{p.name}" == client)
    ways = [("pod", client, client_ip, svc.cluster_ip, 80),
            ("node", node.name, node.ip, svc.cluster_ip, 80),
            ("host", None, "172.18.0.1", node.ip, 30080),
            ("host", None, "172.18.0.1", node.ip, 80)]
    for from_, source, src, dst, dport in ways:
        lab.backend.conntrack_flush(node.name)
        r = lab.request(f"http://{dst}:{dport}/whoami", from_=from_, source=source)
        assert r.status, (from_, dst, dport, r.error)      # answered (the controller: 404, no Ingress yet)
        recorded = _conntrack_dnat(lab, node.name, src, dst, dport)
        t = lab.trace(dst, dport, src=src)
        predicted = t.by_destination()
        assert predicted.get(recorded, 0) > 0, (from_, dst, dport, predicted, recorded)
        assert not any(o.unknown for o in t.outcomes), [o.unknown for o in t.outcomes]


def test_netns_300_connections_spread_one_third_each(netns_lab):
    from collections import Counter
    lab = netns_lab
    svc = lab.backend.model().service("url-shortener", "default")
    t = lab.trace(svc.cluster_ip, 80)
    assert set(t.by_destination().values()) == {Fraction(1, 3)}
    answers = lab.requests(f"http://{svc.cluster_ip}/whoami", 300, from_="pod")
    seen = Counter(a.pod for a in answers if a.ok)
    assert sum(seen.values()) == 300 and len(seen) == 3
    # binomial(300, 1/3): sd = sqrt(300 * 1/3 * 2/3) = 8.2; |k - 100| <= 27 is about 3.3 sd
    assert all(abs(k - 100) <= 27 for k in seen.values()), seen


def test_netns_resync_follows_scaling(netns_lab):
    lab = netns_lab
    svc = lab.backend.model().service("url-shortener", "default")
    lab.scale("url-shortener", 2)
    try:
        assert set(lab.trace(svc.cluster_ip, 80).by_destination().values()) == {Fraction(1, 2)}
        assert "numgen random mod 2 vmap" in lab.backend.nft_list_ruleset(lab.backend.model().control_plane.name)
    finally:
        lab.scale("url-shortener", 3)


# --- the kind backend in nftables mode, through the kind emulator (tests/kindemu, root) -----------

KIND_FLOW = """
import json, sys
from fractions import Fraction
from k8slab import Lab
lab = Lab(backend="kind", name=sys.argv[1], quiet=True, proxy_mode="nftables")
out = {}
try:
    lab.up(); lab.deploy_app(replicas=3)
    rs = lab.nftables()                                   # docker exec NODE nft list ruleset
    out["tables"] = [f"{t.family} {t.name}" for t in rs.tables]
    out["kube_proxy_chains_in_iptables"] = lab.iptables().chain("nat", "KUBE-SERVICES") is not None
    ip = lab.backend.model().service("url-shortener").cluster_ip
    t = lab.trace(ip, 80)
    out["spread"] = sorted(str(v) for v in t.by_destination().values())
    r = lab.request(f"http://{ip}/whoami", from_="pod")
    out["pod"] = r.status
finally:
    lab.down()
print("RESULT " + json.dumps(out))
"""


def test_kind_backend_in_nftables_mode_through_the_emulator(tmp_path):
    """kind/cluster-nftables.yaml through the kind backend's own code on the emulator: lab.nftables()
    reads `docker exec NODE nft list ruleset`, lab.trace goes through kube-proxy's table."""
    import json
    from conftest import skip_unless_root
    skip_unless_root(*NETNS_TOOLS, "curl", "nsenter")
    run = ROOT / "tests" / "kindemu" / "run"
    cluster = f"k8s-emu-n{os.getpid() % 100000}"
    (tmp_path / "flow.py").write_text(KIND_FLOW)
    res = subprocess.run([str(run), "--mode", "linux", "--", str(ROOT / ".venv" / "bin" / "python"),
                          str(tmp_path / "flow.py"), cluster], capture_output=True, text=True, timeout=400,
                         cwd=ROOT, env={**os.environ, "K8SLAB_CACHE": str(tmp_path / "cache")})
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, res.stdout[-2000:] + res.stderr[-4000:]
    out = json.loads(line[7:])
    assert "ip kube-proxy" in out["tables"] and "ip nat" in out["tables"]
    assert out["kube_proxy_chains_in_iptables"] is False
    assert out["spread"] == ["1/3", "1/3", "1/3"]
    assert out["pod"] == 200


# --- the CLI: k8slab rules / k8slab trace on nft files ---------------------------------------------

GOLDEN_NFT = "kube-proxy-golden/nft-overall.nft"


def _nft_forms(tmp_path, shared_fixtures):
    """The golden transaction, its listing (the renderer's --form ruleset) and, with nft and root,
    the kernel's JSON of it loaded in a throwaway namespace."""
    from conftest import FIXTURES
    from k8slab.netfilter.nft.listing import list_ruleset, loadable
    tx = (FIXTURES / GOLDEN_NFT).read_text()
    forms = {"transaction": tx, "ruleset": list_ruleset(parse_nft(loadable(tx)))}
    if os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip"):
        ns = f"k8s-nftj-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=loadable(tx), text=True, check=True)
            forms["json"] = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"],
                                           capture_output=True, text=True, check=True).stdout
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    paths = {}
    for form, text in forms.items():
        paths[form] = tmp_path / f"golden.{form}"
        paths[form].write_text(text)
    return paths


def test_cli_rules_and_trace_read_every_nft_form(tmp_path, capsys, shared_fixtures):
    import json
    from k8slab.cli import main
    paths = _nft_forms(tmp_path, shared_fixtures)
    traces = {}
    for form, path in paths.items():
        assert main(["rules", str(path), "--table", "kube-proxy", "--chain", "services", "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["verdict"] for r in rows] == ["vmap @service-ips", "vmap @service-nodeports"], form
        assert {r["owner"] for r in rows} == {"kube-proxy"}
        assert main(["trace", str(path), "--dst", "172.30.0.44", "--dport", "80", "--src", "10.0.0.2",
                     "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        traces[form] = sorted((o["destination"], o["probability"]) for o in out["outcomes"])
    assert len(set(map(tuple, traces.values()))) == 1, traces
    assert [d for d, _ in traces["transaction"]] == ["10.180.0.4:80", "10.180.0.5:80"]


def test_cli_rules_nft_errors_and_iptables_unchanged(tmp_path, capsys, shared_fixtures):
    from k8slab.cli import main
    paths = _nft_forms(tmp_path, shared_fixtures)
    assert main(["rules", str(paths["ruleset"]), "--table", "nat"]) != 0
    assert "no table 'nat'" in capsys.readouterr().err
    ipt = tmp_path / "dump.rules"
    ipt.write_text("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
                   "-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n")
    assert main(["rules", str(ipt), "--table", "nat"]) == 0
    assert "KUBE-SERVICES" in capsys.readouterr().out


def test_is_nft_tells_the_forms_apart():
    from k8slab.netfilter.nft.files import is_nft
    assert is_nft("table ip kube-proxy {\n}\n") and is_nft("add table ip kube-proxy\n") and is_nft('{"nftables": []}')
    assert not is_nft("# Generated by iptables-save\n*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
    assert not is_nft("[0:0] -A PREROUTING -j KUBE-SERVICES\n")


# --- the course's comparison series (k8slab.measure) ---------------------------------------------

def test_measure_compare_on_sim_counts_rules_and_says_what_it_would_measure():
    from k8slab import measure
    df = measure.compare((10, 100), backend="sim")
    assert list(df["mode"]) == ["iptables", "nftables"] * 2 and df.attrs["predicted"]
    by = {(r.services, r.mode): r for r in df.itertuples()}
    # iptables: a KUBE-SERVICES rule, a KUBE-SVC chain and a KUBE-SEP chain per endpoint, per Service;
    # nftables: the same per-Service chains, but the dispatch is one map element, not a rule
    assert by[(100, "iptables")].rules - by[(10, "iptables")].rules == 90 * 11
    assert by[(100, "nftables")].elements - by[(10, "nftables")].elements == 90 * 2
    assert by[(100, "nftables")].rules < by[(100, "iptables")].rules
    assert df["kernel_connect_us"].isna().all() and df["kernel"].str.startswith("would measure").all()
    assert (df["trace_ms"] > 0).all()


def test_measure_kernel_connect_times_on_the_real_kernel():
    from k8slab import measure
    ok, why = measure.kernel_available()
    if not ok:
        pytest.skip(why)
    df = measure.compare((10,), backend="netns", samples=20)
    assert not df.attrs["predicted"] and (df["kernel"] == "measured").all()
    assert (df["kernel_connect_us"] > 0).all() and (df["kernel_connect_us"] < 1e5).all()
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith(f"k8s-m{os.getpid() % 100000}")]


# --- the 09 exercises (k8slab.exercises.BANK_09) ------------------------------------------------

@pytest.fixture(scope="module")
def labs_09():
    from k8slab.exercises import prepare
    out = {}
    for mode in ("nftables", "iptables"):      # in iptables mode the truths are predicted from the rendering
        lab = Lab(backend="sim", proxy_mode=mode, quiet=True, root=ROOT)
        prepare(lab, "09")
        out[mode] = lab
    return out


def _bank_09():
    from k8slab.exercises import BANK_09
    return sorted(BANK_09)


@pytest.mark.parametrize("mode", ["nftables", "iptables"])
@pytest.mark.parametrize("ex_id", _bank_09())
def test_09_exercises(ex_id, mode, labs_09):
    from k8slab import exercises
    lab = labs_09[mode]
    ex = exercises.BANK_09[ex_id]
    r = exercises.check(ex_id, exercises.evaluate_solution(ex_id, lab), lab)
    assert r.ok is True, r.text()
    wrong = exercises.check(ex_id, exercises.evaluate(ex.wrong, lab), lab)
    assert wrong.ok is False and wrong.hints, wrong.text()
    for expr in ex.equivalents:
        assert exercises.check(ex_id, exercises.evaluate(expr, lab), lab).ok is True, expr
    for expr in ex.wrongs:
        res = exercises.check(ex_id, exercises.evaluate(expr, lab), lab)
        assert res.ok is False and res.hints, expr
