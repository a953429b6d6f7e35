"""A kind node in kube-proxy's nftables mode: what ``nft list ruleset`` shows there.

On such a node kube-proxy writes only its own table (``table ip kube-proxy``); everyone else still
writes iptables (kindnet's KIND-MASQ-AGENT, the CNI portmap plugin's CNI-HOSTPORT-*, Docker's
embedded-DNS chains, kubelet's canaries and KUBE-FIREWALL), which iptables-nft keeps in the tables
``ip mangle``/``ip filter``/``ip nat`` (see /work/shared/notes/kube-proxy-nftables.md, "On a kind
node in nftables mode"). So the whole ruleset is those iptables-nft tables, then kube-proxy's table
(created after them: kube-proxy starts after the node's entrypoint and kubelet), and a packet goes
through the base chains of both, by priority.

- :func:`without_kube_proxy` takes kube-proxy's chains (and the jumps to them) out of a node's
  ``iptables-save``: in nftables mode kube-proxy writes none (it removes its iptables-mode leftovers
  at start-up, ``CleanupLeftovers`` in cmd/kube-proxy).
- :func:`iptables_to_nft` writes such ``iptables-save`` text as ``nft list ruleset`` prints the tables
  iptables-nft made of it: the same matches in nft's words (``-m addrtype --dst-type LOCAL`` is
  ``fib daddr type local``, ``-j MARK --or-mark`` is ``meta mark set meta mark | ...``). The words
  are those Debian 12's iptables-nft 1.8.9 + nft 1.0.6 print after ``iptables-restore`` of the
  course's node rules (tests/test_nft_lab.py compares both rule by rule in a throwaway namespace).
- :func:`node_nft_settings` / :func:`render_node_kube_proxy` / :func:`render_node_nft`: kube-proxy's
  transaction for one node of a model cluster, and the node's whole ruleset listing.
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from ..owners import owner_of

if TYPE_CHECKING:  # pragma: no cover
    from ...model import Cluster

#: iptables-nft's base chains: (type, hook, priority as nft lists it), per table (iptables-nft's
#: nft-shared/tables: nat INPUT is priority 100, nat OUTPUT -100; mangle OUTPUT is a route chain).
BASE = {
    "mangle": {"PREROUTING": ("filter", "prerouting", "mangle"), "INPUT": ("filter", "input", "mangle"),
               "FORWARD": ("filter", "forward", "mangle"), "OUTPUT": ("route", "output", "mangle"),
               "POSTROUTING": ("filter", "postrouting", "mangle")},
    "filter": {"INPUT": ("filter", "input", "filter"), "FORWARD": ("filter", "forward", "filter"),
               "OUTPUT": ("filter", "output", "filter")},
    "nat": {"PREROUTING": ("nat", "prerouting", "dstnat"), "INPUT": ("nat", "input", "100"),
            "OUTPUT": ("nat", "output", "-100"), "POSTROUTING": ("nat", "postrouting", "srcnat")},
    "raw": {"PREROUTING": ("filter", "prerouting", "raw"), "OUTPUT": ("filter", "output", "raw")},
}
CT_STATES = {"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED"}


def _kube_proxy_chain(table: str, chain: str) -> bool:
    return owner_of(table, chain) == "kube-proxy"


def without_kube_proxy(save_text: str) -> str:
    """``iptables-save`` text without kube-proxy's chains, their rules and the rules jumping to them."""
    out, table = [], ""
    for line in save_text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif line.startswith(":"):
            if _kube_proxy_chain(table, line[1:].split()[0]):
                continue
        elif line.startswith(("-A ", "[")):
            words = line.split()
            if words[0].startswith("["):
                words = words[1:]
            if _kube_proxy_chain(table, words[1]):
                continue
            target = next((words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-j", "-g")), "")
            if target and _kube_proxy_chain(table, target):
                continue
        out.append(line)
    return "\n".join(out) + ("\n" if save_text.endswith("\n") else "")


def _addr(v: str) -> str:
    return v[:-3] if v.endswith("/32") else v


def _hexmark(v: str) -> str:
    return f"0x{int(v, 0):08x}"


def _rule_expr(words: list[str], table: str) -> tuple[str, str | None]:
    """One ``-A CHAIN ...`` rule's words (after the chain) -> (nft expression, comment)."""
    out: list[str] = []
    comment = None
    proto = None
    neg = False
    i = 0
    verdict: list[str] = []

    def val() -> str:
        nonlocal i
        i += 1
        return words[i]

    while i < len(words):
        w = words[i]
        if w == "!":
            neg = True
            i += 1
            continue
        op = "!= " if neg else ""
        if w in ("-s", "--source", "-d", "--destination"):
            sel = "saddr" if w in ("-s", "--source") else "daddr"
            out.append(f"ip {sel} {op}{_addr(val())}")
        elif w in ("-p", "--protocol"):
            proto = val()
            out.append(f"meta l4proto {op}{proto}")
        elif w in ("-i", "--in-interface", "-o", "--out-interface"):
            sel = "iifname" if w in ("-i", "--in-interface") else "oifname"
            out.append(f'{sel} {op}"{val()}"')
        elif w == "-m":
            val()
        elif w in ("--dport", "--destination-port", "--sport", "--source-port"):
            sel = "dport" if "d" in w[2:4] else "sport"
            out.append(f"{proto or 'th'} {sel} {op}{val().replace(':', '-')}")
        elif w in ("--dports", "--destination-ports", "--sports", "--source-ports"):
            sel = "dport" if "d" in w[2:4] else "sport"
            ports = val().replace(":", "-").split(",")
            out.append(f"{proto or 'th'} {sel} {op}" + (ports[0] if len(ports) == 1 else "{ " + ", ".join(ports) + " }"))
        elif w in ("--dst-type", "--src-type"):
            sel = "daddr" if w == "--dst-type" else "saddr"
            out.append(f"fib {sel} type {op}{val().lower()}")
        elif w == "--comment":
            comment = val()
        elif w in ("--ctstate", "--state"):
            items = val().upper().split(",")
            states = [s.lower() for s in items if s in CT_STATES]
            status = [s.lower() for s in items if s not in CT_STATES]
            if states:
                out.append(f"ct state {op}{','.join(states)}")
            if status:
                out.append(f"ct status {op}{','.join(status)}")
        elif w == "--mark":
            v, _, m = val().partition("/")
            out.append(f"meta mark & {_hexmark(m)} {'!=' if neg else '=='} {_hexmark(v)}" if m
                       else f"meta mark {op}{_hexmark(v)}")
        elif w == "--mode":
            val()
        elif w == "--probability":
            n = round(float(val()) * 0x80000000)
            out.append(f"meta random & 2147483647 < {n}")
        elif w in ("-j", "-g", "--jump", "--goto"):
            t = val()
            simple = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return", "REJECT": "reject",
                      "MASQUERADE": "masquerade"}
            if t in simple:
                verdict = [simple[t]]
            elif t in ("DNAT", "SNAT", "MARK"):
                verdict = [t]
            else:
                verdict = ["goto" if w in ("-g", "--goto") else "jump", t]
        elif w in ("--to-destination", "--to-source"):
            verdict = [f"{'dnat' if w == '--to-destination' else 'snat'} to {val()}"]
        elif w == "--random-fully":
            verdict = verdict + ["fully-random"]
        elif w in ("--or-mark", "--set-xmark", "--xor-mark", "--set-mark", "--and-mark"):
            v, _, m = val().partition("/")
            v_ = int(v, 0)
            if w == "--or-mark" or (w == "--set-xmark" and m and int(m, 0) == v_):
                verdict = [f"meta mark set meta mark | {_hexmark(v)}"]
            elif w == "--xor-mark":
                verdict = [f"meta mark set meta mark ^ {_hexmark(v)}"]
            elif w == "--and-mark":
                verdict = [f"meta mark set meta mark & {_hexmark(v)}"]
            else:
                verdict = [f"meta mark set {_hexmark(v)}"]
        elif w == "--reject-with":
            val()
        else:
            out.append(f"xt match {w!r}")        # an option outside what the course's writers use
        neg = False
        i += 1
    return " ".join(out + ["counter"] + verdict), comment


def iptables_to_nft(save_text: str, counters: bool = True) -> str:
    """The ``nft list ruleset`` text of the iptables-nft tables holding ``save_text``'s rules."""
    tables: list[tuple[str, list[str], dict[str, list[str]]]] = []
    cur = None
    for line in save_text.splitlines():
        if line.startswith("*"):
            cur = (line[1:].strip(), [], {})
            tables.append(cur)
        elif line.startswith(":") and cur is not None:
            name = line[1:].split()[0]
            cur[1].append(name)
            cur[2].setdefault(name, [])
        elif cur is not None and line.startswith(("-A ", "[")):
            words = shlex.split(line)
            pk, by = 0, 0
            if words[0].startswith("["):
                pk, by = (int(x) for x in words[0][1:-1].split(":"))
                words = words[1:]
            expr, comment = _rule_expr(words[2:], cur[0])
            if counters:
                expr = expr.replace(" counter", f" counter packets {pk} bytes {by}", 1) if " counter" in expr \
                    else expr.replace("counter", f"counter packets {pk} bytes {by}", 1)
            if comment:
                expr += ' comment "' + comment.replace('"', '\\"') + '"'
            cur[2].setdefault(words[1], []).append(expr)
    lines: list[str] = []
    for name, order, chains in tables:
        lines.append(f"table ip {name} {{")
        for i, ch in enumerate(order):
            if i:
                lines.append("")
            lines.append(f"\tchain {ch} {{")
            base = BASE.get(name, {}).get(ch)
            if base:
                lines.append(f"\t\ttype {base[0]} hook {base[1]} priority {base[2]}; policy accept;")
            lines += [f"\t\t{r}" for r in chains.get(ch, [])]
            lines.append("\t}")
        lines.append("}")
    return "\n".join(lines) + ("\n" if lines else "")


# --- a model cluster's node ------------------------------------------------------------------------

def node_nft_settings(cluster: "Cluster", node):
    """kube-proxy's nftables-mode settings on a kind node: as in iptables mode, except NodePorts are
    served on the node's primary IP only (the nftables proxier's default ``--nodeport-addresses
    primary``, KEP-3866) and it knows the service CIDR (``serviceCIDRs``)."""
    from ...model.kubeproxy_nft import NftProxierSettings
    from ...model.settings import ProxierSettings
    n = cluster.node(node) if isinstance(node, str) or node is None else node
    base = ProxierSettings.for_kind_node(cluster, n).replace(node_port_addresses=(f"{n.ip}/32",))
    return NftProxierSettings(base=base, service_cidrs=(cluster.service_subnet,))


def render_node_kube_proxy(cluster: "Cluster", node=None, form: str = "transaction") -> str:
    """kube-proxy's nftables rules on ``node``: its ``nft -f`` transaction or their listing."""
    from ...model.kubeproxy_nft import render_kube_proxy_nft
    n = cluster.node(node) if isinstance(node, str) or node is None else node
    return render_kube_proxy_nft(cluster.services, cluster.endpoint_slices(), node_nft_settings(cluster, n),
                                 form=form)


def node_iptables_save(cluster: "Cluster", node=None, form: str = "save") -> str:
    """The node's iptables rules in nftables mode (everyone's but kube-proxy's)."""
    from ...model import render_node_dump
    n = cluster.node(node) if isinstance(node, str) or node is None else node
    return without_kube_proxy(render_node_dump(cluster, n, form=form))


def render_node_nft(cluster: "Cluster", node=None, iptables_save: str | None = None) -> str:
    """The node's whole ``nft list ruleset``: the iptables-nft tables, then kube-proxy's table."""
    text = iptables_save if iptables_save is not None else node_iptables_save(cluster, node)
    return iptables_to_nft(text) + render_node_kube_proxy(cluster, node, form="ruleset")
