"""Rule matches as checks: ``check(state, ctx) -> True | False | Branch``.

A rule compiles once (:class:`Compiled`) into a tuple of checks that are ANDed. A check answers True
or False when the packet and the node decide it, or a :class:`Branch` when they do not:

* a probability (``statistic``, ``nth``): ``Branch(weight=...)``, followed both ways with its weight;
* a fact the tracer cannot know: ``Branch(fact=...)``, followed both ways as an assumption. Facts are
  named so that the same question asked twice is the same fact (``in-interface docker0``; ``10.0.0.5
  is an address of this node (addrtype LOCAL)``; ``this client already has affinity with KUBE-SEP-X
  (-m recent)``; the text of an unknown match). A :class:`Negated` branch is the same fact, matching
  when it is false.
"""
from __future__ import annotations

import ipaddress
from fractions import Fraction
from typing import Any, Callable

from ..iptables.rules import Addr, Match, Option, Rule
from .packet import MARK_MAX, PROTOCOLS, fixed_point_probability

_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58,
                  "esp": 50, "ah": 51, "gre": 47, "udplite": 136, "mh": 135, "dccp": 33}

IN_HOOKS = frozenset({"PREROUTING", "INPUT", "FORWARD"})
OUT_HOOKS = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})


# --------------------------------------------------------------------------------------------------
# Fact names (one place, so that the walker, the merger and the tests agree)

def iface_fact(direction: str, spec: str) -> str:
    return f"{direction}-interface {spec}"


def local_fact(ip) -> str:
    return f"{ip} is an address of this node"


def affinity_fact(name: str) -> str:
    return f"this client already has affinity with {name} (-m recent --name {name})"


class Branch:
    """A condition the tracer cannot decide alone: a probability (``weight`` of "true") or a fact
    to assume (``fact``; weight None). ``note`` is what the outcome lists under ``unknown``."""
    __slots__ = ("weight", "fact", "note", "label")

    def __init__(self, weight: Fraction | None = None, fact: str | None = None,
                 note: str | None = None, label: str = ""):
        self.weight = weight
        self.fact = fact
        self.note = note
        self.label = label


class Negated(Branch):
    """The same fact (or the complement of the probability), matching when it is false."""
    __slots__ = ("inner",)

    def __init__(self, inner: Branch):
        super().__init__(None if inner.weight is None else 1 - inner.weight, inner.fact,
                         inner.note, inner.label)
        self.inner = inner


Check = Callable[[Any, "Ctx"], Any]


class Ctx:
    """What every check may read besides the state: which addresses are local, the hook."""
    __slots__ = ("local", "hook")

    def __init__(self, local):
        self.local = local          # packet.Local: ip -> True | False | None
        self.hook = ""


# --------------------------------------------------------------------------------------------------
# Text

def opt_text(opt: Option) -> str:
    text = ("! " if opt.negated else "") + opt.name
    if opt.values:
        text += " " + " ".join(opt.values)
    return text


def match_text(m: Match) -> str:
    return " ".join(["-m", m.module] + [opt_text(o) for o in m.options])


def rule_text(rule: Rule) -> str:
    if rule.line:
        line = rule.line.strip()
        if line.startswith("["):          # drop a "[pkts:bytes]" counter prefix
            end = line.find("]")
            if end > 0:
                line = line[end + 1:].strip()
        return line
    parts = ["-A", rule.chain]
    for flag, addr in (("-s", rule.source), ("-d", rule.destination), ("-i", rule.in_interface),
                       ("-o", rule.out_interface), ("-p", rule.protocol)):
        if addr is not None:
            parts += (["!"] if addr.negated else []) + [flag, addr.value]
    for m in rule.matches:
        parts.append(match_text(m))
    if rule.target:
        parts += ["-g" if rule.goto else "-j", rule.target]
        parts += [opt_text(o) for o in rule.target_options]
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# Field helpers

def nets(value: str):
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            return None
    return out


def port_ranges(text: str) -> list[tuple[int, int]] | None:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if ":" in part:
                lo, hi = part.split(":", 1)
                out.append((int(lo) if lo else 0, int(hi) if hi else 65535))
            elif "-" in part:     # nft-style range, tolerated
                lo, hi = part.split("-", 1)
                out.append((int(lo), int(hi)))
            else:
                out.append((int(part), int(part)))
        except ValueError:
            return None
    return out


def in_ranges(port: int, ranges: list[tuple[int, int]]) -> bool:
    for lo, hi in ranges:
        if lo <= port <= hi:
            return True
    return False


