"""Routes warnings raised on the agent's own thread (compiling or running user code) to the
request instead of the target's stderr, leaving the warnings of the target's threads untouched.
"""

import _thread
import sys

# While any route exists, warnings._showwarnmsg is a wrapper that routes by thread and hands every
# other warning to the original: the program's own warnings behave exactly as before. Filters are
# never touched (codeop's way, catch_warnings, changes them for every thread of the process).
_lock = _thread.allocate_lock()
_routes = {}  # thread ident -> [write(text)], innermost last
_installed = []  # [wrapper, original] while a route exists


class warnings_to(object):
    """Context manager: warnings this thread would print are passed to write(text) instead."""

    def __init__(self, write):
        self._write = write
        self._ident = None

    def __enter__(self):
        import warnings  # imported by nearly every program already; importing it changes nothing

        self._ident = _thread.get_ident()
        with _lock:
            _routes.setdefault(self._ident, []).append(self._write)
            original = getattr(warnings, "_showwarnmsg", None)
            if not _installed and original is not None:
                wrapper = _wrapper(warnings, original)
                warnings._showwarnmsg = wrapper
                _installed[:] = [wrapper, original]
        return self

    def __exit__(self, *exc_info):
        warnings = sys.modules.get("warnings")
        with _lock:
            stack = _routes.get(self._ident)
            if stack:
                stack.pop()
                if not stack:
                    del _routes[self._ident]
            if not _routes and _installed:
                wrapper, original = _installed
                # If the program replaced it meanwhile, its replacement stays.
                if warnings is not None and getattr(warnings, "_showwarnmsg", None) is wrapper:
                    warnings._showwarnmsg = original
                del _installed[:]
        return False


def _wrapper(warnings, original):
    def _showwarnmsg(msg):
        stack = _routes.get(_thread.get_ident())
        if stack and _would_print(warnings, msg):
            try:
                text = warnings.formatwarning(msg.message, msg.category, msg.filename, msg.lineno, msg.line)
            except BaseException:
                text = "%s:%s: %s\n" % (msg.filename, msg.lineno, msg.message)
            stack[-1](text)
            return None
        return original(msg)

    return _showwarnmsg


def _would_print(warnings, msg):
    """True when the default machinery would write the warning to stderr (not when it is being
    recorded by catch_warnings(record=True), or sent to a showwarning of the program's own)."""
    if getattr(msg, "file", None) is not None:
        return False
    if getattr(warnings, "showwarning", None) is not getattr(warnings, "_showwarning_orig", None):
        return False
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    return getattr(impl, "__name__", None) == "_showwarnmsg_impl" and getattr(impl, "__module__", None) == "warnings"
