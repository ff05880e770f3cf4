/* ptrace primitives of the attach engine: stop one thread of the target, run a function call
 * in it, and give it back with every register (general, FPU/SSE/AVX) exactly as it was. */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attach_internal.h"
#include "fp_ptrace.h"
#include "fp_clock.h"

#define XSTATE_MAX (64 * 1024)

/* waitpid for a traced thread with a deadline (-1: none). A ptrace stop of a thread that is
 * not our child cannot be waited for with a timeout otherwise; the backoff keeps the common
 * case (a stop within microseconds) fast. Returns 0, -ETIMEDOUT or -errno. */
static int wait_stop(int tid, long deadline, int *status)
{
    long pause_ns = 20000;
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL | WNOHANG);
        if (r == tid) return 0;
        if (r < 0 && errno != EINTR) return -errno;
        if (deadline >= 0 && (long)fp_clock_ms() > deadline) return -ETIMEDOUT;
        struct timespec ts = {0, pause_ns};
        nanosleep(&ts, NULL);
        if (pause_ns < 1000000) pause_ns *= 2;
    }
}

static bool is_event_stop(int status)
{
    return (status >> 16) == PTRACE_EVENT_STOP;
}

static int save_state(fp_thread_stop *st)
{
    if (ptrace(PTRACE_GETREGS, st->tid, 0, &st->regs) != 0) return -errno;
    st->xstate = malloc(XSTATE_MAX);
    if (!st->xstate) return -ENOMEM;
    struct iovec iov = {st->xstate, XSTATE_MAX};
    if (ptrace(PTRACE_GETREGSET, st->tid, (void *)NT_X86_XSTATE, &iov) == 0) {
        st->xstate_len = iov.iov_len;
        return 0;
    }
    /* no XSAVE: the legacy FXSAVE area still holds x87/SSE state */
    iov.iov_len = sizeof(struct user_fpregs_struct);
    if (ptrace(PTRACE_GETFPREGS, st->tid, 0, st->xstate) != 0) return -errno;
    st->xstate_len = 0;
    return 0;
}

int fp_ptrace_stop(int tgid, int tid, int timeout_ms, fp_thread_stop *st)
{
    memset(st, 0, sizeof *st);
    st->tgid = tgid;
    st->tid = tid;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) return -errno;
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
        int e = errno;
        ptrace(PTRACE_DETACH, tid, 0, 0);
        return -e;
    }
    long deadline = (long)fp_clock_ms() + timeout_ms;
    for (;;) {
        int status = 0, r = wait_stop(tid, deadline, &status);
        if (r != 0) {
            /* the stop never came (uninterruptible sleep?): let go of the thread */
            ptrace(PTRACE_DETACH, tid, 0, 0);
            return r;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) return -ESRCH;
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status);
        if (is_event_stop(status)) {
            if (sig == SIGTRAP) break; /* our interrupt */
            /* a group-stop (SIGSTOP, SIGTSTP...): the process is being stopped; leave it so */
            ptrace(PTRACE_DETACH, tid, 0, 0);
            return -EAGAIN;
        }
        /* A signal on its way to the thread: let it through now, with its own siginfo, as
         * the kernel would have; the interrupt is still pending and stops the thread after. */
        if (ptrace(PTRACE_CONT, tid, 0, sig) != 0) return -errno;
    }
    int r = save_state(st);
    if (r != 0) {
        free(st->xstate);
        st->xstate = NULL;
        ptrace(PTRACE_DETACH, tid, 0, 0);
    }
    fp_attach_debug("thread %d stopped at rip=%#llx orig_rax=%lld rax=%lld", tid,
                    (unsigned long long)st->regs.rip, (long long)st->regs.orig_rax,
                    (long long)st->regs.rax);
    return r;
}

int fp_ptrace_run_until_return(fp_thread_stop *st, struct user_regs_struct *call, uint64_t *ret)
{
    if (ptrace(PTRACE_SETREGS, st->tid, 0, call) != 0) return -errno;
    if (ptrace(PTRACE_CONT, st->tid, 0, 0) != 0) return -errno;
    for (;;) {
        int status = 0, r = wait_stop(st->tid, -1, &status);
        if (r != 0) return r;
        if (WIFEXITED(status) || WIFSIGNALED(status)) return -ESRCH;
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status);
        if (!is_event_stop(status) && sig == SIGSEGV) {
            struct user_regs_struct now;
            if (ptrace(PTRACE_GETREGS, st->tid, 0, &now) != 0) return -errno;
            if (now.rip == 0) { /* the call returned to our zero return address */
                *ret = now.rax;
                return 0;
            }
            fp_attach_debug("unexpected SIGSEGV at rip=%#llx during the remote call",
                            (unsigned long long)now.rip);
            return -EFAULT;
        }
        /* Any other signal reaches the thread as it would have without us (handlers run at
         * any instruction anyway); event stops here are the leftover interrupt or a
         * group-stop: run on. */
        if (ptrace(PTRACE_CONT, st->tid, 0, is_event_stop(status) ? 0 : sig) != 0) return -errno;
    }
}

