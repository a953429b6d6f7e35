"""The checked rule lines of one parse as numpy rows, and chains whose Rule objects are built on first use.

Owns :class:`RuleRows` (every checked rule line of a parse: :data:`~.views.ROW` slots per line in one
flat list while parsing, numpy columns once the parse is sealed; what the pandas views read),
:class:`LazyChain` (a :class:`~.rules.Chain` whose rules stay rows until ``rules`` is first used)
and :func:`rule_entries` (the same view facts from Rule objects). The rows are written by
:func:`k8slab.netfilter.iptables.parser.parse`; building a chain's rules uses :mod:`.syntax`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .rules import Chain, Rule
from .syntax import _fast_rule, _parse_spec, tokenize
from .views import ENTRY, ROW, rule_info

if TYPE_CHECKING:  # pragma: no cover
    from .syntax import _Interner


# ---------------------------------------------------------------------------------------------------
# The checked rule lines of one parse, and chains whose Rule objects are built on first use

# ROW (from views): slots per row in RuleRows.flat: chain id, target, packets, bytes, line, lineno,
# and the codes of the header, match and target infos (indexes into the _Interner's h_vals/m_vals/t_vals)


class RuleRows:
    """Every checked rule line of one parse, in input order, with no object per rule (a big dump has
    100,000 of them). While parsing, a row is :data:`ROW` slots appended to one flat list; at the
    end of the parse :meth:`seal` turns them into numpy columns, which the views read as they are
    and which the cyclic garbage collector does not walk (a list of a million references would cost
    every full collection about 0.1 s for as long as the Ruleset lives). A row belongs to the chain
    ``chains[cid]`` for as long as that chain's ``_cid`` is ``cid``; once a chain is materialised
    (or flushed) its rows here are dead."""

    __slots__ = ("flat", "cols", "chains", "cache", "_index", "_indexed")

    _DTYPES = ("intp", object, object, object, object, "int64", "intp", "intp", "intp")

    def __init__(self, cache: "_Interner"):
        self.flat: list = []
        self.cols: tuple | None = None  # after seal(): ROW numpy columns
        self.chains: list = []          # cid -> LazyChain
        self.cache = cache
        self._index = None              # cid -> row numbers (built on first use)
        self._indexed = 0               # rows of flat indexed so far

    def add_chain(self, chain: "LazyChain") -> int:
        self.chains.append(chain)
        return len(self.chains) - 1

    def seal(self) -> None:
        """The parse is over: the flat rows become numpy columns (no rows are added after this)."""
        if self.cols is not None:
            return
        import numpy as np
        flat = self.flat
        n = len(flat) // ROW
        self.cols = tuple(np.fromiter(flat[k::ROW], dtype=dt, count=n) for k, dt in enumerate(self._DTYPES))
        self.flat = []
        self._index = None

    def rows_of(self, cid: int):
        """Row numbers of chain ``cid``, in input order."""
        if self.cols is not None:
            if self._index is None:
                import numpy as np
                cids = self.cols[0]
                order = np.argsort(cids, kind="stable")
                self._index = (order, np.searchsorted(cids[order], np.arange(len(self.chains) + 1)))
            order, starts = self._index
            if cid + 1 >= len(starts):      # a chain added after the index was built has no rows
                return order[:0]
            return order[starts[cid]:starts[cid + 1]]
        # during the parse (a chain materialised by a restore command): an index that grows with the rows
        if self._index is None:
            self._index = {}
        n = len(self.flat) // ROW
        if self._indexed < n:
            index = self._index
            for k, c in enumerate(self.flat[self._indexed * ROW::ROW], self._indexed):
                rows = index.get(c)
                if rows is None:
                    index[c] = [k]
                else:
                    rows.append(k)
            self._indexed = n
        return self._index.get(cid, [])

    def rows(self, cid: int) -> list[tuple]:
        """Chain ``cid``'s rows as ``(target, packets, bytes, line, lineno, hc, mc, tc)``, in input order."""
        ks = self.rows_of(cid)
        if self.cols is not None:
            return list(zip(*[c[ks].tolist() for c in self.cols[1:]]))
        flat = self.flat
        return [tuple(flat[k * ROW + 1:k * ROW + ROW]) for k in ks]

    def entries(self, cid: int) -> list:
        """:meth:`LazyChain.view_entries` of chain ``cid``: :data:`ENTRY` slots per rule, infos decoded."""
        cache = self.cache
        hvals, mvals, tvals = cache.h_vals, cache.m_vals, cache.t_vals
        out: list = []
        for pos, (target, pk, by, line, lineno, hc, mc, tc) in enumerate(self.rows(cid), 1):
            out += (pos, target, pk, by, line, lineno, hvals[hc], mvals[mc], tvals[tc])
        return out


