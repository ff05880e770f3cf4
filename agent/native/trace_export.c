/* The trace recorder's functions for fp_agent/trace.py (package._native_trace): start, stop,
 * cancel, tree, the layout checks, monitor (switching to sys.monitoring) and the callbacks.
 * trace.py turns the tree into the model; it has a pure-Python twin of this recorder
 * (sys.setprofile). */
#include "trace_internal.h"

#include <stdlib.h>
#include <string.h>

/* ===================================== Functions for fp_agent ================================ */

static fp_trace_rec *fp_trace_from(fp_pyobj *capsule)
{
    return fp_py.PyCapsule_GetPointer(capsule, fp_trace_capsule_name);
}

static void fp_trace_capsule_free(fp_pyobj *capsule)
{
    fp_trace_rec *r = fp_py.PyCapsule_GetPointer(capsule, fp_trace_capsule_name);
    if (!r) {
        fp_py.PyErr_Clear();
        return;
    }
    /* A recording still installed keeps itself alive; a profile function goes at its next
     * event, a monitored recording now. */
    r->cancelled = 1;
    if (r->monitored) fp_trace_mon_remove(r);
    fp_trace_unref(r);
}

static long long fp_trace_arg_int(fp_pyobj *args, ssize_t i, long long dflt, int *err)
{
    if (fp_py.PyTuple_Size(args) <= i) return dflt;
    fp_pyobj *v = fp_py.PyTuple_GetItem(args, i);
    if (v == fp_py.none) return dflt;
    long long x = fp_py.PyLong_AsLongLong(v);
    if (x == -1 && fp_py.PyErr_Occurred()) *err = 1;
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
    if (fp_py.PyTuple_Size(args) < 3) {
        fp_py.PyErr_SetString(*fp_py.type_error,
                              "start(root_code, root_frame, pass_frame, max_depth, max_nodes)");
        return NULL;
    }
    if (fp_trace_tls || fp_trace_mon_current()) return fp_trace_none();
    int err = 0;
    fp_pyobj *root = fp_py.PyTuple_GetItem(args, 0);
    fp_pyobj *root_frame = fp_py.PyTuple_GetItem(args, 1);
    fp_pyobj *pass_frame = fp_py.PyTuple_GetItem(args, 2);
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
        fp_py.PyErr_SetString(*fp_py.runtime_error, "out of memory for a trace recording");
        return NULL;
    }
    r->nnodes = 1; /* the root */
    r->max_depth = (uint32_t)max_depth;
    r->max_nodes = (uint32_t)max_nodes;
    r->root_code = root;
    fp_py.Py_IncRef(root);
    if (root_frame != fp_py.none) {
        r->root_frame = root_frame;
        fp_py.Py_IncRef(root_frame);
    }
    if (pass_frame != fp_py.none) {
        r->pass_frame = pass_frame;
        fp_py.Py_IncRef(pass_frame);
    }
    r->refs = 1;
    fp_pyobj *capsule = fp_py.PyCapsule_New(r, fp_trace_capsule_name, fp_trace_capsule_free);
    if (!capsule) {
        fp_trace_unref(r);
        return NULL;
    }
    r->tstate = fp_py.PyThreadState_Get();
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
    if (fp_trace_mon.on) {
        r->monitored = 1;
        if (fp_trace_mon_add(r) != 0) {
            r->installed = 0;
            r->refs--;
            fp_py.Py_DecRef(capsule);
            return NULL;
        }
        return capsule;
    }
    fp_trace_tls = r;
    if (fp_py.PyEval_SetProfileTstate) {
        if (fp_py.PyEval_SetProfileTstate(r->tstate, fp_trace_profile, NULL) < 0) {
            /* An audit hook said no: leave the thread as it was and tell the caller. */
            r->installed = 0;
            fp_trace_tls = NULL;
            r->refs--;
            fp_py.Py_DecRef(capsule);
            return NULL;
        }
    } else {
        fp_py.PyEval_SetProfile(fp_trace_profile, NULL);
    }
    return capsule;
}

/* stop(recording, clear) -> None: ends the recording, on its own thread but for a generator
 * finished on another one. clear (profile function): our hook is still the thread's profile
 * function (sys.getprofile() is None): remove it. When the traced code installed a profiler of
 * its own meanwhile, it is left alone. */
