"""Notifications to one client, sent from whatever thread the observed code runs on (watch, tt,
trace). The agent library gives the package a C function, `_native_emit(client_id, text)`, that
copies the text into the client's queue and wakes the agent's I/O thread; it never blocks and
drops the event when the client is gone or does not keep up (then `notify` returns False, and
the caller counts what was lost).

Streams: a request that starts one (watch.start, tt.start, trace) answers at once; its result
holds `stream` (see stream()), which tells a client which notifications belong to it, which
one ends it, and how to stop it.
"""

import _thread
import sys
from _collections import deque  # collections.deque, without importing collections

from . import jsontext, loading

_emitter = []  # [callable] set by set_emitter (tests); else the native one


def set_emitter(fn):
    """Use fn(client_id, text) -> bool instead of the native emitter (None: back to native)."""
    del _emitter[:]
    if fn is not None:
        _emitter.append(fn)


def _emit_function():
    if _emitter:
        return _emitter[0]
    package = sys.modules.get(__name__.rpartition(".")[0])
    return getattr(package, "_native_emit", None)


# Work a probe hands off the observed thread (trace turning a recording into its event): it runs
# on the client's worker thread, in the order given. client id -> deque of callables; a deque
# stays in place until its client is gone (appends and pops of a deque are atomic under the GIL,
# so an append racing with the worker is never lost).
_deferred = {}


def defer(client_id, fn):
    """Run fn() soon on the client's worker thread rather than now on the observed one; at once
    when there is no worker to run it (in-process tests, or the client is leaving)."""
    package = sys.modules.get(__name__.rpartition(".")[0])
    wake = None if _emitter else getattr(package, "_native_defer", None)
    queue = _deferred.get(client_id)
    if queue is None:
        queue = _deferred.setdefault(client_id, deque())
    queue.append(fn)
    try:
        if wake is not None and wake(client_id):
            return
    except Exception:
        pass
    run_deferred(client_id)


# Work due later: client id -> [(monotonic time due, fn)]; moved to the queue by run_deferred once
# due (the agent library wakes the worker at that time).
_timed = {}


def defer_after(client_id, seconds, fn):
    """Run fn() on the client's worker thread `seconds` from now (at least), leaving the worker
    free for the client's requests meanwhile. False when it cannot be scheduled."""
    import time

    package = sys.modules.get(__name__.rpartition(".")[0])
    wake = None if _emitter else getattr(package, "_native_defer_after", None)
    entry = (time.monotonic() + seconds, fn)
    _timed.setdefault(client_id, []).append(entry)
    ms = int(seconds * 1000) + 1
    try:
        if wake is not None:
            if wake(client_id, ms):
                return True
        else:
            # No agent library (in-process tests): a plain thread of ours waits instead.
            _thread.start_new_thread(_wake_later, (client_id, ms / 1000.0))
            return True
    except Exception:
        pass
    try:
        _timed.get(client_id, []).remove(entry)
    except ValueError:
        pass
    return False


def _wake_later(client_id, seconds):
    import time

    time.sleep(seconds)
    run_deferred(client_id)


def run_deferred(client_id, params=None):
    """The agent.deferred notification: runs what was deferred for this client."""
    timed = _timed.get(client_id)
    if timed:
        import time

        now = time.monotonic()
        due = [e for e in timed if e[0] <= now + 0.005]  # a timer's wake-up is never early by more
        if due:
            queue = _deferred.setdefault(client_id, deque())
            for entry in due:
                timed.remove(entry)
                queue.append(entry[1])
    queue = _deferred.get(client_id)
    while queue:
        try:
            fn = queue.popleft()
        except IndexError:  # another thread ran it meanwhile
            break
        try:
            fn()
        except Exception:
            pass


def drop_deferred(client_id):
    """The client is gone: what it deferred is not run."""
    _deferred.pop(client_id, None)
    _timed.pop(client_id, None)


def notify(client_id, method, params):
    """Send one JSON-RPC notification; False when it was dropped (or cannot be sent at all)."""
    emit = _emit_function()
    if emit is None:
        return False
    text = encode({"jsonrpc": "2.0", "method": method, "params": params})
    try:
        return bool(emit(client_id, text))
    except Exception:
        return False


def encode(message):
    """Compact JSON text; values JSON cannot hold become their repr, lone surrogates '?'."""
    try:
        text = jsontext.dumps(message)
    except (TypeError, ValueError):
        text = jsontext.dumps(_clean(message))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean(value):
    if isinstance(value, dict):
        return dict((str(k), _clean(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return repr(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


send = notify  # the name trace.py may use


def stream(id_key, stream_id, end, stop):
    """The `stream` member of a result that starts a stream: notifications whose params[id_key]
    equals stream_id belong to it, the one named `end` is its last, and a client stops it early
    with the request `stop` whose params are {id_key: stream_id}."""
    return {"id_key": id_key, "id": stream_id, "end": end, "stop": stop}


def thread_info(ident):
    """{"ident", "name"} of a thread, without creating a threading object for it."""
    name = None
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            thread = threading._active.get(ident)
            if thread is not None:
                name = thread.name
        except Exception:
            pass
    return {"ident": ident, "name": name}


class Started(object):
    """What a method that starts a stream returns: its result, and `start`, which begins the
    stream (arms the probe). dispatch sends the response through the client's event queue
    first, then calls start(): a client always gets the response before the stream's first
    notification. Without the native emitter (in-process tests) the response is returned as
    usual, after start()."""

    _fp_started = True

    def __init__(self, result, start):
        self.result = result
        self.start = start

    def answer(self, client_id, request_id, encode):
        if request_id is None:  # a notification: nothing to answer
            loading.threading_ready()
            self.start()
            return ""
        text = encode({"jsonrpc": "2.0", "id": request_id, "result": self.result})
        emit = None if _emitter else _emit_function()
        sent = False
        if emit is not None:
            try:
                sent = bool(emit(client_id, text, True))
            except Exception:
                sent = False
        # Before the probe is armed: the program's threads run the probe's code from then on.
        loading.threading_ready()
        self.start()
        return "" if sent else text
