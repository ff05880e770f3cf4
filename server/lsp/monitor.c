/* fp.monitor: live figures of functions, from the agent's monitor stream (per-function counts
 * and latency histograms aggregated inside the target, one small report per interval instead
 * of an event per call), summed over every attached process and shown on the function's lens:
 * "1,204 calls · 38/s · p50 1.2 ms · p95 4.8 ms · max 12 ms · 2 errors". After a reload of a
 * monitored function the lens puts the figures since the reload beside those before it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_clock.h"
#include "fp_commands.h"
#include "fp_hist.h"
#include "fp_json.h"
#include "lsp.h"

/* What one process reports of one function (cumulative since its monitor started). */
typedef struct mon_figures {
    int pid;
    uint64_t calls, errors;
    double total_ms, max_ms;
    fp_hist hist;
    uint64_t new_calls; /* in the last report's interval */
    double interval_s;
    double reported_at; /* fp_clock_ms of the last report */
} mon_figures;

typedef struct mon_fn {
    struct mon_fn *next;
    char *path, *qualname;
    uint32_t hash; /* of path and qualname: a file's lenses look up each of its functions */
    mon_figures procs[LSP_MAX_PROCS];
    int nprocs;
    /* Figures summed at the last reload, to show what came since beside what was before. */
    bool reloaded;
    uint64_t calls_before, errors_before;
    fp_hist hist_before;
    double max_before;
} mon_fn;

/* One monitor stream in one process: several functions (a file's, or one). */
typedef struct mon_run {
    struct mon_run *next;
    lsp_proc *p;
    fp_exec *x;
    lsp_fan *fan;
    int nkeys;
    mon_fn *keys[256]; /* the request's function index -> its figures */
    bool stopped;
} mon_run;

static mon_fn *fns;
static mon_run *runs;

int lsp_monitor_count(void)
{
    int n = 0;
    for (mon_fn *f = fns; f; f = f->next)
        n++;
    return n;
}

