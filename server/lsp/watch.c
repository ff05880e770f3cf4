/* fp.watch: the agent's watch stream on a function, in every attached process (or one), shown
 * in the editor: its latest calls as Information diagnostics on the `def` line (arguments,
 * return value, cost, compactly), a call that raised as a Warning on the line of that file
 * where the exception passed, and the full value trees in the hover. The last calls stay shown
 * after the watch ends (its -n), until fp.stop or a detach. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp_commands.h"
#include "fp_json.h"
#include "lsp.h"

#define WATCH_SUMMARY_MAX 240

typedef struct watch_call {
    int pid;
    double time;
    cJSON *event; /* the watch/event params (owned) */
} watch_call;

typedef struct watch_run {
    lsp_proc *p; /* NULL once its process is gone */
    fp_exec *x;  /* NULL once ended */
    struct lsp_watch *w;
    lsp_fan *fan; /* the fp.watch answer waiting for this start, or NULL */
} watch_run;

typedef struct lsp_watch {
    struct lsp_watch *next;
    char *path, *qualname;
    watch_run runs[LSP_MAX_PROCS];
    int nruns;
    watch_call calls[LSP_WATCH_KEEP]; /* the latest, newest last */
    int ncalls;
    int total;
    bool stopped; /* out of the list: freed once its last exec has ended */
} lsp_watch;

static lsp_watch *watches;
static lsp_watch *retired; /* stopped, waiting for their execs' ends */

static void watch_unretire(lsp_watch *w)
{
    for (lsp_watch **ww = &retired; *ww; ww = &(*ww)->next) {
        if (*ww == w) {
            *ww = w->next;
            return;
        }
    }
}

static lsp_watch *watch_find(const char *path, const char *qualname)
{
    for (lsp_watch *w = watches; w; w = w->next)
        if (strcmp(w->path, path) == 0 && strcmp(w->qualname, qualname) == 0) return w;
    return NULL;
}

static bool watch_running(const lsp_watch *w)
{
    for (int i = 0; i < w->nruns; i++)
        if (w->runs[i].x) return true;
    return false;
}

int lsp_watch_count(void)
{
    int n = 0;
    for (lsp_watch *w = watches; w; w = w->next)
        n += watch_running(w);
    return n;
}

static void watch_free(lsp_watch *w)
{
    for (int i = 0; i < LSP_WATCH_KEEP; i++)
        cJSON_Delete(w->calls[i].event);
    free(w->path);
    free(w->qualname);
    free(w);
}

/* ---------------------------------------------------------------------------------------------
 * The stream's models
 */

static void watch_add_call(lsp_watch *w, int pid, const cJSON *event)
{
    if (w->ncalls == LSP_WATCH_KEEP) {
        cJSON_Delete(w->calls[0].event);
        memmove(&w->calls[0], &w->calls[1], sizeof w->calls - sizeof w->calls[0]);
        w->calls[--w->ncalls].event = NULL;
    }
    w->calls[w->ncalls++] = (watch_call){
        .pid = pid, .time = fp_json_num(event, "time", 0), .event = cJSON_Duplicate(event, 1)};
    w->total++;
}

static void watch_on_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x, (void)result;
    watch_run *r = ud;
    if (r->fan) {
        lsp_fan_ok(r->fan, r->p->pid);
        r->fan = NULL;
    }
}

static void watch_on_note(void *ud, const fp_exec *x, const char *method, const cJSON *params)
{
    (void)x;
    watch_run *r = ud;
    if (strcmp(method, "watch/event") != 0 || !r->p) return;
    watch_add_call(r->w, r->p->pid, params);
    lsp_diagnostics_publish_path(r->w->path);
}

static void watch_on_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    watch_run *r = ud;
    r->x = NULL; /* procs.c frees the exec */
    if (r->w->stopped) {
        if (!watch_running(r->w)) {
            watch_unretire(r->w);
            watch_free(r->w);
        }
        return;
    }
    if (r->fan) {
        if (end->err)
            lsp_fan_fail(r->fan, r->p ? r->p->pid : 0, end->err);
        else
            lsp_fan_ok(r->fan, r->p ? r->p->pid : 0);
        r->fan = NULL;
    }
    if (end->err && r->p && !r->p->closing)
        lsp_log(2, "fp: the watch of %s in process %d ended: %s", r->w->qualname, r->p->pid,
                end->err->message);
    lsp_status_changed();
}

static const fp_exec_sink watch_sink = {
    .result = watch_on_result, .note = watch_on_note, .end = watch_on_end};

