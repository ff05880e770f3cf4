"""Main thread in a loop of time.sleep, checking with time.monotonic that no sleep is cut short.

Usage: sleeper.py READY [INTERVAL_S=0.2]
Progress: "tick N slept=S". Errors: "ERROR short sleep ...", "ERROR exception ...".
SIGINT (KeyboardInterrupt) ends it normally: it prints "bye" and the interpreter shuts down as
usual (atexit, threading's shutdown), so a test can check an attached process still exits cleanly.
"""
import sys
import time

import fptarget


def main():
    interval = fptarget.arg(2, 0.2)
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        n += 1
        t0 = time.monotonic()
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            fptarget.report("bye")
            return
        except BaseException as e:  # noqa: B902 - any exception here is a bug to report
            fptarget.error("exception in sleep: %r" % (e,))
            continue
        slept = time.monotonic() - t0
        if slept < interval - fptarget.EARLY_TOLERANCE_S:
            fptarget.error("short sleep: requested %.6f slept %.6f" % (interval, slept))
        fptarget.report("tick %d slept=%.4f" % (n, slept))


if __name__ == "__main__":
    main()
