"""The agent's error type, the JSON-RPC error codes of protocol/methods.md, and the
formatting of exceptions raised by user code.
"""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

NOT_FOUND = -32001
EXPRESSION_FAILED = -32002
GIL_TIMEOUT = -32003
NOT_SUPPORTED = -32004
BUSY = -32005
CANCELLED = -32006


class AgentError(Exception):
    """An error the client is told about: a code, a message a person reads, and data."""

    def __init__(self, code, message, data=None):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def not_found(missing, name, message, suggestions=()):
    """A -32001 error; `missing` names the part that was not found (module, class, ...)."""
    return AgentError(NOT_FOUND, message, {"missing": missing, "name": name, "suggestions": list(suggestions)})


def invalid_param(param, message):
    return AgentError(INVALID_PARAMS, message, {"param": param})


def exception_text(exc):
    """'ZeroDivisionError: division by zero', the last line of a traceback; never raises."""
    try:
        cls = type(exc)
        module = getattr(cls, "__module__", None)
        name = cls.__qualname__
        if module not in (None, "builtins", "__main__"):
            name = module + "." + name
    except BaseException:
        name = "<exception>"
    try:
        message = str(exc)
    except BaseException:
        message = "<str() of the exception failed>"
    return name + ": " + message if message else name


def expression_failed(exc, stage, message=None, source=None):
    """A -32002 error for user code (an expression, a descriptor) that raised or did not compile.
    An expression that does not compile gets, as its traceback, only what the user wrote, a
    caret under the error and the message (the frames were the agent's: ast, compile);
    `source` is the expression, for errors found after parsing (no text in the exception)."""
    text = exception_text(exc)
    if stage == "compile" and isinstance(exc, SyntaxError):
        traceback_text = syntax_excerpt(exc, source)
    else:
        traceback_text = user_traceback(exc)
    data = {"exception": text, "traceback": traceback_text, "stage": stage}
    if message is None:
        message = ("expression does not compile: " if stage == "compile" else "expression raised ") + text
    return AgentError(EXPRESSION_FAILED, message, data)


def syntax_excerpt(exc, source=None):
    """'    args[0] ==\n              ^\nSyntaxError: invalid syntax\n': the line of the expression
    the error is on, a caret (or carets, 3.10+) under it, and the message; never raises."""
    try:
        line = exc.text
        offset = exc.offset
        if line is None and source:
            line, offset = source.splitlines()[0] if source.strip() else source, None
        line = (line or "").rstrip("\r\n")
        indent = len(line) - len(line.lstrip())
        line = line.strip()
        if not isinstance(offset, int) or offset < 1 or offset - indent > len(line) + 1:
            offset = len(line) + 1 + indent  # at the end: what was expected did not come
        start = max(offset - indent, 1)
        end = getattr(exc, "end_offset", None)
        width = 1
        if isinstance(end, int) and end > offset and getattr(exc, "end_lineno", None) in (None, exc.lineno):
            width = min(end - offset, len(line) + 1 - start + 1)
        out = []
        if line:
            out.append("    " + line)
            out.append("    " + " " * (start - 1) + "^" * max(width, 1))
        out.append("%s: %s" % (type(exc).__name__, exc.msg or "invalid syntax"))
        return "\n".join(out) + "\n"
    except BaseException:
        return exception_text(exc) + "\n"


def user_traceback(exc):
    """The formatted traceback of an exception from user code, the agent's own frames left out
    (the compile/exec calls above user code, our stand-ins for input() and exit() inside it)."""
    try:
        import os

        from .loading import stdlib

        traceback = stdlib("traceback")

        ours = os.path.dirname(os.path.abspath(__file__))
        formatted = traceback.TracebackException(type(exc), exc, exc.__traceback__)
        seen = set()
        pending = [formatted]
        while pending:  # the exception and those chained to it (__cause__, __context__)
            current = pending.pop()
            if current is None or id(current) in seen:
                continue
            seen.add(id(current))
            current.stack[:] = [f for f in current.stack if os.path.dirname(f.filename) != ours]
            pending.extend((current.__cause__, current.__context__))
        return "".join(formatted.format())
    except BaseException:
        return exception_text(exc) + "\n"
