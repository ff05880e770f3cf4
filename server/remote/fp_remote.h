/* Reading a CPython process from outside, without its GIL and without an agent: the
 * interpreter's threads and their Python frames (process_vm_readv), native frames (libunwind's
 * ptrace unwinder), which thread holds the GIL. Used by `stack`, `perf` and `gilstat`.
 * Ownership: fp_remote_open returns a handle the caller closes; a fp_remote_snapshot is filled
 * by fp_remote_snapshot_take and freed with fp_remote_snapshot_free. */
#ifndef FP_REMOTE_H
#define FP_REMOTE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "fp_error.h"

typedef struct fp_remote fp_remote;

/* Finds the interpreter in pid (_PyRuntime, the version's layout) and prepares to read it.
 * Fails with FP_E_NO_PROCESS, FP_E_PERMISSION, FP_E_NOT_PYTHON, FP_E_UNSUPPORTED. */
fp_remote *fp_remote_open(int pid, fp_error *err);
void fp_remote_close(fp_remote *r);
int fp_remote_pid(const fp_remote *r);
/* "3.12.1" */
const char *fp_remote_version(const fp_remote *r);

typedef enum fp_frame_kind {
    FP_FRAME_PYTHON = 1, /* a Python function being run */
    FP_FRAME_NATIVE = 2, /* a C frame (with --native) */
} fp_frame_kind;

typedef struct fp_frame {
    fp_frame_kind kind;
    const char *function; /* Python: co_qualname (3.11+) or co_name; native: symbol or "??" */
    const char *file;     /* Python: co_filename; native: the shared object's path */
    int line;             /* Python: current line (0 when unknown); native: 0 */
    int first_line;       /* Python: co_firstlineno */
    uint64_t addr;        /* Python: the code object's address; native: the instruction pointer */
    uint64_t offset;      /* native: ip - symbol start */
    const char *name;     /* Python: co_name (as tracebacks name the function); native: NULL */
} fp_frame;

typedef struct fp_thread {
    uint64_t tstate;     /* PyThreadState address, 0 for a native-only thread */
    unsigned long ident; /* threading.get_ident() (pthread_t) */
    int native_id;       /* kernel tid */
    char name[32];       /* /proc/PID/task/TID/comm */
    char state;          /* /proc state letter: R, S, D, T... */
    bool holds_gil;
    bool is_main;     /* the interpreter's main thread */
    fp_frame *frames; /* innermost first */
    int nframes;
    const char *thread_name; /* threading's name (FP_SNAP_THREAD_NAMES), NULL when unknown */
    int daemon;              /* threading's daemon flag: 1, 0, or -1 when unknown */
    bool torn; /* the frame chain ended on garbage: it changed while being read (FP_SNAP_NO_STOP);
                  the frames may be cut short (perf counts the sample as lost) */
} fp_thread;

typedef struct fp_remote_snapshot {
    fp_thread *threads;
    int nthreads;
    double pause_ms; /* how long the target's threads were stopped (0 without stopping) */
    void *strings;   /* owned storage for the frames' strings */
} fp_remote_snapshot;

enum {
    FP_SNAP_NATIVE = 0x1,       /* unwind C frames too (needs the threads stopped) */
    FP_SNAP_NO_STOP = 0x2,      /* read without stopping the threads (sampling: may be torn) */
    FP_SNAP_THREAD_NAMES = 0x4, /* name threads as threading does, with their daemon flag
                                   (reads threading._active after the threads are released) */
};

/* Reads every thread. Without FP_SNAP_NO_STOP the threads are stopped (PTRACE_SEIZE +
 * INTERRUPT) for the shortest time and released before returning. */
int fp_remote_snapshot_take(fp_remote *r, unsigned flags, fp_remote_snapshot *out, fp_error *err);
void fp_remote_snapshot_free(fp_remote_snapshot *s);

/* The `stack` command's model (protocol/methods.md, "stack from outside"): the snapshot as
 * JSON, frames outermost first, with each frame's source line read through /proc/PID/root.
 * Returns a new object (caller frees), NULL when out of memory. */
struct cJSON *fp_remote_stack_model(const fp_remote *r, const fp_remote_snapshot *s);

#endif
