"""A workload for the agent under the sanitizers (tests/sanitize): functions called all the time
from a worker thread (for watch, trace and tt), module data to read, and a clean exit at SIGINT
(KeyboardInterrupt in the main thread), so that the interpreter finalizes and the leak checker
runs at exit.

Usage: asan_workload.py READY
Progress: "tick N". At SIGINT: "bye".
"""
import sys
import threading
import time

import fptarget

DATA = {"name": "workload", "items": [1, 2.5, "three", (4, 5), {"six": 6}], "nested": {"a": {"b": [1]}}}
STOP = threading.Event()


class Cart:
    def __init__(self):
        self.items = []

    def add(self, sku, qty=1):
        self.items.append((sku, qty))
        if len(self.items) > 100:
            del self.items[:50]
        return len(self.items)


def work(n):
    total = 0
    for i in range(n):
        total += len(str(i))
    return sorted(DATA["items"], key=str)[0], total


CART = Cart()


def worker():
    n = 0
    while not STOP.is_set():
        n += 1
        work(20)
        CART.add("sku-%d" % (n % 7), qty=n % 3)
        time.sleep(0.005)


def main():
    t = threading.Thread(target=worker, name="worker", daemon=True)
    t.start()
    fptarget.announce(sys.argv[1])
    n = 0
    try:
        while True:
            n += 1
            fptarget.report("tick %d" % n)
            time.sleep(0.2)
    except KeyboardInterrupt:
        STOP.set()
        t.join(5)
        fptarget.report("bye")


if __name__ == "__main__":
    main()
