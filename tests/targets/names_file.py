"""A target whose running code names a file of the test's choosing: its main thread sleeps in a
function compiled with that file name, so a stack read from outside shows that file and line.

Usage: names_file.py READY FILENAME LINE
The function's sleeping line is LINE of FILENAME (whatever that file holds).
Progress: "tick N".
"""
import sys
import time

import fptarget


def main():
    filename, line = sys.argv[2], int(sys.argv[3])
    # Lines 1..LINE-2 are blank; the loop's sleep is on LINE.
    source = "\n" * (line - 2) + "def held(report, sleep):\n    while True: report(); sleep(0.2)\n"
    scope = {}
    exec(compile(source, filename, "exec"), scope)
    n = [0]

    def report():
        n[0] += 1
        fptarget.report("tick %d" % n[0])

    fptarget.announce(sys.argv[1])
    scope["held"](report, time.sleep)


if __name__ == "__main__":
    main()
