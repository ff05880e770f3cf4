/* Calls counted in C for monitor.py: while a function's only probe is a monitor's, each call
 * adds to a counter here (calls, errors, total, largest and smallest cost, monitor.py's latency
 * histogram of 4 buckets per octave from 1 us) and no Python code of fp runs; the monitor's
 * report takes what was counted since the last one. Both engines count here: monitor.c keeps
 * one counter per instrumented code (3.12+); the code-swap wrapper (3.8-3.11) calls the gate()
 * and done() below in place of its site's Python methods, for a counter slot of its own. */
#include "agent.h"
#include "pyapi.h"

#include <string.h>
#include <time.h>

unsigned long long fp_counts_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* time.perf_counter_ns's clock */
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* monitor.py's bucket_of: floor(4 * log2(cost / 1 us)), 0 to 95. */
static int fp_counts_bucket(unsigned long long cost_ns)
{
    unsigned long long us = cost_ns / 1000;
    if (us < 1) return 0;
    int octave = 63 - __builtin_clzll(us);
    unsigned long long quarter = octave >= 2 ? (us >> (octave - 2)) & 3 : (us << (2 - octave)) & 3;
    int b = 4 * octave + (int)quarter;
    return b < FP_COUNTS_BUCKETS ? b : FP_COUNTS_BUCKETS - 1;
}

void fp_counts_add(fp_counts *c, unsigned long long cost_ns, int raised)
{
    c->calls++;
    c->errors += raised != 0;
    c->total_ns += cost_ns;
    if (cost_ns > c->max_ns) c->max_ns = cost_ns;
    if (c->calls == 1 || cost_ns < c->min_ns) c->min_ns = cost_ns;
    c->hist[fp_counts_bucket(cost_ns)]++;
}

fp_pyobj *fp_counts_take(fp_counts *counts)
{
    fp_counts c = *counts;
    memset(counts, 0, sizeof *counts);
    int used = 0;
    for (int b = 0; b < FP_COUNTS_BUCKETS; b++)
        used += c.hist[b] != 0;
    fp_pyobj *hist = fp_py.PyList_New(used);
    fp_pyobj *out = fp_py.PyTuple_New(6);
    if (!hist || !out) goto fail;
    for (int b = 0, k = 0; b < FP_COUNTS_BUCKETS; b++) {
        if (!c.hist[b]) continue;
        fp_pyobj *pair = fp_py.PyTuple_New(2);
        if (!pair) goto fail;
        fp_py.PyTuple_SetItem(pair, 0, fp_py.PyLong_FromLongLong(b));
        fp_py.PyTuple_SetItem(pair, 1, fp_py.PyLong_FromLongLong((long long)c.hist[b]));
        fp_py.PyList_SetItem(hist, k++, pair);
    }
    unsigned long long v[5] = {c.calls, c.errors, c.total_ns, c.max_ns, c.min_ns};
    for (int i = 0; i < 5; i++)
        fp_py.PyTuple_SetItem(out, i, fp_py.PyLong_FromLongLong((long long)v[i]));
    fp_py.PyTuple_SetItem(out, 5, hist);
    hist = NULL;
    if (fp_py.PyErr_Occurred()) goto fail;
    return out;
fail:
    if (hist) fp_py.Py_DecRef(hist);
    if (out) fp_py.Py_DecRef(out);
    return NULL;
}

/* ===================================== The code-swap engine's counters ====================== */

#define FP_COUNTER_SLOTS 256
static fp_counts fp_counter[FP_COUNTER_SLOTS];
static unsigned char fp_counter_used[FP_COUNTER_SLOTS];
static int fp_counter_nused;
/* Set by configure(busy, done_any), dropped with the last slot: instrument.py's set of busy
 * threads, and the Python end of an observed call (done_any(pairs, result, cost_ns)) for a
 * call that started while the site's probes ran in Python. */
static fp_pyobj *fp_counter_busy, *fp_counter_done_any;

static void fp_counter_set(fp_pyobj **slot, fp_pyobj *value)
{
    fp_pyobj *old = *slot;
    if (value) fp_py.Py_IncRef(value);
    *slot = value;
    if (old) fp_py.Py_DecRef(old);
}

static fp_pyobj *fp_counter_configure(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_counter_set(&fp_counter_busy, nargs == 2 ? args[0] : NULL);
    fp_counter_set(&fp_counter_done_any, nargs == 2 ? args[1] : NULL);
    return fp_py_none_ref();
}

/* The slot an integer names, or -1. */
static int fp_counter_slot(fp_pyobj *v)
{
    long long s = fp_py.PyLong_AsLongLong(v);
    if (s == -1 && fp_py.PyErr_Occurred()) {
        fp_py.PyErr_Clear();
        return -1;
    }
    return s >= 0 && s < FP_COUNTER_SLOTS && fp_counter_used[s] ? (int)s : -1;
}

/* new() -> a free slot, counting from zero, or None when all are taken. */
static fp_pyobj *fp_counter_new(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self, (void)args, (void)nargs;
    for (int s = 0; s < FP_COUNTER_SLOTS; s++) {
        if (fp_counter_used[s]) continue;
        fp_counter_used[s] = 1;
        fp_counter_nused++;
        memset(&fp_counter[s], 0, sizeof fp_counter[s]);
        return fp_py.PyLong_FromLongLong(s);
    }
    return fp_py_none_ref();
}