int fp_ptrace_release(fp_thread_stop *st)
{
    int rc = 0;
    if (ptrace(PTRACE_SETREGS, st->tid, 0, &st->regs) != 0) rc = -errno;
    if (st->xstate) {
        struct iovec iov = {st->xstate, st->xstate_len};
        if (st->xstate_len)
            ptrace(PTRACE_SETREGSET, st->tid, (void *)NT_X86_XSTATE, &iov);
        else
            ptrace(PTRACE_SETFPREGS, st->tid, 0, st->xstate);
        free(st->xstate);
        st->xstate = NULL;
    }
    /* Detaching from the stop with the original registers lets the kernel finish what was
     * interrupted: a system call is restarted (ERESTART*). */
    if (ptrace(PTRACE_DETACH, st->tid, 0, 0) != 0 && rc == 0) rc = -errno;
    fp_attach_debug("thread %d released", st->tid);
    return rc;
}

/* ============================================================ holding threads (fp_ptrace.h) */

/* One wait status of a held thread; returns true once the thread is settled (stopped by
 * us, or out of our hands). */
static bool hold_on_status(fp_ptrace_hold *h, int status)
{
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
        h->seized = false;
        h->err = ESRCH;
        return true;
    }
    if (!WIFSTOPPED(status)) return false;
    int sig = WSTOPSIG(status);
    if (is_event_stop(status)) {
        if (sig == SIGTRAP) {
            h->stopped = true; /* our interrupt */
            return true;
        }
        /* a group-stop (SIGSTOP, SIGTSTP...): the process is being stopped; leave it so */
        ptrace(PTRACE_DETACH, h->tid, 0, 0);
        h->seized = false;
        h->err = EAGAIN;
        return true;
    }
    /* A signal on its way: deliver it now, as the kernel would have, with its own siginfo;
     * the interrupt is still pending and stops the thread right after. */
    h->passed++;
    if (ptrace(PTRACE_CONT, h->tid, 0, sig) != 0) {
        h->seized = false;
        h->err = errno;
        return true;
    }
    return false;
}

static bool hold_settled(const fp_ptrace_hold *h)
{
    return !h->seized || h->stopped || h->err != 0;
}

int fp_ptrace_hold_all(fp_ptrace_hold *holds, int n, int timeout_ms)
{
    /* Interrupt all first, then wait: the threads stop in parallel, so the pause of the
     * first one does not grow with the number of threads behind it. */
    for (int i = 0; i < n; i++) {
        fp_ptrace_hold *h = &holds[i];
        int tid = h->tid;
        memset(h, 0, sizeof *h);
        h->tid = tid;
        if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) {
            h->err = errno;
            continue;
        }
        h->seized = true;
        if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) h->err = errno; /* gone meanwhile */
    }
    long deadline = (long)fp_clock_ms() + timeout_ms;
    long pause_ns = 10000;
    for (;;) {
        bool progress = false, all = true;
        for (int i = 0; i < n; i++) {
            fp_ptrace_hold *h = &holds[i];
            if (hold_settled(h)) continue;
            int status = 0;
            pid_t r = waitpid(h->tid, &status, __WALL | WNOHANG);
            if (r == h->tid) {
                progress = true;
                if (hold_on_status(h, status)) continue;
            } else if (r < 0 && errno != EINTR) {
                h->seized = false;
                h->err = errno;
                continue;
            }
            all = false;
        }
        if (all) break;
        if ((long)fp_clock_ms() > deadline) {
            for (int i = 0; i < n; i++)
                if (!hold_settled(&holds[i])) holds[i].err = ETIMEDOUT;
            break;
        }
        if (progress) {
            pause_ns = 10000;
            continue;
        }
        struct timespec ts = {0, pause_ns};
        nanosleep(&ts, NULL);
        if (pause_ns < 1000000) pause_ns *= 2;
    }
    int stopped = 0;
    for (int i = 0; i < n; i++)
        stopped += holds[i].stopped;
    return stopped;
}

void fp_ptrace_release_all(fp_ptrace_hold *holds, int n)
{
    for (int i = 0; i < n; i++) {
        fp_ptrace_hold *h = &holds[i];
        if (!h->stopped) continue;
        /* From the interrupt stop, untouched: the kernel restarts what was interrupted. */
        ptrace(PTRACE_DETACH, h->tid, 0, 0);
        h->stopped = false;
        h->seized = false;
    }
}

bool fp_ptrace_reap(int tid, int wait_ms)
{
    fp_ptrace_hold h = {.tid = tid, .seized = true};
    long deadline = (long)fp_clock_ms() + wait_ms;
    for (;;) {
        int status = 0;
        pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
        if (r < 0 && errno != EINTR) return true; /* not ours any more */
        if (r == tid && hold_on_status(&h, status)) {
            if (h.stopped) ptrace(PTRACE_DETACH, tid, 0, 0);
            return true;
        }
        if ((long)fp_clock_ms() >= deadline) return false;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}
