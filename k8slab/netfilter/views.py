"""pandas views of a :class:`~k8slab.netfilter.rules.Ruleset`: one row per rule, one row per chain.

``rules_frame(rs)`` (``rs.rules``) columns: table, chain, position, packets, bytes, src, dst, protocol,
sport, dport, in_iface, out_iface, comment, matches, target, target_args, probability, dnat_to,
owner, service_port, endpoint, line, lineno. Rows are in table, chain, position order.

* src/dst are canonical CIDRs (``10.0.0.1`` -> ``10.0.0.1/32``, ``fd00::1`` -> ``fd00::1/128``; the
  Rule objects keep them as written); a negated field starts with ``!`` (``!10.244.0.0/16``, ``!80``).
* sport/dport come from tcp/udp/sctp/multiport (``80``, ``1024:65535``, ``80,443``).
* matches lists the modules (``comment,tcp,statistic``); target_args is the human part of the target
  (``10.244.0.5:8080`` for DNAT, ``--set-xmark 0x4000/0x4000`` for MARK), prefixed with
  ``p=<probability as written>`` when the rule has a statistic probability; probability is that
  number as a float (NaN otherwise); dnat_to is DNAT's ``--to-destination``.
* owner is :func:`~k8slab.netfilter.owners.owner_of` of the chain. service_port is kube-proxy's
  ``ns/name:port`` (from the rule's comment, else from its chain), only on kube-proxy's chains.
  endpoint is the ``ip:port`` of a KUBE-SEP chain, on the SEP's own rules and on the rules that
  jump to it (a KUBE-SVC rule shows which endpoint it picks).
* packets/bytes are nullable integers (<NA> without ``iptables-save -c``).

``chains_frame(rs)`` (``rs.chains``) columns: table, chain, policy, packets, bytes, rules (count),
jumped_from and jumps_to (lists of chain names, -j and -g alike), owner, service_port, endpoint,
hash_ok, declared. A hashed chain's service port is the first one its rules' comments name, or the
one the rules jumping to it name (large-cluster mode drops comments); hash_ok is True when a
KUBE-SVC/SVL/EXT/FW/SEP chain's name is the hash kube-proxy computes from that service port (and
endpoint), False when it is not, None where it cannot be checked (other chains, unknown inputs).

Speed: the parser leaves, per rule, the facts a row needs (computed once per distinct piece of
text with the pandas-free helpers :func:`addr_text`, :func:`match_info`, :func:`target_info`), so
building the frames needs no Rule objects and mostly runs in C (zip, dict, numpy.repeat). pandas is
imported only when a frame is built. Both frames are cached on the Ruleset (``rs._views``): change
a Ruleset after looking at its frames and they are stale.
"""
from __future__ import annotations

import gc
import hashlib
import re
from typing import TYPE_CHECKING

from .names import ENDPOINT_PREFIX, SERVICE_PREFIXES
from .owners import owner_of
from .rules import Addr, Chain, Match, Option, Rule

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .rules import Ruleset

RULE_COLUMNS = ("table", "chain", "position", "packets", "bytes", "src", "dst", "protocol", "sport", "dport",
                "in_iface", "out_iface", "comment", "matches", "target", "target_args", "probability",
                "dnat_to", "owner", "service_port", "endpoint", "line", "lineno")
CHAIN_COLUMNS = ("table", "chain", "policy", "packets", "bytes", "rules", "jumped_from", "jumps_to", "owner",
                 "service_port", "endpoint", "hash_ok", "declared")

# ------------------------------------------------------------------------------------------------
# Per-piece helpers (no pandas)

_canon_cache: dict[str, str] = {}


def canonical_cidr(value: str) -> str:
    """``10.0.0.1`` -> ``10.0.0.1/32``; ``fd00::1`` -> ``fd00::1/128``; CIDRs and names unchanged."""
    out = _canon_cache.get(value)
    if out is None:
        if "/" in value:
            out = value
        elif ":" in value:
            out = value + "/128"
        elif value.replace(".", "").isdigit() and value.count(".") == 3:
            out = value + "/32"
        else:
            out = value
        if len(_canon_cache) < 200_000:
            _canon_cache[value] = out
    return out


