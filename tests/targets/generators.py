"""Generators resumed and suspended all the time, in a thread of threading and in the main
thread: a stack read while it changes (sampling) often finds a generator's frame just
suspended, with no caller; such a read is torn and must never be shown as a stack.

Usage: generators.py READY
Progress: "rounds N" once a second. Errors: "ERROR ..." when a sum is wrong.
"""
import sys
import threading
import time

import fptarget

N = 200


def produce(n):
    for i in range(n):
        yield i


def consume():
    total = 0
    for x in produce(N):
        total += x
    return total


def loop(report):
    rounds = 0
    next_report = time.monotonic() + 1.0
    while True:
        if consume() != N * (N - 1) // 2:
            fptarget.error("wrong sum")
        rounds += 1
        if report and time.monotonic() >= next_report:
            fptarget.report("rounds %d" % rounds)
            next_report += 1.0


def main():
    threading.Thread(target=loop, args=(False,), name="consumer", daemon=True).start()
    fptarget.announce(sys.argv[1])
    loop(True)


if __name__ == "__main__":
    main()