def value_mask(text: str, default_mask: int = MARK_MAX) -> tuple[int, int]:
    if "/" in text:
        v, m = text.split("/", 1)
        return int(v, 0), int(m, 0)
    return int(text, 0), default_mask


def iface_matches(spec: str, name: str) -> bool:
    if spec.endswith("+"):
        return name.startswith(spec[:-1])
    return name == spec


def iface_decided(spec: str, known) -> bool | None:
    """Does an interface whose name we only know through ``known`` ((spec, matched) pairs already
    assumed) match ``spec``? None when those assumptions do not decide it. ``eth+`` is the set of
    names starting with ``eth``."""
    wild = spec.endswith("+")
    prefix = spec[:-1] if wild else spec
    for other, matched in known:
        owild = other.endswith("+")
        oprefix = other[:-1] if owild else other
        if matched:
            if not owild:                       # the very name is known
                return iface_matches(spec, other)
            if wild:                            # name starts with oprefix
                if oprefix.startswith(prefix):
                    return True
                if not prefix.startswith(oprefix):
                    return False
            elif not spec.startswith(oprefix):
                return False
        else:
            if other == spec:
                return False
            if owild and (prefix.startswith(oprefix)):
                return False                    # every name spec allows is excluded
    return None


def _iface_known(assign: dict[str, bool], direction: str) -> list[tuple[str, bool]]:
    prefix = f"{direction}-interface "
    return [(f[len(prefix):], v) for f, v in assign.items() if f.startswith(prefix)]


def _iface_possible(known: list[tuple[str, bool]]) -> bool:
    """Is there one interface name that matches exactly the specs assumed true in ``known``?"""
    exact = [s for s, v in known if v and not s.endswith("+")]
    if exact:
        name = exact[0]
    else:
        prefixes = [s[:-1] for s, v in known if v]
        longest = max(prefixes, key=len, default="")
        if not all(longest.startswith(p) for p in prefixes):
            return False
        name = longest + "\x00other"          # a name no spec spells out
    return all(iface_matches(s, name) == v for s, v in known)


def possible(assign: dict[str, bool]) -> bool:
    """Whether an assignment of facts can hold at once: a packet has one in- and one out-interface,
    so "in-interface docker0" and "in-interface cni0" are never both true. Other facts are free."""
    return all(_iface_possible(known) for known in (_iface_known(assign, "in"), _iface_known(assign, "out"))
               if known)


# --------------------------------------------------------------------------------------------------
# Checks

def unknown(module: str, label: str, fact: str) -> Check:
    branch = Branch(None, fact, f"unknown: {module}", label)
    return lambda st, ctx: branch


def flip(check: Check) -> Check:
    def neg(st, ctx):
        r = check(st, ctx)
        if isinstance(r, Branch):
            return Negated(r)
        return not r
    return neg


def addr_check(addr, attr: str, flag: str) -> Check:
    parsed = nets(addr.value)
    if parsed is None:
        return unknown(flag, f"{flag} {addr.value}", f"{flag} {addr.value}")
    neg = addr.negated
    if len(parsed) == 1:
        net = parsed[0]

        def check(st, ctx):
            ip = getattr(st, attr)
            return (ip.version == net.version and ip in net) != neg
        return check

    def check_many(st, ctx):
        ip = getattr(st, attr)
        return any(ip.version == n.version and ip in n for n in parsed) != neg
    return check_many


def proto_check(addr) -> Check:
    value = addr.value.lower()
    neg = addr.negated
    if value in ("all", "0"):
        return lambda st, ctx: not neg
    number = _PROTO_NUMBERS.get(value)
    if number is None:
        try:
            number = int(value)
        except ValueError:
            return unknown("-p", f"-p {value}", f"protocol {value}")
    return lambda st, ctx: (PROTOCOLS[st.proto] == number) != neg


def iface_check(addr, direction: str) -> Check:
    spec = addr.value
    neg = addr.negated
    flag = "-i" if direction == "in" else "-o"
    prefix = f"{direction}-interface "
    hooks = IN_HOOKS if direction == "in" else OUT_HOOKS
    fact = iface_fact(direction, spec)
    label = f"{flag} {spec} (the packet does not say its {direction} interface)"
    branch = Branch(None, fact, f"unknown: {flag}", label)
    negated = Negated(branch)

    def check(st, ctx):
        if ctx.hook not in hooks:
            return neg                     # no such device at this hook: the name is empty
        name = st.in_if if direction == "in" else st.out_if
        if name is not None:
            return iface_matches(spec, name) != neg
        if st.facts:
            known = [(f[len(prefix):], v) for f, v in st.facts.items() if f.startswith(prefix)]
            if known:
                decided = iface_decided(spec, known)
                if decided is not None:
                    return decided != neg
        return negated if neg else branch
    return check