def addr_text(a: Addr | None, cidr: bool = False) -> str | None:
    """How a view shows an IP-header field: ``!`` prefix when negated, canonical CIDR if ``cidr``."""
    if a is None:
        return None
    v = canonical_cidr(a.value) if cidr else a.value
    return "!" + v if a.negated else v


_PORT_MODULES = frozenset({"tcp", "udp", "sctp", "udplite", "dccp", "multiport"})
_SPORT = frozenset({"--sport", "--source-port", "--sports", "--source-ports"})
_DPORT = frozenset({"--dport", "--destination-port", "--dports", "--destination-ports"})


def _opt_text(o: Option) -> str:
    v = o.value
    return ("!" if o.negated else "") + (v if v is not None else "")


def match_info(matches: tuple[Match, ...]) -> tuple:
    """``(modules, comment, sport, dport, probability_text, service_port)`` of a rule's matches
    (``service_port``: kube-proxy's ``ns/name:port`` found in the comment)."""
    if not matches:
        return _NO_MATCHES
    modules = ",".join([m.module for m in matches])
    comment = sport = dport = prob = None
    for m in matches:
        mod = m.module
        if mod == "comment":
            if comment is None:
                o = m.get("--comment")
                if o is not None:
                    comment = o.value if o.value is not None else ""
        elif mod in _PORT_MODULES:
            for o in m.options:
                name = o.name
                if name in _DPORT:
                    dport = _opt_text(o)
                elif name in _SPORT:
                    sport = _opt_text(o)
                elif name == "--ports":
                    sport = dport = _opt_text(o)
        elif mod == "statistic":
            o = m.get("--probability")
            if o is not None and o.value is not None and not o.negated:
                prob = o.value
    return (modules, comment, sport, dport, prob, service_port_of(comment))


_NO_MATCHES = ("", None, None, None, None, None)
_NAT_TO = {"DNAT": "--to-destination", "SNAT": "--to-source"}


def target_info(target: str | None, options: tuple[Option, ...]) -> tuple:
    """``(target_args, dnat_to)``: DNAT shows its destination, other targets their options."""
    if not options:
        return _NO_TARGET
    want = _NAT_TO.get(target or "")
    if want is not None:
        to = [o.value for o in options if o.name == want and o.value]
        rest = [o for o in options if o.name != want]
        shown = " ".join(to)
        if rest:
            shown = " ".join([shown] + [_opt_words(o) for o in rest]).strip()
        return (shown or None, " ".join(to) if target == "DNAT" and to else None)
    return (" ".join([_opt_words(o) for o in options]), None)


_NO_TARGET = (None, None)


def _opt_words(o: Option) -> str:
    words = (["!"] if o.negated else []) + [o.name] + list(o.values)
    return " ".join(words)


def rule_info(rule: Rule) -> tuple:
    """``(header, matches, target)`` infos of one Rule, as the parser caches them."""
    return (header_info(rule), match_info(rule.matches), target_info(rule.target, rule.target_options))


def header_info(rule: Rule) -> tuple:
    return (addr_text(rule.source, True), addr_text(rule.destination, True), addr_text(rule.protocol),
            addr_text(rule.in_interface), addr_text(rule.out_interface))


# ------------------------------------------------------------------------------------------------
# kube-proxy facts

_SPN_RE = re.compile(r"[a-z0-9][-a-z0-9.]*/[a-z0-9][-a-z0-9.]*(?::[-a-z0-9]*)?\Z")
_ARROW_RE = re.compile(r"-> (\[[0-9a-fA-F:.]+\]:\d+|[0-9.]+:\d+)")
_SVC_PREFIXES = tuple(SERVICE_PREFIXES)
_HASHED_PREFIXES = _SVC_PREFIXES + (ENDPOINT_PREFIX,)


def service_port_of(comment: str | None) -> str | None:
    """kube-proxy's service-port name (``ns/name:port``, ``ns/name``) inside a rule comment."""
    if not comment or "/" not in comment:
        return None
    first = comment.partition(" ")[0]
    if "/" in first and _SPN_RE.match(first):
        return first
    for word in comment.split():       # "masquerade traffic for ns/name:port external destinations"
        if "/" in word and _SPN_RE.match(word):
            return word
    return None


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]      # 10 bits -> 2 characters


