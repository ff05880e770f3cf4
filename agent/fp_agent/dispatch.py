"""The entry points the native agent calls with the GIL held: handle (a JSON-RPC request text in,
the response text out), client_gone and shutdown. None of them ever raises into C.
"""

import sys

from . import capture, jsontext, loading, registry
from .errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    AgentError,
    exception_text,
    invalid_param,
)

# method -> (module, function). Command modules are imported on first use (loading.family, with
# the standard-library modules they need), so loading the agent into a target costs little, the
# first answer costs what its command needs, and a family nobody uses is never imported.
_METHODS = {
    "module": ("modules", "module_of_file"),
    "code.map": ("codemap", "code_map"),
    "getglobal": ("objects", "getglobal"),
    "stack": ("stack", "stack"),
    "stack.async": ("tasks", "stack_async"),
    "console.open": ("console", "open_session"),
    "console.eval": ("console", "eval_line"),
    "console.complete": ("console", "complete"),
    "console.close": ("console", "close_session"),
    "complete": ("complete", "complete"),
    "watch.start": ("watch", "start"),
    "watch.stop": ("watch", "stop"),
    "tt.start": ("tt", "start"),
    "tt.stop": ("tt", "stop"),
    "tt.list": ("tt", "list_records"),
    "tt.show": ("tt", "show"),
    "tt.replay": ("tt", "replay"),
    "tt.delete": ("tt", "delete"),
    "trace.start": ("trace", "start"),
    "monitor.start": ("monitor", "start"),
    "monitor.stop": ("monitor", "stop"),
    "trace.stop": ("trace", "stop"),
    "mem.summary": ("memory", "summary"),
    "mem.diff": ("memory", "diff"),
    "mem.stop": ("memory", "stop"),
    "mem.top": ("memory", "top"),
    "mem.off": ("memory", "off"),
    "vmtool.instances": ("objects", "instances"),
    "vmtool.gc": ("objects", "force_gc"),
    "reload": ("reload", "reload"),
    "reload.undo": ("reload", "undo"),
    "torch.profile.start": ("torchprof", "profile_start"),
    "torch.memory.snapshot": ("torchprof", "memory_snapshot"),
    "torch.memory.record": ("torchprof", "memory_record"),
    "torch.stop": ("torchprof", "stop"),
    "agent.deferred": ("events", "run_deferred"),  # sent by the agent library itself (events.defer)
}

# Served by the native agent without the GIL; listed so that a misspelling still gets a hint.
_NATIVE_METHODS = ("ping", "status", "detach", "shutdown")

_PACKAGE = __name__.rpartition(".")[0]

# Used when even building an error response fails (no memory, a broken json module...).
_LAST_RESORT = '{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error in fp_agent"}}'

_NO_ID = object()  # a notification: executed, but answered with ""


def handle(client_id, body):
    """Serve one request; returns the response text, or "" for a notification."""
    try:
        return _handle(client_id, body)
    except BaseException:
        return _LAST_RESORT
    finally:
        try:
            loading.main_thread_kept()  # code the request ran may have imported threading
        except BaseException:
            pass


def client_gone(client_id):
    """The client detached or died: remove everything it installed."""
    try:
        registry.undo_client(client_id)
    except BaseException:
        pass
    try:
        from . import events

        events.drop_deferred(client_id)
    except BaseException:
        pass


def shutdown():
    """Undo every client's installations, then forget the package so a restart loads it afresh."""
    try:
        registry.undo_all()
    except BaseException:
        pass
    gone = []
    try:
        from . import pycache

        package = sys.modules.get(_PACKAGE)
        for directory in getattr(package, "__path__", ()):
            pycache.uninstall(directory)
    except BaseException:
        pass
    try:
        prefix = _PACKAGE + "."
        for name in list(sys.modules):
            if name == _PACKAGE or name.startswith(prefix):
                gone.append(sys.modules.pop(name, None))
    except BaseException:
        pass
    _forget(gone)


def _forget(modules):
    """Empties the dicts of the package's modules once they left sys.modules. Their functions and
    classes refer to the dicts (__globals__) and the dicts to them: cycles that only a full run of
    the cyclic collector frees, which a program may seldom do, so every restart would leave a whole
    copy of the package behind (RSS grew by 10 MB over 100 shutdown/restart cycles). Emptied, as the
    interpreter itself does at exit, they are freed at once by reference counting. Runs last: this
    module's own dict goes too, so only locals are used from the first clear on."""
    own = globals()
    for module in modules:
        try:
            # The classes too: each is a cycle of its own (its methods, __mro__, super()'s cell).
            for value in list(module.__dict__.values()):
                if isinstance(value, type) and value.__module__ == module.__name__:
                    for key in list(vars(value)):
                        if key not in ("__dict__", "__weakref__"):
                            try:
                                delattr(value, key)
                            except BaseException:
                                pass
        except BaseException:
            pass
    for module in modules:
        try:
            if module.__dict__ is not own:
                module.__dict__.clear()
        except BaseException:
            pass
    own.clear()


