"""The VALUE tree of protocol/methods.md: how any Python value is shown to a client, read
without running the value's own code where that can be avoided.
"""

import itertools
import sys
import types

from .errors import exception_text

# This runs in someone's live service: containers are read through their base types (a
# subclass's __iter__ or __len__ is the program's code), snapshotted in one C call (other threads
# run between our bytecodes), and a big builtin value's repr is built only as far as it is shown.

REPR_LIMIT = 256
CHILD_LIMIT = 20
# Even with verbose, a node lists at most this many children: a response must fit in a frame.
VERBOSE_CHILD_LIMIT = 10000


def render(value, depth=1, verbose=False, raw=False):
    """The VALUE node of `value`, expanded `depth` levels (0: the node alone)."""
    if raw:
        return {"type": type_name(type(value)), "repr": safe_repr(value)[0]}
    return _Renderer(VERBOSE_CHILD_LIMIT if verbose else CHILD_LIMIT).node(value, depth, ())


def type_name(cls):
    """`int`, `collections.OrderedDict`, `app.models.User`: module-qualified unless a builtin."""
    try:
        qualname = type.__getattribute__(cls, "__qualname__")
        module = type.__getattribute__(cls, "__module__")
    except BaseException:
        return "<unknown type>"
    if not isinstance(module, str) or module == "builtins":
        return str(qualname)
    return "%s.%s" % (module, qualname)


def safe_repr(value, limit=None):
    """(text, truncated): repr(value) cut to `limit` characters; a repr that raises is described."""
    try:
        text = repr(value) if limit is None else _bounded_repr(value, limit + 1)
    except BaseException as exc:  # SystemExit from a __repr__ must not end our request
        text = "<repr failed: %s>" % exception_text(exc)
    if limit is not None and len(text) > limit:
        return text[:limit], True
    return text, False


class _Renderer(object):
    def __init__(self, child_limit):
        self.child_limit = child_limit

    def node(self, value, depth, ancestors):
        node = {"type": type_name(type(value))}
        text, truncated = safe_repr(value, REPR_LIMIT)
        node["repr"] = text
        if truncated:
            node["repr_truncated"] = True
        size = _length(value)
        if size is not None:
            node["len"] = size
        try:
            total, take = _parts(value)
        except BaseException:  # a broken __dict__ or slot: show the value without parts
            total, take = 0, None
        if not total:
            return node
        if id(value) in ancestors:
            # A container inside itself: expanding it again would only repeat its ancestor.
            node["cycle"] = True
            return node
        if depth <= 0:
            node["expandable"] = True
            return node
        try:
            pairs = take(self.child_limit)
        except BaseException:  # the parts could not be read (a broken container): none shown
            pairs = []
        inner = ancestors + (id(value),)
        node["children"] = [{"name": name, "value": self.node(child, depth - 1, inner)} for name, child in pairs]
        node["omitted"] = max(0, total - len(pairs))
        return node


# ---------------------------------------------------------------------------------------------
# Parts of a value: items of containers, attributes of other objects

_NO_PARTS = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    range,
    memoryview,
    type(None),
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
)


def _parts(value):
    """(count, take): how many parts the value has, and take(limit) -> [(name, part)]."""
    if isinstance(value, dict):
        items = _dict_items(value)
        return dict.__len__(value), lambda limit: [(safe_repr(k, REPR_LIMIT)[0], v) for k, v in _take(items, limit)]
    for base in (list, tuple):
        if isinstance(value, base):
            # One slice is one C call: a consistent snapshot even if other threads append.
            return base.__len__(value), lambda limit: [
                ("[%d]" % i, v) for i, v in enumerate(base.__getitem__(value, slice(0, limit)))
            ]
    for base in (set, frozenset, _deque_type()):
        if base is not None and isinstance(value, base):
            return base.__len__(value), lambda limit: [
                ("[%d]" % i, v) for i, v in enumerate(_take(base.__iter__(value), limit))
            ]
    if isinstance(value, _NO_PARTS):
        return 0, None
    pairs = _attributes(value)
    return len(pairs), lambda limit: pairs[:limit]


def _attributes(value):
    """An object's attributes from its __dict__ and its __slots__, read without running its code."""
    # Modules and classes carry many bookkeeping dunders (__doc__, __loader__, __weakref__...)
    # that bury what the user looks for.
    skip_dunders = isinstance(value, (type, types.ModuleType))
    pairs = []
    try:
        namespace = object.__getattribute__(value, "__dict__")
    except BaseException:
        namespace = None
    if isinstance(namespace, dict):
        items = list(dict.items(namespace))
    elif isinstance(namespace, types.MappingProxyType):
        items = list(namespace.items())
    else:
        items = []
    for name, attr in items:
        if not isinstance(name, str):
            continue
        if skip_dunders and name.startswith("__") and name.endswith("__"):
            continue
        pairs.append((name, attr))
    if not isinstance(value, type):
        pairs.extend(_slot_values(value))
    return pairs


