/* The processes fp-lsp is attached to. Attaching (ptrace, ELF reading, waiting for the agent)
 * runs on libuv's thread pool with the core's attach job, never on the loop; each agent's
 * channel is then driven from the loop: a uv_poll on its socket and one uv_timer at its next
 * deadline. The commands running on a process (watch, monitor streams) are execs of the core,
 * ticked here after each drive and freed once done. A process that exits, or whose agent
 * goes, is dropped with everything shown for it. Also the code maps (code.map), cached. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_clock.h"
#include "fp_json.h"
#include "fp_models.h"
#include "fp_session.h"
#include "lsp.h"

#define PROCS_ATTACH_MS 10000
#define PROCS_DETACH_MS 1000
#define PROCS_MAP_MS 10000
#define PROCS_MAX_EXECS 64
#define PROCS_MAX_CHILDREN 32

typedef struct procs_entry {
    lsp_proc p;
    fp_exec *execs[PROCS_MAX_EXECS];
    int nexecs;
    int handles; /* poll + timer still open (closing takes a loop turn) */
    bool detached;
} procs_entry;

static procs_entry *procs[LSP_MAX_PROCS];
static int nprocs;

int lsp_procs_count(void)
{
    return nprocs;
}

lsp_proc *lsp_proc_at(int i)
{
    return i >= 0 && i < nprocs ? &procs[i]->p : NULL;
}

lsp_proc *lsp_proc_find(int pid)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i]->p.pid == pid && !procs[i]->p.closing) return &procs[i]->p;
    return NULL;
}

static procs_entry *procs_entry_of(lsp_proc *p)
{
    return (procs_entry *)p; /* p is the entry's first member */
}

/* ---------------------------------------------------------------------------------------------
 * Closing
 */

static void procs_on_handle_closed(uv_handle_t *h)
{
    procs_entry *e = h->data;
    if (--e->handles > 0) return;
    fp_channel_free(e->p.ch);
    cJSON_Delete(e->p.maps);
    free(e);
}

static void procs_maps_drop(lsp_proc *p);

/* Frees the commands running in the process without calling back their owners, who forget
 * them next (the agent undoes what they installed with the client, or on detach). */
static void procs_execs_drop(procs_entry *e)
{
    for (int i = 0; i < e->nexecs; i++)
        fp_exec_free(e->execs[i]);
    e->nexecs = 0;
}

/* Takes the process out of the list and frees it once its handles are closed. */
static void procs_remove(procs_entry *e)
{
    procs_maps_drop(&e->p);
    /* Whoever still waits for an answer of this agent hears that it is gone. */
    fp_channel_abort(e->p.ch);
    for (int i = 0; i < nprocs; i++) {
        if (procs[i] != e) continue;
        memmove(&procs[i], &procs[i + 1], (size_t)(nprocs - i - 1) * sizeof procs[0]);
        nprocs--;
        break;
    }
    procs_execs_drop(e);
    e->handles = 2;
    uv_poll_stop(&e->p.poll);
    uv_timer_stop(&e->p.timer);
    uv_close((uv_handle_t *)&e->p.poll, procs_on_handle_closed);
    uv_close((uv_handle_t *)&e->p.timer, procs_on_handle_closed);
}

/* The process exited or its agent went: what was shown for it goes, and the user is told. */
static void procs_gone(procs_entry *e)
{
    if (e->p.closing) return;
    e->p.closing = e->p.gone = true;
    fp_error why;
    fp_channel_closed_error(e->p.ch, &why);
    lsp_watch_proc_gone(&e->p);
    lsp_monitor_proc_gone(&e->p);
    lsp_trace_proc_gone(&e->p);
    procs_remove(e);
    lsp_show(2, "fp: %s; its lenses and diagnostics are cleared", why.message);
    lsp_lens_changed();
    lsp_diagnostics_publish_all();
    lsp_status_changed();
}

/* ---------------------------------------------------------------------------------------------
 * Driving the channel
 */

static void procs_arm(procs_entry *e);

static void procs_reap(procs_entry *e)
{
    for (int i = 0; i < e->nexecs;) {
        fp_exec_tick(e->execs[i]);
        if (fp_exec_done(e->execs[i])) {
            fp_exec_free(e->execs[i]);
            e->execs[i] = e->execs[--e->nexecs];
            continue;
        }
        i++;
    }
}

