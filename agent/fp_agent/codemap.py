"""code.map: the code a process runs from one source file, for an editor that shows lenses on
it: every function, method, nested function and class defined in that file, with its module,
qualified name, kind, first and last line, and how to locate it for watch/trace/monitor.

What is listed is what the process runs (its code objects), not the file on disk, which may
have changed since it was imported. With `source` (the editor's text of the file), each entry
also says whether that text's version of it differs from the code that runs ("changed"), by
comparing compiled code, not line numbers: edits above a function do not change it.
"""

import os
import sys
import types

from . import modules
from .errors import AgentError
from .params import check_names, get_str

MAX_SOURCE = 8 << 20  # an editor buffer larger than this is not compiled here


def code_map(client_id, params):
    check_names(params, ("path", "source"))
    path = get_str(params, "path", required=True)
    source = get_str(params, "source")
    if source is not None and len(source) > MAX_SOURCE:
        raise AgentError(-32602, "source is %d characters; code.map compiles at most %d" % (len(source), MAX_SOURCE))
    try:
        found = modules.module_of_file(client_id, {"path": path})
    except AgentError:
        return {"path": os.path.realpath(os.path.abspath(path)), "loaded": False, "module": None, "functions": []}
    real = found["path"]
    module = sys.modules.get(found["module"])
    entries = _entries(module, found["module"], real)
    result = {
        "path": real,
        "loaded": True,
        "module": found["module"],
        "others": found["others"],
        "functions": sorted(entries.values(), key=lambda e: (e["first_line"], e["qualname"])),
    }
    if source is not None:
        _compare(result, entries, source, real)
    return result


# --- what the process runs ------------------------------------------------------------------


def _same_file(code, real):
    return code.co_filename == real or _real(code.co_filename) == real


_reals = {}


def _real(filename):
    r = _reals.get(filename)
    if r is None:
        try:
            r = os.path.realpath(os.path.abspath(filename))
        except (OSError, ValueError):
            r = filename
        if len(_reals) < 4096:
            _reals[filename] = r
    return r


def _qualname(code, fallback):
    return getattr(code, "co_qualname", None) or fallback  # 3.11+ knows it


def _last_line(code):
    last = code.co_firstlineno
    try:
        if hasattr(code, "co_lines"):  # 3.10+
            for _start, _end, line in code.co_lines():
                if line is not None and line > last:
                    last = line
        else:
            import dis

            for _offset, line in dis.findlinestarts(code):
                if line > last:
                    last = line
    except (TypeError, ValueError):
        pass
    for const in code.co_consts:  # a nested function's body is inside its parent's
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def _innermost(func):
    """The function behind decorators that keep it (functools.wraps): the one whose code runs."""
    seen = 0
    while seen < 16:
        inner = getattr(func, "__wrapped__", None)
        if not isinstance(inner, types.FunctionType):
            return func
        func, seen = inner, seen + 1
    return func


def _entry(code, qualname, module, kind, cls, method, nested, decorated):
    async_ = bool(code.co_flags & 0x80 or code.co_flags & 0x200)  # coroutine, async generator
    generator = bool(code.co_flags & 0x20 or code.co_flags & 0x200)
    e = {
        "qualname": qualname,
        "name": code.co_name,
        "kind": kind,
        "module": module,
        "first_line": code.co_firstlineno,
        "last_line": _last_line(code),
        "async": async_,
        "generator": generator,
        "decorated": decorated,
        # How watch, trace and monitor name it (module [class] method [-nm nested]); None when
        # the locator cannot reach it (a function nested two levels deep).
        "locate": None if method is None else {"module": module, "class": cls, "method": method, "nested": nested},
    }
    return e


def _nested(code, parent_qualname, module, cls, method, entries, real, depth):
    for const in code.co_consts:
        if not isinstance(const, types.CodeType) or const.co_name.startswith("<"):
            continue  # lambdas, comprehensions, genexprs: not functions one names
        if not _same_file(const, real):
            continue
        qualname = _qualname(const, "%s.<locals>.%s" % (parent_qualname, const.co_name))
        if qualname not in entries:
            locate_method = method if depth == 0 else None
            entries[qualname] = _entry(
                const, qualname, module, "nested", cls, locate_method, const.co_name if depth == 0 else None, False
            )
        _nested(const, qualname, module, cls, method, entries, real, depth + 1)


def _add_function(func, qualname, module, kind, cls, method, entries, real):
    inner = _innermost(func)
    code = getattr(inner, "__code__", None)
    if isinstance(code, types.CodeType):
        code = _original(code)
    if not isinstance(code, types.CodeType) or not _same_file(code, real):
        return
    qualname = _qualname(code, qualname) if inner is func else qualname
    if qualname in entries:
        return
    entries[qualname] = _entry(code, qualname, module, kind, cls, method, None, inner is not func)
    _nested(code, qualname, module, cls, method, entries, real, 0)


def _members(cls):
    try:
        return list(object.__getattribute__(cls, "__dict__").items())
    except BaseException:
        return []


