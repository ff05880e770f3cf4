"""perf: the sampling profiler from outside, on a target of known shape (tests/targets/hot.py:
hot_loop ~90% of the time, cold ~10%), under every CPython. Also its three formats, the rate it
holds, --native / --idle / --gil, stopping by --timeout and Ctrl-C, and that it never injects
the agent. Native stacks (stack --native) are checked here too, being the same unwinder.
"""

import collections
import json
import os
import signal
import subprocess
import threading
import xml.etree.ElementTree as ET

import pytest

from conftest import FP, PYTHONS, agent_mappings, wait_until

SVG_NS = "{http://www.w3.org/2000/svg}"
# The interpreters on which the slower native checks run: a shared libpython and the stripped,
# static Debian interpreter (only .dynsym), when they are here.
NATIVE_IDS = ("py3.12", "py3.8", "system-3.11")


@pytest.fixture(scope="module")
def hot(module_spawn):
    return module_spawn("hot")


def perf_json(target, tmp_path, args, name):
    """Runs `perf ARGS -f tmp/NAME` with --json; returns (model, path)."""
    path = tmp_path / name
    model = target.json("perf %s -f %s" % (args, path))
    assert path.exists(), "perf did not write %s: %s" % (path, model)
    return model, path


def start_perf(t, *args):
    """fp perf in the background, with --debug; returns once its first samples are taken (its
    log says so), with a thread reading its stderr into proc.log."""
    p = subprocess.Popen(
        [FP, str(t.pid), "--debug"] + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    p.log = []
    reader = threading.Thread(target=lambda: p.log.extend(iter(p.stderr.readline, "")), daemon=True)
    reader.start()
    p.reader = reader
    try:
        wait_until(
            lambda: any("first samples are taken" in line for line in p.log) or p.poll() is not None,
            15,
            lambda: "fp perf to take its first samples: %s" % "".join(p.log),
        )
    except BaseException:
        p.kill()
        p.wait()
        raise
    return p


def finish_perf(p, sig=None):
    """(exit status, stdout, stderr) of a background fp perf, after signal sig if any."""
    try:
        if sig:
            p.send_signal(sig)
        out = p.stdout.read()
        p.wait(timeout=15)
        p.reader.join(5)
        return p.returncode, out, "".join(p.log)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def share(model, key, function):
    """The percentage of `function` in the summary list `key` (0 when absent)."""
    for f in model[key]:
        if f["function"] == function:
            return f["self_pct" if key == "top_self" else "total_pct"]
    return 0.0


def test_flamegraph(hot, tmp_path):
    model, path = perf_json(hot, tmp_path, "-d 2", "hot.svg")
    # One busy thread: a sample at (nearly) every instant; tolerant of a loaded machine.
    assert model["ticks"] >= 100 and model["samples"] >= 0.8 * model["ticks"], model
    assert share(model, "top_total", "hot_loop") >= 60, model["top_total"]
    assert share(model, "top_self", "hot_loop") >= 60, model["top_self"]
    assert share(model, "top_self", "hot_loop") > share(model, "top_self", "cold"), model["top_self"]
    assert model["file"] == str(path) and model["format"] == "svg"
    assert model["stopped_by"] == "-d"
    assert 1.8 <= model["duration_s"] <= 3.0, model

    root = ET.parse(str(path)).getroot()  # well-formed XML, or this raises
    assert root.tag == SVG_NS + "svg"
    titles = [t.text or "" for t in root.iter(SVG_NS + "title")]
    hot_titles = [t for t in titles if t.startswith("hot_loop (hot.py:")]
    assert hot_titles, "no hot_loop frame in the SVG"
    assert any(s.tag == SVG_NS + "script" for s in root.iter()), "the SVG has no script"
    text = path.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), "the SVG refers to the network"
    assert not agent_mappings(hot.pid), "perf injected the agent"


