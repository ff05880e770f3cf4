"""`trace`: the call tree of each matching invocation of a function, with the cost of every inner
call (Python functions and the C functions they call).

A probe on the function starts a recorder on entry and stops it on exit. The recorder is a
profile function set on the calling thread only, for that call only, and it aggregates calls
into a calling-context tree as they happen (per call path: count and inclusive time), so its
memory follows the number of distinct paths, not the number of calls. Two recorders give the
same tree: the C one in the agent library (agent/native/trace.c) and its pure-Python twin here
(sys.setprofile), used where the C one cannot be (a layout check failed, no native library) or
when asked for (`recorder: "python"`, for the tests that run everything against both).

The profile hook is never forced on a thread that already has one (a profiler the program runs):
that invocation is passed over and reported once per thread.
"""

import _thread
import itertools
import os
import sys
import time

from . import callargs, events, instrument, locate, streams, watch
from .errors import NOT_SUPPORTED, AgentError, exception_text, invalid_param
from .params import check_names, get_expr, get_int, get_str

# --------------------------------------------------------------------------------------------
# Shapes shared by both recorders
# --------------------------------------------------------------------------------------------

ROOT, PY, C = 0, 1, 2  # node kinds
NONE = -1  # a stack entry for a call that has no node (too deep, too many nodes)
PASS = -2  # a stack entry for the probe's wrapper around the root (resumed generators, 3.8-3.11)
CUT_NODES, CUT_STACK, CUT_CANCEL = 1, 2, 4
MAX_STACK = 2048  # nesting below the root; as trace.c
MAX_NODES = 100000  # distinct call paths per invocation; as trace.c
MODEL_DEPTH = 100  # levels in the model (json and the renderers recurse)
RECORD_DEPTH = 4 * MODEL_DEPTH + 1  # levels recorded: the wrapper of 3.8-3.11 adds one per recursion

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Notification methods.
EVENT = "trace/event"
SKIPPED = "trace/skipped"
END = "trace/end"


# --------------------------------------------------------------------------------------------
# The C recorder
# --------------------------------------------------------------------------------------------

_native_state = []  # [functions or None], decided once


def native_recorder():
    """The C recorder's functions (dict), or None when this process cannot use it."""
    if not _native_state:
        _native_state.append(_load_native())
    return _native_state[0]


def _load_native():
    package = sys.modules.get(__name__.rpartition(".")[0])
    functions = getattr(package, "_native_trace", None)
    if not isinstance(functions, dict):
        return None
    try:
        import builtins

        frame = sys._getframe()
        if not functions["check"](frame, frame.f_code, len, builtins):
            return None
        if instrument.MONITORING and not functions["check_descr"](list.__dict__["append"], list, "append"):
            functions = dict(functions, monitor=None)  # the profile function only
    except BaseException:
        return None
    return functions


# On 3.12+ the C recorder hears the calls through sys.monitoring, with a tool id of its own held
# while any trace exists. The id must be above the one the probes use (instrument.tool_id()):
# CPython calls the tools of one event from the highest id down, so the recorder sees the root's
# return before the probe that stops it runs, as it does with a profile function (whose tool is
# above every other). With no such id free, the recorder uses a profile function.
TRACE_TOOL_NAME = "fp trace"
_trace_tool = []  # [tool id] while held


def _acquire_trace_tool(functions):
    if _trace_tool:
        return _trace_tool[0]
    if not instrument.MONITORING or functions.get("monitor") is None:
        return None
    probes = instrument.tool_id()
    mon = sys.monitoring
    ev = mon.events
    for tool in (5, 4, 3):
        if probes is not None and tool <= probes or mon.get_tool(tool) is not None:
            continue
        try:
            mon.use_tool_id(tool, TRACE_TOOL_NAME)
        except ValueError:
            continue
        for event, callback in _TOOL_CALLBACKS:
            mon.register_callback(tool, getattr(ev, event), functions[callback])
        mask = 0
        for event, _ in _TOOL_CALLBACKS:
            mask |= getattr(ev, event)
        functions["monitor"](tool, mask, mon.set_events)
        _trace_tool.append(tool)
        return tool
    return None


