"""watch against a real target (tests/targets/observed.py) under every CPython: each way of
locating a function, each option, exceptions and tracebacks unchanged, async and generators,
removal in every situation (checked from inside the target), two clients at once.

One target per interpreter serves the whole module: every test leaves it as it found it
(check_pristine() == []), and its own checks (ERROR lines) prove its behaviour never changed.
"""

import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import FP, KINDS, Target, wait_until


class Observed(Target):
    kind = "observed"
    line_re = re.compile(r"^tick \d+ calls=\d+$")
    progress_re = line_re

    def pristine(self):
        """What check_pristine() inside the target reports (a list of problems; [] when all is
        as it was)."""
        r = self.json('getglobal __main__ check_pristine -e "target()" -x 2')
        return [c["value"]["repr"] for c in r["value"].get("children", [])]


KINDS["observed"] = Observed


@pytest.fixture(scope="module")
def target(module_spawn):
    return module_spawn("observed")


@pytest.fixture
def clean(target):
    """Each test ends with the target as it was."""
    yield target
    assert target.pristine() == []


def stream(t, *commands, **kw):
    """Runs the commands in one `fp --json` and returns, per command, (result, [notifications])."""
    args = ["--json"] + list(kw.pop("opts", ()))
    for c in commands:
        args += ["--cmd", c]
    run = t.fp(*args, **kw).ok()
    out = []
    for rec in run.records():
        assert "error" not in rec, run.describe()
        if "result" in rec:
            out.append((rec["result"], []))
        else:
            out[-1][1].append(rec["notification"])
    assert len(out) == len(commands), run.describe()
    return out


def events(notes):
    return [n["params"] for n in notes if n["method"] == "watch/event"]


def end_of(notes):
    ends = [n["params"] for n in notes if n["method"] == "watch/end"]
    assert len(ends) == 1, notes
    return ends[0]


def values(event):
    return {v["expr"]: v.get("value", {}).get("repr", v.get("error")) for v in event["values"]}


# ------------------------------------------------------------------------------------------
# Locating the target: every kind of function


KINDS_OF_FUNCTIONS = [
    # (command, expected kind, check on the values of one event)
    (
        "watch __main__ add --expr 'args, kwargs, return_obj'",
        "function",
        lambda v: v["kwargs"] == "{'c': 4, 'd': 5}" and re.match(r"\(\d+, 2, 3\)", v["args"]),
    ),
    (
        "watch __main__ Shop buy --expr 'target.__class__.__name__, args[0], return_obj'",
        "method",
        lambda v: v["target.__class__.__name__"] == "'Shop'" and re.search(r"x[12]'$", v["return_obj"]),
    ),
    (
        "watch __main__ Shop create --expr 'target, args, len(return_obj)'",
        "classmethod",
        lambda v: "Shop" in v["target"] and v["args"] == "(2,)" and v["len(return_obj)"] == "2",
    ),
    (
        "watch __main__ Shop tax --expr 'target, args, return_obj'",
        "staticmethod",
        lambda v: v["target"] == "None" and int(v["return_obj"]) == 2 * int(v["args"][1:-2]),
    ),
    (
        "watch __main__ Shop count --expr 'target.rate, return_obj'",
        "property",
        lambda v: v["target.rate"] == "3" and int(v["return_obj"]) % 3 == 0,
    ),
    (
        "watch __main__ fetch --expr 'args[0], return_obj, cost'",
        "function",
        lambda v: int(v["return_obj"]) == 10 * int(v["args[0]"]) and float(v["cost"]) >= 0.9,
    ),
    (
        "watch __main__ Shop afetch --expr 'args[0], return_obj'",
        "method",
        lambda v: v["return_obj"] == "{'key': %s}" % v["args[0]"],
    ),
    (
        "watch __main__ numbers --expr 'args, return_obj'",
        "function",
        lambda v: v["args"] == "(3,)" and v["return_obj"] == "6",
    ),
    (
        "watch __main__ Shop stock --expr 'args, return_obj'",
        "method",
        lambda v: v["args"] == "(2,)" and v["return_obj"] == "None",
    ),
    (
        "watch __main__ decorated --expr 'args[0] + 100 == return_obj'",
        "function",
        lambda v: v["args[0] + 100 == return_obj"] == "True",
    ),
    (
        "watch __main__ outer -nm inner --expr 'args, return_obj'",
        "nested",
        lambda v: v["args"] == "(3,)" and int(v["return_obj"]) % 3 == 0,
    ),
    (
        "watch observed_lib scale --expr 'args, return_obj'",
        "function",
        lambda v: int(v["return_obj"]) in (2 * int(v["args"][1:].split(",")[0]), 3 * int(v["args"][1:].split(",")[0])),
    ),
    (
        "watch __main__ recurse --expr 'args[0], return_obj'",
        "function",
        lambda v: int(v["return_obj"]) == sum(range(int(v["args[0]"]) + 1)),
    ),
    # a parameter that is also a closure cell (captured by the nested function)
    (
        "watch __main__ outer --expr 'args, return_obj'",
        "function",
        lambda v: int(v["return_obj"]) == 3 * int(v["args"][1:-2]),
    ),
]


