"""`reload`: give a function of the running program new code, compiled from its edited source,
keeping the function object (every reference to it runs the new code from its next call on), and
take it back with `reload.undo`, exactly, several steps back (see protocol/methods.md, reload).

The new source is a whole module text (the file the function was loaded from, or a text the
client sends, such as an editor's buffer). It is compiled whole, never executed: the function's
code object is taken from the compiled module by the function's qualified name and nesting, so
free variables, name mangling and `from __future__` imports come out as in an import. Nothing is
changed when the swap is not safe: the refusal says why, with the position in the text.
"""

import _thread
import sys
import time
import types

from . import instrument, loading, locate
from .errors import (
    EXPRESSION_FAILED,
    NOT_FOUND,
    NOT_SUPPORTED,
    AgentError,
    exception_text,
    invalid_param,
    user_traceback,
)
from .params import check_names, get_bool, get_str

PARAMS = ("module", "class", "method", "nested", "source", "filename", "verbose", "dry_run")
UNDO_PARAMS = ("module", "class", "method", "nested", "verbose")

MAX_VERSIONS = 50  # earlier versions kept per function; the oldest goes beyond
_CO_GENERATOR, _CO_COROUTINE, _CO_ITERABLE_COROUTINE, _CO_ASYNC_GENERATOR = 0x20, 0x80, 0x100, 0x200
_KIND_FLAGS = _CO_GENERATOR | _CO_COROUTINE | _CO_ASYNC_GENERATOR

# One reload at a time, whichever client asks: each reads and changes the same functions.
_lock = _thread.allocate_lock()
# id(function whose __code__ changes) -> [_Version], oldest first. Reloads are changes of the
# program, not observations: they stay when the client leaves (undo takes them back).
_history = {}


class _Version(object):
    """What `owner` was before one reload, exactly (the objects themselves), and what the reload
    installed."""

    __slots__ = (
        "owner",
        "label",
        "nested",
        "code",
        "defaults",
        "kwdefaults",
        "doc",
        "annotations",
        "installed",
        "old_text",
        "old_line",
        "old_decorators",
        "new_text",
        "new_line",
        "new_decorators",
        "filename",
        "origin_file",
        "time",
    )


class _Target(object):
    """The function a request names: `owner` is the function object whose __code__ changes (the
    outer function for a nested one), `old` the code replaced (owner's, or the nested code)."""

    def __init__(self, located):
        self.located = located
        self.nested = located.nested
        self.owner = located.function if located.nested is None else located.outer
        self.owner_code = instrument.real_code(self.owner)
        self.old = self.owner_code
        if self.nested is not None:
            self.old = _nested_const(self.owner_code, self.nested)
            if self.old is None:
                raise AgentError(NOT_SUPPORTED, "%s no longer defines %s" % (located.label, self.nested))
        self.label = located.label
        qualname = getattr(self.old, "co_qualname", None)
        if not qualname:
            qualname = getattr(self.owner, "__qualname__", None) or self.owner.__name__
            if self.nested is not None:
                qualname += ".<locals>." + self.nested
        self.qualname = qualname
        versions = _versions(self.owner)
        self.origin_file = versions[0].origin_file if versions else self.owner_code.co_filename


# --------------------------------------------------------------------------------------------
# Requests


def reload(client_id, params):
    """Replace the function's code with the one compiled from its new source."""
    check_names(params, PARAMS)
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    source = get_str(params, "source")
    filename = get_str(params, "filename") or None
    verbose = get_bool(params, "verbose")
    dry_run = get_bool(params, "dry_run")
    if filename is not None and source is None:
        raise invalid_param("filename", "parameter 'filename' names the text given in 'source'; give 'source' too")
    with _lock, instrument.suppressed():
        target = _Target(locate.locate_function(module, class_name, method, nested, verb="reload"))
        return _reload(target, source, filename, verbose, dry_run)


def undo(client_id, params):
    """Put back the code (and defaults, docstring, annotations) the last reload replaced."""
    check_names(params, UNDO_PARAMS)
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    verbose = get_bool(params, "verbose")
    with _lock, instrument.suppressed():
        target = _Target(locate.locate_function(module, class_name, method, nested, verb="reload"))
        return _undo(target, verbose)


def _read_text(filename):
    """A source file's text as Python reads it (a UTF-8 BOM, or the coding declaration of its
    first two lines, PEP 263; newlines made "\n"), without importing tokenize: that imports re,
    which the first watch of a process that never imported it would pay for (tens of ms).
    Raises OSError, UnicodeDecodeError, or SyntaxError for an unknown encoding."""
    with open(filename, "rb") as f:
        data = f.read()
    encoding = "utf-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    else:
        for line in data.split(b"\n", 2)[:2]:
            stripped = line.strip()
            if not stripped.startswith(b"#"):
                if stripped:
                    break  # code: no declaration after it
                continue
            at = stripped.find(b"coding")
            if at >= 0 and stripped[at + 6 : at + 7] in (b":", b"="):
                name = stripped[at + 7 :].lstrip(b" \t")
                end = 0
                while end < len(name) and (name[end : end + 1].isalnum() or name[end : end + 1] in b"-_."):
                    end += 1
                if end:
                    encoding = name[:end].decode("ascii")
                    break
    try:
        text = data.decode(encoding)
    except LookupError:
        raise SyntaxError("unknown encoding for %s: %s" % (filename, encoding))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def remember(code):
    """Keep the text of the file `code` was loaded from as it is now (watch, trace and tt call this
    when they start observing a function): if it is edited later, a reload still has the running
    version's text for its diff. Verified when used (it must compile to the running code)."""
    filename = getattr(code, "co_filename", None)
    if not filename or filename.startswith("<") or filename in _kept:
        return
    try:
        import os

        if os.path.getsize(filename) > _KEPT_BYTES:
            return
        _keep(filename, _read_text(filename))
    except (OSError, SyntaxError, UnicodeDecodeError):
        pass


