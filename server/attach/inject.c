/* Getting libfpagent.so running in the target: pick a thread at a safe point, make it call
 * the C library's dlopen (or, when the agent is already mapped, its fp_agent_start), and give
 * the thread back exactly as it was. Linux x86-64, glibc. */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach_internal.h"
#include "fp_elf.h"
#include "fp_clock.h"
#include "fp_paths.h"

#define GLIBC_RTLD_DLOPEN 0x80000000 /* __RTLD_DLOPEN, for __libc_dlopen_mode before 2.34 */
#define MAX_THREADS 4096

/* ===================================================================== what to call */

typedef struct remote_fn {
    uint64_t addr;  /* function to call in the target */
    uint64_t flags; /* second argument (dlopen's mode) */
    bool with_path; /* first argument is the agent path */
    const char *what;
} remote_fn;

static bool is_libc(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libc.so", 7) == 0 || strncmp(base, "libc-2.", 7) == 0;
}

static bool is_agent(const char *path)
{
    const char *base = strrchr(path, '/');
    return strcmp(base ? base + 1 : path, FP_AGENT_LIB_NAME) == 0;
}

/* Code that may hold C-library or loader locks: a thread stopped there must not call dlopen. */
static bool is_runtime_lib(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return is_libc(path) || strncmp(base, "ld-linux", 8) == 0 ||
           strncmp(base, "libpthread", 10) == 0 || strncmp(base, "libdl", 5) == 0;
}

static int choose_function(const fp_target *t, const fp_map *maps, int n, remote_fn *fn,
                           fp_error *err)
{
    const fp_map *agent = fp_maps_find(maps, n, is_agent);
    if (agent) {
        fn->addr = fp_maps_symbol(t->pid, agent, "fp_agent_start");
        fn->with_path = false;
        fn->what = "fp_agent_start";
        if (fn->addr) return 0;
        return fp_error_set(err, FP_E_INJECT,
                            "The library mapped in the target is not fp's agent or is from an "
                            "incompatible version; restart the target to load a fresh one.",
                            "%s is mapped in process %d but exports no fp_agent_start", agent->path,
                            t->pid);
    }
    const fp_map *libc = fp_maps_find(maps, n, is_libc);
    if (!libc)
        return fp_error_set(err, FP_E_UNSUPPORTED,
                            "fp injects its agent with the GNU C library's dlopen; musl-based or "
                            "statically linked programs are not supported yet.",
                            "process %d has no GNU C library mapped", t->pid);
    fn->with_path = true;
    fn->addr = fp_maps_symbol(t->pid, libc, "dlopen"); /* glibc >= 2.34 */
    fn->flags = RTLD_NOW;
    fn->what = "dlopen";
    if (!fn->addr) {
        fn->addr = fp_maps_symbol(t->pid, libc, "__libc_dlopen_mode");
        fn->flags = RTLD_NOW | GLIBC_RTLD_DLOPEN;
        fn->what = "__libc_dlopen_mode";
    }
    if (fn->addr) return 0;
    return fp_error_set(err, FP_E_UNSUPPORTED, "Please report this with your glibc version.",
                        "no dlopen found in %s of process %d", libc->path, t->pid);
}

/* ===================================================================== which thread */

typedef struct candidate {
    int tid;
    int rank; /* lower first */
} candidate;

static int by_rank(const void *a, const void *b)
{
    return ((const candidate *)a)->rank - ((const candidate *)b)->rank;
}

/* A thread with SIGSEGV blocked cannot take our return trap without the kernel resetting the
 * process's SIGSEGV handler, so it is never chosen. */
static bool segv_blocked(int pid, int tid)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/status", pid, tid);
    FILE *f = fopen(path, "re");
    if (!f) return true;
    bool blocked = true;
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, "SigBlk:", 7) == 0)
            blocked = (strtoull(buf + 7, NULL, 16) >> (SIGSEGV - 1)) & 1;
    fclose(f);
    return blocked;
}

