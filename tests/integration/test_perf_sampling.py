"""perf's sampling instants, under every CPython: work paced at exactly the sampling rate (a
worker under a steady load) is seen in proportion to the time it takes, not always or never
(tests/targets/paced.py: 2 ms of work every 10 ms, sampled at 100 per second)."""

import re

from conftest import KINDS, Target


class Paced(Target):
    kind = "paced"
    line_re = re.compile(r"^paced \d+ late=\d+$")
    progress_re = line_re
    settle_progress = 1


KINDS["paced"] = Paced


def test_work_paced_at_the_sampling_rate(spawn, tmp_path):
    t = spawn("paced", 0.01, 0.002)
    # --idle: every instant samples the thread, wherever it is (working, or in time.sleep).
    model = t.json("perf -r 100 -d 4 --idle --format collapsed -f %s" % (tmp_path / "paced.collapsed"))
    ticks = model["ticks"]
    assert ticks >= 250 and model["samples"] >= 0.9 * ticks, model  # about 400 instants in 4 s
    # The thread is in work() a fifth of the time: a fixed schedule at the target's own rate
    # would find it at the same phase every time, in work at nearly every instant or at none.
    work = [f["total_pct"] for f in model["top_total"] if f["function"] == "work"]
    share = (work[0] if work else 0.0) / 100.0
    assert 0.08 <= share <= 0.40, (share, model["top_total"])


class Generators(Target):
    kind = "generators"
    line_re = re.compile(r"^rounds \d+$")
    progress_re = line_re
    settle_progress = 1


KINDS["generators"] = Generators

# The frame a thread enters Python with: the main script's, or threading's bootstrap.
ROOTS = ("<module>", "_bootstrap", "Thread._bootstrap")


def test_torn_stacks_are_lost_not_drawn(spawn, tmp_path):
    """A read that finds a generator's frame just suspended (no caller) is torn: it counts as
    lost and is never part of the profile. Every stack drawn starts at its thread's root."""
    t = spawn("generators")
    path = tmp_path / "generators.collapsed"
    model = t.json("perf -r 1000 -d 3 --format collapsed -f %s" % path)
    assert model["samples"] >= 0.5 * model["ticks"], model
    roots = {}
    for line in path.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        root = stack.split(";")[0].split(" (")[0]
        roots[root] = roots.get(root, 0) + int(count)
    assert set(roots) <= set(ROOTS), roots
    assert any(f["function"] == "produce" for f in model["top_self"]), model["top_self"]


class Callbacks(Target):
    kind = "callbacks"
    line_re = re.compile(r"^rounds \d+$")
    progress_re = line_re
    settle_progress = 1


KINDS["callbacks"] = Callbacks


def test_no_interpreter_trampoline_in_profiles(spawn, tmp_path):
    """3.12+: the shim frame of an eval loop entered from C (the interpreter trampoline, <shim>)
    is call plumbing, hidden as stack hides it, even when it is read before it is filled in."""
    t = spawn("callbacks")
    for fmt, name in (("collapsed", "c.collapsed"), ("speedscope", "c.speedscope.json"), ("svg", "c.svg")):
        path = tmp_path / name
        model = t.json("perf -r 1000 -d 2 --format %s -f %s" % (fmt, path))
        text = path.read_text()
        assert "interpreter trampoline" not in text and "<shim>" not in text, (fmt, model["top_total"])
        assert not [f for f in model["top_total"] if f["file"] == "<shim>"], model["top_total"]
    # map(double, ...) runs double from C: it shows right under the Python frame that called map
    stacks = (tmp_path / "c.collapsed").read_text()
    assert ";work (" in stacks and "double (" in stacks, stacks[:2000]
