"""Who fp talks to. uid A owns a target, uid B is another user, root attaches to both: fp only
ever talks to the agent inside the process it was pointed at. Before connecting it checks the
agent's directory (a real directory of A or root, mode 0700) and the socket (a socket of A or
root, not a link); after connecting, the peer itself (SO_PEERCRED: the target's pid, A or root;
in another pid namespace the agent's confirmation of its namespace and start time). The agent
checks its side too: only root and A may talk to it.

Every planted directory, socket and link below is made by the user who would plant it, with
that user's rights only (setpriv)."""

import json
import os
import shutil
import signal
import subprocess

import pytest
import users
from users import user_spawn  # noqa: F401 - the fixture

from conftest import FP, agent_socket, pid_namespace, wait_until

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_agent.py")
UNSHARE = shutil.which("unshare")


class Fake:
    """fake_agent.py run as user u, listening on sock."""

    def __init__(self, u, sock, *opts):
        self.dir = users.user_dir(u, "fp-fake-")
        self.log = os.path.join(self.dir, "log")
        argv = u.argv([users.any_python(u), FAKE, sock, self.log] + [str(o) for o in opts])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until(
            lambda: self.events("listening") or self.proc.poll() is not None,
            10,
            "the fake agent to listen on %s" % sock,
        )
        assert self.proc.poll() is None, "fake agent failed: %s" % self.proc.stderr.read().decode()

    def events(self, kind):
        try:
            with open(self.log) as f:
                return [e for e in (json.loads(l) for l in f) if e["event"] == kind]
        except FileNotFoundError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def sock_of(t):
    """Where the agent of target t (owned by t.user) listens."""
    return "/tmp/fp-%d/agent-%d-%d.sock" % (t.user.uid, pid_namespace(t.pid), t.pid)


def fp_as(u, t, *args):
    """fp run by user u against target t."""
    return run_fp_argv(u.argv([FP, str(t.pid)] + [str(a) for a in args]))


def run_fp_argv(argv, timeout=30):
    p = subprocess.run(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout
    )
    return p


@pytest.fixture
def owner_and_other():
    a, b = users.user(users.OWNER), users.user(users.OTHER)
    users.remove_socket_dir(a.uid)
    yield a, b
    users.remove_socket_dir(a.uid)


def assert_refused(r, *needles):
    """r: an FpRun (fp as root) or a CompletedProcess (fp as another user)."""
    rc = r.rc if hasattr(r, "rc") else r.returncode
    out = r.out if hasattr(r, "out") else r.stdout
    err = r.err if hasattr(r, "err") else r.stderr
    assert rc not in (0, None), "fp should have refused:\n%s\n%s" % (out, err)
    assert "PWNED" not in out + err, out
    for n in needles:
        assert n in err, "%r not in the refusal:\n%s" % (n, err)


def test_directory_planted_by_another_user_is_refused(python, owner_and_other, user_spawn):
    a, b = owner_and_other
    t = user_spawn(a)
    fake = Fake(b, sock_of(t))  # B makes /tmp/fp-A (0777) and listens there
    try:
        assert_refused(t.cmd("getglobal __main__ x"), "/tmp/fp-%d" % a.uid, "uid %d" % b.uid)
        assert_refused(fp_as(a, t, "--cmd", "getglobal __main__ x"), "/tmp/fp-%d" % a.uid, "uid %d" % b.uid)
        assert fake.events("request") == [], "fp sent requests to the fake agent: %s" % fake.events("request")
    finally:
        fake.stop()
    t.assert_healthy()


def test_directory_symlink_is_refused(python, owner_and_other, user_spawn):
    a, b = owner_and_other
    t = user_spawn(a)
    bdir = users.user_dir(b, "fp-bdir-")
    os.chmod(bdir, 0o700)
    fake = Fake(b, os.path.join(bdir, os.path.basename(sock_of(t))), "--symlink-dir", "/tmp/fp-%d" % a.uid)
    try:
        r = t.cmd("getglobal __main__ x")
        assert_refused(r, "/tmp/fp-%d" % a.uid, "symlink")
        assert fake.events("connection") == []
    finally:
        fake.stop()
        shutil.rmtree(bdir, ignore_errors=True)
    t.assert_healthy()