_TOOL_CALLBACKS = (
    ("PY_START", "ev_start"),
    ("PY_RESUME", "ev_start"),
    ("PY_THROW", "ev_start"),
    ("PY_RETURN", "ev_return"),
    ("PY_YIELD", "ev_return"),
    ("PY_UNWIND", "ev_return"),
    ("CALL", "ev_call"),
    ("C_RETURN", "ev_c_return"),
    ("C_RAISE", "ev_c_return"),
)


def _release_trace_tool():
    if not _trace_tool or _traces:
        return
    tool = _trace_tool.pop()
    mon = sys.monitoring
    try:
        native_recorder()["monitor"]()  # recordings still running end; the events go off
        mon.set_events(tool, 0)
        for event, _ in _TOOL_CALLBACKS:
            mon.register_callback(tool, getattr(mon.events, event), None)
    finally:
        if mon.get_tool(tool) == TRACE_TOOL_NAME:
            mon.free_tool_id(tool)


def trace_tool_id():
    """The sys.monitoring tool id the C recorder holds now, or None."""
    return _trace_tool[0] if _trace_tool else None


class NativeRecorder(object):
    name = "native"

    def __init__(self, functions):
        self._start = functions["start"]
        self._stop = functions["stop"]
        self._tree = functions["tree"]
        self._cancel = functions["cancel"]
        self._functions = functions
        self.hook = "profile function"

    def choose_hook(self):
        """Called once the probe is installed (its tool id is known)."""
        if _acquire_trace_tool(self._functions) is not None:
            self.hook = "sys.monitoring"

    def start(self, root_code, root_frame, pass_frame, max_depth, max_nodes):
        return self._start(root_code, root_frame, pass_frame, max_depth, max_nodes)

    def stop(self, handle):
        # Our C hook has no Python object: while it is the thread's profile function,
        # sys.getprofile() is None. Anything else means the traced code set its own meanwhile.
        self._stop(handle, sys.getprofile() is None)

    def tree(self, handle):
        return self._tree(handle)

    def cancel(self, handle):
        self._cancel(handle)


# --------------------------------------------------------------------------------------------
# The Python recorder (the C one's twin: same states, same tree)
# --------------------------------------------------------------------------------------------

_now = time.perf_counter_ns if hasattr(time, "perf_counter_ns") else None  # CLOCK_MONOTONIC
_ModuleType = type(sys)
_strays = [0]  # profile events seen by a recording that had ended: must stay 0


def _c_owner(func):
    """The module, class or instance type a builtin belongs to (never the instance itself)."""
    owner = func.__self__
    if owner is None:
        return None
    kind = type(owner)
    if kind is _ModuleType or issubclass(kind, type):
        return owner
    return kind


