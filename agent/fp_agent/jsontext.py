"""JSON text for the agent's messages, exactly as the json module writes and reads it.

When the program has imported json, its functions are used. When it has not, the agent does
not import it: `import json` imports re, enum, functools and collections, about 10 ms of a
fresh process's time, the most of a first command's cost. It calls json's own C accelerator
(_json, built into CPython) the way json.dumps and json.loads do: the same encoder (compact
separators, ensure_ascii=False) and the same scanner, so the text is the same. Without _json
(another implementation), json itself is imported.

For malformed text, the C scanner imports json.decoder to raise its error (3.8, 3.9, 3.12+),
or fails (3.10, 3.11), and then json itself reads the text again to say where: until
json.decoder is loaded, decoding runs under the import lock (loading.locked), so those
imports, too, are never cut in half by a fork.
"""

import sys

from . import loading

_codec = []  # [(dumps, loads)], made at the first use


def dumps(value, allow_nan=False):
    """Compact JSON text (ensure_ascii=False): TypeError for what JSON cannot hold, ValueError
    for NaN and infinities unless allow_nan."""
    return _get()[0](value, allow_nan)


def loads(text):
    """The value of a JSON text (str); ValueError with json's message when it is malformed."""
    return _get()[1](text)


def _get():
    if not _codec:
        _codec.append(_make())
    return _codec[0]


def _make():
    json = sys.modules.get("json")
    if json is None:
        try:
            # An extension module in most builds: imported under the lock, as every import
            # of the agent's.
            return _c_codec(loading.stdlib("_json"))
        except (ImportError, AttributeError):
            json = loading.stdlib("json")

    def dumps(value, allow_nan):
        return json.dumps(value, ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":"))

    return dumps, json.loads


def _default(value):
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


class _Context(object):
    """What json.JSONDecoder gives the C scanner: its defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    def __init__(self):
        self.memo = {}
        nan = float("nan")
        inf = float("inf")
        self.parse_constant = {"-Infinity": -inf, "Infinity": inf, "NaN": nan}.__getitem__


_WHITESPACE = " \t\n\r"


def _c_codec(_json):
    make_encoder = _json.make_encoder
    encode_string = _json.encode_basestring
    scanner = _json.make_scanner(_Context())

    def dumps(value, allow_nan):
        # A new encoder each time, as json.dumps makes one: its circular-reference markers
        # must start empty (a failed encoding leaves some behind).
        encoder = make_encoder({}, _default, encode_string, None, ":", ",", False, False, bool(allow_nan))
        return "".join(encoder(value, 0))

    def loads(text):
        if not isinstance(text, str):
            raise TypeError("the JSON object must be str, not %s" % type(text).__name__)
        if "json.decoder" in sys.modules:  # the error path imports nothing then
            return _scan(scanner, text)
        return loading.locked(lambda: _scan(scanner, text))

    return dumps, loads


def _scan(scanner, text):
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = scanner(text, start)
    except StopIteration as stop:
        raise ValueError(_where("Expecting value", text, stop.value))
    except RecursionError:
        raise
    except Exception:
        # Malformed: json's own error says where. (3.10 and 3.11's scanner can only say it with
        # json.decoder loaded: without, it fails with a SystemError.)
        return loading.stdlib("json").loads(text)
    rest = len(text) - len(text[end:].lstrip(_WHITESPACE))
    if rest != len(text):
        raise ValueError(_where("Extra data", text, rest))
    return value


def _where(message, text, pos):
    line = text.count("\n", 0, pos) + 1
    column = pos - text.rfind("\n", 0, pos)
    return "%s: line %d column %d (char %d)" % (message, line, column, pos)
