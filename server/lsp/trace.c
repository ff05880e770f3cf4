/* fp.trace: the agent's trace stream on a function (its next invocations' call trees), shown
 * on the function in the editor: on each line of it that made calls, an inlay hint with the
 * share of the invocation spent in the calls made from that line, how many, and their time
 * ("38.2% · 3 calls · 4.1 ms", from the calling line the tree gives the root's calls); a lens
 * with the invocation's total; the hover with the call tree as `fp trace` prints it. The
 * latest invocation is shown; it stays after the trace ends (its limit), until fp.stop or a
 * detach. Lines follow their function by name when the file moved since it was loaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_commands.h"
#include "fp_json.h"
#include "fp_trace_text.h"
#include "lsp.h"

typedef struct trace_run {
    lsp_proc *p; /* NULL once its process is gone */
    fp_exec *x;  /* NULL once ended */
    struct lsp_trace *t;
    lsp_fan *fan; /* the fp.trace answer waiting for this start, or NULL */
} trace_run;

typedef struct lsp_trace {
    struct lsp_trace *next;
    char *path, *qualname;
    trace_run runs[LSP_MAX_PROCS];
    int nruns;
    cJSON *last; /* the latest trace/event (owned), NULL before the first */
    int last_pid;
    int events, limit;
    bool stopped; /* out of the list: freed once its last exec has ended */
} lsp_trace;

static lsp_trace *traces;
static lsp_trace *retired; /* stopped, waiting for their execs' ends */

static bool trace_running(const lsp_trace *t)
{
    for (int i = 0; i < t->nruns; i++)
        if (t->runs[i].x) return true;
    return false;
}

static void trace_free(lsp_trace *t)
{
    cJSON_Delete(t->last);
    free(t->path);
    free(t->qualname);
    free(t);
}

static void trace_unretire(lsp_trace *t)
{
    for (lsp_trace **tt = &retired; *tt; tt = &(*tt)->next) {
        if (*tt == t) {
            *tt = t->next;
            return;
        }
    }
}

static lsp_trace *trace_find(const char *path, const char *qualname)
{
    for (lsp_trace *t = traces; t; t = t->next)
        if (strcmp(t->path, path) == 0 && strcmp(t->qualname, qualname) == 0) return t;
    return NULL;
}

int lsp_trace_count(void)
{
    int n = 0;
    for (lsp_trace *t = traces; t; t = t->next)
        n += trace_running(t);
    return n;
}

static void trace_shown_changed(void)
{
    lsp_hints_changed();
    lsp_lens_changed();
}

/* ---------------------------------------------------------------------------------------------
 * The stream's models
 */

static void trace_on_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x, (void)result;
    trace_run *r = ud;
    if (r->fan) {
        lsp_fan_ok(r->fan, r->p->pid);
        r->fan = NULL;
    }
}

static void trace_on_note(void *ud, const fp_exec *x, const char *method, const cJSON *params)
{
    (void)x;
    trace_run *r = ud;
    if (strcmp(method, "trace/event") != 0 || !r->p || r->t->stopped) return;
    lsp_trace *t = r->t;
    cJSON_Delete(t->last);
    t->last = cJSON_Duplicate(params, 1);
    t->last_pid = r->p->pid;
    t->events++;
    trace_shown_changed();
}