static char thread_state(int pid, int tid)
{
    char path[96], buf[512];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    FILE *f = fopen(path, "re");
    if (!f) return '?';
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

/* Threads asleep in a system call first (the main thread before others): stopped there they
 * hold no C-library lock. Running threads after them. */
static int list_candidates(int pid, candidate *out, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        int tid = atoi(e->d_name);
        char st = thread_state(pid, tid);
        if (st == 'Z' || st == 'X' || st == 'T' || st == 't' || segv_blocked(pid, tid)) continue;
        int rank = (st == 'S' ? 0 : st == 'R' ? 2 : 4) + (tid == pid ? 0 : 1);
        out[n++] = (candidate){tid, rank};
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, by_rank);
    return n;
}

static bool at_safe_point(const fp_thread_stop *st, const fp_map *maps, int n)
{
    if ((long long)st->regs.orig_rax >= 0) return true; /* at a system call boundary */
    for (int i = 0; i < n; i++)
        if (st->regs.rip >= maps[i].start && st->regs.rip < maps[i].end)
            return !is_runtime_lib(maps[i].path);
    return true;
}

/* ===================================================================== the remote call */

/* Sets up a call of fn in the stopped thread, below its stack pointer (past the 128-byte red
 * zone), with a return address of 0 so that the return traps back to us. */
static int remote_call(const fp_thread_stop *st, const remote_fn *fn, const char *path,
                       uint64_t *ret)
{
    struct user_regs_struct call = st->regs;
    uint64_t sp = (st->regs.rsp - 512) & ~(uint64_t)15;
    if (fn->with_path) {
        size_t len = strlen(path) + 1;
        sp -= (len + 15) & ~(size_t)15;
        if (fp_mem_write(st->tgid, sp, path, len) != 0) return -EFAULT;
        call.rdi = sp;
        call.rsi = fn->flags;
    }
    uint64_t zero = 0;
    sp -= 8; /* at function entry rsp + 8 is 16-byte aligned */
    if (fp_mem_write(st->tgid, sp, &zero, sizeof zero) != 0) return -EFAULT;
    call.rsp = sp;
    call.rip = fn->addr;
    call.rax = 0;
    call.orig_rax = (unsigned long long)-1; /* no system call restart on the way in */
    return fp_ptrace_run_until_return((fp_thread_stop *)st, &call, ret);
}

/* The text of dlerror() in the target after a failed dlopen, for the error message. */
static void remote_dlerror(const fp_thread_stop *st, const fp_map *maps, int n, char *buf,
                           size_t size)
{
    buf[0] = '\0';
    const fp_map *libc = fp_maps_find(maps, n, is_libc);
    remote_fn fn = {libc ? fp_maps_symbol(st->tgid, libc, "dlerror") : 0, 0, false, "dlerror"};
    uint64_t msg = 0;
    if (!fn.addr || remote_call(st, &fn, NULL, &msg) != 0 || !msg) return;
    if (fp_mem_read(st->tgid, msg, buf, size - 1) != 0) {
        /* the string may end near a page end: read less */
        if (fp_mem_read(st->tgid, msg, buf, 128) != 0) buf[0] = '\0';
    }
    buf[size - 1] = '\0';
    buf[strnlen(buf, size - 1)] = '\0';
}

/* ===================================================================== fp_attach_inject */

static long elapsed_ms(double t0)
{
    return (long)(fp_clock_ms() - t0);
}

static int stop_error(int r, const fp_target *t, fp_error *err)
{
    if (r == -EPERM || r == -EACCES)
        return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                            "permission denied: cannot ptrace process %d (owned by uid %u)", t->pid,
                            (unsigned)t->uid);
    if (r == -EAGAIN)
        return fp_error_set(err, FP_E_EXITING, "Resume it first (kill -CONT %d).",
                            "process %d is being stopped (SIGSTOP/SIGTSTP)", t->pid);
    return fp_error_set(err, FP_E_INJECT, NULL, "cannot stop a thread of process %d: %s", t->pid,
                        strerror(-r));
}

