"""Read nft's three forms into :class:`~k8slab.netfilter.nft.model.NftRuleset`.

- ``nft list ruleset`` text (tabs, braces, ``elements = { ... }`` over several lines, ``# handle N``
  with ``-a``, ``counter packets N bytes M``);
- ``nft -j list ruleset`` JSON (libnftables' schema: ``{"nftables": [{"table": ...}, {"rule": ...}]}``);
- ``nft -f`` transactions as kube-proxy (knftables) writes them: ``add|create|insert|flush|delete``
  ``table/chain/set/map/element/rule`` one command a line, ``#`` comments.

Malformed input raises :class:`k8slab.errors.ParseError` once, naming the line.
"""
from __future__ import annotations

import json
import re

from ...errors import ParseError
from .model import FAMILIES, Chain, Element, NftRuleset, Rule, Set, Table, parse_priority

_WORD = r"[A-Za-z0-9_./:\-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'


def detect_form(text: str) -> str:
    s = text.lstrip()
    if s.startswith("{") or s.startswith("["):
        return "json"
    for line in text.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if re.match(r"(add|create|insert|replace|flush|delete|destroy)\s", t):
            return "transaction"
        if re.match(r"table\s", t):
            return "ruleset"
        raise ParseError("neither `nft list ruleset` text, nft JSON, nor an `nft -f` transaction",
                         text.splitlines().index(line) + 1, line)
    return "ruleset"


def parse_nft(text: str, form: str | None = None) -> NftRuleset:
    """Parse any of the three forms (``form`` forces one)."""
    form = form or detect_form(text)
    if form == "json":
        return _parse_json(text)
    if form == "transaction":
        return _parse_transaction(text)
    if form == "ruleset":
        return _parse_listing(text)
    raise ValueError(f"unknown nft form {form!r}")


# --- shared helpers ---------------------------------------------------------------------------

