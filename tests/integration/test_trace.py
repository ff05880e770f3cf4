"""trace against a real target (tests/targets/traced.py) under every CPython, with both
recorders (the agent library's C one and its pure-Python twin): the tree's shape and costs,
C functions, file:line, -i, -d, -et, -f, -n, generators, coroutines and exceptions inside the
traced call, a thread that runs a profiler of its own, other threads never in a tree, and the
profile hook gone after the call, after Ctrl-C and after the client is killed mid-call.

One target per interpreter serves the module; each test leaves it as it found it
(check_pristine() == [], which also proves fp's hook never ran on a thread it was not
recording), and the target's own checks (ERROR lines) prove its behaviour never changed.
"""

import ast
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import FP, KINDS, TARGETS, Target, wait_until

RECORDERS = ["native", "python"]


class Traced(Target):
    kind = "traced"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re

    def pristine(self):
        r = self.json('getglobal __main__ check_pristine -e "target()" -x 2')
        return [c["value"]["repr"] for c in r["value"].get("children", [])]


KINDS["traced"] = Traced


def _def_lines():
    with open(os.path.join(TARGETS, "traced.py")) as f:
        tree = ast.parse(f.read())
    return dict((n.name, n.lineno) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


LINES = _def_lines()


@pytest.fixture(scope="module")
def target(module_spawn):
    return module_spawn("traced")


@pytest.fixture
def clean(target):
    """Each test ends with the target as it was."""
    yield target
    assert target.pristine() == []


def trace(t, command, recorder="native", opts=(), **kw):
    """Runs one trace in `fp --json`; returns (result, events, end, skipped)."""
    run = t.fp(*(["--json"] + list(opts) + ["--cmd", "%s --recorder %s" % (command, recorder)]), **kw).ok()
    result, notes = None, []
    for rec in run.records():
        assert "error" not in rec, run.describe()
        if "result" in rec:
            result = rec["result"]
        else:
            notes.append(rec["notification"])
    assert result is not None, run.describe()
    assert result["recorder"] == recorder, result
    events = [n["params"] for n in notes if n["method"] == "trace/event"]
    ends = [n["params"] for n in notes if n["method"] == "trace/end"]
    skipped = [n["params"] for n in notes if n["method"] == "trace/skipped"]
    assert len(ends) <= 1, notes
    return result, events, ends[0] if ends else None, skipped


def walk(node):
    yield node
    for c in node["children"]:
        for n in walk(c):
            yield n


def child(node, name):
    found = [c for c in node["children"] if c["function"].split(".")[-1] == name or c["function"] == name]
    assert len(found) == 1, "expected one child %r of %s: %s" % (
        name,
        node["function"],
        [c["function"] for c in node["children"]],
    )
    return found[0]


# ------------------------------------------------------------------------------------------
# The tree


@pytest.mark.parametrize("recorder", RECORDERS)
def test_tree_shape_costs_and_places(clean, recorder):
    _, events, end, _ = trace(clean, "trace __main__ outer -n 2 -i 0", recorder)
    assert len(events) == 2 and end["reason"] == "limit" and end["count"] == 2
    for ev in events:
        root = ev["tree"]
        assert root["function"] == "outer" and root["kind"] == "py"
        assert root["file"].endswith("traced.py") and root["line"] == LINES["outer"]
        assert root["pct"] == 100.0 and root["count"] == 1
        assert 19.0 <= root["cost_ms"] == ev["cost_ms"] < 2000, ev
        assert ev["thread"]["name"] == "MainThread"
        # outer -> inner_fast x50, inner_slow (time.sleep 20 ms, sorted), raises_inside -> fails
        fast = child(root, "inner_fast")
        assert fast["count"] == 50 and fast["line"] == LINES["inner_fast"] and fast["children"] == []
        slow = child(root, "inner_slow")
        assert slow["count"] == 1 and slow["line"] == LINES["inner_slow"]
        assert 19.0 <= slow["cost_ms"] <= root["cost_ms"] and slow["pct"] > 50
        sleep = child(slow, "time.sleep")
        assert sleep["kind"] == "c" and sleep["file"] is None and sleep["line"] is None
        assert 19.0 <= sleep["cost_ms"] <= slow["cost_ms"]
        srt = child(slow, "sorted")
        assert srt["kind"] == "c" and srt["count"] == 1
        fails = child(child(root, "raises_inside"), "fails")
        assert fails["count"] == 1 and fails["line"] == LINES["fails"]
        assert sum(c["cost_ms"] for c in root["children"]) <= root["cost_ms"] + 0.01
        for n in walk(root):
            assert "bystander" not in n["function"], n  # another thread's calls
            assert "fp_agent" not in (n["file"] or ""), n  # the probe's own frames
            assert abs(n["pct"] - 100.0 * n["cost_ms"] / root["cost_ms"]) < 0.6, n
            assert n["hidden"] == {"count": 0, "cost_ms": 0.0}, n  # -i 0: nothing hidden


@pytest.mark.parametrize("recorder", RECORDERS)
def test_interval_hides_cheap_calls(clean, recorder):
    _, events, _, _ = trace(clean, "trace __main__ outer -n 1", recorder)  # default -i 0.1
    root = events[0]["tree"]
    # 50 x inner_fast and raises_inside usually take less than 0.1 ms in all (wall time: a busy
    # machine can stretch one), inner_slow 20 ms.
    for c in walk(root):
        assert c["cost_ms"] >= 0.1, c
    shown = dict((c["function"], c["count"]) for c in root["children"])
    assert "inner_slow" in shown and set(shown) <= set(["inner_slow", "inner_fast", "raises_inside"]), shown
    assert root["hidden"]["count"] + sum(shown.values()) == 52, root
    # inner_slow: its 20 ms sleep, and sorted() only when a busy machine stretches it past 0.1 ms.
    slow_calls = [c["function"] for c in child(root, "inner_slow")["children"]]
    assert slow_calls[0] == "time.sleep" and set(slow_calls) <= {"time.sleep", "sorted"}, slow_calls
    _, events, _, _ = trace(clean, "trace __main__ outer -n 1 -i 500", recorder)
    root = events[0]["tree"]
    assert root["children"] == [] and root["hidden"]["count"] == 52


@pytest.mark.parametrize("recorder", RECORDERS)
def test_depth_limits_levels(clean, recorder):
    result, events, _, _ = trace(clean, "trace __main__ outer -n 1 -d 1", recorder)
    assert result["depth"] == 1 and result["interval"] == 0
    root = events[0]["tree"]
    assert sorted(c["function"] for c in root["children"]) == ["inner_fast", "inner_slow", "raises_inside"]
    slow = child(root, "inner_slow")
    assert slow["children"] == [] and slow["hidden"]["count"] == 2  # time.sleep and sorted, one level down
    _, events, _, _ = trace(clean, "trace __main__ outer -n 1 -d 2", recorder)
    assert child(child(events[0]["tree"], "inner_slow"), "time.sleep")["children"] == []


def test_entrance_time(clean):
    _, events, end, _ = trace(clean, "trace __main__ outer -n 1 -et 15")
    assert len(events) == 1 and events[0]["cost_ms"] >= 15
    _, events, end, _ = trace(clean, "trace __main__ outer -et 5000", opts=("--timeout", "1"))
    assert events == [] and end["reason"] == "stopped" and end["discarded"] >= 2, end


def test_filter(clean):
    _, events, _, _ = trace(
        clean, "trace __main__ Service handle -n 2 -i 0 -f 'args[0] == [1, 2] and target.handled > 0'"
    )
    assert len(events) == 2 and events[0]["tree"]["function"].endswith("handle")
    # 3.12+ inlines the list comprehension; before, it is a <listcomp> frame of its own.
    assert [(n["function"], n["count"]) for n in walk(events[0]["tree"]) if n["function"] == "inner_fast"] == [
        ("inner_fast", 2)
    ]
    _, events, end, _ = trace(clean, "trace __main__ Service handle -f 'len(args[0]) == 3'", opts=("--timeout", "1"))
    assert events == [] and end["reason"] == "stopped"
    # A filter runs once per call, also for the calls it lets through (with a side effect: it
    # records target.handled, which every call makes one more).
    _, events, _, _ = trace(clean, "trace __main__ Service handle -n 2 -f 'fptarget.saw(target.handled) and True'")
    _, repeated, evaluated = clean.filter_runs()
    assert len(events) == 2 and repeated == 0 and evaluated >= 2, (repeated, evaluated)
    # A filter that raises: that call is not traced and not counted; after three identical
    # failures in a row the trace ends with the error (a failed command: exit 1, stderr).
    run = clean.cmd("trace __main__ Service handle -n 1 -f 'args[5]'", "--json").failed()
    end = [r["notification"]["params"] for r in run.records() if "notification" in r]
    assert [e.get("reason") for e in end] == ["filter_failed"], run.describe()
    assert end[0]["count"] == 0 and end[0]["filter_errors"] == 3 and "IndexError" in end[0]["error"], end
    assert "IndexError" in run.err and "3 calls in a row" in run.err, run.describe()
    # A filter that does not compile: an error, and nothing installed.
    run = clean.cmd("trace __main__ Service handle -f 'args[0] =='", "--json").failed()
    err = run.records()[-1]["error"]
    assert err["rpc_code"] == -32002 and err["data"]["stage"] == "compile", run.describe()
    # ... shown as the expression, a caret and the message, not the agent's own frames.
    run = clean.cmd("trace __main__ Service handle -f 'args[0] =='").failed()
    assert "    args[0] ==\n" in run.err and "^" in run.err and "SyntaxError" in run.err, run.describe()
    assert "Traceback" not in run.err and "ast.py" not in run.err, run.describe()
    # trace's -f is decided when the call starts: no return_obj, no cost.
    run = clean.cmd("trace __main__ outer -f 'cost > 1'", "--json").failed()
    assert run.records()[-1]["error"]["rpc_code"] == -32602, run.describe()


def test_callbacks_are_called_directly(clean):
    """3.12+: sys.monitoring calls the recorder's callbacks through their vectorcall slot (objects
    of a small type of fp's), without a builtin function's layer of its own around each event."""
    _, events, _, _ = trace(clean, "trace __main__ outer -n 1")
    r = clean.json("getglobal fp_agent.trace diagnostics -e \"target()['callbacks']\"")
    want = "monitoring_callback" if clean.python.version >= (3, 12) else "builtin_function_or_method"
    assert len(events) == 1 and r["value"]["repr"] == repr(want), r
    # The type is made with each load of fp's package and goes with it: after two shutdowns and
    # restarts, one is left (the running agent's) once the old agents have unloaded theirs (a
    # stopping agent unloads its package after its clients are gone); none before 3.12.
    for _ in range(2):
        clean.cmd("shutdown").ok()
        assert len(trace(clean, "trace __main__ outer -n 1")[1]) == 1
    want = "1" if clean.python.version >= (3, 12) else "0"
    count = lambda: clean.json("getglobal __main__ types_named -e \"target('monitoring_callback')\"")["value"]["repr"]
    wait_until(lambda: count() == want, 10, lambda: "%s monitoring_callback types, not %s" % (count(), want), poll=0.2)


def test_recorder_and_its_twin_share_their_limits(clean):
    """The C recorder's limits (trace_internal.h) and the Python twin's (trace.py) are the same
    numbers: a tree cut at one depth or size by one recorder is cut there by the other."""
    trace(clean, "trace __main__ outer -n 1")  # the package and its recorder are loaded
    native = clean.json("getglobal fp_agent _native_trace -e \"target['limits']\"")["value"]["repr"]
    twin = [
        int(clean.json("getglobal fp_agent.trace %s" % name)["value"]["repr"]) for name in ("MAX_STACK", "MAX_NODES")
    ]
    assert ast.literal_eval(native) == {"max_stack": twin[0], "max_nodes": twin[1]}, (native, twin)


def test_limit_and_human_output(clean):
    run = clean.cmd("trace __main__ outer -n 3").ok()
    assert run.out.count("cost ") == 3 and "trace ended: 3 invocations shown, the -n limit was reached" in run.out
    assert re.search(
        r"^tracing outer \(function, .*traced\.py:%d\); calls under 0\.1 ms hidden" % LINES["outer"], run.out, re.M
    ), run.describe()
    assert re.search(r"^\[100\.00%\s+\d+\.\d{3} ms\] outer  .*traced\.py:\d+$", run.out, re.M), run.describe()
    # The root's calls name the line that made them.
    with open(os.path.join(TARGETS, "traced.py")) as f:
        call = [i + 1 for i, line in enumerate(f) if line.strip() == "inner_slow()"][0]
    assert re.search(
        r"^\+---\[\s*\d+\.\d\d%\s+\d+\.\d{3} ms\] inner_slow  .*traced\.py:"
        + "%d  from line %d$" % (LINES["inner_slow"], call),
        run.out,
        re.M,
    ), run.describe()
    assert re.search(r"^\|   \+---\[.*\] time\.sleep  \[C\]$", run.out, re.M), run.describe()
    assert re.search(r"^`---\(\d+ more calls?, \d+\.\d{3} ms, under -i or below -d\)$", run.out, re.M), run.describe()


@pytest.mark.parametrize("recorder", RECORDERS)
def test_generators_coroutines_and_recursion(clean, recorder):
    _, events, _, _ = trace(clean, "trace __main__ gen -n 1 -i 0", recorder)
    root = events[0]["tree"]
    assert child(root, "inner_fast")["count"] == 3
    suspended = child(root, "<suspended>")
    assert suspended["kind"] == "suspended" and suspended["count"] == 3  # three yields before the end
    _, events, _, _ = trace(clean, "trace __main__ coro -n 1 -i 0", recorder)
    root = events[0]["tree"]
    assert root["cost_ms"] >= 9.5, root  # the awaited result, not the coroutine's creation
    assert child(root, "<suspended>")["cost_ms"] >= 9.0
    assert child(root, "inner_fast")["count"] == 1 and child(root, "sleep")["count"] >= 1
    _, events, _, _ = trace(clean, "trace __main__ recursive -n 1 -i 0", recorder)
    node, depth = events[0]["tree"], 0
    while node["children"]:
        assert [c["function"] for c in node["children"]] == ["recursive"], node
        node, depth = node["children"][0], depth + 1
    assert 1 <= depth <= 3  # recursive(3) or, when the trace began inside one, an inner call


# ------------------------------------------------------------------------------------------
# Other threads, profilers, and the hook leaving


def test_thread_with_its_own_profiler_is_left_alone(clean):
    """A profile function would replace the thread's own: that call is passed over. Through
    sys.monitoring (3.12+) the recorder and the thread's profiler both see the call."""
    result, events, end, skipped = trace(clean, "trace __main__ profiled_call -n 1 -i 0", opts=("--timeout", "1.5"))
    if result["hook"] == "sys.monitoring":
        assert events and not skipped, (events, skipped)
        assert events[0]["thread"]["name"] == "profiled"
        assert child(events[0]["tree"], "sorted")["kind"] == "c", events[0]["tree"]
    else:
        assert events == [] and skipped, (events, skipped)
        assert skipped[0]["thread"]["name"] == "profiled" and "already has a profiler" in skipped[0]["reason"]
        assert end["skipped"] >= 1
    clean.wait_progress(more=2)  # the profiled thread checks it still has its own profiler


@pytest.mark.parametrize("recorder", RECORDERS)
def test_invocation_ending_on_another_thread(clean, recorder):
    """handoff_gen starts on the handoff thread and ends on the finisher thread: the hook can
    only leave the first thread at its next event; the tree says it is incomplete."""
    _, events, end, _ = trace(clean, "trace __main__ handoff_gen -n 2 -i 0", recorder)
    assert len(events) == 2 and end["reason"] == "limit"
    for ev in events:
        assert ev["thread"]["name"] == "handoff" and ev["tree"]["truncated"] == ["stopped"], ev
        assert child(ev["tree"], "inner_fast")["count"] == 1, ev  # what ran on the first thread
    handoffs = lambda: int(clean.json("getglobal __main__ HANDOFFS")["value"]["repr"].strip("[]"))
    seen = handoffs()
    wait_until(lambda: handoffs() >= seen + 3, 10, "more handoffs")


def _background(t, command, *opts):
    """fp running a trace in the background; its stdout lines go to proc.lines (a queue), read
    by a thread so that a test never blocks on a pipe and fp never on a full one."""
    argv = [FP, str(t.pid)] + list(opts) + ["--cmd", command]
    t.fp_runs += 1
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )
    proc.lines = queue.Queue()
    proc.seen = []

    def pump():
        for line in proc.stdout:
            proc.lines.put(line)
        proc.lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc


