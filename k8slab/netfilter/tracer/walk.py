"""The walk: one new connection through the hooks and tables, rule by rule, the way netfilter goes.

The packet passes PREROUTING or OUTPUT, the routing decision, INPUT or FORWARD, POSTROUTING; at each
hook the tables in kernel priority order (raw -300, mangle -150, nat dst -100, filter 0, security
50, nat src 100). In a table the walk follows ``ipt_do_table``: a jump pushes the rule that jumped,
a goto does not, RETURN (or the end of a user chain) pops, and with nothing left to pop the
*built-in chain's* policy decides (the hook's "underflow" entry), also after a goto from the
built-in chain into a chain that returns.

A state that meets a :class:`~.matches.Branch` forks: the "no match" copies wait on ``pending`` (a
stack, so paths come out in rule order) while this state goes on matching. Every path ends as an
unmerged :class:`~.outcomes.Outcome`; :mod:`.merge` makes one row per effect of them.
"""
from __future__ import annotations

import ipaddress
from fractions import Fraction

from ...errors import TraceError
from ..iptables.rules import Rule
from .index import Index
from .matches import Branch, Ctx, Negated, local_fact, value_mask
from .outcomes import Outcome, TraceHop, condition_text
from .packet import MARK_MAX, Local, Packet, Routes

MAX_STATES = 20000          # followed branches before we give up (an explosion of unknowns)

_PREROUTING = ("raw", "mangle", "nat")
_INPUT = ("mangle", "filter", "security", "nat")
_FORWARD = ("mangle", "filter", "security")
_OUTPUT = ("raw", "mangle", "nat", "filter", "security")
_POSTROUTING = ("mangle", "nat")
# Loopback delivery of a packet made on the node for the node: it passes PREROUTING and INPUT
# again, but the nat table is skipped there because its NAT bindings were set up on the way out.
_LO_PREROUTING = ("raw", "mangle")
_LO_INPUT = ("mangle", "filter", "security")


class State:
    __slots__ = ("src", "dst", "src_ip", "dst_ip", "sport", "dport", "proto", "mark", "ctmark",
                 "orig_src", "orig_dst", "orig_sport", "orig_dport", "dnat", "snat", "masq",
                 "snat_source", "untracked", "hops", "prob", "notes", "facts", "assumed", "steps",
                 "step", "hook", "table", "stack", "builtin", "in_if", "out_if", "recent_set")

    def copy(self) -> "State":
        s = State.__new__(State)
        for name in State.__slots__:
            setattr(s, name, getattr(self, name))
        s.hops = list(self.hops)
        s.notes = list(self.notes)
        s.facts = dict(self.facts)
        s.assumed = list(self.assumed)
        s.stack = list(self.stack)
        s.recent_set = set(self.recent_set)
        return s


# A stack frame is a tuple: (table, chain name, Chain, candidate positions, next index into the
# candidates, the path of chain names that led here (for loop detection)). ``State.builtin`` is the
# hook's built-in chain of the current table, whose policy decides when the stack runs empty.


