#!/usr/bin/env python3
"""What `fp perf` costs a busy target, and the rate it holds: iterations/s of a CPU-bound pure-Python
target (tests/targets/hot.py, which measures its own rate per fixed window) un-profiled vs profiled
by `fp perf` at 100 Hz and 1000 Hz, and, in the same run as an anchor, by `py-spy record` at the
same rates (--nonblocking, fp's own mode: neither stops the target), when py-spy installs.

Per run: one target; blocks of windows alternate: none, fp 100, none, fp 1000, none, py-spy 100,
none, py-spy 1000, ... so slow drift of the machine falls on every side; the windows around each
profiler's start and end are dropped. Each profiled block gives a ratio = its median rate / the
median of the un-profiled block just before it. Printed per interpreter: the median ratio per
profiler and rate over all rounds and runs, and fp's achieved sampling rate (from its --json
summary: ticks per second of the run). Goals: fp at 100 Hz costs < 1%; 1000 Hz holds within 5%.

py-spy is installed with pip into a throwaway virtual environment under /tmp at bench time only
(--no-py-spy skips it); if it cannot be installed, that is printed and fp is measured alone.
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import benchlib

RATE_LINE = re.compile(r"^round \d+ ips=(\d+) cpu_ips=(\d+)$")
RATES = (100, 1000)


def collect(t, count, window):
    """(wall, cpu) rates of the next `count` whole windows, after dropping the one in flight."""
    rates = []
    skipped = False
    while len(rates) < count:
        line = t.readline(timeout=window * 10 + 5)
        m = RATE_LINE.match(line)
        if not m:
            raise benchlib.BenchError("unexpected target output: %r" % line)
        if not skipped:
            skipped = True
            continue
        rates.append((float(m.group(1)), float(m.group(2))))
    return rates


def medians(rates):
    return benchlib.median([r[0] for r in rates]), benchlib.median([r[1] for r in rates])


def drain(t, window):
    """Drops the lines already written (windows measured before now)."""
    while True:
        try:
            t.readline(timeout=0.01)
        except benchlib.BenchError:
            return


def install_py_spy():
    """Path of a py-spy binary in a throwaway venv, or (None, why)."""
    venv = tempfile.mkdtemp(prefix="fp-bench-pyspy-")
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", venv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        p = subprocess.run(
            [os.path.join(venv, "bin", "pip"), "install", "-q", "py-spy"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=300,
        )
        exe = os.path.join(venv, "bin", "py-spy")
        if p.returncode != 0 or not os.access(exe, os.X_OK):
            shutil.rmtree(venv, ignore_errors=True)
            return None, None, "pip install py-spy failed: %s" % p.stdout.strip()[-300:]
        version = subprocess.run([exe, "--version"], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        return exe, venv, version
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(venv, ignore_errors=True)
        return None, None, "cannot install py-spy: %s" % e


class Profiler:
    """One profiler run on the target, started for a bounded time and stopped with SIGINT."""

    def __init__(self, argv, outfile):
        self.outfile = outfile
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True
        )

    def stop(self):
        """Its stdout; sets self.cpu: the profiler's CPU seconds per second of its life."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        self.cpu = used / max(time.monotonic() - self.started, 1e-6)
        if self.proc.returncode != 0:
            raise benchlib.BenchError(
                "%s failed (%s): %s" % (self.proc.args[0], self.proc.returncode, err.strip()[-300:])
            )
        return out


def fp_profiler(fp, pid, rate, outdir):
    out = os.path.join(outdir, "fp-%d.svg" % rate)
    return Profiler([fp, str(pid), "--json", "--timeout", "86400", "--cmd", "perf -r %d -f %s" % (rate, out)], out)


def spy_profiler(spy, pid, rate, outdir):
    out = os.path.join(outdir, "spy-%d.svg" % rate)
    return Profiler([spy, "record", "--nonblocking", "-r", str(rate), "-p", str(pid), "-o", out], out)


