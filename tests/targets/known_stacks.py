"""Threads blocked at places they describe themselves: each worker records its own stack with
traceback.extract_stack on the very line of its blocking call, so a test can compare what fp
reads from outside with what the interpreter says. The main thread keeps sleeping and checks
no sleep is cut short.

Usage: known_stacks.py READY
Ready facts: expected=JSON {thread name: [[file, line, function], ...] outermost first},
native=JSON {thread name: native id}. Progress: "tick N slept=S". Errors: "ERROR ...".
"""
import json
import sys
import threading
import time
import traceback

import fptarget

EXPECTED = {}
NATIVE = {}
READY = {}


def record(name):
    """The caller's stack (outermost first), at the caller's current line."""
    frames = traceback.extract_stack(sys._getframe(1))
    EXPECTED[name] = [[f.filename, f.lineno, f.name] for f in frames]
    NATIVE[name] = threading.get_native_id() if hasattr(threading, "get_native_id") else None
    READY[name].set()


def leaf_sleep(name):
    record(name); time.sleep(100000)  # noqa: E702 - one line: the recorded line is the blocked one


def middle(name, depth):
    if depth:
        return middle(name, depth - 1)
    return leaf_sleep(name)


class Worker:
    def __init__(self, name):
        self.name = name

    def run(self):
        lock = threading.Lock()
        lock.acquire()
        record(self.name); lock.acquire()  # noqa: E702


def unicode_ünïcødé_λ(name):
    record(name); time.sleep(100000)  # noqa: E702


WORKERS = {
    "deep": lambda: middle("deep", 5),
    "method": lambda: Worker("method").run(),
    "unicode-🐍": lambda: unicode_ünïcødé_λ("unicode-🐍"),
}


def main():
    for name, target in WORKERS.items():
        READY[name] = threading.Event()
        threading.Thread(target=target, name=name, daemon=True).start()
    for name in WORKERS:
        READY[name].wait(10)
    fptarget.announce(sys.argv[1], expected=json.dumps(EXPECTED), native=json.dumps(NATIVE))
    n = 0
    while True:
        n += 1
        t0 = time.monotonic()
        time.sleep(0.1)
        slept = time.monotonic() - t0
        if slept < 0.1 - fptarget.EARLY_TOLERANCE_S:
            fptarget.error("short sleep: slept %.6f" % slept)
        fptarget.report("tick %d slept=%.4f" % (n, slept))


if __name__ == "__main__":
    main()
