"""Objects of known classes in known numbers, and allocations made on request, for mem and vmtool.

Usage: memtarget.py READY CMDDIR [--tracemalloc]
KEEP holds 7 Base, 5 Sub(Base) and 3 SubSub(Sub) instances for the whole run. Automatic garbage
collection is off (gc.disable()), so the cycles made on request are found only by a collection
someone asks for. Requests are files CMDDIR/cmd-SEQ holding one line, done in SEQ order by the
main thread (never by fp's): "grow N" makes N Blob instances (kept), "cycles N" N pairs of Node
objects that refer to each other (dropped at once; WEAK counts those still alive), "alloc N" N
bytearrays of 1000 bytes at ALLOC_LINE (kept), "clear" drops what grow and alloc kept. Each is
announced with "did SEQ REQUEST". Progress: "tick N" every TICK seconds. With --tracemalloc the
program starts tracemalloc itself before it announces readiness.
"""
import gc
import os
import sys
import time
import weakref

import fptarget

TICK = 0.02


class Base(object):
    def __init__(self, n):
        self.n = n


class Sub(Base):
    pass


class SubSub(Sub):
    pass


class Blob(object):
    def __init__(self, n):
        self.n = n


class Node(object):
    pass


KEEP = [Base(i) for i in range(7)] + [Sub(i) for i in range(5)] + [SubSub(i) for i in range(3)]
BLOBS = []
BUFFERS = []
WEAK = weakref.WeakSet()


def allocate(n):
    for _ in range(n):
        BUFFERS.append(bytearray(1000))  # ALLOC_LINE


ALLOC_LINE = [i for i, line in enumerate(open(__file__).read().splitlines(), 1) if line.endswith("# ALLOC_LINE")][0]


def run(request):
    what, _, arg = request.partition(" ")
    if what == "grow":
        BLOBS.extend(Blob(i) for i in range(int(arg)))
    elif what == "cycles":
        a = b = None
        for _ in range(int(arg)):
            a, b = Node(), Node()
            a.other, b.other = b, a
            WEAK.add(a)
            WEAK.add(b)
        del a, b
    elif what == "alloc":
        allocate(int(arg))
    elif what == "clear":
        del BLOBS[:]
        del BUFFERS[:]
    else:
        fptarget.error("unknown request %r" % request)


def main():
    cmddir = sys.argv[2]
    gc.disable()
    if "--tracemalloc" in sys.argv[3:]:
        import tracemalloc

        tracemalloc.start()
    fptarget.announce(sys.argv[1], alloc_line=ALLOC_LINE)
    n = 0
    while True:
        for name in sorted(os.listdir(cmddir), key=lambda s: int(s.split("-")[1]) if s.startswith("cmd-") else 0):
            if not name.startswith("cmd-"):
                continue
            path = os.path.join(cmddir, name)
            with open(path) as f:
                request = f.read().strip()
            os.unlink(path)
            run(request)
            fptarget.report("did %s %s" % (name[4:], request))
        n += 1
        if n % 25 == 0:
            fptarget.report("tick %d" % n)
        time.sleep(TICK)


if __name__ == "__main__":
    main()
