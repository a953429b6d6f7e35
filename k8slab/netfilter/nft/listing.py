"""Print an :class:`NftRuleset` as ``nft list ruleset`` does (nftables 1.0.x), and the words nft
prints back for the ones a transaction may use (:func:`canonical`).

What nft changes when it lists a rule it loaded, as the kernel round trip in
tests/test_nft_render.py observes it:

- ``mark set mark or 0x4000`` -> ``meta mark set meta mark | 0x00004000`` (``and``/``xor``: ``&``/``^``;
  marks printed ``0x%08x``; ``mark and M == 0`` -> ``meta mark & M == 0x00000000``);
- an anonymous set of one element loses its braces (``ip daddr { 10.0.0.0/8 }`` -> ``ip daddr 10.0.0.0/8``);
  elements of anonymous sets are separated by ``, `` (kube-proxy writes `` , ``);
- set/map timeouts in the largest units (``10800s`` -> ``3h``); a dynamic set gets ``size 65535``;
- priorities by name when within 10 of a standard one that the hook allows (``dstnat - 10``,
  ``filter``, ``srcnat``), else the number; base chains print ``policy accept`` by default;
- named set elements sorted as nft sorts them (by value; a concatenation by its register bytes read
  as one little-endian number) and wrapped: maps and sets with comments or timeouts one per line, sets
  of addresses two per line, of numbers/protocols/services five.
"""
from __future__ import annotations

import ipaddress
import re

from .model import STD_PRIOS, Chain, NftRuleset, Set, Table

_NAT_ONLY = {"dstnat": ("prerouting",), "srcnat": ("postrouting",)}
_INT_TYPES = {"inet_proto", "inet_service", "mark", "integer", "nf_proto", "ifname", "iface_index",
              "classid", "uid", "gid", "ct_dir", "tcp_flag", "arp_op", "dccp_pkttype"}
_NEWLINE = ",\n\t\t\t     "


def prio_text(prio: int, family: str, hook: str | None) -> str:
    """nftables src/rule.c prio2str for the ip/ip6/inet families."""
    for name, val in STD_PRIOS.items():
        if name in _NAT_ONLY and hook not in _NAT_ONLY[name]:
            continue
        off = prio - val
        if abs(off) <= 10:
            return name if off == 0 else f"{name} {'+' if off > 0 else '-'} {abs(off)}"
    return str(prio)


def timeout_text(t: str) -> str:
    m = re.fullmatch(r"(\d+)s", t.strip())
    if not m:
        return t
    secs = int(m.group(1))
    out = ""
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if secs >= n:
            out += f"{secs // n}{unit}"
            secs %= n
    return out or "0s"


def _mark(v: str) -> str:
    return f"0x{int(v, 0):08x}" if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", v) else v


def _anon_set(m: re.Match) -> str:
    body = m.group(2)
    items = [x.strip() for x in _split_commas(body)]
    if len(items) == 1 and " : " not in items[0]:
        return items[0]
    return "{ " + ", ".join(items) + " }"


def _split_commas(body: str) -> list[str]:
    return [x for x in (p.strip() for p in body.split(",")) if x]


def canonical(expr: str) -> str:
    """A rule's words as ``nft list`` prints them back (see the module's list)."""
    e = re.sub(r"\s+", " ", expr.strip())
    e = re.sub(r"(?<![\w/.@-])(?<!meta )(?<!ct )mark(?![\w/.-])", "meta mark", e)
    ops = {"or": "|", "and": "&", "xor": "^"}
    e = re.sub(r"\b(meta mark|ct mark) (or|and|xor) (\S+)", lambda m: f"{m.group(1)} {ops[m.group(2)]} {_mark(m.group(3))}", e)
    e = re.sub(r"\b(meta mark|ct mark) ([&|^]) (\S+)", lambda m: f"{m.group(1)} {m.group(2)} {_mark(m.group(3))}", e)
    e = re.sub(r"(meta mark [&|^] 0x[0-9a-f]{8}) == (\S+)", lambda m: f"{m.group(1)} == {_mark(m.group(2))}", e)
    e = re.sub(r"(?<!@)(\S+ )\{ ([^{}]*) \}", lambda m: m.group(1) + _anon_set(m) if not m.group(1).startswith("@")
               else m.group(0), e)
    return e


