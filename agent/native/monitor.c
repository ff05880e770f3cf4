/* The sys.monitoring callbacks of fp_agent/instrument.py in C (3.12+), so that a call that no
 * probe wants costs little: PY_START reads the parameters with PyFrame_GetVar (no f_locals
 * dict), runs the probe's compiled entry filter (precheck) and only calls into Python when the
 * call is to be observed; PY_RETURN and PY_UNWIND return at once while no observed call is in
 * flight. instrument.py keeps the pure-Python twin of these three functions and uses it when
 * this file's functions are not there (another Python, a missing symbol). */
#include "agent.h"

#include <string.h>

typedef struct fp_pyobj fp_pyobj;
typedef fp_pyobj *(*fp_mon_fastcall)(fp_pyobj *, fp_pyobj *const *, ssize_t);

typedef struct fp_mon_methoddef {
    const char *ml_name;
    fp_mon_fastcall ml_meth;
    int ml_flags;
    const char *ml_doc;
} fp_mon_methoddef;

enum { FP_MON_METH_FASTCALL = 0x80 };

static struct {
    fp_pyobj *(*PyCFunction_NewEx)(fp_mon_methoddef *, fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyDict_New)(void);
    int (*PyDict_SetItem)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    int (*PyDict_SetItemString)(fp_pyobj *, const char *, fp_pyobj *);
    int (*PyDict_Update)(fp_pyobj *, fp_pyobj *);
    ssize_t (*PyDict_Size)(fp_pyobj *);
    ssize_t (*PySet_Size)(fp_pyobj *);
    int (*PySet_Contains)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyTuple_New)(ssize_t);
    int (*PyTuple_SetItem)(fp_pyobj *, ssize_t, fp_pyobj *);
    fp_pyobj *(*PyTuple_GetItem)(fp_pyobj *, ssize_t);
    ssize_t (*PyTuple_Size)(fp_pyobj *);
    fp_pyobj *(*PySequence_Concat)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyLong_FromUnsignedLong)(unsigned long);
    unsigned long (*PyThread_get_thread_ident)(void);
    fp_pyobj *(*PyEval_GetFrame)(void);
    fp_pyobj *(*PyFrame_GetVar)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyObject_CallFunctionObjArgs)(fp_pyobj *, ...);
    int (*PyObject_IsTrue)(fp_pyobj *);
    fp_pyobj *(*PyBool_FromLong)(long);
    int (*PyObject_SetAttrString)(fp_pyobj *, const char *, fp_pyobj *);
    void (*PyErr_Clear)(void);
    int (*PyErr_ExceptionMatches)(fp_pyobj *);
    void (*Py_IncRef)(fp_pyobj *);
    void (*Py_DecRef)(fp_pyobj *);
    fp_pyobj *none;
    fp_pyobj **keyboard_interrupt;
} api;

static int fp_mon_resolved; /* 1 usable, -1 not (3.8-3.11 have no PyFrame_GetVar) */

static int fp_mon_resolve(void)
{
    struct {
        const char *name;
        void *slot;
    } syms[] = {
        {"PyCFunction_NewEx", &api.PyCFunction_NewEx},
        {"PyDict_New", &api.PyDict_New},
        {"PyDict_SetItem", &api.PyDict_SetItem},
        {"PyDict_SetItemString", &api.PyDict_SetItemString},
        {"PyDict_Update", &api.PyDict_Update},
        {"PyDict_Size", &api.PyDict_Size},
        {"PySet_Size", &api.PySet_Size},
        {"PySet_Contains", &api.PySet_Contains},
        {"PyTuple_New", &api.PyTuple_New},
        {"PyTuple_SetItem", &api.PyTuple_SetItem},
        {"PyTuple_GetItem", &api.PyTuple_GetItem},
        {"PyTuple_Size", &api.PyTuple_Size},
        {"PySequence_Concat", &api.PySequence_Concat},
        {"PyLong_FromUnsignedLong", &api.PyLong_FromUnsignedLong},
        {"PyThread_get_thread_ident", &api.PyThread_get_thread_ident},
        {"PyEval_GetFrame", &api.PyEval_GetFrame},
        {"PyFrame_GetVar", &api.PyFrame_GetVar},
        {"PyObject_CallFunctionObjArgs", &api.PyObject_CallFunctionObjArgs},
        {"PyObject_IsTrue", &api.PyObject_IsTrue},
        {"PyBool_FromLong", &api.PyBool_FromLong},
        {"PyObject_SetAttrString", &api.PyObject_SetAttrString},
        {"PyErr_Clear", &api.PyErr_Clear},
        {"PyErr_ExceptionMatches", &api.PyErr_ExceptionMatches},
        {"PyExc_KeyboardInterrupt", &api.keyboard_interrupt},
        {"Py_IncRef", &api.Py_IncRef},
        {"Py_DecRef", &api.Py_DecRef},
        {"_Py_NoneStruct", &api.none},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *p = fp_agent_py_sym(syms[i].name);
        if (!p) return -1;
        memcpy(syms[i].slot, &p, sizeof p);
    }
    return 0;
}

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