_KEPT_FILES = 16  # files whose texts are kept, the least recently kept dropped first
_KEPT_TEXTS = 3  # texts kept per file
_KEPT_BYTES = 2 << 20
_kept = {}  # file name -> [texts], newest last; insertion order: oldest file first


def _keep(filename, text):
    if len(text) > _KEPT_BYTES:
        return
    texts = _kept.pop(filename, [])
    if text in texts:
        texts.remove(text)
    texts.append(text)
    _kept[filename] = texts[-_KEPT_TEXTS:]
    while len(_kept) > _KEPT_FILES:
        del _kept[next(iter(_kept))]


def versions(function):
    """How many earlier versions of `function` (an owner) are kept (for tests and status)."""
    return len(_versions(function))


# --------------------------------------------------------------------------------------------
# Reload


def _reload(target, source, filename, verbose, dry_run):
    warnings = []
    if source is None:
        filename = target.origin_file
        text = _read_source(target, filename)
        source_from = "file"
    else:
        text = source
        filename = filename or target.origin_file
        source_from = "text"
    new = _compile_new(target, text, filename, warnings)
    changed = {
        "code": not _same_code(target.old, new.code),
        "defaults": False,
        "docstring": False,
        "signature": None,
        "decorators": None,
    }
    old_text, old_line, old_from, old_decorators = _old_source(target)

    f = target.owner
    if target.nested is None:
        changed["defaults"] = not (
            _same_value(f.__defaults__, new.defaults) and _same_value(f.__kwdefaults__, new.kwdefaults)
        )
        changed["docstring"] = f.__doc__ != new.doc
        old_sig = _signature_text(target.old, f.__defaults__, f.__kwdefaults__)
        new_sig = _signature_text(new.code, new.defaults, new.kwdefaults)
    else:
        old_sig = _signature_text(target.old, None, None)
        new_sig = _signature_text(new.code, None, None)
    if old_sig != new_sig:
        changed["signature"] = {"old": old_sig, "new": new_sig}
    if old_decorators is not None and old_decorators != new.decorators:
        changed["decorators"] = {"old": old_decorators, "new": new.decorators}
    unchanged = not (changed["code"] or changed["defaults"] or changed["docstring"])

    result = {
        "action": "reload",
        "located": target.located.to_json(),
        "note": target.located.note,
        "dry_run": dry_run,
        "unchanged": unchanged,
        "applied": False,
        "source": {
            "from": source_from,
            "filename": filename,
            "line": new.line,
            "end_line": new.end_line,
            "column": new.column,
        },
        "old_source": {"from": old_from, "line": old_line},
        "changed": changed,
    }
    result.update(_diff(old_text, old_line, new.text, new.line, target, filename))
    if not unchanged:
        warnings.extend(_warnings_for(target, new, changed, old_decorators))
    result["warnings"] = warnings
    if verbose:
        result["new_source"] = new.text
    if unchanged:
        _keep(filename, text)  # this function's text in it is the running one's
    if unchanged or dry_run:
        result["versions"] = len(_versions(f))
        return result

    version = _Version()
    version.owner = f
    version.label = target.label
    version.nested = target.nested
    version.code = target.owner_code
    version.old_text, version.old_line, version.old_decorators = old_text, old_line, old_decorators
    version.new_text, version.new_line, version.new_decorators = new.text, new.line, new.decorators
    version.filename = filename
    version.origin_file = target.origin_file
    version.time = time.time()
    if target.nested is None:
        version.defaults, version.kwdefaults = f.__defaults__, f.__kwdefaults__
        version.doc, version.annotations = f.__doc__, f.__annotations__
        version.installed = new.code
        instrument.replace_code(f, new.code)
        f.__defaults__ = new.defaults
        f.__kwdefaults__ = new.kwdefaults
        f.__doc__ = new.doc
        f.__annotations__ = new.annotations
    else:
        owner_code = _with_nested(target.owner_code, target.old, new.code)
        version.installed = owner_code
        moved = _replace_nested(f, owner_code, target.old, new.code)
        if moved:
            warnings.append(
                {
                    "kind": "closures",
                    "count": moved,
                    "message": (
                        "%d function%s made from %s before (closures kept by the program) now run%s the new code too"
                        % (moved, "s" if moved != 1 else "", target.qualname, "" if moved != 1 else "s")
                    ),
                }
            )
    stack = _history.setdefault(id(f), [])
    stack.append(version)
    del stack[:-MAX_VERSIONS]
    _keep(filename, text)  # the running text of this function now, and of those it left unchanged
    result["applied"] = True
    result["versions"] = len(stack)
    return result


