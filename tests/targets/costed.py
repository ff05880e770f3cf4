"""A target that measures what its own calls cost and whether anything is installed in their way,
for the fault tests: a worker thread calls work() in batches and reports, per window, the thread
CPU time one call took (median over the window's batches) and whether a hook of any kind sits
where work's callers meet it.

Usage: costed.py READY
Progress: "window N t=MONOTONIC work=NS ref=NS calc=NS hooked=H" about ten times a second: t when
the window ended (time.monotonic(), the machine's clock); thread CPU nanoseconds per call (the
least of the window's batches: other work on the machine only ever adds to it) of work(), of
ref() (the same code in another function, which nothing hooks) and of calc() (Python only, the
GIL kept), measured in turn so that a machine that slows down slows all three: work/ref is what
a hook on work costs, work/calc what probes on the GIL cost; H 1 when
work's code object is not its own, this thread has a profile or trace function, or (3.12+) a
sys.monitoring tool has events on work's code or global events; else 0.
work() releases and takes the GIL once per call (a write to /dev/null), so probes on the GIL count
too.
"""
import os
import sys
import threading
import time

import fptarget

BATCH = 500
BATCHES = 5


NULL = os.open(os.devnull, os.O_WRONLY)


def work(x):
    os.write(NULL, b"")  # a system call with the GIL released: drop_gil, take_gil
    return x * 2 + 1


def ref(x):
    os.write(NULL, b"")
    return x * 2 + 1


def calc(x):
    return sum((x, 1, 2, 3)) * 2 + 1


ORIGINAL = work.__code__


def hooked():
    if work.__code__ is not ORIGINAL or sys.getprofile() is not None or sys.gettrace() is not None:
        return 1
    mon = getattr(sys, "monitoring", None)
    if mon is not None:
        for tool in range(6):
            if mon.get_tool(tool) is not None and (mon.get_local_events(tool, ORIGINAL) or mon.get_events(tool)):
                return 1
    return 0


def batch(fn):
    t0 = time.thread_time_ns()
    for i in range(BATCH):
        fn(i)
    return (time.thread_time_ns() - t0) // BATCH


def measure():
    costs = {work: [], ref: [], calc: []}
    for _ in range(BATCHES):
        for fn in costs:
            costs[fn].append(batch(fn))
    return [min(costs[fn]) for fn in (work, ref, calc)]


def worker():
    n = 0
    while True:
        n += 1
        w, r, c = measure()
        fptarget.report("window %d t=%.3f work=%d ref=%d calc=%d hooked=%d" % (n, time.monotonic(), w, r, c, hooked()))
        time.sleep(0.05)


def main():
    t = threading.Thread(target=worker, name="costed", daemon=True)
    t.start()
    fptarget.announce(sys.argv[1])
    t.join()


if __name__ == "__main__":
    main()
