"""torch profile / torch memory against a real PyTorch program (tests/targets/torch_model.py: a
small network trained and queried on the CPU) under every CPython that has a torch environment
(tests/integration/torch_env.py; `make test` installs them). An interpreter without one is
skipped with the reason, never passed.

What is checked: the Chrome trace (whole, valid, holding the model's operators, mode 0600, no
temporary left), the summary (operators by self CPU time, the call's cost, the memory it
allocated), -n, a relative -f resolved against fp's working directory, the errors that change
nothing (torch not imported, CUDA unavailable for CUDA-only requests, an output path that cannot
be written, a generator or a coroutine, a profiler the program runs itself), and that Ctrl-C or a
killed client during a profiled call leave no profiler and no probe once the call returns.
Each test ends with the target as it was (`pristine`), and the target's own checks (ERROR
lines) prove the program's results never changed.
"""

import json
import os
import re
import signal
import stat
import subprocess

import pytest
import torch_env

from conftest import FP, KINDS, Target, wait_until

# torch prints this line itself (a fprintf in its profiler library, which no log level silences)
# the first time a process profiles on a thread other than the one that imported torch; the
# profiler works all the same. Documented in the README.
KINETO_THREAD_LINE = re.compile(
    r"^ERROR: External init callback must run in same thread as registerClient "
    r"\(-?\d+ != -?\d+\)\n",
    re.M,
)
# torch's profiler library logs these lines when the program profiles itself ("own" mode).
KINETO_LOG_LINES = re.compile(r"^(STAGE|USDT|ERROR|WARNING|INFO):\d{4}-\d\d-\d\d [^\n]*\n", re.M)


class TorchModel(Target):
    kind = "torch_model"
    line_re = re.compile(r"^(tick \d+ loss=\d+\.\d+|slow \d+)$")
    progress_re = re.compile(r"^tick \d+ ")
    settle_progress = 2
    ready_timeout = 120.0  # importing torch reads ~1.4 GB; on a busy machine that can take a while

    def __init__(self, python, workdir, args=(), cwd=None):
        Target.__init__(self, python, workdir, args, cwd)
        self.known_stderr = KINETO_THREAD_LINE

    def value(self, module, field, expr=None):
        command = "getglobal %s %s -r" % (module, field)
        if expr:
            command += ' -e "%s"' % expr
        return self.json(command)["value"]["repr"]

    def pristine(self):
        """What fp left in the process: [] when nothing (no profiler on, no probe, no stream)."""
        left = []
        if self.value("torch.autograd.profiler", "_is_profiler_enabled") != "False":
            left.append("a torch profiler is on")
        if self.value("fp_agent.instrument", "_sites", "len(target)") != "0":
            left.append("a probe is installed")
        if self.value("fp_agent.torchprof", "_streams", "len(target)") != "0":
            left.append("a torch stream is open")
        if self.value("fp_agent.torchprof", "_running", "target[0] is not None") != "False":
            left.append("a run is marked in flight")
        return left


KINDS["torch_model"] = TorchModel


@pytest.fixture(scope="module")
def torch_python(python):
    """The interpreter's torch environment, as a `python` for spawn; skips (saying why) without one."""
    exe, why = torch_env.for_tests(python)
    if exe is None:
        pytest.skip(why)
    import pythons

    return pythons.Python(python.id, exe, python.version)


@pytest.fixture(scope="module")
def target(torch_python, tmp_path_factory):
    from conftest import _Spawner

    workdir = tmp_path_factory.mktemp("torch-" + torch_python.id)
    # The target runs in a directory of its own, so a relative -f shows whose directory it is.
    cwd = workdir / "target-cwd"
    cwd.mkdir()
    s = _Spawner(torch_python, workdir)
    try:
        yield s("torch_model", cwd=str(cwd))
    finally:
        s.finish()


@pytest.fixture
def torch_spawn(torch_python, tmp_path):
    """spawn, with the torch environment's interpreter."""
    from conftest import _Spawner

    s = _Spawner(torch_python, tmp_path)
    try:
        yield s
    finally:
        s.finish()


@pytest.fixture
def clean(target):
    yield target
    wait_until(lambda: target.pristine() == [], 10, lambda: "fp to leave nothing: %s" % target.pristine())


def torch_json(t, command, opts=(), cwd=None, **kw):
    """`fp --json --cmd "torch ..."`: (result, [notification params by method], run)."""
    argv = [FP, str(t.pid), "--json"] + list(opts) + ["--cmd", command]
    t.fp_runs += 1
    p = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=kw.get("timeout", 60),
        cwd=cwd,
    )
    result, notes = None, []
    for line in p.stdout.splitlines():
        rec = json.loads(line)
        if "result" in rec:
            result = rec["result"]
        elif "notification" in rec:
            notes.append(rec["notification"])
        elif "error" in rec:
            return None, rec["error"], p
    return result, notes, p


def events(notes, method):
    return [n["params"] for n in notes if n["method"] == method]