class _New(object):
    """The new function, compiled from the new text: its code, text, position and what its
    `def` statement evaluates (defaults, annotations), not yet applied."""

    __slots__ = (
        "code",
        "text",
        "line",
        "end_line",
        "column",
        "node",
        "defaults",
        "kwdefaults",
        "doc",
        "annotations",
        "decorators",
        "source",
    )


def _compile_new(target, text, filename, warnings):
    import ast

    from . import capture

    def compile_warning(message):
        warnings.append({"kind": "compile", "message": message.strip()})

    with capture.warnings_to(compile_warning):
        try:
            tree = ast.parse(text, filename)
            module_code = compile(tree, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError) as exc:  # ValueError: a NUL byte (3.8-3.11)
            raise _syntax_refusal(target, filename, exc)
    nodes = _find_def(tree, target)
    node = nodes[-1]
    code = _find_code(module_code, nodes)
    if code is None:
        raise AgentError(
            NOT_SUPPORTED, "fp could not find the code of %s in the compiled source of %s" % (target.qualname, filename)
        )
    # @types.coroutine marks the code at run time; decorators are not applied again, so the mark
    # is carried over (the function stays awaitable).
    code = code.replace(co_flags=code.co_flags | (target.old.co_flags & _CO_ITERABLE_COROUTINE))
    new = _New()
    new.code = code
    new.node = node
    new.source = text
    new.line = _first_line(node)
    new.end_line = getattr(node, "end_lineno", None) or node.lineno
    new.column = node.col_offset
    lines = text.splitlines()
    new.text = "\n".join(lines[new.line - 1 : new.end_line]) + "\n"
    new.decorators = [_segment(text, d) for d in node.decorator_list]
    _check_compatible(target, code, node, filename)
    if target.nested is not None:
        _check_nested(target, new, module_code, nodes, warnings, filename)
    elif "<locals>" in target.qualname:
        # Made by another function at run time (a factory's closure): its defaults were evaluated
        # there, among that function's locals, which are gone. They stay as they are.
        f = target.owner
        new.defaults, new.kwdefaults, new.annotations = f.__defaults__, f.__kwdefaults__, f.__annotations__
        new.doc = types.FunctionType(new.code, {}).__doc__
        warnings.append(
            {
                "kind": "defaults_kept",
                "message": (
                    "%s was made inside %s: its defaults and annotations are kept as they were (fp cannot evaluate them among "
                    "that function's locals)" % (target.qualname, target.qualname.rsplit(".<locals>.", 1)[0])
                ),
            }
        )
    else:
        _evaluate_def(target, new, module_code, filename)
    return new


def _syntax_refusal(target, filename, exc):
    import traceback

    line = column = text = None
    if isinstance(exc, SyntaxError):
        line, column, text = exc.lineno, exc.offset, exc.text
        where = "line %s, column %s: " % (line, column) if line else ""
        message = "%s does not compile: %s%s; nothing was changed" % (filename, where, exc.msg)
        if text:
            stripped = text.rstrip("\n")
            indent = len(stripped) - len(stripped.lstrip())
            message += "\n    " + stripped.lstrip()
            if column and column - 1 >= indent:
                message += "\n    " + " " * (column - 1 - indent) + "^"
    else:
        message = "%s does not compile: %s; nothing was changed" % (filename, exception_text(exc))
    data = {
        "reason": "syntax",
        "stage": "compile",
        "exception": exception_text(exc),
        "traceback": "".join(traceback.format_exception_only(type(exc), exc)),
        "file": filename,
        "line": line,
        "column": column,
        "end_line": getattr(exc, "end_lineno", None),
        "end_column": getattr(exc, "end_offset", None),
        "text": text,
    }
    return AgentError(EXPRESSION_FAILED, message, data)


def _read_source(target, filename):
    if not filename or (filename.startswith("<") and filename.endswith(">")):
        raise _missing(
            "file",
            filename or "?",
            "%s was not loaded from a file (%s): give its new source with --source FILE" % (target.label, filename),
        )
    try:
        return _read_text(filename)  # honours the file's encoding declaration
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise _missing(
            "file",
            filename,
            "cannot read the source of %s from %s: %s (give it with --source FILE)"
            % (target.label, filename, exception_text(exc)),
        )


def _missing(what, name, message, suggestions=()):
    return AgentError(NOT_FOUND, message, {"missing": what, "name": name, "suggestions": list(suggestions)})


# --------------------------------------------------------------------------------------------
# Finding the function in the new text, by qualified name and nesting


