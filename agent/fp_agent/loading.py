"""Imports made for the agent inside the target, each when a command first needs it.

The native side loads only the package and its dispatcher; a command family (watch, console,
...) and the standard-library modules it uses are imported when its first request comes, so
the first answer costs what that command needs and a family nobody uses is never imported.

Every such import runs holding the interpreter's global import lock, and only while no other
thread is half-way through an import of its own (its module locks are free; while we hold the
global lock no new import can start): os.fork() in the target waits for that same lock, so a
child process never inherits an import of ours cut in half (a module half-initialised in
sys.modules, a module lock held by a thread that does not exist there), and an import of the
program's own is never interleaved with ours.

threading is one of them. threading takes whoever imports it for the main thread (3.9-3.12: its
ident and tstate lock; 3.13: its native id), so an import on one of the agent's threads would
leave the program's main_thread() wrong (logging's threadName, asyncio's Ctrl-C handling). It
is imported for a program that did not (8-9 ms on 3.12: functools, collections) only before
code that is not the agent's may run: before a probe is armed (its expressions and the
renderings of values run on the program's threads), before a user expression, console input or
a reload's definitions; each time, and after every request, the main thread is pointed back at
the real one if it was ours (main_thread_kept). Before 3.9 the native side imports it with the
package: 3.8's finalization would call _shutdown on a half-imported threading module.
"""

import sys

_PACKAGE = __name__.rpartition(".")[0]


def locked(load):
    """load() holding the global import lock, once no other thread holds a module lock (tried
    for about 2 s, then load() anyway: an import that never ends must not block fp forever)."""
    import _frozen_importlib as _bootstrap  # importlib._bootstrap, without importing importlib
    import _imp
    import _thread
    import time

    me = _thread.get_ident()
    for _ in range(200):
        _imp.acquire_lock()
        try:
            locks = [r() for r in list(_bootstrap._module_locks.values())]
            if not any(lock is not None and lock.owner not in (None, me) for lock in locks):
                return load()
        finally:
            _imp.release_lock()
        time.sleep(0.01)
    return load()


def family(name):
    """The agent's module `name` (a command family), imported with the standard-library modules
    its functions import when they run (its LAZY_IMPORTS), all at once under the lock."""
    full = _PACKAGE + "." + name
    module = sys.modules.get(full)
    if module is not None and getattr(module, "_fp_ready", False):
        return module
    return locked(lambda: _import_family(full))


def _import(name):
    __import__(name)
    return sys.modules[name]


def _import_family(full):
    module = _import(full)
    # The family and the agent's modules it imported (tt uses watch's expressions...).
    prefix = _PACKAGE + "."
    for name, loaded in list(sys.modules.items()):
        if not name.startswith(prefix) or loaded is None or getattr(loaded, "_fp_ready", False):
            continue
        for dependency in getattr(loaded, "LAZY_IMPORTS", ()):
            try:
                _import(dependency)
            except Exception:
                pass  # the command that needs it reports the error itself
        loaded._fp_ready = True
    return module


_checked = [None]  # the threading module main_thread_kept() last checked


def threading_ready():
    """threading imported for the program (under the lock, see above), its main thread the
    program's real one."""
    if "threading" not in sys.modules:
        locked(_import_threading)
    main_thread_kept()


def _import_threading():
    if "threading" not in sys.modules:
        __import__("threading")
    main_thread_kept()


def main_thread_kept():
    """If this thread imported threading (just now, or during the request it served), point
    threading's main thread back at the program's: the oldest thread with a frame, which
    sys._current_frames() lists last. Cheap once checked."""
    threading = sys.modules.get("threading")
    if threading is None or _checked[0] is threading:
        return
    import _thread
    import os

    _checked[0] = threading
    me = _thread.get_ident()
    main = threading._main_thread
    if main.ident == me:
        others = [i for i in sys._current_frames() if i != me]
        if others:
            lock = _thread.allocate_lock()
            lock.acquire()
            with threading._active_limbo_lock:
                threading._active.pop(me, None)
                main._ident = others[-1]
                main._tstate_lock = lock
                threading._active[main._ident] = main
    native = getattr(threading, "get_native_id", None)
    if main.ident != me and native is not None and getattr(main, "_native_id", None) == native():
        main._native_id = os.getpid()


def stdlib(name):
    """A standard-library module for a rarer path (difflib for near names), imported under the
    lock the first time."""
    module = sys.modules.get(name)
    if module is not None:
        return module

    return locked(lambda: _import(name))
