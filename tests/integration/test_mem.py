"""mem against a real target (tests/targets/memtarget.py) under every CPython: the summary by type
with the process's and the interpreter's figures, a diff that shows exactly the objects made
between its snapshots (with progress while it waits, from --cmd and from the shell), a diff
stopped early, mem top and mem diff --traces naming the allocating line, and tracemalloc
stopped at mem off, detach and shutdown when fp started it, left alone when the program did.
"""

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import FP, KINDS, Target, wait_until


class MemTarget(Target):
    kind = "memtarget"
    line_re = re.compile(r"^(tick \d+|did \d+ \w+( \d+)?)$")
    progress_re = re.compile(r"^tick \d+$")
    settle_progress = 1

    seq = 0

    def request(self, text, wait=True):
        """Asks the target's main thread to do `text` (see memtarget.py); waits until it did."""
        MemTarget.seq += 1
        seq = MemTarget.seq
        cmddir = self.args[0]
        tmp = os.path.join(cmddir, ".tmp-%d" % seq)
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.rename(tmp, os.path.join(cmddir, "cmd-%d" % seq))
        done = "did %d %s" % (seq, text)
        if wait:
            wait_until(lambda: done in self.stdout_lines(), 15, "the target to do %r" % text)
        return done

    def is_tracing(self):
        run = self.cmd('getglobal tracemalloc is_tracing -e "target()"', "--json")
        rec = run.records()[-1]
        if "error" in rec:  # never imported: nothing traces
            assert rec["error"]["data"]["missing"] == "module", run.describe()
            return False
        return rec["result"]["value"]["repr"] == "True"


KINDS["memtarget"] = MemTarget


@pytest.fixture(scope="module")
def target(module_spawn, tmp_path_factory, python):
    cmddir = tmp_path_factory.mktemp("cmd-" + python.id)
    return module_spawn("memtarget", str(cmddir))