static void trace_on_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    trace_run *r = ud;
    r->x = NULL; /* procs.c frees the exec */
    lsp_trace *t = r->t;
    if (t->stopped) {
        if (!trace_running(t)) {
            trace_unretire(t);
            trace_free(t);
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
        lsp_log(2, "fp: the trace of %s in process %d ended: %s", t->qualname, r->p->pid,
                end->err->message);
    lsp_lens_changed();
    lsp_status_changed();
}

static const fp_exec_sink trace_sink = {
    .result = trace_on_result, .note = trace_on_note, .end = trace_on_end};

/* ---------------------------------------------------------------------------------------------
 * fp.trace
 */

typedef struct trace_start {
    lsp_trace *t;
    lsp_fan *fan;
    cJSON *options; /* interval, depth, min_cost, filter, limit, recorder */
} trace_start;

static void trace_on_located(lsp_proc *p, const cJSON *fn, const fp_error *err, void *ud)
{
    trace_start *s = ud;
    lsp_trace *t = s->t;
    if (!fn || p->closing || t->nruns == LSP_MAX_PROCS || t->stopped) {
        fp_error e;
        lsp_proc_absent_error(p, err, &e);
        lsp_fan_fail(s->fan, p->pid, &e);
        goto done;
    }
    trace_run *r = &t->runs[t->nruns++];
    *r = (trace_run){.p = p, .t = t, .fan = s->fan};
    fp_exec_sink sink = trace_sink;
    sink.ud = r;
    fp_error e;
    if (lsp_proc_exec_at(p, "trace", fn, s->options, &sink, &r->x, &e) != 0) {
        r->fan = NULL;
        lsp_fan_fail(s->fan, p->pid, &e);
    }
done:
    cJSON_Delete(s->options);
    free(s);
}

/* The trace options of arg, checked, into a new object; NULL with a message in err. */
static cJSON *trace_options(const cJSON *arg, char *err, size_t size)
{
    double interval = fp_json_num(arg, "interval", 0.1);
    const cJSON *depth = fp_json_get(arg, "depth");
    const cJSON *min_cost = fp_json_get(arg, "min_cost");
    const cJSON *filter = fp_json_get(arg, "filter");
    const cJSON *recorder = fp_json_get(arg, "recorder");
    double limit = fp_json_num(arg, "limit", 10);
    if (interval < 0 || interval > 1e6) {
        snprintf(err, size, "interval is a time in ms (0 shows every call)");
        return NULL;
    }
    if (depth && !cJSON_IsNull(depth) &&
        (!cJSON_IsNumber(depth) || depth->valuedouble < 0 || depth->valuedouble > 100)) {
        snprintf(err, size, "depth is 0 to 100 levels (0: no limit)");
        return NULL;
    }
    if (min_cost && !cJSON_IsNull(min_cost) &&
        (!cJSON_IsNumber(min_cost) || min_cost->valuedouble < 0)) {
        snprintf(err, size, "min_cost is a time in ms: only invocations that took longer");
        return NULL;
    }
    if (filter && !cJSON_IsNull(filter) && !cJSON_IsString(filter)) {
        snprintf(err, size, "filter is a Python expression, as a string");
        return NULL;
    }
    if (limit < 1 || limit > 1000000) {
        snprintf(err, size, "limit is 1 to 1000000 invocations");
        return NULL;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "interval", interval);
    if (cJSON_IsNumber(depth) && depth->valuedouble > 0)
        cJSON_AddNumberToObject(o, "depth", depth->valuedouble);
    if (cJSON_IsNumber(min_cost)) cJSON_AddNumberToObject(o, "min_cost", min_cost->valuedouble);
    if (cJSON_IsString(filter)) cJSON_AddStringToObject(o, "filter", filter->valuestring);
    if (cJSON_IsString(recorder)) cJSON_AddStringToObject(o, "recorder", recorder->valuestring);
    cJSON_AddNumberToObject(o, "limit", limit);
    return o;
}

void lsp_trace_command(const cJSON *id, const cJSON *arg)
{
    lsp_target_fn tf;
    char err[512];
    if (!lsp_target_fn_from(arg, &tf, err, sizeof err)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.trace: %s", err);
        return;
    }
    cJSON *options = trace_options(arg, err, sizeof err);
    if (!options) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.trace: %s", err);
        return;
    }
    const cJSON *pid = fp_json_get(arg, "pid");
    if (pid && !lsp_proc_find((int)fp_json_num(arg, "pid", 0))) {
        cJSON_Delete(options);
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.trace: process %d is not attached",
                      (int)fp_json_num(arg, "pid", 0));
        return;
    }
    /* A new trace of the same function replaces the last one (and what it showed). */
    lsp_trace_stop(tf.path, tf.def->qualname);
    lsp_trace *t = calloc(1, sizeof *t);
    lsp_fan *fan = t ? lsp_fan_new(id, "fp.trace") : NULL;
    if (!fan) {
        free(t);
        cJSON_Delete(options);
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    t->path = strdup(tf.path);
    t->qualname = strdup(tf.def->qualname);
    t->limit = (int)fp_json_num(options, "limit", 10);
    t->next = traces;
    traces = t;
    lsp_fan_set(fan, "function", cJSON_CreateString(t->qualname));
    lsp_fan_set(fan, "options", cJSON_Duplicate(options, 1));
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (p->closing || (pid && p->pid != (int)pid->valuedouble)) continue;
        trace_start *s = calloc(1, sizeof *s);
        if (!s) continue;
        s->t = t;
        s->fan = fan;
        s->options = cJSON_Duplicate(options, 1);
        lsp_fan_add(fan);
        lsp_proc_locate(p, t->path, t->qualname, trace_on_located, s);
    }
    cJSON_Delete(options);
    lsp_fan_close(fan);
}

