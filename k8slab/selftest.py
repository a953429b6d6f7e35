"""Every way in, tried on the learner's own cluster, each beside what the tracer predicts.

``k8slab selftest`` (and :func:`run`) brings the lab to the course's end state (the app, the ingress
controller, the Ingress and the NodePort Service), sends one request each way, and compares what
answered with the prediction made from the same cluster's rules:

==============  ====================================  =================================================
way             request                               predicted (from this cluster's own state)
==============  ====================================  =================================================
port-forward    127.0.0.1:18080 from this machine     one ready app pod; the app sees 127.0.0.1
clusterip       ClusterIP:80 from the client pod      the DNAT destinations of the trace from that pod
nodeport        localhost:30080 (published by kind)   the DNAT destinations of the trace to the node's 30080
hostport        node IP:80, Host shortener...         the controller pod (DNAT of CNI portmap), which is
                                                      the client the app sees (nginx opens a new connection)
ingress         localhost:8080, Host shortener...     the Ingress route's upstream pods
==============  ====================================  =================================================

It writes a recording (``lab.record``) that a learner can attach to a bug report and an instructor
can replay anywhere (``Lab(backend="sim", replay=DIR)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HOST = "shortener.localtest.me"
LOCAL_PORT = 18080
NODE_PORT = 30080
WAYS = ("port-forward", "clusterip", "nodeport", "hostport", "ingress")


@dataclass
class Check:
    way: str
    url: str
    sent_from: str = ""
    status: int | None = None
    answered_by: str = ""                 # the app's pod ip:port, from /whoami
    client_seen: str = ""                 # the client address the app saw
    predicted: list[str] = field(default_factory=list)
    checked: str = ""                     # what is compared with the prediction
    agrees: bool = False
    note: str = ""

    def row(self) -> dict:
        return {"way": self.way, "url": self.url, "sent from": self.sent_from, "status": self.status,
                "answered by": self.answered_by, "app saw client": self.client_seen,
                "predicted": ", ".join(self.predicted), "compared": self.checked,
                "agrees": self.agrees, "note": self.note}


def _destinations(trace) -> list[str]:
    return sorted({o.destination for o in trace.outcomes if o.destination and o.verdict == "ACCEPT"})


def _fill(check: Check, resp) -> Check:
    check.sent_from = resp.from_
    check.status = resp.status
    check.answered_by = resp.destination or ""
    check.client_seen = resp.client or ""
    check.note = "; ".join(x for x in (resp.error or "", resp.note) if x)
    return check


def prepare(lab) -> None:
    """The course's end state (idempotent): app, controller, Ingress, NodePort Service."""
    lab.up()
    lab.deploy_app(replicas=2)
    lab.install_ingress_controller()
    lab.apply("kind/manifests/ingress.yaml")
    lab.apply("kind/manifests/app-nodeport.yaml")


def run(lab) -> list[Check]:
    """One request each way in; every check says what it compared and whether it agreed."""
    nodes = lab.get("nodes")
    node = nodes[nodes["role"] == "control-plane"].iloc[0]
    services = lab.get("services")
    cluster_ip = services.query("namespace == 'default' and name == 'url-shortener'").iloc[0]["cluster_ip"]
    eps = lab.get("endpoints")
    app_eps = sorted(eps.query("service == 'url-shortener' and ready")["endpoint"].astype(str))
    client = lab.client_pod()
    pods = lab.get("pods")
    ns, _, name = client.partition("/")
    client_ip = str(pods.query("namespace == @ns and name == @name").iloc[0]["ip"])
    gateway = "172.18.0.1"        # the kind network's gateway: how a packet from the host arrives
    checks = []

    pf_check = Check("port-forward", f"http://127.0.0.1:{LOCAL_PORT}/whoami", predicted=app_eps,
                     checked="answered by one of the app's pods, and the app saw 127.0.0.1")
    with lab.port_forward("svc/url-shortener", local_port=LOCAL_PORT, remote_port=80):
        _fill(pf_check, lab.request(pf_check.url))
    pf_check.agrees = pf_check.answered_by in app_eps and pf_check.client_seen == "127.0.0.1"
    checks.append(pf_check)

    c = Check("clusterip", f"http://{cluster_ip}/whoami",
              predicted=_destinations(lab.trace(cluster_ip, 80, src=client_ip)),
              checked=f"answered by a DNAT destination of the trace from {client}, which the app sees as itself")
    _fill(c, lab.request(c.url, from_="pod", source=client))
    c.agrees = c.answered_by in c.predicted and c.client_seen == client_ip
    checks.append(c)

    c = Check("nodeport", f"http://localhost:{NODE_PORT}/whoami",
              predicted=_destinations(lab.trace(node["ip"], NODE_PORT, src=gateway)),
              checked="answered by a DNAT destination of the trace to the node's NodePort")
    _fill(c, lab.request(c.url))
    c.agrees = c.answered_by in c.predicted
    checks.append(c)

    c = Check("hostport", f"http://{node['ip']}/whoami",
              predicted=_destinations(lab.trace(node["ip"], 80, src=gateway)),
              checked="the controller the hostPort DNAT predicts is the client the app saw")
    _fill(c, lab.request(c.url, host=HOST))
    c.agrees = any(p.split(":")[0] == c.client_seen for p in c.predicted)
    checks.append(c)

    routes = lab.ingress_routes()
    ups = sorted({u for cell in routes.query("host == @HOST")["upstreams"] for u in str(cell).split(",") if u})
    c = Check("ingress", "http://localhost:8080/whoami", predicted=ups,
              checked=f"answered by an upstream of the Ingress route for {HOST}")
    _fill(c, lab.request(c.url, host=HOST))
    c.agrees = c.answered_by in ups
    checks.append(c)
    return checks


def frame(checks: list[Check], lab=None):
    import pandas as pd
    df = pd.DataFrame([c.row() for c in checks])
    if lab is not None:
        df = lab._label(df)
    return df


def record(lab, directory: str | Path) -> Path:
    lab.record(directory)
    return Path(directory)
