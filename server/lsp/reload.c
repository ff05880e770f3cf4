/* fp.reload: the editor's text of a function pushed into every attached process that runs it,
 * with the agent's reload method given the whole buffer (the agent picks the function by name
 * and nesting, never by line). A refusal (a syntax error, a closure mismatch) becomes an Error
 * diagnostic on its line of the buffer; a reload that took effect says so, its diff goes to
 * the log, and a consequence (calls of the old code still running, decorators not applied
 * again) is a Warning on the function. With reloadOnSave, a saved file's functions whose text
 * differs from what runs are reloaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_json.h"
#include "lsp.h"

#define RELOAD_MS 15000

/* A diagnostic a reload left on a function (until its next reload). */
typedef struct reload_note {
    struct reload_note *next;
    char *path, *qualname;
    int pid;
    int severity;     /* 1 error, 2 warning */
    int line, column; /* 0-based, in the buffer; line -1: the def line */
    char *message;
} reload_note;

static reload_note *notes;

static void reload_clear(const char *path, const char *qualname, int pid)
{
    for (reload_note **nn = &notes; *nn;) {
        reload_note *n = *nn;
        if (strcmp(n->path, path) == 0 && (!qualname || strcmp(n->qualname, qualname) == 0) &&
            (!pid || n->pid == pid)) {
            *nn = n->next;
            free(n->path);
            free(n->qualname);
            free(n->message);
            free(n);
            continue;
        }
        nn = &n->next;
    }
}

static void reload_note_add(const char *path, const char *qualname, int pid, int severity, int line,
                            int column, const char *message)
{
    reload_note *n = calloc(1, sizeof *n);
    if (!n) return;
    n->path = strdup(path);
    n->qualname = strdup(qualname);
    n->pid = pid;
    n->severity = severity;
    n->line = line;
    n->column = column;
    n->message = strdup(message);
    n->next = notes;
    notes = n;
}

void lsp_reload_forget(const char *path)
{
    reload_clear(path, NULL, 0);
}

void lsp_reload_diagnostics(lsp_doc *doc, cJSON *out)
{
    const lsp_defs *defs = lsp_doc_defs(doc);
    for (reload_note *n = notes; n; n = n->next) {
        if (strcmp(n->path, doc->path) != 0) continue;
        const lsp_def *def = lsp_defs_find(defs, n->qualname);
        int line = n->line >= 0 ? n->line : (def ? def->def_line : 0);
        cJSON *d = cJSON_CreateObject();
        cJSON *range = cJSON_AddObjectToObject(d, "range");
        cJSON *s = cJSON_AddObjectToObject(range, "start");
        cJSON_AddNumberToObject(s, "line", line);
        cJSON_AddNumberToObject(s, "character", n->column > 0 ? n->column : 0);
        cJSON *e = cJSON_AddObjectToObject(range, "end");
        cJSON_AddNumberToObject(e, "line", line);
        cJSON_AddNumberToObject(e, "character", 1000);
        cJSON_AddNumberToObject(d, "severity", n->severity);
        cJSON_AddStringToObject(d, "source", "fp reload");
        cJSON_AddStringToObject(d, "message", n->message);
        cJSON *data = cJSON_AddObjectToObject(d, "data");
        cJSON_AddNumberToObject(data, "pid", n->pid);
        cJSON_AddStringToObject(data, "function", n->qualname);
        cJSON_AddItemToArray(out, d);
    }
}

/* ---------------------------------------------------------------------------------------------
 * One reload in one process
 */

typedef struct reload_one {
    lsp_proc *p;
    lsp_fan *fan; /* the fp.reload answer, NULL for a reload on save */
    char *path, *qualname;
    char *text;     /* the buffer as it was when asked */
    cJSON *results; /* the fan's "reloaded" array (borrowed from the fan), or NULL */
} reload_one;

static void reload_one_free(reload_one *r)
{
    free(r->path);
    free(r->qualname);
    free(r->text);
    free(r);
}