int lsp_trace_stop(const char *path, const char *qualname)
{
    int n = 0;
    for (lsp_trace **tt = &traces; *tt;) {
        lsp_trace *t = *tt;
        if (path && (strcmp(t->path, path) != 0 || strcmp(t->qualname, qualname) != 0)) {
            tt = &t->next;
            continue;
        }
        *tt = t->next;
        n++;
        /* Its execs stop their streams (the agent takes its probe out); their ends free t. */
        t->stopped = true;
        for (int i = 0; i < t->nruns; i++)
            if (t->runs[i].x) fp_exec_stop(t->runs[i].x, "stopped");
        if (!trace_running(t)) {
            trace_free(t);
        } else {
            t->next = retired;
            retired = t;
        }
    }
    if (n) trace_shown_changed();
    return n;
}

static void trace_forget_proc(lsp_trace *t, lsp_proc *p)
{
    for (int i = 0; i < t->nruns; i++) {
        if (t->runs[i].p != p) continue;
        t->runs[i].p = NULL;
        t->runs[i].x = NULL; /* freed with the process */
        if (t->runs[i].fan) {
            fp_error e;
            fp_error_set(&e, FP_E_CLOSED, NULL, "process %d went away", p->pid);
            lsp_fan_fail(t->runs[i].fan, p->pid, &e);
            t->runs[i].fan = NULL;
        }
    }
    /* A process that is gone shows nothing any more. */
    if (t->last && t->last_pid == p->pid) {
        cJSON_Delete(t->last);
        t->last = NULL;
    }
}

void lsp_trace_proc_gone(lsp_proc *p)
{
    for (lsp_trace *t = traces; t; t = t->next)
        trace_forget_proc(t, p);
    for (lsp_trace **tt = &retired; *tt;) {
        lsp_trace *t = *tt;
        trace_forget_proc(t, p);
        if (!trace_running(t)) {
            *tt = t->next;
            trace_free(t);
            continue;
        }
        tt = &t->next;
    }
    trace_shown_changed();
}

/* ---------------------------------------------------------------------------------------------
 * What is shown
 */

/* "4.1 ms", "830 µs", "2.4 s" */
static void trace_ms(char *buf, size_t size, double ms)
{
    if (ms < 1)
        snprintf(buf, size, "%.0f \u00b5s", ms * 1000);
    else if (ms < 1000)
        snprintf(buf, size, "%.*f ms", ms < 10 ? 1 : 0, ms);
    else
        snprintf(buf, size, "%.1f s", ms / 1000);
}

/* What the calls made from one line of the root add up to. */
typedef struct trace_line {
    int line; /* as loaded, 1-based */
    double pct, cost_ms, count;
    int callees;
} trace_line;

static int trace_lines_of(const cJSON *root, trace_line *out, int max)
{
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, fp_json_get(root, "children"))
    {
        int line = (int)fp_json_num(c, "call_line", 0);
        if (line <= 0) continue; /* "<suspended>", or an agent without calling lines */
        int i = 0;
        while (i < n && out[i].line != line)
            i++;
        if (i == n) {
            if (n == max) continue;
            out[n++] = (trace_line){.line = line};
        }
        out[i].pct += fp_json_num(c, "pct", 0);
        out[i].cost_ms += fp_json_num(c, "cost_ms", 0);
        out[i].count += fp_json_num(c, "count", 0);
        out[i].callees++;
    }
    return n;
}

