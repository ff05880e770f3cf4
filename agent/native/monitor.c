/* The sys.monitoring callbacks of fp_agent/instrument.py in C (3.12+), so that a call that no
 * probe wants costs little: PY_START reads the parameters with PyFrame_GetVar (no f_locals
 * dict), runs the probe's compiled entry filter (precheck) and only calls into Python when the
 * call is to be observed; PY_RETURN and PY_UNWIND return at once while no observed call is in
 * flight. A function whose only probe is a monitor's is counted here without calling Python at
 * all (a few hundred ns a call): its calls, errors and latency histogram wait in C until the
 * monitor's report takes them. instrument.py keeps the pure-Python twin of these functions and
 * uses it when this file's functions are not there (another Python, a missing symbol). */
#include "agent.h"
#include "pyapi.h"

#include <string.h>

/* ===================================== State from instrument.py ============================= */

/* Set by configure() (strong references), cleared by configure() with no arguments:
 * busy    set of thread idents whose calls are not observed
 * live    {id(frame): ...} observed calls in flight (read for its size only)
 * start   start(code, frame, all_args, kwargs, passed): the Python side of an observed call's
 *         start (passed: the precheck, when it accepted the call, else None)
 * ret     ret(code, offset, retval), unwind(code, offset, exc): its end */
static fp_pyobj *fp_mon_busy, *fp_mon_live, *fp_mon_start, *fp_mon_ret, *fp_mon_unwind;

/* The instrumented code objects (borrowed: instrument.py holds them while they are here) and
 * their specs (pos_names, varargs_name|None, kwonly_names, varkw_name|None, precheck|None),
 * set with site(code, spec) and site(code, None). Found by pointer: hashing a code object
 * walks its bytecode (3.12+), too slow for every call. */
#define FP_MON_MAX_SITES 256
static fp_pyobj *fp_mon_codes[FP_MON_MAX_SITES];
static fp_pyobj *fp_mon_specs[FP_MON_MAX_SITES];
static int fp_mon_nsites;

/* Counting sites: their spec's 6th item is true (monitor.py's only probe on them, which counts
 * and nothing else). Their calls are counted here (counter.c), without calling into Python;
 * counts(code) hands monitor.py what was counted since it last asked. */
static fp_counts fp_mon_count[FP_MON_MAX_SITES];
static unsigned char fp_mon_counting[FP_MON_MAX_SITES];

/* A thread's counted calls in flight (the frame that started, its code, when), innermost last.
 * Deeper than this, a call goes the Python way. */
#define FP_MON_DEPTH 64
typedef struct fp_mon_flight {
    fp_pyobj *frame, *code;
    unsigned long long t0;
} fp_mon_flight;
static _Thread_local fp_mon_flight fp_mon_stack[FP_MON_DEPTH];
static _Thread_local int fp_mon_depth;

static void fp_mon_set(fp_pyobj **slot, fp_pyobj *value)
{
    fp_pyobj *old = *slot;
    if (value == fp_py.none) value = NULL;
    if (value) fp_py.Py_IncRef(value);
    *slot = value;
    if (old) fp_py.Py_DecRef(old);
}

static fp_pyobj *fp_mon_configure(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_pyobj **slots[] = {&fp_mon_busy, &fp_mon_live, &fp_mon_start, &fp_mon_ret, &fp_mon_unwind};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        fp_mon_set(slots[i], (ssize_t)i < nargs ? args[i] : NULL);
    if (nargs == 0) { /* released: no site stays */
        for (int i = 0; i < fp_mon_nsites; i++)
            fp_py.Py_DecRef(fp_mon_specs[i]);
        fp_mon_nsites = 0;
    }
    return fp_py_none_ref();
}

static int fp_mon_find(fp_pyobj *code)
{
    for (int i = 0; i < fp_mon_nsites; i++)
        if (fp_mon_codes[i] == code) return i;
    return -1;
}