class _PyRecording(object):
    __slots__ = (
        "root_code",
        "root_frame",
        "pass_frame",
        "max_depth",
        "max_nodes",
        "nodes",
        "index",
        "stack",
        "active",
        "skip",
        "cut",
        "cancelled",
        "installed",
        "activations",
        "active_ns",
        "t_start",
        "t_stop",
        "ident",
        "__weakref__",
    )

    def __init__(self, root_code, root_frame, pass_frame, max_depth, max_nodes):
        self.root_code = root_code
        # Kept (as trace.c does): a frame that ended must not be freed while we compare, or a new
        # frame at its address (its id) would pass for it.
        self.root_frame = root_frame
        self.pass_frame = pass_frame
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        # [parent, kind, key, name, count, total_ns, depth, call_line]
        self.nodes = [[-1, ROOT, None, None, 0, 0, 0, 0]]
        self.index = {}
        self.stack = []  # [node, last_child, t0, saved_skip]
        self.active = False
        self.skip = 0
        self.cut = 0
        self.cancelled = False
        self.installed = False
        self.activations = 0
        self.active_ns = 0
        self.t_start = _now()
        self.t_stop = 0
        self.ident = _thread.get_ident()
        if root_frame is not None:
            self.active = True
            self.activations = 1
            self.stack.append([0, NONE, self.t_start, 0])

    def event(self, frame, event, arg):
        try:
            if not self.installed:
                _strays[0] += 1
                sys.setprofile(None)
                return
            if self.cancelled:
                if not self.t_stop:
                    self.cut |= CUT_CANCEL
                    self.t_stop = _now()
                self.installed = False
                sys.setprofile(None)
                return
            if event == "call":
                if not self.active:
                    self._outside_call(frame)
                elif self.skip:
                    self.skip += 1
                elif frame is not self.root_frame:  # not the root's own start, reported late
                    self._push(PY, frame.f_code, None)
            elif event == "c_call":
                if self.skip or not self.active:
                    self.skip += 1
                else:
                    self._push(C, _c_owner(arg), arg.__name__)
            else:  # return, c_return, c_exception
                if self.skip:
                    self.skip -= 1
                    return
                stack = self.stack
                if not stack:
                    return
                top = stack[-1][0]
                if top == 0 or top == PASS:
                    if event != "return":
                        return
                    if frame is not (self.root_frame if top == 0 else self.pass_frame):
                        return
                self._pop(_now())
        except BaseException:
            # Never into the traced code: stop recording instead.
            self.cut |= CUT_CANCEL
            self.t_stop = self.t_stop or _now()
            self.installed = False
            try:
                sys.setprofile(None)
            except BaseException:
                pass

    def _outside_call(self, frame):
        root = frame is self.root_frame
        stack = self.stack
        if not root and self.root_frame is None and not self.skip and (not stack or stack[-1][0] == PASS):
            if frame.f_code is self.root_code:  # the first activation, called from the wrapper
                root = True
                self.root_frame = frame
        if (root or (self.pass_frame is not None and frame is self.pass_frame)) and len(stack) < MAX_STACK:
            stack.append([0 if root else PASS, NONE, _now() if root else 0, self.skip])
            self.skip = 0
            if root:
                self.active = True
                self.activations += 1
            return
        self.skip += 1

    def _push(self, kind, key, name):
        stack = self.stack
        if len(stack) >= MAX_STACK:
            self.cut |= CUT_STACK
            self.skip = 1
            return
        top = stack[-1]
        parent = top[0]
        if parent == NONE:
            stack.append([NONE, NONE, 0, 0])
            return
        # The root's children are told apart by the root's line that calls them (as trace.c).
        line = self.root_frame.f_lineno if parent == 0 and self.root_frame is not None else 0
        last = top[1]
        nodes = self.nodes
        if (
            last != NONE
            and nodes[last][2] is key
            and nodes[last][3] == name
            and nodes[last][1] == kind
            and nodes[last][7] == line
        ):
            node = last
        else:
            node = self._child(parent, kind, key, name, line)
        top[1] = node
        stack.append([node, NONE, _now() if node != NONE else 0, 0])

    def _child(self, parent, kind, key, name, line):
        ident = (parent, kind, id(key), name, line)
        node = self.index.get(ident)
        if node is not None:
            return node
        nodes = self.nodes
        depth = nodes[parent][6]
        if depth >= self.max_depth:
            return NONE
        if len(nodes) >= self.max_nodes:
            self.cut |= CUT_NODES
            return NONE
        node = len(nodes)
        nodes.append([parent, kind, key, name, 0, 0, depth + 1, line])  # keeps key alive: id() stays unique
        self.index[ident] = node
        return node

    def _pop(self, t):
        node, _, t0, saved_skip = self.stack.pop()
        if node == NONE:
            return
        if node == PASS:
            self.skip = saved_skip
            return
        if node == 0:
            self.active_ns += t - t0
            self.active = False
            self.skip = saved_skip
            return
        entry = self.nodes[node]
        entry[4] += 1
        entry[5] += t - t0


