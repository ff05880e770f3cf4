"""A process holding N objects the garbage collector tracks (default 5 million), for
bench/mem_summary.py: N/2 instances of a class with __slots__, each holding its own list (so the
count is the same on every Python version), plus a str and an int each, which the collector does
not track.

Usage: mem_big.py READY [N] [--pympler DIR]
It announces readiness, builds them, then prints "built objects=T rss=R hwm=H" (T: len(gc.get_objects()); R, H: VmRSS
and VmHWM in bytes) and idles. With --pympler DIR it then runs pympler's summary of every object
itself (pympler imported from DIR, the way PyFlightProfiler's mem does inside the process), the
peak RSS reset just before (/proc/self/clear_refs), and prints "pympler seconds=S rss=R hwm=H
rows=N" (R: VmRSS before it started, H: the peak during it), then idles.
"""
import gc
import sys
import time

import fptarget


class Record(object):
    __slots__ = ("i", "name", "tags")

    def __init__(self, i):
        self.i = i
        self.name = "record-%d" % i
        self.tags = [i]


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def main():
    n = int(sys.argv[2]) if len(sys.argv) > 2 and not sys.argv[2].startswith("--") else 5000000
    pympler_dir = sys.argv[sys.argv.index("--pympler") + 1] if "--pympler" in sys.argv else None
    fptarget.announce(sys.argv[1])  # ready to be watched; "built" says when the objects are there
    records = [Record(i) for i in range(n // 2)]
    s = status()
    fptarget.report("built objects=%d rss=%d hwm=%d" % (len(gc.get_objects()), s["VmRSS"], s["VmHWM"]))
    if pympler_dir:
        sys.path.insert(0, pympler_dir)
        from pympler import muppy, summary

        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM := VmRSS
        before = status()["VmRSS"]
        t0 = time.perf_counter()
        rows = summary.summarize(muppy.get_objects())
        seconds = time.perf_counter() - t0
        fptarget.report("pympler seconds=%.3f rss=%d hwm=%d rows=%d" % (seconds, before, status()["VmHWM"],
                                                                        len(rows)))
        del rows
    while records:
        time.sleep(1)


if __name__ == "__main__":
    main()
