"""`mem`: live objects by type (summary, and the change over an interval), and with tracemalloc
where memory is allocated (top, and the change of that over an interval); see
protocol/methods.md, mem.*.

The summary walks the objects the garbage collector tracks (gc.get_objects(): instances,
containers) within a time budget, in 16 interleaved stripes so that a summary cut short by the
budget is an even sample of the whole. What it adds to the target's peak memory is that one list
of references (8 bytes per object) and a table per type: the objects are counted by type in C
(Counter over map(type, ...)), and only objects whose size varies (lists, dicts, tuples...) are
measured one by one. Objects the collector does not track (str, int, float, bytes, and tuples
and dicts of those) are found, on request, as the referents of the tracked ones, each counted
once through a bitmap of addresses (one bit per 16 bytes of heap, ~1% of the heap's size).
"""

import _thread
import itertools
import sys
import time

from . import events, registry, render, streams
from .errors import invalid_param
from .params import check_names, get_bool, get_int, get_str

PROGRESS = "mem/progress"
END = "mem/end"

DEFAULT_LIMIT = 20
DEFAULT_BUDGET_S = 5.0
STRIPES = 16  # a summary cut by its budget covers whole stripes: an even sample of the objects
SMALL = 100000  # below this many objects, one pass (no stripes)
DEFAULT_TRACEBACK = 5
TRACE_FRAMES = 10  # frames tracemalloc keeps when fp starts it (more if --traceback asks)

_OWN_TYPES = (__name__.rpartition(".")[0] + ".",)
_ids = itertools.count(1)
_diffs = {}  # diff id -> _Diff


# --------------------------------------------------------------------------------------------
# Requests


SUMMARY_PARAMS = ("limit", "order", "budget_s", "untracked")
DIFF_PARAMS = ("interval_s", "limit", "order", "budget_s", "untracked", "traces", "traceback")
TOP_PARAMS = ("limit", "traceback")


def summary(client_id, params):
    """Live objects by type, with the process's and the interpreter's own figures."""
    check_names(params, SUMMARY_PARAMS)
    limit, descending, budget, untracked = _summary_params(params)
    counted = _summarize(budget, untracked)
    result = counted.model(limit, descending)
    result.update(_process_figures())
    return result


def diff(client_id, params):
    """Two snapshots interval_s apart, the second taken on the client's worker when it is due;
    the request answers at once (a stream): progress notifications while it waits, and the
    end notification carries the change."""
    check_names(params, DIFF_PARAMS)
    interval = _get_number(params, "interval_s", None, 0.1, 86400.0, required=True)
    limit, descending, budget, untracked = _summary_params(params)
    traces = get_bool(params, "traces")
    traceback_n = get_int(params, "traceback", DEFAULT_TRACEBACK, 1, 100)
    d = _Diff(client_id, interval, limit, descending, budget, untracked, traces, traceback_n)
    first = d.first()
    result = {
        "diff_id": d.id,
        "stream": events.stream("diff_id", d.id, END, "mem.stop"),
        "interval_s": interval,
        "traces": traces,
        "limit": limit,
        "order": "descending" if descending else "ascending",
        "first": first,
    }
    return events.Started(result, d.arm)


def stop(client_id, params):
    """Stop one mem diff of this client (diff_id), or all of them."""
    return streams.stop_request(client_id, params, _diffs, "diff_id")


def top(client_id, params):
    """Where the memory now allocated was allocated (tracemalloc), by line, biggest first."""
    check_names(params, TOP_PARAMS)
    limit = get_int(params, "limit", DEFAULT_LIMIT, 1, 10000)
    traceback_n = get_int(params, "traceback", DEFAULT_TRACEBACK, 1, 100)
    tracing = tracing_for(client_id, traceback_n)
    import tracemalloc

    snapshot = _snapshot()
    by_line = snapshot.statistics("lineno")
    total_size = sum(s.size for s in by_line)
    total_count = sum(s.count for s in by_line)
    tracebacks = _tracebacks(snapshot, by_line[:limit])
    rows = []
    for stat in by_line[:limit]:
        frame = stat.traceback[0]
        rows.append(
            {
                "file": frame.filename,
                "line": frame.lineno,
                "source": _line(frame.filename, frame.lineno),
                "size": stat.size,
                "count": stat.count,
                "traceback": _frames(tracebacks.get((frame.filename, frame.lineno)), traceback_n),
            }
        )
    current, peak = tracemalloc.get_traced_memory()
    return {
        "tracemalloc": tracing,
        "limit": limit,
        "top": rows,
        "lines": len(by_line),
        "total": {"size": total_size, "count": total_count},
        "traced_bytes": current,
        "traced_peak_bytes": peak,
        "tracemalloc_overhead_bytes": tracemalloc.get_tracemalloc_memory(),
    }