def test_every_kind_of_function(clean):
    commands = [c + " -n 2" for c, _, _ in KINDS_OF_FUNCTIONS]
    out = stream(clean, *commands)
    for (command, kind, check), (result, notes) in zip(KINDS_OF_FUNCTIONS, out):
        assert result["located"]["kind"] == kind, (command, result)
        evs = events(notes)
        assert len(evs) == 2 and end_of(notes)["reason"] == "limit", (command, notes)
        for ev in evs:
            assert check(values(ev)), (command, values(ev))
            assert ev["cost_ms"] >= 0 and ev["thread"]["ident"] and ev["time"] > 1e9
    decorated = out[9][0]
    assert "wrapped function __main__.decorated" in decorated["note"], decorated
    assert out[3][1] and out[5][0]["located"]["async"] and out[7][0]["located"]["generator"]
    # the worker calls scale through `from observed_lib import scale` and a stored reference
    assert events(out[11][1])[0]["thread"]["name"] == "worker"


def test_refusals_and_near_names(clean):
    cases = [
        ("watch __main__ builtin_alias", -32004, "builtin"),
        ("watch __main__ Shop", -32004, "is a class"),
        ("watch __main__ ad", -32001, "method"),
        ("watch __main__ Shpo buy", -32001, "class"),
        ("watch __mian__ add", -32001, "module"),
        ("watch __main__ outer -nm innr", -32001, "nested"),
        ("watch __main__ add --expr 'args['", -32002, None),
        ("watch __main__ add -f 'cost >'", -32002, None),
    ]
    for command, code, what in cases:
        run = clean.cmd(command, "--json").failed()
        err = run.records()[-1]["error"]
        assert err["rpc_code"] == code, run.describe()
        if code == -32001:
            assert err["data"]["missing"] == what and err["data"]["suggestions"], run.describe()
        elif what:
            assert what in err["message"], run.describe()
    run = clean.cmd("watch __main__ ad").failed()
    assert "add" in run.err  # the near name, for humans


# ------------------------------------------------------------------------------------------
# Options


def test_options(clean):
    out = stream(
        clean,
        "watch __main__ boom -e --expr 'exception, args[0]' -n 2",
        "watch __main__ add -f 'args[0] % 2 == 0' --expr 'args[0]' -n 3",
        "watch __main__ add -f 'cost >= 0 and return_obj % 2 == 1' --expr return_obj -n 2",
        "watch __main__ Shop buy --expr 'target' -x 2 -n 1",
        "watch __main__ add --expr 'list(range(30))' -r -n 1",
        "watch __main__ add --expr 'list(range(30))' -v -n 1",
        "watch __main__ add --expr 'list(range(30))' -n 1",
        "watch __main__ add --expr 'args[0], 1/0' -n 1",
        "watch __main__ add -n 4",
    )
    # -e: only calls that raised, with `exception` in scope, and the traceback
    evs = events(out[0][1])
    assert [values(e)["exception"].startswith("ValueError('odd") for e in evs] == [True, True]
    assert all(int(values(e)["args[0]"]) % 2 == 1 for e in evs)
    assert evs[0]["exception"]["type"] == "ValueError"
    assert 'raise ValueError("odd %d" % n)' in evs[0]["exception"]["traceback"]
    # -f on arguments (checked when the call starts), and on cost/return_obj (when it returns)
    assert out[1][0]["filter_at"] == "call" and out[2][0]["filter_at"] == "return"
    assert all(int(values(e)["args[0]"]) % 2 == 0 for e in events(out[1][1])) and len(events(out[1][1])) == 3
    assert all(int(values(e)["return_obj"]) % 2 == 1 for e in events(out[2][1]))
    # -x 2 expands one level more
    target = events(out[3][1])[0]["values"][0]["value"]
    assert target["type"] == "__main__.Shop"
    items = [c for c in target["children"] if c["name"] == "items"][0]["value"]
    assert "children" in items, target
    # -r: full repr only; -v: all items; default: 20 items
    raw = events(out[4][1])[0]["values"][0]["value"]
    assert set(raw) == {"type", "repr"} and raw["repr"].endswith("29]")
    assert len(events(out[5][1])[0]["values"][0]["value"]["children"]) == 30
    default = events(out[6][1])[0]["values"][0]["value"]
    assert len(default["children"]) == 20 and default["omitted"] == 10
    # an expression that raises is reported; the call itself goes on (the target checks it)
    ev = events(out[7][1])[0]
    assert "ZeroDivisionError" in ev["expr_error"] and "ZeroDivisionError" in ev["values"][1]["error"]
    # -n: exactly N, default expressions args,kwargs
    evs = events(out[8][1])
    assert len(evs) == 4 and [v["expr"] for v in evs[0]["values"]] == ["args", "kwargs"]
    assert [e["index"] for e in evs] == [1, 2, 3, 4]
    assert end_of(out[8][1]) == {
        "watch_id": out[8][0]["watch_id"],
        "reason": "limit",
        "count": 4,
        "dropped": 0,
        "expr_errors": 0,
    }