def _fmt_dest(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _parse_nat_to(value: str, default_port: int) -> tuple[str, int, bool]:
    """``ip[-ip][:port[-port]]`` or ``[v6]:port`` -> (first ip, first port, was a range)."""
    text = value.strip()
    ranged = False
    port = default_port
    if text.startswith("["):
        end = text.index("]")
        ip_part, rest = text[1:end], text[end + 1:]
        port_part = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        ip_part, port_part = text.split(":")
    else:
        ip_part, port_part = text, ""
    if "-" in ip_part:
        ip_part = ip_part.split("-", 1)[0]
        ranged = True
    if port_part:
        if "-" in port_part:
            port_part = port_part.split("-", 1)[0]
            ranged = True
        port = int(port_part)
    if not ip_part:
        return "", port, ranged
    return str(ipaddress.ip_address(ip_part)), port, ranged


def _apply_mark(rule: Rule, mark: int) -> int | None:
    """New mark for a MARK/CONNMARK-style option list, or None when there is no mark option."""
    for opt in rule.target_options:
        try:
            if opt.name == "--set-xmark":
                v, m = value_mask(opt.value or "")
                return ((mark & ~m) ^ v) & MARK_MAX
            if opt.name == "--set-mark":
                v, m = value_mask(opt.value or "")
                return ((mark & ~m) | v) & MARK_MAX
            if opt.name == "--or-mark":
                return (mark | int(opt.value or "0", 0)) & MARK_MAX
            if opt.name == "--xor-mark":
                return (mark ^ int(opt.value or "0", 0)) & MARK_MAX
            if opt.name == "--and-mark":
                return mark & int(opt.value or "0", 0)
        except ValueError:
            return None
    return None


def _mark_text(rule: Rule, old: int, new: int) -> str:
    """A MARK hop in the rule's own words, then what it did to the bits, e.g. kube-proxy's
    KUBE-POSTROUTING ``--xor-mark 0x4000`` (saved as ``--set-xmark 0x4000/0x0``: zero no bits, XOR
    0x4000 in, iptables-extensions(8) MARK) reads
    ``"MARK --set-xmark 0x4000/0x0 (xor 0x4000): clears 0x4000, mark now 0x0"``."""
    opt = next((o for o in rule.target_options if o.name in
                ("--set-xmark", "--set-mark", "--or-mark", "--xor-mark", "--and-mark")), None)
    said = f"{opt.name} {opt.value}" if opt is not None else ""
    if opt is not None and opt.name == "--set-xmark":
        try:
            v, m = value_mask(opt.value or "")
        except ValueError:
            v, m = None, None
        if m == 0 and v:
            said += f" (xor {v:#x})"
    done = []
    if new & ~old:
        done.append(f"sets {new & ~old:#x}")
    if old & ~new:
        done.append(f"clears {old & ~new:#x}")
    effect = (", ".join(done) + f", mark now {new:#x}") if done else f"mark unchanged, {new:#x}"
    return f"MARK {said}: {effect}" if said else f"MARK: {effect}"


class Walker:
    """Walks states to their end; ``done`` collects one unmerged Outcome per path."""

    def __init__(self, index: Index, packet: Packet, local_ips: frozenset[str],
                 routes: tuple[tuple[str, str], ...] = ()):
        self.index = index
        self.local = Local(local_ips)
        self.routes = Routes(routes)
        self.ctx = Ctx(self.local)
        self.packet = packet
        self.pending: list[State] = []
        self.done: list[Outcome] = []
        self.fact_notes: dict[str, str] = {}
        self.states = 0

    # -- where the packet is ---------------------------------------------------------------------
    def is_local(self, st: State, ip) -> bool:
        """Whether ``ip`` is the node's own, for a routing decision: known, assumed on this path, or
        (no local IPs given, nothing assumed) taken as not."""
        local = self.local(ip)
        if local is None:
            local = st.facts.get(local_fact(ip), False)
        return local

    def out_dev(self, st: State) -> str | None:
        if self.packet.out_interface:
            return self.packet.out_interface
        if self.is_local(st, st.dst_ip):
            return "lo"
        return self.routes.dev(st.dst_ip) if self.routes else None

    def start(self) -> State:
        packet = self.packet
        st = State()
        st.src, st.dst = packet.src, packet.dst
        st.src_ip, st.dst_ip = ipaddress.ip_address(packet.src), ipaddress.ip_address(packet.dst)
        st.orig_src, st.orig_dst = st.src_ip, st.dst_ip
        st.sport, st.dport, st.proto = packet.sport, packet.dport, packet.proto
        st.orig_sport, st.orig_dport = packet.sport, packet.dport
        st.mark, st.ctmark = packet.mark, 0
        st.dnat = None
        st.snat = st.masq = st.untracked = False
        st.snat_source = None
        st.hops, st.notes = [], []
        st.facts, st.assumed = {}, []
        st.prob = Fraction(1)
        st.stack = []
        st.builtin = None
        st.recent_set = set()
        st.hook = st.table = ""
        if self.local(st.src_ip):
            # Made on the node: no input interface; routed before OUTPUT (lo if it is for the node).
            st.in_if = st.out_if = None
            st.steps = tuple(("OUTPUT", t) for t in _OUTPUT) + (("route-out", ""),)
            st.step = 0
            if self.local(st.dst_ip) is None:
                # no local IPs given: whether the destination is the node's own decides the
                # interface OUTPUT already sees; a copy assuming it is waits on ``pending``
                fact = local_fact(st.dst_ip)
                fork = st.copy()
                fork.facts[fact] = True
                fork.assumed.append((fact, True))
                fork.out_if = self.out_dev(fork)
                self.pending.append(fork)
                st.facts[fact] = False
                st.assumed.append((fact, False))
            st.out_if = self.out_dev(st)
            return st
        else:
            st.in_if = packet.in_interface
            if st.in_if is None and self.routes:
                st.in_if = self.routes.dev(st.src_ip)     # the route back to the source
            st.out_if = packet.out_interface
            st.steps = tuple(("PREROUTING", t) for t in _PREROUTING) + (("route-in", ""),)
        st.step = 0
        return st

    def route(self, st: State, kind: str) -> None:
        """The routing decision after PREROUTING (route-in) or after OUTPUT (route-out: the kernel
        routes again when nat OUTPUT changed the destination). With no local IPs given, whether
        the destination is the node's own is a fact: this state goes on assuming it is not, a copy
        assuming it is waits on ``pending``."""
        local = self.local(st.dst_ip)
        assumed = ""
        if local is None:
            fact = local_fact(st.dst_ip)
            local = st.facts.get(fact)
            if local is None:
                fork = st.copy()
                fork.step -= 1                       # the copy takes this decision again
                fork.facts[fact] = True
                fork.assumed.append((fact, True))
                self.pending.append(fork)
                st.facts[fact] = local = False
                st.assumed.append((fact, False))
            assumed = f" [{condition_text(fact, local)}]"
        rest = st.steps[st.step:]
        if kind == "route-in":
            if local:
                plan = tuple(("INPUT", t) for t in _INPUT)
                action = f"{st.dst} is local{assumed} -> INPUT"
            else:
                st.out_if = self.out_dev(st)
                plan = tuple(("FORWARD", t) for t in _FORWARD) + tuple(
                    ("POSTROUTING", t) for t in _POSTROUTING)
                action = f"{st.dst} is not local{assumed} -> FORWARD"
        else:
            plan = tuple(("POSTROUTING", t) for t in _POSTROUTING)
            st.out_if = self.out_dev(st)
            if local:
                plan += (("loopback", ""),) + tuple(("PREROUTING", t) for t in _LO_PREROUTING) + tuple(
                    ("INPUT", t) for t in _LO_INPUT)
                action = f"{st.dst} is local{assumed} -> out via lo, in again through PREROUTING and INPUT"
            else:
                action = f"{st.dst} is not local{assumed} -> POSTROUTING and out"
        if st.out_if and not local:
            action += f" (out via {st.out_if})"
        st.hops.append(TraceHop("routing", "", "", 0, None, action))
        st.steps = st.steps[:st.step] + plan + rest

    def enter(self, st: State, hook: str, table: str) -> bool:
        """Push the built-in chain of (hook, table) if it exists; False to skip the step."""
        if table == "nat" and st.untracked:
            return False
        hit = self.index.chain(table, hook)
        if hit is None:
            return False
        ch, cidx = hit
        st.hook, st.table = hook, table
        st.builtin = ch
        st.stack = [(table, hook, ch, cidx.candidates(st), 0, (hook,))]
        return True

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        self.pending.append(self.start())
        while self.pending:
            st = self.pending.pop()
            self.states += 1
            if self.states > MAX_STATES:
                raise TraceError(
                    f"more than {MAX_STATES} branches: too many unknown matches to follow. Give the "
                    "packet its interfaces (in_interface/out_interface) or trace a smaller ruleset.")
            self.walk(st)
        return self.done

    def finish(self, st: State, verdict: str) -> None:
        self.done.append(Outcome(
            verdict=verdict, destination=st.dnat, masquerade=st.masq, probability=st.prob,
            hops=st.hops, conditions=[condition_text(f, v) for f, v in st.assumed],
            unknown=st.notes, marked=st.mark, source=st.snat_source, assumptions=tuple(st.assumed)))

    def walk(self, st: State) -> None:
        compile_rule = self.index.compile
        ctx = self.ctx
        while True:
            if not st.stack:
                if st.step >= len(st.steps):
                    self.finish(st, "ACCEPT")
                    return
                hook, table = st.steps[st.step]
                st.step += 1
                if hook in ("route-in", "route-out"):
                    self.route(st, hook)
                    continue
                if hook == "loopback":
                    st.in_if = "lo"
                    continue
                if not self.enter(st, hook, table):
                    continue
            ctx.hook = st.hook
            table, cname, ch, cands, i, path = st.stack[-1]
            if i >= len(cands):
                if self.end_of_chain(st):
                    return
                continue
            pos = cands[i]
            st.stack[-1] = (table, cname, ch, cands, i + 1, path)
            rule = ch.rules[pos - 1]
            matched = True
            branches: list[Branch] | None = None
            for check in compile_rule(rule).checks:
                r = check(st, ctx)
                if r is True:
                    continue
                if r is False:
                    matched = False
                    break
                if r.fact is not None and r.fact in st.facts:
                    # Assumed already on this path: stay consistent with that assumption.
                    if st.facts[r.fact] == isinstance(r, Negated):
                        matched = False
                        break
                    continue
                if branches is None:
                    branches = []
                branches.append(r)
            if not matched:
                continue
            label = ""
            if branches:
                label = self.split(st, rule, branches)
                if label is None:
                    return             # the rule cannot match here: the forks hold every way on
            if self.act(st, rule, label):
                return

    def split(self, st: State, rule: Rule, branches: list[Branch]) -> str | None:
        """Fork the state for each way the branch conditions can go. The kernel evaluates a rule's
        matches in order and stops at the first that fails, so k conditions give k+1 ways: all
        true (the rule matches: this state goes on), or the first false at j (a copy, no match).
        Returns the label of the "all true" way, or None when that way is impossible."""
        prefix: list[tuple[Branch, bool]] = []
        forks: list[State] = []
        for b in branches:
            fork = st.copy()
            if self.assume(fork, rule, prefix + [(b, False)], matched=False) is not None:
                forks.append(fork)
            prefix.append((b, True))
        self.pending.extend(reversed(forks))
        return self.assume(st, rule, prefix, matched=True)

    def assume(self, st: State, rule: Rule, choices, matched: bool) -> str | None:
        labels = []
        for b, truth in choices:
            if b.weight is not None:
                w = b.weight if truth else 1 - b.weight
                if w == 0:
                    return None
                st.prob *= w
                labels.append(f"{b.label} {'taken' if truth else 'not taken'}"
                              f" (p={w.limit_denominator(1000)})")
                continue
            fact_value = truth != isinstance(b, Negated)
            if b.fact in st.facts:
                if st.facts[b.fact] != fact_value:
                    return None
                continue
            st.facts[b.fact] = fact_value
            st.assumed.append((b.fact, fact_value))
            if b.note is not None:
                self.fact_notes.setdefault(b.fact, b.note)
            labels.append(condition_text(b.fact, fact_value))
        label = "; ".join(labels)
        if not matched:
            st.hops.append(TraceHop(st.hook, st.table, rule.chain, rule.position, rule,
                                    "no match: " + label))
        return label

    # -- leaving chains --------------------------------------------------------------------------
    def end_of_chain(self, st: State) -> bool:
        """The walk fell off the end of the top chain. True when the state is finished."""
        table, cname = st.stack[-1][0], st.stack[-1][1]
        if len(st.stack) == 1:
            if cname != st.builtin.name:
                # reached by goto from the built-in chain: nothing to return to
                st.hops.append(TraceHop(st.hook, table, cname, 0, None,
                                        f"end of chain (reached by goto from {st.builtin.name}): "
                                        "nothing to return to"))
            return self.policy(st)
        st.stack.pop()
        st.hops.append(TraceHop(st.hook, table, cname, 0, None,
                                f"end of chain: return to {st.stack[-1][1]}"))
        return False

    def policy(self, st: State) -> bool:
        """The built-in chain's policy (the kernel's underflow entry for this hook) decides."""
        ch = st.builtin
        pol = (ch.policy or "ACCEPT").upper()
        if pol == "-":
            pol = "ACCEPT"
        st.stack = []
        if ch.rules or pol != "ACCEPT":
            st.hops.append(TraceHop(st.hook, st.table, ch.name, 0, None, f"policy {pol}"))
        if pol in ("DROP", "REJECT"):
            self.finish(st, pol)
            return True
        return False

    # -- targets ---------------------------------------------------------------------------------
    def act(self, st: State, rule: Rule, label: str) -> bool:
        """Apply the matched rule's target. True when the state is finished."""
        suffix = f" [{label}]" if label else ""
        target = rule.target
        table = st.table

        def hop(action: str) -> None:
            st.hops.append(TraceHop(st.hook, table, rule.chain, rule.position, rule, action + suffix))

        if target is None:
            hop("match (no target: counted, continue)")
            return False
        if rule.jumps_to_chain:
            path = st.stack[-1][5]
            if target in path:
                cycle = list(path[path.index(target):]) + [target]
                raise TraceError(f"jump loop in table {table}: {' -> '.join(cycle)}. "
                                 "The kernel refuses such a ruleset; check the dump.")
            verb = "goto" if rule.goto else "jump"
            hit = self.index.chain(table, target)
            if hit is None:
                hop(f"{verb} {target} (chain not declared: empty, returns)")
                if rule.goto:          # an empty chain reached by goto returns past this chain
                    return self.end_of_chain(st)
                return False
            ch, cidx = hit
            hop(f"{verb} {target}")
            frame = (table, target, ch, cidx.candidates(st), 0, path + (target,))
            if rule.goto:
                st.stack[-1] = frame
            else:
                st.stack.append(frame)
            return False
        t = target.upper()
        if t == "RETURN":
            if len(st.stack) == 1:
                if st.stack[0][1] == st.builtin.name:
                    hop("RETURN from a built-in chain: the policy decides")
                else:
                    hop(f"RETURN (reached by goto from {st.builtin.name}: nothing to return to, "
                        "the policy decides)")
                return self.policy(st)
            st.stack.pop()
            hop(f"RETURN to {st.stack[-1][1]}")
            return False
        if t == "ACCEPT":
            hop("ACCEPT")
            st.stack = []              # ends this table at this hook; the next table follows
            return False
        if t in ("DROP", "REJECT"):
            hop(t)
            self.finish(st, t)
            return True
        if t in ("DNAT", "REDIRECT"):
            self.dnat(st, rule, t, hop)
            return False
        if t in ("SNAT", "MASQUERADE"):
            if t == "SNAT":
                opt = rule.target_option("--to-source") or rule.target_option("--to")
                ip = None
                if opt is not None and opt.value:
                    try:
                        ip = _parse_nat_to(opt.value, st.sport)[0] or None
                    except ValueError:
                        ip = None
                hop(f"SNAT {opt.value if opt is not None else '?'}")
                if ip:
                    st.snat_source = ip
                    st.src, st.src_ip = ip, ipaddress.ip_address(ip)
            else:
                hop("MASQUERADE (the source becomes the outgoing interface's address)")
            st.masq = st.snat = True
            st.stack = []              # NAT targets end the nat table at this hook
            return False
        if t == "MARK":
            new = _apply_mark(rule, st.mark)
            if new is None:
                hop("MARK (options not understood: mark unchanged)")
                self._note(st, "unknown: MARK options")
            else:
                hop(_mark_text(rule, st.mark, new))
                st.mark = new
            return False
        if t == "CONNMARK":
            names = {o.name for o in rule.target_options}
            if "--restore-mark" in names:
                st.mark = st.ctmark
                hop(f"CONNMARK restore: mark {st.mark:#x}")
            elif "--save-mark" in names:
                st.ctmark = st.mark
                hop(f"CONNMARK save: ctmark {st.ctmark:#x}")
            else:
                new = _apply_mark(rule, st.ctmark)
                if new is not None:
                    st.ctmark = new
                hop(f"CONNMARK ctmark {st.ctmark:#x}")
            return False
        if t == "NOTRACK" or (t == "CT" and rule.target_option("--notrack") is not None):
            st.untracked = True
            hop(f"{t}: not tracked (no NAT for this connection)")
            return False
        if t in ("QUEUE", "NFQUEUE", "TPROXY", "SYNPROXY", "NETMAP", "CLUSTERIP"):
            hop(f"{t}: not decided by rules (assumed ACCEPT)")
            self._note(st, f"unknown: {t}")
            st.stack = []
            return False
        # LOG, NFLOG, TRACE, CT, TCPMSS, CHECKSUM, SET, ...: something on the side, then continue.
        hop(f"{target} (continue)")
        return False

    @staticmethod
    def _note(st: State, note: str) -> None:
        if note not in st.notes:
            st.notes.append(note)

    def dnat(self, st: State, rule: Rule, t: str, hop) -> None:
        if t == "REDIRECT":
            opt = rule.target_option("--to-ports")
            port = st.dport
            if opt is not None and opt.value:
                port = int(opt.value.split("-")[0].split(":")[0])
            if st.hook == "OUTPUT":
                ip = "127.0.0.1" if st.dst_ip.version == 4 else "::1"
            else:
                own = sorted(a for a in self.local.ips if ":" not in a and not a.startswith("127."))
                ip = own[0] if own else "127.0.0.1"
                if not own:
                    self._note(st, "unknown: REDIRECT address (no local IP given)")
            ranged = False
        else:
            opt = rule.target_option("--to-destination") or rule.target_option("--to")
            if opt is None or not opt.value:
                hop(f"{t} (no --to-destination: not understood)")
                self._note(st, f"unknown: {t} options")
                st.stack = []
                return
            try:
                ip, port, ranged = _parse_nat_to(opt.value, st.dport)
            except ValueError:
                raise TraceError(f"{rule.chain}#{rule.position}: cannot read the DNAT target "
                                 f"{opt.value!r}; expected ip[:port]") from None
            if not ip:
                ip = st.dst
        if ranged:
            self._note(st, f"{t} to a range: the first address/port was taken")
        dest = _fmt_dest(ip, port)
        hop(f"{t} {dest}")
        st.dst, st.dst_ip, st.dport = ip, ipaddress.ip_address(ip), port
        st.dnat = dest
        st.stack = []                  # DNAT ends the nat table at this hook