def no_leftovers(directory):
    return [n for n in os.listdir(directory) if n.startswith(".fp-torch-")]


# ---------------------------------------------------------------------------------------------


def test_profile_writes_trace_and_summary(clean, tmp_path):
    out = tmp_path / "forward.json"
    result, notes, p = torch_json(clean, "torch profile __main__ Net forward -f %s" % out)
    assert p.returncode == 0, p.stderr
    assert result["kind"] == "profile" and result["file"] == str(out) and result["limit"] == 1
    assert result["activities"] == ["cpu"] and result["device"] == "auto" and result["cuda"] is False
    assert result["located"]["qualname"] == "Net.forward" and result["stream"]["id_key"] == "torch_id"
    ev = events(notes, "torch/profile")
    assert len(ev) == 1, notes
    ev = ev[0]
    assert ev["thread"]["name"] == "MainThread" and ev["raised"] is None and "error" not in ev, ev
    assert ev["file"] == str(out) and ev["bytes"] == out.stat().st_size and ev["activities"] == ["cpu"]
    names = [op["name"] for op in ev["ops"]]
    assert "aten::addmm" in names, names  # nn.Linear
    assert any("relu" in n or "clamp_min" in n for n in names), names
    assert ev["ops"] == sorted(ev["ops"], key=lambda o: -o["self_cpu_ms"])
    assert 0 < ev["self_cpu_ms"] <= ev["cost_ms"] * 1.05, ev
    assert ev["operators"] >= len(ev["ops"]) and ev["op_calls"] >= ev["operators"]
    cpu = [m for m in ev["memory"] if m["device"] == "cpu"][0]
    # two Linear outputs of 32x128 and 32x10 floats, and relu's 32x128: at least one at a time
    assert cpu["peak_bytes"] >= 32 * 128 * 4 and cpu["allocations"] >= 3, cpu
    end = events(notes, "torch/end")
    assert end and end[0]["reason"] == "limit" and end[0]["count"] == 1 and end[0]["pending"] is False
    # The trace: whole JSON, the model's operators in it, readable by its owner only.
    trace = json.loads(out.read_text())
    op_events = [e.get("name") for e in trace["traceEvents"]]
    assert "aten::addmm" in op_events
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert no_leftovers(tmp_path) == []


def test_profile_human_output(clean, tmp_path):
    out = tmp_path / "human.json"
    run = clean.cmd("torch profile __main__ train_step -f %s" % out, timeout=60).ok()
    assert "profiling the next call of train_step (function" in run.out, run.describe()
    assert "operators by self CPU time" in run.out and "aten::addmm" in run.out, run.describe()
    assert "memory (cpu) during the call: peak" in run.out, run.describe()
    assert "written to %s" % out in run.out and "torch profile ended (done): 1 call profiled" in run.out
    # backward ran inside the profiled call: its operators are in the trace
    trace = json.loads(out.read_text())
    assert any("Backward" in (e.get("name") or "") for e in trace["traceEvents"]), run.describe()