def ports_check(module: str, opt: Option, which: str) -> Check:
    ranges = port_ranges(opt.value or "")
    if ranges is None:
        return unknown(module, f"{module} {opt_text(opt)}", f"{module} {opt_text(opt)}")
    neg = opt.negated
    if which == "d":
        return lambda st, ctx: in_ranges(st.dport, ranges) != neg
    if which == "s":
        return lambda st, ctx: in_ranges(st.sport, ranges) != neg
    return lambda st, ctx: (in_ranges(st.dport, ranges) or in_ranges(st.sport, ranges)) != neg


_TCP_FLAGS = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32, "ECE": 64, "CWR": 128}


def _tcp_flag_bits(text: str) -> int:
    bits = 0
    for name in text.upper().split(","):
        if name == "ALL":
            bits |= 0xFF
        elif name == "NONE":
            pass
        else:
            bits |= _TCP_FLAGS[name]
    return bits


def _l4_match(m: Match) -> list[Check]:
    module = m.module
    checks: list[Check] = [lambda st, ctx: st.proto == module]
    for opt in m.options:
        name = opt.name
        if name in ("--dport", "--destination-port"):
            checks.append(ports_check(module, opt, "d"))
        elif name in ("--sport", "--source-port"):
            checks.append(ports_check(module, opt, "s"))
        elif module == "tcp" and name == "--syn":
            # The first packet of a new TCP connection is a SYN.
            checks.append(lambda st, ctx, neg=opt.negated: not neg)
        elif module == "tcp" and name == "--tcp-flags" and len(opt.values) == 2:
            try:
                mask, comp = _tcp_flag_bits(opt.values[0]), _tcp_flag_bits(opt.values[1])
            except KeyError:
                checks.append(unknown(module, match_text(m), match_text(m)))
                continue
            hit = (_TCP_FLAGS["SYN"] & mask) == comp
            checks.append(lambda st, ctx, r=hit != opt.negated: r)
        else:
            checks.append(unknown(module, f"{module} {opt_text(opt)}", f"{module} {opt_text(opt)}"))
    return checks


def _multiport(m: Match) -> list[Check]:
    checks: list[Check] = []
    for opt in m.options:
        if opt.name in ("--dports", "--destination-ports"):
            checks.append(ports_check("multiport", opt, "d"))
        elif opt.name in ("--sports", "--source-ports"):
            checks.append(ports_check("multiport", opt, "s"))
        elif opt.name == "--ports":
            checks.append(ports_check("multiport", opt, "b"))
        else:
            checks.append(unknown("multiport", opt_text(opt), f"multiport {opt_text(opt)}"))
    return checks


_NOT_LOCAL_TYPES = frozenset({"UNICAST", "BROADCAST", "ANYCAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT",
                              "THROW", "NAT", "XRESOLVE"})


def _addrtype(m: Match) -> list[Check]:
    checks: list[Check] = []
    for opt in m.options:
        if opt.name not in ("--src-type", "--dst-type"):
            checks.append(unknown("addrtype", f"addrtype {opt_text(opt)}", f"addrtype {opt_text(opt)}"))
            continue
        attr = "src_ip" if opt.name == "--src-type" else "dst_ip"
        types = [t.strip().upper() for t in (opt.value or "").split(",") if t.strip()]
        neg = opt.negated
        label = f"addrtype {opt.name} {opt.value}"

        def check(st, ctx, attr=attr, types=types, neg=neg, label=label):
            ip = getattr(st, attr)
            local = ctx.local(ip)
            if local is None:
                local = st.facts.get(local_fact(ip))
            undecided_local = False
            undecided = False
            for t in types:
                if t == "LOCAL":
                    if local is None:
                        undecided_local = True
                        continue
                    r = local
                elif t == "MULTICAST":
                    r = ip.is_multicast
                elif t == "BROADCAST" and ip.version == 4 and str(ip) == "255.255.255.255":
                    r = True
                elif t == "UNSPEC":
                    r = ip.is_unspecified
                elif local and t in _NOT_LOCAL_TYPES:
                    r = False          # a local address has route type LOCAL, nothing else
                else:
                    undecided = True
                    continue
                if r:
                    return not neg
            if undecided_local and not undecided:
                # Only whether the address is the node's own is open (no local IPs given).
                branch = Branch(None, local_fact(ip), None, label)
                return Negated(branch) if neg else branch
            if undecided or undecided_local:
                others = ",".join(t for t in types if t != "LOCAL" or undecided_local)
                branch = Branch(None, f"{'src' if attr == 'src_ip' else 'dst'} {ip} is of type {others}",
                                "unknown: addrtype", label)
                return Negated(branch) if neg else branch
            return neg
        checks.append(check)
    return checks


