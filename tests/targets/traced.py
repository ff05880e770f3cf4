"""A target for `trace`: functions with known nested calls, called in a loop.

Usage: traced.py READY
Main thread, every 20 ms: outer(50) -> inner_fast x50, inner_slow (time.sleep 20 ms, sorted),
raises_inside (an exception raised and caught inside), Service().handle(...),
consume(gen(3)), recursive(3), run_coro() (asyncio.run of a coroutine that awaits a 10 ms
sleep). After each round it records in the module's globals what it saw: its own results
(checked: the traced functions behave exactly as untraced) and sys.getprofile() on this thread
(PROFILE_SEEN, None unless something was left behind).
A "bystander" thread meanwhile calls bystander_work() in a loop: its calls must never appear in
a tree of the main thread's calls. A "slowpoke" thread calls long_call() (0.3 s in time.sleep)
in a loop, and records sys.getprofile() after each (SLOW_PROFILE_SEEN). A "profiled" thread runs
under a profiler of its own (sys.setprofile) and calls profiled_call() in a loop: fp must leave
that thread alone (it checks its profiler is still its own after every call).
A "handoff" thread starts handoff_gen() generators and hands them to a "finisher" thread, which
exhausts them: an invocation that starts on one thread and ends on another.
check_pristine() lists what is not as it was before fp came (for the tests, through getglobal).
Progress: "tick N" every round.
"""
import asyncio
import gc
import queue
import sys
import threading
import time

import fptarget

DATA = [5, 3, 9, 1, 7] * 20
ROUNDS = 0
PROFILE_SEEN = None  # repr of sys.getprofile() after the last round, when not None
PROFILE_SEEN_AT = 0
BYSTANDER_CALLS = 0
RESULTS = []


def inner_fast(i):
    return i * 2


def inner_slow():
    time.sleep(0.02)
    return sorted(DATA)


def fails():
    raise ValueError("expected")


def raises_inside():
    try:
        fails()
    except ValueError:
        return "caught"


def outer(n):
    total = 0
    for i in range(n):
        total += inner_fast(i)
    inner_slow()
    raises_inside()
    return total


class Service(object):
    def __init__(self):
        self.handled = 0

    def handle(self, request, scale=1):
        self.handled += 1
        return [inner_fast(x) * scale for x in request]


def gen(n):
    for i in range(n):
        yield inner_fast(i)


def consume(g):
    return sum(g)


def recursive(n):
    if n <= 0:
        return 0
    return 1 + recursive(n - 1)


async def coro():
    await asyncio.sleep(0.01)
    return inner_fast(21)


def run_coro():
    return asyncio.run(coro())


def long_call():
    time.sleep(0.3)
    return inner_fast(1)


def profiled_call():
    return sorted(DATA)[:3]


PROFILED_EVENTS = [0]


def own_profiler(frame, event, arg):
    PROFILED_EVENTS[0] += 1


def profiled_work():
    sys.setprofile(own_profiler)
    while True:
        if profiled_call() != [1, 1, 1]:
            fptarget.error("profiled_call returned something else")
        if sys.getprofile() is not own_profiler:
            fptarget.error("the profiled thread lost its own profiler: %r" % (sys.getprofile(),))
            sys.setprofile(own_profiler)
        time.sleep(0.01)


SLOW_PROFILE_SEEN = None
SLOW_CALLS = 0


def slow_work():
    global SLOW_PROFILE_SEEN, SLOW_CALLS
    while True:
        if long_call() != 2:
            fptarget.error("long_call returned something else")
        SLOW_CALLS += 1
        if sys.getprofile() is not None:
            SLOW_PROFILE_SEEN = repr(sys.getprofile())


def handoff_gen():
    yield inner_fast(1)
    yield inner_fast(2)


HANDOFFS = [0]


def handoff_work():
    handed = queue.Queue()

    def finisher():
        while True:
            g = handed.get()
            if list(g) != [4]:
                fptarget.error("handoff_gen went wrong")
            HANDOFFS[0] += 1

    threading.Thread(target=finisher, name="finisher", daemon=True).start()
    while True:
        g = handoff_gen()
        if next(g) != 2:
            fptarget.error("handoff_gen went wrong")
        handed.put(g)
        time.sleep(0.03)


def bystander_only(i):
    return i + 1


def bystander_work():
    global BYSTANDER_CALLS
    while True:
        x = 0
        for i in range(1000):
            x = bystander_only(x)
        BYSTANDER_CALLS += 1
        time.sleep(0.001)


def one_round(service):
    global PROFILE_SEEN, PROFILE_SEEN_AT
    expected = (sum(i * 2 for i in range(50)), [2, 4], 6, 3, 42)
    got = (outer(50), service.handle([1, 2]), consume(gen(3)), recursive(3), run_coro())
    if got != expected:
        fptarget.error("traced functions returned %r, expected %r" % (got, expected))
    try:
        fails()
        fptarget.error("fails() did not raise")
    except ValueError as e:
        if str(e) != "expected":
            fptarget.error("fails() raised %r" % (e,))
    profile = sys.getprofile()
    if profile is not None:
        PROFILE_SEEN = repr(profile)
        PROFILE_SEEN_AT = ROUNDS


TRACEABLE = (inner_fast, inner_slow, fails, raises_inside, outer, Service.handle, gen, consume, recursive, coro,
             run_coro, long_call, profiled_call, handoff_gen, bystander_only, bystander_work)
ORIGINAL = [(f, f.__code__) for f in TRACEABLE]
TOOLS_AT_START = set(t for t in range(6) if sys.version_info >= (3, 12) and sys.monitoring.get_tool(t))


def check_pristine():
    """What fp left behind: [] when the target is as it was before fp came."""
    problems = []
    for f, code in ORIGINAL:
        if f.__code__ is not code:
            problems.append("%s.__code__ replaced" % f.__qualname__)
    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        for tool in range(6):
            if tool not in TOOLS_AT_START and mon.get_tool(tool) is not None:
                problems.append("monitoring tool %d in use by %s" % (tool, mon.get_tool(tool)))
    if sys.getprofile() is not None:
        problems.append("a profile function is set on the checking thread")
    if PROFILE_SEEN is not None:
        problems.append("the main thread had a profile function after round %d: %s" % (PROFILE_SEEN_AT, PROFILE_SEEN))
    if SLOW_PROFILE_SEEN is not None:
        problems.append("the slowpoke thread had a profile function after a call: %s" % SLOW_PROFILE_SEEN)
    trace = sys.modules.get("fp_agent.trace")
    if trace is not None:
        d = trace.diagnostics()
        if d["native_strays"] or d["python_strays"]:
            problems.append("fp's profile hook ran on a thread it was not recording: %r" % (d,))
        if d["recording_threads"] or d["python_recordings"] or d.get("monitored") or trace.active():
            problems.append("recordings or traces still running: %r %r" % (d, trace.active()))
    return problems


def types_named(name):
    """How many classes called `name` the process holds, after a collection."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, type) and o.__qualname__ == name)


def main():
    global ROUNDS
    threading.Thread(target=bystander_work, name="bystander", daemon=True).start()
    threading.Thread(target=slow_work, name="slowpoke", daemon=True).start()
    threading.Thread(target=profiled_work, name="profiled", daemon=True).start()
    threading.Thread(target=handoff_work, name="handoff", daemon=True).start()
    service = Service()
    fptarget.announce(sys.argv[1])
    while True:
        one_round(service)
        ROUNDS += 1
        fptarget.report("tick %d" % ROUNDS)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
