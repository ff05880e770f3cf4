"""In-process checks of fp_agent.instrument and locate.locate_function, run by
tests/agent/test_instrument.py under each interpreter. Loads the agent package as the native
side does, runs every check, prints one JSON line per check: {"name", "ok", "detail"}.

usage: python instrument_check.py AGENT_DIR [NAME ...]
"""

import asyncio
import importlib.util
import itertools
import json
import os
import sys
import threading
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import instrument_cases as cases  # noqa: E402

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def load_agent(agent_dir):
    spec = importlib.util.spec_from_file_location("fp_agent", os.path.join(agent_dir, "__init__.py"))
    package = importlib.util.module_from_spec(spec)
    sys.modules["fp_agent"] = package
    spec.loader.exec_module(package)
    import fp_agent.events
    import fp_agent.instrument
    import fp_agent.locate
    import fp_agent.registry

    return fp_agent


class Recorder(object):
    """A probe that records what it sees."""

    def __init__(self, skip=None):
        self.calls = []
        self.skip = skip

    # instrument.Probe's interface, without inheriting (duck typing must be enough)
    needs_args = True

    def enter(self, target, args, kwargs):
        if self.skip is not None and self.skip(target, args, kwargs):
            return agent.instrument.NO_OBSERVE
        return (target, args, kwargs)

    def exit(self, token, return_obj, exception, cost_ns):
        self.calls.append(
            {
                "target": token[0],
                "args": token[1],
                "kwargs": token[2],
                "ret": return_obj,
                "exc": exception,
                "cost": cost_ns,
            }
        )


def watch(module, cls, method, nested=None, probe=None, client=1):
    probe = probe or Recorder()
    loc = agent.locate.locate_function(module, cls, method, nested)
    install_id = agent.instrument.install(client, loc, probe, "test")
    return probe, install_id, loc


def pristine(*functions):
    """Problems: functions whose __code__ is not the original, monitoring left behind."""
    problems = []
    for f, code in functions:
        if f.__code__ is not code:
            problems.append("%s.__code__ is not the original" % f.__qualname__)
    if sys.version_info >= (3, 12):
        for tool in range(6):
            if tool in TOOLS_BEFORE:
                continue
            if sys.monitoring.get_tool(tool) is not None:
                problems.append("tool %d still in use (%s)" % (tool, sys.monitoring.get_tool(tool)))
            if sys.monitoring.get_events(tool):
                problems.append("tool %d has global events" % tool)
            for _f, code in functions:
                if sys.monitoring.get_local_events(tool, code):
                    problems.append("tool %d has local events on %s" % (tool, code.co_name))
    if agent.instrument.sites():
        problems.append("sites left: %s" % agent.instrument.sites())
    return problems


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


# ---------------------------------------------------------------------------------------------


@check
def plain_function_args_and_restore():
    f = cases.plain
    code = f.__code__
    alias = cases.plain  # a `from m import f` reference taken before
    p, iid, loc = watch("instrument_cases", None, "plain")
    expect(f is cases.plain, "identity")
    r1 = alias(1)
    r2 = cases.plain(1, 5, 6, 7, c=8, z=9)
    expect(r1 == (1, 2, (), 3, {}), r1)
    expect(r2 == (1, 5, (6, 7), 8, {"z": 9}), r2)
    expect(len(p.calls) == 2, p.calls)
    c = p.calls[1]
    expect(c["target"] is None and c["args"] == (1, 5, 6, 7) and c["kwargs"] == {"c": 8, "z": 9}, c)
    expect(c["ret"] == r2 and c["exc"] is None and c["cost"] >= 0, c)
    expect(p.calls[0]["args"] == (1, 2) and p.calls[0]["kwargs"] == {"c": 3}, p.calls[0])
    expect(agent.instrument.uninstall(iid) is None, "uninstall")
    alias(1)
    expect(len(p.calls) == 2, "observed after removal")
    expect(not pristine((f, code)), pristine((f, code)))
    return loc.to_json()


@check
def exception_propagates_unchanged():
    f = cases.boom
    code = f.__code__

    def caller():
        return cases.boom(1)

    def capture():
        try:
            caller()
        except ValueError as e:
            return e, traceback.extract_tb(e.__traceback__)

    e0, tb0 = capture()
    p, iid, _ = watch("instrument_cases", None, "boom")
    e1, tb1 = capture()
    expect(type(e1) is ValueError and str(e1) == "boom 1", e1)
    expect(p.calls and p.calls[0]["exc"] is e1, p.calls)
    lines0 = [(t.name, t.lineno) for t in tb0]
    lines1 = [(t.name, t.lineno) for t in tb1]
    agent.instrument.uninstall(iid)
    expect(not pristine((f, code)), pristine((f, code)))
    # The innermost frame (the raise) and the caller's frames are the same; before 3.11 a
    # wrapper entry (the function's def line) may appear between caller and function without
    # the agent library (as here), which alone can take it out (tests/integration check that).
    expect(lines1[-1] == lines0[-1] and lines1[:2] == lines0[:2], (lines0, lines1))
    if sys.version_info >= (3, 11):
        expect(lines0 == lines1, (lines0, lines1))
    else:
        expect(len(lines1) - len(lines0) in (0, 1), (lines0, lines1))
    return {"without": lines0, "with": lines1}


