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
    from .loading import stdlib

    difflib = stdlib("difflib")

    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.6)


# ---------------------------------------------------------------------------------------------
# Functions to instrument: `module [class] method [-nm NAME]` (watch, trace, tt)


class FunctionLocation(object):
    """A Python function found for instrumentation.

    `code` is the code object to observe; `function` the function object that runs it (None for
    a nested function, whose objects are made at each call of `outer`); `bind` says what the
    first argument is ("self", "cls" or None); `note` tells the user what fp did on their
    behalf (an unwrapped decorator, an inherited method...). `key` identifies the instrumented
    thing: two clients naming it through different aliases share one instrumentation.
    """

    __slots__ = (
        "module_name",
        "class_name",
        "method",
        "nested",
        "kind",
        "function",
        "outer",
        "code",
        "bind",
        "notes",
        "key",
        "label",
    )

    def __init__(self, module_name, class_name, method, nested):
        self.module_name = module_name
        self.class_name = class_name
        self.method = method
        self.nested = nested
        self.kind = "function"
        self.function = None
        self.outer = None
        self.code = None
        self.bind = None
        self.notes = []
        self.key = None
        self.label = ".".join(p for p in (module_name, class_name, method) if p)
        if nested:
            self.label += "." + nested

    @property
    def note(self):
        return "; ".join(self.notes) or None

    def method_key(self):
        """ "module.class.method" as tt -m takes it (class is None for plain functions)."""
        return "%s.%s.%s" % (self.module_name, self.class_name or "None", self.method)

    def to_json(self):
        code = self.code
        flags = code.co_flags
        return {
            "module": self.module_name,
            "class": self.class_name,
            "method": self.method,
            "nested": self.nested,
            "kind": self.kind,
            "qualname": getattr(code, "co_qualname", None) or _qualname(self),
            "file": code.co_filename,
            "line": code.co_firstlineno,
            "async": bool(flags & 0x80 or flags & 0x200),
            "generator": bool(flags & 0x20 or flags & 0x200),
            "note": self.note,
        }


def _qualname(location):
    function = location.function or location.outer
    name = getattr(function, "__qualname__", location.method)
    if location.nested:
        return "%s.<locals>.%s" % (name, location.nested)
    return name


def locate_function(module_name, class_name, method, nested=None, verb="observe"):
    """Resolve `module [class] method [-nm nested]` to a FunctionLocation; a clear error for
    names that are missing (near names suggested) and for things fp cannot instrument (`verb`:
    what fp would do with it, for that message)."""
    import types

    from .errors import NOT_SUPPORTED, AgentError

    where = locate(module_name, class_name, method, missing="method", static=True)
    loc = FunctionLocation(module_name, class_name, method, nested)
    value = where.value
    label = loc.label if not nested else loc.label[: -len(nested) - 1]

    if class_name and where.cls is not None and method not in _namespace(where.cls):
        for klass in _mro(where.cls)[1:]:
            if method in _namespace(klass):
                loc.notes.append(
                    "%s is inherited from %s.%s: observing it there, for every class that uses it"
                    % (method, getattr(klass, "__module__", "?"), getattr(klass, "__qualname__", "?"))
                )
                break

    bind = "self" if class_name else None
    kind = "method" if class_name else "function"
    if isinstance(value, staticmethod):
        value, kind, bind = value.__func__, "staticmethod", None
    elif isinstance(value, classmethod):
        value, kind, bind = value.__func__, "classmethod", "cls"
    elif isinstance(value, property):
        if value.fget is None:
            raise AgentError(NOT_SUPPORTED, "%s is a property without a getter: nothing to observe" % label)
        value, kind, bind = value.fget, "property", "self"
        loc.notes.append("observing the property's getter")
    elif type(value).__name__ == "cached_property" and hasattr(value, "func"):
        value, kind, bind = value.func, "property", "self"
        loc.notes.append("observing the cached_property's function (called once per instance)")
    elif isinstance(value, types.MethodType):
        # A bound method stored as a module global (handler = obj.method): its function.
        value, kind, bind = value.__func__, "method", "self"
        loc.notes.append("%s is a bound method: observing its function, for every instance" % label)

    # functools.wraps-style decorators: the function that does the work is __wrapped__.
    seen = set()
    while isinstance(value, types.FunctionType) and id(value) not in seen:
        seen.add(id(value))
        inner = _own_attribute(value, "__wrapped__")
        if inner is None:
            break
        if isinstance(inner, (staticmethod, classmethod)):
            inner = inner.__func__
        if not isinstance(inner, types.FunctionType):
            break
        decorator = getattr(value.__code__, "co_qualname", None) or value.__code__.co_name
        loc.notes.append(
            "instrumented the wrapped function %s.%s (functools.wraps' __wrapped__); its decorator's "
            "wrapper (%s) is left alone"
            % (getattr(inner, "__module__", "?"), getattr(inner, "__qualname__", "?"), decorator)
        )
        value = inner

    if not isinstance(value, types.FunctionType):
        raise AgentError(NOT_SUPPORTED, _not_python_function(label, value, verb))
    if nested is None:
        defined = getattr(value, "__module__", None)
        if not class_name and defined not in (None, module_name):
            loc.notes.append(
                "%s is %s.%s, imported into %s: observing it for every caller"
                % (label, defined, getattr(value, "__qualname__", method), module_name)
            )

    loc.kind = kind
    loc.bind = bind
    if nested is None:
        loc.function = value
        loc.code = value.__code__
        loc.key = ("function", id(value)) if sys.version_info < (3, 12) else ("code", id(loc.code))
        return loc

    code = _nested_code(value.__code__, nested, label)
    loc.kind = "nested"
    loc.bind = None
    loc.outer = value
    loc.code = code
    loc.key = ("nested", id(value), id(code)) if sys.version_info < (3, 12) else ("code", id(code))
    return loc


def _nested_code(code, name, label):
    import types

    from .errors import not_found

    nested = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    for c in nested:
        if c.co_name == name:
            return c
    names = [c.co_name for c in nested if not c.co_name.startswith("<")]
    raise not_found(
        "nested",
        name,
        "%s has no function %r nested in it (one level deep)%s"
        % (label, name, "; it defines: " + ", ".join(names) if names else "; it defines no nested function"),
        _near(name, names) or names[:5],
    )


def _own_attribute(function, name):
    try:
        return object.__getattribute__(function, "__dict__").get(name)
    except BaseException:
        return None


def _not_python_function(label, value, verb="observe"):
    import types

    if isinstance(
        value,
        (
            types.BuiltinFunctionType,
            types.BuiltinMethodType,
            types.WrapperDescriptorType,
            types.MethodDescriptorType,
            types.ClassMethodDescriptorType,
            types.MethodWrapperType,
        ),
    ):
        return "%s is a builtin (implemented in C: %s); fp can only %s functions written in Python" % (
            label,
            type(value).__name__,
            verb,
        )
    if isinstance(value, type):
        return "%s is a class, not a function; name one of its methods: module class method" % label
    if type(value).__name__ == "partial" and hasattr(value, "func"):
        return "%s is a functools.partial of %r; name the function it wraps instead" % (
            label,
            getattr(value.func, "__qualname__", value.func),
        )
    if callable(value):
        return (
            "%s is a callable %s object, not a function; name its class and __call__ instead "
            "(module class __call__)" % (label, type(value).__name__)
        )
    return "%s is %s, not a function" % (label, _kind(value))
