/* Private to the trace recorder, split by concern: trace_record.c (the calling-context tree,
 * the clock), trace_profile.c (the profile-function hook), trace_monitoring.c (the
 * sys.monitoring hook, 3.12+) and trace_export.c (the functions handed to fp_agent/trace.py).
 * What every event runs is here as inline functions, so that both hooks' callbacks compile to
 * one function each, as they did in one file: the recorder's cost per call is measured
 * (bench/trace_instructions.py). */
#ifndef FP_TRACE_INTERNAL_H
#define FP_TRACE_INTERNAL_H

#include "agent.h"
#include "pyapi.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

/* ===================================== Layouts read by hand ================================== */

/* What the profile function receives (Include/cpython/pystate.h). */
enum {
    FP_PT_CALL = 0,
    FP_PT_RETURN = 3,
    FP_PT_C_CALL = 4,
    FP_PT_C_EXCEPTION = 5,
    FP_PT_C_RETURN = 6
};

/* Layouts read in the profile function, checked once against live objects (fp_trace_check):
 * ob_type is the second word of every object; PyCFunctionObject is {head, m_ml, m_self, ...}
 * in 3.8-3.13; 3.8 has no PyFrame_GetCode, and its frame's f_code follows f_back. */
#define FP_OB_TYPE(o) (*(fp_pyobj **)((char *)(o) + sizeof(void *)))
#define FP_CFUNC_ML(o) (*(fp_py_methoddef **)((char *)(o) + 2 * sizeof(void *)))
#define FP_CFUNC_SELF(o) (*(fp_pyobj **)((char *)(o) + 3 * sizeof(void *)))
#define FP_FRAME38_CODE(f) (*(fp_pyobj **)((char *)(f) + 4 * sizeof(void *)))
/* PyMethodDescrObject (list.append before it is bound): {head, d_type, d_name, d_qualname,
 * d_method, ...} in 3.8-3.13. */
#define FP_DESCR_TYPE(o) (*(fp_pyobj **)((char *)(o) + 2 * sizeof(void *)))
#define FP_DESCR_ML(o) (*(fp_py_methoddef **)((char *)(o) + 5 * sizeof(void *)))
#define FP_TPFLAGS_TYPE_SUBCLASS (1UL << 31)

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
    int32_t call_line;   /* children of the root: the root's line that made the call, else 0 */
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
                    * listed in fp_trace_mon.active */
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

/* The recording of the traced call running on this thread (profile function), NULL when none. */
extern _Thread_local fp_trace_rec *fp_trace_tls;
/* Times our profile function ran on a thread with no recording: must stay 0 (checked by tests). */
extern _Atomic long fp_trace_strays;
extern const char fp_trace_capsule_name[];
/* The clock (trace_record.c): the TSC when the kernel keeps time with it, else ns. */
extern int fp_trace_tsc;
/* How a frame's code is read (chosen and checked by check()): 0 PyFrame_GetCode (a new
 * reference); 1 frame->f_code (3.8-3.10); 2 frame->f_frame->f_code (3.11); 3 the interpreter
 * frame's first field, f_code or f_executable (3.12, 3.13). 1-3 are borrowed. */
extern int fp_trace_code_mode;

void fp_trace_ticks_init(void);
/* Nanoseconds per tick, measured over the time since the package was loaded. */
double fp_trace_tick_ns(void);
void fp_trace_unref(fp_trace_rec *r);
int fp_trace_grow_table(fp_trace_rec *r);
/* The child of parent with this key, created when new. FP_TRACE_NONE when it cannot have one
 * (too deep, too many nodes, no memory). Takes no reference: the caller gives one on creation
 * (*created). */
uint32_t fp_trace_child(fp_trace_rec *r, uint32_t parent, uint8_t kind, const void *key,
                        fp_pyobj *owner, int32_t call_line, int *created);
void fp_trace_mark_stop(fp_trace_rec *r);
/* Ends a recording that no event will reach any more (see trace_record.c). */
void fp_trace_finish(fp_trace_rec *r);

static inline fp_pyobj *fp_trace_none(void)
{
    fp_py.Py_IncRef(fp_py.none);
    return fp_py.none;
}

static inline int64_t fp_trace_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t fp_trace_ticks(void)
{
#if defined(__x86_64__)
    if (fp_trace_tsc) return (int64_t)__rdtsc();
#endif
    return fp_trace_now();
}