_SLOT_RULES = Chain.__dict__["rules"]    # the storage slot of Chain.rules (LazyChain shadows it)


class LazyChain(Chain):
    """A :class:`Chain` whose rules are rows of its parse's :class:`RuleRows` until ``rules`` is first
    used; then their Rule objects are built (they come from checked lines: this cannot fail). It
    behaves as a Chain in every other way."""

    __slots__ = ("_store", "_cid", "_infos")

    def __init__(self, table, name, policy=None, packets=None, bytes=None, rules=None, declared=True,
                 store: "RuleRows | None" = None):
        # Chain's fields, set directly (this runs once per chain: 40,000 times in a big dump)
        self.table = table
        self.name = name
        self.policy = policy
        self.packets = packets
        self.bytes = bytes
        self.declared = declared
        self._store = store
        # the chain's id in the store while its rules are rows there (the Rule list, its slot unset
        # until then, is made when they are materialised); None once materialised
        if store is not None and not rules:
            self._cid: int | None = store.add_chain(self)
        else:
            self._cid = None
            _SLOT_RULES.__set__(self, list(rules) if rules else [])
        self._infos: list | None = None     # (header, match, target) infos kept from materialising

    @property  # type: ignore[override]
    def rules(self) -> list[Rule]:
        if self._cid is not None:
            self._materialise()
        return _SLOT_RULES.__get__(self)

    @rules.setter
    def rules(self, value: list[Rule]) -> None:
        _SLOT_RULES.__set__(self, value)
        self._cid = None
        self._infos = None

    @property
    def materialised(self) -> bool:
        return self._cid is None

    def _restart(self) -> None:
        """Empty again, with new rows to come from the parse (restore input re-declaring the chain)."""
        self._infos = None
        if self._store is not None:
            self._cid = self._store.add_chain(self)
            _SLOT_RULES.__set__(self, None)
        else:
            _SLOT_RULES.__set__(self, [])

    def _materialise(self) -> None:
        store = self._store
        cid, self._cid = self._cid, None
        rules: list[Rule] = []
        _SLOT_RULES.__set__(self, rules)
        cache = store.cache
        infos = []
        table, name = self.table, self.name
        hvals, mvals, tvals = cache.h_vals, cache.m_vals, cache.t_vals
        for target, pk, by, line, lineno, hc, mc, tc in store.rows(cid):
            body = line if line[0] != "[" else line[line.index("]") + 1:].lstrip()
            rest = body.split(" ", 2)[2] if body.count(" ") >= 2 else ""
            v = _fast_rule(rest, cache) if rest else None
            pos = len(rules) + 1
            if v is None:
                spec = _parse_spec(tokenize(rest), 0, cache)
                rule = Rule(table, name, pos, spec[0], spec[1], spec[2], spec[3], spec[4], spec[5], spec[6],
                            spec[7], spec[8], spec[9], pk, by, line, lineno)
            else:
                rule = Rule(table, name, pos, v[0], v[1], v[2], v[3], v[4], None, v[5], v[6], v[7], v[8],
                            pk, by, line, lineno)
            rules.append(rule)
            infos.append((rule, hvals[hc], mvals[mc], tvals[tc]))
        self._infos = infos

    def view_entries(self) -> list:
        """The facts the views need, :data:`ENTRY` flat slots per rule: position, target, packets,
        bytes, line, lineno, header info, match info, target info. From the parse-time scan while
        the rules are not materialised; else from the Rule objects."""
        if self._cid is not None:
            return self._store.entries(self._cid)
        return rule_entries(_SLOT_RULES.__get__(self), self._infos)

    def view_rows(self) -> list[tuple]:
        """:meth:`view_entries` as one tuple per rule (for tests and debugging)."""
        flat = self.view_entries()
        return [tuple(flat[k:k + ENTRY]) for k in range(0, len(flat), ENTRY)]


def rule_entries(rules: list[Rule], rows: list | None = None) -> list:
    """:meth:`LazyChain.view_entries` for Rule objects (``rows``: infos kept from materialising)."""
    out: list = []
    if rows is not None and len(rows) == len(rules) and all(r[0] is x for r, x in zip(rows, rules)):
        for r, h, m, t in rows:
            out += (r.position, r.target, r.packets, r.bytes, r.line, r.lineno, h, m, t)
        return out
    for r in rules:
        out += (r.position, r.target, r.packets, r.bytes, r.line, r.lineno) + rule_info(r)
    return out