def test_hot_lines(hot, tmp_path):
    model, _ = perf_json(hot, tmp_path, "-d 1 --format collapsed", "lines.collapsed")
    hot_lines = [l for l in model["lines"] if l["function"] == "hot_loop"]
    assert hot_lines and os.path.basename(hot_lines[0]["file"]) == "hot.py", model["lines"]
    top = model["lines"][0]
    assert top["function"] == "hot_loop" and top["self"] <= top["total"] <= model["samples"], model["lines"]
    with open(top["file"]) as f:
        source = f.read().splitlines()[top["line"] - 1]
    assert "x = (x * 31 + i) % 1000003" in source or "for i in range" in source, source


def test_speedscope(hot, tmp_path):
    model, path = perf_json(hot, tmp_path, "-d 1 --format speedscope", "hot.speedscope.json")
    doc = json.loads(path.read_text())
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert any(f["name"] == "hot_loop" and f["file"].endswith("hot.py") for f in frames)
    assert doc["profiles"], doc
    total = 0
    for p in doc["profiles"]:
        assert p["type"] == "sampled" and p["unit"] == "none"
        assert len(p["samples"]) == len(p["weights"])
        assert all(0 <= i < len(frames) for s in p["samples"] for i in s)
        assert p["endValue"] == sum(p["weights"])
        total += sum(p["weights"])
    assert total == model["samples"]


def test_collapsed_and_rate(hot, tmp_path):
    model, path = perf_json(hot, tmp_path, "-r 200 -d 2 --format collapsed", "hot.collapsed")
    counts = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        assert stack and int(n) > 0, line
        counts[stack.split(";")[-1].split(" (")[0]] += int(n)
    assert sum(counts.values()) == model["samples"]
    assert counts["hot_loop"] >= 0.6 * model["samples"], counts
    # Tolerant: a loaded two-core machine may delay some instants.
    timing = {k: model[k] for k in ("achieved_hz", "ticks", "duration_s", "read_ms_avg", "read_ms_max", "resyncs")}
    assert 180 <= model["achieved_hz"] <= 220, "rate not held: %s (load average %s)" % (timing, os.getloadavg())
    assert model["lost"] <= 0.1 * model["ticks"], model


def test_timeout_ends_perf(hot, tmp_path):
    path = tmp_path / "t.svg"
    r = hot.cmd("perf -f %s" % path, "--timeout", "1").ok()
    assert path.exists(), r.describe()
    assert "hot_loop" in r.out and "--timeout" in r.out, r.describe()
    assert "written to %s" % path in r.out


def test_gil_only(hot, tmp_path):
    model, _ = perf_json(hot, tmp_path, "-d 1 --gil", "gil.svg")
    assert model["gil"] is True and model["threads"] == 1, model
    assert share(model, "top_total", "hot_loop") >= 60, model


def test_bad_options_fail_fast(hot):
    r = hot.cmd("perf -f /no/such/dir/x.svg").failed()
    assert "/no/such/dir" in r.err and r.elapsed < 5, r.describe()
    r = hot.cmd("perf --format pdf").failed()
    assert "svg" in r.err and "speedscope" in r.err, r.describe()
    r = hot.cmd("perf -r 0").failed()
    assert "-r/--rate" in r.err, r.describe()


def test_no_agent_and_healthy(hot):
    assert not agent_mappings(hot.pid)
    hot.assert_healthy()


# --------------------------------------------------------------------------------------------
# idle threads, Ctrl-C, the process exiting
# --------------------------------------------------------------------------------------------


def test_idle_threads(spawn, tmp_path):
    t = spawn("sleeper")
    t.wait_progress(more=1)  # past its start-up, in its sleep loop
    model, _ = perf_json(t, tmp_path, "-d 1", "idle.svg")
    # Tolerant: the instants when it wakes up to print its tick are rightly sampled (longer
    # on a loaded machine, where a woken thread waits for a core in state R).
    assert model["samples"] <= 0.2 * model["ticks"], "a sleeping thread was sampled without --idle: %s" % model
    model, path = perf_json(t, tmp_path, "-d 1 --idle", "idle2.svg")
    assert model["ticks"] >= 50 and model["samples"] >= 0.9 * model["ticks"], model
    assert share(model, "top_total", "main") >= 90, model
    ET.parse(str(path))
    assert not agent_mappings(t.pid)


