"""`torch profile` and `torch memory`: PyTorch's own profiler and CUDA allocator tools, used on a
live process (see protocol/methods.md, "torch.profile.start" and after).

- torch.profile.start: the next call(s) of a function run under torch.autograd.profiler.profile
  (Kineto: CPU activities, and CUDA ones when the process has initialised CUDA), started when the
  call begins and stopped when it ends, on the call's own thread; the Chrome trace is written and
  the summary built afterwards on the client's worker thread.
- torch.memory.snapshot: the CUDA caching allocator's snapshot, pickled as PyTorch's memory
  viewer reads it.
- torch.memory.record: the allocator's history recorded around the next call, then a snapshot.

torch is never imported here: every module used is taken from sys.modules, and a process that has
not imported torch is told so. A profiler the program runs itself is never taken over. Output
files appear whole or not at all: written in a private directory (0700) next to the destination,
then renamed into place.

Why the probe may outlive its stream: torch's profiler state belongs to the thread that started
it, so only that thread, at the end of the call, can stop it. A stream stopped (or whose client
left) while a profiled call runs keeps its probe until that call returns, whose exit stops the
profiler and then removes the probe; the instrumentation is therefore registered under the
stream, not the client, whose own registry entry only ends the stream.
"""

import _thread
import itertools
import os
import sys
import time

from . import capture, events, instrument, locate, registry, streams
from .errors import BUSY, NOT_SUPPORTED, AgentError, exception_text, invalid_param
from .params import check_names, get_bool, get_int, get_str

PROFILE_EVENT = "torch/profile"
MEMORY_EVENT = "torch/memory"
SKIPPED = "torch/skipped"
END = "torch/end"

DEFAULT_TRACE = "trace.json"
DEFAULT_SNAPSHOT = "snapshot.pickle"
DEFAULT_TOP = 10
DEFAULT_MAX_ENTRIES = 100000

_ids = itertools.count(1)
_streams = {}  # torch_id -> stream

# One profiler run of fp at a time in the whole process: Kineto's activity profiler and the
# allocator's history are process-wide, so a second run would disturb the first.
_run_lock = _thread.allocate_lock()
_running = [None]  # the stream whose run is in flight (reserved before it starts)
_profiling = [False]  # fp's own torch profiler is on (tells it apart from the program's)


def _drop(text):
    pass


# --------------------------------------------------------------------------------------------
# torch, as the process has it


def _torch():
    """The process's torch module (never imported here), complete enough to use."""
    torch = sys.modules.get("torch")
    if torch is None:
        raise AgentError(
            NOT_SUPPORTED,
            "torch is not imported by this process: there is nothing to profile. fp never "
            "imports torch into a process (it would change the process); attach to the process that "
            "runs the model",
            {"reason": "no-torch"},
        )
    if sys.modules.get("torch.autograd.profiler") is None or getattr(torch, "_C", None) is None:
        raise AgentError(
            NOT_SUPPORTED,
            "torch is still being imported in this process (torch.autograd.profiler is "
            "not loaded yet); try again in a moment",
            {"reason": "no-torch"},
        )
    return torch


def _version(torch):
    return str(getattr(torch, "__version__", "?"))


def _cuda_module():
    return sys.modules.get("torch.cuda")


def cuda_in_use():
    """True when the process has initialised CUDA. Deliberately not torch.cuda.is_available(),
    which would initialise the CUDA driver in a process that never used it."""
    cuda = _cuda_module()
    if cuda is None:
        return False
    try:
        return bool(cuda.is_initialized())
    except Exception:
        return False


def _require_cuda(torch, what, needs="the CUDA caching allocator"):
    if cuda_in_use():
        return _cuda_module()
    build = getattr(getattr(torch, "version", None), "cuda", None)
    why = (
        "this torch is a CPU-only build"
        if not build
        else "this process has not initialised CUDA (torch.cuda.is_initialized() is False)"
    )
    raise AgentError(
        NOT_SUPPORTED,
        "CUDA unavailable for a CUDA-only request: %s needs %s, and %s. fp does not "
        "initialise CUDA in a process (that would take GPU memory and change the process); torch "
        "profile works on the CPU" % (what, needs, why),
        {"reason": "no-cuda"},
    )


def _program_profiler(torch, on_this_thread):
    """A description of a torch profiler running in the process that fp did not start, or None.
    torch.autograd.profiler._is_profiler_enabled is set by every torch.profiler/autograd profiler
    run of the process; torch.autograd._profiler_enabled() sees this thread's (emit_nvtx...)."""
    ap = sys.modules.get("torch.autograd.profiler")
    if getattr(ap, "_is_profiler_enabled", False) and not _profiling[0]:
        return "a torch profiler is already running in this process (started by the program)"
    if on_this_thread:
        try:
            if torch.autograd._profiler_enabled():
                return "a torch profiler is already running on this thread (started by the program)"
        except Exception:
            pass
    return None