static fp_pyobj *fp_trace_py_stop(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (fp_py.PyTuple_Size(args) < 2) {
        fp_py.PyErr_SetString(*fp_py.type_error, "stop(recording, clear)");
        return NULL;
    }
    fp_trace_rec *r = fp_trace_from(fp_py.PyTuple_GetItem(args, 0));
    if (!r) return NULL;
    int err = 0;
    long long clear = fp_trace_arg_int(args, 1, 1, &err);
    if (err) return NULL;
    if (r->stopped) return fp_trace_none();
    fp_trace_mark_stop(r);
    /* A generator started on one thread and finished on another: the tree misses what ran
     * here. A profile function can only be removed on its own thread, at its next event. */
    int elsewhere = r->installed && r->tstate != fp_py.PyThreadState_Get();
    if (elsewhere) r->cut |= FP_TRACE_CUT_CANCEL;
    if (r->monitored) {
        fp_trace_mon_remove(r);
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
        fp_trace_mon_remove(r);
        fp_trace_finish(r);
    }
    return fp_trace_none();
}

static fp_pyobj *fp_trace_int(long long v)
{
    return fp_py.PyLong_FromLongLong(v);
}

/* tree(recording) -> (t_start_ns, t_stop_ns, active_ns, activations, cut, nodes), nodes a list
 * of (parent, kind, key, name, count, total_ns, call_line), parents before children; key: the code
 * object (kind 1) or the owner (kind 2, or None), name: the C function's name (kind 2) else None.
 */
static fp_pyobj *fp_trace_py_tree(fp_pyobj *self, fp_pyobj *capsule)
{
    (void)self;
    fp_trace_rec *r = fp_trace_from(capsule);
    if (!r) return NULL;
    if (!r->stopped) {
        fp_py.PyErr_SetString(*fp_py.runtime_error,
                              "the recording is still running: stop() it first");
        return NULL;
    }
    double tick_ns = fp_trace_tick_ns();
    fp_pyobj *list = fp_py.PyList_New(r->nnodes);
    if (!list) return NULL;
    for (uint32_t i = 0; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        fp_pyobj *key, *name;
        if (n->kind == FP_TRACE_PY) {
            key = (fp_pyobj *)n->key;
            fp_py.Py_IncRef(key);
            name = fp_trace_none();
        } else if (n->kind == FP_TRACE_C) {
            key = n->owner ? n->owner : fp_py.none;
            fp_py.Py_IncRef(key);
            const fp_py_methoddef *ml = n->key;
            name = fp_py.PyUnicode_FromString(ml && ml->ml_name ? ml->ml_name : "?");
        } else {
            key = fp_trace_none();
            name = fp_trace_none();
        }
        fp_pyobj *t = fp_py.PyTuple_New(7);
        if (!t || !name) {
            fp_py.Py_DecRef(key);
            if (name) fp_py.Py_DecRef(name);
            if (t) fp_py.Py_DecRef(t);
            fp_py.Py_DecRef(list);
            return NULL;
        }
        fp_py.PyTuple_SetItem(t, 0, fp_trace_int(i ? (long long)n->parent : -1LL));
        fp_py.PyTuple_SetItem(t, 1, fp_trace_int(n->kind));
        fp_py.PyTuple_SetItem(t, 2, key);
        fp_py.PyTuple_SetItem(t, 3, name);
        fp_py.PyTuple_SetItem(t, 4, fp_trace_int((long long)n->count));
        fp_py.PyTuple_SetItem(
            t, 5, fp_trace_int((long long)((double)(i ? n->total : r->active) * tick_ns)));
        fp_py.PyTuple_SetItem(t, 6, fp_trace_int(n->call_line));
        fp_py.PyList_SetItem(list, i, t);
    }
    fp_pyobj *out = fp_py.PyTuple_New(6);
    if (!out) {
        fp_py.Py_DecRef(list);
        return NULL;
    }
    fp_py.PyTuple_SetItem(out, 0, fp_trace_int(r->t_start));
    fp_py.PyTuple_SetItem(out, 1, fp_trace_int(r->t_stop));
    fp_py.PyTuple_SetItem(out, 2, fp_trace_int((long long)((double)r->active * tick_ns)));
    fp_py.PyTuple_SetItem(out, 3, fp_trace_int(r->activations));
    fp_py.PyTuple_SetItem(out, 4, fp_trace_int(r->cut));
    fp_py.PyTuple_SetItem(out, 5, list);
    if (fp_py.PyErr_Occurred()) {
        fp_py.Py_DecRef(out);
        return NULL;
    }
    return out;
}

/* check(frame, code, len, builtins) -> bool: the layouts read in the profile function match
 * this interpreter (f_code on 3.8; PyCFunctionObject's m_ml and m_self, on the builtin len). */
