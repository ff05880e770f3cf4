"""Attach over and over: every `fp PID` after a shutdown stops a thread with ptrace and calls
fp_agent_start() in it, so repeating the cycle makes the injection land in the middle of the
target's blocking calls many times. Nothing the target does may notice: no short sleep, no
short lock wait, accept keeps accepting, and no signal sent meanwhile is lost."""

import os
import signal
import threading

import pytest

from conftest import agent_mappings, wait_until

CYCLES = 15


def cycle(t, cycles=CYCLES):
    for _ in range(cycles):
        t.cmd("status").ok()
        t.cmd("shutdown").ok()


@pytest.mark.parametrize("kind", ["sleeper", "locker", "acceptor"])
def test_restart_cycles(spawn, python, kind):
    # Short sleeps and lock timeouts: more chances for a stop to land inside one.
    t = spawn(kind, 0.05) if kind != "acceptor" else spawn(kind)
    mappings = None
    for _ in range(CYCLES):
        t.cmd("status").ok()
        mappings = mappings or agent_mappings(t.pid)
        if kind == "acceptor":
            t.prove_working()
        t.cmd("shutdown").ok()
    assert agent_mappings(t.pid) == mappings, "the library was mapped more than once"
    t.assert_healthy()


def test_signals_not_lost_during_attach(spawn, python):
    t = spawn("signals")
    failures = []

    def attach_loop():
        try:
            cycle(t)
        except BaseException as e:  # noqa: B902 - reported by the test thread
            failures.append(e)

    worker = threading.Thread(target=attach_loop)
    worker.start()
    sent = 0
    try:
        while worker.is_alive() or sent < 20:
            os.kill(t.pid, signal.SIGUSR1)
            sent += 1
            wait_until(
                lambda: t.signals_handled() >= sent,
                5,
                lambda: "SIGUSR1 number %d to be handled (handled: %d)" % (sent, t.signals_handled()),
                poll=0.002,
            )
    finally:
        worker.join(timeout=120)
    assert not failures, failures
    assert t.signals_handled() == sent
    print("%s: %d signals sent during %d attach cycles" % (python.id, sent, CYCLES))
    t.assert_healthy()
