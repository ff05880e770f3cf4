/* One snapshot of every thread of the target: stop the threads (unless asked not to), read
 * the thread states and their frame chains, merge native frames when asked, release; then,
 * with the target running again, name the frames (code objects, lines) and the threads. A thread
 * that cannot be read keeps its place with no frames: one bad thread never costs the others. */
#include <stdlib.h>
#include <string.h>

#include "fp_native.h"
#include "remote_internal.h"

#define SNAP_STOP_TIMEOUT_MS 1000
#define SNAP_MAX_NATIVE 512
#define SNAP_AGENT_PREFIX "fp-agent" /* our agent's threads (pthread_setname_np) */

typedef struct snap_task {
    int tid;
    char state;
    char name[32];
} snap_task;

typedef struct snap_ctx {
    fp_remote *r;
    unsigned flags;
    fp_remote_arena *arena;
    snap_task *tasks;
    int ntasks;
    int *tids;
} snap_ctx;

/* ===================================================================== native frames */

/* The default merge of native frames, on fp_native.h: a definition elsewhere wins. */
__attribute__((weak)) int fp_remote_native_unwind(fp_remote *r, fp_thread *t, const bool *py_entry,
                                                  fp_remote_arena *a, fp_error *err)
{
    if (!r->native && !(r->native = fp_native_open(r->pid, err))) return -1;
    uint64_t ips[SNAP_MAX_NATIVE];
    int nips = fp_native_unwind(r->native, t->native_id, ips, SNAP_MAX_NATIVE, err);
    if (nips < 0) return -1;
    int cap = nips + t->nframes;
    fp_frame *merged = malloc((size_t)cap * sizeof *merged);
    if (!merged) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    int n = fp_native_merge(r->native, ips, nips, t->frames, py_entry, t->nframes, merged, cap);
    /* the handle's strings live until it is closed; the snapshot may outlive it */
    for (int i = 0; i < n; i++) {
        if (merged[i].kind != FP_FRAME_NATIVE) continue;
        merged[i].function = fp_remote_arena_strdup(a, merged[i].function);
        merged[i].file = fp_remote_arena_strdup(a, merged[i].file);
    }
    free(t->frames);
    t->frames = merged;
    t->nframes = n;
    return 0;
}

/* ===================================================================== the kernel's threads */

static int snap_tasks(snap_ctx *c, fp_error *err)
{
    c->ntasks = fp_remote_tasks(c->r->pid, &c->tids);
    if (c->ntasks < 0)
        return fp_error_set(err, FP_E_NO_PROCESS, NULL, "process %d exited", c->r->pid);
    c->tasks = calloc((size_t)c->ntasks + 1, sizeof *c->tasks);
    if (!c->tasks) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    for (int i = 0; i < c->ntasks; i++) {
        snap_task *k = &c->tasks[i];
        k->tid = c->tids[i];
        /* before stopping: a stopped thread reads 't' */
        fp_remote_task_info(c->r->pid, k->tid, &k->state, k->name, sizeof k->name);
    }
    return 0;
}

static const snap_task *snap_task_of(const snap_ctx *c, int tid)
{
    for (int i = 0; tid > 0 && i < c->ntasks; i++)
        if (c->tasks[i].tid == tid) return &c->tasks[i];
    return NULL;
}

static bool snap_is_agent(const snap_task *k)
{
    return k && strncmp(k->name, SNAP_AGENT_PREFIX, strlen(SNAP_AGENT_PREFIX)) == 0;
}

/* ===================================================================== reading */

/* Adds t's native frames to its Python frames (entry: their entry flags). Returns -1 only
 * for an error that concerns every thread (native frames not available). */
static int snap_thread_native(snap_ctx *c, fp_thread *t, const bool *entry, fp_error *err)
{
    if (!(c->flags & FP_SNAP_NATIVE) || t->native_id <= 0) return 0;
    fp_error e;
    fp_error_clear(&e);
    if (fp_remote_native_unwind(c->r, t, entry, c->arena, &e) == 0) return 0;
    if (e.code == FP_E_UNSUPPORTED || e.code == FP_E_PERMISSION) {
        *err = e;
        return -1;
    }
    return 0; /* this thread keeps its Python frames */
}

/* Every thread's Python frames, all chains read together (one read per level), then the
 * native frames thread by thread. */
static int snap_frames(snap_ctx *c, fp_thread *threads, int n, fp_error *err)
{
    uint64_t *tstates = malloc(((size_t)n + 1) * sizeof *tstates);
    fp_remote_chain *chains = calloc((size_t)n + 1, sizeof *chains);
    int rc = -1;
    if (!tstates || !chains) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        goto done;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (threads[i].tstate) tstates[m++] = threads[i].tstate;
    if (fp_remote_read_chains(c->r, tstates, m, FP_REMOTE_MAX_FRAMES, chains) != 0) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        goto done;
    }
    rc = 0;
    for (int i = 0, k = 0; i < n; i++) {
        fp_thread *t = &threads[i];
        fp_remote_chain *ch = t->tstate ? &chains[k++] : NULL;
        if (ch) {
            t->frames = ch->frames;
            t->nframes = ch->frames ? ch->count : 0;
            t->torn = ch->torn;
            ch->frames = NULL;
        }
        if (rc == 0 && snap_thread_native(c, t, ch ? ch->entry : NULL, err) != 0) rc = -1;
    }
    for (int k = 0; k < m; k++)
        free(chains[k].entry);
