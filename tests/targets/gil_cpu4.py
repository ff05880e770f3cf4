"""Four CPU-bound threads sharing the GIL: under the default switch interval each holds it
about a quarter of the time. Used by gilstat's tests and benchmark.

Usage: gil_cpu4.py READY [THREADS=4]
Ready facts: tids=T1,T2,... (the workers' native ids; each names itself gil-cpu-N with
prctl, so the kernel's comm shows it). Progress: "tick N ops=K cpu_ops=C" about twice a
second from the main thread: iterations of all workers together since the last tick, K per
second of wall time, C per second of the process's CPU time (time.process_time).
"""
import ctypes
import sys
import threading
import time

import fptarget

PR_SET_NAME = 15


def name_thread(name):
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
    except (AttributeError, OSError):
        pass


class Worker(threading.Thread):
    def __init__(self, index, ready):
        threading.Thread.__init__(self, name="gil-cpu-%d" % index, daemon=True)
        self.index = index
        self.ready = ready
        self.ops = 0
        self.tid = None

    def run(self):
        name_thread(self.name)
        self.tid = threading.get_native_id()
        self.ready.release()
        x = 1
        while True:
            for i in range(1000):
                x = (x * 31 + i) % 1000003
            self.ops += 1000


def main():
    count = int(fptarget.arg(2, 4))
    ready = threading.Semaphore(0)
    workers = [Worker(i, ready) for i in range(count)]
    for w in workers:
        w.start()
    for _ in workers:
        ready.acquire()
    fptarget.announce(sys.argv[1], tids=",".join(str(w.tid) for w in workers))
    n = 0
    last = 0
    t0, c0 = time.monotonic(), time.process_time()
    while True:
        time.sleep(0.5)
        now, cpu = time.monotonic(), time.process_time()
        total = sum(w.ops for w in workers)
        n += 1
        fptarget.report("tick %d ops=%.0f cpu_ops=%.0f"
                        % (n, (total - last) / (now - t0), (total - last) / max(cpu - c0, 1e-9)))
        last = total
        t0, c0 = now, cpu


if __name__ == "__main__":
    main()
