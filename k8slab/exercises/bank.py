"""The bank: every exercise of the course, once, and what each notebook's exercises need.

Owns ``BANK`` (exercise id -> :class:`Exercise`: question, solution text, a plausible wrong answer,
truth function, comparator, equivalents and wrongs), ``BANK_09`` (notebook 09's, also in ``BANK``),
the synonyms learners write (``COMPONENT_SYNONYMS``, ``OWNER_SYNONYMS``, ``WAY_SYNONYMS``), ``SETUP``
(notebook -> the steps its exercises need) and :func:`prepare` / :func:`expose_nodeport`, which take a
lab there.
"""
from __future__ import annotations

from .checks import (_compare_chains, _compare_counts, _compare_upstream, Exercise, _h, _norm, same_address,
                     same_bool, same_hex, same_ip, same_mapping, same_number, same_sequence, same_set, same_text)
from .readers import (APP, _app_ruleset_probabilities, control_plane, COURSE_INGRESS, COURSE_NODEPORT,
                      _hostport_destination, INGRESS_NS, _kube_svc_moved_by_ingress,
                      _listeners_on_cluster_ip, _mark_masq_rule, _mark_of, _nat_rules_moved_by_port_forward,
                      _nodeport_chain,
                      _nodeport_client, _numgen_probabilities, _owner_map, _probe_ingress, _proxy_mode,
                      _service, _service_map_key, _services_rules_passed, _trace_chains, _upstream_kind,
                      _ways_surviving_api_down, _ways_using_api_server, _whoami_via_port_forward)


# ---------------------------------------------------------------------------------------------
# The bank

COMPONENT_SYNONYMS = {"apiserver": "api server", "kube-apiserver": "api server", "containerd": "container runtime",
                      "runtime": "container runtime", "cri": "container runtime", "pod": "app",
                      "url-shortener": "app", "url shortener": "app", "application": "app",
                      "app pod": "app", "kube api server": "api server"}
OWNER_SYNONYMS = {"portmap": "cni portmap", "cni": "cni portmap", "portmap plugin": "cni portmap",
                  "cni portmap plugin": "cni portmap", "cni plugin": "cni portmap", "kube proxy": "kube-proxy",
                  "kubeproxy": "kube-proxy"}
#: An owner named inside a longer answer: "the portmap CNI plugin", "portmap (CNI)", "the kube-proxy DaemonSet".
OWNER_KEYWORDS = ((r"portmap", "cni portmap"), (r"kube[- ]?proxy|\bkube\b.*\bproxy\b", "kube-proxy"))
WAY_SYNONYMS = {"port forward": "port-forward", "portforward": "port-forward", "node port": "nodeport",
                "host port": "hostport", "cluster ip": "clusterip", "service": "clusterip",
                "kubectl port-forward": "port-forward", "kubectl port forward": "port-forward",
                "port forwarding": "port-forward", "port-forwarding": "port-forward"}
WAYS = ("port-forward", "clusterip", "nodeport", "hostport", "ingress")


def _way_hints(general: str, per_way: dict[str, str] | None = None):
    """07's hints from the answer given (``a``) and the lab's (``t``): kubectl is no way in, unknown
    names are listed, and for each way in on the wrong side its own hint (``per_way``, else
    ``general``), each hint once."""
    def hints(a: set, t: set) -> list[str]:
        out = []
        if "kubectl" in a:
            out.append("kubectl is the client that asks for a port-forward, not a way in: the ways in are "
                       + ", ".join(WAYS))
        unknown = sorted(a - set(WAYS) - {"kubectl"})
        if unknown:
            out.append(f"{unknown} are not ways in; the ways in are " + ", ".join(WAYS))
        for way in WAYS:
            if way in a ^ t:
                text = (per_way or {}).get(way, general)
                if text not in out:
                    out.append(text)
        return out
    return hints


