"""`monitor`: per-function figures aggregated inside the target — calls, errors, total and
largest cost, and a latency histogram with fixed buckets (no allocation per call) — for many
functions at once, reported as one small notification per interval with the functions that had
calls, instead of an event per call (see protocol/methods.md, monitor.start).

The reports are built and sent on the client's worker thread, at each interval (a timer of the
agent's, events.defer_after): the observed threads only count. Where no timer can be had, the
first call that ends after an interval asks for the report instead.
"""

import _thread
import itertools
import time

from . import events, instrument, locate, registry, streams
from .errors import AgentError, invalid_param
from .params import check_names, get_int

REPORT = "monitor/report"
END = "monitor/end"

BUCKETS = 96  # 4 per octave from 1 us: the last holds everything from about 16.8 s up
DEFAULT_INTERVAL_S = 1.0
MAX_FUNCTIONS = 256

_ids = itertools.count(1)
_monitors = {}  # monitor id -> _Monitor


def bucket_of(cost_ns):
    """The histogram bucket of a cost: floor(4 * log2(cost / 1 us)), 0 to 95, with integers only
    (this runs at every call)."""
    us = cost_ns // 1000
    if us < 1:
        return 0
    octave = us.bit_length() - 1
    if octave >= 2:
        quarter = (us >> (octave - 2)) & 3
    else:
        quarter = (us << (2 - octave)) & 3
    b = 4 * octave + quarter
    return b if b < BUCKETS else BUCKETS - 1


