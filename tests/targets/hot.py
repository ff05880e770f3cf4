"""A CPU-bound target with a known profile: `hot_loop` takes about 90% of the time, `cold`
about 10%, both pure Python, in rounds timed with time.monotonic.

Usage: hot.py READY [WINDOW_S=0.5]
Progress: "round N ips=ITERATIONS_PER_SECOND cpu_ips=PER_CPU_SECOND" once per window: the
rate of the whole hot_loop + cold work per second of wall time and per second of this
process's CPU time (a benchmark reads the target's own throughput; the CPU figure is immune
to other processes taking the cores).
"""
import sys
import time

import fptarget

UNIT = 2000


def hot_loop(x):
    for i in range(9 * UNIT):
        x = (x * 31 + i) % 1000003
    return x


def cold(x):
    for i in range(UNIT):
        x = (x * 31 + i) % 1000003
    return x


def main():
    window = fptarget.arg(2, 0.5)
    fptarget.announce(sys.argv[1])
    n = 0
    x = 1
    iters = 0
    t0 = time.monotonic()
    c0 = time.process_time()
    while True:
        x = hot_loop(x)
        x = cold(x)
        iters += 10 * UNIT
        now = time.monotonic()
        if now - t0 >= window:
            n += 1
            cpu = time.process_time()
            fptarget.report("round %d ips=%.0f cpu_ips=%.0f" % (n, iters / (now - t0), iters / max(cpu - c0, 1e-6)))
            iters = 0
            t0 = now
            c0 = cpu


if __name__ == "__main__":
    main()