def _wait_events(proc, n, timeout=15):
    """The next n trace events of a background fp (bounded)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        try:
            line = proc.lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail("only %d trace events from fp within %ss: %r" % (len(got), timeout, got))
        assert line is not None, "fp ended early: %s" % proc.stderr.read()
        rec = json.loads(line)
        proc.seen.append(rec)
        if rec.get("notification", {}).get("method") == "trace/event":
            got.append(rec["notification"]["params"])
    return got


def _finish(proc, sig):
    """Signals a background fp and waits for it; returns (exit status, its stderr)."""
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("fp did not end after signal %s" % sig)
    return proc.returncode, proc.stderr.read()


def _kill(*procs):
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _slow_calls(t):
    return int(t.json("getglobal __main__ SLOW_CALLS")["value"]["repr"])


@pytest.mark.parametrize("recorder,how", [("native", "sigint"), ("native", "sigkill"), ("python", "sigkill")])
def test_hook_leaves_when_stopped_or_killed_mid_call(clean, recorder, how):
    """long_call sleeps 0.3 s on the slowpoke thread: the client goes while one is recorded;
    the hook leaves that thread at its next event, which the thread checks after the call."""
    proc = _background(clean, "trace __main__ long_call -n 100000 --recorder %s" % recorder, "--json")
    try:
        ev = _wait_events(proc, 1)[0]
        assert ev["thread"]["name"] == "slowpoke" and child(ev["tree"], "time.sleep")["cost_ms"] >= 290
        # The next long_call is in its sleep, recorded (every invocation is): seen from a
        # thread of the agent's, which reads the frames without any event on slowpoke's.
        in_call = 'getglobal sys _current_frames -e "[f.f_code.co_name for f in target().values()]"'
        wait_until(lambda: "'long_call'" in clean.json(in_call)["value"]["repr"], 10, "slowpoke inside long_call")
        rc, err = _finish(proc, signal.SIGINT if how == "sigint" else signal.SIGKILL)
    finally:
        _kill(proc)
    if how == "sigint":
        assert rc == 0 and "stopped (Ctrl-C)" in err, (rc, err)
    calls = _slow_calls(clean)
    wait_until(lambda: _slow_calls(clean) >= calls + 2, 10, "two more long_call rounds")
    assert clean.pristine() == []


def test_two_traces_share_a_call(clean):
    a = _background(clean, "trace __main__ outer -n 100000", "--json")
    b = _background(clean, "trace __main__ outer -n 100000 -i 0", "--json")
    try:
        ea, eb = _wait_events(a, 2), _wait_events(b, 2)
        assert all(c["cost_ms"] >= 0.1 for e in ea for c in walk(e["tree"]))  # -i 0.1
        assert all(child(e["tree"], "inner_fast")["count"] == 50 for e in eb)  # -i 0
        _finish(a, signal.SIGKILL)
        _wait_events(b, 2)  # the other trace goes on
        rc, _err = _finish(b, signal.SIGINT)
        assert rc == 0
    finally:
        _kill(a, b)
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")
    clean.assert_healthy()
