"""A host for bench/lsp_latency.py: imports a module from a file (a generated one, with many
functions) and keeps calling its functions, as a service keeps calling its code, and calls its
`watched(seq)` when asked, saying when.

Usage: lsp_bench_host.py READY MODULE_PATH [PERIOD_S=0.02]
Every PERIOD_S it calls once each function of the module whose name starts with "f" (with one
argument). On SIGUSR1 it calls watched(seq) with the next seq and reports "called SEQ T", T being
time.time() just before the call. Errors: "ERROR ...".
"""
import importlib.util
import signal
import sys
import time

import fptarget

_asked = [0]


def _on_usr1(signum, frame):
    _asked[0] += 1


def load(path):
    spec = importlib.util.spec_from_file_location("benchmod", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmod"] = module
    spec.loader.exec_module(module)
    return module


def main():
    module = load(sys.argv[2])
    period = fptarget.arg(3, 0.02)
    functions = [getattr(module, n) for n in sorted(vars(module)) if n.startswith("f") and callable(getattr(module, n))]
    signal.signal(signal.SIGUSR1, _on_usr1)
    fptarget.announce(sys.argv[1], functions=len(functions))
    done = 0
    i = 0
    while True:
        time.sleep(period)
        i += 1
        for f in functions:
            f(i)
        while _asked[0] > done:
            done += 1
            t = time.time()
            if module.watched(done) != done * 2:
                fptarget.error("watched(%d) changed" % done)
            fptarget.report("called %d %.6f" % (done, t))


if __name__ == "__main__":
    main()
