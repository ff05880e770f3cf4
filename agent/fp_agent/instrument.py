"""The instrumentation engine: observe every call of one Python function, from every caller and
every thread, and put the function back exactly as it was when the last observer goes.

API (used by watch, tt and trace):

    class MyProbe(instrument.Probe):
        needs_args = True                      # False: enter() gets target=args=kwargs=None
        def enter(self, target, args, kwargs, checked=False):
            return token                       # on the calling thread, before the body runs;
                                               # or instrument.NO_OBSERVE: exit() is not called
        def exit(self, token, return_obj, exception, cost_ns):
            ...                                # after it returned (exception None) or raised
        def precheck(self, bind):              # optional, for speed: a callable
            return pre                         # pre(all_args, kwargs) -> bool, or None

    located = locate.locate_function(module, class_name, method, nested)
    install_id = instrument.install(client_id, located, probe, kind="watch")
    instrument.uninstall(install_id)           # also done by registry on detach/disconnect/shutdown

- `target` is the instance (`cls` for classmethods, None for functions and staticmethods),
  `args` the positional arguments after it (a tuple, `*args` appended), `kwargs` the
  keyword-only arguments plus `**kwargs` (a fresh dict). A parameter passed by keyword but
  declared positional is in `args` (the function's own view of the call).
- Generators and coroutines are one call from their first resumption to their end: `cost_ns`
  is the wall time in between (suspensions included), `return_obj` the value they returned
  (for `async def`: the awaited result, not the coroutine object).
- `precheck` (optional) lets the engine reject a call before enter() runs, in the cheapest
  way it has (from C on 3.12+): pre(all_args, kwargs) gets every positional argument, the
  bound target first when `bind` is set, and the keyword-only ones (kwargs may be None); False
  means this probe does not observe the call; an exception means "call enter()" (which can
  report it). A function with several probes is prechecked only if every probe has one.
  When the precheck of the only probe said yes, enter() gets checked=True: its filter passed
  for this call and is not evaluated again (a filter runs once per call, whatever it does).
- Probes run on the target's thread; they must be quick, and must not raise (an exception is
  swallowed, except KeyboardInterrupt/SystemExit, which belong to the target). Code a probe
  runs (user expressions) is never observed itself: no recursion through the probe.
- Several probes (clients) may observe one function; each is removed on its own.
- A probe may uninstall itself from exit() (e.g. a -n limit), on the target's thread.
- `suppressed()`: calls made by the current thread inside it are not observed (tt replay).
- A probe may define `code_replaced(old, new)`: called (under the engine's lock, on the
  reloading thread) when reload gives the observed function new code; the probe follows it.

Reload (reload.py) goes through two functions, so that a probe keeps observing a function whose
code is replaced, and its removal leaves the new code in place:

    code = instrument.real_code(function)      # the code as written, not the engine's wrapper
    instrument.replace_code(function, new)     # the function runs `new` from its next call on

Engines (see docs/design-notes.md):
- 3.12+: sys.monitoring (PEP 669) with one tool id (4, else 3, else 5; never 0-2, which the
  target's debugger, coverage and cProfile expect to get), PY_START and PY_RETURN as LOCAL
  events on the target code object only; PY_UNWIND (exits by exception) cannot be a local
  event, so it is set globally while anything is instrumented, with a callback that returns at
  once for other code. The function object and its __code__ are never touched. The callbacks
  are C (agent/native/monitor.c: parameters read with PyFrame_GetVar, the precheck run before
  any Python code of ours) when the agent library gives them; _on_start/_on_return/_on_unwind
  below are their pure-Python twin.
- 3.8-3.11: the function keeps its identity; its __code__ is swapped for generated wrapper
  code with the same signature and free variables, whose constants hold the dispatcher (never
  the module's globals); the wrapper asks site.gate (the precheck, then enter) and calls a
  copy of the original function (`yield from` for generators, `await` for coroutines); a call
  no probe wants goes straight to the copy. Nested functions (-nm): the outer function's __code__
  is swapped for a copy whose co_consts hold the nested wrapper code instead of the original.
"""

import _thread
import sys
import types
from time import perf_counter_ns as _clock

from . import registry
from .errors import BUSY, NOT_SUPPORTED, AgentError

# Imported with this module, under the import lock, when its first request comes (loading.py):
# the functions below import them where they use them.
LAZY_IMPORTS = ("operator",)

NO_OBSERVE = type("NoObserve", (), {"__repr__": lambda self: "NO_OBSERVE", "__slots__": ()})()

MONITORING = sys.version_info >= (3, 12) and hasattr(sys, "monitoring")
ENGINE = "sys.monitoring" if MONITORING else "code-swap"

# The tool ids fp may take, in order of preference: 3 and 4 have no assigned role; 5
# (OPTIMIZER_ID) is rarely used by programs. 0-2 are left to the target's own debugger,
# coverage and profiler (cProfile takes 2 in 3.12+), which would otherwise fail to start.
TOOL_PREFERENCE = (4, 3, 5)
TOOL_NAME = "fp"

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08
_CO_NOFREE = 0x40
_CO_GENERATOR = 0x20
_CO_COROUTINE = 0x80
_CO_ITERABLE_COROUTINE = 0x100
_CO_ASYNC_GENERATOR = 0x200

