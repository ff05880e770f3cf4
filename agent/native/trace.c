/* The `trace` recorder: it aggregates every Python and C call of one traced call into a
 * calling-context tree as it happens (count and inclusive time per call path). It hears the
 * calls in one of two ways:
 * - a C profile function (PyEval_SetProfile) set on the thread of the traced call, for that
 *   call only (3.8-3.11, and 3.12+ when no sys.monitoring tool id is free);
 * - on 3.12+, sys.monitoring callbacks written in C, for a tool id of its own (see
 *   fp_trace_py_monitor). Events are on only while a recording runs, and every thread's events
 *   reach the callbacks, which ignore those of threads that are not recording. It costs the
 *   traced call far less than the profile function, which CPython 3.12+ builds on the same
 *   events plus a frame object and a bound method per call.
 * fp_agent/trace.py starts and stops it and turns the tree into the model; it has a pure-Python
 * twin of this recorder (sys.setprofile). */
#include "agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

/* ===================================== The C API, by hand ==================================== */

typedef struct fp_pyobj fp_pyobj; /* PyObject, opaque but for the fields read below */
typedef int (*fp_trace_func)(fp_pyobj *, fp_pyobj *, int, fp_pyobj *);
typedef fp_pyobj *(*fp_trace_cfn)(fp_pyobj *, fp_pyobj *);

/* PyMethodDef, the same in every CPython 3. */
typedef struct fp_trace_methoddef {
    const char *ml_name;
    fp_trace_cfn ml_meth;
    int ml_flags;
    const char *ml_doc;
} fp_trace_methoddef;

/* What the profile function receives (Include/cpython/pystate.h). */
enum {
    FP_PT_CALL = 0,
    FP_PT_RETURN = 3,
    FP_PT_C_CALL = 4,
    FP_PT_C_EXCEPTION = 5,
    FP_PT_C_RETURN = 6
};
enum { FP_METH_VARARGS = 0x1, FP_METH_NOARGS = 0x4, FP_METH_O = 0x8, FP_METH_FASTCALL = 0x80 };

/* Layouts read in the profile function, checked once against live objects (fp_trace_check):
 * ob_type is the second word of every object; PyCFunctionObject is {head, m_ml, m_self, ...}
 * in 3.8-3.13; 3.8 has no PyFrame_GetCode, and its frame's f_code follows f_back. */
#define FP_OB_TYPE(o) (*(fp_pyobj **)((char *)(o) + sizeof(void *)))
#define FP_CFUNC_ML(o) (*(fp_trace_methoddef **)((char *)(o) + 2 * sizeof(void *)))
#define FP_CFUNC_SELF(o) (*(fp_pyobj **)((char *)(o) + 3 * sizeof(void *)))
#define FP_FRAME38_CODE(f) (*(fp_pyobj **)((char *)(f) + 4 * sizeof(void *)))
/* PyMethodDescrObject (list.append before it is bound): {head, d_type, d_name, d_qualname,
 * d_method, ...} in 3.8-3.13. */
#define FP_DESCR_TYPE(o) (*(fp_pyobj **)((char *)(o) + 2 * sizeof(void *)))
#define FP_DESCR_ML(o) (*(fp_trace_methoddef **)((char *)(o) + 5 * sizeof(void *)))
#define FP_TPFLAGS_TYPE_SUBCLASS (1UL << 31)

static struct {
    void (*PyEval_SetProfile)(fp_trace_func, fp_pyobj *);
    int (*PyEval_SetProfileTstate)(void *, fp_trace_func,
                                   fp_pyobj *); /* _PyEval_SetProfile, 3.9+ */
    void *(*PyThreadState_Get)(void);
    fp_pyobj *(*PyEval_GetFrame)(void); /* borrowed */
    fp_pyobj *(*PyObject_CallObject)(fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyFrame_GetCode)(fp_pyobj *); /* 3.9+, a new reference */
    void (*Py_IncRef)(fp_pyobj *);
    void (*Py_DecRef)(fp_pyobj *);
    unsigned long (*PyType_GetFlags)(fp_pyobj *);
    fp_pyobj *(*PyCapsule_New)(void *, const char *, void (*)(fp_pyobj *));
    void *(*PyCapsule_GetPointer)(fp_pyobj *, const char *);
    fp_pyobj *(*PyCFunction_NewEx)(fp_trace_methoddef *, fp_pyobj *, fp_pyobj *);
    fp_pyobj *(*PyTuple_New)(ssize_t);
    int (*PyTuple_SetItem)(fp_pyobj *, ssize_t, fp_pyobj *);
    fp_pyobj *(*PyTuple_GetItem)(fp_pyobj *, ssize_t);
    ssize_t (*PyTuple_Size)(fp_pyobj *);
    fp_pyobj *(*PyList_New)(ssize_t);
    int (*PyList_SetItem)(fp_pyobj *, ssize_t, fp_pyobj *);
    fp_pyobj *(*PyLong_FromLongLong)(long long);
    long long (*PyLong_AsLongLong)(fp_pyobj *);
    fp_pyobj *(*PyUnicode_FromString)(const char *);
    fp_pyobj *(*PyBool_FromLong)(long);
    fp_pyobj *(*PyDict_New)(void);
    int (*PyDict_SetItemString)(fp_pyobj *, const char *, fp_pyobj *);
    int (*PyObject_SetAttrString)(fp_pyobj *, const char *, fp_pyobj *);
    fp_pyobj *(*PyErr_Occurred)(void);
    void (*PyErr_Clear)(void);
    void (*PyErr_Fetch)(fp_pyobj **, fp_pyobj **, fp_pyobj **);
    void (*PyErr_Restore)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    void (*PyErr_SetString)(fp_pyobj *, const char *);
    void (*PyErr_GetExcInfo)(fp_pyobj **, fp_pyobj **, fp_pyobj **);
    void (*PyErr_SetExcInfo)(fp_pyobj *, fp_pyobj *, fp_pyobj *);
    fp_pyobj *none, *module_type, *type_type;
    fp_pyobj *cfunction_type, *cmethod_type, *methoddescr_type; /* cmethod_type: 3.9+ */
    fp_pyobj **runtime_error, **type_error;
    /* 3.12+ (PyType_FromMetaclass is only there to tell): the callbacks' type */
    void *PyType_FromMetaclass;
    fp_pyobj *(*PyType_FromSpec)(void *);
    fp_pyobj *(*PyType_GenericAlloc)(fp_pyobj *, ssize_t);
    void *PyVectorcall_Call;
} api;

static int fp_trace_resolved; /* 1: every symbol is there; -1: not usable */

#define FP_TRACE_SYM(field, name, required)                                                        \
    do {                                                                                           \
        void *p_ = fp_agent_py_sym(name);                                                          \
        if (!p_ && (required)) return -1;                                                          \
        memcpy(&api.field, &p_, sizeof p_);                                                        \
    } while (0)

