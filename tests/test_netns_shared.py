"""The netns lab is shared like a kind cluster (root): it belongs to no Python process.

- Two real processes on one lab: B attaches while A runs, sees A's objects, scales them, A sees the
  new pods; A exits and the lab keeps answering (A's app processes keep running); only down() removes it.
- A recorded pid whose start time differs (a reused pid) is never signalled.
- A failed CNI ADD is followed by DEL of the whole list (as containerd does), leaving no veth or lease.

Lab names carry this run's pid (``k8s-ns...-<pid>``); everything is removed even when a check fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, skip_unless_root
from k8slab import runner
from k8slab.backends import cni
from k8slab.backends.netns import plumbing as pl

TOOLS = ("ip", "iptables-save", "iptables-restore", "conntrack", "nginx", "ss",
         "/usr/lib/cni/ptp", "/usr/lib/cni/host-local", "/usr/lib/cni/portmap")
NAME = f"k8s-ns-{os.getpid()}"

pytestmark = pytest.mark.root


def netns_of(prefix: str) -> list[str]:
    return [n for n in pl.netns_list() if n.startswith(f"{prefix}-")]


# A's kernel: brings the lab up, deploys the app, waits for "go", reports the pods it sees, and
# leaves without down() (its Lab object is dropped and collected first).
KERNEL_A = textwrap.dedent("""
    import gc, json, sys, time
    from pathlib import Path
    from k8slab import Lab
    name, go = sys.argv[1], Path(sys.argv[2])
    lab = Lab(backend="netns", name=name, quiet=True).up()
    lab.deploy_app(replicas=2)
    print("UP " + json.dumps(sorted(lab.get("pods")["name"])), flush=True)
    while not go.exists():
        time.sleep(0.05)
    print("PODS " + json.dumps(sorted(lab.get("pods")["name"])), flush=True)
    del lab
    gc.collect()
""")

# Another kernel that only attaches and asks: how long up() takes when the lab is there.
KERNEL_C = textwrap.dedent("""
    import json, sys, time
    from k8slab import Lab
    lab = Lab(backend="netns", name=sys.argv[1], quiet=True)
    t = time.perf_counter(); lab.up(); took = time.perf_counter() - t
    ip = lab.backend.model().service("url-shortener").cluster_ip
    r = lab.request(f"http://{ip}/whoami", from_="pod")
    print("C " + json.dumps({"attach_s": took, "status": r.status, "pod": r.pod}), flush=True)