_get_ident = _thread.get_ident
_getframe = sys._getframe

# Guards every change of the tables below; re-entrant because a probe may uninstall itself
# from a callback on a thread that is installing (a user expression calling a watched function).
_lock = _thread.RLock()
_sites = {}  # key -> _Site
# id(code) -> _Site (sys.monitoring engine). By id: hashing a code object walks its whole
# bytecode on every lookup in 3.12+; the site holds the code, so its id stays unique meanwhile.
_by_code = {}
_wrapper_codes = {}  # wrapper code -> _Site (code-swap engine), for tracebacks and checks
_patched_outer_codes = {}  # outer code copies holding a nested wrapper -> _NestedSite
# Threads running probe code or suppressed(): calls they make are not observed. A set of
# idents, usually empty, so the common check is one truth test.
_busy = set()


class Probe(object):
    """Base class of the observers install() takes; see the module docstring."""

    needs_args = True

    def enter(self, target, args, kwargs, checked=False):
        return None

    def exit(self, token, return_obj, exception, cost_ns):
        pass

    def precheck(self, bind):
        return None

    def code_replaced(self, old, new):
        pass


class suppressed(object):
    """Context manager: calls made by this thread meanwhile are not observed by any probe."""

    def __enter__(self):
        self._ident = _get_ident()
        self._added = self._ident not in _busy
        _busy.add(self._ident)
        return self

    def __exit__(self, *exc_info):
        if self._added:
            _busy.discard(self._ident)
        return False


def install(client_id, located, probe, kind, label=None):
    """Start calling `probe` for every call of the located function. Returns an installation id
    (registry), undone by uninstall() or when the client goes. Raises AgentError when the
    function cannot be instrumented."""
    if located.code is None:
        raise AgentError(NOT_SUPPORTED, "%s cannot be instrumented" % located.label)
    with _lock:
        site = _sites.get(located.key)
        created = site is None
        if created:
            site = _new_site(located)
        site.add(probe)
        if created:
            try:
                site.activate()
            except BaseException:
                site.remove(probe)
                _sites.pop(site.key, None)
                _release_tool_if_idle()
                raise
            _sites[site.key] = site
    return registry.add(client_id, kind, lambda: _remove(site, probe), label or located.label)


def uninstall(install_id):
    """Remove one installation; returns an error text or None (also when already removed)."""
    return registry.remove(install_id)


def sites():
    """What is instrumented now (for tests and status): [{label, engine, probes}]."""
    with _lock:
        return [{"label": s.label, "engine": ENGINE, "probes": len(s.probes)} for s in _sites.values()]


def tool_id():
    """The sys.monitoring tool id fp holds now, or None."""
    return _Tool.id


def is_wrapper_code(code):
    """True for the generated wrapper code of the code-swap engine (left out of tracebacks)."""
    return code in _wrapper_codes


def real_code(function):
    """The code `function` runs as the program wrote it: its __code__, or (3.8-3.11) while fp
    observes it or a function nested in it, the original the engine keeps behind its wrapper."""
    with _lock:
        site = _swap_site_of(function)
        return site.original if site is not None else function.__code__


def replace_code(function, new_code):
    """From its next call on, `function` runs `new_code` (which has the free variables of
    real_code(function)). Probes observing it, or a function nested one level in it (paired by
    name), follow the new code, and removing them later leaves it in place. Returns the
    [(old, new)] wrapper codes the engine replaced: functions made earlier from a nested
    function's wrapper (3.8-3.11) hold the old one."""
    with _lock:
        if not MONITORING:
            site = _swap_site_of(function)
            if site is None:
                function.__code__ = new_code
                return []
            return site.retarget(new_code)
        old = function.__code__
        for old_code, code in _code_pairs(old, new_code):
            site = _by_code.get(id(old_code))
            if site is not None and site.code is old_code:
                site.retarget(code)  # the new code is observed before any call can run it
        function.__code__ = new_code
        return []


def _swap_site_of(function):
    for site in _sites.values():
        if isinstance(site, _SwapSite) and site.function is function:
            return site
    return None


def _code_pairs(old, new):
    """(old, new) for the code itself and for each function nested one level in it, paired by
    name (the first of each name in order)."""
    pairs = [(old, new)]
    taken = set()
    for c in old.co_consts:
        if not isinstance(c, types.CodeType):
            continue
        for d in new.co_consts:
            if isinstance(d, types.CodeType) and id(d) not in taken and d.co_name == c.co_name:
                taken.add(id(d))
                pairs.append((c, d))
                break
    return pairs


def _rekey(site, key):
    if _sites.get(site.key) is site:
        del _sites[site.key]
    site.key = key
    _sites[key] = site


# CO_GENERATOR, CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR
_SUSPENDING = 0x20 | 0x80 | 0x100 | 0x200


