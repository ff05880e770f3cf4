"""Module globals and classes for getglobal / module / console tests; the main thread ticks.

Usage: inspectee.py READY
Progress: "tick N" every 0.2 s (the sleeps checked as in sleeper.py).
Imports fpt_helper (tests/targets/fpt_helper.py) so `module FILE` has a second module to name.
"""
import sys
import time

import fpt_helper
import fptarget

CONFIG = {
    "name": "inspectee",
    "db": {"host": "localhost", "port": 5432, "options": {"timeout": 3, "retries": [1, 2, 4]}},
    "features": ["alpha", "beta"],
}
ITEMS = list(range(100))
LONG_TEXT = "x" * 1000
LOOP = [1, 2]
LOOP.append(LOOP)  # refers to itself
EMPTY = {}
TICKS = 0


class Registry:
    counter = 42
    names = ["alpha", "beta", "gamma"]
    limits = {"low": 1, "high": 10}
    __secret = "hidden"  # stored as _Registry__secret


class Point:
    __slots__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y


class BadRepr:
    def __repr__(self):
        raise ValueError("no repr for you")


class Plain:
    def __init__(self):
        self.name = "plain"
        self.point = Point(5, 6)


ORIGIN = Point(3, 4)
BAD = BadRepr()
PLAIN = Plain()
HELPER = fpt_helper.Helper()


def main():
    global TICKS
    fptarget.announce(sys.argv[1])
    interval = 0.2
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
        TICKS += 1
        fptarget.report("tick %d" % TICKS)


if __name__ == "__main__":
    main()
