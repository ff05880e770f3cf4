"""The `module FILEPATH` command: the name(s) under which a source file is loaded, comparing
files by identity on disk so that symbolic links and relative paths give the same answer.
"""

import os
import sys

from .errors import not_found
from .params import check_names, get_str


def module_of_file(client_id, params):
    check_names(params, ("path",))
    path = get_str(params, "path", required=True)
    wanted = os.path.abspath(path)  # a relative path is relative to the target's working directory
    real = os.path.realpath(wanted)
    identity = _identity(real)
    tails = (_tail(real), _tail(wanted))

    names = []
    same_basename = []
    for name, module in list(sys.modules.items()):  # list(): other threads import meanwhile
        files = _files_of(name, module)
        if any(_same_file(f, real, identity) for f in files):
            names.append(name)
        elif any(_tail(f) in tails for f in files):
            same_basename.append(name)

    if not names:
        message = "no loaded module has the file %s" % real
        if identity is None:
            message += " (there is no such file)"
        else:
            message += " (it is not imported in process %d, or imported from another copy)" % os.getpid()
        raise not_found("file", real, message, sorted(same_basename))
    # The script that was run is __main__: it comes first; then the name that sys.path gives the
    # file (what `import` would find), then other aliases.
    implied = _names_from_sys_path(real)
    names.sort(key=lambda n: (n != "__main__", n not in implied, n.count("."), n))
    return {"path": real, "module": names[0], "others": names[1:]}


def _names_from_sys_path(real):
    """The dotted names under which an import through sys.path would find the file."""
    stem = os.path.splitext(real)[0]
    if os.path.basename(stem) == "__init__":
        stem = os.path.dirname(stem)
    names = set()
    for entry in list(sys.path):
        if not isinstance(entry, str):
            continue
        try:
            root = os.path.realpath(os.path.abspath(entry or "."))
        except (OSError, ValueError):
            continue
        if stem.startswith(root + os.sep):
            names.add(stem[len(root) + 1 :].replace(os.sep, "."))
    return names


def _tail(path):
    """What names a file for suggestions: its base name, or pkg/__init__.py for a package."""
    head, base = os.path.split(path)
    if os.path.splitext(base)[0] == "__init__":
        return os.path.join(os.path.basename(head), base)
    return base


def _identity(path):
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino)


def _files_of(name, module):
    """The absolute paths a sys.modules entry says it came from (__file__, __spec__.origin)."""
    try:
        # Not getattr(): a module-level __getattr__ would run target code for a missing __file__.
        namespace = object.__getattribute__(module, "__dict__")
        file = namespace.get("__file__")
        spec = namespace.get("__spec__")
        origin = getattr(spec, "origin", None) if spec is not None else None
    except BaseException:
        return ()
    files = []
    for candidate in (file, origin):
        if not isinstance(candidate, str) or not candidate or candidate in files:
            continue
        if os.path.isabs(candidate):
            files.append(candidate)
        elif candidate == file:
            # Python 3.8 leaves a script's __file__ as typed; its directory is sys.path[0].
            files.append(os.path.abspath(candidate))
            if name == "__main__" and sys.path and sys.path[0]:
                files.append(os.path.join(sys.path[0], os.path.basename(candidate)))
    return files


def _same_file(file, real, identity):
    # Device and inode first (links, bind mounts); a file deleted since it was imported has
    # none, so then the real path decides.
    if os.path.normpath(file) == real:
        return True
    if identity is not None:
        return _identity(file) == identity
    try:
        return os.path.realpath(file) == real
    except (OSError, ValueError):
        return False