class Fp(object):
    """fp started in the background (its stdout read line by line by a thread, so every wait is
    bounded); stdin is a pipe for the shell."""

    def __init__(self, t, *args):
        t.fp_runs += 1
        self.proc = subprocess.Popen(
            [FP, str(t.pid)] + list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
        )
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, predicate, what, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("timed out waiting for %s from fp; got %r" % (what, self.seen[-5:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(
                    "fp ended while waiting for %s; got %r; stderr %r" % (what, self.seen[-5:], self.proc.stderr.read())
                )
            self.seen.append(line)
            if predicate(line):
                return line

    def result(self, what):
        return json.loads(self.wait(lambda l: '"result"' in l, what))["result"]

    def finish(self, sig=None, timeout=30):
        """Waits for fp to end (after sig, if given): (exit status, the rest of stdout, stderr)."""
        if sig is not None:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("fp did not finish in %ss" % timeout)
        self.reader.join(5)
        rest = []
        while True:
            line = self.lines.get(timeout=5)
            if line is None:
                break
            rest.append(line)
        return self.proc.returncode, "".join(rest), self.proc.stderr.read()


def rows_by_type(rows):
    return dict((r["type"], r) for r in rows)


# ------------------------------------------------------------------------------------------
# mem summary


def test_summary(target):
    r = target.json("mem summary --limit 100000")
    rows = rows_by_type(r["rows"])
    assert rows["__main__.Base"]["count"] == 7 and rows["__main__.Sub"]["count"] == 5, r["rows"][:20]
    assert rows["__main__.SubSub"]["count"] == 3
    assert rows["__main__.Base"]["size"] == 7 * (rows["__main__.Base"]["size"] // 7) > 0
    assert r["complete"] and r["share"] == 1.0 and r["covered"] == r["objects"] > 1000, r
    assert r["sizes"] == "shallow" and not r["untracked"] and "str" not in rows
    assert not any(t.startswith("fp_agent.") for t in rows), "the agent's own objects are not the program's"
    assert r["total"]["count"] == sum(x["count"] for x in r["rows"])
    assert r["process"]["rss_bytes"] > 1 << 20 and r["process"]["rss_peak_bytes"] >= r["process"]["rss_bytes"]
    interp = r["interpreter"]
    assert interp["allocated_blocks"] > 0 and len(interp["gc"]["generations"]) == 3
    assert interp["gc"]["enabled"] is False and len(interp["gc"]["counts"]) == 3  # the target disabled it
    # limit and order
    sizes = [x["size"] for x in target.json("mem summary --limit 5")["rows"]]
    assert len(sizes) == 5 and sizes == sorted(sizes, reverse=True)
    small = [x["size"] for x in target.json("mem summary --limit 5 --order ascending")["rows"]]
    assert small == sorted(small) and small[-1] <= sizes[-1]
    # --all: the objects the collector does not track, found through the tracked ones
    r = target.json("mem summary --all --limit 100000")
    rows = rows_by_type(r["rows"])
    assert r["untracked"] and r["untracked_objects"] > 100 and rows["str"]["count"] > 100, r["rows"][:10]
    assert rows["__main__.Base"]["count"] == 7
    # a budget too small for the whole: a partial summary, said so
    r = target.json("mem summary --budget 0.05 --all")
    assert r["budget_s"] == 0.05 and (r["complete"] or r["share"] < 1.0)


def test_summary_human(target):
    run = target.cmd("mem summary --limit 3").ok()
    assert "sizes are shallow" in run.out and "--all adds them" in run.out, run.describe()
    assert re.search(r"^ +COUNT +SIZE  TYPE$", run.out, re.M)
    assert re.search(r"^total: [\d,]+ objects, [\d.]+ \w+, in \d+ types \(3 shown\)$", run.out, re.M)
    assert re.search(r"^coverage: all [\d,]+ tracked objects examined in \d+\.\d\d s$", run.out, re.M)
    assert re.search(r"^process: RSS [\d.]+ MiB \(peak [\d.]+ MiB\)$", run.out, re.M)
    assert "gc DISABLED" in run.out and "sys.getallocatedblocks" in run.out
    run = target.cmd("mem sumary").failed()
    assert "unknown mem subcommand 'sumary'" in run.err
    run = target.cmd("mem summary --interval 3").failed()
    assert "--interval is not an option of mem summary" in run.err
    run = target.cmd("mem diff").failed()
    assert "mem diff needs --interval S" in run.err


# ------------------------------------------------------------------------------------------
# mem diff


def test_diff_shows_exactly_what_was_made(target):
    proc = Fp(target, "--json", "--cmd", "mem diff --interval 4 --limit 100000")
    start = proc.result("the start result")
    assert start["stream"]["end"] == "mem/end" and start["first"]["complete"], start
    target.request("grow 1234")
    rc, out, err = proc.finish()
    assert rc == 0, err
    notes = [json.loads(l)["notification"] for l in out.splitlines()]
    progress = [n["params"] for n in notes if n["method"] == "mem/progress"]
    ends = [n["params"] for n in notes if n["method"] == "mem/end"]
    assert progress and all(0 < p["elapsed_s"] < 4 and p["interval_s"] == 4 for p in progress), notes
    assert len(ends) == 1 and ends[0]["reason"] == "done" and not ends[0]["estimated"], ends
    blob = rows_by_type(ends[0]["rows"])["__main__.Blob"]
    assert blob["count"] == 1234 and blob["count_after"] == 1234 and blob["size"] > 0, blob
    assert ends[0]["elapsed_s"] >= 4 and ends[0]["after"]["complete"]
    assert ends[0]["rows"][0]["size"] >= ends[0]["rows"][-1]["size"]  # growth first
    target.request("clear")


def test_diff_progress_in_cmd_and_shell(target):
    run = target.cmd("mem diff --interval 2.5 --limit 3").ok()
    assert re.search(r"^first snapshot: all [\d,]+ tracked objects examined in", run.out, re.M), run.describe()
    assert "the second in 2.5 s (Ctrl-C stops)" in run.out
    assert re.search(r"^waiting: [12] s of 2.5 s$", run.out, re.M), run.describe()
    assert re.search(r"^change over 2\.\d s by type, growth first", run.out, re.M), run.describe()
    # The interactive shell (lines on stdin): the same reports, between the prompts.
    run = target.fp(input="mem diff --interval 2\nquit\n").ok()
    assert re.search(r"waiting: 1 s of 2 s", run.out) and "change over 2." in run.out, run.describe()


def test_diff_stopped_early(target):
    proc = Fp(target, "--json", "--cmd", "mem diff --interval 120")
    proc.result("the start result")
    t0 = time.monotonic()
    rc, out, err = proc.finish(signal.SIGINT)
    assert rc == 0 and "stopped (Ctrl-C)" in err, (rc, err)
    assert time.monotonic() - t0 < 10  # the stop was served at once: the worker was not waiting
    ends = [
        json.loads(l)["notification"]["params"]
        for l in out.splitlines()
        if json.loads(l).get("notification", {}).get("method") == "mem/end"
    ]
    assert ends and ends[0]["reason"] == "stopped", out


# ------------------------------------------------------------------------------------------
# tracemalloc: mem top, mem diff --traces, and who stops it


def test_top_names_the_allocating_line(target):
    assert not target.is_tracing()
    shell = Fp(target, "--json")
    try:
        shell.send("mem top")
        first = shell.result("mem top")
        assert first["tracemalloc"]["started_now"] and first["tracemalloc"]["started_by"] == "fp", first
        assert "not in these figures" in first["tracemalloc"]["note"]
        target.request("alloc 300")
        shell.send("mem top --limit 5 --traceback 3")
        top = shell.result("mem top")
        row = top["top"][0]
        assert row["file"].endswith("memtarget.py") and row["line"] == int(target.facts["alloc_line"]), top
        assert row["count"] >= 300 and row["size"] >= 300 * 1000 and "# ALLOC_LINE" in row["source"], row
        assert [f["line"] for f in row["traceback"]][-1] == row["line"] and len(row["traceback"]) == 3, row
        assert not top["tracemalloc"]["started_now"] and top["traced_bytes"] >= row["size"]
        shell.send("mem off")
        off = shell.result("mem off")
        assert off["stopped"] and not off["tracing"], off
        shell.send("quit")
        rc, _out, err = shell.finish()
        assert rc == 0, err
    finally:
        if shell.proc.poll() is None:
            shell.finish(signal.SIGKILL)
    assert not target.is_tracing()
    target.request("clear")


def test_diff_traces_and_detach_stops_tracemalloc(target):
    proc = Fp(target, "--json", "--cmd", "mem diff --interval 4 --traces --limit 5")
    start = proc.result("the start result")
    assert start["traces"] and start["first"]["tracemalloc"]["started_by"] == "fp", start
    target.request("alloc 200")
    rc, out, err = proc.finish()
    assert rc == 0, err
    end = [
        json.loads(l)["notification"]["params"]
        for l in out.splitlines()
        if json.loads(l)["notification"]["method"] == "mem/end"
    ][0]
    assert end["reason"] == "done" and end["traces"], end
    row = end["rows"][0]
    assert row["file"].endswith("memtarget.py") and row["line"] == int(target.facts["alloc_line"]), end["rows"]
    assert row["count"] >= 200 and row["size"] >= 200 * 1000, row
    # That client is gone: tracemalloc, which fp started for it, is stopped.
    wait_until(lambda: not target.is_tracing(), 10, "tracemalloc to stop when the client left")
    target.request("clear")


def test_shutdown_stops_tracemalloc(target):
    target.fp("--cmd", "mem top", "--cmd", "shutdown").ok()
    assert not target.is_tracing()  # asked through a new agent


def test_tracemalloc_of_the_program_is_left_alone(spawn, tmp_path):
    t = spawn("memtarget", str(tmp_path), "--tracemalloc")
    r = t.json("mem top")
    assert r["tracemalloc"]["started_by"] == "the program" and not r["tracemalloc"]["started_now"], r
    assert "fp leaves it running" in r["tracemalloc"]["note"]
    off = t.json("mem off")
    assert not off["stopped"] and off["tracing"], off
    t.fp("--cmd", "mem diff --interval 1 --traces", "--cmd", "shutdown").ok()
    assert t.is_tracing()
