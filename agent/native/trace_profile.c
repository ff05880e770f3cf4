/* The trace recorder heard through a C profile function (PyEval_SetProfile) set on the thread
 * of the traced call, for that call only: 3.8-3.11, and 3.12+ when no sys.monitoring tool id
 * is free. */
#include "trace_internal.h"

void fp_trace_clear_profile(void)
{
    if (fp_py.PyEval_SetProfileTstate) {
        if (fp_py.PyEval_SetProfileTstate(fp_py.PyThreadState_Get(), NULL, NULL) < 0)
            fp_py.PyErr_Clear(); /* an audit hook refused; nothing else can be done */
    } else {
        fp_py.PyEval_SetProfile(NULL, NULL);
    }
}

void fp_trace_remove(fp_trace_rec *r)
{
    /* Only ever called on the recording's own thread. */
    if (!r->installed) return;
    fp_trace_clear_profile();
    r->installed = 0;
    fp_trace_tls = NULL;
    fp_trace_unref(r);
}

int fp_trace_profile(fp_pyobj *obj, fp_pyobj *frame, int what, fp_pyobj *arg)
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
