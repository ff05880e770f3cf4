"""Errors a user can hit: no such process, not a Python process, unknown command; each
explains itself on stderr with a non-zero exit, and harms nothing."""

import os
import re
import subprocess

import pytest

from conftest import proc_state, run_fp, thread_syscall, wait_until


def free_pid():
    with open("/proc/sys/kernel/pid_max") as f:
        pid = int(f.read()) - 1
    while os.path.exists("/proc/%d" % pid):
        pid -= 1
    return pid


@pytest.fixture(scope="module")
def t(module_spawn):
    return module_spawn("sleeper")


def test_no_such_process(python):
    # The interpreter does not matter here; the parameter keeps every test on every version.
    pid = free_pid()
    r = run_fp([pid, "--cmd", "status"]).failed()
    assert re.search(r"no (such )?process", r.err.lower()) and str(pid) in r.err, r.describe()


def test_not_a_number(python):
    r = run_fp(["not-a-pid", "--cmd", "status"]).failed()
    assert "not-a-pid" in r.err, r.describe()


def test_not_python(python):
    sleep = subprocess.Popen(["sleep", "1000"])
    try:
        # Until it sits in its sleep, it may still be a copy of this Python process (before exec).
        wait_until(
            lambda: thread_syscall(sleep.pid) in ("nanosleep", "clock_nanosleep"), 10, "sleep 1000 to start sleeping"
        )
        r = run_fp([sleep.pid, "--cmd", "status"]).failed()
        assert "python" in r.err.lower(), r.describe()
        assert sleep.poll() is None and proc_state(sleep.pid) == "S", "the sleep process was harmed"
        assert thread_syscall(sleep.pid) in ("nanosleep", "clock_nanosleep"), "its sleep was interrupted"
        with open("/proc/%d/maps" % sleep.pid) as f:
            assert "libfpagent" not in f.read(), "fp injected into a non-Python process"
    finally:
        sleep.kill()
        sleep.wait()


def test_unknown_command_suggests(t):
    r = t.cmd("stak").failed()
    assert "stack" in r.err, r.describe()
    r = t.cmd("getglobl __main__ X").failed()
    assert "getglobal" in r.err, r.describe()


def test_bad_arguments(t):
    r = t.cmd("getglobal").failed()
    assert "getglobal" in r.err, r.describe()


def test_help(t):
    r = t.cmd("help").ok()
    for name in ("getglobal", "stack", "console", "module", "status", "shutdown"):
        assert name in r.out, r.describe()
    r = t.cmd("help getglobal").ok()
    assert "-x" in r.out and "-e" in r.out, r.describe()


def test_target_unaffected(t):
    t.assert_healthy()