def off(client_id, params):
    """This client no longer needs tracemalloc: fp stops it if fp started it and no other client
    of fp still uses it."""
    check_names(params, ())
    import tracemalloc

    mine = registry.of_client(client_id, "tracemalloc")
    for installation in mine:
        registry.remove(installation.id)
    tracing = tracemalloc.is_tracing()
    if not mine:
        message = "fp had not started tracemalloc for this client; it is %s" % (
            "running (started by %s)" % ("fp for another client" if _Tracing.users else "the program")
            if tracing
            else "not running"
        )
    elif tracing:
        message = "tracemalloc keeps running: %s" % (
            "another fp client uses it" if _Tracing.users else "the program started it"
        )
    else:
        message = "tracemalloc stopped; its traces and their memory are freed"
    return {"stopped": bool(mine) and not tracing, "tracing": tracing, "message": message}


# --------------------------------------------------------------------------------------------
# Summaries of the live objects


def _summary_params(params):
    limit = get_int(params, "limit", DEFAULT_LIMIT, 1, 100000)
    order = get_str(params, "order") or "descending"
    if order not in ("descending", "ascending"):
        raise invalid_param("order", 'parameter \'order\' must be "descending" or "ascending", not %r' % order)
    budget = _get_number(params, "budget_s", DEFAULT_BUDGET_S, 0.05, 3600.0)
    return limit, order == "descending", budget, get_bool(params, "untracked")


class _Counted(object):
    """Per type name: [count, total shallow size]; what was covered and how long it took."""

    def __init__(self):
        self.types = {}
        self.sizers = {}  # id(type) -> (type, _sizer()), for this summary (the objects keep the types alive)
        self.objects = 0  # tracked objects in the process
        self.covered = 0  # tracked objects counted (all, unless the budget ran out)
        self.untracked = None  # untracked objects counted, when asked
        self.untracked_complete = None
        self.seconds = 0.0
        self.budget = 0.0

    def add(self, cls, count, size):
        name = render.type_name(cls)
        if name.startswith(_OWN_TYPES):
            return  # the agent's own objects are not the program's
        row = self.types.get(name)
        if row is None:
            self.types[name] = [count, size]
        else:
            row[0] += count
            row[1] += size

    def share(self):
        return self.covered / float(self.objects) if self.objects else 1.0

    def meta(self):
        meta = {
            "objects": self.objects,
            "covered": self.covered,
            "share": round(self.share(), 4),
            "complete": self.covered == self.objects,
            "seconds": round(self.seconds, 3),
            "budget_s": self.budget,
            "types": len(self.types),
        }
        if self.untracked is not None:
            meta["untracked_objects"] = self.untracked
            meta["untracked_complete"] = self.untracked_complete
        return meta

    def model(self, limit, descending):
        rows = sorted(self.types.items(), key=lambda kv: (kv[1][1], kv[1][0], kv[0]), reverse=descending)
        total_count = sum(r[0] for r in self.types.values())
        total_size = sum(r[1] for r in self.types.values())
        result = {
            "rows": [{"type": name, "count": r[0], "size": r[1]} for name, r in rows[:limit]],
            "total": {"count": total_count, "size": total_size},
            "limit": limit,
            "order": "descending" if descending else "ascending",
            "sizes": "shallow",
            "untracked": self.untracked is not None,
        }
        result.update(self.meta())
        return result