static uint32_t mon_hash(const char *path, const char *qualname)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = path; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ 0xFF) * 16777619u;
    for (const char *s = qualname; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static mon_fn *mon_find(const char *path, const char *qualname)
{
    uint32_t h = mon_hash(path, qualname);
    for (mon_fn *f = fns; f; f = f->next)
        if (f->hash == h && strcmp(f->path, path) == 0 && strcmp(f->qualname, qualname) == 0)
            return f;
    return NULL;
}

static mon_fn *mon_get(const char *path, const char *qualname)
{
    mon_fn *f = mon_find(path, qualname);
    if (f) return f;
    f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = strdup(path);
    f->qualname = strdup(qualname);
    f->hash = mon_hash(path, qualname);
    f->next = fns;
    fns = f;
    return f;
}

static mon_figures *mon_figures_of(mon_fn *f, int pid)
{
    for (int i = 0; i < f->nprocs; i++)
        if (f->procs[i].pid == pid) return &f->procs[i];
    if (f->nprocs == LSP_MAX_PROCS) return NULL;
    mon_figures *m = &f->procs[f->nprocs++];
    memset(m, 0, sizeof *m);
    m->pid = pid;
    return m;
}

static void mon_fn_free(mon_fn *f);

/* Forgets f when nothing counts for it any more: no run in any process has it, and no process
 * reported figures for it (a function the agent refused to monitor shows its actions again). */
static void mon_release(mon_fn *f)
{
    if (!f || f->nprocs > 0) return;
    for (mon_run *r = runs; r; r = r->next)
        for (int i = 0; i < r->nkeys; i++)
            if (r->keys[i] == f) return;
    for (mon_fn **ff = &fns; *ff; ff = &(*ff)->next) {
        if (*ff == f) {
            *ff = f->next;
            mon_fn_free(f);
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * The stream's models
 */

static void mon_on_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x;
    mon_run *r = ud;
    /* Functions the agent could not locate are left out of this run; say why. */
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(result, "functions"))
    {
        const cJSON *err = fp_json_get(f, "error");
        int key = (int)fp_json_num(f, "key", -1);
        if (err && key >= 0 && key < r->nkeys && r->keys[key]) {
            lsp_log(2, "fp: cannot monitor %s in process %d: %s", r->keys[key]->qualname, r->p->pid,
                    fp_json_str(err, "message", "?"));
            mon_fn *gone = r->keys[key];
            r->keys[key] = NULL;
            mon_release(gone);
        }
    }
    if (r->fan) {
        lsp_fan_ok(r->fan, r->p->pid);
        r->fan = NULL;
    }
}

static void mon_on_note(void *ud, const fp_exec *x, const char *method, const cJSON *params)
{
    (void)x;
    mon_run *r = ud;
    if (strcmp(method, "monitor/report") != 0 || !r->p || r->stopped) return;
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(params, "functions"))
    {
        int key = (int)fp_json_num(f, "key", -1);
        if (key < 0 || key >= r->nkeys || !r->keys[key]) continue;
        mon_figures *m = mon_figures_of(r->keys[key], r->p->pid);
        if (!m) continue;
        m->calls = (uint64_t)fp_json_num(f, "calls", 0);
        m->errors = (uint64_t)fp_json_num(f, "errors", 0);
        m->total_ms = fp_json_num(f, "total_ms", 0);
        m->max_ms = fp_json_num(f, "max_ms", 0);
        m->new_calls = (uint64_t)fp_json_num(f, "new_calls", 0);
        m->interval_s = fp_json_num(params, "interval_s", 1);
        m->reported_at = fp_clock_ms();
        memset(&m->hist, 0, sizeof m->hist);
        fp_hist_add_sparse(&m->hist, fp_json_get(f, "hist"));
    }
    lsp_lens_changed();
}

static void mon_on_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    mon_run *r = ud;
    if (r->fan) {
        if (end->err)
            lsp_fan_fail(r->fan, r->p->pid, end->err);
        else
            lsp_fan_ok(r->fan, r->p->pid);
    }
    if (end->err && !r->p->closing && !r->stopped)
        lsp_log(2, "fp: a monitor in process %d ended: %s", r->p->pid, end->err->message);
    /* The exec calls nothing more of r: it goes now, and the functions only it counted. */
    for (mon_run **rr = &runs; *rr; rr = &(*rr)->next) {
        if (*rr == r) {
            *rr = r->next;
            break;
        }
    }
    for (int i = 0; i < r->nkeys; i++)
        mon_release(r->keys[i]);
    free(r);
    lsp_lens_changed();
}

static const fp_exec_sink mon_sink = {
    .result = mon_on_result, .note = mon_on_note, .end = mon_on_end};

/* ---------------------------------------------------------------------------------------------
 * Starting and stopping
 */

typedef struct mon_start {
    lsp_fan *fan;
    char *path;
    int n; /* qualnames asked */
    char **qualnames;
    int pending;      /* locates still to come */
    cJSON *functions; /* locate params found, in order */
    mon_fn *keys[256];
    int nkeys;
} mon_start;

static void mon_start_free(mon_start *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->qualnames[i]);
    free(s->qualnames);
    free(s->path);
    cJSON_Delete(s->functions);
    free(s);
}

static void mon_launch(lsp_proc *p, mon_start *s)
{
    if (s->nkeys == 0 || p->closing) {
        fp_error e;
        fp_error_set(&e, FP_E_REMOTE, "open the file the process imported, and attach first",
                     "process %d runs none of these functions from %s", p->pid, s->path);
        lsp_fan_fail(s->fan, p->pid, &e);
        return;
    }
    mon_run *r = calloc(1, sizeof *r);
    if (!r) return;
    r->p = p;
    r->fan = s->fan;
    r->nkeys = s->nkeys;
    memcpy(r->keys, s->keys, sizeof r->keys);
    r->next = runs;
    runs = r;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, "functions", cJSON_Duplicate(s->functions, 1));
    cJSON_AddNumberToObject(params, "interval_s", lsp.settings.monitor_interval_s);
    fp_cmd_parsed parsed = {
        .cmd = fp_commands_find("monitor"), .method = "monitor.start", .params = params};
    fp_exec_env env = {.ch = p->ch, .pid = p->pid, .timeout_ms = 10000, .debug = lsp.debug};
    fp_exec_sink sink = mon_sink;
    sink.ud = r;
    fp_exec *x = parsed.cmd ? fp_exec_start(&env, &parsed, &sink) : NULL;
    cJSON_Delete(params);
    if (!x) {
        fp_error e;
        fp_error_set(&e, FP_E_INTERNAL, NULL, "cannot start a monitor");
        r->fan = NULL;
        lsp_fan_fail(s->fan, p->pid, &e);
        return;
    }
    r->x = fp_exec_done(x) ? NULL : x;
    lsp_proc_track(p, x);
}