class PythonRecorder(object):
    name = "python"
    hook = "profile function"

    def choose_hook(self):
        pass

    def start(self, root_code, root_frame, pass_frame, max_depth, max_nodes):
        if _recording_here():
            return None
        recording = _PyRecording(root_code, root_frame, pass_frame, max_depth, max_nodes)
        recording.installed = True
        _py_recordings[recording.ident] = recording
        sys.setprofile(recording.event)
        return recording

    def stop(self, recording):
        if recording.installed and recording.ident != _thread.get_ident():
            # A generator started on one thread and finished on another: the hook leaves its
            # own thread at that thread's next event. The tree misses what ran here.
            recording.cancelled = True
            recording.cut |= CUT_CANCEL
        elif recording.installed:
            # The traced code may have set a profiler of its own meanwhile: it stays.
            if sys.getprofile() == recording.event:
                sys.setprofile(None)
            recording.installed = False
        if _py_recordings.get(recording.ident) is recording:
            del _py_recordings[recording.ident]
        if not recording.t_stop:
            recording.t_stop = _now()
        while recording.stack:
            recording._pop(recording.t_stop)
        recording.root_frame = recording.pass_frame = None

    def tree(self, recording):
        nodes = [(n[0], n[1], n[2], n[3], n[4], n[5], n[7]) for n in recording.nodes]
        nodes[0] = (-1, ROOT, None, None, 0, recording.active_ns, 0)
        return (recording.t_start, recording.t_stop, recording.active_ns, recording.activations, recording.cut, nodes)

    def cancel(self, recording):
        recording.cancelled = True
        if _py_recordings.get(recording.ident) is recording:
            del _py_recordings[recording.ident]


_py_recordings = {}  # thread ident -> the Python recording running there


def _recording_here():
    return _thread.get_ident() in _py_recordings


# --------------------------------------------------------------------------------------------
# From the recorder's tree to the model
# --------------------------------------------------------------------------------------------


def _code_name(code):
    return getattr(code, "co_qualname", None) or code.co_name


def _owner_name(owner):
    if owner is None:
        return None
    if type(owner) is _ModuleType:
        try:
            name = object.__getattribute__(owner, "__dict__").get("__name__")
        except BaseException:
            name = None
        return None if name == "builtins" else (name if isinstance(name, str) else "?")
    try:
        name = type.__dict__["__name__"].__get__(owner)
    except BaseException:
        name = "?"
    return name


_AGENT_PREFIX = _PACKAGE_DIR + os.sep


def _is_agent_code(code):
    filename = code.co_filename
    return isinstance(filename, str) and filename.startswith(_AGENT_PREFIX)


def _ms(ns):
    return round(ns / 1e6, 3)


USER, AGENT, WRAPPER = 0, 1, 2  # what a code object is, for the tree

# id(code or owner) -> (the object, what it is, function, file, line): the names of the code seen
# in trees, worked out once. The object is kept so that its id stays its own; bounded.
_names = {}
_NAMES_MAX = 8192


def _code_info(code, is_wrapper):
    entry = _names.get(id(code))
    if entry is not None and entry[0] is code:
        return entry
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    what = AGENT if _is_agent_code(code) else WRAPPER if is_wrapper is not None and is_wrapper(code) else USER
    entry = (code, what, _code_name(code), code.co_filename, code.co_firstlineno)
    _names[id(code)] = entry
    return entry


def _c_name(owner, name):
    key = (id(owner), name)
    entry = _names.get(key)
    if entry is not None and entry[0] is owner:
        return entry[2]
    if len(_names) >= _NAMES_MAX:
        _names.clear()
    label = _owner_name(owner)
    function = label + "." + name if label else name
    _names[key] = (owner, USER, function, None, None)
    return function


def raw_cost(raw):
    """The invocation's cost (ns): a plain call's is its activation (without the probe around
    it); a generator's or coroutine's, which runs in several activations, or one that ended on
    another thread (cut "stopped"), is timed from its start to its end."""
    t_start, t_stop, active_ns, activations, cut, _ = raw
    wall = max(0, t_stop - t_start)
    cost = wall if activations != 1 or cut & CUT_CANCEL else active_ns
    return cost if cost > 0 else (wall or 1)