def _elem_sort_key(s: Set, key: str) -> bytes:
    """The key as nft orders it: a single field by its value; a concatenation by its register bytes
    (big-endian fields, each padded to 4 bytes) read as one little-endian number, as the kernel test
    observes (``1.2.3.4 . tcp . 80`` before ``172.30.0.41 . tcp . 80``: last address byte first)."""
    types = s.type.split(" . ")
    if len(types) == 1:
        return _field_bytes(types[0].strip(), key.strip())
    parts = [p.strip() for p in key.split(" . ")]
    data = b""
    for ty, v in zip(types, parts):
        raw = _field_bytes(ty.strip(), v)
        data += raw + b"\0" * (-len(raw) % 4)
    return data[::-1]


_PROTOS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}


def _field_bytes(ty: str, v: str) -> bytes:
    v = v.split("/")[0].split("-")[0]
    try:
        if ty in ("ipv4_addr", "ipv6_addr"):
            return ipaddress.ip_address(v).packed
        if ty == "inet_proto":
            return bytes([_PROTOS.get(v, int(v) if v.isdigit() else 0)])
        if ty == "inet_service":
            return int(v).to_bytes(2, "big")
        if ty in ("mark", "integer"):
            return int(v, 0).to_bytes(4, "little")
    except ValueError:
        pass
    return v.encode()


def _elements(s: Set) -> str:
    items = sorted(s.elements, key=lambda e: _elem_sort_key(s, e.key))
    words = []
    for e in items:
        w = e.key + (f' comment "{e.comment}"' if e.comment else "")
        if e.value is not None:
            w += f" : {e.value}"
        words.append(w)
    one_per_line = s.is_map or any(e.comment for e in s.elements) or s.timeout or "timeout" in s.flags
    per_line = 1 if one_per_line else (5 if s.type in _INT_TYPES else 2)
    out = ""
    for i, w in enumerate(words):
        if i:
            out += _NEWLINE if i % per_line == 0 else ", "
        out += w
    return "{ " + out + " }"


def _set_text(s: Set) -> list[str]:
    kind = "map" if s.is_map else "set"
    lines = [f"\t{kind} {s.name} {{", f"\t\ttype {s.type}" + (f" : {s.map_type}" if s.is_map else "")]
    size = s.size if s.size is not None else (65535 if "dynamic" in s.flags else None)
    if size is not None:
        lines.append(f"\t\tsize {size}")
    if s.flags:
        lines.append(f"\t\tflags {','.join(s.flags)}")
    if s.timeout:
        lines.append(f"\t\ttimeout {timeout_text(s.timeout)}")
    if s.comment:
        lines.append(f'\t\tcomment "{s.comment}"')
    if s.elements:
        lines.append(f"\t\telements = {_elements(s)}")
    lines.append("\t}")
    return lines


def _chain_text(c: Chain) -> list[str]:
    lines = [f"\tchain {c.name} {{"]
    if c.comment:
        lines.append(f'\t\tcomment "{c.comment}"')
    if c.is_base:
        dev = f' device "{c.device}"' if c.device else ""
        lines.append(f"\t\ttype {c.type} hook {c.hook}{dev} priority {prio_text(c.priority or 0, c.family, c.hook)}; "
                     f"policy {c.policy or 'accept'};")
    for r in c.rules:
        lines.append(f"\t\t{canonical(r.expr)}" + (f' comment "{r.comment}"' if r.comment else ""))
    lines.append("\t}")
    return lines


def _table_text(t: Table) -> list[str]:
    lines = [f"table {t.family} {t.name} {{"]
    if t.flags:
        lines.append(f"\tflags {','.join(t.flags)}")
    if t.comment:
        lines.append(f'\tcomment "{t.comment}"')
    blocks = [_set_text(s) for s in t.sets.values()] + [_chain_text(c) for c in t.chains.values()]
    for i, bl in enumerate(blocks):
        if i:
            lines.append("")
        lines.extend(bl)
    lines.append("}")
    return lines


def list_ruleset(rs: NftRuleset) -> str:
    """``nft list ruleset`` for this ruleset, chains and sets in the order they were added."""
    return "".join("\n".join(_table_text(t)) + "\n" for t in rs.tables)


def loadable(transaction: str) -> str:
    """A transaction ``nft -f`` accepts in one go: the ``add table/chain/set/map`` commands first, in
    their order, then the rest in theirs. kube-proxy's own transaction adds every chain (ensureChain)
    before the rules that name it; the test's layout (nft-overall.nft) names endpoint chains in vmaps
    before it adds them, which nft refuses ("No such file or directory")."""
    lines = transaction.splitlines()
    decl = re.compile(r"^(add|create)\s+(table|chain|set|map)\s")
    first = [ln for ln in lines if decl.match(ln.strip())]
    rest = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#") and not decl.match(ln.strip())]
    return "\n".join(first + rest) + "\n"