static int fp_trace_resolve_all(void)
{
    FP_TRACE_SYM(PyEval_SetProfile, "PyEval_SetProfile", 1);
    FP_TRACE_SYM(PyEval_SetProfileTstate, "_PyEval_SetProfile", 0);
    FP_TRACE_SYM(PyThreadState_Get, "PyThreadState_Get", 1);
    FP_TRACE_SYM(PyEval_GetFrame, "PyEval_GetFrame", 1);
    FP_TRACE_SYM(PyObject_CallObject, "PyObject_CallObject", 1);
    FP_TRACE_SYM(PyFrame_GetCode, "PyFrame_GetCode", 0);
    FP_TRACE_SYM(Py_IncRef, "Py_IncRef", 1);
    FP_TRACE_SYM(Py_DecRef, "Py_DecRef", 1);
    FP_TRACE_SYM(PyType_GetFlags, "PyType_GetFlags", 1);
    FP_TRACE_SYM(PyCapsule_New, "PyCapsule_New", 1);
    FP_TRACE_SYM(PyCapsule_GetPointer, "PyCapsule_GetPointer", 1);
    FP_TRACE_SYM(PyCFunction_NewEx, "PyCFunction_NewEx", 1);
    FP_TRACE_SYM(PyTuple_New, "PyTuple_New", 1);
    FP_TRACE_SYM(PyTuple_SetItem, "PyTuple_SetItem", 1);
    FP_TRACE_SYM(PyTuple_GetItem, "PyTuple_GetItem", 1);
    FP_TRACE_SYM(PyTuple_Size, "PyTuple_Size", 1);
    FP_TRACE_SYM(PyList_New, "PyList_New", 1);
    FP_TRACE_SYM(PyList_SetItem, "PyList_SetItem", 1);
    FP_TRACE_SYM(PyLong_FromLongLong, "PyLong_FromLongLong", 1);
    FP_TRACE_SYM(PyLong_AsLongLong, "PyLong_AsLongLong", 1);
    FP_TRACE_SYM(PyUnicode_FromString, "PyUnicode_FromString", 1);
    FP_TRACE_SYM(PyBool_FromLong, "PyBool_FromLong", 1);
    FP_TRACE_SYM(PyDict_New, "PyDict_New", 1);
    FP_TRACE_SYM(PyDict_SetItemString, "PyDict_SetItemString", 1);
    FP_TRACE_SYM(PyObject_SetAttrString, "PyObject_SetAttrString", 1);
    FP_TRACE_SYM(PyErr_Occurred, "PyErr_Occurred", 1);
    FP_TRACE_SYM(PyErr_Clear, "PyErr_Clear", 1);
    FP_TRACE_SYM(PyErr_Fetch, "PyErr_Fetch", 1);
    FP_TRACE_SYM(PyErr_Restore, "PyErr_Restore", 1);
    FP_TRACE_SYM(PyErr_SetString, "PyErr_SetString", 1);
    FP_TRACE_SYM(PyErr_GetExcInfo, "PyErr_GetExcInfo", 1);
    FP_TRACE_SYM(PyErr_SetExcInfo, "PyErr_SetExcInfo", 1);
    FP_TRACE_SYM(none, "_Py_NoneStruct", 1);
    FP_TRACE_SYM(module_type, "PyModule_Type", 1);
    FP_TRACE_SYM(type_type, "PyType_Type", 1);
    FP_TRACE_SYM(cfunction_type, "PyCFunction_Type", 1);
    FP_TRACE_SYM(cmethod_type, "PyCMethod_Type", 0);
    FP_TRACE_SYM(methoddescr_type, "PyMethodDescr_Type", 1);
    FP_TRACE_SYM(runtime_error, "PyExc_RuntimeError", 1);
    FP_TRACE_SYM(type_error, "PyExc_TypeError", 1);
    FP_TRACE_SYM(PyType_FromMetaclass, "PyType_FromMetaclass", 0);
    FP_TRACE_SYM(PyType_FromSpec, "PyType_FromSpec", 0);
    FP_TRACE_SYM(PyType_GenericAlloc, "PyType_GenericAlloc", 0);
    FP_TRACE_SYM(PyVectorcall_Call, "PyVectorcall_Call", 0);
    return 0;
}

static fp_pyobj *fp_trace_none(void)
{
    api.Py_IncRef(api.none);
    return api.none;
}

/* ===================================== The recording ========================================= */

/* Limits of one recording (a traced call); beyond them it degrades, it never fails. */
#define FP_TRACE_STACK 2048            /* nesting below the root; deeper calls are not split out */
#define FP_TRACE_NODES_DEFAULT 100000u /* distinct call paths; more are counted in their parent */
#define FP_TRACE_NONE UINT32_MAX       /* a stack entry for a call that has no node */
#define FP_TRACE_PASS (UINT32_MAX - 1) /* a stack entry for the wrapper around the root */

enum { FP_TRACE_ROOT = 0, FP_TRACE_PY = 1, FP_TRACE_C = 2 };
enum { FP_TRACE_CUT_NODES = 1, FP_TRACE_CUT_STACK = 2, FP_TRACE_CUT_CANCEL = 4 };

typedef struct fp_trace_node {
    const void *key; /* the code object (PY), or the PyMethodDef (C) */
    fp_pyobj *owner; /* C: the module, class or instance type the function belongs to */
    uint32_t parent; /* node 0 is the root */
    uint16_t depth;  /* the root is 0 */
    uint8_t kind;
    uint32_t first_hint; /* the child called first last time (0: none): loops repeat */
    uint32_t next_hint;  /* the sibling called after this one last time (0: none) */
    uint64_t count;      /* calls that returned (or were still open at the end) */
    int64_t total;       /* inclusive, in ticks (fp_trace_ticks) */
} fp_trace_node;

typedef struct fp_trace_entry {
    uint32_t node;       /* FP_TRACE_NONE: a call without a node; 0: an activation of the root;
                          * FP_TRACE_PASS: the wrapper around the root resumed (see pass_frame) */
    uint32_t last_child; /* the child called last from here (FP_TRACE_NONE: none yet) */
    uint32_t saved_skip; /* ROOT and PASS: the skip count outside, restored when they leave */
    int64_t t0;          /* ticks */
} fp_trace_entry;

typedef struct fp_trace_rec {
    int refs;      /* the capsule and the installed hook; both change under the GIL */
    int installed; /* the profile function is set on `tstate`, or (monitored) the recording is
                    * listed in fp_mon.active */
    int monitored; /* heard through sys.monitoring, not a profile function */
    int cancelled; /* remove the hook at the next event (set by another thread, under the GIL) */
    int stopped;   /* stop() ran: the tree is final */
    void *tstate;
    pthread_t thread;    /* tstate's thread: cheaper to compare (3.12+'s callbacks) */
    fp_pyobj *root_code; /* strong */
    /* The root's frame and the frame of the wrapper that calls it (3.8-3.11's instrumentation),
     * strong, only compared. A generator or coroutine is resumed from anywhere (an event loop's
     * frames, skipped): its frames are recognised there, so its activations are never lost.
     * The references keep a frame that ended from being freed while the recording runs: a new
     * frame at its address must not pass for it. They live as long as the traced call anyway
     * (a little longer for the root: until the probe's exit, before its caller goes on).
     * root_frame NULL: unknown yet; it is the first frame running root_code called from the
     * wrapper. */
    fp_pyobj *root_frame, *pass_frame;
    int running;   /* inside an activation of the root's frame */
    uint32_t skip; /* nesting of calls being ignored (outside the root, or too deep) */
    uint32_t max_depth, max_nodes;
    unsigned cut;
    int64_t t_start, t_stop;               /* CLOCK_MONOTONIC ns */
    int64_t tick_start, tick_stop, active; /* ticks */
    uint32_t activations;
    fp_trace_node *nodes;
    uint32_t nnodes, cap;
    uint32_t *table; /* open addressing: node index, 0 = empty (the root is never a child) */
    uint32_t tmask;
    fp_trace_entry stack[FP_TRACE_STACK];
    uint32_t sp;
} fp_trace_rec;

/* The recording of the traced call running on this thread, NULL when none. */
static _Thread_local fp_trace_rec *fp_trace_tls;
/* Times our profile function ran on a thread with no recording: must stay 0 (checked by tests). */
static _Atomic long fp_trace_strays;

static const char fp_trace_capsule_name[] = "fp_agent.trace.recording";