def test_profile_n_calls_and_relative_file(clean, tmp_path):
    """-n 2: one trace per call, FILE-1, FILE-2; a relative FILE is relative to fp's directory,
    not the target's."""
    result, notes, p = torch_json(clean, "torch profile __main__ infer -n 2 -f rel.json", cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert result["file"] == str(tmp_path / "rel.json")
    ev = events(notes, "torch/profile")
    assert [e["index"] for e in ev] == [1, 2], notes
    assert [e["file"] for e in ev] == [str(tmp_path / "rel-1.json"), str(tmp_path / "rel-2.json")]
    for e in ev:
        assert json.loads(open(e["file"]).read())["traceEvents"]
    assert not os.path.exists(os.path.join(clean.cwd, "rel-1.json"))
    assert no_leftovers(tmp_path) == []


def test_output_replaces_a_file_or_a_link_never_follows_it(clean, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    old = tmp_path / "old.json"
    old.write_text("old")
    for path in (link, old):
        result, notes, p = torch_json(clean, "torch profile __main__ infer -f %s" % path)
        ev = events(notes, "torch/profile")
        assert p.returncode == 0 and ev and ev[0]["file"] == str(path), (p.stderr, notes)
        assert not path.is_symlink() and json.loads(path.read_text())["traceEvents"]
    assert victim.read_text() == "keep"
    assert no_leftovers(tmp_path) == []


def test_stack_records_python_frames(clean, tmp_path):
    out = tmp_path / "stack.json"
    result, notes, p = torch_json(clean, "torch profile __main__ Net forward --stack -f %s" % out)
    assert p.returncode == 0 and result["with_stack"] is True, p.stderr
    trace = json.loads(out.read_text())
    python = [e for e in trace["traceEvents"] if e.get("cat") == "python_function"]
    assert any("torch_model.py" in e.get("name", "") for e in python), sorted(
        set(e.get("cat") for e in trace["traceEvents"])
    )


def test_errors_change_nothing(clean, tmp_path):
    sites = clean.value("fp_agent.instrument", "_sites", "len(target)")
    cases = [
        ("torch memory -s -f %s/s.pickle" % tmp_path, "CUDA unavailable for a CUDA-only request"),
        ("torch memory -r __main__ Net forward -f %s/r.pickle" % tmp_path, "CUDA unavailable for a CUDA-only request"),
        (
            "torch profile __main__ Net forward --cuda -f %s/c.json" % tmp_path,
            "CUDA unavailable for a CUDA-only request",
        ),
        (
            "torch profile __main__ Net forward -f /nonexistent-dir/t.json",
            "the directory /nonexistent-dir does not exist",
        ),
        ("torch profile __main__ Net forward -f %s" % tmp_path, "it is a directory"),
        ("torch profile __main__ Net forward -f /proc/fp-t.json", "cannot create files in /proc"),
        ("torch profile __main__ batches", "is a generator"),
        ("torch profile __main__ serve", "is a coroutine"),
        ("torch profile __main__ Net forwrd", "has no method 'forwrd'"),
        ("torch memory -s -n 2", "option -n is for torch profile"),
        ("torch profile __main__ Net forward --cpu --cuda", "--cpu and --cuda exclude each other"),
    ]
    for command, message in cases:
        run = clean.cmd(command).failed()
        assert message in run.err, run.describe()
    assert clean.value("fp_agent.instrument", "_sites", "len(target)") == sites
    assert os.listdir(tmp_path) == []
    # The CUDA refusal is an agent error with a reason a client can act on.
    result, error, p = torch_json(clean, "torch memory -s -f %s/s.pickle" % tmp_path)
    assert result is None and error["rpc_code"] == -32004 and error["data"]["reason"] == "no-cuda", error
    # and nothing initialised CUDA for it
    assert clean.value("torch.cuda", "_initialized") == "False"


def test_stopped_or_killed_during_a_profiled_call(clean, tmp_path):
    """slow_infer runs about two seconds on the slow thread: the client leaves while one is
    profiled. torch's profiler belongs to that thread, so it stops when the call returns; then
    the probe goes, no file is written, and the next profile works."""
    for how in ("sigint", "sigkill"):
        out = tmp_path / ("%s.json" % how)
        proc = subprocess.Popen(
            [FP, str(clean.pid), "--json", "--cmd", "torch profile __main__ slow_infer -f %s" % out],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        clean.fp_runs += 1
        try:
            wait_until(
                lambda: clean.value("torch.autograd.profiler", "_is_profiler_enabled") == "True",
                15,
                "slow_infer to be profiled",
            )
            proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGKILL)
            out_text, err_text = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if how == "sigint":
            assert proc.returncode == 0, err_text
            recs = [json.loads(l) for l in out_text.splitlines()]
            ends = [r["notification"]["params"] for r in recs if r.get("notification", {}).get("method") == "torch/end"]
            assert ends and ends[0]["reason"] == "stopped" and ends[0]["pending"] is True, out_text
        # the call ends within about two seconds (more on a loaded machine); then all goes
        wait_until(lambda: clean.pristine() == [], 30, lambda: "the profiler and probe to go: %s" % clean.pristine())
        assert not out.exists() and no_leftovers(tmp_path) == []
    result, notes, p = torch_json(clean, "torch profile __main__ slow_infer -f %s/after.json" % tmp_path)
    ev = events(notes, "torch/profile")
    assert p.returncode == 0 and len(ev) == 1 and ev[0]["thread"]["name"] == "slow", (p.stderr, notes)
    assert ev[0]["cost_ms"] >= 1900 and any(op["name"] == "aten::tanh" for op in ev[0]["ops"]), ev[0]


def test_program_profiler_is_left_alone(torch_spawn):
    """The program profiles itself: fp refuses, and the program's profiler goes on (the target
    checks every tick that it still runs)."""
    t = torch_spawn("torch_model", "own")
    t.known_stderr = re.compile("(%s)|(%s)" % (KINETO_THREAD_LINE.pattern, KINETO_LOG_LINES.pattern), re.M)
    run = t.cmd("torch profile __main__ Net forward -f /tmp/fp-never-written.json").failed()
    assert "a torch profiler is already running in this process (started by the program)" in run.err, run.describe()
    assert "fp does not take over a profiler it did not start" in run.err
    assert not os.path.exists("/tmp/fp-never-written.json")
    assert t.value("fp_agent.instrument", "_sites", "len(target)") == "0"
    t.assert_healthy()


def test_not_imported(python, spawn):
    """A process without torch: refused, and torch is still not imported afterwards."""
    t = spawn("sleeper")
    for command in ("torch profile __main__ main", "torch memory -s"):
        run = t.cmd(command).failed()
        assert "torch is not imported by this process" in run.err, run.describe()
    r = t.json("getglobal sys modules -e \"[m for m in target if m == 'torch' or m.startswith('torch.')]\"")
    assert r["value"]["repr"] == "[]"
