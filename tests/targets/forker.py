"""Forks a child every 0.2 s; each child does a little work and exits normally (sys.exit, so
Python finalizes in the child: atexit handlers and library destructors run there). The parent
reports each child's exit status.

Usage: forker.py READY
Progress: "forked N status=S" (S: the child's exit status, 0 expected). Errors: "ERROR ...".
"""
import os
import sys
import time

import fptarget


def main():
    fptarget.announce(sys.argv[1])
    n = 0
    while True:
        time.sleep(0.2)
        n += 1
        try:
            pid = os.fork()
        except OSError as e:
            fptarget.error("fork failed: %r" % (e,))
            continue
        if pid == 0:
            try:
                sum(range(1000))
            except BaseException:  # noqa: B902
                os._exit(3)
            sys.exit(0)  # a normal exit: the child finalizes Python
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        if code != 0:
            fptarget.error("child %d ended with status %d" % (pid, code))
        fptarget.report("forked %d status=%d" % (n, code))


if __name__ == "__main__":
    main()