def test_filter_runs_once_per_call(clean):
    ((start, notes),) = stream(
        clean, "watch __main__ add -f 'fptarget.saw(args[0]) and args[0] % 2 == 0' --expr 'args[0]' -n 3"
    )
    got = [int(values(e)["args[0]"]) for e in events(notes)]
    assert start["filter_at"] == "call" and len(got) == 3 and all(v % 2 == 0 for v in got)
    # The filter has a side effect (it records its argument): it ran once per call, also for the
    # calls it let through (the engine's precheck and the probe share the verdict).
    counts, repeated, evaluated = clean.filter_runs(got)
    assert counts == [1, 1, 1] and repeated == 0 and evaluated >= 3, (counts, repeated)


def test_python_twin_of_the_native_callbacks(clean):
    """3.12+: the C callbacks (agent/native/monitor.c) and their pure-Python twin give the same
    events; the twin is forced from a console inside the target."""
    commands = [
        "watch __main__ Shop buy -f 'args[0].startswith(\"item\")' --expr 'args, kwargs' -n 2",
        "watch __main__ add -f 'cost >= 0' --expr 'args, kwargs, return_obj' -n 2",
        "watch __main__ boom -e -n 1",
    ]
    native = stream(clean, *commands)
    clean.cmd("console", input="import fp_agent.instrument as i\ni.use_python_callbacks(True)\n").ok()
    try:
        twin = stream(clean, *commands)
    finally:
        clean.cmd("console", input="import fp_agent.instrument as i\ni.use_python_callbacks(False)\n").ok()
    modern = clean.python.version >= (3, 12)
    assert [r["callbacks"] for r, _ in native] == ["native" if modern else None] * 3
    assert [r["callbacks"] for r, _ in twin] == ["python" if modern else None] * 3
    for (_, a), (_, b) in zip(native, twin):
        ea, eb = events(a), events(b)
        assert len(ea) == len(eb) and [v["expr"] for v in ea[0]["values"]] == [v["expr"] for v in eb[0]["values"]]
    assert all(values(e)["args"].startswith("('item") for e in events(twin[0][1]))
    assert all(values(e)["kwargs"] == "{'c': 4, 'd': 5}" for e in events(twin[1][1]))
    assert events(twin[2][1])[0]["exception"]["type"] == "ValueError"


def test_human_output(clean):
    run = clean.cmd("watch __main__ boom -e -n 1 --expr 'args[0]'").ok()
    assert re.search(r"^watching boom \(function, .*observed.py:\d+\)", run.out, re.M), run.describe()
    assert re.search(
        r"^\[1\] \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}  worker \(\d+\)  cost \d+\.\d+ ms$", run.out, re.M
    ), run.describe()
    assert re.search(r"^  args\[0\]: int = \d+$", run.out, re.M), run.describe()
    assert "  raised ValueError: odd" in run.out and "Traceback (most recent call last)" in run.out
    assert "watch ended: 1 call reported, the -n limit was reached" in run.out


