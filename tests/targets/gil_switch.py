"""Threads that release and take the GIL thousands of times a second (time.sleep(0) between
small pieces of Python work): the worst case for gilstat's probes, which fire on every switch.

Usage: gil_switch.py READY [WINDOW_S=0.25] [THREADS=4]
Progress: "round N ops=K cpu_ops=C" once per window: K pieces of work per second of wall time
(time.monotonic), C per second of the process's CPU time (time.process_time: every thread,
so time other processes take from the machine does not count), all threads together.
"""
import sys
import threading
import time

import fptarget


class Worker(threading.Thread):
    def __init__(self):
        threading.Thread.__init__(self, daemon=True)
        self.ops = 0

    def run(self):
        x = 1
        while True:
            for i in range(50):
                x = (x * 31 + i) % 1000003
            time.sleep(0)  # releases the GIL and takes it back: a switch point
            self.ops += 1


def main():
    window = fptarget.arg(2, 0.25)
    workers = [Worker() for _ in range(int(fptarget.arg(3, 4)))]
    for w in workers:
        w.start()
    fptarget.announce(sys.argv[1])
    n = 0
    last = 0
    t0, c0 = time.monotonic(), time.process_time()
    while True:
        time.sleep(window)
        now, cpu = time.monotonic(), time.process_time()
        total = sum(w.ops for w in workers)
        n += 1
        fptarget.report("round %d ops=%.0f cpu_ops=%.0f"
                        % (n, (total - last) / (now - t0), (total - last) / max(cpu - c0, 1e-9)))
        last = total
        t0, c0 = now, cpu


if __name__ == "__main__":
    main()
