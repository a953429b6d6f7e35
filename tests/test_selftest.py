"""k8slab selftest: each way in against the tracer's prediction, on the sim (the kind emulator runs it
for real in tests/test_kindemu.py)."""
from __future__ import annotations

import pytest

from k8slab import Lab, cli, selftest


@pytest.fixture
def lab():
    lab = Lab(backend="sim", quiet=True)
    selftest.prepare(lab)
    return lab


def test_every_way_answers_as_predicted_on_the_sim(lab):
    checks = selftest.run(lab)
    assert [c.way for c in checks] == list(selftest.WAYS)
    assert all(c.agrees and c.status == 200 for c in checks), selftest.frame(checks)
    pf = checks[0]
    assert pf.client_seen == "127.0.0.1" and pf.answered_by in pf.predicted
    df = selftest.frame(checks, lab)
    assert df.attrs["predicted"] and list(df["agrees"]) == [True] * 5


def test_a_way_that_stops_answering_is_a_failed_row(lab):
    lab.delete("service", "url-shortener-nodeport")
    checks = {c.way: c for c in selftest.run(lab)}
    assert not checks["nodeport"].agrees and checks["nodeport"].status is None
    assert checks["nodeport"].note          # the error, in words
    assert checks["clusterip"].agrees


def test_the_cli_prints_the_table_writes_a_recording_and_exits_by_the_result(tmp_path, capsys):
    rc = cli.main(["selftest", "--backend", "sim", "--record", str(tmp_path / "rec")])
    out = capsys.readouterr().out
    assert rc == 0
    for way in selftest.WAYS:
        assert f"ok   {way}:" in out
    assert (tmp_path / "rec").is_dir() and any((tmp_path / "rec").iterdir())
    replay = Lab(backend="sim", replay=tmp_path / "rec", quiet=True)
    assert replay.backend_name
