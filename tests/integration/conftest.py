"""Integration-test plumbing: every CPython on the machine, real targets, the `fp` client.

- `python`: a module-scoped parameter over the interpreters found here (py3.8 .. py3.13 from
  pyenv, system-3.11 from /usr/bin/python3); FP_PYTHONS="py3.12,system-3.11" narrows it.
- `spawn(kind)`: starts tests/targets/KIND.py under that interpreter, waits for it to announce
  readiness on a FIFO (bounded, failing with what was received), and at teardown checks the
  target is alive and still doing its own work correctly before terminating it by its PID.
- `Target.fp(...)` runs `fp PID ...` against a target with a bound, and returns an FpRun.
- A session-wide preflight fails fast with the fix when ptrace is not permitted.
"""

import ast
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

import pythons

# Targets and clients get Ctrl-C (SIGINT) from the tests. A suite started in the background by a
# non-interactive shell inherits SIGINT ignored, which exec keeps: give it a handler, which exec
# resets to the default in every child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGETS = os.path.join(REPO, "tests", "targets")
FP_BUILD = os.environ.get("FP_BUILD") or os.path.join(REPO, "build")
FP = os.path.join(FP_BUILD, "bin", "fp")
AGENT_LIB_NAME = "libfpagent.so"

READY_TIMEOUT_S = 20.0
FP_TIMEOUT_S = 30.0  # bound on one fp invocation (a hang fails the test, not the suite)
STOP_TIMEOUT_S = 5.0


# ---------------------------------------------------------------------------------------
# Interpreters
# ---------------------------------------------------------------------------------------

try:
    PYTHONS = pythons.select()
except ValueError as e:
    raise pytest.UsageError("FP_PYTHONS: %s" % e)


@pytest.fixture(scope="module", params=PYTHONS, ids=[p.id for p in PYTHONS])
def python(request):
    return request.param


# ---------------------------------------------------------------------------------------
# Preflight: fp built, ptrace permitted
# ---------------------------------------------------------------------------------------

PTRACE_FIX = """ptrace is not permitted here, so fp cannot attach. Fix one of:
  - run as root or give the test runner CAP_SYS_PTRACE;
  - in Docker: docker run --cap-add=SYS_PTRACE (and --security-opt seccomp=unconfined on old Docker);
  - allow attaching to non-children: echo 0 | sudo tee /proc/sys/kernel/yama/ptrace_scope"""

_PTRACE_PROBE = r"""
import ctypes, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long
pid = int(sys.argv[1])
if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
    print(os.strerror(ctypes.get_errno())); sys.exit(1)
os.waitpid(pid, 0x40000000)  # __WALL: wait for the attach stop
libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
print("ok")
"""


def _ptrace_problem():
    """Attaches, like fp does, from one process to a sibling (not a child: yama scope 1 allows that)."""
    victim = subprocess.Popen(["sleep", "30"])
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _PTRACE_PROBE, str(victim.pid)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=15,
        )
        if probe.returncode != 0:
            scope = ""
            try:
                with open("/proc/sys/kernel/yama/ptrace_scope") as f:
                    scope = " (kernel.yama.ptrace_scope=%s)" % f.read().strip()
            except OSError:
                pass
            return "PTRACE_ATTACH to a sibling process failed: %s%s" % (probe.stdout.strip(), scope)
        return None
    except subprocess.TimeoutExpired:
        return "PTRACE_ATTACH probe hung"
    finally:
        victim.kill()
        victim.wait()


@pytest.fixture(scope="session", autouse=True)
def preflight():
    if not os.access(FP, os.X_OK):
        pytest.exit(
            "fp is not built at %s. Build it first: `make build` (or cmake -S %s -B %s && "
            "cmake --build %s), or point FP_BUILD at a build directory." % (FP, REPO, FP_BUILD, FP_BUILD),
            returncode=2,
        )
    if not PYTHONS:
        pytest.exit("no CPython 3.8+ found (looked in pyenv's versions and /usr/bin/python3)", returncode=2)
    problem = _ptrace_problem()
    if problem:
        pytest.exit("%s\n%s" % (problem, PTRACE_FIX), returncode=2)


