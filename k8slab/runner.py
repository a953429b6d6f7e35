"""The one place where k8slab runs external commands.

Every command is an argv list (never a shell string), has a timeout, and keeps its stderr. A command
that times out is killed together with its whole process group, so nothing it started is left behind.
Long-running helpers (port-forward, relays, servers) are started with :func:`spawn` and stopped with
:func:`stop`, which also kills the process group.

:func:`run` goes through the ``sh`` package (``sh.Command``), with these settings and for these
reasons (read from sh 2.x's source, ``sh/__init__.py``):

- ``_new_session=True``: the child calls ``setsid()``, so its process group id is its pid and the
  whole group can be killed.
- no ``_timeout``: sh's timeout signals only the child it started (``OProc.signal`` ->
  ``os.kill(pid)``), not its group, and then waits up to 2 s for output from grandchildren still
  holding the pipes. The runner arms its own timer instead, which kills the group (``os.killpg``).
- ``_bg=True`` only to learn the pid before waiting (the timer needs it); the runner always waits.
  sh's child ignores SIGHUP when ``_bg`` is set, so ``_preexec_fn`` restores the default.
- ``_tty_out=False`` (sh's default is a pseudo-terminal for stdout); stdin is /dev/null unless
  ``input`` is given, as before.
- ``_out_bufsize``/``_err_bufsize`` of 64 KiB: sh keeps at most ``internal_bufsize`` (3 Mi) *chunks*;
  with line chunks a big dump is slow, and with 1-byte chunks only its last 3 MiB would be kept.
- ``_ok_code`` = every exit status, so sh raises nothing: :func:`run` decides (``check``) and reports
  a signal as ``-N`` like subprocess.

:func:`spawn`/:func:`stop` stay on :class:`subprocess.Popen`: see docs/architecture.md ("runner").
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import sh

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


#: Exit statuses sh must not turn into exceptions: all of them (negative = killed by that signal).
_ANY_EXIT = tuple(range(-64, 256))
_CHUNK = 64 * 1024


def _restore_sighup() -> None:        # runs in the child, before exec (sh ignores SIGHUP with _bg)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _program(name: str, env: Mapping[str, str] | None, hint: str, args: list[str]) -> "sh.Command":
    """``sh.Command`` for ``name``, looked up on the PATH the command will run with."""
    path = (env or os.environ).get("PATH", os.defpath)
    try:
        return sh.Command(name, search_paths=path.split(os.pathsep) if os.sep not in name else None)
    except sh.CommandNotFound:
        if os.sep in name and os.path.isfile(name) and not os.access(name, os.X_OK):
            raise CommandError(f"{name}: permission denied. {hint}".strip(), args, None,
                               f"{name} is not executable") from None
        raise CommandNotFound(f"{name}: command not found. {hint}".strip(), args, None, "") from None


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
    program = _program(args[0], full_env, hint, args)
    start = time.monotonic()
    expired = threading.Event()
    with open(os.devnull, "rb") as devnull:
        try:
            proc = program(*args[1:], _bg=True, _bg_exc=False, _new_session=True, _tty_out=False,
                           _in=devnull if input is None else input.encode() if isinstance(input, str) else input,
                           _encoding="utf-8", _env=full_env, _cwd=cwd,
                           _ok_code=_ANY_EXIT, _out_bufsize=_CHUNK, _err_bufsize=_CHUNK,
                           _preexec_fn=_restore_sighup, _return_cmd=True)
        except sh.ForkException as exc:       # exec failed in the child: sh passes its traceback text
            why = (str(exc).strip().splitlines() or [""])[-1].strip()
            if why.startswith("FileNotFoundError"):     # e.g. a #! interpreter that does not exist
                raise CommandNotFound(f"{args[0]}: cannot be run ({why}). {hint}".strip(), args, None,
                                      str(exc)) from None
            raise CommandError(f"`{' '.join(args)}` could not start: {why} {hint}".strip(), args, None,
                               str(exc)) from None
        pgid = proc.pid                         # its own session: the group id is its pid
        timer = None
        if timeout is not None:
            def expire() -> None:
                expired.set()
                _killpg(pgid, signal.SIGKILL)
            timer = threading.Timer(timeout, expire)
            timer.daemon = True
            timer.start()
        try:
            proc.wait()
        except BaseException:                   # e.g. KeyboardInterrupt in a notebook: leave nothing behind
            _killpg(pgid, signal.SIGKILL)
            raise
        finally:
            if timer is not None:
                timer.cancel()
    out, err = _as_text(proc.stdout), _as_text(proc.stderr)
    if expired.is_set():
        raise CommandTimeout(
            f"`{' '.join(args)}` did not finish within {timeout:g} s and was stopped. {hint}".strip(),
            args, None, err)
    returncode = proc.exit_code
    result = Result(tuple(args), returncode, out, err, time.monotonic() - start)
    for rec in _recorders:
        rec.results.append(result)
    if check and returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or result.stdout.strip().splitlines()[-1:] or [""]
        raise CommandError(
            f"`{' '.join(args)}` failed (exit {returncode}): {last[0]} {hint}".strip(),
            args, returncode, result.stderr)
    return result


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


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
    _killpg(proc.pid, sig)


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
