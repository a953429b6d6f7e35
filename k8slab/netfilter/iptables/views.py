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

Speed: the parser leaves, per rule, a row of numpy columns (see ``parser.RuleRows``) whose header,
match and target facts are codes into :class:`InfoTable` columns (computed with the pandas-free
helpers :func:`addr_text`, :func:`match_info`, :func:`target_info`), so building the frames needs no
Rule objects and mostly runs in numpy (take, argsort, bincount). Chains whose Rule objects were
built (or changed) after the parse are read from those instead. pandas is imported only when a
frame is built. Both frames are cached on the Ruleset (``rs._views``): change a Ruleset after
looking at its frames and they are stale.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import re
from typing import TYPE_CHECKING

from .names import ENDPOINT_PREFIX, SERVICE_PREFIXES
from .owners import owners_of
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


class InfoTable:
    """The distinct infos of one kind (header: 5 fields, match: 6, target: 2; see header_info,
    match_info, target_info) kept as columns. A parsed rule keeps a code, its info's row here; code 0
    is "none". Columns rather than a list of tuples, so that a view's column is one numpy ``take``:
    transposing 100,000 tuples takes longer than building the frame. :meth:`seal` (end of the parse)
    makes the columns numpy arrays, which the cyclic GC does not walk."""

    __slots__ = ("cols",)

    def __init__(self, first: tuple | None = None, cols: tuple | None = None):
        self.cols = cols if cols is not None else tuple([v] for v in first)

    def __len__(self) -> int:
        return len(self.cols[0])

    def __getitem__(self, code: int) -> tuple:
        return tuple([c[code] for c in self.cols])

    def add(self, info: tuple) -> int:
        """Append one info; its code."""
        for c, v in zip(self.cols, info):
            c.append(v)
        return len(self.cols[0]) - 1

    def extend(self, columns) -> int:
        """Append infos given as columns (one iterable per field); the code of the first."""
        base = len(self.cols[0])
        for c, v in zip(self.cols, columns):
            c.extend(v)
        return base

    def copy(self) -> "InfoTable":
        """A copy that can grow (list columns)."""
        return InfoTable(cols=tuple(c.tolist() if hasattr(c, "tolist") else list(c) for c in self.cols))

    def seal(self) -> None:
        import numpy as np
        self.cols = tuple(c if isinstance(c, np.ndarray) else np.fromiter(c, dtype=object, count=len(c))
                          for c in self.cols)

    def column(self, k: int):
        """Field ``k`` of every info, as an object array."""
        import numpy as np
        c = self.cols[k]
        return c if isinstance(c, np.ndarray) else np.fromiter(c, dtype=object, count=len(c))


