"""`watch`: the arguments, return value (or exception) and cost of each call of a function, as
notifications while the target runs (see protocol/methods.md, watch.start).

Expressions (--expr, -f) are Python expressions compiled once, before anything is installed,
into functions of (target, return_obj, cost, args, kwargs, exception, params); they see the names
of the observed function's module as globals. What args, kwargs and params hold: callargs.py. A filter that uses none of return_obj, cost and
exception is evaluated when the call starts, so a call it rejects costs no more than that.
Values are rendered into VALUE trees in the target's thread, only for the calls reported.
"""

import _thread
import itertools
import sys
import time

from . import callargs, events, instrument, loading, locate, render, streams, syntax
from .errors import exception_text, expression_failed
from .params import check_names, get_bool, get_expr, get_int, get_str

# traceback formats the exception of a call that raised, on the program's thread: it is
# imported (under the import lock, loading.py) before the first watch is armed, once its
# answer is on its way, so that a first watch answers without waiting for it.
ARMED_IMPORTS = ("traceback",)

EVENT = "watch/event"
END = "watch/end"

DEFAULT_EXPR = "args,kwargs"
DEFAULT_LIMIT = 10
EXPRESSION_PARAMS = ("target", "return_obj", "cost", "args", "kwargs", "exception", "params")
_AFTER_CALL = frozenset(("return_obj", "cost", "exception"))
_ARGUMENTS = frozenset(("target", "args", "kwargs", "params"))

_ids = itertools.count(1)
_watches = {}  # watch id -> _Watch


# --------------------------------------------------------------------------------------------
# Expressions (shared with tt)


class Expression(object):
    """One compiled user expression: `text` as typed, `fn(*EXPRESSION_PARAMS)`, `names` it uses."""

    __slots__ = ("text", "fn", "names", "node", "globals")

    def __init__(self, text, fn, names, node, globals_dict):
        self.text = text
        self.fn = fn
        self.names = names
        self.node = node
        self.globals = globals_dict

    def precheck(self, bind, view, failed):
        """The expression as pre(all_args, kw) for instrument's precheck: only for expressions
        of target, args, kwargs and params (they are known when the call starts). view: the
        function's callargs.CallArgs; failed(exc) is called when the expression raises (the
        precheck then says yes, and enter() reports the failure without evaluating it again)."""
        return _precheck_function(self.node, bind, self.globals, view, failed)


def compile_expressions(text, param, globals_dict, split=True):
    """[Expression] for `text`; with split, a top-level tuple written without parentheses
    ("args, kwargs") gives one expression per item, each shown on its own.
    A syntax error is a -32002 error (stage "compile") naming the parameter."""
    source = text.strip()
    try:
        tree = syntax.parse(source, "<%s>" % param, "eval")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        error = expression_failed(exc, "compile", "%s does not compile: %s" % (param, _compile_message(exc)), source)
        error.data["param"] = param
        raise error
    body = tree.body
    parts = [(source, body)]
    if split and isinstance(body, syntax.Tuple) and body.elts and not _parenthesized(source, body):
        if not any(isinstance(e, syntax.Starred) for e in body.elts):
            labels = [syntax.segment(source, e) for e in body.elts]
            if None not in labels:
                parts = list(zip(labels, body.elts))
    return [
        Expression(label, _function(node, param, globals_dict, label), _names(node), node, globals_dict)
        for label, node in parts
    ]


def _compile_message(exc):
    """ "invalid syntax" rather than "SyntaxError: invalid syntax (<filter>, line 1)": where it is
    comes with the error's traceback (the expression and a caret)."""
    if isinstance(exc, SyntaxError) and exc.msg:
        return exc.msg
    return exception_text(exc)


def _parenthesized(source, node):
    first = node.elts[0]
    return (node.lineno, node.col_offset) != (first.lineno, first.col_offset)


def _names(node):
    return frozenset(n.id for n in syntax.walk(node) if isinstance(n, syntax.Name))