def refresh(probe):
    """The probe's wishes changed (counts_natively): the engine's fast path is told."""
    with _lock:
        for site in list(_sites.values()):
            if probe in site.probes:
                site.changed()


def native_counts(probe):
    """What the engine counted in C for the probe's function since the last call (one tuple per
    code it runs: a reload adds one), for a probe that counts_natively() now or did last on its
    site. [] when nothing is counted natively."""
    site = getattr(probe, "native_site", None)
    if site is None or site.owner is not probe:
        return []
    return site.native_counts()


def _done_any(pairs, result, cost_ns, exc=None):
    """The probes' exit() for a call of the code-swap engine that ended (called by the wrapper,
    or by counter.c for a call that started while the probes ran in Python), this thread marked
    busy meanwhile: calls the probes make are not observed."""
    ident = _get_ident()
    _busy.add(ident)
    try:
        _exit_probes(pairs, result, exc, cost_ns)
    finally:
        _busy.discard(ident)


def _remove(site, probe):
    with _lock:
        if not site.remove(probe) or site.probes:
            return
        _sites.pop(site.key, None)
        try:
            site.deactivate()
        finally:
            _release_tool_if_idle()


# ---------------------------------------------------------------------------------------------
# Calling the probes


def _enter_probes(probes, target, args, kwargs, checked=None):
    """[(probe, token)] of the probes that observe this call, or None. checked: the probe whose
    precheck accepted this call (enter() is told so), or None."""
    pairs = None
    for probe in probes:
        try:
            if probe is checked:
                token = probe.enter(target, args, kwargs, True)
            else:
                token = probe.enter(target, args, kwargs)
        except Exception:  # a probe's bug must never reach the target's code
            continue
        if token is not NO_OBSERVE:
            if pairs is None:
                pairs = []
            pairs.append((probe, token))
    return pairs


def _exit_probes(pairs, return_obj, exception, cost_ns):
    for probe, token in pairs:
        try:
            probe.exit(token, return_obj, exception, cost_ns)
        except Exception:
            pass


# ---------------------------------------------------------------------------------------------
# Sites: one instrumented code object (or function), the probes that observe it


class _Site(object):
    def __init__(self, located):
        self.key = located.key
        self.label = located.label
        self.code = located.code
        self.bind = located.bind
        self.probes = ()  # replaced, never mutated: callbacks read it without the lock
        self.needs_args = False
        self.pre = None  # the probes' combined precheck, or None
        self.pre_of = None  # (pre, probe) when pre is the precheck of the only probe

    def add(self, probe):
        self._set(self.probes + (probe,))

    def remove(self, probe):
        kept = tuple(p for p in self.probes if p is not probe)
        if len(kept) == len(self.probes):
            return False
        self._set(kept)
        return True

    def _set(self, probes):
        self.probes = probes
        self.needs_args = any(getattr(p, "needs_args", True) for p in probes)
        self.pre = _combined_precheck(probes, self.bind)
        self.pre_of = (self.pre, probes[0]) if self.pre is not None and len(probes) == 1 else None
        self.changed()

    def checked(self, passed):
        """The probe whose precheck is `passed` (a precheck that accepted the call), or None.
        Compared by identity: the probes may have changed since the precheck ran."""
        pre_of = self.pre_of
        if passed is None or pre_of is None or pre_of[0] is not passed:
            return None
        return pre_of[1]

    def changed(self):
        """The probes changed (the engines refresh what their fast paths read)."""

    owner = None  # the probe counted in C now, or last: what was counted there is its own

    def _claim_counter(self):
        """The probe whose calls the engine may count in C, calling no Python, or None: the
        only probe, a monitor's that asks for it (counts_natively). What was counted for
        another one before is handed to it first."""
        probes = self.probes
        wants = getattr(probes[0], "counts_natively", None) if len(probes) == 1 else None
        counter = probes[0] if wants is not None and wants() else None
        if counter is not None and self.owner is not None and self.owner is not counter:
            self.owner.sync(lock=True)
        if counter is not None:
            self.owner = counter
            counter.native_site = self
        return counter

    def native_counts(self):
        return []

    def code_replaced(self, old, new):
        """Reload gave the function new code: the probes follow it."""
        self.code = new
        for probe in self.probes:
            follow = getattr(probe, "code_replaced", None)
            if follow is None:
                continue
            try:
                follow(old, new)
            except Exception:
                pass


def _combined_precheck(probes, bind):
    pres = []
    for probe in probes:
        make = getattr(probe, "precheck", None)
        pre = None
        if make is not None:
            try:
                pre = make(bind)
            except Exception:
                pre = None
        if pre is None:
            return None
        pres.append(pre)
    if len(pres) == 1:
        return pres[0]
    if not pres:
        return None

    def any_of(all_args, kwargs):
        for pre in pres:
            try:
                if pre(all_args, kwargs):
                    return True
            except Exception:
                return True
        return False

    return any_of


def _new_site(located):
    if MONITORING:
        return _MonitorSite(located)
    if located.outer is not None:
        return _NestedSite(located)
    return _SwapSite(located)


