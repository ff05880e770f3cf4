"""Two threads deadlocked on two threading.Locks (each holds one and waits for the other);
the main thread goes on sleeping and reporting.

Usage: deadlock.py READY
Ready facts: first=NATIVE_ID, second=NATIVE_ID (announced once both wait). Progress: "tick N".
"""
import sys
import threading
import time

import fptarget

lock_a = threading.Lock()
lock_b = threading.Lock()
holding = threading.Barrier(3)
ids = {}


def take_a_then_b():
    with lock_a:
        ids["first"] = threading.get_native_id()
        holding.wait()
        lock_b.acquire()  # never returns: second holds lock_b


def take_b_then_a():
    with lock_b:
        ids["second"] = threading.get_native_id()
        holding.wait()
        lock_a.acquire()  # never returns: first holds lock_a


def main():
    threading.Thread(target=take_a_then_b, name="first", daemon=True).start()
    threading.Thread(target=take_b_then_a, name="second", daemon=True).start()
    holding.wait()
    fptarget.announce(sys.argv[1], **ids)
    n = 0
    while True:
        time.sleep(0.1)
        n += 1
        fptarget.report("tick %d" % n)


if __name__ == "__main__":
    main()
