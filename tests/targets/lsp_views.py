"""A service for fp-lsp's trace view: handle() calls Python and C functions from known lines,
one of them three times from one line, once per tick.

Usage: lsp_views.py READY
Progress: "tick N total=T" every 20 ms (T: handle(200), always the same). Errors: "ERROR ...".
"""
import sys
import time

import fptarget


def load(n):
    return [(i * 7) % 13 for i in range(n)]


def transform(rows):
    return [r + 1 for r in rows]


def summarize(rows):
    return sum(rows)


def handle(n):
    rows = load(n)
    for _ in range(3):
        rows = transform(rows)
    time.sleep(0.004)
    rows.sort()
    return summarize(rows)


def main():
    fptarget.announce(sys.argv[1])
    expected = handle(200)
    n = 0
    while True:
        n += 1
        total = handle(200)
        if total != expected:
            fptarget.error("handle(200) returned %r, not %r" % (total, expected))
        fptarget.report("tick %d total=%d" % (n, total))
        time.sleep(0.02)


if __name__ == "__main__":
    main()
