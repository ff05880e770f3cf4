"""The `stack` command taken inside the target: every thread's Python stack, outermost first,
the agent's own threads left out.
"""

import _thread
import os
import sys

from .params import check_names

# Imported with this module, under the import lock, when its first request comes (loading.py):
# the functions below import them where they use them.
LAZY_IMPORTS = ("linecache",)


def stack(client_id, params):
    check_names(params, ())
    from . import dispatch

    me = _thread.get_ident()
    agent_code = dispatch.handle.__code__
    frames = sys._current_frames()
    known = _threading_threads()
    main_ident = _main_thread_ident()

    threads = []
    for ident, frame in frames.items():
        if ident == me:
            continue
        chain = _chain(frame)
        if any(f.f_code is agent_code for f in chain):
            continue  # another client's worker, inside the agent
        threads.append((ident, chain))
    del frames

    if main_ident is None:
        main_ident = _guess_main(threads)
    order = {ident: position for position, ident in enumerate(known)}
    threads.sort(key=lambda t: (t[0] != main_ident, order.get(t[0], len(order)), t[0]))

    result = []
    for ident, chain in threads:
        thread = known.get(ident)
        result.append(
            {
                "ident": ident,
                "native_id": _attribute(thread, "native_id", None),
                "name": _attribute(thread, "name", None) or "<unknown, not started by threading>",
                "daemon": bool(_attribute(thread, "daemon", False)),
                "main": ident == main_ident,
                "frames": [_frame(f) for f in chain],
            }
        )
    return {"pid": os.getpid(), "threads": result}


def _chain(frame):
    chain = []
    while frame is not None:
        chain.append(frame)
        frame = frame.f_back
    chain.reverse()  # outermost first, like a traceback
    return chain


def _frame(frame):
    import linecache

    code = frame.f_code
    line = frame.f_lineno or 0  # None while a frame is between lines on 3.12+
    source = ""
    if line > 0:
        try:
            # No module_globals: a custom loader's get_source would run target code.
            source = linecache.getline(code.co_filename, line).strip()
        except BaseException:
            source = ""
    return {"file": code.co_filename, "line": line, "function": code.co_name, "source": source}


def _threading_threads():
    # Only if the program imported threading: importing it from this foreign thread would make
    # us the "main thread". enumerate() never creates a dummy thread, current_thread() would.
    threading = sys.modules.get("threading")
    if threading is None:
        return {}
    try:
        return dict((t.ident, t) for t in threading.enumerate())
    except BaseException:
        return {}


def _main_thread_ident():
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            return threading.main_thread().ident
        except BaseException:
            pass
    get_main = getattr(_thread, "_get_main_thread_ident", None)  # 3.13
    if get_main is not None:
        try:
            return get_main()
        except BaseException:
            pass
    return None


def _guess_main(threads):
    # Without threading the main thread is the one running the script (__main__ at the bottom).
    for ident, chain in threads:
        if chain and chain[0].f_globals.get("__name__") == "__main__":
            return ident
    return None


def _attribute(obj, name, default):
    if obj is None:
        return default
    try:
        return getattr(obj, name)
    except BaseException:
        return default