/* ---------------------------------------------------------------------------------------------
 * fp.watch
 */

typedef struct watch_start {
    lsp_watch *w;
    lsp_fan *fan;
    cJSON *options; /* expr, filter, depth, limit */
} watch_start;

static void watch_on_located(lsp_proc *p, const cJSON *fn, const fp_error *err, void *ud)
{
    watch_start *s = ud;
    lsp_watch *w = s->w;
    if (!fn || p->closing || w->nruns == LSP_MAX_PROCS) {
        fp_error e;
        lsp_proc_absent_error(p, err, &e);
        lsp_fan_fail(s->fan, p->pid, &e);
        goto done;
    }
    watch_run *r = &w->runs[w->nruns++];
    *r = (watch_run){.p = p, .w = w, .fan = s->fan};
    fp_exec_sink sink = watch_sink;
    sink.ud = r;
    fp_error e;
    if (lsp_proc_exec_at(p, "watch", fn, s->options, &sink, &r->x, &e) != 0) {
        r->fan = NULL;
        lsp_fan_fail(s->fan, p->pid, &e);
    }
done:
    cJSON_Delete(s->options);
    free(s);
}

void lsp_watch_command(const cJSON *id, const cJSON *arg)
{
    lsp_target_fn t;
    char err[512];
    if (!lsp_target_fn_from(arg, &t, err, sizeof err)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.watch: %s", err);
        return;
    }
    const lsp_settings *st = &lsp.settings;
    double depth = fp_json_num(arg, "depth", st->watch_depth);
    double limit = fp_json_num(arg, "limit", st->watch_limit);
    if (depth < 1 || depth > 4 || limit < 1 || limit > 1000000) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.watch: depth is 1 to 4, limit 1 to 1000000");
        return;
    }
    const cJSON *pid = fp_json_get(arg, "pid");
    if (pid && !lsp_proc_find((int)fp_json_num(arg, "pid", 0))) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.watch: process %d is not attached",
                      (int)fp_json_num(arg, "pid", 0));
        return;
    }
    /* A new watch of the same function replaces the last one (and its values). */
    lsp_watch_stop(t.path, t.def->qualname);
    lsp_watch *w = calloc(1, sizeof *w);
    lsp_fan *fan = lsp_fan_new(id, "fp.watch");
    if (!w || !fan) {
        free(w);
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    w->path = strdup(t.path);
    w->qualname = strdup(t.def->qualname);
    w->next = watches;
    watches = w;
    lsp_fan_set(fan, "function", cJSON_CreateString(w->qualname));
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (p->closing || (pid && p->pid != (int)pid->valuedouble)) continue;
        watch_start *s = calloc(1, sizeof *s);
        if (!s) continue;
        s->w = w;
        s->fan = fan;
        s->options = cJSON_CreateObject();
        cJSON_AddStringToObject(s->options, "expr", fp_json_str(arg, "expr", st->watch_expr));
        const char *filter = fp_json_str(arg, "filter", NULL);
        if (filter) cJSON_AddStringToObject(s->options, "filter", filter);
        cJSON_AddNumberToObject(s->options, "depth", depth);
        cJSON_AddNumberToObject(s->options, "limit", limit);
        lsp_fan_add(fan);
        lsp_proc_locate(p, w->path, w->qualname, watch_on_located, s);
    }
    lsp_fan_close(fan);
}

int lsp_watch_stop(const char *path, const char *qualname)
{
    int n = 0;
    for (lsp_watch **ww = &watches; *ww;) {
        lsp_watch *w = *ww;
        if (path && (strcmp(w->path, path) != 0 || strcmp(w->qualname, qualname) != 0)) {
            ww = &w->next;
            continue;
        }
        *ww = w->next;
        n++;
        /* Its execs stop their streams; their ends free w once the last has come. */
        w->stopped = true;
        w->ncalls = 0;
        for (int i = 0; i < w->nruns; i++)
            if (w->runs[i].x) fp_exec_stop(w->runs[i].x, "stopped");
        for (int i = 0; i < w->ncalls; i++) {
            cJSON_Delete(w->calls[i].event);
            w->calls[i].event = NULL;
        }
        char *p = strdup(w->path);
        if (!watch_running(w)) {
            watch_free(w);
        } else {
            w->next = retired;
            retired = w;
        }
        lsp_diagnostics_publish_path(p);
        free(p);
    }
    return n;
}

static void watch_forget_proc(lsp_watch *w, lsp_proc *p);