typedef struct mon_locate {
    mon_start *s;
    int index;
} mon_locate;

static void mon_on_located(lsp_proc *p, const cJSON *fn, const fp_error *err, void *ud)
{
    mon_locate *l = ud;
    mon_start *s = l->s;
    (void)err;
    if (fn && s->nkeys < 256) {
        mon_fn *f = mon_get(s->path, s->qualnames[l->index]);
        if (f) {
            cJSON_AddItemToArray(s->functions, cJSON_Duplicate(fp_json_get(fn, "locate"), 1));
            s->keys[s->nkeys++] = f;
        }
    }
    free(l);
    if (--s->pending == 0) {
        mon_launch(p, s);
        mon_start_free(s);
    }
}

/* Starts one monitor stream in p for the qualnames of path. */
static void mon_start_in(lsp_proc *p, lsp_fan *fan, const char *path, char **qualnames, int n)
{
    mon_start *s = calloc(1, sizeof *s);
    if (!s) return;
    s->fan = fan;
    s->path = strdup(path);
    s->functions = cJSON_CreateArray();
    s->qualnames = calloc((size_t)n, sizeof *s->qualnames);
    s->n = n;
    for (int i = 0; i < n; i++)
        s->qualnames[i] = strdup(qualnames[i]);
    lsp_fan_add(fan);
    s->pending = n;
    for (int i = 0; i < n; i++) {
        mon_locate *l = calloc(1, sizeof *l);
        if (!l) continue;
        l->s = s;
        l->index = i;
        lsp_proc_locate(p, path, qualnames[i], mon_on_located, l);
    }
}

static void mon_stop_runs_of(mon_fn *f)
{
    for (mon_run *r = runs; r; r = r->next) {
        bool uses = false;
        for (int i = 0; i < r->nkeys; i++) {
            if (r->keys[i] == f) {
                r->keys[i] = NULL;
                uses = true;
            }
        }
        if (!uses) continue;
        bool any = false;
        for (int i = 0; i < r->nkeys; i++)
            any = any || r->keys[i];
        if (!any && r->x && !r->stopped) {
            r->stopped = true;
            fp_exec_stop(r->x, "stopped");
        }
    }
}

static void mon_fn_free(mon_fn *f)
{
    free(f->path);
    free(f->qualname);
    free(f);
}

int lsp_monitor_stop(const char *path, const char *qualname)
{
    int n = 0;
    for (mon_fn **ff = &fns; *ff;) {
        mon_fn *f = *ff;
        if ((path && strcmp(f->path, path) != 0) ||
            (qualname && strcmp(f->qualname, qualname) != 0)) {
            ff = &f->next;
            continue;
        }
        *ff = f->next;
        mon_stop_runs_of(f);
        mon_fn_free(f);
        n++;
    }
    return n;
}

void lsp_monitor_proc_gone(lsp_proc *p)
{
    for (mon_run **rr = &runs; *rr;) {
        mon_run *r = *rr;
        if (r->p != p) {
            rr = &r->next;
            continue;
        }
        *rr = r->next;
        if (r->fan) {
            fp_error e;
            fp_error_set(&e, FP_E_CLOSED, NULL, "process %d went away", p->pid);
            lsp_fan_fail(r->fan, p->pid, &e);
        }
        free(r); /* its exec goes with the process, without calling back */
    }
    for (mon_fn *f = fns; f; f = f->next) {
        for (int i = 0; i < f->nprocs; i++) {
            if (f->procs[i].pid != p->pid) continue;
            f->procs[i] = f->procs[--f->nprocs];
            break;
        }
    }
}

