#!/usr/bin/env python3
"""What `mem summary` costs on a big process: its time and what it adds to the target's peak RSS,
against pympler's summary (the seed's) in the same run.

For each interpreter, `--runs` times three fresh tests/targets/mem_big.py processes holding
`--objects` objects the garbage collector tracks (default 5 million); on each, after the agent and its Python
side are loaded (`fp PID --cmd "getglobal sys version"`), one of three fp runs, with the target's peak RSS reset just before
(/proc/PID/clear_refs): `mem summary` as a user runs it (its 5 s budget: the share it covered is
printed), `mem summary --budget 600` (every tracked object) and `mem summary --all --budget 600`
(the untracked objects found through them too, as pympler counts). The peak added is VmHWM
during the command minus VmRSS just before. pympler 1.1 is installed with pip into a throwaway
directory at bench time only, and `summary.summarize(muppy.get_objects())` runs inside another
fresh target (as the seed runs it), `--pympler-runs` times (default 1: about two minutes each).
Medians over the runs.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time

import benchlib


def status(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def reset_peak(pid):
    with open("/proc/%d/clear_refs" % pid, "w") as f:
        f.write("5")  # VmHWM := VmRSS


def measure_fp(fp, pid, command):
    """(wall seconds of fp, the model, peak RSS added in bytes)."""
    reset_peak(pid)
    before = status(pid)["VmRSS"]
    t0 = time.monotonic()
    p = subprocess.run(
        [fp, str(pid), "--json", "--timeout", "900", "--cmd", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=1000,
    )
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise benchlib.BenchError("fp --cmd %r failed: %s" % (command, p.stderr.strip()))
    model = json.loads(p.stdout.splitlines()[-1])["result"]
    return wall, model, status(pid)["VmHWM"] - before


def install_pympler():
    target = tempfile.mkdtemp(prefix="fp-bench-pympler-")
    p = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", target, "pympler==1.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        universal_newlines=True,
    )
    if p.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        return None, "pip install pympler failed: %s" % p.stdout.strip()[-300:]
    return target, None


def wait_for(t, prefix, timeout):
    deadline = time.monotonic() + timeout
    while True:
        line = t.readline(max(1.0, deadline - time.monotonic()))
        if line.startswith(prefix):
            return dict(kv.split("=") for kv in line.split()[1:])


MB = 1024.0 * 1024.0


def main():
    p = benchlib.parser(__doc__.split("\n")[0], runs_default=3)
    p.add_argument("--objects", type=int, default=5000000, help="tracked objects in the target (default 5000000)")
    p.add_argument("--pympler-runs", type=int, default=1, help="pympler summaries per interpreter (default 1)")
    p.add_argument("--no-pympler", action="store_true", help="leave pympler out")
    args = p.parse_args()
    fp, interpreters = benchlib.setup(args)
    pympler_dir, why = (None, "left out (--no-pympler)") if args.no_pympler else install_pympler()
    if why:
        print("pympler: %s" % why)
    rows = []
    try:
        for py in interpreters:
            fp_runs = {"budget": [], "all_tracked": [], "with_untracked": []}
            covered = []
            objects = None
            for _ in range(args.runs):
                # A fresh target for each: memory a first summary freed stays in the process (its
                # RSS), and a second one would reuse it without raising the peak.
                for key, command in (
                    ("budget", "mem summary"),
                    ("all_tracked", "mem summary --budget 600"),
                    ("with_untracked", "mem summary --all --budget 600"),
                ):
                    with benchlib.Target(py, "mem_big", args.objects) as t:
                        built = wait_for(t, "built", 300)
                        objects = int(built["objects"])
                        # The agent and its Python side loaded first: their own memory is not the summary's.
                        benchlib.run_fp(fp, t.pid, "getglobal sys version -r")
                        wall, model, peak = measure_fp(fp, t.pid, command)
                        fp_runs[key].append((wall, model["seconds"], peak))
                        if key == "budget":
                            covered.append(model["share"])
            pymp = []
            for _ in range(args.pympler_runs if pympler_dir else 0):
                with benchlib.Target(py, "mem_big", args.objects, "--pympler", pympler_dir) as t:
                    wait_for(t, "built", 300)
                    got = wait_for(t, "pympler", 3600)
                    pymp.append((float(got["seconds"]), int(got["hwm"]) - int(got["rss"])))

            def med(key, i):
                return benchlib.median([r[i] for r in fp_runs[key]])

            row = [
                py.id,
                "%.2fM" % (objects / 1e6),
                "%.2f s" % med("budget", 0),
                "%.0f%%" % (100 * benchlib.median(covered)),
                "%.0f MB" % (med("budget", 2) / MB),
                "%.2f s" % med("all_tracked", 0),
                "%.0f MB" % (med("all_tracked", 2) / MB),
                "%.2f s" % med("with_untracked", 0),
                "%.0f MB" % (med("with_untracked", 2) / MB),
            ]
            if pymp:
                pt = benchlib.median([x[0] for x in pymp])
                pm = benchlib.median([x[1] for x in pymp])
                row += [
                    "%.1f s" % pt,
                    "%.0f MB" % (pm / MB),
                    "%.0fx" % (pt / med("with_untracked", 1)),
                    "%.0fx" % (pm / max(med("with_untracked", 2), 1)),
                ]
            else:
                row += ["-", "-", "-", "-"]
            rows.append(row)
            print("  %s done" % py.id, file=sys.stderr)
    finally:
        if pympler_dir:
            shutil.rmtree(pympler_dir, ignore_errors=True)
    print(
        "mem summary on a target holding %d tracked objects (fp: median of %d runs; pympler: %d)"
        % (args.objects, args.runs, args.pympler_runs if pympler_dir else 0)
    )
    benchlib.table(
        [
            "python",
            "objects",
            "fp 5s-budget",
            "covered",
            "+peak",
            "fp all",
            "+peak",
            "fp --all",
            "+peak",
            "pympler",
            "+peak",
            "pympler/fp time",
            "pympler/fp peak",
        ],
        rows,
    )


if __name__ == "__main__":
    try:
        main()
    except benchlib.BenchError as e:
        sys.exit("mem_summary: %s" % e)