# ---------------------------------------------------------------------------------------------
# Engine 1 (3.12+): sys.monitoring, local events on the code object


class _Tool(object):
    id = None
    native = False  # the C callbacks of agent/native/monitor.c are in use


def _native_monitor():
    """monitor.c's functions (dict), or None: the Python callbacks below are their twin."""
    if _FORCE_PYTHON:
        return None
    package = sys.modules.get(__name__.rpartition(".")[0])
    functions = getattr(package, "_native_monitor", None)
    return functions if isinstance(functions, dict) else None


def _native_counter():
    """counter.c's functions (dict) for the code-swap engine, or None: the site's Python
    methods count then."""
    if _FORCE_PYTHON:
        return None
    package = sys.modules.get(__name__.rpartition(".")[0])
    functions = getattr(package, "_native_counter", None)
    return functions if isinstance(functions, dict) else None


_FORCE_PYTHON = []  # tests: [True] makes the next tool acquisition use the Python callbacks


def use_python_callbacks(flag=True):
    """Tests: use the pure-Python callbacks from the next acquisition of the tool id on."""
    del _FORCE_PYTHON[:]
    if flag:
        _FORCE_PYTHON.append(True)


def callbacks_in_use():
    """ "native", "python", or None when no tool id is held (3.8-3.11: always None)."""
    if _Tool.id is None:
        return None
    return "native" if _Tool.native else "python"


def _acquire_tool():
    if _Tool.id is not None:
        return _Tool.id
    mon = sys.monitoring
    events = mon.events
    taken = []
    for tool in TOOL_PREFERENCE:
        holder = mon.get_tool(tool)
        if holder is not None:
            taken.append("%d (%s)" % (tool, holder))
            continue
        try:
            mon.use_tool_id(tool, TOOL_NAME)
        except ValueError:
            continue
        native = _native_monitor()
        if native is not None:
            native["configure"](_busy, _live, _start, _native_return, _native_unwind)
            callbacks = (native["on_start"], native["on_return"], native["on_unwind"])
        else:
            callbacks = (_on_start, _on_return, _on_unwind)
        mon.register_callback(tool, events.PY_START, callbacks[0])
        mon.register_callback(tool, events.PY_RETURN, callbacks[1])
        mon.register_callback(tool, events.PY_UNWIND, callbacks[2])
        mon.set_events(tool, events.PY_UNWIND)
        _Tool.id = tool
        _Tool.native = native is not None
        return tool
    raise AgentError(
        BUSY,
        "no sys.monitoring tool id is free for fp: %s are in use; fp leaves ids 0-2 to the "
        "program's debugger, coverage and profiler. Stop one of those tools and try again" % ", ".join(taken),
    )


def _release_tool_if_idle():
    tool = _Tool.id
    if tool is None or _sites:
        return
    mon = sys.monitoring
    events = mon.events
    _Tool.id = None
    _live.clear()
    try:
        mon.set_events(tool, 0)
        for event in (events.PY_START, events.PY_RETURN, events.PY_UNWIND):
            mon.register_callback(tool, event, None)
        native = _native_monitor()
        if _Tool.native and native is not None:
            native["configure"]()  # drops its references to our tables and functions
    finally:
        _Tool.native = False
        if mon.get_tool(tool) == TOOL_NAME:
            mon.free_tool_id(tool)


# id(frame) -> (site, [(probe, token)], t0): the observed calls in flight, in every thread. A
# frame object lives as long as its call (suspended generators included), so its id is unique
# meanwhile; the frame itself is not kept alive by us.
_live = {}


# What monitor.c reads per instrumented code: (pos names, *name, keyword-only names, **name,
# precheck), given to it with its site() function while the native callbacks are in use.
_native_sites = {}  # id(code) -> spec


def _native_site(code, spec):
    native = _native_monitor() if _Tool.native else None
    if native is not None and not native["site"](code, spec):
        raise AgentError(BUSY, "fp observes too many functions at once (256); stop some watches first")


def _start(code, frame, all_args, kwargs, passed=None):
    """An observed call starts (called by monitor.c, or by _on_start): run the probes' enter().
    passed: the precheck that accepted the call, if one did."""
    site = _by_code.get(id(code))
    if site is None:
        return
    probes = site.probes
    if not probes:
        return
    target = None
    args = all_args
    if site.bind and all_args:
        target = all_args[0]
        args = all_args[1:]
    if kwargs is None:
        kwargs = {}
    pairs = _enter_probes(probes, target, args, kwargs, site.checked(passed))
    if pairs is not None:
        _live[id(frame)] = (site, pairs, _clock())


def _finish(frame, retval, exc):
    entry = _live.pop(id(frame), None)
    if entry is not None:
        cost = _clock() - entry[2]
        _exit_probes(entry[1], retval, exc, cost)


def _native_return(code, offset, retval):
    _finish(_getframe(1), retval, None)  # called from C: depth 1 is the function's frame


def _native_unwind(code, offset, exc):
    _finish(_getframe(1), None, exc)


