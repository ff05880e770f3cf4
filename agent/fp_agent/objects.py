"""Commands that read the target's objects (getglobal), and the user expressions they take:
compiled once in 'eval' mode, evaluated with `target` bound, in a namespace of their own.
"""

import builtins

from . import locate, render
from .errors import expression_failed
from .params import check_names, get_bool, get_int, get_str

EXPRESSION_FILE = "<expr>"


def getglobal(client_id, params):
    check_names(params, ("module", "class", "field", "expr", "depth", "verbose", "raw"))
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    field = get_str(params, "field", required=True)
    expr = get_str(params, "expr") or None
    depth = get_int(params, "depth", default=1, low=1, high=4)
    verbose = get_bool(params, "verbose")
    raw = get_bool(params, "raw")

    code = compile_expression(expr) if expr is not None else None  # a typo fails before any lookup
    value = locate.locate(module, class_name, field).value
    if code is not None:
        value = evaluate(code, {"target": value})
    return {
        "module": module,
        "class": class_name,
        "field": field,
        "expr": expr,
        "value": render.render(value, depth=depth, verbose=verbose, raw=raw),
    }


def compile_expression(text):
    """The code object of one expression; a -32002 error (stage "compile") when it is not one."""
    try:
        # dont_inherit: our own `from __future__` imports must not change the user's expression.
        return compile(text, EXPRESSION_FILE, "eval", 0, True)
    except (SyntaxError, ValueError, OverflowError) as exc:  # ValueError: a NUL in the source
        message = "expression does not compile: %s" % (exc.msg if isinstance(exc, SyntaxError) and exc.msg else exc)
        raise expression_failed(exc, "compile", message, source=text)


def evaluate(code, names):
    """Evaluate a compiled expression with `names` bound; a -32002 error (stage "eval") if it raises."""
    namespace = {"__builtins__": builtins, "__name__": "__fp_expr__"}
    namespace.update(names)
    try:
        return eval(code, namespace)
    except BaseException as exc:  # SystemExit from an expression must not end the request either
        raise expression_failed(exc, "eval")
