/* Stopping the target while it is read, so that a stack is one consistent moment: every
 * thread is interrupted (threads started meanwhile too), read, and let go; how long they were
 * held is the pause the target saw. Threads in uninterruptible sleep are left alone. The stop
 * is taken in turns with the other clients of this user (fp_turns.h): an attach in progress is
 * waited for, and an attach that comes meanwhile waits for the threads to be let go. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fp_ptrace.h"
#include "fp_turns.h"
#include "remote_internal.h"
#include "fp_clock.h"

#define STOP_ROUNDS 3 /* rescans of /proc/PID/task for threads started while stopping */

struct fp_remote_stopped {
    fp_ptrace_hold *holds;
    int n, cap;
    int *skipped; /* threads seen but not stopped on purpose (D, Z) */
    int nskipped, skipped_cap;
    double t0_ms;
    fp_turn turn;
};

static bool stop_known(const fp_remote_stopped *s, int tid)
{
    for (int i = 0; i < s->n; i++)
        if (s->holds[i].tid == tid) return true;
    for (int i = 0; i < s->nskipped; i++)
        if (s->skipped[i] == tid) return true;
    return false;
}

static int stop_push_int(int **v, int *n, int *cap, int x)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        int *g = realloc(*v, (size_t)c * sizeof *g);
        if (!g) return -1;
        *v = g;
        *cap = c;
    }
    (*v)[(*n)++] = x;
    return 0;
}

/* Holds the threads of tids not seen before; returns how many were new. */
static int stop_round(fp_remote *r, fp_remote_stopped *s, const int *tids, int ntids,
                      int timeout_ms)
{
    int first = s->n;
    for (int i = 0; i < ntids; i++) {
        if (stop_known(s, tids[i])) continue;
        char state, name[2];
        fp_remote_task_info(r->pid, tids[i], &state, name, 0);
        /* D: in the kernel and not running Python (an interrupt would only take effect when it
         * wakes, possibly long after we are gone); T, t: stopped already (job control, or a
         * debugger that holds it), they do not run while read; Z, X: finished */
        if (strchr("DTtZX?", state)) {
            stop_push_int(&s->skipped, &s->nskipped, &s->skipped_cap, tids[i]);
            continue;
        }
        if (s->n == s->cap) {
            int cap = s->cap ? s->cap * 2 : 64;
            fp_ptrace_hold *g = realloc(s->holds, (size_t)cap * sizeof *g);
            if (!g) break;
            s->holds = g;
            s->cap = cap;
        }
        memset(&s->holds[s->n], 0, sizeof s->holds[s->n]);
        s->holds[s->n++].tid = tids[i];
    }
    if (s->n > first) {
        if (first == 0) s->t0_ms = fp_clock_ms();
        fp_ptrace_hold_all(s->holds + first, s->n - first, timeout_ms);
    }
    return s->n - first;
}

static void stop_free(fp_remote_stopped *s)
{
    fp_turn_give(&s->turn);
    free(s->holds);
    free(s->skipped);
    free(s);
}

/* None stopped: say why (permission, gone), from the first thread's error. */
static int stop_error(fp_remote *r, const fp_remote_stopped *s, fp_error *err)
{
    int e = s->n ? s->holds[0].err : ESRCH;
    if (e == EPERM || e == EACCES)
        return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                            "cannot stop the threads of process %d to read them: %s", r->pid,
                            strerror(e));
    if (e == ESRCH) return fp_error_set(err, FP_E_NO_PROCESS, NULL, "process %d exited", r->pid);
    if (e == EAGAIN)
        return fp_error_set(
            err, FP_E_EXITING,
            "it was stopped by job control or a debugger; resume it (kill -CONT) or "
            "read it without stopping",
            "process %d is being stopped (SIGSTOP)", r->pid);
    return fp_error_set(err, FP_E_INTERNAL, NULL, "cannot stop the threads of process %d: %s",
                        r->pid, strerror(e));
}

/* The process that traces pid (a debugger, strace), 0 when none. */
static int stop_tracer(int pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    int tracer = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "TracerPid: %d", &tracer) == 1) break;
    if (f) fclose(f);
    return tracer;
}

fp_remote_stopped *fp_remote_stop(fp_remote *r, int timeout_ms, fp_error *err)
{
    fp_remote_reap_stragglers(r, 0);
    fp_remote_stopped *s = calloc(1, sizeof *s);
    if (!s) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    fp_error busy;
    fp_error_clear(&busy);
    if (fp_turn_take(r->pid, timeout_ms, &s->turn, &busy) < 0)
        return s; /* another fp held the process all that time: read it running */
    for (int round = 0; round < STOP_ROUNDS; round++) {
        int *tids = NULL;
        int ntids = fp_remote_tasks(r->pid, &tids);
        if (ntids < 0) break;
        int added = stop_round(r, s, tids, ntids, timeout_ms);
        free(tids);
        if (added == 0) break;
    }
    int stopped = 0;
    for (int i = 0; i < s->n; i++)
        stopped += s->holds[i].stopped;
    int tracer = stopped == 0 && s->n > 0 ? stop_tracer(r->pid) : 0;
    if (tracer > 0 && tracer != getpid()) {
        /* Another tracer (a debugger, strace) holds the threads: only it may stop them. They
         * are read running, as a sampler reads them; the snapshot says it was not paused. */
        fp_ptrace_release_all(s->holds, s->n);
        s->n = 0;
        return s;
    }
    if (stopped == 0 && s->n > 0) {
        stop_error(r, s, err);
        fp_remote_release(r, s);
        return NULL;
    }
    return s;
}

bool fp_remote_is_stopped(const fp_remote_stopped *s, int tid)
{
    for (int i = 0; s && i < s->n; i++)
        if (s->holds[i].tid == tid) return s->holds[i].stopped;
    return false;
}

double fp_remote_release(fp_remote *r, fp_remote_stopped *s)
{
    if (!s) return 0;
    fp_ptrace_release_all(s->holds, s->n);
    double pause = s->n ? fp_clock_ms() - s->t0_ms : 0;
    /* seized but never stopped: they stop when they can; let go of them then */
    for (int i = 0; i < s->n; i++)
        if (s->holds[i].seized && r->nstragglers < FP_REMOTE_MAX_STRAGGLERS)
            r->stragglers[r->nstragglers++] = s->holds[i].tid;
    stop_free(s);
    return pause;
}

void fp_remote_reap_stragglers(fp_remote *r, int wait_ms)
{
    int kept = 0;
    for (int i = 0; i < r->nstragglers; i++)
        if (!fp_ptrace_reap(r->stragglers[i], wait_ms)) r->stragglers[kept++] = r->stragglers[i];
    r->nstragglers = kept;
}
