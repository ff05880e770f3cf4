"""The CPython interpreters on this machine that fp supports, with readable ids.

py3.8 .. py3.13 from pyenv (the newest patch release of each), system-3.X from /usr/bin/python3.
FP_PYTHONS="py3.12,system-3.11" (or the `wanted` argument) narrows the list.
Used by the integration tests and by bench/; no pytest here.
"""

import glob
import os
import re
import shutil
import subprocess

SUPPORTED_MINORS = range(8, 14)
SYSTEM_PYTHON = "/usr/bin/python3"


class Python:
    def __init__(self, ident, path, version):
        self.id = ident
        self.path = path
        self.version = version  # (major, minor)

    def __repr__(self):
        return self.id


def pyenv_root():
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(
                ["pyenv", "root"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                universal_newlines=True,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = None
    return root or os.path.expanduser("~/.pyenv")


def _patch_key(path):
    return tuple(int(p) for p in re.findall(r"\d+", os.path.basename(path)))


def _system_version(exe):
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            stdout=subprocess.PIPE,
            universal_newlines=True,
            timeout=10,
        ).stdout.strip()
        major, minor = (int(x) for x in out.split("."))
        return major, minor
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def available():
    """Every supported interpreter found here, keyed by id, oldest first."""
    found = {}
    versions = [
        d
        for d in glob.glob(os.path.join(pyenv_root(), "versions", "3.*"))
        if re.fullmatch(r"3\.\d+\.\d+", os.path.basename(d))
    ]
    for d in sorted(versions, key=_patch_key):
        minor = _patch_key(d)[1]
        exe = os.path.join(d, "bin", "python3")
        if minor in SUPPORTED_MINORS and os.access(exe, os.X_OK):
            found["py3.%d" % minor] = Python("py3.%d" % minor, exe, (3, minor))
    if os.access(SYSTEM_PYTHON, os.X_OK):
        v = _system_version(SYSTEM_PYTHON)
        if v and v[0] == 3 and v[1] in SUPPORTED_MINORS:
            ident = "system-%d.%d" % v
            found[ident] = Python(ident, SYSTEM_PYTHON, v)
    return found


def select(wanted=None):
    """The interpreters to use: all, or those named (comma-separated ids) by `wanted` or
    $FP_PYTHONS. Raises ValueError naming unknown ids and the ones available."""
    found = available()
    wanted = (wanted if wanted is not None else os.environ.get("FP_PYTHONS", "")).strip()
    if not wanted:
        return list(found.values())
    names = [w.strip() for w in wanted.split(",") if w.strip()]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(
            "unknown interpreter id(s) %s; found here: %s" % (", ".join(unknown), ", ".join(found) or "none")
        )
    return [found[n] for n in names]