def build_tree(raw, root_code, interval_ms, depth, is_wrapper=None):
    """The model's `tree` and the invocation's cost (ns) from a recorder's tree.

    raw: (t_start, t_stop, active_ns, activations, cut, nodes), nodes as trace.c's tree() gives
    them, parents before children (a node's 7th member, the calling line of the root's children,
    may be left out: 0). Calls that took less than interval_ms in all (per call path)
    and calls deeper than depth are summed up in their caller's `hidden`. The agent's own frames
    (the probe's) are left out with everything they called; the frames of the probe's wrapper
    (is_wrapper(code), 3.8-3.11) too, but the Python calls they make (the root itself, when it
    recurses) are kept, as their caller's.
    """
    t_start, t_stop, active_ns, activations, cut, nodes = raw
    wall = max(0, t_stop - t_start)
    # A generator or coroutine runs in several activations; the time between them is shown as
    # a "<suspended>" child.
    cost = raw_cost(raw)
    limit_depth = MODEL_DEPTH if depth is None else min(depth, MODEL_DEPTH)
    threshold = 0 if depth is not None else interval_ms * 1e6

    # Output nodes: [level, total_ns, count, up, kind, key, name, hidden_count, hidden_ns, dict,
    # call_line];
    # out[i] is recorder node i's, or None when it is not shown (below the depth limit, or the
    # probe's). Merging: the probe's frames spliced out can make two paths one.
    top = [0, cost, 1, None, ROOT, root_code, None, 0, 0, None, 0]
    out = [None] * len(nodes)
    out[0] = top
    spliced = set()
    merged = {}
    created = []
    for i in range(1, len(nodes)):
        parent, kind, key, name, count, total = nodes[i][:6]
        call_line = nodes[i][6] if len(nodes[i]) > 6 else 0
        up = out[parent]
        if up is None:
            continue  # inside a call that is not shown: its cost is that call's
        if kind == PY:
            what = _code_info(key, is_wrapper)[1]
            if what == WRAPPER:
                out[i] = up
                spliced.add(i)
                continue
            if what == AGENT:
                continue
        elif parent in spliced:
            continue  # a C call of the probe's wrapper (its clock)
        # Spliced out of a wrapper, a call is its caller's; only the root's own calls keep a line.
        if up is not top:
            call_line = 0
        ident = (id(up), kind, id(key), name, call_line)
        node = merged.get(ident)
        if node is not None:
            node[1] += total
            node[2] += count
            out[i] = node
            continue
        if up[0] >= limit_depth:
            up[7] += count
            up[8] += total
            continue
        node = [up[0] + 1, total, count, up, kind, key, name, 0, 0, None, call_line]
        merged[ident] = node
        out[i] = node
        created.append(node)

    root = _node_dict(_code_info(root_code, None), "py", 1, cost, cost)
    top[9] = root
    # Costs are final only now (merging): decide what is shown, parents before children.
    for node in created:
        up = node[3]
        parent_dict = up[9]
        if parent_dict is None:
            continue  # inside a hidden call: its cost is that call's
        if node[1] < threshold:
            up[7] += node[2]
            up[8] += node[1]
            continue
        if node[4] == PY:
            d = _node_dict(_code_info(node[5], is_wrapper), "py", node[2], node[1], cost)
        else:
            d = _node_dict((None, USER, _c_name(node[5], node[6]), None, None), "c", node[2], node[1], cost)
        if node[10]:
            d["call_line"] = node[10]
        parent_dict["children"].append(d)
        node[9] = d
    for node in [top] + created:
        if node[7] and node[9] is not None:
            node[9]["hidden"] = {"count": node[7], "cost_ms": _ms(node[8])}
    if activations > 1 and wall > active_ns:
        info = (None, USER, "<suspended>", None, None)
        root["children"].append(_node_dict(info, "suspended", activations - 1, wall - active_ns, cost))
    if cut:
        root["truncated"] = [
            w for bit, w in ((CUT_NODES, "nodes"), (CUT_STACK, "depth"), (CUT_CANCEL, "stopped")) if cut & bit
        ]
    return root, cost


def _node_dict(info, kind, count, total, root_cost):
    return {
        "function": info[2],
        "file": info[3],
        "line": info[4],
        "kind": kind,
        "count": count,
        "cost_ms": round(total / 1e6, 3),
        "pct": round(100.0 * total / root_cost, 2),
        "children": [],
        "hidden": _NO_HIDDEN,
    }


_NO_HIDDEN = {"count": 0, "cost_ms": 0.0}  # shared, never changed: replaced when there is some


# --------------------------------------------------------------------------------------------
# Sessions: one `trace.start` request, its probe, the invocations it records
# --------------------------------------------------------------------------------------------

DEFAULT_INTERVAL_MS = 0.1
DEFAULT_LIMIT = 10

