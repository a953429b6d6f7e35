"""Predict, then check against the cluster.

A notebook's exercise cell (tagged ``exercise``) looks like this::

    answer = ...            # your prediction
    check("03.probabilities", answer, lab)

:func:`check` works out the right answer from the lab *now* (a measurement or a value read off
the rules, never a stored constant where the lab can tell), compares it with the prediction and
answers with hints that point at the evidence, not a bare pass/fail.

Each exercise's solution lives once, in :data:`BANK` (as the Python text a learner would write).
``solution("03.probabilities")`` prints it; :func:`fill_solutions` writes the solutions into a
notebook's exercise cells (``k8slab course --solutions``); the tests run every solution through
:func:`check` on a sim lab.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable

APP = "url-shortener"
INGRESS_NS = "ingress-nginx"


# ---------------------------------------------------------------------------------------------
# Results

@dataclass
class CheckResult:
    """What :func:`check` says. ``ok`` is None when no prediction was written yet."""
    exercise: str
    ok: bool | None
    answer: Any
    expected: Any
    message: str
    hints: list[str] = field(default_factory=list)
    predicted: bool = False   # the expected value came from a model (sim), not a live cluster

    def text(self) -> str:
        mark = {True: "✔ correct", False: "✘ not quite", None: "… no prediction yet"}[self.ok]
        lines = [f"[{self.exercise}] {mark}: {self.message}"]
        lines += [f"  hint: {h}" for h in self.hints]
        if self.predicted and self.ok is not None:
            lines.append("  (the lab's side of this check is the sim model's prediction, not a live cluster)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def __bool__(self) -> bool:
        return bool(self.ok)

    def _repr_html_(self) -> str:
        import html
        color = {True: "#2ca02c", False: "#d62728", None: "#7f7f7f"}[self.ok]
        body = html.escape(self.text()).replace("\n", "<br>")
        return (f'<div style="border-left:6px solid {color};padding:4px 8px;font-family:monospace;'
                f'font-size:12px">{body}</div>')


@dataclass(frozen=True)
class Exercise:
    """One "predict, then check" exercise.

    ``expected(lab)`` derives the truth from the lab; ``compare(answer, truth, lab)`` returns
    ``(ok, message, hints)``. ``solution`` is the Python expression a learner would write;
    ``wrong`` a plausible wrong prediction (the tests check it gets a hint). ``equivalents`` are other
    right answers a learner writes in their own words (Python expressions, ``lab`` in scope): every
    one must pass; ``wrongs`` are more answers that must not.
    """
    id: str
    question: str
    solution: str
    wrong: str
    expected: Callable[[Any], Any]
    compare: Callable[[Any, Any, Any], tuple[bool, str, list[str]]]
    explain: str = ""
    equivalents: tuple[str, ...] = ()
    wrongs: tuple[str, ...] = ()

    @property
    def notebook(self) -> str:
        return self.id.split(".", 1)[0]


# ---------------------------------------------------------------------------------------------
# Reading the lab (small, shared by several exercises)

def _service(lab, name: str, namespace: str = "default") -> dict:
    svcs = lab.get("services")
    row = svcs[(svcs["name"] == name) & (svcs["namespace"] == namespace)]
    if row.empty:
        from .errors import NotFound
        raise NotFound(f"no Service {namespace}/{name} in the lab yet: run the notebook's first cells")
    return row.iloc[0].to_dict()


def _first_port(svc: dict) -> tuple[int, int | None]:
    """(port, nodePort) of a Service's first port, from get('services')' ``ports`` column."""
    first = str(svc["ports"]).split(",")[0]
    m = re.match(r"(\d+)(?::(\d+))?/", first)
    if not m:
        raise ValueError(f"cannot read a port from {svc['ports']!r}")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


def _node_port(svc: dict, port: int = 80) -> int:
    for part in str(svc["ports"]).split(","):
        m = re.match(r"(\d+)(?::(\d+))?/", part)
        if m and int(m.group(1)) == port and m.group(2):
            return int(m.group(2))
    raise ValueError(f"{svc['name']} has no NodePort for port {port} ({svc['ports']})")


def control_plane(lab) -> dict:
    nodes = lab.get("nodes")
    cp = nodes[nodes["role"] == "control-plane"]
    return (cp if not cp.empty else nodes).iloc[0].to_dict()


def client_pod(lab) -> str:
    """The pod in-cluster requests start from, as ``namespace/name``: the course's own client pod
    (curl, on the pod network, not the app's and not the ingress controller), created on first use."""
    return lab.client_pod()


def app_pods(lab):
    pods = lab.get("pods")
    return pods[(pods["app"] == APP) & (pods["namespace"] == "default")]


def controller_pod(lab) -> dict:
    pods = lab.get("pods")
    ctl = pods[(pods["namespace"] == INGRESS_NS) & (pods["host_ports"].astype(str) != "")]
    if ctl.empty:
        ctl = pods[pods["name"].astype(str).str.contains("controller")]
    if ctl.empty:
        from .errors import NotFound
        raise NotFound("no ingress controller pod: run lab.install_ingress_controller() first")
    return ctl.iloc[0].to_dict()


def address_roles(ip: str | None, lab) -> set[str]:
    """Words that name what ``ip`` is in this lab: loopback, node, pod, controller, host, ..."""
    if not ip:
        return set()
    ip = str(ip).split(":")[0]
    roles: set[str] = {ip}
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return roles
    if addr.is_loopback:
        roles |= {"loopback", "localhost", "127.0.0.1"}
    nodes = lab.get("nodes")
    for _, n in nodes.iterrows():
        net = ipaddress.ip_network(str(n["pod_cidr"]), strict=False)
        if ip == n["ip"]:
            roles |= {"node", "node ip", n["name"]}
        if addr == net.network_address + 1:      # the node's own address on its pod network
            roles |= {"node", "node ip", "gateway"}
        node_net = ipaddress.ip_network(f"{n['ip']}/16", strict=False)
        if addr == node_net.network_address + 1:   # the Docker bridge of network "kind": the host
            roles |= {"host", "docker gateway", "gateway"}
    pods = lab.get("pods")
    hit = pods[pods["ip"] == ip]
    if not hit.empty:
        roles |= {"pod", "pod ip", str(hit.iloc[0]["name"])}
        if str(hit.iloc[0]["namespace"]) == INGRESS_NS:
            roles |= {"controller", "ingress controller"}
    svcs = lab.get("services")
    if ip in set(svcs["cluster_ip"].astype(str)):
        roles |= {"clusterip", "service", "cluster ip"}
    return roles


def _norm(x) -> str:
    """Case, spacing, underscores, a leading "the" and a trailing period do not matter."""
    text = re.sub(r"[\s_]+", " ", str(x).strip().lower()).strip(" .")
    return re.sub(r"^the ", "", text)


_IP_PORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+)(?::(\d+))?$")