def _mark_hints(a, t) -> list[str]:
    """04.mark, from the answer: portmap's own mark, or where to read kube-proxy's."""
    try:
        value = a if isinstance(a, int) else int(str(a).strip().split("/")[0], 0)
    except ValueError:
        value = None
    if value == 0x2000:
        return ["0x2000 is the CNI portmap plugin's mark (CNI-HOSTPORT-SETMARK); kube-proxy uses another bit"]
    return ["the MARK rule of nat KUBE-MARK-MASQ says it: lab.iptables().chain('nat', 'KUBE-MARK-MASQ').rules "
            "(--set-xmark value/mask, in hex)"]


#: 06.upstream in words (a concrete address is compared by _compare_upstream against the endpoints).
_UPSTREAM_WORDS = same_text("upstream address", _h("compare lab.ingress_routes()' upstreams with lab.get('endpoints')"),
                            synonyms={"pod": "pod ip", "endpoint": "pod ip", "endpoints": "pod ip",
                                      "pod's ip": "pod ip", "pod ips": "pod ip", "pod address": "pod ip",
                                      "pod addresses": "pod ip", "endpoint ip": "pod ip", "service": "clusterip",
                                      "cluster ip": "clusterip", "service ip": "clusterip"})


def _replacement_hints(a, t) -> list[str]:
    """08.replacement, from the answer: an object of the right API, the retired one, or a way in."""
    n = _norm(a)
    if "route" in n or n in ("gatewayclass", "gateway class"):
        return [f"{a} is one object of that API (with Gateway, GatewayClass and the *Route kinds): the answer "
                "is the API's name"]
    if "ingress" in n:
        return ["ingress-nginx is one controller of the Ingress API, which stays frozen; SIG Network's "
                "recommendation for new work is a newer API with Gateway and HTTPRoute objects"]
    return ["NodePort and LoadBalancer are ways in, not a replacement for HTTP routing; the successor is an "
            "API with Gateway and HTTPRoute objects"]

