"""In-process tests of fp_agent.trace under every CPython on the machine: the tree builder on
made-up recordings, and the Python recorder and trace sessions on real calls (the C recorder
needs the agent library inside a target: tests/integration/test_trace.py runs both there).

pytest runs this file once per interpreter as a script (`python test_trace.py AGENT_DIR`): it
loads the agent package as the native side does, runs every check and prints one JSON line per
check; each check is then a test of its own. FP_PYTHONS=py3.12,system-3.11 narrows.
"""

import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "agent", "fp_agent"))

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


# ---------------------------------------------------------------------------------------------
# The pytest side


def _interpreters():
    """(id, path) of every interpreter tests/integration/pythons.py finds (FP_PYTHONS narrows)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
    import pythons

    return [(p.id, p.path) for p in pythons.select()]


_results = {}


def _run(name, path):
    if name not in _results:
        proc = subprocess.run(
            [path, os.path.abspath(__file__), AGENT_DIR],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            universal_newlines=True,
            timeout=120,
        )
        records = {}
        for line in proc.stdout.splitlines():
            record = json.loads(line)
            records[record["name"]] = record
        _results[name] = (records, proc)
    return _results[name]


# ---------------------------------------------------------------------------------------------
# The checks (run in the child process)

fp = None  # the agent package, loaded by main()
EMITTED = []


def load_agent(agent_dir):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fp_agent", os.path.join(agent_dir, "__init__.py"), submodule_search_locations=[agent_dir]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["fp_agent"] = package
    spec.loader.exec_module(package)
    import fp_agent.events
    import fp_agent.trace

    fp_agent.events.set_emitter(lambda client, text, *more: EMITTED.append(json.loads(text)) or True)
    return fp_agent


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


def walk(node):
    yield node
    for c in node["children"]:
        for n in walk(c):
            yield n


def names(node):
    return [c["function"] for c in node["children"]]


def child(node, name):
    found = [c for c in node["children"] if c["function"] == name]
    expect(len(found) == 1, "one child %r of %s: %s" % (name, node["function"], names(node)))
    return found[0]


# --- code to trace --------------------------------------------------------------------------


def leaf(i):
    return i + 1


def slow_leaf():
    time.sleep(0.01)
    return sorted([3, 1, 2])


def fails():
    raise KeyError("inside")


def held_until(lock):
    """Waits in a C call (acquiring lock) until another thread releases it."""
    lock.acquire(timeout=10)
    return sorted([3, 1, 2])


def outer(n):
    total = 0
    for i in range(n):
        total += leaf(i)
    slow_leaf()
    try:
        fails()
    except KeyError:
        pass
    items = []
    items.append(total)
    dict.fromkeys("ab")
    return total


def escapes(n):
    leaf(n)
    raise ValueError("out %d" % n)


def gen(n):
    for i in range(n):
        yield leaf(i)


async def coro():
    import asyncio

    await asyncio.sleep(0.005)
    return leaf(41)


def sets_own_profiler(p):
    sys.setprofile(p)
    return leaf(1)


def recurse(n):
    return 0 if n <= 0 else 1 + recurse(n - 1)


class Shop(object):
    def buy(self, item, qty=1):
        return leaf(qty)


# --- helpers --------------------------------------------------------------------------------


def start(**params):
    params.setdefault("module", "__main__")
    params.setdefault("recorder", "python")
    started = fp.trace.start(7, params)
    started.start()  # the client has the response: arm the probe
    return started.result


def events_of(trace_id, method="trace/event"):
    return [m["params"] for m in EMITTED if m["method"] == method and m["params"]["trace_id"] == trace_id]


def stop(trace_id):
    return fp.trace.stop(7, {"trace_id": trace_id})


def rpc_error(params):
    try:
        fp.trace.start(7, params)
    except fp.errors.AgentError as e:
        return e.code, e.message
    raise Failed("no error for %r" % (params,))


def clean_after():
    expect(fp.trace.active() == [], "traces left: %r" % fp.trace.active())
    d = fp.trace.diagnostics()
    expect(d["python_strays"] == 0 and not d["recording_threads"] and not d["python_recordings"], repr(d))
    expect(sys.getprofile() is None, "a profile function is left: %r" % (sys.getprofile(),))
    expect(outer.__code__.co_name == "outer" and fp.instrument.sites() == [], repr(fp.instrument.sites()))


# --- the tree builder, on made-up recordings --------------------------------------------------


@check
def build_tree_merges_hides_and_limits_depth():
    code_a, code_b = leaf.__code__, slow_leaf.__code__
    ms = 1000000
    # root(10 ms) -> a x3 (0.06 ms) ; b (9 ms) -> sorted [C] (0.01 ms), b -> a (2 ms)
    nodes = [
        (-1, 0, None, None, 0, 10 * ms),
        (0, 1, code_a, None, 3, 60000),
        (0, 1, code_b, None, 1, 9 * ms),
        (2, 2, None, "sorted", 1, 10000),
        (2, 1, code_a, None, 1, 2 * ms),
    ]
    raw = (0, 10 * ms, 10 * ms, 1, 0, nodes)
    tree, cost = fp.trace.build_tree(raw, outer.__code__, 0.1, None)
    expect(cost == 10 * ms and tree["function"] == "outer" and tree["pct"] == 100.0, repr(tree))
    expect(names(tree) == ["slow_leaf"], names(tree))
    expect(tree["hidden"] == {"count": 3, "cost_ms": 0.06}, repr(tree["hidden"]))
    b = child(tree, "slow_leaf")
    expect(b["pct"] == 90.0 and b["line"] == code_b.co_firstlineno and b["file"] == code_b.co_filename, repr(b))
    expect(names(b) == ["leaf"] and b["hidden"]["count"] == 1, repr(b))
    tree, _ = fp.trace.build_tree(raw, outer.__code__, 0.0, None)
    expect(names(tree) == ["leaf", "slow_leaf"] and names(child(tree, "slow_leaf")) == ["sorted", "leaf"], repr(tree))
    expect(child(tree, "leaf")["count"] == 3 and child(child(tree, "slow_leaf"), "sorted")["kind"] == "c", repr(tree))
    tree, _ = fp.trace.build_tree(raw, outer.__code__, 0.1, 1)  # -d 1: everything one level down
    expect(names(tree) == ["leaf", "slow_leaf"], names(tree))
    expect(child(tree, "slow_leaf")["children"] == [] and child(tree, "slow_leaf")["hidden"]["count"] == 2, repr(tree))
    json.dumps(tree)


@check
def build_tree_leaves_out_the_probe_and_splices_its_wrapper():
    ms = 1000000
    agent_code = fp.trace.build_tree.__code__  # any code of the agent's own package
    wrapper = (lambda: None).__code__
    nodes = [
        (-1, 0, None, None, 0, 5 * ms),
        (0, 1, agent_code, None, 1, 1 * ms),  # the probe: left out, with its calls
        (1, 1, leaf.__code__, None, 1, ms),
        (1, 2, None, "perf_counter_ns", 1, 1000),
        (0, 1, wrapper, None, 1, 3 * ms),  # the wrapper of a recursive call: spliced
        (4, 2, None, "perf_counter_ns", 1, 1000),
        (4, 1, outer.__code__, None, 1, 2 * ms),
        (6, 1, leaf.__code__, None, 1, ms),
    ]
    raw = (0, 5 * ms, 5 * ms, 1, 0, nodes)
    tree, _ = fp.trace.build_tree(raw, outer.__code__, 0, None, lambda c: c is wrapper)
    expect(names(tree) == ["outer"], names(tree))
    expect(names(child(tree, "outer")) == ["leaf"], repr(tree))


@check
def build_tree_shows_suspensions_and_cuts():
    ms = 1000000
    nodes = [(-1, 0, None, None, 0, 2 * ms), (0, 1, leaf.__code__, None, 3, ms)]
    raw = (0, 12 * ms, 2 * ms, 4, 1 | 4, nodes)  # 4 activations: 3 suspensions, 10 ms in all
    tree, cost = fp.trace.build_tree(raw, gen.__code__, 0.1, None)
    expect(cost == 12 * ms, cost)
    s = child(tree, "<suspended>")
    expect(s["kind"] == "suspended" and s["count"] == 3 and s["cost_ms"] == 10.0, repr(s))
    expect(tree["truncated"] == ["nodes", "stopped"], repr(tree.get("truncated")))


# --- the Python recorder through trace sessions ---------------------------------------------


@check
def tree_of_a_real_call():
    r = start(method="outer", interval=0, limit=2)
    outer(20)
    outer(20)
    evs = events_of(r["trace_id"])
    expect(len(evs) == 2 and events_of(r["trace_id"], "trace/end")[0]["reason"] == "limit", repr(EMITTED[-3:]))
    for ev in evs:
        root = ev["tree"]
        expect(ev["recorder"] == "python" and ev["thread"]["ident"] == threading.get_ident(), repr(ev))
        expect(root["function"] == "outer" and root["line"] == outer.__code__.co_firstlineno, repr(root))
        expect(names(root) == ["leaf", "slow_leaf", "fails", "list.append", "dict.fromkeys"], names(root))
        expect(child(root, "leaf")["count"] == 20, repr(root))
        slow = child(root, "slow_leaf")
        expect(names(slow) == ["time.sleep", "sorted"] and slow["cost_ms"] >= 9.5, repr(slow))
        expect(child(slow, "time.sleep")["kind"] == "c" and child(slow, "time.sleep")["file"] is None, repr(slow))
        expect(9.5 <= root["cost_ms"] == ev["cost_ms"] < 1000, repr(root))
        for n in walk(root):
            expect("fp_agent" not in (n["file"] or "") and n["function"] != "stop", repr(n))
    clean_after()


@check
def options_interval_depth_entrance_time_filter_limit():
    r = start(method="outer", limit=1)  # default -i 0.1
    outer(5)
    root = events_of(r["trace_id"])[0]["tree"]
    # slow_leaf takes 10 ms; 5 x leaf, fails, list.append and dict.fromkeys usually far less than
    # 0.1 ms (wall time: a busy machine can stretch one past it).
    expect("slow_leaf" in names(root) and all(c["cost_ms"] >= 0.1 for c in walk(root)), repr(root))
    expect(root["hidden"]["count"] + sum(c["count"] for c in root["children"]) == 9, repr(root))
    r = start(method="outer", limit=1, depth=1)
    outer(5)
    root = events_of(r["trace_id"])[0]["tree"]
    expect(child(root, "slow_leaf")["children"] == [] and child(root, "leaf")["count"] == 5, repr(root))
    r = start(method="outer", limit=1, min_cost=500)
    outer(1)
    expect(events_of(r["trace_id"]) == [] and stop(r["trace_id"])["stopped"][0]["discarded"] == 1, repr(EMITTED[-2:]))
    r = start(**{"class": "Shop", "method": "buy", "limit": 1, "filter": "args[0] == 'pen' and kwargs['qty'] == 2"})
    shop = Shop()
    shop.buy("ink", qty=2)
    shop.buy("pen")
    shop.buy("pen", qty=2)
    evs = events_of(r["trace_id"])
    expect(len(evs) == 1 and evs[0]["tree"]["function"].endswith("buy"), repr(evs))
    r = start(method="leaf", limit=3)
    for i in range(5):
        leaf(i)
    expect(len(events_of(r["trace_id"])) == 3, repr(events_of(r["trace_id"])))
    clean_after()


@check
def bad_params_are_refused_before_anything_is_installed():
    code, _ = rpc_error({"module": "__main__", "method": "outer", "recorder": "fast"})
    expect(code == -32602, code)
    code, _ = rpc_error({"module": "__main__", "method": "outer", "interval": -1})
    expect(code == -32602, code)
    code, _ = rpc_error({"module": "__main__", "method": "outer", "depth": 101})
    expect(code == -32602, code)
    code, msg = rpc_error({"module": "__main__", "method": "outer", "filter": "cost > 3"})
    expect(code == -32602 and "cost" in msg, msg)
    code, _ = rpc_error({"module": "__main__", "method": "outer", "filter": "args[0] =="})
    expect(code == -32002, code)
    code, _ = rpc_error({"module": "__main__", "method": "outr"})
    expect(code == -32001, code)
    code, msg = rpc_error({"module": "__main__", "method": "outer", "recorder": "native"})
    expect(code == -32004 and "not available" in msg, msg)  # no agent library in this process
    code, _ = rpc_error({"module": "__main__", "method": "outer", "intervall": 1})
    expect(code == -32602, code)
    clean_after()


@check
def exceptions_generators_coroutines_recursion():
    r = start(method="escapes", interval=0, limit=1)
    try:
        escapes(3)
        raise Failed("escapes() did not raise")
    except ValueError as e:
        expect(str(e) == "out 3", str(e))
    root = events_of(r["trace_id"])[0]["tree"]
    expect(names(root) == ["leaf"], repr(root))
    r = start(method="gen", interval=0, limit=1)
    expect(list(gen(3)) == [1, 2, 3], "gen changed")
    root = events_of(r["trace_id"])[0]["tree"]
    expect(child(root, "leaf")["count"] == 3 and child(root, "<suspended>")["count"] == 3, repr(root))
    import asyncio

    r = start(method="coro", interval=0, limit=1)
    expect(asyncio.run(coro()) == 42, "coro changed")
    root = events_of(r["trace_id"])[0]["tree"]
    expect(root["cost_ms"] >= 4.5 and child(root, "<suspended>")["cost_ms"] >= 4, repr(root))
    expect(child(root, "leaf")["count"] == 1, repr(root))
    r = start(method="recurse", interval=0, limit=1)
    expect(recurse(4) == 4, "recurse changed")
    node, depth = events_of(r["trace_id"])[0]["tree"], 0
    while node["children"]:
        expect(names(node) == ["recurse"], repr(node))
        node, depth = node["children"][0], depth + 1
    expect(depth == 4, depth)
    clean_after()


@check
def deep_recursion_is_cut_not_broken():
    sys.setrecursionlimit(10000)
    r = start(method="recurse", interval=0, limit=1)
    expect(recurse(3000) == 3000, "recurse changed")
    ev = events_of(r["trace_id"])[0]
    depth, node = 0, ev["tree"]
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    expect(depth == fp.trace.MODEL_DEPTH, depth)
    expect(ev["tree"]["truncated"] == ["depth"], repr(ev["tree"].get("truncated")))
    json.dumps(ev)
    clean_after()


@check
def only_the_calling_thread_is_profiled():
    seen = {}
    stop_flag = []

    def other():
        while not stop_flag:
            seen["profile"] = seen.get("profile") or sys.getprofile()
            leaf(0)

    t = threading.Thread(target=other)
    t.start()
    try:
        r = start(method="outer", interval=0, limit=3)
        for _ in range(3):
            outer(50)
    finally:
        stop_flag.append(1)
        t.join()
    expect(seen.get("profile") is None, "the other thread saw %r" % seen.get("profile"))
    for ev in events_of(r["trace_id"]):
        expect(child(ev["tree"], "leaf")["count"] == 50, repr(ev["tree"]))  # none of the other thread's
    clean_after()


@check
def a_thread_with_its_own_profiler_is_left_alone():
    calls = []

    def mine(frame, event, arg):
        calls.append(event)

    r = start(method="leaf", limit=1)
    sys.setprofile(mine)
    try:
        leaf(1)
        expect(sys.getprofile() is mine, "our profiler was replaced by %r" % (sys.getprofile(),))
    finally:
        sys.setprofile(None)
    skipped = events_of(r["trace_id"], "trace/skipped")
    expect(len(skipped) == 1 and "already has a profiler" in skipped[0]["reason"], repr(skipped))
    expect(events_of(r["trace_id"]) == [] and calls, repr(calls))
    stop(r["trace_id"])
    # A profiler the traced code sets during the call stays after it.
    r = start(method="sets_own_profiler", limit=1)
    try:
        sets_own_profiler(mine)
        expect(sys.getprofile() is mine, "fp removed the profiler the traced code set: %r" % (sys.getprofile(),))
    finally:
        sys.setprofile(None)
    expect(len(events_of(r["trace_id"])) == 1, repr(EMITTED[-3:]))
    clean_after()


@check
def cancelled_mid_call_the_hook_leaves_at_the_next_event():
    r = start(method="held_until", limit=100)
    release = threading.Lock()
    release.acquire()
    gone = []
    main = threading.get_ident()

    def in_the_call():
        frame = sys._current_frames().get(main)
        # By name: on 3.8-3.11 the probe swapped held_until.__code__ for its wrapper.
        return frame is not None and frame.f_code.co_name == "held_until"

    def cancel_mid_call():
        try:
            deadline = time.monotonic() + 10
            while not in_the_call():  # bounded: the main thread enters the call at once
                if time.monotonic() > deadline:
                    return
                time.sleep(0.001)
            fp.registry.undo_client(7)  # the client died while the call runs
            gone.append(1)
        finally:
            release.release()

    t = threading.Thread(target=cancel_mid_call)
    t.start()
    held_until(release)  # inside until the client has gone
    t.join()
    expect(gone, "the main thread was never seen inside held_until")
    expect(sys.getprofile() is None, "profile after cancel: %r" % (sys.getprofile(),))
    ends = events_of(r["trace_id"], "trace/end")
    expect(ends and ends[0]["reason"] == "detached", repr(ends))
    leaf(1)
    clean_after()


@check
def an_invocation_that_ends_on_another_thread():
    r = start(method="gen", interval=0, limit=1)
    g = gen(2)
    expect(next(g) == 1, "gen changed")
    out = []
    t = threading.Thread(target=lambda: out.extend(g))
    t.start()
    t.join()
    expect(out == [2], out)
    ev = events_of(r["trace_id"])[0]
    expect(ev["tree"]["truncated"] == ["stopped"] and child(ev["tree"], "leaf")["count"] == 1, repr(ev))
    leaf(0)  # this thread's next event: the hook leaves
    expect(sys.getprofile() is None, "the hook stayed: %r" % (sys.getprofile(),))
    clean_after()


@check
def two_traces_share_one_call():
    a = start(method="outer", limit=100)
    b = start(method="outer", interval=0, limit=100)
    outer(10)
    ea, eb = events_of(a["trace_id"]), events_of(b["trace_id"])
    expect(len(ea) == 1 and len(eb) == 1, repr((ea, eb)))
    expect(child(eb[0]["tree"], "leaf")["count"] == 10 and "leaf" not in names(ea[0]["tree"]), repr((ea, eb)))
    stop(a["trace_id"])
    outer(10)
    expect(len(events_of(b["trace_id"])) == 2 and len(events_of(a["trace_id"])) == 1, "after a stopped")
    stop(b["trace_id"])
    clean_after()


def main():
    global fp
    fp = load_agent(sys.argv[1])
    for fn in CHECKS:
        try:
            fn()
            record = {"name": fn.__name__, "ok": True, "detail": ""}
        except BaseException as exc:  # noqa: B902 - every check reports
            import traceback

            record = {
                "name": fn.__name__,
                "ok": False,
                "detail": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-3000:],
            }
            try:
                fp.registry.undo_client(7)
                sys.setprofile(None)
            except BaseException:
                pass
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


# The pytest side, after the checks so that their list is complete.
if "pytest" in sys.modules:
    import pytest

    PYTHONS = _interpreters()

    @pytest.fixture(scope="module", params=PYTHONS, ids=[name for name, _ in PYTHONS])
    def results(request):
        name, path = request.param
        if path is None:
            pytest.skip("%s is not installed here" % name)
        return _run(name, path)

    @pytest.mark.parametrize("name", [fn.__name__ for fn in CHECKS])
    def test_trace_check(results, name):
        records, proc = results
        assert proc.returncode == 0, "the checks crashed:\n%s\n%s" % (proc.stdout[-3000:], proc.stderr[-3000:])
        assert proc.stderr == "", "the checks wrote to stderr:\n%s" % proc.stderr[-3000:]
        record = records.get(name)
        assert record is not None, "check %s did not run:\n%s" % (name, proc.stdout[-2000:])
        assert record["ok"], record["detail"]


if __name__ == "__main__":
    main()
