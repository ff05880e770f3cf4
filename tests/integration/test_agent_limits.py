"""What the agent answers when it cannot or will not serve, and the bounds that keep a client
from costing the target: its own reason when it cannot start, "busy" when every client slot is
taken, a bounded number of threads however many requests time out while the GIL is held, a
bounded request size, and a parse error for a body that is not UTF-8."""

import json
import os
import shutil
import subprocess

import pytest
from rawclient import RawClient

from conftest import KINDS, Sleeper, agent_socket, thread_count, wait_until

UNSHARE = shutil.which("unshare")


class ReadOnlyTmpSleeper(Sleeper):
    """A sleeper in a mount namespace of its own where /tmp is read-only: the agent cannot make
    its socket there."""

    kind = "ro_tmp_sleeper"
    script_kind = "sleeper"
    launcher = (UNSHARE or "unshare", "--mount", "sh", "-c", 'mount --bind -o ro /tmp /tmp && exec "$@"', "sh")

    def _launched_child(self):
        return self.proc.pid  # unshare and sh exec: same process


KINDS.setdefault(ReadOnlyTmpSleeper.kind, ReadOnlyTmpSleeper)


def test_agent_reason_is_shown_when_it_cannot_start(spawn, python):
    if not UNSHARE or subprocess.run([UNSHARE, "--mount", "true"]).returncode != 0:
        pytest.skip("needs unshare --mount (root)")
    t = spawn("ro_tmp_sleeper")
    r = t.cmd("status", "--debug").failed()
    assert "Read-only file system" in r.err, "the agent's own reason is not shown:\n" + r.describe()
    assert "/tmp/fp-%d" % os.geteuid() in r.err, r.describe()
    assert r.elapsed < 4, "fp waited for an agent that had given up:\n" + r.describe()
    assert "no agent socket at /proc/%d/root/tmp/fp-" % t.pid in r.err, r.describe()  # --debug names the path
    t.assert_healthy()


@pytest.fixture
def sleeper(spawn):
    t = spawn("sleeper")
    t.cmd("status").ok()
    return t


def test_busy_agent_says_so(sleeper, python):
    t = sleeper
    held = []
    try:
        for _ in range(16):
            c = RawClient(agent_socket(t.pid))
            assert c.call("ping")["result"] == {"pong": True}
            held.append(c)
        r = t.cmd("status", "--json").failed()
        assert "busy" in r.err and "16 clients" in r.err, r.describe()
        assert "shutting down" not in r.err, r.describe()
        err = [json.loads(l) for l in r.out.splitlines()][0]["error"]
        assert err["rpc_code"] == -32005, err
    finally:
        for c in held:
            c.close()
    wait_until(lambda: t.cmd("status").rc == 0, 10, "the agent to accept clients again")
    t.assert_healthy()


def test_threads_bounded_while_the_gil_is_held(spawn, python):
    """Each client that gives up on a request while another thread holds the GIL leaves the
    agent's worker waiting for it; however many do, the threads stay bounded and the next
    requests are told why."""
    t = spawn("gil_hog")
    t.cmd("status").ok()
    base = thread_count(t.pid)
    for _ in range(30):
        c = RawClient(agent_socket(t.pid))
        c.request("getglobal", {"module": "__main__", "field": "x"})
        c.call("status")  # answered without the GIL: the request above was read
        c.close()  # gone, its request still waiting for the GIL
    grown = thread_count(t.pid) - base
    assert grown <= 6, "%d threads more after 30 abandoned requests (bound: 6)" % grown
    r = t.cmd("getglobal __main__ x", "--timeout", "5").failed()
    assert "GIL" in r.err, r.describe()
    assert t.cmd("status").rc == 0
    t.assert_healthy()


def test_oversized_request_is_refused(sleeper, python):
    t = sleeper
    c = RawClient(agent_socket(t.pid), timeout=30)
    try:
        big = "1+" * (9 << 19) + "1"  # 9 MiB
        c.send_body(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "getglobal",
                    "params": {"module": "__main__", "field": "__name__", "expr": big},
                }
            )
        )
        msg = c.read(timeout=20)
        assert msg is not None and msg.get("error", {}).get("code") == -32600, msg
        assert "too large" in msg["error"]["message"], msg
    finally:
        c.close()
    t.assert_healthy()


def test_long_expression_is_refused(sleeper, python):
    t = sleeper
    c = RawClient(agent_socket(t.pid), timeout=30)
    try:
        msg = c.call("getglobal", {"module": "__main__", "field": "__name__", "expr": "1+" * 40000 + "1"}, timeout=20)
        assert msg.get("error", {}).get("code") == -32602, msg
        assert "expr" in msg["error"]["message"] and "long" in msg["error"]["message"], msg
    finally:
        c.close()
    r = t.cmd('getglobal __main__ __name__ -e "%s"' % ("1+" * 40000 + "1")).failed()
    assert "too long" in r.err, r.describe()
    t.assert_healthy()


def test_body_that_is_not_utf8_is_a_parse_error(sleeper, python):
    t = sleeper
    c = RawClient(agent_socket(t.pid))
    try:
        c.send_body(b'{"jsonrpc":"2.0","id":7,"method":"getglobal","params":{"module":"\xff\xfe"}}')
        msg = c.read()
        assert msg["error"]["code"] == -32700, msg
        assert c.call("ping")["result"] == {"pong": True}  # the connection is still usable
    finally:
        c.close()
    t.assert_healthy()