def _history_enabled(torch):
    """Whether the CUDA allocator records its history already (the program asked for it)."""
    fn = getattr(getattr(torch, "_C", None), "_cuda_isHistoryEnabled", None)
    if fn is None:
        return False
    try:
        return bool(fn())
    except Exception:
        return False


# torch's own libraries print to the process's stderr when fp profiles, which is not fp's to write:
# - Kineto (the profiler library) a line at every start and stop ("USDT: ... profiler_start") and
#   on export; its threshold is raised while fp's profiler starts, stops and exports;
# - c10's allocator a warning for every 1000 frees, during the profiled call, of CPU memory
#   allocated before the profiler started ("Memory block of unknown size..."); c10's log
#   threshold is raised to errors from the profiler's start to its stop. Warning-level C++ log
#   lines of torch (not Python warnings) are not printed meanwhile, as the README says.
# Both are globals of torch's libraries, put back as they were afterwards.


class _Threshold(object):
    """A log threshold (a C int exported by one of torch's libraries), raised while any user
    holds it."""

    def __init__(self, library, symbol, quiet):
        self.library = library
        self.symbol = symbol
        self.quiet = quiet
        self.lock = _thread.allocate_lock()
        self.depth = 0
        self.saved = None
        self.level = None
        self.looked = False

    def _find(self, torch):
        if self.looked:
            return self.level
        self.looked = True
        try:
            import ctypes

            path = os.path.join(os.path.dirname(torch.__file__), "lib", self.library)
            if os.path.exists(path):
                # RTLD_NOLOAD: only a library the process has loaded already.
                lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
                self.level = ctypes.c_int.in_dll(lib, self.symbol)
        except (OSError, ValueError, AttributeError, ImportError):
            self.level = None
        return self.level

    def hold(self, torch):
        if torch is None or self._find(torch) is None:
            return False
        with self.lock:
            if self.depth == 0:
                self.saved = self.level.value
                self.level.value = max(self.level.value, self.quiet)
            self.depth += 1
        return True

    def release(self):
        if self.level is None:
            return
        with self.lock:
            if self.depth == 0:
                return
            self.depth -= 1
            if self.depth == 0 and self.saved is not None:
                self.level.value = self.saved
                self.saved = None


_KINETO_LOG = _Threshold("libtorch_cpu.so", "_ZN9libkineto6Logger14severityLevel_E", 6)
_C10_LOG = _Threshold("libc10.so", "FLAGS_caffe2_log_level", 2)


class _Quiet(object):
    """Kineto's log lines off for a with-block."""

    def __init__(self, torch):
        self.torch = torch
        self.held = False

    def __enter__(self):
        self.held = _KINETO_LOG.hold(self.torch)
        return self

    def __exit__(self, *exc_info):
        if self.held:
            _KINETO_LOG.release()
        return False


# --------------------------------------------------------------------------------------------
# Output files


def output_path(params, default):
    """The absolute path to write (relative paths: the target's working directory; fp sends them
    absolute, resolved against its own), checked now, before anything is installed: its directory
    exists and this process may create files there, and it is not a directory."""
    path = get_str(params, "file") or default
    if "\x00" in path:
        raise invalid_param("file", "the file name contains a NUL character")
    if not os.path.isabs(path):
        path = os.path.join(os.getcwd(), path)
    path = os.path.normpath(path)
    directory = os.path.dirname(path) or "/"
    who = "this process (uid %d)" % os.geteuid()
    if os.path.isdir(path):
        raise invalid_param(
            "file",
            "cannot write %s: it is a directory; give a file name (-f %s)"
            % (path, os.path.join(path, os.path.basename(default))),
        )
    if not os.path.isdir(directory):
        raise invalid_param(
            "file",
            "cannot write %s: the directory %s does not exist (the file is written by %s, "
            "in its view of the file system)" % (path, directory, who),
        )
    try:
        scratch = _private_dir(directory)
        os.rmdir(scratch)
    except OSError as exc:
        raise invalid_param(
            "file",
            "cannot write %s: %s cannot create files in %s (%s); give -f a path it may "
            "write to, e.g. /tmp/%s" % (path, who, directory, exc.strerror or exc, os.path.basename(path)),
        )
    return path


