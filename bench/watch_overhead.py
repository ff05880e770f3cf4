#!/usr/bin/env python3
"""What `watch` with a filter that never matches adds to each call of a small function.

tests/targets/observed_loop.py calls handle(order_id, amount, currency) -- a small function, as a
request handler's helper is -- in a tight loop and reports, per window, the wall time
(perf_counter) and the CPU time of the process per iteration. In one target, blocks of windows
alternate between no watch and `watch __main__ handle -f FILTER` (started by a background fp
that waits; stopped with Ctrl-C, which restores the function), so the machine's drift falls on
both sides. Each pair gives added ns/call = median(watched windows) - median(the unwatched
block before). Printed per interpreter: the median over all pairs and runs of the added CPU ns
and wall ns per call (CPU time is the primary figure: it is not inflated when other processes
take the cores; the agent is idle meanwhile, so it is the observed thread's own cost).

Filters: `args[0] == -1` (arguments only: fp checks it when the call starts; the goal figure)
and `cost > 1e9` (needs the call's outcome: every call is timed and checked when it returns).
The same `args[0] == -1` is also measured as `trace __main__ handle -f FILTER`: what a trace
costs the calls it does not record.

PyFlightProfiler 1.0.x is measured the same way in the same run (same target code, same
interpreter, its own target processes: one per pair, as a second watch on a target it already
attached to did not take effect), where `pip install flight-profiler` works for that
interpreter: into a throwaway venv under /tmp (never a dependency of fp). Its CLI is given a
stdin that stays open and is stopped with SIGINT (its Ctrl-C removes its wrapper; a closed
stdin ends the CLI but leaves the wrapper in the target). Where it does not install, the row
says so.

Goals: <= 500 ns per call on 3.12+, <= 1000 ns on 3.8-3.11, and below PyFlightProfiler's.
"""

import os
import re
import signal
import subprocess
import tempfile
import time

import benchlib

RATE_LINE = re.compile(r"^rate \d+ ns=([\d.]+) cpu_ns=([\d.]+)$")
# (figure, fp command, filter)
FILTERS = (("args", "watch", "args[0] == -1"), ("cost", "watch", "cost > 1e9"), ("trace", "trace", "args[0] == -1"))
GOALS = {True: 500.0, False: 1000.0}  # 3.12+ : 3.8-3.11


def collect(t, count, window, after=None):
    """(wall ns, cpu ns) per call of the next `count` whole windows that began after `after`."""
    rates = []
    skip_until = (after or 0) + window
    skipped_one = after is None
    while len(rates) < count:
        line = t.readline(timeout=window * 20 + 10)
        arrived = time.monotonic()
        m = RATE_LINE.match(line)
        if not m:
            continue  # PyFlightProfiler writes its own lines into the target's stdout
        if arrived < skip_until:
            continue
        if not skipped_one:
            skipped_one = True
            continue
        rates.append((float(m.group(1)), float(m.group(2))))
    return rates


def medians(rates):
    return benchlib.median([r[0] for r in rates]), benchlib.median([r[1] for r in rates])


class Watcher(object):
    """A background watch by fp or by PyFlightProfiler's CLI, until stop()."""

    def __init__(self, argv, ready_re, env=None):
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            env=env,
        )
        deadline = time.monotonic() + 30
        seen = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise benchlib.BenchError("the watch did not start: %s" % "".join(seen[-5:]).strip())
            seen.append(line)
            if ready_re.search(line):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise benchlib.BenchError("the watch did not start in 30 s")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.communicate()


def fp_watch(fp, pid, command, cond):
    return Watcher(
        [fp, str(pid), "--timeout", "86400", "--cmd", "%s __main__ handle -n 1000000 -f '%s'" % (command, cond)],
        re.compile(r"^(watching|tracing) "),
    )


def seed_watch(seed_cli, pid, cond):
    return Watcher(
        [seed_cli, str(pid), "--no-color", "--cmd", "watch __main__ handle -n 1000000 -f %s" % cond.replace(" ", "")],
        re.compile(r"successfully added"),
        env=dict(os.environ, NO_COLOR="1"),
    )


def pairs(py, start_watch, rounds, windows, window, warm=None):
    """[(added wall ns, added cpu ns)] over `rounds` unwatched/watched block pairs in one target."""
    with benchlib.Target(py, "observed_loop", window) as t:
        if warm:
            warm(t.pid)
        collect(t, 3, window)
        out = []
        off_since = None
        for _ in range(rounds):
            base = medians(collect(t, windows, window, after=off_since))
            w = start_watch(t.pid)
            on = medians(collect(t, windows, window, after=time.monotonic()))
            w.stop()
            off_since = time.monotonic()
            out.append((on[0] - base[0], on[1] - base[1]))
        return out