/* site(code, spec) -> True; site(code, None) removes it; False when the table is full. */
static fp_pyobj *fp_mon_site(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 2) return fp_py.PyBool_FromLong(0);
    int i = fp_mon_find(args[0]);
    if (args[1] == fp_py.none) {
        if (i >= 0) {
            fp_py.Py_DecRef(fp_mon_specs[i]);
            fp_mon_nsites--;
            fp_mon_codes[i] = fp_mon_codes[fp_mon_nsites];
            fp_mon_specs[i] = fp_mon_specs[fp_mon_nsites];
            fp_mon_count[i] = fp_mon_count[fp_mon_nsites];
            fp_mon_counting[i] = fp_mon_counting[fp_mon_nsites];
        }
        return fp_py.PyBool_FromLong(1);
    }
    if (i < 0) {
        if (fp_mon_nsites >= FP_MON_MAX_SITES) return fp_py.PyBool_FromLong(0);
        i = fp_mon_nsites++;
        fp_mon_codes[i] = args[0];
        fp_mon_specs[i] = NULL;
        fp_mon_counting[i] = 0;
        memset(&fp_mon_count[i], 0, sizeof fp_mon_count[i]);
    }
    fp_pyobj *flag = fp_py.PyTuple_Size(args[1]) > 5 ? fp_py.PyTuple_GetItem(args[1], 5) : NULL;
    int counting = flag && fp_py.PyObject_IsTrue(flag) == 1;
    if (!flag) fp_py.PyErr_Clear();
    /* What was counted stays until counts() takes it, counting or not from now on: a watch
     * added beside a monitor must not lose the calls counted before it. */
    fp_mon_counting[i] = (unsigned char)counting;
    fp_py.Py_IncRef(args[1]);
    fp_pyobj *old = fp_mon_specs[i];
    fp_mon_specs[i] = args[1];
    if (old) fp_py.Py_DecRef(old);
    return fp_py.PyBool_FromLong(1);
}

/* ===================================== The callbacks ======================================== */

/* (all positional arguments, keyword-only + **kwargs) of the frame, as the parameters are now
 * (PY_START: as passed). Returns 0, or -1 (no exception left). */
static int fp_mon_read_args(fp_pyobj *frame, fp_pyobj *spec, fp_pyobj **out_args,
                            fp_pyobj **out_kwargs)
{
    fp_pyobj *pos = fp_py.PyTuple_GetItem(spec, 0), *varargs = fp_py.PyTuple_GetItem(spec, 1);
    fp_pyobj *kwonly = fp_py.PyTuple_GetItem(spec, 2), *varkw = fp_py.PyTuple_GetItem(spec, 3);
    if (!pos || !varargs || !kwonly || !varkw) goto fail;
    ssize_t n = fp_py.PyTuple_Size(pos);
    fp_pyobj *args = fp_py.PyTuple_New(n);
    if (!args) goto fail;
    for (ssize_t i = 0; i < n; i++) {
        fp_pyobj *v = fp_py.PyFrame_GetVar(frame, fp_py.PyTuple_GetItem(pos, i));
        if (!v) {
            fp_py.Py_DecRef(args);
            goto fail;
        }
        fp_py.PyTuple_SetItem(args, i, v); /* steals v */
    }
    if (varargs != fp_py.none) {
        fp_pyobj *rest = fp_py.PyFrame_GetVar(frame, varargs);
        fp_pyobj *all = rest ? fp_py.PySequence_Concat(args, rest) : NULL;
        if (rest) fp_py.Py_DecRef(rest);
        fp_py.Py_DecRef(args);
        if (!all) goto fail;
        args = all;
    }
    ssize_t k = fp_py.PyTuple_Size(kwonly);
    if (k == 0 && varkw == fp_py.none) { /* no keyword parameters: kwargs is None (prechecks
                                          * and instrument.py's start make it {}) */
        *out_args = args;
        *out_kwargs = fp_py_none_ref();
        return 0;
    }
    fp_pyobj *kwargs = fp_py.PyDict_New();
    if (!kwargs) {
        fp_py.Py_DecRef(args);
        goto fail;
    }
    int ok = 1;
    for (ssize_t i = 0; ok && i < k; i++) {
        fp_pyobj *name = fp_py.PyTuple_GetItem(kwonly, i);
        fp_pyobj *v = fp_py.PyFrame_GetVar(frame, name);
        ok = v && fp_py.PyDict_SetItem(kwargs, name, v) == 0;
        if (v) fp_py.Py_DecRef(v);
    }
    if (ok && varkw != fp_py.none) {
        fp_pyobj *more = fp_py.PyFrame_GetVar(frame, varkw);
        ok = more && fp_py.PyDict_Update(kwargs, more) == 0;
        if (more) fp_py.Py_DecRef(more);
    }
    if (!ok) {
        fp_py.Py_DecRef(args);
        fp_py.Py_DecRef(kwargs);
        goto fail;
    }
    *out_args = args;
    *out_kwargs = kwargs;
    return 0;
fail:
    fp_py.PyErr_Clear();
    return -1;
}