def _split_address(x) -> tuple[str, str | None]:
    """("10.244.0.7", "80") for "10.244.0.7:80"; (text, None) for anything else."""
    m = _IP_PORT.match(str(x).strip())
    return (m.group(1), m.group(2)) if m else (str(x), None)


# ---------------------------------------------------------------------------------------------
# Comparators: each returns (ok, message, hints)

def same_number(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    def compare(answer, truth, lab):
        try:
            ok = float(answer) == float(truth)
        except (TypeError, ValueError):
            return False, f"expected a number for {what}, got {answer!r}", (hints(answer, truth) if hints else [])
        msg = f"{what}: you predicted {answer}, the lab shows {truth}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_text(what: str, hints: Callable[[Any, Any], list[str]] | None = None, synonyms=None):
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}

    def canon(x):
        n = _norm(x)
        return syn.get(n, n)

    def compare(answer, truth, lab):
        ok = canon(answer) == canon(truth)
        msg = f"{what}: you predicted {answer!r}, the lab shows {truth!r}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_bool(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    def compare(answer, truth, lab):
        if not isinstance(answer, bool):
            return False, f"answer True or False for {what}, not {answer!r}", (hints(answer, truth) if hints else [])
        ok = answer == bool(truth)
        msg = f"{what}: you predicted {answer}, the lab shows {bool(truth)}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


ROLE_WORDS = {"node's address": "node", "node address": "node", "the node's ip": "node", "node's ip": "node",
              "ingress-nginx": "controller", "ingress-nginx controller": "controller", "nginx": "controller",
              "controller pod": "controller", "ingress controller pod": "controller", "loopback address": "loopback",
              "my machine": "host", "my laptop": "host", "your machine": "host", "pod's ip": "pod ip"}


def same_address(what: str, hints: Callable[[Any, Any, set], list[str]] | None = None):
    """The answer may be the address itself, with or without the port the lab's answer carries, or a
    word for its role ("node", "pod", "controller", "127.0.0.1")."""
    def compare(answer, truth, lab):
        roles = {_norm(r) for r in address_roles(truth, lab)}
        t_ip, t_port = _split_address(truth)
        a_ip, a_port = _split_address(answer)
        if _IP_PORT.match(str(answer).strip()):
            ok = a_ip in roles and (a_port is None or a_port == t_port)
        else:
            word = _norm(answer)
            ok = ROLE_WORDS.get(word, word) in roles
        kinds = sorted(r for r in roles if not r[0].isdigit() and not r.startswith(("kind-", APP)))
        shown = f"{truth}" + (f" ({', '.join(kinds)})" if kinds else "")
        msg = f"{what}: you predicted {answer!r}; the lab shows {shown}" if not ok else \
            f"{what}: {answer!r} matches {shown}"
        return ok, msg, [] if ok else (hints(answer, truth, roles) if hints else [])
    return compare


def same_set(what: str, hints: Callable[[set, set], list[str]] | None = None, synonyms=None,
             ignore: tuple[str, ...] = ()):
    """Same members, in any order; ``ignore``: words that may be in the answer or not (say "client",
    which the path table lists but the question does not ask for)."""
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}
    skip = {_norm(w) for w in ignore}

    def canon(items):
        if isinstance(items, (str, bytes)):
            items = [items]
        out = {syn.get(_norm(getattr(i, "value", i)), _norm(getattr(i, "value", i))) for i in items}
        return out - skip

    def compare(answer, truth, lab):
        try:
            a, t = canon(answer), canon(truth)
        except TypeError:
            return False, f"expected a list or set for {what}, got {answer!r}", (hints(set(), set()) if hints else [])
        ok = a == t
        msg = f"{what}: you predicted {sorted(a)}, the lab shows {sorted(t)}"
        extra = []
        if a - t:
            extra.append(f"not in the lab's answer: {sorted(a - t)}")
        if t - a:
            extra.append(f"missing from your prediction: {sorted(t - a)}")
        return ok, msg, [] if ok else extra + (hints(a, t) if hints else [])
    return compare


def same_hex(what: str, hints: Callable[[Any, Any], list[str]] | None = None):
    """A mark as the rules print it ("0x4000", "0x4000/0x4000") or as a number (16384, 0x4000)."""
    def value(x):
        if isinstance(x, int):
            return x
        return int(str(x).strip().split("/")[0], 0)

    def compare(answer, truth, lab):
        try:
            ok = value(answer) == value(truth)
        except ValueError:
            return False, f"expected a mark like 0x4000 for {what}, got {answer!r}", (hints(answer, truth) if hints else [])
        msg = f"{what}: you predicted {answer!r}, the rules set {truth}"
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_ip(what: str, port: str | None = None, hints: Callable[[Any, Any], list[str]] | None = None):
    """An address, with or without the port the question implies (``port``)."""
    def compare(answer, truth, lab):
        a_ip, a_port = _split_address(answer)
        ok = a_ip == str(truth) and a_port in (None, port)
        msg = f"{what}: you predicted {answer!r}, the lab shows {truth!r}" + (f" (port {port})" if port else "")
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


def same_sequence(what: str, hints: Callable[[list, list], list[str]] | None = None, tol: float = 1e-3):
    def compare(answer, truth, lab):
        try:
            a = [float(Fraction(x)) if isinstance(x, str) else float(x) for x in answer]
        except (TypeError, ValueError):
            return False, f"expected a list of numbers for {what}, got {answer!r}", (hints([], []) if hints else [])
        t = [float(x) for x in truth]
        ok = len(a) == len(t) and all(abs(x - y) <= tol for x, y in zip(a, t))
        msg = (f"{what}: you predicted {[round(x, 3) for x in a]}, "
               f"the rules say {[round(x, 3) for x in t]}")
        return ok, msg, [] if ok else (hints(a, t) if hints else [])
    return compare