void lsp_trace_hints(lsp_doc *doc, int from, int to, cJSON *out)
{
    if (!doc->path[0]) return;
    const lsp_defs *defs = lsp_doc_defs(doc);
    int nlines = lsp_doc_lines(doc);
    for (lsp_trace *t = traces; t; t = t->next) {
        if (!t->last || strcmp(t->path, doc->path) != 0) continue;
        const lsp_def *def = lsp_defs_find(defs, t->qualname);
        const cJSON *root = fp_json_get(t->last, "tree");
        if (!def || !root) continue;
        int first = (int)fp_json_num(root, "line", 0);
        trace_line lines[256];
        int n = trace_lines_of(root, lines, 256);
        for (int i = 0; i < n; i++) {
            /* As far below the function's first line as it was in the code that ran. */
            int line = def->first_line + (lines[i].line - first);
            if (line < 0 || line >= nlines || line < from || line > to) continue;
            char ms[32], label[160], tip[256];
            trace_ms(ms, sizeof ms, lines[i].cost_ms);
            snprintf(label, sizeof label, "%.1f%% \u00b7 %.0f call%s \u00b7 %s", lines[i].pct,
                     lines[i].count, lines[i].count == 1 ? "" : "s", ms);
            snprintf(tip, sizeof tip,
                     "fp trace: the calls made from this line in invocation %d of %s (process "
                     "%d): %d function%s, line %d as loaded",
                     (int)fp_json_num(t->last, "index", 0), t->qualname, t->last_pid,
                     lines[i].callees, lines[i].callees == 1 ? "" : "s", lines[i].line);
            cJSON *h = cJSON_CreateObject();
            cJSON *pos = cJSON_AddObjectToObject(h, "position");
            cJSON_AddNumberToObject(pos, "line", line);
            cJSON_AddNumberToObject(pos, "character", lsp_doc_line_end(doc, line));
            cJSON_AddStringToObject(h, "label", label);
            cJSON_AddStringToObject(h, "tooltip", tip);
            cJSON_AddBoolToObject(h, "paddingLeft", true);
            cJSON *data = cJSON_AddObjectToObject(h, "data");
            cJSON_AddStringToObject(data, "source", "fp trace");
            cJSON_AddStringToObject(data, "function", t->qualname);
            cJSON_AddNumberToObject(data, "pct", lines[i].pct);
            cJSON_AddNumberToObject(data, "calls", lines[i].count);
            cJSON_AddNumberToObject(data, "cost_ms", lines[i].cost_ms);
            cJSON_AddItemToArray(out, h);
        }
    }
}

bool lsp_trace_active(const char *path, const char *qualname)
{
    return trace_find(path, qualname) != NULL;
}

char *lsp_trace_lens(const char *path, const char *qualname)
{
    lsp_trace *t = trace_find(path, qualname);
    if (!t) return NULL;
    char out[256];
    if (!t->last) {
        snprintf(out, sizeof out, "fp trace: waiting for a call");
        return strdup(out);
    }
    char ms[32];
    trace_ms(ms, sizeof ms, fp_json_num(t->last, "cost_ms", 0));
    snprintf(out, sizeof out, "fp trace: %s \u00b7 invocation %d of %d%s", ms,
             (int)fp_json_num(t->last, "index", 0), t->limit,
             trace_running(t) ? "" : " \u00b7 ended");
    return strdup(out);
}

char *lsp_trace_hover(const char *path, const char *qualname)
{
    lsp_trace *t = trace_find(path, qualname);
    if (!t || !t->last) return NULL;
    char *tree = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&tree, &len);
    if (!f) return NULL;
    const cJSON *th = fp_json_get(t->last, "thread");
    char ms[32];
    trace_ms(ms, sizeof ms, fp_json_num(t->last, "cost_ms", 0));
    fprintf(f, "**fp trace** %s \u2014 invocation %d, %s (process %d, thread %s)\n\n```\n",
            qualname, (int)fp_json_num(t->last, "index", 0), ms, t->last_pid,
            fp_json_str(th, "name", "?"));
    fp_trace_text_tree(f, fp_json_get(t->last, "tree"));
    fputs("```\n", f);
    fclose(f);
    return tree;
}
