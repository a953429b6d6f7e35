"""Rules as the components write them, and the same rules as ``iptables-save`` prints them back.

A component (kube-proxy, the portmap plugin, kindnet, Docker) hands iptables an argv such as
``-m comment --comment "ns/svc:p cluster IP" -m tcp -p tcp -d 10.96.0.10 --dport 53 -j KUBE-SVC-X``.
The kernel keeps a structure, not the text, so ``iptables-save`` prints it in its own normal form:
IP-header fields first (``-s -d -i -o -p``, host addresses with ``/32``), then each match with its
options in the extension's own order, then the target with normalised options (``--or-mark`` becomes
``--set-xmark``, probabilities the 2^31 fixed point with 11 decimals, REJECT gains ``--reject-with``).

:func:`save_tokens` is that normalisation; :func:`render_tables` prints whole tables in either form.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from ..netfilter.rules import BUILTIN_CHAINS

TABLE_ORDER_SAVE = ("raw", "mangle", "filter", "nat", "security")


@dataclass(frozen=True)
class IptRule:
    """One ``-A CHAIN args...`` line; ``args`` are the writer's tokens, unquoted (a comment is one token)."""
    chain: str
    args: tuple[str, ...]

    def restore(self) -> str:
        return restore_line(self)

    def save(self) -> str:
        return save_line(self)


@dataclass
class Table:
    """One table of a restore file: chain declarations in the writer's order, then its rules in order."""
    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[IptRule] = field(default_factory=list)
    policies: dict[str, str] = field(default_factory=dict)   # built-in chain -> policy

    def declare(self, *chains: str) -> None:
        known = set(self.chains)
        for c in chains:
            if c not in known:
                known.add(c)
                self.chains.append(c)

    def add(self, chain: str, *args: str) -> IptRule:
        rule = IptRule(chain, tuple(str(a) for a in args))
        self.rules.append(rule)
        return rule

    def rules_by_chain(self) -> dict[str, list[IptRule]]:
        """Every chain's rules in write order, grouped in one pass."""
        grouped: dict[str, list[IptRule]] = {}
        for r in self.rules:
            grouped.setdefault(r.chain, []).append(r)
        return grouped


def merge_tables(*groups: Iterable[Table]) -> list[Table]:
    """Tables of several writers combined per table name (declarations and rules in order)."""
    out: dict[str, Table] = {}
    for group in groups:
        for t in group:
            dst = out.setdefault(t.name, Table(t.name))
            dst.declare(*t.chains)
            dst.rules.extend(t.rules)
            dst.policies.update(t.policies)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# quoting

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def _xtables_quote(text: str) -> str:
    """``xtables_save_string``: quote unless only [A-Za-z0-9_-]; escape ``"``, ``\\`` and ``'``."""
    if _SAFE.match(text):
        return text
    return '"' + re.sub(r'(["\\\'])', r"\\\1", text) + '"'


def _restore_quote(token: str) -> str:
    """How the writers pass a token to iptables-restore: quoted only if it holds a blank or a quote."""
    if token == "" or re.search(r'[\s"\'\\]', token):
        return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return token


def restore_line(rule: IptRule) -> str:
    return " ".join(["-A", rule.chain] + [_restore_quote(t) for t in rule.args])


# --------------------------------------------------------------------------------------------
# the kernel's normal form

_MATCH_OPTIONS = {
    "tcp": {"--dport", "--sport", "--destination-port", "--source-port", "--tcp-flags", "--syn", "--tcp-option"},
    "udp": {"--dport", "--sport", "--destination-port", "--source-port"},
    "sctp": {"--dport", "--sport", "--destination-port", "--source-port"},
    "multiport": {"--dports", "--sports", "--ports", "--destination-ports", "--source-ports"},
    "comment": {"--comment"},
    "addrtype": {"--src-type", "--dst-type", "--limit-iface-in", "--limit-iface-out"},
    "statistic": {"--mode", "--probability", "--every", "--packet"},
    "recent": {"--name", "--set", "--rcheck", "--update", "--remove", "--seconds", "--reap", "--hitcount",
               "--rttl", "--mask", "--rsource", "--rdest"},
    "mark": {"--mark"},
    "conntrack": {"--ctstate", "--ctproto", "--ctorigsrc", "--ctorigdst", "--ctstatus", "--ctdir"},
    "nfacct": {"--nfacct-name"},
}
_ALIASES = {"--destination-port": "--dport", "--source-port": "--sport",
            "--destination-ports": "--dports", "--source-ports": "--sports"}
_FLAG_OPTIONS = {"--set", "--rcheck", "--update", "--remove", "--reap", "--rttl", "--rsource", "--rdest",
                 "--syn", "--random-fully", "--random", "--persistent"}
