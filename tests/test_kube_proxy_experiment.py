"""kube-proxy out of the data path (issue 13), on every backend.

* sim: the exact predicted table, the frozen rules while kube-proxy is stopped, the refusal to flush a
  running kube-proxy's rules, the experiment's clean-up on error;
* kind, without Docker: the commands KindBackend issues, in order, and its reading of what kubectl
  prints (a recording runner, texts from kubernetes/kubectl named below);
* netns (root, real kernel): the measured table; flushing with real iptables commands leaves exactly
  what the pure CleanupLeftovers model predicts; endpoint changes are not programmed while stopped;
  the restore brings the same rule counts back;
* kind through the kind emulator (root): the same experiment through kubectl patch/wait/rollout and
  docker exec iptables, command order read from the emulator's log.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, course_lab, skip_unless_root
from k8slab.backends import kubeproxy as kp
from k8slab.errors import LabStateError
from k8slab.experiments import PHASES, kube_proxy_experiment, outcome, status_frame, tidy

WAYS = ["port-forward", "clusterip", "nodeport", "hostport", "ingress"]
A, B = "200 from url-shortener-whjr96ff9w-qc7b6", "200 from url-shortener-whjr96ff9w-v7nc7"


# ------------------------------------------------------------------------------------------- sim
def test_sim_table_is_the_prediction():
    lab = course_lab()
    df = kube_proxy_experiment(lab)
    assert list(df.index) == WAYS and list(df.columns) == list(PHASES)
    assert df.to_dict("index") == {
        "port-forward": {"kube-proxy running": A, "kube-proxy gone": A, "rules flushed": A, "restored": A},
        "clusterip": {"kube-proxy running": B, "kube-proxy gone": A, "rules flushed": "timeout", "restored": B},
        "nodeport": {"kube-proxy running": B, "kube-proxy gone": A, "rules flushed": "refused", "restored": A},
        "hostport": {"kube-proxy running": A, "kube-proxy gone": A, "rules flushed": A, "restored": A},
        "ingress": {"kube-proxy running": B, "kube-proxy gone": B, "rules flushed": B, "restored": B},
    }
    assert df.attrs["predicted"] is True and df.attrs["source"] == "sim model"
    assert df.columns.name == "predicted (sim model)"
    assert all(a.predicted for a in df.attrs["attempts"])
    # why: the ClusterIP packet has no DNAT and goes nowhere; the NodePort SYN reaches the node itself
    errors = {(a.way, a.phase): a.error for a in df.attrs["attempts"] if a.error}
    assert set(errors) == {("clusterip", "rules flushed"), ("nodeport", "rules flushed")}
    assert "nothing has the address" in errors[("clusterip", "rules flushed")]
    assert "nothing listens on 172.18.0.2:30080" in errors[("nodeport", "rules flushed")]
    status = df.attrs["status"]
    assert [status[p][0]["state"] for p in PHASES] == ["running", "stopped", "flushed", "running"]
    assert [bool(status[p][0]["pod present"]) for p in PHASES] == [True, False, False, True]
    assert [bool(status[p][0]["KUBE-SERVICES"]) for p in PHASES] == [True, True, False, True]
    long = tidy(df)
    assert len(long) == 20 and long["answered"].sum() == 18 and long.attrs["predicted"] is True
    # the lab is as the experiment found it
    assert lab.backend.kube_proxy_state() == "running"
    assert lab.kube_proxy_status()["kube-proxy rules"].tolist() == [status["kube-proxy running"][0]["kube-proxy rules"]]
    table = status_frame(df)
    assert table.loc[("rules flushed", "k8slab-control-plane"), "kube-proxy rules"] == 1
    assert str(df) and str(table)           # attrs hold no DataFrame: pandas can still print and concat


def test_sim_stopped_kube_proxy_programs_nothing_and_cannot_be_flushed_while_running():
    lab = course_lab()
    with pytest.raises(LabStateError, match=r"still running.*lab.stop_kube_proxy\(\) first"):
        lab.flush_kube_proxy_rules()
    before = lab.backend.iptables_save("k8slab-control-plane")
    assert any(n.startswith("kube-proxy-") for n in lab.get("pods")["name"])
    lab.stop_kube_proxy()
    assert not any(n.startswith("kube-proxy-") for n in lab.get("pods")["name"])
    lab.scale("url-shortener", 3)
    # nothing reprograms kube-proxy's chains: the Service still has two endpoints in the rules
    stopped = lab.backend.iptables_save("k8slab-control-plane")
    assert kp.rule_counts(stopped) == kp.rule_counts(before)
    assert len(lab.get("endpoints").query("service == 'url-shortener'")) == 3
    lab.start_kube_proxy()
    after = kp.rule_counts(lab.backend.iptables_save("k8slab-control-plane"))
    assert after["service chains"] == kp.rule_counts(before)["service chains"] + 2   # one SEP each, 2 Services


def test_experiment_restores_kube_proxy_when_a_step_fails(monkeypatch):
    lab = course_lab()

    def broken():
        raise RuntimeError("flush failed")
    monkeypatch.setattr(lab, "flush_kube_proxy_rules", broken)
    with pytest.raises(RuntimeError, match="flush failed"):
        kube_proxy_experiment(lab, ways=("clusterip",))
    assert lab.backend.kube_proxy_state() == "running"
    assert lab.kube_proxy_status().iloc[0]["pod present"]


def test_experiment_refuses_unknown_ways_and_a_stopped_start():
    lab = course_lab()
    with pytest.raises(ValueError, match="unknown way"):
        kube_proxy_experiment(lab, ways=("teleport",))
    lab.stop_kube_proxy()
    with pytest.raises(LabStateError, match="start_kube_proxy"):
        kube_proxy_experiment(lab)


def test_outcome_words():
    from k8slab.backends.base import Response
    assert outcome(Response("u", 200, "", whoami={"pod": "p"})) == "200 from p"
    assert outcome(Response("u", None, "", error="timed out connecting to 10.96.0.1:80")) == "timeout"
    assert outcome(Response("u", None, "", error="[Errno 111] Connection refused")) == "refused"
    assert outcome(Response("u", None, "", error="curl: (7) Failed to connect: No route to host")) == "no route"


# --------------------------------------------------------------- the pure CleanupLeftovers model
def test_cleanup_plan_follows_proxier_go():
    lab = course_lab()
    text = lab.backend.iptables_save("k8slab-control-plane")
    plan = kp.cleanup_plan(text)
    assert len(plan.deletes) == len(kp.JUMP_CHAINS) == 12
    # extra args first, then the comment, then the jump (iptablesJumpChain -> DeleteRule args)
    assert plan.delete_argvs()[0] == ["iptables", "-w", "-t", "filter", "-D", "INPUT", "-m", "conntrack",
                                      "--ctstate", "NEW", "-m", "comment", "--comment",
                                      "kubernetes externally-visible service portals", "-j",
                                      "KUBE-EXTERNAL-SERVICES"]
    assert plan.restore["filter"].splitlines()[1:5] == [":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]",
                                                          ":KUBE-FORWARD - [0:0]", ":KUBE-NODEPORTS - [0:0]"]
    after = kp.apply_cleanup(text)
    assert kp.rule_counts(after) == {"KUBE-SERVICES": False, "kube-proxy rules": 1, "jumps to them": 0,
                                     "service chains": 0}
    assert ":KUBE-MARK-MASQ" in after and "KUBE-PROXY-FIREWALL" in after and "-A KUBE-FIREWALL" in after
    assert "CNI-HOSTPORT-DNAT" in after and "KIND-MASQ-AGENT" in after
    assert kp.cleanup_plan(after).deletes == [] and kp.cleanup_plan(after).restore == {}


# --------------------------------------------------------------------- kind: commands, no Docker
class Recorder:
    """Stands in for KindBackend's runner helpers: records argv, answers with kubectl's texts."""

    def __init__(self, backend, dumps):
        from k8slab.runner import Result
        self.Result = Result
        self.calls: list[list[str]] = []
        self.dumps = dumps                    # successive iptables-save texts of the node
        self.selector = {"kubernetes.io/os": "linux"}
        backend._kubectl = self.kubectl
        backend._exec = self.exec
        backend._docker = self.docker
        backend.node_names = lambda: ["k8slab-control-plane"]

    def res(self, argv, out="", rc=0, err=""):
        return self.Result(argv, rc, out, err, 0.01)

    def kubectl(self, *args, timeout=None, input=None, check=True, hint=""):
        argv = ["kubectl", *args]
        self.calls.append(argv)
        if "patch" in args:
            patch = json.loads(args[args.index("-p") + 1])["spec"]["template"]["spec"]["nodeSelector"]
            for k, v in patch.items():
                if v is None:
                    self.selector.pop(k, None)
                else:
                    self.selector[k] = v
            return self.res(argv, "daemonset.apps/kube-proxy patched\n")     # patch.go patchOperation
        if "wait" in args:
            return self.res(argv, "pod/kube-proxy-twvgd condition met\n")    # wait.go: condition met
        if "rollout" in args:     # rollout_status.go DaemonSetStatusViewer.Status
            return self.res(argv, 'Waiting for daemon set "kube-proxy" rollout to finish: 0 of 1 updated pods '
                                  'are available...\ndaemon set "kube-proxy" successfully rolled out\n')
        if "get" in args:
            return self.res(argv, json.dumps({"kind": "DaemonSet", "spec": {"template": {"spec": {
                "nodeSelector": dict(self.selector)}}}}))
        raise AssertionError(argv)

    def exec(self, node, *args, check=True, timeout=None):
        argv = ["docker", "exec", node, *args]
        self.calls.append(argv)
        if args[0].endswith("-save"):
            return self.res(argv, self.dumps[0] if args[0] == "iptables-nft-save" else "", 0)
        if args[0] == "nft":
            return self.res(argv, "", 1, "Error: No such file or directory")
        if args[0] == "iptables-nft" and "-D" in args:
            return self.res(argv)
        raise AssertionError(argv)

    def docker(self, *args, timeout=None, check=True, input=None, hint=""):
        argv = ["docker", *args]
        self.calls.append(argv + ([f"<stdin {len(input)} bytes>"] if input else []))
        return self.res(argv)


def test_kind_backend_issues_the_commands_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("K8SLAB_CACHE", str(tmp_path / "cache"))
    from k8slab.backends.kind import KindBackend
    from k8slab.progress import Progress
    text = course_lab().backend.iptables_save("k8slab-control-plane")
    b = KindBackend("k8slab", root=ROOT, progress=Progress(quiet=True))
    rec = Recorder(b, [text])
    assert b.kube_proxy_state() == "running"
    rec.calls.clear()
    b.stop_kube_proxy(timeout=30)
    assert rec.calls == [
        ["kubectl", "-n", "kube-system", "patch", "ds", "kube-proxy", "-p",
         '{"spec":{"template":{"spec":{"nodeSelector":{"k8slab.io/no-kube-proxy":"true"}}}}}'],
        ["kubectl", "-n", "kube-system", "wait", "--for=delete", "pod", "-l", "k8s-app=kube-proxy", "--timeout=30s"]]
    assert b.kube_proxy_state() == "stopped"          # the selector says so, the rules are still there
    rec.calls.clear()
    b.flush_kube_proxy_rules()
    cmds = [" ".join(c[:7]) for c in rec.calls]
    assert cmds[0] == "docker exec k8slab-control-plane nft list table ip"
    assert cmds[1:3] == ["docker exec k8slab-control-plane iptables-legacy-save -c",
                         "docker exec k8slab-control-plane iptables-nft-save -c"]
    deletes = [c for c in rec.calls if "-D" in c]
    assert len(deletes) == 12 and all(c[3] == "iptables-nft" for c in deletes)     # the flavour holding the rules
    assert [c[:8] for c in rec.calls[-2:]] == [
        ["docker", "exec", "-i", "k8slab-control-plane", "iptables-nft-restore", "-w", "5", "--noflush", ]] * 2
    rec.dumps[0] = kp.apply_cleanup(text)
    assert b.kube_proxy_state() == "flushed"
    rec.calls.clear()
    rec.dumps[0] = text
    b.start_kube_proxy(timeout=30)
    assert rec.calls[:2] == [
        ["kubectl", "-n", "kube-system", "patch", "ds", "kube-proxy", "-p",
         '{"spec":{"template":{"spec":{"nodeSelector":{"k8slab.io/no-kube-proxy":null}}}}}'],
        ["kubectl", "-n", "kube-system", "rollout", "status", "ds/kube-proxy", "--timeout=30s"]]
    assert rec.selector == {"kubernetes.io/os": "linux"}
    assert b.kube_proxy_state() == "running"


# ----------------------------------------------------------------------------- netns, real kernel
NETNS_TOOLS = ("ip", "iptables", "iptables-save", "iptables-restore", "conntrack", "nginx", "ss",
               "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")


@pytest.fixture(scope="module")
def netns_lab():
    skip_unless_root(*NETNS_TOOLS)
    from k8slab import Lab, selftest
    from k8slab.backends.netns import force_cleanup, root_netns_snapshot
    name = f"k8s-kpx-{os.getpid()}"
    before = root_netns_snapshot()
    lab = Lab(backend="netns", name=name, quiet=True)
    try:
        selftest.prepare(lab)
        yield lab
    finally:
        lab.down()
        force_cleanup(name)
        assert root_netns_snapshot() == before


def _node(lab) -> str:
    return lab.get("nodes").iloc[0]["name"]


@pytest.mark.root
def test_netns_measured_table(netns_lab):
    lab = netns_lab
    before = lab.kube_proxy_status()
    df = kube_proxy_experiment(lab, timeout=1.5)
    assert df.attrs["predicted"] is False and df.columns.name.startswith("measured (netns lab k8s-kpx-")
    for way in ("port-forward", "hostport", "ingress"):          # never through kube-proxy's rules
        assert all(c.startswith("200 from url-shortener-") for c in df.loc[way]), df.loc[way]
    for way in ("clusterip", "nodeport"):                         # kube-proxy gone, its rules still work
        assert df.loc[way, "kube-proxy running"].startswith("200 from url-shortener-")
        assert df.loc[way, "kube-proxy gone"].startswith("200 from url-shortener-")
        assert df.loc[way, "restored"].startswith("200 from url-shortener-")
    assert df.loc["clusterip", "rules flushed"] == "timeout"     # no DNAT: out the default route, no answer
    assert df.loc["nodeport", "rules flushed"] == "refused"      # the node's own :30080, nothing listens
    flushed = df.attrs["status"]["rules flushed"][0]
    assert not flushed["KUBE-SERVICES"] and flushed["jumps to them"] == 0 and flushed["service chains"] == 0
    assert not flushed["pod present"] and flushed["state"] == "flushed"
    after = lab.kube_proxy_status()
    cols = ["pod present", "state", "KUBE-SERVICES", "kube-proxy rules", "jumps to them", "service chains"]
    assert after[cols].to_dict("records") == before[cols].to_dict("records")


@pytest.mark.root
def test_netns_flush_is_what_cleanup_leftovers_predicts(netns_lab):
    """The kernel's rules after the real iptables -D / iptables-restore --noflush equal the pure model's."""
    lab = netns_lab
    node = _node(lab)
    lab.stop_kube_proxy()
    try:
        save = lambda: lab.backend.iptables_save(node)            # noqa: E731
        predicted = kp.apply_cleanup(save())
        lab.flush_kube_proxy_rules()
        live = save()

        def shape(text):
            _, tables = kp._tables(text)
            return (sorted((t.name, c) for t in tables for c in t.decl),
                    sorted((t.name, kp._COUNTERS.sub("", line.strip())) for t in tables for _, line in t.rules))
        assert shape(live) == shape(predicted)
        assert kp.rule_counts(live)["jumps to them"] == 0
    finally:
        lab.start_kube_proxy()
    assert kp.service_programmed(lab.backend.iptables_save(node))


@pytest.mark.root
def test_netns_endpoint_changes_are_not_programmed_while_stopped(netns_lab):
    lab = netns_lab
    node = _node(lab)
    counts = lambda: kp.rule_counts(lab.backend.iptables_save(node))    # noqa: E731
    before = counts()
    lab.stop_kube_proxy()
    try:
        lab.scale("url-shortener", 3)
        assert counts() == before                  # the third pod runs, no rule sends it traffic
        assert not any(n.startswith("kube-proxy-") for n in lab.get("pods")["name"])
    finally:
        lab.start_kube_proxy()
    assert counts()["service chains"] == before["service chains"] + 2
    lab.scale("url-shortener", 2)
    assert counts() == before


# ----------------------------------------------------------------- kind, through the kind emulator
FLOW = """
import json, sys
from k8slab import Lab, selftest
from k8slab.experiments import kube_proxy_experiment
lab = Lab(backend="kind", name=sys.argv[1], quiet=True)
selftest.prepare(lab)
df = kube_proxy_experiment(lab, ways=("clusterip", "nodeport", "ingress"), timeout=1.5)
out = {"table": df.to_dict("index"), "state": lab.backend.kube_proxy_state(),
       "status": df.attrs["status"]}