def same_mapping(what: str, hints: Callable[[dict, dict], list[str]] | None = None, synonyms=None):
    syn = {_norm(k): _norm(v) for k, v in (synonyms or {}).items()}

    def canon(x):
        n = _norm(x)
        return syn.get(n, n)

    def compare(answer, truth, lab):
        if not isinstance(answer, dict):
            return False, f"expected a dict for {what}, got {answer!r}", (hints({}, truth) if hints else [])
        answer = {str(k).strip().upper(): v for k, v in answer.items()}
        wrong = {k: (answer.get(k), v) for k, v in truth.items() if canon(answer.get(k, "")) != canon(v)}
        ok = not wrong
        msg = f"{what}: " + ("all match the dump" if ok else
                             "; ".join(f"{k}: you said {a!r}, the dump says {t!r}" for k, (a, t) in wrong.items()))
        return ok, msg, [] if ok else (hints(answer, truth) if hints else [])
    return compare


# ---------------------------------------------------------------------------------------------
# What the lab shows, per exercise

def _app_ruleset_probabilities(lab) -> list[float]:
    """The ``--probability`` of each rule of the app's KUBE-SVC chain, in order (1.0 for the last)."""
    svc = _service(lab, APP)
    rs = lab.iptables()
    svc_chain = None
    for rule in rs.iter_rules():
        if rule.table == "nat" and rule.chain == "KUBE-SERVICES" and rule.target \
                and rule.target.startswith("KUBE-SVC-") and rule.destination is not None \
                and rule.destination.value.split("/")[0] == svc["cluster_ip"]:
            svc_chain = rule.target
            break
    if svc_chain is None:
        raise LookupError(f"no KUBE-SERVICES rule for {svc['cluster_ip']}: has kube-proxy synced?")
    probs = []
    for rule in rs.chain("nat", svc_chain).rules:
        if rule.target and rule.target.startswith("KUBE-SEP-"):
            opt = rule.option("statistic", "--probability")
            probs.append(float(opt.value) if opt is not None else 1.0)
    return probs


def _trace_chains(lab, dst: str, dport: int, src: str | None = None) -> list[str]:
    """The nat chains (hash stripped) a new connection passes, in order, for the first outcome."""
    tr = lab.trace(dst, dport, src=src)
    out: list[str] = []
    for hop in tr.outcomes[0].hops:
        if hop.table != "nat" or hop.hook not in ("PREROUTING", "OUTPUT"):   # the DNAT stage only
            continue
        name = re.sub(r"-[A-Z0-9]{16}$", "", hop.chain)
        name = re.sub(r"^CNI-DN-[0-9a-f]+$", "CNI-DN", name)
        if name not in out:
            out.append(name)
    return out


def _whoami_via_port_forward(lab):
    with lab.port_forward(f"svc/{APP}", local_port=18080, remote_port=80) as pf:
        return lab.request(f"http://127.0.0.1:{pf.local_port}/whoami")


def _nat_rules_moved_by_port_forward(lab) -> int:
    with lab.port_forward(f"svc/{APP}", local_port=18080, remote_port=80) as pf:
        with lab.counters() as c:
            lab.request(f"http://127.0.0.1:{pf.local_port}/whoami")
    return len(c.translations)


def _nodeport_client(lab):
    svc = _service(lab, NODEPORT_SERVICE)
    node = control_plane(lab)
    return lab.request(f"http://{node['ip']}:{_node_port(svc, 80)}/whoami", from_="host").client


def _listeners_on_cluster_ip(lab) -> int:
    svc = _service(lab, APP)
    socks = lab.sockets()
    return int(socks["local"].astype(str).str.startswith(svc["cluster_ip"] + ":").sum())


def _owner_map(lab) -> dict:
    rules = lab.iptables().rules
    out = {}
    for chain in ("CNI-HOSTPORT-DNAT", "KUBE-NODEPORTS"):
        hit = rules[rules["chain"] == chain]
        if not hit.empty:
            out[chain] = str(hit.iloc[0]["owner"])
    return out


def _hostport_destination(lab) -> str:
    rs = lab.iptables()
    for rule in rs.iter_rules():
        if rule.table == "nat" and rule.chain.startswith("CNI-DN-") and rule.target == "DNAT":
            dport = rule.option("tcp", "--dport")
            if dport is not None and dport.value == "80":
                return rule.target_option("--to-destination").value
    raise LookupError("no CNI-DN-* DNAT rule for port 80: is the ingress controller installed?")


def _probe_ingress(lab) -> dict:
    """Apply a throwaway Ingress, measure what changed, delete it again."""
    probe = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
             "metadata": {"name": "k8slab-probe", "namespace": "default"},
             "spec": {"ingressClassName": "nginx", "rules": [{"host": "probe.k8slab.test", "http": {"paths": [
                 {"path": "/", "pathType": "Prefix",
                  "backend": {"service": {"name": APP, "port": {"number": 80}}}}]}}]}}
    pods0, socks0 = len(lab.get("pods")), set(lab.sockets()["local"])
    try:
        lab.apply(probe)
        pods1, socks1 = len(lab.get("pods")), set(lab.sockets()["local"])
    finally:
        lab.delete("ingress", "k8slab-probe")
    return {"new_pods": pods1 - pods0, "new_sockets": len(socks1 - socks0)}


def _ingress_request(lab, path: str = "/whoami"):
    routes = lab.ingress_routes()
    host = None
    if not routes.empty:
        h = str(routes.iloc[0]["host"])
        host = None if h in ("*", "", "None") else h
    return lab.request(f"http://localhost:8080{path}", host=host)


def _kube_svc_moved_by_ingress(lab) -> bool:
    with lab.counters() as c:
        _ingress_request(lab)
    return c.moved("KUBE-SVC-")


def _upstream_kind(lab) -> str:
    resp = _ingress_request(lab)
    dest = resp.destination or ""
    roles = address_roles(dest.split(":")[0], lab) if dest else set()
    return "pod ip" if "pod" in roles else ("clusterip" if "clusterip" in roles else dest)


