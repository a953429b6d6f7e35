"""Follow the first packet of a new connection through an nftables ruleset, as the kernel would.

Same question and answer as the iptables tracer (:mod:`k8slab.netfilter.tracer`): a
:class:`~k8slab.netfilter.tracer.Packet` and the node's local IPs in, a
:class:`~k8slab.netfilter.tracer.Trace` of :class:`Outcome` rows with :class:`TraceHop` steps out, so
paths, plots and exercises read either.

The kernel's order:

- a packet from a local address starts at the output hook (then the routing decision, postrouting,
  and through ``lo`` to prerouting/input when the destination is local); any other starts at
  prerouting, then input (destination local after DNAT) or forward and postrouting;
- at each hook every base chain of every table runs, by priority; among equal priorities (kube-proxy's
  ``nat-prerouting`` and iptables-nft's ``nat PREROUTING``, both -100) the one registered last runs
  first (``nf_hook_entries_grow`` in net/netfilter/core.c inserts a new hook before the ones of the
  same priority; tests/test_nft_trace.py checks it with conntrack). The tracer takes the listing
  order (the order the tables and chains were created) as the registration order; a chain deleted
  and added again since (kube-proxy re-creates its base chains on its first sync) registers anew,
  which a listing does not show, so the trace warns where this order decides;
- an ``accept`` ends one base chain only, the next runs; ``drop``/``reject`` end the packet;
- nat chains of a hook run only until one sets up a mapping (``nf_nat_inet_fn``): after a DNAT at
  prerouting (or output) the next nat chain of that hook is skipped, likewise after masquerade/SNAT
  at postrouting; on the way back in through ``lo`` the connection is already mapped, so no nat chain
  runs there.

Expressions: ``ip saddr/daddr [!=] ADDR|CIDR|{ set }|@set``, ``meta l4proto``, ``ip protocol``,
``th/tcp/udp/sctp dport/sport``, concatenations (``ip daddr . meta l4proto . th dport``) looked up in
named sets and maps (``vmap @service-ips``) or anonymous ones, ``numgen random mod N vmap { ... }``
(each element 1/N, exactly), ``meta random & M < N`` (iptables-nft's ``statistic``), ``fib saddr|daddr
type [!=] local``, ``ct state``, ``ct status dnat``, ``meta mark`` set/match (``| & ^``), ``jump``,
``goto``, ``return``, ``accept``, ``drop``, ``reject``, ``dnat to``, ``snat to``, ``masquerade``,
``counter``, ``update @set``. A dynamic set (session affinity) is empty for a first connection. An
expression outside this list makes the rule not match and is listed in ``Outcome.unknown``.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Iterable

from ...errors import TraceError
from ..tracer.merge import merge as merge_paths
from ..tracer.outcomes import Outcome, Trace, TraceHop
from ..tracer.packet import NodeContext, Packet, check_packet, node_context
from .listing import canonical
from .model import Chain, NftRuleset, Rule, Set

PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}
MAX_DEPTH = 64


@dataclass
class _State:
    src: str
    dst: str
    sport: int
    dport: int
    proto: str
    mark: int
    prob: Fraction = Fraction(1)
    dnat: str | None = None
    masq: bool = False
    snat_source: str | None = None
    mapped: set = field(default_factory=set)       # "dst"/"src": a nat mapping set up
    hops: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    hook: str = ""
    in_lo: bool = False

    def copy(self) -> "_State":
        return replace(self, mapped=set(self.mapped), hops=list(self.hops), notes=list(self.notes))


# --- tokens and expressions -----------------------------------------------------------------------

def _tokens(expr: str) -> list[str]:
    out, i, s = [], 0, expr
    while i < len(s):
        if s[i].isspace():
            i += 1
            continue
        if s[i] == "{":
            depth, j = 0, i
            while j < len(s):
                depth += {"{": 1, "}": -1}.get(s[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(s[i:j])
            i = j
            continue
        if s[i] == '"':
            j = s.index('"', i + 1) + 1
            out.append(s[i:j])
            i = j
            continue
        j = i
        while j < len(s) and not s[j].isspace():
            j += 1
        out.append(s[i:j])
        i = j
    return out


_SELECTORS = {
    ("ip", "saddr"), ("ip", "daddr"), ("ip", "protocol"), ("ip6", "saddr"), ("ip6", "daddr"),
    ("meta", "l4proto"), ("meta", "mark"), ("meta", "iifname"), ("meta", "oifname"), ("meta", "nfproto"),
    ("meta", "random"), ("th", "dport"), ("th", "sport"), ("tcp", "dport"), ("tcp", "sport"),
    ("udp", "dport"), ("udp", "sport"), ("sctp", "dport"), ("sctp", "sport"), ("ct", "state"),
    ("ct", "status"), ("ct", "mark"),
}


class _Unknown(Exception):
    pass


def _ip_in(value: str, item: str) -> bool:
    item = item.strip()
    try:
        ip = ipaddress.ip_address(value)
        if "-" in item and "/" not in item:
            lo, hi = (ipaddress.ip_address(x.strip()) for x in item.split("-"))
            return lo <= ip <= hi
        return ip in ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False


def _field_match(sel: str, value, item: str) -> bool:
    """One field of a key against one element word."""
    item = item.strip()
    if sel in ("ip saddr", "ip daddr", "ip6 saddr", "ip6 daddr"):
        return _ip_in(value, item)
    if sel in ("meta l4proto", "ip protocol"):
        return item == value or (item.isdigit() and int(item) == PROTO_NUM.get(value))
    if sel.endswith(("dport", "sport")) or sel == "numgen":
        if "-" in item:
            lo, hi = item.split("-")
            return int(lo) <= int(value) <= int(hi)
        return item.isdigit() and int(item) == int(value)
    if sel in ("meta mark", "ct mark"):
        return int(item, 0) == value
    if sel == "ct state":
        return value in [x.strip() for x in item.split(",")]
    if sel == "ct status":
        return any(x.strip() in value for x in item.split(","))
    if sel in ("meta iifname", "meta oifname"):
        return item.strip('"') == value
    return False


def _key_match(sels: list[str], values: list, key: str) -> bool:
    parts = [p.strip() for p in key.split(" . ")]
    return len(parts) == len(sels) and all(_field_match(s, v, p) for s, v, p in zip(sels, values, parts))


def _anon_items(tok: str) -> list[str]:
    body = tok.strip()[1:-1]
    return [x.strip() for x in body.split(",") if x.strip()]


_NO_INDEX = object()


def _rule_tokens(rule: Rule) -> list[str]:
    """A rule's tokens, kept on the rule (a ruleset is traced many times; its rules do not change)."""
    cached = rule.__dict__.get("_toks")
    if cached is None or cached[0] != rule.expr:
        cached = (rule.expr, _tokens(canonical(rule.expr)))
        rule.__dict__["_toks"] = cached
    return cached[1]


