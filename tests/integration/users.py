"""Other users for the tests of who may talk to whom: two unprivileged test accounts (made with
useradd when missing, so a fresh Debian machine running the suite as root has them), commands
run as one of them (setpriv: no shell, no PAM, the exact uid, gid and no extra groups), and
targets owned by one of them.

Without root none of this can be set up: the tests that need it skip, saying so.
"""

import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import Sleeper

# The user owning a target (uid A of the security model) and a second, unrelated user (uid B).
OWNER = "fp-test-owner"
OTHER = "fp-test-other"
SETPRIV = shutil.which("setpriv")
USERADD = shutil.which("useradd") or "/usr/sbin/useradd"


class User:
    def __init__(self, name):
        pw = pwd.getpwnam(name)
        self.name = name
        self.uid = pw.pw_uid
        self.gid = pw.pw_gid

    def argv(self, argv):
        """argv run as this user (real, effective and saved ids; no supplementary groups)."""
        return [SETPRIV, "--reuid=%d" % self.uid, "--regid=%d" % self.gid, "--clear-groups", "--"] + list(argv)

    def can(self, test_flag, path):
        """Whether `test -x PATH` (or -r, -w) holds for this user."""
        return (
            subprocess.run(
                self.argv(["test", test_flag, path]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10
            ).returncode
            == 0
        )

    def __repr__(self):
        return "%s(%d)" % (self.name, self.uid)


def _create(name):
    # Another test run may be creating it at the same moment: useradd then fails to lock
    # /etc/passwd ("try again later") or finds the name taken; both settle within a few tries.
    last = None
    for _ in range(20):
        try:
            pwd.getpwnam(name)
            return
        except KeyError:
            pass
        r = subprocess.run(
            [
                USERADD,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
        )
        last = r.stdout
        if r.returncode == 0:
            return
        time.sleep(0.2)  # not a synchronisation: a bounded retry of a locked /etc/passwd
    pytest.fail("useradd %s failed: %s" % (name, last))


def user(name):
    """The test account `name`, created when missing; skips the test when that is not possible."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the test runs processes as two other users (%s, %s)" % (OWNER, OTHER))
    if not SETPRIV:
        pytest.skip("needs setpriv (util-linux) to run processes as another user")
    try:
        grp.getgrnam(name)
    except KeyError:
        pass
    _create(name)
    return User(name)


def shared_dir(prefix="fp-users-"):
    """A fresh directory in /tmp that every user may enter and read (0755, root's)."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


def user_dir(u, prefix="fp-user-"):
    """A fresh directory in /tmp owned by user u (0755)."""
    d = shared_dir(prefix)
    os.chown(d, u.uid, u.gid)
    return d


def socket_dir(uid):
    return "/tmp/fp-%d" % uid


def remove_socket_dir(uid):
    """Removes /tmp/fp-UID, whatever it is (directory, symlink, file): tests of planted
    directories start and end without one."""
    path = socket_dir(uid)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.unlink(path)


def require_runnable(u, python):
    """Skips unless user u can run this interpreter (pyenv's under /root are not reachable)."""
    if not u.can("-x", python.path):
        pytest.skip(
            "%s cannot run %s (%s): its directory is not reachable by other users" % (u.name, python.id, python.path)
        )


class UserTarget:
    """Mixed into a Target class: the target runs as another user (setpriv execs, so the pid is
    the target's), with its readiness FIFO writable by that user."""

    def __init__(self, python, workdir, args=(), cwd=None, user=None, env=None):
        super().__init__(python, workdir, args, cwd)
        self.user = user
        self.launcher = tuple(user.argv([]))
        self.extra_env = env or {}

    def _env(self):
        env = super()._env()
        env.update(self.extra_env)
        return env

    def _launched_child(self):
        return self.proc.pid

    def _make_fifo(self, path):
        os.mkfifo(path)
        os.chmod(path, 0o666)  # the target's user writes its readiness there

    def stop(self):
        super().stop()
        try:
            os.unlink("/tmp/fp-%d/agent-%d-%s.sock" % (self.user.uid, self.pid_ns, self.facts.get("pid", self.pid)))
        except (OSError, AttributeError):
            pass


class UserSleeper(UserTarget, Sleeper):
    kind = "user_sleeper"
    script_kind = "sleeper"


def user_kind(cls):
    """cls (a conftest Target class) run as another user."""
    return type(
        "User" + cls.__name__,
        (UserTarget, cls),
        {"kind": "user_" + cls.kind, "script_kind": cls.script_kind or cls.kind},
    )


class Spawner:
    """Targets owned by other users for one test; each is checked and stopped at the end."""

    def __init__(self, python):
        self.python = python
        self.targets = []
        self.dirs = []

    def __call__(self, u, args=(), env=None, cls=UserSleeper):
        require_runnable(u, self.python)
        d = shared_dir("fp-target-")
        self.dirs.append(d)
        t = cls(self.python, d, args, user=u, env=env)
        self.targets.append(t)
        return t.start()

    def finish(self):
        problems = []
        for t in self.targets:
            try:
                t.finish()
            except BaseException as e:  # noqa: B902 - every target must still be stopped
                problems.append("%s: %s" % (t.kind, e))
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
        if problems:
            pytest.fail("target check at teardown failed:\n" + "\n".join(problems), pytrace=False)


def any_python(u):
    """An interpreter user u can run, for helper scripts (fake agents, clients)."""
    import sys

    for path in ("/usr/bin/python3", sys.executable):
        if os.access(path, os.X_OK) and u.can("-x", path):
            return path
    pytest.skip("no Python interpreter that %s can run" % u.name)


@pytest.fixture
def user_spawn(python):
    """user_spawn(user) -> a sleeper owned by that user (import this fixture into the test module)."""
    s = Spawner(python)
    try:
        yield s
    finally:
        s.finish()
