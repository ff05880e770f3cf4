#!/usr/bin/env python3
"""How long `fp PID --cmd status` takes on a fresh target (the agent injected), and again on
the same target (the agent reused): from starting fp to its answer on stdout, and to its exit.

Prints median / p90 / min in ms per interpreter. Goal: first-attach median <= 150 ms.
"""
import os
import select
import subprocess
import sys
import time

import benchlib

GOAL_MS = 150.0


def timed_status(fp, pid):
    """(ms to the first line of output, ms to exit) of one `fp PID --json --cmd status`."""
    t0 = time.perf_counter()
    p = subprocess.Popen([fp, str(pid), "--json", "--cmd", "status"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    answered = None
    out = b""
    fd = p.stdout.fileno()
    deadline = t0 + 30
    while answered is None:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            p.kill()
            p.wait()
            raise benchlib.BenchError("fp status did not answer within 30 s")
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
        if b"\n" in out:
            answered = time.perf_counter()
    rest, err = p.communicate(timeout=30)
    exited = time.perf_counter()
    if p.returncode != 0 or answered is None:
        raise benchlib.BenchError("fp status failed (%s): %s" % (p.returncode, err.decode().strip()))
    return (answered - t0) * 1000.0, (exited - t0) * 1000.0


def stats(values):
    return ["%.1f" % benchlib.median(values), "%.1f" % benchlib.percentile(values, 90), "%.1f" % min(values)]


def main():
    ap = benchlib.parser(__doc__, runs_default=10)
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    print("attach latency: `fp PID --cmd status`, %d fresh sleeper targets per interpreter (ms)" % args.runs)
    rows = []
    verdicts = []
    errors = []
    for py in interpreters:
        first_answer, first_exit, again_exit = [], [], []
        try:
            for _ in range(args.runs):
                with benchlib.Target(py, "sleeper", 0.2) as t:
                    a, e = timed_status(fp, t.pid)
                    first_answer.append(a)
                    first_exit.append(e)
                    again_exit.append(timed_status(fp, t.pid)[1])
        except benchlib.BenchError as e:
            rows.append([py.id, "error (below)"] + [""] * 9)
            errors.append("%s: %s" % (py.id, e))
            continue
        rows.append([py.id, str(args.runs)] + stats(first_answer) + stats(first_exit) + stats(again_exit))
        med = benchlib.median(first_exit)
        verdicts.append("%s: first-attach median %.1f ms %s the %.0f ms goal"
                        % (py.id, med, "within" if med <= GOAL_MS else "ABOVE", GOAL_MS))
    benchlib.table(["python", "n",
                    "answer.med", "answer.p90", "answer.min",
                    "exit.med", "exit.p90", "exit.min",
                    "reuse.med", "reuse.p90", "reuse.min"], rows)
    print()
    print("answer: fp started -> status on stdout (injection + agent start + round trip)")
    print("exit:   fp started -> fp exited; reuse: the same, second fp on the same target")
    for v in verdicts:
        print(v)
    for e in errors:
        print("error: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