_trace_ids = itertools.count(1)
_traces = {}  # trace id -> _Trace
_calls = {}  # thread ident -> _Call: the recording running on that thread


class _Call(object):
    """One recorded invocation; every trace of the same function observing it shares it."""

    __slots__ = ("recorder", "handle", "frame_id", "code", "traces", "raw", "ident", "thread")

    def __init__(self, recorder, handle, frame_id, code, ident):
        self.recorder = recorder
        self.handle = handle
        self.frame_id = frame_id
        self.code = code
        self.traces = []
        self.raw = None
        self.ident = ident
        # {"ident", "name"}, taken on the traced thread when the invocation ends: the event is
        # built later on another thread, when a short-lived thread (one per request) may be gone.
        self.thread = None


def _calling_frame(code):
    """(frame, root_frame, pass_frame): the frame the probe was called from (the first frame
    above the agent's own); it is the root's when the probe fires in it (sys.monitoring), else
    the frame of the wrapper that is about to call the root (3.8-3.11), or neither."""
    frame = sys._getframe(2)
    while frame is not None and _is_agent_code(frame.f_code):
        frame = frame.f_back
    if frame is None:
        return None, None, None
    if frame.f_code is code:
        return frame, frame, None
    if instrument.is_wrapper_code(frame.f_code):
        return frame, None, frame
    return frame, None, None


# The probe's wrapper code exists only with the code-swap engine (3.8-3.11).
_is_wrapper = None if instrument.MONITORING else instrument.is_wrapper_code