static inline int64_t fp_trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ===================================== Ticks ================================================= */

/* Every call reads the clock twice, so its price matters: the TSC costs a third of a vDSO
 * clock_gettime. It is used only where the kernel itself keeps time with it (clocksource
 * "tsc": invariant and synchronised across CPUs); costs are converted to ns when the tree is
 * read, by the rate measured since the package was loaded. Elsewhere ticks are ns. */
static int fp_trace_tsc;
static int64_t fp_trace_cal_ns;
static int64_t fp_trace_cal_ticks;

static inline int64_t fp_trace_ticks(void)
{
#if defined(__x86_64__)
    if (fp_trace_tsc) return (int64_t)__rdtsc();
#endif
    return fp_trace_now();
}

static void fp_trace_ticks_init(void)
{
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    char source[32] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
    if (f) {
        if (!fgets(source, sizeof source, f)) source[0] = '\0';
        fclose(f);
    }
    /* CPUID 0x80000007 EDX bit 8: invariant TSC. */
    if (strncmp(source, "tsc", 3) == 0 && (source[3] == '\n' || source[3] == '\0') &&
        __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)))
        fp_trace_tsc = 1;
#endif
    fp_trace_cal_ns = fp_trace_now();
    fp_trace_cal_ticks = fp_trace_ticks();
}

/* Nanoseconds per tick, measured over the time since the package was loaded. */
static double fp_trace_tick_ns(void)
{
    if (!fp_trace_tsc) return 1.0;
    int64_t ns = fp_trace_now() - fp_trace_cal_ns, ticks = fp_trace_ticks() - fp_trace_cal_ticks;
    return ns > 0 && ticks > 0 ? (double)ns / (double)ticks : 1.0;
}

static void fp_trace_unref(fp_trace_rec *r)
{
    if (--r->refs > 0) return;
    for (uint32_t i = 1; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        if (n->kind == FP_TRACE_PY) api.Py_DecRef((fp_pyobj *)n->key);
        if (n->owner) api.Py_DecRef(n->owner);
    }
    if (r->root_code) api.Py_DecRef(r->root_code);
    if (r->root_frame) api.Py_DecRef(r->root_frame);
    if (r->pass_frame) api.Py_DecRef(r->pass_frame);
    free(r->nodes);
    free(r->table);
    free(r);
}

static inline size_t fp_trace_hash(uint32_t parent, const void *key, const void *owner)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)parent + 1) * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)(uintptr_t)owner * 0x165667B19E3779F9ull;
    return (size_t)(h ^ (h >> 29));
}

static int fp_trace_grow_table(fp_trace_rec *r)
{
    uint32_t size = r->tmask ? (r->tmask + 1) * 2 : 1024;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t) return -1;
    for (uint32_t i = 1; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        size_t h = fp_trace_hash(n->parent, n->key, n->owner) & (size - 1);
        while (t[h])
            h = (h + 1) & (size - 1);
        t[h] = i;
    }
    free(r->table);
    r->table = t;
    r->tmask = size - 1;
    return 0;
}

/* The child of parent with this key, created when new. FP_TRACE_NONE when it cannot have one
 * (too deep, too many nodes, no memory). Takes no reference: the caller gives one on creation
 * (*created). */
static uint32_t fp_trace_child(fp_trace_rec *r, uint32_t parent, uint8_t kind, const void *key,
                               fp_pyobj *owner, int *created)
{
    *created = 0;
    size_t h = fp_trace_hash(parent, key, owner) & r->tmask;
    for (uint32_t i; (i = r->table[h]) != 0; h = (h + 1) & r->tmask) {
        fp_trace_node *n = &r->nodes[i];
        if (n->key == key && n->owner == owner && n->parent == parent && n->kind == kind) return i;
    }
    if (r->nodes[parent].depth >= r->max_depth) return FP_TRACE_NONE;
    if (r->nnodes >= r->max_nodes) {
        r->cut |= FP_TRACE_CUT_NODES;
        return FP_TRACE_NONE;
    }
    if (r->nnodes == r->cap) {
        uint32_t cap = r->cap * 2;
        fp_trace_node *nodes = realloc(r->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            r->cut |= FP_TRACE_CUT_NODES;
            return FP_TRACE_NONE;
        }
        r->nodes = nodes;
        r->cap = cap;
    }
    /* Keep the table at most half full. */
    if ((r->nnodes + 1) * 2 > r->tmask + 1) {
        if (fp_trace_grow_table(r) != 0) {
            r->cut |= FP_TRACE_CUT_NODES;
            return FP_TRACE_NONE;
        }
        h = fp_trace_hash(parent, key, owner) & r->tmask;
        while (r->table[h])
            h = (h + 1) & r->tmask;
    }
    uint32_t i = r->nnodes++;
    r->nodes[i] = (fp_trace_node){.key = key,
                                  .owner = owner,
                                  .parent = parent,
                                  .depth = (uint16_t)(r->nodes[parent].depth + 1),
                                  .kind = kind};
    r->table[h] = i;
    *created = 1;
    return i;
}

/* A call from the top of the stack: finds (or makes) its node and pushes it. Returns whether
 * a new node was made (the caller then gives it its references). */
static int fp_trace_push(fp_trace_rec *r, uint8_t kind, const void *key, fp_pyobj *owner)
{
    if (r->sp == FP_TRACE_STACK) {
        r->cut |= FP_TRACE_CUT_STACK;
        r->skip = 1;
        return 0;
    }
    fp_trace_entry *top = &r->stack[r->sp - 1];
    fp_trace_entry *e = &r->stack[r->sp++];
    e->last_child = FP_TRACE_NONE;
    e->saved_skip = 0;
    if (top->node == FP_TRACE_NONE) {
        e->node = FP_TRACE_NONE;
        return 0;
    }
    /* Loops call the same functions in the same order: the sibling that followed the last one
     * the previous time is the likely one; then a repeat of the last one; then the table. */
    int created = 0;
    fp_trace_node *nodes = r->nodes;
    uint32_t prev = top->last_child;
    uint32_t hint = prev == FP_TRACE_NONE ? nodes[top->node].first_hint : nodes[prev].next_hint;
    uint32_t node;
    if (hint && nodes[hint].key == key && nodes[hint].owner == owner && nodes[hint].kind == kind)
        node = hint;
    else if (prev != FP_TRACE_NONE && nodes[prev].key == key && nodes[prev].owner == owner &&
             nodes[prev].kind == kind)
        node = prev;
    else
        node = fp_trace_child(r, top->node, kind, key, owner, &created);
    if (node != FP_TRACE_NONE) {
        nodes = r->nodes; /* fp_trace_child may have moved them */
        if (prev == FP_TRACE_NONE)
            nodes[top->node].first_hint = node;
        else
            nodes[prev].next_hint = node;
        e->t0 = fp_trace_ticks();
    }
    e->node = node;
    top->last_child = node;
    return created;
}

static void fp_trace_pop(fp_trace_rec *r, int64_t t)
{
    fp_trace_entry *e = &r->stack[--r->sp];
    if (e->node == FP_TRACE_NONE) return;
    if (e->node == FP_TRACE_PASS) {
        r->skip = e->saved_skip;
        return;
    }
    if (e->node == FP_TRACE_ROOT) { /* the root's frame returned or was suspended (yield, await) */
        r->active += t - e->t0;
        r->running = 0;
        r->skip = e->saved_skip;
        return;
    }
    fp_trace_node *n = &r->nodes[e->node];
    n->count++;
    n->total += t - e->t0;
}

