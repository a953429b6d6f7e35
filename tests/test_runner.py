import os
import sys
import time

import pytest

from k8slab import runner
from k8slab.errors import CommandError, CommandNotFound, CommandTimeout


def test_run_captures_stdout_and_stderr():
    res = runner.run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert res.ok and res.stdout.strip() == "out" and res.stderr.strip() == "err"


def test_shell_strings_are_refused():
    with pytest.raises(TypeError):
        runner.run("echo hi")


def test_failure_message_carries_stderr_and_hint():
    with pytest.raises(CommandError) as info:
        runner.run([sys.executable, "-c", "import sys; sys.exit('boom')"], hint="Try again.")
    assert info.value.returncode == 1
    assert "boom" in str(info.value) and "Try again." in str(info.value)


def test_missing_executable():
    with pytest.raises(CommandNotFound):
        runner.run(["k8slab-no-such-tool-xyz"])


def test_timeout_kills_the_whole_process_group():
    code = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    start = time.monotonic()
    with pytest.raises(CommandTimeout):
        runner.run([sys.executable, "-c", code], timeout=0.5)
    assert time.monotonic() - start < 10


def test_spawn_and_stop_leave_no_process_group():
    code = "import subprocess,sys,time; subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); time.sleep(60)"
    proc = runner.spawn([sys.executable, "-c", code])
    time.sleep(0.3)
    assert runner.group_alive(proc.pid)
    runner.stop(proc, grace=1)
    deadline = time.monotonic() + 5
    while runner.group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.group_alive(proc.pid)


# --- run() goes through the `sh` package (the declared dependency), with the same behaviour ------
def test_run_goes_through_sh_with_each_argument_passed_as_is(monkeypatch):
    calls = []
    real = runner.sh.Command

    def spy(path, *a, **kw):
        calls.append(path)
        return real(path, *a, **kw)
    monkeypatch.setattr(runner.sh, "Command", spy)
    tricky = ["a b; echo injected", "$HOME", "*", "--flag=x y", "'quoted'"]
    res = runner.run([sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", *tricky])
    assert calls == [sys.executable]
    import json
    assert json.loads(res.stdout) == tricky          # no shell ever saw them
    assert res.argv[0] == sys.executable and res.argv[-len(tricky):] == tuple(tricky)


def test_timeout_kills_the_grandchildren_too(tmp_path):
    # sh's own _timeout signals only the child it started (OProc.signal -> os.kill(pid)); the runner
    # must still stop the whole process group, grandchildren included.
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess,sys,time; p = subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']); "
            f"open({str(pidfile)!r},'w').write(str(p.pid)); time.sleep(60)")
    with pytest.raises(CommandTimeout) as err:
        runner.run([sys.executable, "-c", code], timeout=1.0)
    assert "did not finish within 1 s" in str(err.value)
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {grandchild} survived the timeout")


def test_big_output_is_kept_whole_and_undecodable_bytes_are_replaced():
    line = "-A KUBE-SVC-X -j KUBE-SEP-Y\n"
    res = runner.run([sys.executable, "-c", f"import sys; sys.stdout.write({line!r} * 400000)"])
    assert res.stdout == line * 400000                # 11 MB, not the last few MB only
    res = runner.run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'ok \\xff'); "
                      "sys.stderr.buffer.write(b'err \\xfe')"])
    assert res.stdout == "ok \ufffd" and res.stderr == "err \ufffd"


def test_input_text_or_bytes_and_no_inherited_stdin():
    cat = [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"]
    assert runner.run(cat, input="héllo\n").stdout == "héllo\n"
    assert runner.run(cat, input=b"\x00\x01").stdout == "\x00\x01"
    assert runner.run(cat, timeout=10).stdout == ""            # stdin is /dev/null, never the caller's


def test_exit_codes_signals_env_and_cwd(tmp_path):
    res = runner.run([sys.executable, "-c", "import sys; sys.exit(7)"], check=False)
    assert res.returncode == 7 and not res.ok
    res = runner.run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], check=False)
    assert res.returncode == -15                      # like subprocess: minus the signal number
    res = runner.run([sys.executable, "-c", "import os; print(os.environ['K8SLAB_X'], os.getcwd())"],
                     env={"K8SLAB_X": "1"}, cwd=str(tmp_path))
    assert res.stdout.split() == ["1", str(tmp_path)]
    res = runner.run([sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"])
    assert res.stdout.strip() == "True"               # its own session, so its group can be killed


def test_program_lookup_uses_the_given_path_and_says_permission_denied(tmp_path):
    tool = tmp_path / "k8slab-fake-tool"
    tool.write_text(f"#!{sys.executable}\nprint('found')\n")
    tool.chmod(0o755)
    assert runner.run(["k8slab-fake-tool"], env={"PATH": str(tmp_path)}).stdout == "found\n"
    tool.chmod(0o644)
    with pytest.raises(CommandError, match="permission denied"):
        runner.run([str(tool)])


def test_every_result_is_recorded():
    rec = runner.Recorder()
    runner._recorders.append(rec)
    try:
        runner.run(["true"])
        runner.run(["false"], check=False)
    finally:
        runner._recorders.remove(rec)
    assert [(r.argv[-1:], r.returncode) for r in rec.results] == [(("true",), 0), (("false",), 1)]
