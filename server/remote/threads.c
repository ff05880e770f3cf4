/* The interpreter's threads read from outside: every PyThreadState of every interpreter, its
 * thread ids, whether it holds the GIL and whether it is the main thread; and the kernel's
 * view of the same threads (/proc/PID/task: ids, state letters, names). */
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "remote_internal.h"

#define THREADS_MAX_INTERPRETERS 64
#define THREADS_MAX 8192

/* ===================================================================== /proc/PID/task */

int fp_remote_tasks(int pid, int **tids)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    size_t cap = 64, n = 0;
    int *out = malloc(cap * sizeof *out);
    struct dirent *e;
    while (out && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        if (n == cap) {
            int *grown = realloc(out, (cap *= 2) * sizeof *out);
            if (!grown) break;
            out = grown;
        }
        out[n++] = atoi(e->d_name);
    }
    closedir(d);
    if (!out) return -1;
    *tids = out;
    return (int)n;
}

static int threads_read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = '\0';
    return (int)n;
}

void fp_remote_task_info(int pid, int tid, char *state, char *name, size_t name_size)
{
    char path[96], buf[512];
    *state = '?';
    if (name_size) name[0] = '\0';
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    if (threads_read_small(path, buf, sizeof buf) > 0) {
        /* the name may hold spaces and parentheses: the state follows the last ')' */
        const char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && p[2]) *state = p[2];
    }
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, tid);
    if (name_size && threads_read_small(path, buf, sizeof buf) > 0) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(name, name_size, "%s", buf);
    }
}

/* ===================================================================== the GIL */

typedef struct threads_gil {
    bool locked;
    uint64_t holder; /* the PyThreadState that took it last */
} threads_gil;

static void threads_read_gil(fp_remote *r, uint64_t gil, long locked_off, long holder_off,
                             threads_gil *g)
{
    int32_t locked = 0;
    uint64_t holder = 0;
    g->locked = false;
    g->holder = 0;
    if (!gil || fp_remote_read(r, gil + (uint64_t)locked_off, &locked, sizeof locked) != 0 ||
        fp_remote_read_ptr(r, gil + (uint64_t)holder_off, &holder) != 0)
        return;
    /* last_holder keeps its value after a release: only locked says the GIL is held now */
    g->locked = locked == 1;
    g->holder = holder;
}

/* The GIL that threads of interp take: the runtime's up to 3.11, the interpreter's after. */
static void threads_gil_of(fp_remote *r, uint64_t interp, threads_gil *g)
{
    const fp_py_layout *l = &r->layout;
    if (l->runtime_gil_locked >= 0) {
        threads_read_gil(r, r->runtime, l->runtime_gil_locked, l->runtime_gil_holder, g);
        return;
    }
    uint64_t gil = 0;
    fp_remote_read_ptr(r, interp + (uint64_t)l->interp_ceval_gil, &gil);
    threads_read_gil(r, gil, l->gil_locked, l->gil_holder, g);
}

/* ===================================================================== thread states */

typedef struct threads_list {
    fp_thread *v;
    int n, cap;
} threads_list;

static int threads_push(threads_list *list, const fp_thread *t)
{
    if (list->n == list->cap) {
        int cap = list->cap ? list->cap * 2 : 16;
        fp_thread *grown = realloc(list->v, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        list->v = grown;
        list->cap = cap;
    }
    list->v[list->n++] = *t;
    return 0;
}

/* The longest prefix of PyThreadState the reader needs. */
static size_t threads_tstate_len(const fp_py_layout *l)
{
    long fields[] = {l->tstate_next, l->tstate_interp, l->tstate_thread_id,
                     l->tstate_native_thread_id, l->tstate_frame};
    long max = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i] > max) max = fields[i];
    return (size_t)max + 8;
}

static bool threads_seen(const threads_list *list, int from, uint64_t tstate)
{
    for (int i = from; i < list->n; i++)
        if (list->v[i].tstate == tstate) return true;
    return false;
}

/* The thread states of one interpreter, appended oldest first (the list is newest first). */
static int threads_of_interp(fp_remote *r, uint64_t interp, unsigned long main_ident,
                             threads_list *list)
{
    const fp_py_layout *l = &r->layout;
    uint8_t buf[512];
    size_t len = threads_tstate_len(l);
    if (len > sizeof buf) return -1;
    threads_gil gil;
    threads_gil_of(r, interp, &gil);
    uint64_t tstate = 0;
    if (fp_remote_read_ptr(r, interp + (uint64_t)l->interp_threads_head, &tstate) != 0) return -1;
    int first = list->n;
    while (tstate && list->n - first < THREADS_MAX && !threads_seen(list, first, tstate)) {
        if (fp_remote_read(r, tstate, buf, len) != 0) break; /* a torn list: keep what we have */
        fp_thread t;
        memset(&t, 0, sizeof t);
        t.tstate = tstate;
        t.ident = (unsigned long)fp_remote_field_ptr(buf, len, l->tstate_thread_id);
        if (l->tstate_native_thread_id >= 0)
            t.native_id = (int)fp_remote_field_ptr(buf, len, l->tstate_native_thread_id);
        t.holds_gil = gil.locked && gil.holder == tstate;
        t.is_main = main_ident && t.ident == main_ident;
        t.daemon = -1;
        if (threads_push(list, &t) != 0) return -1;
        tstate = fp_remote_field_ptr(buf, len, l->tstate_next);
    }
    /* newest first in the interpreter: turn this interpreter's part around */
    for (int i = first, j = list->n - 1; i < j; i++, j--) {
        fp_thread tmp = list->v[i];
        list->v[i] = list->v[j];
        list->v[j] = tmp;
    }
    return 0;
}

