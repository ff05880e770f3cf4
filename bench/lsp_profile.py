#!/usr/bin/env python3
"""What fp-lsp's hot-line view costs: fp-lsp's own CPU per second of profiling at 100 Hz with 5
open documents, refreshed as an editor does (on each workspace/inlayHint/refresh it asks the
hints and lenses of every open document), and the slowdown of the profiled target.

The target is tests/targets/hot.py (CPU-bound pure Python, measuring its own rate per window).
Per round: a block of windows un-profiled, then a block profiled by fp.profile (started over
LSP, the first window after the start dropped), then fp.profile.stop (the flame graph written);
the ratio is the profiled block's median rate per CPU second of the target / the un-profiled
block's just before it. fp-lsp's CPU (utime + stime from /proc) is read over each profiled
block and over an idle block before any profile (expected 0). Printed per interpreter: medians
over rounds and runs. Goal: < 1% slowdown at 100 Hz, as fp perf.
"""

import os
import re
import sys
import threading
import time

import benchlib

sys.path.insert(0, os.path.join(benchlib.REPO, "tests", "integration"))
from lspclient import Lsp  # noqa: E402

RATE_LINE = re.compile(r"^round \d+ ips=(\d+) cpu_ips=(\d+)$")
DOCS = ("hot.py", "lsp_service.py", "traced.py", "known_stacks.py", "lsp_views.py")
CAPS = {
    "general": {"positionEncodings": ["utf-16"]},
    "workspace": {"codeLens": {"refreshSupport": True}, "inlayHint": {"refreshSupport": True}},
    "window": {"showDocument": {"support": False}},
}


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect(t, count, window):
    """The target's CPU-second rates of the next `count` whole windows (the one in flight dropped)."""
    rates = []
    t.readline(timeout=window * 10 + 5)
    while len(rates) < count:
        m = RATE_LINE.match(t.readline(timeout=window * 10 + 5))
        if not m:
            raise benchlib.BenchError("unexpected target output")
        rates.append(float(m.group(2)))
    return rates


class Editor(threading.Thread):
    """Asks every document's hints and lenses each time the server asks for a refresh."""

    def __init__(self, lsp, uris):
        threading.Thread.__init__(self, daemon=True)
        self.lsp, self.uris, self.done, self.asks = lsp, uris, False, 0

    def run(self):
        seen = 0
        while not self.done:
            with self.lsp.lock:
                self.lsp.lock.wait_for(lambda: self.done or self.lsp.count("workspace/inlayHint/refresh") > seen, 1)
                seen = self.lsp.count("workspace/inlayHint/refresh")
            if self.done:
                return
            for uri in self.uris:
                self.lsp.request(
                    "textDocument/inlayHint",
                    {
                        "textDocument": {"uri": uri},
                        "range": {"start": {"line": 0, "character": 0}, "end": {"line": 100000, "character": 0}},
                    },
                )
                self.lsp.request("textDocument/codeLens", {"textDocument": {"uri": uri}})
            self.asks += 1


def one_run(fp_lsp, py, rounds, windows, window):
    ratios, cpus, idle = [], [], None
    with benchlib.Target(py, "hot", window) as t:
        lsp = Lsp(fp_lsp)
        try:
            lsp.initialize(CAPS, {"fp": {"profile": {"refreshSeconds": 2, "open": "never"}}})
            uris = [lsp.open(os.path.join(benchlib.TARGETS, d)) for d in DOCS]
            editor = Editor(lsp, uris)
            editor.start()
            c0, w0 = cpu_s(lsp.proc.pid), time.monotonic()
            base = collect(t, windows, window)
            idle = (cpu_s(lsp.proc.pid) - c0) / (time.monotonic() - w0)
            for _ in range(rounds):
                base = collect(t, windows, window)
                lsp.execute("fp.profile", {"pid": t.pid, "rate": 100})
                c0, w0 = cpu_s(lsp.proc.pid), time.monotonic()
                prof = collect(t, windows, window)
                cpus.append((cpu_s(lsp.proc.pid) - c0) / (time.monotonic() - w0))
                r = lsp.execute("fp.profile.stop", {"pid": t.pid})
                for p in r["profiles"]:
                    os.unlink(p["file"])
                ratios.append(benchlib.median(prof) / benchlib.median(base))
            editor.done = True
            editor.join(30)
            if editor.asks == 0:
                raise benchlib.BenchError("the editor was never asked to refresh its hints")
        finally:
            lsp.kill()
    return ratios, cpus, idle


def main():
    ap = benchlib.parser(__doc__, runs_default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=8, help="windows per block")
    ap.add_argument("--window", type=float, default=0.5, help="the target's window, in seconds")
    args = ap.parse_args()
    _, interpreters = benchlib.setup(args)
    fp_lsp = os.path.join(os.path.abspath(args.build), "bin", "fp-lsp")
    print(
        "fp-lsp profiling hot.py at 100 Hz, 5 open documents; %d run(s) x %d rounds of %d x %.1f s windows"
        % (args.runs, args.rounds, args.windows, args.window)
    )
    rows = []
    for py in interpreters:
        ratios, cpus, idles = [], [], []
        try:
            for _ in range(args.runs):
                r, c, i = one_run(fp_lsp, py, args.rounds, args.windows, args.window)
                ratios += r
                cpus += c
                idles.append(i)
        except benchlib.BenchError as e:
            rows.append([py.id, "error: %s" % e, "", ""])
            continue
        rows.append(
            [
                py.id,
                "%.4f" % benchlib.median(ratios),
                "%.2f%%" % (100 * benchlib.median(cpus)),
                "%.2f%%" % (100 * benchlib.median(idles)),
            ]
        )
    benchlib.table(["python", "target rate profiled / not", "fp-lsp CPU profiling", "fp-lsp CPU idle"], rows)


if __name__ == "__main__":
    main()