def _private_dir(directory):
    for _ in range(16):
        name = os.path.join(directory, ".fp-torch-%s" % os.urandom(6).hex())
        try:
            os.mkdir(name, 0o700)
            return name
        except FileExistsError:
            continue
    raise OSError("cannot find a free temporary name in %s" % directory)


def write_whole(path, produce):
    """produce(tmp_path) writes the content at tmp_path; it is then renamed to path (same
    directory, so the rename is atomic). Nothing is left behind on failure. Returns the size."""
    scratch = _private_dir(os.path.dirname(path))
    tmp = os.path.join(scratch, "output")
    try:
        produce(tmp)
        os.chmod(tmp, 0o600)
        size = os.stat(tmp).st_size
        os.rename(tmp, path)
        return size
    finally:
        for leftover in (tmp, tmp + ".json"):
            try:
                os.unlink(leftover)
            except OSError:
                pass
        try:
            os.rmdir(scratch)
        except OSError:
            pass


def _exclusive(path):
    """A new file opened for writing, refusing links and existing files."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(path, flags, 0o600), "wb")


def _pickle_to(obj):
    def produce(tmp):
        import pickle

        with _exclusive(tmp) as f:
            pickle.dump(obj, f)

    return produce


def nth_path(path, index, limit):
    """With -n 1 the file itself; with more calls trace-1.json, trace-2.json..."""
    if limit == 1:
        return path
    base, ext = os.path.splitext(path)
    if ext == ".gz":
        base, inner = os.path.splitext(base)
        ext = inner + ext
    return "%s-%d%s" % (base, index, ext)


# --------------------------------------------------------------------------------------------
# The streams


class _Run(object):
    """One profiled (or recorded) call."""

    __slots__ = (
        "ident",
        "started",
        "profiler",
        "cuda",
        "error",
        "before",
        "after",
        "snapshot",
        "cancelled",
        "cost_ns",
        "raised",
        "c10_quiet",
    )

    def __init__(self, ident):
        self.ident = ident
        self.started = time.time()
        self.profiler = None
        self.cuda = False
        self.error = None
        self.before = None
        self.after = None
        self.snapshot = None
        self.cancelled = False
        self.cost_ns = 0
        self.raised = None
        self.c10_quiet = False


class _TorchStream(streams.Stream, instrument.Probe):
    end_method = END
    table = _streams
    needs_args = False
    event_method = None
    kind = None

    def __init__(self, client_id, located, path, limit, top):
        self.id = next(_ids)
        self.client_id = client_id
        self.located = located
        self.path = path
        self.limit = limit
        self.top = top
        self.install_id = None
        self.cleanup_id = None
        self.lock = _thread.allocate_lock()
        self.done = False
        self.armed = False
        self.started_runs = 0
        self.count = 0
        self.skipped = 0
        self.reasons = set()
        self.inflight = None
        self.release_pending = False

    # -- installation (see the module docstring: the probe may outlive the stream) -----------
    def install(self, located, kind):
        self.table[self.id] = self
        try:
            self.install_id = instrument.install(("torch-stream", self.id), located, self, kind)
        except BaseException:
            self.table.pop(self.id, None)
            raise
        self.cleanup_id = registry.add(self.client_id, kind, self._gone, located.label)

    def _remove(self):
        self.forget()
        cleanup, self.cleanup_id = self.cleanup_id, None
        if cleanup is not None:
            registry.remove(cleanup)

    def forget(self):
        self.table.pop(self.id, None)
        with self.lock:
            run = self.inflight
            if run is not None:
                self.release_pending = True
        if run is not None and self.cancel_inflight(run):
            return
        self._uninstall()

    def cancel_inflight(self, run):
        """The stream ended during a call: True when the probe must wait for the call's end."""
        return True

    def _uninstall(self):
        install_id, self.install_id = self.install_id, None
        if install_id is not None:
            instrument.uninstall(install_id)

    # -- the probe, on the target's threads -------------------------------------------------
    def arm(self):
        self.armed = True

    def enter(self, target, args, kwargs, checked=False):
        if self.done or not self.armed or self.started_runs >= self.limit:
            return instrument.NO_OBSERVE
        ident = _thread.get_ident()
        with _run_lock:
            if _running[0] is not None:
                return instrument.NO_OBSERVE  # another run of fp is on; this call goes unprofiled
            _running[0] = self
        run = None
        try:
            with capture.warnings_to(_drop):
                run = self.begin(ident)
        except Exception as exc:
            run = None
            self._failed_start(ident, exc)
        finally:
            if run is None:  # also when the target's Ctrl-C (KeyboardInterrupt) went through
                _running[0] = None
        if run is None:
            return instrument.NO_OBSERVE
        with self.lock:
            self.started_runs += 1
            self.inflight = run
        return run

    def exit(self, run, return_obj, exception, cost_ns):
        try:
            if not run.cancelled:
                with capture.warnings_to(_drop):
                    self.finish(run)
        except Exception as exc:
            run.error = exception_text(exc)
        finally:
            if _running[0] is self:
                _running[0] = None
            with self.lock:
                self.inflight = None
                pending = self.release_pending
        if pending:
            self._uninstall()
        if self.done or run.cancelled:
            return  # stopped meanwhile: nothing is reported
        run.cost_ns = cost_ns
        if exception is not None:
            run.raised = exception_text(exception)
        events.defer(self.client_id, lambda: self._report(run))

    def _failed_start(self, ident, exc):
        self._skip(ident, "%s could not start: %s" % (self.what, exception_text(exc)))

    def _skip(self, ident, reason):
        with self.lock:
            self.skipped += 1
            if reason in self.reasons:
                return
            self.reasons.add(reason)
        events.notify(
            self.client_id, SKIPPED, {"torch_id": self.id, "thread": events.thread_info(ident), "reason": reason}
        )

    # -- reports, on the client's worker thread ----------------------------------------------
    def _report(self, run):
        if self.done:
            return
        with self.lock:
            index = self.count + 1
        event = {
            "torch_id": self.id,
            "index": index,
            "time": run.started,
            "thread": events.thread_info(run.ident),
            "cost_ms": run.cost_ns / 1e6,
            "raised": run.raised,
        }
        try:
            with capture.warnings_to(_drop):
                self.describe(run, index, event)
        except Exception as exc:
            event["error"] = "fp could not build the report: %s" % exception_text(exc)
        last = False
        with self.lock:
            if self.done:
                return
            self.count = index
            events.notify(self.client_id, self.event_method, event)
            last = self.count >= self.limit
            if last:
                self.done = True
                events.notify(self.client_id, END, self.summary("limit"))
        if last:
            self._remove()

    def write(self, event, path, produce):
        """Writes the output file; its path and size, or the error, go into event."""
        try:
            event["bytes"] = write_whole(path, produce)
            event["file"] = path
        except Exception as exc:
            event["file"] = None
            event["error"] = "cannot write %s: %s" % (path, exception_text(exc))

    def summary(self, reason):
        return {
            "torch_id": self.id,
            "kind": self.kind,
            "reason": reason,
            "count": self.count,
            "skipped": self.skipped,
            "pending": self.inflight is not None,
        }

    def start_fields(self, torch, fields):
        result = {
            "kind": self.kind,
            "file": self.path,
            "limit": self.limit,
            "top": self.top,
            "torch_version": _version(torch),
            "cuda": cuda_in_use(),
            "busy": _busy_text(),
        }
        result.update(fields)
        return self.started("torch_id", "torch.stop", self.located, result)