def one_run(fp, spy, py, rounds, windows, window):
    """{(tool, rate): [(wall ratio, cpu ratio, profiler cpu share)]}, {rate: [fp achieved Hz]}."""
    ratios, achieved = {}, {}
    outdir = tempfile.mkdtemp(prefix="fp-bench-perf-")
    try:
        with benchlib.Target(py, "hot", window) as t:
            collect(t, 3, window)  # warm-up
            tools = [("fp", r) for r in RATES] + ([("py-spy", r) for r in RATES] if spy else [])
            for n in range(rounds):
                # Each round starts with another profiler, so none always runs first.
                for tool, rate in tools[n % len(tools) :] + tools[: n % len(tools)]:
                    drain(t, window)
                    base = medians(collect(t, windows, window))
                    prof = (
                        fp_profiler(fp, t.pid, rate, outdir) if tool == "fp" else spy_profiler(spy, t.pid, rate, outdir)
                    )
                    time.sleep(window)  # its start-up (reading the process) lands in a dropped window
                    drain(t, window)
                    busy = medians(collect(t, windows, window))
                    out = prof.stop()
                    ratios.setdefault((tool, rate), []).append((busy[0] / base[0], busy[1] / base[1], prof.cpu))
                    if tool == "fp":
                        model = json.loads(out.splitlines()[-1])["result"]
                        achieved.setdefault(rate, []).append(model["achieved_hz"])
    finally:
        shutil.rmtree(outdir, ignore_errors=True)
    return ratios, achieved


def main():
    ap = benchlib.parser(__doc__, runs_default=1)
    ap.add_argument("--rounds", type=int, default=3, help="blocks per profiler and rate per run (default 3)")
    ap.add_argument("--windows", type=int, default=6, help="windows per block (default 6)")
    ap.add_argument("--window", type=float, default=0.5, help="window length in seconds (default 0.5)")
    ap.add_argument("--no-py-spy", action="store_true", help="do not install and measure py-spy")
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    spy, venv, spy_note = (None, None, "not measured (--no-py-spy)") if args.no_py_spy else install_py_spy()
    print(
        "perf overhead: hot target iterations/s profiled / un-profiled; %d runs x %d rounds x %d windows of %.2fs"
        % (args.runs, args.rounds, args.windows, args.window)
    )
    print("py-spy: %s" % (spy_note if spy_note else "?"))
    headers = (
        ["python"]
        + ["fp %d Hz" % r for r in RATES]
        + ["py-spy %d Hz" % r for r in RATES]
        + ["fp achieved %d Hz" % r for r in RATES]
    )
    rows, cpu_rows = [], []
    try:
        for py in interpreters:
            ratios, achieved = {}, {}
            try:
                for _ in range(args.runs):
                    r, a = one_run(fp, spy, py, args.rounds, args.windows, args.window)
                    for k, v in r.items():
                        ratios.setdefault(k, []).extend(v)
                    for k, v in a.items():
                        achieved.setdefault(k, []).extend(v)
            except benchlib.BenchError as e:
                rows.append([py.id, "error: %s" % e] + [""] * (len(headers) - 2))
                continue
            row = [py.id]
            for tool in ("fp", "py-spy"):
                for rate in RATES:
                    v = ratios.get((tool, rate))
                    row.append(
                        "%.3f / %.3f" % (benchlib.median([x[0] for x in v]), benchlib.median([x[1] for x in v]))
                        if v
                        else "-"
                    )
            for rate in RATES:
                v = achieved.get(rate)
                row.append("%.1f" % benchlib.median(v) if v else "-")
            rows.append(row)
            for tool in ("fp", "py-spy"):
                for rate in RATES:
                    v = ratios.get((tool, rate))
                    if v:
                        cpu_rows.append([py.id, tool, rate, "%.1f%%" % (100 * benchlib.median([x[2] for x in v]))])
    finally:
        if venv:
            shutil.rmtree(venv, ignore_errors=True)
    benchlib.table(headers, rows)
    print()
    benchlib.table(["python", "profiler", "Hz", "its own CPU (of one core)"], cpu_rows)
    print()
    print("ratio = profiled / un-profiled iterations per second, median over blocks: wall / cpu. 1.0: no cost.")
    print("wall: per second of elapsed time (on a 2-core machine the profiler competes with the target for")
    print("the cores); cpu: per second of the target's own CPU time (what reading it costs the target itself,")
    print("immune to other processes). Trust the medians; rerun on a quiet machine before reading <2% gaps.")


if __name__ == "__main__":
    sys.exit(main())