@check
def recursion_and_threads():
    f = cases.recurse
    code = f.__code__
    p, iid, _ = watch("instrument_cases", None, "recurse")
    expect(cases.recurse(5) == 15, "value")
    args = [c["args"][0] for c in p.calls]
    expect(args == [0, 1, 2, 3, 4, 5], args)
    rets = [c["ret"] for c in p.calls]
    expect(rets == [0, 1, 3, 6, 10, 15], rets)
    del p.calls[:]
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(cases.recurse(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expect(sorted(results) == sorted(i * (i + 1) // 2 for i in range(8)), results)
    expect(len(p.calls) == sum(i + 1 for i in range(8)), len(p.calls))
    for c in p.calls:
        n = c["args"][0]
        expect(c["ret"] == n * (n + 1) // 2, c)
    agent.instrument.uninstall(iid)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def posonly_and_function_attributes():
    p, iid, _ = watch("instrument_cases", None, "posonly")
    expect(cases.posonly(5, b=2) == 3, "posonly")
    expect(p.calls[0]["args"] == (5, 2), p.calls)
    agent.instrument.uninstall(iid)
    p, iid, _ = watch("instrument_cases", None, "counter")
    n = cases.counter()
    expect(cases.counter() == n + 1, "function attribute through its global name")
    agent.instrument.uninstall(iid)


@check
def methods_classmethod_staticmethod_property():
    shop = cases.Shop()
    bound = shop.buy  # a bound method taken before
    codes = [(cases.Shop.__dict__["buy"], cases.Shop.__dict__["buy"].__code__)]
    p1, i1, l1 = watch("instrument_cases", "Shop", "buy")
    expect(bound("pen", 2) == "pen x2", "bound")
    expect(p1.calls[0]["target"] is shop and p1.calls[0]["args"] == ("pen", 2), p1.calls)
    p2, i2, l2 = watch("instrument_cases", "Shop", "make")
    made = cases.Shop.make(2)
    expect(len(made) == 2 and p2.calls[0]["target"] is cases.Shop and p2.calls[0]["args"] == (2,), p2.calls)
    expect(l2.kind == "classmethod", l2.kind)
    p3, i3, l3 = watch("instrument_cases", "Shop", "tax")
    expect(shop.tax(10) == 2.0 and cases.Shop.tax(5) == 1.0, "static")
    expect(p3.calls[0]["target"] is None and p3.calls[0]["args"] == (10,), p3.calls)
    p4, i4, l4 = watch("instrument_cases", "Shop", "total")
    expect(shop.total == 4, shop.total)
    expect(p4.calls[0]["target"] is shop and p4.calls[0]["ret"] == 4, p4.calls)
    expect(l4.kind == "property" and "getter" in (l4.note or ""), l4.to_json())
    p5, i5, l5 = watch("instrument_cases", "Shop", "supered")
    expect(shop.supered(7) == ("base", 7), "zero-argument super() still works")
    expect(p5.calls[0]["ret"] == ("base", 7), p5.calls)
    p6, i6, l6 = watch("instrument_cases", "Shop", "inherited")
    expect(shop.inherited(1) == ("base", 1) and p6.calls, p6.calls)
    expect("inherited" in (l6.note or ""), l6.note)
    for i in (i1, i2, i3, i4, i5, i6):
        agent.instrument.uninstall(i)
    expect(not pristine(*codes), pristine(*codes))


@check
def generators():
    f = cases.gen
    code = f.__code__
    p, iid, _ = watch("instrument_cases", None, "gen")
    g = cases.gen(3)
    expect(next(g) == 0 and g.send(5) == 1 and g.send(6) == 2, "send")
    try:
        g.send(7)
        raise AssertionError("no StopIteration")
    except StopIteration as stop:
        expect(stop.value == 18, stop.value)
    expect(len(p.calls) == 1 and p.calls[0]["ret"] == 18 and p.calls[0]["args"] == (3,), p.calls)
    expect(list(cases.gen(2)) == [0, 1], "list")
    g = cases.gen(5)
    next(g)
    try:
        g.throw(IndexError("in"))
    except IndexError:
        pass
    expect(isinstance(p.calls[-1]["exc"], IndexError), p.calls[-1])
    p2, i2, _ = watch("instrument_cases", None, "gen_raises")
    try:
        list(cases.gen_raises(4))
    except KeyError as e:
        expect(p2.calls[0]["exc"] is e, p2.calls)
    agent.instrument.uninstall(iid)
    agent.instrument.uninstall(i2)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def coroutines():
    f = cases.coro
    code = f.__code__
    p, iid, _ = watch("instrument_cases", None, "coro")
    p2, i2, _ = watch("instrument_cases", None, "coro_raises")
    p3, i3, _ = watch("instrument_cases", "Shop", "fetch")
    p4, i4, _ = watch("instrument_cases", None, "old_style")
    shop = cases.Shop()

    async def main():
        import inspect

        expect(inspect.iscoroutinefunction(cases.coro), "still a coroutine function")
        a, b = await asyncio.gather(cases.coro(2, 0.02), cases.coro(3, 0.01))
        expect((a, b) == (4, 6), (a, b))
        try:
            await cases.coro_raises(1)
        except RuntimeError as e:
            expect(p2.calls[0]["exc"] is e, p2.calls)
        expect(await shop.fetch("k") == {"key": "k"}, "method")
        expect(await cases.old_style() == "old", "types.coroutine")

    asyncio.run(main())
    rets = sorted(c["ret"] for c in p.calls)
    expect(rets == [4, 6], p.calls)
    slow = [c for c in p.calls if c["ret"] == 4][0]
    expect(slow["cost"] >= 15e6, "cost covers the awaited time: %s" % slow["cost"])
    expect(p3.calls[0]["target"] is shop and p3.calls[0]["ret"] == {"key": "k"}, p3.calls)
    expect(p4.calls and p4.calls[0]["ret"] == "old", p4.calls)
    for i in (iid, i2, i3, i4):
        agent.instrument.uninstall(i)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def wraps_decorated():
    inner = cases.decorated.__wrapped__
    code = inner.__code__
    outer_code = cases.decorated.__code__
    p, iid, loc = watch("instrument_cases", None, "decorated")
    expect(cases.decorated(1) == 101, "value")
    expect(p.calls[0]["args"] == (1,), p.calls)
    expect("wrapped function" in loc.note, loc.note)
    expect(cases.decorated.__code__ is outer_code, "the decorator's wrapper is not touched")
    agent.instrument.uninstall(iid)
    expect(not pristine((inner, code)), pristine((inner, code)))
    return loc.note


@check
def nested_functions():
    f = cases.outer
    code = f.__code__
    early = []
    p, iid, loc = watch("instrument_cases", None, "outer", "inner")
    expect(cases.outer(2) == 8 and cases.outer(5) == 20, "value")
    expect([(c["args"], c["ret"]) for c in p.calls] == [((3,), 6), ((3,), 15)], p.calls)
    p2, i2, _ = watch("instrument_cases", "Shop", "with_nested", "helper")
    expect(cases.Shop().with_nested(10) == 13, "closure over self and x")
    expect(p2.calls[0]["ret"] == 13, p2.calls)
    p3, i3, _ = watch("instrument_cases", None, "outer_nofree", "lonely")
    expect(cases.outer_nofree() == 2 and p3.calls[0]["ret"] == 2, p3.calls)
    for i in (iid, i2, i3):
        agent.instrument.uninstall(i)
    expect(not pristine((f, code)), pristine((f, code)))
    nested_code = [c for c in code.co_consts if getattr(c, "co_name", "") == "inner"][0]
    expect(code.co_consts[code.co_consts.index(nested_code)] is nested_code, "nested code object restored")
    del early
    return loc.to_json()


@check
def two_probes_removed_independently():
    f = cases.plain
    code = f.__code__
    p1, i1, _ = watch("instrument_cases", None, "plain", client=1)
    p2, i2, _ = watch("instrument_cases", None, "plain", client=2)
    cases.plain(1)
    expect(len(p1.calls) == 1 and len(p2.calls) == 1, (p1.calls, p2.calls))
    agent.registry.undo_client(1)  # client 1 detached
    cases.plain(2)
    expect(len(p1.calls) == 1 and len(p2.calls) == 2, (p1.calls, p2.calls))
    expect(f.__code__ is not code or sys.version_info >= (3, 12), "still instrumented")
    agent.instrument.uninstall(i2)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def no_observe_and_self_removal():
    f = cases.boom
    code = f.__code__
    agent_ns = {}

    class Limited(Recorder):
        def exit(self, token, return_obj, exception, cost_ns):
            Recorder.exit(self, token, return_obj, exception, cost_ns)
            if len(self.calls) == 2:
                agent.instrument.uninstall(agent_ns["id"])

    p = Limited(skip=lambda t, a, k: a[0] == 0)
    loc = agent.locate.locate_function("instrument_cases", None, "boom")
    agent_ns["id"] = agent.instrument.install(1, loc, p, "test")
    for i in (0, 0, 0, 0, 0, 0):
        cases.boom(i)
    expect(p.calls == [], p.calls)
    for i in (0, 1, 0, 2, 3, 4):
        try:
            cases.boom(i)
        except ValueError:
            pass
    expect([c["args"][0] for c in p.calls] == [1, 2], p.calls)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def probe_code_is_not_observed():
    f = cases.recurse
    code = f.__code__

    class Reentrant(Recorder):
        def exit(self, token, return_obj, exception, cost_ns):
            Recorder.exit(self, token, return_obj, exception, cost_ns)
            cases.recurse(1)  # a user expression calling the watched function

    p = Reentrant()
    loc = agent.locate.locate_function("instrument_cases", None, "recurse")
    iid = agent.instrument.install(1, loc, p, "test")
    expect(cases.recurse(2) == 3, "value")
    expect(len(p.calls) == 3, [c["args"] for c in p.calls])
    with agent.instrument.suppressed():
        cases.recurse(3)
    expect(len(p.calls) == 3, "suppressed")
    agent.instrument.uninstall(iid)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def precheck_verdict_reaches_enter():
    """enter() hears checked=True when the only probe's precheck accepted the call (its filter is
    not evaluated again); with two probes, or a precheck that raised, it does not."""

    class Filtered(Recorder):
        def __init__(self, fail=False):
            Recorder.__init__(self)
            self.prechecks = 0
            self.checked = []
            self.fail = fail

        def precheck(self, bind):
            def pre(all_args, kwargs):
                self.prechecks += 1
                if self.fail:
                    raise ValueError("filter bug")
                return all_args[0] > 0

            return pre

        def enter(self, target, args, kwargs, checked=False):
            self.checked.append(checked)
            return Recorder.enter(self, target, args, kwargs)

    f = cases.plain
    code = f.__code__
    p, i1, _ = watch("instrument_cases", None, "plain", probe=Filtered())
    for a in (1, -1, 2):
        cases.plain(a)
    expect(p.prechecks == 3 and p.checked == [True, True], (p.prechecks, p.checked))
    expect([c["args"][0] for c in p.calls] == [1, 2], p.calls)
    q, i2, _ = watch("instrument_cases", None, "plain", probe=Filtered(), client=2)
    cases.plain(3)
    expect(p.checked[2:] == [False] and q.checked == [False], (p.checked, q.checked))
    agent.instrument.uninstall(i2)
    cases.plain(4)
    expect(p.checked[3:] == [True], p.checked)
    agent.instrument.uninstall(i1)
    r, i3, _ = watch("instrument_cases", None, "plain", probe=Filtered(fail=True))
    cases.plain(5)
    expect(r.prechecks == 1 and r.checked == [False] and len(r.calls) == 1, (r.prechecks, r.checked))
    agent.instrument.uninstall(i3)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def probe_errors_are_swallowed():
    class Broken(Recorder):
        def enter(self, target, args, kwargs):
            raise ZeroDivisionError("probe bug")

    class BrokenExit(Recorder):
        def exit(self, *a):
            raise ZeroDivisionError("probe bug")

    loc = agent.locate.locate_function("instrument_cases", None, "plain")
    i1 = agent.instrument.install(1, loc, Broken(), "test")
    i2 = agent.instrument.install(1, loc, BrokenExit(), "test")
    expect(cases.plain(1) == (1, 2, (), 3, {}), "value")
    agent.instrument.uninstall(i1)
    agent.instrument.uninstall(i2)


@check
def refusals_and_errors():
    from fp_agent.errors import AgentError

    out = {}
    for args in [
        ("instrument_cases", None, "builtin_alias"),
        ("instrument_cases", None, "partial_f"),
        ("instrument_cases", None, "CALLABLE"),
        ("instrument_cases", None, "Shop"),
        ("instrument_cases", None, "THIS"),
        ("instrument_cases", None, "plian"),
        ("instrument_cases", "Shpo", "buy"),
        ("instrument_casez", None, "plain"),
        ("instrument_cases", None, "outer", "innr"),
    ]:
        try:
            agent.locate.locate_function(*args)
            raise AssertionError("%s located" % (args,))
        except AgentError as e:
            out[" ".join(a for a in args if a)] = [
                e.code,
                e.message,
                (e.data or {}).get("missing"),
                (e.data or {}).get("suggestions"),
            ]
    expect(out["instrument_cases plian"][2] == "method" and "plain" in out["instrument_cases plian"][3], out)
    expect(out["instrument_cases Shpo buy"][2] == "class" and "Shop" in out["instrument_cases Shpo buy"][3], out)
    expect(out["instrument_casez plain"][2] == "module", out)
    expect(out["instrument_cases outer innr"][2] == "nested" and "inner" in out["instrument_cases outer innr"][3], out)
    expect("builtin" in out["instrument_cases builtin_alias"][1], out)
    loc = agent.locate.locate_function("instrument_cases", None, "joined")
    expect("imported into" in loc.note, loc.note)
    if sys.version_info < (3, 12):
        loc = agent.locate.locate_function("instrument_cases", None, "agen")
        try:
            agent.instrument.install(1, loc, Recorder(), "test")
            raise AssertionError("async generator instrumented on < 3.12")
        except AgentError as e:
            out["agen"] = e.message
        expect(not agent.instrument.sites(), agent.instrument.sites())
    return out


@check
def async_generator_on_312():
    if sys.version_info < (3, 12):
        return "skipped before 3.12"
    p, iid, _ = watch("instrument_cases", None, "agen")

    async def main():
        return [i async for i in cases.agen(3)]

    expect(asyncio.run(main()) == [0, 1, 2], "values")
    expect(len(p.calls) == 1 and p.calls[0]["ret"] is None, p.calls)
    agent.instrument.uninstall(iid)


@check
def nested_and_outer_conflict_before_312():
    from fp_agent.errors import AgentError

    p, i1, _ = watch("instrument_cases", None, "outer", "inner")
    try:
        i2 = watch("instrument_cases", None, "outer")[1]
        conflict = None
        expect(sys.version_info >= (3, 12), "outer and nested at once before 3.12")
        expect(cases.outer(2) == 8, "both observed")
        agent.instrument.uninstall(i2)
    except AgentError as e:
        conflict = e.message
        expect(sys.version_info < (3, 12), e.message)
    agent.instrument.uninstall(i1)
    expect(not agent.instrument.sites(), agent.instrument.sites())
    return conflict


@check
def shutdown_restores_everything():
    funcs = [
        (cases.plain, cases.plain.__code__),
        (cases.outer, cases.outer.__code__),
        (cases.Shop.__dict__["buy"], cases.Shop.__dict__["buy"].__code__),
    ]
    watch("instrument_cases", None, "plain", client=5)
    watch("instrument_cases", None, "outer", "inner", client=6)
    watch("instrument_cases", "Shop", "buy", client=6)
    agent.registry.undo_all()
    expect(not pristine(*funcs), pristine(*funcs))


# ---------------------------------------------------------------------------------------------
# watch and tt through dispatch.handle, with the events captured


class Client(object):
    """Calls dispatch.handle as client `cid` and captures the notifications sent to it."""

    def __init__(self, cid):
        self.cid = cid
        self.notes = []
        self.ids = itertools.count(1)

    def call(self, rpc_method, **params):
        body = json.dumps({"jsonrpc": "2.0", "id": next(self.ids), "method": rpc_method, "params": params})
        reply = json.loads(agent.dispatch.handle(self.cid, body))
        if "error" in reply:
            raise RuntimeError(json.dumps(reply["error"]))
        return reply["result"]

    def error(self, rpc_method, **params):
        body = json.dumps({"jsonrpc": "2.0", "id": next(self.ids), "method": rpc_method, "params": params})
        reply = json.loads(agent.dispatch.handle(self.cid, body))
        expect("error" in reply, reply)
        return reply["error"]

    def of(self, method):
        return [n["params"] for n in self.notes if n["method"] == method]


_clients = {}


def _emit(cid, text):
    client = _clients.get(cid)
    if client is None:
        return False
    client.notes.append(json.loads(text))
    return True


def client(cid):
    c = Client(cid)
    _clients[cid] = c
    return c


@check
def watch_through_dispatch():
    c = client(11)
    f = cases.Shop.__dict__["buy"]
    code = f.__code__
    r = c.call(
        "watch.start",
        module="instrument_cases",
        **{"class": "Shop"},
        method="buy",
        expr="args, kwargs, target.sold, return_obj",
        filter="args[0] != 'skip'",
        limit=3,
        depth=2,
    )
    expect(r["exprs"] == ["args", "kwargs", "target.sold", "return_obj"] and r["filter_at"] == "call", r)
    expect(r["stream"] == {"id_key": "watch_id", "id": r["watch_id"], "end": "watch/end", "stop": "watch.stop"}, r)
    shop = cases.Shop()
    for item in ("a", "skip", "b", "c", "d"):
        shop.buy(item, qty=2)
    ev = c.of("watch/event")
    expect(len(ev) == 3, ev)
    expect(ev[0]["values"][0]["value"]["repr"] == "('a', 2)", ev[0])
    expect(ev[0]["values"][2]["value"]["repr"] == "2" and ev[0]["values"][3]["value"]["repr"] == "'a x2'", ev[0])
    expect(ev[2]["values"][0]["value"]["repr"] == "('c', 2)" and ev[2]["index"] == 3, ev[2])
    end = c.of("watch/end")
    expect(
        end
        == [
            {
                "watch_id": r["watch_id"],
                "reason": "limit",
                "count": 3,
                "dropped": 0,
                "expr_errors": 0,
                "filter_errors": 0,
            }
        ],
        end,
    )
    expect(not pristine((f, code)), pristine((f, code)))
    # -e: only calls that raised, `exception` in scope; an expression that raises is reported
    r = c.call(
        "watch.start",
        module="instrument_cases",
        method="boom",
        exceptions=True,
        expr="type(exception).__name__, 1/0",
        limit=2,
    )
    for i in (0, 1, 0, 2):
        try:
            cases.boom(i)
        except ValueError:
            pass
    ev = [e for e in c.of("watch/event") if e["watch_id"] == r["watch_id"]]
    expect(len(ev) == 2 and ev[0]["values"][0]["value"]["repr"] == "'ValueError'", ev)
    expect("ZeroDivisionError" in ev[0]["values"][1]["error"] and "1/0" in ev[0]["expr_error"], ev[0])
    expect(ev[0]["exception"]["type"] == "ValueError" and "boom 1" in ev[0]["exception"]["traceback"], ev[0])
    expect("instrument_cases.py" in ev[0]["exception"]["traceback"], ev[0])
    # a syntax error installs nothing; unknown names say which part
    err = c.error("watch.start", module="instrument_cases", method="plain", expr="args[")
    expect(err["code"] == -32002 and err["data"]["stage"] == "compile", err)
    err = c.error("watch.start", module="instrument_cases", method="plain", filter="cost >")
    expect(err["code"] == -32002, err)
    err = c.error("watch.start", module="instrument_cases", method="plian")
    expect(err["data"]["missing"] == "method" and "plain" in err["data"]["suggestions"], err)
    expect(not agent.instrument.sites(), agent.instrument.sites())
    # stop by request; and a filter on cost (evaluated when the call returns)
    r = c.call(
        "watch.start",
        module="instrument_cases",
        method="plain",
        filter="cost >= 0 and return_obj[0] == 7",
        expr="return_obj",
    )
    expect(r["filter_at"] == "return", r)
    cases.plain(1)
    cases.plain(7)
    stopped = c.call("watch.stop", watch_id=r["watch_id"])
    expect(stopped["stopped"][0]["count"] == 1, stopped)
    expect(c.of("watch/end")[-1]["reason"] == "stopped", c.of("watch/end"))
    expect(not pristine((f, code)), pristine((f, code)))
    # raw and verbose
    r = c.call("watch.start", module="instrument_cases", method="plain", expr="list(range(30))", raw=True, limit=1)
    cases.plain(1)
    v = [e for e in c.of("watch/event") if e["watch_id"] == r["watch_id"]][0]["values"][0]["value"]
    expect(set(v) == {"type", "repr"} and v["repr"].endswith("29]"), v)
    r = c.call("watch.start", module="instrument_cases", method="plain", expr="list(range(30))", verbose=True, limit=1)
    cases.plain(1)
    v = [e for e in c.of("watch/event") if e["watch_id"] == r["watch_id"]][0]["values"][0]["value"]
    expect(len(v["children"]) == 30, v)
    # detach removes the probe (registry undo)
    r = c.call("watch.start", module="instrument_cases", method="plain")
    agent.dispatch.client_gone(11)
    expect(not pristine((f, code)), pristine((f, code)))
    return r["located"]


@check
def tt_through_dispatch():
    c = client(12)
    c.call("tt.delete", all=True)
    c.call("tt.start", module="instrument_cases", **{"class": "Shop"}, method="buy", limit=3)
    shop = cases.Shop()
    basket = ["x"]
    shop.buy(basket, qty=1)
    shop.buy("y", qty=2)
    shop.buy("z")
    shop.buy("w")
    recs = c.of("tt/record")
    expect([x["index"] for x in recs] == [1000, 1001, 1002], recs)
    expect(c.of("tt/end")[0]["reason"] == "limit", c.of("tt/end"))
    listed = c.call("tt.list")
    expect([x["index"] for x in listed["records"]] == [1000, 1001, 1002], listed)
    expect(c.call("tt.list", method="instrument_cases.Shop.buy")["records"], "filter by method")
    expect(not c.call("tt.list", method="instrument_cases.None.plain")["records"], "other method")
    basket.append("later")  # kept by reference: the mutation shows
    shown = c.call("tt.show", index=1000, depth=2)
    args = [v for v in shown["values"] if v["expr"] == "args"][0]["value"]
    expect("later" in args["repr"], shown)
    target = [v for v in shown["values"] if v["expr"] == "target"][0]["value"]
    expect(target["type"] == "instrument_cases.Shop", target)
    replayed = c.call("tt.replay", index=1001)
    expect(replayed["index"] == 1003 and replayed["replay_of"] == 1001, replayed)
    expect([v for v in replayed["values"] if v["expr"] == "return_obj"][0]["value"]["repr"] == "'y x2'", replayed)
    expect(shop.sold == 1 + 2 + 1 + 1 + 2, shop.sold)
    err = c.error("tt.show", index=999)
    expect(err["data"]["missing"] == "record", err)
    # --copy: later mutation does not show
    c.call("tt.start", module="instrument_cases", method="plain", copy=True, limit=1)
    data = {"k": [1]}
    cases.plain(data)
    data["k"].append(2)
    idx = c.of("tt/record")[-1]["index"]
    shown = c.call("tt.show", index=idx, depth=3)
    args = [v for v in shown["values"] if v["expr"] == "args"][0]["value"]
    expect("[1, 2]" not in args["repr"] and shown["copied"], shown)
    # exceptions recorded; a coroutine replayed
    c.call("tt.start", module="instrument_cases", method="boom", limit=1)
    try:
        cases.boom(3)
    except ValueError:
        pass
    idx = c.of("tt/record")[-1]["index"]
    shown = c.call("tt.show", index=idx)
    expect(shown["outcome"] == "raised" and shown["exception"]["type"] == "ValueError", shown)
    replayed = c.call("tt.replay", index=idx)
    expect(replayed["outcome"] == "raised", replayed)
    c.call("tt.start", module="instrument_cases", method="coro", limit=1)
    asyncio.run(cases.coro(21))
    idx = c.of("tt/record")[-1]["index"]
    replayed = c.call("tt.replay", index=idx)
    expect([v for v in replayed["values"] if v["expr"] == "return_obj"][0]["value"]["repr"] == "42", replayed)
    err = c.error("tt.replay", index=10**6)
    deleted = c.call("tt.delete", index=1000)
    expect(deleted["deleted"] == [1000], deleted)
    expect(1000 not in [x["index"] for x in c.call("tt.list")["records"]], "deleted")
    c.call("tt.delete", all=True)
    expect(c.call("tt.list")["records"] == [], "all deleted")
    expect(not agent.instrument.sites(), agent.instrument.sites())


# ---------------------------------------------------------------------------------------------
# args, kwargs and params as filters and expressions see them (callargs), filters that raise,
# compile errors, completion


def _values(c, watch_id):
    out = []
    for e in c.of("watch/event"):
        if e["watch_id"] == watch_id:
            out.append(dict((v["expr"], v.get("value", {}).get("repr", v.get("error"))) for v in e["values"]))
    return out


@check
def arguments_seen_by_filters():
    c = client(13)
    f = cases.Cart.__dict__["total"]
    r = c.call(
        "watch.start",
        module="instrument_cases",
        **{"class": "Cart"},
        method="total",
        expr="args, kwargs, params",
        filter='kwargs.get("coupon") == "HALF"',
        limit=3,
    )
    cart = cases.Cart()
    cart.total([1, 2], coupon="HALF")  # by keyword: the seed's spelling
    cart.total([3], "HALF")  # by position
    cart.total([4])  # the default: nobody passed a coupon
    cart.total([5], coupon=None)  # the default object passed: taken as not passed
    cart.total(prices=[6], coupon="HALF")  # everything by keyword
    got = _values(c, r["watch_id"])
    expect(
        got
        == [
            {
                "args": "([1, 2], 'HALF')",
                "kwargs": "{'prices': [1, 2], 'coupon': 'HALF'}",
                "params": "{'prices': [1, 2], 'coupon': 'HALF'}",
            },
            {
                "args": "([3], 'HALF')",
                "kwargs": "{'prices': [3], 'coupon': 'HALF'}",
                "params": "{'prices': [3], 'coupon': 'HALF'}",
            },
            {
                "args": "([6], 'HALF')",
                "kwargs": "{'prices': [6], 'coupon': 'HALF'}",
                "params": "{'prices': [6], 'coupon': 'HALF'}",
            },
        ],
        got,
    )
    expect(not pristine((f, f.__code__)), pristine((f, f.__code__)))
    # a default nobody passed is never in kwargs; with extra positional arguments every
    # positional parameter was passed by position
    r = c.call("watch.start", module="instrument_cases", method="spread", expr="args, kwargs, params", limit=3)
    cases.spread(1, 2, 3, 4)
    cases.spread(1, k=5)
    cases.spread(1, 0, c=7)
    got = _values(c, r["watch_id"])
    expect(
        got[0]
        == {
            "args": "(1, 2, 3, 4)",
            "kwargs": "{}",
            "params": "{'a': 1, 'b': 2, 'rest': (3, 4), 'c': None, 'extra': {}}",
        },
        got[0],
    )
    expect(
        got[1]
        == {
            "args": "(1, 0)",
            "kwargs": "{'a': 1, 'k': 5}",
            "params": "{'a': 1, 'b': 0, 'rest': (), 'c': None, 'extra': {'k': 5}}",
        },
        got[1],
    )
    expect(got[2]["kwargs"] == "{'a': 1, 'c': 7}", got[2])
    # positional-only parameters are never in kwargs; keyword-only ones are, unless defaults
    r = c.call(
        "watch.start",
        module="instrument_cases",
        method="keywords",
        expr="args, kwargs, params",
        filter="params['d'] > 0 and kwargs['d'] == params['d']",
        limit=1,
    )
    cases.keywords(1, 2, d=0)  # rejected by the filter
    cases.keywords(1, 2, d=4)
    got = _values(c, r["watch_id"])
    expect(got == [{"args": "(1, 2)", "kwargs": "{'b': 2, 'd': 4}", "params": "{'a': 1, 'b': 2, 'c': 1, 'd': 4}"}], got)
    # tt: the same names in its filter; the record shows kwargs so; a replay calls it as recorded
    c.call("tt.delete", all=True)
    r = c.call(
        "tt.start",
        module="instrument_cases",
        **{"class": "Cart"},
        method="total",
        filter='kwargs.get("coupon") == "HALF"',
        limit=1,
    )
    cart.total([4])
    cart.total([8], coupon="HALF")
    idx = c.of("tt/record")[-1]["index"]
    shown = c.call("tt.show", index=idx)
    values = dict((v["expr"], v["value"]["repr"]) for v in shown["values"])
    expect(values["args"] == "([8], 'HALF')" and values["kwargs"] == "{'prices': [8], 'coupon': 'HALF'}", values)
    expect(shown["method"] == "instrument_cases.Cart.total", shown)
    replayed = c.call("tt.replay", index=idx)
    expect([v for v in replayed["values"] if v["expr"] == "return_obj"][0]["value"]["repr"] == "4.0", replayed)
    r = c.call("tt.start", module="instrument_cases", method="spread", limit=1)
    cases.spread(1, 2, 3)
    idx = c.of("tt/record")[-1]["index"]
    shown = c.call("tt.show", index=idx)
    expect(shown["method"] == "instrument_cases.spread", shown)  # not "instrument_cases.None.spread"
    expect(c.call("tt.list", method="instrument_cases.None.spread")["records"], "the seed's spelling of -m")
    expect(c.call("tt.list", method="instrument_cases.spread")["records"], "the shown spelling of -m")
    values = dict((v["expr"], v["value"]["repr"]) for v in shown["values"])
    expect(values["kwargs"] == "{}", values)
    # a result longer than a summary is cut, and the cut is marked
    r = c.call("tt.start", module="instrument_cases", method="plain", limit=1)
    cases.plain(list(range(100)))
    summary = c.of("tt/record")[-1]["summary"]
    expect(len(summary) == 120 and summary.endswith("..."), summary)
    c.call("tt.delete", all=True)
    expect(not agent.instrument.sites(), agent.instrument.sites())


@check
def filters_that_raise():
    c = client(14)
    f = cases.plain
    code = f.__code__
    # always raising: nothing counts, the watch ends after three identical failures, with the error
    del cases.SEEN[:]
    r = c.call(
        "watch.start", module="instrument_cases", method="plain", filter="SEEN.append(args[0]) or args[0].x", limit=2
    )
    for i in range(6):
        cases.plain(i)
    expect(_values(c, r["watch_id"]) == [], c.notes)
    end = [e for e in c.of("watch/end") if e["watch_id"] == r["watch_id"]]
    expect(len(end) == 1 and end[0]["reason"] == "filter_failed" and end[0]["count"] == 0, end)
    expect(end[0]["filter_errors"] == 3 and "AttributeError" in end[0]["error"], end)
    expect("args[0].x" in end[0]["error"] and "3 calls in a row" in end[0]["error"], end)
    expect(cases.SEEN == [0, 1, 2], cases.SEEN)  # evaluated once per call, even when it raised
    expect(not pristine((f, code)), pristine((f, code)))
    # failing for some calls: those are skipped and not counted toward -n
    r = c.call(
        "watch.start", module="instrument_cases", method="plain", filter="args[0]['k'] == 1", expr="args[0]", limit=3
    )
    for a in ({"k": 1}, {}, {"k": 1}, {}, {"k": 2}, {}, {"k": 1}, {"k": 1}):
        cases.plain(a)
    expect(_values(c, r["watch_id"]) == [{"args[0]": "{'k': 1}"}] * 3, _values(c, r["watch_id"]))
    end = [e for e in c.of("watch/end") if e["watch_id"] == r["watch_id"]]
    expect(end[0]["reason"] == "limit" and end[0]["filter_errors"] == 3 and "error" not in end[0], end)
    # a filter on the outcome (decided at the return) and tt's filter: the same rule
    r = c.call("watch.start", module="instrument_cases", method="plain", filter="return_obj.nope", limit=5)
    for i in range(4):
        cases.plain(i)
    end = [e for e in c.of("watch/end") if e["watch_id"] == r["watch_id"]]
    expect(end and end[0]["reason"] == "filter_failed" and end[0]["count"] == 0, end)
    r = c.call("tt.start", module="instrument_cases", method="plain", filter="1/0", limit=5)
    for i in range(4):
        cases.plain(i)
    end = [e for e in c.of("tt/end") if e["tt_id"] == r["tt_id"]]
    expect(end and end[0]["reason"] == "filter_failed" and "ZeroDivisionError" in end[0]["error"], end)
    expect(end[0]["count"] == 0 and end[0]["filter_errors"] == 3, end)
    expect(not pristine((f, code)), pristine((f, code)))


@check
def compile_errors_show_the_expression():
    c = client(15)
    for method, params in (
        ("watch.start", {"filter": "args[0] =="}),
        ("watch.start", {"expr": "a b"}),
        ("tt.start", {"filter": "kwargs.get('x'"}),
    ):
        params.update(module="instrument_cases", method="plain")
        err = c.error(method, **params)
        tb = err["data"]["traceback"]
        lines = tb.splitlines()
        expect(err["code"] == -32002 and err["data"]["stage"] == "compile", err)
        expect("Traceback" not in tb and "ast.py" not in tb and "File " not in tb, tb)
        expect(len(lines) == 3 and lines[0].strip() == (params.get("filter") or params.get("expr")), tb)
        expect(lines[1].strip().startswith("^") and lines[2].startswith("SyntaxError: "), tb)
    expect(not agent.instrument.sites(), agent.instrument.sites())


@check
def completion_of_names():
    c = client(16)

    def names(**params):
        return [(m["name"], m["kind"]) for m in c.call("complete", **params)["matches"]]

    expect(("instrument_cases", "module") in names(text="instrument_c"), names(text="instrument_c"))
    expect(all(not n.rpartition(".")[2].startswith("_") for n, _ in names(text="")), "private modules hidden")
    expect(("importlib._bootstrap", "module") in names(text="importlib._"), names(text="importlib._"))
    expect(
        names(words=["instrument_cases"], text="Car") == [("Cart", "class")],
        names(words=["instrument_cases"], text="Car"),
    )
    expect(names(words=["instrument_cases"], text="sp") == [("spread", "function")], "functions")
    expect(names(words=["instrument_cases"], text="SE") == [], "a global is not a function")
    expect(names(words=["instrument_cases"], text="SE", kind="global") == [("SEEN", "global")], "globals")
    hits = cases.Cart.hits
    expect(
        names(words=["instrument_cases", "Cart"], text="") == [("costly", "method"), ("total", "method")],
        names(words=["instrument_cases", "Cart"], text=""),
    )
    expect(
        names(words=["instrument_cases", "Cart"], text="", kind="global")
        == [("costly", "method"), ("hits", "attribute"), ("total", "method")],
        "class attributes",
    )
    expect(cases.Cart.hits == hits, "completion ran a property")
    expect(names(words=["no_such_module"], text="") == [], "an unknown module has nothing")
    many = c.call("complete", text="", limit=2)
    expect(len(many["matches"]) == 2 and many["more"] > 0, many)
    err = c.error("complete", words="instrument_cases")
    expect(err["code"] == -32602 and err["data"]["param"] == "words", err)
    err = c.error("complete", kind="method")
    expect(err["code"] == -32602 and err["data"]["param"] == "kind", err)


def main():
    global agent, TOOLS_BEFORE
    agent = load_agent(sys.argv[1])
    wanted = set(sys.argv[2:])
    TOOLS_BEFORE = set()
    if sys.version_info >= (3, 12):
        TOOLS_BEFORE = set(t for t in range(6) if sys.monitoring.get_tool(t) is not None)
    agent.events.set_emitter(_emit)
    for fn in CHECKS:
        if wanted and fn.__name__ not in wanted:
            continue
        try:
            detail = fn()
            record = {"name": fn.__name__, "ok": True, "detail": detail}
        except BaseException as e:  # noqa: B902
            record = {
                "name": fn.__name__,
                "ok": False,
                "detail": "".join(traceback.format_exception(type(e), e, e.__traceback__)),
            }
        print(json.dumps(record, default=repr))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