""")


def _line(proc: subprocess.Popen, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix):].strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no {prefix!r} line from the kernel: {proc.stderr.read()[-3000:]}")


def test_two_kernels_share_one_lab_that_outlives_them(tmp_path):
    skip_unless_root(*TOOLS)
    from k8slab import Lab
    pl.force_cleanup(NAME)
    go = tmp_path / "go"
    a = subprocess.Popen([sys.executable, "-c", KERNEL_A, NAME, str(go)], cwd=ROOT, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b = None
    try:
        a_pods = json.loads(_line(a, "UP ", 120))
        app = {p for p in a_pods if p.startswith("url-shortener-")}
        assert len(app) == 2 and a.poll() is None
        a_procs = {k: v["pid"] for k, v in pl.read_state(NAME)["procs"].items()}
        # B attaches while A runs: nothing is rebuilt (same helper processes), A's objects are there
        b = Lab(backend="netns", name=NAME, quiet=True)
        started = time.perf_counter()
        b.up()
        attach_s = time.perf_counter() - started
        assert {k: p.pid for k, p in b.backend._procs.items()} == a_procs
        assert app <= set(b.get("pods")["name"])
        b.scale("url-shortener", 3)
        b.wait_ready(60)
        b_app = {p for p in b.get("pods")["name"] if p.startswith("url-shortener-")}
        assert len(b_app) == 3 and app <= b_app
        # ... and A, still running, sees B's new pod
        go.touch()
        seen_by_a = set(json.loads(_line(a, "PODS ", 60)))
        assert b_app <= seen_by_a
        assert a.wait(60) == 0, a.stderr.read()[-3000:]
        # A has exited: the lab is up, A's app processes still serve, a third kernel attaches
        assert b.backend.is_up() and pl.read_state(NAME)["status"] == "up"
        procs = pl.read_state(NAME)["procs"]
        assert {k for k in procs if k.startswith("docker-proxy-")} and all(
            pl.proc_running(v["pid"], v["start"]) for v in procs.values()), procs
        ip = b.backend.model().service("url-shortener").cluster_ip
        answered = {b.request(f"http://{ip}/whoami", from_="pod").pod for _ in range(30)}
        assert answered == b_app, answered
        c = subprocess.run([sys.executable, "-c", KERNEL_C, NAME], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        out = json.loads(next(l for l in c.stdout.splitlines() if l.startswith("C "))[2:])
        assert out["status"] == 200 and out["pod"] in b_app, c.stderr[-3000:]
        print(f"attach: B (in-test, A alive) {attach_s:.3f}s, C (new process) {out['attach_s']:.3f}s")
        assert attach_s < 2 and out["attach_s"] < 2
    finally:
        if a.poll() is None:
            go.touch()
            a.kill()
            a.wait(10)
        if b is not None:
            b.down()
        pl.force_cleanup(NAME)
    assert not netns_of(NAME) and not pl.state_dir(NAME).exists()


# A kernel that brings the lab up with the app and waits to be killed.
KERNEL_K = textwrap.dedent("""
    import sys, time
    from k8slab import Lab
    lab = Lab(backend="netns", name=sys.argv[1], quiet=True).up()
    lab.deploy_app(replicas=2)
    print("UP", flush=True)
    time.sleep(600)
