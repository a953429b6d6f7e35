"""Experiments that change the cluster and watch every way in, then put everything back.

:func:`kube_proxy_experiment` is the decisive one of notebook 07: take kube-proxy out of the data
path and retry every way in (port-forward, ClusterIP, NodePort, hostPort, Ingress), in four phases:

======================  =====================================================================
phase                   what the cluster is like
======================  =====================================================================
kube-proxy running      as the course left it
kube-proxy gone         ``lab.stop_kube_proxy()``: its pod is gone, its rules stay in the kernel
rules flushed           ``lab.flush_kube_proxy_rules()``: its rules removed, as ``--cleanup`` does
restored                ``lab.start_kube_proxy()``: its pod Ready again, its rules re-synced
======================  =====================================================================

What to expect (kube-proxy programs the kernel, it carries no packet): while it is gone, ClusterIP
and NodePort still answer (the rules do the work); once its rules are flushed, a ClusterIP packet has
no DNAT and goes to the node's default gateway, where nobody answers (timeout), and a NodePort SYN
reaches the node itself, where nothing listens on the port (refused); port-forward (API server ->
kubelet -> the pod's loopback) and Ingress via the hostPort (CNI portmap's DNAT, then nginx dialling
pod IPs) never touch kube-proxy's rules and keep answering.

Each request is the one :mod:`k8slab.selftest` and notebook 07 send each way (same URLs, ports,
Host header and sources), through :meth:`Lab.request` and :meth:`Lab.port_forward`. On the sim
backend every cell is a prediction, and the table says so (``df.attrs``, ``df.columns.name``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import LabStateError
from .selftest import HOST, LOCAL_PORT, NODE_PORT, WAYS

PHASES = ("kube-proxy running", "kube-proxy gone", "rules flushed", "restored")
FAIL_TIMEOUT = 2.0       # seconds: a request that should fail (timeout) costs no more than this
APP_SERVICE = "url-shortener"


@dataclass
class Attempt:
    """One request one way in during one phase."""
    way: str
    phase: str
    url: str
    sent_from: str
    status: int | None
    pod: str | None
    error: str | None
    outcome: str
    predicted: bool
    seconds: float


def outcome(resp) -> str:
    """What a request got, in a few words: ``200 from <pod>``, ``timeout``, ``refused``, ..."""
    if resp.status is not None:
        who = resp.pod or (resp.headers or {}).get("Server") or (resp.headers or {}).get("server") or ""
        return f"{resp.status} from {who}" if who else str(resp.status)
    err = (resp.error or "no answer").lower()
    if "timed out" in err or "timeout" in err:
        return "timeout"
    if "refused" in err:
        return "refused"
    if "reset" in err:
        return "reset"
    if "no route" in err or "unreachable" in err:
        return "no route"
    return resp.error or "no answer"


def _targets(lab) -> dict:
    """way -> (url, request options), as selftest.run and notebook 07 send them."""
    nodes = lab.get("nodes")
    node_ip = nodes[nodes["role"] == "control-plane"].iloc[0]["ip"]
    services = lab.get("services")
    cluster_ip = services.query("namespace == 'default' and name == @APP_SERVICE").iloc[0]["cluster_ip"]
    return {
        "clusterip": (f"http://{cluster_ip}/whoami", {"from_": "pod", "source": lab.client_pod()}),
        "nodeport": (f"http://{node_ip}:{NODE_PORT}/whoami", {"from_": "host"}),
        "hostport": (f"http://{node_ip}/whoami", {"from_": "host", "host": HOST}),
        "ingress": ("http://localhost:8080/whoami", {"from_": "host", "host": HOST}),
    }


def send(lab, way: str, targets: dict | None = None, timeout: float = FAIL_TIMEOUT):
    """One request ``way`` in; ``(url, Response)``. Port-forward opens (and closes) its own forward."""
    if way == "port-forward":
        with lab.port_forward(f"svc/{APP_SERVICE}", local_port=LOCAL_PORT, remote_port=80) as pf:
            url = f"http://127.0.0.1:{pf.local_port}/whoami"
            return url, lab.request(url, timeout=timeout)
    targets = targets if targets is not None else _targets(lab)
    if way not in targets:
        raise ValueError(f"unknown way {way!r}: choose among {', '.join(WAYS)}")
    url, how = targets[way]
    return url, lab.request(url, timeout=timeout, **how)


def _phase(lab, phase: str, ways, targets, timeout: float) -> list[Attempt]:
    out = []
    for way in ways:
        start = time.monotonic()
        url, resp = send(lab, way, targets, timeout)
        out.append(Attempt(way, phase, url, resp.from_, resp.status, resp.pod, resp.error, outcome(resp),
                           bool(resp.predicted), round(time.monotonic() - start, 3)))
    return out


def kube_proxy_experiment(lab, ways=WAYS, timeout: float = FAIL_TIMEOUT):
    """Every way in, tried with kube-proxy running, gone, its rules flushed, and restored.

    Returns a DataFrame: one row per way in, one column per phase, each cell what the request got
    (``"200 from url-shortener-…"``, ``"timeout"``, ``"refused"``). ``df.attrs["attempts"]`` keeps
    every :class:`Attempt`, ``df.attrs["seconds"]`` each phase's wall time, ``df.attrs["status"]``
    the rows of :meth:`Lab.kube_proxy_status` after each phase (records: pandas compares attrs, and
    a DataFrame there would break it; :func:`status_frame` makes the table); :func:`tidy` gives the
    long form for plotting.
    Needs the course's end state (``k8slab.selftest.prepare(lab)``: app, ingress controller, Ingress,
    NodePort Service) and kube-proxy running; kube-proxy runs again when it returns, even on error.
    """
    import pandas as pd
    ways = tuple(ways)
    unknown = [w for w in ways if w not in WAYS]
    if unknown:
        raise ValueError(f"unknown way(s) {', '.join(unknown)}: choose among {', '.join(WAYS)}")
    if lab.backend.kube_proxy_state() != "running":
        raise LabStateError("kube-proxy is not running at the start of the experiment: call "
                            "lab.start_kube_proxy() first, so the experiment can leave the lab as it found it")
    targets = _targets(lab)
    attempts: list[Attempt] = []
    seconds: dict[str, float] = {}
    status: dict[str, list[dict]] = {}
    steps = {"kube-proxy running": None, "kube-proxy gone": lab.stop_kube_proxy,
             "rules flushed": lab.flush_kube_proxy_rules, "restored": lab.start_kube_proxy}
    try:
        for phase, step in steps.items():
            start = time.monotonic()
            if step is not None:
                step()
            attempts += _phase(lab, phase, ways, targets, timeout)
            status[phase] = lab.kube_proxy_status().to_dict("records")
            seconds[phase] = round(time.monotonic() - start, 3)
    finally:
        if lab.backend.kube_proxy_state() != "running":
            lab.start_kube_proxy()
    cells = {(a.way, a.phase): a.outcome for a in attempts}
    df = pd.DataFrame([[cells.get((w, p), "") for p in PHASES] for w in ways],
                      index=pd.Index(ways, name="way in"), columns=list(PHASES))
    df = lab._label(df)
    df.columns.name = (f"predicted ({lab.source})" if not lab.live else f"measured ({lab.source})")
    df.attrs.update(attempts=attempts, seconds=seconds, status=status)
    return df


def tidy(table):
    """The experiment's table in long form: one row per (way, phase) with ``answered`` (a status
    came back), ``outcome`` and ``predicted`` (for plots and checks)."""
    import pandas as pd
    rows = [{"way": a.way, "phase": a.phase, "outcome": a.outcome, "answered": a.status is not None,
             "status": a.status, "pod": a.pod, "predicted": a.predicted, "seconds": a.seconds}
            for a in table.attrs.get("attempts", [])]
    long = pd.DataFrame(rows, columns=["way", "phase", "outcome", "answered", "status", "pod", "predicted",
                                       "seconds"])
    long["phase"] = pd.Categorical(long["phase"], categories=list(PHASES), ordered=True)
    long.attrs.update({k: v for k, v in table.attrs.items() if k in ("source", "predicted")})
    return long


def status_frame(table):
    """kube-proxy's status on every node after each phase of the experiment (one row per phase and
    node): is its pod there, is nat KUBE-SERVICES there, how many rules its chains hold."""
    import pandas as pd
    rows = [{"phase": phase, **row} for phase, recs in table.attrs.get("status", {}).items() for row in recs]
    df = pd.DataFrame(rows)
    df.attrs.update({k: v for k, v in table.attrs.items() if k in ("source", "predicted")})
    return df.set_index(["phase", "node"]) if len(df) else df
