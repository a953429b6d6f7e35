"""Pure helpers of the netns backend: names, the text it feeds to iptables-restore, and parsers for
what ``conntrack`` and ``ss`` print. No commands run here."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ..base import ConntrackEntry, Socket

BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})
CNI_PREFIX = "CNI-"


# --- names ---

def short_id(lab: str) -> str:
    """Six hex characters from the lab's name, for interface names (Linux allows 15 characters)."""
    return hashlib.sha256(lab.encode()).hexdigest()[:6]


def node_veth_ifname(lab: str, index: int) -> str:
    """The host-namespace end of node ``index``'s veth (the node's end is renamed eth0)."""
    return f"kv{short_id(lab)}n{index}"


def node_netns(lab: str, node: str) -> str:
    """``<lab>-<node>``; a node named like kind names them (``<lab>-control-plane``) keeps its name."""
    return node if node.startswith(f"{lab}-") else f"{lab}-{node}"


def host_netns(lab: str) -> str:
    return f"{lab}-host"


def pod_netns(lab: str, pod: str, namespace: str = "default") -> str:
    """``<lab>-pod-<pod>``; pods outside ``default`` get their namespace in the name too."""
    if namespace in ("default", ""):
        return f"{lab}-pod-{pod}"
    return f"{lab}-pod-{namespace}-{pod}"


# --- iptables-restore text ---

@dataclass
class RestoreTable:
    name: str
    chains: dict[str, str] = field(default_factory=dict)       # chain -> policy ("-" for user chains)
    rules: list[tuple[str, str]] = field(default_factory=list)  # (chain, the rest of the -A line)


def parse_restore(text: str) -> list[RestoreTable]:
    """Split iptables-restore/-save text into tables, chain declarations and ``-A`` lines (order kept)."""
    tables: list[RestoreTable] = []
    cur: RestoreTable | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            cur = RestoreTable(line[1:])
            tables.append(cur)
        elif line == "COMMIT":
            cur = None
        elif cur is None:
            continue
        elif line.startswith(":"):
            parts = line[1:].split()
            cur.chains[parts[0]] = parts[1] if len(parts) > 1 else "-"
        elif line.startswith("-A "):
            # an optional counter prefix "[p:b] -A ..." is not produced by renderers; keep it simple
            _, chain, rest = line.split(" ", 2) if line.count(" ") >= 2 else (line, line[3:], "")
            cur.rules.append((chain, rest))
    return tables


_JUMP = re.compile(r"(?:^|\s)-[jg]\s+(\S+)")


def jump_target(rule_rest: str) -> str | None:
    m = _JUMP.search(rule_rest)
    return m.group(1) if m else None


def node_restore(rendered: str, *, live_chains: dict[str, set[str]] | None = None,
                 first_load: bool = False, skip_prefixes: tuple[str, ...] = (CNI_PREFIX,)) -> str:
    """The text the backend gives ``iptables-restore --noflush`` in a node namespace.

    ``rendered`` is the model's whole-node rules. Chains named ``CNI-*`` and jumps to them are left
    out: the real portmap plugin owns those. Declaring a user chain flushes just that chain (how
    kube-proxy resyncs); built-in chains are never flushed by ``--noflush``, so their jump rules are
    written only on the ``first_load`` (into empty chains, in the rendered order). Chains that are
    live (``live_chains[table]``) but no longer rendered are declared and deleted with ``-X``, as
    kube-proxy deletes a stale service's chains.
    """
    live_chains = live_chains or {}
    out: list[str] = []
    tables = {t.name: t for t in parse_restore(rendered)}
    def skip(chain: str) -> bool:
        return chain.startswith(skip_prefixes)

    for name in list(tables) + [t for t in live_chains if t not in tables]:
        table = tables.get(name, RestoreTable(name))
        declared = [c for c in table.chains if not skip(c)]
        stale = _stale(live_chains.get(name, set()), set(table.chains), skip_prefixes)
        rules = []
        for chain, rest in table.rules:
            target = jump_target(rest) or ""
            if skip(chain) or target.startswith(skip_prefixes):
                continue
            if chain in BUILTIN_CHAINS and not first_load:
                continue
            rules.append(f"-A {chain} {rest}".rstrip())
        if not declared and not rules and not stale:
            continue
        out.append(f"*{name}")
        for chain in declared:
            policy = table.chains[chain]
            if chain in BUILTIN_CHAINS and not first_load:
                continue
            out.append(f":{chain} {policy if chain in BUILTIN_CHAINS else '-'} [0:0]")
        out.extend(f":{chain} - [0:0]" for chain in stale)
        out.extend(rules)
        out.extend(f"-X {chain}" for chain in stale)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _stale(live: set[str], rendered: set[str], skip_prefixes: tuple[str, ...]) -> list[str]:
    return sorted(c for c in live - rendered
                  if c not in BUILTIN_CHAINS and not c.startswith(skip_prefixes))


def chains_by_table(save_text: str) -> dict[str, set[str]]:
    """``{table: {chain, ...}}`` from ``iptables-save`` output."""
    return {t.name: set(t.chains) for t in parse_restore(save_text)}


# --- parsers ---

_KV = re.compile(r"(\w+)=(\S+)")
_STATES = {"ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
           "CLOSE", "NONE", "LISTEN"}


def parse_conntrack(text: str) -> list[ConntrackEntry]:
    """``conntrack -L`` lines (default or ``-o extended`` output) as entries. Lines without ports
    (ICMP) are skipped: the course follows TCP and UDP."""
    out: list[ConntrackEntry] = []
    for line in text.splitlines():
        tokens = line.split()
        proto = next((t for t in tokens if t in ("tcp", "udp", "sctp")), None)
        if proto is None:
            continue
        state = next((t for t in tokens if t in _STATES), "")
        pairs = _KV.findall(line)
        orig: dict[str, str] = {}
        reply: dict[str, str] = {}
        for key, value in pairs:
            if key not in ("src", "dst", "sport", "dport"):
                continue
            (reply if key in orig else orig)[key] = value
        if not all(k in orig and k in reply for k in ("src", "dst", "sport", "dport")):
            continue
        out.append(ConntrackEntry(proto=proto, src=orig["src"], dst=orig["dst"],
                                  sport=int(orig["sport"]), dport=int(orig["dport"]),
                                  reply_src=reply["src"], reply_dst=reply["dst"],
                                  reply_sport=int(reply["sport"]), reply_dport=int(reply["dport"]),
                                  state=state))
    return out


_USERS = re.compile(r'users:\(\("([^"]+)"')


def parse_ss(text: str, proto: str = "tcp") -> list[Socket]:
    """``ss -ltnpH`` lines as sockets (local ``ip:port``, first process name)."""
    out = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 4:
            continue
        local = cols[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        if host == "*":
            host = "0.0.0.0"
        m = _USERS.search(line)
        local = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        out.append(Socket(proto=proto, local=local, process=m.group(1) if m else ""))
    return out
