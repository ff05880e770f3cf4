"""`complete`: names of the attached process for a shell's tab completion of the locating
grammar `module [class] name` (watch, trace, tt -t, getglobal, vmtool -c): loaded module names,
then the classes and functions (or globals) of a module, then the methods (or attributes) of a
class. Read without running code: namespaces are read from __dict__ (no __getattr__, no
property, no descriptor is called) and nothing is imported.
"""

import sys

from .errors import invalid_param
from .params import check_names, get_int, get_str

MAX_MATCHES = 200
KINDS = ("function", "global", "class")


def complete(client_id, params):
    check_names(params, ("words", "text", "kind", "limit"))
    words = params.get("words")
    if words is None:
        words = []
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(words) > 2:
        raise invalid_param(
            "words",
            "parameter 'words' must be a list of at most two strings: the module, then the class, already typed",
        )
    text = get_str(params, "text") or ""
    kind = get_str(params, "kind") or "function"
    if kind not in KINDS:
        raise invalid_param("kind", "parameter 'kind' must be one of %s, not %r" % (", ".join(KINDS), kind))
    limit = get_int(params, "limit", default=MAX_MATCHES, low=1, high=10000)

    if not words:
        found = _modules(text)
    else:
        module = sys.modules.get(words[0])
        if module is None:
            found = []
        elif len(words) == 1:
            found = _in_module(module, text, kind)
        else:
            cls = _class(module, words[1])
            found = [] if cls is None or kind == "class" else _in_class(cls, text, kind)
    found.sort(key=lambda m: m["name"])
    return {"words": words, "text": text, "kind": kind, "matches": found[:limit], "more": max(0, len(found) - limit)}


def _hidden(name, text):
    """Names starting with "_" (at their last dotted part) are shown only when asked for."""
    return name.rpartition(".")[2].startswith("_") and not text.rpartition(".")[2].startswith("_")


def _modules(text):
    base, _, typing = text.rpartition(".")
    out = []
    for name, module in list(sys.modules.items()):
        if module is None or not isinstance(name, str) or not name.startswith(text):
            continue
        parts = name[len(base) + 1 if base else 0 :].split(".")
        # The part being typed may be private when the user typed "_"; parts below it never are shown.
        if (parts[0].startswith("_") and not typing.startswith("_")) or any(p.startswith("_") for p in parts[1:]):
            continue
        out.append({"name": name, "kind": "module"})
    return out


def _namespace(obj):
    try:
        namespace = object.__getattribute__(obj, "__dict__")
    except BaseException:
        return {}
    return namespace if isinstance(namespace, dict) or hasattr(namespace, "items") else {}


def _class(module, dotted):
    owner = module
    for part in dotted.split("."):
        value = _namespace(owner).get(part)
        if not isinstance(value, type):
            return None
        owner = value
    return owner


def _in_module(module, text, kind):
    import types

    out = []
    for name, value in list(_namespace(module).items()):
        if not isinstance(name, str) or not name.startswith(text) or _hidden(name, text) or _dunder(name):
            continue
        if isinstance(value, type):
            out.append({"name": name, "kind": "class"})
        elif kind == "class":
            continue
        elif isinstance(value, (types.FunctionType, types.MethodType)):
            out.append({"name": name, "kind": "function"})
        elif kind == "global":
            out.append({"name": name, "kind": "module" if isinstance(value, types.ModuleType) else "global"})
    return out


def _in_class(cls, text, kind):
    import types

    out = {}
    try:
        mro = type.__getattribute__(cls, "__mro__")
    except BaseException:
        mro = (cls,)
    for klass in mro:
        if klass is object:
            continue
        for name, value in list(_namespace(klass).items()):
            if not isinstance(name, str) or name in out or not name.startswith(text) or _hidden(name, text):
                continue
            if _dunder(name) and not text.startswith("__"):
                continue
            if isinstance(value, type):
                out[name] = "class"
            elif (
                isinstance(value, (types.FunctionType, staticmethod, classmethod, property))
                or type(value).__name__ == "cached_property"
            ):
                out[name] = "method"
            elif kind == "global":
                out[name] = "attribute"
    return [{"name": n, "kind": k} for n, k in out.items()]


def _dunder(name):
    return name.startswith("__") and name.endswith("__")