def _find_def(tree, target):
    """[the def/class nodes from the module down to the function] for target.qualname."""
    import ast

    parts = target.qualname.split(".")
    body = tree.body
    path = []
    i = 0
    while i < len(parts):
        name = parts[i]
        last = i == len(parts) - 1
        function = last or parts[i + 1] == "<locals>"
        if name.startswith("<"):
            raise AgentError(
                NOT_SUPPORTED,
                "%s is defined inside a %s, which cannot be found by name in a source "
                "text; fp reloads functions defined with def" % (target.label, name),
            )
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if function else (ast.ClassDef,)
        found = [n for n in _defs(body) if n.name == name and isinstance(n, kinds)]
        if not found:
            near = _near_names(tree, target.qualname)
            raise _missing(
                "function",
                target.qualname,
                "the new source of %s has no %s %s%s; nothing was changed"
                % (
                    target.located.module_name,
                    "function" if function else "class",
                    ".".join(parts[: i + 1]),
                    " (near: %s)" % ", ".join(near) if near else "",
                ),
                near,
            )
        node = _choose(found, target) if last else found[-1]
        path.append(node)
        body = node.body
        i += 2 if function and not last else 1
    return path


def _defs(body):
    """The def and class statements of a block, also inside if/try/with/for/while/match blocks
    (which open no scope of their own)."""
    import ast

    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield stmt
            continue
        for field in ("body", "orelse", "finalbody"):
            sub = getattr(stmt, field, None)
            if isinstance(sub, list):
                for n in _defs(sub):
                    yield n
        for handler in getattr(stmt, "handlers", None) or ():
            for n in _defs(handler.body):
                yield n
        for case in getattr(stmt, "cases", None) or ():  # match (3.10+)
            for n in _defs(case.body):
                yield n


def _choose(found, target):
    """Several definitions of one name at one level (a property's getter and setter, overloads,
    versions under if/else): the one the program most likely runs."""
    if len(found) == 1:
        return found[0]
    decorated = [(n, [_decorator_name(d) for d in n.decorator_list]) for n in found]
    if target.located.kind == "property":
        getters = [n for n, names in decorated if not any(d.endswith((".setter", ".deleter")) for d in names)]
        found = getters or found
    else:
        real = [n for n, names in decorated if not any(d.split(".")[-1] == "overload" for d in names)]
        found = real or found
    if len(found) > 1:
        arguments = target.old.co_varnames[: _arg_count(target.old)]
        same = [n for n in found if tuple(_node_arguments(n)) == tuple(arguments)]
        found = same or found
    return found[-1]  # the one defined last is the one the name is bound to


def _decorator_name(node):
    import ast

    while isinstance(node, ast.Call):
        node = node.func
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _node_arguments(node):
    a = node.args
    names = [x.arg for x in getattr(a, "posonlyargs", [])] + [x.arg for x in a.args]
    names += [x.arg for x in a.kwonlyargs]
    if a.vararg is not None:
        names.insert(len(getattr(a, "posonlyargs", [])) + len(a.args), a.vararg.arg)
    if a.kwarg is not None:
        names.append(a.kwarg.arg)
    return names


def _arg_count(code):
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
    return n


def _near_names(tree, qualname):
    import ast
    import difflib

    names = []

    def walk(body, prefix):
        for n in _defs(body):
            name = prefix + n.name
            if isinstance(n, ast.ClassDef):
                walk(n.body, name + ".")
            else:
                names.append(name)
                walk(n.body, name + ".<locals>.")

    walk(tree.body, "")
    near = difflib.get_close_matches(qualname, names, n=5, cutoff=0.6)
    tail = qualname.rsplit(".", 1)[-1]
    near += [n for n in names if n.rsplit(".", 1)[-1] == tail and n not in near][:5]
    return near


def _first_line(node):
    return min([node.lineno] + [d.lineno for d in node.decorator_list])


def _find_code(module_code, nodes):
    """The code object compiled for the last of `nodes`, walking the constants of the module's
    code down the path (a code's first line is its first decorator's)."""
    code = module_code
    for node in nodes:
        line = _first_line(node)
        found = None
        for c in code.co_consts:
            if isinstance(c, types.CodeType) and c.co_name == node.name and c.co_firstlineno == line:
                found = c
                break
        if found is None:
            return None
        code = found
    return code


def _nested_const(code, name):
    for c in code.co_consts:
        if isinstance(c, types.CodeType) and c.co_name == name:
            return c
    return None


def _segment(text, node):
    import ast

    try:
        segment = ast.get_source_segment(text, node)
    except Exception:
        segment = None
    return segment if segment is not None else "?"


# --------------------------------------------------------------------------------------------
# What makes a swap unsafe


