"""Commands that read the target's objects (getglobal; vmtool: the live instances of a class, a
forced garbage collection), and the user expressions they take: compiled once in 'eval' mode,
evaluated with `target` (or `instances`) bound, in a namespace of their own.
"""

import builtins

from . import loading, locate, render
from .errors import expression_failed
from .params import check_names, get_bool, get_expr, get_int, get_str

EXPRESSION_FILE = "<expr>"


def getglobal(client_id, params):
    check_names(params, ("module", "class", "field", "expr", "depth", "verbose", "raw"))
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    field = get_str(params, "field", required=True)
    expr = get_expr(params, "expr") or None
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
    except (RecursionError, MemoryError) as exc:  # nested deeper than the compiler goes
        raise expression_failed(exc, "compile", "the expression is nested too deeply to compile")


def evaluate(code, names):
    """Evaluate a compiled expression with `names` bound; a -32002 error (stage "eval") if it raises."""
    namespace = {"__builtins__": builtins, "__name__": "__fp_expr__"}
    namespace.update(names)
    loading.threading_ready()  # the expression may use threading: it must see the program's
    try:
        return eval(code, namespace)
    except BaseException as exc:  # SystemExit from an expression must not end the request either
        raise expression_failed(exc, "eval")


# --------------------------------------------------------------------------------------------
# vmtool: live instances of a class, and a forced garbage collection

INSTANCES_PARAMS = ("module", "class", "expr", "depth", "limit", "raw", "verbose", "subclasses")
_GC_FLAG = 1 << 14  # Py_TPFLAGS_HAVE_GC: the collector tracks the type's instances


def instances(client_id, params):
    """vmtool -a getInstances: the live instances of a class (exactly it, or with its subclasses)."""
    import gc

    check_names(params, INSTANCES_PARAMS)
    module_name = get_str(params, "module", required=True)
    class_name = get_str(params, "class", required=True)
    expr = get_expr(params, "expr") or None
    depth = get_int(params, "depth", default=1, low=1, high=4)
    limit = get_int(params, "limit", default=10, low=-1, high=1000000)
    if limit == 0:
        from .errors import invalid_param

        raise invalid_param("limit", "parameter 'limit' must be -1 (no limit) or at least 1, not 0")
    verbose = get_bool(params, "verbose")
    raw = get_bool(params, "raw")
    subclasses = get_bool(params, "subclasses")

    code = compile_expression(expr) if expr is not None else None
    cls = locate.find_class(locate.find_module(module_name), module_name, class_name)
    wanted = _subclasses(cls) if subclasses else [cls]
    note = None
    untracked = [c for c in wanted if not type.__getattribute__(c, "__flags__") & _GC_FLAG]
    if untracked:
        note = (
            "instances of %s are not tracked by the garbage collector (no __dict__, __slots__ = () on an "
            "immutable base), so fp cannot find them" % ", ".join(render.type_name(c) for c in untracked)
        )
    found = _find_instances(gc, wanted)
    by_class = {}
    for obj in found:
        name = render.type_name(type(obj))
        by_class[name] = by_class.get(name, 0) + 1
    shown = found if limit == -1 else found[:limit]
    result = {
        "module": module_name,
        "class": class_name,
        "subclasses": subclasses,
        "classes": [render.type_name(c) for c in wanted],
        "total": len(found),
        "by_class": [
            {"class": name, "count": n} for name, n in sorted(by_class.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "limit": limit,
        "shown": len(shown),
        "expr": expr,
        "note": note,
    }
    if code is not None:
        result["value"] = render.render(evaluate(code, {"instances": shown}), depth=depth, verbose=verbose, raw=raw)
    else:
        result["instances"] = [
            {
                "index": i,
                "class": render.type_name(type(obj)),
                "value": render.render(obj, depth=depth, verbose=verbose, raw=raw),
            }
            for i, obj in enumerate(shown)
        ]
    del found, shown
    return result


def _subclasses(cls):
    """cls and every class derived from it, each once (type.__subclasses__, not the class's own
    attribute: a metaclass could define one)."""
    seen = []
    ids = set()
    pending = [cls]
    while pending:
        klass = pending.pop()
        if id(klass) in ids:
            continue
        ids.add(id(klass))
        seen.append(klass)
        try:
            pending.extend(reversed(type.__subclasses__(klass)))
        except TypeError:
            pass
    return seen


def _find_instances(gc, classes):
    """The tracked objects whose type is one of classes, selected in C (no code of the program
    runs: no isinstance, no __class__)."""
    import itertools

    wanted = set(map(id, classes))  # by id: hashing a class may run its metaclass's __hash__
    objects = gc.get_objects()
    try:
        return list(itertools.compress(objects, map(wanted.__contains__, map(id, map(type, objects)))))
    finally:
        del objects


def force_gc(client_id, params):
    """vmtool -a forceGc: a full collection, one generation after another; what each collected,
    what could not be collected, and the time it took."""
    import gc
    import time

    check_names(params, ())
    before = gc.get_stats()
    garbage_before = len(gc.garbage)
    tracked_before = len(gc.get_objects())
    generations = []
    t0 = time.perf_counter()
    for generation in (0, 1, 2):
        t = time.perf_counter()
        found = gc.collect(generation)
        generations.append(
            {"generation": generation, "unreachable": found, "ms": round((time.perf_counter() - t) * 1000.0, 3)}
        )
    total_ms = (time.perf_counter() - t0) * 1000.0
    after = gc.get_stats()
    for g, (b, a) in enumerate(zip(before, after)):
        generations[g]["collected"] = a.get("collected", 0) - b.get("collected", 0)
        generations[g]["uncollectable"] = a.get("uncollectable", 0) - b.get("uncollectable", 0)
    new_garbage = gc.garbage[garbage_before:]
    return {
        "generations": generations,
        "collected": sum(g["collected"] for g in generations),
        "unreachable": sum(g["unreachable"] for g in generations),
        "uncollectable": sum(g["uncollectable"] for g in generations),
        "garbage": len(gc.garbage),
        "garbage_new": [
            {"type": render.type_name(type(o)), "repr": render.safe_repr(o, 120)[0]} for o in new_garbage[:20]
        ],
        "ms": round(total_ms, 3),
        "tracked_before": tracked_before,
        "tracked_after": len(gc.get_objects()),
        "enabled": gc.isenabled(),
    }
