/* Native (C) frames of a thread of another process: libunwind's ptrace unwinder, symbols
 * from the mapped files (libdw's dwfl, .symtab or .dynsym), and the merge that puts the
 * Python frames in place of the interpreter's eval-loop frames.
 * Ownership: fp_native_open returns a handle closed with fp_native_close; every string it
 * hands out (symbol and file names) lives until that close. */
#ifndef FP_NATIVE_H
#define FP_NATIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "fp_error.h"
#include "fp_remote.h"

typedef struct fp_native fp_native;

/* Prepares to unwind the threads of pid: an address space with libunwind's cache and the
 * process's modules. Fails with FP_E_NO_PROCESS or FP_E_INTERNAL. */
fp_native *fp_native_open(int pid, fp_error *err);
void fp_native_close(fp_native *n);

/* Unwinds thread tid, which the caller has ptrace-stopped (PTRACE_INTERRUPT + waited).
 * Fills ips[] with instruction pointers, innermost first; returns the count (>= 1) or -1
 * with err. The stack may be cut short (max, or an unwinding failure): no error then. */
int fp_native_unwind(fp_native *n, int tid, uint64_t *ips, int max, fp_error *err);

/* What ip is: the function (symbol name, "??" when no symbol covers it), the file mapped
 * there (path, "??" when none) and ip's offset from the symbol's start. frame_index is ip's
 * place in its stack: for every frame but the innermost, ip is a return address and the
 * call lies just before it. */
typedef struct fp_native_sym {
    const char *function;
    const char *file;
    uint64_t offset;
} fp_native_sym;
void fp_native_symbolize(fp_native *n, uint64_t ip, int frame_index, fp_native_sym *out);

/* Merges one thread's C frames (ips, innermost first) with its Python frames (py, innermost
 * first). Each eval-loop C frame (_PyEval_EvalFrameDefault) is replaced by the Python frames
 * it runs: one in 3.8 - 3.10; in 3.11+ the frames up to and including the next one with
 * py_entry[i] set (the first frame a C call of the eval loop pushed: 3.11 is_entry, 3.12+
 * the frame right above a FRAME_OWNED_BY_CSTACK shim). py_entry NULL: every frame is one.
 * Call plumbing between eval loops (function_code_fastcall, call_function...) is
 * dropped. Python frames left over (a cut-short native stack) go to the outer end.
 * Writes at most max frames to out, returns the count. Native frames' strings are the
 * handle's; Python frames are copied as they are. */
int fp_native_merge(fp_native *n, const uint64_t *ips, int nips, const fp_frame *py,
                    const bool *py_entry, int npy, fp_frame *out, int max);
/* The same with the C frames already named (syms[k] for ips[k]): the pure part, for tests. */
int fp_native_merge_symbols(const uint64_t *ips, const fp_native_sym *syms, int nips,
                            const fp_frame *py, const bool *py_entry, int npy, fp_frame *out,
                            int max);

#endif
