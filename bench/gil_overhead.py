#!/usr/bin/env python3
"""What `gilstat on` costs the target: throughput of a GIL-switch-heavy target (4 threads that
release and take the GIL between small pieces of Python work, tests/targets/gil_switch.py) and
of a CPU-bound one (tests/targets/gil_cpu4.py: 4 threads, the interpreter's own 5 ms switches),
with gilstat off vs on, in the same process.

Per run and workload: one target; blocks of windows alternate between off and on (`fp PID
--cmd 'gilstat on -i 3600'` running, stopped with SIGINT, which is Ctrl-C), so slow drift of
the machine falls on both sides; the window in flight at each switch is dropped. Each on-block
gives two ratios = its median throughput / the median of the off-block just before: per second
of wall time (what the program feels, but disturbed by whatever else runs on the machine) and
per second of the target's CPU time (the probes cost CPU time in the target's own threads;
other processes do not disturb this one). Printed per interpreter and workload: the median of
each ratio over all blocks of all runs, the CPU ratio's range, the probe events per second
gilstat counted, and the cost per event that the CPU ratio implies (when every block shows a
cost; otherwise it is within the noise and shown as -). Interpreters where gilstat
refuses (a stripped static build) are listed with the reason.
"""

import json
import re
import signal
import subprocess

import benchlib

WORKLOADS = (
    # (name, target, args, progress line with the two rates, window seconds)
    ("switch-heavy", "gil_switch", (0.25, 4), re.compile(r"^round \d+ ops=(\d+) cpu_ops=(\d+)$"), 0.25),
    ("cpu-bound", "gil_cpu4", (4,), re.compile(r"^tick \d+ ops=(\d+) cpu_ops=(\d+)$"), 0.5),
)


def collect(t, rate_re, count, window):
    """(wall, cpu) rates of the next `count` windows after dropping the one in flight."""
    rates = []
    skipped = False
    while len(rates) < count:
        m = rate_re.match(t.readline(timeout=window * 10 + 5))
        if not m:
            continue
        if not skipped:
            skipped = True
            continue
        rates.append((float(m.group(1)), float(m.group(2))))
    return rates


def medians(rates):
    return benchlib.median([r[0] for r in rates]), benchlib.median([r[1] for r in rates])


def drain(t):
    while True:
        try:
            t.readline(timeout=0.01)
        except benchlib.BenchError:
            return


def gilstat_start(fp, pid):
    p = subprocess.Popen(
        [fp, str(pid), "--json", "--timeout", "86400", "--cmd", "gilstat on -i 3600"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    first = p.stdout.readline()
    rec = json.loads(first) if first.strip() else {}
    if rec.get("notification", {}).get("method") != "gilstat/started":
        p.kill()
        p.wait()
        raise benchlib.BenchError("gilstat did not start: %s %s" % (first.strip(), p.stderr.read().strip()))
    return p


def gilstat_stop(p):
    """Ctrl-C; returns (events, seconds) from the stopped record."""
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    for line in out.splitlines():
        n = json.loads(line).get("notification", {})
        if n.get("method") == "gilstat/stopped":
            return n["params"]["events"], n["params"]["duration_s"]
    raise benchlib.BenchError("gilstat stopped without its record")


def refused(fp, py):
    """The first line of gilstat's refusal for this interpreter, or None."""
    with benchlib.Target(py, "gil_switch", 0.25, 1) as t:
        p = subprocess.run(
            [fp, str(t.pid), "--cmd", "gilstat on", "--timeout", "1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=60,
        )
        return p.stderr.strip().splitlines()[0] if p.returncode != 0 else None


def one_run(fp, py, workload, rounds, windows):
    name, target, args, rate_re, window = workload
    wall, cpu, events, busy = [], [], [], []
    with benchlib.Target(py, target, *args) as t:
        base = medians(collect(t, rate_re, windows, window))
        for _ in range(rounds):
            g = gilstat_start(fp, t.pid)
            drain(t)
            on = medians(collect(t, rate_re, windows, window))
            n, secs = gilstat_stop(g)
            drain(t)
            off = medians(collect(t, rate_re, windows, window))
            wall.append(on[0] / base[0])
            cpu.append(on[1] / base[1])
            events.append(n / secs)
            busy.append(on[0] / on[1])  # CPU seconds the target used per wall second
            base = off
    return wall, cpu, events, busy


def main():
    p = benchlib.parser(__doc__.splitlines()[0], runs_default=2)
    p.add_argument("--rounds", type=int, default=4, help="on/off blocks per run (default 4)")
    p.add_argument("--windows", type=int, default=6, help="windows per block (default 6)")
    p.add_argument("--workloads", default="switch-heavy,cpu-bound", help="which workloads (default both)")
    args = p.parse_args()
    fp, interpreters = benchlib.setup(args)
    chosen = [w for w in WORKLOADS if w[0] in args.workloads.split(",")]
    print(
        "gilstat's cost: target throughput with gilstat on / off (1.000 = no cost); %d run(s) x %d "
        "rounds x %d windows" % (args.runs, args.rounds, args.windows)
    )
    rows = []
    for py in interpreters:
        why = refused(fp, py)
        if why:
            rows.append([py.id, "-", "-", "refused", "-", "-", "-"])
            print("%s: %s" % (py.id, why))
            continue
        for workload in chosen:
            wall, cpu, events, busy = [], [], [], []
            for _ in range(args.runs):
                w, c, e, b = one_run(fp, py, workload, args.rounds, args.windows)
                wall += w
                cpu += c
                events += e
                busy += b
            ratio, rate = benchlib.median(cpu), benchlib.median(events)
            # Of each CPU second the target used with gilstat on, 1 - ratio went to the probes;
            # it used `busy` CPU seconds per wall second, in which `rate` events fired.
            per_event_us = (1 - ratio) * benchlib.median(busy) / rate * 1e6 if rate > 0 else 0
            # Only when every block agrees there is a cost: else it is noise divided by a rate.
            shown = "%.2f" % per_event_us if max(cpu) < 1 else "-"
            rows.append(
                [
                    py.id,
                    workload[0],
                    "%.3f" % benchlib.median(wall),
                    "%.3f" % ratio,
                    "%.3f-%.3f" % (min(cpu), max(cpu)),
                    "%.0f" % rate,
                    shown,
                ]
            )
    benchlib.table(["python", "workload", "wall on/off", "cpu on/off", "cpu range", "events/s", "us/event"], rows)


if __name__ == "__main__":
    main()
