"""A bytecode cache for the agent's own modules, in fp's private directory (/tmp/fp-UID, the
one that holds the agents' sockets: a real directory of this user, mode 0700).

Compiling the agent's sources is most of what a first command costs in a fresh target (about
15 ms for getglobal's modules). Python's own cache (__pycache__ beside the sources) is often
not there: the sources are installed read-only for the target's user, or the target runs with
PYTHONDONTWRITEBYTECODE. So the package's directory gets a finder of its own
(sys.path_importer_cache, keyed by that directory only: no other import goes through it)
whose loader keeps each module's code, marshalled, under
/tmp/fp-UID/pycache/<cache tag>/<the package directory, '/' as '%'>/NAME.pyc, checked against
the interpreter's magic number and the source's mtime and size. Anything unusual (a
directory that is not ours, an unreadable or stale file) means compiling, as without a cache.
"""

import _frozen_importlib_external as _bootstrap_external  # importlib's, without importing importlib
import marshal
import os
import sys

_ROOT = "/tmp/fp-%d"


def install(directory):
    """Serve the imports of this package's modules (from `directory`) through the cache."""
    sys.path_importer_cache[directory] = _Finder(directory)


def uninstall(directory):
    finder = sys.path_importer_cache.get(directory)
    if isinstance(finder, _Finder):
        del sys.path_importer_cache[directory]


class _Finder(object):
    def __init__(self, directory):
        self.directory = directory
        self.cache = None  # the cache directory, found at the first import

    def find_spec(self, fullname, target=None):
        path = os.path.join(self.directory, fullname.rpartition(".")[2] + ".py")
        if not os.path.isfile(path):
            return None
        if self.cache is None:
            self.cache = _cache_directory(self.directory) or ""
        loader = _Loader(fullname, path, self.cache)
        return _bootstrap_external.spec_from_file_location(fullname, path, loader=loader)

    def invalidate_caches(self):
        pass


class _Loader(_bootstrap_external.SourceFileLoader):
    def __init__(self, fullname, path, cache):
        _bootstrap_external.SourceFileLoader.__init__(self, fullname, path)
        self.cache = cache

    def get_code(self, fullname):
        try:
            st = os.stat(self.path)
        except OSError:
            return _bootstrap_external.SourceFileLoader.get_code(self, fullname)
        header = (
            _bootstrap_external.MAGIC_NUMBER
            + st.st_mtime_ns.to_bytes(8, "little", signed=True)
            + st.st_size.to_bytes(8, "little")
        )
        cached = os.path.join(self.cache, os.path.basename(self.path) + "c") if self.cache else None
        if cached is not None:
            code = _read(cached, header)
            if code is not None:
                return code
        code = compile(self.get_data(self.path), self.path, "exec", dont_inherit=True)
        if cached is not None:
            _write(cached, header + marshal.dumps(code))
        return code


def _read(path, header):
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[: len(header)] == header:
            return marshal.loads(memoryview(data)[len(header) :])
    except (OSError, ValueError, EOFError, TypeError):
        pass
    return None


def _write(path, data):
    """Atomically, so that another process never reads half a file; failures are silent."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _private(path, create):
    """True when path is a real directory of this user that nobody else may write (made so
    when create and it is missing)."""
    import stat

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.mkdir(path, 0o700)
            st = os.lstat(path)
        except OSError:
            return False
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def _cache_directory(directory):
    root = _ROOT % os.geteuid()
    tag = getattr(sys.implementation, "cache_tag", None)
    name = os.path.abspath(directory).replace("/", "%")
    if not tag or len(name) > 200 or not _private(root, False):
        return None
    path = root
    for part in ("pycache", tag, name):
        path = os.path.join(path, part)
        if not _private(path, True):
            return None
    return path
