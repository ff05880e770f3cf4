"""50 named threads doing small sleeps and small bits of work; the main thread reports.

Usage: threads50.py READY
Progress: "tick N alive=A stalled=S ops=O" every 0.5 s: A threads alive, S threads that made
no progress since the previous tick, O operations in total.
"""
import sys
import threading
import time

import fptarget

COUNT = 50
counts = [0] * COUNT


def worker(i):
    while True:
        time.sleep(0.05)
        sum(range(200))
        counts[i] += 1


def main():
    threads = [
        threading.Thread(target=worker, args=(i,), name="worker-%02d" % i, daemon=True)
        for i in range(COUNT)
    ]
    for t in threads:
        t.start()
    fptarget.announce(sys.argv[1], threads=COUNT)
    n = 0
    prev = list(counts)
    while True:
        time.sleep(0.5)
        n += 1
        cur = list(counts)
        stalled = sum(1 for a, b in zip(prev, cur) if a == b)
        alive = sum(1 for t in threads if t.is_alive())
        fptarget.report("tick %d alive=%d stalled=%d ops=%d" % (n, alive, stalled, sum(cur)))
        prev = cur


if __name__ == "__main__":
    main()
