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
