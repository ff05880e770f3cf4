"""Resolving `module [class] name` to a live object, shared by every command that names code or
data; nothing is imported, and a missing part is reported precisely with near names.
"""

import sys

from .errors import exception_text, expression_failed, not_found


class Location(object):
    """Where a name was found: `owner` is the class when one was given, else the module."""

    __slots__ = ("module_name", "module", "class_name", "cls", "name", "owner", "value")

    def __init__(self, module_name, module, class_name, cls, name, value):
        self.module_name = module_name
        self.module = module
        self.class_name = class_name
        self.cls = cls
        self.name = name
        self.owner = cls if cls is not None else module
        self.value = value


def locate(module_name, class_name, name, missing="field", static=False):
    """Find `name` in a loaded module, or in a class of it when `class_name` is given.

    `missing` is the word used when `name` is not found ("field", "method").
    With `static`, a class attribute is the raw object in the class __dict__ (the function,
    not a bound method), which is what instrumentation has to replace.
    """
    module = find_module(module_name)
    cls = None
    if class_name:
        cls = find_class(module, module_name, class_name)
        value = _class_attribute(cls, module_name + "." + class_name, name, missing, static)
    else:
        value = _module_attribute(module, module_name, name, missing)
    return Location(module_name, module, class_name, cls, name, value)


def find_module(module_name):
    module = sys.modules.get(module_name)
    if module is not None:
        return module
    names = [n for n, m in list(sys.modules.items()) if m is not None]
    suggestions = _near(module_name, names)
    # "models" when the program imported "app.models": the tail of a dotted name is a good hint.
    tail = "." + module_name
    suggestions += sorted(n for n in names if n.endswith(tail) and n not in suggestions)[:5]
    raise not_found(
        "module",
        module_name,
        "module %r is not loaded in this process (fp looks in sys.modules and imports nothing)" % module_name,
        suggestions,
    )


def find_class(module, module_name, class_name):
    """A class by its qualified name inside the module: "Outer.Inner" walks nested classes."""
    owner = module
    owner_label = module_name
    walked = []
    for part in class_name.split("."):
        walked.append(part)
        try:
            namespace = _namespace(owner)
        except BaseException:
            namespace = {}
        if part in namespace:
            value = namespace[part]
        else:
            names = [n for n in namespace if isinstance(n, str)]
            class_names = [n for n in names if isinstance(namespace.get(n), type)]
            prefix = ".".join(walked[:-1])
            suggestions = _near(part, class_names) or _near(part, names)
            if prefix:
                suggestions = [prefix + "." + s for s in suggestions]
            raise not_found(
                "class", class_name, "class %r not found: %s has no %r" % (class_name, owner_label, part), suggestions
            )
        if not isinstance(value, type):
            raise not_found(
                "class",
                class_name,
                "%s.%s is %s, not a class" % (owner_label, part, _kind(value)),
                [],
            )
        owner = value
        owner_label = module_name + "." + ".".join(walked)
    return owner


def _module_attribute(module, module_name, name, missing):
    try:
        namespace = _namespace(module)
    except BaseException:
        namespace = {}
    if name in namespace:
        return namespace[name]
    if "__getattr__" in namespace:
        # PEP 562 lazy attributes are real globals of the module; asking for one runs the
        # module's own __getattr__, exactly as `module.name` in the program would.
        try:
            return getattr(module, name)
        except AttributeError:
            pass
        except BaseException as exc:
            raise _read_failed(module_name, name, exc)
    names = [n for n in namespace if isinstance(n, str)]
    raise not_found(
        missing,
        name,
        "module %s has no %s %r" % (module_name, missing, name),
        _near(name, _public_first(names)),
    )


def _class_attribute(cls, label, name, missing, static):
    if static:
        for klass in _mro(cls):
            namespace = _namespace(klass)
            if name in namespace:
                return namespace[name]
    else:
        try:
            return getattr(cls, name)
        except AttributeError:
            pass
        except BaseException as exc:  # a descriptor or metaclass that raised: the user's code
            raise _read_failed(label, name, exc)
    try:
        names = dir(cls)
    except BaseException:
        names = []
    raise not_found(missing, name, "class %s has no %s %r" % (label, missing, name), _near(name, _public_first(names)))


def _read_failed(owner, name, exc):
    return expression_failed(exc, "eval", "reading %s.%s raised %s" % (owner, name, exception_text(exc)))


def _namespace(obj):
    # object.__getattribute__ reads the real __dict__ without running a custom __getattribute__.
    return object.__getattribute__(obj, "__dict__")


def _mro(cls):
    try:
        return type.__getattribute__(cls, "__mro__")
    except BaseException:
        return (cls,)


def _kind(value):
    if callable(value):
        return "a callable (%s)" % type(value).__name__
    return "a %s" % type(value).__name__


def _public_first(names):
    # A misspelt public name should be matched against public names before dunders.
    return sorted(set(names), key=lambda n: (n.startswith("__"), n))


def _near(name, candidates, n=5):
    import difflib

    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)
