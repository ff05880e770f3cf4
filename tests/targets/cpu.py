"""A CPU-bound pure-Python loop that reports its own speed.

Usage: cpu.py READY [WINDOW_S=0.5]
Progress: "rate N ips=I cpu_ips=C" once per window: I iterations per second of wall time
(time.monotonic), C per second of the process's CPU time (time.process_time, every thread of
the process counted, so time other processes take from it does not count, time the agent's
threads use does).
"""
import sys
import time

import fptarget

CHUNK = 20000


def work(x):
    for i in range(CHUNK):
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
        x = work(x)
        iters += CHUNK
        now = time.monotonic()
        if now - t0 >= window:
            cpu = time.process_time()
            n += 1
            fptarget.report("rate %d ips=%.0f cpu_ips=%.0f" % (n, iters / (now - t0), iters / max(cpu - c0, 1e-9)))
            iters = 0
            t0 = now
            c0 = cpu


if __name__ == "__main__":
    main()