def test_gil_held_forever(spawn, tmp_path):
    """A thread holding the GIL in a C call: perf reads from outside, it needs no GIL."""
    t = spawn("gil_hog")
    model, _ = perf_json(t, tmp_path, "-d 1", "hog.svg")
    assert model["ticks"] >= 50 and model["samples"] >= 0.9 * model["ticks"], model
    # The hog is what is sampled (on a loaded machine the main thread's wake-ups to ask for the
    # GIL are sometimes caught running: a minority).
    assert model["top_self"][0]["function"] == "hog" and share(model, "top_self", "hog") >= 60, model["top_self"]
    assert not agent_mappings(t.pid)


def test_ctrl_c_writes_profile(python, spawn, tmp_path):
    if python.id != pythons_first():
        pytest.skip("checked on one interpreter")
    t = spawn("hot")
    path = tmp_path / "int.svg"
    p = start_perf(t, "--cmd", "perf -f %s" % path)
    rc, out, err = finish_perf(p, signal.SIGINT)
    assert rc == 0, (out, err)
    assert path.exists() and "Ctrl-C" in out, (out, err)


def test_process_exit_ends_perf(python, spawn, tmp_path):
    if python.id != pythons_first():
        pytest.skip("checked on one interpreter")
    t = spawn("hot")
    path = tmp_path / "exit.collapsed"
    p = start_perf(t, "--json", "--cmd", "perf --format collapsed -f %s" % path)
    t.stop()
    rc, out, err = finish_perf(p)
    assert rc == 0, (out, err)
    model = json.loads(out)["result"]
    assert model["stopped_by"] == "the process's exit" and model["samples"] > 0, model
    t.checked_after = t.fp_runs  # it was stopped on purpose


def pythons_first():
    return PYTHONS[0].id


# --------------------------------------------------------------------------------------------
# native frames
# --------------------------------------------------------------------------------------------


def need_native(python):
    if python.id not in NATIVE_IDS:
        pytest.skip("native frames are checked on %s" % ", ".join(NATIVE_IDS))


def test_perf_native(python, hot, tmp_path):
    need_native(python)
    model, path = perf_json(hot, tmp_path, "-d 1 --native -r 50 --format collapsed", "native.collapsed")
    assert model["native"] is True and model["samples"] > 0, model
    stacks = [line.rpartition(" ")[0].split(";") for line in path.read_text().splitlines()]
    merged = [s for s in stacks if any(f.startswith("hot_loop (") for f in s)]
    assert merged, stacks[:5]
    # C frames of the interpreter around the Python ones: Py_RunMain / Py_BytesMain above
    # <module>, and no eval-loop frame left where a Python frame should be.
    s = merged[0]
    names = [f.split(" (")[0] for f in s]
    assert any(n in ("Py_RunMain", "Py_BytesMain", "main", "__libc_start_main") for n in names), s
    assert names.index("<module>") < names.index("main") < names.index("hot_loop"), s
    assert not any(n.startswith("_PyEval_EvalFrameDefault") for n in names), s
    assert not agent_mappings(hot.pid)


def test_stack_native_sleeping(python, spawn):
    need_native(python)
    t = spawn("sleeper", 1.0)
    r = t.cmd("stack --native", "--json").ok()
    rec = json.loads(r.out.splitlines()[-1])["result"]
    main = [th for th in rec["threads"] if th.get("main") or th.get("is_main")][0]
    frames = main["frames"]  # outermost first
    names = [f["function"] for f in frames]
    libc = [
        i
        for i, f in enumerate(frames)
        if f.get("kind") == "native"
        and f["function"] in ("clock_nanosleep", "__clock_nanosleep", "nanosleep", "select", "__select")
    ]
    py_main = [i for i, f in enumerate(frames) if f.get("kind", "python") == "python" and f["function"] == "main"]
    assert libc and py_main, names
    assert libc[-1] > py_main[-1], "the libc sleep is not inside the Python frame: %s" % names
    assert not agent_mappings(t.pid)