def _busy_text():
    """What run of fp is in flight now (a new stream's calls wait for it), or None."""
    other = _running[0]
    if other is None:
        return None
    state = "of a command that has ended (its call has not returned yet)" if other.done else "of another fp client"
    return "a %s run %s is in flight, on %s: calls that begin before it ends are not profiled" % (
        other.kind,
        state,
        other.located.label,
    )


class _Profile(_TorchStream):
    event_method = PROFILE_EVENT
    kind = "profile"
    what = "the torch profiler"

    def __init__(self, client_id, located, path, limit, top, device, record_shapes, with_stack):
        _TorchStream.__init__(self, client_id, located, path, limit, top)
        self.device = device
        self.record_shapes = record_shapes
        self.with_stack = with_stack

    def begin(self, ident):
        torch = sys.modules.get("torch")
        ap = sys.modules.get("torch.autograd.profiler")
        if torch is None or ap is None:
            return None
        running = _program_profiler(torch, True)
        if running is not None:
            self._skip(
                ident, "%s; fp does not take over a profiler it did not start, so this call is not profiled" % running
            )
            return None
        run = _Run(ident)
        run.cuda = self.device == "cuda" or (self.device == "auto" and cuda_in_use())
        profiler = ap.profile(
            use_kineto=True,
            use_device="cuda" if run.cuda else None,
            record_shapes=self.record_shapes,
            profile_memory=True,
            with_stack=self.with_stack,
        )
        _profiling[0] = True
        run.c10_quiet = _C10_LOG.hold(torch)
        try:
            if hasattr(profiler, "_prepare_trace") and hasattr(profiler, "_start_trace"):
                profiler._prepare_trace()  # Kineto initialises itself here the first time
                with _Quiet(torch):
                    profiler._start_trace()
            else:
                with _Quiet(torch):
                    profiler.__enter__()
        except BaseException:
            _profiling[0] = False
            if run.c10_quiet:
                _C10_LOG.release()
            raise
        run.profiler = profiler
        return run

    def finish(self, run):
        torch = sys.modules.get("torch")
        try:
            with _Quiet(torch):
                if self.done and self._discard(torch, run):
                    return
                run.profiler.__exit__(None, None, None)  # synchronises CUDA, stops this thread's profiler
        finally:
            _profiling[0] = False
            if run.c10_quiet:
                run.c10_quiet = False
                _C10_LOG.release()

    @staticmethod
    def _discard(torch, run):
        """The stream ended during the call: stop the profiler without processing its events
        (torch 2.4 processes them all in __exit__, on this thread: seconds for a long call).
        False when this torch lacks the functions (then __exit__ does it)."""
        ap = sys.modules.get("torch.autograd.profiler")
        disable = getattr(ap, "_disable_profiler", None)
        stopped = getattr(ap, "_run_on_profiler_stop", None)
        if disable is None or stopped is None:
            return False
        if run.cuda:
            torch.cuda.synchronize()
        try:
            disable()
        finally:
            stopped()
        return True

    def describe(self, run, index, event):
        torch = sys.modules.get("torch")
        event["activities"] = ["cpu", "cuda"] if run.cuda else ["cpu"]
        if run.error is not None:
            event["error"] = "the profiler could not be stopped cleanly: %s" % run.error
            event["file"] = None
            return
        event.update(profile_summary(run.profiler, self.top, run.cuda))
        profiler = run.profiler
        path = nth_path(self.path, index, self.limit)

        def produce(tmp):
            with _Quiet(torch):
                if tmp.endswith(".gz") or path.endswith(".gz"):
                    import gzip
                    import shutil

                    profiler.export_chrome_trace(tmp + ".json")
                    with open(tmp + ".json", "rb") as src, _exclusive(tmp) as raw:
                        with gzip.GzipFile(fileobj=raw, mode="wb") as dst:
                            shutil.copyfileobj(src, dst)
                else:
                    profiler.export_chrome_trace(tmp)

        self.write(event, path, produce)
        run.profiler = None  # its events can go now