class _Trace(streams.Stream, instrument.Probe):
    end_method = END
    table = _traces

    def __init__(self, client_id, located, recorder, interval, depth, min_cost, cond, limit):
        self.id = next(_trace_ids)
        self.client_id = client_id
        self.located = located
        self.code = located.code
        self.recorder = recorder
        self.interval = interval
        self.depth = depth
        self.min_cost_ns = None if not min_cost else min_cost * 1e6
        self.view = callargs.CallArgs(located)
        self.filter = watch.Filter(cond) if cond is not None else None
        self.used = cond.names if cond is not None else frozenset()
        self.needs_args = cond is not None
        self.limit = limit
        self.count = 0
        self.dropped = 0  # events the client did not take in time
        self.discarded = 0  # invocations faster than -et
        self.skipped = 0
        self.skipped_threads = set()
        self.done = False  # ended: no more recordings start, no more events are sent
        self.reserved = 0  # invocations recorded and kept (their events sent or on their way)
        self.armed = False  # set once the client has the start response (events.Started)
        self.lock = _thread.allocate_lock()
        self.live = set()  # _Calls in flight
        self.install_id = None
        self.cleanup_id = None

    def arm(self):
        self.armed = True

    # -- instrument.Probe, on the target's threads -------------------------------------------
    def precheck(self, bind):
        # -f (target, args, kwargs, params only) rejects calls before enter() runs, from C on 3.12+.
        return self.filter.precheck(bind, self.view) if self.filter is not None else None

    def code_replaced(self, old, new):
        # reload: invocations from now on run the new code (those in flight keep theirs, in _Call)
        if self.code is old:
            self.code = new

    def enter(self, target, args, kw, checked=False):
        if self.done or not self.armed or self.reserved >= self.limit:
            return instrument.NO_OBSERVE
        if self.filter is not None:
            values = None if checked else watch.call_values(self.view, self.used, target, None, None, args, kw, None)
            ok, error = self.filter.at_entry(values, checked)
            if error is not None:
                watch.stop_on_filter_error(self, error)  # a call whose filter raised is not traced
            if not ok:
                return instrument.NO_OBSERVE
        ident = _thread.get_ident()
        frame, root_frame, pass_frame = _calling_frame(self.code)
        call = _calls.get(ident)
        if call is not None:
            # Another trace of this function is starting to record this very call: share it.
            # Anything else is a call inside a recorded one (recursion, another trace's).
            if call.raw is None and call.code is self.code and call.frame_id == id(frame):
                return self._join(call)
            return instrument.NO_OBSERVE
        profiler = sys.getprofile() if self.recorder.hook == "profile function" else None
        if profiler is not None:
            self._skip(
                ident,
                "this thread already has a profiler (sys.getprofile() is %s); fp does not "
                "replace it, so this call is not traced" % _describe(profiler),
            )
            return instrument.NO_OBSERVE
        try:
            handle = self.recorder.start(self.code, root_frame, pass_frame, RECORD_DEPTH, MAX_NODES)
        except Exception as exc:  # an audit hook refusing sys.setprofile
            self._skip(ident, "the profile hook could not be set: %s" % exception_text(exc))
            return instrument.NO_OBSERVE
        if handle is None:
            return instrument.NO_OBSERVE  # a recording cancelled a moment ago is still leaving
        call = _Call(self.recorder, handle, id(frame), self.code, ident)
        del frame, root_frame, pass_frame
        _calls[ident] = call
        return self._join(call)

    def _join(self, call):
        call.traces.append(self)
        self.live.add(call)
        return call

    def exit(self, call, return_obj, exception, cost_ns):
        if call.raw is None:
            # The first trace to see the end stops the recording, for all that share it.
            if _calls.get(call.ident) is call:
                del _calls[call.ident]
            call.recorder.stop(call.handle)
            call.raw = call.recorder.tree(call.handle)
            call.handle = None
            call.thread = events.thread_info(call.ident)
        self.live.discard(call)
        if self.done or self not in call.traces:
            return
        # Decided here (-et, -n); the model is built and sent on the client's worker thread, so
        # the traced thread only stops the recording.
        with self.lock:
            if self.reserved >= self.limit:
                return  # began before the last one kept ended
            if self.min_cost_ns is not None and raw_cost(call.raw) < self.min_cost_ns:
                self.discarded += 1
                return
            self.reserved += 1  # from the limit on, no more recordings start
        events.defer(self.client_id, lambda: self._report(call))

    # -- reports -----------------------------------------------------------------------------
    def _report(self, call):
        if self.done:
            return
        tree, cost = build_tree(call.raw, call.code, self.interval, self.depth, _is_wrapper)
        event = {
            "trace_id": self.id,
            "time": time.time() - (_now() - call.raw[0]) / 1e9,
            "thread": call.thread or events.thread_info(call.ident),
            "cost_ms": _ms(cost),
            "recorder": call.recorder.name,
            "tree": tree,
        }
        last = False
        with self.lock:
            if self.done:
                return
            self.count += 1
            event["index"] = self.count
            if self.dropped:
                event["dropped"] = self.dropped
            if not events.notify(self.client_id, EVENT, event):
                self.dropped += 1
            last = self.count >= self.limit
            if last:
                self.done = True
                events.notify(self.client_id, END, self.summary("limit"))
        if last:
            self._remove()

    def _skip(self, ident, reason):
        with self.lock:
            self.skipped += 1
            if ident in self.skipped_threads:
                return
            self.skipped_threads.add(ident)
        events.notify(
            self.client_id, SKIPPED, {"trace_id": self.id, "thread": events.thread_info(ident), "reason": reason}
        )

    # -- the end -----------------------------------------------------------------------------
    def summary(self, reason):
        out = {
            "trace_id": self.id,
            "reason": reason,
            "count": self.count,
            "dropped": self.dropped,
            "discarded": self.discarded,
            "filter_errors": 0,
            "skipped": self.skipped,
        }
        return watch.end_summary(self, out, reason)

    def forget(self):
        streams.Stream.forget(self)
        self._drop_calls()
        _release_trace_tool()

    def _drop_calls(self):
        """Recordings in flight that only this trace wanted are cancelled: their hook leaves its
        thread at that thread's next event (it cannot be removed from here)."""
        for call in list(self.live):
            if self in call.traces:
                call.traces.remove(self)
            if not call.traces and call.raw is None and call.handle is not None:
                call.recorder.cancel(call.handle)
                if _calls.get(call.ident) is call:
                    del _calls[call.ident]
        self.live.clear()


def _describe(obj):
    """What a profile function is, without running its code: a function's or method's name,
    else its type's."""
    import types

    try:
        if isinstance(obj, types.MethodType):
            obj = obj.__func__
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            return "function %s.%s" % (obj.__module__, obj.__qualname__)
        return "%s.%s object" % (type(obj).__module__, type(obj).__qualname__)
    except BaseException:
        return "?"


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------