# ------------------------------------------------------------------------------------------
# Removal: -n, --timeout, Ctrl-C, detach, disconnect, SIGKILL of the client, shutdown


def test_removed_at_limit_and_timeout(clean):
    stream(clean, "watch __main__ add -n 1")
    assert clean.pristine() == []
    run = clean.cmd("watch __main__ add -f 'args[0] < 0'", "--timeout", "0.5").ok()
    assert "fp: watch stopped (--timeout) after 0 reports" in run.err, run.describe()
    assert "watch ended: 0 calls reported, stopped" in run.out


def _background(t, command, *opts):
    argv = [FP, str(t.pid)] + list(opts) + ["--cmd", command]
    t.fp_runs += 1
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
    )


def _wait_events(proc, n, timeout=15):
    """Reads --json lines from a background fp until n watch events arrived; returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, "only %d events: %r" % (len(got), got)
        line = proc.stdout.readline()
        assert line, "fp ended early: %s" % proc.stderr.read()
        rec = json.loads(line)
        if rec.get("notification", {}).get("method") == "watch/event":
            got.append(rec["notification"]["params"])
    return got


def _finish(proc, sig=None, timeout=15):
    if sig is not None:
        os.kill(proc.pid, sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("fp did not end after signal %s" % sig)
    return proc.returncode, out, err


def test_removed_at_ctrl_c(clean):
    proc = _background(clean, "watch __main__ add -n 100000", "--json")
    _wait_events(proc, 2)
    rc, out, err = _finish(proc, signal.SIGINT)
    assert rc == 0 and "stopped (Ctrl-C)" in err, (rc, err)
    ends = [
        json.loads(l)["notification"]["params"]
        for l in out.splitlines()
        if json.loads(l).get("notification", {}).get("method") == "watch/end"
    ]
    assert ends and ends[0]["reason"] == "stopped", out[-2000:]


@pytest.mark.parametrize("how", ["sigkill", "shutdown"])
def test_removed_when_client_dies_or_agent_shuts_down(clean, how):
    proc = _background(clean, "watch __main__ Shop buy -n 100000", "--json")
    _wait_events(proc, 1)
    assert clean.pristine() != []  # really instrumented meanwhile
    if how == "sigkill":
        _finish(proc, signal.SIGKILL)
    else:
        clean.cmd("shutdown").ok()
        rc, _out, _err = _finish(proc)
        assert rc != 0  # the agent closed its connection under it
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")


def test_removed_at_detach_in_the_shell(clean):
    # The shell: a watch stopped by its limit, then one left running when the session quits.
    run = clean.fp("--cmd", "watch __main__ add -n 1", "--cmd", "watch __main__ recurse -n 1").ok()
    assert run.out.count("watch ended") == 2
    proc = _background(clean, "watch __main__ add -f 'args[0] < 0'")
    wait_until(lambda: clean.pristine() != [], 10, "the watch to be installed")  # else nothing is tested
    rc, _out, err = _finish(proc, signal.SIGTERM)  # fp dies without detach: the agent sees EOF
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")


def test_two_clients_on_one_function(clean):
    a = _background(clean, "watch __main__ Shop buy -n 100000 --expr args", "--json")
    b = _background(clean, "watch __main__ Shop buy -n 100000 --expr return_obj", "--json")
    _wait_events(a, 2)
    _wait_events(b, 2)
    _finish(a, signal.SIGKILL)
    more = _wait_events(b, 3)  # the other watch goes on
    assert all(v["values"][0]["expr"] == "return_obj" for v in more)
    assert clean.pristine() != []
    rc, _out, _err = _finish(b, signal.SIGINT)
    assert rc == 0
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")


def test_target_keeps_working_while_watched(clean):
    """The target checks every result, exception type and traceback of its own calls; watching
    everything at once must not change any of them."""
    procs = [
        _background(clean, "watch __main__ %s -n 100000 --expr 'args'" % name, "--json")
        for name in ("boom", "add", "numbers", "countdown", "afail", "fetch", "decorated")
    ]
    procs.append(_background(clean, "watch __main__ Shop afetch -n 100000", "--json"))
    procs.append(_background(clean, "watch __main__ outer -nm inner -n 100000", "--json"))
    for p in procs:
        _wait_events(p, 2)
    clean.wait_progress(more=2)
    for p in procs:
        _finish(p, signal.SIGINT)
    wait_until(lambda: clean.pristine() == [], 10, "the target to be restored")
    clean.assert_healthy()
