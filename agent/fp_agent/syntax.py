"""Python syntax trees for the agent (user expressions, generated wrapper code), from the
compiler's own _ast module: importing ast would import enum, contextlib, functools and
collections, milliseconds of a fresh process's time before a first watch can answer. The
node classes are the same ones (ast re-exports _ast's); these are the few helpers fp needs.
"""

import _ast

ONLY_AST = _ast.PyCF_ONLY_AST
Name = _ast.Name
Tuple = _ast.Tuple
Starred = _ast.Starred
AST = _ast.AST


def parse(source, filename, mode):
    """The tree of source, as ast.parse(source, filename, mode) gives it (no inherited flags)."""
    return compile(source, filename, mode, ONLY_AST, True)


def children(node):
    for field in node._fields:
        value = getattr(node, field, None)
        if isinstance(value, AST):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, AST):
                    yield item


def walk(node):
    """Every node under node, node included (in no particular order, as ast.walk)."""
    todo = [node]
    while todo:
        node = todo.pop()
        todo.extend(children(node))
        yield node


def fix_missing_locations(node):
    """As ast.fix_missing_locations: nodes without a position get their parent's."""

    def fix(node, lineno, col, end_lineno, end_col):
        attributes = getattr(node, "_attributes", ())
        if "lineno" in attributes:
            if getattr(node, "lineno", None) is None:
                node.lineno = lineno
            else:
                lineno = node.lineno
            if "end_lineno" in attributes:
                if getattr(node, "end_lineno", None) is None:
                    node.end_lineno = end_lineno
                else:
                    end_lineno = node.end_lineno
            if getattr(node, "col_offset", None) is None:
                node.col_offset = col
            else:
                col = node.col_offset
            if "end_col_offset" in attributes:
                if getattr(node, "end_col_offset", None) is None:
                    node.end_col_offset = end_col
                else:
                    end_col = node.end_col_offset
        for child in children(node):
            fix(child, lineno, col, end_lineno, end_col)

    fix(node, 1, 0, 1, 0)
    return node


def segment(source, node):
    """The text of source that node was parsed from (ast.get_source_segment), or None."""
    try:
        first, last = node.lineno - 1, node.end_lineno - 1
        start, end = node.col_offset, node.end_col_offset
    except (AttributeError, TypeError):
        return None
    if None in (first, last, start, end):
        return None
    lines = source.splitlines(True)
    if not 0 <= first <= last < len(lines):
        return None
    # Column offsets count UTF-8 bytes.
    if first == last:
        return lines[first].encode("utf-8")[start:end].decode("utf-8", "replace")
    head = lines[first].encode("utf-8")[start:].decode("utf-8", "replace")
    tail = lines[last].encode("utf-8")[:end].decode("utf-8", "replace")
    return head + "".join(lines[first + 1 : last]) + tail