static void procs_drive(procs_entry *e)
{
    if (e->p.closing) return;
    int rc = fp_channel_drive(e->p.ch);
    if (e->p.closing) return; /* a callback detached it */
    procs_reap(e);
    if (rc < 0 || fp_channel_closed(e->p.ch)) {
        if (e->detached) {
            e->p.closing = true;
            procs_remove(e);
            lsp_status_changed();
        } else {
            procs_gone(e);
        }
        return;
    }
    procs_arm(e);
}

static void procs_on_poll(uv_poll_t *h, int status, int events)
{
    (void)status, (void)events;
    procs_drive(h->data);
}

static void procs_on_timer(uv_timer_t *t)
{
    procs_drive(t->data);
}

/* Readable always, writable while output waits; the timer at the earliest deadline. */
static void procs_arm(procs_entry *e)
{
    if (e->p.closing) return;
    int events = UV_READABLE | (fp_channel_wants_write(e->p.ch) ? UV_WRITABLE : 0);
    uv_poll_start(&e->p.poll, events, procs_on_poll);
    double next = fp_channel_next_deadline(e->p.ch);
    for (int i = 0; i < e->nexecs; i++) {
        double d = fp_exec_next_deadline(e->execs[i]);
        if (d >= 0 && (next < 0 || d < next)) next = d;
    }
    uv_timer_stop(&e->p.timer);
    if (next >= 0) {
        double wait = next - fp_clock_ms();
        uv_timer_start(&e->p.timer, procs_on_timer, wait > 0 ? (uint64_t)wait + 1 : 0, 0);
    }
}

void lsp_proc_kick(lsp_proc *p)
{
    procs_arm(procs_entry_of(p));
}

int64_t lsp_proc_request(lsp_proc *p, const char *method, cJSON *params, int timeout_ms,
                         fp_channel_reply_fn cb, void *ud)
{
    fp_error e;
    int64_t id = fp_channel_request(p->ch, method, params, timeout_ms, cb, ud, &e);
    lsp_proc_kick(p);
    return id;
}

void lsp_proc_track(lsp_proc *p, fp_exec *x)
{
    procs_entry *e = procs_entry_of(p);
    if (fp_exec_done(x) || e->nexecs == PROCS_MAX_EXECS) {
        fp_exec_free(x);
        return;
    }
    e->execs[e->nexecs++] = x;
    procs_arm(e);
}

int lsp_proc_exec_at(lsp_proc *p, const char *command, const cJSON *fn, const cJSON *options,
                     const fp_exec_sink *sink, fp_exec **running, fp_error *err)
{
    *running = NULL;
    cJSON *params = cJSON_Duplicate(fp_json_get(fn, "locate"), 1);
    const cJSON *opt;
    cJSON_ArrayForEach(opt, options)
    {
        cJSON_AddItemToObject(params, opt->string, cJSON_Duplicate(opt, 1));
    }
    fp_cmd_parsed parsed = {.cmd = fp_commands_find(command), .params = params};
    fp_exec_env env = {.ch = p->ch, .pid = p->pid, .timeout_ms = 10000, .debug = lsp.debug};
    fp_exec *x = parsed.cmd && params ? fp_exec_start(&env, &parsed, sink) : NULL;
    cJSON_Delete(params);
    if (!x) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return -1;
    }
    /* An exec that ended at once (its end already came) is only freed. */
    *running = fp_exec_done(x) ? NULL : x;
    lsp_proc_track(p, x);
    return 0;
}

void lsp_proc_absent_error(const lsp_proc *p, const fp_error *why, fp_error *out)
{
    if (why)
        *out = *why;
    else
        fp_error_set(out, FP_E_CLOSED, NULL, "process %d is no longer attached", p->pid);
}

/* ---------------------------------------------------------------------------------------------
 * Attaching
 */

typedef struct procs_batch {
    cJSON *id; /* the fp.attach request (a copy) */
    int pending;
    cJSON *attached, *failed;
    int progress;
} procs_batch;

typedef struct procs_job {
    uv_work_t work;
    procs_batch *batch;
    int pid, parent;
    fp_connected conn;
    fp_error err;
    int rc;
} procs_job;

static void procs_attach_work(uv_work_t *w)
{
    procs_job *j = w->data;
    fp_session_opts o = {.debug = lsp.debug, .attach_timeout_ms = PROCS_ATTACH_MS};
    j->rc = fp_session_connect(j->pid, &o, &j->conn, &j->err);
}