/* The end of a counted call in flight on this thread, if frame is one (PY_RETURN, PY_UNWIND).
 * Entries above it are calls that left without an end event (a frame freed by an exception
 * caught in C): dropped. A call that started counted is counted here even when a probe came
 * meanwhile (it was never the Python side's); only a site gone drops it. Returns 1 when it
 * was one. */
static int fp_mon_count_end(fp_pyobj *frame, int raised)
{
    for (int d = fp_mon_depth - 1; d >= 0; d--) {
        if (fp_mon_stack[d].frame != frame) continue;
        int at = fp_mon_find(fp_mon_stack[d].code);
        unsigned long long cost = fp_counts_now_ns() - fp_mon_stack[d].t0;
        fp_mon_depth = d;
        if (at < 0) return 1; /* no longer observed */
        fp_counts_add(&fp_mon_count[at], cost, raised);
        return 1;
    }
    return 0;
}

/* A full stack: drops the calls of code no longer observed (a monitor stopped while they ran,
 * their end never to come here). */
static void fp_mon_compact(void)
{
    int kept = 0;
    for (int d = 0; d < fp_mon_depth; d++)
        if (fp_mon_find(fp_mon_stack[d].code) >= 0) fp_mon_stack[kept++] = fp_mon_stack[d];
    fp_mon_depth = kept;
}

/* counts(code) -> (calls, errors, total_ns, max_ns, min_ns, [(bucket, n), ...]) counted since
 * the last counts(code), which starts again from zero; None when code is not observed. */
static fp_pyobj *fp_mon_counts_of(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int at = nargs == 1 ? fp_mon_find(args[0]) : -1;
    return at < 0 ? fp_py_none_ref() : fp_counts_take(&fp_mon_count[at]);
}

static fp_pyobj *fp_mon_on_start(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs < 1 || !fp_mon_start) return fp_py_none_ref();
    fp_pyobj *code = args[0];
    int at = fp_mon_find(code);
    if (at < 0 || fp_py_thread_in(fp_mon_busy)) return fp_py_none_ref();
    fp_pyobj *frame = fp_py.PyEval_GetFrame(); /* borrowed: the frame that starts */
    if (fp_mon_counting[at] && fp_mon_depth == FP_MON_DEPTH) fp_mon_compact();
    if (fp_mon_counting[at] && frame && fp_mon_depth < FP_MON_DEPTH) {
        /* counted here: nothing for Python to do (deeper than the stack: the Python side) */
        fp_mon_stack[fp_mon_depth++] = (fp_mon_flight){frame, code, fp_counts_now_ns()};
        return fp_py_none_ref();
    }
    fp_pyobj *spec = fp_mon_specs[at]; /* borrowed */
    fp_pyobj *all = NULL, *kwargs = NULL;
    if (!frame || fp_mon_read_args(frame, spec, &all, &kwargs) != 0) return fp_py_none_ref();
    fp_pyobj *pre = fp_py.PyTuple_GetItem(spec, 4);
    fp_pyobj *passed = fp_py.none; /* the precheck, when it said yes: its filter is not run again */
    int observe = 1;
    if (pre && pre != fp_py.none) {
        fp_pyobj *r = fp_py.PyObject_CallFunctionObjArgs(pre, all, kwargs, NULL);
        if (!r && fp_py.PyErr_ExceptionMatches(*fp_py.keyboard_interrupt)) {
            /* the target's Ctrl-C (its signal handler ran meanwhile): it goes on to the target */
            fp_py.Py_DecRef(all);
            fp_py.Py_DecRef(kwargs);
            return NULL;
        }
        /* A filter that raises lets the call through: the probe reports why. */
        observe = r ? fp_py.PyObject_IsTrue(r) : 1;
        if (r && observe == 1) passed = pre;
        if (observe < 0) observe = 1;
        if (r) fp_py.Py_DecRef(r);
        fp_py.PyErr_Clear();
    }
    if (!observe) {
        fp_py.Py_DecRef(all);
        fp_py.Py_DecRef(kwargs);
        return fp_py_none_ref();
    }
    fp_pyobj *r =
        fp_py.PyObject_CallFunctionObjArgs(fp_mon_start, code, frame, all, kwargs, passed, NULL);
    fp_py.Py_DecRef(all);
    fp_py.Py_DecRef(kwargs);
    if (r) fp_py.Py_DecRef(r);
    /* instrument.py's start never raises but for the target's own KeyboardInterrupt (a signal
     * handler that ran meanwhile); that one goes on to the target as it would have. */
    return r ? fp_py_none_ref() : NULL;
}