void lsp_monitor_command(const cJSON *id, const cJSON *arg)
{
    const char *scope = fp_json_str(arg, "scope", "function");
    lsp_target_fn t;
    char err[512];
    bool whole_file = strcmp(scope, "file") == 0;
    bool off = strcmp(scope, "off") == 0;
    if (!off && !whole_file && strcmp(scope, "function") != 0) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.monitor: scope is \"function\", \"file\" or \"off\", not \"%s\"", scope);
        return;
    }
    lsp_doc *doc = lsp_doc_find(fp_json_str(arg, "uri", NULL));
    bool has_fn = fp_json_has(arg, "function") || fp_json_has(arg, "line");
    if ((whole_file || (off && !has_fn)) && doc && doc->path[0]) {
        memset(&t, 0, sizeof t);
        t.doc = doc;
        snprintf(t.path, sizeof t.path, "%s", doc->path);
    } else if (!lsp_target_fn_from(arg, &t, err, sizeof err)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.monitor: %s", err);
        return;
    }
    if (off) {
        int n = lsp_monitor_stop(t.path, t.def ? t.def->qualname : NULL);
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "stopped", n);
        lsp_lens_changed();
        lsp_status_changed();
        lsp_rpc_result(id, r);
        return;
    }
    /* The functions: the one, or every function of the file (as the buffer has them). */
    const lsp_defs *defs = lsp_doc_defs(t.doc);
    char *names[256];
    int n = 0;
    if (t.def) {
        names[n++] = t.def->qualname;
    } else {
        for (int i = 0; i < defs->n && n < 256; i++)
            if (!defs->defs[i].is_class) names[n++] = defs->defs[i].qualname;
    }
    lsp_fan *fan = lsp_fan_new(id, "fp.monitor");
    if (!fan) {
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    /* Monitored again: the old streams of these functions make way. */
    for (int i = 0; i < n; i++)
        lsp_monitor_stop(t.path, names[i]);
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(list, cJSON_CreateString(names[i]));
    lsp_fan_set(fan, "functions", list);
    for (int i = 0; i < lsp_procs_count() && n > 0; i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (!p->closing) mon_start_in(p, fan, t.path, names, n);
    }
    lsp_fan_close(fan);
    lsp_lens_changed();
}

/* ---------------------------------------------------------------------------------------------
 * What is shown
 */

typedef struct mon_sum {
    uint64_t calls, errors, new_calls;
    double max_ms, rate;
    fp_hist hist;
} mon_sum;

static void mon_sum_of(const mon_fn *f, mon_sum *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < f->nprocs; i++) {
        const mon_figures *m = &f->procs[i];
        s->calls += m->calls;
        s->errors += m->errors;
        if (m->max_ms > s->max_ms) s->max_ms = m->max_ms;
        /* A process that stopped reporting had no calls lately. */
        bool recent =
            fp_clock_ms() - m->reported_at < 2500 * (m->interval_s > 0 ? m->interval_s : 1);
        if (recent && m->interval_s > 0) s->rate += (double)m->new_calls / m->interval_s;
        for (int b = 0; b < FP_HIST_BUCKETS; b++)
            s->hist.counts[b] += m->hist.counts[b];
        s->hist.total += m->hist.total;
    }
}

/* "1.2 ms", "830 µs", "2.4 s" */
static void mon_ms(char *buf, size_t size, double ms)
{
    if (ms < 1)
        snprintf(buf, size, "%.0f \u00b5s", ms * 1000);
    else if (ms < 1000)
        snprintf(buf, size, "%.*f ms", ms < 10 ? 1 : 0, ms);
    else
        snprintf(buf, size, "%.1f s", ms / 1000);
}

/* "1,204" */
static void mon_count(char *buf, size_t size, uint64_t n)
{
    char digits[32];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
}