# The pure-Python twin of monitor.c's callbacks.


def _on_start(code, offset):
    site = _by_code.get(id(code))
    if site is None or (_busy and _get_ident() in _busy):
        return
    frame = _getframe(1)
    try:
        all_args, kwargs = site.codes[id(code)][2](frame)
    except Exception:
        return
    pre = site.pre
    passed = None
    if pre is not None:
        try:
            if not pre(all_args, kwargs):
                return
            passed = pre
        except KeyboardInterrupt:
            raise
        except Exception:
            pass
    _start(code, frame, all_args, kwargs, passed)


def _on_return(code, offset, retval):
    if _live:
        _finish(_getframe(1), retval, None)


def _on_unwind(code, offset, exc):
    # A global event: every frame of the process that exits with an exception comes here.
    if _live and id(code) in _by_code:
        _finish(_getframe(1), None, exc)


class _MonitorSite(_Site):
    """Local events on the code object. After a reload the site observes the new code and keeps
    its events on the old one (calls still running it end there) until it is removed."""

    def __init__(self, located):
        # id(code) -> (code, signature, argument reader), for every code the site observes
        self.codes = {id(located.code): (located.code, _signature(located.code), _arg_reader(located.code))}
        _Site.__init__(self, located)

    def changed(self):
        counter = self._claim_counter()
        for key, (code, spec, _reader) in list(self.codes.items()):
            if key in _native_sites:
                pos, _posonly, kwonly, varargs, varkw = spec
                # Generators and coroutines are never counted in C: their frames leave at each
                # yield without an end event.
                counting = counter is not None and not code.co_flags & _SUSPENDING
                spec = (pos, varargs, kwonly, varkw, self.pre, counting)
                _native_sites[key] = spec
                _native_site(code, spec)

    def native_counts(self):
        native = _native_monitor() if _Tool.native else None
        if native is None:
            return []
        out = []
        for code, _spec, _reader in list(self.codes.values()):
            got = native["counts"](code)
            if got is not None:
                out.append(got)
        return out

    def activate(self):
        tool = _acquire_tool()
        self._observe(tool, self.code)

    def _observe(self, tool, code):
        events = sys.monitoring.events
        _by_code[id(code)] = self
        _native_sites[id(code)] = None
        try:
            self.changed()
            sys.monitoring.set_local_events(tool, code, events.PY_START | events.PY_RETURN)
        except BaseException:
            _by_code.pop(id(code), None)
            _native_sites.pop(id(code), None)
            _native_site(code, None)
            raise

    def retarget(self, code):
        old = self.code
        if code is old:
            return
        if id(code) not in self.codes:
            self.codes[id(code)] = (code, _signature(code), _arg_reader(code))
            try:
                self._observe(_Tool.id, code)
            except BaseException:
                del self.codes[id(code)]
                raise
        _rekey(self, ("code", id(code)))
        self.code_replaced(old, code)

    def deactivate(self):
        for key, (code, _spec, _reader) in list(self.codes.items()):
            _by_code.pop(key, None)
            _native_sites.pop(key, None)
            _native_site(code, None)
        for key in [k for k, v in list(_live.items()) if v[0] is self]:
            _live.pop(key, None)
        if _Tool.id is not None:
            for code, _spec, _reader in self.codes.values():
                sys.monitoring.set_local_events(_Tool.id, code, 0)


def _arg_reader(code):
    """frame -> (all positional arguments, kwargs) from the frame's parameters, read at PY_START
    (before the body could rebind them); the Python twin of monitor.c's reading."""
    from operator import itemgetter

    pos, _posonly, kwonly, varargs, varkw = _signature(code)
    if len(pos) > 1:
        get_pos = itemgetter(*pos)
    elif pos:
        name = pos[0]

        def get_pos(names):
            return (names[name],)

    else:

        def get_pos(names):
            return ()

    def read(frame):
        names = frame.f_locals
        args = get_pos(names)
        if varargs is not None:
            args = args + tuple(names[varargs])
        kwargs = {}
        for name in kwonly:
            kwargs[name] = names[name]
        if varkw is not None:
            kwargs.update(names[varkw])
        return args, kwargs

    return read


# ---------------------------------------------------------------------------------------------
# Engine 2 (3.8-3.11): swap __code__ for generated wrapper code