int fp_remote_read_threads(fp_remote *r, fp_thread **out, fp_error *err)
{
    const fp_py_layout *l = &r->layout;
    unsigned long main_ident = 0;
    fp_remote_read(r, r->runtime + (uint64_t)l->runtime_main_thread, &main_ident,
                   sizeof main_ident);
    uint64_t interps[THREADS_MAX_INTERPRETERS];
    int ninterps = 0;
    uint64_t interp = 0;
    if (fp_remote_read_ptr(r, r->runtime + (uint64_t)l->runtime_interpreters_head, &interp) != 0) {
        /* Most often the process has just died (killed while being read): say so. Its memory
         * goes before it is a zombie, so that is waited for a moment (bounded). */
        char st = 0;
        for (int i = 0; !r->read_mem && i < 50; i++) {
            fp_remote_task_info(r->pid, r->pid, &st, NULL, 0);
            if (st == '?' || st == 'Z' || st == 'X') break;
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (!r->read_mem && (st == '?' || st == 'Z' || st == 'X'))
            return fp_error_set(err, FP_E_NO_PROCESS, NULL, "process %d exited", r->pid);
        return fp_error_set(err, FP_E_NO_PROCESS, NULL, "cannot read the memory of process %d",
                            r->pid);
    }
    while (interp && ninterps < THREADS_MAX_INTERPRETERS) {
        interps[ninterps++] = interp;
        if (fp_remote_read_ptr(r, interp + (uint64_t)l->interp_next, &interp) != 0) break;
    }
    threads_list list = {0};
    /* newest interpreter first: the main interpreter is the last; list it first */
    for (int i = ninterps - 1; i >= 0; i--) {
        if (threads_of_interp(r, interps[i], main_ident, &list) != 0 && list.n == 0 && i == 0) {
            free(list.v);
            return fp_error_set(err, FP_E_INTERNAL, NULL, "cannot read the threads of process %d",
                                r->pid);
        }
    }
    *out = list.v;
    return list.n;
}

/* ===================================================================== 3.8 - 3.10: native ids */

/* glibc keeps the kernel tid in struct pthread (what a pthread_t points to); on x86-64 at
 * 0x2d0 in every glibc of the last decade. Other C libraries: found by searching. */
#define THREADS_GLIBC_TID_OFF 0x2d0
#define THREADS_TID_SEARCH 2048

static bool threads_in(const int *tids, int n, int tid)
{
    for (int i = 0; i < n; i++)
        if (tids[i] == tid) return true;
    return false;
}

/* Whether reading the threads' pthreads at off gives tids of the process, all different, for
 * most of them (a thread that just ended may still have its thread state). */
static bool threads_tid_off_fits(fp_remote *r, const fp_thread *threads, int n, long off,
                                 const int *tids, int ntids)
{
    int found[64];
    int nfound = 0, tried = 0;
    for (int i = 0; i < n && tried < 64; i++) {
        int32_t tid = 0;
        if (!threads[i].ident) continue;
        tried++;
        if (fp_remote_read(r, threads[i].ident + (uint64_t)off, &tid, sizeof tid) != 0 ||
            !threads_in(tids, ntids, tid))
            continue;
        if (threads_in(found, nfound, tid)) return false;
        found[nfound++] = tid;
    }
    return nfound > 0 && nfound * 2 >= tried;
}

static long threads_find_tid_off(fp_remote *r, const fp_thread *threads, int n, const int *tids,
                                 int ntids)
{
    if (threads_tid_off_fits(r, threads, n, THREADS_GLIBC_TID_OFF, tids, ntids))
        return THREADS_GLIBC_TID_OFF;
    for (long off = 0; off < THREADS_TID_SEARCH; off += 4)
        if (threads_tid_off_fits(r, threads, n, off, tids, ntids)) return off;
    return -2;
}

void fp_remote_map_native_ids(fp_remote *r, fp_thread *threads, int n, const int *tids, int ntids)
{
    if (r->layout.tstate_native_thread_id >= 0 || n == 0) return;
    if (r->pthread_tid_off == -1)
        r->pthread_tid_off = threads_find_tid_off(r, threads, n, tids, ntids);
    if (r->pthread_tid_off < 0) return;
    for (int i = 0; i < n; i++) {
        int32_t tid = 0;
        if (threads[i].ident &&
            fp_remote_read(r, threads[i].ident + (uint64_t)r->pthread_tid_off, &tid, sizeof tid) ==
                0 &&
            threads_in(tids, ntids, tid))
            threads[i].native_id = tid;
    }
}
