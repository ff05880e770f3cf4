/* ptrace primitives of the attach engine: stop one thread of the target, run a function call
 * in it, and give it back with every register (general, FPU/SSE/AVX) exactly as it was. */
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "attach_internal.h"

#define XSTATE_MAX (64 * 1024)
#define MAX_DEFERRED 16

/* Signals that arrived while the thread ran our call; sent again after it is released. */
static int deferred[MAX_DEFERRED];
static int ndeferred;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

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
        if (deadline >= 0 && now_ms() > deadline) return -ETIMEDOUT;
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
    ndeferred = 0;
    if (ptrace(PTRACE_SEIZE, tid, 0, 0) != 0) return -errno;
    if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) != 0) {
        int e = errno;
        ptrace(PTRACE_DETACH, tid, 0, 0);
        return -e;
    }
    long deadline = now_ms() + timeout_ms;
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
        /* A signal is being delivered to the thread right now: keep it to deliver at release
         * (where the kernel then does exactly what it would have done), and go on. */
        st->pending_sig = sig;
        if (ptrace(PTRACE_CONT, tid, 0, 0) != 0) return -errno;
    }
    int r = save_state(st);
    if (r != 0) {
        free(st->xstate);
        st->xstate = NULL;
        ptrace(PTRACE_DETACH, tid, 0, st->pending_sig);
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
        if (!is_event_stop(status) && ndeferred < MAX_DEFERRED) deferred[ndeferred++] = sig;
        /* event stops here are the leftover interrupt or a group-stop: run on */
        if (ptrace(PTRACE_CONT, st->tid, 0, 0) != 0) return -errno;
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
     * interrupted: a system call is restarted (ERESTART*), a pending signal is delivered. */
    if (ptrace(PTRACE_DETACH, st->tid, 0, st->pending_sig) != 0 && rc == 0) rc = -errno;
    /* signals that arrived during our call were held back; the thread gets them now */
    for (int i = 0; i < ndeferred; i++) syscall(SYS_tgkill, st->tgid, st->tid, deferred[i]);
    ndeferred = 0;
    fp_attach_debug("thread %d released", st->tid);
    return rc;
}
