"""Hand-written inputs for the course's plot/widget tests: a small node dump and two paths.

Not fixtures from ../shared: these are tiny, made up for the tests, and spell out every rule so a
reader can check the expectations by eye.
"""
from __future__ import annotations

from k8slab.paths import Component as C, Hop, Path, Way

SVC = "default/url-shortener"

NODE_DUMP = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-DN-0123456789abcdef01234 - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SEP-CCCCCCCCCCCCCCCC - [0:0]
:KUBE-SEP-DDDDDDDDDDDDDDDD - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-UUUUUUUUUUUUUUUU - [0:0]
:KUBE-SVC-DNSDNSDNSDNSDNSD - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A CNI-DN-0123456789abcdef01234 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.0.7:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"kindnet\\" id: \\"abc\\"" -m multiport --dports 80,443 -j CNI-DN-0123456789abcdef01234
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-AAAAAAAAAAAAAAAA -s 10.244.0.4/32 -m comment --comment "default/url-shortener:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "default/url-shortener:http" -m tcp -j DNAT --to-destination 10.244.0.4:8080
-A KUBE-SEP-BBBBBBBBBBBBBBBB -s 10.244.0.5/32 -m comment --comment "default/url-shortener:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "default/url-shortener:http" -m tcp -j DNAT --to-destination 10.244.0.5:8080
-A KUBE-SEP-CCCCCCCCCCCCCCCC -s 10.244.0.6/32 -m comment --comment "default/url-shortener:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-CCCCCCCCCCCCCCCC -p tcp -m comment --comment "default/url-shortener:http" -m tcp -j DNAT --to-destination 10.244.0.6:8080
-A KUBE-SEP-DDDDDDDDDDDDDDDD -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT --to-destination 10.244.0.2:53
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" -m udp --dport 53 -j KUBE-SVC-DNSDNSDNSDNSDNSD
-A KUBE-SERVICES -d 10.96.120.7/32 -p tcp -m comment --comment "default/url-shortener:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-UUUUUUUUUUUUUUUU
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-DNSDNSDNSDNSDNSD -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.2:53" -j KUBE-SEP-DDDDDDDDDDDDDDDD
-A KUBE-SVC-UUUUUUUUUUUUUUUU ! -s 10.244.0.0/16 -d 10.96.120.7/32 -p tcp -m comment --comment "default/url-shortener:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-UUUUUUUUUUUUUUUU -m comment --comment "default/url-shortener:http -> 10.244.0.4:8080" -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-AAAAAAAAAAAAAAAA
-A KUBE-SVC-UUUUUUUUUUUUUUUU -m comment --comment "default/url-shortener:http -> 10.244.0.5:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-BBBBBBBBBBBBBBBB
-A KUBE-SVC-UUUUUUUUUUUUUUUU -m comment --comment "default/url-shortener:http -> 10.244.0.6:8080" -j KUBE-SEP-CCCCCCCCCCCCCCCC
COMMIT
"""


def ruleset():
    from k8slab.netfilter.parser import parse
    return parse(NODE_DUMP, source="course-sample")


def port_forward_path() -> Path:
    return Path(Way.PORT_FORWARD, [
        Hop(1, C.KUBECTL, "your machine", "listens on 127.0.0.1:18080", None, "172.18.0.2:6443", "control"),
        Hop(2, C.API_SERVER, "kind-control-plane", "pods/portforward", None, "172.18.0.2:10250", "control"),
        Hop(3, C.KUBELET, "kind-control-plane", "asks the runtime to forward", None, None, "control"),
        Hop(4, C.RUNTIME, "pod url-shortener-0", "dials localhost:8080 in the pod", None, "127.0.0.1:8080", "control"),
        Hop(5, C.APP, "pod url-shortener-0", "sees client 127.0.0.1", "127.0.0.1", "127.0.0.1:8080"),
    ], "127.0.0.1", "10.244.0.4:8080", predicted=True, backend="test")


def ingress_path() -> Path:
    return Path(Way.INGRESS, [
        Hop(1, C.CLIENT, "your machine", "GET http://localhost:8080/", None, "127.0.0.1:8080"),
        Hop(2, C.DOCKER_PROXY, "your machine", "relays to the node", None, "172.18.0.2:80"),
        Hop(3, C.CNI_PORTMAP, "kind-control-plane", "CNI-DN-… DNAT", "172.18.0.1", "10.244.0.7:80"),
        Hop(4, C.INGRESS_CONTROLLER, "pod ingress-nginx-controller", "route / to url-shortener", None, "10.244.0.4:8080"),
        Hop(5, C.APP, "pod url-shortener-0", "answers", "10.244.0.7", "10.244.0.4:8080"),
    ], "127.0.0.1", "10.244.0.4:8080", predicted=False, backend="test")