""")


def test_a_kernel_killed_with_its_process_group_leaves_the_lab_up():
    """Jupyter shuts a kernel down by signalling its process group (jupyter_client's
    LocalProvisioner.kill: os.killpg(pgid, SIGKILL); ipykernel 6.31's _at_shutdown signals only the
    children in the kernel's group). The lab's helpers run in sessions of their own, so they stay;
    helpers that stopped anyway are started again by the next up()."""
    skip_unless_root(*TOOLS)
    import signal
    from k8slab import Lab
    name = f"{NAME}-k"
    pl.force_cleanup(name)
    k = subprocess.Popen([sys.executable, "-c", KERNEL_K, name], cwd=ROOT, text=True, start_new_session=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lab = None
    try:
        _line(k, "UP", 120)
        os.killpg(k.pid, signal.SIGKILL)
        k.wait(10)
        lab = Lab(backend="netns", name=name, quiet=True)
        assert lab.backend.is_up()
        procs = pl.read_state(name)["procs"]
        assert all(pl.proc_running(v["pid"], v["start"]) for v in procs.values()), procs
        # a kernel that took some helpers along (an app, a docker-proxy): up() starts them again,
        # as the kubelet restarts a container and Docker its proxy
        gone = sorted(k for k in procs if k.startswith("app-"))[:1] + ["docker-proxy-8080"]
        for key in gone:
            os.killpg(procs[key]["pid"], signal.SIGKILL)
        assert pl.wait_until(lambda: not any(pl.proc_running(procs[k]["pid"], procs[k]["start"]) for k in gone), 5)
        lab.up()                                      # attaches: no leftovers removed, nothing rebuilt
        now = pl.read_state(name)["procs"]
        assert set(now) == set(procs) and all(pl.proc_running(v["pid"], v["start"]) for v in now.values())
        assert all(now[k]["pid"] == v["pid"] for k, v in procs.items() if k not in gone)
        lab.wait_ready(30)
        ip = lab.backend.model().service("url-shortener").cluster_ip
        app = {p for p in lab.get("pods")["name"] if p.startswith("url-shortener-")}
        assert {lab.request(f"http://{ip}/whoami", from_="pod").pod for _ in range(20)} == app
    finally:
        if k.poll() is None:
            k.kill()
        if lab is not None:
            lab.down()
        pl.force_cleanup(name)
    assert not netns_of(name)


def test_leftovers_of_a_lab_with_a_damaged_state_are_removed():
    """state.json unreadable (a crash while writing it, a hand edit): up() removes what the pidfiles
    and the namespaces name (the old helpers, checked by start time) and builds the lab again."""
    skip_unless_root(*TOOLS)
    from k8slab.backends.netns import NetnsBackend
    from k8slab.progress import Progress
    name = f"{NAME}-x"
    pl.force_cleanup(name)
    first = NetnsBackend(name, root=ROOT, progress=Progress(quiet=True))
    second = NetnsBackend(name, root=ROOT, progress=Progress())
    try:
        first.up(ROOT / "kind" / "cluster.yaml")
        old = {k: (p.pid, p.start) for k, p in first._procs.items()}
        assert old
        (pl.state_dir(name) / pl.STATE_FILE).write_text('{"version": 1, "status": "up", "nod')
        second.up(ROOT / "kind" / "cluster.yaml")
        assert second.is_up()
        assert not any(pl.proc_running(pid, start) for pid, start in old.values())
        assert not (set(k for k in second._procs) - set(old))  # the same helpers, started anew
        assert all(second._procs[k].pid != old[k][0] for k in old)
    finally:
        second.down()
        first.down()
        pl.force_cleanup(name)
    assert not netns_of(name)


def test_down_from_another_process_is_seen_by_the_first(tmp_path):
    """A removes nothing when it exits; B's down() removes A's lab, and A's next call says it is down."""
    skip_unless_root(*TOOLS)
    from k8slab.backends.netns import NetnsBackend
    from k8slab.errors import LabStateError
    from k8slab.progress import Progress
    name = f"{NAME}-d"
    pl.force_cleanup(name)
    first = NetnsBackend(name, root=ROOT, progress=Progress(quiet=True))
    try:
        first.up(ROOT / "kind" / "cluster.yaml")
        script = ("import sys; from pathlib import Path; from k8slab.backends.netns import NetnsBackend\n"
                  "from k8slab.progress import Progress\n"
                  f"b = NetnsBackend({name!r}, root=Path({str(ROOT)!r}), progress=Progress(quiet=True))\n"
                  "assert b.is_up(); b.down(); print('DOWN')\n")
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert "DOWN" in res.stdout, res.stderr[-3000:]
        assert not first.is_up()
        with pytest.raises(LabStateError, match="not up"):
            first.apply([])
        assert not netns_of(name) and not pl.state_dir(name).exists()
    finally:
        first.down()
        pl.force_cleanup(name)


def test_a_reused_pid_is_never_signalled():
    """A pidfile whose start time is not the process's (the pid was reused): force_cleanup, stop and
    kill_verified leave the live, unrelated process alone; with the right start time it is killed."""
    skip_unless_root("ip")
    lab = f"k8s-nsr-{os.getpid()}"
    pl.force_cleanup(lab)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        start = pl.proc_start_time(sleeper.pid)
        assert start is not None
        fake = start + 12345                          # what the lab recorded for "its" process
        pids = pl.state_dir(lab) / "pids"
        pids.mkdir(parents=True)
        (pids / "app-default-web.pid").write_text(f"{sleeper.pid} {fake}\n")
        assert pl.kill_verified(sleeper.pid, fake) is False
        pl.stop(lab, pl.Proc("app-default-web", sleeper.pid, fake))
        (pids / "app-default-web.pid").write_text(f"{sleeper.pid} {fake}\n")
        removed = pl.force_cleanup(lab)
        assert not any("process" in r for r in removed), removed
        time.sleep(0.2)
        assert sleeper.poll() is None, "a process that is not the lab's was killed"
        # a pid without a recorded start time is not vouched for either
        assert pl.kill_verified(sleeper.pid, None) is False and sleeper.poll() is None
        # the same pid with its real start time is the lab's: killed
        assert pl.kill_verified(sleeper.pid, start) is True
        assert sleeper.wait(5) == -9
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        pl.force_cleanup(lab)


def test_a_pidfile_without_start_time_names_the_labs_process_by_its_namespace():
    """Pidfiles written before start times were recorded: only a process whose command line names
    one of the lab's namespaces (a relay's --listen-netns) is taken for the lab's."""
    skip_unless_root("ip")
    lab = f"k8s-nsl-{os.getpid()}"
    pl.force_cleanup(lab)
    relay = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", "--listen-netns",
                              f"{lab}-host"], start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        assert pl.wait_until(lambda: f"{lab}-host" in pl._cmdline(relay.pid), 5)
        pids = pl.state_dir(lab) / "pids"
        pids.mkdir(parents=True)
        (pids / "docker-proxy-8080.pid").write_text(f"{relay.pid}\n")
        (pids / "app-default-web.pid").write_text(f"{other.pid}\n")
        removed = pl.force_cleanup(lab)
        assert removed == [f"process group {relay.pid} (docker-proxy-8080)", f"dir {pl.state_dir(lab)}"]
        assert relay.wait(5) == -9
        assert other.poll() is None
    finally:
        for proc in (relay, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        pl.force_cleanup(lab)


def test_a_failed_cni_add_is_followed_by_del(monkeypatch):
    """kindnet's chain plus a plugin that is not installed (a bad conflist): ptp has made the veth,
    the /32 route and the IPAM lease when the third plugin fails; DEL of the whole list, in reverse,
    follows and removes them."""
    skip_unless_root(*TOOLS)
    lab = f"k8s-nsc-{os.getpid()}"
    pl.force_cleanup(lab)
    calls: list[tuple[str, str]] = []
    real = cni._invoke

    def spy(command, conflist, plugin, att, prev, exec_in, cni_path, timeout):
        calls.append((command, plugin["type"]))
        return real(command, conflist, plugin, att, prev, exec_in, cni_path, timeout)

    monkeypatch.setattr(cni, "_invoke", spy)
    node, pod = f"{lab}-node", f"{lab}-pod-web"
    try:
        pl.netns_add(lab, node)
        pl.netns_add(lab, pod)
        ipam = pl.state_dir(lab) / "ipam"
        conf = cni.kindnet_conflist("10.251.0.0/24", ipam)
        conf["plugins"].append({"type": "k8slab-not-installed"})
        att = cni.Attachment(cni.container_id(lab, "default", "web"), f"/run/netns/{pod}",
                             port_mappings=(cni.PortMapping(8089, 80),))
        links_before = runner.run(["ip", "-n", node, "-o", "link"]).stdout
        with pytest.raises(cni.CniError, match="DEL of the whole list followed") as err:
            cni.add(conf, att, exec_in=node)
        assert calls == [("ADD", "ptp"), ("ADD", "portmap"), ("ADD", "k8slab-not-installed"),
                         ("DEL", "k8slab-not-installed"), ("DEL", "portmap"), ("DEL", "ptp")], calls
        assert "k8slab-not-installed" in str(err.value)
        # nothing of the half-made ADD is left: no lease, no veth, no route, no portmap chain
        leases = [f.name for f in (ipam / "kindnet").iterdir()] if (ipam / "kindnet").is_dir() else []
        assert not [f for f in leases if f.startswith("10.251.")], leases
        assert runner.run(["ip", "-n", node, "-o", "link"]).stdout == links_before
        assert "10.251.0." not in runner.run(["ip", "-n", node, "route"]).stdout
        assert "8089" not in runner.run(["ip", "netns", "exec", node, "iptables-save"]).stdout
        # the next ADD of the same pod works (host-local goes on round-robin from its last
        # reserved address) and holds one lease, its own
        conf["plugins"].pop()
        ip = cni.add(conf, att, exec_in=node).ip
        assert [f.name for f in (ipam / "kindnet").iterdir() if f.name.startswith("10.251.")] == [ip]
        assert cni.delete(conf, att, exec_in=node) == []
    finally:
        pl.force_cleanup(lab)
    assert not netns_of(lab)
