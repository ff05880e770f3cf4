"""gilstat names each thread as the program does (threading's names, as `stack` shows them),
not by the kernel's name, which is the process's own for every thread a Python program starts
(tests/targets/callbacks.py: threads "worker-0" and "worker-1" beside MainThread)."""

import pytest
from test_gilstat import gilstat, is_system, of
from test_perf_sampling import Callbacks  # noqa: F401  (registers the target kind)


def test_rows_name_threads_as_threading_does(spawn, python):
    if is_system(python):
        pytest.skip("gilstat refuses the stripped interpreter (test_gilstat checks the refusal)")
    t = spawn("callbacks")
    stack = {th["native_id"]: th["name"] for th in t.json("stack")["threads"]}
    assert sorted(stack.values()) == ["MainThread", "worker-0", "worker-1"], stack
    r, notes = gilstat(t, "gilstat on -i 1", 2.6)
    r.ok()
    rows = [row for rep in of(notes, "gilstat/report") for row in rep["threads"]]
    assert rows, r.describe()
    for row in rows:
        assert row["name"] == stack[row["tid"]], (row["tid"], row["name"], row["comm"], stack)
        assert row["comm"] != row["name"] or row["name"] == "MainThread", row
    assert {row["name"] for row in rows} >= {"worker-0", "worker-1"}, rows
    human = t.cmd("gilstat on -i 1", "--timeout", "2.6", timeout=60).ok().out
    assert "worker-0" in human and "worker-1" in human, human
