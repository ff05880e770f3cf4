"""`tt`, the time tunnel: record calls of a function (target, arguments, return value or
exception, cost, thread), look at them later, replay one (see protocol/methods.md, tt.*).

- Records belong to the agent, not to a client: they outlive the client that recorded them
  (another fp can list them) until deleted (tt.delete) or the agent shuts down. The probe that
  records is the recording client's installation: it goes when that client detaches or dies.
- Arguments, target and return value are kept BY REFERENCE: a later mutation of those objects
  by the program shows in the record. With `copy`, they are deep-copied when recorded (in the
  target's thread, so it costs that call); what cannot be copied is kept by reference, and the
  record says so.
- Bounds: a recording stops after `limit` records (default 50). The store holds at most
  MAX_RECORDS records and an estimated MAX_BYTES bytes of recorded objects (a rough estimate:
  the objects' own sizes and one level of their items); a recording that would exceed either
  stops with reason "full" and the record is not kept.
- Indices start at 1000 and go up; `tt -da` empties the tunnel and, unless a recording runs,
  numbering starts at 1000 again.
"""

import _thread
import itertools
import sys
import time

from . import callargs, events, instrument, locate, render, streams
from .errors import NOT_FOUND, NOT_SUPPORTED, AgentError, exception_text
from .params import check_names, get_bool, get_expr, get_int, get_str
from .watch import (
    Filter,
    call_time,
    call_values,
    compile_expressions,
    end_summary,
    exception_model,
    expression_globals,
    stop_on_filter_error,
)

# Imported with this module, under the import lock, when its first request comes (loading.py):
# the functions below import them where they use them.
LAZY_IMPORTS = ("copy", "weakref", "traceback")

RECORD = "tt/record"
END = "tt/end"

DEFAULT_LIMIT = 50
FIRST_INDEX = 1000
MAX_RECORDS = 10000
MAX_BYTES = 256 << 20
REPLAY_TIMEOUT_S = 60.0
SUMMARY_CHARS = 120

_lock = _thread.allocate_lock()  # guards the store; taken on the target's threads, briefly
_records = {}  # index -> _Record, in index order (dicts keep insertion order)
_next_index = [FIRST_INDEX]
_bytes = [0]
_ids = itertools.count(1)
_recordings = {}  # tt id -> _Recording


class _Record(object):
    # kw: the keyword-only parameters and **extra as the engines read them (what a replay passes
    # by keyword); defaulted: the parameters that held their default when recorded (callargs),
    # left out of the kwargs shown.
    __slots__ = (
        "index",
        "time",
        "cost_ms",
        "thread",
        "method",
        "label",
        "target",
        "has_target",
        "args",
        "kw",
        "defaulted",
        "return_obj",
        "exception",
        "copied",
        "copy_note",
        "size",
        "located",
        "loop",
        "replay_of",
        "tt_id",
    )

    def summary(self):
        out = {
            "index": self.index,
            "time": self.time,
            "cost_ms": self.cost_ms,
            "thread": self.thread,
            "method": self.label,
            "outcome": "raised" if self.exception is not None else "returned",
            "summary": _short(self.exception, True) if self.exception is not None else _short(self.return_obj),
            "copied": self.copied,
        }
        if self.replay_of is not None:
            out["replay_of"] = self.replay_of
        if self.tt_id is not None:
            out["tt_id"] = self.tt_id
        return out

    def detail(self, depth, verbose, raw):
        def value(v):
            return render.render(v, depth=depth, verbose=verbose, raw=raw)

        out = self.summary()
        values = []
        if self.has_target:
            values.append({"expr": "target", "value": value(self.target)})
        values.append({"expr": "args", "value": value(self.args)})
        view = callargs.CallArgs(self.located)
        values.append({"expr": "kwargs", "value": value(view.kwargs(self.args, self.kw, self.defaulted))})
        if self.exception is None:
            values.append({"expr": "return_obj", "value": value(self.return_obj)})
        out["values"] = values
        if self.exception is not None:
            out["exception"] = exception_model(self.exception)
        if self.copy_note:
            out["copy_note"] = self.copy_note
        out["located"] = self.located.to_json()
        return out


