"""Faults, kept as tests so that what held keeps holding:
- a client killed (SIGKILL) in the middle of watch, trace, tt, gilstat or perf: whatever it
  installed is gone within a second, and the target's calls cost what they cost before;
- the target killed in the middle of a command: fp ends at once, saying the process exited;
- a thread holding the GIL forever: every command that needs it gives up at --timeout and says
  why, the others keep working.
The target (tests/targets/costed.py) measures its own per-call cost and tells whether a hook is
in its calls' way, window by window, stamped with the machine's monotonic clock."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import FP, KINDS, Target, proc_state, wait_until

GONE_S = 1.0  # hooks must be gone this soon after the client dies


class Costed(Target):
    kind = "costed"
    line_re = re.compile(r"^window \d+ t=[\d.]+ work=\d+ ref=\d+ calc=\d+ hooked=[01]$")
    progress_re = line_re
    settle_progress = 3

    def windows(self, since=0.0):
        """[(t, work/ref, work/calc, hooked)] of the windows that ended after since."""
        out = []
        for line in self.progress():
            f = dict(kv.split("=") for kv in line.split()[2:])
            if float(f["t"]) > since:
                w = int(f["work"])
                out.append((float(f["t"]), w / max(1, int(f["ref"])), w / max(1, int(f["calc"])), int(f["hooked"])))
        return out

    def cost(self, since, n=5, timeout=30):
        """Median (work/ref, work/calc) of the first n windows that ended after since."""
        wait_until(lambda: len(self.windows(since)) >= n, timeout, "%d windows after %.3f" % (n, since))
        wins = self.windows(since)[:n]
        return sorted(w[1] for w in wins)[n // 2], sorted(w[2] for w in wins)[n // 2]


KINDS.setdefault(Costed.kind, Costed)


def background(t, *args):
    t.fp_runs += 1
    return subprocess.Popen(
        [FP, str(t.pid)] + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_until(proc, pred, timeout=20):
    """JSON lines from a background fp until pred(record) holds."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "fp never got there"
        line = proc.stdout.readline()
        assert line, "fp ended early: %s" % proc.stderr.read()
        rec = json.loads(line)
        if pred(rec):
            return rec


def notified(method):
    return lambda rec: rec.get("notification", {}).get("method") == method


def gilstat_ok(python):
    return not python.id.startswith("system-") and os.geteuid() == 0


