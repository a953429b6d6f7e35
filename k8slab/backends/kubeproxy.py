"""kube-proxy out of the data path: what stopping it, flushing its rules and bringing it back mean,
as pure functions the three backends share (no command runs here).

Sources (upstream, read for this module):

* kube-proxy on kind is the DaemonSet ``kube-system/kube-proxy`` (kubeadm's addon; its pods carry
  ``k8s-app=kube-proxy``). Deleting its pod alone gets it recreated by the DaemonSet controller, so
  the way to keep it off every node is a pod-template ``nodeSelector`` no node matches
  (:data:`STOP_PATCH`); undoing it (``null`` deletes the key in a strategic-merge patch) brings it back.
* Stopping the process leaves the kernel's rules as they are: Services keep working, nothing updates
  them any more (endpoint changes are not programmed).
* ``kube-proxy --cleanup`` runs ``CleanupLeftovers`` (kubernetes/kubernetes
  ``pkg/proxy/iptables/proxier.go``): for every entry of ``iptablesJumpChains`` it deletes the jump
  ``-m comment --comment <comment> -j <chain>`` (extra args first) from the built-in chain with
  ``iptables -D`` (one rule each); then, in one ``iptables-restore --noflush`` per table, it flushes
  and deletes (``:CHAIN - [0:0]`` then ``-X CHAIN``) in nat ``KUBE-SERVICES``, ``KUBE-NODEPORTS``,
  ``KUBE-POSTROUTING`` and every service/endpoint chain (``KUBE-SVC-``, ``KUBE-SVL-``, ``KUBE-SEP-``,
  ``KUBE-FW-``, ``KUBE-EXT-``), and in filter ``KUBE-SERVICES``, ``KUBE-EXTERNAL-SERVICES``,
  ``KUBE-FORWARD``, ``KUBE-NODEPORTS``. It leaves ``KUBE-MARK-MASQ``, ``KUBE-PROXY-FIREWALL`` (now
  unreferenced), the canaries and kubelet's ``KUBE-FIREWALL``. In nftables mode (``pkg/proxy/nftables/
  proxier.go`` ``CleanupLeftovers``) it deletes the whole ``kube-proxy`` table (:data:`NFT_CLEANUP`).
* On start, ``syncProxyRules`` ensures each jump with ``iptables -C``/``-I`` (``EnsureRule(Prepend)``),
  in list order, so the last of the list ends up first in its built-in chain; then the chains are
  restored.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# iptablesJumpChains (pkg/proxy/iptables/proxier.go): the same list the renderer and the tracer use
from ..netfilter.iptables.names import JUMP_CHAINS

NAMESPACE = "kube-system"
DAEMONSET = "kube-proxy"
SELECTOR = "k8s-app=kube-proxy"                 # kubeadm's kube-proxy DaemonSet pod label
POD_PREFIX = "kube-proxy-"
# A label no node has: the DaemonSet then wants no pod anywhere.
OFF_LABEL = "k8slab.io/no-kube-proxy"
STOP_PATCH = '{"spec":{"template":{"spec":{"nodeSelector":{"%s":"true"}}}}}' % OFF_LABEL
START_PATCH = '{"spec":{"template":{"spec":{"nodeSelector":{"%s":null}}}}}' % OFF_LABEL
NFT_CLEANUP = ("nft", "delete", "table", "ip", "kube-proxy")

CLEANUP_CHAINS = {"nat": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING"),
                  "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS")}
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")
BUILTIN = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")

STOPPED_WHY = ("kube-proxy is still running: it would write its rules back at its next sync. "
               "Call lab.stop_kube_proxy() first")


def jump_args(table: str, chain: str, builtin: str) -> list[str]:
    """The rule spec kube-proxy's ``DeleteRule``/``EnsureRule`` use for one jump (extra args first)."""
    for t, dst, src, comment, extra in JUMP_CHAINS:
        if (t, dst, src) == (table, chain, builtin):
            return [*extra, "-m", "comment", "--comment", comment, "-j", dst]
    raise KeyError((table, chain, builtin))