class _Record(_TorchStream):
    event_method = MEMORY_EVENT
    kind = "memory"
    what = "recording the allocator's history"

    def __init__(self, client_id, located, path, top, max_entries):
        _TorchStream.__init__(self, client_id, located, path, 1, top)
        self.max_entries = max_entries

    def begin(self, ident):
        torch = sys.modules.get("torch")
        cuda = _cuda_module()
        if torch is None or cuda is None or not cuda_in_use():
            return None
        if _history_enabled(torch):
            self._skip(
                ident,
                "the program records the CUDA allocator's history itself; fp does not take it over, "
                "so this call is not recorded (torch memory -s snapshots what it records)",
            )
            return None
        run = _Run(ident)
        run.before = _device_memory(cuda)
        _set_history(cuda, True, self.max_entries)
        return run

    def finish(self, run):
        cuda = _cuda_module()
        try:
            run.snapshot = cuda.memory._snapshot()
            run.after = _device_memory(cuda)
        finally:
            _set_history(cuda, False, 0)

    def cancel_inflight(self, run):
        # The history is the allocator's, not the thread's: it stops at once, from here.
        run.cancelled = True
        try:
            _set_history(_cuda_module(), False, 0)
        except Exception:
            pass
        with self.lock:
            self.release_pending = False
            self.inflight = None
        if _running[0] is self:
            _running[0] = None
        return False

    def describe(self, run, index, event):
        if run.error is not None:
            event["error"] = "the allocator's history could not be taken: %s" % run.error
            event["file"] = None
            return
        event.update(memory_summary(run.snapshot, run.before, run.after, self.top, run.started))
        self.write(event, self.path, _pickle_to(run.snapshot))
        run.snapshot = None


def _set_history(cuda, on, max_entries):
    record = cuda.memory._record_memory_history
    if not on:
        record(enabled=None)
        return
    kwargs = {"enabled": "all", "context": "all", "stacks": "python", "max_entries": max_entries}
    try:
        record(clear_history=True, **kwargs)  # torch 2.2+: the history holds this call only
    except TypeError:
        record(**kwargs)


def _device_memory(cuda):
    """{device index: (allocated, reserved)} now."""
    found = {}
    try:
        count = cuda.device_count()
    except Exception:
        count = 0
    for device in range(count):
        try:
            found[device] = (int(cuda.memory_allocated(device)), int(cuda.memory_reserved(device)))
        except Exception:
            continue
    return found