def _check_compatible(target, code, node, filename):
    old = target.old
    where = {"file": filename, "line": node.lineno, "column": node.col_offset + 1}
    if old.co_flags & _KIND_FLAGS != code.co_flags & _KIND_FLAGS:
        raise _refusal(
            "kind",
            "%s was %s and the new source makes it %s: calls already made expect the old "
            "kind (fp cannot swap the code of a function for a different kind); nothing was changed"
            % (target.qualname, _kind(old), _kind(code)),
            where,
            old=_kind(old),
            new=_kind(code),
        )
    for attr, what in (("co_freevars", "free variables"), ("co_cellvars", "cell variables")):
        a, b = getattr(old, attr), getattr(code, attr)
        if a != b:
            added = sorted(set(b) - set(a))
            removed = sorted(set(a) - set(b))
            detail = []
            if added:
                detail.append("the new code adds %s" % ", ".join(added))
            if removed:
                detail.append("drops %s" % ", ".join(removed))
            hint = ""
            if "__class__" in added:
                hint = " (super() or __class__ in a method needs a cell the function was not made with)"
            elif attr == "co_freevars":
                hint = " (the function's closure holds exactly the old ones)"
            raise _refusal(
                "closure",
                "closure mismatch: the %s of %s differ: %s%s; restart the program for this "
                "change; nothing was changed"
                % (what, target.qualname, " and ".join(detail) or "their order changed", hint),
                where,
                variables=attr[3:],
                added=added,
                removed=removed,
            )


def _refusal(reason, message, where, **data):
    data["reason"] = reason
    data.update(where)
    return AgentError(NOT_SUPPORTED, message, data)


def _kind(code):
    flags = code.co_flags
    if flags & _CO_ASYNC_GENERATOR:
        return "an async generator"
    if flags & _CO_COROUTINE:
        return "a coroutine (async def)"
    if flags & _CO_GENERATOR:
        return "a generator"
    return "a plain function"


def _evaluate_def(target, new, module_code, filename):
    """Defaults, keyword defaults and annotations, evaluated as the `def` statement would: in the
    module's globals (and, for a method, its class's namespace), decorators left out."""
    import __future__

    import ast
    import copy

    node = copy.copy(new.node)
    node.decorator_list = []
    node.body = [ast.Pass(lineno=node.lineno, col_offset=node.col_offset)]
    future = 0
    for name in __future__.all_feature_names:
        future |= getattr(__future__, name).compiler_flag
    module = ast.Module(body=[node], type_ignores=[])
    ast.fix_missing_locations(module)
    f = target.owner
    namespace = {}
    cls = _defining_class(target)
    if cls is not None:
        try:
            namespace.update(object.__getattribute__(cls, "__dict__"))
        except BaseException:
            pass
    loading.threading_ready()  # the defaults are the program's code, run on this thread
    try:
        code = compile(module, filename, "exec", module_code.co_flags & future, True)
        exec(code, f.__globals__, namespace)
    except BaseException as exc:
        message = "evaluating the defaults and annotations of %s raised %s; nothing was changed" % (
            target.qualname,
            exception_text(exc),
        )
        raise AgentError(
            EXPRESSION_FAILED,
            message,
            {
                "reason": "default",
                "stage": "eval",
                "exception": exception_text(exc),
                "traceback": user_traceback(exc),
                "file": filename,
                "line": node.lineno,
                "column": node.col_offset + 1,
            },
        )
    made = namespace.get(node.name)
    if not isinstance(made, types.FunctionType):
        raise AgentError(NOT_SUPPORTED, "fp could not evaluate the def statement of %s" % target.qualname)
    new.defaults = made.__defaults__
    new.kwdefaults = made.__kwdefaults__
    new.annotations = made.__annotations__
    new.doc = types.FunctionType(new.code, {}).__doc__  # as MAKE_FUNCTION takes it from the code


def _defining_class(target):
    located = target.located
    if not located.class_name:
        return None
    try:
        cls = locate.find_class(locate.find_module(located.module_name), located.module_name, located.class_name)
    except AgentError:
        return None
    for klass in locate._mro(cls):
        try:
            if located.method in object.__getattribute__(klass, "__dict__"):
                return klass
        except BaseException:
            pass
    return cls


def _check_nested(target, new, module_code, nodes, warnings, filename):
    """A nested function's defaults and decorators are evaluated by the outer function each time
    it runs, from the outer's own code, which stays: its signature must not change."""
    old, code = target.old, new.code
    same_signature = (
        code.co_argcount == old.co_argcount
        and code.co_kwonlyargcount == old.co_kwonlyargcount
        and getattr(code, "co_posonlyargcount", 0) == getattr(old, "co_posonlyargcount", 0)
        and code.co_varnames[: _arg_count(code)] == old.co_varnames[: _arg_count(old)]
        and (code.co_flags & 0x0C) == (old.co_flags & 0x0C)
    )
    outer = _find_code(module_code, nodes[:-1])
    if not same_signature:
        raise _refusal(
            "nested_signature",
            "the signature of %s changed; its defaults are made by %s each time it "
            "runs, from the outer function's current code: reload %s itself instead (without -nm); "
            "nothing was changed" % (target.qualname, target.located.method, target.located.method),
            {"file": filename, "line": new.node.lineno, "column": new.node.col_offset + 1},
        )
    if outer is not None and not _same_code(target.owner_code, outer, skip=target.nested):
        warnings.append(
            {
                "kind": "outer_differs",
                "message": (
                    "the new source of %s differs outside %s too (another statement, or the defaults or decorators of the "
                    "nested def): only %s was reloaded; reload %s (without -nm) to take the rest"
                    % (target.located.method, target.nested, target.nested, target.located.method)
                ),
            }
        )