def _ways_using_api_server(lab) -> set[str]:
    return {w for w in ("port-forward", "clusterip", "nodeport", "hostport", "ingress")
            if lab.path(w).uses_api_server}


def _ways_surviving_api_down(lab) -> set[str]:
    # A prediction from each path's components: a way keeps working when no hop needs the API server.
    return {w for w in ("port-forward", "clusterip", "nodeport", "hostport", "ingress")
            if not lab.path(w).uses_api_server}


def _proxy_mode(lab) -> str:
    rs = lab.iptables()
    if rs.chain("nat", "KUBE-SERVICES") is not None:
        return "iptables"
    try:        # nftables mode: kube-proxy's own nft table (kind/cluster-nftables.yaml)
        if lab.nftables().table("ip", "kube-proxy") is not None:
            return "nftables"
    except (NotImplementedError, AttributeError):
        pass
    return "not iptables"


# ---------------------------------------------------------------------------------------------
# The bank

def _h(*lines):
    return lambda *args: list(lines)


COMPONENT_SYNONYMS = {"apiserver": "api server", "kube-apiserver": "api server", "containerd": "container runtime",
                      "runtime": "container runtime", "cri": "container runtime", "pod": "app"}
OWNER_SYNONYMS = {"portmap": "cni portmap", "cni": "cni portmap", "portmap plugin": "cni portmap",
                  "cni portmap plugin": "cni portmap", "cni plugin": "cni portmap", "kube proxy": "kube-proxy",
                  "kubeproxy": "kube-proxy"}
WAY_SYNONYMS = {"port forward": "port-forward", "portforward": "port-forward", "node port": "nodeport",
                "host port": "hostport", "cluster ip": "clusterip", "service": "clusterip",
                "kubectl port-forward": "port-forward", "kubectl port forward": "port-forward"}

