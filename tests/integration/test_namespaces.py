"""Targets in their own PID namespace (as in a container), seen from the host: the target's PID
inside is not the PID fp is given. Two such targets are both PID 1 inside; when they share /tmp,
fp must still talk to the agent of the process it was pointed at, never the other one."""

import shutil
import signal
import subprocess

import pytest

from conftest import KINDS, Sleeper, agent_mappings

UNSHARE = shutil.which("unshare")


def _namespaces_available():
    if not UNSHARE:
        return False
    try:
        return (
            subprocess.run(
                [UNSHARE, "--pid", "--fork", "--mount-proc", "true"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


pytestmark = pytest.mark.skipif(not _namespaces_available(), reason="needs unshare --pid (root or CAP_SYS_ADMIN)")


class NsSleeper(Sleeper):
    kind = "ns_sleeper"
    script_kind = "sleeper"
    launcher = (UNSHARE or "unshare", "--pid", "--fork", "--kill-child", "--mount-proc")
    # PID 1 of a namespace ignores signals it has no handler for, from outside too (but SIGKILL).
    stop_signal = signal.SIGKILL


KINDS.setdefault(NsSleeper.kind, NsSleeper)


def argv_of(t):
    value = t.json("getglobal sys argv")["value"]
    return [c["value"]["repr"].strip("'") for c in value["children"]]


def test_attach_in_pid_namespace(spawn, python):
    t = spawn("ns_sleeper")
    assert t.facts["pid"] == "1" and t.pid != 1
    status = t.json("status")
    assert status["python_version"].startswith("%d.%d" % python.version)
    assert argv_of(t)[1] == t.ready_path
    stack = t.json("stack")
    assert [th for th in stack["threads"] if th["main"]], stack
    assert agent_mappings(t.pid)
    t.assert_healthy()


def test_same_pid_in_two_namespaces(spawn, python):
    a = spawn("ns_sleeper")
    b = spawn("ns_sleeper")
    assert a.facts["pid"] == b.facts["pid"] == "1"
    assert argv_of(a)[1] == a.ready_path
    # b is another process with the same PID inside its namespace and the same /tmp.
    assert argv_of(b)[1] == b.ready_path, "fp %d answered with another process's data" % b.pid
    assert agent_mappings(b.pid), "fp never attached to %d" % b.pid
    assert argv_of(a)[1] == a.ready_path
    a.assert_healthy()
    b.assert_healthy()