def test_confused_deputy_symlink_to_roots_agent(python, owner_and_other, user_spawn, spawn):
    """A links its own target's socket name to root's agent of another process: root's fp must
    not run its commands there."""
    a, _ = owner_and_other
    mine = spawn("sleeper")  # root's process, with root's agent
    mine.cmd("status").ok()
    t = user_spawn(a)
    link = sock_of(t)
    subprocess.run(
        a.argv(
            [
                "sh",
                "-c",
                'mkdir -m 700 "$1" && ln -s "$2" "$3"',
                "sh",
                os.path.dirname(link),
                agent_socket(mine.pid),
                link,
            ]
        ),
        check=True,
        timeout=10,
    )
    r = t.cmd("status", "--json")
    assert r.rc != 0, "root's fp ran `status` through A's link (answered by pid %s):\n%s" % (r.out, r.describe())
    assert link in r.err and "symlink" in r.err, r.describe()
    mine.assert_healthy()
    t.assert_healthy()


def test_fake_agent_of_the_owner_is_refused_by_its_pid(python, owner_and_other, user_spawn):
    """A socket of the right owner, in a proper directory, served by another process of A's: the
    peer's pid (SO_PEERCRED) is not the target's."""
    a, _ = owner_and_other
    t = user_spawn(a)
    fake = Fake(a, sock_of(t), "--dir-mode", "700")
    try:
        r = t.cmd("getglobal __main__ x")
        assert_refused(r, sock_of(t), "process %d" % fake.proc.pid)
        assert fake.events("request") == []
    finally:
        fake.stop()
    t.assert_healthy()


def test_socket_of_another_user_is_refused(python, owner_and_other, user_spawn):
    """A directory that is right, a socket in it that belongs to someone else (made through a
    directory widened by mistake)."""
    a, b = owner_and_other
    t = user_spawn(a)
    os.mkdir("/tmp/fp-%d" % a.uid, 0o777)
    os.chmod("/tmp/fp-%d" % a.uid, 0o777)
    fake = Fake(b, sock_of(t))
    try:
        os.chown("/tmp/fp-%d" % a.uid, a.uid, a.gid)
        os.chmod("/tmp/fp-%d" % a.uid, 0o700)
        r = t.cmd("getglobal __main__ x")
        assert_refused(r, sock_of(t), "uid %d" % b.uid)
        assert fake.events("connection") == []
    finally:
        fake.stop()
    t.assert_healthy()


def test_roots_fp_attaches_to_another_users_process(python, owner_and_other, user_spawn):
    """The honest path still works: root injects into A's process; the agent listens in A's
    directory; fp checks and talks to it; a second fp reuses it."""
    a, _ = owner_and_other
    t = user_spawn(a)
    if not a.can("-r", os.path.join(os.environ.get("FP_BUILD", ""), "lib", "fp", "libfpagent.so")):
        pytest.skip("%s cannot read the agent library in this build directory" % a.name)
    st = t.json("status")
    assert st["pid"] == int(t.facts["pid"])
    d = os.lstat("/tmp/fp-%d" % a.uid)
    assert (d.st_uid, d.st_mode & 0o7777) == (a.uid, 0o700)
    assert os.lstat(sock_of(t)).st_uid == a.uid
    assert t.json("getglobal __main__ __name__")["value"]["repr"] == "'__main__'"
    t.cmd("shutdown").ok()
    t.assert_healthy()