def _summarize(budget, untracked=False):
    import gc

    counted = _Counted()
    counted.budget = budget
    t0 = time.perf_counter()
    deadline = t0 + budget
    objects = gc.get_objects()
    try:
        counted.objects = len(objects)
        stripes = STRIPES if len(objects) > SMALL else 1
        seen = _Seen() if untracked else None
        pending = []  # untracked containers whose own referents are still to be counted
        for k in range(stripes):
            if k and time.perf_counter() > deadline:
                break
            part = objects[k::stripes] if stripes > 1 else objects
            _count(part, counted)
            counted.covered += len(part)
            if seen is not None:
                _count_untracked(part, counted, seen, pending, deadline)
            del part
        if seen is not None:
            counted.untracked = seen.count
            counted.untracked_complete = counted.covered == counted.objects and not pending
    finally:
        del objects
    counted.seconds = time.perf_counter() - t0
    return counted


def _count(part, counted):
    """Adds part's objects to counted: counts by type in C; sizes as count x size for types whose
    instances all have one size, else measured by the type's own __sizeof__ (one C pass per
    common type, a loop for rare ones). Types are keyed by id: hashing a class runs its
    metaclass's __hash__, which may be the program's code (fp runs none of it)."""
    import collections
    import functools
    import operator

    by_type = collections.Counter(map(id, map(type, part)))
    samples = None
    variable = {}
    for key, count in by_type.items():
        entry = counted.sizers.get(key)
        if entry is None:
            if samples is None:
                samples = dict(zip(map(id, map(type, part)), part))  # one instance of each type, in C
            cls = type(samples[key])
            entry = counted.sizers[key] = (cls, _sizer(cls, samples[key]))
        cls, (fixed, measure, head) = entry
        if fixed is not None:
            counted.add(cls, count, count * fixed)
        else:
            variable[key] = (cls, count, measure, head)
    del samples
    if not variable:
        return
    common = [key for key, v in variable.items() if v[1] >= max(1000, len(part) // 50)]
    for key in common:
        cls, count, measure, head = variable.pop(key)
        select = itertools.compress(part, map(functools.partial(operator.is_, cls), map(type, part)))
        counted.add(cls, count, sum(map(measure, select)) + head * count)
    if variable:
        sizes = dict.fromkeys(variable, 0)
        for obj in itertools.compress(part, map(variable.__contains__, map(id, map(type, part)))):
            key = id(type(obj))
            sizes[key] += variable[key][2](obj)
        for key, (cls, count, _measure, head) in variable.items():
            counted.add(cls, count, sizes[key] + head * count)


_GC_FLAG = 1 << 14  # Py_TPFLAGS_HAVE_GC
_GC_HEAD = sys.getsizeof([]) - [].__sizeof__()


def _sizer(cls, sample):
    """How instances of cls are measured, as sys.getsizeof would (__sizeof__ plus the collector's
    header), worked out once per summary on `sample`: (the size of every instance or None,
    measure(obj) -> its __sizeof__, what getsizeof adds). A fixed size when no instance can
    differ (no items, object's own __sizeof__); else the type's __sizeof__ called directly when
    it is C (a method descriptor: no lookup per object, several times faster than getsizeof),
    else object's, since fp runs none of the program's code (a __sizeof__ written in Python)."""
    import types

    getsizeof = sys.getsizeof
    try:
        own = _own_sizeof(cls)
        if own is None and type.__getattribute__(cls, "__itemsize__") == 0:
            return getsizeof(sample, 0), None, 0
        if isinstance(own, (types.MethodDescriptorType, types.WrapperDescriptorType)):
            return None, own, getsizeof(sample, 0) - own(sample)
        if own is None:
            return None, object.__sizeof__, getsizeof(sample, 0) - object.__sizeof__(sample)
        return None, object.__sizeof__, _GC_HEAD if type.__getattribute__(cls, "__flags__") & _GC_FLAG else 0
    except BaseException:
        return None, object.__sizeof__, 0


def _own_sizeof(cls):
    """The __sizeof__ a type defines itself (not object's), or None."""
    for klass in type.__getattribute__(cls, "__mro__"):
        if klass is object:
            return None
        method = type.__getattribute__(klass, "__dict__").get("__sizeof__")
        if method is not None:
            return method
    return None


class _Seen(object):
    """Which untracked objects were counted already: one bit per 16 bytes of address (objects
    are 16-byte aligned), in a page of 512 bytes per 64 KiB of address space touched."""

    def __init__(self):
        self.pages = {}
        self.count = 0


def _count_untracked(part, counted, seen, pending, deadline):
    """Counts, once each, the untracked objects the tracked ones in part refer to, and what the
    untracked containers among them refer to."""
    import gc

    is_tracked = gc.is_tracked
    get_referents = gc.get_referents
    pages = seen.pages
    found = {}  # id(type) -> [count, size, its sizer, the type]
    chunk = 10000
    queue = [part]
    while queue:
        source = queue.pop()
        for start in range(0, len(source), chunk):
            if time.perf_counter() > deadline:
                pending.append(True)
                queue = []
                break
            refs = get_referents(*source[start : start + chunk])
            containers = []
            for obj in itertools.filterfalse(is_tracked, refs):
                address = id(obj)
                key = address >> 16
                page = pages.get(key)
                if page is None:
                    page = pages[key] = bytearray(512)
                index = (address >> 7) & 511
                bit = 1 << ((address >> 4) & 7)
                byte = page[index]
                if byte & bit:
                    continue
                page[index] = byte | bit
                cls = type(obj)
                row = found.get(id(cls))
                if row is None:
                    entry = counted.sizers.get(id(cls))
                    if entry is None:
                        entry = counted.sizers[id(cls)] = (cls, _sizer(cls, obj))
                    row = found[id(cls)] = [0, 0, entry[1], cls]
                row[0] += 1
                fixed, measure, head = row[2]
                row[1] += fixed if fixed is not None else measure(obj) + head
                if cls is tuple or cls is dict or cls is frozenset:
                    containers.append(obj)
            del refs
            if containers:
                queue.append(containers)
    for count, size, _sizer_of, cls in found.values():
        seen.count += count
        counted.add(cls, count, size)


def _diff_model(before, after, limit, descending):
    """The change per type between two summaries; estimated (each scaled to the whole by its
    covered share) when either was cut short by its budget."""
    estimated = not (before.covered == before.objects and after.covered == after.objects)
    sb, sa = before.share() or 1.0, after.share() or 1.0
    rows = []
    for name in set(before.types) | set(after.types):
        c0, s0 = before.types.get(name, (0, 0))
        c1, s1 = after.types.get(name, (0, 0))
        if estimated:
            dc = int(round(c1 / sa - c0 / sb))
            ds = int(round(s1 / sa - s0 / sb))
        else:
            dc, ds = c1 - c0, s1 - s0
        if dc or ds:
            rows.append({"type": name, "count": dc, "size": ds, "count_after": c1, "size_after": s1})
    rows.sort(key=lambda r: (r["size"], r["count"], r["type"]), reverse=descending)
    return {
        "rows": rows[:limit],
        "changed_types": len(rows),
        "estimated": estimated,
        "total": {"count": sum(r["count"] for r in rows), "size": sum(r["size"] for r in rows)},
    }


def _process_figures():
    import gc

    figures = {"process": _proc_status()}
    interpreter = {
        "allocated_blocks": sys.getallocatedblocks(),
        "gc": {
            "enabled": gc.isenabled(),
            "counts": list(gc.get_count()),
            "thresholds": list(gc.get_threshold()),
            "generations": [dict(s, generation=i) for i, s in enumerate(gc.get_stats())],
            "garbage": len(gc.garbage),
        },
    }
    figures["interpreter"] = interpreter
    return figures


def _proc_status():
    """RSS now and its high-water mark, from /proc/self/status (bytes; None where unreadable)."""
    wanted = {"VmRSS": "rss_bytes", "VmHWM": "rss_peak_bytes", "VmSize": "vm_bytes"}
    out = dict.fromkeys(wanted.values())
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in wanted:
                    parts = value.split()
                    out[wanted[key]] = int(parts[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


# --------------------------------------------------------------------------------------------
# mem diff: a stream waiting on the client's worker without holding it


class _Diff(streams.Stream):
    end_method = END
    table = _diffs

    def __init__(self, client_id, interval, limit, descending, budget, untracked, traces, traceback_n):
        self.id = next(_ids)
        self.client_id = client_id
        self.interval = interval
        self.limit = limit
        self.descending = descending
        self.budget = budget
        self.untracked = untracked
        self.traces = traces
        self.traceback_n = traceback_n
        self.lock = _thread.allocate_lock()
        self.done = False
        self.install_id = None
        self.cleanup_id = None
        self.before = None
        self.tracing = None
        self.started = None
        self.reports = 0

    def first(self):
        """The first snapshot, taken in the request itself; returns what the result says of it."""
        if self.traces:
            self.tracing = tracing_for(self.client_id, self.traceback_n)
            self.before = _snapshot()
            first = {"tracemalloc": self.tracing, "traces": len(self.before.traces)}
        else:
            self.before = _summarize(self.budget, self.untracked)
            first = self.before.meta()
        self.started = time.monotonic()
        self.table[self.id] = self
        self.cleanup_id = registry.add(self.client_id, "mem diff", self._gone, "mem diff %d" % self.id)
        return first

    def arm(self):
        self._schedule()

    def _step(self):
        # progress about every second, at most 20 reports for a long interval
        return max(1.0, self.interval / 20.0)

    def _schedule(self):
        left = self.interval - (time.monotonic() - self.started)
        wait = min(self._step(), max(0.0, left))
        if not events.defer_after(self.client_id, wait, self._tick):
            self._finish()  # cannot wait (no timer left): the second snapshot now, said in the end

    def _tick(self):
        if self.done:
            return
        elapsed = time.monotonic() - self.started
        if elapsed >= self.interval:
            self._finish()
            return
        self.reports += 1
        events.notify(
            self.client_id,
            PROGRESS,
            {
                "diff_id": self.id,
                "elapsed_s": round(elapsed, 3),
                "interval_s": self.interval,
                "left_s": round(self.interval - elapsed, 3),
            },
        )
        self._schedule()

    def _finish(self):
        with self.lock:
            if self.done:
                return
            self.done = True
        end = self.summary("done")
        try:
            end.update(self._compare())
        except Exception as exc:  # the end must come: say what went wrong
            from .errors import exception_text

            end["reason"] = "failed"
            end["error"] = exception_text(exc)
        events.notify(self.client_id, END, end)
        self._remove()

    def _compare(self):
        elapsed = time.monotonic() - self.started
        if self.traces:
            after = _snapshot()
            out = _trace_diff(self.before, after, self.limit, self.descending, self.traceback_n)
            out["tracemalloc"] = self.tracing
        else:
            after = _summarize(self.budget, self.untracked)
            out = _diff_model(self.before, after, self.limit, self.descending)
            out["before"] = self.before.meta()
            out["after"] = after.meta()
        out["elapsed_s"] = round(elapsed, 3)
        return out

    def summary(self, reason):
        return {
            "diff_id": self.id,
            "reason": reason,
            "interval_s": self.interval,
            "traces": self.traces,
            "limit": self.limit,
            "order": "descending" if self.descending else "ascending",
        }

    def forget(self):
        streams.Stream.forget(self)
        self.before = None  # a tracemalloc snapshot may be big


# --------------------------------------------------------------------------------------------
# tracemalloc: started on demand, stopped when fp's last user of it goes (if fp started it)


class _Tracing(object):
    started_by_fp = False
    since = None  # time.time() when fp started it
    users = {}  # client id -> registry installation id


def tracing_for(client_id, traceback_n):
    """Makes sure tracemalloc traces, for this client; returns what the result says about it."""
    import tracemalloc

    started_now = False
    if not tracemalloc.is_tracing():
        tracemalloc.start(max(TRACE_FRAMES, traceback_n))
        _Tracing.started_by_fp = True
        _Tracing.since = time.time()
        started_now = True
    if _Tracing.started_by_fp and client_id not in _Tracing.users:
        _Tracing.users[client_id] = registry.add(client_id, "tracemalloc", lambda: _release(client_id), "tracemalloc")
    limit = tracemalloc.get_traceback_limit()
    info = {
        "started_now": started_now,
        "started_by": "fp" if _Tracing.started_by_fp else "the program",
        "since": _Tracing.since if _Tracing.started_by_fp else None,
        "traceback_limit": limit,
        "note": _tracing_note(started_now),
    }
    if traceback_n > limit:
        info["traceback_note"] = (
            "tracemalloc keeps %d frame%s per allocation (set when it started), fewer than the %d "
            "asked for" % (limit, "s" if limit != 1 else "", traceback_n)
        )
    return info


def _tracing_note(started_now):
    if not _Tracing.started_by_fp:
        return "tracemalloc was started by the program; fp leaves it running"
    if started_now:
        return (
            "fp started tracemalloc just now: only what is allocated from now on is seen (memory allocated "
            "before is not in these figures); ask again later in this session, or use mem diff --traces "
            "--interval S"
        )
    return "fp started tracemalloc at %s: memory allocated before that is not seen" % time.strftime(
        "%H:%M:%S", time.localtime(_Tracing.since)
    )


def _release(client_id):
    import tracemalloc

    _Tracing.users.pop(client_id, None)
    if _Tracing.users or not _Tracing.started_by_fp:
        return
    _Tracing.started_by_fp = False
    _Tracing.since = None
    if tracemalloc.is_tracing():
        tracemalloc.stop()


def _snapshot():
    """A tracemalloc snapshot without fp's own allocations (the agent's package and tracemalloc)."""
    import os
    import tracemalloc

    here = os.path.dirname(os.path.abspath(__file__))
    snapshot = tracemalloc.take_snapshot()
    return snapshot.filter_traces(
        (
            tracemalloc.Filter(False, os.path.join(here, "*"), all_frames=True),
            tracemalloc.Filter(False, tracemalloc.__file__),
        )
    )


def _tracebacks(snapshot, stats):
    """(file, line) -> the traceback that allocated the most at each of those lines."""
    wanted = set((s.traceback[0].filename, s.traceback[0].lineno) for s in stats)
    best = {}
    if not wanted:
        return best
    for stat in snapshot.statistics("traceback"):
        frame = stat.traceback[-1]  # iterated oldest first: the last frame allocated
        key = (frame.filename, frame.lineno)
        if key in wanted and key not in best:  # statistics come biggest first
            best[key] = stat.traceback
    return best


def _frames(traceback, n):
    """The n frames nearest the allocation, outermost first, as [{"file", "line", "source"}]."""
    if traceback is None:
        return []
    frames = list(traceback)[-n:]  # tracemalloc's Traceback iterates oldest first
    return [{"file": f.filename, "line": f.lineno, "source": _line(f.filename, f.lineno)} for f in frames]


def _line(filename, lineno):
    import linecache

    try:
        return linecache.getline(filename, lineno).strip()
    except Exception:
        return ""


def _trace_diff(before, after, limit, descending, traceback_n):
    stats = after.compare_to(before, "lineno")
    changed = [s for s in stats if s.size_diff or s.count_diff]
    changed.sort(key=lambda s: (s.size_diff, s.count_diff), reverse=descending)
    shown = changed[:limit]
    tracebacks = _tracebacks(after, shown)
    rows = []
    for stat in shown:
        frame = stat.traceback[0]
        rows.append(
            {
                "file": frame.filename,
                "line": frame.lineno,
                "source": _line(frame.filename, frame.lineno),
                "size": stat.size_diff,
                "count": stat.count_diff,
                "size_after": stat.size,
                "count_after": stat.count,
                "traceback": _frames(tracebacks.get((frame.filename, frame.lineno)), traceback_n),
            }
        )
    return {
        "rows": rows,
        "changed_lines": len(changed),
        "total": {"size": sum(s.size_diff for s in changed), "count": sum(s.count_diff for s in changed)},
    }


def _get_number(params, name, default, low, high, required=False):
    value = params.get(name)
    if value is None:
        if required:
            raise invalid_param(name, "parameter %r is required (a number of seconds)" % name)
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise invalid_param(name, "parameter %r must be a number, not %s" % (name, type(value).__name__))
    if value < low or value > high:
        raise invalid_param(name, "parameter %r must be between %s and %s, not %s" % (name, low, high, value))
    return float(value)
