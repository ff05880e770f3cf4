"""A pre-forking server's shape: the parent (the master) forks two worker processes and only
watches them, as gunicorn's arbiter does; each worker serves "requests" (handle()) in a loop.
The master runs no request code.

Usage: prefork.py READY
Ready facts: workers=PID,PID. Progress: "worker N served M" lines from the workers.
"""
import os
import signal
import sys
import time

import fptarget


def handle(n):
    return n * 2


def worker(index):
    served = 0
    while True:
        time.sleep(0.1)
        if handle(served) != served * 2:
            fptarget.error("handle changed")
        served += 1
        if served % 10 == 0:
            fptarget.report("worker %d served %d" % (index, served))


def main():
    workers = []
    for i in range(2):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
            worker(i)
        workers.append(pid)

    def stop(*_):
        for pid in workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for pid in workers:
            os.waitpid(pid, 0)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    fptarget.announce(sys.argv[1], workers=",".join(str(p) for p in workers))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
