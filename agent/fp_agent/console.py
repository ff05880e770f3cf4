"""Interactive console sessions inside the target (console.open/eval/complete/close): a REPL of
our own whose print(), echoes, tracebacks and warnings go to the session, never to the target.
"""

import _thread
import builtins
import itertools
import os
import sys

from . import capture, loading, registry
from .errors import BUSY, AgentError, invalid_param, not_found, user_traceback
from .params import MAX_SOURCE, check_length, check_names, get_int

# Imported with this module, under the import lock, when its first request comes (loading.py):
# the functions below import them where they use them.
LAZY_IMPORTS = ("ast", "codeop", "__future__", "inspect", "keyword", "re", "types")

FILENAME = "<console>"
OUTPUT_LIMIT = 1 << 20  # characters of output kept per console.eval
MAX_SESSIONS_PER_CLIENT = 16

_sessions = {}  # session id -> Session
_ids = itertools.count(1)
# thread ident -> the session whose code that thread is running. print() and friends are captured
# only there: a function defined in a console and called later by the program prints as usual.
_running = {}


# ---------------------------------------------------------------------------------------------
# Methods


def open_session(client_id, params):
    check_names(params, ())
    loading.threading_ready()  # what is typed may use threading: it must see the program's
    if len(_client_sessions(client_id)) >= MAX_SESSIONS_PER_CLIENT:
        raise AgentError(
            BUSY, "this client already has %d console sessions open; close one first" % MAX_SESSIONS_PER_CLIENT
        )
    session_id = next(_ids)
    session = Session(session_id, client_id)
    _sessions[session_id] = session
    # The namespace is dropped, not cleared: functions the user handed to the program keep working.
    session.install_id = registry.add(
        client_id, "console", lambda: _sessions.pop(session_id, None), "session %d" % session_id
    )
    return {"session": session_id, "banner": _banner()}


def eval_line(client_id, params):
    check_names(params, ("session", "source"))
    session = _session_of(client_id, get_int(params, "session", required=True))
    source = params.get("source")
    if not isinstance(source, str):
        raise invalid_param("source", "parameter 'source' is required (a string: the line typed)")
    check_length("source", source, MAX_SOURCE, "console input")
    return session.push(source)


def complete(client_id, params):
    check_names(params, ("session", "text"))
    session = _session_of(client_id, get_int(params, "session", required=True))
    text = params.get("text")
    if not isinstance(text, str):
        raise invalid_param("text", "parameter 'text' is required (a string: the line up to the cursor)")
    return {"matches": session.complete(text)}


def close_session(client_id, params):
    check_names(params, ("session",))
    session = _session_of(client_id, get_int(params, "session", required=True))
    registry.remove(session.install_id)
    return {}


def _client_sessions(client_id):
    return sorted(s.id for s in list(_sessions.values()) if s.client_id == client_id)


def _session_of(client_id, session_id):
    session = _sessions.get(session_id)
    if session is None or session.client_id != client_id:
        mine = _client_sessions(client_id)
        raise not_found(
            "session",
            str(session_id),
            "no console session %d for this client (closed, or never opened)" % session_id,
            [str(i) for i in mine],
        )
    return session


def _banner():
    version = " ".join(sys.version.split())
    return "Python %s on %s — console inside process %d (fp). Ctrl-D or exit() to leave." % (
        version,
        sys.platform,
        os.getpid(),
    )


# ---------------------------------------------------------------------------------------------
# A session


class _Exit(BaseException):
    """Raised by the console's exit()/quit(): stops the statement, the target goes on."""


class _Output(object):
    def __init__(self, limit):
        self.parts = []
        self.room = limit
        self.cut = False

    def write(self, text):
        if self.cut:
            return
        if len(text) > self.room:
            text = text[: self.room]
            self.cut = True
        self.parts.append(text)
        self.room -= len(text)

    def text(self):
        text = "".join(self.parts)
        if self.cut:
            if not text.endswith("\n"):
                text += "\n"
            text += "[fp: output cut at %d characters]\n" % OUTPUT_LIMIT
        return text


