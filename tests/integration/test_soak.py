"""Soaks: what many cycles and long streams must leave unchanged.
- attach/command/detach cycles: the target's threads, file descriptors and RSS (within 2 MB) are
  those it had before;
- shutdown/restart cycles: no copy of the agent's package stays alive, the threads and fds go
  with each shutdown, RSS levels off;
- a watch streaming 10,000 events a second: every event is delivered or counted as dropped, and
  the agent's memory stays bounded.
`make test` runs short versions (30 cycles, 20 restarts, 60 s of stream on one interpreter);
`make soak` (FP_SOAK=1) the long ones: 200 cycles and 100 restarts per CPython, and an hour of
stream on each interpreter selected (FP_PYTHONS narrows). FP_SOAK_WATCH_S sets the stream's
length."""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import FP, KINDS, PYTHONS, Target, socket_inodes, thread_count, wait_until

SOAK = os.environ.get("FP_SOAK") == "1"
CYCLES = 200 if SOAK else 30
RESTARTS = 100 if SOAK else 20
WATCH_S = float(os.environ.get("FP_SOAK_WATCH_S", 3600 if SOAK else 60))
RATE = 10000
MB = 1024  # kB


class Firehose(Target):
    kind = "firehose"
    line_re = re.compile(r"^second \d+ calls=\d+$")
    progress_re = line_re
    settle_progress = 1


KINDS.setdefault(Firehose.kind, Firehose)
import test_faults  # noqa: E402,F401 - registers the costed target

STREAM_PYTHON = [p for p in PYTHONS if p.id.startswith("py")][-1:] or PYTHONS[-1:]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return sorted(os.listdir("/proc/%d/fd" % pid), key=int)


def workers(pid):
    """The agent's worker threads alive (each client's, until it detached)."""
    names = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return [n for n in names if n in ("fp-agent-work", "fp-agent-intr")]


def connections(pid):
    """The target's connected Unix sockets: a client's, until the agent's I/O thread has seen it
    go (its worker may end first). The listening socket is not connected."""
    inodes = socket_inodes(pid)
    with open("/proc/net/unix") as f:
        next(f)
        connected = {cols[6] for cols in (line.split() for line in f) if cols[5] == "03"}
    return sorted(inodes & connected)


def quiet(pid):
    return not workers(pid) and not connections(pid)


def resources(pid):
    return thread_count(pid), fds(pid), rss_kb(pid)


def test_attach_command_detach_cycles(spawn, python):
    t = spawn("costed")
    commands = [
        "getglobal __main__ BATCH -x 2",
        "watch __main__ work -n 2",
        "trace __main__ work -n 1",
        "tt -t __main__ work -n 2",
        "tt -da",
        "stack",
        "status",
    ]
    for c in commands * 2:  # first use: the package's modules, the recorder, sys.monitoring's tool
        t.cmd(c).ok()
    wait_until(lambda: quiet(t.pid), 10, "the agent's workers and connections to end")
    threads, fd0, rss0 = resources(t.pid)
    for i in range(CYCLES):
        t.cmd(commands[i % len(commands)]).ok()
    wait_until(
        lambda: quiet(t.pid) and thread_count(t.pid) == threads,
        10,
        lambda: (
            "the threads to be %d again (%d), no worker or connection left (%s, %s)"
            % (threads, thread_count(t.pid), workers(t.pid), connections(t.pid))
        ),
    )
    _, fd1, rss1 = resources(t.pid)
    print(
        "%s: %d cycles, RSS %.1f -> %.1f MB, %d threads, %d fds"
        % (python.id, CYCLES, rss0 / MB, rss1 / MB, threads, len(fd1))
    )
    assert fd1 == fd0, "file descriptors changed: %s -> %s" % (fd0, fd1)
    assert rss1 - rss0 <= 2 * MB, "RSS grew %.1f MB over %d cycles" % ((rss1 - rss0) / MB, CYCLES)
    t.assert_healthy()


# The package's modules alive in the target that are not in sys.modules: copies left behind.
LEFT_BEHIND = (
    "getglobal sys argv -e \"[getattr(m, '__name__', '(emptied)') for m in "
    "__import__('gc').get_objects() if type(m).__name__ == 'module' and "
    "(not hasattr(m, '__name__') or m.__name__.startswith('fp_agent') and "
    "__import__('sys').modules.get(m.__name__) is not m)]\""
)


