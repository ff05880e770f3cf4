/* The trace recorder heard through sys.monitoring (3.12+): callbacks written in C for a tool id
 * of its own (see fp_trace_py_monitor). Events are on only while a recording runs, and every
 * thread's events reach the callbacks, which ignore those of threads that are not recording.
 * It costs the traced call far less than the profile function, which CPython 3.12+ builds on
 * the same events plus a frame object and a bound method per call. */
#include "trace_internal.h"

#include <stdlib.h>
#include <string.h>

/* ===================================== sys.monitoring (3.12+) ================================ */

fp_trace_mon_state fp_trace_mon;

/* sys.monitoring.set_events(tool, events); -1 with the exception set when it failed. An
 * exception already pending (a recording freed while one propagates) is kept as it was. */
static int fp_trace_mon_set_events(long events)
{
    fp_pyobj *type, *value, *tb;
    fp_py.PyErr_Fetch(&type, &value, &tb);
    fp_pyobj *args = fp_py.PyTuple_New(2);
    fp_pyobj *res = NULL;
    if (args) {
        fp_py.PyTuple_SetItem(args, 0, fp_py.PyLong_FromLongLong(fp_trace_mon.tool));
        fp_py.PyTuple_SetItem(args, 1, fp_py.PyLong_FromLongLong(events));
        if (!fp_py.PyErr_Occurred()) res = fp_py.PyObject_CallObject(fp_trace_mon.set_events, args);
        fp_py.Py_DecRef(args);
    }
    if (res) fp_py.Py_DecRef(res);
    if (type) {
        if (!res) fp_py.PyErr_Clear();
        fp_py.PyErr_Restore(type, value, tb);
    }
    return res ? 0 : -1;
}

int fp_trace_mon_add(fp_trace_rec *r)
{
    if (fp_trace_mon.nactive == fp_trace_mon.cap) {
        uint32_t cap = fp_trace_mon.cap ? fp_trace_mon.cap * 2 : 8;
        fp_trace_rec **a = realloc(fp_trace_mon.active, cap * sizeof *a);
        if (!a) {
            fp_py.PyErr_SetString(*fp_py.runtime_error, "out of memory for a trace recording");
            return -1;
        }
        fp_trace_mon.active = a;
        fp_trace_mon.cap = cap;
    }
    fp_trace_mon.active[fp_trace_mon.nactive++] = r;
    if (fp_trace_mon.nactive == 1 && fp_trace_mon_set_events(fp_trace_mon.mask) != 0) {
        fp_trace_mon.nactive--;
        return -1;
    }
    return 0;
}

/* Takes a monitored recording out of the list (from any thread: under the GIL its thread runs
 * none of our code); the events go off with the last one. */
void fp_trace_mon_remove(fp_trace_rec *r)
{
    if (!r->installed) return;
    for (uint32_t i = 0; i < fp_trace_mon.nactive; i++) {
        if (fp_trace_mon.active[i] != r) continue;
        fp_trace_mon.active[i] = fp_trace_mon.active[--fp_trace_mon.nactive];
        break;
    }
    r->installed = 0;
    int pending = fp_py.PyErr_Occurred() != NULL;
    if (fp_trace_mon.nactive == 0 && fp_trace_mon.on && fp_trace_mon_set_events(0) != 0 && !pending)
        fp_py.PyErr_Clear(); /* nothing else can be done; the callbacks ignore every event */
    fp_trace_unref(r);
}

/* What a callback returns: None, without a reference (3.12+, where these run, None is
 * immortal: its count is never changed). */
static inline fp_pyobj *fp_trace_mon_none(void)
{
    return fp_py.none;
}

/* PY_START, PY_RESUME, PY_THROW (code, offset, ...). */
fp_pyobj *fp_trace_mon_on_start(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r = fp_trace_mon_current();
    if (r && nargs >= 1) {
        fp_trace_ev ev = {NULL, args[0], 0};
        fp_trace_on_py_call(r, &ev);
    }
    return fp_trace_mon_none();
}

/* PY_RETURN, PY_YIELD, PY_UNWIND (code, offset, value). */
fp_pyobj *fp_trace_mon_on_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r = fp_trace_mon_current();
    if (r && nargs >= 1) {
        fp_trace_ev ev = {NULL, args[0], 0};
        fp_trace_on_return(r, 1, &ev);
    }
    return fp_trace_mon_none();
}

/* CALL (code, offset, callable, arg0): C functions only; a Python one reports its PY_START. */
fp_pyobj *fp_trace_mon_on_call(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int kind;
    fp_trace_rec *r;
    /* Most calls are of Python functions: the callable is checked first. */
    if (nargs >= 3 && (kind = fp_trace_mon_c_kind(args[2])) != 0 &&
        (r = fp_trace_mon_current()) != NULL) {
        fp_pyobj *owner;
        const void *ml = fp_trace_mon_c_key(args[2], kind, &owner);
        fp_trace_on_c_call(r, ml, owner);
    }
    return fp_trace_mon_none();
}