def test_agent_closes_connections_of_other_users(python, owner_and_other, user_spawn):
    """The agent's own check: even when its directory and socket are opened to everyone, a
    connection from uid B is closed without an answer."""
    a, b = owner_and_other
    t = user_spawn(a)
    if not a.can("-r", os.path.join(os.environ.get("FP_BUILD", ""), "lib", "fp", "libfpagent.so")):
        pytest.skip("%s cannot read the agent library in this build directory" % a.name)
    t.cmd("status").ok()
    sock = sock_of(t)
    os.chmod(os.path.dirname(sock), 0o711)
    os.chmod(sock, 0o777)
    try:
        probe = (
            "import socket,sys\n"
            "s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n"
            'b=b\'{"jsonrpc":"2.0","id":1,"method":"ping"}\'\n'
            "try:\n"
            "    s.sendall(b'Content-Length: %d\\r\\n\\r\\n' % len(b) + b)\n"
            "    print(repr(s.recv(4096)))\n"
            "except (ConnectionResetError, BrokenPipeError):\n"  # closed before or after the request
            "    print(repr(b''))\n"
        )
        r = subprocess.run(
            b.argv([users.any_python(b), "-c", probe, sock]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=20,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "b''", "the agent answered uid %d: %s" % (b.uid, r.stdout)
    finally:
        os.chmod(os.path.dirname(sock), 0o700)
        os.chmod(sock, 0o600)
    t.cmd("status").ok()
    t.assert_healthy()


@pytest.mark.skipif(not UNSHARE, reason="needs unshare")
def test_peer_in_another_pid_namespace_must_confirm(python, owner_and_other, user_spawn, spawn):
    """fp in a pid namespace of its own sees no pid for the agent (SO_PEERCRED gives 0): the
    agent confirms which process it is in (pid namespace and start time), a fake cannot."""
    a, _ = owner_and_other
    mine = spawn("sleeper")
    mine.cmd("status").ok()
    inside = [UNSHARE, "--pid", "--fork", "--kill-child", FP, str(mine.pid), "--json", "--cmd", "status"]
    probe = subprocess.run([UNSHARE, "--pid", "--fork", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    r = run_fp_argv(inside)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["result"]["pid"] == mine.pid

    t = user_spawn(a)
    fake = Fake(a, sock_of(t), "--dir-mode", "700", "--status-pid-ns", 1, "--status-start-time", 1)
    try:
        r = run_fp_argv([UNSHARE, "--pid", "--fork", "--kill-child", FP, str(t.pid), "--cmd", "getglobal __main__ x"])
        assert r.returncode != 0 and "PWNED" not in r.stdout, r.stdout + r.stderr
        assert "confirm" in r.stderr, r.stderr
        assert [e["method"] for e in fake.events("request")] in (["ping", "status"], ["status"]), fake.events("request")
    finally:
        fake.stop()
    mine.assert_healthy()
    t.assert_healthy()


def _agent_copy(owner=None, lib_mode=0o755, dir_mode=0o755, package_file_mode=0o644):
    """A copy of this build's agent (library + fp_agent package) in a new directory of /tmp."""
    from conftest import FP_BUILD

    src = os.path.join(FP_BUILD, "lib", "fp")
    d = users.shared_dir("fp-agentcopy-")
    shutil.copy2(os.path.join(src, "libfpagent.so"), d)
    shutil.copytree(os.path.join(src, "python"), os.path.join(d, "python"))
    lib = os.path.join(d, "libfpagent.so")
    os.chmod(lib, lib_mode)
    os.chmod(d, dir_mode)
    os.chmod(os.path.join(d, "python", "fp_agent", "dispatch.py"), package_file_mode)
    if owner is not None:
        os.chown(d, owner.uid, owner.gid)
    return d, lib


def test_agent_library_others_can_change_is_refused(python, spawn, owner_and_other):
    """FP_AGENT_LIB naming a library (or a package beside it) that another user could change:
    refused before anything is injected, whoever runs fp."""
    from conftest import agent_mappings

    _, b = owner_and_other
    t = spawn("sleeper")
    cases = {
        "library writable by everyone": dict(lib_mode=0o777),
        "directory of another user": dict(owner=b),
        "directory writable by everyone": dict(dir_mode=0o777),
        "package file writable by everyone": dict(package_file_mode=0o666),
    }
    made = []
    try:
        for name, kw in cases.items():
            d, lib = _agent_copy(**kw)
            made.append(d)
            r = t.fp("--cmd", "status", env_extra={"FP_AGENT_LIB": lib})
            assert r.rc != 0, "%s was injected:\n%s" % (name, r.describe())
            assert "refusing the agent library %s" % lib in r.err, "%s:\n%s" % (name, r.describe())
            assert not agent_mappings(t.pid), "%s: the library is mapped" % name
        d, lib = _agent_copy()  # the same files, only root may change them: used
        made.append(d)
        assert t.fp("--json", "--cmd", "status", env_extra={"FP_AGENT_LIB": lib}).result()["pid"] == t.pid
        assert any(l.rstrip().endswith(lib) for l in agent_mappings(t.pid))
        t.cmd("shutdown").ok()
    finally:
        for d in made:
            shutil.rmtree(d, ignore_errors=True)
    t.assert_healthy()


def test_agent_library_of_another_user_is_refused_for_unprivileged_users(python, owner_and_other, user_spawn):
    a, b = owner_and_other
    t = user_spawn(a)
    d, lib = _agent_copy(owner=b)
    try:
        r = subprocess.run(
            a.argv(["env", "FP_AGENT_LIB=" + lib, FP, str(t.pid), "--cmd", "status"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=30,
        )
        assert r.returncode != 0 and "refusing the agent library %s" % lib in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)
    t.assert_healthy()