/* free(slot): what it counted is gone; the last slot freed drops configure()'s references. */
static fp_pyobj *fp_counter_free(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int s = nargs == 1 ? fp_counter_slot(args[0]) : -1;
    if (s >= 0) {
        fp_counter_used[s] = 0;
        if (--fp_counter_nused == 0) {
            fp_counter_set(&fp_counter_busy, NULL);
            fp_counter_set(&fp_counter_done_any, NULL);
        }
    }
    return fp_py_none_ref();
}

/* take(slot) -> (calls, errors, total_ns, max_ns, min_ns, [(bucket, n)]) since the last take,
 * or None for a slot not in use. */
static fp_pyobj *fp_counter_take(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int s = nargs == 1 ? fp_counter_slot(args[0]) : -1;
    return s < 0 ? fp_py_none_ref() : fp_counts_take(&fp_counter[s]);
}

/* The wrapper's gate(all_args, kwargs), made by gate_of(slot) (self is the slot): the token
 * of a counted call (the slot), or None for a thread running fp's own code. */
static fp_pyobj *fp_counter_gate(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)args, (void)nargs;
    if (fp_py_thread_in(fp_counter_busy)) return fp_py_none_ref();
    fp_py.Py_IncRef(self);
    return self;
}

static fp_py_methoddef fp_counter_gate_def = {"gate", (fp_py_cfunc)(void (*)(void))fp_counter_gate,
                                              FP_METH_FASTCALL,
                                              "gate(all_args, kwargs) -> slot or None"};

static fp_pyobj *fp_counter_gate_of(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 1 || fp_counter_slot(args[0]) < 0) return fp_py_none_ref();
    return fp_py.PyCFunction_NewEx(&fp_counter_gate_def, args[0], NULL);
}

/* The wrapper's done(token, result, cost_ns): a slot's call is counted; any other token (the
 * call started while the probes ran in Python) goes to done_any. */
static fp_pyobj *fp_counter_done(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 3) return fp_py_none_ref();
    int s = fp_counter_slot(args[0]); /* -1 for a list of (probe, token) */
    if (s >= 0) {
        long long cost = fp_py.PyLong_AsLongLong(args[2]);
        if (cost < 0) fp_py.PyErr_Clear();
        if (cost >= 0) fp_counts_add(&fp_counter[s], (unsigned long long)cost, 0);
        return fp_py_none_ref();
    }
    if (!fp_counter_done_any) return fp_py_none_ref();
    fp_pyobj *r =
        fp_py.PyObject_CallFunctionObjArgs(fp_counter_done_any, args[0], args[1], args[2], NULL);
    if (!r) return NULL; /* the target's own KeyboardInterrupt: it goes on to the target */
    fp_py.Py_DecRef(r);
    return fp_py_none_ref();
}

/* end(slot, cost_ns, raised): a counted call that ended through the site's Python methods (it
 * raised, or the probes changed while it ran). */
static fp_pyobj *fp_counter_end(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int s = nargs == 3 ? fp_counter_slot(args[0]) : -1;
    long long cost = s >= 0 ? fp_py.PyLong_AsLongLong(args[1]) : -1;
    if (cost < 0) fp_py.PyErr_Clear();
    if (s >= 0 && cost >= 0)
        fp_counts_add(&fp_counter[s], (unsigned long long)cost,
                      fp_py.PyObject_IsTrue(args[2]) == 1);
    return fp_py_none_ref();
}

static fp_py_methoddef fp_counter_methods[] = {
    {"configure", (fp_py_cfunc)(void (*)(void))fp_counter_configure, FP_METH_FASTCALL,
     "configure(busy, done_any) before new(); the last free() drops them"},
    {"new", (fp_py_cfunc)(void (*)(void))fp_counter_new, FP_METH_FASTCALL,
     "new() -> slot, or None when every slot is taken"},
    {"free", (fp_py_cfunc)(void (*)(void))fp_counter_free, FP_METH_FASTCALL, "free(slot)"},
    {"take", (fp_py_cfunc)(void (*)(void))fp_counter_take, FP_METH_FASTCALL,
     "take(slot) -> (calls, errors, total_ns, max_ns, min_ns, [(bucket, n)]) since the last"},
    {"gate_of", (fp_py_cfunc)(void (*)(void))fp_counter_gate_of, FP_METH_FASTCALL,
     "gate_of(slot) -> the wrapper's gate(all_args, kwargs) for that slot"},
    {"done", (fp_py_cfunc)(void (*)(void))fp_counter_done, FP_METH_FASTCALL,
     "the wrapper's done(token, result, cost_ns)"},
    {"end", (fp_py_cfunc)(void (*)(void))fp_counter_end, FP_METH_FASTCALL,
     "end(slot, cost_ns, raised)"},
};

int fp_agent_counter_export(void *package)
{
    if (!fp_py_usable(FP_PYG_COUNT)) return -1;
    return fp_py_export(package, "_native_counter", fp_counter_methods,
                        sizeof fp_counter_methods / sizeof fp_counter_methods[0]);
}