/* C_RETURN, C_RAISE (code, offset, callable, arg0): the same callables as CALL's. */
fp_pyobj *fp_trace_mon_on_c_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r;
    if (nargs >= 3 && fp_trace_mon_c_kind(args[2]) && (r = fp_trace_mon_current()) != NULL)
        fp_trace_on_return(r, 0, NULL);
    return fp_trace_mon_none();
}

/* The same callbacks as objects with a vectorcall slot. sys.monitoring calls its callbacks with
 * PyObject_Vectorcall; a builtin function adds a layer of its own there (a recursion check that
 * looks the thread state up, a thread-local lookup in libpython), while an object whose type has
 * a vectorcall slot is called directly: a tenth of what recording costs on 3.12 and 3.13. The
 * type is made once, with PyType_FromSpec; without it the builtins are used. */
typedef fp_pyobj *(*fp_vectorcall_fn)(fp_pyobj *, fp_pyobj *const *, size_t, fp_pyobj *);

/* PyMemberDef, PyType_Slot, PyType_Spec (3.12, 3.13). */
typedef struct {
    const char *name;
    int type;
    ssize_t offset;
    int flags;
    const char *doc;
} fp_trace_memberdef;
typedef struct {
    int slot;
    void *pfunc;
} fp_trace_slot;
typedef struct {
    const char *name;
    int basicsize, itemsize;
    unsigned int flags;
    fp_trace_slot *slots;
} fp_trace_typespec;

enum { FP_TP_CALL = 50, FP_TP_MEMBERS = 72, FP_T_PYSSIZET = 19, FP_READONLY = 1 };
#define FP_TPFLAGS_DISALLOW_INSTANTIATION (1U << 7)
#define FP_TPFLAGS_IMMUTABLETYPE (1U << 8)
#define FP_TPFLAGS_HAVE_VECTORCALL (1U << 11)
/* An object of the type: the object's head (two words), then its function. */
#define FP_CALLBACK_FN(o) (*(fp_vectorcall_fn *)((char *)(o) + 2 * sizeof(void *)))
#define FP_VECTORCALL_NARGS(n) ((ssize_t)((n) & ~((size_t)1 << (8 * sizeof(size_t) - 1))))

static fp_pyobj *fp_trace_mon_vc_start(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                       fp_pyobj *kw)
{
    (void)kw;
    return fp_trace_mon_on_start(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_trace_mon_vc_return(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                        fp_pyobj *kw)
{
    (void)kw;
    return fp_trace_mon_on_return(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_trace_mon_vc_call(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                      fp_pyobj *kw)
{
    (void)kw;
    return fp_trace_mon_on_call(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_trace_mon_vc_c_return(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                          fp_pyobj *kw)
{
    (void)kw;
    return fp_trace_mon_on_c_return(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static const struct {
    const char *name;
    fp_vectorcall_fn fn;
} fp_trace_mon_callbacks[] = {
    {"ev_start", fp_trace_mon_vc_start},
    {"ev_return", fp_trace_mon_vc_return},
    {"ev_call", fp_trace_mon_vc_call},
    {"ev_c_return", fp_trace_mon_vc_c_return},
};

/* A new type for the callbacks (a new reference), NULL when it could not be made (before 3.12 it
 * is not tried). One per load of the package: its objects hold it, and it goes with them when
 * the package is unloaded (the cyclic GC collects it), so nothing of it stays in the process. */
fp_pyobj *fp_trace_mon_new_callback_type(void)
{
    if (!fp_py.PyType_FromMetaclass || !fp_py.PyType_FromSpec || !fp_py.PyType_GenericAlloc ||
        !fp_py.PyVectorcall_Call)
        return NULL;
    static fp_trace_memberdef members[] = {
        {"__vectorcalloffset__", FP_T_PYSSIZET, 2 * sizeof(void *), FP_READONLY, NULL},
        {NULL, 0, 0, 0, NULL},
    };
    static fp_trace_slot slots[] = {{FP_TP_CALL, NULL}, {FP_TP_MEMBERS, members}, {0, NULL}};
    slots[0].pfunc = fp_py.PyVectorcall_Call;
    static fp_trace_typespec spec = {"fp_agent.monitoring_callback", (int)(3 * sizeof(void *)), 0,
                                     FP_TPFLAGS_HAVE_VECTORCALL | FP_TPFLAGS_IMMUTABLETYPE |
                                         FP_TPFLAGS_DISALLOW_INSTANTIATION,
                                     slots};
    fp_pyobj *type = fp_py.PyType_FromSpec(&spec);
    if (!type) fp_py.PyErr_Clear();
    return type;
}

/* The callback `name` as an object of `type` (NULL: none), else NULL (no error set). */
fp_pyobj *fp_trace_mon_callback(fp_pyobj *type, const char *name)
{
    if (!type) return NULL;
    for (size_t i = 0; i < sizeof fp_trace_mon_callbacks / sizeof fp_trace_mon_callbacks[0]; i++) {
        if (strcmp(fp_trace_mon_callbacks[i].name, name) != 0) continue;
        fp_pyobj *obj = fp_py.PyType_GenericAlloc(type, 0);
        if (!obj) {
            fp_py.PyErr_Clear();
            return NULL;
        }
        FP_CALLBACK_FN(obj) = fp_trace_mon_callbacks[i].fn;
        return obj;
    }
    return NULL;
}
