"""Pure helpers of the kind backend's traffic: reading a batch of curl answers, probing a TCP port."""
from __future__ import annotations

import errno
import re
import socket

from .parse import CURL_ERRORS, parse_http

Answer = tuple  # (status | None, headers, body, error | None, elapsed ms | None)


def split_curl_batch(stdout: str, token: str, count: int, stderr: str = "") -> list[Answer]:
    """What ``CURL_LOOP`` printed -> one answer per request, in order.

    Each curl run prints its response (``-i``: status line, headers, body), then its ``-w`` marker
    ``\\n@@k8slab-<token> <time_total>``, then the loop adds `` <exit code>@@\\n``. A request whose
    marker never came (the exec ended early) is an answer with an error that quotes stderr.
    """
    marker = re.compile(r"\n@@k8slab-" + re.escape(token) + r" ([0-9.]+) (\d+)@@\n")
    answers: list[Answer] = []
    pos = 0
    for m in marker.finditer(stdout):
        raw, seconds, rc = stdout[pos:m.start()], float(m.group(1)), int(m.group(2))
        pos = m.end()
        ms = round(seconds * 1000, 2)
        if rc != 0:
            answers.append((None, {}, raw, CURL_ERRORS.get(rc, f"curl exit {rc}"), ms))
            continue
        status, headers, body = parse_http(raw)
        answers.append((status, headers, body, None if status else "no HTTP response", ms))
    missing = count - len(answers)
    if missing > 0:
        why = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        answers.extend((None, {}, "", f"no answer: the command ended early ({why})", None)
                       for _ in range(missing))
    return answers[:count]


def probe_tcp(ip: str, port: int, timeout: float = 1.5) -> tuple[bool, str]:
    """(reachable, what happened) for a TCP connection to ``ip:port``. A refusal is an answer: the
    address is routed here, nothing listens. A timeout or "unreachable" means it is not routed."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True, f"{ip}:{port} answered"
    except ConnectionRefusedError:
        return True, f"{ip}:{port} refused the connection (routed, nothing listens)"
    except socket.timeout:
        return False, f"no answer from {ip}:{port} within {timeout:g} s"
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            return False, f"{ip}:{port}: {exc.strerror}"
        return False, f"{ip}:{port}: {exc.strerror or exc}"
