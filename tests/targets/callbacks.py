"""Python called from C all the time (map, sorted's key, a class's __init__, in three threads):
on 3.12+ each such call enters a new eval loop, which pushes a shim frame (the interpreter
trampoline) on the C stack. Sampling must never show one.

Usage: callbacks.py READY
Progress: "rounds N" once a second. Errors: "ERROR ..." when a result is wrong.
"""
import sys
import threading
import time

import fptarget


def double(x):
    return twice(x) + 1


def twice(x):
    return x * 2


class Item(object):
    def __init__(self, x):
        self.x = x


def work(report):
    rounds = 0
    next_report = time.monotonic() + 1.0
    while True:
        if sum(map(double, range(50))) != 50 * 49 + 50:
            fptarget.error("map gave a wrong sum")
        if sorted(range(50), key=lambda v: -v)[0] != 49:
            fptarget.error("sorted gave a wrong order")
        if [Item(i) for i in range(20)][-1].x != 19:
            fptarget.error("wrong item")
        rounds += 1
        if report and time.monotonic() >= next_report:
            fptarget.report("rounds %d" % rounds)
            next_report += 1.0


def main():
    for n in range(2):
        threading.Thread(target=work, args=(False,), name="worker-%d" % n, daemon=True).start()
    fptarget.announce(sys.argv[1])
    work(True)


if __name__ == "__main__":
    main()
