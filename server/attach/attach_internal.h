/* Private to the attach engine: /proc parsing, ptrace primitives and the remote call.
 * Sections: ptrace primitives, debug log. */
#ifndef FP_ATTACH_INTERNAL_H
#define FP_ATTACH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "fp_attach.h"
#include "fp_proc.h"

/* ===================================================================== ptrace primitives */

typedef struct fp_thread_stop {
    int tgid, tid;
    struct user_regs_struct regs; /* registers at the stop, restored on release */
    void *xstate;                 /* FPU/SSE/AVX state (NT_X86_XSTATE), restored on release */
    size_t xstate_len;
} fp_thread_stop;

/* Seizes tid and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT), saving its registers.
 * Returns 0, or -errno (the thread is left untouched / released on failure). */
int fp_ptrace_stop(int tgid, int tid, int timeout_ms, fp_thread_stop *st);
/* Restores the saved registers and state and detaches. */
int fp_ptrace_release(fp_thread_stop *st);
/* Resumes the stopped thread and waits until it stops on a fault at address 0 (the return
 * of a remote call); other signals go through to the thread. *ret receives rax. */
int fp_ptrace_run_until_return(fp_thread_stop *st, struct user_regs_struct *call, uint64_t *ret);

bool fp_attach_debug_enabled(void);
void fp_attach_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fp_attach_set_debug(bool on);

#endif