# ---------------------------------------------------------------------------------------
# Running fp
# ---------------------------------------------------------------------------------------


class FpRun:
    def __init__(self, argv, rc, out, err, elapsed):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err
        self.elapsed = elapsed

    def describe(self):
        return "$ %s\nexit %s after %.2fs\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
            " ".join(self.argv),
            self.rc,
            self.elapsed,
            self.out,
            self.err,
        )

    def ok(self):
        assert self.rc == 0, "fp failed:\n" + self.describe()
        return self

    def failed(self):
        assert self.rc not in (0, None), "fp should have failed:\n" + self.describe()
        assert self.rc > 0, "fp died from a signal:\n" + self.describe()
        assert self.err.strip(), "fp failed without saying why on stderr:\n" + self.describe()
        return self

    def records(self):
        recs = []
        for line in self.out.splitlines():
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except ValueError:
                pytest.fail("--json printed a line that is not JSON: %r\n%s" % (line, self.describe()))
        return recs

    def result(self):
        """The `result` of the single JSON record of a successful --json run."""
        self.ok()
        recs = self.records()
        assert len(recs) == 1, "expected one JSON record:\n" + self.describe()
        rec = recs[0]
        assert "result" in rec and "error" not in rec, "expected a result:\n" + self.describe()
        return rec["result"]


def run_fp(args, input=None, timeout=FP_TIMEOUT_S, env_extra=None):
    argv = [FP] + [str(a) for a in args]
    env = dict(os.environ, **env_extra) if env_extra else None
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            argv,
            input=input,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=None if input is not None else subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(
            "fp did not finish within %.0fs (killed):\n%s"
            % (timeout, FpRun(argv, None, out, err, time.monotonic() - t0).describe())
        )
    return FpRun(argv, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


@pytest.fixture(scope="session")
def fp():
    return run_fp


# ---------------------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------------------


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def start_time(pid):
    """The process's start time (clock ticks since boot), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid):
    """[(pid, start time)] of every process below pid."""
    found = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            for k in kids:
                found.append((k, start_time(k)))
                todo.append(k)
    return found


def socket_inodes(pid):
    """The inodes of the sockets pid has open."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]$", link)
        if m:
            inodes.add(m.group(1))
    return inodes


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


# Blocking system calls by name, for this machine's architecture.
_SYSCALLS = {
    "x86_64": {
        "poll": 7,
        "select": 23,
        "nanosleep": 35,
        "accept": 43,
        "futex": 202,
        "clock_nanosleep": 230,
        "epoll_wait": 232,
        "pselect6": 270,
        "ppoll": 271,
        "epoll_pwait": 281,
        "accept4": 288,
        "restart_syscall": 219,
    },
    "aarch64": {
        "epoll_pwait": 22,
        "pselect6": 72,
        "ppoll": 73,
        "futex": 98,
        "nanosleep": 101,
        "clock_nanosleep": 115,
        "accept": 202,
        "accept4": 242,
        "restart_syscall": 128,
    },
}.get(os.uname().machine, {})
_SYSCALL_NAMES = {v: k for k, v in _SYSCALLS.items()}