static int inject_with(const fp_target *t, const fp_map *maps, int n, const remote_fn *fn,
                       const char *path, int timeout_ms, fp_error *err)
{
    double t0 = fp_clock_ms();
    candidate cand[MAX_THREADS];
    int last_error = -ESRCH;
    for (int round = 0; elapsed_ms(t0) < timeout_ms; round++) {
        int nc = list_candidates(t->pid, cand, MAX_THREADS);
        if (nc <= 0)
            return fp_error_set(err, FP_E_EXITING, NULL,
                                "process %d has no thread that can be used to load the agent",
                                t->pid);
        for (int i = 0; i < nc; i++) {
            fp_thread_stop st;
            int left = timeout_ms - (int)elapsed_ms(t0);
            int r = fp_ptrace_stop(t->pid, cand[i].tid, left > 10 ? left : 10, &st);
            if (r == -EPERM || r == -EACCES || r == -EAGAIN) return stop_error(r, t, err);
            if (r != 0) {
                last_error = r;
                continue;
            }
            if (!at_safe_point(&st, maps, n)) {
                fp_attach_debug("thread %d is inside the C library, trying another", st.tid);
                fp_ptrace_release(&st);
                continue;
            }
            fp_attach_debug("calling %s in thread %d", fn->what, st.tid);
            uint64_t ret = 0;
            r = remote_call(&st, fn, path, &ret);
            char why[512] = "";
            if (r == 0 && fn->with_path && ret == 0) remote_dlerror(&st, maps, n, why, sizeof why);
            int rr = fp_ptrace_release(&st);
            fp_attach_debug("%s returned %#llx (release %d)", fn->what, (unsigned long long)ret,
                            rr);
            if (r == -ESRCH)
                return fp_error_set(err, FP_E_EXITING, NULL,
                                    "process %d exited while the agent was being loaded", t->pid);
            if (r != 0)
                return fp_error_set(err, FP_E_INJECT, NULL,
                                    "the call to %s in process %d failed: %s", fn->what, t->pid,
                                    strerror(-r));
            if (fn->with_path && ret == 0)
                return fp_error_set(err, FP_E_INJECT,
                                    "The library must be readable by the target's user and "
                                    "visible in its mount namespace (containers: install fp "
                                    "inside the container, or copy the lib/fp folder there).",
                                    "process %d could not load %s: %s", t->pid, path,
                                    why[0] ? why : "dlopen failed");
            return 0;
        }
        /* every thread was inside the C library: give them a moment and look again */
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        fp_attach_debug("round %d found no thread at a safe point", round);
    }
    if (last_error != -ESRCH && last_error != -ETIMEDOUT) return stop_error(last_error, t, err);
    return fp_error_set(err, FP_E_AGENT_TIMEOUT,
                        "Its threads stayed inside the C library or in uninterruptible sleep "
                        "(state D: slow disk or NFS); try again, or raise --attach-timeout.",
                        "could not stop a thread of process %d at a safe point within %d ms",
                        t->pid, timeout_ms);
}

int fp_attach_inject(const fp_target *t, const char *agent_path, const fp_attach_opts *opts,
                     fp_error *err)
{
    fp_attach_set_debug(opts && opts->debug);
    int timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : 5000;
    char path[PATH_MAX];
    if (!realpath(agent_path, path))
        return fp_error_set(err, FP_E_INJECT, "Build fp (make build) or reinstall it.",
                            "the agent library %s is missing: %s", agent_path, strerror(errno));
    fp_map *maps = NULL;
    int n = fp_maps_read(t->pid, &maps);
    if (n < 0)
        return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                            "cannot read the memory map of process %d", t->pid);
    remote_fn fn = {0};
    int rc = choose_function(t, maps, n, &fn, err);
    if (rc == 0) {
        fp_attach_debug("process %d: %s at %#llx", t->pid, fn.what, (unsigned long long)fn.addr);
        /* Ctrl-C or a terminal hang-up must not leave the target in the middle of our call.
         * The mask is this thread's: an attach on a worker thread leaves the others alone. */
        sigset_t block, old;
        sigemptyset(&block);
        int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGPIPE};
        for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
            sigaddset(&block, sigs[i]);
        pthread_sigmask(SIG_BLOCK, &block, &old);
        rc = inject_with(t, maps, n, &fn, path, timeout_ms, err);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    free(maps);
    return rc;
}