def _handle(client_id, body):
    request_id = None
    valid = False
    try:
        request = _parse(body)
        request_id = _request_id(request)
        method, params = _unpack(request)
        valid = True
        result = _call(client_id, method, params)
        if getattr(result, "_fp_started", False):  # a stream (events.Started): answer, then start it
            return result.answer(client_id, None if request_id is _NO_ID else request_id, _encode)
        if request_id is _NO_ID:
            return ""
        return _encode({"jsonrpc": "2.0", "id": request_id, "result": result})
    except AgentError as exc:
        error = exc.to_json()
    except BaseException as exc:  # SystemExit from user code included: it must not reach C
        error = _internal_error(exc)
    if request_id is _NO_ID:
        if valid:
            return ""
        request_id = None  # a malformed notification is still answered, with a null id
    return _encode({"jsonrpc": "2.0", "id": request_id, "error": error})


def _parse(body):
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AgentError(PARSE_ERROR, "request is not UTF-8: %s" % exc)
    if not isinstance(body, str):
        raise AgentError(PARSE_ERROR, "request must be JSON text, not %s" % type(body).__name__)
    try:
        return jsontext.loads(body)
    except RecursionError:
        raise AgentError(PARSE_ERROR, "request is nested too deeply")
    except ValueError as exc:
        raise AgentError(PARSE_ERROR, "request is not valid JSON: %s" % exc)


def _request_id(request):
    if not isinstance(request, dict):
        if isinstance(request, list):
            raise AgentError(INVALID_REQUEST, "batch requests are not supported; send one request at a time")
        raise AgentError(INVALID_REQUEST, "a request must be a JSON object")
    if "id" not in request:
        return _NO_ID
    request_id = request["id"]
    if request_id is None or isinstance(request_id, str):
        return request_id
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise AgentError(INVALID_REQUEST, "request id must be an integer or a string")
    return request_id


def _unpack(request):
    if request.get("jsonrpc") != "2.0":
        raise AgentError(INVALID_REQUEST, 'request must have "jsonrpc": "2.0"')
    method = request.get("method")
    if not isinstance(method, str) or not method:
        raise AgentError(INVALID_REQUEST, 'request must have a "method" string')
    params = request.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise invalid_param("params", "params must be an object with named parameters")
    return method, params


def _call(client_id, method, params):
    target = _METHODS.get(method)
    if target is None:
        raise _no_such_method(method)
    module_name, function_name = target
    module = loading.family(module_name)
    # A warning raised while serving (an expression that warns, a deprecated attribute) must
    # not reach the target's stderr; commands that can show it (console) route it themselves.
    with capture.warnings_to(_drop):
        return getattr(module, function_name)(client_id, params)


def _drop(text):
    pass


def _no_such_method(method):
    difflib = loading.stdlib("difflib")

    if method in _NATIVE_METHODS:
        return AgentError(
            METHOD_NOT_FOUND, "method %r is answered by the native agent, not by fp_agent" % method, {"suggestions": []}
        )
    names = sorted(_METHODS) + list(_NATIVE_METHODS)
    suggestions = difflib.get_close_matches(method, names, n=3, cutoff=0.6)
    message = "no such method: %r" % method
    if suggestions:
        message += " (did you mean %s?)" % " or ".join(repr(s) for s in suggestions)
    return AgentError(METHOD_NOT_FOUND, message, {"suggestions": suggestions})


def _internal_error(exc):
    text = exception_text(exc)
    error = {"code": INTERNAL_ERROR, "message": "internal error in fp_agent: " + text}
    try:
        traceback = loading.stdlib("traceback")
        error["data"] = {
            "exception": text,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
    except BaseException:
        pass
    return error


def _encode(response):
    try:
        text = jsontext.dumps(response)
    except BaseException as exc:  # a result that JSON cannot hold is our bug: say so
        response = {"jsonrpc": "2.0", "id": response.get("id"), "error": _internal_error(exc)}
        response["error"].pop("data", None)
        text = jsontext.dumps(response, allow_nan=True)
    # Lone surrogates (file names that are not UTF-8) cannot be sent as UTF-8: the native side
    # would fail to encode the whole response. Replace them.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text
