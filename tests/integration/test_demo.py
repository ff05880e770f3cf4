"""`make demo` (scripts/demo.sh): the example service, the fp shell on it, as a new user runs
it, here with its output piped (`make demo | tee log`): the shell's answers, and a watch's calls
while it runs, must reach the pipe as they come, not at quit; Ctrl-C stops the watch, not the
demo; and `quit` must end the demo with status 0 (not the service's 143) and the service stopped.
"""

import os
import pty
import re
import select
import signal
import subprocess

import pytest

from conftest import FP_BUILD, REPO, wait_until

DEMO = os.path.join(REPO, "scripts", "demo.sh")


class Piped:
    """The demo with its stdin a terminal (the shell is interactive) and its stdout a pipe."""

    def __init__(self):
        self.master, slave = pty.openpty()
        env = dict(os.environ, FP_DEMO_PORT="0", HOME=os.environ.get("HOME", "/root"))
        self.proc = subprocess.Popen(
            [DEMO, FP_BUILD],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.out = b""

    def read(self):
        while select.select([self.proc.stdout], [], [], 0)[0]:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                break
            self.out += chunk
        return self.out.decode(errors="replace")

    def type(self, line):
        os.write(self.master, line.encode() + b"\r")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        os.close(self.master)


def test_demo_piped_answers_as_it_goes_and_quits_cleanly():
    if not os.access(DEMO, os.X_OK):
        pytest.fail("%s is not executable" % DEMO)
    demo = Piped()
    try:
        wait_until(lambda: "Leave with quit" in demo.read(), 60, lambda: "the demo to start:\n" + demo.read())
        service = int(re.search(r"as PID (\d+)", demo.read()).group(1))
        demo.type("status")
        # Before quit: the answer is in the pipe while the shell still runs.
        wait_until(
            lambda: "agent in process %d" % service in demo.read(),
            30,
            lambda: "status's answer in the pipe before quit; got:\n" + demo.read(),
        )
        assert demo.proc.poll() is None
        # A streaming command: each call is in the pipe as it is reported, while the watch runs
        # (its limit is far away; Ctrl-C stops it).
        demo.type("watch shop.pricing PriceBook quote -n 1000")
        wait_until(
            lambda: re.search(r"^\[2\] ", demo.read(), re.M),
            30,
            lambda: "the watch's first calls in the pipe while it runs; got:\n" + demo.read(),
        )
        os.write(demo.master, b"\x03")  # Ctrl-C: the shell stops the watch, the demo goes on
        wait_until(lambda: "watch ended" in demo.read(), 30, lambda: "the watch to end:\n" + demo.read())
        assert demo.proc.poll() is None
        demo.type("quit")
        wait_until(
            lambda: demo.read() is not None and demo.proc.poll() is not None,
            30,
            lambda: "the demo to end after quit:\n" + demo.read(),
        )
        assert demo.proc.poll() == 0, "the demo ended with %s:\n%s\n%s" % (
            demo.proc.poll(),
            demo.read(),
            demo.proc.stderr.read().decode(errors="replace"),
        )
        wait_until(
            lambda: not os.path.exists("/proc/%d" % service) or _zombie(service),
            10,
            "the example service to be stopped",
        )
    finally:
        demo.stop()


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