class Session(object):
    def __init__(self, session_id, client_id):
        self.id = session_id
        self.client_id = client_id
        self.install_id = None
        self.lines = []  # the statement typed so far
        self.future_flags = 0  # `from __future__ import ...` typed earlier applies to later input
        self.output = _Output(OUTPUT_LIMIT)
        self.exit_requested = False
        self.namespace = {"__name__": "__console__", "__doc__": None, "__builtins__": _console_builtins()}

    # -- eval --

    def push(self, source):
        self.output = _Output(OUTPUT_LIMIT)
        self.exit_requested = False
        ident = _thread.get_ident()
        outer = _running.get(ident)
        _running[ident] = self
        try:
            with capture.warnings_to(self.output.write):
                self._push_lines(source)
        finally:
            if outer is None:
                _running.pop(ident, None)
            else:
                _running[ident] = outer
        return {"more": bool(self.lines), "output": self.output.text(), "exit": self.exit_requested}

    def _push_lines(self, source):
        for line in source.replace("\r\n", "\n").split("\n"):
            self._push_line(line)
            if self.exit_requested:
                self.lines = []
                return

    def _push_line(self, line):
        self.lines.append(line)
        try:
            tree = _parse("\n".join(self.lines), self.future_flags)
        except (SyntaxError, ValueError, OverflowError) as exc:  # ValueError: a NUL in the line
            self.lines = []
            self.output.write(user_traceback(exc))
            return
        if tree is not None:  # None: incomplete, wait for the next line
            self.lines = []
            self._run(tree.body)

    def _run(self, body):
        if not body:
            return
        import ast

        echo = isinstance(body[-1], ast.Expr)
        statements = body[:-1] if echo else body
        try:
            # Both compile before either runs: a SyntaxError must not leave half a line done.
            code = None
            if statements:
                code = self._compile(ast.Module(body=statements, type_ignores=[]), "exec")
            echo_code = self._compile(ast.Expression(body=body[-1].value), "eval") if echo else None
            if code is not None:
                exec(code, self.namespace)
            if echo_code is not None:
                value = eval(echo_code, self.namespace)
                if value is not None:
                    # Like the REPL's `_`, but in this namespace: builtins stay untouched.
                    self.namespace["_"] = value
                    self.output.write(repr(value) + "\n")
        except (_Exit, SystemExit):
            self.exit_requested = True  # sys.exit() in the console leaves the console only
        except BaseException as exc:
            self.output.write(user_traceback(exc))

    def _compile(self, tree, mode):
        code = compile(tree, FILENAME, mode, self.future_flags, True)
        self.future_flags |= code.co_flags & _future_mask()
        return code

    # -- completion --

    def complete(self, text):
        import keyword
        import re

        token = re.search(r"[\w.]*$", text).group(0)
        parts = token.split(".")
        prefix = parts[-1]
        if prefix and not prefix.isidentifier():
            return []
        if len(parts) == 1:
            names = set(self.namespace) | set(self.namespace["__builtins__"]) | set(keyword.kwlist)
            return _matching(names, prefix, "")
        path = parts[:-1]
        if not all(p.isidentifier() and not keyword.iskeyword(p) for p in path):
            return []  # "f().x", "1.x": completing would mean running code
        obj = self._lookup(path)
        if obj is _MISSING:
            return []
        try:
            names = dir(obj)
        except BaseException:
            return []
        return _matching(names, prefix, ".".join(path) + ".")

    def _lookup(self, path):
        first = path[0]
        if first in self.namespace:
            obj = self.namespace[first]
        elif first in self.namespace["__builtins__"]:
            obj = self.namespace["__builtins__"][first]
        else:
            return _MISSING
        for name in path[1:]:
            obj = _static_attribute(obj, name)
            if obj is _MISSING:
                break
        return obj


_MISSING = object()


def _matching(names, prefix, head):
    # Private names only when the user has started typing one, as in rlcompleter.
    show_private = prefix.startswith("_")
    found = set()
    for name in names:
        if isinstance(name, str) and name.startswith(prefix) and (show_private or not name.startswith("_")):
            found.add(head + name)
    return sorted(found)


def _static_attribute(obj, name):
    """obj.name without running the target's code (no property, no __getattr__)."""
    import inspect
    import types

    try:
        raw = inspect.getattr_static(obj, name)
    except BaseException:
        return _MISSING
    if isinstance(obj, (type, types.ModuleType)):
        return raw
    try:
        own = object.__getattribute__(obj, "__dict__")
        if isinstance(own, dict) and own.get(name) is raw:
            return raw
    except BaseException:
        pass
    if isinstance(raw, (types.MemberDescriptorType, types.GetSetDescriptorType)):
        try:
            return raw.__get__(obj, type(obj))  # slots and C attributes: no Python code runs
        except BaseException:
            return _MISSING
    if not hasattr(type(raw), "__get__"):
        return raw  # a plain class attribute
    if isinstance(raw, (types.FunctionType, types.BuiltinFunctionType, classmethod, staticmethod)):
        return raw  # a method's attributes are those of its function
    return _MISSING  # a property or another descriptor: reading it runs the target's code


# ---------------------------------------------------------------------------------------------
# Deciding whether the input is complete
#
# codeop.compile_command would decide this, but it swaps the process-wide warnings filters while
# it compiles (visible to every thread of the target). This follows the same rules with its
# flags, and parses only: the tree is compiled once, when it runs.