_EXERCISES = [
    # 00 start
    Exercise("00.backend", "Which backend does Lab() pick on this machine? (\"kind\", \"netns\" or \"sim\")",
             'lab.backend_name  # or type the name you expect', '"nowhere"',
             lambda lab: lab.backend_name,
             same_text("backend", _h("Lab() honours K8SLAB_BACKEND first, then takes kind where Docker and kind "
                                     "work, else sim: read lab.why")),
             equivalents=("lab.backend_name.upper()", "' ' + lab.backend_name + ' '", "'the ' + lab.backend_name"),
             wrongs=("'kind' if lab.backend_name != 'kind' else 'sim'",)),
    Exercise("00.live", "Will the outputs of this run be live measurements (True) or a model's predictions (False)?",
             "lab.backend_name != \"sim\"", "True",
             lambda lab: lab.live,
             same_bool("live outputs", _h("only the sim backend predicts; kind and netns measure real packets. "
                                          "lab.live says which"))),
    # 01 cluster
    Exercise("01.node_count", "How many nodes (Docker containers) does kind/cluster.yaml create?",
             "len(yaml.safe_load((lab.root / 'kind/cluster.yaml').read_text())['nodes'])", "3",
             lambda lab: len(lab.get("nodes")),
             same_number("nodes", _h("count the entries under `nodes:` in kind/cluster.yaml; each becomes one "
                                     "container named <cluster>-control-plane, <cluster>-worker, ...")),
             equivalents=("str(len(lab.get('nodes')))", "float(len(lab.get('nodes')))"),
             wrongs=("len(lab.get('nodes')) + 1",)),
    Exercise("01.pod_cidr", "Which pod CIDR does the control-plane node own?", '"10.244.0.0/24"', '"10.96.0.0/16"',
             lambda lab: control_plane(lab)["pod_cidr"],
             same_text("control-plane pod CIDR", _h("kind's pod subnet is 10.244.0.0/16 and each node gets a /24 "
                                                    "in order; 10.96.0.0/16 is the *service* subnet")),
             equivalents=("' 10.244.0.0/24 '", "'10.244.0.0/24.'"), wrongs=("'10.244.0.0/16'",)),
    Exercise("01.kubernetes_ip", "Which ClusterIP does the `kubernetes` Service (the API server) get?",
             '"10.96.0.1"', '"172.18.0.2"',
             lambda lab: _service(lab, "kubernetes")["cluster_ip"],
             same_ip("kubernetes ClusterIP", port="443", hints=_h(
                 "ClusterIPs come from the service subnet (kind: 10.96.0.0/16); the first usable address goes to "
                 "the API server's Service; 172.18.0.x are node (container) addresses")),
             equivalents=("'10.96.0.1:443'", "' 10.96.0.1'"), wrongs=("'10.96.0.1:80'", "'10.96.0.10'")),
    # 02 port-forward
    Exercise("02.client_ip", "Through `kubectl port-forward`, which client address does the app see?",
             '"127.0.0.1"', '"172.18.0.1"',
             lambda lab: _whoami_via_port_forward(lab).client,
             same_address("client address", lambda a, t, r: [
                 "port-forward is not a network path into the pod: the container runtime enters the pod's "
                 "network namespace and dials localhost there, so the app sees a loopback client",
                 "look at the last hop of lab.path('port-forward')"]),
             equivalents=("'localhost'", "'loopback'", "'Loopback address'", "'the loopback'"),
             wrongs=("'pod'", "'node'")),
    Exercise("02.nat_rules", "How many address-translating rules (DNAT, SNAT, MASQUERADE) count a packet when "
             "you request through port-forward?",
             "0", "3",
             _nat_rules_moved_by_port_forward,
             same_number("translating rules that counted packets", _h(
                 "the bytes travel inside the kubectl -> API server -> kubelet stream; the pod is reached via "
                 "localhost in its own namespace, so no DNAT rule on the node ever sees a new connection",
                 "re-run the `with lab.counters()` cell and read c.translations")),
             equivalents=("'0'", "0.0"), wrongs=("1",)),
    Exercise("02.components", "Which components carry a port-forward request? (a list of component names)",
             '["kubectl", "API server", "kubelet", "container runtime", "app"]', '["kube-proxy", "app"]',
             lambda lab: [c.value for c in lab.path("port-forward").components if c.value != "client"],
             same_set("components", _h("kube-proxy never appears: port-forward is control-plane plumbing"),
                      synonyms=COMPONENT_SYNONYMS, ignore=("client",)),
             equivalents=('["client", "kubectl", "API server", "kubelet", "container runtime", "app"]',
                          '{"app", "containerd", "kubelet", "kube-apiserver", "kubectl"}',
                          '["kubectl", "apiserver", "kubelet", "CRI", "pod"]'),
             wrongs=('["kubectl", "API server", "kubelet", "app"]', '["client", "kube-proxy", "app"]')),
    # 03 Service
    Exercise("03.listeners", "How many sockets listen on the url-shortener ClusterIP?", "0", "1",
             _listeners_on_cluster_ip,
             same_number("sockets on the ClusterIP", _h(
                 "a Service is rules, not a process: lab.sockets() lists what listens; the ClusterIP only "
                 "appears as a -d match in KUBE-SERVICES")),
             equivalents=("'0'", "0.0"), wrongs=("1",)),
    Exercise("03.chains", "With 3 replicas, which nat chains does a new connection to the ClusterIP pass, in order "
             "(the nat chains before routing, without the hash suffix)?",
             '["PREROUTING", "KUBE-SERVICES", "KUBE-SVC", "KUBE-SEP"]', '["KUBE-NODEPORTS", "KUBE-SEP"]',
             lambda lab: _trace_chains(lab, _service(lab, APP)["cluster_ip"], 80,
                                       src=None),
             lambda a, t, lab: _compare_chains(a, t),
             equivalents=('["kube-services", "kube-svc", "kube-sep"]',
                          '["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-ABCDEFGHIJKLMNOP", "KUBE-SEP-ABCDEFGHIJKLMNOP"]',
                          '["KUBE-SERVICES", "KUBE-SVC", "KUBE-MARK-MASQ", "KUBE-SEP"]'),
             wrongs=('["KUBE-SERVICES", "KUBE-SEP", "KUBE-SVC"]',)),
    Exercise("03.probabilities", "With 3 replicas, what `--probability` does each rule of KUBE-SVC-… carry, in "
             "order (the last one has none: write 1)?",
             "[1/3, 1/2, 1]", "[1/3, 1/3, 1/3]",
             _app_ruleset_probabilities,
             same_sequence("rule probabilities", lambda a, t: _cascade_hints(len(t))),
             equivalents=('["1/3", "1/2", "1"]', "[0.333, 0.5, 1.0]", "[Fraction(1, 3), Fraction(1, 2), 1]"),
             wrongs=("[1/3, 1/3, 1/3]", "[1/2, 1/2, 1]")),
    # 04 NodePort
    Exercise("04.mark", "Which mark does KUBE-MARK-MASQ set on a packet (hex)?", '"0x4000"', '"0x2000"',
             lambda lab: _mark_of(lab, "KUBE-MARK-MASQ"),
             same_hex("masquerade mark", _h("0x2000 is the CNI portmap plugin's mark (CNI-HOSTPORT-SETMARK); "
                                            "kube-proxy uses bit 14")),
             equivalents=('"0x4000/0x4000"', "0x4000", "16384", '"0x00004000"'), wrongs=('"0x2000"', "4000")),
    Exercise("04.chain", "A packet to <node-ip>:<nodePort>: which kube-proxy chain catches it after KUBE-SERVICES?",
             '"KUBE-NODEPORTS"', '"KUBE-SVC"',
             lambda lab: _nodeport_chain(lab),
             same_text("chain after KUBE-SERVICES", _h(
                 "the node IP is not a ClusterIP, so no per-service rule matches; the last rule of KUBE-SERVICES "
                 "sends packets for local addresses to KUBE-NODEPORTS")),
             equivalents=('"kube-nodeports"', '" KUBE-NODEPORTS "'), wrongs=('"KUBE-EXT"',)),
    Exercise("04.client_ip", "Through the NodePort from your machine, which client address does the app see? "
             "(an address, or a word: node, pod, host, 127.0.0.1)",
             '"node"', '"host"',
             _nodeport_client,
             same_address("client address", lambda a, t, r: [
                 "KUBE-EXT-… jumps to KUBE-MARK-MASQ (mark 0x4000); KUBE-POSTROUTING then MASQUERADEs the "
                 "packet, and MASQUERADE takes the address of the interface the packet leaves by: toward the "
                 f"pod, that is the node's end of the pod's link ({t}), an address of the node",
                 "look at the KUBE-POSTROUTING and KUBE-MARK-MASQ counters in the counters cell, and at "
                 "lab.routes(): the pod's route names the link"]),
             equivalents=("_nodeport_client(lab)", "'the node'", "\"node's address\"", "'Node'"),
             wrongs=("'host'", "'pod'", "'127.0.0.1'")),
    # 05 ingress controller
    Exercise("05.external_ip", "What EXTERNAL-IP does the ingress-nginx-controller Service show on kind?",
             '"<pending>"', '"172.18.0.2"',
             lambda lab: _service(lab, "ingress-nginx-controller", INGRESS_NS)["external_ip"],
             same_text("EXTERNAL-IP", _h("type LoadBalancer only asks for a load balancer; nothing in a plain kind "
                                         "cluster provides one (cloud-provider-kind would)"),
                       synonyms={"pending": "<pending>", "none yet": "<pending>", "<none>": "<none>"}),
             equivalents=('"pending"', '"Pending"', '" <pending> "'), wrongs=('"<none>"', '"localhost"')),
    Exercise("05.hostport", "Where does CNI-DN-… DNAT a packet for the node's port 80? (an address, or a word)",
             '"ingress controller"', '"clusterip"',
             lambda lab: _hostport_destination(lab),
             same_address("hostPort DNAT destination", lambda a, t, r: [
                 "the portmap plugin DNATs straight to the pod that declared hostPort: 80, the controller; "
                 "no Service is involved on this path"]),
             equivalents=("_hostport_destination(lab)", "_hostport_destination(lab).split(':')[0]",
                          '"controller"', '"the ingress controller"', '"ingress-nginx controller"', '"Controller pod"'),
             wrongs=('"clusterip"', "_hostport_destination(lab).split(':')[0] + ':8080'", '"node"')),
    Exercise("05.owners", "Who writes CNI-HOSTPORT-DNAT, and who writes KUBE-NODEPORTS? (a dict chain -> owner)",
             '{"CNI-HOSTPORT-DNAT": "CNI portmap", "KUBE-NODEPORTS": "kube-proxy"}',
             '{"CNI-HOSTPORT-DNAT": "kube-proxy", "KUBE-NODEPORTS": "kube-proxy"}',
             _owner_map,
             same_mapping("chain owners", _h("the chain's prefix names its author: KUBE-* kube-proxy, CNI-* the "
                                             "CNI plugin the container runtime called when the pod started"),
                          synonyms=OWNER_SYNONYMS),
             equivalents=('{"CNI-HOSTPORT-DNAT": "portmap", "KUBE-NODEPORTS": "kube proxy"}',
                          '{"cni-hostport-dnat": "the CNI portmap plugin", "KUBE-NODEPORTS": "kubeproxy"}'),
             wrongs=('{"CNI-HOSTPORT-DNAT": "kindnet", "KUBE-NODEPORTS": "kube-proxy"}',)),
    # 06 ingress
    Exercise("06.new_pods", "Apply an Ingress: how many new pods and listening sockets appear? "
             "(a dict with new_pods and new_sockets)",
             '{"new_pods": 0, "new_sockets": 0}', '{"new_pods": 1, "new_sockets": 1}',
             _probe_ingress,
             lambda a, t, lab: _compare_counts(a, t),
             equivalents=('{"new_sockets": 0, "new_pods": 0}', '{"new_pods": 0.0, "new_sockets": 0}'),
             wrongs=('{"new_pods": 0, "new_sockets": 1}',)),
    Exercise("06.kube_svc", "Does any KUBE-SVC-… counter move when a request comes in through the Ingress?",
             "False", "True",
             _kube_svc_moved_by_ingress,
             same_bool("KUBE-SVC counters moved", _h(
                 "ingress-nginx reads the Service's endpoints and proxies to pod IPs itself; the ClusterIP "
                 "(and so KUBE-SVC-…) is skipped unless the Ingress asks for service-upstream")),
             wrongs=("True",)),
    Exercise("06.upstream", "To which kind of address does the controller send the request: \"pod ip\" or \"clusterip\"?",
             '"pod ip"', '"clusterip"',
             _upstream_kind,
             same_text("upstream address", _h("compare lab.ingress_routes()' upstreams with lab.get('endpoints')"),
                       synonyms={"pod": "pod ip", "endpoint": "pod ip", "endpoints": "pod ip", "pod's ip": "pod ip",
                                 "pod ips": "pod ip", "pod address": "pod ip", "service": "clusterip",
                                 "cluster ip": "clusterip", "service ip": "clusterip"}),
             equivalents=('"pod"', '"Pod IP"', '"the pod\'s IP"', '"endpoints"'), wrongs=('"ClusterIP"', '"node"')),
    # 07 control vs data plane
    Exercise("07.api_server", "Which ways in carry traffic through the API server? (a set of way names)",
             '{"port-forward"}', '{"port-forward", "ingress"}',
             _ways_using_api_server,
             same_set("ways through the API server", _h(
                 "the ingress controller *watches* the API server for configuration, but requests never pass "
                 "through it"), synonyms=WAY_SYNONYMS),
             equivalents=('["port forward"]', '"port-forward"', '{"kubectl port-forward"}', '{"PortForward"}'),
             wrongs=('set()',)),
    Exercise("07.api_down", "If the API server stops, which ways keep working for connections made now? "
             "(a set of way names; on sim this is predicted from each path's components)",
             '{"clusterip", "nodeport", "hostport", "ingress"}', '{"port-forward"}',
             _ways_surviving_api_down,
             same_set("ways that survive", _h(
                 "rules already in the kernel and the controller's loaded nginx.conf stay; only new changes "
                 "(scaling, new Ingresses) stop arriving"), synonyms=WAY_SYNONYMS),
             equivalents=('["ClusterIP", "NodePort", "hostPort", "Ingress"]', '{"cluster ip", "node port", "host port", "ingress"}'),
             wrongs=('{"clusterip", "nodeport", "ingress"}',)),
    # 08 clean-up
    Exercise("08.proxy_mode", "In which mode does kube-proxy run in this lab: \"iptables\" or \"nftables\"?",
             '"iptables"', '"nftables"',
             _proxy_mode,
             same_text("kube-proxy mode", _h("the KUBE-SERVICES chain in iptables' nat table is the iptables mode's "
                                             "signature; in nftables mode the rules live in the nft table "
                                             "`kube-proxy` instead"), synonyms={"iptables mode": "iptables"}),
             equivalents=('"IPTables"', '"iptables mode"'), wrongs=('"ipvs"',)),
    Exercise("08.replacement", "ingress-nginx is retired: which Kubernetes API does SIG Network recommend moving to?",
             '"Gateway API"', '"NodePort"',
             lambda lab: "gateway api",
             same_text("successor", _h("NodePort and LoadBalancer are ways in, not a replacement for HTTP routing; "
                                       "the successor is an API with Gateway and HTTPRoute objects"),
                       synonyms={"gateway": "gateway api", "gatewayapi": "gateway api", "gateway-api": "gateway api",
                                 "kubernetes gateway api": "gateway api", "gateway apis": "gateway api"}),
             equivalents=('"gateway"', '"the Gateway API"', '"Gateway-API"'), wrongs=('"Ingress"', '"LoadBalancer"')),
]


