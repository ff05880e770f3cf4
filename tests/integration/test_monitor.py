"""The terminal's `monitor` (the agent's monitor.start, the method fp-lsp's live lenses use) on
every CPython: the calls it counts are exactly the calls the target made, errors are the calls
that raised, the table has a line per interval with every column, --json gives the reports and
the end, Ctrl-C and -n end it and leave the process as it was; bad options and unknown
functions are refused with what to do. On 3.12+ the calls of a function only monitored are
counted by the agent's C callbacks (agent/native/monitor.c) and a watch beside the monitor
hands them back to the Python path: both must count every call, in turn."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
import test_lsp  # noqa: F401 - registers the lsp_service target

from conftest import FP, wait_until

BURST = 100  # rare() calls per SIGUSR1 (tests/targets/lsp_service.py)


def _background(t, command, *opts):
    t.fp_runs += 1
    return subprocess.Popen(
        [FP, str(t.pid), "--json"] + list(opts) + ["--cmd", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )


class Reports:
    """The --json records of a background `monitor`, read as they come."""

    def __init__(self, proc):
        self.proc = proc
        self.records = []

    def until(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            assert time.monotonic() < deadline, "%s: not within %ss; records %s" % (what, timeout, self.records[-5:])
            line = self.proc.stdout.readline()
            assert line, "fp ended early: %s" % self.proc.stderr.read()
            self.records.append(json.loads(line))
        return self

    def of(self, method):
        return [r["notification"]["params"] for r in self.records if r.get("notification", {}).get("method") == method]

    def calls(self, key=0):
        """The calls counted since the start, as the last report with the function says."""
        seen = [f["calls"] for rep in self.of("monitor/report") for f in rep["functions"] if f["key"] == key]
        return seen[-1] if seen else 0

    def finish(self, sig=signal.SIGINT, timeout=15):
        if sig is not None:
            os.kill(self.proc.pid, sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            pytest.fail("fp did not end after signal %s" % sig)
        self.records += [json.loads(line) for line in out.splitlines() if line.strip()]
        return self.proc.returncode, err


def _burst(t, n):
    """Has the target make its n-th burst of BURST calls of rare(), and waits for it."""
    os.kill(t.pid, signal.SIGUSR1)
    wait_until(lambda: len(t.bursts()) >= n, 15, "burst %d" % n)


def test_counts_exactly_the_calls_made(spawn):
    t = spawn("lsp_service")
    m = Reports(_background(t, "monitor __main__ rare -c 1"))
    m.until(lambda r: r.of("monitor/report"), 15, "the first report")  # armed: the first interval is over
    for n in (1, 2, 3):
        _burst(t, n)
    m.until(lambda r: r.calls() >= 3 * BURST, 15, "300 calls counted")
    rc, err = m.finish()
    assert rc == 0 and "stopped (Ctrl-C)" in err, (rc, err)
    assert m.calls() == 3 * BURST, m.of("monitor/report")
    reports = m.of("monitor/report")
    seqs = [r["seq"] for r in reports]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    per_interval = sum(f["interval"]["calls"] for r in reports for f in r["functions"])
    assert per_interval == 3 * BURST, reports
    last = [f for r in reports for f in r["functions"]][-1]
    assert last["errors"] == 0 and last["max_ms"] >= last["p95_ms"] >= last["p50_ms"] > 0, last
    assert sum(n for _, n in last["hist"]) == 3 * BURST, last["hist"]
    end = m.of("monitor/end")
    assert end and end[0]["reason"] == "stopped" and end[0]["functions"][0]["calls"] == 3 * BURST, end
    wait_until(lambda: t.pristine() == 0, 10, "nothing left installed")
    t.assert_healthy()


def test_errors_are_the_calls_that_raised_and_the_table(spawn):
    t = spawn("lsp_service")
    # checkout(Cart()) raises every fourth tick (0.2 s): two intervals of 1 s see calls.
    run = t.cmd("monitor __main__ checkout -c 1 -n 3", "--timeout", "30").ok()
    lines = run.out.splitlines()
    assert re.match(r"^monitoring checkout \(function, .*lsp_service\.py:\d+\) every 1 s; Ctrl-C stops$", lines[0]), (
        run.out
    )
    header = lines[1].split()
    assert header == ["TIME", "FUNCTION", "CALLS", "RATE/s", "ERRORS", "MEAN", "P50", "P95", "MAX"], lines[1]
    rows = [l for l in lines[2:] if " checkout " in l]
    assert rows, run.describe()
    for row in rows:
        cols = row.split()
        calls, errors = int(cols[3]), int(cols[5])
        assert calls > 0 and errors == calls, row  # every call of checkout raises
    m = re.search(r"^monitor ended \(limit\) after 3 reports; (\d+) calls, (\d+) errors$", run.out, re.M)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) > 0, run.out
    wait_until(lambda: t.pristine() == 0, 10, "nothing left installed")
    t.assert_healthy()


def test_a_watch_beside_the_monitor_loses_no_call(spawn, python):
    """The monitor counts in C while alone on the function (3.12+); a watch added takes every
    call to the Python path, and its end gives them back: each call is counted once."""
    t = spawn("lsp_service")
    m = Reports(_background(t, "monitor __main__ rare -c 1"))
    m.until(lambda r: r.of("monitor/report"), 15, "the first report")
    _burst(t, 1)
    watch = _background(t, "watch __main__ rare -n 1000000")
    w = Reports(watch)
    w.until(lambda r: any("result" in rec for rec in r.records), 15, "the watch started")
    _burst(t, 2)
    w.until(lambda r: len(r.of("watch/event")) >= BURST, 15, "the watch saw the burst")
    rc, _ = w.finish()
    assert rc == 0
    _burst(t, 3)
    m.until(lambda r: r.calls() >= 3 * BURST, 15, "300 calls counted")
    rc, err = m.finish()
    assert rc == 0, err
    assert m.calls() == 3 * BURST, m.of("monitor/report")
    wait_until(lambda: t.pristine() == 0, 10, "nothing left installed")
    t.assert_healthy()


def test_bad_options_and_unknown_functions(spawn):
    t = spawn("lsp_service")
    run = t.cmd("monitor __main__ rare -c 0.5").failed()
    assert "-c/--cycle expects a whole number from 1 to 3600, got '0.5'" in run.err, run.describe()
    run = t.cmd("monitor __main__ no_such_function -n 1").failed()
    assert "no_such_function" in run.err, run.describe()
    run = t.cmd("monitor __main__").failed()
    assert "usage: monitor module [class] method" in run.err, run.describe()
    assert t.pristine() == 0
    t.assert_healthy()