def _function(node, param, globals_dict, label):
    template = syntax.parse("lambda %s: None" % ", ".join(EXPRESSION_PARAMS), "<%s>" % param, "eval")
    template.body.body = node
    syntax.fix_missing_locations(template)
    try:
        code = compile(template, "<%s>" % param, "eval", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # e.g. `yield` or `await` outside a function
        error = expression_failed(exc, "compile", "%s does not compile: %s" % (param, _compile_message(exc)), label)
        error.data["param"] = param
        raise error
    return eval(code, globals_dict)


def _precheck_function(node, bind, globals_dict, view, failed):
    # Only the names the expression uses are bound: this runs for every call.
    used = _names(node)
    lines = ["def __fp_pre(__fp_args, __fp_kw, __fp_view=None, __fp_failed=None):", "    try:"]
    if "target" in used:
        lines.append("        target = __fp_args[0] if __fp_args else None" if bind else "        target = None")
    if used & frozenset(("args", "kwargs", "params")):
        lines.append("        args = __fp_args[1:]" if bind else "        args = __fp_args")
    if "kwargs" in used:
        lines.append("        kwargs = __fp_view.kwargs(args, __fp_kw)")
    if "params" in used:
        lines.append("        params = __fp_view.params(args, __fp_kw)")
    lines += [
        "        return None",
        "    except KeyboardInterrupt:",
        "        raise",
        "    except BaseException as __fp_exc:",
        "        __fp_failed(__fp_exc)",
        "        return True",
    ]
    tree = syntax.parse("\n".join(lines) + "\n", "<filter>", "exec")
    # The expression's own nodes, shared with its other function: compiling only reads them.
    tree.body[0].body[0].body[-1].value = node
    syntax.fix_missing_locations(tree)
    namespace = {}
    exec(compile(tree, "<filter>", "exec", dont_inherit=True), globals_dict, namespace)
    function = namespace["__fp_pre"]
    function.__defaults__ = (view, failed)
    return function


def call_values(view, used, target, return_obj, cost, args, kw, exception, defaulted=None):
    """The values of EXPRESSION_PARAMS for one call; kwargs and params are built only when one
    of the expressions uses them (`used`: the names they use). kw: the engines' keyword-only
    parameters and **extra (see callargs)."""
    kwargs = view.kwargs(args, kw, defaulted) if "kwargs" in used else None
    params = view.params(args, kw) if "params" in used else None
    return (target, return_obj, cost, args, kwargs, exception, params)


def expression_globals(located):
    """The namespace user expressions see: the observed function's module globals (so module
    names resolve), never written to."""
    function = located.function or located.outer
    namespace = getattr(function, "__globals__", None)
    if not isinstance(namespace, dict):
        import builtins

        namespace = {"__builtins__": builtins}
    return namespace


def evaluate(expression, values):
    """(value, None) or (None, error text). KeyboardInterrupt is the target's Ctrl-C (a signal
    handler that ran inside the expression): it goes on to the target, as it would have."""
    try:
        return expression.fn(*values), None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit from an expression must not end the target
        return None, exception_text(exc)


def exception_model(exc):
    """{"type", "message", "traceback", "frames"}: the traceback as the caller sees it (without
    fp's wrapper frame on 3.8-3.10), as text and as frames ({file, line, function}, outermost
    first: an editor puts the exception on the line of its file where it passed). traceback is
    loaded before a probe is armed (ARMED_IMPORTS, tt's LAZY_IMPORTS); this may run on the
    program's thread, where nothing is imported."""
    traceback = sys.modules.get("traceback")
    model = {"type": render.type_name(type(exc)), "message": _safe_str(exc)}
    try:
        tb = exc.__traceback__
        while tb is not None and instrument.is_wrapper_code(tb.tb_frame.f_code):
            tb = tb.tb_next
        lines = traceback.format_exception(type(exc), exc, tb, limit=50)
        model["traceback"] = "".join(lines)
        frames = []
        while tb is not None and len(frames) < 50:
            code = tb.tb_frame.f_code
            if not instrument.is_wrapper_code(code):
                frames.append({"file": code.co_filename, "line": tb.tb_lineno, "function": code.co_name})
            tb = tb.tb_next
        model["frames"] = frames
    except Exception:
        model["traceback"] = exception_text(exc) + "\n"
        model["frames"] = []
    return model


def _safe_str(exc):
    try:
        return str(exc)
    except Exception:
        return "<str() failed>"


def call_time(cost_ns):
    """Wall-clock time (epoch seconds) when a call that just ended started."""
    return time.time() - cost_ns / 1e9


# --------------------------------------------------------------------------------------------
# Filters that raise (shared with tt and trace)

# A filter that raised this many times in a row with the same error ends its stream with that
# error: it would raise for every call (a typo in an attribute name, a KeyError on a key most
# calls lack), and a watch that shows nothing would leave the user waiting for calls that
# never come.
FILTER_FAILURES_TO_STOP = 3


class Filter(object):
    """One stream's -f: the compiled expression and what its failures have been. A call whose
    filter raised is not observed and does not count toward -n; FILTER_FAILURES_TO_STOP
    identical failures in a row end the stream (the caller stops it when failed() says so)."""

    __slots__ = ("cond", "pending", "errors", "last", "streak")

    def __init__(self, cond):
        self.cond = cond
        self.pending = {}  # thread ident -> error text: the precheck raised for the call starting there
        self.errors = 0
        self.last = None
        self.streak = 0

    def precheck(self, bind, view):
        return self.cond.precheck(bind, view, self._stash)

    def _stash(self, exc):
        self.pending[_thread.get_ident()] = exception_text(exc)

    def at_entry(self, values, checked):
        """(observe, error) for a filter decided when the call starts; values: call_values()
        of the call (None while checked, when it is not evaluated)."""
        error = self.pending.pop(_thread.get_ident(), None) if self.pending else None
        if error is None:
            if checked:
                self.streak = 0
                return True, None
            return self.decide(values if values is not None else ())
        return False, error

    def decide(self, values):
        """(observe, error): evaluates the filter once."""
        ok, error = evaluate(self.cond, values)
        if error is not None:
            return False, error
        self.streak = 0
        return bool(ok), None

    def failed(self, error):
        """Counts one failure; True when the stream must end with it."""
        self.errors += 1
        if error == self.last:
            self.streak += 1
        else:
            self.last, self.streak = error, 1
        return self.streak >= FILTER_FAILURES_TO_STOP

    def message(self):
        return "the filter %s raised %s for %d calls in a row" % (self.cond.text, self.last, self.streak)


def stop_on_filter_error(stream, error):
    """A stream's filter raised for a call: count it; end the stream once it has failed the same
    way FILTER_FAILURES_TO_STOP times in a row (end reason "filter_failed", with `error`)."""
    with stream.lock:
        if stream.done or not stream.filter.failed(error):
            return
        stream.done = True
        events.notify(stream.client_id, stream.end_method, stream.summary("filter_failed"))
    stream._remove()


def end_summary(stream, summary, reason):
    """Adds the filter's failures (and the error that ended it) to an end notification."""
    if stream.filter is not None:
        summary["filter_errors"] = stream.filter.errors
        if reason == "filter_failed":
            summary["error"] = stream.filter.message()
    return summary


# --------------------------------------------------------------------------------------------
# The probe


class _Watch(streams.Stream, instrument.Probe):
    end_method = END
    table = _watches

    def __init__(self, client_id, located, exprs, cond, only_exceptions, depth, verbose, raw, limit):
        self.id = next(_ids)
        self.client_id = client_id
        self.located = located
        self.view = callargs.CallArgs(located)
        self.exprs = exprs
        self.filter = Filter(cond) if cond is not None else None
        self.only_exceptions = only_exceptions
        self.depth = depth
        self.verbose = verbose
        self.raw = raw
        self.limit = limit
        self.install_id = None
        self.cleanup_id = None
        self.count = 0
        self.dropped = 0
        self.errors = 0
        self.done = False
        self.armed = False  # set once the client has the start response (events.Started)
        self.lock = _thread.allocate_lock()
        used = set()
        for e in exprs + ([cond] if cond else []):
            used |= e.names
        self.used = frozenset(used)
        self.needs_args = bool(used & _ARGUMENTS)
        # A filter that does not need the call's outcome decides when the call starts.
        self.cond_at_entry = cond is not None and not (cond.names & _AFTER_CALL)

    # -- instrument.Probe --------------------------------------------------------------------
    def arm(self):
        for name in ARMED_IMPORTS:
            try:
                loading.stdlib(name)
            except Exception:
                pass  # exception_model says what it cannot format
        self.armed = True

    def precheck(self, bind):
        # A filter on target/args/kwargs/params rejects calls before enter() runs, from C on 3.12+.
        if not self.cond_at_entry:
            return None
        return self.filter.precheck(bind, self.view)

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
        return (target, args, kw)

    def exit(self, token, return_obj, exception, cost_ns):
        if self.done or (self.only_exceptions and exception is None):
            return
        target, args, kw = token
        cost = cost_ns / 1e6
        values = call_values(self.view, self.used, target, return_obj, cost, args, kw, exception)
        if self.filter is not None and not self.cond_at_entry:
            ok, error = self.filter.decide(values)
            if error is not None:
                stop_on_filter_error(self, error)
            if not ok:
                return
        event = {
            "watch_id": self.id,
            "time": call_time(cost_ns),
            "thread": events.thread_info(_thread.get_ident()),
            "cost_ms": cost,
        }
        rendered = []
        expr_errors = []
        for expression in self.exprs:
            value, error = evaluate(expression, values)
            if error is None:
                rendered.append({"expr": expression.text, "value": self._render(value)})
            else:
                rendered.append({"expr": expression.text, "error": error})
                expr_errors.append("%s: %s" % (expression.text, error))
        event["values"] = rendered
        if exception is not None:
            event["exception"] = exception_model(exception)
        if expr_errors:
            event["expr_error"] = "; ".join(expr_errors)
        self._deliver(event)

    # -- reporting ---------------------------------------------------------------------------
    def _render(self, value):
        try:
            return render.render(value, depth=self.depth, verbose=self.verbose, raw=self.raw)
        except Exception as exc:
            return {"type": "?", "repr": "<fp could not render this value: %s>" % exception_text(exc)}

    def _deliver(self, event):
        last = False
        with self.lock:
            if self.done:
                return
            self.count += 1
            event["index"] = self.count
            if "expr_error" in event:
                self.errors += 1
            last = self.count >= self.limit
            if self.dropped:
                event["dropped"] = self.dropped
            if not events.notify(self.client_id, EVENT, event):
                self.dropped += 1
            if last:
                self.done = True
                events.notify(self.client_id, END, self.summary("limit"))
        if last:
            self._remove()

    def summary(self, reason):
        return end_summary(
            self,
            {
                "watch_id": self.id,
                "reason": reason,
                "count": self.count,
                "dropped": self.dropped,
                "expr_errors": self.errors,
            },
            reason,
        )


# --------------------------------------------------------------------------------------------
# Requests

START_PARAMS = (
    "module",
    "class",
    "method",
    "nested",
    "expr",
    "filter",
    "exceptions",
    "depth",
    "limit",
    "raw",
    "verbose",
)


def start(client_id, params):
    check_names(params, START_PARAMS)
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    expr_text = get_expr(params, "expr") or DEFAULT_EXPR
    cond_text = get_expr(params, "filter") or None
    only_exceptions = get_bool(params, "exceptions")
    depth = get_int(params, "depth", default=1, low=1, high=4)
    limit = get_int(params, "limit", default=DEFAULT_LIMIT, low=1, high=1000000)
    raw = get_bool(params, "raw")
    verbose = get_bool(params, "verbose")

    # Syntax first (nothing located, nothing installed), then the names, then the globals.
    import builtins

    scratch = {"__builtins__": builtins}
    compile_expressions(expr_text, "expr", scratch)
    if cond_text:
        compile_expressions(cond_text, "filter", scratch, split=False)
    located = locate.locate_function(module, class_name, method, nested)
    namespace = expression_globals(located)
    exprs = compile_expressions(expr_text, "expr", namespace)
    cond = compile_expressions(cond_text, "filter", namespace, split=False)[0] if cond_text else None

    watch = _Watch(client_id, located, exprs, cond, only_exceptions, depth, verbose, raw, limit)
    watch.install(located, "watch")
    return watch.started(
        "watch_id",
        "watch.stop",
        located,
        {
            "callbacks": instrument.callbacks_in_use(),
            "exprs": [e.text for e in exprs],
            "filter": cond_text,
            "filter_at": None if cond is None else ("call" if watch.cond_at_entry else "return"),
            "exceptions": only_exceptions,
            "limit": limit,
            "depth": depth,
            "raw": raw,
            "verbose": verbose,
        },
    )


def stop(client_id, params):
    """Stop one watch of this client (watch_id), or all of them (no watch_id)."""
    return streams.stop_request(client_id, params, _watches, "watch_id")


def active():
    """Watches running now (for tests and status)."""
    return sorted(_watches)
