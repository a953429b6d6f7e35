"""The one place where k8slab runs external commands.

Every command is an argv list (never a shell string), has a timeout, and keeps its stderr. A command
that times out is killed together with its whole process group, so nothing it started is left behind.
Long-running helpers (port-forward, relays, servers) are started with :func:`spawn` and stopped with
:func:`stop`, which also kills the process group.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .errors import CommandError, CommandNotFound, CommandTimeout

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class Recorder:
    """Collects every command run (for tests, and for ``Lab.record``)."""
    results: list[Result] = field(default_factory=list)


_recorders: list[Recorder] = []


def which(name: str, path: str | None = None) -> str | None:
    return shutil.which(name, path=path)


def _check_argv(argv: Sequence[str]) -> list[str]:
    if isinstance(argv, (str, bytes)):
        raise TypeError("runner.run takes an argv list, never a shell string")
    out = [str(a) for a in argv]
    if not out:
        raise ValueError("empty argv")
    return out


def run(argv: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT, check: bool = True,
        input: str | bytes | None = None, env: Mapping[str, str] | None = None,
        cwd: str | None = None, hint: str = "") -> Result:
    """Run ``argv`` to completion and return its :class:`Result`.

    ``check=True`` raises :class:`CommandError` on a non-zero exit, with ``hint`` (what to do next)
    appended to the message. A missing executable raises :class:`CommandNotFound`; a timeout kills
    the process group and raises :class:`CommandTimeout`.
    """
    args = _check_argv(argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    text = not isinstance(input, bytes)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=text,
                                env=full_env, cwd=cwd, start_new_session=True)
    except FileNotFoundError as exc:
        raise CommandNotFound(f"{args[0]}: command not found. {hint}".strip(), args, None, "") from exc
    except PermissionError as exc:
        raise CommandError(f"{args[0]}: permission denied. {hint}".strip(), args, None, str(exc)) from exc
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise CommandTimeout(
            f"`{' '.join(args)}` did not finish within {timeout:g} s and was stopped. {hint}".strip(),
            args, None, _as_text(err))
    result = Result(tuple(args), proc.returncode, _as_text(out), _as_text(err), time.monotonic() - start)
    for rec in _recorders:
        rec.results.append(result)
    if check and proc.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:] or [""]
        raise CommandError(
            f"`{' '.join(args)}` failed (exit {proc.returncode}): {last[0]} {hint}".strip(),
            args, proc.returncode, result.stderr)
    return result


def _as_text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data


def spawn(argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
          hint: str = "") -> subprocess.Popen:
    """Start a long-running process in its own process group. Stop it with :func:`stop`."""
    args = _check_argv(argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        return subprocess.Popen(args, env=full_env, cwd=cwd, stdout=stdout, stderr=stderr, stdin=stdin,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise CommandNotFound(f"{args[0]}: command not found. {hint}".strip(), args, None, "") from exc


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop(proc: subprocess.Popen, *, grace: float = 3.0) -> int | None:
    """Stop a spawned process and everything in its process group: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # Kill whatever else is left in the group, even if the leader already exited.
    _kill_group(proc, signal.SIGKILL)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stderr, proc.stdin):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass
    return proc.returncode


def group_alive(pgid: int) -> bool:
    """True while any process of the process group ``pgid`` exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
