#!/usr/bin/env python3
"""How long `fp PID --cmd stack` takes (read from outside the process, no agent), and how long
it keeps the target's threads stopped (pause_ms from its --json model), for a target with 1
thread (tests/targets/sleeper.py) and with 51 (tests/targets/threads50.py). In the same run,
as anchors, `py-spy dump --pid` and `pystack remote`, installed with pip into a throwaway venv
under /tmp (never a dependency of fp); a tool that does not install is reported as such.

Prints medians over --runs runs (default 10) per interpreter and thread count, in ms, and the
ratios anchor / fp (above 1: fp is faster).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib

ANCHORS = {"py-spy": ["dump", "--pid"], "pystack": ["remote"]}
SCENARIOS = (("sleeper", (0.2,), 1), ("threads50", (), 51))


def install_anchors(skip):
    """{name: executable} for the anchors that installed, and the venv to remove afterwards."""
    if skip:
        print("anchors: skipped (--no-anchors)")
        return {}, None
    venv = tempfile.mkdtemp(prefix="fp-bench-anchors-", dir="/tmp")
    tools = {}
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", venv],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as e:
        print("anchors: cannot create a venv in %s (%s): no anchors" % (venv, e))
        return {}, venv
    for name in ANCHORS:
        p = subprocess.run(
            [os.path.join(venv, "bin", "pip"), "install", "-q", name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            universal_newlines=True,
            timeout=600,
        )
        exe = os.path.join(venv, "bin", name)
        if p.returncode == 0 and os.access(exe, os.X_OK):
            tools[name] = exe
        else:
            print(
                "anchors: %s did not install (pip exit %d): %s"
                % (name, p.returncode, p.stdout.strip().splitlines()[-1:])
            )
    print("anchors: %s (throwaway venv %s)" % (", ".join(sorted(tools)) or "none", venv))
    return tools, venv


def timed(argv, timeout=60):
    """(ms, stdout) of one run; raises BenchError when it fails."""
    t0 = time.perf_counter()
    p = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )
    ms = (time.perf_counter() - t0) * 1000.0
    if p.returncode != 0:
        raise benchlib.BenchError("%s failed (%d): %s" % (" ".join(argv[:3]), p.returncode, p.stderr.strip()[-300:]))
    return ms, p.stdout


def fp_stack(fp, pid, nthreads):
    ms, out = timed([fp, str(pid), "--json", "--cmd", "stack"])
    model = json.loads(out)["result"]
    if len(model["threads"]) != nthreads:
        raise benchlib.BenchError("fp read %d threads, expected %d" % (len(model["threads"]), nthreads))
    return ms, model["pause_ms"]


def measure(fp, tools, py, kind, args, nthreads, runs):
    """Medians for one interpreter and target: fp wall, fp pause, and each anchor's wall."""
    walls, pauses = [], []
    anchor_walls = dict((name, []) for name in tools)
    anchor_errors = {}
    with benchlib.Target(py, kind, *args) as t:
        fp_stack(fp, t.pid, nthreads)  # warm the page cache, as for the anchors below
        for name, exe in tools.items():
            try:
                timed([exe] + ANCHORS[name] + [str(t.pid)])
            except benchlib.BenchError as e:
                anchor_errors[name] = str(e)
        for _ in range(runs):
            ms, pause = fp_stack(fp, t.pid, nthreads)
            walls.append(ms)
            pauses.append(pause)
            for name, exe in tools.items():
                if name not in anchor_errors:
                    anchor_walls[name].append(timed([exe] + ANCHORS[name] + [str(t.pid)])[0])
    return walls, pauses, anchor_walls, anchor_errors


def main():
    ap = benchlib.parser(__doc__, runs_default=10)
    ap.add_argument("--no-anchors", action="store_true", help="do not install and run py-spy / pystack")
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    tools, venv = install_anchors(args.no_anchors)
    names = sorted(tools)
    print("stack latency: `fp PID --json --cmd stack`, %d runs per interpreter and target (ms, medians)" % args.runs)
    rows, notes = [], []
    try:
        for py in interpreters:
            for kind, targs, nthreads in SCENARIOS:
                try:
                    walls, pauses, aw, errors = measure(fp, tools, py, kind, targs, nthreads, args.runs)
                except benchlib.BenchError as e:
                    rows.append([py.id, str(nthreads), "error: %s" % e] + [""] * (3 + 2 * len(names)))
                    continue
                fp_med = benchlib.median(walls)
                row = [py.id, str(nthreads), "%.1f" % fp_med, "%.3f" % benchlib.median(pauses), "%.3f" % max(pauses)]
                for name in names:
                    if name in errors:
                        row += ["failed", "-"]
                        notes.append("%s %s on %s: %s" % (py.id, name, kind, errors[name]))
                    else:
                        med = benchlib.median(aw[name])
                        row += ["%.1f" % med, "%.1fx" % (med / fp_med)]
                rows.append(row)
    finally:
        if venv:
            shutil.rmtree(venv, ignore_errors=True)
    headers = ["python", "threads", "fp.ms", "pause.med", "pause.max"]
    for name in names:
        headers += [name + ".ms", name + "/fp"]
    benchlib.table(headers, rows)
    print()
    print("fp.ms: wall time of fp, from start to exit (reading /proc and the ELF symbols, stopping")
    print("       the threads, reading them, the model with source lines, the JSON on stdout)")
    print("pause: how long fp kept the target's threads stopped (pause_ms of the model)")
    for name in names:
        print(
            "%s.ms: wall time of `%s %s PID`; %s/fp: how many times longer than fp"
            % (name, name, " ".join(ANCHORS[name]), name)
        )
    for n in notes:
        print("note: " + n)


if __name__ == "__main__":
    sys.exit(main())