def _cascade_hints(n: int) -> list[str]:
    """Why kube-proxy writes 1/n, 1/(n-1), ..., 1 for n endpoints (n: the lab's count now)."""
    if n < 2:
        return [f"with {n} endpoint(s) there is no choice to make: one rule, no --probability"]
    shares = ", ".join(f"1/{n - i}" for i in range(n - 1)) + ", then 1"
    return [f"with {n} endpoints the rules read {shares}: rules are tried in order and each sees only what "
            f"the earlier ones let through, so every endpoint ends up with 1/{n}",
            "read the `probability` column of the KUBE-SVC rows of lab.iptables().rules"]


def _mark_of(lab, chain: str) -> str:
    c = lab.iptables().chain("nat", chain)
    for rule in c.rules if c else []:
        opt = rule.target_option("--set-xmark") or rule.target_option("--or-mark")
        if opt is not None and opt.value:
            return opt.value.split("/")[0]
    raise LookupError(f"no MARK rule in nat {chain}")


def _nodeport_chain(lab) -> str:
    node = control_plane(lab)
    svc = _service(lab, NODEPORT_SERVICE)        # notebook 4's own NodePort (no controller there yet)
    chains = _trace_chains(lab, node["ip"], _node_port(svc, 80), src="172.18.0.1")
    after = chains[chains.index("KUBE-SERVICES") + 1:] if "KUBE-SERVICES" in chains else chains
    return after[0] if after else ""


