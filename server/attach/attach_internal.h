/* Private to the attach engine: /proc parsing, ptrace primitives and the remote call.
 * Sections: process maps, ptrace primitives, remote call. */
#ifndef FP_ATTACH_INTERNAL_H
#define FP_ATTACH_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "fp_attach.h"

/* ===================================================================== process maps */

typedef struct fp_map {
    uint64_t start, end, offset;
    char perms[5];
    char path[PATH_MAX];
} fp_map;

/* Reads /proc/PID/maps. *out is malloc'd (caller frees); returns the count or -1 (errno set). */
int fp_maps_read(int pid, fp_map **out);
/* The lowest mapping (offset 0) of the first file whose path matches pred; NULL if none. */
const fp_map *fp_maps_find(const fp_map *maps, int n, bool (*pred)(const char *path));
/* Path under /proc/PID/root so that files are read in the target's mount namespace. */
void fp_maps_target_path(int pid, const char *path, char *buf, size_t size);
/* Runtime address of symbol `name` of the mapped file m, 0 when not found. */
uint64_t fp_maps_symbol(int pid, const fp_map *m, const char *name);
/* Reads len bytes at addr in pid (process_vm_readv, falling back to /proc/PID/mem). */
int fp_mem_read(int pid, uint64_t addr, void *buf, size_t len);
/* Writes len bytes at addr in pid (process_vm_writev, falling back to /proc/PID/mem). */
int fp_mem_write(int pid, uint64_t addr, const void *buf, size_t len);

/* ===================================================================== ptrace primitives */

typedef struct fp_thread_stop {
    int tgid, tid;
    int pending_sig;               /* signal to deliver when resuming for good (0: none) */
    struct user_regs_struct regs;  /* registers at the stop, restored on release */
    void *xstate;                  /* FPU/SSE/AVX state (NT_X86_XSTATE), restored on release */
    size_t xstate_len;
} fp_thread_stop;

/* Seizes tid and stops it (PTRACE_SEIZE + PTRACE_INTERRUPT), saving its registers.
 * Returns 0, or -errno (the thread is left untouched / released on failure). */
int fp_ptrace_stop(int tgid, int tid, int timeout_ms, fp_thread_stop *st);
/* Restores the saved registers and state, detaches, delivers the pending signal. */
int fp_ptrace_release(fp_thread_stop *st);
/* Resumes the stopped thread and waits until it stops on a fault at address 0 (the return
 * of a remote call), suppressing and remembering other signals. *ret receives rax. */
int fp_ptrace_run_until_return(fp_thread_stop *st, struct user_regs_struct *call, uint64_t *ret);

bool fp_attach_debug_enabled(void);
void fp_attach_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fp_attach_set_debug(bool on);

#endif
