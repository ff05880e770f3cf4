"""Plumbing for the benchmarks: options, interpreters, starting targets, running fp, statistics.

The targets are the integration tests' (tests/targets/*.py); the interpreters come from
tests/integration/pythons.py, so FP_PYTHONS narrows both the same way.
"""

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = os.path.join(REPO, "tests", "targets")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import pythons  # noqa: E402


class BenchError(Exception):
    pass


def parser(description, runs_default):
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--build",
        default=os.environ.get("FP_BUILD") or os.path.join(REPO, "build"),
        help="build directory holding bin/fp (default: $FP_BUILD or ./build)",
    )
    p.add_argument(
        "--pythons",
        default=None,
        help="comma-separated interpreter ids, e.g. py3.12,system-3.11 (default: $FP_PYTHONS or all)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=int(os.environ.get("FP_BENCH_RUNS", runs_default)),
        help="runs per interpreter (default: $FP_BENCH_RUNS or %d)" % runs_default,
    )
    return p


def setup(args):
    """Returns (fp path, interpreters) or exits with a message."""
    fp = os.path.join(os.path.abspath(args.build), "bin", "fp")
    if not os.access(fp, os.X_OK):
        sys.exit("fp is not built at %s (make build, or --build DIR)" % fp)
    try:
        return fp, pythons.select(args.pythons)
    except ValueError as e:
        sys.exit(str(e))


class Target:
    """tests/targets/KIND.py under one interpreter; its stdout is a pipe the bench reads."""

    def __init__(self, python, kind, *args):
        self.dir = tempfile.mkdtemp(prefix="fp-bench-")
        ready = os.path.join(self.dir, "ready")
        os.mkfifo(ready)
        rfd = os.open(ready, os.O_RDONLY | os.O_NONBLOCK)
        try:
            self.proc = subprocess.Popen(
                [python.path, os.path.join(TARGETS, kind + ".py"), ready] + [str(a) for a in args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.dir,
            )
            self.pid = self.proc.pid
            got = b""
            deadline = time.monotonic() + 20
            while not got.endswith(b"ready\n"):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise BenchError("%s under %s did not become ready: %r" % (kind, python.id, got))
                if select.select([rfd], [], [], 0.2)[0]:
                    try:
                        chunk = os.read(rfd, 4096)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.stop()
                        raise BenchError("%s closed its readiness FIFO early: %r" % (kind, got))
                    got += chunk
        finally:
            os.close(rfd)
        self._buf = b""

    def readline(self, timeout):
        """The next stdout line (str), or raises BenchError after timeout seconds."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise BenchError("no line from the target within %.1fs" % timeout)
            chunk = os.read(fd, 65536)
            if not chunk:
                raise BenchError("the target exited (status %s)" % self.proc.poll())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc.stdout.close()
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_fp(fp, pid, command, timeout=30):
    """Runs `fp PID --cmd COMMAND`; raises BenchError when it fails."""
    p = subprocess.run(
        [fp, str(pid), "--cmd", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
        timeout=timeout,
    )
    if p.returncode != 0:
        raise BenchError("fp %s --cmd %s failed (%d): %s" % (pid, command, p.returncode, p.stderr.strip()))
    return p.stdout


def percentile(values, q):
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(q / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def median(values):
    return statistics.median(values)


def table(headers, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join("%%-%ds" % w if i == 0 else "%%%ds" % w for i, w in enumerate(widths))
    print(fmt % tuple(headers))
    for r in rows:
        print(fmt % tuple(r))
    sys.stdout.flush()
