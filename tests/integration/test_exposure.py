"""What fp exposes: the agent listens on its Unix socket only (no TCP or UDP socket of any kind
in the target), fp writes no log anywhere but its own stderr (and there only with --debug, never
the expressions or console input it sends), and the agent leaves nothing but its socket behind."""

import os
import re
import stat

from conftest import agent_socket, socket_inodes

SECRET = "s3cr3t-token-0f-the-user"


def inet_inodes(pid):
    """Inodes of the TCP/UDP sockets (IPv4 and IPv6) in the target's network namespace."""
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                next(f)
                found.update(line.split()[9] for line in f)
        except OSError:
            pass
    return found


def test_no_network_listener(spawn, python):
    t = spawn("sleeper")
    before = socket_inodes(t.pid)
    t.cmd("status").ok()
    t.cmd("getglobal sys argv").ok()
    t.cmd("watch fptarget saw -n 1", "--timeout", "2")  # installs and removes a probe; no call needed
    mine = socket_inodes(t.pid) - before
    assert mine, "the agent's listening socket should be among the target's fds"
    assert not (mine & inet_inodes(t.pid)), "the agent opened a TCP or UDP socket"
    sock = agent_socket(t.pid)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode) and os.lstat(sock).st_mode & 0o777 == 0o600
    assert os.lstat(os.path.dirname(sock)).st_mode & 0o777 == 0o700
    t.assert_healthy()


def test_nothing_secret_in_logs(spawn, python, tmp_path):
    """What a user sends (an expression, console input) is not logged, even with --debug; the
    target's command line and environment are untouched; fp's directory holds only sockets and
    lock files of its own."""
    t = spawn("sleeper")
    with open("/proc/%d/cmdline" % t.pid, "rb") as f:
        cmdline = f.read()
    with open("/proc/%d/environ" % t.pid, "rb") as f:
        environ = f.read()
    d = os.path.dirname(agent_socket(t.pid))
    there = set(os.listdir(d)) if os.path.isdir(d) else set()
    commands = "getglobal sys argv -e \"'%s'\"\nconsole\nprint('%s')\n" % (SECRET, SECRET)
    r = t.fp("--debug", input=commands)
    assert r.rc == 0, r.describe()
    assert SECRET in r.out  # it did reach the target and came back
    assert SECRET not in r.err, "--debug logged what the user sent:\n" + r.err
    assert "fp[debug]" in r.err
    with open("/proc/%d/cmdline" % t.pid, "rb") as f:
        assert f.read() == cmdline
    with open("/proc/%d/environ" % t.pid, "rb") as f:
        assert f.read() == environ
    for name in set(os.listdir(d)) - there:  # what this run added (other fp runs share the directory)
        assert re.fullmatch(r"agent-\d+-\d+\.sock|attach-\d+\.lock", name), "%s/%s" % (d, name)
    t.assert_healthy()