# --------------------------------------------------------------------------------------------
# Summaries


def _first_attr(obj, *names):
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return 0


def profile_summary(profiler, top, cuda):
    """The operators by self CPU time (and self CUDA time), totals, and memory during the call,
    from the profiler's own averages (the numbers of prof.key_averages().table())."""
    averages = list(profiler.key_averages())
    rows = []
    for a in averages:
        rows.append(
            {
                "name": str(a.key),
                "count": int(getattr(a, "count", 0)),
                "self_cpu_ms": float(_first_attr(a, "self_cpu_time_total")) / 1000.0,
                "cpu_ms": float(_first_attr(a, "cpu_time_total")) / 1000.0,
                "self_cuda_ms": float(_first_attr(a, "self_device_time_total", "self_cuda_time_total")) / 1000.0,
                "cuda_ms": float(_first_attr(a, "device_time_total", "cuda_time_total")) / 1000.0,
                "self_cpu_memory_bytes": int(_first_attr(a, "self_cpu_memory_usage")),
                "self_cuda_memory_bytes": int(_first_attr(a, "self_device_memory_usage", "self_cuda_memory_usage")),
            }
        )
    by_cpu = sorted((r for r in rows if r["self_cpu_ms"] > 0), key=lambda r: -r["self_cpu_ms"])
    summary = {
        "ops": by_cpu[:top],
        "operators": len(rows),
        "op_calls": sum(r["count"] for r in rows),
        "self_cpu_ms": sum(r["self_cpu_ms"] for r in rows),
        "memory": memory_during(profiler),
    }
    if cuda:
        by_cuda = sorted((r for r in rows if r["self_cuda_ms"] > 0), key=lambda r: -r["self_cuda_ms"])
        summary["cuda_ops"] = by_cuda[:top]
        summary["self_cuda_ms"] = sum(r["self_cuda_ms"] for r in rows)
    return summary


def memory_during(profiler):
    """Per device, from the profiler's memory events (each allocation and free made during the
    call): the peak of what the call held at once above what it started with, what it still held
    at the end, and how much it allocated in all."""
    results = getattr(profiler, "kineto_results", None)
    if results is None:
        return []
    changes = []
    for e in results.events():
        try:
            if e.name() != "[memory]":
                continue
            when = e.start_ns() if hasattr(e, "start_ns") else e.start_us() * 1000
            device = str(e.device_type()).rpartition(".")[2].lower()
            changes.append((when, device, int(e.nbytes())))
        except Exception:
            continue
    changes.sort(key=lambda c: c[0])
    devices = {}
    for _when, device, nbytes in changes:
        d = devices.setdefault(
            device, {"device": device, "peak_bytes": 0, "end_bytes": 0, "allocations": 0, "allocated_bytes": 0}
        )
        d["end_bytes"] += nbytes
        if nbytes > 0:
            d["allocations"] += 1
            d["allocated_bytes"] += nbytes
        if d["end_bytes"] > d["peak_bytes"]:
            d["peak_bytes"] = d["end_bytes"]
    return sorted(devices.values(), key=lambda d: d["device"] != "cpu")


def _torch_dir():
    torch = sys.modules.get("torch")
    try:
        return os.path.dirname(torch.__file__) + os.sep
    except Exception:
        return None


def _frames(frames, limit=5):
    out = []
    for f in frames or ():
        try:
            out.append({"file": str(f.get("filename")), "line": int(f.get("line") or 0), "name": str(f.get("name"))})
        except Exception:
            continue
        if len(out) >= limit:
            break
    return out


def _origin(frames, torch_dir):
    """The innermost frame outside torch itself: where the program asked for the memory."""
    for f in frames or ():
        name = str(f.get("filename", ""))
        if name.startswith("??") or (torch_dir and name.startswith(torch_dir)) or name.startswith("<"):
            continue
        return {"file": name, "line": int(f.get("line") or 0), "name": str(f.get("name"))}
    return None


def _segments_state(snapshot):
    """{device: {"reserved", "allocated", "segments", "blocks"}} from the snapshot's segments."""
    state = {}
    for seg in snapshot.get("segments", ()):
        d = state.setdefault(
            int(seg.get("device", 0)), {"reserved_bytes": 0, "allocated_bytes": 0, "segments": 0, "blocks": 0}
        )
        d["segments"] += 1
        d["reserved_bytes"] += int(seg.get("total_size", 0))
        d["allocated_bytes"] += int(seg.get("allocated_size", 0))
        d["blocks"] += len(seg.get("blocks", ()))
    return state