static inline size_t fp_trace_hash(uint32_t parent, const void *key, const void *owner,
                                   int32_t call_line)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)parent + 1 + ((uint64_t)(uint32_t)call_line << 32)) * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)(uintptr_t)owner * 0x165667B19E3779F9ull;
    return (size_t)(h ^ (h >> 29));
}

/* A call from the top of the stack: finds (or makes) its node and pushes it. Returns whether
 * a new node was made (the caller then gives it its references). */
static inline int fp_trace_push(fp_trace_rec *r, uint8_t kind, const void *key, fp_pyobj *owner)
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
    /* The root's children are told apart by the line of the root that calls them (what the
     * editor shows on each line); deeper calls are not, which keeps their price as it was. */
    int32_t line = 0;
    if (top->node == FP_TRACE_ROOT && r->root_frame && fp_py.PyFrame_GetLineNumber)
        line = fp_py.PyFrame_GetLineNumber(r->root_frame);
    /* Loops call the same functions in the same order: the sibling that followed the last one
     * the previous time is the likely one; then a repeat of the last one; then the table. */
    int created = 0;
    fp_trace_node *nodes = r->nodes;
    uint32_t prev = top->last_child;
    uint32_t hint = prev == FP_TRACE_NONE ? nodes[top->node].first_hint : nodes[prev].next_hint;
    uint32_t node;
    if (hint && nodes[hint].key == key && nodes[hint].owner == owner && nodes[hint].kind == kind &&
        nodes[hint].call_line == line)
        node = hint;
    else if (prev != FP_TRACE_NONE && nodes[prev].key == key && nodes[prev].owner == owner &&
             nodes[prev].kind == kind && nodes[prev].call_line == line)
        node = prev;
    else
        node = fp_trace_child(r, top->node, kind, key, owner, line, &created);
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

static inline void fp_trace_pop(fp_trace_rec *r, int64_t t)
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

static inline fp_pyobj *fp_trace_code_as(fp_pyobj *frame, int mode, int *owned)
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
        if (!fp_py.PyFrame_GetCode) return NULL;
        *owned = 1;
        return fp_py.PyFrame_GetCode(frame);
    }
}

static inline fp_pyobj *fp_trace_code(fp_pyobj *frame, int *owned)
{
    return fp_trace_code_as(frame, fp_trace_code_mode, owned);
}

/* Who a C function belongs to: its module (time.sleep), its class (dict.fromkeys) or its
 * instance's type (list.append). The instance itself is never kept: holding it would delay
 * its destruction (a file's close, a weakref callback), which the traced code could notice. */
