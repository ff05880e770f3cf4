#!/usr/bin/env python3
"""What an idle agent costs a busy target: iterations/s of a pure-Python loop (tests/targets/cpu.py,
which measures its own rate per fixed window) with no agent running vs with an attached, idle
agent (attached by `fp PID --cmd status`, then no client), in the same process.

Per run: one target; blocks of windows alternate between the two states (agent idle, then
stopped again with `fp PID --cmd shutdown`, which leaves the library mapped but no agent
thread) so slow drift of the machine falls on both sides; the windows around each fp call
are dropped. Each pair of blocks gives a ratio = median(idle-agent windows) / median(the
no-agent windows just before). Two rates per window: per second of wall time (the figure the
goal is about) and per second of the target's CPU time (all its threads, the agent's too; not
disturbed by other processes taking the cores). Printed per interpreter: the median ratio over
all pairs of all runs and their range, for both. Goal: wall ratio within 1% of 1.0.
"""

import re
import sys
import time

import benchlib

GOAL = 0.01
RATE_LINE = re.compile(r"^rate \d+ ips=(\d+) cpu_ips=(\d+)$")


def collect(t, count, window, after=None):
    """(wall rate, cpu rate) of the next `count` whole windows; windows that began before
    `after` are dropped, then one more (the one in flight)."""
    rates = []
    skip_until = (after or 0) + window
    skipped_one = after is None
    while len(rates) < count:
        line = t.readline(timeout=window * 10 + 5)
        arrived = time.monotonic()
        m = RATE_LINE.match(line)
        if not m:
            raise benchlib.BenchError("unexpected target output: %r" % line)
        if arrived < skip_until:
            continue
        if not skipped_one:
            skipped_one = True
            continue
        rates.append((float(m.group(1)), float(m.group(2))))
    return rates


def block_medians(rates):
    return benchlib.median([r[0] for r in rates]), benchlib.median([r[1] for r in rates])


def one_run(fp, py, rounds, windows, window):
    """Per round: (wall ratio, cpu ratio) of the idle-agent block over the no-agent block
    just before it."""
    with benchlib.Target(py, "cpu", window) as t:
        collect(t, 4, window)  # warm-up
        ratios = []
        off_since = None
        for _ in range(rounds):
            off = block_medians(collect(t, windows, window, after=off_since))
            benchlib.run_fp(fp, t.pid, "status")  # attach (or restart) and leave it idle
            idle = block_medians(collect(t, windows, window, after=time.monotonic()))
            benchlib.run_fp(fp, t.pid, "shutdown")
            off_since = time.monotonic()
            ratios.append((idle[0] / off[0], idle[1] / off[1]))
        return ratios


def main():
    ap = benchlib.parser(__doc__, runs_default=2)
    ap.add_argument("--rounds", type=int, default=6, help="no-agent/idle-agent block pairs per run (default 6)")
    ap.add_argument("--windows", type=int, default=4, help="windows per block (default 4)")
    ap.add_argument("--window", type=float, default=0.25, help="window length in seconds (default 0.25)")
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    print(
        "idle cost: cpu target iterations/s, no agent vs idle agent; %d runs x %d rounds x %d windows of %.2fs"
        % (args.runs, args.rounds, args.windows, args.window)
    )
    rows = []
    verdicts = []
    errors = []
    for py in interpreters:
        ratios = []
        try:
            for _ in range(args.runs):
                ratios.extend(one_run(fp, py, args.rounds, args.windows, args.window))
        except benchlib.BenchError as e:
            rows.append([py.id, "error (below)"] + [""] * 3)
            errors.append("%s: %s" % (py.id, e))
            continue
        wall = [r[0] for r in ratios]
        cpu = [r[1] for r in ratios]
        med = benchlib.median(wall)
        rows.append(
            [
                py.id,
                "%.4f" % med,
                "%.3f..%.3f" % (min(wall), max(wall)),
                "%.4f" % benchlib.median(cpu),
                "%.3f..%.3f" % (min(cpu), max(cpu)),
            ]
        )
        verdicts.append(
            "%s: with an idle agent the loop runs at %.2f%% of its speed (wall), %s the %.0f%% goal"
            % (py.id, med * 100, "within" if abs(med - 1) <= GOAL else "OUTSIDE", GOAL * 100)
        )
    benchlib.table(["python", "wall ratio", "wall range", "cpu ratio", "cpu range"], rows)
    print()
    print("ratio = idle-agent / no-agent iterations per second, median over %d block pairs" % (args.runs * args.rounds))
    print("(1.0: no cost; below 1: slower). wall: per second of elapsed time; cpu: per second of the")
    print("target's CPU time (immune to other processes on the machine; counts the agent's threads).")
    for v in verdicts:
        print(v)
    for e in errors:
        print("error: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
