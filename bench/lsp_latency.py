#!/usr/bin/env python3
"""fp-lsp as an editor sees it: code lens latency, call-to-diagnostic latency, its memory and CPU.

A module of 2,000 lines and 200 functions is generated in a temporary directory and imported by
tests/targets/lsp_bench_host.py processes, which call each of its functions every 20 ms
(10,000 calls/s per process). The real fp-lsp is started and spoken to over pipes as an editor
does (tests/integration/lspclient.py); per interpreter and run:

- **1 process**: fp-lsp attached to one host: its resident memory (VmRSS) and CPU while idle
  (attached, the module open, nothing running: 5 s), then with 20 functions monitored (5 s);
- **codeLens**: the whole file monitored (200 functions, figures changing every second),
  `textDocument/codeLens` timed from request to response, --requests times (default 50), with
  fp-lsp's own CPU time per request (its CPU over as many requests, less its background rate
  measured just before), and
  `codeLens/resolve` of every lens it gave (1,000 lenses: what an editor showing the whole file
  resolves), timed as a whole, 5 times;
- **call -> diagnostic**: `fp.watch` on `watched`; the host is asked (SIGUSR1) to call it and
  reports time.time() just before the call; the latency is from there to the arrival (time.time()
  in the client's reader thread) of the publishDiagnostics carrying that call's argument,
  --calls times (default 20), one call at a time, after a first call that was seen (the agent
  arms a watch just after it answered fp.watch);
- **4 processes**: the same memory and CPU figures with four hosts attached.

Printed per interpreter: medians over --runs (default 3) of each run's p50 and p95 (nearest
rank), memory and CPU. Latencies include the Python client's own JSON work, as an editor's
include its own, but not its garbage collector's pauses (gc.freeze during the timed requests). Goals (issue 15): codeLens p95 <= 10 ms; call -> diagnostic p95 <= 200 ms;
fp-lsp <= 30 MB with 3 processes and 20 functions monitored; CPU while idle 0.
"""

import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import benchlib

sys.path.insert(0, os.path.join(benchlib.REPO, "tests", "integration"))
from lspclient import Lsp  # noqa: E402

FUNCTIONS = 200
LINES_PER_FUNCTION = 10  # 2,000 lines


def module_text():
    """200 functions of 10 lines each; the last is watched(seq), the one the bench calls."""
    out = []
    for k in range(FUNCTIONS - 1):
        out += [
            "def f%03d(x):" % k,
            '    """Function %d of the generated module."""' % k,
            "    a = x + %d" % k,
            "    b = a * 2",
            "    c = b - 1",
            "    d = c // 3",
            "    e = d %% %d" % (k % 7 + 2),
            "    g = [a, b, c, d, e]",
            "    return sum(g)",
            "",
        ]
    out += [
        "def watched(seq):",
        '    """The function the bench watches: called on demand."""',
        "    a = seq",
        "    b = a + seq",
        "    c = b",
        "    d = c",
        "    e = d",
        "    g = e",
        "    return g",
        "",
    ]
    assert len(out) == FUNCTIONS * LINES_PER_FUNCTION
    return "\n".join(out)


class TimedLsp(Lsp):
    """The test client, noting when each publishDiagnostics arrives (in its reader thread)."""

    def __init__(self, exe):
        self.arrivals = []  # (time.time(), uri, [messages])
        Lsp.__init__(self, exe)

    def _on_message(self, msg):
        if msg.get("method") == "textDocument/publishDiagnostics":
            p = msg["params"]
            self.arrivals.append((time.time(), p["uri"], [d["message"] for d in p["diagnostics"]]))
        Lsp._on_message(self, msg)


def cpu_ns(pid):
    """CPU time of every thread of pid so far (ns, from /proc/PID/task/*/schedstat)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def cpu_share(pid, seconds):
    """fp-lsp's CPU use over the next `seconds`, as a share of one core (percent)."""
    c0, t0 = cpu_ns(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_ns(pid) - c0) / ((time.monotonic() - t0) * 1e9)


def function_lenses(lsp, uri, what):
    return lsp.lenses_when(uri, lambda ls: sum(1 for l in ls if l["data"].get("function")) >= FUNCTIONS * 4, 30, what)