ENTRY = 9   # flat slots per rule in chain_entries(): see k8slab.netfilter.parser.LazyChain.view_entries
ROW = 9     # flat slots per row of the parse's rows: see k8slab.netfilter.parser.RuleRows


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

    Chains are numbered in table/chain order (``keys[i] == (table, chain)``) and every per-chain fact
    is indexed by that number. Rules are rows in the same order; their header, match and target
    infos are codes into three lists of distinct infos (the parser's, see ``_Interner``), so that a
    column is one numpy ``take`` and per-chain facts are numpy group-bys, not Python loops over rows.
    A hashed chain's service port is the first one its rules' comments name (kube-proxy writes one
    service port per chain); a KUBE-SEP chain's endpoint is its first DNAT destination; chains
    without either learn them from the rules that jump to them.
    """

    def __init__(self, rs: "Ruleset"):
        from itertools import repeat

        import numpy as np

        self.chains: list[Chain] = []
        keys: list[tuple[str, str]] = []
        index: dict[str, dict[str, int]] = {}
        table_rows: list[tuple[str, int]] = []       # (table, first chain number) in order
        # the parse's rows (see parser.RuleRows): chains whose rules are still rows there cost nothing here
        store = None
        for chains in rs.tables.values():
            for ch in chains.values():
                if getattr(ch, "_cid", None) is not None:
                    store = ch._store
                    break
            if store is not None:
                break
        if store is not None:
            store.seal()
            cache = store.cache
            hvals, mvals, tvals = cache.h_vals, cache.m_vals, cache.t_vals
            store_cols = store.cols
            cid_no = np.full(len(store.chains), -1, dtype=np.intp)
        else:
            hvals, mvals, tvals = InfoTable((None,) * 5), InfoTable(_NO_MATCHES), InfoTable(_NO_TARGET)
            store_cols = None
            cid_no = np.full(0, -1, dtype=np.intp)
        copied = False
        extra: list = []          # ENTRY slots per rule of the chains that have Rule objects
        extra_no: list[int] = []  # their chain numbers
        for table, chains in rs.tables.items():
            base = len(keys)
            names_t = list(chains)
            objs = list(chains.values())
            index[table] = dict(zip(names_t, range(base, base + len(names_t))))
            table_rows.append((table, base))
            keys += [(table, name) for name in names_t]
            self.chains += objs
            # chains whose rules are rows of the parse: their number, by id
            rows_of = [(no, ch._cid) for no, ch in enumerate(objs, base)
                       if getattr(ch, "_cid", None) is not None and ch._store is store]
            if rows_of:
                nos, cids = zip(*rows_of)
                cid_no[list(cids)] = nos
            if len(rows_of) == len(objs):
                continue
            in_rows = {no for no, _cid in rows_of}
            for no, ch in enumerate(objs, base):
                if no in in_rows:
                    continue
                # materialised or foreign chains: their infos become codes here
                e = list(chain_entries(ch))
                if not e:
                    continue
                if not copied:      # the parse's tables stay as they are
                    hvals, mvals, tvals = hvals.copy(), mvals.copy(), tvals.copy()
                    copied = True
                for slot, vals in ((6, hvals), (7, mvals), (8, tvals)):
                    infos = e[slot::ENTRY]
                    first = vals.extend(zip(*infos))
                    e[slot::ENTRY] = range(first, first + len(infos))
                extra += e
                extra_no += [no] * (len(e) // ENTRY)
        n_chains = len(keys)
        n_store = len(store_cols[0]) if store_cols is not None else 0
        # chain number of every row (store rows first, then the extra ones); -1: a dead row
        row_no = cid_no[store_cols[0]] if store_cols is not None else np.zeros(0, dtype=np.intp)
        if extra_no:
            row_no = np.concatenate([row_no, np.array(extra_no, dtype=np.intp)])
        live = np.flatnonzero(row_no >= 0)
        order = live[np.argsort(row_no[live], kind="stable")]      # chain order, input order within
        row_chain = row_no[order]
        n = len(order)
        counts = np.bincount(row_chain, minlength=n_chains)
        self.keys, self.counts, self.n_rules = keys, counts.tolist(), n
        self.index = index
        starts = np.concatenate([[0], np.cumsum(counts)])     # row number of chain i (and the end)

        def column(slot: int, dtype=object):
            parts = [store_cols[slot]] if store_cols is not None else []
            if extra:
                parts.append(np.fromiter(extra[slot::ENTRY], dtype=dtype, count=len(extra_no)))
            if not parts:
                return np.zeros(0, dtype=dtype)
            return (parts[0] if len(parts) == 1 else np.concatenate(parts))[order]

        position = np.arange(n, dtype=np.int64) - starts[row_chain] + 1
        from_rules = np.flatnonzero(order >= n_store)
        if len(from_rules):     # Rule objects keep their own positions
            position[from_rules] = np.array(extra[0::ENTRY], dtype=np.int64)[order[from_rules] - n_store]
        cols = [position, column(1), column(2), column(3), column(4), column(5, np.int64)]
        hc, mc, tc = column(6, np.intp), column(7, np.intp), column(8, np.intp)
        self.columns, self.hc, self.mc, self.tc = cols, hc, mc, tc
        self.hvals, self.mvals, self.tvals = hvals, mvals, tvals
        self.row_chain = row_chain
        names = _objects([k[1] for k in keys])
        self.names = names
        # the chain number each rule jumps to (-1: none, or not a chain of its table)
        targets = cols[1]
        self.targets = targets
        jump = np.full(n, -1, dtype=np.intp)
        bounds = [int(starts[c]) for _t, c in table_rows] + [n]
        for k, (table, _c) in enumerate(table_rows):
            a, b = bounds[k], bounds[k + 1]
            if a == b:
                continue
            jump[a:b] = np.fromiter(map(index[table].get, targets[a:b].tolist(), repeat(-1, b - a)),
                                    dtype=np.intp, count=b - a)
        self.jump = jump
        # who jumps where: unique (chain, target chain) pairs, in the order they first appear
        rows = np.flatnonzero(jump >= 0)
        src, dst = row_chain[rows], jump[rows]
        _u, first = np.unique(src.astype(np.int64) * max(n_chains, 1) + dst, return_index=True)
        first.sort()
        src, dst = src[first], dst[first]
        by_src = np.argsort(src, kind="stable")
        by_dst = np.argsort(dst, kind="stable")
        self.jumps_to = _split(names[dst[by_src]].tolist(), np.bincount(src, minlength=n_chains))
        self.jumped_from = _split(names[src[by_dst]].tolist(), np.bincount(dst, minlength=n_chains))
        # first value per hashed chain
        chain_names = names.tolist()
        hashed = np.array([c.startswith(_HASHED_PREFIXES) for c in chain_names], dtype=bool)
        seps = np.array([c.startswith(ENDPOINT_PREFIX) for c in chain_names], dtype=bool)
        spn_tab = mvals.column(5)
        dnat_tab = tvals.column(1)
        proto_tab = hvals.column(2)
        hashed_row = hashed[row_chain]
        spn_of = _first_per_chain(spn_tab, mc, _present(spn_tab)[mc] & hashed_row, row_chain, n_chains)
        ep_of = _first_per_chain(dnat_tab, tc, _present(dnat_tab)[tc] & seps[row_chain], row_chain, n_chains)
        plain = np.array(_by_value(lambda p: bool(p) and p[0] != "!", proto_tab.tolist()), dtype=bool)
        self._proto_of = _first_per_chain(proto_tab, hc, plain[hc] & hashed_row, row_chain, n_chains)
        need = hashed & (~_present(spn_of) | (seps & ~_present(ep_of)))
        if need.any():
            # large-cluster mode (no comments), empty chains: "SPN cluster IP" -> KUBE-SVC,
            # "SPN -> ip:port" -> KUBE-SEP on the rules that jump to them
            spn_l, ep_l = spn_of.tolist(), ep_of.tolist()
            sepl = seps.tolist()
            for r in np.flatnonzero((jump >= 0) & need[np.maximum(jump, 0)]).tolist():
                j = int(jump[r])
                m = mvals[mc[r]]
                if spn_l[j] is None and m[5]:
                    spn_l[j] = m[5]
                if sepl[j] and ep_l[j] is None and m[1]:
                    found = _ARROW_RE.search(m[1])
                    if found:
                        ep_l[j] = found.group(1)
            spn_of, ep_of = _objects(spn_l), _objects(ep_l)
        self.spn_arr, self.ep_arr = spn_of, ep_of
        self.spn = spn_of.tolist()
        self.endpoint = ep_of.tolist()
        self._hashed = hashed
        self._hash_ok: list | None = None
        self.owners = owners_of(keys)

    @property
    def hash_ok(self) -> list:
        """Per chain: True/False for hashed chains whose inputs are known, else None (computed on
        first use: only the chains frame needs it)."""
        if self._hash_ok is None:
            self._hash_ok = _hash_checks(self.keys, self._hashed, self.spn, self.endpoint,
                                         self._proto_of.tolist())
        return self._hash_ok


def _by_value(fn, values: list) -> list:
    """``[fn(v) for v in values]``, calling ``fn`` once per distinct value (the lookups run in C)."""
    seen = dict.fromkeys(values)
    for v in seen:
        seen[v] = fn(v)
    return list(map(seen.__getitem__, values))


def _objects(values: list) -> "np.ndarray":
    import numpy as np
    return np.fromiter(values, dtype=object, count=len(values))


def _present(arr) -> "np.ndarray":
    """Elementwise ``is not None`` of an object array of str/None (pandas' isna loop is in C)."""
    import pandas as pd
    return ~pd.isna(arr)


def _first_per_chain(table, codes, mask, row_chain, n_chains: int) -> "np.ndarray":
    """Per chain, ``table[codes[r]]`` of its first row ``r`` where ``mask``; None where none."""
    import numpy as np
    out = np.full(n_chains, None, dtype=object)
    rows = np.flatnonzero(mask)
    if len(rows):
        chains = row_chain[rows]            # rows are in chain order: a chain's first is where it changes
        first = np.flatnonzero(np.concatenate([[True], chains[1:] != chains[:-1]]))
        out[chains[first]] = table[codes[rows[first]]]
    return out


def _split(values: list, counts) -> list[list]:
    """``values`` cut into consecutive lists of ``counts`` items."""
    out = []
    a = 0
    for c in counts.tolist():
        b = a + c
        out.append(values[a:b])
        a = b
    return out


_B32_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _hash_checks(keys, hashed, spn: list, endpoint: list, protos: list) -> list:
    """hash_ok per chain: the first protocol guess (the chain's own -p, else tcp) for all hashed
    chains at once (sha256 in a loop, base32 with numpy), the other protocols only for mismatches."""
    import numpy as np

    sha = hashlib.sha256
    out: list = [None] * len(keys)
    todo, digests, wants = [], [], []
    first_proto = _FIRST_PROTO
    lp = len(ENDPOINT_PREFIX)
    for i in np.flatnonzero(hashed).tolist():
        s = spn[i]
        if not s:
            continue
        name = keys[i][1]
        p = protos[i]
        first = first_proto.get(p) or _proto_order(p)[0]
        if name[:lp] == ENDPOINT_PREFIX:
            ep = endpoint[i]
            if not ep:
                continue
            text = s + first + ep
            want = name[lp:]
        else:
            text = s + first
            want = name[name.index("-", 5) + 1:]
        if len(want) != 16:
            out[i] = hash_matches(name, s, endpoint[i], _proto_order(p))
            continue
        todo.append(i)
        digests.append(sha(text.encode()).digest()[:10])
        wants.append(want)
    if todo:
        bits = np.unpackbits(np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 10), axis=1)
        idx = bits.reshape(-1, 16, 5).astype(np.intp) @ np.array([16, 8, 4, 2, 1], dtype=np.intp)
        got = np.frombuffer(_B32_BYTES, dtype=np.uint8)[idx]
        wb = "".join(wants).encode()
        if len(wb) != 16 * len(wants):     # a non-ASCII name: compare one by one
            wb = b"".join([w.encode()[:16].ljust(16, b"\0") for w in wants])
        want_arr = np.frombuffer(wb, dtype=np.uint8).reshape(-1, 16)
        ok = (got == want_arr).all(axis=1).tolist()
        for i, good in zip(todo, ok):
            if good:
                out[i] = True
            else:   # another protocol? (rare: the guess was the chain's own -p, or tcp)
                out[i] = hash_matches(keys[i][1], spn[i], endpoint[i], _proto_order(protos[i]))
    return out


def _proto_order(p: str | None) -> tuple[str, ...]:
    return _PROTO_ORDER.get(p.lower() if p else None, _PROTO_ORDER[None])


_PROTO_ORDER = {None: ("tcp", "udp", "sctp"), "tcp": ("tcp", "udp", "sctp"), "udp": ("udp", "tcp", "sctp"),
                "sctp": ("sctp", "tcp", "udp")}
_FIRST_PROTO = {None: "tcp", "tcp": "tcp", "udp": "udp", "sctp": "sctp"}


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


def _without_gc(build):
    """Run a frame builder with the cyclic GC paused: it makes many objects and no cycles, and with a
    big Ruleset alive each collection would walk all of it. (Nothing is allocated before the pause,
    so that no collection starts on the way in.)"""
    @functools.wraps(build)
    def wrapper(rs):
        was = gc.isenabled()
        gc.disable()
        try:
            return build(rs)
        finally:
            if was:
                gc.enable()
    return wrapper


def rules_frame(rs: "Ruleset") -> "pd.DataFrame":
    """One row per rule (see the module docstring for the columns)."""
    return _rules_frame(rs)


@_without_gc
def _rules_frame(rs: "Ruleset") -> "pd.DataFrame":
    import numpy as np
    import pandas as pd

    facts = _facts(rs)
    keys = facts.keys
    n = facts.n_rules
    row_chain = facts.row_chain
    hc, mc, tc = facts.hc, facts.mc, facts.tc
    hvals, mvals, tvals = facts.hvals, facts.mvals, facts.tvals

    def per_chain(values) -> "np.ndarray":
        # one value per chain -> one per rule, in C
        return _objects(values)[row_chain]

    owners = _objects(facts.owners)
    kube = np.fromiter((o == "kube-proxy" for o in facts.owners), dtype=bool, count=len(keys))
    position, target, packets, nbytes, line, lineno = facts.columns
    htab, mtab, ttab = ([t.column(k) for k in range(len(t.cols))] for t in (hvals, mvals, tvals))
    src, dst, proto, iif, oif = (t[hc] for t in htab)
    modules, comment, sport, dport = (t[mc] for t in mtab[:4])
    prob_tab = mtab[4]
    targs_tab = ttab[0]
    target_args = targs_tab[tc]
    with_p = np.flatnonzero(_present(prob_tab)[mc])
    if len(with_p):
        target_args[with_p] = [f"p={p} {a}" if a else f"p={p}"
                               for p, a in zip(prob_tab[mc[with_p]].tolist(), target_args[with_p].tolist())]
    probability = np.array(_by_value(lambda p: _NAN if p is None else _float(p), prob_tab.tolist()),
                           dtype="float64")[mc]
    # service port: the rule's own (from its comment), else its chain's; only on kube-proxy's chains
    spn_tab = mtab[5]
    kube_row = kube[row_chain]
    service_port = facts.spn_arr[row_chain]
    own = _present(spn_tab)[mc] & kube_row
    service_port[own] = spn_tab[mc[own]]
    service_port[~kube_row] = None
    # endpoint: the chain's own, else that of the KUBE-SEP chain the rule jumps to
    ep = np.append(facts.ep_arr, None)     # index -1 (no jump) -> None
    endpoint = ep[row_chain]
    none = ~_present(ep)[row_chain]
    endpoint[none] = ep[facts.jump[none]]
    data = {
        "table": per_chain([k[0] for k in keys]), "chain": facts.names[row_chain],
        "position": position,
        "packets": _int_array(pd, packets), "bytes": _int_array(pd, nbytes),
        "src": src, "dst": dst, "protocol": proto, "sport": sport, "dport": dport,
        "in_iface": iif, "out_iface": oif, "comment": comment, "matches": modules,
        "target": facts.targets, "target_args": target_args, "probability": probability,
        "dnat_to": ttab[1][tc], "owner": owners[row_chain], "service_port": service_port,
        "endpoint": endpoint, "line": line, "lineno": lineno,
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
    """Counters (a list, or an object array, of int/None) as nullable integers (<NA> where the dump
    had no counters)."""
    import numpy as np
    arr = values if isinstance(values, np.ndarray) else np.fromiter(values, dtype=object, count=len(values))
    n = len(arr)
    missing = pd.isna(arr)
    if not missing.any():
        return pd.arrays.IntegerArray(arr.astype("int64"), np.zeros(n, dtype=bool))
    if missing.all():
        return pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))
    data = arr.copy()
    data[missing] = 0
    return pd.arrays.IntegerArray(data.astype("int64"), missing)


def chains_frame(rs: "Ruleset") -> "pd.DataFrame":
    """One row per chain (see the module docstring for the columns)."""
    return _chains_frame(rs)


@_without_gc
def _chains_frame(rs: "Ruleset") -> "pd.DataFrame":
    import pandas as pd

    facts = _facts(rs)
    keys = facts.keys
    objs = facts.chains
    owners = facts.owners
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