done:
    free(tstates);
    free(chains);
    return rc;
}

/* The Python threads, the agent's own left out. */
static int snap_python_threads(snap_ctx *c, fp_thread **out, fp_error *err)
{
    fp_thread *threads = NULL;
    int n = fp_remote_read_threads(c->r, &threads, err);
    if (n < 0) return -1;
    fp_remote_map_native_ids(c->r, threads, n, c->tids, c->ntasks);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (!snap_is_agent(snap_task_of(c, threads[i].native_id))) threads[kept++] = threads[i];
    *out = threads;
    return kept;
}

/* With native frames, the threads with no Python state (C threads, the agent's) too. */
static int snap_native_only(snap_ctx *c, fp_thread **threads, int n)
{
    for (int i = 0; i < c->ntasks; i++) {
        bool known = false;
        for (int j = 0; j < n && !known; j++)
            known = (*threads)[j].native_id == c->tasks[i].tid;
        if (known) continue;
        fp_thread *g = realloc(*threads, (size_t)(n + 1) * sizeof *g);
        if (!g) break;
        *threads = g;
        memset(&g[n], 0, sizeof g[n]);
        g[n].native_id = c->tasks[i].tid;
        g[n].daemon = -1;
        n++;
    }
    return n;
}

static int snap_read(snap_ctx *c, fp_remote_snapshot *out, fp_error *err)
{
    fp_thread *threads = NULL;
    int n = snap_python_threads(c, &threads, err);
    if (n < 0) return -1;
    if (c->flags & FP_SNAP_NATIVE) n = snap_native_only(c, &threads, n);
    out->threads = threads;
    out->nthreads = n;
    return snap_frames(c, threads, n, err);
}

/* Kernel names and states; the main thread first. */
static void snap_finish(snap_ctx *c, fp_remote_snapshot *out)
{
    for (int i = 0; i < out->nthreads; i++) {
        fp_thread *t = &out->threads[i];
        const snap_task *k = snap_task_of(c, t->native_id);
        t->state = k ? k->state : '?';
        snprintf(t->name, sizeof t->name, "%s", k ? k->name : "");
    }
    for (int i = 1; i < out->nthreads; i++) {
        if (!out->threads[i].is_main) continue;
        fp_thread main = out->threads[i];
        memmove(&out->threads[1], &out->threads[0], (size_t)i * sizeof main);
        out->threads[0] = main;
        break;
    }
}

int fp_remote_snapshot_take(fp_remote *r, unsigned flags, fp_remote_snapshot *out, fp_error *err)
{
    memset(out, 0, sizeof *out);
    if ((flags & FP_SNAP_NATIVE) && (flags & FP_SNAP_NO_STOP))
        return fp_error_set(err, FP_E_USAGE, NULL,
                            "native frames can only be read with the threads stopped");
    snap_ctx c = {.r = r, .flags = flags};
    c.arena = fp_remote_arena_new();
    int rc = -1;
    fp_remote_stopped *stopped = NULL;
    if (!c.arena) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        goto done;
    }
    out->strings = c.arena;
    if (snap_tasks(&c, err) != 0) goto done;
    /* the modules and symbol tables are read before the stop, not during it */
    if ((flags & FP_SNAP_NATIVE) && !r->native && !(r->native = fp_native_open(r->pid, err)))
        goto done;
    if (!(flags & FP_SNAP_NO_STOP) && !(stopped = fp_remote_stop(r, SNAP_STOP_TIMEOUT_MS, err)))
        goto done;
    rc = snap_read(&c, out, err);
    out->pause_ms = fp_remote_release(r, stopped);
    stopped = NULL;
    /* code objects, names and lines: read once the target runs again */
    for (int i = 0; rc == 0 && i < out->nthreads; i++) {
        fp_thread *t = &out->threads[i];
        bool torn = false;
        t->nframes = fp_remote_resolve_frames(r, t->frames, t->nframes, c.arena, &torn);
        if (torn) t->torn = true;
    }
    if (rc == 0 && (flags & FP_SNAP_THREAD_NAMES))
        fp_remote_thread_names(r, out->threads, out->nthreads, c.arena);
    if (rc == 0) snap_finish(&c, out);
done:
    if (stopped) fp_remote_release(r, stopped);
    free(c.tasks);
    free(c.tids);
    if (rc != 0) {
        if (!out->strings) fp_remote_arena_free(c.arena);
        fp_remote_snapshot_free(out);
    }
    return rc;
}

void fp_remote_snapshot_free(fp_remote_snapshot *s)
{
    if (!s) return;
    for (int i = 0; i < s->nthreads; i++)
        free(s->threads[i].frames);
    free(s->threads);
    fp_remote_arena_free(s->strings);
    memset(s, 0, sizeof *s);
}