def _mark_match(m: Match, attr: str) -> list[Check]:
    checks: list[Check] = []
    for opt in m.options:
        if opt.name != "--mark":
            checks.append(unknown(m.module, opt_text(opt), f"{m.module} {opt_text(opt)}"))
            continue
        try:
            v, mask = value_mask(opt.value or "")
        except ValueError:
            checks.append(unknown(m.module, opt_text(opt), f"{m.module} {opt_text(opt)}"))
            continue
        checks.append(lambda st, ctx, v=v, mask=mask, neg=opt.negated:
                      ((getattr(st, attr) & mask) == v) != neg)
    return checks


def ct_states(st) -> set[str]:
    if st.untracked:
        return {"UNTRACKED"}
    states = {"NEW"}
    if st.dnat is not None:
        states.add("DNAT")
    if st.snat:
        states.add("SNAT")
    return states


def _conntrack(m: Match) -> list[Check]:
    checks: list[Check] = []
    module = m.module
    for opt in m.options:
        name, neg = opt.name, opt.negated
        values = [v.strip().upper() for v in (opt.value or "").split(",") if v.strip()]
        if name in ("--ctstate", "--state"):
            checks.append(lambda st, ctx, values=values, neg=neg:
                          bool(ct_states(st).intersection(values)) != neg)
        elif module == "conntrack" and name == "--ctproto":
            checks.append(proto_check(Addr(opt.value or "", neg)))
        elif module == "conntrack" and name in ("--ctorigsrc", "--ctorigdst", "--ctreplsrc",
                                                   "--ctrepldst"):
            parsed = nets(opt.value or "")
            if parsed is None:
                checks.append(unknown(module, opt_text(opt), f"conntrack {opt_text(opt)}"))
                continue
            attr = {"--ctorigsrc": "orig_src", "--ctorigdst": "orig_dst",
                    "--ctreplsrc": "dst_ip", "--ctrepldst": "orig_src"}[name]
            checks.append(lambda st, ctx, parsed=parsed, attr=attr, neg=neg: any(
                getattr(st, attr).version == n.version and getattr(st, attr) in n for n in parsed) != neg)
        elif module == "conntrack" and name in ("--ctorigsrcport", "--ctorigdstport",
                                                   "--ctreplsrcport", "--ctrepldstport"):
            ranges = port_ranges(opt.value or "")
            if ranges is None:
                checks.append(unknown(module, opt_text(opt), f"conntrack {opt_text(opt)}"))
                continue
            attr = {"--ctorigsrcport": "orig_sport", "--ctorigdstport": "orig_dport",
                    "--ctreplsrcport": "dport", "--ctrepldstport": "orig_sport"}[name]
            checks.append(lambda st, ctx, r=ranges, attr=attr, neg=neg:
                          in_ranges(getattr(st, attr), r) != neg)
        elif module == "conntrack" and name == "--ctstatus":
            # The first packet: not yet CONFIRMED, no reply seen, not ASSURED, not EXPECTED.
            checks.append(lambda st, ctx, neg=neg: neg)
        elif module == "conntrack" and name == "--ctdir":
            want = (opt.value or "").upper()
            checks.append(lambda st, ctx, r=(want == "ORIGINAL") != neg: r)
        else:
            checks.append(unknown(module, opt_text(opt), f"{module} {opt_text(opt)}"))
    return checks


def _statistic(m: Match) -> list[Check]:
    mode = m.get("--mode")
    mode_name = mode.value if mode is not None else "random"
    if mode_name == "random":
        opt = m.get("--probability")
        if opt is None:
            return [unknown("statistic", match_text(m), match_text(m))]
        q = fixed_point_probability(opt.value or "0")
        if opt.negated:
            q = 1 - q
        if q == 1:
            return [lambda st, ctx: True]
        if q == 0:
            return [lambda st, ctx: False]
        branch = Branch(q, None, None, f"random {opt.value}")
        return [lambda st, ctx: branch]
    if mode_name == "nth":
        neg = any(o.negated for o in m.options if o.name in ("--every", "--packet"))
        return _every_nth(m, "statistic", neg)
    return [unknown("statistic", match_text(m), match_text(m))]