def _largest_blocks(snapshot, top, torch_dir):
    blocks = []
    for seg in snapshot.get("segments", ()):
        for b in seg.get("blocks", ()):
            if b.get("state") == "active_allocated":
                blocks.append((int(b.get("size", 0)), int(seg.get("device", 0)), b.get("frames")))
    blocks.sort(key=lambda b: -b[0])
    return [
        {"size": size, "device": device, "origin": _origin(frames, torch_dir), "frames": _frames(frames)}
        for size, device, frames in blocks[:top]
    ]


def snapshot_summary(snapshot, top):
    """What a snapshot holds, per device: segments, reserved and allocated bytes, the largest live
    allocations (with where they were made, when the allocator recorded it)."""
    torch_dir = _torch_dir()
    state = _segments_state(snapshot)
    traces = snapshot.get("device_traces") or []
    devices = []
    for device in sorted(set(state) | set(range(len(traces)))):
        d = {"device": device}
        d.update(state.get(device, {"reserved_bytes": 0, "allocated_bytes": 0, "segments": 0, "blocks": 0}))
        d["history_entries"] = len(traces[device]) if device < len(traces) else 0
        devices.append(d)
    return {
        "devices": devices,
        "largest": _largest_blocks(snapshot, top, torch_dir),
        "history": any(d["history_entries"] for d in devices),
    }


def memory_summary(snapshot, before, after, top, started):
    """The allocator's history of one call, per device: the peak allocated and reserved bytes
    (what was held when the call began plus the call's own growth), what changed by its end, and
    the call's largest allocations with where they came from."""
    torch_dir = _torch_dir()
    traces = snapshot.get("device_traces") or []
    devices = []
    allocations = []
    started_us = started * 1e6
    for device, entries in enumerate(traces):
        entries = list(entries or ())
        # Entries from before this call (an older recording the allocator kept): left out when
        # the entries carry wall-clock times (torch 2.1+).
        times = [e.get("time_us") for e in entries if isinstance(e.get("time_us"), (int, float))]
        if times and abs(max(times) - time.time() * 1e6) < 86400e6:
            entries = [e for e in entries if e.get("time_us", started_us) >= started_us - 1000]
        start_alloc, start_reserved = (before or {}).get(device, (0, 0))
        alloc = reserved = peak_alloc = peak_reserved = 0
        counts = {"alloc": 0, "free": 0, "segment_alloc": 0, "segment_free": 0, "oom": 0}
        for e in entries:
            action = e.get("action")
            size = int(e.get("size", 0) or 0)
            if action == "alloc":
                alloc += size
                counts["alloc"] += 1
                allocations.append((size, device, e.get("frames")))
            elif action == "free_completed":
                alloc -= size
                counts["free"] += 1
            elif action == "segment_alloc":
                reserved += size
                counts["segment_alloc"] += 1
            elif action == "segment_free":
                reserved -= size
                counts["segment_free"] += 1
            elif action == "oom":
                counts["oom"] += 1
            peak_alloc = max(peak_alloc, alloc)
            peak_reserved = max(peak_reserved, reserved)
        end_alloc, end_reserved = (after or {}).get(device, (start_alloc + alloc, start_reserved + reserved))
        devices.append(
            {
                "device": device,
                "entries": len(entries),
                "start_allocated_bytes": start_alloc,
                "start_reserved_bytes": start_reserved,
                "peak_allocated_bytes": start_alloc + peak_alloc,
                "peak_reserved_bytes": start_reserved + peak_reserved,
                "end_allocated_bytes": end_alloc,
                "end_reserved_bytes": end_reserved,
                "counts": counts,
            }
        )
    allocations.sort(key=lambda a: -a[0])
    largest = [
        {"size": size, "device": device, "origin": _origin(frames, torch_dir), "frames": _frames(frames)}
        for size, device, frames in allocations[:top]
    ]
    return {
        "devices": devices,
        "largest": largest,
        "not_seen": "memory allocated before the call began is counted in start_allocated_bytes and shown in "
        "the snapshot's segments, without its history or stacks",
    }


# --------------------------------------------------------------------------------------------
# Requests

PROFILE_PARAMS = (
    "module",
    "class",
    "method",
    "nested",
    "file",
    "limit",
    "device",
    "top",
    "record_shapes",
    "with_stack",
)
RECORD_PARAMS = ("module", "class", "method", "nested", "file", "top", "max_entries")
SNAPSHOT_PARAMS = ("file", "top")


