/* The merge of native and Python frames (fp_native_merge_symbols), on made-up stacks of the
 * shapes CPython produces: one eval-loop C frame per Python frame (3.8 - 3.10), several per
 * C frame up to the entry frame (3.11+), plumbing dropped, leftovers at the outer end. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fp_native.h"

#define MAX 64

static fp_native_sym sym(const char *fn)
{
    return (fp_native_sym){.function = fn, .file = "libpython3.so", .offset = 0x10};
}

static fp_frame py(const char *fn)
{
    return (fp_frame){.kind = FP_FRAME_PYTHON, .function = fn, .file = "app.py", .line = 1};
}

/* The merged stack as "a,b,c" (innermost first), Python frames marked "py:". */
static void names(const fp_frame *f, int n, char *buf, size_t size)
{
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s%s", i ? "," : "",
                 f[i].kind == FP_FRAME_PYTHON ? "py:" : "", f[i].function);
    }
}

static void merge(const fp_native_sym *syms, int nips, const fp_frame *p, const bool *entry,
                  int npy, const char *want)
{
    uint64_t ips[MAX];
    for (int i = 0; i < nips; i++)
        ips[i] = 0x1000 + (uint64_t)i;
    fp_frame out[MAX];
    int n = fp_native_merge_symbols(ips, syms, nips, p, entry, npy, out, MAX);
    char got[1024];
    names(out, n, got, sizeof got);
    CHECK_STR(got, want);
}

static void test_one_per_eval_frame(void)
{
    /* 3.8: main() calls f() which calls time.sleep */
    fp_native_sym s[] = {sym("clock_nanosleep"),        sym("time_sleep"),
                         sym("call_function"),          sym("_PyEval_EvalFrameDefault"),
                         sym("function_code_fastcall"), sym("_PyFunction_Vectorcall"),
                         sym("call_function"),          sym("_PyEval_EvalFrameDefault"),
                         sym("PyEval_EvalCode"),        sym("Py_RunMain")};
    fp_frame p[] = {py("f"), py("main")};
    merge(s, 10, p, NULL, 2, "clock_nanosleep,time_sleep,py:f,py:main,PyEval_EvalCode,Py_RunMain");
}

static void test_several_per_eval_frame(void)
{
    /* 3.11+: <module> -> main -> f run in one C call of the eval loop; f calls a C function
     * that re-enters the loop for g. */
    fp_native_sym s[] = {sym("_PyEval_EvalFrameDefault"),
                         sym("_PyEval_Vector"),
                         sym("PyObject_Call"),
                         sym("builtin_call"),
                         sym("_PyEval_EvalFrameDefault.cold"),
                         sym("PyEval_EvalCode"),
                         sym("main")};
    fp_frame p[] = {py("g"), py("f"), py("main"), py("<module>")};
    bool entry[] = {true, false, false, true};
    merge(s, 7, p, entry, 4,
          "py:g,PyObject_Call,builtin_call,py:f,py:main,py:<module>,"
          "PyEval_EvalCode,main");
}

static void test_leftovers_and_extra_eval(void)
{
    /* Unwinding stopped early: the outer Python frames still appear, outermost last. */
    fp_native_sym cut[] = {sym("_PyEval_EvalFrameDefault")};
    fp_frame p[] = {py("f"), py("main"), py("<module>")};
    bool entry[] = {true, true, true};
    merge(cut, 1, p, entry, 3, "py:f,py:main,py:<module>");
    /* More eval frames than Python ones (a torn read): the C frame stays. */
    fp_native_sym more[] = {sym("_PyEval_EvalFrameDefault"), sym("_PyEval_EvalFrameDefault")};
    merge(more, 2, p, entry, 1, "py:f,_PyEval_EvalFrameDefault");
    /* A thread with no Python frames: C frames only. */
    fp_native_sym c[] = {sym("epoll_wait"), sym("start_thread")};
    merge(c, 2, NULL, NULL, 0, "epoll_wait,start_thread");
}

static void test_max(void)
{
    fp_native_sym s[] = {sym("a"), sym("_PyEval_EvalFrameDefault"), sym("b")};
    fp_frame p[] = {py("f"), py("g")};
    uint64_t ips[3] = {1, 2, 3};
    fp_frame out[2];
    CHECK_EQ_INT(fp_native_merge_symbols(ips, s, 3, p, NULL, 2, out, 2), 2);
}

int main(void)
{
    test_one_per_eval_frame();
    test_several_per_eval_frame();
    test_leftovers_and_extra_eval();
    test_max();
    return check_summary();
}
