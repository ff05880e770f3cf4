#!/usr/bin/env python3
"""How long `fp PID --cmd status` takes on a fresh target (the agent injected), and again on
the same target (the agent reused): from starting fp to its answer on stdout, and to its exit.
Then the first answer of the agent's Python side on a fresh target: `fp PID --cmd status --cmd
CMD` for a getglobal and for a watch, from status's answer to CMD's (the package and the
command's family imported inside the target, then the round trip). The first fresh target of
each interpreter starts with fp's bytecode cache of the agent emptied ("cold": the sources are
compiled, as the first attach ever on a machine does); the others find it filled.

Prints median / p90 / min in ms per interpreter. Goals: first-attach median <= 150 ms; first
Python answer (getglobal, watch) median <= 20 ms.
"""

import glob
import os
import select
import shutil
import subprocess
import sys
import time

import benchlib

GOAL_MS = 150.0
PYTHON_GOAL_MS = 20.0
# The sleeper calls fptarget.report every 0.2 s: the watch ends at its first call.
PYTHON_COMMANDS = (("getglobal", "getglobal fptarget EARLY_TOLERANCE_S"), ("watch", "watch fptarget report -n 1"))


def timed_status(fp, pid):
    """(ms to the first line of output, ms to exit) of one `fp PID --json --cmd status`."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [fp, str(pid), "--json", "--cmd", "status"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
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


def timed_lines(fp, pid, commands):
    """ms from starting `fp PID --json --cmd C1 --cmd C2 ...` to each line of its output (one
    JSON line per result or notification)."""
    argv = [fp, str(pid), "--json", "--timeout", "10"]
    for c in commands:
        argv += ["--cmd", c]
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    times, out = [], b""
    fd = p.stdout.fileno()
    while True:
        if not select.select([fd], [], [], 30)[0]:
            p.kill()
            p.wait()
            raise benchlib.BenchError("fp %s did not answer within 30 s" % " ".join(commands))
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
        now = time.perf_counter()
        times += [(now - t0) * 1000.0] * (out.count(b"\n") - len(times))
    err = p.communicate(timeout=30)[1]
    if p.returncode != 0:
        raise benchlib.BenchError("fp %s failed (%s): %s" % (" ".join(commands), p.returncode, err.decode().strip()))
    return times


def first_python_answer(fp, pid, command):
    """ms from the answer of status (agent up, nothing of its Python side loaded) to the answer
    of command (a result line: the first line after status's)."""
    times = timed_lines(fp, pid, ["status", command])
    if len(times) < 2:
        raise benchlib.BenchError("fp status + %s printed %d lines" % (command, len(times)))
    return times[1] - times[0]


def empty_bytecode_cache(python):
    """Remove fp's bytecode cache of the agent for this interpreter (agent/fp_agent/pycache.py)."""
    tag = subprocess.run(
        [python.path, "-c", "import sys; print(sys.implementation.cache_tag)"],
        stdout=subprocess.PIPE,
        universal_newlines=True,
    ).stdout.strip()
    for path in glob.glob("/tmp/fp-%d/pycache/%s" % (os.geteuid(), tag)):
        shutil.rmtree(path, ignore_errors=True)


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
    python_rows = []
    for py in interpreters:
        first_answer, first_exit, again_exit = [], [], []
        python_answer = dict((name, []) for name, _ in PYTHON_COMMANDS)
        cold = {}
        try:
            for _ in range(args.runs):
                with benchlib.Target(py, "sleeper", 0.2) as t:
                    a, e = timed_status(fp, t.pid)
                    first_answer.append(a)
                    first_exit.append(e)
                    again_exit.append(timed_status(fp, t.pid)[1])
            for name, command in PYTHON_COMMANDS:
                empty_bytecode_cache(py)
                for i in range(args.runs + 1):
                    with benchlib.Target(py, "sleeper", 0.2) as t:
                        ms = first_python_answer(fp, t.pid, command)
                    if i == 0:
                        cold[name] = ms
                    else:
                        python_answer[name].append(ms)
        except benchlib.BenchError as e:
            rows.append([py.id, "error (below)"] + [""] * 9)
            errors.append("%s: %s" % (py.id, e))
            continue
        rows.append([py.id, str(args.runs)] + stats(first_answer) + stats(first_exit) + stats(again_exit))
        med = benchlib.median(first_exit)
        verdicts.append(
            "%s: first-attach median %.1f ms %s the %.0f ms goal"
            % (py.id, med, "within" if med <= GOAL_MS else "ABOVE", GOAL_MS)
        )
        row = [py.id]
        for name, _ in PYTHON_COMMANDS:
            row += ["%.1f" % cold[name]] + stats(python_answer[name])
            med = benchlib.median(python_answer[name])
            verdicts.append(
                "%s: first %s answer median %.1f ms %s the %.0f ms goal"
                % (py.id, name, med, "within" if med <= PYTHON_GOAL_MS else "ABOVE", PYTHON_GOAL_MS)
            )
        python_rows.append(row)
    benchlib.table(
        [
            "python",
            "n",
            "answer.med",
            "answer.p90",
            "answer.min",
            "exit.med",
            "exit.p90",
            "exit.min",
            "reuse.med",
            "reuse.p90",
            "reuse.min",
        ],
        rows,
    )
    print()
    print("answer: fp started -> status on stdout (injection + agent start + round trip)")
    print("exit:   fp started -> fp exited; reuse: the same, second fp on the same target")
    print()
    print("first Python answer on a fresh target (ms from status's answer to the command's)")
    headers = ["python"]
    for name, _ in PYTHON_COMMANDS:
        headers += [name + ".cold", name + ".med", name + ".p90", name + ".min"]
    benchlib.table(headers, python_rows)
    print("cold: the first target, fp's bytecode cache of the agent emptied (its sources compiled)")
    print("med/p90/min: the next %d fresh targets (the cache filled)" % args.runs)
    for v in verdicts:
        print(v)
    for e in errors:
        print("error: " + e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