static void reload_on_answer(fp_channel *ch, fp_channel_reply *reply, void *ud)
{
    (void)ch;
    reload_one *r = ud;
    int pid = r->p->pid;
    reload_clear(r->path, r->qualname, pid);
    if (reply->err) {
        /* A refusal: on its line of the buffer when the agent says where. */
        const cJSON *data = fp_json_get(reply->rpc_error, "data");
        int line = (int)fp_json_num(data, "line", 0) - 1;
        int column = (int)fp_json_num(data, "column", 0) - 1;
        char msg[2200];
        snprintf(msg, sizeof msg, "reload refused in process %d: %s%s%s", pid, reply->err->message,
                 reply->err->hint[0] ? "\n" : "", reply->err->hint);
        reload_note_add(r->path, r->qualname, pid, 1, line >= 0 ? line : -1, column, msg);
        if (r->fan) lsp_fan_fail(r->fan, pid, reply->err);
        lsp_diagnostics_publish_path(r->path);
        reload_one_free(r);
        return;
    }
    const cJSON *res = reply->result;
    bool applied = fp_json_bool(res, "applied"), unchanged = fp_json_bool(res, "unchanged");
    if (applied) {
        lsp_show(3, "fp: reloaded %s into process %d", r->qualname, pid);
        lsp_monitor_reloaded(r->path, r->qualname);
        lsp_proc_maps_forget(r->p, r->path);
    } else if (unchanged) {
        lsp_show(3, "fp: %s is unchanged in process %d: nothing to reload", r->qualname, pid);
    }
    const char *diff = fp_json_str(res, "diff", NULL);
    if (diff) lsp_log(3, "fp: reload of %s in process %d:\n%s", r->qualname, pid, diff);
    const cJSON *w;
    cJSON_ArrayForEach(w, fp_json_get(res, "warnings"))
    {
        char msg[1200];
        snprintf(msg, sizeof msg, "reloaded in process %d, but: %s", pid,
                 fp_json_str(w, "message", fp_json_str(w, "kind", "?")));
        reload_note_add(r->path, r->qualname, pid, 2, -1, 0, msg);
    }
    if (r->results) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pid", pid);
        cJSON_AddBoolToObject(o, "applied", applied);
        cJSON_AddBoolToObject(o, "unchanged", unchanged);
        cJSON_AddItemToObject(o, "warnings", cJSON_Duplicate(fp_json_get(res, "warnings"), 1));
        if (diff) cJSON_AddStringToObject(o, "diff", diff);
        cJSON_AddItemToArray(r->results, o);
    }
    if (r->fan) lsp_fan_ok(r->fan, pid);
    lsp_diagnostics_publish_path(r->path);
    lsp_lens_changed();
    reload_one_free(r);
}

static void reload_on_located(lsp_proc *p, const cJSON *fn, const fp_error *err, void *ud)
{
    reload_one *r = ud;
    if (!fn || p->closing) {
        fp_error e;
        lsp_proc_absent_error(p, err, &e);
        if (r->fan) lsp_fan_fail(r->fan, p->pid, &e);
        reload_one_free(r);
        return;
    }
    cJSON *params = cJSON_Duplicate(fp_json_get(fn, "locate"), 1);
    cJSON_AddStringToObject(params, "source", r->text);
    if (lsp_proc_request(p, "reload", params, RELOAD_MS, reload_on_answer, r) == 0) {
        fp_error e;
        lsp_proc_absent_error(p, NULL, &e);
        if (r->fan) lsp_fan_fail(r->fan, p->pid, &e);
        reload_one_free(r);
    }
}

/* Reloads qualname from text into every attached process (fan may be NULL). */
static void reload_function(const char *path, const char *qualname, const char *text, lsp_fan *fan,
                            cJSON *results)
{
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (p->closing) continue;
        reload_one *r = calloc(1, sizeof *r);
        if (!r) continue;
        r->p = p;
        r->fan = fan;
        r->results = results;
        r->path = strdup(path);
        r->qualname = strdup(qualname);
        r->text = strdup(text);
        if (fan) lsp_fan_add(fan);
        lsp_proc_locate(p, path, qualname, reload_on_located, r);
    }
}

void lsp_reload_command(const cJSON *id, const cJSON *arg)
{
    lsp_target_fn t;
    char err[512];
    if (!lsp_target_fn_from(arg, &t, err, sizeof err)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.reload: %s", err);
        return;
    }
    lsp_fan *fan = lsp_fan_new(id, "fp.reload");
    if (!fan) {
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    cJSON *results = cJSON_CreateArray();
    lsp_fan_set(fan, "function", cJSON_CreateString(t.def->qualname));
    lsp_fan_set(fan, "reloaded", results);
    reload_function(t.path, t.def->qualname, t.doc->text, fan, results);
    lsp_fan_close(fan);
}

/* ---------------------------------------------------------------------------------------------
 * Reload on save
 */

typedef struct reload_save {
    char *uri;
    int version;
} reload_save;

static void reload_on_compared(fp_channel *ch, fp_channel_reply *reply, void *ud)
{
    (void)ch;
    reload_save *s = ud;
    lsp_doc *doc = lsp_doc_find(s->uri);
    if (doc && reply->result && doc->version == s->version) {
        const cJSON *f;
        cJSON_ArrayForEach(f, fp_json_get(reply->result, "functions"))
        {
            if (fp_json_bool(f, "changed") && fp_json_bool(f, "in_source") &&
                cJSON_IsObject(fp_json_get(f, "locate")))
                reload_function(doc->path, fp_json_str(f, "qualname", "?"), doc->text, NULL, NULL);
        }
    }
    free(s->uri);
    free(s);
}

void lsp_reload_on_save(lsp_doc *doc)
{
    if (!doc->path[0]) return;
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        const cJSON *map = p->closing ? NULL : lsp_proc_map_cached(p, doc->path);
        if (!map || !fp_json_bool(map, "loaded")) continue;
        /* Which functions differ from what runs: the first process that runs the file says. */
        reload_save *s = calloc(1, sizeof *s);
        if (!s) return;
        s->uri = strdup(doc->uri);
        s->version = doc->version;
        cJSON *params = cJSON_CreateObject();
        cJSON_AddStringToObject(params, "path", doc->path);
        cJSON_AddStringToObject(params, "source", doc->text);
        lsp_proc_request(p, "code.map", params, RELOAD_MS, reload_on_compared, s);
        return;
    }
}