def _with_nested(owner_code, old_nested, new_nested):
    return owner_code.replace(co_consts=tuple(new_nested if c is old_nested else c for c in owner_code.co_consts))


def _replace_nested(owner, owner_code, old_nested, new_nested):
    """The outer function gets `owner_code`; functions made from the old nested code earlier
    (kept by the program) get the new one too. Returns how many such functions there were."""
    pairs = instrument.replace_code(owner, owner_code)
    return _move_functions([(old_nested, new_nested)] + list(pairs))


def _move_functions(pairs):
    import gc

    moved = 0
    for old, new in pairs:
        if old is None or new is None or old is new:
            continue
        for fn in gc.get_referrers(old):
            if type(fn) is types.FunctionType and fn.__code__ is old:
                try:
                    fn.__code__ = new
                    moved += 1
                except (ValueError, TypeError):
                    pass
    return moved


# --------------------------------------------------------------------------------------------
# Comparing versions


def _same_code(a, b, skip=None):
    """Same bytecode, names, constants and signature, whatever the line numbers (lines move when
    someone edits above the function). `skip`: a nested function's name left out."""
    if a is b:
        return True
    attrs = (
        "co_code",
        "co_argcount",
        "co_kwonlyargcount",
        "co_names",
        "co_varnames",
        "co_freevars",
        "co_cellvars",
        "co_posonlyargcount",
        "co_exceptiontable",
    )
    for attr in attrs:
        if getattr(a, attr, None) != getattr(b, attr, None):
            return False
    if (a.co_flags & ~_CO_ITERABLE_COROUTINE) != (b.co_flags & ~_CO_ITERABLE_COROUTINE):
        return False
    if len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if skip is not None and x.co_name == skip and y.co_name == skip:
                continue
            if x.co_name != y.co_name or not _same_code(x, y):
                return False
        elif not _same_value(x, y):
            return False
    return True


def _same_value(x, y):
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(_same_value(a, b) for a, b in zip(x, y))
    if isinstance(x, dict):
        return list(x) == list(y) and all(_same_value(x[k], y[k]) for k in x)
    if isinstance(x, (int, str, bytes, float, complex, bool, frozenset, type(None), type(Ellipsis))):
        try:
            return repr(x) == repr(y)  # 0.0 and -0.0 differ; so do 1 and True
        except Exception:
            return False
    return False  # a new object (a list default is a new list): it changed


def _signature_text(code, defaults, kwdefaults):
    """(a, b=2, *rest, c=0, **kw) from the code and, when known, the default values."""
    names = code.co_varnames
    argc = code.co_argcount
    posonly = getattr(code, "co_posonlyargcount", 0)
    kwonly = code.co_kwonlyargcount
    defaults = defaults or ()
    parts = []
    first_default = argc - len(defaults) if defaults else argc
    for i in range(argc):
        part = names[i]
        if i >= first_default:
            part += "=" + _short_repr(defaults[i - first_default])
        parts.append(part)
        if posonly and i == posonly - 1:
            parts.append("/")
    i = argc + kwonly
    if code.co_flags & 0x04:
        parts.append("*" + names[i])
        i += 1
    elif kwonly:
        parts.append("*")
    for name in names[argc : argc + kwonly]:
        if kwdefaults and name in kwdefaults:
            name += "=" + _short_repr(kwdefaults[name])
        parts.append(name)
    if code.co_flags & 0x08:
        parts.append("**" + names[i])
    return "(%s)" % ", ".join(parts)


def _short_repr(value):
    from . import render

    return render.safe_repr(value, 40)[0]