class _SwapSite(_Site):
    """Top-level functions and methods: function.__code__ becomes the wrapper."""

    def __init__(self, located):
        _Site.__init__(self, located)
        self.function = located.function
        self.original = located.function.__code__
        self.wrapper = None
        self.orig = None  # the copy of the original function that the wrapper calls
        self.retired = []  # wrappers of the code before a reload: calls in flight still run them
        self.clock = _clock
        self.gate = self.enter

    slot = None  # its counter in counter.c, once a monitor alone counted its calls there

    def changed(self):
        # The wrapper calls gate() and done(): counter.c's while a monitor alone counts the
        # calls (no Python of fp runs then), else enter() itself or the probes' precheck in
        # front of it, and the Python done().
        native = _native_counter() if self._claim_counter() is not None else None
        if native is not None and self.slot is None:
            native["configure"](_busy, _done_any)
            self.slot = native["new"]()
        if native is not None and self.slot is not None:
            self.gate = native["gate_of"](self.slot)
            self.done = native["done"]
            return
        self.__dict__.pop("done", None)
        self.gate = self.enter if self.pre is None else _make_gate(self.pre, self.enter)

    def native_counts(self):
        native = _native_counter()
        got = native["take"](self.slot) if native is not None and self.slot is not None else None
        return [got] if got is not None else []

    def _free_counter(self):
        native = _native_counter()
        if native is not None and self.slot is not None:
            native["free"](self.slot)
        self.slot = None

    def activate(self):
        f = self.function
        code = f.__code__
        if code in _wrapper_codes or _outer_patched(f):
            raise AgentError(NOT_SUPPORTED, _CONFLICT % self.label)
        self.original = code
        copy = types.FunctionType(code, f.__globals__, f.__name__, f.__defaults__, f.__closure__)
        copy.__kwdefaults__ = f.__kwdefaults__
        copy.__qualname__ = f.__qualname__
        self.orig = copy
        self.wrapper = _build_wrapper(code, self, nested=False)
        _wrapper_codes[self.wrapper] = self
        f.__code__ = self.wrapper

    def retarget(self, code):
        """Reload: the wrapper is rebuilt for the new code (its signature may have changed) and
        calls the new code; deactivate() then puts the new code back, not the old."""
        old = self.original
        wrapper = _build_wrapper(code, self, nested=False)
        _wrapper_codes[wrapper] = self
        self.retired.append(self.wrapper)
        self.orig.__code__ = code
        self.original = code
        self.wrapper = wrapper
        self.function.__code__ = wrapper
        self.code_replaced(old, code)
        return []

    def deactivate(self):
        self._free_counter()
        _wrapper_codes.pop(self.wrapper, None)
        for retired in self.retired:
            _wrapper_codes.pop(retired, None)
        f = self.function
        if f.__code__ is self.wrapper:
            f.__code__ = self.original
            return
        raise RuntimeError(
            "the code of %s was replaced by something else while fp observed it; "
            "fp left the new code in place" % self.label
        )

    # Called from the wrapper code (these names are in its bytecode as attribute loads).
    def enter(self, args, kwargs, passed=None):
        """Returns the [(probe, token)] of the probes that observe this call, or None. passed:
        the precheck that accepted the call (gate), if one did."""
        if _busy and _get_ident() in _busy:
            return None
        probes = self.probes
        if not probes:
            return None
        target = None
        if not self.needs_args:
            args = kwargs = None
        else:
            if self.bind and args:
                target = args[0]
                args = args[1:]
            if kwargs is None:
                kwargs = {}
        ident = _get_ident()
        _busy.add(ident)
        try:
            return _enter_probes(probes, target, args, kwargs, self.checked(passed))
        finally:
            _busy.discard(ident)

    def done(self, pairs, result, cost_ns):
        if type(pairs) is int:  # counted in C when it started: it ends there
            native = _native_counter()
            if native is not None:
                native["end"](pairs, cost_ns, False)
            return
        _done_any(pairs, result, cost_ns)

    def strip(self, exc):
        # Called in the wrapper's handler before its bare `raise`: drop the wrapper's own entry,
        # so the traceback the caller sees is the one it would have seen without fp. 3.11
        # re-raises exc.__traceback__; 3.8-3.10 the traceback kept as the exception being
        # handled, which only C can change.
        tb = exc.__traceback__
        if tb is not None and tb.tb_frame.f_code is self.wrapper:
            exc.__traceback__ = tb.tb_next
            if _HANDLED_TB:
                handled = _handled_traceback()
                if handled is not None:
                    handled(tb.tb_next)

    def fail(self, pairs, exc, cost_ns):
        self.strip(exc)
        if pairs is None:
            return
        if type(pairs) is int:  # counted in C
            native = _native_counter()
            if native is not None:
                native["end"](pairs, cost_ns, True)
            return
        _done_any(pairs, None, cost_ns, exc)


def _make_gate(pre, enter):
    """gate(all_args, kwargs): None at once when the precheck says no, else enter()."""
    busy = _busy
    ident = _get_ident

    def gate(all_args, kwargs):
        if busy and ident() in busy:
            return None
        try:
            if not pre(all_args, kwargs):
                return None
        except KeyboardInterrupt:
            raise
        except Exception:
            return enter(all_args, kwargs)
        return enter(all_args, kwargs, pre)

    return gate


# Before 3.11 a bare `raise` re-raises the traceback kept as the exception being handled
# (sys.exc_info()), not the exception's __traceback__: trace.c's handled_traceback() sets it.
_HANDLED_TB = sys.version_info < (3, 11)
_handled_tb = []


def _handled_traceback():
    """trace.c's handled_traceback, or None (then the wrapper's entry stays in tracebacks)."""
    if not _handled_tb:
        package = sys.modules.get(__name__.rpartition(".")[0])
        functions = getattr(package, "_native_trace", None)
        _handled_tb.append(functions.get("handled_traceback") if isinstance(functions, dict) else None)
    return _handled_tb[0]


