"""Plumbing shared by the integration targets: announce readiness, write progress lines.

A target's first argument is the path of a readiness file or FIFO. When it is ready it
writes "pid=N", any "key=value" facts the test needs, then "ready", one per line. After
that its stdout carries only its own progress lines, so a test can tell that fp wrote
nothing into it; "ERROR ..." lines report anything the target's code noticed going wrong.
"""
import os
import stat
import sys

MARKER = "fp-integration-target"


def announce(path, **facts):
    # Whether the program itself imported threading: fp must never import it for the program.
    lines = ["pid=%d" % os.getpid(), "threading=%d" % ("threading" in sys.modules)]
    lines += ["%s=%s" % (k, v) for k, v in sorted(facts.items())]
    lines.append("ready")
    data = ("\n".join(lines) + "\n").encode()
    if os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode):
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def report(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def error(message):
    report("ERROR " + message)


# What test filters were evaluated for: -f 'fptarget.saw(args[0]) and ...' records each value, so a
# test can tell how many times a filter ran for one call (once).
SAW = []


def saw(value):
    SAW.append(value)
    return True


def arg(index, default):
    """Optional float argument (after the readiness path)."""
    if len(sys.argv) > index:
        return float(sys.argv[index])
    return default


# time.sleep / Lock.acquire never return early by more than clock granularity.
EARLY_TOLERANCE_S = 0.001
