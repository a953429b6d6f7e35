"""Fuzzing the parser: any text either parses (and then its lazy rules and views are consistent) or
raises exactly one ParseError that names a line. Never IndexError/KeyError/anything else."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import shared_files
from k8slab.errors import ParseError
from k8slab.netfilter import parse
from k8slab.netfilter import views as V

# Lines of our own (always available), in both the saved and kube-proxy's restore forms.
OWN_LINES = [
    '-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" '
    '-m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU',
    '-A KUBE-SVC-TCOU7JCQXEZGVUNU -m comment --comment "kube-system/kube-dns:dns -> 10.244.0.8:53" '
    '-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-SISP6ORRA37L3ZYK',
    '-A KUBE-SEP-SISP6ORRA37L3ZYK -p udp -m comment --comment "kube-system/kube-dns:dns" -m udp -j DNAT '
    '--to-destination 10.244.0.8:53',
    "-A KUBE-SEP-SISP6ORRA37L3ZYK -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 172.30.0.41 --dport 80 "
    "! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
    "-A KUBE-SERVICES -m comment --comment kubernetes service portals -j KUBE-MARK-MASQ",
    '[12:345] -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
    '-A KUBE-MARK-MASQ -m comment --comment "dnat name: \\"x\\" id: \\"y\\"" -m multiport --dports 80,443 '
    '-j DNAT [unsupported revision]',
    "-A KUBE-MARK-MASQ -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-SERVICES -s ! 10.0.0.1 -p tcp --dport ! 80 -g KUBE-MARK-MASQ",
    "-A KUBE-MARK-MASQ -c 1 2 -j MARK --or-mark 0x4000",
    "-I KUBE-SERVICES 1 -j RETURN",
    "-D KUBE-MARK-MASQ -j RETURN",
    "-N KUBE-NEW",
    "-F KUBE-MARK-MASQ",
]
HEADER = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
          ":KUBE-SVC-TCOU7JCQXEZGVUNU - [0:0]\n:KUBE-SEP-SISP6ORRA37L3ZYK - [0:0]\n")


def _shared_lines() -> list[str]:
    out = []
    for path in shared_files("real-dumps/*.rules") + shared_files("kube-proxy-golden/*.rules"):
        out += [l for l in path.read_text().splitlines() if l.startswith(("-A", "[", ":"))]
    return out


LINES = OWN_LINES + _shared_lines()
PIECES = ["!", "-m", "-j", "-g", "-s", "-d", "-p", '"', '\\"', "\\", "--dport", "--comment", "[0:0]", "[x:y]",
          "", " ", "-A", ":", "*nat", "COMMIT", "tcp", "80", "-c", "[unsupported", "revision]", "-f", "--", "-",
          "->", "a b", "-m comment --comment", "-j DNAT --to-destination", "\t"]


def check(text: str) -> None:
    try:
        rs = parse(text)
    except ParseError as exc:
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if exc.line is not None:        # the line it names is that line of the text
            assert exc.lineno is not None and exc.line == lines[exc.lineno - 1]
        else:                           # only a missing COMMIT at the end names no line
            assert "COMMIT" in str(exc)
        return
    # parsed: the views build, and the Rule objects built later agree with them
    rules, chains = rs.rules, rs.chains
    assert len(rules) == rs.rule_count and len(chains) == rs.chain_count
    for names in rs.tables.values():
        for chain in names.values():
            entries = chain.view_rows()
            for entry, rule in zip(entries, chain.rules):
                assert entry[6:] == V.rule_info(rule), rule.line


@st.composite
def mutated_line(draw) -> str:
    line = draw(st.sampled_from(LINES))
    words = line.split(" ")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["drop", "dup", "insert", "swap", "cut", "char"]))
        if not words:
            words = [""]
        k = draw(st.integers(0, len(words) - 1))
        if op == "drop":
            del words[k]
        elif op == "dup":
            words.insert(k, words[k])
        elif op == "insert":
            words.insert(k, draw(st.sampled_from(PIECES)))
        elif op == "swap" and len(words) > 1:
            j = draw(st.integers(0, len(words) - 1))
            words[k], words[j] = words[j], words[k]
        elif op == "cut":
            joined = " ".join(words)
            words = joined[:draw(st.integers(0, len(joined)))].split(" ")
        elif op == "char":
            w = words[k]
            pos = draw(st.integers(0, len(w)))
            words[k] = w[:pos] + draw(st.sampled_from('"\\!-[]: x')) + w[pos:]
    return " ".join(words)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_line(), min_size=1, max_size=4))
def test_mutated_real_lines(lines):
    check(HEADER + "\n".join(lines) + "\nCOMMIT\n")


@settings(max_examples=200, deadline=None)
@given(mutated_line())
def test_mutated_line_without_header(line):
    check(line + "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES + ["KUBE-SERVICES", "ACCEPT", "1.2.3.4", "\n", "\n-A KUBE-SERVICES"]), max_size=25))
def test_random_token_soup(tokens):
    check(HEADER + " ".join(tokens) + "\nCOMMIT\n")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text(text):
    check(text)


@pytest.mark.parametrize("line", OWN_LINES)
def test_every_own_line_parses_alone(line):
    rs = parse(HEADER + line + "\nCOMMIT\n")
    assert rs.rule_count >= 0
    check(HEADER + line + "\nCOMMIT\n")


def _is_address(value: str) -> bool:
    """What ``-s``/``-d`` accepts, decided by ipaddress alone (the reference for the parser's quick check)."""
    import ipaddress
    addr, _, mask = value.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if not mask:
        return True
    if mask.isdigit():
        return int(mask) <= ip.max_prefixlen
    try:
        ipaddress.ip_address(mask)
    except ValueError:
        return False
    return True


@settings(max_examples=2000, deadline=None)
@example("1.2.3.4/")
@example("01.2.3.4")
@example("1.2.3.4/33")
@example("256.1.1.1")
@example("1.2.3.4/032")
@example("10.0.0.0/8")
@example("1.2.3.4/255.255.0.0")
@example("0.0.0.0/0")
@example("1.2.3")
@example("1..2.3")
@given(st.text(alphabet="0123456789./", min_size=1, max_size=20)
       | st.builds(lambda a, b, c, d, m: f"{a}.{b}.{c}.{d}/{m}", *[st.integers(0, 300)] * 4, st.integers(0, 40)))
def test_the_quick_address_check_agrees_with_ipaddress(value):
    from k8slab.netfilter.parser import _NUMERIC_ADDR, _bad_address
    if _NUMERIC_ADDR.match(value):      # anything else is a host name, left to iptables
        assert (_bad_address(value) is None) == _is_address(value), value
