"""The command line as a whole: every error, usage mistakes included, is one line on stderr, exit 2."""
import pytest

from k8slab.cli import main


@pytest.mark.parametrize("argv", [
    ["trace", "-", "--dst", "1.1.1.1"],                      # --dport missing
    ["trace", "-", "--dst", "1.1.1.1", "--dport", "abc"],    # not a number
    ["rules", "-", "--format", "xml"],                       # not a choice
    ["no-such-command"],
])
def test_usage_mistakes_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("k8slab: error:"), err


def test_a_missing_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["rules", str(tmp_path / "missing.rules")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "missing.rules" in err