def _exact_lookup(s: Set, values: list):
    """The element of ``s`` whose key is exactly ``values`` (its value, or "" for a set element;
    None when there is none), from a dict kept on the set: what the kernel's hash lookup does. For a
    set with intervals/prefixes (``flags interval``, CIDRs, ranges) or values it cannot spell,
    :data:`_NO_INDEX`: the caller scans the elements."""
    idx = s.__dict__.get("_exact")
    if idx is None or idx[0] != len(s.elements):
        table: dict | None = {}
        for e in s.elements:
            if "/" in e.key or "-" in e.key or "{" in e.key:
                table = None
                break
            table.setdefault(tuple(p.strip() for p in e.key.split(" . ")), e.value or "")
        idx = (len(s.elements), table)
        s.__dict__["_exact"] = idx
    if idx[1] is None or any(v is None or isinstance(v, (set, frozenset)) for v in values):
        return _NO_INDEX
    key = tuple(str(v) for v in values)
    return idx[1].get(key)


class NftTracer:
    def __init__(self, rs: NftRuleset, packet: Packet, node: NodeContext):
        self.rs = rs
        self.pkt = packet
        self.node = node
        self.local = {ipaddress.ip_address(x) for x in node.local_ips}
        self.done: list[Outcome] = []

    # -- facts ---------------------------------------------------------------------------------
    def is_local(self, ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return a.is_loopback or a in self.local

    def value(self, st: _State, sel: str):
        if sel in ("ip saddr", "ip6 saddr"):
            return st.src
        if sel in ("ip daddr", "ip6 daddr"):
            return st.dst
        if sel in ("meta l4proto", "ip protocol"):
            return st.proto
        if sel.endswith("dport"):
            if sel.split()[0] in PROTO_NUM and sel.split()[0] != st.proto:
                return None
            return st.dport
        if sel.endswith("sport"):
            if sel.split()[0] in PROTO_NUM and sel.split()[0] != st.proto:
                return None
            return st.sport
        if sel == "meta mark":
            return st.mark
        if sel == "ct state":
            return "new"
        if sel == "ct status":
            return {"dnat"} if st.dnat else set()
        if sel == "ct mark":
            return 0
        if sel == "meta iifname":
            return "lo" if st.in_lo else self.pkt.in_interface
        if sel == "meta oifname":
            return self.pkt.out_interface
        raise _Unknown(sel)

    # -- one rule ------------------------------------------------------------------------------
    def rule(self, st: _State, table, rule: Rule) -> list[tuple[_State, str, str | None]]:
        """-> [(state, effect, detail)]: effect "next" (no match, or matched and went on), "jump",
        "goto", "return", "accept", "drop", "reject". Branches (numgen, meta random) give several."""
        toks = _rule_tokens(rule)
        return self._seq(st, table, toks, 0, [])

    def _seq(self, st, table, toks, i, acts) -> list:
        while i < len(toks):
            t = toks[i]
            if t == "counter":
                i += 1
                if i + 3 < len(toks) + 1 and i < len(toks) and toks[i] == "packets":
                    i += 4
                continue
            if t in ("accept", "drop", "return", "continue"):
                return [(st, "next" if t == "continue" else t, " ".join(acts + [t]))]
            if t == "reject":
                return [(st, "reject", " ".join(toks[i:]))]
            if t in ("jump", "goto"):
                return [(st, t, toks[i + 1])]
            if t in ("dnat", "snat"):
                j = i + 1
                if toks[j] in ("ip", "ip6"):
                    j += 1
                if toks[j] != "to":
                    raise _Unknown(" ".join(toks[i:]))
                to = toks[j + 1]
                if t == "dnat":
                    ip, _, port = to.rpartition(":") if ":" in to and to.count(":") == 1 else (to, "", "")
                    st.dst = ip
                    if port:
                        st.dport = int(port)
                    st.dnat = f"{st.dst}:{st.dport}"
                    st.mapped.add("dst")
                else:
                    st.snat_source = to.split(":")[0]
                    st.src = st.snat_source
                    st.masq = True
                    st.mapped.add("src")
                return [(st, "accept", f"{t} to {to}")]
            if t == "masquerade":
                st.masq = True
                st.mapped.add("src")
                return [(st, "accept", " ".join(toks[i:]))]
            if t in ("update", "add") and i + 1 < len(toks) and toks[i + 1].startswith("@"):
                acts.append(f"{t} {toks[i + 1]}")
                i += 3
                continue
            if t in ("log", "notrack"):
                i += 1
                continue
            if t == "numgen":
                # numgen random mod N [offset O] vmap { ... }  /  numgen ... == X
                m = int(toks[i + 3])
                j = i + 4
                off = 0
                if j < len(toks) and toks[j] == "offset":
                    off, j = int(toks[j + 1]), j + 2
                if toks[j] != "vmap":
                    raise _Unknown("numgen without vmap")
                items = self._map_items(table, toks[j + 1])
                out = []
                for n in range(off, off + m):
                    hit = next((v for k, v in items if _field_match("numgen", n, k)), None)
                    b = st.copy()
                    b.prob *= Fraction(1, m)
                    out += self._verdict(b, table, hit, toks, j + 2, acts + [f"numgen {n}/{m}"])
                return out
            # a selector expression (maybe a concatenation)
            sels, j = [], i
            while True:
                if j + 1 < len(toks) and (toks[j], toks[j + 1]) in _SELECTORS:
                    sels.append(f"{toks[j]} {toks[j + 1]}")
                    j += 2
                elif toks[j] == "fib":
                    return self._fib(st, table, toks, j, acts)
                else:
                    raise _Unknown(" ".join(toks[i:]))
                if j < len(toks) and toks[j] == ".":
                    j += 1
                    continue
                break
            if sels == ["meta random"]:
                # meta random & MASK < N  (iptables-nft's statistic --mode random)
                if toks[j] == "&" and toks[j + 2] == "<":
                    mask, n = int(toks[j + 1], 0), int(toks[j + 3], 0)
                    p = Fraction(n, mask + 1)
                    hit, miss = st.copy(), st.copy()
                    hit.prob *= p
                    miss.prob *= 1 - p
                    out = self._seq(hit, table, toks, j + 4, acts + [f"random {p}"]) if p else []
                    if p != 1:
                        out.append((miss, "next", None))
                    return out
                raise _Unknown(" ".join(toks[i:]))
            values = [self.value(st, s) for s in sels]
            binop = None
            if j < len(toks) and toks[j] in ("&", "|", "^"):
                binop = (toks[j], int(toks[j + 1], 0))
                j += 2
                v = values[0]
                values = [v & binop[1] if binop[0] == "&" else v | binop[1] if binop[0] == "|" else v ^ binop[1]]
            if j < len(toks) and toks[j] == "set":
                if sels != ["meta mark"]:
                    raise _Unknown(" ".join(toks[i:]))
                st.mark = self._mark_expr(st, toks[j + 1:j + 5])
                acts.append(f"mark set 0x{st.mark:x}")
                i = j + 1 + (4 if j + 2 < len(toks) and toks[j + 1] == "meta" and toks[j + 3] in ("|", "&", "^") else 1)
                continue
            if j < len(toks) and toks[j] == "vmap":
                hit = _exact_lookup(self._set(table, toks[j + 1][1:]), values) if toks[j + 1].startswith("@") \
                    else _NO_INDEX
                if hit is _NO_INDEX:
                    items = self._map_items(table, toks[j + 1])
                    hit = next((v for k, v in items if None not in values and _key_match(sels, values, k)), None)
                return self._verdict(st, table, hit, toks, j + 2, acts)
            neg = False
            if j < len(toks) and toks[j] in ("==", "!="):
                neg = toks[j] == "!="
                j += 1
            if j >= len(toks):
                raise _Unknown(" ".join(toks[i:]))
            rhs = toks[j]
            if None in values:
                ok = False
            elif rhs.startswith("@"):
                found = _exact_lookup(self._set(table, rhs[1:]), values)
                ok = (found is not None) if found is not _NO_INDEX else \
                    any(_key_match(sels, values, e.key) for e in self._set(table, rhs[1:]).elements)
            elif rhs.startswith("{"):
                ok = any(_key_match(sels, values, k) for k in _anon_items(rhs))
            elif len(sels) == 1:
                if sels[0] in ("meta mark", "ct mark"):
                    ok = values[0] == int(rhs, 0)
                else:
                    ok = _field_match(sels[0], values[0], rhs)
            else:
                ok = _key_match(sels, values, rhs)
            if ok == neg:
                return [(st, "next", None)]
            # a proto-specific port match implies the protocol
            i = j + 1
        return [(st, "next", " ".join(acts) or None)]

    def _mark_expr(self, st, toks) -> int:
        if toks and toks[0] == "meta" and len(toks) >= 4 and toks[2] in ("|", "&", "^"):
            v = int(toks[3], 0)
            return {"|": st.mark | v, "&": st.mark & v, "^": st.mark ^ v}[toks[2]] & 0xFFFFFFFF
        return int(toks[0], 0)

    def _fib(self, st, table, toks, j, acts):
        # fib saddr|daddr type [!=] local
        which, k = toks[j + 1], j + 2
        if toks[k] != "type":
            raise _Unknown(" ".join(toks[j:]))
        k += 1
        neg = toks[k] == "!="
        if neg:
            k += 1
        if toks[k] != "local":
            raise _Unknown(" ".join(toks[j:]))
        ip = st.src if which == "saddr" else st.dst
        if self.is_local(ip) == neg:
            return [(st, "next", None)]
        return self._seq(st, table, toks, k + 1, acts)

    def _verdict(self, st, table, verdict: str | None, toks, j, acts):
        if verdict is None:
            return [(st, "next", None)]
        w = verdict.split()
        if w[0] in ("jump", "goto"):
            return [(st, w[0], w[1])]
        if w[0] in ("accept", "drop", "return"):
            return [(st, w[0], " ".join(acts + [w[0]]))]
        raise _Unknown(verdict)

    def _set(self, table, name: str) -> Set:
        s = table.sets.get(name)
        if s is None:
            raise TraceError(f"rule names @{name}, which table {table.family} {table.name} does not have")
        return s

    def _map_items(self, table, tok: str) -> list[tuple[str, str]]:
        if tok.startswith("@"):
            return [(e.key, e.value or "") for e in self._set(table, tok[1:]).elements]
        out = []
        for it in _anon_items(tok):
            k, _, v = it.partition(" : ")
            out.append((k.strip(), v.strip()))
        return out

    # -- chains --------------------------------------------------------------------------------
    def chain(self, st: _State, table, ch: Chain, depth: int = 0) -> list[tuple[_State, str]]:
        """-> [(state, "return"|"accept"|"drop"|"reject")] for every branch."""
        if depth > MAX_DEPTH:
            raise TraceError(f"jump loop through {ch.name}")
        return self._from(st, table, ch, 0, depth)

    def _from(self, st, table, ch, start, depth):
        out = []
        for pos in range(start, len(ch.rules)):
            r = ch.rules[pos]
            try:
                results = self.rule(st, table, r)
            except _Unknown as e:
                st.notes.append(f"{table.name} {ch.name}#{pos + 1}: not understood ({e}); taken as not matching")
                continue
            if len(results) == 1 and results[0][1] == "next" and results[0][2] is None:
                st = results[0][0]
                continue
            for b, effect, detail in results:
                if effect == "next":
                    if detail:
                        b.hops.append(TraceHop(b.hook, table.name, ch.name, pos + 1, r, detail))
                    out += self._from(b, table, ch, pos + 1, depth)
                    continue
                hop = TraceHop(b.hook, table.name, ch.name, pos + 1, r,
                               f"{effect} {detail}" if effect in ("jump", "goto") else (detail or effect))
                b.hops.append(hop)
                if effect in ("jump", "goto"):
                    target = table.chains.get(detail)
                    if target is None:
                        raise TraceError(f"{ch.name}#{pos + 1} jumps to {detail}, not in table {table.name}")
                    for b2, res in self.chain(b, table, target, depth + 1):
                        if res == "return" and effect == "jump":
                            out += self._from(b2, table, ch, pos + 1, depth)
                        else:
                            out.append((b2, res))
                else:
                    out.append((b, effect))
            return out
        return [(st, "return")]

    def hook(self, st: _State, hook: str, nat: bool = True) -> list[_State]:
        """Every base chain of ``hook``, by priority; the states that go on (not dropped)."""
        chains = [(t, c) for t, c in _base_chains(self.rs) if c.hook == hook]
        # by priority; at equal priorities the one registered last runs first (nf_hook_entries_grow
        # inserts a new hook before those of the same priority), and the listing order is taken as
        # the registration order
        order = {id(c): i for i, (_t, c) in enumerate(chains)}
        chains.sort(key=lambda tc: (tc[1].priority or 0, -order[id(tc[1])]))
        states = [st]
        for t, c in chains:
            nxt = []
            for s in states:
                s.hook = hook
                kind = "src" if hook in ("postrouting", "input") else "dst"
                if c.type == "nat" and (not nat or kind in s.mapped):
                    nxt.append(s)
                    continue
                for b, res in self.chain(s, t, c):
                    if res in ("drop", "reject"):
                        self.finish(b, res.upper())
                    elif res == "return" and (c.policy or "accept") == "drop":
                        b.hops.append(TraceHop(hook, t.name, c.name, 0, None, "policy drop"))
                        self.finish(b, "DROP")
                    else:
                        nxt.append(b)
            states = nxt
        return states

    def finish(self, st: _State, verdict: str) -> None:
        self.done.append(Outcome(verdict=verdict, destination=st.dnat, masquerade=st.masq, probability=st.prob,
                                 hops=st.hops, unknown=st.notes, marked=st.mark, source=st.snat_source))

    def run(self) -> list[Outcome]:
        p = self.pkt
        st = _State(src=p.src, dst=p.dst, sport=p.sport, dport=p.dport, proto=p.proto, mark=p.mark)
        if self.is_local(p.src):
            for s in self.hook(st, "output"):
                local = self.is_local(s.dst)
                s.hops.append(TraceHop("routing", "", "", 0, None,
                                       f"{s.dst} is {'local' if local else 'not local'} -> postrouting"))
                for s2 in self.hook(s, "postrouting"):
                    if not local:
                        self.finish(s2, "ACCEPT")
                        continue
                    s2.in_lo = True
                    s2.hops.append(TraceHop("loopback", "", "", 0, None, "in again through lo"))
                    for s3 in self.hook(s2, "prerouting", nat=False):
                        for s4 in self.hook(s3, "input", nat=False):
                            self.finish(s4, "ACCEPT")
        else:
            for s in self.hook(st, "prerouting"):
                local = self.is_local(s.dst)
                s.hops.append(TraceHop("routing", "", "", 0, None,
                                       f"{s.dst} is {'local -> input' if local else 'not local -> forward'}"))
                if local:
                    for s2 in self.hook(s, "input"):
                        self.finish(s2, "ACCEPT")
                else:
                    for s2 in self.hook(s, "forward"):
                        for s3 in self.hook(s2, "postrouting"):
                            self.finish(s3, "ACCEPT")
        return self.done


def trace_nft(ruleset: NftRuleset, packet: Packet, node: NodeContext | Iterable[str] | None = None) -> Trace:
    """Every way ``packet`` (the first packet of a new connection) goes through ``ruleset``; ``node``
    gives the node's local IPs (loopback always counts; an address not given is not local)."""
    if not isinstance(ruleset, NftRuleset):
        raise TraceError(f"expected an NftRuleset (from k8slab.netfilter.nft.parse_nft), got {type(ruleset).__name__}")
    pkt = check_packet(packet)
    ctx = node_context(node)
    paths = NftTracer(ruleset, pkt, ctx).run()
    outcomes, facts = merge_paths(paths, {})
    warnings = [] if ctx.local_ips else ["no local IPs given: only loopback addresses count as the node's own "
                                         "(fib ... type local); give them with NodeContext(local_ips=...)"]
    warnings += _tie_warnings(ruleset)
    return Trace(packet=pkt, node=ctx, outcomes=outcomes, source=ruleset.source, paths=paths, facts=facts,
                 warnings=warnings)


def _base_chains(rs: NftRuleset) -> list:
    """(table, chain) of every base chain in listing order, kept on the ruleset while its tables'
    chain counts stay the same (a 10,000-service ruleset has 40,000 regular chains to skip)."""
    key = tuple((id(t), len(t.chains)) for t in rs.tables)
    cached = rs.__dict__.get("_base")
    if cached is None or cached[0] != key:
        cached = (key, [(t, c) for t in rs.tables for c in t.chains.values() if c.is_base])
        rs.__dict__["_base"] = cached
    return cached[1]


def _tie_warnings(rs: NftRuleset) -> list[str]:
    """Base chains of two tables with the same hook, type and priority: their order is the kernel's
    registration order, taken here from the listing."""
    seen: dict[tuple, list[str]] = {}
    for t, c in _base_chains(rs):
        seen.setdefault((c.hook, c.type, c.priority), []).append(f"{t.family} {t.name} {c.name}")
    out = []
    for (hook, typ, prio), names in seen.items():
        tables = {n.rsplit(" ", 1)[0] for n in names}
        if len(tables) > 1:
            out.append(f"{typ} chains {', '.join(names)} share hook {hook} priority {prio}: the one registered "
                       "last runs first; the listing order is taken as the registration order (a base chain "
                       "deleted and added again since registers anew)")
    return out


# --- the iptables tracer's words, for readers of its hops (paths, plots) -------------------------

def _iptables_action(action: str) -> str:
    a = action
    for nft, ipt in (("dnat to ", "DNAT "), ("snat to ", "SNAT ")):
        if a.startswith(nft):
            return ipt + a[len(nft):]
    if a.startswith("masquerade"):
        return "MASQUERADE (the source becomes the outgoing interface's address)"
    if a.startswith("mark set "):
        return "MARK " + a[len("mark set "):]
    for word in ("reject", "drop", "accept", "return"):
        if a == word or a.startswith(word + " "):
            return word.upper() + a[len(word):]
    return a


def with_iptables_actions(trace: Trace) -> Trace:
    """The same Trace with each hop's action in the iptables tracer's words (``DNAT ip:port``,
    ``MASQUERADE``, ``MARK 0x..``, ``REJECT``): what :mod:`k8slab.paths` reads from a hop."""
    def hops(hs):
        return [replace(h, action=_iptables_action(h.action)) for h in hs]
    for o in trace.outcomes:
        o.hops = hops(o.hops)
    return trace
