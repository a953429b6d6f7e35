"""The parser on real node dumps and kube-proxy's golden files (../shared/fixtures; skipped if absent).

Expected counts are computed here from the file text with plain line matching, independently of
the parser.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import shared_files
from k8slab.errors import ParseError
from k8slab.netfilter import parse, parse_file
from k8slab.netfilter import views as V
from k8slab.netfilter.rules import STANDARD_TARGETS

pytestmark = pytest.mark.shared

REAL = shared_files("real-dumps/*.rules")
GOLDEN = shared_files("kube-proxy-golden/*.rules")
HASHED = re.compile(r"KUBE-(SVC|SVL|EXT|FW|SEP)-")


def _need(files: list[Path]) -> None:
    if not files:
        pytest.skip("../shared/fixtures is absent: the shared fixtures exist only beside the project's checkout")


def _fixture(shared_fixtures: Path, prefix: str) -> Path:
    found = sorted(shared_fixtures.glob(prefix))
    if not found:
        pytest.skip(f"no {prefix} in {shared_fixtures}")
    return found[0]


def expected_counts(text: str) -> tuple[int, dict[str, set[str]]]:
    """Rules = lines starting with -A (or [counters] -A); chains per table = ':' lines, -A chains
    and non-standard -j/-g targets. Lines before any '*table' line go to the table '?'."""
    rules = 0
    chains: dict[str, set[str]] = {}
    table = "?"
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if line.startswith(":"):
            chains.setdefault(table, set()).add(line[1:].split()[0])
            continue
        m = re.match(r"(\[\d+:\d+\] )?-A (\S+)", line)
        if m:
            rules += 1
            chains.setdefault(table, set()).add(m.group(2))
            for t in re.findall(r" -[jg] (\S+)", line):
                if t not in STANDARD_TARGETS:
                    chains[table].add(t)
    return rules, chains


@pytest.mark.parametrize("path", REAL + GOLDEN, ids=lambda p: p.name)
def test_every_fixture_parses_with_the_expected_counts(path: Path):
    text = path.read_text()
    rs = parse_file(path)
    rules, chains = expected_counts(text)
    assert rs.rule_count == rules
    assert rs.chain_count == sum(len(c) for c in chains.values())
    if "?" not in chains:
        assert {t: set(c) for t, c in rs.tables.items()} == chains
    assert len(rs.rules) == rules and len(rs.chains) == rs.chain_count
    # the views need no Rule objects; building them afterwards gives the same facts
    for table, names in rs.tables.items():
        for chain in names.values():
            entries = chain.view_rows()
            for entry, rule in zip(entries, chain.rules):
                assert entry[6:] == V.rule_info(rule), rule.line
                assert entry[4] == rule.line and entry[0] == rule.position


@pytest.mark.parametrize("path", REAL + GOLDEN, ids=lambda p: p.name)
def test_hash_ok_for_every_kube_proxy_chain_with_rules(path: Path):
    chains = parse_file(path).chains
    hashed = chains[chains.chain.str.match(HASHED.pattern)]
    with_rules = hashed[hashed.rules > 0]
    assert (with_rules.hash_ok == True).all(), with_rules[with_rules.hash_ok != True]  # noqa: E712
    # only chains without rules and without a rule jumping to them cannot be checked
    unknown = hashed[hashed.hash_ok.isna()]
    assert (unknown.rules == 0).all()


def test_renamed_chain_fails_the_hash_check(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/01-*.rules")
    text = path.read_text()
    name = sorted(set(re.findall(r"KUBE-SVC-[A-Z2-7]{16}", text)))[0]
    renamed = "KUBE-SVC-" + "Z" * 16
    chains = parse(text.replace(name, renamed)).chains
    assert chains.set_index("chain").loc[renamed, "hash_ok"] is False
    sep = sorted(set(re.findall(r"KUBE-SEP-[A-Z2-7]{16}", text)))[0]
    chains = parse(text.replace(sep, "KUBE-SEP-" + "A" * 16)).chains
    assert chains.set_index("chain").loc["KUBE-SEP-" + "A" * 16, "hash_ok"] is False


def test_a_dnat_destination_and_a_probability(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/01-*.rules")
    text = path.read_text()
    rs = parse(text)
    frame = rs.rules
    line = next(l for l in text.splitlines() if "-j DNAT --to-destination" in l and "KUBE-SEP-" in l)
    chain, dest = re.match(r"-A (\S+) .* --to-destination (\S+)$", line).groups()
    row = frame[frame.line == line].iloc[0]
    assert row.dnat_to == dest and row.target == "DNAT" and row.endpoint == dest and row.chain == chain
    rule = rs.chain("nat", chain).rules[row.position - 1]
    assert rule.target_option("--to-destination").value == dest
    line = next(l for l in text.splitlines() if "--probability" in l)
    p = re.search(r"--probability (\S+)", line).group(1)
    row = frame[frame.line == line].iloc[0]
    assert row.probability == float(p) and row.target_args == f"p={p}"


def test_golden_probability_and_fragments(shared_fixtures: Path):
    for path in sorted((shared_fixtures / "kube-proxy-golden").glob("*.rules")):
        rs = parse_file(path)
        # tracepacket has built-in chains; the others are restore fragments
        assert rs.fragment is (path.name != "tracepacket.rules"), path.name
        text = path.read_text()
        for line in text.splitlines():
            m = re.search(r"--probability (\S+)", line)
            if m:
                row = rs.rules[rs.rules.line == line].iloc[0]
                assert row.probability == float(m.group(1))
                assert m.group(1).count("0") >= 9       # kube-proxy's own %0.10f form
    for path in REAL:
        assert parse_file(path).fragment is False


def test_unquoted_multi_word_comments_come_out_whole(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "kube-proxy-golden/tracepacket.rules")
    text = path.read_text()
    rs = parse(text)
    frame = rs.rules
    checked = 0
    for line in text.splitlines():
        m = re.search(r'--comment ([^"\s][^"]*?) (-[jm]|! -[sd]|-[sd]) ', line)
        if m and " " in m.group(1):
            row = frame[frame.line == line].iloc[0]
            assert row.comment == m.group(1)
            checked += 1
    assert checked >= 3


def test_escaped_quotes_in_the_portmap_comment(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/08-*.rules")
    text = path.read_text()
    line = next(l for l in text.splitlines() if 'dnat name: \\"' in l)
    raw = re.search(r'--comment "((?:[^"\\]|\\.)*)"', line).group(1)
    expected = raw.replace('\\"', '"').replace("\\\\", "\\")
    rs = parse(text)
    row = rs.rules[rs.rules.line == line].iloc[0]
    assert row.comment == expected and '"' in expected
    assert row.dport == re.search(r"--dports (\S+)", line).group(1)
    assert row.owner == "CNI portmap"


def test_dump_08_excerpt_lenient_and_strict(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/08-*.rules")
    text = path.read_text()
    rs = parse(text)
    assert list(rs.tables) == ["nat"]
    assert any("assumed '*nat'" in w for w in rs.warnings)
    declared = {l[1:].split()[0] for l in text.splitlines() if l.startswith(":")}
    chains = rs.chains.set_index("chain")
    for name, row in chains.iterrows():
        assert row.declared == (name in declared), name
    dn = next(n for n in chains.index if n.startswith("CNI-DN-"))
    assert not chains.loc[dn, "declared"] and chains.loc[dn, "jumped_from"] == ["CNI-HOSTPORT-DNAT"]
    with pytest.raises(ParseError, match="before any") as err:
        parse(text, strict=True)
    assert err.value.lineno == 1 and err.value.line == text.splitlines()[0]


def test_per_rule_counters_of_dump_02(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/02-*.rules")
    text = path.read_text()
    rs = parse(text)
    frame = rs.rules
    lines = [l for l in text.splitlines() if l.startswith("[")]
    assert len(lines) == len(frame) and frame.packets.notna().all()
    for line in lines[:20]:
        pk, by = map(int, re.match(r"\[(\d+):(\d+)\]", line).groups())
        row = frame[frame.line == line].iloc[0]
        assert (row.packets, row.bytes) == (pk, by)
    first = lines[0]
    chain = re.match(r"\[\d+:\d+\] -A (\S+)", first).group(1)
    table = rs.rules[rs.rules.line == first].iloc[0].table
    rule = rs.chain(table, chain).rules[0]
    assert rule.line == first and rule.packets == int(first[1:first.index(":")])


def test_nft_text_is_refused_with_a_hint(shared_fixtures: Path):
    path = _fixture(shared_fixtures, "real-dumps/09-*.nft")
    with pytest.raises(ParseError, match="nftables") as err:
        parse_file(path)
    assert err.value.lineno is not None