/* PY_RETURN / PY_UNWIND: nothing to do while no observed call is in flight. */
static fp_pyobj *fp_mon_end(fp_pyobj *fn, fp_pyobj *const *args, ssize_t nargs)
{
    if (nargs != 3 || !fn || !fp_mon_live || fp_py.PyDict_Size(fp_mon_live) <= 0)
        return fp_py_none_ref();
    fp_pyobj *r = fp_py.PyObject_CallFunctionObjArgs(fn, args[0], args[1], args[2], NULL);
    if (!r) return NULL;
    fp_py.Py_DecRef(r);
    return fp_py_none_ref();
}

static fp_pyobj *fp_mon_on_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (fp_mon_depth > 0 && fp_mon_count_end(fp_py.PyEval_GetFrame(), 0)) return fp_py_none_ref();
    return fp_mon_end(fp_mon_ret, args, nargs);
}

static fp_pyobj *fp_mon_on_unwind(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    /* A global event: every frame of the process that exits by an exception comes here. */
    if (nargs == 3 && fp_mon_find(args[0]) < 0) return fp_py_none_ref();
    if (fp_mon_depth > 0 && fp_mon_count_end(fp_py.PyEval_GetFrame(), 1)) return fp_py_none_ref();
    return fp_mon_end(fp_mon_unwind, args, nargs);
}

static fp_py_methoddef fp_mon_methods[] = {
    {"configure", (fp_py_cfunc)(void (*)(void))fp_mon_configure, FP_METH_FASTCALL,
     "configure(busy, live, start, ret, unwind); configure() drops them and every site"},
    {"site", (fp_py_cfunc)(void (*)(void))fp_mon_site, FP_METH_FASTCALL,
     "site(code, spec) -> bool: observe code (False: too many); site(code, None) forgets it"},
    {"counts", (fp_py_cfunc)(void (*)(void))fp_mon_counts_of, FP_METH_FASTCALL,
     "counts(code) -> (calls, errors, total_ns, max_ns, min_ns, [(bucket, n)]) since the last "
     "counts(code), or None"},
    {"on_start", (fp_py_cfunc)(void (*)(void))fp_mon_on_start, FP_METH_FASTCALL,
     "PY_START callback"},
    {"on_return", (fp_py_cfunc)(void (*)(void))fp_mon_on_return, FP_METH_FASTCALL,
     "PY_RETURN callback"},
    {"on_unwind", (fp_py_cfunc)(void (*)(void))fp_mon_on_unwind, FP_METH_FASTCALL,
     "PY_UNWIND callback"},
};

int fp_agent_monitor_export(void *package)
{
    /* 3.8-3.11 have no PyFrame_GetVar: instrument.py uses its Python callbacks. */
    if (!fp_py_usable(FP_PYG_MONITOR)) return -1;
    return fp_py_export(package, "_native_monitor", fp_mon_methods,
                        sizeof fp_mon_methods / sizeof fp_mon_methods[0]);
}
