"""fp's command line as a user meets it: the process list (parents and their workers), commands
that need no process, the exit statuses (one rule for every command), the default bound of
commands that run until stopped, and the hint that points at a pre-forking server's workers."""

import re
import subprocess
import time

import pytest

from conftest import PYTHONS, run_fp

FIRST = PYTHONS[0].id if PYTHONS else None


def test_process_list_shows_parents_and_workers(spawn):
    t = spawn("prefork")
    workers = t.workers()
    model = run_fp(["--json"]).result()
    by_pid = {p["pid"]: p for p in model["processes"]}
    assert t.pid in by_pid and all(w in by_pid for w in workers), model
    for w in workers:
        assert by_pid[w]["ppid"] == t.pid, by_pid[w]
    assert by_pid[t.pid]["cwd"] == t.cwd
    # Each worker comes right after its master.
    order = [p["pid"] for p in model["processes"]]
    at = order.index(t.pid)
    assert sorted(order[at + 1 : at + 3]) == sorted(workers), order
    table = run_fp([]).ok().out
    assert re.search(r"^\s*PID\s+PPID\s+USER\s+PYTHON\s+COMMAND$", table, re.M), table
    for w in workers:
        assert re.search(r"^\s*%d\s+%d\s+\S+\s+\S+\s+\u2514 .*prefork\.py" % (w, t.pid), table, re.M), table
    t.assert_healthy()


def test_master_hints_at_its_workers(spawn):
    t = spawn("prefork")
    r = t.cmd("watch __main__ handle -n 1", "--timeout", "1").ok()  # the master never calls it
    assert "stopped (--timeout) after 0 reports" in r.err, r.describe()
    assert "has Python child processes (%s)" % ", ".join(str(w) for w in t.workers()) in r.err, r.describe()
    assert "fp %d" % t.workers()[0] in r.err, r.describe()
    # In a worker the calls are seen, and nothing is hinted.
    w = t.workers()[0]
    r = run_fp([w, "--cmd", "watch __main__ handle -n 1"]).ok()
    assert "1 call" in r.out or "watch ended" in r.out, r.describe()
    assert "child processes" not in r.err, r.describe()
    run_fp([w, "--cmd", "shutdown"]).ok()
    run_fp([t.pid, "--cmd", "shutdown"]).ok()


def test_commands_that_need_no_process(python):
    if python.id != FIRST:
        pytest.skip("the client's own behaviour: checked on one interpreter")
    r = run_fp(["--cmd", "help perf"]).ok()
    assert r.out.startswith("usage: perf [PID]"), r.describe()
    r = run_fp(["--json", "--cmd", "help"]).result()
    assert any(c["name"] == "watch" for c in r["commands"])
    r = run_fp(["--cmd", "getglobal __main__ x"])
    assert r.rc == 2 and "getglobal needs a process" in r.err and "fp PID --cmd" in r.err, r.describe()
    r = run_fp(["--cmd", "stack"])
    assert r.rc == 2 and "stack needs a process: give its PID" in r.err, r.describe()


def test_stack_with_a_pid_needs_no_attach(spawn):
    t = spawn("sleeper")
    r = run_fp(["--json", "--cmd", "stack %d" % t.pid]).result()
    assert r["pid"] == t.pid and r["threads"], r


def test_exit_statuses_are_the_same_for_every_command(python, spawn):
    """0 ok; 1 a command failed; 2 bad usage, or the process cannot be attached to or read,
    whatever the command (from outside or through the agent)."""
    if python.id != FIRST:
        pytest.skip("the client's own behaviour: checked on one interpreter")
    other = subprocess.Popen(["sleep", "60"])
    try:
        for cmd in ("stack", "status", "perf -d 1", "getglobal a b"):
            r = run_fp([other.pid, "--cmd", cmd])
            assert r.rc == 2 and "is not a CPython interpreter" in r.err, r.describe()
    finally:
        other.kill()
        other.wait()
    r = run_fp([2**22 + 7, "--cmd", "stack"])
    assert r.rc == 2 and "no process with PID" in r.err, r.describe()
    t = spawn("inspectee")
    assert t.cmd("getglobal __main__ NOPE").rc == 1  # the agent answered: the command failed
    assert t.cmd("getglobal __main__").rc == 2  # usage
    assert t.cmd("bogus").rc == 2
    assert t.cmd("status").ok().rc == 0
    assert "Exit status: 0 ok" in run_fp(["--help"]).out


def test_getglobal_names_the_next_depth(spawn):
    t = spawn("inspectee")
    out = t.cmd("getglobal __main__ CONFIG -x 2").ok().out
    assert "-x 3 shows one level deeper" in out, out
    raw = t.cmd("getglobal __main__ CONFIG -r").ok().out
    assert raw.startswith("{") and "'name': 'inspectee'" in raw, raw  # -r: the plain repr


def test_streams_in_cmd_end_at_the_default_timeout(python, spawn):
    """A --cmd stream that is never fed ends at --timeout's default (30 s), and says so."""
    if python.id != FIRST:
        pytest.skip("the client's own behaviour: checked on one interpreter (it takes 30 s)")
    t = spawn("inspectee")
    t0 = time.monotonic()
    r = t.cmd("watch __main__ Point __init__ -n 5", timeout=60)  # never called after start-up
    took = time.monotonic() - t0
    assert r.rc == 0, r.describe()
    assert "stopped (the default --timeout of 30 s" in r.err, r.describe()
    assert 29 <= took <= 45, took