def _slot_values(value):
    pairs = []
    seen = set()
    for klass in type.__getattribute__(type(value), "__mro__"):
        namespace = type.__getattribute__(klass, "__dict__")
        slots = namespace.get("__slots__")
        if slots is None:
            continue
        if isinstance(slots, str):
            slots = (slots,)
        for name in slots:
            if not isinstance(name, str) or name in ("__dict__", "__weakref__") or name in seen:
                continue
            seen.add(name)
            stored = name
            if name.startswith("__") and not name.endswith("__"):
                stored = "_%s%s" % (klass.__name__.lstrip("_"), name)  # private names are mangled
            descriptor = namespace.get(stored)
            # Only the C slot descriptor: a property of the same name would run user code.
            if type(descriptor) is not types.MemberDescriptorType:
                continue
            try:
                pairs.append((name, descriptor.__get__(value, type(value))))
            except AttributeError:  # an empty slot
                pass
    return pairs


def _length(value):
    for base in (str, bytes, bytearray, list, tuple, dict, set, frozenset, _deque_type()):
        if base is not None and isinstance(value, base):
            return base.__len__(value)
    if isinstance(value, range):
        try:
            return len(value)
        except OverflowError:
            return None
    return None


def _dict_items(value):
    if type(value) is not dict and type(value).__module__ == "collections":
        # OrderedDict keeps its own order; the stdlib's items() runs no user code.
        return value.items()
    return dict.items(value)


def _deque_type():
    collections = sys.modules.get("_collections")
    return getattr(collections, "deque", None)


def _take(iterable, limit):
    return list(itertools.islice(iterable, limit))


# ---------------------------------------------------------------------------------------------
# A repr that stops once it has enough characters
#
# repr() of a list of a million items, or of a 1 GB string, would build all of it just to show
# 256 characters. For the builtin types whose repr we know, build it piece by piece and stop.
# The result is always a prefix of repr(value).


class _Full(Exception):
    pass


class _Out(object):
    __slots__ = ("parts", "left")

    def __init__(self, budget):
        self.parts = []
        self.left = budget

    def emit(self, text):
        self.parts.append(text)
        self.left -= len(text)
        if self.left <= 0:
            raise _Full()


_RECURSION_MARK = {list: "[...]", tuple: "(...)", dict: "{...}", set: "set(...)", frozenset: "frozenset(...)"}
_BOUNDED = (str, bytes, list, tuple, dict, set, frozenset)


def _bounded_repr(value, budget):
    if type(value) not in _BOUNDED:
        return repr(value)
    out = _Out(budget)
    try:
        _write(value, out, set())
    except _Full:
        pass
    except RecursionError:
        return repr(value)
    return "".join(out.parts)


def _write(value, out, active):
    kind = type(value)
    if kind is str or kind is bytes:
        out.emit(_string_repr(value, out.left))
        return
    if kind not in _RECURSION_MARK:
        out.emit(repr(value))
        return
    if id(value) in active:
        out.emit(_RECURSION_MARK[kind])
        return
    if not value:
        out.emit(repr(value))
        return
    # Every item writes at least one character, so `left` items are all that can show.
    if kind is dict:
        items = _take(dict.items(value), out.left)
    else:
        items = _take(iter(value), out.left)
    opening, closing = {
        list: ("[", "]"),
        tuple: ("(", ")"),
        dict: ("{", "}"),
        set: ("{", "}"),
        frozenset: ("frozenset({", "})"),
    }[kind]
    active.add(id(value))
    try:
        out.emit(opening)
        for index, item in enumerate(items):
            if index:
                out.emit(", ")
            if kind is dict:
                _write(item[0], out, active)
                out.emit(": ")
                _write(item[1], out, active)
            else:
                _write(item, out, active)
        if kind is tuple and len(items) == 1:
            out.emit(",")
        out.emit(closing)
    finally:
        active.discard(id(value))


def _string_repr(text, left):
    """A prefix of repr(text) at least `left` characters long, from a prefix of the string."""
    if len(text) <= left:
        return repr(text)
    head = repr(text[:left])
    offset = 1 if type(text) is bytes else 0  # b'...'
    single, double = ("'", '"') if type(text) is str else (b"'", b'"')
    # repr picks double quotes only when the string has a ' and no ": decided by the whole string.
    whole_double = single in text and double not in text
    head_double = head[offset] == '"'
    body = head[offset + 1 : -1]
    if whole_double and not head_double:
        # The head has neither quote (else it would have chosen the same): nothing to re-escape.
        return head[:offset] + '"' + body
    if head_double and not whole_double:
        # The head has ' but no ": inside single quotes each ' must be escaped.
        return head[:offset] + "'" + body.replace("'", "\\'")
    return head[:-1]