def _old_source(target):
    """(text of the function the program runs now, its first line, where it came from, its
    decorators) or four Nones: the last reload's text while its code is still the one running,
    else Python's line cache or the file, when its text compiles to the code running now."""
    stack = _versions(target.owner)
    if stack and stack[-1].label == target.label and stack[-1].installed is target.owner_code:
        last = stack[-1]
        return last.new_text, last.new_line, "previous reload", last.new_decorators
    filename = target.old.co_filename
    candidates = [(text, "kept") for text in reversed(_kept.get(filename, ()))]
    try:
        import linecache

        entry = linecache.cache.get(filename)
        if entry is not None and len(entry) >= 3 and entry[2]:
            candidates.append(("".join(entry[2]), "line cache"))
    except Exception:
        pass
    if filename and not filename.startswith("<"):
        try:
            candidates.append((_read_text(filename), "file"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            pass
    for text, origin in candidates:
        found = _function_text(text, filename, target)
        if found is not None:
            return found[0], found[1], origin, found[2]
    return None, None, None, None


def _function_text(text, filename, target):
    """(the function's text, its first line, its decorators) when `text` compiles to the code
    running now."""
    import ast

    try:
        tree = ast.parse(text, filename)
        module_code = compile(tree, filename, "exec", dont_inherit=True)
        nodes = _find_def(tree, target)
    except BaseException:
        return None
    code = _find_code(module_code, nodes)
    if code is None or not _same_code(code, target.old):
        return None
    node = nodes[-1]
    if target.nested is None and not _literal_defaults_match(node, target.owner):
        return None  # the same body with another default: the text of another version
    first = _first_line(node)
    lines = text.splitlines()
    text_of = "\n".join(lines[first - 1 : getattr(node, "end_lineno", node.lineno)]) + "\n"
    return text_of, first, [_segment(text, d) for d in node.decorator_list]


def _literal_defaults_match(node, function):
    """False when a default written as a literal in the def differs from the function's (defaults
    are computed by the code around the def, which is not kept: only literals can be checked)."""
    import ast

    defaults = function.__defaults__ or ()
    kwdefaults = function.__kwdefaults__ or {}
    written = node.args.defaults
    if len(written) != len(defaults):
        return False
    pairs = list(zip(written, defaults))
    for arg, expr in zip(node.args.kwonlyargs, node.args.kw_defaults):
        if (expr is None) != (arg.arg not in kwdefaults):
            return False
        if expr is not None:
            pairs.append((expr, kwdefaults[arg.arg]))
    for expr, value in pairs:
        try:
            literal = ast.literal_eval(expr)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            continue  # not a literal: cannot tell
        if not _same_value(literal, value):
            return False
    return True


def _diff(old_text, old_line, new_text, new_line, target, filename, labels=("running", "new")):
    import difflib

    if old_text is None:
        return {
            "diff": None,
            "diff_note": (
                "the source of the code running now is not available (its file changed since it was loaded, and "
                "Python's line cache does not hold the old text), so there is no diff; later reloads have one"
            ),
        }
    diff = difflib.unified_diff(
        old_text.splitlines(),
        new_text.splitlines(),
        "%s:%s (%s)" % (target.old.co_filename, old_line, labels[0]),
        "%s:%s (%s)" % (filename, new_line, labels[1]),
        lineterm="",
    )
    text = "\n".join(diff)
    return {"diff": text + "\n" if text else "", "diff_note": None}


# --------------------------------------------------------------------------------------------
# Warnings: what the swap does not change


def _warnings_for(target, new, changed, old_decorators):
    warnings = []
    running = _running_calls(target.old)
    if running:
        total = sum(t["calls"] for t in running)
        names = ", ".join(_thread_label(t) for t in running)
        warnings.append(
            {
                "kind": "running",
                "threads": running,
                "message": (
                    "%d call%s of %s %s running now (thread%s %s): %s with the old code; calls from now on run the new one"
                    % (
                        total,
                        "s" if total != 1 else "",
                        target.qualname,
                        "are" if total != 1 else "is",
                        "s" if len(running) != 1 else "",
                        names,
                        "they finish" if total != 1 else "it finishes",
                    )
                ),
            }
        )
    if target.old.co_flags & _KIND_FLAGS:
        suspended = _suspended(target.old)
        if suspended:
            what = (
                "coroutine"
                if target.old.co_flags & _CO_COROUTINE
                else "async generator"
                if target.old.co_flags & _CO_ASYNC_GENERATOR
                else "generator"
            )
            warnings.append(
                {
                    "kind": "suspended",
                    "count": suspended,
                    "message": (
                        "%d suspended %s%s of %s %s running the old code until %s"
                        % (
                            suspended,
                            what,
                            "s" if suspended != 1 else "",
                            target.qualname,
                            "keep" if suspended != 1 else "keeps",
                            "they finish" if suspended != 1 else "it finishes",
                        )
                    ),
                }
            )
    wrapped = "__wrapped__" in (target.located.note or "")
    if new.decorators or wrapped:
        shown = ", ".join("@" + d for d in new.decorators) if new.decorators else "its decorator"
        warnings.append(
            {
                "kind": "decorators",
                "decorators": new.decorators,
                "message": (
                    "decorators are not applied again: %s stay%s as made when the module was loaded (fp replaced the code "
                    "of the function inside)" % (shown, "" if len(new.decorators) > 1 else "s")
                ),
            }
        )
    if changed["decorators"] is not None and old_decorators is not None:
        warnings.append(
            {
                "kind": "decorators_changed",
                "message": (
                    "the decorators changed (%s -> %s) but are not applied: restart the program for that change"
                    % (
                        ", ".join("@" + d for d in old_decorators) or "none",
                        ", ".join("@" + d for d in new.decorators) or "none",
                    )
                ),
            }
        )
    if _signature_text(target.old, None, None) != _signature_text(new.code, None, None):
        warnings.append(
            {
                "kind": "signature",
                "message": (
                    "the parameters changed %s -> %s: callers that pass the old arguments may now fail"
                    % (changed["signature"]["old"], changed["signature"]["new"])
                ),
            }
        )
    missing = _undefined_globals(new.code, target.owner.__globals__)
    if missing:
        warnings.append(
            {
                "kind": "undefined_names",
                "names": missing,
                "message": (
                    "the new code uses name%s the module does not define: %s (a NameError when it runs); an import added "
                    "at the top of the file is not run by reload: import inside the function, or import it with the console"
                    % ("s" if len(missing) != 1 else "", ", ".join(missing))
                ),
            }
        )
    return warnings


def _thread_label(thread):
    name = thread.get("name") or "thread %d" % thread["ident"]
    return name if thread["calls"] == 1 else "%s x%d" % (name, thread["calls"])


def _running_calls(code):
    """[{"ident", "name", "calls"}] of the threads that are inside a call of `code` now."""
    me = _thread.get_ident()
    threading = sys.modules.get("threading")
    found = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        calls = 0
        while frame is not None:
            if frame.f_code is code:
                calls += 1
            frame = frame.f_back
        if calls:
            name = None
            if threading is not None:
                thread = getattr(threading, "_active", {}).get(ident)
                name = getattr(thread, "name", None)
            found.append({"ident": ident, "name": name, "calls": calls})
    return found


def _suspended(code):
    """How many generators, coroutines or async generators of `code` are alive and not done."""
    import gc
    import itertools

    kinds = {id(types.GeneratorType): "gi", id(types.CoroutineType): "cr", id(types.AsyncGeneratorType): "ag"}
    count = 0
    objects = gc.get_objects()
    try:
        # by the type's id: hashing a class may run its metaclass's __hash__ (the program's code)
        for obj in itertools.compress(objects, map(kinds.__contains__, map(id, map(type, objects)))):
            prefix = kinds[id(type(obj))]
            if getattr(obj, prefix + "_code", None) is code and getattr(obj, prefix + "_frame", None) is not None:
                count += 1
    finally:
        del objects
    return count


def _undefined_globals(code, globals_dict):
    import builtins
    import dis

    names = set()
    pending = [code]
    while pending:
        c = pending.pop()
        for ins in dis.get_instructions(c):
            if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(ins.argval, str):
                names.add(ins.argval)
        pending.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    builtin_names = vars(builtins)
    module_builtins = globals_dict.get("__builtins__")
    if isinstance(module_builtins, dict):
        builtin_names = module_builtins
    elif isinstance(module_builtins, types.ModuleType):
        builtin_names = vars(module_builtins)
    return sorted(n for n in names if n not in globals_dict and n not in builtin_names)


# --------------------------------------------------------------------------------------------
# Undo


def _versions(owner):
    stack = _history.get(id(owner))
    if stack and stack[-1].owner is not owner:  # a function freed since, its id reused
        del _history[id(owner)]
        return []
    return stack or []


def _undo(target, verbose):
    stack = _versions(target.owner)
    if not stack:
        raise _missing(
            "version",
            target.label,
            "%s has not been reloaded by fp in this process: there is no earlier version to go back to" % target.label,
        )
    last = stack[-1]
    if last.label != target.label:
        raise AgentError(
            NOT_SUPPORTED,
            "the last reload of %s's code was of %s: undo that one first" % (target.owner.__qualname__, last.label),
            {"reason": "order", "last": last.label},
        )
    if instrument.real_code(target.owner) is not last.installed:
        raise AgentError(
            NOT_SUPPORTED,
            "the code of %s was replaced since fp reloaded it (by something other than "
            "fp), so fp cannot put the earlier version back exactly; nothing was changed" % target.label,
            {"reason": "replaced"},
        )
    f = target.owner
    current = target.old
    warnings = []
    if target.nested is None:
        restored = last.code
        instrument.replace_code(f, last.code)
        f.__defaults__ = last.defaults
        f.__kwdefaults__ = last.kwdefaults
        f.__doc__ = last.doc
        f.__annotations__ = last.annotations
    else:
        restored = _nested_const(last.code, target.nested)
        moved = _replace_nested(f, last.code, current, restored)
        if moved:
            warnings.append(
                {
                    "kind": "closures",
                    "count": moved,
                    "message": (
                        "%d function%s made from %s (closures kept by the program) went back too"
                        % (moved, "s" if moved != 1 else "", target.qualname)
                    ),
                }
            )
    stack.pop()
    if not stack:
        _history.pop(id(f), None)
    running = _running_calls(current)
    if running:
        total = sum(t["calls"] for t in running)
        warnings.append(
            {
                "kind": "running",
                "threads": running,
                "message": (
                    "%d call%s of the undone code %s running now (%s): %s with it"
                    % (
                        total,
                        "s" if total != 1 else "",
                        "are" if total != 1 else "is",
                        ", ".join(_thread_label(t) for t in running),
                        "they finish" if total != 1 else "it finishes",
                    )
                ),
            }
        )
    result = {
        "action": "undo",
        "located": target.located.to_json(),
        "note": target.located.note,
        "applied": True,
        "restored": {"line": last.old_line, "filename": restored.co_filename, "reloaded_at": last.time},
        "warnings": warnings,
        "versions": len(stack),
    }
    result.update(
        _diff(
            last.new_text,
            last.new_line,
            last.old_text,
            last.old_line,
            target,
            restored.co_filename,
            ("undone", "restored"),
        )
        if last.old_text is not None
        else {
            "diff": None,
            "diff_note": (
                "the source of the version put back was not available when it was replaced, so there is no diff"
            ),
        }
    )
    if verbose:
        result["new_source"] = last.old_text
    return result
