"""The agent's life: injected once and reused, several clients at once, a killed client leaves
nothing behind, shutdown removes the socket and a later fp restarts the same mapped library."""

import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import FP, agent_mappings, agent_socket, thread_count, wait_until


def exec_mappings(pid):
    return [m for m in agent_mappings(pid) if " r-xp " in m]


def clients(t):
    return t.json("status")["clients"]


class Console:
    """`fp PID --cmd console` kept open on a stdin pipe."""

    def __init__(self, t):
        self.t = t
        t.fp_runs += 1
        self.proc = subprocess.Popen(
            [FP, str(t.pid), "--cmd", "console"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.got = b""  # everything read from its stdout so far

    def send(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def read_until(self, needle, timeout=20):
        """Reads the console's stdout until needle appears (bounded); returns all output so far."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while needle.encode() not in self.got:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail("console did not print %r within %ss; got %r" % (needle, timeout, self.got))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    pytest.fail(
                        "console exited before printing %r; got %r; stderr %r"
                        % (needle, self.got, self.proc.stderr.read())
                    )
                self.got += chunk
        return self.got.decode()

    def close(self, timeout=20):
        """Closes the console's stdin (end of input) and waits for it to exit (bounded)."""
        if self.proc.stdin:
            self.proc.stdin.close()
            self.proc.stdin = None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("console did not exit within %ss after its stdin closed" % timeout)
        self.got += out
        return self.proc.returncode, self.got.decode(), err.decode()

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


@pytest.fixture
def consoles():
    opened = []
    yield lambda t: opened.append(Console(t)) or opened[-1]
    for c in opened:
        c.kill()


def test_second_fp_reuses_agent(spawn, python):
    t = spawn("sleeper")
    threads_before = thread_count(t.pid)
    assert agent_mappings(t.pid) == []
    first = t.json("status")
    sock = agent_socket(t.pid)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
    mappings = agent_mappings(t.pid)
    assert len(exec_mappings(t.pid)) == 1, mappings

    second = t.json("status")
    assert second["pid"] == first["pid"] == t.pid
    assert second["uptime_s"] >= first["uptime_s"], "a new agent was started: %s then %s" % (first, second)
    assert second["agent_version"] == first["agent_version"]
    assert agent_mappings(t.pid) == mappings, "the library was mapped again"
    # Alone, a status client sees itself only.
    assert second["clients"] == 1, second
    assert thread_count(t.pid) > threads_before  # the agent's I/O thread
    t.assert_healthy()


def test_clients_started_together_inject_once(spawn, python):
    """Several fp started at the same moment on a process without an agent: they take turns
    (one injects, the others find its agent), none finds the process stopped under another's
    ptrace, and the library is mapped once."""
    t = spawn("sleeper")
    assert agent_mappings(t.pid) == []
    procs = [
        subprocess.Popen([FP, str(t.pid), "--json", "--cmd", "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    t.fp_runs += len(procs)
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, (p.returncode, out, err)
        assert b'"agent_version"' in out, out
    assert len(exec_mappings(t.pid)) == 1, agent_mappings(t.pid)
    t.assert_healthy()


def test_attach_while_stacks_are_read(spawn, python):
    """Stacks read from outside stop the threads for a moment. Attaches (and restarts) while
    two other fp read stacks in a loop: they take turns, so no attach finds the threads
    stopped under a reader's ptrace ("stopped", "permission denied"), and no read fails."""
    t = spawn("sleeper")
    done = threading.Event()
    reads = []

    def reader():
        while not done.is_set():
            run = t.cmd("stack", "--json")
            reads.append((run.rc, run.describe() if run.rc else run.result()["pause_ms"]))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for r in readers:
        r.start()
    try:
        wait_until(lambda: len(reads) >= 4, 30, "the readers to start")
        for _ in range(12):
            assert t.json("status")["pid"] == t.pid
            t.cmd("shutdown").ok()
    finally:
        done.set()
        for r in readers:
            r.join(60)
    assert all(rc == 0 for rc, _ in reads), [d for rc, d in reads if rc][:2]
    # A read that waited a whole second for an attach reads the threads running (pause 0):
    # under load that can happen; the reads that got their turn paused the threads.
    assert any(pause > 0 for _, pause in reads), reads
    t.assert_healthy()


def test_two_clients_at_once(spawn, python, consoles):
    t = spawn("inspectee")
    base = clients(t)
    c = consoles(t)
    c.send("import __main__\nprint('console-up', __main__.CONFIG['name'])\n")
    assert "console-up inspectee" in c.read_until("console-up inspectee")
    wait_until(lambda: clients(t) == base + 1, 10, "the console to count as a client")

    # While the console is open, another client's commands work, Python ones too.
    assert t.json("getglobal __main__ Registry counter")["value"]["repr"] == "42"
    assert t.json("status")["clients"] == base + 1

    c.send("x = 6 * 7\nprint('answer', x)\n")
    assert "answer 42" in c.read_until("answer 42")
    rc, out, err = c.close()
    assert rc == 0, (rc, out, err)
    wait_until(lambda: clients(t) == base, 10, "the console's client to go away after it exited")
    t.assert_healthy()


def test_killed_client_leaves_nothing(spawn, python, consoles):
    t = spawn("sleeper")
    base = clients(t)
    t.cmd("getglobal fptarget MARKER").ok()  # a Python request: a worker comes and goes
    wait_until(lambda: clients(t) == base, 10, "the getglobal client to go away")
    threads_idle = thread_count(t.pid)

    c = consoles(t)
    c.send("import fptarget\nprint('before-kill', fptarget.MARKER)\n")
    c.read_until("before-kill fp-integration-target")
    wait_until(lambda: clients(t) == base + 1, 10, "the console to count as a client")
    assert thread_count(t.pid) > threads_idle, "the console's worker thread is expected while it is open"

    os.kill(c.proc.pid, signal.SIGKILL)
    c.proc.wait(timeout=10)
    wait_until(
        lambda: clients(t) == base,
        10,
        lambda: "clients back to %d after the console was killed (status says %d)" % (base, clients(t)),
    )
    wait_until(
        lambda: thread_count(t.pid) == threads_idle,
        10,
        lambda: (
            "the killed client's worker thread to end (%d threads, %d when idle)" % (thread_count(t.pid), threads_idle)
        ),
    )
    t.assert_healthy()


def test_shutdown_and_restart(spawn, python):
    t = spawn("sleeper")
    threads_before = thread_count(t.pid)
    t.json("status")
    t.cmd("getglobal fptarget MARKER").ok()
    mappings = agent_mappings(t.pid)
    sock = agent_socket(t.pid)
    assert os.path.exists(sock)

    t.cmd("shutdown").ok()
    wait_until(lambda: not os.path.exists(sock), 10, "the socket %s to be removed by shutdown" % sock)
    wait_until(
        lambda: thread_count(t.pid) == threads_before,
        10,
        lambda: (
            "the agent's threads to end after shutdown (%d threads, %d before attach)"
            % (thread_count(t.pid), threads_before)
        ),
    )
    assert agent_mappings(t.pid) == mappings, "the library stays mapped after shutdown"
    t.assert_healthy()

    status = t.json("status")  # restarts the agent through fp_agent_start()
    assert status["pid"] == t.pid
    assert os.path.exists(sock)
    assert agent_mappings(t.pid) == mappings, "restart must not map the library a second time"
    value = t.json("getglobal fptarget MARKER")["value"]
    assert value["repr"] == "'fp-integration-target'"
    t.assert_healthy()


def test_restart_while_the_old_agent_is_still_stopping(spawn, python):
    """A shutdown removes the socket at once, then gives the other clients up to a second to
    take the output they have not read. An fp that comes meanwhile finds no socket and starts
    the agent: it must get a new one, not an "already running" from the one on its way out."""
    t = spawn("sleeper")
    t.json("status")
    sock = agent_socket(t.pid)
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(sock)
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    # ~1.3 MB of pings whose answers it never reads: most of them wait in the agent's buffer.
    slow.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(ping), ping) * 20000)
    shutdown = []
    stopper = threading.Thread(target=lambda: shutdown.append(t.cmd("shutdown")))
    stopper.start()
    try:
        wait_until(lambda: not os.path.exists(sock), 10, "the socket %s to be removed by shutdown" % sock)
        status = t.json("status")
        assert status["pid"] == t.pid and status["clients"] == 1
    finally:
        slow.close()
        stopper.join(timeout=60)
    shutdown[0].ok()
    assert t.json("getglobal fptarget MARKER")["value"]["repr"] == "'fp-integration-target'"
    t.assert_healthy()


class HeldThread:
    """One thread of a process held in a ptrace stop while its other threads run on (a SIGSTOP
    would stop them all, and fp does not attach to a stopped process)."""

    def __init__(self, tid):
        import ctypes

        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.tid = tid
        if self.libc.ptrace(0x4206, tid, None, None) != 0:  # PTRACE_SEIZE
            pytest.fail("cannot seize thread %d: errno %d" % (tid, ctypes.get_errno()))
        self.libc.ptrace(0x4207, tid, None, None)  # PTRACE_INTERRUPT
        os.waitpid(tid, 0x40000000)  # __WALL: the thread is stopped on return

    def release(self):
        self.libc.ptrace(17, self.tid, None, None)  # PTRACE_DETACH: it runs on


def agent_thread(pid, name):
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            if f.read().strip() == name:
                return int(tid)
    pytest.fail("process %d has no thread named %s" % (pid, name))


def test_attach_as_the_agent_shuts_down(spawn, python):
    """An fp that connects as the agent reads a shutdown is dropped unanswered: the agent stops
    accepting, removes its socket, then closes it with the connection still waiting in its
    backlog. That fp must start a new agent, not fail. The agent's I/O thread is held while
    the shutdown and the new connection wait on its sockets, so that it finds both in one
    round: it handles the shutdown first and accepts nobody."""
    t = spawn("sleeper")
    t.json("status")
    sock = agent_socket(t.pid)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(20)
    raw.connect(sock)

    def request(method, rid):
        body = b'{"jsonrpc":"2.0","id":%d,"method":"%s"}' % (rid, method.encode())
        raw.sendall(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    request("ping", 1)
    assert b'"result"' in raw.recv(65536)  # accepted and answered: a client of the agent already
    held = HeldThread(agent_thread(t.pid, "fp-agent-io"))
    proc = None
    try:
        request("shutdown", 2)
        t.fp_runs += 1
        proc = subprocess.Popen(
            [FP, str(t.pid), "--debug", "--json", "--cmd", "status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        err = b""
        deadline = time.monotonic() + 30
        while b"connected; sending ping" not in err:
            left = deadline - time.monotonic()
            ready = select.select([proc.stderr], [], [], left)[0] if left > 0 else []
            chunk = os.read(proc.stderr.fileno(), 65536) if ready else b""
            if not chunk:
                pytest.fail("fp did not connect to the agent; its log:\n%s" % err.decode(errors="replace"))
            err += chunk
    except BaseException:
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    finally:
        held.release()
        raw.close()
    out, rest = proc.communicate(timeout=60)
    log = (err + rest).decode(errors="replace")
    assert proc.returncode == 0, "fp failed:\n%s" % log[-3000:]
    assert "the agent shut down as we connected" in log, "the agent answered before its shutdown:\n%s" % log
    status = json.loads(out)["result"]
    assert status["pid"] == t.pid and status["clients"] == 1
    assert t.json("getglobal fptarget MARKER")["value"]["repr"] == "'fp-integration-target'"
    t.assert_healthy()


def test_stale_socket_from_a_dead_process(spawn, python):
    """A process killed with its agent inside leaves its socket file; when its PID is reused by
    a new Python process, fp must still attach (nobody listens on the stale file)."""
    t = spawn("sleeper")
    sock = agent_socket(t.pid)
    os.makedirs(os.path.dirname(sock), mode=0o700, exist_ok=True)
    if os.path.exists(sock):
        os.unlink(sock)  # already stale: left by an earlier process with this PID
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)  # bound, never listening, closed: what a killed agent leaves
    stale.close()
    try:
        status = t.json("status")
        assert status["pid"] == t.pid
        assert t.json("getglobal fptarget MARKER")["value"]["repr"] == "'fp-integration-target'"
    finally:
        if agent_mappings(t.pid) == []:
            os.unlink(sock)  # attach failed: the test's own file
    t.assert_healthy()


def test_sockets_of_killed_processes_are_swept(spawn, python):
    """A process killed with its agent inside cannot remove its socket; the next fp that injects
    an agent (into any process) removes it, the process being gone."""
    gone = spawn("sleeper")
    assert gone.json("status")["pid"] == gone.pid
    sock = agent_socket(gone.pid)
    assert os.path.exists(sock)
    os.kill(gone.pid, signal.SIGKILL)
    gone.proc.wait(timeout=10)
    gone.checked_after = gone.fp_runs  # nothing to check in a killed process
    assert os.path.exists(sock), "left behind by the killed agent"
    lock = os.path.join(os.path.dirname(sock), "attach-%d.lock" % gone.pid)
    open(lock, "w").close()  # what an fp killed while attaching to it would leave
    other = spawn("sleeper")
    assert other.json("status")["pid"] == other.pid
    assert not os.path.exists(sock)
    assert not os.path.exists(lock)
    assert os.path.exists(agent_socket(other.pid))
    other.assert_healthy()


def test_forking_target(spawn, python):
    """A program that forks children which exit normally (finalizing Python in the child) after
    the agent is in: the children exit 0 and print nothing, the parent's agent keeps its socket
    and serves on (same agent, no second injection)."""
    t = spawn("forker")
    if python.version >= (3, 12):
        # 3.12+ warns at fork() in any process with more than one thread, and the agent's I/O
        # thread is one (a documented limitation: README, Troubleshooting). Nothing else may show.
        t.known_stderr = re.compile(
            r"^\S+forker\.py:\d+: DeprecationWarning: This process \(pid=\d+\) "
            r"is multi-threaded, use of fork\(\) may lead to deadlocks in the "
            r"child\.\n  pid = os\.fork\(\)\n",
            re.M,
        )
    first = t.json("status")
    t.cmd("getglobal fptarget MARKER").ok()
    sock = agent_socket(t.pid)
    t.wait_progress(more=3)
    assert os.path.exists(sock), "a child's exit removed the parent's agent socket"
    again = t.json("status")
    assert again["uptime_s"] >= first["uptime_s"] and again["python_ready"] is True, (first, again)
    assert len(exec_mappings(t.pid)) == 1
    t.assert_healthy()  # includes: no child failed, nothing on stderr (no fork warnings either)


def test_list_processes(spawn, python):
    t = spawn("sleeper")
    r = subprocess.run(
        [FP], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30
    )
    assert r.returncode == 0, (r.stdout, r.stderr)
    lines = [l for l in r.stdout.splitlines() if l.split() and l.split()[0] == str(t.pid)]
    assert len(lines) == 1, "target %d not listed once:\n%s\n%s" % (t.pid, r.stdout, r.stderr)
    assert "%d.%d" % python.version in lines[0], lines[0]
    assert agent_mappings(t.pid) == [], "listing must not attach"
    t.assert_healthy()


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid, window=0.5):
    """Share of one core the process used over the next `window` seconds (a measurement)."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - before) / window


def test_killed_client_mid_request_leaves_nothing(spawn, python, consoles):
    """A client killed while its code runs in the target (a runaway loop typed in the console)
    must not leave that code running: the target is as it was before the client came."""
    t = spawn("sleeper")
    base = clients(t)
    threads_idle = thread_count(t.pid)

    c = consoles(t)
    c.send("print('looping')\nfor _ in range(10 ** 12): pass\n\n")
    c.read_until("looping")
    wait_until(lambda: clients(t) == base + 1, 10, "the console to count as a client")
    os.kill(c.proc.pid, signal.SIGKILL)
    c.proc.wait(timeout=10)
    wait_until(lambda: clients(t) == base, 10, lambda: "clients back to %d (status says %d)" % (base, clients(t)))

    wait_until(
        lambda: cpu_share(t.pid) < 0.2,
        10,
        lambda: (
            "the dead client's loop to stop burning the target's CPU (now %.0f%% of a core)" % (100 * cpu_share(t.pid))
        ),
    )
    wait_until(
        lambda: thread_count(t.pid) == threads_idle,
        10,
        lambda: (
            "the dead client's worker thread to end (%d threads, %d when idle)" % (thread_count(t.pid), threads_idle)
        ),
    )
    t.assert_healthy()


def test_long_request_does_not_delay_other_clients(spawn, python, consoles, tmp_path):
    t = spawn("inspectee")
    c = consoles(t)
    started = tmp_path / "started"
    # A console line's output comes back when the line is done; the file says it began.
    c.send("import time\nopen(%r, 'w').close(); time.sleep(5); print('woke')\n" % str(started))
    wait_until(started.exists, 20, "the console's long request to start")
    r = t.cmd("getglobal __main__ Registry counter").ok()
    assert r.elapsed < 2.0, "another client's request waited for the console's: %s" % r.describe()
    assert "woke" in c.read_until("woke", timeout=20)
    rc, out, err = c.close()
    assert rc == 0, (rc, out, err)
    t.assert_healthy()


def test_target_exits_cleanly_with_idle_agent(spawn, python):
    """An attached program still shuts down normally (atexit, threading's shutdown, finalization
    with the agent's threads inside): exit status 0, nothing on stderr."""
    t = spawn("sleeper")
    t.cmd("getglobal fptarget MARKER").ok()
    t.cmd("console", input="x = 1\n").ok()
    t.cmd("stack").ok()
    rc = t.interrupt_and_wait()
    assert rc == 0, "exit status %s\n%s" % (rc, t._output_excerpt())
    assert t.stdout_lines()[-1] == "bye"
    assert t.stderr_text() == "", t.stderr_text()
    assert not os.path.exists(agent_socket(t.pid, t.pid_ns)), "the agent left its socket behind at exit"


def test_target_exits_cleanly_with_client_connected(spawn, python, consoles):
    t = spawn("sleeper")
    c = consoles(t)
    c.send("print('connected')\n")
    c.read_until("connected")
    rc = t.interrupt_and_wait()
    assert rc == 0, "exit status %s\n%s" % (rc, t._output_excerpt())
    assert t.stderr_text() == "", t.stderr_text()
    # The client learns the target went away and ends by itself (bounded), with a reason.
    try:
        c.send("print('are you there')\n")
    except BrokenPipeError:
        pass  # it already noticed and exited
    rc, out, err = c.close()
    assert err.strip(), "the console said nothing about losing the target"


def test_timed_out_request_leaves_nothing(spawn, python):
    """fp gives up on a request after --timeout and exits; the request (an expression that would
    run for hours) must not go on using the target's CPU after its client is gone. (A Python-level
    loop: a single C call such as sum(range(N)) cannot be interrupted by anyone.)"""
    t = spawn("inspectee")
    base = clients(t)
    threads_idle = thread_count(t.pid)
    r = t.cmd('getglobal __main__ ITEMS -e "any(x < 0 for x in range(10 ** 12))"', "--timeout", "1").failed()
    assert r.elapsed < 10, r.describe()
    wait_until(lambda: clients(t) == base, 10, lambda: "clients back to %d (status says %d)" % (base, clients(t)))
    wait_until(
        lambda: cpu_share(t.pid) < 0.2,
        10,
        lambda: (
            "the abandoned expression to stop burning the target's CPU (now %.0f%% of a core)"
            % (100 * cpu_share(t.pid))
        ),
    )
    wait_until(
        lambda: thread_count(t.pid) == threads_idle,
        10,
        lambda: (
            "the abandoned request's worker thread to end (%d threads, %d when idle)"
            % (thread_count(t.pid), threads_idle)
        ),
    )
    t.assert_healthy()