def _compare_chains(answer, truth):
    try:
        a = [re.sub(r"-[A-Z0-9]{16}$", "", str(x)).upper() for x in answer]
    except TypeError:
        return False, f"expected a list of chain names, got {answer!r}", ["lab.trace(cluster_ip, 80).frame() lists the chains"]
    t = [x for x in truth if x != "KUBE-MARK-MASQ"]
    core = [x for x in t if x not in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "KUBE-POSTROUTING")]
    a_core = [x for x in a if x not in ("PREROUTING", "OUTPUT", "POSTROUTING", "INPUT", "KUBE-POSTROUTING",
                                        "KUBE-MARK-MASQ")]
    ok = a_core == core
    msg = f"chains: you predicted {a}, the tracer followed {t}"
    hints = [] if ok else ["KUBE-SERVICES matches the ClusterIP and jumps to the service's KUBE-SVC-…, which picks "
                           "one endpoint chain KUBE-SEP-…, whose rule does the DNAT",
                           "lab.trace(cluster_ip, 80).frame() lists every hop"]
    return ok, msg, hints


def _compare_counts(answer, truth):
    if not isinstance(answer, dict):
        return False, f"expected a dict like {{'new_pods': ..., 'new_sockets': ...}}, got {answer!r}", [
            "compare lab.get('pods') and lab.sockets() before and after lab.apply(...)"]
    wrong = {k: (answer.get(k), v) for k, v in truth.items() if answer.get(k) != v}
    ok = not wrong
    msg = ("an Ingress added " + ", ".join(f"{v} {k.replace('new_', '')}" for k, v in truth.items()))
    hints = [] if ok else [
        "an Ingress is an API object: it is stored in etcd and read by the controller, which changes its "
        "nginx.conf; no pod starts and no port opens",
        "compare lab.ingress_config() before and after instead"]
    return ok, msg, hints


BANK: dict[str, Exercise] = {e.id: e for e in _EXERCISES}

# What a notebook's exercises need the lab to have (tests and --solutions runs use it).
SETUP: dict[str, tuple[str, ...]] = {
    "00": (), "01": ("up",), "02": ("up", "app"), "03": ("up", "app3"),
    "04": ("up", "app", "nodeport"), "05": ("up", "app", "ingress"),
    "06": ("up", "app", "ingress", "route"), "07": ("up", "app", "ingress", "route", "nodeport"),
    "08": ("up", "app", "ingress", "route", "nodeport"),
}

#: The course's Ingress (host shortener.localtest.me -> url-shortener:80) and NodePort Service.
COURSE_INGRESS = "kind/manifests/ingress.yaml"
COURSE_NODEPORT = "kind/manifests/app-nodeport.yaml"
NODEPORT_SERVICE = "url-shortener-nodeport"


def prepare(lab, notebook: str) -> None:
    """Bring ``lab`` to the state a notebook's exercises need (idempotent)."""
    steps = SETUP[notebook]
    if "up" in steps:
        lab.up()
    if "app" in steps or "app3" in steps:
        lab.deploy_app(replicas=3 if "app3" in steps else 2)
    if "ingress" in steps:
        lab.install_ingress_controller()
    if "nodeport" in steps:
        expose_nodeport(lab)
    if "route" in steps:
        lab.apply(COURSE_INGRESS)


def expose_nodeport(lab):
    """Add the url-shortener-nodeport Service (NodePort 30080, same pods); idempotent."""
    return lab.apply(COURSE_NODEPORT)


# ---------------------------------------------------------------------------------------------
# The verbs

def check(exercise: str, answer, lab) -> CheckResult:
    """Compare a prediction with what the lab shows now; hints say where to look when it differs."""
    ex = BANK.get(exercise)
    if ex is None:
        raise KeyError(f"no exercise {exercise!r}; known: {', '.join(BANK)}")
    predicted = not getattr(lab, "live", True)
    if answer is Ellipsis or answer is None:
        return CheckResult(exercise, None, answer, None,
                           f"write your prediction in `answer` first ({ex.question})",
                           ["solution(%r) shows one answer, if you are stuck" % exercise], predicted)
    truth = ex.expected(lab)
    ok, message, hints = ex.compare(answer, truth, lab)
    if ok and ex.explain:
        hints = [ex.explain]
    return CheckResult(exercise, bool(ok), answer, truth, message, list(hints), predicted)


def solution(exercise: str) -> str:
    """The solution's source text (also printed, for a notebook cell)."""
    ex = BANK[exercise]
    return ex.solution


def evaluate_solution(exercise: str, lab, namespace: dict | None = None):
    """The solution's value, evaluated with ``lab`` (and ``yaml``) in scope."""
    return evaluate((BANK[exercise]).solution, lab, namespace)


def evaluate(expression: str, lab, namespace: dict | None = None):
    """One of the bank's answer expressions (a solution, an equivalent, a wrong one), with ``lab``,
    ``yaml``, ``Fraction`` and this module's readers in scope."""
    import yaml
    scope = dict(globals())
    scope.update({"lab": lab, "yaml": yaml})
    scope.update(namespace or {})
    return eval(expression, scope)  # noqa: S307  (our own bank, not user input)


def exercises_for(notebook: str) -> list[Exercise]:
    return [e for e in BANK.values() if e.notebook == notebook]


_ANSWER_LINE = re.compile(r"^answer\s*=\s*\.\.\.(.*)$", re.M)
_CHECK_CALL = re.compile(r"check\(\s*[\"']([0-9]{2}\.[a-z_0-9]+)[\"']")


