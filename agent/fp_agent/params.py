"""Reading a request's params: types, ranges, unknown names; every problem is a -32602 error
whose data.param names the parameter.
"""

from .errors import invalid_param

# Expressions are compiled with the GIL held, so the target's threads wait meanwhile: an
# expression longer than anyone types (megabytes took seconds and gigabytes to compile) is
# refused before it is compiled. The console takes whole pasted scripts, up to MAX_SOURCE.
MAX_EXPRESSION = 64 * 1024
MAX_SOURCE = 1024 * 1024


def check_names(params, allowed):
    """Reject parameters the method does not take (a typo would otherwise be silently ignored)."""
    for name in params:
        if name not in allowed:
            hint = ""
            close = _close(name, allowed)
            if close:
                hint = " (did you mean %r?)" % close[0]
            raise invalid_param(
                name, "unknown parameter %r%s; this method takes: %s" % (name, hint, ", ".join(allowed) or "none")
            )


def get_str(params, name, required=False, default=None):
    """A string parameter; null or absent gives `default` unless required."""
    value = params.get(name)
    if value is None:
        if required:
            raise invalid_param(name, "parameter %r is required (a string)" % name)
        return default
    if not isinstance(value, str):
        raise invalid_param(name, "parameter %r must be a string, not %s" % (name, _json_type(value)))
    if required and not value:
        raise invalid_param(name, "parameter %r must not be empty" % name)
    return value


def get_expr(params, name, default=None):
    """A Python expression parameter (expr, filter): a string of at most MAX_EXPRESSION characters."""
    return check_length(name, get_str(params, name, default=default), MAX_EXPRESSION, "expressions")


def check_length(name, value, limit, what):
    if value is not None and len(value) > limit:
        raise invalid_param(
            name, "parameter %r is too long: %d characters; %s are limited to %d" % (name, len(value), what, limit)
        )
    return value


def get_int(params, name, default=None, low=None, high=None, required=False):
    value = params.get(name)
    if value is None:
        if required:
            raise invalid_param(name, "parameter %r is required (an integer)" % name)
        return default
    # bool is an int in Python but not in JSON: true is not a depth.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_param(name, "parameter %r must be an integer, not %s" % (name, _json_type(value)))
    if (low is not None and value < low) or (high is not None and value > high):
        raise invalid_param(name, "parameter %r must be between %s and %s, not %d" % (name, low, high, value))
    return value


def get_bool(params, name, default=False):
    value = params.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_param(name, "parameter %r must be true or false, not %s" % (name, _json_type(value)))
    return value


def _json_type(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _close(name, candidates):
    from .loading import stdlib

    difflib = stdlib("difflib")

    return difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
