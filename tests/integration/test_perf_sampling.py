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
