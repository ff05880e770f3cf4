"""A target whose values carry terminal escape sequences: reprs, a type name and an exception
message and an asyncio task name with ESC and BEL (a screen clear, a window-title change), as a
hostile or careless program could produce. A worker calls work(VALUE) all the time, for watch.

Usage: escapes.py READY
Progress: "tick N".
"""
import asyncio
import sys
import threading
import time

import fptarget

CLEAR = "\x1b[2J\x1b[H"
TITLE = "\x1b]0;pwned\x07"


class Evil:
    def boom(self):
        raise ValueError("message" + CLEAR + TITLE)

    def __repr__(self):
        return "evil" + CLEAR + TITLE + "\x9b31m" + "\r\x08end"


# A type name with an escape sequence in it (shown as the value's "type").
Evil.__name__ = Evil.__qualname__ = "Evil" + TITLE

VALUE = Evil()
TEXT = "plain" + CLEAR + "text"


def work(value):
    return value


def worker():
    while True:
        work(VALUE)
        time.sleep(0.01)


async def waiting():
    await asyncio.sleep(1e6)


def event_loop():
    loop = asyncio.new_event_loop()
    loop.create_task(waiting(), name="task" + TITLE)
    loop.run_forever()


def main():
    threading.Thread(target=worker, daemon=True).start()
    threading.Thread(target=event_loop, daemon=True).start()
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        n += 1
        fptarget.report("tick %d" % n)
        time.sleep(0.2)


if __name__ == "__main__":
    main()
