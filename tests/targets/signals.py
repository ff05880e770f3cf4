"""Main thread sleeping while SIGUSR1 arrives from outside; a Python handler counts each one.

Usage: signals.py READY
Progress: "signal N" for each SIGUSR1 handled, "tick N" every 0.2 s of sleep (checked for short
sleeps as in sleeper.py). A test sends one signal at a time and waits for its line, so a signal
swallowed while fp has the process stopped shows up as a missing line.
"""
import signal
import sys
import time

import fptarget

received = 0


def on_usr1(signum, frame):
    global received
    received += 1
    fptarget.report("signal %d" % received)


def main():
    signal.signal(signal.SIGUSR1, on_usr1)
    interval = 0.2
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        t0 = time.monotonic()
        try:
            time.sleep(interval)
        except BaseException as e:  # noqa: B902
            fptarget.error("exception in sleep: %r" % (e,))
            continue
        slept = time.monotonic() - t0
        if slept < interval - fptarget.EARLY_TOLERANCE_S:
            fptarget.error("short sleep: requested %.6f slept %.6f" % (interval, slept))
        n += 1
        fptarget.report("tick %d" % n)


if __name__ == "__main__":
    main()
