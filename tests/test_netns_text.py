"""Pure parts of the netns backend: names, the restore text, the conntrack/ss parsers, the conflist."""
from __future__ import annotations

import json

from k8slab.backends import cni
from k8slab.backends.netns import text as tx

RENDERED = """\
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-AAAA - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-DN-0123456789abcdef01234 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-AAAA
-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 80 -j CNI-DN-0123456789abcdef01234
COMMIT
*filter
:INPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -j KUBE-FIREWALL
COMMIT
"""


def test_names_are_short_and_carry_the_lab():
    assert len(tx.node_veth_ifname("a-very-long-lab-name-indeed", 9)) <= 15
    assert tx.node_veth_ifname("lab1", 0) != tx.node_veth_ifname("lab2", 0)
    assert tx.node_netns("k8slab", "k8slab-control-plane") == "k8slab-control-plane"
    assert tx.node_netns("k8slab", "kind-worker") == "k8slab-kind-worker"
    assert tx.pod_netns("k8slab", "web-1") == "k8slab-pod-web-1"
    assert tx.pod_netns("k8slab", "coredns-1", "kube-system") == "k8slab-pod-kube-system-coredns-1"


def test_first_load_writes_builtin_jumps_but_never_cni_chains():
    out = tx.node_restore(RENDERED, first_load=True)
    assert "CNI-" not in out
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in out
    assert ":KUBE-SVC-AAAA - [0:0]" in out and "-A INPUT -j KUBE-FIREWALL" in out
    assert out.count("COMMIT") == 2


def test_resync_leaves_builtin_chains_alone_and_deletes_stale_chains():
    live = {"nat": {"PREROUTING", "KUBE-SERVICES", "KUBE-SVC-AAAA", "KUBE-SVC-GONE", "CNI-DN-x"},
            "filter": {"INPUT", "KUBE-FIREWALL"}}
    out = tx.node_restore(RENDERED, live_chains=live, first_load=False)
    lines = out.splitlines()
    assert not any(line.startswith(("-A PREROUTING", "-A OUTPUT", "-A INPUT", ":PREROUTING")) for line in lines)
    assert ":KUBE-SVC-GONE - [0:0]" in lines and lines.index("-X KUBE-SVC-GONE") > lines.index(
        "-A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-AAAA")
    assert "CNI-DN-x" not in out  # portmap's chains are the plugin's business


def test_parse_restore_keeps_rule_order():
    tables = tx.parse_restore(RENDERED)
    assert [t.name for t in tables] == ["nat", "filter"]
    assert tables[0].rules[0][0] == "PREROUTING" and tables[0].chains["KUBE-SVC-AAAA"] == "-"
    assert tx.jump_target(tables[0].rules[-1][1]) == "CNI-DN-0123456789abcdef01234"


def test_parse_conntrack_default_and_extended_output():
    text = (
        "tcp      6 117 TIME_WAIT src=10.244.0.7 dst=10.96.12.34 sport=40522 dport=80 "
        "src=10.244.0.5 dst=10.244.0.7 sport=8080 dport=40522 [ASSURED] mark=0 use=1\n"
        "ipv4     2 tcp      6 431999 ESTABLISHED src=172.18.0.1 dst=172.18.0.2 sport=5000 dport=31234 "
        "src=10.244.0.6 dst=172.18.0.2 sport=8080 dport=61000 [ASSURED] mark=0 use=1\n"
        "udp      17 29 src=10.244.0.2 dst=10.96.0.10 sport=1 dport=53 [UNREPLIED] src=10.96.0.10 "
        "dst=10.244.0.2 sport=53 dport=1 mark=0 use=1\n"
        "icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=1\n"
    )
    entries = tx.parse_conntrack(text)
    assert len(entries) == 3
    first, second, third = entries
    assert first.state == "TIME_WAIT" and first.dnat and not first.snat
    assert first.reply_src == "10.244.0.5" and first.reply_sport == 8080
    assert second.dnat and second.snat and second.reply_dport == 61000
    assert third.proto == "udp" and not third.dnat


def test_parse_ss():
    text = ('LISTEN 0      511          0.0.0.0:80        0.0.0.0:*    users:(("nginx",pid=10,fd=6),'
            '("nginx",pid=9,fd=6))\n'
            "LISTEN 0      5          127.0.0.1:8080      0.0.0.0:*\n"
            'LISTEN 0      4096            [::]:22           [::]:*    users:(("sshd",pid=1,fd=3))\n')
    socks = tx.parse_ss(text)
    assert [s.local for s in socks] == ["0.0.0.0:80", "127.0.0.1:8080", "[::]:22"]
    assert socks[0].process == "nginx" and socks[1].process == ""


def test_kindnet_conflist_and_plugin_config():
    conf = cni.kindnet_conflist("10.244.0.0/24", "/run/k8slab/x/ipam")
    assert conf["name"] == "kindnet" and conf["cniVersion"] == "0.3.1"
    assert [p["type"] for p in conf["plugins"]] == ["ptp", "portmap"]
    ptp = conf["plugins"][0]
    assert ptp["ipMasq"] is False and ptp["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert ptp["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}]
    att = cni.Attachment(cni.container_id("lab", "default", "web"), "/run/netns/x",
                         port_mappings=(cni.PortMapping(80, 8080),))
    assert len(att.container_id) == 64 and att.container_id == cni.container_id("lab", "default", "web")
    pm = cni.plugin_config(conf, conf["plugins"][1], att, {"cniVersion": "0.3.1", "ips": []})
    assert pm["runtimeConfig"] == {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "tcp"}]}
    assert pm["name"] == "kindnet" and "prevResult" in pm
    assert "runtimeConfig" not in cni.plugin_config(conf, ptp, att, None)
    env = cni.plugin_env("DEL", att)
    assert env["CNI_COMMAND"] == "DEL" and env["CNI_NETNS"] == "/run/netns/x" and env["CNI_IFNAME"] == "eth0"
    json.dumps(pm)  # what goes on stdin is plain JSON
    assert cni.first_ipv4({"ips": [{"address": "fd00::2/64"}, {"address": "10.244.0.3/24"}]}) == "10.244.0.3"