static fp_pyobj *fp_mon_none(void)
{
    api.Py_IncRef(api.none);
    return api.none;
}

static void fp_mon_set(fp_pyobj **slot, fp_pyobj *value)
{
    fp_pyobj *old = *slot;
    if (value == api.none) value = NULL;
    if (value) api.Py_IncRef(value);
    *slot = value;
    if (old) api.Py_DecRef(old);
}

static fp_pyobj *fp_mon_configure(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_pyobj **slots[] = {&fp_mon_busy, &fp_mon_live, &fp_mon_start, &fp_mon_ret, &fp_mon_unwind};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        fp_mon_set(slots[i], (ssize_t)i < nargs ? args[i] : NULL);
    if (nargs == 0) { /* released: no site stays */
        for (int i = 0; i < fp_mon_nsites; i++)
            api.Py_DecRef(fp_mon_specs[i]);
        fp_mon_nsites = 0;
    }
    return fp_mon_none();
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
    if (nargs != 2) return api.PyBool_FromLong(0);
    int i = fp_mon_find(args[0]);
    if (args[1] == api.none) {
        if (i >= 0) {
            api.Py_DecRef(fp_mon_specs[i]);
            fp_mon_nsites--;
            fp_mon_codes[i] = fp_mon_codes[fp_mon_nsites];
            fp_mon_specs[i] = fp_mon_specs[fp_mon_nsites];
        }
        return api.PyBool_FromLong(1);
    }
    if (i < 0) {
        if (fp_mon_nsites >= FP_MON_MAX_SITES) return api.PyBool_FromLong(0);
        i = fp_mon_nsites++;
        fp_mon_codes[i] = args[0];
        fp_mon_specs[i] = NULL;
    }
    api.Py_IncRef(args[1]);
    fp_pyobj *old = fp_mon_specs[i];
    fp_mon_specs[i] = args[1];
    if (old) api.Py_DecRef(old);
    return api.PyBool_FromLong(1);
}

/* ===================================== The callbacks ======================================== */

/* The calling thread is in `busy` (running probe code, or suppressed). */
static int fp_mon_busy_thread(void)
{
    if (!fp_mon_busy || api.PySet_Size(fp_mon_busy) <= 0) return 0;
    fp_pyobj *ident = api.PyLong_FromUnsignedLong(api.PyThread_get_thread_ident());
    int in = ident ? api.PySet_Contains(fp_mon_busy, ident) : 0;
    if (ident) api.Py_DecRef(ident);
    if (in < 0) api.PyErr_Clear();
    return in > 0;
}

/* (all positional arguments, keyword-only + **kwargs) of the frame, as the parameters are now
 * (PY_START: as passed). Returns 0, or -1 (no exception left). */
static int fp_mon_read_args(fp_pyobj *frame, fp_pyobj *spec, fp_pyobj **out_args,
                            fp_pyobj **out_kwargs)
{
    fp_pyobj *pos = api.PyTuple_GetItem(spec, 0), *varargs = api.PyTuple_GetItem(spec, 1);
    fp_pyobj *kwonly = api.PyTuple_GetItem(spec, 2), *varkw = api.PyTuple_GetItem(spec, 3);
    if (!pos || !varargs || !kwonly || !varkw) goto fail;
    ssize_t n = api.PyTuple_Size(pos);
    fp_pyobj *args = api.PyTuple_New(n);
    if (!args) goto fail;
    for (ssize_t i = 0; i < n; i++) {
        fp_pyobj *v = api.PyFrame_GetVar(frame, api.PyTuple_GetItem(pos, i));
        if (!v) {
            api.Py_DecRef(args);
            goto fail;
        }
        api.PyTuple_SetItem(args, i, v); /* steals v */
    }
    if (varargs != api.none) {
        fp_pyobj *rest = api.PyFrame_GetVar(frame, varargs);
        fp_pyobj *all = rest ? api.PySequence_Concat(args, rest) : NULL;
        if (rest) api.Py_DecRef(rest);
        api.Py_DecRef(args);
        if (!all) goto fail;
        args = all;
    }
    ssize_t k = api.PyTuple_Size(kwonly);
    if (k == 0 && varkw == api.none) { /* no keyword parameters: kwargs is None (prechecks
                                        * and instrument.py's start make it {}) */
        *out_args = args;
        *out_kwargs = fp_mon_none();
        return 0;
    }
    fp_pyobj *kwargs = api.PyDict_New();
    if (!kwargs) {
        api.Py_DecRef(args);
        goto fail;
    }
    int ok = 1;
    for (ssize_t i = 0; ok && i < k; i++) {
        fp_pyobj *name = api.PyTuple_GetItem(kwonly, i);
        fp_pyobj *v = api.PyFrame_GetVar(frame, name);
        ok = v && api.PyDict_SetItem(kwargs, name, v) == 0;
        if (v) api.Py_DecRef(v);
    }
    if (ok && varkw != api.none) {
        fp_pyobj *more = api.PyFrame_GetVar(frame, varkw);
        ok = more && api.PyDict_Update(kwargs, more) == 0;
        if (more) api.Py_DecRef(more);
    }
    if (!ok) {
        api.Py_DecRef(args);
        api.Py_DecRef(kwargs);
        goto fail;
    }
    *out_args = args;
    *out_kwargs = kwargs;
    return 0;
fail:
    api.PyErr_Clear();
    return -1;
}