_EXERCISES = [
    # 00 start
    Exercise("00.backend", "Which backend does Lab() pick on this machine? (\"kind\", \"netns\" or \"sim\")",
             'lab.backend_name  # or type the name you expect', '"nowhere"',
             lambda lab: lab.backend_name,
             same_text("backend", _h("Lab() honours K8SLAB_BACKEND first, then takes kind where Docker and kind "
                                     "work, else sim: read lab.why"),
                       keywords=((r"\bsim\b|\bsimulat", "sim"), (r"\bkind\b", "kind"),
                                 (r"\bnetns\b|network namespace", "netns"))),
             equivalents=("lab.backend_name.upper()", "' ' + lab.backend_name + ' '", "'the ' + lab.backend_name",
                          "'the ' + lab.backend_name + ' backend'", "lab.backend_name.capitalize() + ' backend.'"),
             wrongs=("'kind' if lab.backend_name != 'kind' else 'sim'",
                     "'the ' + ('kind' if lab.backend_name != 'kind' else 'sim') + ' backend'", "'kind or sim'")),
    Exercise("00.live", "Will the outputs of this run be live measurements (True) or a model's predictions (False)?",
             "lab.backend_name != \"sim\"", "True",
             lambda lab: lab.live,
             same_bool("live outputs", _h("only the sim backend predicts; kind and netns measure real packets. "
                                          "lab.live says which")),
             equivalents=("__import__('numpy').bool_(lab.live)",),
             wrongs=("not lab.live", "str(lab.live)", "'yes' if lab.live else 'no'")),
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
             equivalents=("'localhost'", "'loopback'", "'Loopback address'", "'the loopback'", "'127.0.0.1:40000'",
                          "'the loopback address'"),
             wrongs=("'pod'", "'node'", "'172.18.0.1:40000'", "'the node'")),
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
             # the client starts the request and the app receives it: either may be named or not; kubectl
             # reaches the API server through kind's published port (docker-proxy), named or not
             same_set("components", _h("kube-proxy never appears: port-forward is control-plane plumbing"),
                      synonyms=COMPONENT_SYNONYMS, ignore=("client", "app", "docker-proxy")),
             equivalents=('["client", "kubectl", "API server", "kubelet", "container runtime", "app"]',
                          '{"app", "containerd", "kubelet", "kube-apiserver", "kubectl"}',
                          '["kubectl", "apiserver", "kubelet", "CRI", "pod"]',
                          '["kubectl", "API server", "kubelet", "container runtime"]',
                          '["kubectl", "API server", "kubelet", "containerd", "url-shortener"]',
                          '["kubectl", "docker-proxy", "API server", "kubelet", "container runtime", "app"]',
                          '"kubectl, API server, kubelet, container runtime, app"'),
             wrongs=('["kubectl", "API server", "kubelet", "app"]', '["client", "kube-proxy", "app"]',
                     '["kubectl", "API server", "kubelet", "container runtime", "kube-proxy"]')),
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
             lambda a, t, lab: _compare_chains(a, t, lambda: _mark_masq_rule(lab)),
             # the notebook's own notations for a hashed chain, and a path written as one string
             equivalents=('["kube-services", "kube-svc", "kube-sep"]',
                          '["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-ABCDEFGHIJKLMNOP", "KUBE-SEP-ABCDEFGHIJKLMNOP"]',
                          '["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-…", "KUBE-SEP-…"]',
                          '["KUBE-SERVICES", "KUBE-SVC-*", "KUBE-SEP-*"]',
                          '["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-<hash>", "KUBE-SEP-<hash>"]',
                          '["KUBE-SERVICES", "KUBE-SVC-...", "KUBE-SEP-..."]',
                          '"PREROUTING > KUBE-SERVICES > KUBE-SVC-… > KUBE-SEP-…"',
                          '"PREROUTING -> KUBE-SERVICES -> KUBE-SVC-<hash> -> KUBE-SEP-<hash>"',
                          '"KUBE-SERVICES, KUBE-SVC, KUBE-SEP"',
                          '" > ".join("nat:" + c for c in ["PREROUTING", "KUBE-SERVICES", "KUBE-SVC-…", "KUBE-SEP-…"])',
                          'list(dict.fromkeys(h.chain for h in lab.trace(_service(lab, APP)["cluster_ip"], 80)'
                          '.outcomes[0].hops if h.table == "nat" and h.hook == "PREROUTING"))'),
             # a pod's connection never reaches KUBE-MARK-MASQ: that rule has `! -s <cluster CIDR>`
             wrongs=('["KUBE-SERVICES", "KUBE-SEP", "KUBE-SVC"]',
                     '["KUBE-SERVICES", "KUBE-SVC", "KUBE-MARK-MASQ", "KUBE-SEP"]',
                     '"PREROUTING > KUBE-SERVICES > KUBE-SVC-… > KUBE-MARK-MASQ > KUBE-SEP-…"',
                     '["PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-SVC", "KUBE-SEP"]',
                     '"KUBE-SERVICES > KUBE-SEP-*"')),
    Exercise("03.probabilities", "With 3 replicas, what `--probability` does each rule of KUBE-SVC-… carry, in "
             "order (the last one has none: write 1)?",
             "[1/3, 1/2, 1]", "[1/3, 1/3, 1/3]",
             _app_ruleset_probabilities,
             same_sequence("rule probabilities", lambda a, t: _cascade_hints(len(t)), none_is_one=True),
             # the last rule "has none": None, "none" or "no condition" read as 1
             equivalents=('["1/3", "1/2", "1"]', "[0.333, 0.5, 1.0]", "[Fraction(1, 3), Fraction(1, 2), 1]",
                          "[0.33, 0.5, 1]", "[1/3, 1/2, None]", '["1/3", "1/2", "none"]',
                          '["1/3", "1/2", "no condition"]', '"1/3, 1/2, 1"', '["33.3%", "50%", "100%"]'),
             wrongs=("[1/3, 1/3, 1/3]", "[1/2, 1/2, 1]", "[0.3, 0.5, 1]", "[1/3, 1/2]", '["1/3", "1/3", "none"]')),
    # 04 NodePort
    Exercise("04.mark", "Which mark does KUBE-MARK-MASQ set on a packet (hex)?", '"0x4000"', '"0x2000"',
             lambda lab: _mark_of(lab, "KUBE-MARK-MASQ"),
             same_hex("masquerade mark", _mark_hints),
             equivalents=('"0x4000/0x4000"', "0x4000", "16384", '"0x00004000"', '"0X4000"', '" 0x4000 "'),
             wrongs=('"0x2000"', "4000", '"4000"', '"0x400"')),
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
             equivalents=("_nodeport_client(lab)", "'the node'", "\"node's address\"", "'Node'",
                          "_nodeport_client(lab).split(':')[0] + ':32237'", "'the kind node'",
                          "\"the node's end of the pod's link\"", "\"the node's address on the pod network\""),
             wrongs=("'host'", "'pod'", "'127.0.0.1'", "'127.0.0.1:32237'", "'my machine'", "'a pod on the node'",
                     "\"the pod's address\"")),
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
                          '"controller"', '"the ingress controller"', '"ingress-nginx controller"', '"Controller pod"',
                          '"the ingress-nginx controller pod"', '"the nginx controller"'),
             wrongs=('"clusterip"', "_hostport_destination(lab).split(':')[0] + ':8080'", '"node"',
                     '"the ClusterIP of the controller\'s Service"', '"the node\'s address"')),
    Exercise("05.owners", "Who writes CNI-HOSTPORT-DNAT, and who writes KUBE-NODEPORTS? (a dict chain -> owner)",
             '{"CNI-HOSTPORT-DNAT": "CNI portmap", "KUBE-NODEPORTS": "kube-proxy"}',
             '{"CNI-HOSTPORT-DNAT": "kube-proxy", "KUBE-NODEPORTS": "kube-proxy"}',
             _owner_map,
             same_mapping("chain owners", _h("the chain's prefix names its author: KUBE-* kube-proxy, CNI-* the "
                                             "CNI plugin the container runtime called when the pod started"),
                          synonyms=OWNER_SYNONYMS, keywords=OWNER_KEYWORDS),
             equivalents=('{"CNI-HOSTPORT-DNAT": "portmap", "KUBE-NODEPORTS": "kube proxy"}',
                          '{"cni-hostport-dnat": "the CNI portmap plugin", "KUBE-NODEPORTS": "kubeproxy"}',
                          '{"CNI-HOSTPORT-DNAT": "the portmap CNI plugin", "KUBE-NODEPORTS": "the kube-proxy DaemonSet"}',
                          '{"CNI-HOSTPORT-DNAT": "portmap (CNI)", "KUBE-NODEPORTS": "kube-proxy"}'),
             wrongs=('{"CNI-HOSTPORT-DNAT": "kindnet", "KUBE-NODEPORTS": "kube-proxy"}',
                     '{"CNI-HOSTPORT-DNAT": "kube-proxy", "KUBE-NODEPORTS": "portmap"}',
                     '{"CNI-HOSTPORT-DNAT": "portmap or kube-proxy", "KUBE-NODEPORTS": "kube-proxy"}')),
    # 06 ingress
    Exercise("06.new_pods", "Apply an Ingress: how many new pods and listening sockets appear? "
             "(a dict with new_pods and new_sockets)",
             '{"new_pods": 0, "new_sockets": 0}', '{"new_pods": 1, "new_sockets": 1}',
             _probe_ingress,
             lambda a, t, lab: _compare_counts(a, t),
             equivalents=('{"new_sockets": 0, "new_pods": 0}', '{"new_pods": 0.0, "new_sockets": 0}',
                          '{"pods": 0, "sockets": 0}', '{"New pods": 0, "new listening sockets": 0}', "(0, 0)",
                          '{"new_pods": "0", "new_sockets": 0}'),
             wrongs=('{"new_pods": 0, "new_sockets": 1}', '{"pods": 1, "sockets": 0}', '{"a": 0, "b": 0}',
                     '{"new_pods": 0}')),
    Exercise("06.kube_svc", "Does any KUBE-SVC-… counter move when a request comes in through the Ingress?",
             "False", "True",
             _kube_svc_moved_by_ingress,
             same_bool("KUBE-SVC counters moved", _h(
                 "ingress-nginx reads the Service's endpoints and proxies to pod IPs itself; the ClusterIP "
                 "(and so KUBE-SVC-…) is skipped unless the Ingress asks for service-upstream")),
             equivalents=("__import__('numpy').bool_(_kube_svc_moved_by_ingress(lab))",),
             wrongs=("True", '"False"', '"no"')),
    Exercise("06.upstream", "To which kind of address does the controller send the request: \"pod ip\" or \"clusterip\"?",
             '"pod ip"', '"clusterip"',
             _upstream_kind,
             lambda a, t, lab: _compare_upstream(a, t, lab, _UPSTREAM_WORDS),
             equivalents=('"pod"', '"Pod IP"', '"the pod\'s IP"', '"endpoints"', '"pod IPs"',
                          "_app_endpoints(lab)[0]", "_app_endpoints(lab)[-1].split(':')[0]"),
             wrongs=('"ClusterIP"', '"node"', "_app_endpoints(lab)[0].split(':')[0] + ':80'",
                     "str(_service(lab, APP)['cluster_ip'])", "controller_pod(lab)['ip']")),
    # 07 control vs data plane
    Exercise("07.api_server", "Which ways in carry traffic through the API server? (a set of way names)",
             '{"port-forward"}', '{"port-forward", "ingress"}',
             _ways_using_api_server,
             same_set("ways through the API server", _way_hints(
                 "ClusterIP, NodePort and hostPort are rules in the node's kernel: the packet meets no "
                 "API server on the way (lab.path(way).components)", {
                     "ingress": "the ingress controller *watches* the API server for configuration, but "
                                "requests never pass through it",
                     "port-forward": "lab.path('port-forward') lists what a port-forward's bytes pass"}),
                 synonyms=WAY_SYNONYMS),
             equivalents=('["port forward"]', '"port-forward"', '{"kubectl port-forward"}', '{"PortForward"}',
                          '{"port forwarding"}'),
             wrongs=('set()', '{"port-forward", "kubectl"}', '{"port-forward", "ingress"}', '{"kubectl"}')),
    Exercise("07.api_down", "If the API server stops, which ways keep working for connections made now? "
             "(a set of way names; on sim this is predicted from each path's components)",
             '{"clusterip", "nodeport", "hostport", "ingress"}', '{"port-forward"}',
             _ways_surviving_api_down,
             same_set("ways that survive", _way_hints(
                 "rules already in the kernel and the controller's loaded nginx.conf stay; only new changes "
                 "(scaling, new Ingresses) stop arriving"), synonyms=WAY_SYNONYMS),
             equivalents=('["ClusterIP", "NodePort", "hostPort", "Ingress"]', '{"cluster ip", "node port", "host port", "ingress"}'),
             wrongs=('{"clusterip", "nodeport", "ingress"}', '{"clusterip", "nodeport", "hostport", "ingress", "kubectl"}')),
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
             same_text("successor", _replacement_hints,
                       synonyms={"gateway": "gateway api", "gatewayapi": "gateway api", "gateway-api": "gateway api",
                                 "kubernetes gateway api": "gateway api", "gateway apis": "gateway api"}),
             equivalents=('"gateway"', '"the Gateway API"', '"Gateway-API"', '"Kubernetes Gateway API"'),
             wrongs=('"Ingress"', '"LoadBalancer"', '"HTTPRoute"', '"NodePort"')),
]


