"""Functions of every kind that tests/integration/test_reload.py replaces while
tests/targets/reloadable.py calls them. The test copies this file to a directory of its own and
edits the copy: the target imports it from there (the path is its second argument)."""
import asyncio
import functools
import threading
import time


def plain(x):
    return x + 1


def defaults(x, step=1):
    return x + step


class Shop(object):
    rate = 3

    def method(self, x):
        return x * 2

    @classmethod
    def klass(cls, x):
        return x * cls.rate

    @staticmethod
    def static(x):
        return x - 1

    @property
    def prop(self):
        return 7

    async def coro(self, x):
        await asyncio.sleep(0)
        return x + 10

    def gen(self, n):
        for i in range(n):
            yield i


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


def forever(stop):
    """Runs on the thread `looper` until the target ends: a call in progress during a reload."""
    while not stop.is_set():
        time.sleep(0.01)


builtin_alias = len
STOP = threading.Event()