static cJSON *procs_describe(const lsp_proc *p, bool injected)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "pid", p->pid);
    if (p->parent) cJSON_AddNumberToObject(o, "parent", p->parent);
    cJSON_AddStringToObject(o, "python_version", p->target.py_version);
    cJSON_AddStringToObject(o, "cmdline", p->target.cmdline);
    cJSON_AddBoolToObject(o, "injected", injected);
    return o;
}

static void procs_batch_done(procs_batch *b)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "attached", b->attached);
    cJSON_AddItemToObject(r, "failed", b->failed);
    int n = cJSON_GetArraySize(b->attached), f = cJSON_GetArraySize(b->failed);
    char msg[128];
    snprintf(msg, sizeof msg, "attached to %d process%s%s", n, n == 1 ? "" : "es",
             f ? ", some failed" : "");
    lsp_progress_end(b->progress, msg);
    if (n == 0 && f > 0 && !lsp_rpc_cancelled(b->id)) {
        /* Nothing attached: the request failed, with the first reason and what to do. */
        const cJSON *first = cJSON_GetArrayItem(b->failed, 0);
        fp_error e;
        fp_error_set(&e, FP_E_INTERNAL, fp_json_str(first, "hint", NULL), "%s",
                     fp_json_str(first, "message", "attach failed"));
        const char *code = fp_json_str(first, "code", "");
        for (int c = FP_OK; c <= FP_E_INTERRUPTED; c++)
            if (strcmp(fp_error_code_name((fp_errcode)c), code) == 0) e.code = (fp_errcode)c;
        lsp_rpc_fp_error(b->id, &e);
        cJSON_Delete(r);
    } else if (lsp_rpc_cancelled(b->id)) {
        lsp_rpc_error(b->id, LSP_ERR_CANCELLED, "fp.attach was cancelled (what attached stays)");
        cJSON_Delete(r);
    } else {
        lsp_rpc_result(b->id, r);
    }
    cJSON_Delete(b->id);
    free(b);
    lsp_status_changed();
    lsp_lens_changed();
}

static void procs_attach_after(uv_work_t *w, int status)
{
    procs_job *j = w->data;
    procs_batch *b = j->batch;
    if (status == 0 && j->rc == 0 && !lsp.exiting && nprocs < LSP_MAX_PROCS &&
        !lsp_proc_find(j->pid)) {
        procs_entry *e = calloc(1, sizeof *e);
        if (e && uv_poll_init(lsp.loop, &e->p.poll, fp_channel_fd(j->conn.ch)) == 0 &&
            uv_timer_init(lsp.loop, &e->p.timer) == 0) {
            e->p.pid = j->pid;
            e->p.parent = j->parent;
            e->p.target = j->conn.target;
            e->p.ch = j->conn.ch;
            e->p.maps = cJSON_CreateObject();
            e->p.poll.data = e->p.timer.data = e;
            procs[nprocs++] = e;
            procs_arm(e);
            cJSON_AddItemToArray(b->attached, procs_describe(&e->p, j->conn.injected));
            lsp_log(3, "fp: attached to process %d (Python %s)%s", j->pid, e->p.target.py_version,
                    j->conn.injected ? ", agent loaded" : "");
            char msg[64];
            snprintf(msg, sizeof msg, "attached to %d", j->pid);
            lsp_progress_report(b->progress, msg);
        } else {
            free(e);
            fp_channel_free(j->conn.ch);
        }
    } else if (j->rc == 0) {
        /* Already attached (a child listed twice), or shutting down: this channel is not needed. */
        fp_channel_free(j->conn.ch);
        lsp_proc *p = lsp_proc_find(j->pid);
        if (p) cJSON_AddItemToArray(b->attached, procs_describe(p, false));
    } else {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddNumberToObject(f, "pid", j->pid);
        cJSON_AddStringToObject(f, "code", fp_error_code_name(j->err.code));
        cJSON_AddStringToObject(f, "message", j->err.message);
        if (j->err.hint[0]) cJSON_AddStringToObject(f, "hint", j->err.hint);
        cJSON_AddItemToArray(b->failed, f);
        lsp_log(1, "fp: cannot attach to process %d: %s%s%s", j->pid, j->err.message,
                j->err.hint[0] ? "\n" : "", j->err.hint);
    }
    free(j);
    if (--b->pending == 0) procs_batch_done(b);
}