void lsp_watch_proc_gone(lsp_proc *p)
{
    for (lsp_watch *w = watches; w; w = w->next)
        watch_forget_proc(w, p);
    for (lsp_watch **ww = &retired; *ww;) {
        lsp_watch *w = *ww;
        watch_forget_proc(w, p);
        if (!watch_running(w)) {
            *ww = w->next;
            watch_free(w);
            continue;
        }
        ww = &w->next;
    }
}

static void watch_forget_proc(lsp_watch *w, lsp_proc *p)
{
    for (int i = 0; i < w->nruns; i++) {
        if (w->runs[i].p != p) continue;
        w->runs[i].p = NULL;
        w->runs[i].x = NULL; /* freed with the process */
        if (w->runs[i].fan) {
            fp_error e;
            fp_error_set(&e, FP_E_CLOSED, NULL, "process %d went away", p->pid);
            lsp_fan_fail(w->runs[i].fan, p->pid, &e);
            w->runs[i].fan = NULL;
        }
    }
    /* A process that is gone shows nothing any more. */
    for (int i = 0; i < w->ncalls;) {
        if (w->calls[i].pid == p->pid) {
            cJSON_Delete(w->calls[i].event);
            memmove(&w->calls[i], &w->calls[i + 1],
                    (size_t)(w->ncalls - i - 1) * sizeof w->calls[0]);
            w->calls[--w->ncalls].event = NULL;
            continue;
        }
        i++;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Showing the calls
 */

static void watch_append(char *buf, size_t size, const char *text)
{
    size_t len = strlen(buf);
    if (len + 1 >= size) return;
    snprintf(buf + len, size - len, "%s", text);
}

/* One line for a value: its repr, newlines flattened, cut. */
static void watch_compact(char *buf, size_t size, const char *repr)
{
    size_t n = 0;
    for (const char *p = repr; *p && n + 4 < size; p++)
        buf[n++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
    if (repr[n] && n + 4 >= size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}

/* "args=(1, 2) · kwargs={} · return_obj=3 · 0.012 ms" */
static void watch_summary(const cJSON *event, char *out, size_t size, bool multi, int pid)
{
    out[0] = '\0';
    char part[WATCH_SUMMARY_MAX * 2];
    if (multi) {
        snprintf(part, sizeof part, "[%d] ", pid);
        watch_append(out, size, part);
    }
    const cJSON *v;
    int i = 0;
    cJSON_ArrayForEach(v, fp_json_get(event, "values"))
    {
        char value[WATCH_SUMMARY_MAX];
        const cJSON *val = fp_json_get(v, "value");
        if (val)
            watch_compact(value, sizeof value / 3, fp_json_str(val, "repr", "?"));
        else
            snprintf(value, sizeof value, "<%s>", fp_json_str(v, "error", "error"));
        snprintf(part, sizeof part, "%s%s=%s", i++ ? " \u00b7 " : "", fp_json_str(v, "expr", "?"),
                 value);
        watch_append(out, size, part);
    }
    snprintf(part, sizeof part, "%s%.3f ms", i ? " \u00b7 " : "", fp_json_num(event, "cost_ms", 0));
    watch_append(out, size, part);
}

static cJSON *watch_range(int line, int start, int end)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *s = cJSON_AddObjectToObject(r, "start");
    cJSON_AddNumberToObject(s, "line", line);
    cJSON_AddNumberToObject(s, "character", start);
    cJSON *e = cJSON_AddObjectToObject(r, "end");
    cJSON_AddNumberToObject(e, "line", line);
    cJSON_AddNumberToObject(e, "character", end);
    return r;
}

/* The innermost frame of the exception in this document's file: its 0-based line, or -1. */
static int watch_raise_line(const cJSON *exc, const char *path)
{
    int line = -1;
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(exc, "frames"))
    {
        if (strcmp(fp_json_str(f, "file", ""), path) == 0)
            line = (int)fp_json_num(f, "line", 0) - 1;
    }
    return line;
}

void lsp_watch_diagnostics(lsp_doc *doc, cJSON *out)
{
    const lsp_defs *defs = lsp_doc_defs(doc);
    for (lsp_watch *w = watches; w; w = w->next) {
        if (strcmp(w->path, doc->path) != 0 || w->ncalls == 0) continue;
        const lsp_def *def = lsp_defs_find(defs, w->qualname);
        if (!def) continue; /* renamed or deleted in the editor: nothing to point at */
        bool multi = false;
        for (int i = 1; i < w->ncalls; i++)
            multi = multi || w->calls[i].pid != w->calls[0].pid;
        for (int i = w->ncalls - 1; i >= 0; i--) {
            const cJSON *ev = w->calls[i].event;
            const cJSON *exc = fp_json_get(ev, "exception");
            char summary[1024];
            watch_summary(ev, summary, sizeof summary, multi, w->calls[i].pid);
            cJSON *d = cJSON_CreateObject();
            int line = def->def_line;
            if (exc) {
                int raised = watch_raise_line(exc, doc->path);
                if (raised >= 0) line = raised;
                char msg[1400];
                snprintf(msg, sizeof msg, "%s raised %s: %s \u00b7 %s", w->qualname,
                         fp_json_str(exc, "type", "?"), fp_json_str(exc, "message", ""), summary);
                cJSON_AddStringToObject(d, "message", msg);
                cJSON_AddNumberToObject(d, "severity", 2);
            } else {
                char msg[1200];
                snprintf(msg, sizeof msg, "%s: %s", w->qualname, summary);
                cJSON_AddStringToObject(d, "message", msg);
                cJSON_AddNumberToObject(d, "severity", 3);
            }
            cJSON_AddItemToObject(d, "range", watch_range(line, 0, 1000));
            cJSON_AddStringToObject(d, "source", "fp watch");
            cJSON *data = cJSON_AddObjectToObject(d, "data");
            cJSON_AddNumberToObject(data, "pid", w->calls[i].pid);
            cJSON_AddStringToObject(data, "function", w->qualname);
            cJSON_AddNumberToObject(data, "index", fp_json_num(ev, "index", 0));
            cJSON_AddItemToArray(out, d);
        }
    }
}

/* A VALUE tree as indented text (like fp watch prints it). */
static void watch_tree(char **buf, size_t *len, size_t *cap, const char *name, const cJSON *v,
                       int indent)
{
    char line[1024];
    char repr[700];
    watch_compact(repr, sizeof repr, fp_json_str(v, "repr", ""));
    snprintf(line, sizeof line, "%*s%s: %s = %s%s\n", indent, "", name, fp_json_str(v, "type", "?"),
             repr, fp_json_bool(v, "expandable") ? " ..." : "");
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        size_t ncap = (*cap ? *cap * 2 : 4096) + n;
        char *grown = realloc(*buf, ncap);
        if (!grown) return;
        *buf = grown;
        *cap = ncap;
    }
    memcpy(*buf + *len, line, n + 1);
    *len += n;
    const cJSON *c;
    cJSON_ArrayForEach(c, fp_json_get(v, "children"))
    {
        watch_tree(buf, len, cap, fp_json_str(c, "name", "?"), fp_json_get(c, "value"), indent + 2);
    }
}

char *lsp_watch_hover(lsp_doc *doc, const lsp_def *def)
{
    lsp_watch *w = watch_find(doc->path, def->qualname);
    if (!w || w->ncalls == 0) return NULL;
    const watch_call *c = &w->calls[w->ncalls - 1];
    const cJSON *ev = c->event;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    char head[512];
    time_t secs = (time_t)c->time;
    struct tm tm;
    char when[32] = "";
    if (localtime_r(&secs, &tm)) strftime(when, sizeof when, "%H:%M:%S", &tm);
    snprintf(
        head, sizeof head,
        "**fp watch** %s \u2014 call %d of %d seen (process %d, %s, thread %s), %.3f ms\n\n```\n",
        w->qualname, (int)fp_json_num(ev, "index", 0), w->total, c->pid, when,
        fp_json_str(fp_json_get(ev, "thread"), "name", "?"), fp_json_num(ev, "cost_ms", 0));
    const cJSON *v;
    cJSON_ArrayForEach(v, fp_json_get(ev, "values"))
    {
        const cJSON *val = fp_json_get(v, "value");
        if (val) watch_tree(&buf, &len, &cap, fp_json_str(v, "expr", "?"), val, 0);
    }
    const cJSON *exc = fp_json_get(ev, "exception");
    size_t total = strlen(head) + (buf ? strlen(buf) : 0) + 8192;
    char *out = malloc(total);
    if (!out) {
        free(buf);
        return NULL;
    }
    snprintf(out, total, "%s%s```\n%s%s%s", head, buf ? buf : "", exc ? "\n```\n" : "",
             exc ? fp_json_str(exc, "traceback", "") : "", exc ? "```\n" : "");
    free(buf);
    return out;
}