static fp_pyobj *fp_mon_on_start(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs < 1 || !fp_mon_start) return fp_mon_none();
    fp_pyobj *code = args[0];
    int at = fp_mon_find(code);
    if (at < 0 || fp_mon_busy_thread()) return fp_mon_none();
    fp_pyobj *spec = fp_mon_specs[at];       /* borrowed */
    fp_pyobj *frame = api.PyEval_GetFrame(); /* borrowed: the frame that starts */
    fp_pyobj *all = NULL, *kwargs = NULL;
    if (!frame || fp_mon_read_args(frame, spec, &all, &kwargs) != 0) return fp_mon_none();
    fp_pyobj *pre = api.PyTuple_GetItem(spec, 4);
    fp_pyobj *passed = api.none; /* the precheck, when it said yes: its filter is not run again */
    int observe = 1;
    if (pre && pre != api.none) {
        fp_pyobj *r = api.PyObject_CallFunctionObjArgs(pre, all, kwargs, NULL);
        if (!r && api.PyErr_ExceptionMatches(*api.keyboard_interrupt)) {
            /* the target's Ctrl-C (its signal handler ran meanwhile): it goes on to the target */
            api.Py_DecRef(all);
            api.Py_DecRef(kwargs);
            return NULL;
        }
        /* A filter that raises lets the call through: the probe reports why. */
        observe = r ? api.PyObject_IsTrue(r) : 1;
        if (r && observe == 1) passed = pre;
        if (observe < 0) observe = 1;
        if (r) api.Py_DecRef(r);
        api.PyErr_Clear();
    }
    if (!observe) {
        api.Py_DecRef(all);
        api.Py_DecRef(kwargs);
        return fp_mon_none();
    }
    fp_pyobj *r =
        api.PyObject_CallFunctionObjArgs(fp_mon_start, code, frame, all, kwargs, passed, NULL);
    api.Py_DecRef(all);
    api.Py_DecRef(kwargs);
    if (r) api.Py_DecRef(r);
    /* instrument.py's start never raises but for the target's own KeyboardInterrupt (a signal
     * handler that ran meanwhile); that one goes on to the target as it would have. */
    return r ? fp_mon_none() : NULL;
}

/* PY_RETURN / PY_UNWIND: nothing to do while no observed call is in flight. */
static fp_pyobj *fp_mon_end(fp_pyobj *fn, fp_pyobj *const *args, ssize_t nargs)
{
    if (nargs != 3 || !fn || !fp_mon_live || api.PyDict_Size(fp_mon_live) <= 0)
        return fp_mon_none();
    fp_pyobj *r = api.PyObject_CallFunctionObjArgs(fn, args[0], args[1], args[2], NULL);
    if (!r) return NULL;
    api.Py_DecRef(r);
    return fp_mon_none();
}

static fp_pyobj *fp_mon_on_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    return fp_mon_end(fp_mon_ret, args, nargs);
}

static fp_pyobj *fp_mon_on_unwind(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    /* A global event: every frame of the process that exits by an exception comes here. */
    if (nargs == 3 && fp_mon_find(args[0]) < 0) return fp_mon_none();
    return fp_mon_end(fp_mon_unwind, args, nargs);
}

static fp_mon_methoddef fp_mon_methods[] = {
    {"configure", fp_mon_configure, FP_MON_METH_FASTCALL,
     "configure(busy, live, start, ret, unwind); configure() drops them and every site"},
    {"site", fp_mon_site, FP_MON_METH_FASTCALL,
     "site(code, spec) -> bool: observe code (False: too many); site(code, None) forgets it"},
    {"on_start", fp_mon_on_start, FP_MON_METH_FASTCALL, "PY_START callback"},
    {"on_return", fp_mon_on_return, FP_MON_METH_FASTCALL, "PY_RETURN callback"},
    {"on_unwind", fp_mon_on_unwind, FP_MON_METH_FASTCALL, "PY_UNWIND callback"},
};

int fp_agent_monitor_export(void *package)
{
    if (fp_mon_resolved == 0) fp_mon_resolved = fp_mon_resolve() == 0 ? 1 : -1;
    if (fp_mon_resolved < 0) return -1; /* instrument.py uses its Python callbacks */
    fp_pyobj *dict = api.PyDict_New();
    if (!dict) {
        api.PyErr_Clear();
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < sizeof fp_mon_methods / sizeof fp_mon_methods[0]; i++) {
        fp_pyobj *f = api.PyCFunction_NewEx(&fp_mon_methods[i], NULL, NULL);
        if (!f || api.PyDict_SetItemString(dict, fp_mon_methods[i].ml_name, f) < 0) rc = -1;
        if (f) api.Py_DecRef(f);
    }
    if (rc == 0 && api.PyObject_SetAttrString(package, "_native_monitor", dict) < 0) rc = -1;
    api.Py_DecRef(dict);
    if (rc < 0) api.PyErr_Clear();
    return rc;
}