static void procs_queue(procs_batch *b, int pid, int parent)
{
    procs_job *j = calloc(1, sizeof *j);
    if (!j) return;
    j->batch = b;
    j->pid = pid;
    j->parent = parent;
    j->work.data = j;
    b->pending++;
    if (uv_queue_work(lsp.loop, &j->work, procs_attach_work, procs_attach_after) != 0) {
        b->pending--;
        free(j);
    }
}

void lsp_procs_attach(const cJSON *id, int pid, bool children)
{
    procs_batch *b = calloc(1, sizeof *b);
    if (!b) {
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    b->id = cJSON_Duplicate(id, 1);
    b->attached = cJSON_CreateArray();
    b->failed = cJSON_CreateArray();
    char title[64];
    snprintf(title, sizeof title, "fp: attaching to process %d", pid);
    b->progress = lsp_progress_begin(title, children ? "and its Python child processes" : NULL);
    b->pending = 1; /* held until every job is queued */
    procs_queue(b, pid, 0);
    if (children) {
        int kids[PROCS_MAX_CHILDREN];
        int n = fp_target_children(pid, kids, PROCS_MAX_CHILDREN);
        for (int i = 0; i < n; i++)
            procs_queue(b, kids[i], pid);
    }
    if (--b->pending == 0) procs_batch_done(b);
}

/* ---------------------------------------------------------------------------------------------
 * Detaching
 */

static void procs_on_detached(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch, (void)r;
    procs_entry *e = ud;
    if (!e->p.closing) {
        e->p.closing = true;
        procs_remove(e);
        lsp_status_changed();
    }
}

void lsp_procs_detach(int pid)
{
    for (int i = nprocs - 1; i >= 0; i--) {
        procs_entry *e = procs[i];
        if (pid && e->p.pid != pid && e->p.parent != pid) continue;
        if (e->detached || e->p.closing) continue;
        e->detached = true;
        procs_execs_drop(e); /* before their owners free what the callbacks would use */
        lsp_watch_proc_gone(&e->p);
        lsp_monitor_proc_gone(&e->p);
        lsp_trace_proc_gone(&e->p);
        /* detach removes what this client installed; a closed socket would too. */
        fp_error err;
        if (fp_channel_request(e->p.ch, "detach", NULL, PROCS_DETACH_MS, procs_on_detached, e,
                               &err) == 0) {
            e->p.closing = true;
            procs_remove(e);
            continue;
        }
        procs_arm(e);
    }
    lsp_status_changed();
}

/* ---------------------------------------------------------------------------------------------
 * The process list
 */

cJSON *lsp_procs_list(void)
{
    fp_target *targets = NULL;
    int n = fp_target_list(&targets);
    cJSON *model = fp_model_processes(targets, n < 0 ? 0 : n);
    free(targets);
    cJSON *arr = cJSON_DetachItemFromObjectCaseSensitive(model, "processes");
    cJSON_Delete(model);
    cJSON *p;
    cJSON_ArrayForEach(p, arr)
    {
        cJSON_AddBoolToObject(p, "attached", lsp_proc_find((int)fp_json_num(p, "pid", 0)) != NULL);
    }
    return arr;
}

/* ---------------------------------------------------------------------------------------------
 * Code maps
 */

typedef struct procs_map_wait {
    struct procs_map_wait *next;
    lsp_map_fn cb;
    void *ud;
} procs_map_wait;

typedef struct procs_map_req {
    struct procs_map_req *next;
    lsp_proc *p;
    char *path;
    procs_map_wait *waiters;
} procs_map_req;

static procs_map_req *map_reqs;

/* The process goes: its map requests will never be answered; those waiting are told. */
static void procs_maps_drop(lsp_proc *p)
{
    for (procs_map_req **rr = &map_reqs; *rr;) {
        procs_map_req *r = *rr;
        if (r->p != p) {
            rr = &r->next;
            continue;
        }
        *rr = r->next;
        fp_error gone;
        lsp_proc_absent_error(p, NULL, &gone);
        while (r->waiters) {
            procs_map_wait *next = r->waiters->next;
            r->waiters->cb(p, r->path, NULL, &gone, r->waiters->ud);
            free(r->waiters);
            r->waiters = next;
        }
        free(r->path);
        free(r);
    }
}

const cJSON *lsp_proc_map_cached(const lsp_proc *p, const char *path)
{
    return fp_json_get(p->maps, path);
}

const cJSON *lsp_map_function_from(const cJSON *map, const char *qualname, const cJSON *from)
{
    const cJSON *list = fp_json_get(map, "functions");
    const cJSON *first = list ? list->child : NULL;
    if (!from) from = first;
    for (const cJSON *f = from; f; f = f->next)
        if (strcmp(fp_json_str(f, "qualname", ""), qualname) == 0) return f;
    for (const cJSON *f = first; f && f != from; f = f->next)
        if (strcmp(fp_json_str(f, "qualname", ""), qualname) == 0) return f;
    return NULL;
}

const cJSON *lsp_map_function(const cJSON *map, const char *qualname)
{
    return lsp_map_function_from(map, qualname, NULL);
}

void lsp_proc_maps_forget(lsp_proc *p, const char *path)
{
    if (path)
        cJSON_DeleteItemFromObjectCaseSensitive(p->maps, path);
    else {
        cJSON_Delete(p->maps);
        p->maps = cJSON_CreateObject();
    }
}

static void procs_on_map(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    procs_map_req *req = ud;
    for (procs_map_req **rr = &map_reqs; *rr; rr = &(*rr)->next) {
        if (*rr == req) {
            *rr = req->next;
            break;
        }
    }
    lsp_proc *p = req->p;
    if (r->result && lsp_proc_find(p->pid) == p) {
        cJSON_DeleteItemFromObjectCaseSensitive(p->maps, req->path);
        cJSON_AddItemToObject(p->maps, req->path, cJSON_Duplicate(r->result, 1));
    }
    const cJSON *map = r->result ? lsp_proc_map_cached(p, req->path) : NULL;
    for (procs_map_wait *w = req->waiters; w;) {
        procs_map_wait *next = w->next;
        w->cb(p, req->path, map, r->err, w->ud);
        free(w);
        w = next;
    }
    free(req->path);
    free(req);
}

void lsp_proc_map(lsp_proc *p, const char *path, lsp_map_fn cb, void *ud)
{
    const cJSON *cached = lsp_proc_map_cached(p, path);
    if (cached) {
        cb(p, path, cached, NULL, ud);
        return;
    }
    procs_map_wait *w = calloc(1, sizeof *w);
    if (!w) return;
    w->cb = cb;
    w->ud = ud;
    for (procs_map_req *r = map_reqs; r; r = r->next) {
        if (r->p == p && strcmp(r->path, path) == 0) {
            w->next = r->waiters;
            r->waiters = w;
            return;
        }
    }
    procs_map_req *r = calloc(1, sizeof *r);
    if (!r) {
        free(w);
        return;
    }
    r->p = p;
    r->path = strdup(path);
    r->waiters = w;
    r->next = map_reqs;
    map_reqs = r;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "path", path);
    lsp_proc_request(p, "code.map", params, PROCS_MAP_MS, procs_on_map, r);
}

