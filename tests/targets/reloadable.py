"""Calls every function of reload_lib (a copy the test may edit, imported from the directory given
as the second argument) once per tick and prints what they returned, so a test sees a reload
change the program's behaviour and an undo bring it back.

Usage: reloadable.py READY LIBDIR
Progress: "tick N plain=.. defaults=.. method=.. klass=.. static=.. prop=.. coro=.. gen=..
decorated=.. outer=.." every TICK seconds. A thread `looper` stays inside reload_lib.forever(), and
SUSPENDED is a generator of Shop.gen started and left suspended.
"""
import asyncio
import sys
import threading
import time

import fptarget

TICK = 0.05


def values(lib, shop, loop):
    return [
        ("plain", lib.plain(1)),
        ("defaults", lib.defaults(1)),
        ("method", shop.method(1)),
        ("klass", lib.Shop.klass(1)),
        ("static", lib.Shop.static(1)),
        ("prop", shop.prop),
        ("coro", loop.run_until_complete(shop.coro(1))),
        ("gen", sum(shop.gen(4))),
        ("decorated", lib.decorated(1)),
        ("outer", lib.outer(2)),
    ]


def main():
    sys.path.insert(0, sys.argv[2])
    import reload_lib as lib

    shop = lib.Shop()
    # References taken before any reload: they must run the new code too.
    bound = shop.method
    plain = lib.plain
    global SUSPENDED
    SUSPENDED = shop.gen(5)
    next(SUSPENDED)
    looper = threading.Thread(target=lib.forever, args=(lib.STOP,), name="looper", daemon=True)
    looper.start()
    loop = asyncio.new_event_loop()
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        n += 1
        got = values(lib, shop, loop)
        # A reload keeps the function objects: references taken earlier are the very functions
        # the module and the class hold, so they run whatever code those run.
        if plain is not lib.plain or bound.__func__ is not lib.Shop.__dict__["method"]:
            fptarget.error("a function object was replaced: references taken earlier run other code")
        fptarget.report("tick %d %s" % (n, " ".join("%s=%s" % kv for kv in got)))
        time.sleep(TICK)


SUSPENDED = None

if __name__ == "__main__":
    main()
