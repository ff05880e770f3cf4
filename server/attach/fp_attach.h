/* The attach engine: find out what a process is, and get libfpagent.so running inside it
 * (ptrace a thread at a safe point, call the C library's dlopen there, restore everything). */
#ifndef FP_ATTACH_H
#define FP_ATTACH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fp_error.h"

typedef struct fp_target {
    int pid;
    int ns_pid;               /* the pid as seen inside the target's own pid namespace */
    uid_t uid;                /* effective uid of the target */
    bool is_python;           /* a CPython interpreter is mapped */
    int py_major, py_minor;   /* 0 when unknown */
    char py_version[32];      /* "3.12.1" when known, else "3.12" or "" */
    char exe[PATH_MAX];       /* /proc/PID/exe target */
    char libpython[PATH_MAX]; /* path of the mapped libpython*.so, "" for a static interpreter */
    char cmdline[512];        /* argv joined by spaces, truncated */
    char state;               /* /proc/PID/stat state letter */
    int ppid;                 /* the parent's pid */
    char cwd[PATH_MAX];       /* /proc/PID/cwd target, "" when unreadable */
} fp_target;

/* Reads /proc for pid. Fails with FP_E_NO_PROCESS, FP_E_PERMISSION or FP_E_EXITING;
 * a non-Python process is not an error here (see t->is_python). */
int fp_target_inspect(int pid, fp_target *t, fp_error *err);
/* Like fp_target_inspect, then fails with FP_E_NOT_PYTHON / FP_E_UNSUPPORTED when the
 * process is not a CPython 3.8+ we can attach to. */
int fp_target_check(int pid, fp_target *t, fp_error *err);
/* Every CPython process the caller may attach to (root: all; others: their own uid), each
 * child right after its parent when both are listed. *out is malloc'd (caller frees); returns
 * the count, or -1. */
int fp_target_list(fp_target **out);
/* The CPython processes whose parent is pid (a pre-forking server's workers), at most max of
 * them, into pids. Returns the count. */
int fp_target_children(int pid, int *pids, int max);

typedef struct fp_attach_opts {
    bool debug;     /* log each step to stderr */
    int timeout_ms; /* bound for stopping a thread and for the remote call (default 5000) */
} fp_attach_opts;

/* Loads agent_path (an absolute path to libfpagent.so) into the target, or, when it is
 * already mapped, calls its exported fp_agent_start() to restart a shut-down agent.
 * On return the target runs exactly as before, with the agent thread started. */
int fp_attach_inject(const fp_target *t, const char *agent_path, const fp_attach_opts *opts,
                     fp_error *err);

/* Why the agent loaded in pid gave up starting (its exported fp_agent_startup_error), read from
 * outside without stopping anything. Returns 1 with the reason in buf, 0 when it recorded none (it
 * is starting or running), -1 when it cannot be read (no agent mapped, an older one). */
int fp_attach_agent_error(int pid, char *buf, size_t size);

#endif