START_PARAMS = ("module", "class", "method", "nested", "interval", "depth", "min_cost", "filter", "limit", "recorder")


def start(client_id, params):
    """Start tracing; each traced invocation follows as a trace/event notification."""
    check_names(params, START_PARAMS)
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    interval = _get_number(params, "interval", DEFAULT_INTERVAL_MS, 0, 1e9)
    depth = get_int(params, "depth", None, 0, MODEL_DEPTH) or None  # 0: no depth limit
    min_cost = _get_number(params, "min_cost", None, 0, 1e12) or None  # 0: every invocation
    limit = get_int(params, "limit", DEFAULT_LIMIT, 1, 1000000)
    cond_text = get_expr(params, "filter") or None
    recorder = _recorder(get_str(params, "recorder"))

    import builtins

    # Syntax first (nothing located, nothing installed), then the names, then the globals.
    if cond_text:
        watch.compile_expressions(cond_text, "filter", {"__builtins__": builtins}, split=False)
    located = locate.locate_function(module, class_name, method, nested)
    cond = None
    if cond_text:
        cond = watch.compile_expressions(cond_text, "filter", watch.expression_globals(located), split=False)[0]
        late = sorted(cond.names & frozenset(("return_obj", "cost", "exception")))
        if late:
            raise invalid_param(
                "filter",
                "trace's -f is decided when the call starts: it sees target, args, "
                "kwargs and params, not %s (use -et MS for the cost)" % ", ".join(late),
            )

    trace = _Trace(client_id, located, recorder, interval, depth, min_cost, cond, limit)
    trace.install(located, "trace")
    trace.code = _root_code(located)
    recorder.choose_hook()
    return trace.started(
        "trace_id",
        "trace.stop",
        located,
        {
            "recorder": recorder.name,
            "hook": recorder.hook,
            "interval": 0 if depth is not None else interval,
            "depth": depth,
            "min_cost": min_cost,
            "filter": cond_text,
            "limit": limit,
        },
    )


def stop(client_id, params):
    """Stop one trace of this client (trace_id), or all of them (no trace_id)."""
    return streams.stop_request(client_id, params, _traces, "trace_id")


def active():
    """Traces running now (for tests and status)."""
    return sorted(_traces)


def diagnostics():
    """For tests: profile hooks of ours that ran where no recording was (must stay 0), and the
    recordings in flight."""
    native = native_recorder()
    return {
        "native_strays": native["strays"]() if native is not None else None,
        "python_strays": _strays[0],
        "recording_threads": sorted(_calls),
        "python_recordings": sorted(_py_recordings),
        "monitored": native["monitored"]() if native is not None else 0,
        "trace_tool": trace_tool_id(),
        # 3.12+: "monitoring_callback" (called through its vectorcall slot), else a builtin's type
        "callbacks": type(native["ev_call"]).__name__ if native is not None else None,
    }


def _root_code(located):
    """The code the root's frames run. On 3.8-3.11 a function some other client already observes
    has the engine's wrapper as its __code__, which locate reports; the site observing it knows
    the original (the engine keys sites by located.key)."""
    site = getattr(instrument, "_sites", {}).get(located.key)
    code = getattr(site, "code", None)
    return code if code is not None and not instrument.is_wrapper_code(code) else located.code


def _recorder(name):
    if name not in (None, "native", "python"):
        raise invalid_param("recorder", 'parameter \'recorder\' must be "native", "python" or null, not %r' % name)
    if name == "python":
        return PythonRecorder()
    functions = native_recorder()
    if functions is not None:
        return NativeRecorder(functions)
    if name == "native":
        raise AgentError(
            NOT_SUPPORTED,
            "the C trace recorder is not available in this process (the agent library "
            "did not provide it, or its layout check failed on this Python); leave out the recorder "
            "to use the Python one",
        )
    return PythonRecorder()


def _get_number(params, name, default, low, high):
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise invalid_param(name, "parameter %r must be a number, not %s" % (name, type(value).__name__))
    if value < low or value > high:
        raise invalid_param(name, "parameter %r must be between %s and %s, not %s" % (name, low, high, value))
    return value