static inline fp_pyobj *fp_trace_owner(fp_pyobj *func)
{
    fp_pyobj *self = FP_CFUNC_SELF(func);
    if (!self) return NULL;
    fp_pyobj *type = FP_OB_TYPE(self);
    if (type == fp_py.module_type) return self;
    if (type == fp_py.type_type || (fp_py.PyType_GetFlags(type) & FP_TPFLAGS_TYPE_SUBCLASS))
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

static inline fp_pyobj *fp_trace_ev_code(fp_trace_ev *ev)
{
    if (!ev->code) ev->code = fp_trace_code(ev->frame, &ev->owned);
    return ev->code;
}
static inline void fp_trace_ev_done(fp_trace_ev *ev)
{
    if (ev->owned) fp_py.Py_DecRef(ev->code);
    ev->owned = 0;
}
/* Whether the event is about frame `want` (the root's, or its wrapper's). Under sys.monitoring
 * there is no wrapper, and only a frame running the root's code can be the root's: the frame
 * is looked up (and its object made, when it had none) only for those. */
static inline int fp_trace_ev_is(fp_trace_rec *r, fp_trace_ev *ev, fp_pyobj *want)
{
    if (!want) return 0;
    if (!ev->frame) {
        if (ev->code != r->root_code) return 0;
        ev->frame = fp_py.PyEval_GetFrame();
    }
    return ev->frame == want;
}
/* A Python call while the root is not running: the root (or its wrapper) starting or resuming,
 * or code outside the root (skipped). */
static inline void fp_trace_outside_call(fp_trace_rec *r, fp_trace_ev *ev)
{
    int root = fp_trace_ev_is(r, ev, r->root_frame);
    if (!root && !r->root_frame && r->skip == 0 &&
        (r->sp == 0 || r->stack[r->sp - 1].node == FP_TRACE_PASS)) {
        /* The first activation, called from the wrapper: this frame is the root's. */
        root = fp_trace_ev_code(ev) == r->root_code;
        if (root) {
            if (!ev->frame) ev->frame = fp_py.PyEval_GetFrame();
            r->root_frame = ev->frame;
            fp_py.Py_IncRef(ev->frame);
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
static inline void fp_trace_on_py_call(fp_trace_rec *r, fp_trace_ev *ev)
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
        if (!ev->owned) fp_py.Py_IncRef(code);
        ev->owned = 0; /* the node keeps the reference */
    }
}
/* A C function is called. */
static inline void fp_trace_on_c_call(fp_trace_rec *r, const void *ml, fp_pyobj *owner)
{
    if (r->skip || !r->running) {
        r->skip++;
        return;
    }
    if (fp_trace_push(r, FP_TRACE_C, ml, owner) && owner) fp_py.Py_IncRef(owner);
}
/* A Python frame returns, yields or unwinds (py), or a C function returns or raises. */
static inline void fp_trace_on_return(fp_trace_rec *r, int py, fp_trace_ev *ev)
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

/* ===================================== The profile function (trace_profile.c) ================ */

int fp_trace_profile(fp_pyobj *obj, fp_pyobj *frame, int what, fp_pyobj *arg);
void fp_trace_clear_profile(void);
/* Takes the hook off its own thread and drops the recording's reference. */
void fp_trace_remove(fp_trace_rec *r);

/* ===================================== sys.monitoring (trace_monitoring.c) =================== */

/* Set by fp_trace_py_monitor while trace.py holds a tool id with our callbacks registered. */
typedef struct fp_trace_mon_state {
    int on;
    long tool, mask;
    fp_pyobj *set_events;  /* sys.monitoring.set_events, strong */
    fp_trace_rec **active; /* the recordings running now, one per thread, in no order */
    uint32_t nactive, cap;
} fp_trace_mon_state;
extern fp_trace_mon_state fp_trace_mon;

/* The recording of this thread, from a callback. Every thread's events arrive while any thread
 * records; a list (of one, mostly) searched by thread is cheaper than C thread-local storage in
 * a library loaded with dlopen, and cancel() can take a recording out of it from another
 * thread. Threads are compared, not thread states: PyThreadState_Get() is itself a
 * thread-local lookup in libpython (3.12+), pthread_self() one register read; a thread runs
 * one thread state of the interpreter at a time. */
static inline fp_trace_rec *fp_trace_mon_current(void)
{
    if (fp_trace_mon.nactive == 0) return NULL;
    pthread_t self = pthread_self();
    for (uint32_t i = 0; i < fp_trace_mon.nactive; i++)
        if (pthread_equal(fp_trace_mon.active[i]->thread, self)) return fp_trace_mon.active[i];
    return NULL;
}

/* 1: a builtin function or method; 2: a method descriptor called unbound by the interpreter
 * (list.append); 0: another callable. These are the C functions the recorder shows, as the
 * profile function sees them. */
static inline int fp_trace_mon_c_kind(fp_pyobj *callable)
{
    fp_pyobj *type = FP_OB_TYPE(callable);
    if (type == fp_py.cfunction_type || type == fp_py.cmethod_type) return 1;
    return type == fp_py.methoddescr_type ? 2 : 0;
}

/* The PyMethodDef and owner of a callable of kind 1 or 2. */
static inline const void *fp_trace_mon_c_key(fp_pyobj *callable, int kind, fp_pyobj **owner)
{
    if (kind == 1) {
        *owner = fp_trace_owner(callable);
        return FP_CFUNC_ML(callable);
    }
    *owner = FP_DESCR_TYPE(callable);
    return FP_DESCR_ML(callable);
}

int fp_trace_mon_add(fp_trace_rec *r);
/* Takes a monitored recording out of the list (from any thread); events go off with the last. */
void fp_trace_mon_remove(fp_trace_rec *r);
/* The callbacks, as builtin functions (fastcall), and as objects of a type with a vectorcall
 * slot when it can be made: fp_trace_mon_new_callback_type, fp_trace_mon_callback. */
fp_pyobj *fp_trace_mon_on_start(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs);
fp_pyobj *fp_trace_mon_on_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs);
fp_pyobj *fp_trace_mon_on_call(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs);
fp_pyobj *fp_trace_mon_on_c_return(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs);
fp_pyobj *fp_trace_mon_new_callback_type(void);
fp_pyobj *fp_trace_mon_callback(fp_pyobj *type, const char *name);

#endif