char *lsp_monitor_lens(const char *path, const char *qualname)
{
    mon_fn *f = mon_find(path, qualname);
    if (!f) return NULL;
    mon_sum s;
    mon_sum_of(f, &s);
    char calls[32], p50[32], p95[32], mx[32], out[512];
    if (s.calls == 0) {
        snprintf(out, sizeof out, "fp: monitoring, no calls yet");
        return strdup(out);
    }
    mon_count(calls, sizeof calls, s.calls);
    mon_ms(p50, sizeof p50, fp_hist_quantile_ms(&s.hist, 0.5, s.max_ms));
    mon_ms(p95, sizeof p95, fp_hist_quantile_ms(&s.hist, 0.95, s.max_ms));
    mon_ms(mx, sizeof mx, s.max_ms);
    int n = snprintf(out, sizeof out,
                     "%s call%s \u00b7 %.0f/s \u00b7 p50 %s \u00b7 p95 %s \u00b7 max %s", calls,
                     s.calls == 1 ? "" : "s", s.rate, p50, p95, mx);
    if (s.errors)
        n += snprintf(out + n, sizeof out - (size_t)n, " \u00b7 %llu error%s",
                      (unsigned long long)s.errors, s.errors == 1 ? "" : "s");
    if (f->reloaded && n > 0 && (size_t)n < sizeof out) {
        fp_hist since;
        fp_hist_diff(&since, &s.hist, &f->hist_before);
        char before[32], after[32];
        mon_ms(before, sizeof before, fp_hist_quantile_ms(&f->hist_before, 0.95, f->max_before));
        mon_ms(after, sizeof after, fp_hist_quantile_ms(&since, 0.95, 0));
        snprintf(out + n, sizeof out - (size_t)n,
                 " \u00b7 p95 %s \u2192 %s since reload (%llu calls)", before,
                 since.total ? after : "-", (unsigned long long)since.total);
    }
    return strdup(out);
}

bool lsp_monitor_active(const char *path, const char *qualname)
{
    return mon_find(path, qualname) != NULL;
}

char *lsp_monitor_hover(const char *path, const char *qualname)
{
    mon_fn *f = mon_find(path, qualname);
    if (!f) return NULL;
    char *lens = lsp_monitor_lens(path, qualname);
    size_t cap = 1024 + (size_t)f->nprocs * 256;
    char *out = malloc(cap);
    if (!out) {
        free(lens);
        return NULL;
    }
    int n = snprintf(out, cap, "**fp monitor** %s \u2014 %s\n\n", qualname, lens ? lens : "");
    free(lens);
    if (f->nprocs > 1 || (f->nprocs == 1 && f->procs[0].calls)) {
        n += snprintf(out + n, cap - (size_t)n,
                      "| process | calls | errors | mean | p50 | p95 | max "
                      "|\n|---|---|---|---|---|---|---|\n");
        for (int i = 0; i < f->nprocs && (size_t)n < cap; i++) {
            const mon_figures *m = &f->procs[i];
            char mean[32], p50[32], p95[32], mx[32];
            mon_ms(mean, sizeof mean, m->calls ? m->total_ms / (double)m->calls : 0);
            mon_ms(p50, sizeof p50, fp_hist_quantile_ms(&m->hist, 0.5, m->max_ms));
            mon_ms(p95, sizeof p95, fp_hist_quantile_ms(&m->hist, 0.95, m->max_ms));
            mon_ms(mx, sizeof mx, m->max_ms);
            n += snprintf(out + n, cap - (size_t)n, "| %d | %llu | %llu | %s | %s | %s | %s |\n",
                          m->pid, (unsigned long long)m->calls, (unsigned long long)m->errors, mean,
                          p50, p95, mx);
        }
    }
    return out;
}

void lsp_monitor_reloaded(const char *path, const char *qualname)
{
    mon_fn *f = mon_find(path, qualname);
    if (!f) return;
    mon_sum s;
    mon_sum_of(f, &s);
    f->reloaded = true;
    f->calls_before = s.calls;
    f->errors_before = s.errors;
    f->hist_before = s.hist;
    f->max_before = s.max_ms;
    lsp_lens_changed();
}