def _cascade_hints(n: int) -> list[str]:
    """Why kube-proxy writes 1/n, 1/(n-1), ..., 1 for n endpoints (n: the lab's count now)."""
    if n < 2:
        return [f"with {n} endpoint(s) there is no choice to make: one rule, no --probability"]
    shares = ", ".join(f"1/{n - i}" for i in range(n - 1)) + ", then 1"
    return [f"with {n} endpoints the rules read {shares}: rules are tried in order and each sees only what "
            f"the earlier ones let through, so every endpoint ends up with 1/{n}",
            "read the `probability` column of the KUBE-SVC rows of lab.iptables().rules"]


BANK: dict[str, Exercise] = {e.id: e for e in _EXERCISES}

# What a notebook's exercises need the lab to have (tests and --solutions runs use it).
SETUP: dict[str, tuple[str, ...]] = {
    "00": (), "01": ("up",), "02": ("up", "app"), "03": ("up", "app3"),
    "04": ("up", "app", "nodeport"), "05": ("up", "app", "ingress"),
    "06": ("up", "app", "ingress", "route"), "07": ("up", "app", "ingress", "route", "nodeport"),
    "08": ("up", "app", "ingress", "route", "nodeport"),
}

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


# =============================================================================================
# 09: the same Service in kube-proxy's nftables mode (notebooks/09-nftables-mode.ipynb). Each truth
# is read from the lab in nftables mode (lab.nftables(), lab.trace), or on a lab in iptables mode
# predicted from kube-proxy's nftables rules rendered for the lab's own objects.