def _locate(params):
    module = get_str(params, "module", required=True)
    class_name = get_str(params, "class") or None
    method = get_str(params, "method", required=True)
    nested = get_str(params, "nested") or None
    located = locate.locate_function(module, class_name, method, nested)
    flags = located.code.co_flags
    if flags & (0x20 | 0x80 | 0x100 | 0x200):  # generator, coroutine, iterable coroutine, async generator
        raise AgentError(
            NOT_SUPPORTED,
            "%s is a %s: torch's profiler belongs to the thread that starts it, and a %s "
            "hands that thread to other code at every suspension; name the plain function it calls "
            "(the model's forward, one training step)"
            % (
                located.label,
                "coroutine" if flags & 0x180 else "generator",
                "coroutine" if flags & 0x180 else "generator",
            ),
        )
    return located


def profile_start(client_id, params):
    """torch.profile.start: profile the next `limit` calls of a function."""
    check_names(params, PROFILE_PARAMS)
    limit = get_int(params, "limit", default=1, low=1, high=100)
    top = get_int(params, "top", default=DEFAULT_TOP, low=1, high=1000)
    device = get_str(params, "device") or "auto"
    if device not in ("auto", "cpu", "cuda"):
        raise invalid_param("device", 'parameter \'device\' must be "auto", "cpu" or "cuda", not %r' % device)
    record_shapes = get_bool(params, "record_shapes", default=True)
    with_stack = get_bool(params, "with_stack")
    get_str(params, "file")
    torch = _torch()
    if device == "cuda":
        _require_cuda(torch, "torch profile --cuda", "CUDA activities")
    running = _program_profiler(torch, False)
    if running is not None:
        raise AgentError(
            BUSY,
            "%s; fp does not take over a profiler it did not start. Try again once it has stopped" % running,
            {"reason": "profiler-running"},
        )
    located = _locate(params)
    path = output_path(params, DEFAULT_TRACE)
    stream = _Profile(client_id, located, path, limit, top, device, record_shapes, with_stack)
    stream.install(located, "torch")
    activities = ["cpu", "cuda"] if device == "cuda" or (device == "auto" and cuda_in_use()) else ["cpu"]
    return stream.start_fields(
        torch,
        {
            "device": device,
            "activities": activities,
            "record_shapes": record_shapes,
            "with_stack": with_stack,
            "files": [nth_path(path, i, limit) for i in range(1, min(limit, 3) + 1)],
        },
    )


def memory_record(client_id, params):
    """torch.memory.record: the CUDA allocator's history around the next call, then a snapshot."""
    check_names(params, RECORD_PARAMS)
    top = get_int(params, "top", default=DEFAULT_TOP, low=1, high=1000)
    max_entries = get_int(params, "max_entries", default=DEFAULT_MAX_ENTRIES, low=1, high=100000000)
    get_str(params, "file")
    torch = _torch()
    _require_cuda(torch, "torch memory -r")
    if _history_enabled(torch):
        raise AgentError(
            BUSY,
            "the program records the CUDA allocator's history itself "
            "(torch.cuda.memory._record_memory_history); fp does not take it over. torch memory -s "
            "snapshots what it records",
            {"reason": "history-recording"},
        )
    located = _locate(params)
    path = output_path(params, DEFAULT_SNAPSHOT)
    stream = _Record(client_id, located, path, top, max_entries)
    stream.install(located, "torch")
    return stream.start_fields(torch, {"max_entries": max_entries})


def memory_snapshot(client_id, params):
    """torch.memory.snapshot: the CUDA caching allocator's state now, pickled to a file."""
    check_names(params, SNAPSHOT_PARAMS)
    top = get_int(params, "top", default=DEFAULT_TOP, low=1, high=1000)
    get_str(params, "file")
    torch = _torch()
    cuda = _require_cuda(torch, "torch memory -s")
    path = output_path(params, DEFAULT_SNAPSHOT)
    snapshot = cuda.memory._snapshot()
    result = {"torch_version": _version(torch)}
    result.update(snapshot_summary(snapshot, top))
    try:
        result["bytes"] = write_whole(path, _pickle_to(snapshot))
    except Exception as exc:
        raise AgentError(NOT_SUPPORTED, "cannot write %s: %s" % (path, exception_text(exc)), {"reason": "write"})
    result["file"] = path
    return result


def stop(client_id, params):
    """torch.stop: stop one torch stream of this client (torch_id), or all of them."""
    return streams.stop_request(client_id, params, _streams, "torch_id")


def active():
    """Streams running now and fp's profiler run in flight (for tests)."""
    return {"streams": sorted(_streams), "running": _running[0] is not None}