_HEADER = {"-s": "s", "--source": "s", "-d": "d", "--destination": "d", "-i": "i", "--in-interface": "i",
           "-o": "o", "--out-interface": "o", "-p": "p", "--protocol": "p"}
_CT_STATES = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")


@dataclass
class _Opt:
    name: str
    values: list[str]
    negated: bool = False


@dataclass
class _Match:
    module: str
    opts: list[_Opt] = field(default_factory=list)


def _addr(value: str) -> str:
    net = ipaddress.ip_network(value, strict=False)
    return f"{net.network_address}/{net.prefixlen}"


def _hex(v: str) -> int:
    return int(v, 16) if v.lower().startswith("0x") else int(v)


def _mark_pair(text: str, default_mask: int = 0xFFFFFFFF) -> tuple[int, int]:
    if "/" in text:
        a, b = text.split("/", 1)
        return _hex(a), _hex(b)
    return _hex(text), default_mask


def _parse(args: tuple[str, ...]):
    header: dict[str, tuple[str, bool]] = {}
    matches: list[_Match] = []
    target: str | None = None
    goto = False
    target_opts: list[str] = []
    neg = False
    i = 0
    n = len(args)
    while i < n:
        t = args[i]
        if t == "!":
            neg = True
            i += 1
            continue
        if t in _HEADER:
            header[_HEADER[t]] = (args[i + 1], neg)
            neg = False
            i += 2
            continue
        if t == "-m" or t == "--match":
            matches.append(_Match(args[i + 1]))
            i += 2
            continue
        if t in ("-j", "--jump", "-g", "--goto"):
            target = args[i + 1]
            goto = t in ("-g", "--goto")
            target_opts = list(args[i + 2:])
            break
        if t.startswith("--"):
            values = []
            j = i + 1
            if t not in _FLAG_OPTIONS:
                while j < n and not (args[j].startswith("-") and not re.match(r"^-\d", args[j])) and args[j] != "!":
                    values.append(args[j])
                    j += 1
            owner = None
            for m in reversed(matches):
                if t in _MATCH_OPTIONS.get(m.module, ()):
                    owner = m
                    break
            if owner is None:
                proto = header.get("p", ("", False))[0].lower()
                if proto in ("tcp", "udp", "sctp") and t in _MATCH_OPTIONS[proto]:
                    owner = _Match(proto)      # loaded implicitly by -p
                    matches.append(owner)
                else:
                    raise ValueError(f"option {t} belongs to no match in {' '.join(args)!r}")
            owner.opts.append(_Opt(_ALIASES.get(t, t), values, neg))
            neg = False
            i = j
            continue
        raise ValueError(f"unexpected token {t!r} in {' '.join(args)!r}")
    return header, matches, target, goto, target_opts


def _neg(o: _Opt) -> list[str]:
    return ["!"] if o.negated else []


def _save_match(m: _Match) -> list[str]:
    out = ["-m", m.module]
    by = {o.name: o for o in m.opts}
    mod = m.module
    if mod in ("tcp", "udp", "sctp"):
        for name in ("--sport", "--dport", "--tcp-flags", "--syn"):
            if name in by:
                out += _neg(by[name]) + [name] + by[name].values
    elif mod == "multiport":
        for o in m.opts:
            out += _neg(o) + [o.name] + o.values
    elif mod == "comment":
        out += ["--comment", _xtables_quote(" ".join(by["--comment"].values))]
    elif mod == "addrtype":
        for name in ("--src-type", "--dst-type"):
            if name in by:
                out += _neg(by[name]) + [name] + by[name].values
        for name in ("--limit-iface-in", "--limit-iface-out"):
            if name in by:
                out += [name]
    elif mod == "statistic":
        mode = by["--mode"].values[0]
        out += ["--mode", mode]
        if "--probability" in by:
            p = float(by["--probability"].values[0])
            fixed = round(p * 0x80000000)
            out += _neg(by["--probability"]) + ["--probability", f"{fixed / 0x80000000:.11f}"]
        if "--every" in by:
            out += _neg(by["--every"]) + ["--every", by["--every"].values[0]]
    elif mod == "recent":
        neg = any(o.negated for o in m.opts)
        flags = []
        for name in ("--rcheck", "--set", "--update", "--remove"):
            if name in by:
                flags.append(name)
        out += (["!"] if neg else []) + flags
        if "--seconds" in by:
            out += ["--seconds", by["--seconds"].values[0]]
        if "--reap" in by:
            out += ["--reap"]
        if "--hitcount" in by:
            out += ["--hitcount", by["--hitcount"].values[0]]
        if "--rttl" in by:
            out += ["--rttl"]
        out += ["--name", by["--name"].values[0] if "--name" in by else "DEFAULT"]
        out += ["--mask", by["--mask"].values[0] if "--mask" in by else "255.255.255.255"]
        out += ["--rdest"] if "--rdest" in by else ["--rsource"]
    elif mod == "mark":
        v, msk = _mark_pair(by["--mark"].values[0])
        out += _neg(by["--mark"]) + ["--mark", f"0x{v:x}" if msk == 0xFFFFFFFF else f"0x{v:x}/0x{msk:x}"]
    elif mod == "conntrack":
        for o in m.opts:
            vals = o.values
            if o.name == "--ctstate":
                states = vals[0].split(",")
                vals = [",".join(s for s in _CT_STATES if s in states)]
            out += _neg(o) + [o.name] + vals
    else:
        for o in m.opts:
            out += _neg(o) + [o.name] + o.values
    return out