def _short(obj, is_exception=False):
    if is_exception:
        text = exception_text(obj)
    else:
        text, cut = render.safe_repr(obj, SUMMARY_CHARS)
        if cut:  # marked, so that a cut value is never read as the whole one
            return text[: SUMMARY_CHARS - 3] + "..."
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def _rough_size(obj):
    """The object's size plus one level of its items (a bound, not an exact figure)."""
    size = sys.getsizeof(obj, 64)
    items = None
    if isinstance(obj, dict):
        items = itertools.chain.from_iterable(itertools.islice(dict.items(obj), 100))
        count = 2 * len(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = itertools.islice(iter(obj), 200)
        count = len(obj)
    else:
        namespace = getattr(obj, "__dict__", None)
        if isinstance(namespace, dict):
            items = itertools.islice(dict.values(namespace), 200)
            count = len(namespace)
    if items is not None and count:
        seen = 0
        total = 0
        for item in items:
            seen += 1
            total += sys.getsizeof(item, 64)
        if seen:
            size += total * count // seen
    return size


def _copy(obj):
    """(copy, None), or (obj, note) when it cannot be deep-copied."""
    import copy

    try:
        return copy.deepcopy(obj), None
    except Exception as exc:
        return obj, "kept by reference: deepcopy failed (%s)" % exception_text(exc)


def _running_loop():
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    try:
        import weakref

        loop = asyncio.events._get_running_loop()
        return weakref.ref(loop) if loop is not None else None
    except Exception:
        return None


def _store(record):
    """Adds a record; returns its index, or None when the store is full."""
    with _lock:
        if len(_records) >= MAX_RECORDS or _bytes[0] + record.size > MAX_BYTES:
            return None
        record.index = _next_index[0]
        _next_index[0] += 1
        _records[record.index] = record
        _bytes[0] += record.size
        return record.index


def _make_record(located, target, args, kw, return_obj, exception, cost_ns, copy, thread, defaulted=None):
    record = _Record()
    if defaulted is None:
        defaulted = callargs.CallArgs(located).defaulted(args, kw)
    record.defaulted = defaulted
    record.time = call_time(cost_ns)
    record.cost_ms = cost_ns / 1e6
    record.thread = thread
    record.method = located.method_key()
    record.label = located.label
    record.has_target = located.bind is not None
    record.copy_note = None
    record.copied = False
    if copy:
        notes = []
        target, n1 = _copy(target) if record.has_target else (target, None)
        args, n2 = _copy(args)
        kw, n3 = _copy(kw)
        return_obj, n4 = _copy(return_obj)
        for name, note in (("target", n1), ("args", n2), ("kwargs", n3), ("return_obj", n4)):
            if note:
                notes.append("%s %s" % (name, note))
        record.copy_note = "; ".join(notes) or None
        record.copied = not notes
    record.target = target
    record.args = args
    record.kw = kw
    record.return_obj = return_obj
    record.exception = exception
    record.located = located
    record.loop = None
    record.replay_of = None
    record.tt_id = None
    record.size = _rough_size(args) + _rough_size(kw) + (_rough_size(return_obj) if exception is None else 0)
    return record


# --------------------------------------------------------------------------------------------
# Recording


class _Recording(streams.Stream, instrument.Probe):
    end_method = END
    table = _recordings

    def __init__(self, client_id, located, cond, limit, copy):
        self.id = next(_ids)
        self.client_id = client_id
        self.located = located
        self.view = callargs.CallArgs(located)
        self.filter = Filter(cond) if cond is not None else None
        self.used = cond.names if cond is not None else frozenset()
        self.limit = limit
        self.copy = copy
        self.count = 0
        self.dropped = 0
        self.done = False
        self.armed = False  # set once the client has the start response (events.Started)
        self.install_id = None
        self.cleanup_id = None
        self.lock = _thread.allocate_lock()
        self.is_coroutine = bool(located.code.co_flags & 0x80)
        self.cond_at_entry = cond is not None and not (cond.names & frozenset(("return_obj", "cost", "exception")))

    def arm(self):
        self.armed = True

    def precheck(self, bind):
        return self.filter.precheck(bind, self.view) if self.cond_at_entry else None

    def enter(self, target, args, kw, checked=False):
        if self.done or not self.armed:
            return instrument.NO_OBSERVE
        if self.cond_at_entry:
            values = None if checked else call_values(self.view, self.used, target, None, None, args, kw, None)
            ok, error = self.filter.at_entry(values, checked)
            if error is not None:
                stop_on_filter_error(self, error)
            if not ok:
                return instrument.NO_OBSERVE
        # Which parameters hold their default is decided now, before a copy could change identities.
        return (target, args, kw, self.view.defaulted(args, kw))

    def exit(self, token, return_obj, exception, cost_ns):
        if self.done:
            return
        target, args, kw, defaulted = token
        if self.filter is not None and not self.cond_at_entry:
            values = call_values(
                self.view, self.used, target, return_obj, cost_ns / 1e6, args, kw, exception, defaulted
            )
            ok, error = self.filter.decide(values)
            if error is not None:
                stop_on_filter_error(self, error)
            if not ok:
                return
        record = _make_record(
            self.located,
            target,
            args,
            kw,
            return_obj,
            exception,
            cost_ns,
            self.copy,
            events.thread_info(_thread.get_ident()),
            defaulted,
        )
        record.tt_id = self.id
        if self.is_coroutine:
            record.loop = _running_loop()
        end = None
        with self.lock:
            if self.done:
                return
            if _store(record) is None:
                self.done = True
                end = "full"
            else:
                self.count += 1
                note = record.summary()
                if self.dropped:
                    note["dropped"] = self.dropped
                if not events.notify(self.client_id, RECORD, note):
                    self.dropped += 1
                if self.count >= self.limit:
                    self.done = True
                    end = "limit"
            if end is not None:
                events.notify(self.client_id, END, self.summary(end))
        if end is not None:
            self._remove()

    def summary(self, reason):
        out = {
            "tt_id": self.id,
            "reason": reason,
            "count": self.count,
            "dropped": self.dropped,
            "filter_errors": 0,
            "stored": len(_records),
        }
        return end_summary(self, out, reason)


# --------------------------------------------------------------------------------------------
# Requests

START_PARAMS = ("module", "class", "method", "nested", "filter", "limit", "copy")


def start(client_id, params):
    check_names(params, START_PARAMS)
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    cond_text = get_expr(params, "filter") or None
    limit = get_int(params, "limit", default=DEFAULT_LIMIT, low=1, high=MAX_RECORDS)
    copy = get_bool(params, "copy")

    import builtins

    if cond_text:
        compile_expressions(cond_text, "filter", {"__builtins__": builtins}, split=False)
    located = locate.locate_function(module, class_name, method, nested)
    cond = compile_expressions(cond_text, "filter", expression_globals(located), split=False)[0] if cond_text else None
    recording = _Recording(client_id, located, cond, limit, copy)
    recording.install(located, "tt")
    return recording.started(
        "tt_id",
        "tt.stop",
        located,
        {
            "filter": cond_text,
            "limit": limit,
            "copy": copy,
            "next_index": _next_index[0],
        },
    )


def stop(client_id, params):
    """Stop one recording of this client (tt_id), or all of them (no tt_id)."""
    return streams.stop_request(client_id, params, _recordings, "tt_id")


def list_records(client_id, params):
    check_names(params, ("method",))
    method = get_str(params, "method") or None
    with _lock:
        records = list(_records.values())
        size = _bytes[0]
    if method:
        records = [r for r in records if _matches(r, method)]
    return {
        "records": [r.summary() for r in records],
        "method": method,
        "stored": len(_records),
        "estimated_bytes": size,
        "recording": sorted(_recordings),
    }


def _matches(record, method):
    # The label ("module.Class.method", "module.function") as listed, or PyFlightProfiler's
    # spelling, which names plain functions "module.None.function".
    return method in (record.method, record.label)


def _get(params):
    index = get_int(params, "index", required=True)
    record = _records.get(index)
    if record is None:
        with _lock:
            indexes = list(_records)
        near = sorted(indexes, key=lambda i: abs(i - index))[:5]
        raise AgentError(
            NOT_FOUND,
            "no record %d in the time tunnel (%s)"
            % (index, "records: %s" % _ranges(indexes) if indexes else "it is empty; record with tt -t"),
            {"missing": "record", "name": str(index), "suggestions": [str(i) for i in sorted(near)]},
        )
    return record


def _ranges(indexes):
    if not indexes:
        return "none"
    parts = []
    start = prev = indexes[0]
    for i in indexes[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def show(client_id, params):
    check_names(params, ("index", "depth", "raw", "verbose"))
    record = _get(params)
    depth = get_int(params, "depth", default=1, low=1, high=4)
    return record.detail(depth, get_bool(params, "verbose"), get_bool(params, "raw"))


def replay(client_id, params):
    """Call the recorded function again with the recorded target and arguments, in the agent's
    thread (a coroutine: on the event loop it was recorded on, while that loop runs; else on a
    fresh loop); the result is recorded as a new index and shown."""
    check_names(params, ("index", "depth", "raw", "verbose"))
    original = _get(params)
    depth = get_int(params, "depth", default=1, low=1, high=4)
    located = original.located
    function = located.function
    flags = located.code.co_flags
    if function is None:
        raise AgentError(
            NOT_SUPPORTED,
            "record %d is a call of a nested function, whose function object is made "
            "anew at each call of %s; fp cannot call it again" % (original.index, located.method),
        )
    if flags & (0x20 | 0x200):
        raise AgentError(
            NOT_SUPPORTED,
            "record %d is a call of a generator function: replaying would create and "
            "consume a generator in the agent's thread; not supported" % original.index,
        )
    target, args, kw = original.target, original.args, original.kw
    if original.copied:  # keep the recorded copies as they were
        target = _copy(target)[0] if original.has_target else target
        args = _copy(args)[0]
        kw = _copy(kw)[0]
    call_args = ((target,) if original.has_target else ()) + tuple(args)
    return_obj = exception = None
    # The thread the call runs on: this one, or the event loop's for a coroutine replayed there.
    thread = [{"ident": _thread.get_ident(), "name": "fp-agent (replay)"}]
    t0 = time.perf_counter_ns()
    try:
        with instrument.suppressed():
            result = function(*call_args, **(kw or {}))
            if flags & 0x80:
                result = _await(result, original.loop, thread)
        return_obj = result
    except KeyboardInterrupt:
        raise  # the client left (the agent interrupts the request): not the function's doing
    except BaseException as exc:
        exception = exc
    cost_ns = time.perf_counter_ns() - t0
    record = _make_record(
        located, target, args, kw, return_obj, exception, cost_ns, False, thread[-1], original.defaulted
    )
    record.replay_of = original.index
    if _store(record) is None:
        out = record.detail(depth, get_bool(params, "verbose"), get_bool(params, "raw"))
        out["index"] = None
        out["note"] = "the time tunnel is full: this replay was not stored (tt -d / tt -da frees room)"
        return out
    return record.detail(depth, get_bool(params, "verbose"), get_bool(params, "raw"))


def _await(coro, loop_ref, thread):
    """The coroutine's result: run on the loop it was recorded on while that loop runs (the
    thread that runs it is appended to `thread`), else on a fresh loop in this thread."""
    from .loading import stdlib

    asyncio = stdlib("asyncio")  # loaded by the program when it ran the coroutine, nearly always

    loop = loop_ref() if loop_ref is not None else None
    if loop is not None and loop.is_running() and not loop.is_closed():
        future = asyncio.run_coroutine_threadsafe(_on_loop(coro, thread), loop)
        return future.result(REPLAY_TIMEOUT_S)
    fresh = asyncio.new_event_loop()
    try:
        return fresh.run_until_complete(coro)
    finally:
        fresh.close()


async def _on_loop(coro, thread):
    thread.append(events.thread_info(_thread.get_ident()))
    return await coro


def delete(client_id, params):
    check_names(params, ("index", "all"))
    if get_bool(params, "all"):
        with _lock:
            gone = list(_records)
            _records.clear()
            _bytes[0] = 0
            if not _recordings:  # an empty tunnel numbers from the start again
                _next_index[0] = FIRST_INDEX
        return {"deleted": gone}
    record = _get(params)
    with _lock:
        if _records.pop(record.index, None) is not None:
            _bytes[0] -= record.size
    return {"deleted": [record.index]}
