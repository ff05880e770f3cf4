#!/usr/bin/env python3
"""What `trace` costs the call it traces: the slowdown of a ~10 ms function while every call of
it is traced at the default -i 0.1, against the same function untraced, in the same process;
and PyFlightProfiler's `trace` on the same workload in the same run, where it installs.

The target is tests/targets/traced_bench.py. It calls its workload back to back and reports,
per window (--window, default 0.5 s), the median wall time and the median thread CPU time of
the calls, measured around each call (so what a tracer does at the call's entry and exit,
building and sending the tree included, counts). Workloads (--workloads):
- service: a request handler: an sqlite3 query (C), Python post-processing of the rows, json
  and hashlib (C) on the response; about 0.5 calls per microsecond;
- dense: pure Python business logic, about 3.5 calls per microsecond: the worst case for a
  tracer that sees every call (the interpreter's own profiling machinery costs most there).

In one target process, blocks of --windows windows alternate between untraced and traced
(`fp PID --cmd "trace traced_bench FUNC -n 1000000"` running, stopped with Ctrl-C); the windows
around each switch are dropped. Each pair gives ratio = median(traced) / median(untraced just
before); printed per interpreter and workload: the median ratio over --rounds pairs of --runs
targets, on CPU time (robust when other processes share the machine) and on wall time.
PyFlightProfiler (pip install flight-profiler, into a venv under /tmp/fp-bench-seed, once per
interpreter, shared with watch_overhead.py; skipped where that fails) is measured on targets
started from that venv: one target per round (untraced block, then its trace), because its
client cannot be stopped and started again on one process (see seed_tracer).
--method alternate measures within each window instead: traced and untraced calls of one
target in turn, by blocks of 5 (the tracer filters on the call's second argument); see
bench/README.md.
Goal: the service workload's CPU-time slowdown <= 5% (the seed documents 5%-20%).
The figures need a quiet machine: other processes on the same cores move them by several %.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import types

import benchlib

GOAL = 0.05
SEED_DIR = os.environ.get("FP_BENCH_SEED_DIR", "/tmp/fp-bench-seed")
FUNCS = {"service": "serve", "dense": "handle_request"}


def collect(t, count, window, after=None):
    """(wall_us, cpu_us) of the next `count` whole windows; windows begun before `after` are
    dropped, then one more (the one in flight)."""
    out = []
    skip_until = (after or 0) + window
    skipped_one = after is None
    while len(out) < count:
        line = t.readline(timeout=window * 20 + 10)
        arrived = time.monotonic()
        if not line.startswith("window "):
            continue  # PyFlightProfiler writes into the target's stdout
        if arrived < skip_until:
            continue
        if not skipped_one:
            skipped_one = True
            continue
        fields = dict(kv.split("=") for kv in line.split()[1:])
        out.append((float(fields["med_us"]), float(fields["cpu_us"])))
    return out


class Tracer:
    """A trace client running against the target until stop(): fp's or PyFlightProfiler's."""

    def __init__(self, argv, ready_marker, stop_signal=signal.SIGINT):
        self.stop_signal = stop_signal
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        ready = threading.Event()

        def drain():
            for raw in self.proc.stdout:
                if len(self.lines) < 20:
                    self.lines.append(raw.decode(errors="replace").rstrip())
                if ready_marker in raw:
                    ready.set()
            ready.set()

        self.thread = threading.Thread(target=drain, daemon=True)
        self.thread.start()
        if not ready.wait(60) or self.proc.poll() not in (None, 0):
            self.stop()
            raise benchlib.BenchError("the tracer did not start: %s" % " | ".join(self.lines[-5:]))
        # The first event proves the probe is armed and the target is being traced.

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.thread.join(5)


def fp_tracer(fp, pid, func, options=""):
    # Ctrl-C: fp stops the trace and detaches; the function is restored.
    argv = [
        fp,
        str(pid),
        "--json",
        "--timeout",
        "86400",
        "--cmd",
        "trace traced_bench %s -n 1000000 %s" % (func, options),
    ]
    return Tracer(argv, b'"trace/event"' if "-et" not in options else b'"result"')


def seed_tracer(seed_bin, pid, func):
    # Its --cmd client ignores Ctrl-C; killed, it leaves its wrapper in place, and attaching
    # again then hung the target here: one trace per target process (see one_run).
    argv = [seed_bin, str(pid), "--no-color", "--cmd", "trace traced_bench %s -n 1000000" % func]
    return Tracer(argv, b"cost=", signal.SIGKILL)


def _pair(base, traced):
    bw, bc = benchlib.median([w for w, _ in base]), benchlib.median([c for _, c in base])
    tw, tc = benchlib.median([w for w, _ in traced]), benchlib.median([c for _, c in traced])
    return tc / bc, tw / bw, bc / 1000.0


def one_run(py, workload, rounds, windows, window, start_tracer, fresh_target):
    """Per round: (cpu ratio, wall ratio, untraced cpu ms). Rounds alternate untraced and
    traced blocks in one target, or with fresh_target each round has a target of its own."""
    func = FUNCS[workload]
    out = []
    for _ in range(1 if not fresh_target else rounds):
        with benchlib.Target(py, "traced_bench", window, 0, workload) as t:
            collect(t, 2, window)  # warm-up
            since = None
            for _ in range(rounds if not fresh_target else 1):
                base = collect(t, windows, window, after=since)
                tracer = start_tracer(t.pid, func)
                try:
                    traced = collect(t, windows, window, after=time.monotonic())
                finally:
                    tracer.stop()
                since = time.monotonic()
                out.append(_pair(base, traced))
    return out


def collect_alternating(t, count, window):
    """on/off CPU ratios of the next `count` windows (the one in flight dropped)."""
    out, skipped = [], False
    while len(out) < count:
        line = t.readline(timeout=window * 20 + 10)
        if not line.startswith("window "):
            continue
        if not skipped:
            skipped = True
            continue
        fields = dict(kv.split("=") for kv in line.split()[1:])
        if "on_cpu_us" in fields:
            out.append(float(fields["on_cpu_us"]) / float(fields["off_cpu_us"]))
    return out


def one_run_alternating(py, workload, windows, window, start_tracer):
    """In one target, calls alternate by blocks of 5 between a second argument True and False;
    the tracer traces only the True ones (-f "args[1]"). Per window: median CPU of the traced
    calls / median CPU of the others, so slow drift of the machine is on both sides. Returns
    (ratios without a tracer: the method's own spread, ratios with it)."""
    func = FUNCS[workload]
    with benchlib.Target(py, "traced_bench", window, 0, workload, "alternate") as t:
        collect(t, 2, window)  # warm-up
        null = collect_alternating(t, windows, window)
        tracer = start_tracer(t.pid, func)
        try:
            traced = collect_alternating(t, windows, window)
        finally:
            tracer.stop()
    return null, traced


def call_density(py, workload):
    """Calls (Python and C) per microsecond of the workload, counted by cProfile's twin-free
    sibling: sys.setprofile in a child process (reported for context only)."""
    code = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import traced_bench as t
if sys.argv[2] == "service":
    t.setup_db(60000); arg = [0, 1]; f = t.serve
else:
    arg = t.make_records(1500); f = t.handle_request
f(arg)
n = [0]
def count(frame, event, a):
    if event in ("call", "c_call"):
        n[0] += 1
sys.setprofile(count); f(arg); sys.setprofile(None)
best = min((lambda c: (f(arg), time.thread_time() - c)[1])(time.thread_time()) for _ in range(9))
print("%.2f" % (n[0] / (best * 1e6)))
"""
    try:
        p = subprocess.run(
            [py.path, "-c", code, benchlib.TARGETS, workload],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            universal_newlines=True,
            timeout=120,
        )
        return p.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def seed_python(py):
    """A venv of this interpreter with flight-profiler installed: (python, flight_profiler) or
    None with the reason."""
    venv = os.path.join(SEED_DIR, "seed-" + py.id)  # shared with watch_overhead.py
    python = os.path.join(venv, "bin", "python")
    tool = os.path.join(venv, "bin", "flight_profiler")
    if not os.access(tool, os.X_OK):
        try:
            if not os.access(python, os.X_OK):
                subprocess.run(
                    [py.path, "-m", "venv", venv],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    timeout=300,
                )
            subprocess.run(
                [python, "-m", "pip", "install", "-q", "flight-profiler"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=600,
            )
        except subprocess.CalledProcessError as e:
            last = (e.stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            return None, "not installed (%s)" % last[0][:80]
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, "not installed (%s)" % e
    return types.SimpleNamespace(id=py.id + "-seed", path=python, version=py.version), tool


def summarize(rows, label, per_round, goal=None):
    cpu = [r[0] for r in per_round]
    wall = [r[1] for r in per_round]
    med = benchlib.median(cpu)
    rows.append(
        [
            label,
            "%.2f" % benchlib.median([r[2] for r in per_round]),
            "%+.1f%%" % ((med - 1) * 100),
            "%+.1f..%+.1f%%" % ((min(cpu) - 1) * 100, (max(cpu) - 1) * 100),
            "%+.1f%%" % ((benchlib.median(wall) - 1) * 100),
        ]
    )
    return med


def main():
    ap = benchlib.parser(__doc__, runs_default=1)
    ap.add_argument("--rounds", type=int, default=5, help="untraced/traced block pairs per run (default 5)")
    ap.add_argument("--windows", type=int, default=6, help="windows per block (default 6)")
    ap.add_argument("--window", type=float, default=0.5, help="window length in seconds (default 0.5)")
    ap.add_argument("--workloads", default="service,dense", help="service,dense (default both)")
    ap.add_argument("--no-seed", action="store_true", help="do not measure PyFlightProfiler")
    ap.add_argument(
        "--fp-options",
        default="",
        help="more trace options for fp, e.g. '-et 1000' to record every "
        "call but report none (the recording's own cost)",
    )
    ap.add_argument(
        "--method",
        choices=("blocks", "alternate"),
        default="blocks",
        help="blocks: untraced and traced blocks of windows in turn (default); alternate: "
        "traced and untraced calls in turn by blocks of 5 calls, in every window (-f on "
        "the call's second argument), steadier where the machine drifts",
    )
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    if args.method == "alternate":
        return main_alternate(args, fp, interpreters)
    workloads = [w for w in args.workloads.split(",") if w]
    for w in workloads:
        if w not in FUNCS:
            sys.exit("unknown workload %r (service, dense)" % w)
    print(
        "trace overhead: slowdown of the traced call, trace at the default -i 0.1 vs untraced, same process; "
        "%d run(s) x %d rounds x %d windows of %.1fs" % (args.runs, args.rounds, args.windows, args.window)
    )
    rows, verdicts = [], []
    for py in interpreters:
        seed = None if args.no_seed else seed_python(py)
        for workload in workloads:
            density = call_density(py, workload)
            label = "%s %s (%s calls/us)" % (py.id, workload, density)
            try:
                per_round = []
                for _ in range(args.runs):
                    per_round += one_run(
                        py,
                        workload,
                        args.rounds,
                        args.windows,
                        args.window,
                        lambda pid, func: fp_tracer(fp, pid, func, args.fp_options),
                        False,
                    )
                med = summarize(rows, label + " fp", per_round)
                if workload == "service":
                    verdicts.append(
                        "%s: fp trace slows the service call by %+.1f%% (CPU), %s the %.0f%% goal"
                        % (py.id, (med - 1) * 100, "within" if med - 1 <= GOAL else "OUTSIDE", GOAL * 100)
                    )
            except benchlib.BenchError as e:
                rows.append([label + " fp", "error: %s" % e, "", "", ""])
            if seed is None:
                continue
            seed_py, tool = seed
            if seed_py is None:
                rows.append([label + " PyFlightProfiler", tool, "", "", ""])
                continue
            try:
                per_round = []
                for _ in range(args.runs):
                    per_round += one_run(
                        seed_py,
                        workload,
                        args.rounds,
                        args.windows,
                        args.window,
                        lambda pid, func: seed_tracer(tool, pid, func),
                        True,
                    )
                summarize(rows, label + " PyFlightProfiler", per_round)
            except benchlib.BenchError as e:
                rows.append([label + " PyFlightProfiler", "error: %s" % e, "", "", ""])
    benchlib.table(["python workload tracer", "untraced CPU ms", "CPU slowdown", "pair range", "wall slowdown"], rows)
    print()
    print("slowdown = median(traced) / median(untraced) - 1 per call; CPU = the traced thread's CPU time")
    for v in verdicts:
        print(v)


def main_alternate(args, fp, interpreters):
    windows = args.windows * args.rounds
    print(
        'trace overhead, alternating calls: traced (-f "args[1]") and untraced calls of one process in '
        "turn, by blocks of 5; %d windows of %.1fs per interpreter and workload" % (windows, args.window)
    )
    rows, verdicts = [], []
    for py in interpreters:
        seed = None if args.no_seed else seed_python(py)
        for workload in [w for w in args.workloads.split(",") if w]:
            tools = [("fp", py, lambda pid, func: fp_tracer(fp, pid, func, '-f "args[1]" ' + args.fp_options))]
            if seed is not None and seed[0] is not None:
                tool = seed[1]
                tools.append(
                    (
                        "PyFlightProfiler",
                        seed[0],
                        lambda pid, func: Tracer(
                            [
                                tool,
                                str(pid),
                                "--no-color",
                                "--cmd",
                                'trace traced_bench %s -n 1000000 -f "args[1]"' % func,
                            ],
                            b"cost=",
                            signal.SIGKILL,
                        ),
                    )
                )
            for name, tpy, start_tracer in tools:
                label = "%s %s %s" % (py.id, workload, name)
                try:
                    null, traced = one_run_alternating(tpy, workload, windows, args.window, start_tracer)
                except benchlib.BenchError as e:
                    rows.append([label, "error: %s" % e, "", ""])
                    continue
                med = benchlib.median(traced)
                rows.append(
                    [
                        label,
                        "%+.1f%%" % ((med - 1) * 100),
                        "%+.1f..%+.1f%%" % ((min(traced) - 1) * 100, (max(traced) - 1) * 100),
                        "%+.1f%%" % ((benchlib.median(null) - 1) * 100),
                    ]
                )
                if name == "fp" and workload == "service":
                    verdicts.append(
                        "%s: fp trace slows the service call by %+.1f%% (CPU), %s the %.0f%% goal"
                        % (py.id, (med - 1) * 100, "within" if med - 1 <= GOAL else "OUTSIDE", GOAL * 100)
                    )
    benchlib.table(["python workload tracer", "CPU slowdown", "window range", "without tracer"], rows)
    print()
    print(
        "slowdown = median over windows of median(traced calls) / median(untraced calls) - 1, thread CPU "
        "time; 'without tracer': the same ratio before the tracer started (the method's own bias)"
    )
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    sys.exit(main())
