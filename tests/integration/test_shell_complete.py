"""Tab completion in the interactive shell completes names of the attached process — modules,
classes, functions, globals — from the agent's `complete` method, as well as command names and
options. The shell runs on a real terminal (a pty) against a real target."""

import os
import pty
import re
import select
import signal
import subprocess
import time

from test_watch import Observed  # noqa: F401  (registers the target kind)

from conftest import FP

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r|\x07")


class Terminal:
    """fp PID on a pty: what is typed goes to the shell, what it prints is collected."""

    def __init__(self, pid):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [FP, str(pid)], stdin=slave, stdout=slave, stderr=slave, close_fds=True, start_new_session=True
        )
        os.close(slave)
        self.seen = b""

    def type(self, text):
        os.write(self.master, text.encode())

    def expect(self, text, timeout=15):
        """Waits until the screen (escape sequences left out) shows text after what was
        already matched; returns what came before it."""
        want = text.encode()
        deadline = time.monotonic() + timeout
        while True:
            clean = ANSI.sub(b"", self.seen)
            at = clean.find(want)
            if at >= 0:
                self.seen = clean[at + len(want) :]
                return clean[:at].decode(errors="replace")
            left = deadline - time.monotonic()
            assert left > 0, "the shell never showed %r; it showed:\n%s" % (text, clean.decode(errors="replace"))
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the shell ended
                    raise AssertionError(
                        "the shell ended before showing %r:\n%s" % (text, clean.decode(errors="replace"))
                    )

    def close(self):
        if self.proc.poll() is None:
            self.type("quit\n")
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)
        return self.proc.returncode


def test_tab_completes_the_process_names(spawn):
    t = spawn("observed")
    term = Terminal(t.pid)
    try:
        prompt = "fp %d> " % t.pid
        term.expect(prompt)
        # A module of the process, then a function in it: each completed whole, with a space.
        term.type("getglobal observed_l\t")
        term.expect("getglobal observed_lib ")
        term.type("sca\t")
        term.expect("scale ")
        term.type("\n")
        out = term.expect(prompt)
        assert "function" in out and "scale" in out, out
        # A function of __main__ for watch; tt names only after -t.
        term.type("watch __main__ boo\t")
        term.expect("boom ")
        term.type("-n 1\n")
        out = term.expect(prompt)
        assert "boom" in out, out
        # Several matches: the common part is inserted, then Tab again lists them.
        term.type("getglobal __main__ TI\t")
        term.expect("TICK ")
        term.type("\n")
        out = term.expect(prompt)
        assert "0.02" in out, out
    finally:
        assert term.close() == 0
    t.assert_healthy()