def start_server(fp_lsp, hosts, path):
    lsp = TimedLsp(fp_lsp)
    lsp.initialize()
    for h in hosts:
        r = lsp.execute("fp.attach", {"pid": h.pid}, timeout=60)
        if [a["pid"] for a in r["attached"]] != [h.pid]:
            raise benchlib.BenchError("attach to %d: %s" % (h.pid, json.dumps(r)))
    uri = lsp.open(path)
    function_lenses(lsp, uri, "a lens on every function")
    return lsp, uri


def resources(lsp, uri, seconds):
    """(RSS MB idle, CPU % idle, RSS MB with 20 monitored, CPU % with 20 monitored)."""
    pid = lsp.proc.pid
    time.sleep(1)  # the attach and the first code map settle
    idle_cpu = cpu_share(pid, seconds)
    idle_rss = rss_mb(pid)
    for k in range(20):
        lsp.execute("fp.monitor", {"uri": uri, "function": "f%03d" % k})
    lsp.lenses_when(
        uri,
        lambda ls: any(" call" in l["command"]["title"] for l in ls if l["data"].get("function") == "f019"),
        30,
        "f019's figures",
    )
    busy_cpu = cpu_share(pid, seconds)
    busy_rss = rss_mb(pid)
    lsp.execute("fp.monitor", {"uri": uri, "scope": "off"})
    return idle_rss, idle_cpu, busy_rss, busy_cpu


def lens_latency(lsp, uri, requests):
    """([codeLens ms], [resolve-all ms]) with every function of the file monitored."""
    lsp.execute("fp.monitor", {"uri": uri, "scope": "file"})
    lsp.lenses_when(
        uri,
        lambda ls: sum(1 for l in ls if "calls" in l["command"]["title"]) >= FUNCTIONS - 1,
        30,
        "figures on every function",
    )
    params = {"textDocument": {"uri": uri}}
    lens_ms = []
    resolve_ms = []
    # fp-lsp's own CPU per codeLens: over the requests, less what it spends meanwhile anyway
    # (the monitor reports), measured just before.
    pid = lsp.proc.pid
    background = cpu_share(pid, 2.0) / 100.0
    c0, t0 = cpu_ns(pid), time.monotonic()
    for _ in range(requests):
        lsp.request("textDocument/codeLens", params)
    spent = cpu_ns(pid) - c0 - background * (time.monotonic() - t0) * 1e9
    server_ms = max(0.0, spent) / requests / 1e6
    # The client's own garbage collector is kept off what it holds already (gc.freeze): a full
    # collection of this Python client's heap takes ~30 ms and would be counted as the server's.
    gc.collect()
    gc.freeze()
    try:
        for i in range(requests):
            t0 = time.perf_counter()
            lenses = lsp.request("textDocument/codeLens", params)
            lens_ms.append((time.perf_counter() - t0) * 1e3)
            if i < 5:
                t0 = time.perf_counter()
                for l in lenses:
                    lsp.request("codeLens/resolve", l)
                resolve_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        gc.unfreeze()
    lsp.execute("fp.monitor", {"uri": uri, "scope": "off"})
    return lens_ms, resolve_ms, server_ms


def arrival(lsp, uri, seq, timeout):
    """When the diagnostic of watched(seq) arrived (time.time()), or None after timeout s."""
    want = "args=(%d,)" % seq
    deadline = time.monotonic() + timeout
    with lsp.lock:
        while True:
            got = [a[0] for a in lsp.arrivals if a[1] == uri and any(want in m for m in a[2])]
            if got:
                return got[0]
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            lsp.lock.wait(min(left, 0.2))


def call(host, seq):
    """Has the host call watched(seq); returns the time.time() it took just before the call."""
    os.kill(host.pid, signal.SIGUSR1)
    line = host.readline(timeout=10)
    if not line.startswith("called %d " % seq):
        raise benchlib.BenchError("the host said %r" % line)
    return float(line.split()[2])