/* How a frame's code is read (chosen and checked by check()): 0 PyFrame_GetCode (a new
 * reference); 1 frame->f_code (3.8-3.10); 2 frame->f_frame->f_code (3.11); 3 the interpreter
 * frame's first field, f_code or f_executable (3.12, 3.13). 1-3 are borrowed. */
static int fp_trace_code_mode;

static fp_pyobj *fp_trace_code_as(fp_pyobj *frame, int mode, int *owned)
{
    *owned = 0;
    switch (mode) {
    case 1:
        return FP_FRAME38_CODE(frame);
    case 2:
        return *(fp_pyobj **)(*(char **)((char *)frame + 3 * sizeof(void *)) + 4 * sizeof(void *));
    case 3:
        return **(fp_pyobj ***)((char *)frame + 3 * sizeof(void *));
    default:
        if (!api.PyFrame_GetCode) return NULL;
        *owned = 1;
        return api.PyFrame_GetCode(frame);
    }
}

static inline fp_pyobj *fp_trace_code(fp_pyobj *frame, int *owned)
{
    return fp_trace_code_as(frame, fp_trace_code_mode, owned);
}

/* Who a C function belongs to: its module (time.sleep), its class (dict.fromkeys) or its
 * instance's type (list.append). The instance itself is never kept: holding it would delay
 * its destruction (a file's close, a weakref callback), which the traced code could notice. */
static fp_pyobj *fp_trace_owner(fp_pyobj *func)
{
    fp_pyobj *self = FP_CFUNC_SELF(func);
    if (!self) return NULL;
    fp_pyobj *type = FP_OB_TYPE(self);
    if (type == api.module_type) return self;
    if (type == api.type_type || (api.PyType_GetFlags(type) & FP_TPFLAGS_TYPE_SUBCLASS))
        return self;
    return type;
}

/* ===================================== Events ================================================ */

/* What one event is about: its frame (a profile function is given it) or its code
 * (sys.monitoring gives that), the other found only when needed. */
typedef struct fp_trace_ev {
    fp_pyobj *frame;
    fp_pyobj *code;
    int owned; /* code is a new reference */
} fp_trace_ev;

static fp_pyobj *fp_trace_ev_code(fp_trace_ev *ev)
{
    if (!ev->code) ev->code = fp_trace_code(ev->frame, &ev->owned);
    return ev->code;
}

static void fp_trace_ev_done(fp_trace_ev *ev)
{
    if (ev->owned) api.Py_DecRef(ev->code);
    ev->owned = 0;
}

/* Whether the event is about frame `want` (the root's, or its wrapper's). Under sys.monitoring
 * there is no wrapper, and only a frame running the root's code can be the root's: the frame
 * is looked up (and its object made, when it had none) only for those. */
static int fp_trace_ev_is(fp_trace_rec *r, fp_trace_ev *ev, fp_pyobj *want)
{
    if (!want) return 0;
    if (!ev->frame) {
        if (ev->code != r->root_code) return 0;
        ev->frame = api.PyEval_GetFrame();
    }
    return ev->frame == want;
}

/* A Python call while the root is not running: the root (or its wrapper) starting or resuming,
 * or code outside the root (skipped). */
static void fp_trace_outside_call(fp_trace_rec *r, fp_trace_ev *ev)
{
    int root = fp_trace_ev_is(r, ev, r->root_frame);
    if (!root && !r->root_frame && r->skip == 0 &&
        (r->sp == 0 || r->stack[r->sp - 1].node == FP_TRACE_PASS)) {
        /* The first activation, called from the wrapper: this frame is the root's. */
        root = fp_trace_ev_code(ev) == r->root_code;
        if (root) {
            if (!ev->frame) ev->frame = api.PyEval_GetFrame();
            r->root_frame = ev->frame;
            api.Py_IncRef(ev->frame);
        }
    }
    if ((root || fp_trace_ev_is(r, ev, r->pass_frame)) && r->sp < FP_TRACE_STACK) {
        fp_trace_entry *e = &r->stack[r->sp++];
        e->node = root ? FP_TRACE_ROOT : FP_TRACE_PASS;
        e->last_child = FP_TRACE_NONE;
        e->saved_skip = r->skip;
        e->t0 = root ? fp_trace_ticks() : 0;
        r->skip = 0;
        if (root) {
            r->running = 1;
            r->activations++;
        }
        return;
    }
    r->skip++;
}

/* A Python frame starts or resumes. */
static void fp_trace_on_py_call(fp_trace_rec *r, fp_trace_ev *ev)
{
    if (!r->running) {
        fp_trace_outside_call(r, ev);
        return;
    }
    if (r->skip) {
        r->skip++;
        return;
    }
    /* The root's own start, reported after the probe set the hook: it is running already. */
    if (fp_trace_ev_is(r, ev, r->root_frame)) return;
    fp_pyobj *code = fp_trace_ev_code(ev);
    if (fp_trace_push(r, FP_TRACE_PY, code, NULL)) {
        if (!ev->owned) api.Py_IncRef(code);
        ev->owned = 0; /* the node keeps the reference */
    }
}

/* A C function is called. */
static void fp_trace_on_c_call(fp_trace_rec *r, const void *ml, fp_pyobj *owner)
{
    if (r->skip || !r->running) {
        r->skip++;
        return;
    }
    if (fp_trace_push(r, FP_TRACE_C, ml, owner) && owner) api.Py_IncRef(owner);
}

/* A Python frame returns, yields or unwinds (py), or a C function returns or raises. */
static void fp_trace_on_return(fp_trace_rec *r, int py, fp_trace_ev *ev)
{
    if (r->skip) {
        r->skip--;
        return;
    }
    if (r->sp == 0) return; /* a frame entered before the recording, outside the root */
    uint32_t top = r->stack[r->sp - 1].node;
    /* At the root's (or its wrapper's) level, only that frame's own return counts: returns of
     * frames entered before the recording began (the probe's, ours, the root's callers) are
     * passed over. */
    if (top == FP_TRACE_ROOT || top == FP_TRACE_PASS) {
        if (!py || !fp_trace_ev_is(r, ev, top == FP_TRACE_ROOT ? r->root_frame : r->pass_frame))
            return;
    }
    fp_trace_pop(r, fp_trace_ticks());
}

/* ===================================== The profile function ================================== */

static void fp_trace_clear_profile(void)
{
    if (api.PyEval_SetProfileTstate) {
        if (api.PyEval_SetProfileTstate(api.PyThreadState_Get(), NULL, NULL) < 0)
            api.PyErr_Clear(); /* an audit hook refused; nothing else can be done */
    } else {
        api.PyEval_SetProfile(NULL, NULL);
    }
}

static void fp_trace_remove(fp_trace_rec *r)
{
    /* Only ever called on the recording's own thread. */
    if (!r->installed) return;
    fp_trace_clear_profile();
    r->installed = 0;
    fp_trace_tls = NULL;
    fp_trace_unref(r);
}

static void fp_trace_mark_stop(fp_trace_rec *r)
{
    if (!r->t_stop) {
        r->t_stop = fp_trace_now();
        r->tick_stop = fp_trace_ticks();
    }
}

