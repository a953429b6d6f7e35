"""Side effects of the netns backend: namespaces, links, sysctls inside them, helper processes,
and the clean-up of a lab (also of one whose Python process died).

Everything a lab creates is recorded under its state directory ``/run/k8slab/<lab>/`` *before* it is
created (``netns.list``), or right after it is spawned (``pids/*.pid``: pid and start time), so
:func:`force_cleanup` finds it again. Nothing here ever changes the root network namespace: links are
created with ``ip -n NS``, sysctls are written with ``ip netns exec NS sysctl``, rules are loaded with
``ip netns exec NS iptables-restore``.

A lab belongs to no Python process (like a kind cluster): ``state.json`` in the state directory holds
what another process needs to attach to it (written whole with ``os.replace``), and every change is
made holding ``flock`` on ``lock`` there (:func:`locked`). A process the lab started is signalled only
after checking that its pid still names the same process: the start time (``/proc/PID/stat`` field
22) recorded at spawn must match, read through a pidfd so the check and the signal name one process.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import threading
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


# --- the lab's shared state: one JSON file, changed under an flock ---

STATE_FILE = "state.json"
LOCK_FILE = "lock"
_held: dict[str, list] = {}            # lab -> [RLock, depth, fd]: the flock is taken once per process
_held_guard = threading.Lock()


@contextlib.contextmanager
def locked(lab: str):
    """Hold the lab's lock (``flock(LOCK_EX)`` on ``/run/k8slab/<lab>/lock``) for a change of the lab.
    Re-entrant within a process. A waiter whose lock file was removed meanwhile (``down()`` removes
    it last, holding it) takes the new one instead: the same inode must be locked and on disk."""
    with _held_guard:
        entry = _held.setdefault(lab, [threading.RLock(), 0, None])
    entry[0].acquire()
    try:
        if entry[1] == 0:
            while True:
                d = state_dir(lab)
                d.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except FileNotFoundError:          # the directory went away between the two calls
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(d / LOCK_FILE).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    entry[2] = fd
                    break
                os.close(fd)
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0 and entry[2] is not None:
                os.close(entry[2])                 # releases the flock
                entry[2] = None
    finally:
        entry[0].release()


def read_state(lab: str) -> dict | None:
    """The lab's ``state.json``, or None when there is none (or it cannot be read: a crash)."""
    try:
        return json.loads((state_dir(lab) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def state_stamp(lab: str) -> tuple[int, int] | None:
    """(inode, mtime) of ``state.json``: every write replaces the file, so a change shows here."""
    try:
        st = os.stat(state_dir(lab) / STATE_FILE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def write_state(lab: str, state: dict) -> None:
    """Write ``state.json`` whole (a temporary file renamed over it: readers never see half)."""
    d = state_dir(lab)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{STATE_FILE}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, d / STATE_FILE)


# --- processes: who is who ---

def proc_start_time(pid: int) -> int | None:
    """When process ``pid`` started (``/proc/PID/stat`` field 22, clock ticks after boot), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()     # fields from 3 on (comm may hold spaces)
    return int(fields[22 - 3])


def proc_running(pid: int, start: int | None) -> bool:
    """True while ``pid`` is the process that started at ``start`` and has not exited (a zombie has)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2:].split()
    return fields[0] not in ("Z", "X") and start is not None and int(fields[22 - 3]) == start


def kill_verified(pid: int, start: int | None, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group ``pid`` that the lab started, only if it is still the lab's.

    The leader is opened as a pidfd first, and its start time read after that: if it matches what
    was recorded at spawn, the pidfd names that very process (``pidfd_send_signal`` to it), and the
    group is signalled while the leader holds the number. If the pid now names another process (a
    different start time) nothing is signalled. If no process has that pid, the group's number can
    only still be in use by the group's own members (Linux frees a pid only when no process uses it
    as pid, process group or session), so they are signalled. Returns True if a signal was sent."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return _kill_group(pid, sig) if runner.group_alive(pid) else False
    except OSError:
        fd = None
    try:
        if start is None or proc_start_time(pid) != start:
            return False                           # a reused pid, or one we cannot vouch for
        if fd is not None:
            try:
                signal.pidfd_send_signal(fd, sig)
            except ProcessLookupError:
                pass
        _kill_group(pid, sig)
        return True
    finally:
        if fd is not None:
            os.close(fd)


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
    """A helper process the lab started (server, nginx, relay), in its own process group. ``popen``
    is there in the process that spawned it; any other process knows it by pid and start time."""
    key: str
    pid: int
    start: int | None
    log: Path | None = None
    info: str = ""
    popen: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return proc_running(self.pid, self.start)

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def record(self) -> dict:
        return {"pid": self.pid, "start": self.start, "log": str(self.log) if self.log else None,
                "info": self.info}

    @classmethod
    def from_record(cls, key: str, rec: dict) -> "Proc":
        return cls(key, int(rec["pid"]), rec.get("start"), Path(rec["log"]) if rec.get("log") else None,
                   rec.get("info", ""))

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
    start = proc_start_time(popen.pid)
    _pidfile(lab, key).write_text(f"{popen.pid} {start}\n" if start is not None else f"{popen.pid}\n")
    return Proc(key, popen.pid, start, log, info, popen)


def read_pidfile(path: Path) -> tuple[int, int | None] | None:
    """(pid, start time) from a pidfile; start is None in one written without it."""
    try:
        parts = path.read_text().split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def stop(lab: str, proc: Proc, grace: float = 2.0) -> None:
    """Stop a helper and its process group: through its Popen in the process that spawned it,
    elsewhere by pid only while the pid is still the helper's (:func:`kill_verified`)."""
    if proc.popen is not None and proc.popen.poll() is None:
        runner.stop(proc.popen, grace=grace)      # not reaped yet: its pid cannot name another process
    elif proc.popen is not None:
        # The leader exited and was reaped: what is left of its group still holds the number; a
        # process that has the pid now is another one (left alone).
        if proc_start_time(proc.pid) is None:
            runner.stop(proc.popen, grace=0)
    elif kill_verified(proc.pid, proc.start, signal.SIGTERM):
        wait_until(lambda: not proc_running(proc.pid, proc.start), grace)
        kill_verified(proc.pid, proc.start, signal.SIGKILL)
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


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


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


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> bool:
    try:
        os.killpg(pgid, sig)
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


def force_cleanup(name: str, *, keep_lock: bool = False) -> list[str]:
    """Remove everything of the lab called ``name``, also after a crash: its helper processes
    (recorded process groups whose leader is still the process recorded, see :func:`kill_verified`,
    and whatever runs inside its namespaces), its namespaces (and with them their veths, bridge and
    rules), and its state directory (IPAM allocations, configs, logs). ``keep_lock`` leaves the lock
    file (its holder removes it last). Returns what it removed, in words. Safe to call when nothing
    is left."""
    if not name or "/" in name or name.startswith("."):
        raise K8sLabError(f"force_cleanup: {name!r} is not a lab name")
    removed: list[str] = []
    d = state_dir(name)
    pids = d / "pids"
    if pids.is_dir():
        mine = set(recorded_netns(name)) | {f"{name}-host"}
        for f in sorted(pids.glob("*.pid")):
            rec = read_pidfile(f)
            if rec is None:
                continue
            pid, start = rec
            if start is None and mine & set(_cmdline(pid)):
                start = proc_start_time(pid)      # a pidfile of an older k8slab (no start time):
                #                                   the process names one of the lab's namespaces
            if kill_verified(pid, start):          # a pid that names another process now: left alone
                removed.append(f"process group {pid} ({f.stem})")
    for ns in _teardown_order(owned_netns(name), name):
        removed.extend(netns_delete(ns))
    if d.exists():
        if keep_lock:
            for child in d.iterdir():
                if child.name != LOCK_FILE:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        else:
            shutil.rmtree(d, ignore_errors=True)
        removed.append(f"dir {d}")
    if not keep_lock:
        _remove_state_root()
    return removed


def remove_lock(name: str) -> None:
    """The last step of a lab's removal, by the holder of its lock: the lock file, its directory,
    and ``/run/k8slab`` if empty. A waiter on the old lock then finds no lock file and takes a new one."""
    d = state_dir(name)
    (d / LOCK_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        d.rmdir()
    _remove_state_root()


def _remove_state_root() -> None:
    with contextlib.suppress(OSError):
        if STATE_ROOT.is_dir() and not any(STATE_ROOT.iterdir()):
            STATE_ROOT.rmdir()


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