def _parse(source, future_flags):
    """ast.Interactive of complete input, None when more lines are needed; raises SyntaxError."""
    import ast
    import codeop

    for line in source.split("\n"):
        line = line.strip()
        if line and not line.startswith("#"):
            break
    else:
        return ast.Interactive(body=[])  # only blank lines and comments: nothing to run

    flags = future_flags | ast.PyCF_ONLY_AST | codeop.PyCF_DONT_IMPLY_DEDENT
    incomplete_flag = getattr(codeop, "PyCF_ALLOW_INCOMPLETE_INPUT", 0)  # 3.10.? and later
    if incomplete_flag:
        try:
            return compile(source, FILENAME, "single", flags | incomplete_flag, True)
        except SyntaxError:
            pass
        try:
            compile(source + "\n", FILENAME, "single", flags | incomplete_flag, True)
            return None
        except SyntaxError as exc:
            if "incomplete input" in str(exc):
                return None
        # Neither complete nor incomplete: compile as a whole block for the proper error.
        return compile(source, FILENAME, "single", future_flags | ast.PyCF_ONLY_AST, True)

    # Older Pythons: compare the errors with one and two more newlines, as codeop does there.
    try:
        return compile(source, FILENAME, "single", flags, True)
    except SyntaxError:
        pass
    first_error = second_error = None
    try:
        compile(source + "\n", FILENAME, "single", flags, True)
        return None
    except SyntaxError as exc:
        first_error = exc
    try:
        compile(source + "\n\n", FILENAME, "single", flags, True)
    except SyntaxError as exc:
        second_error = exc
    if repr(first_error) == repr(second_error):
        raise first_error
    return None


_FUTURE_MASK = []


def _future_mask():
    if not _FUTURE_MASK:
        import __future__

        mask = 0
        for name in __future__.all_feature_names:
            mask |= getattr(__future__, name).compiler_flag
        _FUTURE_MASK.append(mask)
    return _FUTURE_MASK[0]


# ---------------------------------------------------------------------------------------------
# The session's builtins: a copy, with the functions that would reach the target's terminal
# (print, input, help, breakpoint, exit, license...) redirected to the session.


def _console_builtins():
    names = dict(builtins.__dict__)
    names.pop("_", None)
    real_print = builtins.print

    def print(*args, sep=" ", end="\n", file=None, flush=False):
        session = _current()
        if session is None or not _is_terminal(file):
            return real_print(*args, sep=sep, end=end, file=file, flush=flush)
        if sep is None:
            sep = " "
        if end is None:
            end = "\n"
        if not isinstance(sep, str):
            raise TypeError("sep must be None or a string, not %s" % type(sep).__name__)
        if not isinstance(end, str):
            raise TypeError("end must be None or a string, not %s" % type(end).__name__)
        session.output.write(sep.join([str(arg) for arg in args]) + end)

    names["print"] = print
    names["input"] = _unavailable(
        "input", "input() cannot read in the fp console: the target's stdin belongs to the target"
    )
    names["breakpoint"] = _unavailable(
        "breakpoint", "breakpoint() is not available in the fp console: a debugger would stop this thread"
    )
    names["help"] = _Help(names.get("help"))
    names["exit"] = _Quitter("exit")
    names["quit"] = _Quitter("quit")
    for name in ("copyright", "credits", "license"):
        if name in names:
            names[name] = _Text(names[name])
    return names


def _current():
    """The console session this thread is running code for, or None (a thread of the program)."""
    return _running.get(_thread.get_ident())


def _is_terminal(file):
    if file is None:
        return True
    return any(file is stream for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))


def _unavailable(name, message):
    original = getattr(builtins, name, None)

    def unavailable(*args, **kwargs):
        if _current() is None and original is not None:
            return original(*args, **kwargs)
        raise RuntimeError(message)

    unavailable.__name__ = name
    return unavailable


class _Quitter(object):
    def __init__(self, name):
        self._name = name

    def __repr__(self):
        return "Use %s() or Ctrl-D to leave the fp console." % self._name

    def __call__(self, code=None):
        session = _current()
        if session is None:
            raise SystemExit(code)  # called later from the program's own threads: what exit() does
        session.exit_requested = True  # even if the user's code catches _Exit
        raise _Exit()


class _Help(object):
    def __init__(self, original):
        self._original = original

    def __repr__(self):
        return "Type help(object) for help about object."

    def __call__(self, *args, **kwargs):
        session = _current()
        if session is None and self._original is not None:
            return self._original(*args, **kwargs)
        if session is None:
            raise RuntimeError("help() is not available")
        if not args:
            session.output.write("Interactive help is not available in the fp console; use help(object).\n")
            return None
        session.output.write(_documentation(args[0]))
        return None


def _documentation(thing):
    # pydoc imports threading on some versions; importing threading from this foreign thread
    # would make it the program's "main thread", so without threading a shorter help is given.
    if "threading" in sys.modules:
        import pydoc

        return pydoc.render_doc(thing, renderer=pydoc.plaintext) + "\n"
    import inspect

    name = getattr(thing, "__qualname__", None) or getattr(thing, "__name__", None) or type(thing).__name__
    return "Help on %s:\n\n%s\n" % (name, inspect.getdoc(thing) or "(no documentation)")


class _Text(object):
    """copyright, credits, license: their text goes to the session, without a pager."""

    def __init__(self, original):
        self._original = original

    def __repr__(self):
        return repr(self._original)

    def __call__(self):
        session = _current()
        if session is None:
            return self._original()
        try:
            self._original._Printer__setup()
            text = "\n".join(self._original._Printer__lines)
        except BaseException:
            text = repr(self._original)
        session.output.write(text + "\n")
        return None