_MAP_KEY_WORDS = {"ip daddr": "daddr", "destination ip": "daddr", "destination address": "daddr", "dst": "daddr",
                  "daddr": "daddr", "dst ip": "daddr", "dst addr": "daddr", "dst address": "daddr",
                  "destination": "daddr", "ip destination": "daddr", "destination ip address": "daddr",
                  "clusterip": "daddr", "cluster ip": "daddr", "service ip": "daddr", "service address": "daddr",
                  "ip dst": "daddr",
                  "meta l4proto": "l4proto", "protocol": "l4proto", "l4proto": "l4proto", "proto": "l4proto",
                  "l4 protocol": "l4proto", "l4 proto": "l4proto", "transport protocol": "l4proto",
                  "ip protocol": "l4proto", "tcp/udp": "l4proto", "meta l4 proto": "l4proto",
                  "th dport": "dport", "tcp dport": "dport", "udp dport": "dport", "destination port": "dport",
                  "dport": "dport", "port": "dport", "dst port": "dport", "dest port": "dport",
                  "service port": "dport", "dstport": "dport",
                  "ip saddr": "saddr", "source ip": "saddr", "src ip": "saddr", "source": "saddr",
                  "source address": "saddr", "saddr": "saddr",
                  "th sport": "sport", "source port": "sport", "src port": "sport", "sport": "sport"}