def ensure_jump_argvs(table: str, chain: str, builtin: str) -> tuple[list[str], list[str]]:
    """``iptables -C`` (is it there?) and ``iptables -I`` (prepend it) argv for one jump."""
    spec = jump_args(table, chain, builtin)
    return (["iptables", "-w", "-t", table, "-C", builtin, *spec],
            ["iptables", "-w", "-t", table, "-I", builtin, *spec])


# ---------------------------------------------------------------------------------------------
# iptables-save text, minimally: tables -> chains (declared, in order) and rules (chain, tokens)

@dataclass
class _Table:
    name: str
    decl: dict[str, str] = field(default_factory=dict)          # chain -> the whole ":..." line
    rules: list[tuple[str, str]] = field(default_factory=list)  # (chain, the whole "-A ..." line)


def _tables(text: str) -> tuple[list[str], list[_Table]]:
    head: list[str] = []
    tables: list[_Table] = []
    cur: _Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            cur = _Table(line[1:])
            tables.append(cur)
        elif cur is None or line == "COMMIT" or not line:
            if cur is None and line:
                head.append(raw)
            if line == "COMMIT":
                cur = None
        elif line.startswith(":"):
            cur.decl[line[1:].split()[0]] = raw
        elif _COUNTERS.sub("", line).startswith("-A "):
            words = _COUNTERS.sub("", line).split(None, 2)
            cur.rules.append((words[1], raw))
    return head, tables


def _spec(rule_line: str) -> list[str]:
    """The tokens after ``-A CHAIN`` of one saved rule line."""
    words = shlex.split(_COUNTERS.sub("", rule_line.strip()))
    return words[2:]