def thread_syscall(pid, tid=None):
    """Name (or number) of the system call a thread is blocked in; "running" when it runs;
    None when unreadable. tid defaults to the main thread."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid or pid)) as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return None
    if not first.lstrip("-").isdigit():
        return first
    return _SYSCALL_NAMES.get(int(first), first)


def agent_mappings(pid):
    """Lines of /proc/PID/maps that map the agent library."""
    with open("/proc/%d/maps" % pid) as f:
        return [line for line in f if line.rstrip().endswith("/" + AGENT_LIB_NAME)]


def pid_namespace(pid):
    """The inode of pid's pid namespace (part of the agent's socket name)."""
    return os.stat("/proc/%d/ns/pid" % pid).st_ino


def agent_socket(pid, ns=None, ns_pid=None):
    """The agent socket of host pid (ns: its pid-namespace inode, ns_pid: its pid in there)."""
    if ns is None:
        ns = pid_namespace(pid)
    return "/tmp/fp-%d/agent-%d-%d.sock" % (os.geteuid(), ns, pid if ns_pid is None else ns_pid)


def wait_until(predicate, timeout, what, poll=0.05):
    """Polls predicate until it returns a true value, or fails saying what it waited for.
    `what` may be a callable producing the message (to show the last observed state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.1fs waiting for %s" % (timeout, what() if callable(what) else what))
        time.sleep(poll)


# ---------------------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------------------


class Target:
    """A running tests/targets/KIND.py. Subclasses know the target's progress lines and how to
    prove it still works (`prove_working`)."""

    kind = None
    line_re = None  # every stdout line must match this or be an ERROR line (reported as such)
    progress_re = None  # lines that count as progress
    # After readiness, wait for this many progress lines and for the main thread to block in one
    # of these system calls, so tests see the target in its steady state (not still announcing).
    settle_progress = 0
    settle_syscalls = ()
    # argv before the interpreter's (e.g. unshare): the target is then the launcher's child.
    launcher = ()
    stop_signal = signal.SIGTERM
    script_kind = None  # tests/targets/<script_kind or kind>.py
    ready_timeout = READY_TIMEOUT_S  # a target importing a large library (torch) may need more

    def __init__(self, python, workdir, args=(), cwd=None):
        self.python = python
        self.workdir = workdir
        self.args = [str(a) for a in args]
        self.cwd = cwd or workdir
        self.script = os.path.join(TARGETS, (self.script_kind or self.kind) + ".py")
        self.proc = None
        self.pid = None
        self.facts = {}
        self.known_stderr = None  # a compiled pattern of stderr text a test expects (documented)
        self.fp_runs = 0
        self.checked_after = -1  # fp_runs at the last health check

    # -- life cycle ------------------------------------------------------------------
    def start(self):
        tag = "%s-%d" % (self.kind, id(self))
        self.ready_path = os.path.join(self.workdir, tag + ".ready")
        self.out_path = os.path.join(self.workdir, tag + ".out")
        self.err_path = os.path.join(self.workdir, tag + ".err")
        self._make_fifo(self.ready_path)
        # Opened before the target so it never blocks; no writer yet means no EOF yet.
        rfd = os.open(self.ready_path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
                self.proc = subprocess.Popen(
                    list(self.launcher) + [self.python.path, self.script, self.ready_path] + self.args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=self.cwd,
                    env=self._env(),
                )
            self.pid = self.proc.pid
            self._read_ready(rfd)
            if self.launcher:
                self.pid = self._launched_child()
            self.pid_ns = pid_namespace(self.pid)  # for the socket name, after the target is gone
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(rfd)
        return self

    def _make_fifo(self, path):
        os.mkfifo(path)

    @staticmethod
    def _env():
        env = dict(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONWARNINGS", "PYTHONDEVMODE"):
            env.pop(var, None)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _read_ready(self, rfd):
        received = b""
        deadline = time.monotonic() + self.ready_timeout
        while not received.endswith(b"ready\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                pytest.fail(
                    "%s (%s) did not become ready within %.0fs; exit status %s; received %r\n%s"
                    % (
                        self.kind,
                        self.python.id,
                        self.ready_timeout,
                        self.proc.poll(),
                        received,
                        self._output_excerpt(),
                    )
                )
            r, _, _ = select.select([rfd], [], [], min(left, 0.2))
            if r:
                try:
                    chunk = os.read(rfd, 4096)
                except BlockingIOError:
                    continue
                if not chunk:
                    pytest.fail(
                        "%s (%s) closed its readiness FIFO without announcing ready; received %r\n%s"
                        % (self.kind, self.python.id, received, self._output_excerpt())
                    )
                received += chunk
        for line in received.decode().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                self.facts[k] = v
        if not self.launcher:
            assert int(self.facts["pid"]) == self.pid

    def _launched_child(self):
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            children = [int(p) for p in f.read().split()]
        assert len(children) == 1, "launcher %d has children %s" % (self.proc.pid, children)
        return children[0]

    def wait_settled(self, timeout=READY_TIMEOUT_S):
        if self.settle_progress:
            wait_until(
                lambda: len(self.progress()) >= self.settle_progress,
                timeout,
                lambda: "%s (%s) to start its work\n%s" % (self.kind, self.python.id, self._output_excerpt()),
            )
        if self.settle_syscalls and _SYSCALLS:
            wait_until(
                lambda: thread_syscall(self.pid) in self.settle_syscalls,
                timeout,
                lambda: (
                    "%s (%s) main thread to block in %s (it is in %s)"
                    % (self.kind, self.python.id, "/".join(self.settle_syscalls), thread_syscall(self.pid))
                ),
                poll=0.01,
            )

    def stop(self):
        """SIGTERM, then SIGKILL after a bound; always by the target's own PID. A killed process
        cannot remove its agent's socket; the test removes it so nothing is left behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Children it forked (a stuck one outlives its parent) are stopped too, by PID, if still
        # the same processes (same start time).
        children = descendants(self.pid)
        os.kill(self.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        for pid, started in children:
            if start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        try:
            os.unlink(agent_socket(self.pid, self.pid_ns, int(self.facts.get("pid", self.pid))))
        except (OSError, ValueError, AttributeError):
            pass

    # -- fp against this target ------------------------------------------------------
    def fp(self, *args, **kw):
        self.fp_runs += 1
        return run_fp([self.pid] + list(args), **kw)

    def cmd(self, command, *opts, **kw):
        """`fp PID [opts] --cmd COMMAND`."""
        return self.fp(*(list(opts) + ["--cmd", command]), **kw)

    def json(self, command, *opts, **kw):
        """The result of `fp PID --json [opts] --cmd COMMAND`, which must succeed."""
        return self.cmd(command, "--json", *opts, **kw).result()

    # -- observing the target ----------------------------------------------------------
    def filter_runs(self, wanted=()):
        """What the filters written -f 'fptarget.saw(VALUE) and ...' were evaluated for, VALUE
        being unique per call: (how many times for each of `wanted`, how many values they were
        evaluated for more than once, how many values in all)."""
        expr = "[target.count(v) for v in %r], len(target) - len(set(target)), len(target)" % (list(wanted),)
        r = self.json('getglobal fptarget SAW -e "%s" -r' % expr)
        return ast.literal_eval(r["value"]["repr"])

    def stdout_lines(self):
        with open(self.out_path, errors="replace") as f:
            return f.read().splitlines()

    def stderr_text(self):
        with open(self.err_path, errors="replace") as f:
            return f.read()

    def _output_excerpt(self):
        try:
            out = self.stdout_lines()[-10:]
            return "--- target stdout (last lines) ---\n%s\n--- target stderr ---\n%s" % (
                "\n".join(out),
                self.stderr_text()[-3000:],
            )
        except OSError:
            return ""

    def progress(self, lines=None):
        lines = self.stdout_lines() if lines is None else lines
        return [l for l in lines if self.progress_re.match(l)]

    def wait_progress(self, more=3, timeout=10.0):
        """Waits for `more` new progress lines after now; returns them."""
        base = len(self.progress())
        wait_until(
            lambda: len(self.progress()) >= base + more,
            timeout,
            lambda: (
                "%d more progress lines from %s (%s); have %d\n%s"
                % (more, self.kind, self.python.id, len(self.progress()) - base, self._output_excerpt())
            ),
        )
        return self.progress()[base:]

    def prove_working(self):
        """Kind-specific proof that the target's own work continues correctly."""
        self.wait_progress()

    def assert_healthy(self):
        """Alive, nothing on stderr, only its own lines on stdout, no ERROR, and still working."""
        self.checked_after = self.fp_runs  # a failure here is the test's; teardown need not repeat it
        state = proc_state(self.pid)
        assert self.proc.poll() is None and state not in (None, "Z", "X"), "%s (%s) died: exit status %s\n%s" % (
            self.kind,
            self.python.id,
            self.proc.poll(),
            self._output_excerpt(),
        )
        assert state not in ("t", "T"), "%s (%s) is left stopped (state %s)" % (self.kind, self.python.id, state)
        self.prove_working()
        lines = self.stdout_lines()
        errors = [l for l in lines if l.startswith("ERROR")]
        assert not errors, "%s (%s) reported errors:\n%s" % (self.kind, self.python.id, "\n".join(errors))
        foreign = [l for l in lines if not self.line_re.match(l)]
        assert not foreign, "%s (%s) stdout has lines it did not write itself:\n%s" % (
            self.kind,
            self.python.id,
            "\n".join(repr(l) for l in foreign[:20]),
        )
        err = self.stderr_text()
        if self.known_stderr is not None:
            err = self.known_stderr.sub("", err)
        assert err == "", "%s (%s) stderr is not empty:\n%s" % (self.kind, self.python.id, err[-3000:])

    def finish(self):
        """Teardown: checks health (unless already checked since the last fp run), then stops."""
        try:
            if self.proc is not None and self.checked_after != self.fp_runs:
                self.assert_healthy()
        finally:
            self.stop()


SLEEP_SYSCALLS = ("select", "pselect6", "clock_nanosleep", "nanosleep")  # time.sleep, 3.8 .. 3.13


class Sleeper(Target):
    kind = "sleeper"
    line_re = re.compile(r"^(tick \d+ slept=\d+\.\d+|bye)$")
    progress_re = re.compile(r"^tick ")
    settle_syscalls = SLEEP_SYSCALLS

    def interrupt_and_wait(self, timeout=15):
        """SIGINT: the sleeper ends normally. Returns its exit status (bounded wait); the
        teardown check is then skipped, the caller checks the exit."""
        os.kill(self.pid, signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(
                "%s (%s) did not exit within %ss of SIGINT\n%s"
                % (self.kind, self.python.id, timeout, self._output_excerpt())
            )
        self.checked_after = self.fp_runs
        return rc


class Inspectee(Target):
    kind = "inspectee"
    line_re = re.compile(r"^tick \d+$")
    progress_re = line_re
    settle_syscalls = SLEEP_SYSCALLS


class Cpu(Target):
    kind = "cpu"
    line_re = re.compile(r"^rate \d+ ips=(\d+) cpu_ips=\d+$")
    progress_re = line_re
    settle_progress = 1

    def prove_working(self):
        lines = self.wait_progress(more=2)
        rates = [int(self.line_re.match(l).group(1)) for l in lines]
        assert min(rates) > 0, "cpu target made no progress: %s" % lines


class Locker(Target):
    kind = "locker"
    line_re = re.compile(r"^tick \d+ waited=\d+\.\d+$")
    progress_re = line_re
    settle_syscalls = ("futex",)


class Acceptor(Target):
    kind = "acceptor"
    line_re = re.compile(r"^accepted \d+$")
    progress_re = line_re
    settle_syscalls = ("accept", "accept4")

    def prove_working(self):
        base = len(self.progress())
        token = "probe-%d-%d" % (self.pid, base)
        with socket.create_connection(("127.0.0.1", int(self.facts["port"])), timeout=10) as s:
            s.sendall((token + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        assert data.decode() == "echo %s\n" % token, "acceptor answered %r\n%s" % (data, self._output_excerpt())
        wait_until(lambda: len(self.progress()) > base, 10, "the acceptor to report the connection")


class AsyncTicks(Target):
    kind = "asyncio_ticks"
    TASKS = ("ticker-fast", "ticker-mid", "ticker-slow")
    line_re = re.compile(r"^task (ticker-fast|ticker-mid|ticker-slow) tick \d+$")
    progress_re = line_re
    settle_progress = 1

    def _per_task(self):
        counts = dict.fromkeys(self.TASKS, 0)
        for l in self.progress():
            counts[l.split()[1]] += 1
        return counts

    def prove_working(self):
        base = self._per_task()
        wait_until(
            lambda: all(n >= base[t] + 2 for t, n in self._per_task().items()),
            10,
            lambda: "every asyncio task to tick twice more: before %s now %s" % (base, self._per_task()),
        )


class Threads50(Target):
    kind = "threads50"
    line_re = re.compile(r"^tick \d+ alive=\d+ stalled=\d+ ops=\d+$")
    progress_re = line_re
    settle_progress = 1

    def prove_working(self):
        lines = self.wait_progress(more=3, timeout=15)
        fields = [dict(kv.split("=") for kv in l.split()[2:]) for l in lines]
        assert all(f["alive"] == "50" for f in fields), "threads died: %s" % lines
        # Tolerant: one window may be slow on a loaded machine, but not every one.
        assert any(f["stalled"] == "0" for f in fields), "some threads stopped making progress: %s" % lines


class GilHog(Target):
    kind = "gil_hog"
    line_re = re.compile(r"^$")  # prints nothing at all
    progress_re = re.compile(r"^$")

    def prove_working(self):
        # It cannot make progress by design; it must still hold the GIL in its C sleep.
        assert self.hog_in_sleep(), "the GIL hog thread is no longer sleeping in C"

    def hog_in_sleep(self):
        """True when the hog thread sits in its C sleep (holding the GIL). restart_syscall is
        that same sleep resumed by the kernel, with the time left, after a ptrace stop
        interrupted it (stack from outside stops every thread for a moment)."""
        return thread_syscall(self.pid, int(self.facts["hog"])) in ("nanosleep", "clock_nanosleep", "restart_syscall")

    def wait_settled(self, timeout=READY_TIMEOUT_S):
        wait_until(self.hog_in_sleep, timeout, "the hog thread to enter its C sleep holding the GIL")


class Signals(Target):
    kind = "signals"
    line_re = re.compile(r"^(signal|tick) \d+$")
    progress_re = re.compile(r"^tick \d+$")
    settle_syscalls = SLEEP_SYSCALLS

    def signals_handled(self):
        return sum(1 for l in self.stdout_lines() if l.startswith("signal "))


class Hot(Target):
    """tests/targets/hot.py: hot_loop ~90% of the time, cold ~10% (perf's known profile)."""

    kind = "hot"
    line_re = re.compile(r"^round \d+ ips=\d+ cpu_ips=\d+$")
    progress_re = line_re

    def prove_working(self):
        lines = self.wait_progress(more=2)
        rates = [int(l.split()[2].split("=")[1]) for l in lines]
        assert min(rates) > 0, "hot target made no progress: %s" % lines


class Forker(Target):
    kind = "forker"
    line_re = re.compile(r"^forked \d+ status=-?\d+$")
    progress_re = line_re
    settle_progress = 1


class Prefork(Target):
    """tests/targets/prefork.py: a master that only watches its two forked workers."""

    kind = "prefork"
    line_re = re.compile(r"^worker \d+ served \d+$")
    progress_re = line_re

    def workers(self):
        return [int(p) for p in self.facts["workers"].split(",")]


KINDS = {
    cls.kind: cls
    for cls in (Sleeper, Inspectee, Cpu, Locker, Acceptor, AsyncTicks, Threads50, GilHog, Signals, Forker, Prefork)
}
KINDS[Hot.kind] = Hot


class _Spawner:
    def __init__(self, python, workdir):
        self.python = python
        self.workdir = str(workdir)
        self.targets = []

    def __call__(self, kind, *args, **kw):
        t = KINDS[kind](self.python, self.workdir, args, **kw)
        self.targets.append(t)
        return t.start()

    def finish(self):
        problems = []
        for t in self.targets:
            try:
                t.finish()
            except BaseException as e:  # noqa: B902 - every target must still be stopped
                problems.append("%s: %s" % (t.kind, e))
        if problems:
            pytest.fail("target check at teardown failed:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def spawn(python, tmp_path):
    """Starts targets for one test: spawn("sleeper") -> Target; checked and stopped at teardown."""
    s = _Spawner(python, tmp_path)
    try:
        yield s
    finally:
        s.finish()


@pytest.fixture(scope="module")
def module_spawn(python, tmp_path_factory):
    """Like spawn, for targets shared by the read-only tests of one module and interpreter."""
    s = _Spawner(python, tmp_path_factory.mktemp("targets-" + python.id))
    try:
        yield s
    finally:
        s.finish()
