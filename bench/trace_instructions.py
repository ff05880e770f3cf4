#!/usr/bin/env python3
"""What recording an invocation costs, in instructions: a figure that does not move with the
machine's load, to tell fp's own share from CPython's hook machinery.

tests/targets/trace_inprocess.py runs traced_bench's service call (sqlite3 + Python + json and
hashlib, ~15000 calls and returns) under valgrind's callgrind, plain ("base") or recorded by the
agent library's recorder ("rec": start, the call, stop, tree, as a trace does, without its
probe and its report). Each mode runs twice, with --calls and with --calls + 4 calls: the
difference over 4 is the instructions of one call, whatever the start-up costs. A third rec run
with callgrind's output keeps the instructions spent in libfpagent.so itself (the recorder and
its callbacks), per recorded call. Printed per interpreter: instructions per call plain and
recorded, the extra in %, and how much of the extra is fp's own code. The rest is CPython's:
the profile function's dispatch (3.8-3.11) or sys.monitoring's (3.12+).

Needs valgrind (callgrind and callgrind_annotate); slow (about two minutes per interpreter).
"""

import os
import re
import subprocess

import benchlib

COLLECTED = re.compile(r"Collected : (\d+)")
EXTRA_CALLS = 4


def run(py, library, mode, calls, out_file="/dev/null"):
    """Instructions of one run (all threads)."""
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=%s" % out_file,
        py.path,
        os.path.join(benchlib.TARGETS, "trace_inprocess.py"),
        library,
        mode,
        str(calls),
    ]
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=1800)
    found = COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or not found:
        raise benchlib.BenchError("%s %s failed: %s%s" % (py.id, mode, proc.stdout[-300:], proc.stderr[-600:]))
    return int(found.group(1))


def fp_share(out_file, library):
    """Instructions spent in the library's own functions (self cost), from callgrind_annotate."""
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", out_file], stdout=subprocess.PIPE, universal_newlines=True, check=True
    ).stdout
    total = 0
    for line in text.splitlines():
        if line.rstrip().endswith("[%s]" % library):
            total += int(line.split()[0].replace(",", ""))
    return total


def main():
    ap = benchlib.parser(__doc__, runs_default=1)
    ap.add_argument("--calls", type=int, default=4, help="recorded calls in the shorter run (default 4)")
    args = ap.parse_args()
    _fp, interpreters = benchlib.setup(args)
    library = os.path.realpath(os.path.join(args.build, "lib", "fp", "libfpagent.so"))
    for tool in ("valgrind", "callgrind_annotate"):
        if subprocess.run(["sh", "-c", "command -v %s" % tool], stdout=subprocess.DEVNULL).returncode != 0:
            print("trace instructions: skipped, %s is missing (apt-get install valgrind)" % tool)
            return
    print(
        "trace instructions: traced_bench.serve under callgrind, plain and recorded; per call, "
        "from runs of %d and %d calls" % (args.calls, args.calls + EXTRA_CALLS)
    )
    rows = []
    out_file = "/tmp/fp-bench-callgrind.%d" % os.getpid()
    for py in interpreters:
        try:
            per_call = {}
            for mode in ("base", "rec"):
                short = run(py, library, mode, args.calls)
                long_ = run(py, library, mode, args.calls + EXTRA_CALLS)
                per_call[mode] = (long_ - short) / float(EXTRA_CALLS)
            run(py, library, "rec", args.calls, out_file)
            own = fp_share(out_file, library) / float(args.calls)
            extra = per_call["rec"] - per_call["base"]
            rows.append(
                [
                    py.id,
                    "%.1fM" % (per_call["base"] / 1e6),
                    "%.1fM" % (per_call["rec"] / 1e6),
                    "+%.2f%%" % (100.0 * extra / per_call["base"]),
                    "%.2fM" % (own / 1e6),
                    "%.0f%%" % (100.0 * own / extra if extra > 0 else 0),
                ]
            )
        except (benchlib.BenchError, subprocess.SubprocessError, OSError) as e:
            rows.append([py.id, "error: %s" % e, "", "", "", ""])
        finally:
            if os.path.exists(out_file):
                os.unlink(out_file)
    benchlib.table(["python", "plain", "recorded", "extra", "in fp's code", "fp's share of the extra"], rows)


if __name__ == "__main__":
    main()