def test_shutdown_restart_cycles(spawn, python):
    t = spawn("sleeper")
    threads0, fd0, _ = resources(t.pid)
    warm = None
    for i in range(RESTARTS):
        t.cmd("getglobal sys argv").ok()
        t.cmd("shutdown").ok()
        wait_until(lambda: thread_count(t.pid) == threads0, 10, "the agent's threads to end")
        assert fds(t.pid) == fd0, "after shutdown %d: fds %s, before %s" % (i, fds(t.pid), fd0)
        if i == 4:
            warm = rss_kb(t.pid)
    end = rss_kb(t.pid)
    left = t.json(LEFT_BEHIND)["value"]
    print(
        "%s: %d restarts, RSS %.1f MB after 5, %.1f MB after %d" % (python.id, RESTARTS, warm / MB, end / MB, RESTARTS)
    )
    assert left.get("len", 0) == 0, "copies of the package left behind: %s" % left["repr"]
    assert end - warm <= 4 * MB, "RSS grew %.1f MB over %d restarts" % ((end - warm) / MB, RESTARTS - 5)
    t.cmd("shutdown").ok()
    t.assert_healthy()


EVENT = re.compile(r'"method":"watch/event".*?"index":(\d+)')
DROPPED = re.compile(r'"dropped":(\d+)')
END = re.compile(r'"method":"watch/end"')
COUNT = re.compile(r'"count":(\d+)')


def stream_segment(t, seconds, peak, stall=False):
    """One watch of fire() for `seconds`; returns (count, delivered, dropped). Checks every event
    as it comes: its index is the events delivered so far plus those it says were dropped. With
    stall, the client stops reading for 3 s (SIGSTOP) a few seconds in: the agent must drop, and
    count, what it cannot deliver, never buffer without bound."""
    t.fp_runs += 1
    proc = subprocess.Popen(
        [
            FP,
            str(t.pid),
            "--json",
            "--timeout",
            "%.0f" % seconds,
            "--cmd",
            "watch __main__ fire -n 1000000 --expr 'args[0]'",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1 << 20,
    )
    delivered = dropped = 0
    end = None
    next_sample = time.monotonic()
    stall_at = time.monotonic() + 3 if stall else None
    for line in proc.stdout:
        if stall_at and time.monotonic() >= stall_at:
            stall_at = None
            os.kill(proc.pid, signal.SIGSTOP)
            for _ in range(6):  # the target keeps calling meanwhile; its memory is watched
                time.sleep(0.5)  # not a synchronisation: the length of the stall
                peak.append(rss_kb(t.pid))
            os.kill(proc.pid, signal.SIGCONT)
        m = EVENT.search(line)
        if m:
            delivered += 1
            d = DROPPED.search(line)
            dropped = int(d.group(1)) if d else dropped
            assert int(m.group(1)) == delivered + dropped, "event %s arrived as the %dth with %d dropped" % (
                m.group(1),
                delivered,
                dropped,
            )
        elif END.search(line):
            end = line
        if time.monotonic() >= next_sample:
            peak.append(rss_kb(t.pid))
            next_sample += 2
    rc = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert rc == 0 and end, "the watch did not end normally (%s): %s" % (rc, err)
    count = int(COUNT.search(end).group(1))
    end_dropped = int(DROPPED.search(end).group(1))
    assert delivered + end_dropped == count, "%d events delivered, %d dropped, but %d observed" % (
        delivered,
        end_dropped,
        count,
    )
    return count, delivered, end_dropped


@pytest.mark.parametrize("python", PYTHONS if SOAK else STREAM_PYTHON, ids=lambda p: p.id)
def test_watch_stream_of_ten_thousand_events_a_second(spawn, python):
    t = spawn("firehose", RATE)
    t.cmd("status").ok()
    before = rss_kb(t.pid)
    peak = []
    count = delivered = dropped = 0
    left = WATCH_S
    t0 = time.monotonic()
    while left > 0:
        seg = min(left, 90.0)  # -n 1000000: about 100 s at this rate
        c, d, x = stream_segment(t, seg, peak, stall=left == WATCH_S)
        count, delivered, dropped = count + c, delivered + d, dropped + x
        left -= seg
    elapsed = time.monotonic() - t0
    grown = (max(peak) - before) / MB
    print(
        "%s: %.0f s, %d events observed (%.0f/s), %d delivered, %d dropped; target RSS +%.1f MB at most"
        % (python.id, elapsed, count, count / elapsed, delivered, dropped, grown)
    )
    assert count >= 0.5 * RATE * WATCH_S, "the stream carried %d events, not %d a second" % (count, RATE)
    assert dropped > 0, "a client that stopped reading for 3 s lost nothing: the drop path was not exercised"
    assert grown <= 48, "the target's memory grew %.1f MB while streaming" % grown
    t.assert_healthy()