static int fp_trace_profile(fp_pyobj *obj, fp_pyobj *frame, int what, fp_pyobj *arg)
{
    (void)obj;
    fp_trace_rec *r = fp_trace_tls;
    if (!r) {
        /* Cannot happen: the hook and the recording come and go together. Still, never stay. */
        atomic_fetch_add(&fp_trace_strays, 1);
        fp_trace_clear_profile();
        return 0;
    }
    if (r->cancelled) {
        if (!r->stopped) {
            r->cut |= FP_TRACE_CUT_CANCEL;
            fp_trace_mark_stop(r);
        }
        fp_trace_remove(r);
        return 0;
    }
    fp_trace_ev ev = {frame, NULL, 0};
    switch (what) {
    case FP_PT_CALL:
        fp_trace_on_py_call(r, &ev);
        fp_trace_ev_done(&ev);
        return 0;
    case FP_PT_C_CALL:
        fp_trace_on_c_call(r, FP_CFUNC_ML(arg), fp_trace_owner(arg));
        return 0;
    case FP_PT_RETURN:
    case FP_PT_C_RETURN:
    case FP_PT_C_EXCEPTION:
        fp_trace_on_return(r, what == FP_PT_RETURN, &ev);
        return 0;
    default:
        return 0;
    }
}

/* ===================================== sys.monitoring (3.12+) ================================ */

/* Set by fp_trace_py_monitor while trace.py holds a tool id with our callbacks registered. */
static struct {
    int on;
    long tool, mask;
    fp_pyobj *set_events;  /* sys.monitoring.set_events, strong */
    fp_trace_rec **active; /* the recordings running now, one per thread, in no order */
    uint32_t nactive, cap;
} fp_mon;

/* The recording of this thread, from a callback. Every thread's events arrive while any thread
 * records; a list (of one, mostly) searched by thread is cheaper than C thread-local storage in
 * a library loaded with dlopen, and cancel() can take a recording out of it from another
 * thread. Threads are compared, not thread states: PyThreadState_Get() is itself a
 * thread-local lookup in libpython (3.12+), pthread_self() one register read; a thread runs
 * one thread state of the interpreter at a time. */
static inline fp_trace_rec *fp_mon_current(void)
{
    if (fp_mon.nactive == 0) return NULL;
    pthread_t self = pthread_self();
    for (uint32_t i = 0; i < fp_mon.nactive; i++)
        if (pthread_equal(fp_mon.active[i]->thread, self)) return fp_mon.active[i];
    return NULL;
}

/* sys.monitoring.set_events(tool, events); -1 with the exception set when it failed. An
 * exception already pending (a recording freed while one propagates) is kept as it was. */
static int fp_mon_set_events(long events)
{
    fp_pyobj *type, *value, *tb;
    api.PyErr_Fetch(&type, &value, &tb);
    fp_pyobj *args = api.PyTuple_New(2);
    fp_pyobj *res = NULL;
    if (args) {
        api.PyTuple_SetItem(args, 0, api.PyLong_FromLongLong(fp_mon.tool));
        api.PyTuple_SetItem(args, 1, api.PyLong_FromLongLong(events));
        if (!api.PyErr_Occurred()) res = api.PyObject_CallObject(fp_mon.set_events, args);
        api.Py_DecRef(args);
    }
    if (res) api.Py_DecRef(res);
    if (type) {
        if (!res) api.PyErr_Clear();
        api.PyErr_Restore(type, value, tb);
    }
    return res ? 0 : -1;
}

static int fp_mon_add(fp_trace_rec *r)
{
    if (fp_mon.nactive == fp_mon.cap) {
        uint32_t cap = fp_mon.cap ? fp_mon.cap * 2 : 8;
        fp_trace_rec **a = realloc(fp_mon.active, cap * sizeof *a);
        if (!a) {
            api.PyErr_SetString(*api.runtime_error, "out of memory for a trace recording");
            return -1;
        }
        fp_mon.active = a;
        fp_mon.cap = cap;
    }
    fp_mon.active[fp_mon.nactive++] = r;
    if (fp_mon.nactive == 1 && fp_mon_set_events(fp_mon.mask) != 0) {
        fp_mon.nactive--;
        return -1;
    }
    return 0;
}

/* Takes a monitored recording out of the list (from any thread: under the GIL its thread runs
 * none of our code); the events go off with the last one. */
static void fp_mon_remove(fp_trace_rec *r)
{
    if (!r->installed) return;
    for (uint32_t i = 0; i < fp_mon.nactive; i++) {
        if (fp_mon.active[i] != r) continue;
        fp_mon.active[i] = fp_mon.active[--fp_mon.nactive];
        break;
    }
    r->installed = 0;
    int pending = api.PyErr_Occurred() != NULL;
    if (fp_mon.nactive == 0 && fp_mon.on && fp_mon_set_events(0) != 0 && !pending)
        api.PyErr_Clear(); /* nothing else can be done; the callbacks ignore every event */
    fp_trace_unref(r);
}

/* 1: a builtin function or method; 2: a method descriptor called unbound by the interpreter
 * (list.append); 0: another callable. These are the C functions the recorder shows, as the
 * profile function sees them. */
static inline int fp_mon_c_kind(fp_pyobj *callable)
{
    fp_pyobj *type = FP_OB_TYPE(callable);
    if (type == api.cfunction_type || type == api.cmethod_type) return 1;
    return type == api.methoddescr_type ? 2 : 0;
}

/* The PyMethodDef and owner of a callable of kind 1 or 2. */
static inline const void *fp_mon_c_key(fp_pyobj *callable, int kind, fp_pyobj **owner)
{
    if (kind == 1) {
        *owner = fp_trace_owner(callable);
        return FP_CFUNC_ML(callable);
    }
    *owner = FP_DESCR_TYPE(callable);
    return FP_DESCR_ML(callable);
}

/* What a callback returns: None, without a reference (3.12+, where these run, None is
 * immortal: its count is never changed). */
static inline fp_pyobj *fp_mon_none(void)
{
    return api.none;
}

/* PY_START, PY_RESUME, PY_THROW (code, offset, ...). */
static fp_pyobj *fp_mon_on_start(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r = fp_mon_current();
    if (r && nargs >= 1) {
        fp_trace_ev ev = {NULL, args[0], 0};
        fp_trace_on_py_call(r, &ev);
    }
    return fp_mon_none();
}

/* PY_RETURN, PY_YIELD, PY_UNWIND (code, offset, value). */
static fp_pyobj *fp_mon_on_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r = fp_mon_current();
    if (r && nargs >= 1) {
        fp_trace_ev ev = {NULL, args[0], 0};
        fp_trace_on_return(r, 1, &ev);
    }
    return fp_mon_none();
}

/* CALL (code, offset, callable, arg0): C functions only; a Python one reports its PY_START. */
static fp_pyobj *fp_mon_on_call(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    int kind;
    fp_trace_rec *r;
    /* Most calls are of Python functions: the callable is checked first. */
    if (nargs >= 3 && (kind = fp_mon_c_kind(args[2])) != 0 && (r = fp_mon_current()) != NULL) {
        fp_pyobj *owner;
        const void *ml = fp_mon_c_key(args[2], kind, &owner);
        fp_trace_on_c_call(r, ml, owner);
    }
    return fp_mon_none();
}

/* C_RETURN, C_RAISE (code, offset, callable, arg0): the same callables as CALL's. */
static fp_pyobj *fp_mon_on_c_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    fp_trace_rec *r;
    if (nargs >= 3 && fp_mon_c_kind(args[2]) && (r = fp_mon_current()) != NULL)
        fp_trace_on_return(r, 0, NULL);
    return fp_mon_none();
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