def _b32_16(text: str) -> str:
    """The first 16 characters of base32(sha256(text)): names.service_hash without base64's
    pure-Python encoder (80 bits, 8 table lookups)."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    p = _B32_PAIRS
    return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
            + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])


def hash_matches(chain: str, spn: str | None, endpoint: str | None,
                 protocols: tuple[str, ...] = ("tcp", "udp", "sctp")) -> bool | None:
    """Is ``chain`` the name kube-proxy derives from ``spn`` (and ``endpoint`` for KUBE-SEP)?

    None when it cannot be checked (not a hashed chain, or the inputs are unknown).
    """
    if chain.startswith(ENDPOINT_PREFIX):
        if not spn or not endpoint:
            return None
        want = chain[len(ENDPOINT_PREFIX):]
        for p in protocols:
            if _b32_16(spn + p + endpoint) == want:
                return True
        return False
    if not chain.startswith(_SVC_PREFIXES):
        return None
    if not spn:
        return None
    want = chain[chain.index("-", 5) + 1:]
    for p in protocols:
        if _b32_16(spn + p) == want:
            return True
    return False


ENTRY = 9   # flat slots per rule in chain_entries(): see k8slab.netfilter.parser.LazyChain.view_entries


def chain_entries(chain) -> list:
    """Per rule, :data:`ENTRY` flat slots: position, target, packets, bytes, line, lineno, header
    info, match info, target info. A parsed chain (:class:`~k8slab.netfilter.parser.LazyChain`) has
    them from the parse; any other Chain gets them computed from its Rule objects."""
    fn = getattr(chain, "view_entries", None)
    if fn is not None:
        return fn()
    out: list = []
    for r in chain.rules:
        out += (r.position, r.target, r.packets, r.bytes, r.line, r.lineno) + rule_info(r)
    return out


class _Facts:
    """Chain-level facts both frames need: who jumps where, service ports, endpoints, hash checks.

    Chains are numbered in table/chain order (``keys[i] == (table, chain)``) and every fact is a
    list indexed by that number. They are built in a few flat passes over all rules (zip, dict and
    set work in C). A hashed chain's service port is the first one its rules' comments name
    (kube-proxy writes one service port per chain); a KUBE-SEP chain's endpoint is its first DNAT
    destination; chains without either learn them from the rules that jump to them.
    """

    def __init__(self, rs: "Ruleset"):
        from itertools import chain as concat, repeat

        self.chains: list[Chain] = []
        keys: list[tuple[str, str]] = []
        entries: list[list] = []
        index: dict[str, dict[str, int]] = {}
        for table, chains in rs.tables.items():
            idx = index[table] = {}
            for name, ch in chains.items():
                idx[name] = len(keys)
                keys.append((table, name))
                self.chains.append(ch)
                entries.append(chain_entries(ch))
        n_chains = len(keys)
        counts = [len(e) // ENTRY for e in entries]
        flat = list(concat.from_iterable(entries))
        self.keys, self.counts, self.n_rules = keys, counts, len(flat) // ENTRY
        # row_chain[r] is the number of row r's chain (ints hash fast)
        row_chain = list(concat.from_iterable(map(repeat, range(n_chains), counts)))
        cols = [flat[k::ENTRY] for k in range(ENTRY)]      # slicing a flat list: columns in C
        del flat
        targets = cols[1]
        protos = [h[2] for h in cols[6]]
        spns = [m[5] for m in cols[7]]
        dnats = [t[1] for t in cols[8]]
        self.columns = cols
        # who jumps where: unique (chain, target) pairs whose target is a chain of the same table
        jumps_to: list[list[str]] = [[] for _ in range(n_chains)]
        jumped_from: list[list[str]] = [[] for _ in range(n_chains)]
        table_of = [k[0] for k in keys]
        for i, t in dict.fromkeys(zip(row_chain, targets)):
            j = index[table_of[i]].get(t) if t is not None else None
            if j is not None:
                jumps_to[i].append(t)
                jumped_from[j].append(keys[i][1])
        self.jumps_to, self.jumped_from = jumps_to, jumped_from
        # first value per hashed chain: walk backwards so that the first one wins
        hashed = {i for i, k in enumerate(keys) if k[1].startswith(_HASHED_PREFIXES)}
        seps = {i for i in hashed if keys[i][1].startswith(ENDPOINT_PREFIX)}
        rc = row_chain[::-1]
        spn_of = {i: v for i, v in zip(rc, spns[::-1]) if v is not None and i in hashed}
        ep_of = {i: v for i, v in zip(rc, dnats[::-1]) if v is not None and i in seps}
        proto_of = {i: v for i, v in zip(rc, protos[::-1]) if v and v[0] != "!" and i in hashed}
        need = {i for i in hashed if i not in spn_of or (i in seps and i not in ep_of)}
        if need:
            # large-cluster mode (no comments), empty chains: "SPN cluster IP" -> KUBE-SVC,
            # "SPN -> ip:port" -> KUBE-SEP on the rules that jump to them
            for i, t, m in zip(row_chain, targets, cols[7]):
                j = index[table_of[i]].get(t) if t is not None else None
                if j is None or j not in need:
                    continue
                if j not in spn_of and m[5]:
                    spn_of[j] = m[5]
                if j in seps and j not in ep_of and m[1]:
                    found = _ARROW_RE.search(m[1])
                    if found:
                        ep_of[j] = found.group(1)
        self.spn = [spn_of.get(i) for i in range(n_chains)]
        self.endpoint = [ep_of.get(i) for i in range(n_chains)]
        hash_ok: list[bool | None] = [None] * n_chains
        for i in hashed:
            p = proto_of.get(i)
            hash_ok[i] = hash_matches(keys[i][1], self.spn[i], self.endpoint[i],
                                      _PROTO_ORDER.get(p.lower() if p else None, _PROTO_ORDER[None]))
        self.hash_ok = hash_ok


_PROTO_ORDER = {None: ("tcp", "udp", "sctp"), "tcp": ("tcp", "udp", "sctp"), "udp": ("udp", "tcp", "sctp"),
                "sctp": ("sctp", "tcp", "udp")}


def _facts(rs: "Ruleset") -> _Facts:
    """Computed once per Ruleset and kept beside the cached frames."""
    f = rs._views.get("_facts")
    if f is None:
        f = rs._views["_facts"] = _Facts(rs)
    return f


# ------------------------------------------------------------------------------------------------
# The frames

_NAN = float("nan")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return _NAN


def rules_frame(rs: "Ruleset") -> "pd.DataFrame":
    """One row per rule (see the module docstring for the columns)."""
    # The cyclic GC is paused while the frame is built: it makes many objects and no cycles, and
    # with a big Ruleset alive each collection would walk all of it. (No object is created before
    # the pause, so that no collection starts here.)
    was = gc.isenabled()
    gc.disable()
    try:
        return _rules_frame(rs)
    finally:
        if was:
            gc.enable()


def _rules_frame(rs: "Ruleset") -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    facts = _facts(rs)
    keys, counts = facts.keys, facts.counts
    n = facts.n_rules

    def per_chain(values: list) -> "np.ndarray":
        # one value per chain -> one per rule, in C
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return np.repeat(arr, counts) if n else np.empty(0, dtype=object)

    tables = per_chain([k[0] for k in keys])
    chains = per_chain([k[1] for k in keys])
    owner_list = [owner_of(t, c) for t, c in keys]
    owners = per_chain(owner_list)
    chain_spn = per_chain([s if o == "kube-proxy" else "" for s, o in zip(facts.spn, owner_list)])
    chain_ep = per_chain(facts.endpoint)
    ep_by_name = {k: e for k, e in zip(keys, facts.endpoint) if e is not None}
    position, target, packets, nbytes, line, lineno, heads, minfos, tinfos = facts.columns
    if n:
        src, dst, proto, iif, oif = zip(*heads)
        modules, comment, sport, dport, prob, rule_spn = zip(*minfos)
        targs, dnat = zip(*tinfos)
    else:
        src = dst = proto = iif = oif = modules = comment = sport = dport = prob = targs = dnat = rule_spn = ()
    target_args = [a if p is None else (f"p={p} {a}" if a else f"p={p}") for p, a in zip(prob, targs)]
    probability = np.fromiter((_NAN if p is None else _float(p) for p in prob), dtype="float64", count=n)
    # "" marks rules of chains kube-proxy does not own: they get no service port
    service_port = [None if cs == "" else (s or cs) for s, cs in zip(rule_spn, chain_spn)]
    ep_get = ep_by_name.get
    endpoint = [ce if ce is not None else (ep_get((tb, t)) if t is not None and t[:9] == ENDPOINT_PREFIX else None)
                for ce, tb, t in zip(chain_ep, tables, target)]
    data = {
        "table": tables, "chain": chains, "position": np.fromiter(position, dtype="int64", count=n),
        "packets": _int_array(pd, packets), "bytes": _int_array(pd, nbytes),
        "src": src, "dst": dst, "protocol": proto, "sport": sport, "dport": dport,
        "in_iface": iif, "out_iface": oif, "comment": comment, "matches": modules,
        "target": target, "target_args": target_args, "probability": probability, "dnat_to": dnat,
        "owner": owners, "service_port": service_port, "endpoint": endpoint,
        "line": line, "lineno": np.fromiter(lineno, dtype="int64", count=n),
    }
    return _frame(pd, data, RULE_COLUMNS)


def _frame(pd, data: dict, columns) -> "pd.DataFrame":
    """DataFrame from column lists, fast: object columns become numpy arrays first, and pandas
    keeps them as they are (building from lists of 100,000 Python objects is ~100x slower)."""
    import numpy as np

    arrays = {}
    for name in columns:
        v = data[name]
        if isinstance(v, (list, tuple)):
            kind = _column_kind(v)
            if kind is object:
                v = np.fromiter(v, dtype=object, count=len(v))
            else:
                v = np.array(v, dtype=kind)
        arrays[name] = v
    return pd.DataFrame(arrays, columns=list(columns), copy=False)


def _column_kind(values):
    """int64/float64 for all-int/all-float lists (bools stay objects: True/False/None), else object."""
    if not values:
        return object
    first = values[0]
    t = type(first)
    if t is int or t is float:
        if all(type(v) is t for v in values):
            return "int64" if t is int else "float64"
    return object


def _int_array(pd, values):
    """Counters as nullable integers (<NA> where the dump had no counters)."""
    import numpy as np
    n = len(values)
    if n and None not in values:
        return pd.arrays.IntegerArray(np.fromiter(values, dtype="int64", count=n), np.zeros(n, dtype=bool))
    if not any(v is not None for v in values):
        return pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))
    mask = np.fromiter((v is None for v in values), dtype=bool, count=n)
    data = np.fromiter((0 if v is None else v for v in values), dtype="int64", count=n)
    return pd.arrays.IntegerArray(data, mask)


def chains_frame(rs: "Ruleset") -> "pd.DataFrame":
    """One row per chain (see the module docstring for the columns)."""
    was = gc.isenabled()
    gc.disable()
    try:
        return _chains_frame(rs)
    finally:
        if was:
            gc.enable()


def _chains_frame(rs: "Ruleset") -> "pd.DataFrame":
    import pandas as pd

    facts = _facts(rs)
    keys = facts.keys
    objs = facts.chains
    owners = [owner_of(t, n) for t, n in keys]
    cols = {
        "table": [t for t, _n in keys],
        "chain": [n for _t, n in keys],
        "policy": [c.policy for c in objs],
        "packets": _int_array(pd, [c.packets for c in objs]),
        "bytes": _int_array(pd, [c.bytes for c in objs]),
        "rules": facts.counts,
        "jumped_from": facts.jumped_from,
        "jumps_to": facts.jumps_to,
        "owner": owners,
        "service_port": facts.spn,
        "endpoint": facts.endpoint,
        "hash_ok": [h if o == "kube-proxy" else None for h, o in zip(facts.hash_ok, owners)],
        "declared": [c.declared for c in objs],
    }
    return _frame(pd, cols, CHAIN_COLUMNS)
