"""Side effects of the netns backend: namespaces, links, sysctls inside them, helper processes,
and the clean-up of a lab (also of one whose Python process died).

Everything a lab creates is recorded under its state directory ``/run/k8slab/<lab>/`` *before* it is
created (``netns.list``, ``pids/*.pid``), so :func:`force_cleanup` finds it again. Nothing here ever
changes the root network namespace: links are created with ``ip -n NS``, sysctls are written with
``ip netns exec NS sysctl``, rules are loaded with ``ip netns exec NS iptables-restore``.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ... import runner
from ...errors import K8sLabError

STATE_ROOT = Path("/run/k8slab")
NETNS_DIR = Path("/run/netns")


def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab


def owner_pid(lab: str) -> int | None:
    """The pid of the process whose lab ``lab`` is up, if that process still runs."""
    try:
        pid = int((state_dir(lab) / "owner").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


# --- namespaces ---

def netns_list() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir())


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def record_netns(lab: str, name: str) -> None:
    d = state_dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "netns.list", "a") as fh:
        fh.write(name + "\n")


def recorded_netns(lab: str) -> list[str]:
    f = state_dir(lab) / "netns.list"
    if not f.exists():
        return []
    return list(dict.fromkeys(line.strip() for line in f.read_text().splitlines() if line.strip()))


def netns_add(lab: str, name: str) -> None:
    """Create namespace ``name`` (recorded for ``lab`` first) with its loopback up."""
    record_netns(lab, name)
    runner.run(["ip", "netns", "add", name], timeout=10,
               hint=f"If it exists from a crashed run, call force_cleanup({lab!r}) "
                    f"(k8slab.backends.netns.force_cleanup).")
    runner.run(["ip", "-n", name, "link", "set", "lo", "up"], timeout=10)


def netns_pids(name: str) -> list[int]:
    res = runner.run(["ip", "netns", "pids", name], timeout=10, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def netns_delete(name: str) -> list[str]:
    """Kill every process inside ``name`` and delete it. Returns what it removed, in words."""
    removed = []
    if not netns_exists(name):
        return removed
    for pid in netns_pids(name):
        if _kill(pid):
            removed.append(f"process {pid} ({_comm(pid) or 'gone'}) in {name}")
    res = runner.run(["ip", "netns", "del", name], timeout=10, check=False)
    if res.ok or not netns_exists(name):
        removed.append(f"netns {name}")
    return removed


def ip_batch(netns: str, lines: Sequence[str]) -> None:
    """Several ``ip`` commands inside ``netns`` in one process (``ip -n NS -batch -``)."""
    if lines:
        runner.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(lines) + "\n", timeout=20)


def exec_in(netns: str, argv: Sequence[str], **kw) -> runner.Result:
    return runner.run(["ip", "netns", "exec", netns, *argv], **kw)


def sysctl_in(netns: str, settings: Mapping[str, str]) -> None:
    """``sysctl -w`` inside ``netns`` only (``ip netns exec`` also gives it that namespace's /proc/sys/net)."""
    exec_in(netns, ["sysctl", "-qw", *[f"{k}={v}" for k, v in settings.items()]], timeout=10)


def iptables_restore(netns: str, text: str, noflush: bool = True) -> None:
    if not text.strip():
        return
    argv = ["iptables-restore", "-w", "5"] + (["--noflush"] if noflush else [])
    exec_in(netns, argv, input=text, timeout=30,
            hint="The rules text is kept in the lab's state dir (last-restore-*.rules) to inspect.")


# --- processes ---

@dataclass
class Proc:
    """A helper process the lab started (server, nginx, relay), in its own process group."""
    key: str
    popen: subprocess.Popen
    log: Path | None = None
    info: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _pidfile(lab: str, key: str) -> Path:
    safe = key.replace("/", "_")
    return state_dir(lab) / "pids" / f"{safe}.pid"


def start(lab: str, key: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
          cwd: str | None = None, log: Path | None = None, stdout_pipe: bool = False,
          info: str = "") -> Proc:
    """Spawn a helper in its own process group, its pid recorded for :func:`force_cleanup`."""
    (state_dir(lab) / "pids").mkdir(parents=True, exist_ok=True)
    out = subprocess.PIPE if stdout_pipe else (open(log, "ab") if log else subprocess.DEVNULL)
    err = open(log, "ab") if log else subprocess.DEVNULL
    try:
        popen = runner.spawn(argv, env=env, cwd=cwd, stdout=out, stderr=err)
    finally:
        for fh in (out, err):
            if hasattr(fh, "close"):
                fh.close()
    _pidfile(lab, key).write_text(str(popen.pid))
    return Proc(key, popen, log, info)


def stop(lab: str, proc: Proc) -> None:
    runner.stop(proc.popen, grace=2.0)
    _pidfile(lab, proc.key).unlink(missing_ok=True)


def read_line(proc: Proc, timeout: float) -> str:
    """One line from a helper's stdout pipe, or "" on timeout/exit."""
    stream = proc.popen.stdout
    if stream is None:
        return ""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return ""
    return stream.readline().decode(errors="replace").strip()


def start_relay(lab: str, key: str, *, listen_netns: str | None, listen: str,
                dial_netns: str | None, dial: str, info: str = "", timeout: float = 10.0) -> tuple[Proc, int]:
    """Start :mod:`k8slab.backends.nsrelay`; returns the process and the port it listens on."""
    argv = [sys.executable, "-m", "k8slab.backends.nsrelay", "--listen", listen, "--dial", dial]
    if listen_netns:
        argv += ["--listen-netns", listen_netns]
    if dial_netns:
        argv += ["--dial-netns", dial_netns]
    log = state_dir(lab) / "logs" / f"{key.replace('/', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    package_root = str(Path(__file__).resolve().parents[3])
    env = {"PYTHONPATH": package_root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = start(lab, key, argv, env=env, log=log, stdout_pipe=True, info=info)
    line = read_line(proc, timeout)
    if not line.startswith("READY"):
        tail = proc.log_tail()
        stop(lab, proc)
        raise K8sLabError(f"relay {key} ({listen} -> {dial}) did not start: {tail or 'no output'}. "
                          "Is the listening port already taken in that namespace?")
    return proc, int(line.split()[1])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except (ProcessLookupError, PermissionError):
        return False


# --- clean-up ---

def owned_netns(lab: str) -> list[str]:
    """Namespaces that belong to ``lab``: the ones it recorded, and ones named ``<lab>-...`` that no
    other lab with a longer name (``<lab>-x``) recorded or could own by its prefix."""
    others = [p.name for p in STATE_ROOT.iterdir()] if STATE_ROOT.is_dir() else []
    longer = [o for o in others if o != lab and o.startswith(f"{lab}-")]
    claimed = {n for o in longer for n in recorded_netns(o)}
    mine = set(recorded_netns(lab))
    for name in netns_list():
        if name in mine or name in claimed or not name.startswith(f"{lab}-"):
            continue
        if any(name.startswith(f"{o}-") for o in longer):
            continue
        mine.add(name)
    return sorted(n for n in mine if netns_exists(n))


def _teardown_order(names: list[str], lab: str) -> list[str]:
    # pods, then nodes, then the host (whose bridge the nodes' veths hang on)
    def rank(n: str) -> int:
        return 0 if n.startswith(f"{lab}-pod-") else 2 if n == f"{lab}-host" else 1
    return sorted(names, key=lambda n: (rank(n), n))


def force_cleanup(name: str) -> list[str]:
    """Remove everything of the lab called ``name``, also after a crash: its helper processes
    (recorded process groups and whatever runs inside its namespaces), its namespaces (and with them
    their veths, bridge and rules), and its state directory (IPAM allocations, configs, logs).
    Returns what it removed, in words. Safe to call when nothing is left."""
    if not name or "/" in name or name.startswith("."):
        raise K8sLabError(f"force_cleanup: {name!r} is not a lab name")
    removed: list[str] = []
    d = state_dir(name)
    pids = d / "pids"
    if pids.is_dir():
        for f in sorted(pids.glob("*.pid")):
            try:
                pgid = int(f.read_text().strip())
            except ValueError:
                continue
            if runner.group_alive(pgid) and _kill_group(pgid):
                removed.append(f"process group {pgid} ({f.stem})")
    for ns in _teardown_order(owned_netns(name), name):
        removed.extend(netns_delete(ns))
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
        removed.append(f"dir {d}")
    if STATE_ROOT.is_dir() and not any(STATE_ROOT.iterdir()):
        STATE_ROOT.rmdir()
    return removed


# --- the root namespace's state, to prove it is untouched ---

ROOT_SYSCTL_GLOBS = ("net/ipv4/ip_forward", "net/ipv4/conf/*/route_localnet", "net/bridge/*")


def root_netns_snapshot() -> dict[str, str]:
    """What the backend must never change in the namespace this process runs in (the root one):
    every table's rules, links, routes (v4 and v6), and the sysctls it could touch."""
    snap: dict[str, str] = {}
    for tool in ("iptables-save", "ip6tables-save"):
        if runner.which(tool):
            text = runner.run([tool], timeout=20, check=False).stdout
            snap[tool] = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    snap["links"] = runner.run(["ip", "-d", "link"], timeout=10).stdout
    snap["routes"] = runner.run(["ip", "route", "show", "table", "all"], timeout=10).stdout
    snap["routes6"] = runner.run(["ip", "-6", "route", "show", "table", "all"], timeout=10,
                                 check=False).stdout
    proc_sys = Path("/proc/sys")
    for pattern in ROOT_SYSCTL_GLOBS:
        for f in sorted(proc_sys.glob(pattern)):
            try:
                snap[f"sysctl {f.relative_to(proc_sys)}"] = f.read_text().strip()
            except OSError:
                pass
    return snap


def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)