typedef struct procs_locate {
    char *qualname;
    lsp_locate_fn cb;
    void *ud;
} procs_locate;

static void procs_on_locate_map(lsp_proc *p, const char *path, const cJSON *map,
                                const fp_error *err, void *ud)
{
    procs_locate *l = ud;
    fp_error e;
    const cJSON *fn = NULL;
    if (!map) {
        e = *err;
    } else if (!fp_json_bool(map, "loaded")) {
        fp_error_set(&e, FP_E_NOT_PYTHON,
                     "the process may import it later; or attach to the one "
                     "that runs it",
                     "process %d does not run %s (the file was never imported there)", p->pid,
                     path);
    } else if (!(fn = lsp_map_function(map, l->qualname))) {
        fp_error_set(&e, FP_E_REMOTE, "save and reload the file into the process, or restart it",
                     "process %d runs no function %s from %s (not loaded there, or renamed in the "
                     "editor since)",
                     p->pid, l->qualname, path);
    } else if (!cJSON_IsObject(fp_json_get(fn, "locate"))) {
        fp_error_set(&e, FP_E_UNSUPPORTED, "watch the function it is nested in instead",
                     "%s cannot be reached: fp reaches functions at most one level inside another",
                     l->qualname);
        fn = NULL;
    }
    l->cb(p, fn, fn ? NULL : &e, l->ud);
    free(l->qualname);
    free(l);
}

void lsp_proc_locate(lsp_proc *p, const char *path, const char *qualname, lsp_locate_fn cb,
                     void *ud)
{
    procs_locate *l = calloc(1, sizeof *l);
    if (!l) return;
    l->qualname = strdup(qualname);
    l->cb = cb;
    l->ud = ud;
    lsp_proc_map(p, path, procs_on_locate_map, l);
}
