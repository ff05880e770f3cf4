"""A loop that calls one small function as fast as it can and reports what a call costs, for
bench/watch_overhead.py: the added time per call when the function is watched.

Usage: observed_loop.py READY [WINDOW_S=0.25]
Progress: "rate N ns=W cpu_ns=C" once per window: W wall nanoseconds (time.perf_counter) per
iteration of the loop, C nanoseconds of the process's CPU time (every thread) per iteration.
An iteration is one call of handle() plus the loop around it.
"""
import sys
import time

import fptarget

PRICES = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17}
CHUNK = 2000


def handle(order_id, amount, currency="EUR"):
    """The observed function: small, as a request handler's helper is."""
    return {"id": order_id, "total": amount * PRICES[currency]}


def main():
    window = fptarget.arg(2, 0.25)
    fptarget.announce(sys.argv[1])
    n = 0
    i = 0
    calls = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while True:
        for _ in range(CHUNK):
            i += 1
            handle(i, 10.0, "USD")
        calls += CHUNK
        now = time.perf_counter()
        if now - t0 >= window:
            cpu = time.process_time()
            n += 1
            fptarget.report("rate %d ns=%.1f cpu_ns=%.1f" % (n, (now - t0) * 1e9 / calls, (cpu - c0) * 1e9 / calls))
            calls = 0
            t0 = now
            c0 = cpu


if __name__ == "__main__":
    main()