def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside braces and quotes."""
    out, depth, cur, q = [], 0, [], False
    for ch in text:
        if ch == '"':
            q = not q
        elif not q and ch == "{":
            depth += 1
        elif not q and ch == "}":
            depth -= 1
        if ch == sep and depth == 0 and not q:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def _unquote(s: str) -> str:
    return s[1:-1].replace('\\"', '"') if s.startswith('"') else s


def _parse_elements(body: str, is_map: bool) -> list[Element]:
    """``a . b : goto x, c comment "y" : drop`` -> Elements."""
    out = []
    for item in _split_top(body):
        if not item:
            continue
        key, value = item, None
        if is_map:
            m = re.match(rf"^((?:[^:\"]|{_QUOTED})*?)\s:\s(.*)$", item)
            if not m:
                raise ValueError(f"map element without ' : ': {item!r}")
            key, value = m.group(1).strip(), m.group(2).strip()
        comment = None
        m = re.search(rf"\s+comment\s+({_QUOTED})\s*$", key)
        if m:
            comment = _unquote(m.group(1))
            key = key[: m.start()].strip()
        key = re.sub(r"\s+", " ", key)
        out.append(Element(key=key, value=value, comment=comment))
    return out


def _split_rule(expr: str) -> tuple[str, str | None, int | None, int | None, int | None]:
    """rule text -> (expr, comment, packets, bytes, handle)."""
    handle = None
    m = re.search(r"\s*#\s*handle\s+(\d+)\s*$", expr)
    if m:
        handle = int(m.group(1))
        expr = expr[: m.start()]
    comment = None
    m = re.search(rf"\s+comment\s+({_QUOTED})\s*$", expr)
    if m:
        comment = _unquote(m.group(1))
        expr = expr[: m.start()]
    packets = nbytes = None
    m = re.search(r"\bcounter\s+packets\s+(\d+)\s+bytes\s+(\d+)", expr)
    if m:
        packets, nbytes = int(m.group(1)), int(m.group(2))
    return expr.strip(), comment, packets, nbytes, handle


def _props(body: str) -> dict[str, str]:
    """``type filter hook input priority 0 ; policy accept ; comment "x" ;`` -> properties."""
    props: dict[str, str] = {}
    for part in _split_top(body, ";"):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"type\s+(\S+)\s+hook\s+(\S+)(?:\s+device\s+(\S+))?\s+priority\s+(.+)$", part)
        if m:
            props.update(type=m.group(1), hook=m.group(2), priority=m.group(4).strip())
            if m.group(3):
                props["device"] = _unquote(m.group(3))
            continue
        m = re.match(r"(\w[\w-]*)\s+(.*)$", part, re.S)
        if not m:
            props[part] = ""
            continue
        props[m.group(1)] = m.group(2).strip()
    return props


def _set_from_props(fam: str, table: str, name: str, kind: str, props: dict[str, str], line: int) -> Set:
    ty = props.get("type") or props.get("typeof")
    if not ty:
        raise ValueError(f"{kind} {name} has no type")
    map_type = None
    if kind == "map":
        if " : " not in ty:
            raise ValueError(f"map {name}: type needs 'KEY : VALUE'")
        ty, map_type = (x.strip() for x in ty.rsplit(" : ", 1))
    flags = tuple(f.strip() for f in props.get("flags", "").split(",") if f.strip())
    s = Set(fam, table, name, ty, map_type, flags=flags, timeout=props.get("timeout"),
            size=int(props["size"]) if "size" in props else None,
            comment=_unquote(props["comment"]) if "comment" in props else None, lineno=line)
    if "elements" in props:
        s.elements = _parse_elements(props["elements"].strip().lstrip("=").strip().strip("{}"), s.is_map)
    return s


def _chain_from_props(fam: str, table: str, name: str, props: dict[str, str], line: int) -> Chain:
    c = Chain(fam, table, name, lineno=line)
    if "hook" in props:
        c.type, c.hook = props["type"], props["hook"]
        c.priority = parse_priority(props["priority"])
        c.policy = props.get("policy")
        c.device = props.get("device")
    if "comment" in props:
        c.comment = _unquote(props["comment"])
    return c


class _Builder:
    def __init__(self, source: str):
        self.rs = NftRuleset(source=source)

    def table(self, fam: str, name: str, create: bool = True) -> Table:
        t = self.rs.table(fam, name)
        if t is None:
            if not create:
                raise ValueError(f"no table {fam} {name}")
            t = Table(fam, name)
            self.rs.tables.append(t)
        return t


# --- transaction form ---------------------------------------------------------------------------

_OBJ = re.compile(rf"^(add|create|insert|replace|flush|delete|destroy)\s+(table|chain|set|map|element|rule)\s+"
                  rf"(?:({'|'.join(FAMILIES)})\s+)?(\S+)(?:\s+(.*))?$")


def _parse_transaction(text: str) -> NftRuleset:
    b = _Builder("transaction")
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            m = _OBJ.match(line)
            if not m:
                raise ValueError("not an nft command (add|insert|flush|delete table|chain|set|map|element|rule ...)")
            verb, what, fam, tname, rest = m.group(1), m.group(2), m.group(3) or "ip", m.group(4), m.group(5) or ""
            if what == "table":
                if verb in ("delete", "destroy"):
                    b.rs.tables = [t for t in b.rs.tables if t.key != (fam, tname)]
                    continue
                t = b.table(fam, tname)
                if verb == "flush":
                    for c in t.chains.values():
                        c.rules.clear()
                    continue
                body = re.match(r"^\{(.*)\}$", rest.strip())
                if body:
                    p = _props(body.group(1))
                    if "comment" in p:
                        t.comment = _unquote(p["comment"])
                    if "flags" in p:
                        t.flags = tuple(x.strip() for x in p["flags"].split(","))
                elif rest.strip():
                    raise ValueError(f"unexpected {rest!r} after the table name")
                continue
            t = b.table(fam, tname, create=verb not in ("delete", "destroy", "flush"))
            m2 = re.match(r"^(\S+)\s*(.*)$", rest)
            if not m2:
                raise ValueError(f"{what} needs a name")
            name, tail = m2.group(1), m2.group(2).strip()
            if what == "chain":
                if verb in ("delete", "destroy"):
                    t.chains.pop(name, None)
                elif verb == "flush":
                    if name in t.chains:
                        t.chains[name].rules.clear()
                else:
                    body = re.match(r"^\{(.*)\}$", tail)
                    if tail and not body:
                        raise ValueError(f"unexpected {tail!r} after the chain name")
                    c = _chain_from_props(fam, tname, name, _props(body.group(1)) if body else {}, n)
                    old = t.chains.get(name)
                    if old is None or c.hook or c.comment:
                        if old is not None:
                            c.rules = old.rules
                        t.chains[name] = c
            elif what in ("set", "map"):
                if verb in ("delete", "destroy"):
                    t.sets.pop(name, None)
                elif verb == "flush":
                    if name in t.sets:
                        t.sets[name].elements.clear()
                elif name not in t.sets:
                    body = re.match(r"^\{(.*)\}$", tail)
                    if not body:
                        raise ValueError(f"{what} {name} needs {{ type ... ; }}")
                    t.sets[name] = _set_from_props(fam, tname, name, what, _props(body.group(1)), n)
            elif what == "element":
                s = t.sets.get(name)
                if s is None:
                    raise ValueError(f"no set or map {name!r} in table {fam} {tname}")
                body = re.match(r"^\{(.*)\}$", tail)
                if not body:
                    raise ValueError("elements must be in { ... }")
                elems = _parse_elements(body.group(1), s.is_map and verb not in ("delete", "destroy"))
                if verb in ("delete", "destroy"):
                    keys = {e.key for e in elems}
                    s.elements = [e for e in s.elements if e.key not in keys]
                else:
                    have = {e.key for e in s.elements}
                    s.elements.extend(e for e in elems if e.key not in have)
            elif what == "rule":
                c = t.chains.get(name)
                if c is None:
                    raise ValueError(f"no chain {name!r} in table {fam} {tname}")
                if verb in ("delete", "destroy", "replace"):
                    raise ValueError(f"{verb} rule (by handle) is not supported in a transaction here")
                if not tail:
                    raise ValueError("a rule needs an expression")
                expr, comment, pk, by, h = _split_rule(tail)
                r = Rule(fam, tname, name, expr, comment, pk, by, h, lineno=n)
                if verb == "insert":
                    c.rules.insert(0, r)
                else:
                    c.rules.append(r)
        except ValueError as e:
            raise ParseError(str(e), n, raw) from None
    return b.rs


# --- listing form ---------------------------------------------------------------------------

def _parse_listing(text: str) -> NftRuleset:
    b = _Builder("ruleset")
    lines = text.splitlines()
    i = 0
    table: Table | None = None
    obj = None              # ("chain", Chain) | ("set", kind, name, props, start)
    while i < len(lines):
        n, raw = i + 1, lines[i]
        line = raw.strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        try:
            if table is None:
                m = re.match(rf"^table\s+(?:({'|'.join(FAMILIES)})\s+)?(\S+)\s*\{{$", line)
                if not m:
                    raise ValueError("expected 'table FAMILY NAME {'")
                table = b.table(m.group(1) or "ip", m.group(2))
                continue
            if obj is None:
                if line == "}":
                    table = None
                    continue
                m = re.match(r"^(chain|set|map)\s+(\S+)\s*\{$", line)
                if m:
                    if m.group(1) == "chain":
                        c = Chain(table.family, table.name, m.group(2), lineno=n)
                        table.chains[c.name] = c
                        obj = ("chain", c)
                    else:
                        obj = ("set", m.group(1), m.group(2), {}, n)
                    continue
                m = re.match(rf"^comment\s+({_QUOTED})$", line)
                if m:
                    table.comment = _unquote(m.group(1))
                    continue
                m = re.match(r"^flags\s+(.+)$", line)
                if m:
                    table.flags = tuple(x.strip() for x in m.group(1).split(","))
                    continue
                raise ValueError("expected chain, set, map, comment or '}' inside a table")
            if obj[0] == "chain":
                c = obj[1]
                if line == "}":
                    obj = None
                    continue
                m = re.match(r"^type\s+\S+\s+hook\s+.*;", line)
                if m and not c.rules:
                    line = re.sub(r"\s*#\s*handle\s+\d+\s*$", "", line)
                    p = _props(line)
                    c.type, c.hook, c.priority = p["type"], p["hook"], parse_priority(p["priority"])
                    c.policy, c.device = p.get("policy"), p.get("device")
                    continue
                m = re.match(rf"^comment\s+({_QUOTED})$", line)
                if m and not c.rules:
                    c.comment = _unquote(m.group(1))
                    continue
                # a rule; an anonymous set may run over several lines
                while line.count("{") > line.count("}") and i < len(lines):
                    line += " " + lines[i].strip()
                    i += 1
                expr, comment, pk, by, h = _split_rule(line)
                c.rules.append(Rule(c.family, c.table, c.name, expr, comment, pk, by, h, lineno=n))
                continue
            # set / map body
            _, kind, name, props, start = obj
            if line == "}":
                table.sets[name] = _set_from_props(table.family, table.name, name, kind, props, start)
                obj = None
                continue
            m = re.match(r"^elements\s*=\s*\{(.*)$", line)
            if m:
                body = m.group(1)
                while body.count("{") + 1 > body.count("}") and i < len(lines):
                    body += " " + lines[i].strip()
                    i += 1
                if not body.rstrip().endswith("}"):
                    raise ValueError("unterminated elements = { ... }")
                props["elements"] = body.rstrip()[:-1]
                continue
            line = re.sub(r"\s*#\s*handle\s+\d+\s*$", "", line)
            for k, v in _props(line).items():
                props[k] = v
        except (ValueError, KeyError) as e:
            raise ParseError(str(e), n, raw) from None
    if obj is not None or table is not None:
        raise ParseError("unterminated block: missing '}'", len(lines), lines[-1] if lines else "")
    return b.rs


# --- JSON form ----------------------------------------------------------------------------------

def _jval(v) -> str:
    """A JSON expression value -> nft words."""
    if isinstance(v, (str, int)):
        return str(v)
    if isinstance(v, list):
        return "{ " + ", ".join(_jval(x) for x in v) + " }"
    if not isinstance(v, dict):
        raise ValueError(f"unexpected value {v!r}")
    (k, a), = v.items() if len(v) == 1 else (next(iter(v.items())),)
    if k == "payload":
        if "protocol" in a:
            return f"{a['protocol']} {a['field']}"
        return f"@{a['base']},{a['offset']},{a['len']}"
    if k == "meta":
        return f"meta {a['key']}"
    if k == "ct":
        return f"ct {a['key']}" if "dir" not in a else f"ct {a['dir']} {a['key']}"
    if k == "concat":
        return " . ".join(_jval(x) for x in a)
    if k == "set":
        items = a if isinstance(a, list) else [a]
        return "{ " + ", ".join(_jelem(x) for x in items) + " }"
    if k == "prefix":
        return f"{_jval(a['addr'])}/{a['len']}"
    if k == "range":
        return f"{_jval(a[0])}-{_jval(a[1])}"
    if k == "numgen":
        off = f" offset {a['offset']}" if a.get("offset") else ""
        return f"numgen {a['mode']} mod {a['mod']}{off}"
    if k == "fib":
        r = a["result"]
        return f"fib {' . '.join(a['flags'])} {r}"
    if k in ("&", "|", "^", "<<", ">>"):
        left, right = _jval(a[0]), a[1]
        if re.match(r"^(meta|ct) mark$", left) and isinstance(right, int):
            return f"{left} {k} 0x{right:08x}"
        return f"{left} {k} {_jval(right)}"
    if k in ("goto", "jump"):
        return f"{k} {a['target']}"
    if k in ("accept", "drop", "return", "continue"):
        return k
    if k == "elem":
        return _jelem(v)
    raise ValueError(f"unsupported JSON expression {k!r}")


def _jelem(x) -> str:
    if isinstance(x, list):       # [key, value] of a map
        return f"{_jelem(x[0])} : {_jval(x[1])}"
    if isinstance(x, dict) and "elem" in x:
        e = x["elem"]
        s = _jval(e["val"])
        if "timeout" in e:
            s += f" timeout {e['timeout']}s"
        if "comment" in e:
            s += f' comment "{e["comment"]}"'
        return s
    return _jval(x)


def _jstmt(s: dict) -> str:
    (k, a), = s.items()
    if k == "match":
        op = a.get("op", "==")
        left, right = _jval(a["left"]), _jval(a["right"])
        if isinstance(a["left"], dict) and re.match(r"^(meta|ct) mark\b", left) and isinstance(a["right"], int):
            right = f"0x{a['right']:08x}"
        if op == "in" or (op == "==" and not any(o in left for o in (" & ", " | ", " ^ "))):
            return f"{left} {right}"
        return f"{left} {op} {right}"
    if k == "counter":
        return f"counter packets {a['packets']} bytes {a['bytes']}" if a else "counter"
    if k in ("accept", "drop", "return", "continue"):
        return k
    if k in ("jump", "goto"):
        return f"{k} {a['target']}"
    if k == "reject":
        if not a:
            return "reject"
        if (a.get("type"), a.get("expr")) in (("icmp", "port-unreachable"), ("icmpv6", "port-unreachable"),
                                               ("icmpx", "port-unreachable")):
            return "reject"     # each family's default, which `nft list` prints as plain "reject"
        return f"reject with {a['type']} {a['expr']}" if "expr" in a else f"reject with {a['type']}"
    if k in ("dnat", "snat"):
        to = _jval(a["addr"]) + (f":{_jval(a['port'])}" if "port" in a else "")
        return f"{k} to {to}"
    if k == "masquerade":
        fl = a.get("flags") if a else None
        fl = [fl] if isinstance(fl, str) else (fl or [])
        return "masquerade" + (f" {','.join(fl)}" if fl else "")
    if k == "mangle":
        return f"{_jval(a['key'])} set {_jval(a['value'])}"
    if k == "vmap":
        return f"{_jval(a['key'])} vmap {_jval(a['data'])}"
    if k == "set" and isinstance(a, dict):
        return f"{a['op']} {a['set']} {{ {_jval(a['elem'])} }}"
    if k == "xt":
        return f"xt {a.get('type', '')} {a.get('name', '')}".strip()
    raise ValueError(f"unsupported JSON statement {k!r}")


def _parse_json(text: str) -> NftRuleset:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"invalid JSON: {e.msg}", e.lineno, text.splitlines()[e.lineno - 1] if text else "") from None
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ParseError('expected {"nftables": [...]} (nft -j list ruleset)', 1, text.splitlines()[0] if text else "")
    b = _Builder("json")
    for idx, item in enumerate(items):
        try:
            (kind, o), = item.items()
            if kind == "metainfo":
                continue
            if kind == "table":
                t = b.table(o["family"], o["name"])
                t.comment = o.get("comment")
                continue
            t = b.table(o["family"], o["table"])
            if kind == "chain":
                c = Chain(o["family"], o["table"], o["name"], comment=o.get("comment"))
                if "hook" in o:
                    c.type, c.hook, c.priority, c.policy = o["type"], o["hook"], int(o["prio"]), o.get("policy")
                    c.device = o.get("dev")
                old = t.chains.get(c.name)
                if old:
                    c.rules = old.rules
                t.chains[c.name] = c
            elif kind in ("set", "map"):
                ty = o["type"]
                ty = " . ".join(ty) if isinstance(ty, list) else ty
                fl = o.get("flags") or []
                s = Set(o["family"], o["table"], o["name"], ty, o.get("map") if kind == "map" else None,
                        flags=tuple([fl] if isinstance(fl, str) else fl),
                        timeout=f"{o['timeout']}s" if "timeout" in o else None, size=o.get("size"),
                        comment=o.get("comment"))
                for e in o.get("elem", []):
                    text_e = _jelem(e)
                    s.elements.extend(_parse_elements(text_e, s.is_map))
                t.sets[s.name] = s
            elif kind == "rule":
                c = t.chains.get(o["chain"])
                if c is None:
                    c = t.chains[o["chain"]] = Chain(o["family"], o["table"], o["chain"])
                expr = " ".join(_jstmt(s) for s in o["expr"])
                e2, _, pk, by, _ = _split_rule(expr)
                c.rules.append(Rule(o["family"], o["table"], o["chain"], e2, o.get("comment"), pk, by,
                                    o.get("handle"), lineno=idx + 1))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ParseError(f"nftables[{idx}]: {e}", None, json.dumps(item)[:200]) from None
    return b.rs