def quantile_ms(hist, total, q, max_ms):
    """The q-quantile of a histogram in ms: the upper bound of its bucket, at most max_ms."""
    if total <= 0:
        return 0.0
    rank = max(1, int(-(-q * total // 1)))
    seen = 0
    for b, n in enumerate(hist):
        seen += n
        if seen >= rank:
            upper = 1e-3 * 2 ** ((b + 1) / 4.0)
            return min(upper, max_ms) if max_ms > 0 else upper
    return max_ms


class _Figures(instrument.Probe):
    """One monitored function: the probe the engine calls, and what it counted."""

    def __init__(self, monitor, key, located):
        self.monitor = monitor
        self.key = key
        self.located = located
        self.calls = 0
        self.errors = 0
        self.total_ns = 0
        self.max_ns = 0
        self.min_ns = None
        self.hist = [0] * BUCKETS
        self.reported_calls = 0  # calls at the last report
        # The interval since the last report: what the terminal shows per line.
        self.last_hist = [0] * BUCKETS
        self.last_errors = 0
        self.last_total_ns = 0
        self.interval_max_ns = 0
        self.install_id = None
        self.qualname = located.to_json()["qualname"]

    def counts_natively(self):
        """Whether the engine may count the calls in C (agent/native/counter.c) instead of
        calling enter/exit: the reports come from the agent's timer, not from a call's exit."""
        m = self.monitor
        return m.armed and m.timed and not m.done

    def sync(self, lock=False):
        """Adds what the engine counted itself since the last sync; lock: take the monitor's
        lock for it (the caller does not hold it)."""
        if lock:
            with self.monitor.lock:
                self.sync()
            return
        for calls, errors, total_ns, max_ns, min_ns, hist in instrument.native_counts(self):
            if not calls:
                continue
            self.calls += calls
            self.errors += errors
            self.total_ns += total_ns
            self.max_ns = max(self.max_ns, max_ns)
            self.interval_max_ns = max(self.interval_max_ns, max_ns)
            self.min_ns = min_ns if self.min_ns is None else min(self.min_ns, min_ns)
            for b, n in hist:
                self.hist[b] += n

    def enter(self, target, args, kwargs, checked=False):
        if self.monitor.done or not self.monitor.armed:
            return instrument.NO_OBSERVE
        return True

    def exit(self, token, return_obj, exception, cost_ns):
        m = self.monitor
        with m.lock:
            self.calls += 1
            if exception is not None:
                self.errors += 1
            self.total_ns += cost_ns
            if cost_ns > self.max_ns:
                self.max_ns = cost_ns
            if cost_ns > self.interval_max_ns:
                self.interval_max_ns = cost_ns
            if self.min_ns is None or cost_ns < self.min_ns:
                self.min_ns = cost_ns
            self.hist[bucket_of(cost_ns)] += 1
            due = not m.timed and not m.report_asked and time.monotonic() >= m.next_report
            if due:
                m.report_asked = True
        if due:
            events.defer(m.client_id, m.report)

    def model(self):
        """The figures since the start, and those of the interval since the last report (which
        this report closes)."""
        interval_hist = [n - o for n, o in zip(self.hist, self.last_hist)]
        calls = self.calls - self.reported_calls
        interval = {
            "calls": calls,
            "errors": self.errors - self.last_errors,
            "total_ms": (self.total_ns - self.last_total_ns) / 1e6,
            "max_ms": self.interval_max_ns / 1e6,
            "p50_ms": quantile_ms(interval_hist, calls, 0.5, self.interval_max_ns / 1e6),
            "p95_ms": quantile_ms(interval_hist, calls, 0.95, self.interval_max_ns / 1e6),
        }
        self.last_hist = list(self.hist)
        self.last_errors = self.errors
        self.last_total_ns = self.total_ns
        self.interval_max_ns = 0
        return {
            "key": self.key,
            "qualname": self.qualname,
            "calls": self.calls,
            "errors": self.errors,
            "new_calls": self.calls - self.reported_calls,
            "total_ms": self.total_ns / 1e6,
            "max_ms": self.max_ns / 1e6,
            "min_ms": (self.min_ns or 0) / 1e6,
            "hist": [[b, n] for b, n in enumerate(self.hist) if n],
            "p50_ms": quantile_ms(self.hist, self.calls, 0.5, self.max_ns / 1e6),
            "p95_ms": quantile_ms(self.hist, self.calls, 0.95, self.max_ns / 1e6),
            "interval": interval,
        }


class _Monitor(streams.Stream):
    end_method = END
    table = _monitors

    def __init__(self, client_id, interval_s, limit):
        self.id = next(_ids)
        self.client_id = client_id
        self.interval_s = interval_s
        self.limit = limit  # reports before it ends (0: until stopped)
        self.figures = []
        self.install_id = None
        self.cleanup_id = None
        self.done = False
        self.armed = False
        self.reports = 0
        self.dropped = 0
        self.lock = _thread.allocate_lock()
        self.started_at = time.monotonic()
        self.last_report = self.started_at
        self.next_report = self.started_at + interval_s
        self.report_asked = False
        self.timed = False  # reports come from the agent's timer

    def arm(self):
        self.armed = True
        self._schedule()
        self._refresh()

    def _refresh(self):
        for f in self.figures:
            instrument.refresh(f)

    def _schedule(self):
        """The next report, at its time, on the client's worker thread."""
        later = getattr(events, "defer_after", None)
        delay = max(0.0, self.next_report - time.monotonic())
        was = self.timed
        try:
            self.timed = bool(later and later(self.client_id, delay, self.report))
        except Exception:
            self.timed = False
        if was and not self.timed and self.armed:
            self._refresh()  # the calls' exits ask for the reports again: they must run

    def install_all(self):
        """Installs a probe on each function. One that cannot be observed beside the others (on
        the code-swap engine, a nested function and the function that defines it) is left out
        and its error returned ({key: AgentError}) when others are observed; when none is, the
        first error is raised."""
        self.table[self.id] = self
        refused = {}
        first = None
        try:
            for f in self.figures:
                try:
                    f.install_id = instrument.install(self.client_id, f.located, f, "monitor")
                except AgentError as exc:
                    refused[f.key] = exc
                    first = first or exc
            if not any(f.install_id is not None for f in self.figures):
                raise first
        except BaseException:
            self._uninstall()
            self.table.pop(self.id, None)
            raise
        self.figures = [f for f in self.figures if f.install_id is not None]
        self.cleanup_id = registry.add(
            self.client_id, "monitor", self._gone, "monitor of %d function(s)" % len(self.figures)
        )
        return refused

    def _uninstall(self):
        for f in self.figures:
            if f.install_id is not None:
                f.sync(lock=True)  # before the engine forgets what it counted
                instrument.uninstall(f.install_id)
                f.install_id = None

    def _remove(self):
        self.forget()
        self._uninstall()
        if self.cleanup_id is not None:
            registry.remove(self.cleanup_id)

    def report(self):
        """On the client's worker thread: the figures of the functions that had calls."""
        last = False
        with self.lock:
            self.report_asked = False
            if self.done:
                return
            for f in self.figures:
                f.sync()
            now = time.monotonic()
            changed = [f for f in self.figures if f.calls != f.reported_calls]
            if not changed and self.reports > 0:
                # Nothing new: no report, the interval goes on from the last one sent.
                self.next_report = now + self.interval_s
                quiet = True
            else:
                quiet = False
        if quiet:
            if self.timed:
                self._schedule()
            return
        with self.lock:
            if self.done:
                return
            models = [f.model() for f in changed]
            for f in changed:
                f.reported_calls = f.calls
            interval = now - self.last_report
            self.last_report = now
            self.next_report = now + self.interval_s
            self.reports += 1
            params = {
                "monitor_id": self.id,
                "seq": self.reports,
                "t": time.time(),
                "interval_s": interval,
                "since_start_s": now - self.started_at,
                "functions": models,
            }
            if self.dropped:
                params["dropped"] = self.dropped
            if not events.notify(self.client_id, REPORT, params):
                self.dropped += 1
            last = self.limit and self.reports >= self.limit
            if last:
                self.done = True
                events.notify(self.client_id, END, self.summary("limit"))
        if last:
            self._remove()
        elif self.timed:
            self._schedule()

    def summary(self, reason):
        # Often under self.lock (Stream.stop): sync takes no lock. The engine's counting and
        # exit() never run for the same figures at once (counts_natively says which).
        for f in self.figures:
            f.sync()
        return {
            "monitor_id": self.id,
            "reason": reason,
            "reports": self.reports,
            "dropped": self.dropped,
            "functions": [{"key": f.key, "calls": f.calls, "errors": f.errors} for f in self.figures],
        }


START_PARAMS = ("functions", "interval_s", "limit")
FUNCTION_PARAMS = ("module", "class", "method", "nested")


def start(client_id, params):
    check_names(params, START_PARAMS)
    functions = params.get("functions")
    if not isinstance(functions, list) or not functions or len(functions) > MAX_FUNCTIONS:
        raise AgentError(
            -32602,
            "functions must be a list of 1 to %d {module, class, method, nested}" % MAX_FUNCTIONS,
            {"param": "functions"},
        )
    interval = params.get("interval_s", DEFAULT_INTERVAL_S)
    if interval is None:
        interval = DEFAULT_INTERVAL_S
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.05 <= interval <= 3600:
        raise invalid_param("interval_s", "parameter 'interval_s' must be a number of seconds from 0.05 to 3600")
    limit = get_int(params, "limit", default=0, low=0, high=1000000)
    monitor = _Monitor(client_id, interval, limit)
    results = []
    first_error = None
    seen = set()
    for key, spec in enumerate(functions):
        if not isinstance(spec, dict):
            raise AgentError(
                -32602, "functions[%d] must be an object {module, class, method, nested}" % key, {"param": "functions"}
            )
        check_names(spec, FUNCTION_PARAMS)
        try:
            located = locate.locate_function(
                spec.get("module"), spec.get("class") or None, spec.get("method"), spec.get("nested") or None
            )
        except AgentError as exc:
            first_error = first_error or exc
            results.append({"key": key, "error": exc.to_json()})
            continue
        if located.key in seen:  # the same function named twice: counted once
            results.append({"key": key, "located": located.to_json(), "same_as_earlier": True})
            continue
        seen.add(located.key)
        monitor.figures.append(_Figures(monitor, key, located))
        results.append({"key": key, "located": located.to_json()})
    if not monitor.figures:
        raise first_error
    refused = monitor.install_all()
    for r in results:
        if r["key"] in refused:
            r.pop("located", None)
            r["error"] = refused[r["key"]].to_json()
    result = {
        "monitor_id": monitor.id,
        "stream": events.stream("monitor_id", monitor.id, END, "monitor.stop"),
        "functions": results,
        "interval_s": interval,
        "limit": limit,
        "buckets": {"base_ns": 1000, "per_octave": 4, "count": BUCKETS},
        "engine": instrument.ENGINE,
    }
    return events.Started(result, monitor.arm)


def stop(client_id, params):
    return streams.stop_request(client_id, params, _monitors, "monitor_id")