def _text(head: list[str], tables: list[_Table]) -> str:
    out = list(head)
    for t in tables:
        out.append(f"*{t.name}")
        out.extend(t.decl.values())
        out.extend(line for _, line in t.rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def _cleanup_chains(table: str, chains) -> list[str]:
    fixed = [c for c in CLEANUP_CHAINS.get(table, ()) if c in chains]
    hunted = sorted(c for c in chains if table == "nat" and c.startswith(SERVICE_CHAIN_PREFIXES))
    return fixed + hunted


@dataclass
class CleanupPlan:
    """What ``CleanupLeftovers`` does to a node holding some rules."""
    deletes: list[tuple[str, str, list[str]]]     # (table, built-in chain, rule spec) for iptables -D
    restore: dict[str, str]                       # table -> iptables-restore --noflush text

    def delete_argvs(self) -> list[list[str]]:
        return [["iptables", "-w", "-t", t, "-D", chain, *spec] for t, chain, spec in self.deletes]


def cleanup_plan(save_text: str) -> CleanupPlan:
    """The jumps present (each deleted once, as ``iptables -D`` deletes the first match) and the
    restore text that flushes and deletes kube-proxy's chains, for the rules in ``save_text``."""
    _, tables = _tables(save_text)
    by_name = {t.name: t for t in tables}
    deletes = []
    for table, chain, builtin, _c, _e in JUMP_CHAINS:
        t = by_name.get(table)
        want = jump_args(table, chain, builtin)
        if t is not None and any(c == builtin and _spec(line) == want for c, line in t.rules):
            deletes.append((table, builtin, want))
    restore = {}
    for table in ("nat", "filter"):
        t = by_name.get(table)
        chains = _cleanup_chains(table, t.decl if t else {})
        if chains:
            restore[table] = "\n".join([f"*{table}", *(f":{c} - [0:0]" for c in chains),
                                        *(f"-X {c}" for c in chains), "COMMIT"]) + "\n"
    return CleanupPlan(deletes, restore)


def apply_cleanup(save_text: str) -> str:
    """``save_text`` as it would read after ``CleanupLeftovers`` (for a model: the sim)."""
    head, tables = _tables(save_text)
    plan = cleanup_plan(save_text)
    for t in tables:
        for table, builtin, spec in plan.deletes:
            if table != t.name:
                continue
            i = next(i for i, (c, line) in enumerate(t.rules) if c == builtin and _spec(line) == spec)
            del t.rules[i]
        gone = set(_cleanup_chains(t.name, t.decl))
        t.decl = {c: line for c, line in t.decl.items() if c not in gone}
        t.rules = [(c, line) for c, line in t.rules if c not in gone]
    return _text(head, tables)


def _kube_proxy_chain(table: str, chain: str) -> bool:
    from ..netfilter.owners import owner_of
    return owner_of(table, chain) == "kube-proxy"


def freeze(fresh: str, frozen: str) -> str:
    """``fresh`` with kube-proxy's chains (declarations and rules) as they were in ``frozen``: the
    node's rules while kube-proxy is stopped (everyone else still writes theirs; nobody writes its)."""
    head, tables = _tables(fresh)
    _, old = _tables(frozen)
    old_by = {t.name: t for t in old}
    for t in tables:
        o = old_by.get(t.name, _Table(t.name))
        decl = {c: l for c, l in t.decl.items() if not _kube_proxy_chain(t.name, c)}
        decl.update({c: l for c, l in o.decl.items() if _kube_proxy_chain(t.name, c)})
        builtins = [c for c in decl if c in BUILTIN]
        t.decl = {c: decl[c] for c in builtins + sorted(c for c in decl if c not in BUILTIN)}
        rules = [(c, l) for c, l in t.rules if not _kube_proxy_chain(t.name, c)]
        rules += [(c, l) for c, l in o.rules if _kube_proxy_chain(t.name, c)]
        order = {c: i for i, c in enumerate(t.decl)}
        t.rules = sorted(rules, key=lambda cl: order.get(cl[0], len(order)))   # stable: chain order kept
    return _text(head, tables)


def rule_counts(save_text: str) -> dict:
    """How much of kube-proxy is in a node's rules: its chains' rules, the jumps into them from the
    built-in chains, its service/endpoint chains, and whether nat ``KUBE-SERVICES`` exists."""
    _, tables = _tables(save_text)
    rules = jumps = svc = 0
    services = False
    for t in tables:
        for c in t.decl:
            if t.name == "nat" and c.startswith(SERVICE_CHAIN_PREFIXES):
                svc += 1
            if t.name == "nat" and c == "KUBE-SERVICES":
                services = True
        for c, line in t.rules:
            if _kube_proxy_chain(t.name, c):
                rules += 1
            elif c in BUILTIN:
                spec = _spec(line)
                target = spec[spec.index("-j") + 1] if "-j" in spec[:-1] else ""
                if target and _kube_proxy_chain(t.name, target):
                    jumps += 1
    return {"KUBE-SERVICES": services, "kube-proxy rules": rules, "jumps to them": jumps,
            "service chains": svc}


def service_programmed(save_text: str, service: str = "default/url-shortener") -> bool:
    """True when nat ``KUBE-SERVICES`` holds a rule for ``service`` (its comment names it)."""
    _, tables = _tables(save_text)
    nat = next((t for t in tables if t.name == "nat"), None)
    return nat is not None and any(c == "KUBE-SERVICES" and f"{service}:" in line for c, line in nat.rules)


def status_rows(nodes, pods: list[dict], dumps: dict[str, str], state: str,
                nft: dict[str, bool] | None = None) -> list[dict]:
    """One row per node for ``Lab.kube_proxy_status()``: the kube-proxy pod there (from the API's
    pods), :func:`rule_counts` of the node's iptables rules and, in nftables mode (``nft``: node ->
    the table is there), whether its nft table ``ip kube-proxy`` exists (None in iptables mode)."""
    rows = []
    for n in nodes:
        here = [p for p in pods if (p.get("metadata") or {}).get("namespace") == NAMESPACE
                and (p.get("metadata") or {}).get("name", "").startswith(POD_PREFIX)
                and (p.get("spec") or {}).get("nodeName") == n.name]
        name = here[0]["metadata"]["name"] if here else ""
        rows.append({"node": n.name, "kube-proxy pod": name or "(none)", "pod present": bool(here),
                     "state": state, **rule_counts(dumps.get(n.name, "")),
                     "nft table": None if nft is None else bool(nft.get(n.name))})
    return rows


def without_kube_proxy_pods(pods: list[dict]) -> list[dict]:
    """The API's pods once the DaemonSet's pods are gone."""
    return [p for p in pods if not ((p.get("metadata") or {}).get("namespace") == NAMESPACE
                                    and (p.get("metadata") or {}).get("name", "").startswith(POD_PREFIX))]