def _every_nth(m: Match, module: str, negated: bool) -> list[Check]:
    """``--every N`` (``statistic --mode nth`` or the old ``nth`` match): a branch taken by 1 packet in
    N (N-1 in N when negated)."""
    every = m.get("--every")
    try:
        n = int(every.value) if every is not None else 0
    except ValueError:
        n = 0
    if n < 1:
        return [unknown(module, match_text(m), match_text(m))]
    q = Fraction(1, n)
    if negated:
        q = 1 - q
    if q in (0, 1):
        return [lambda st, ctx, r=q == 1: r]
    branch = Branch(q, None, None, f"nth every {n}")
    return [lambda st, ctx: branch]


def _recent(m: Match) -> list[Check]:
    name_opt = m.get("--name")
    name = name_opt.value if name_opt is not None else "DEFAULT"
    negated = any(o.negated for o in m.options)
    checking = next((o for o in m.options if o.name in ("--rcheck", "--update", "--remove")), None)
    if checking is None:
        if m.get("--set") is not None:
            # --set adds the address and always matches (the list is updated as a side effect).
            def set_check(st, ctx):
                st.recent_set.add(name)
                return not negated
            return [set_check]
        return [unknown("recent", match_text(m), match_text(m))]
    branch = Branch(None, affinity_fact(name), None, f"recent {checking.name} {name}")
    negated_branch = Negated(branch)

    def check(st, ctx):
        if name in st.recent_set:        # --set earlier in this very packet's walk
            return not negated
        return negated_branch if negated else branch
    return [check]


def _iprange(m: Match) -> list[Check]:
    checks: list[Check] = []
    for opt in m.options:
        attr = {"--src-range": "src_ip", "--dst-range": "dst_ip"}.get(opt.name)
        if attr is None or "-" not in (opt.value or ""):
            checks.append(unknown("iprange", opt_text(opt), f"iprange {opt_text(opt)}"))
            continue
        lo, hi = (ipaddress.ip_address(x) for x in opt.value.split("-", 1))
        checks.append(lambda st, ctx, lo=lo, hi=hi, attr=attr, neg=opt.negated:
                      (getattr(st, attr).version == lo.version and lo <= getattr(st, attr) <= hi) != neg)
    return checks


_ALWAYS = frozenset({"comment", "nfacct"})


def compile_match(m: Match) -> list[Check]:
    module = m.module
    if module in _ALWAYS:
        return []
    if module in ("tcp", "udp", "sctp"):
        return _l4_match(m)
    if module == "multiport":
        return _multiport(m)
    if module == "addrtype":
        return _addrtype(m)
    if module == "mark":
        return _mark_match(m, "mark")
    if module == "connmark":
        return _mark_match(m, "ctmark")
    if module in ("conntrack", "state"):
        return _conntrack(m)
    if module == "statistic":
        return _statistic(m)
    if module == "nth":
        return _every_nth(m, "nth", False)
    if module == "recent":
        return _recent(m)
    if module == "iprange":
        return _iprange(m)
    if module in ("icmp", "icmp6", "icmpv6"):
        return [lambda st, ctx: False]          # our packets are TCP/UDP/SCTP
    # physdev, set, mac, owner, socket, limit, hashlimit, connlimit, length, pkttype, policy, ...
    text = match_text(m)
    opts = m.options
    if len(opts) == 1 and opts[0].negated:
        # Key the assumption on the positive form so "--x" and "! --x" stay consistent.
        positive = Match(module, (Option(opts[0].name, opts[0].values, False),))
        return [flip(unknown(module, match_text(positive), match_text(positive)))]
    return [unknown(module, text, text)]


class Compiled:
    __slots__ = ("checks",)

    def __init__(self, rule: Rule):
        checks: list[Check] = []
        # Cheap header fields first; all checks are ANDed (the order only matters for branches,
        # which are always taken in the rule's own match order below).
        if rule.protocol is not None:
            checks.append(proto_check(rule.protocol))
        if rule.destination is not None:
            checks.append(addr_check(rule.destination, "dst_ip", "-d"))
        if rule.source is not None:
            checks.append(addr_check(rule.source, "src_ip", "-s"))
        if rule.in_interface is not None:
            checks.append(iface_check(rule.in_interface, "in"))
        if rule.out_interface is not None:
            checks.append(iface_check(rule.out_interface, "out"))
        if rule.fragment is not None:
            checks.append(lambda st, ctx, f=rule.fragment: not f)   # the first packet: no fragment
        for m in rule.matches:
            checks.extend(compile_match(m))
        self.checks = tuple(checks)