def fill_solutions(nb) -> int:
    """Write each exercise cell's solution into its ``answer = ...`` line (in place); return how many."""
    n = 0
    for cell in nb.cells:
        if cell.cell_type != "code" or "exercise" not in cell.get("metadata", {}).get("tags", []):
            continue
        m = _CHECK_CALL.search(cell.source)
        if not m or m.group(1) not in BANK:
            continue
        sol = BANK[m.group(1)].solution
        cell.source, k = _ANSWER_LINE.subn(lambda mm: f"answer = {sol}", cell.source, count=1)
        n += k
    return n


__all__ = ["check", "solution", "evaluate_solution", "CheckResult", "Exercise", "BANK", "SETUP", "prepare",
           "expose_nodeport", "exercises_for", "fill_solutions", "address_roles"]


# =============================================================================================
# 09: the same Service in kube-proxy's nftables mode (notebooks/09-nftables-mode.ipynb). Each truth
# is read from the lab in nftables mode (lab.nftables(), lab.trace), or on a lab in iptables mode
# predicted from kube-proxy's nftables rules rendered for the lab's own objects.

def _nft_view(lab):
    """The node's nft ruleset: the lab's own in nftables mode, else kube-proxy's nftables rules
    rendered for the lab's objects (what the same cluster would have in nftables mode)."""
    if getattr(lab, "proxy_mode", "iptables") == "nftables":
        return lab.nftables()
    from .netfilter.nft import parse_nft
    from .netfilter.nft.node import render_node_kube_proxy
    return parse_nft(render_node_kube_proxy(lab.backend.model(), None, form="ruleset"))


def _nft_trace(lab, dst: str, dport: int):
    from .netfilter.nft import trace_nft
    from .netfilter.tracer import NodeContext, Packet
    info = lab.nodes()[0]
    return trace_nft(_nft_view(lab), Packet(src=lab._default_source(info), dst=dst, dport=int(dport)),
                     NodeContext(local_ips=tuple(info.local_ips), pod_cidrs=(info.pod_cidr,) if info.pod_cidr else (),
                                 name=info.name))


def _services_rules_passed(lab) -> int:
    """How many rules of kube-proxy's `services` chain a connection to the app's ClusterIP meets."""
    t = _nft_trace(lab, _service(lab, APP)["cluster_ip"], 80)
    return max(h.position for h in t.outcomes[0].hops if h.chain == "services" and h.position)


def _numgen_probabilities(lab) -> list:
    t = _nft_trace(lab, _service(lab, APP)["cluster_ip"], 80)
    hop = next(h for h in t.outcomes[0].hops if h.rule is not None and "numgen random mod" in h.rule.expr)
    n = int(re.search(r"numgen random mod (\d+)", hop.rule.expr).group(1))
    return [Fraction(1, n)] * n


def _service_map_key(lab) -> list[str]:
    rs = _nft_view(lab)
    ch = rs.chain("ip", "kube-proxy", "services")
    rule = next(r for r in ch.rules if "@service-ips" in r.expr)
    return [f.strip() for f in rule.expr.split(" vmap ")[0].split(" . ")]


_MAP_KEY_WORDS = {"ip daddr": "daddr", "destination ip": "daddr", "destination address": "daddr", "dst": "daddr",
                  "daddr": "daddr", "meta l4proto": "l4proto", "protocol": "l4proto", "l4proto": "l4proto",
                  "proto": "l4proto", "th dport": "dport", "tcp dport": "dport", "destination port": "dport",
                  "dport": "dport", "port": "dport", "ip saddr": "saddr", "source ip": "saddr"}

_EXERCISES_09 = [
    Exercise("09.lookup", "In nftables mode, how many rules of kube-proxy's `services` chain does a new connection "
             "to the url-shortener ClusterIP meet before it is sent to the Service's own chain?",
             "1", "len(lab.get('services'))",
             _services_rules_passed,
             same_number("rules met in `services`", _h(
                 "iptables mode walks KUBE-SERVICES one rule per Service port until one matches; nftables mode "
                 "has one rule, `ip daddr . meta l4proto . th dport vmap @service-ips`: a single map lookup "
                 "picks the Service's chain whatever the number of Services",
                 "lab.trace(cluster_ip, 80).frame() shows the hop in `services` and its position")),
             equivalents=('"1"', "1.0"), wrongs=("3", "0")),
    Exercise("09.numgen", "With 3 replicas in nftables mode, what probability does each element of the "
             "`numgen random mod 3 vmap { 0 : ..., 1 : ..., 2 : ... }` give its endpoint, in order?",
             "[1/3, 1/3, 1/3]", "[1/3, 1/2, 1]",
             _numgen_probabilities,
             same_sequence("element probabilities", _h(
                 "numgen draws one number in 0..N-1 once and the map sends each number to one endpoint: every "
                 "element is 1/N. The iptables cascade (1/3, 1/2, 1) is per rule, each tried only if the ones "
                 "before did not match: 1/3, then 2/3 x 1/2, then 2/3 x 1/2 x 1, also 1/3 each")),
             equivalents=('["1/3", "1/3", "1/3"]', "[0.333, 0.333, 0.333]", "[Fraction(1, 3)] * 3"),
             wrongs=("[1/3, 1/2, 1]", "[1/2, 1/2, 1/2]")),
    Exercise("09.map_key", "kube-proxy's `services` chain looks the packet up in the map `service-ips`: which "
             "three packet fields make the key?",
             '["ip daddr", "meta l4proto", "th dport"]', '["ip saddr", "meta l4proto", "th dport"]',
             _service_map_key,
             same_set("map key fields", _h(
                 "a Service is an address, a protocol and a port: the key is the packet's destination address, "
                 "its protocol and its destination port (`ip daddr . meta l4proto . th dport`)",
                 "lab.nftables().rules_frame shows the `services` chain's rules"), synonyms=_MAP_KEY_WORDS),
             equivalents=('("daddr", "l4proto", "dport")', '["destination address", "protocol", "destination port"]',
                          '{"th dport", "ip daddr", "meta l4proto"}'),
             wrongs=('["ip saddr", "meta l4proto", "th dport"]', '["ip daddr", "th dport"]')),
]
BANK_09: dict[str, Exercise] = {e.id: e for e in _EXERCISES_09}
BANK.update(BANK_09)
SETUP["09"] = ("up", "app3")
