"""A target whose one thread holds the GIL forever: status (no GIL needed) still answers; a
Python command fails within --timeout with an error that names the GIL; the target is unharmed."""

import time

from conftest import wait_until

TIMEOUT_S = 3


def test_gil_held_forever(spawn, python):
    t = spawn("gil_hog")
    wait_until(t.hog_in_sleep, 10, "the hog thread to enter its C sleep holding the GIL")

    status = t.json("status", timeout=30)
    assert status["pid"] == t.pid

    t0 = time.monotonic()
    r = t.cmd("getglobal fptarget MARKER", "--timeout", str(TIMEOUT_S), timeout=30).failed()
    elapsed = time.monotonic() - t0
    assert "GIL" in r.err, r.describe()
    # Attach time is not part of --timeout; allow for it, but not for an unbounded wait.
    assert elapsed < TIMEOUT_S + 10, r.describe()

    # The agent still serves everyone else, and tells how long the GIL has been awaited.
    again = t.json("status")
    assert again["pid"] == t.pid
    t.assert_healthy()