lab.down()
print("RESULT " + json.dumps(out, default=str))
"""


@pytest.mark.root
def test_kind_backend_through_the_emulator(tmp_path):
    skip_unless_root(*NETNS_TOOLS, "curl", "nsenter")
    run = ROOT / "tests" / "kindemu" / "run"
    (tmp_path / "flow.py").write_text(FLOW)
    log = tmp_path / "emu.log"
    cluster = f"k8s-emu-kp{os.getpid() % 100000}"
    res = subprocess.run([str(run), "--mode", "linux", "--", str(ROOT / ".venv" / "bin" / "python"),
                          str(tmp_path / "flow.py"), cluster], capture_output=True, text=True, timeout=400,
                         cwd=ROOT, env={**os.environ, "K8SLAB_CACHE": str(tmp_path / "cache"),
                                        "K8SLAB_EMU_LOG": str(log)})
    line = next((l for l in res.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, res.stdout[-2000:] + res.stderr[-4000:]
    out = json.loads(line[7:])
    t = out["table"]
    assert t["clusterip"]["rules flushed"] == "timeout" and t["nodeport"]["rules flushed"] == "refused"
    assert t["clusterip"]["kube-proxy gone"].startswith("200 from url-shortener-")
    assert all(v.startswith("200 from url-shortener-") for v in t["ingress"].values())
    assert out["state"] == "running"
    assert [out["status"][p][0]["pod present"] for p in PHASES] == [True, False, False, True]
    calls = [json.loads(l) for l in log.read_text().splitlines()]
    words = [" ".join(c["argv"]) for c in calls]
    kube = [w.split(" ", 2)[2] for w in words if w.startswith("--kubeconfig") and
            any(k in w for k in ("patch ds", "--for=delete", "rollout status ds"))]
    assert kube == [f"-n kube-system patch ds kube-proxy -p {kp.STOP_PATCH}",
                    "-n kube-system wait --for=delete pod -l k8s-app=kube-proxy --timeout=120s",
                    f"-n kube-system patch ds kube-proxy -p {kp.START_PATCH}",
                    "-n kube-system rollout status ds/kube-proxy --timeout=180s"]
    i_patch = words.index(f"--kubeconfig {tmp_path}/cache/{cluster}/kubeconfig -n kube-system patch ds kube-proxy "
                          f"-p {kp.STOP_PATCH}")
    deletes = [i for i, w in enumerate(words) if " -D " in w and "KUBE-" in w]
    restores = [i for i, w in enumerate(words) if "-restore -w 5 --noflush" in w]
    starts = [i for i, w in enumerate(words) if kp.START_PATCH in w]
    assert len(deletes) == 12 and len(restores) == 2 and i_patch < deletes[0] < restores[0] < starts[0]


@pytest.mark.root
def test_netns_nftables_mode_flush_deletes_the_kube_proxy_table():
    """kube-proxy --cleanup in nftables mode deletes its table (pkg/proxy/nftables/proxier.go)."""
    skip_unless_root(*NETNS_TOOLS, "nft")
    from k8slab import Lab
    from k8slab.backends.netns import force_cleanup, root_netns_snapshot
    name = f"k8s-kpn-{os.getpid()}"
    before = root_netns_snapshot()
    lab = Lab(backend="netns", name=name, quiet=True)
    try:
        lab.up("kind/cluster-nftables.yaml")
        lab.deploy_app()
        lab.install_ingress_controller()
        lab.apply("kind/manifests/ingress.yaml")
        lab.apply("kind/manifests/app-nodeport.yaml")
        df = kube_proxy_experiment(lab, ways=("clusterip", "nodeport", "hostport"), timeout=1.5)
        assert df.loc["clusterip", "kube-proxy gone"].startswith("200 from url-shortener-")
        assert df.loc[["clusterip", "nodeport"], "rules flushed"].tolist() == ["timeout", "refused"]
        assert all(c.startswith("200 from url-shortener-") for c in df.loc["hostport"])
        status = df.attrs["status"]
        assert [bool(status[p][0]["nft table"]) for p in PHASES] == [True, True, False, True]
        assert lab.kube_proxy_status().iloc[0]["nft table"]
    finally:
        lab.down()
        force_cleanup(name)
        assert root_netns_snapshot() == before


def test_sim_nftables_mode_follows_the_kube_proxy_table():
    """nftables mode: the prediction traces the nft ruleset; stopped, kube-proxy's table stays as it
    was (a third pod gets no element); flushed, the table is gone (nftables CleanupLeftovers)."""
    lab = course_lab(config="kind/cluster-nftables.yaml")
    df = kube_proxy_experiment(lab, ways=("clusterip", "nodeport", "ingress"))
    assert df.loc[["clusterip", "nodeport"], "rules flushed"].tolist() == ["timeout", "refused"]
    assert df.loc["clusterip", "kube-proxy gone"].startswith("200 from url-shortener-")
    assert [bool(df.attrs["status"][p][0]["nft table"]) for p in PHASES] == [True, True, False, True]
    node = lab.get("nodes").iloc[0]["name"]
    table = lambda: lab.backend.nft_list_ruleset(node).split("table ip kube-proxy", 1)[1]   # noqa: E731
    before = table()
    lab.stop_kube_proxy()
    lab.scale("url-shortener", 3)
    assert table() == before
    lab.start_kube_proxy()
    assert table() != before