COMMANDS = {
    "watch": (["--json", "--cmd", "watch __main__ work -n 1000000"], notified("watch/event")),
    "trace": (["--json", "--cmd", "trace __main__ work -n 1000000 -i 0"], notified("trace/event")),
    # A filter that turns every call away: the probe stays in the calls' way, nothing is stored.
    "tt": (["--json", "--cmd", "tt -t __main__ work -n 10000 -f 'args[0] < 0'"], lambda rec: "result" in rec),
    "gilstat": (["--json", "--cmd", "gilstat on"], notified("gilstat/started")),
    "perf": (["--cmd", "perf -d 120 -r 500 -f /dev/null"], None),
    "perf --native": (["--cmd", "perf --native -d 120 -r 50 -f /dev/null"], None),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_client_killed_mid_command(spawn, python, command, tmp_path):
    if command == "gilstat" and not gilstat_ok(python):
        pytest.skip("gilstat needs root and an interpreter with symbols for take_gil")
    t = spawn("costed")
    t.cmd("status").ok()  # the agent's own threads are not part of what is measured
    base = t.cost(time.monotonic())
    args, ready = COMMANDS[command]
    if command.startswith("perf"):
        args = [a.replace("/dev/null", str(tmp_path / "p.svg")) for a in args]
    proc = background(t, *args)
    started = None
    try:
        if ready:
            started = read_until(proc, ready)
        during = t.cost(time.monotonic(), n=3)
        if command in ("watch", "trace", "tt"):
            assert t.windows(time.monotonic() - 0.5)[-1][3] == 1, "no hook seen while %s runs" % command
            assert during[0] > base[0] * 1.3, (
                "%s did not slow the calls (%.2f vs %.2f of ref): the check "
                "would not see it" % (command, during[0], base[0])
            )
        if command == "gilstat":
            assert during[1] > base[1] * 1.3, (
                "gilstat's probes did not slow the calls (%.2f vs %.2f of "
                "calc): the check would not see it" % (during[1], base[1])
            )
    finally:
        proc.kill()  # SIGKILL: none of fp's clean-up code runs
        proc.wait(timeout=30)
    killed = time.monotonic()
    if command == "gilstat":
        from test_gilstat import probe_bytes

        params = started["notification"]["params"]
        wait_until(
            lambda: all(m == f for m, f in probe_bytes(t.pid, params)),
            GONE_S,
            "the kernel to take the probes of the killed fp out",
        )
        gone = time.monotonic()
    elif command.startswith("perf"):
        wait_until(lambda: proc_state(t.pid) not in ("t", "T"), GONE_S, "the target's threads to run again")
        gone = time.monotonic()
    else:
        # The first window after the kill from which on nothing is in the calls' way.
        wait_until(lambda: any(w[3] == 0 for w in t.windows(killed)), 10, "the hook to be removed")
        wins = t.windows(killed)
        first_clean = next(i for i in range(len(wins)) if all(w[3] == 0 for w in wins[i:]))
        gone = wins[first_clean][0]
        assert gone - killed <= GONE_S + 0.2, "the hook stayed %.2f s after the client died" % (gone - killed)
    after = t.cost(gone)
    print(
        "%s %s: work/ref %.2f before, %.2f during, %.2f after; work/calc %.2f, %.2f, %.2f; gone %.3f s "
        "after the kill"
        % (python.id, command, base[0], during[0], after[0], base[1], during[1], after[1], gone - killed)
    )
    assert after[0] <= base[0] * 1.15 + 0.05, "calls cost %.2f of ref after the client died, %.2f before" % (
        after[0],
        base[0],
    )
    if command == "gilstat":  # (a system call against Python code: noisier when the machine is busy)
        assert after[1] <= base[1] * 1.3, "calls cost %.2f of calc after the client died, %.2f before" % (
            after[1],
            base[1],
        )
    t.assert_healthy()


@pytest.mark.parametrize("command", ["watch", "trace", "tt", "getglobal (waiting for the GIL)", "console", "perf"])
def test_target_killed_mid_command(spawn, python, command):
    """fp ends promptly and says the process exited, whatever it was doing."""
    kind = "gil_hog" if "GIL" in command else "costed"
    t = spawn(kind)
    args = {
        "watch": ["--json", "--cmd", "watch __main__ work -n 1000000"],
        "trace": ["--json", "--cmd", "trace __main__ work -n 1000000"],
        "tt": ["--json", "--cmd", "tt -t __main__ work -n 10000 -f 'args[0] < 0'"],
        "getglobal (waiting for the GIL)": ["--timeout", "120", "--cmd", "getglobal fptarget MARKER"],
        "console": ["--cmd", "console"],
        "perf": ["--debug", "--cmd", "perf -d 120 -f /dev/null"],
    }[command]
    if command == "perf":
        args[-1] = args[-1].replace("/dev/null", os.path.join(t.workdir, "p.svg"))
    t.fp_runs += 1
    proc = subprocess.Popen(
        [FP, str(t.pid)] + args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        if command in ("watch", "trace", "tt"):
            read_until(proc, lambda rec: "result" in rec)
        elif command == "perf":
            wait_until(lambda: "sampling process" in proc.stderr.readline(), 20, "perf to start sampling")
        else:  # connected: the console's session open, or the request waiting for the GIL
            wait_until(lambda: t.json("status")["clients"] >= 2, 20, "fp to connect")
        os.kill(t.pid, signal.SIGKILL)
        t.proc.wait(timeout=10)
        killed = time.monotonic()
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("fp did not end within 15 s of its target's death")
        ended = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    t.checked_after = t.fp_runs  # the target is dead on purpose
    if command == "perf":  # what was sampled is written; with no sample yet, the exit is said
        assert (proc.returncode == 0 and "the process's exit" in out) or (
            proc.returncode == 1 and "process %d exited" % t.pid in err
        ), (proc.returncode, out, err)
    else:
        assert proc.returncode != 0 and "process %d exited" % t.pid in err, (proc.returncode, out, err)
    assert ended < 5, "fp took %.1f s to notice" % ended


def test_gil_held_forever_bounds_every_wait(spawn, python):
    """Each command that needs the GIL gives up at --timeout with the reason; what needs no GIL
    (status, shutdown, stack from outside) answers as usual."""
    t = spawn("gil_hog")
    cases = [
        "watch fptarget saw -n 1",
        "trace fptarget saw -n 1",
        "tt -t fptarget saw -n 1",
        "tt -l",
        "getglobal fptarget MARKER",
        "stack -a",
        "module %s" % t.script,
    ]
    for command in cases:
        t0 = time.monotonic()
        r = t.cmd(command, "--timeout", "2", timeout=60)
        elapsed = time.monotonic() - t0
        assert r.rc != 0 and "GIL" in r.err, "%s:\n%s" % (command, r.describe())
        assert elapsed < 2 + 10, "%s waited %.1f s past --timeout 2:\n%s" % (command, elapsed, r.describe())
    r = t.fp("--timeout", "2", "--cmd", "console", input="1 + 1\n", timeout=60)
    assert r.rc != 0 and "GIL" in r.err, r.describe()
    assert t.json("status")["pid"] == t.pid
    assert [th for th in t.json("stack")["threads"] if th["holds_gil"]]
    t.cmd("shutdown").ok()
    assert t.json("status")["pid"] == t.pid  # a new agent, restarted without the GIL
    t.assert_healthy()