def _add_class(cls, qualname, module, entries, real, seen, depth):
    if id(cls) in seen or depth > 8:
        return
    seen.add(id(cls))
    if getattr(cls, "__module__", None) != module:
        return
    lines = []
    for name, member in _members(cls):
        kind, func = "method", member
        if isinstance(member, classmethod):
            kind, func = "classmethod", member.__func__
        elif isinstance(member, staticmethod):
            kind, func = "staticmethod", member.__func__
        elif isinstance(member, property):
            kind, func = "property", member.fget
        elif isinstance(member, type):
            _add_class(member, "%s.%s" % (qualname, name), module, entries, real, seen, depth + 1)
            continue
        if isinstance(func, types.FunctionType):
            before = len(entries)
            _add_function(func, "%s.%s" % (qualname, name), module, kind, qualname, name, entries, real)
            if len(entries) > before:
                lines.append(_original(_innermost(func).__code__).co_firstlineno)
    first = getattr(cls, "__firstlineno__", None)  # 3.13+
    if not lines and first is None:
        return  # nothing of it runs from this file that fp can tell
    entries[qualname] = {
        "qualname": qualname,
        "name": cls.__name__,
        "kind": "class",
        "module": module,
        "first_line": first if first is not None else min(lines) - 1,
        "last_line": max([l for l in lines] + [first or 0]),
        "async": False,
        "generator": False,
        "decorated": False,
        "locate": None,
    }


def _entries(module, name, real):
    entries = {}
    seen = set()
    try:
        namespace = object.__getattribute__(module, "__dict__")
    except BaseException:
        return entries
    for attr, value in list(namespace.items()):
        if isinstance(value, types.FunctionType):
            _add_function(value, attr, name, "function", None, attr, entries, real)
        elif isinstance(value, type):
            _add_class(value, getattr(value, "__qualname__", attr), name, entries, real, seen, 0)
    # Class methods' last lines bound their class.
    for qualname, e in entries.items():
        if e["kind"] == "class":
            inside = [f["last_line"] for q, f in entries.items() if q.startswith(qualname + ".")]
            if inside:
                e["last_line"] = max(inside + [e["last_line"]])
    return entries


# --- the editor's text against it -----------------------------------------------------------


def _code_key(code):
    """What a function's compiled code is, without where it is (line numbers, file)."""
    consts = tuple(
        _code_key(c) if isinstance(c, types.CodeType) else (type(c).__name__, repr(c)) for c in code.co_consts
    )
    return (
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )


def _source_codes(code, prefix, out, in_class):
    for const in code.co_consts:
        if not isinstance(const, types.CodeType) or const.co_name.startswith("<"):
            continue
        fallback = "%s%s" % (prefix, const.co_name)
        qualname = _qualname(const, fallback)
        # A class body's code is a code object too: its functions are methods of it.
        is_class = not (const.co_flags & 0x3) and const.co_name[:1].isupper() and "__qualname__" in const.co_names
        if is_class:
            _source_codes(const, qualname + ".", out, True)
            continue
        out[qualname] = const
        _source_codes(const, qualname + ".<locals>.", out, False)


def _compare(result, entries, source, real):
    try:
        module_code = compile(source, real, "exec", dont_inherit=True)
    except SyntaxError as exc:
        # The line as the editor has it (Python may read exc.text from the file on disk).
        lines = source.splitlines()
        text = lines[exc.lineno - 1] if exc.lineno and 0 < exc.lineno <= len(lines) else ""
        result["source_error"] = {"message": exc.msg, "line": exc.lineno, "column": exc.offset, "text": text}
        return
    except (ValueError, TypeError) as exc:
        result["source_error"] = {"message": str(exc), "line": None, "column": None, "text": ""}
        return
    codes = {}
    _source_codes(module_code, "", codes, False)
    running = {}
    module = sys.modules.get(result["module"])
    for qualname, e in entries.items():
        if e["kind"] != "class":
            running[qualname] = e
    for e in result["functions"]:
        if e["kind"] == "class":
            continue
        new = codes.get(e["qualname"])
        if new is None:
            e["changed"] = True
            e["in_source"] = False
            continue
        e["in_source"] = True
        old = _running_code(module, e)
        e["changed"] = old is None or _code_key(old) != _code_key(new)
    result["not_loaded"] = sorted(q for q in codes if q not in running)


def _running_code(module, e):
    """The code object that runs for entry e now (reload may have swapped it)."""
    try:
        obj = module
        parts = e["qualname"].split(".<locals>.")
        for part in parts[0].split("."):
            obj = object.__getattribute__(obj, "__dict__")[part] if part else obj
        if isinstance(obj, (classmethod, staticmethod)):
            obj = obj.__func__
        elif isinstance(obj, property):
            obj = obj.fget
        code = _innermost(obj).__code__
        for inner in parts[1:]:
            code = next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == inner)
        return _original(code)
    except (KeyError, AttributeError, StopIteration, TypeError):
        return None


def _original(code):
    """A probe's wrapper (3.8-3.11 swaps __code__) stands for the code it wraps."""
    instrument = sys.modules.get(__name__.rpartition(".")[0] + ".instrument")
    site = getattr(instrument, "_wrapper_codes", {}).get(code) if instrument else None
    original = getattr(site, "original", None)
    return original if isinstance(original, types.CodeType) else code
