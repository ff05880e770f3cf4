"""A target that calls one function at a steady rate, for the streaming soak: fire() is called
RATE times a second (in bursts that keep the average exact), from a worker thread.

Usage: firehose.py READY [RATE=10000]
Progress: "second N calls=C" once a second: C calls of fire() made so far.
"""
import sys
import threading
import time

import fptarget

CALLS = [0]


def fire(i):
    return i + 1


def worker(rate):
    start = time.monotonic()
    n = 0
    while True:
        due = int((time.monotonic() - start) * rate)
        while n < due:
            fire(n)
            n += 1
        CALLS[0] = n
        time.sleep(0.001)


def main():
    rate = fptarget.arg(2, 10000.0)
    threading.Thread(target=worker, args=(rate,), name="firehose", daemon=True).start()
    fptarget.announce(sys.argv[1])
    s = 0
    while True:
        time.sleep(1)
        s += 1
        fptarget.report("second %d calls=%d" % (s, CALLS[0]))


if __name__ == "__main__":
    main()
