"""Work paced at a fixed rate, as a worker under a steady load is: every PERIOD seconds
(absolute deadlines) the main thread computes in `work` for BUSY seconds, then sleeps until the
next deadline. A sampler at exactly that rate with a fixed schedule sees `work` always or never.

Usage: paced.py READY [PERIOD_S=0.01] [BUSY_S=0.002]
Progress: "paced N late=L" once a second (L: deadlines missed, on a loaded machine).
"""
import sys
import time

import fptarget


def work(until):
    x = 1
    while time.perf_counter() < until:
        for i in range(50):
            x = (x * 31 + i) % 1000003
    return x


def main():
    period = fptarget.arg(2, 0.01)
    busy = fptarget.arg(3, 0.002)
    fptarget.announce(sys.argv[1])
    deadline = time.perf_counter()
    n = late = 0
    report = deadline + 1.0
    while True:
        work(deadline + busy)
        deadline += period
        now = time.perf_counter()
        if now < deadline:
            time.sleep(deadline - now)
        else:
            late += 1
            deadline = now  # keep the pace from here rather than run behind
        if now >= report:
            n += 1
            fptarget.report("paced %d late=%d" % (n, late))
            report += 1.0


if __name__ == "__main__":
    main()
