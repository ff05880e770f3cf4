"""The code that tests/agent/test_instrument.py observes: every kind of function fp must locate
and instrument, in a module of its own (imported as `instrument_cases`)."""

import asyncio
import functools
import sys
import types


def plain(a, b=2, *rest, c=3, **kw):
    return (a, b, rest, c, kw)


def boom(x):
    if x:
        raise ValueError("boom %s" % x)
    return x


def recurse(n):
    if n <= 0:
        return 0
    return n + recurse(n - 1)


def posonly(a, /, b):
    return a - b


def counter():
    counter.calls = getattr(counter, "calls", 0) + 1
    return counter.calls


def gen(n):
    total = 0
    for i in range(n):
        got = yield i
        total += got or 0
    return total


def gen_raises(n):
    yield n
    raise KeyError(n)


async def coro(x, delay=0):
    await asyncio.sleep(delay)
    return x * 2


async def coro_raises(x):
    await asyncio.sleep(0)
    raise RuntimeError("async %s" % x)


@types.coroutine
def old_style():
    yield
    return "old"


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

    def other():
        return k

    return inner(3) + other()


def outer_nofree():
    def lonely(v):
        return v + 1

    return lonely(1)


class Base(object):
    def inherited(self, x):
        return ("base", x)


class Shop(Base):
    rate = 2

    def __init__(self):
        self.sold = 0

    def buy(self, item, qty=1):
        self.sold += qty
        return "%s x%d" % (item, qty)

    @classmethod
    def make(cls, n):
        return [cls() for _ in range(n)]

    @staticmethod
    def tax(v):
        return v * 0.2

    @property
    def total(self):
        return self.sold * self.rate

    async def fetch(self, key):
        await asyncio.sleep(0)
        return {"key": key}

    def items(self, n):
        for i in range(n):
            yield (i, self.rate)

    def supered(self, x):
        return super().inherited(x)

    def with_nested(self, x):
        def helper(y):
            return y + x + self.rate

        return helper(1)


class Callable(object):
    def __call__(self, x):
        return x


partial_f = functools.partial(plain, 1)
CALLABLE = Callable()
builtin_alias = len
from os.path import join as joined  # noqa: E402, F401  (a function of another module, imported here)


def lam_holder():
    return (lambda: 1)()


async def agen(n):
    for i in range(n):
        yield i


THIS = sys.modules[__name__]


# What filters see of a call's arguments (callargs): every spelling of a call must match.
SEEN = []  # what the filters that record their calls saw


class Cart(object):
    hits = 0

    def total(self, prices, coupon=None):
        return sum(prices) / (2 if coupon == "HALF" else 1)

    @property
    def costly(self):  # reading it is a call of the program's code: completion must not
        Cart.hits += 1
        return Cart.hits


def spread(a, b=0, *rest, c=None, **extra):
    return a


def keywords(a, /, b, *, c=1, d):
    return a + b + c + d
