"""A stand-in for the production service the agent is loaded into: the globals, classes and
threads that tests/agent/test_fp_agent.py inspects through fp_agent.dispatch.handle.
"""

import collections
import threading

CONFIG = {"a": 1, "b": [1, 2]}
NUMBERS = list(range(30))
BIG_LIST = list(range(100000))
LONG_TEXT = "x" * 1000
CYCLE = [1, 2]
CYCLE.append(CYCLE)
NESTED = {"l1": {"l2": {"l3": {"l4": {"l5": 1}}}}}
ODD_KEYS = {1: "one", (2, 3): "pair"}
ORDERED = collections.OrderedDict([("b", 1), ("a", 2)])
ORDERED.move_to_end("b")
SHOUTS = []  # grows each time User.shout runs: completion must never run it


class User(object):
    kind = "member"

    def __init__(self, name):
        self.name = name
        self.tags = ["a", "b"]

    @property
    def shout(self):
        SHOUTS.append(1)
        return self.name.upper()


class Point(object):
    __slots__ = ("x", "y", "__secret")

    def __init__(self):
        self.x = 1
        self.__secret = "s"  # y stays unset


class Broken(object):
    def __repr__(self):
        raise ValueError("nope")


class Outer(object):
    class Inner(object):
        value = 42


ADMIN = User("root")
POINT = Point()
BROKEN = Broken()
INNER = Outer.Inner()


def __getattr__(name):  # PEP 562: a lazily computed global
    if name == "LAZY":
        return "lazy value"
    raise AttributeError(name)


def wait_here(ready, gate):
    ready.set()
    gate.acquire()


def start_worker():
    """A thread parked in wait_here() until the returned gate is released."""
    ready = threading.Event()
    gate = threading.Lock()
    gate.acquire()
    worker = threading.Thread(target=wait_here, args=(ready, gate), name="app-worker", daemon=True)
    worker.start()
    if not ready.wait(10):
        raise RuntimeError("app-worker did not start within 10 s")
    return gate, worker