_CONFLICT = (
    "on Python < 3.12 fp cannot observe %s and a function nested in it (or the function it is "
    "nested in) at the same time; stop the other watch/trace/tt first"
)


class _NestedSite(_SwapSite):
    """A function nested in another (-nm): the outer function's code gets a copy whose co_consts
    hold the nested wrapper code, so every nested function made from now on is observed."""

    def __init__(self, located):
        _Site.__init__(self, located)
        self.function = located.outer
        self.nested = located.code
        self.original = located.outer.__code__
        self.wrapper = None
        self.patched = None
        self.retired = []  # (wrapper, patched outer code) before a reload
        self.clock = _clock
        self.gate = self.enter

    def activate(self):
        outer = self.function
        code = outer.__code__
        if code in _wrapper_codes or code in _patched_outer_codes or _outer_patched(outer):
            raise AgentError(NOT_SUPPORTED, _CONFLICT % self.label)
        if not any(c is self.nested for c in code.co_consts):
            raise AgentError(NOT_SUPPORTED, "the code of %s changed since it was located; try again" % self.label)
        self.original = code
        self.wrapper = _build_wrapper(self.nested, self, nested=True)
        consts = tuple(self.wrapper if c is self.nested else c for c in code.co_consts)
        self.patched = code.replace(co_consts=consts)
        _wrapper_codes[self.wrapper] = self
        _patched_outer_codes[self.patched] = self
        outer.__code__ = self.patched

    def retarget(self, outer_code):
        """Reload of the outer function or of the nested one: `outer_code` is the outer's new
        code; the nested code in it (by name) gets a new wrapper in a new patched copy."""
        old_nested = self.nested
        nested = None
        for c in outer_code.co_consts:
            if isinstance(c, types.CodeType) and c.co_name == old_nested.co_name:
                nested = c
                break
        if nested is None:
            raise AgentError(
                NOT_SUPPORTED,
                "the new code of %s no longer defines %s, which fp observes; stop "
                "the watch/trace/tt on it first" % (self.function.__qualname__, old_nested.co_name),
            )
        wrapper = _build_wrapper(nested, self, nested=True)
        patched = outer_code.replace(co_consts=tuple(wrapper if c is nested else c for c in outer_code.co_consts))
        _wrapper_codes[wrapper] = self
        _patched_outer_codes[patched] = self
        old_wrapper = self.wrapper
        self.retired.append((old_wrapper, self.patched))
        self.original = outer_code
        self.nested = nested
        self.wrapper = wrapper
        self.patched = patched
        _rekey(self, ("nested", id(self.function), id(nested)))
        self.function.__code__ = patched
        if nested is not old_nested:
            self.code_replaced(old_nested, nested)
        return [(old_wrapper, wrapper)]

    def deactivate(self):
        self._free_counter()
        _wrapper_codes.pop(self.wrapper, None)
        _patched_outer_codes.pop(self.patched, None)
        for wrapper, patched in self.retired:
            _wrapper_codes.pop(wrapper, None)
            _patched_outer_codes.pop(patched, None)
        outer = self.function
        if outer.__code__ is self.patched:
            outer.__code__ = self.original
            return
        raise RuntimeError(
            "the code of %s was replaced by something else while fp observed a function nested "
            "in it; fp left the new code in place" % self.label
        )


def _outer_patched(function):
    """A nested site holds this function as its outer (its __code__ is a patched copy)."""
    return any(isinstance(s, _NestedSite) and s.function is function for s in _sites.values())


def _signature(code):
    """(positional names, count of positional-only, keyword-only names, *name, **name)."""
    names = code.co_varnames
    argc = code.co_argcount
    kwonly = code.co_kwonlyargcount
    pos = names[:argc]
    kwo = names[argc : argc + kwonly]
    i = argc + kwonly
    varargs = varkw = None
    if code.co_flags & _CO_VARARGS:
        varargs = names[i]
        i += 1
    if code.co_flags & _CO_VARKEYWORDS:
        varkw = names[i]
    return pos, getattr(code, "co_posonlyargcount", 0), kwo, varargs, varkw


_SITE = "\x00fp-site"  # placeholder constant, replaced by the site object in the wrapper code