class Venv(object):
    """The venv's interpreter, as a benchlib interpreter (same id, another path)."""

    def __init__(self, py, path):
        self.id = py.id
        self.path = path
        self.version = py.version


def seed_install(py, root):
    """(venv python, flight_profiler CLI) or (None, reason)."""
    venv = os.path.join(root, "seed-" + py.id)
    if not os.path.exists(os.path.join(venv, "bin", "flight_profiler")):
        r = subprocess.run(
            [py.path, "-m", "venv", venv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True
        )
        if r.returncode != 0:
            return None, "no venv: %s" % r.stdout.strip().splitlines()[-1:]
        r = subprocess.run(
            [os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q", "flight-profiler"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=600,
        )
        if r.returncode != 0:
            last = [l for l in r.stdout.strip().splitlines() if l.strip()][-1:] or ["?"]
            return None, "does not install: %s" % last[0][:100]
    return (Venv(py, os.path.join(venv, "bin", "python")), os.path.join(venv, "bin", "flight_profiler")), None


def main():
    ap = benchlib.parser(__doc__, runs_default=2)
    ap.add_argument("--rounds", type=int, default=4, help="unwatched/watched block pairs per run (default 4)")
    ap.add_argument("--windows", type=int, default=4, help="windows per block (default 4)")
    ap.add_argument("--window", type=float, default=0.25, help="window length in seconds (default 0.25)")
    ap.add_argument("--no-seed", action="store_true", help="do not measure PyFlightProfiler")
    ap.add_argument(
        "--seed-dir",
        default=os.path.join(tempfile.gettempdir(), "fp-bench-seed"),
        help="where the throwaway PyFlightProfiler venvs go (default /tmp/fp-bench-seed)",
    )
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    print(
        "watch overhead: added ns per call of handle() with a filter that never matches; %d runs x %d pairs "
        "x %d windows of %.2fs; median over pairs (CPU ns first)" % (args.runs, args.rounds, args.windows, args.window)
    )
    rows = []
    verdicts = []
    for py in interpreters:
        row = [py.id]
        fp_figures = {}
        for name, command, cond in FILTERS:
            try:
                got = []
                for _ in range(args.runs):
                    got += pairs(
                        py,
                        lambda pid: fp_watch(fp, pid, command, cond),
                        args.rounds,
                        args.windows,
                        args.window,
                        warm=lambda pid: benchlib.run_fp(fp, pid, "status"),
                    )
                cpu = benchlib.median([g[1] for g in got])
                wall = benchlib.median([g[0] for g in got])
                fp_figures[name] = cpu
                row.append("%.0f / %.0f" % (cpu, wall))
            except benchlib.BenchError as e:
                row.append("error: %s" % e)
        if args.no_seed:
            row.append("not measured")
        else:
            (seed, why) = seed_install(py, args.seed_dir)
            if seed is None:
                row.append(why)
            else:
                venv_py, cli = seed
                got = []
                failed = []
                # One pair per target: a second watch on a target PyFlightProfiler already
                # attached to did not take effect here (no added cost at all).
                for _ in range(args.runs * args.rounds):
                    try:
                        got += pairs(
                            venv_py, lambda pid: seed_watch(cli, pid, FILTERS[0][2]), 1, args.windows, args.window
                        )
                    except benchlib.BenchError as e:
                        failed.append(str(e))
                if got:
                    cpu = benchlib.median([g[1] for g in got])
                    text = "%.0f / %.0f" % (cpu, benchlib.median([g[0] for g in got]))
                    if failed:
                        text += " (%d of %d attaches failed)" % (len(failed), len(failed) + len(got))
                    row.append(text)
                    fp_figures["seed"] = cpu
                else:
                    row.append("error: %s" % failed[-1])
        rows.append(row)
        if "args" in fp_figures:
            goal = GOALS[py.version >= (3, 12)]
            text = "%s: %.0f ns added per call (goal <= %.0f ns: %s)" % (
                py.id,
                fp_figures["args"],
                goal,
                "met" if fp_figures["args"] <= goal else "NOT met",
            )
            if "seed" in fp_figures:
                text += "; PyFlightProfiler %.0f ns" % fp_figures["seed"]
            verdicts.append(text)
    benchlib.table(
        [
            "python",
            "fp -f args (cpu/wall ns)",
            "fp -f cost (cpu/wall ns)",
            "fp trace -f args",
            "PyFlightProfiler -f args",
        ],
        rows,
    )
    print()
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
