"""One thread that holds the GIL 50 ms at a time (a C sleep called through ctypes.PyDLL, which
keeps the GIL), then releases it for 50 ms; a second thread that wants the GIL every
millisecond, so it waits about 50 ms at each of those holds.

Usage: gil_hold50.py READY
Ready facts: hog=TID (the holder, named gil-hold50), waiter=TID (named gil-waiter).
Progress: "tick N holds=H wakeups=W" twice a second: the holds done and the waiter's
wake-ups since the last tick (both must keep growing).
"""
import ctypes
import sys
import threading
import time

import fptarget

PR_SET_NAME = 15
HOLD_US = 50000


def name_thread(name):
    try:
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode(), 0, 0, 0)
    except (AttributeError, OSError):
        pass


class Counter(threading.Thread):
    def __init__(self, name, body, ready):
        threading.Thread.__init__(self, name=name, daemon=True)
        self.body = body
        self.ready = ready
        self.count = 0
        self.tid = None

    def run(self):
        name_thread(self.name)
        self.tid = threading.get_native_id()
        self.ready.release()
        while True:
            self.body()
            self.count += 1


def hold():
    # PyDLL: the call runs with the GIL held, so nobody else runs Python for 50 ms.
    ctypes.PyDLL(None).usleep(HOLD_US)
    time.sleep(0.05)


def wake():
    time.sleep(0.001)


def main():
    ready = threading.Semaphore(0)
    hog = Counter("gil-hold50", hold, ready)
    waiter = Counter("gil-waiter", wake, ready)
    for t in (hog, waiter):
        t.start()
        ready.acquire()
    fptarget.announce(sys.argv[1], hog=hog.tid, waiter=waiter.tid)
    n = 0
    last = (0, 0)
    while True:
        time.sleep(0.5)
        n += 1
        now = (hog.count, waiter.count)
        fptarget.report("tick %d holds=%d wakeups=%d" % (n, now[0] - last[0], now[1] - last[1]))
        last = now


if __name__ == "__main__":
    main()