static fp_pyobj *fp_trace_py_check(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (fp_py.PyTuple_Size(args) != 4) {
        fp_py.PyErr_SetString(*fp_py.type_error, "check(frame, code, len, builtins)");
        return NULL;
    }
    fp_pyobj *frame = fp_py.PyTuple_GetItem(args, 0), *code = fp_py.PyTuple_GetItem(args, 1);
    fp_pyobj *cfunc = fp_py.PyTuple_GetItem(args, 2), *cself = fp_py.PyTuple_GetItem(args, 3);
    /* The frame layout of this minor version, when it reads right; else PyFrame_GetCode. */
    const char *v = fp_agent_py_version();
    int minor = strncmp(v, "3.", 2) == 0 ? atoi(v + 2) : 0;
    int mode = minor >= 8 && minor <= 10 ? 1 : minor == 11 ? 2 : minor >= 12 && minor <= 13 ? 3 : 0;
    int owned, ok = 0;
    fp_pyobj *got = fp_trace_code_as(frame, mode, &owned);
    if (got == code) {
        ok = 1;
    } else if (fp_py.PyFrame_GetCode) {
        mode = 0;
        got = fp_trace_code_as(frame, mode, &owned);
        ok = got == code;
    }
    if (owned) fp_py.Py_DecRef(got);
    if (ok) fp_trace_code_mode = mode;
    const fp_py_methoddef *ml = FP_CFUNC_ML(cfunc);
    ok =
        ok && FP_CFUNC_SELF(cfunc) == cself && ml && ml->ml_name && strcmp(ml->ml_name, "len") == 0;
    return fp_py.PyBool_FromLong(ok);
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
    ssize_t n = fp_py.PyTuple_Size(args);
    if (n != 0 && n != 3) {
        fp_py.PyErr_SetString(*fp_py.type_error, "monitor(tool, events, set_events) or monitor()");
        return NULL;
    }
    while (fp_trace_mon.nactive > 0) {
        fp_trace_rec *r = fp_trace_mon.active[0];
        r->cancelled = 1;
        r->cut |= FP_TRACE_CUT_CANCEL;
        fp_trace_mark_stop(r);
        fp_trace_mon_remove(r);
        fp_trace_finish(r);
    }
    if (fp_trace_mon.set_events) fp_py.Py_DecRef(fp_trace_mon.set_events);
    fp_trace_mon.set_events = NULL;
    fp_trace_mon.on = 0;
    if (n == 0) return fp_trace_none();
    int err = 0;
    long long tool = fp_trace_arg_int(args, 0, -1, &err);
    long long mask = fp_trace_arg_int(args, 1, -1, &err);
    if (err) return NULL;
    if (tool < 0 || tool > 5 || mask <= 0) {
        fp_py.PyErr_SetString(*fp_py.type_error, "monitor(): tool is 0-5 and events a mask");
        return NULL;
    }
    fp_trace_mon.tool = (long)tool;
    fp_trace_mon.mask = (long)mask;
    fp_trace_mon.set_events = fp_py.PyTuple_GetItem(args, 2);
    fp_py.Py_IncRef(fp_trace_mon.set_events);
    fp_trace_mon.on = 1;
    return fp_trace_none();
}

/* check_descr(descriptor, type, name) -> bool: PyMethodDescrObject reads right (list.append). */
static fp_pyobj *fp_trace_py_check_descr(fp_pyobj *self, fp_pyobj *args)
{
    (void)self;
    if (fp_py.PyTuple_Size(args) != 3) {
        fp_py.PyErr_SetString(*fp_py.type_error, "check_descr(descriptor, type, name)");
        return NULL;
    }
    fp_pyobj *descr = fp_py.PyTuple_GetItem(args, 0), *type = fp_py.PyTuple_GetItem(args, 1);
    fp_pyobj *owner = NULL;
    const fp_py_methoddef *ml = NULL;
    int ok = fp_trace_mon_c_kind(descr) == 2;
    if (ok) ml = fp_trace_mon_c_key(descr, 2, &owner);
    ok = ok && owner == type && ml && ml->ml_name && strcmp(ml->ml_name, "append") == 0;
    return fp_py.PyBool_FromLong(ok);
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
    return fp_py.PyBool_FromLong(fp_trace_tls != NULL || fp_trace_mon_current() != NULL);
}

/* monitored() -> int: recordings heard through sys.monitoring now, on every thread. */
static fp_pyobj *fp_trace_py_monitored(fp_pyobj *self, fp_pyobj *unused)
{
    (void)self;
    (void)unused;
    return fp_trace_int(fp_trace_mon.nactive);
}

/* handled_traceback(tb): the exception being handled (sys.exc_info()) gets traceback tb (None
 * allowed). A bare `raise` in the handler then re-raises with it: before 3.11 it re-raises the
 * traceback kept there, not the exception's __traceback__. Used by instrument.py's wrapper to
 * leave its own entry out of the traceback its caller sees. */
