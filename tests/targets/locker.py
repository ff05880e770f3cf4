"""Main thread waiting in threading.Lock().acquire(timeout=...) on a lock it already holds,
checking each wait lasted the full timeout and did not acquire.

Usage: locker.py READY [TIMEOUT_S=0.3]
Progress: "tick N waited=S". Errors: "ERROR short wait ...", "ERROR acquired ...", "ERROR exception ...".
"""
import sys
import threading
import time

import fptarget


def main():
    timeout = fptarget.arg(2, 0.3)
    lock = threading.Lock()
    lock.acquire()
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        n += 1
        t0 = time.monotonic()
        try:
            got = lock.acquire(timeout=timeout)
        except BaseException as e:  # noqa: B902
            fptarget.error("exception in acquire: %r" % (e,))
            continue
        waited = time.monotonic() - t0
        if got:
            fptarget.error("acquired a lock that is held (waited %.6f)" % waited)
            continue
        if waited < timeout - fptarget.EARLY_TOLERANCE_S:
            fptarget.error("short wait: timeout %.6f waited %.6f" % (timeout, waited))
        fptarget.report("tick %d waited=%.4f" % (n, waited))


if __name__ == "__main__":
    main()