def _save_target(target: str, opts: list[str]) -> list[str]:
    if target == "MARK":
        name, value = opts[0], opts[1] if len(opts) > 1 else ""
        if name == "--or-mark":
            v = _hex(value)
            return ["--set-xmark", f"0x{v:x}/0x{v:x}"]
        if name == "--xor-mark":
            return ["--set-xmark", f"0x{_hex(value):x}/0x0"]
        if name == "--and-mark":
            return ["--set-xmark", f"0x0/0x{(~_hex(value)) & 0xFFFFFFFF:x}"]
        if name in ("--set-xmark", "--set-mark"):
            v, m = _mark_pair(value)
            return ["--set-xmark", f"0x{v:x}/0x{m:x}"]
        return opts
    if target == "REJECT" and "--reject-with" not in opts:
        return opts + ["--reject-with", "icmp-port-unreachable"]
    return opts


def save_tokens(args: Iterable[str]) -> list[str]:
    """The tokens ``iptables-save`` prints for a rule given as ``args`` (after ``-A CHAIN``)."""
    header, matches, target, goto, target_opts = _parse(tuple(args))
    out: list[str] = []
    for key, flag in (("s", "-s"), ("d", "-d"), ("i", "-i"), ("o", "-o"), ("p", "-p")):
        if key in header:
            value, negated = header[key]
            if key in ("s", "d"):
                value = _addr(value)
            if key == "p":
                value = value.lower()
            out += (["!"] if negated else []) + [flag, value]
    for m in matches:
        out += _save_match(m)
    if target is not None:
        out += ["-g" if goto else "-j", target] + _save_target(target, target_opts)
    return out


def save_line(rule: IptRule) -> str:
    return " ".join(["-A", rule.chain] + save_tokens(rule.args))


# --------------------------------------------------------------------------------------------
# whole tables

Counters = Mapping[tuple[str, str, int], tuple[int, int]]


def render_tables(tables: Iterable[Table], form: str = "restore", *, counters: Counters | None = None,
                  chain_counters: Mapping[tuple[str, str], tuple[int, int]] | None = None,
                  header: str | None = None) -> str:
    """Print tables as a restore file (``form="restore"``: writer's chain order, rule order, tokens)
    or as ``iptables-save`` prints them (``form="save"``: built-ins first, user chains sorted,
    normalised rules). ``counters[(table, chain, position)] = (packets, bytes)`` adds ``-c`` style
    ``[p:b]`` prefixes to saved rules; ``chain_counters`` sets built-in chain counters."""
    if form not in ("restore", "save"):
        raise ValueError(f"form must be 'restore' or 'save', not {form!r}")
    lines: list[str] = []
    tables = list(tables)
    if form == "save":
        tables.sort(key=lambda t: TABLE_ORDER_SAVE.index(t.name) if t.name in TABLE_ORDER_SAVE else 99)
    for t in tables:
        if header:
            lines.append(f"# Generated by {header}")
        lines.append(f"*{t.name}")
        builtins = BUILTIN_CHAINS.get(t.name, ())
        if form == "restore":
            for c in t.chains:
                if c in builtins:
                    lines.append(f":{c} {t.policies.get(c, 'ACCEPT')} [0:0]")
                else:
                    lines.append(f":{c} - [0:0]")
            lines.extend(restore_line(r) for r in t.rules)
        else:
            declared = list(builtins)      # the kernel always has every built-in chain of a table
            users = sorted(c for c in t.chains if c not in builtins)
            for c in declared:
                p, b = (chain_counters or {}).get((t.name, c), (0, 0))
                lines.append(f":{c} {t.policies.get(c, 'ACCEPT')} [{p}:{b}]")
            lines.extend(f":{c} - [0:0]" for c in users)
            grouped = t.rules_by_chain()
            for c in declared + users:
                for pos, r in enumerate(grouped.get(c, ()), 1):
                    text = save_line(r)
                    if counters is not None:
                        p, b = counters.get((t.name, c, pos), (0, 0))
                        text = f"[{p}:{b}] {text}"
                    lines.append(text)
        lines.append("COMMIT")
        if header:
            lines.append(f"# Completed on {header}")
    return "\n".join(lines) + "\n"
