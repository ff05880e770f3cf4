"""Functions of every kind that watch/tt must find and observe, called all the time.

Usage: observed.py READY
A worker thread calls each function every TICK seconds and checks every result (values,
exception types and tracebacks); an asyncio loop on another thread does the same for the async
ones. Progress: "tick N" per round; "ERROR ..." when a result is not what the code computes.
check_pristine() (called by the tests through getglobal -e) lists what is not as it was at start:
function objects and their __code__, sys.monitoring tools and events (3.12+).
"""
import asyncio
import functools
import sys
import threading
import time
import traceback

import fptarget
from observed_lib import scale  # a `from m import f` reference taken before any watch

TICK = 0.02


def add(a, b=1, *rest, c=0, **kw):
    return a + b + sum(rest) + c + sum(kw.values())


def boom(n):
    if n % 2:
        raise ValueError("odd %d" % n)
    return n


def recurse(n):
    return 0 if n <= 0 else n + recurse(n - 1)


def numbers(n):
    total = 0
    for i in range(n):
        total += yield i
    return total


def countdown(n):
    while n > 0:
        yield n
        n -= 1
    raise KeyError("liftoff")


async def afail(x):
    await asyncio.sleep(0)
    raise LookupError("no %d" % x)


async def fetch(x):
    await asyncio.sleep(0.001)
    return x * 10


def logged(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper


@logged
def decorated(x):
    return x + 100


def outer(k):
    def inner(v):
        return v * k

    return inner(3)


class Shop(object):
    rate = 3

    def __init__(self):
        self.items = []

    def buy(self, item, qty=1):
        self.items.append(item)
        return "%s x%d" % (item, qty)

    @classmethod
    def create(cls, n):
        return [cls() for _ in range(n)]

    @staticmethod
    def tax(v):
        return v * 2

    @property
    def count(self):
        return len(self.items) * self.rate

    async def afetch(self, key):
        await asyncio.sleep(0.001)
        return {"key": key}

    def stock(self, n):
        for i in range(n):
            yield (i, self.rate)


builtin_alias = len
SHOP = Shop()
CALLBACKS = [SHOP.buy, scale]  # bound method and function registered before any watch
DATA = {"calls": 0}

_FUNCS = [add, boom, recurse, numbers, countdown, afail, fetch, decorated, decorated.__wrapped__, outer, scale,
          Shop.__dict__["buy"], Shop.__dict__["create"].__func__, Shop.__dict__["tax"].__func__,
          Shop.__dict__["count"].fget, Shop.__dict__["afetch"], Shop.__dict__["stock"]]
ORIGINAL = [(f, f.__code__) for f in _FUNCS]
NESTED = [c for c in outer.__code__.co_consts if getattr(c, "co_name", None) == "inner"][0]
TOOLS_AT_START = (set(t for t in range(6) if sys.monitoring.get_tool(t) is not None)
                  if sys.version_info >= (3, 12) else set())


def check_pristine():
    problems = []
    for f, code in ORIGINAL:
        if f.__code__ is not code:
            problems.append("%s.__code__ replaced" % f.__qualname__)
    if NESTED not in outer.__code__.co_consts:
        problems.append("outer's nested code replaced")
    if Shop.__dict__["buy"] is not ORIGINAL[11][0]:
        problems.append("Shop.buy replaced")
    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        for tool in range(6):
            if tool in TOOLS_AT_START:
                continue
            if mon.get_tool(tool) is not None:
                problems.append("monitoring tool %d in use by %s" % (tool, mon.get_tool(tool)))
            if mon.get_events(tool):
                problems.append("monitoring tool %d has global events" % tool)
            for _f, code in ORIGINAL + [(None, NESTED)]:
                if mon.get_local_events(tool, code):
                    problems.append("local events of tool %d on %s" % (tool, code.co_name))
    if sys.getprofile() is not None:
        problems.append("a profile function is set on the checking thread")
    return problems


def _expect(what, got, want):
    if got != want:
        fptarget.error("%s: got %r, want %r" % (what, got, want))


def _expect_traceback(what, exc, want):
    """The traceback of exc is exactly want: [(function, source line)], the caller first."""
    _expect(what + " traceback", [(f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)], want)


def _check_boom(n):
    try:
        boom(n)
    except ValueError as e:
        _expect("boom message", str(e), "odd %d" % n)
        _expect_traceback("boom", e, [("_check_boom", "boom(n)"), ("boom", 'raise ValueError("odd %d" % n)')])
    else:
        fptarget.error("boom(%d) did not raise" % n)


def _check_countdown():
    got = []
    try:
        for v in countdown(2):
            got.append(v)
    except KeyError as e:
        _expect("countdown", got, [2, 1])
        _expect_traceback("countdown", e, [("_check_countdown", "for v in countdown(2):"),
                                           ("countdown", 'raise KeyError("liftoff")')])
    else:
        fptarget.error("countdown did not raise")


async def _check_afail(i):
    try:
        await afail(i)
    except LookupError as e:
        _expect("afail message", str(e), "no %d" % i)
        _expect_traceback("afail", e, [("_check_afail", "await afail(i)"), ("afail", 'raise LookupError("no %d" % x)')])
    else:
        fptarget.error("afail did not raise")


def one_round(i):
    _expect("add", add(i, 2, 3, c=4, d=5), i + 14)
    _expect("boom even", boom(2 * i), 2 * i)
    _check_boom(2 * i + 1)
    _check_countdown()
    _expect("recurse", recurse(4), 10)
    gen = numbers(3)
    got = [next(gen), gen.send(1), gen.send(2)]
    try:
        gen.send(3)
        fptarget.error("numbers did not stop")
    except StopIteration as stop:
        _expect("numbers", (got, stop.value), ([0, 1, 2], 6))
    _expect("decorated", decorated(i), i + 100)
    _expect("outer", outer(i), 3 * i)
    _expect("scale", scale(i), 2 * i)
    _expect("callback buy", CALLBACKS[0]("cb%d" % i, qty=2), "cb%d x2" % i)
    _expect("callback scale", CALLBACKS[1](i, 3), 3 * i)
    _expect("buy", SHOP.buy("item%d" % i), "item%d x1" % i)
    _expect("create", len(Shop.create(2)), 2)
    _expect("tax", SHOP.tax(i), 2 * i)
    _expect("count", SHOP.count, len(SHOP.items) * 3)
    _expect("stock", list(SHOP.stock(2)), [(0, 3), (1, 3)])
    del SHOP.items[:-5]
    DATA["calls"] += 1


def worker():
    i = 0
    while True:
        i += 1
        try:
            one_round(i)
        except Exception as e:  # noqa: B902
            fptarget.error("round %d raised %r" % (i, e))
        time.sleep(TICK)


async def async_main():
    i = 0
    while True:
        i += 1
        try:
            _expect("fetch", await fetch(i), 10 * i)
            _expect("afetch", await SHOP.afetch(i), {"key": i})
            await _check_afail(i)
        except Exception as e:  # noqa: B902
            fptarget.error("async round %d raised %r" % (i, e))
        await asyncio.sleep(TICK)


def main():
    threading.Thread(target=worker, name="worker", daemon=True).start()
    threading.Thread(target=lambda: asyncio.run(async_main()), name="loop", daemon=True).start()
    time.sleep(0.1)
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        time.sleep(0.2)
        n += 1
        fptarget.report("tick %d calls=%d" % (n, DATA["calls"]))


if __name__ == "__main__":
    main()