#: nft writes a concatenated key as "ip daddr . meta l4proto . th dport"; learners also use commas, "and", "+".
_MAP_KEY_SPLIT = r"\s+\.\s+|\s*[,;+]\s*|\s+and\s+"

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
             equivalents=('["1/3", "1/3", "1/3"]', "[0.333, 0.333, 0.333]", "[Fraction(1, 3)] * 3",
                          "[0.33, 0.33, 0.33]", '"1/3, 1/3, 1/3"'),
             wrongs=("[1/3, 1/2, 1]", "[1/2, 1/2, 1/2]", "[0.3, 0.3, 0.3]", "[1/3, 1/3]")),
    Exercise("09.map_key", "kube-proxy's `services` chain looks the packet up in the map `service-ips`: which "
             "three packet fields make the key?",
             '["ip daddr", "meta l4proto", "th dport"]', '["ip saddr", "meta l4proto", "th dport"]',
             _service_map_key,
             same_set("map key fields", _h(
                 "a Service is an address, a protocol and a port: the key is the packet's destination address, "
                 "its protocol and its destination port (`ip daddr . meta l4proto . th dport`)",
                 "lab.nftables().rules_frame shows the `services` chain's rules"), synonyms=_MAP_KEY_WORDS,
                 split=_MAP_KEY_SPLIT),
             equivalents=('("daddr", "l4proto", "dport")', '["destination address", "protocol", "destination port"]',
                          '{"th dport", "ip daddr", "meta l4proto"}', '"ip daddr . meta l4proto . th dport"',
                          '["ip daddr . meta l4proto . th dport"]', '["dst ip", "proto", "dst port"]',
                          '["ClusterIP", "protocol", "port"]', '"destination, protocol and destination port"',
                          '"ip daddr, meta l4proto, th dport"'),
             wrongs=('["ip saddr", "meta l4proto", "th dport"]', '["ip daddr", "th dport"]',
                     '"ip daddr . th dport"', '["dst ip", "dst port"]', '["source ip", "protocol", "port"]',
                     '"ip saddr . meta l4proto . th dport"', '["ip daddr", "meta l4proto", "th dport", "ip saddr"]')),
]
BANK_09: dict[str, Exercise] = {e.id: e for e in _EXERCISES_09}
BANK.update(BANK_09)
SETUP["09"] = ("up", "app3")
