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


def stdlib(name):
    """A standard-library module for a rarer path (difflib for near names), imported under the
    lock the first time."""
    module = sys.modules.get(name)
    if module is not None:
        return module

    return locked(lambda: _import(name))