def _build_wrapper(code, site, nested):
    """Wrapper code with code's signature and free variables; it calls site.enter, the original
    (site.orig, or for a nested function a function made from `code` with the wrapper's own
    closure cells) and site.done/site.fail. Every instruction is on the original's first line."""
    from . import syntax

    flags = code.co_flags
    if flags & _CO_ASYNC_GENERATOR:
        raise AgentError(
            NOT_SUPPORTED,
            "%s is an async generator: fp observes async generators only on Python 3.12+" % site.label,
        )
    pos, posonly, kwonly, varargs, varkw = _signature(code)
    taken = set(code.co_varnames) | set(code.co_freevars) | set(code.co_cellvars)
    prefix = "__fp"
    while any(n.startswith(prefix) for n in taken):
        prefix += "_"
    tok, t0, res, exc, orig = (prefix + s for s in ("_token", "_t0", "_result", "_exc", "_orig"))

    params = list(pos[:posonly])
    if posonly:
        params.append("/")
    params.extend(pos[posonly:])
    if varargs is not None:
        params.append("*" + varargs)
    elif kwonly:
        params.append("*")
    params.extend(kwonly)
    if varkw is not None:
        params.append("**" + varkw)
    signature = ", ".join(params)

    args_expr = "(%s)" % "".join(n + ", " for n in pos)
    if varargs is not None:
        args_expr += " + " + varargs
    if kwonly or varkw is not None:
        items = ["%r: %s" % (n, n) for n in kwonly]
        if varkw is not None:
            items.append("**" + varkw)
        kwargs_expr = "{%s}" % ", ".join(items)
    else:
        kwargs_expr = "None"
    forward = list(pos)
    if varargs is not None:
        forward.append("*" + varargs)
    forward.extend("%s=%s" % (n, n) for n in kwonly)
    if varkw is not None:
        forward.append("**" + varkw)
    callee = orig if nested else "%r.orig" % _SITE
    call = "%s(%s)" % (callee, ", ".join(forward))
    is_coroutine = bool(flags & _CO_COROUTINE)
    is_generator = bool(flags & _CO_GENERATOR)
    if is_coroutine:
        call = "await " + call
    elif is_generator:
        call = "(yield from %s)" % call
    s = repr(_SITE)
    # A call no probe wants goes straight to the original, inside a try (free on 3.11, one
    # block push and pop before), so that its traceback loses the wrapper's entry as well.
    fast = [
        "if %s is None:" % tok,
        "    try:",
        "        return %s" % call,
        "    except BaseException as %s:" % exc,
        "        %s.strip(%s)" % (s, exc),
        "        raise",
    ]
    body = (
        ["%s = %s.gate(%s, %s)" % (tok, s, args_expr, kwargs_expr)]
        + fast
        + [
            "%s = %s.clock()" % (t0, s),
            "try:",
            "    %s = %s" % (res, call),
            "except BaseException as %s:" % exc,
            "    %s.fail(%s, %s, %s.clock() - %s)" % (s, tok, exc, s, t0),
            "    raise",
            "%s.done(%s, %s, %s.clock() - %s)" % (s, tok, res, s, t0),
            "return " + res,
        ]
    )
    freevars = code.co_freevars
    lines = []
    indent = ""
    if nested and freevars:
        # Free variables come from an enclosing function: the wrapper gets them (same names,
        # same sorted order) because the placeholder function inside it uses them.
        lines.append("def %s_outer():" % prefix)
        lines.append("    %s = None" % " = ".join(freevars))
        indent = "    "
    lines.append(indent + "%sdef %s(%s):" % ("async " if is_coroutine else "", "__fp_wrapper", signature))
    if nested:
        lines.append(indent + "    def %s(%s):" % (orig, signature))
        lines.append(indent + "        %s" % (", ".join(freevars) + "," if freevars else "pass"))
    lines.extend(indent + "    " + line for line in body)
    tree = syntax.parse("\n".join(lines) + "\n", "<fp wrapper>", "exec")
    for node in syntax.walk(tree):
        # One line for everything: a traceback through the wrapper points at the `def`.
        if "lineno" in getattr(node, "_attributes", ()):
            node.lineno = node.end_lineno = 1
            node.col_offset = node.end_col_offset = 0
    module_code = compile(tree, code.co_filename, "exec", dont_inherit=True)
    wrapper = _find_code(module_code, "__fp_wrapper")
    if wrapper is None:
        raise RuntimeError("fp could not build the wrapper for %s" % site.label)
    consts = []
    for c in wrapper.co_consts:
        if type(c) is str and c == _SITE:
            c = site
        elif nested and isinstance(c, types.CodeType) and c.co_name == orig:
            if c.co_freevars != code.co_freevars:
                raise RuntimeError("fp could not reproduce the free variables of %s" % site.label)
            c = code
        consts.append(c)
    new_flags = (wrapper.co_flags & ~_CO_NOFREE) | (flags & _CO_ITERABLE_COROUTINE)
    changes = {
        "co_consts": tuple(consts),
        "co_name": code.co_name,
        "co_firstlineno": code.co_firstlineno,
        "co_flags": new_flags if freevars else wrapper.co_flags | (flags & _CO_ITERABLE_COROUTINE),
    }
    if not nested:
        changes["co_freevars"] = freevars
    if hasattr(code, "co_qualname"):
        changes["co_qualname"] = code.co_qualname
    wrapper = wrapper.replace(**changes)
    if wrapper.co_freevars != freevars:
        raise RuntimeError("fp could not reproduce the free variables of %s" % site.label)
    return wrapper


def _find_code(code, name):
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            if c.co_name == name:
                return c
            found = _find_code(c, name)
            if found is not None:
                return found
    return None