static fp_pyobj *fp_mon_vc_start(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf, fp_pyobj *kw)
{
    (void)kw;
    return fp_mon_on_start(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_mon_vc_return(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                  fp_pyobj *kw)
{
    (void)kw;
    return fp_mon_on_return(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_mon_vc_call(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf, fp_pyobj *kw)
{
    (void)kw;
    return fp_mon_on_call(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static fp_pyobj *fp_mon_vc_c_return(fp_pyobj *self, fp_pyobj *const *args, size_t nargsf,
                                    fp_pyobj *kw)
{
    (void)kw;
    return fp_mon_on_c_return(self, args, FP_VECTORCALL_NARGS(nargsf));
}

static const struct {
    const char *name;
    fp_vectorcall_fn fn;
} fp_mon_callbacks[] = {
    {"ev_start", fp_mon_vc_start},
    {"ev_return", fp_mon_vc_return},
    {"ev_call", fp_mon_vc_call},
    {"ev_c_return", fp_mon_vc_c_return},
};

/* A new type for the callbacks (a new reference), NULL when it could not be made (before 3.12 it
 * is not tried). One per load of the package: its objects hold it, and it goes with them when
 * the package is unloaded (the cyclic GC collects it), so nothing of it stays in the process. */
static fp_pyobj *fp_mon_new_callback_type(void)
{
    if (!api.PyType_FromMetaclass || !api.PyType_FromSpec || !api.PyType_GenericAlloc ||
        !api.PyVectorcall_Call)
        return NULL;
    static fp_trace_memberdef members[] = {
        {"__vectorcalloffset__", FP_T_PYSSIZET, 2 * sizeof(void *), FP_READONLY, NULL},
        {NULL, 0, 0, 0, NULL},
    };
    static fp_trace_slot slots[] = {{FP_TP_CALL, NULL}, {FP_TP_MEMBERS, members}, {0, NULL}};
    slots[0].pfunc = api.PyVectorcall_Call;
    static fp_trace_typespec spec = {"fp_agent.monitoring_callback", (int)(3 * sizeof(void *)), 0,
                                     FP_TPFLAGS_HAVE_VECTORCALL | FP_TPFLAGS_IMMUTABLETYPE |
                                         FP_TPFLAGS_DISALLOW_INSTANTIATION,
                                     slots};
    fp_pyobj *type = api.PyType_FromSpec(&spec);
    if (!type) api.PyErr_Clear();
    return type;
}

/* The callback `name` as an object of `type` (NULL: none), else NULL (no error set). */
static fp_pyobj *fp_mon_callback(fp_pyobj *type, const char *name)
{
    if (!type) return NULL;
    for (size_t i = 0; i < sizeof fp_mon_callbacks / sizeof fp_mon_callbacks[0]; i++) {
        if (strcmp(fp_mon_callbacks[i].name, name) != 0) continue;
        fp_pyobj *obj = api.PyType_GenericAlloc(type, 0);
        if (!obj) {
            api.PyErr_Clear();
            return NULL;
        }
        FP_CALLBACK_FN(obj) = fp_mon_callbacks[i].fn;
        return obj;
    }
    return NULL;
}

/* ===================================== Functions for fp_agent ================================ */

static fp_trace_rec *fp_trace_from(fp_pyobj *capsule)
{
    return api.PyCapsule_GetPointer(capsule, fp_trace_capsule_name);
}

static void fp_trace_capsule_free(fp_pyobj *capsule)
{
    fp_trace_rec *r = api.PyCapsule_GetPointer(capsule, fp_trace_capsule_name);
    if (!r) {
        api.PyErr_Clear();
        return;
    }
    /* A recording still installed keeps itself alive; a profile function goes at its next
     * event, a monitored recording now. */
    r->cancelled = 1;
    if (r->monitored) fp_mon_remove(r);
    fp_trace_unref(r);
}

static long long fp_trace_arg_int(fp_pyobj *args, ssize_t i, long long dflt, int *err)
{
    if (api.PyTuple_Size(args) <= i) return dflt;
    fp_pyobj *v = api.PyTuple_GetItem(args, i);
    if (v == api.none) return dflt;
    long long x = api.PyLong_AsLongLong(v);
    if (x == -1 && api.PyErr_Occurred()) *err = 1;
    return x;
}

/* start(root_code, root_frame, pass_frame, max_depth, max_nodes) -> recording, or None when this
 * thread is already recording. root_frame: the root's frame when it is running now (the probe
 * fired in it), else None; pass_frame: the frame of the wrapper that is about to call the root
 * (3.8-3.11), else None. It hears the calls through sys.monitoring while monitor() is on, else
 * through a profile function. */
static fp_pyobj *fp_trace_py_start(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (api.PyTuple_Size(args) < 3) {
        api.PyErr_SetString(*api.type_error,
                            "start(root_code, root_frame, pass_frame, max_depth, max_nodes)");
        return NULL;
    }
    if (fp_trace_tls || fp_mon_current()) return fp_trace_none();
    int err = 0;
    fp_pyobj *root = api.PyTuple_GetItem(args, 0);
    fp_pyobj *root_frame = api.PyTuple_GetItem(args, 1);
    fp_pyobj *pass_frame = api.PyTuple_GetItem(args, 2);
    long long max_depth = fp_trace_arg_int(args, 3, 0xffff, &err);
    long long max_nodes = fp_trace_arg_int(args, 4, FP_TRACE_NODES_DEFAULT, &err);
    if (err) return NULL;
    if (max_depth < 0 || max_depth > 0xffff) max_depth = 0xffff;
    if (max_nodes < 2 || max_nodes > 0x7fffffff) max_nodes = FP_TRACE_NODES_DEFAULT;

    fp_trace_rec *r = calloc(1, sizeof *r);
    if (r) {
        r->cap = 256;
        r->nodes = calloc(r->cap, sizeof *r->nodes);
    }
    if (!r || !r->nodes || fp_trace_grow_table(r) != 0) {
        if (r) free(r->nodes);
        free(r);
        api.PyErr_SetString(*api.runtime_error, "out of memory for a trace recording");
        return NULL;
    }
    r->nnodes = 1; /* the root */
    r->max_depth = (uint32_t)max_depth;
    r->max_nodes = (uint32_t)max_nodes;
    r->root_code = root;
    api.Py_IncRef(root);
    if (root_frame != api.none) {
        r->root_frame = root_frame;
        api.Py_IncRef(root_frame);
    }
    if (pass_frame != api.none) {
        r->pass_frame = pass_frame;
        api.Py_IncRef(pass_frame);
    }
    r->refs = 1;
    fp_pyobj *capsule = api.PyCapsule_New(r, fp_trace_capsule_name, fp_trace_capsule_free);
    if (!capsule) {
        fp_trace_unref(r);
        return NULL;
    }
    r->tstate = api.PyThreadState_Get();
    r->thread = pthread_self();
    r->t_start = fp_trace_now();
    r->tick_start = fp_trace_ticks();
    if (r->root_frame) {
        r->running = 1;
        r->activations = 1;
        r->stack[r->sp++] = (fp_trace_entry){
            .node = FP_TRACE_ROOT, .last_child = FP_TRACE_NONE, .t0 = r->tick_start};
    }
    r->refs++;
    r->installed = 1;
    if (fp_mon.on) {
        r->monitored = 1;
        if (fp_mon_add(r) != 0) {
            r->installed = 0;
            r->refs--;
            api.Py_DecRef(capsule);
            return NULL;
        }
        return capsule;
    }
    fp_trace_tls = r;
    if (api.PyEval_SetProfileTstate) {
        if (api.PyEval_SetProfileTstate(r->tstate, fp_trace_profile, NULL) < 0) {
            /* An audit hook said no: leave the thread as it was and tell the caller. */
            r->installed = 0;
            fp_trace_tls = NULL;
            r->refs--;
            api.Py_DecRef(capsule);
            return NULL;
        }
    } else {
        api.PyEval_SetProfile(fp_trace_profile, NULL);
    }
    return capsule;
}

/* Ends a recording that no event will reach any more: calls still open (the root suspended in
 * one, an exception on its way, the probe's own frames) end at its stop time. */
static void fp_trace_finish(fp_trace_rec *r)
{
    while (r->sp > 0)
        fp_trace_pop(r, r->tick_stop);
    r->stopped = 1;
    /* Nothing is compared any more (a hook still installed elsewhere only leaves): the frames
     * go now, not with the recording. */
    if (r->root_frame) api.Py_DecRef(r->root_frame);
    if (r->pass_frame) api.Py_DecRef(r->pass_frame);
    r->root_frame = r->pass_frame = NULL;
}

/* stop(recording, clear) -> None: ends the recording, on its own thread but for a generator
 * finished on another one. clear (profile function): our hook is still the thread's profile
 * function (sys.getprofile() is None): remove it. When the traced code installed a profiler of
 * its own meanwhile, it is left alone. */
static fp_pyobj *fp_trace_py_stop(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (api.PyTuple_Size(args) < 2) {
        api.PyErr_SetString(*api.type_error, "stop(recording, clear)");
        return NULL;
    }
    fp_trace_rec *r = fp_trace_from(api.PyTuple_GetItem(args, 0));
    if (!r) return NULL;
    int err = 0;
    long long clear = fp_trace_arg_int(args, 1, 1, &err);
    if (err) return NULL;
    if (r->stopped) return fp_trace_none();
    fp_trace_mark_stop(r);
    /* A generator started on one thread and finished on another: the tree misses what ran
     * here. A profile function can only be removed on its own thread, at its next event. */
    int elsewhere = r->installed && r->tstate != api.PyThreadState_Get();
    if (elsewhere) r->cut |= FP_TRACE_CUT_CANCEL;
    if (r->monitored) {
        fp_mon_remove(r);
    } else if (elsewhere) {
        r->cancelled = 1;
    } else if (r->installed) {
        if (clear) {
            fp_trace_remove(r);
        } else {
            r->installed = 0;
            fp_trace_tls = NULL;
            fp_trace_unref(r);
        }
    }
    fp_trace_finish(r);
    return fp_trace_none();
}

/* cancel(recording): a profile function goes at its thread's next event; a monitored recording
 * ends now (from any thread). */
static fp_pyobj *fp_trace_py_cancel(fp_pyobj *self, fp_pyobj *capsule)
{
    (void)self;
    fp_trace_rec *r = fp_trace_from(capsule);
    if (!r) return NULL;
    r->cancelled = 1;
    if (r->monitored && !r->stopped) {
        r->cut |= FP_TRACE_CUT_CANCEL;
        fp_trace_mark_stop(r);
        fp_mon_remove(r);
        fp_trace_finish(r);
    }
    return fp_trace_none();
}

static fp_pyobj *fp_trace_int(long long v)
{
    return api.PyLong_FromLongLong(v);
}

/* tree(recording) -> (t_start_ns, t_stop_ns, active_ns, activations, cut, nodes), nodes a list
 * of (parent, kind, key, name, count, total_ns), parents before children; key: the code object
 * (kind 1) or the owner (kind 2, or None), name: the C function's name (kind 2) else None. */
static fp_pyobj *fp_trace_py_tree(fp_pyobj *self, fp_pyobj *capsule)
{
    (void)self;
    fp_trace_rec *r = fp_trace_from(capsule);
    if (!r) return NULL;
    if (!r->stopped) {
        api.PyErr_SetString(*api.runtime_error, "the recording is still running: stop() it first");
        return NULL;
    }
    double tick_ns = fp_trace_tick_ns();
    fp_pyobj *list = api.PyList_New(r->nnodes);
    if (!list) return NULL;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        fp_pyobj *key, *name;
        if (n->kind == FP_TRACE_PY) {
            key = (fp_pyobj *)n->key;
            api.Py_IncRef(key);
            name = fp_trace_none();
        } else if (n->kind == FP_TRACE_C) {
            key = n->owner ? n->owner : api.none;
            api.Py_IncRef(key);
            const fp_trace_methoddef *ml = n->key;
            name = api.PyUnicode_FromString(ml && ml->ml_name ? ml->ml_name : "?");
        } else {
            key = fp_trace_none();
            name = fp_trace_none();
        }
        fp_pyobj *t = api.PyTuple_New(6);
        if (!t || !name) {
            api.Py_DecRef(key);
            if (name) api.Py_DecRef(name);
            if (t) api.Py_DecRef(t);
            api.Py_DecRef(list);
            return NULL;
        }
        api.PyTuple_SetItem(t, 0, fp_trace_int(i ? (long long)n->parent : -1LL));
        api.PyTuple_SetItem(t, 1, fp_trace_int(n->kind));
        api.PyTuple_SetItem(t, 2, key);
        api.PyTuple_SetItem(t, 3, name);
        api.PyTuple_SetItem(t, 4, fp_trace_int((long long)n->count));
        api.PyTuple_SetItem(
            t, 5, fp_trace_int((long long)((double)(i ? n->total : r->active) * tick_ns)));
        api.PyList_SetItem(list, i, t);
    }
    fp_pyobj *out = api.PyTuple_New(6);
    if (!out) {
        api.Py_DecRef(list);
        return NULL;
    }
    api.PyTuple_SetItem(out, 0, fp_trace_int(r->t_start));
    api.PyTuple_SetItem(out, 1, fp_trace_int(r->t_stop));
    api.PyTuple_SetItem(out, 2, fp_trace_int((long long)((double)r->active * tick_ns)));
    api.PyTuple_SetItem(out, 3, fp_trace_int(r->activations));
    api.PyTuple_SetItem(out, 4, fp_trace_int(r->cut));
    api.PyTuple_SetItem(out, 5, list);
    if (api.PyErr_Occurred()) {
        api.Py_DecRef(out);
        return NULL;
    }
    return out;
}

/* check(frame, code, len, builtins) -> bool: the layouts read in the profile function match
 * this interpreter (f_code on 3.8; PyCFunctionObject's m_ml and m_self, on the builtin len). */
static fp_pyobj *fp_trace_py_check(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (api.PyTuple_Size(args) != 4) {
        api.PyErr_SetString(*api.type_error, "check(frame, code, len, builtins)");
        return NULL;
    }
    fp_pyobj *frame = api.PyTuple_GetItem(args, 0), *code = api.PyTuple_GetItem(args, 1);
    fp_pyobj *cfunc = api.PyTuple_GetItem(args, 2), *cself = api.PyTuple_GetItem(args, 3);
    /* The frame layout of this minor version, when it reads right; else PyFrame_GetCode. */
    const char *v = fp_agent_py_version();
    int minor = strncmp(v, "3.", 2) == 0 ? atoi(v + 2) : 0;
    int mode = minor >= 8 && minor <= 10 ? 1 : minor == 11 ? 2 : minor >= 12 && minor <= 13 ? 3 : 0;
    int owned, ok = 0;
    fp_pyobj *got = fp_trace_code_as(frame, mode, &owned);
    if (got == code) {
        ok = 1;
    } else if (api.PyFrame_GetCode) {
        mode = 0;
        got = fp_trace_code_as(frame, mode, &owned);
        ok = got == code;
    }
    if (owned) api.Py_DecRef(got);
    if (ok) fp_trace_code_mode = mode;
    const fp_trace_methoddef *ml = FP_CFUNC_ML(cfunc);
    ok =
        ok && FP_CFUNC_SELF(cfunc) == cself && ml && ml->ml_name && strcmp(ml->ml_name, "len") == 0;
    return api.PyBool_FromLong(ok);
}

/* monitor(tool, events, set_events) -> None: from now on recordings hear the calls through
 * sys.monitoring: trace.py holds `tool`, with ev_start (PY_START, PY_RESUME, PY_THROW),
 * ev_return (PY_RETURN, PY_YIELD, PY_UNWIND), ev_call (CALL) and ev_c_return (C_RETURN,
 * C_RAISE) registered for it; `events` (their mask) is set with set_events while any recording
 * runs. monitor() with no arguments: back to the profile function; recordings still running
 * end (cut), and the events go off. */
static fp_pyobj *fp_trace_py_monitor(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    ssize_t n = api.PyTuple_Size(args);
    if (n != 0 && n != 3) {
        api.PyErr_SetString(*api.type_error, "monitor(tool, events, set_events) or monitor()");
        return NULL;
    }
    while (fp_mon.nactive > 0) {
        fp_trace_rec *r = fp_mon.active[0];
        r->cancelled = 1;
        r->cut |= FP_TRACE_CUT_CANCEL;
        fp_trace_mark_stop(r);
        fp_mon_remove(r);
        fp_trace_finish(r);
    }
    if (fp_mon.set_events) api.Py_DecRef(fp_mon.set_events);
    fp_mon.set_events = NULL;
    fp_mon.on = 0;
    if (n == 0) return fp_trace_none();
    int err = 0;
    long long tool = fp_trace_arg_int(args, 0, -1, &err);
    long long mask = fp_trace_arg_int(args, 1, -1, &err);
    if (err) return NULL;
    if (tool < 0 || tool > 5 || mask <= 0) {
        api.PyErr_SetString(*api.type_error, "monitor(): tool is 0-5 and events a mask");
        return NULL;
    }
    fp_mon.tool = (long)tool;
    fp_mon.mask = (long)mask;
    fp_mon.set_events = api.PyTuple_GetItem(args, 2);
    api.Py_IncRef(fp_mon.set_events);
    fp_mon.on = 1;
    return fp_trace_none();
}

/* check_descr(descriptor, type, name) -> bool: PyMethodDescrObject reads right (list.append). */
static fp_pyobj *fp_trace_py_check_descr(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (api.PyTuple_Size(args) != 3) {
        api.PyErr_SetString(*api.type_error, "check_descr(descriptor, type, name)");
        return NULL;
    }
    fp_pyobj *descr = api.PyTuple_GetItem(args, 0), *type = api.PyTuple_GetItem(args, 1);
    fp_pyobj *owner = NULL;
    const fp_trace_methoddef *ml = NULL;
    int ok = fp_mon_c_kind(descr) == 2;
    if (ok) ml = fp_mon_c_key(descr, 2, &owner);
    ok = ok && owner == type && ml && ml->ml_name && strcmp(ml->ml_name, "append") == 0;
    return api.PyBool_FromLong(ok);
}

/* strays() -> int: how often the profile function ran on a thread with no recording. */
static fp_pyobj *fp_trace_py_strays(fp_pyobj *self, fp_pyobj *unused)
{
    (void)self;
    (void)unused;
    return fp_trace_int(atomic_load(&fp_trace_strays));
}

/* active() -> bool: this thread is recording. */
static fp_pyobj *fp_trace_py_active(fp_pyobj *self, fp_pyobj *unused)
{
    (void)self;
    (void)unused;
    return api.PyBool_FromLong(fp_trace_tls != NULL || fp_mon_current() != NULL);
}

/* monitored() -> int: recordings heard through sys.monitoring now, on every thread. */
static fp_pyobj *fp_trace_py_monitored(fp_pyobj *self, fp_pyobj *unused)
{
    (void)self;
    (void)unused;
    return fp_trace_int(fp_mon.nactive);
}

/* handled_traceback(tb): the exception being handled (sys.exc_info()) gets traceback tb (None
 * allowed). A bare `raise` in the handler then re-raises with it: before 3.11 it re-raises the
 * traceback kept there, not the exception's __traceback__. Used by instrument.py's wrapper to
 * leave its own entry out of the traceback its caller sees. */
static fp_pyobj *fp_trace_py_handled_traceback(fp_pyobj *self, fp_pyobj *tb)
{
    (void)self;
    fp_pyobj *type, *value, *old;
    api.PyErr_GetExcInfo(&type, &value, &old);
    if (!value) {
        api.PyErr_SetExcInfo(type, value, old);
        api.PyErr_SetString(*api.runtime_error,
                            "handled_traceback(): no exception is being handled");
        return NULL;
    }
    if (tb == api.none) tb = NULL;
    if (tb) api.Py_IncRef(tb);
    api.PyErr_SetExcInfo(type, value, tb); /* takes the three references */
    api.Py_DecRef(old);
    return fp_trace_none();
}

static fp_trace_methoddef fp_trace_methods[] = {
    {"start", (fp_trace_cfn)fp_trace_py_start, FP_METH_VARARGS, NULL},
    {"stop", (fp_trace_cfn)fp_trace_py_stop, FP_METH_VARARGS, NULL},
    {"cancel", (fp_trace_cfn)fp_trace_py_cancel, FP_METH_O, NULL},
    {"tree", (fp_trace_cfn)fp_trace_py_tree, FP_METH_O, NULL},
    {"check", (fp_trace_cfn)fp_trace_py_check, FP_METH_VARARGS, NULL},
    {"strays", (fp_trace_cfn)fp_trace_py_strays, FP_METH_NOARGS, NULL},
    {"active", (fp_trace_cfn)fp_trace_py_active, FP_METH_NOARGS, NULL},
    {"monitored", (fp_trace_cfn)fp_trace_py_monitored, FP_METH_NOARGS, NULL},
    {"monitor", (fp_trace_cfn)fp_trace_py_monitor, FP_METH_VARARGS, NULL},
    {"check_descr", (fp_trace_cfn)fp_trace_py_check_descr, FP_METH_VARARGS, NULL},
    {"handled_traceback", (fp_trace_cfn)fp_trace_py_handled_traceback, FP_METH_O, NULL},
    {"ev_start", (fp_trace_cfn)(void (*)(void))fp_mon_on_start, FP_METH_FASTCALL, NULL},
    {"ev_return", (fp_trace_cfn)(void (*)(void))fp_mon_on_return, FP_METH_FASTCALL, NULL},
    {"ev_call", (fp_trace_cfn)(void (*)(void))fp_mon_on_call, FP_METH_FASTCALL, NULL},
    {"ev_c_return", (fp_trace_cfn)(void (*)(void))fp_mon_on_c_return, FP_METH_FASTCALL, NULL},
};

int fp_agent_trace_export(void *package)
{
    if (fp_trace_resolved == 0) {
        fp_trace_resolved = fp_trace_resolve_all() == 0 ? 1 : -1;
        fp_trace_ticks_init();
    }
    if (fp_trace_resolved < 0) return -1; /* trace.py falls back to its Python recorder */
    fp_pyobj *dict = api.PyDict_New();
    if (!dict) {
        api.PyErr_Clear();
        return -1;
    }
    int rc = 0;
    fp_pyobj *callback_type = fp_mon_new_callback_type();
    for (size_t i = 0; i < sizeof fp_trace_methods / sizeof fp_trace_methods[0]; i++) {
        fp_pyobj *f = fp_mon_callback(callback_type, fp_trace_methods[i].ml_name);
        if (!f) f = api.PyCFunction_NewEx(&fp_trace_methods[i], NULL, NULL);
        if (!f || api.PyDict_SetItemString(dict, fp_trace_methods[i].ml_name, f) < 0) rc = -1;
        if (f) api.Py_DecRef(f);
    }
    if (callback_type) api.Py_DecRef(callback_type);
    if (rc == 0 && api.PyObject_SetAttrString(package, "_native_trace", dict) < 0) rc = -1;
    api.Py_DecRef(dict);
    if (rc < 0) api.PyErr_Clear();
    return rc;
}