def diag_latency(lsp, uri, host, calls):
    """[ms] from the host's call of watched(seq) to the diagnostic with that seq."""
    lsp.execute("fp.watch", {"uri": uri, "function": "watched", "expr": "args", "limit": 1000000})
    # The agent arms the watch just after it answered: calls until one is seen.
    seq = 0
    for _ in range(10):
        seq += 1
        call(host, seq)
        if arrival(lsp, uri, seq, 2.0) is not None:
            break
    else:
        raise benchlib.BenchError("no watched call was seen in 10 tries")
    out = []
    for _ in range(calls):
        seq += 1
        called = call(host, seq)
        arrived = arrival(lsp, uri, seq, 10.0)
        if arrived is None:
            raise benchlib.BenchError("the diagnostic of call %d did not come within 10 s" % seq)
        out.append((arrived - called) * 1e3)
    lsp.execute("fp.stop", {"uri": uri, "function": "watched"})
    return out


def one_run(fp_lsp, py, path, args):
    figures = {}
    hosts = []
    try:
        for _ in range(4):
            hosts.append(benchlib.Target(py, "lsp_bench_host", path))
        lsp, uri = start_server(fp_lsp, hosts[:1], path)
        try:
            figures["1"] = resources(lsp, uri, args.seconds)
            figures["lens"], figures["resolve"], figures["lens_cpu"] = lens_latency(lsp, uri, args.requests)
            figures["diag"] = diag_latency(lsp, uri, hosts[0], args.calls)
            lsp.shutdown()
        finally:
            lsp.kill()
        lsp, uri = start_server(fp_lsp, hosts, path)
        try:
            figures["4"] = resources(lsp, uri, args.seconds)
            lsp.shutdown()
        finally:
            lsp.kill()
        for h in hosts:
            if h.proc.poll() is not None:
                raise benchlib.BenchError("a host exited (status %s)" % h.proc.poll())
    finally:
        for h in hosts:
            h.stop()
    return figures


def main():
    ap = benchlib.parser(__doc__, runs_default=3)
    ap.add_argument("--requests", type=int, default=50, help="codeLens requests per run (default 50)")
    ap.add_argument("--calls", type=int, default=20, help="watched calls per run (default 20)")
    ap.add_argument("--seconds", type=float, default=5.0, help="CPU measurement window (default 5 s)")
    args = ap.parse_args()
    fp, interpreters = benchlib.setup(args)
    fp_lsp = os.path.join(os.path.dirname(fp), "fp-lsp")
    tmp = tempfile.mkdtemp(prefix="fp-bench-lsp-")
    path = os.path.join(tmp, "benchmod.py")
    with open(path, "w") as f:
        f.write(module_text())
    print(
        "fp-lsp: %d-line module with %d functions, hosts calling each every 20 ms; %d runs; medians of the "
        "runs' figures" % (FUNCTIONS * LINES_PER_FUNCTION, FUNCTIONS, args.runs)
    )
    rows = []
    res_rows = []
    try:
        for py in interpreters:
            runs = []
            try:
                for _ in range(args.runs):
                    runs.append(one_run(fp_lsp, py, path, args))
            except benchlib.BenchError as e:
                rows.append([py.id, "error: %s" % e, "", "", "", ""])
                continue

            def med(key, q):
                return benchlib.median([benchlib.percentile(r[key], q) for r in runs])

            def res(n, i):
                return benchlib.median([r[n][i] for r in runs])

            rows.append(
                [
                    py.id,
                    "%.2f / %.2f" % (med("lens", 50), med("lens", 95)),
                    "%.2f" % benchlib.median([r["lens_cpu"] for r in runs]),
                    "%.0f / %.0f" % (med("resolve", 50), med("resolve", 95)),
                    "%.1f / %.1f" % (med("diag", 50), med("diag", 95)),
                    "%.1f" % benchlib.median([max(r["diag"]) for r in runs]),
                ]
            )
            for n in ("1", "4"):
                res_rows.append(
                    [py.id, n, "%.1f" % res(n, 0), "%.2f" % res(n, 1), "%.1f" % res(n, 2), "%.2f" % res(n, 3)]
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    benchlib.table(
        [
            "python",
            "codeLens p50/p95 ms",
            "fp-lsp CPU ms per codeLens",
            "resolve all 1000 p50/p95 ms",
            "call->diag p50/p95 ms",
            "call->diag max ms",
        ],
        rows,
    )
    print()
    benchlib.table(
        ["python", "processes", "idle RSS MB", "idle CPU %", "RSS MB, 20 monitored", "CPU %, 20 monitored"], res_rows
    )


if __name__ == "__main__":
    main()
