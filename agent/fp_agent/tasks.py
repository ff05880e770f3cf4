"""`stack -a`: the asyncio tasks of every event loop in every thread, taken inside the target
(tasks are Python objects: this needs the GIL). For each task its name, state, coroutine and
the chain of awaits it is suspended in (cr_await / gi_yieldfrom / ag_await), outermost first.

Reads asyncio's own registries (3.8 - 3.11: tasks._all_tasks; 3.12+: tasks._scheduled_tasks
and tasks._eager_tasks) and never imports asyncio for a program that did not.
"""

import os
import sys

from .params import check_names

# Imported with this module, under the import lock, when its first request comes (loading.py):
# the functions below import them where they use them.
LAZY_IMPORTS = ("linecache",)

_MAX_CHAIN = 64  # awaits followed per task (a cycle or a very deep chain stops here)
_MAX_TEXT = 200  # characters of a repr shown
_RETRIES = 1000  # as asyncio.all_tasks: a WeakSet may change while it is copied


def stack_async(client_id, params):
    check_names(params, ())
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return {"pid": os.getpid(), "asyncio": False, "loops": [], "tasks": 0}
    tasks = _all_tasks(sys.modules.get("asyncio.tasks"))
    threads = _thread_names()
    loops = {}
    order = []
    listed = 0
    for task in tasks:
        loop = _attribute(task, "_loop", None)
        key = id(loop)
        if key not in loops:
            loops[key] = _loop(asyncio, loop, threads)
            order.append(key)
        entry = _task(task, loops[key]["_current"])
        if entry["state"] in _DONE and not (entry["state"] == "FAILED" and _attribute(task, "_log_traceback", False)):
            # Done: it runs nothing, and stays in asyncio's registry only until collected. A
            # failed task whose exception nobody retrieved stays listed: nothing else shows it.
            loops[key]["done"] += 1
            continue
        loops[key]["tasks"].append(entry)
        listed += 1
    result = []
    for key in order:
        entry = loops[key]
        del entry["_current"]
        entry["tasks"].sort(key=lambda t: t["name"])
        result.append(entry)
    return {"pid": os.getpid(), "asyncio": True, "loops": result, "tasks": listed, "done": len(tasks) - listed}


_DONE = ("FINISHED", "CANCELLED", "FAILED")


def _all_tasks(module):
    """Every task asyncio knows, done ones included (they stay until collected)."""
    if module is None:
        return []
    sources = [getattr(module, name, None) for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks")]
    found = []
    seen = set()
    for source in sources:
        if source is None:
            continue
        for task in _copy(source):
            if id(task) not in seen:
                seen.add(id(task))
                found.append(task)
    return found


def _copy(collection):
    for _ in range(_RETRIES):
        try:
            return list(collection)
        except RuntimeError:  # changed size during iteration (another thread)
            continue
    return []


def _loop(asyncio, loop, threads):
    ident = _attribute(loop, "_thread_id", None)  # set while run_forever runs
    current = None
    try:
        current = asyncio.tasks.current_task(loop)
    except BaseException:
        pass
    return {
        "loop": "%s at %#x" % (type(loop).__name__, id(loop)),
        "running": bool(_call(loop, "is_running", False)),
        "closed": bool(_call(loop, "is_closed", False)),
        "thread_ident": ident,
        "thread": threads.get(ident) if ident is not None else None,
        "tasks": [],
        "done": 0,
        "_current": current,
    }


def _task(task, current):
    coro = _call(task, "get_coro", None) or _attribute(task, "_coro", None)
    waiter = _attribute(task, "_fut_waiter", None)
    state, exception = _state(task, waiter)
    return {
        "name": str(_call(task, "get_name", "") or ""),
        "state": state,
        "current": task is current,
        "coroutine": _qualname(coro),
        "awaits": _chain(coro),
        "waiting_on": _describe_future(waiter) if waiter is not None else None,
        "exception": exception,
    }


def _state(task, waiter):
    """PENDING, WAITING (pending and suspended on a future), FINISHED, CANCELLED, FAILED."""
    raw = _attribute(task, "_state", "PENDING")
    if raw == "CANCELLED":
        return "CANCELLED", None
    if raw == "FINISHED":
        exc = _attribute(task, "_exception", None)
        if exc is not None:
            return "FAILED", _short("%s: %s" % (type(exc).__name__, _safe_str(exc)))
        return "FINISHED", None
    return ("WAITING" if waiter is not None else "PENDING"), None


def _chain(coro):
    """The coroutine, then what it awaits, and so on: outermost first, like a traceback."""
    chain = []
    seen = set()
    while coro is not None and len(chain) < _MAX_CHAIN and id(coro) not in seen:
        seen.add(id(coro))
        frame, code, following, kind = _parts(coro)
        if code is None:
            break  # a future or any other awaitable: reported as waiting_on
        line = frame.f_lineno if frame is not None else code.co_firstlineno
        chain.append(
            {
                "kind": kind,
                "function": _qualname(coro) or code.co_name,
                "file": code.co_filename,
                "line": line or 0,
                "source": _source(code.co_filename, line),
            }
        )
        coro = following
    return chain


def _parts(obj):
    """(frame, code, what it awaits, kind) of a coroutine, generator or async generator."""
    for frame_name, code_name, next_name, kind in (
        ("cr_frame", "cr_code", "cr_await", "coroutine"),
        ("gi_frame", "gi_code", "gi_yieldfrom", "generator"),
        ("ag_frame", "ag_code", "ag_await", "async_generator"),
    ):
        code = _attribute(obj, code_name, None)
        if code is not None:
            return _attribute(obj, frame_name, None), code, _attribute(obj, next_name, None), kind
    return None, None, None, None


def _describe_future(future):
    """The future a task waits on, without calling its repr (callbacks' reprs are user code)."""
    kind = type(future).__name__
    name = _call(future, "get_name", None)
    state = _attribute(future, "_state", None)
    text = kind
    if name:
        text += " %s" % name
    if state:
        text += " (%s)" % str(state).lower()
    return text


def _thread_names():
    threading = sys.modules.get("threading")
    if threading is None:
        return {}
    try:
        return dict((ident, thread.name) for ident, thread in list(threading._active.items()))
    except BaseException:
        return {}


def _qualname(obj):
    name = _attribute(obj, "__qualname__", None)
    return name if isinstance(name, str) else None


def _source(filename, line):
    if not line:
        return ""
    try:
        import linecache

        # No module_globals: a custom loader's get_source would run target code.
        return linecache.getline(filename, line).strip()
    except BaseException:
        return ""


def _safe_str(obj):
    try:
        return str(obj)
    except BaseException:
        return "<str() failed>"


def _short(text):
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _attribute(obj, name, default):
    try:
        return getattr(obj, name)
    except BaseException:
        return default


def _call(obj, name, default):
    try:
        return getattr(obj, name)()
    except BaseException:
        return default