static fp_pyobj *fp_trace_py_handled_traceback(fp_pyobj *self, fp_pyobj *tb)
{
    (void)self;
    fp_pyobj *type, *value, *old;
    fp_py.PyErr_GetExcInfo(&type, &value, &old);
    if (!value) {
        fp_py.PyErr_SetExcInfo(type, value, old);
        fp_py.PyErr_SetString(*fp_py.runtime_error,
                              "handled_traceback(): no exception is being handled");
        return NULL;
    }
    if (tb == fp_py.none) tb = NULL;
    if (tb) fp_py.Py_IncRef(tb);
    fp_py.PyErr_SetExcInfo(type, value, tb); /* takes the three references */
    fp_py.Py_DecRef(old);
    return fp_trace_none();
}

static fp_py_methoddef fp_trace_methods[] = {
    {"start", (fp_py_cfunc)fp_trace_py_start, FP_METH_VARARGS, NULL},
    {"stop", (fp_py_cfunc)fp_trace_py_stop, FP_METH_VARARGS, NULL},
    {"cancel", (fp_py_cfunc)fp_trace_py_cancel, FP_METH_O, NULL},
    {"tree", (fp_py_cfunc)fp_trace_py_tree, FP_METH_O, NULL},
    {"check", (fp_py_cfunc)fp_trace_py_check, FP_METH_VARARGS, NULL},
    {"strays", (fp_py_cfunc)fp_trace_py_strays, FP_METH_NOARGS, NULL},
    {"active", (fp_py_cfunc)fp_trace_py_active, FP_METH_NOARGS, NULL},
    {"monitored", (fp_py_cfunc)fp_trace_py_monitored, FP_METH_NOARGS, NULL},
    {"monitor", (fp_py_cfunc)fp_trace_py_monitor, FP_METH_VARARGS, NULL},
    {"check_descr", (fp_py_cfunc)fp_trace_py_check_descr, FP_METH_VARARGS, NULL},
    {"handled_traceback", (fp_py_cfunc)fp_trace_py_handled_traceback, FP_METH_O, NULL},
    {"ev_start", (fp_py_cfunc)(void (*)(void))fp_trace_mon_on_start, FP_METH_FASTCALL, NULL},
    {"ev_return", (fp_py_cfunc)(void (*)(void))fp_trace_mon_on_return, FP_METH_FASTCALL, NULL},
    {"ev_call", (fp_py_cfunc)(void (*)(void))fp_trace_mon_on_call, FP_METH_FASTCALL, NULL},
    {"ev_c_return", (fp_py_cfunc)(void (*)(void))fp_trace_mon_on_c_return, FP_METH_FASTCALL, NULL},
};

int fp_agent_trace_export(void *package)
{
    /* Without every function the recorder needs, trace.py falls back to its Python twin. */
    if (!fp_py_usable(FP_PYG_TRACE)) return -1;
    static int ticks_ready;
    if (!ticks_ready) {
        fp_trace_ticks_init();
        ticks_ready = 1;
    }
    fp_pyobj *dict = fp_py.PyDict_New();
    if (!dict) {
        fp_py.PyErr_Clear();
        return -1;
    }
    int rc = 0;
    fp_pyobj *callback_type = fp_trace_mon_new_callback_type();
    for (size_t i = 0; i < sizeof fp_trace_methods / sizeof fp_trace_methods[0]; i++) {
        fp_pyobj *f = fp_trace_mon_callback(callback_type, fp_trace_methods[i].ml_name);
        if (!f) f = fp_py.PyCFunction_NewEx(&fp_trace_methods[i], NULL, NULL);
        if (!f || fp_py.PyDict_SetItemString(dict, fp_trace_methods[i].ml_name, f) < 0) rc = -1;
        if (f) fp_py.Py_DecRef(f);
    }
    if (callback_type) fp_py.Py_DecRef(callback_type);
    /* The limits its Python twin must share (trace.py's MAX_STACK, MAX_NODES; a test compares). */
    fp_pyobj *limits = fp_py.PyDict_New();
    fp_pyobj *stack = fp_py.PyLong_FromLongLong(FP_TRACE_STACK);
    fp_pyobj *nodes = fp_py.PyLong_FromLongLong(FP_TRACE_NODES_DEFAULT);
    if (!limits || !stack || !nodes || fp_py.PyDict_SetItemString(limits, "max_stack", stack) < 0 ||
        fp_py.PyDict_SetItemString(limits, "max_nodes", nodes) < 0 ||
        fp_py.PyDict_SetItemString(dict, "limits", limits) < 0)
        rc = -1;
    if (limits) fp_py.Py_DecRef(limits);
    if (stack) fp_py.Py_DecRef(stack);
    if (nodes) fp_py.Py_DecRef(nodes);
    if (rc == 0 && fp_py.PyObject_SetAttrString(package, "_native_trace", dict) < 0) rc = -1;
    fp_py.Py_DecRef(dict);
    if (rc < 0) fp_py.PyErr_Clear();
    return rc;
}
