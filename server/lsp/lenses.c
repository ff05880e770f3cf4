/* Code lenses: on every function of an open document that an attached process runs, its
 * actions (watch, trace, monitor, reload) and, while it is monitored, its live figures; one lens
 * at the top of a file no attached process imported. Functions are matched to the running code
 * by name and nesting (code.map), not by line, so lenses stay on their function while lines
 * move; one whose text differs from what runs says "changed since loaded" (code.map compares
 * the editor's text, a moment after typing stops). textDocument/codeLens gives lenses without
 * commands; codeLens/resolve fills them with the figures of that moment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_clock.h"
#include "fp_json.h"
#include "fp_rpc.h"
#include "lsp.h"

/* The editor's text is compared with the running code this long after the last change. */
#define LENS_COMPARE_DELAY_MS 300
#define LENS_COMPARE_MS 10000

/* What is known of a document's text against the running code. */
typedef struct lens_cmp {
    struct lens_cmp *next;
    char *uri;
    int version;       /* of the text compared, -1: none yet */
    int asked_version; /* of the text being compared, -1: none */
    cJSON *changed;    /* qualnames whose text differs from what runs: {name: true} */
    uv_timer_t timer;
    bool timer_on;
} lens_cmp;

static lens_cmp *cmps;
static uv_timer_t lens_timer;
static bool lens_timer_init, lens_pending;
static double lens_last_refresh;

/* ---------------------------------------------------------------------------------------------
 * Refreshing
 */

static void lens_send_refresh(void)
{
    lens_pending = false;
    lens_last_refresh = fp_clock_ms();
    if (lsp.lens_refresh && !lsp.exiting)
        lsp_rpc_request("workspace/codeLens/refresh", NULL, NULL, NULL);
}

static void lens_on_timer(uv_timer_t *t)
{
    (void)t;
    if (lens_pending) lens_send_refresh();
}

void lsp_lens_changed(void)
{
    if (!lsp.lens_refresh || lsp.exiting) return;
    if (!lens_timer_init) {
        uv_timer_init(lsp.loop, &lens_timer);
        uv_unref((uv_handle_t *)&lens_timer);
        lens_timer_init = true;
    }
    double since = fp_clock_ms() - lens_last_refresh;
    if (since >= lsp.settings.lens_refresh_ms) {
        lens_send_refresh();
        return;
    }
    if (lens_pending) return;
    lens_pending = true;
    uv_timer_start(&lens_timer, lens_on_timer, (uint64_t)(lsp.settings.lens_refresh_ms - since) + 1,
                   0);
}

/* ---------------------------------------------------------------------------------------------
 * The editor's text against the running code
 */

static lens_cmp *lens_cmp_of(const char *uri)
{
    for (lens_cmp *c = cmps; c; c = c->next)
        if (strcmp(c->uri, uri) == 0) return c;
    lens_cmp *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->uri = strdup(uri);
    c->version = c->asked_version = -1;
    c->changed = cJSON_CreateObject();
    uv_timer_init(lsp.loop, &c->timer);
    uv_unref((uv_handle_t *)&c->timer);
    c->timer.data = c;
    c->next = cmps;
    cmps = c;
    return c;
}

typedef struct lens_ask {
    lens_cmp *c;
    int version;
} lens_ask;

static void lens_on_compared(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    lens_ask *a = ud;
    lens_cmp *c = a->c;
    if (c->asked_version == a->version) c->asked_version = -1;
    if (r->result) {
        cJSON_Delete(c->changed);
        c->changed = cJSON_CreateObject();
        const cJSON *f;
        cJSON_ArrayForEach(f, fp_json_get(r->result, "functions"))
        {
            if (fp_json_bool(f, "changed"))
                cJSON_AddTrueToObject(c->changed, fp_json_str(f, "qualname", "?"));
        }
        c->version = a->version;
        lsp_lens_changed();
    }
    free(a);
}

/* The first attached process that runs path (its map is known), or NULL. */
static lsp_proc *lens_runner(const char *path)
{
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        const cJSON *map = p->closing ? NULL : lsp_proc_map_cached(p, path);
        if (map && fp_json_bool(map, "loaded")) return p;
    }
    return NULL;
}

static void lens_compare_now(uv_timer_t *t)
{
    lens_cmp *c = t->data;
    c->timer_on = false;
    lsp_doc *doc = lsp_doc_find(c->uri);
    lsp_proc *p = doc ? lens_runner(doc->path) : NULL;
    if (!doc || !p || c->asked_version == doc->version) return;
    lens_ask *a = calloc(1, sizeof *a);
    if (!a) return;
    a->c = c;
    a->version = c->asked_version = doc->version;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "path", doc->path);
    cJSON_AddStringToObject(params, "source", doc->text);
    lsp_proc_request(p, "code.map", params, LENS_COMPARE_MS, lens_on_compared, a);
}

/* Asks for a comparison of doc's current text, a moment from now (typing goes on). */
static void lens_compare_soon(lsp_doc *doc)
{
    lens_cmp *c = lens_cmp_of(doc->uri);
    if (!c || c->version == doc->version || c->asked_version == doc->version) return;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, lens_compare_now, LENS_COMPARE_DELAY_MS, 0);
    c->timer_on = true;
}

static bool lens_changed(const lsp_doc *doc, const char *qualname)
{
    for (lens_cmp *c = cmps; c; c = c->next)
        if (strcmp(c->uri, doc->uri) == 0) return fp_json_bool(c->changed, qualname);
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * textDocument/codeLens
 */

static void lens_on_map(lsp_proc *p, const char *path, const cJSON *map, const fp_error *err,
                        void *ud)
{
    (void)p, (void)path, (void)map, (void)err, (void)ud;
    lsp_lens_changed(); /* now known: the client asks again */
}

/* A lens without its command, written as text at once: a file's lenses are a thousand small
 * objects, each built and freed node by node otherwise. Its data names the document by number,
 * not by uri: a file's lenses are a fifth smaller, and as much quicker for the client to read.
 * qualname is JSON-quoted already (fp_json_quote), or NULL. */
static cJSON *lens_new(int line, const lsp_doc *doc, const char *qualname, const char *action)
{
    char *text = NULL;
    int n = asprintf(&text,
                     "{\"range\":{\"start\":{\"line\":%d,\"character\":0},\"end\":{\"line\":%d,"
                     "\"character\":0}},\"data\":{\"doc\":%d%s%s,\"action\":\"%s\"}}",
                     line, line, doc->number, qualname ? ",\"function\":" : "",
                     qualname ? qualname : "", action);
    if (n < 0) return NULL;
    cJSON *l = cJSON_CreateRaw(text);
    free(text);
    return l;
}

/* Whether some attached process runs qualname from path (maps known so far). cursors[i], when
 * not NULL, is where process i's search starts: a file's functions are asked in the order of
 * its text, which is the order of the map. */
static bool lens_loaded(const char *path, const char *qualname, bool *any_map, bool *file_loaded,
                        const cJSON **cursors)
{
    bool found = false;
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        const cJSON *map = p->closing ? NULL : lsp_proc_map_cached(p, path);
        if (!map) continue;
        *any_map = true;
        if (!fp_json_bool(map, "loaded")) continue;
        *file_loaded = true;
        if (!qualname) continue;
        const cJSON *f = lsp_map_function_from(map, qualname, cursors ? cursors[i] : NULL);
        if (f) found = true;
        if (f && cursors) cursors[i] = f->next;
    }
    return found;
}

/* The profile's per-function totals: on every function it sampled, attached to the process or
 * not (the sampler needs no agent). */
static void lens_add_profile(lsp_doc *doc, cJSON *lenses)
{
    if (!doc || !doc->path[0]) return;
    const lsp_defs *defs = lsp_doc_defs(doc);
    for (int i = 0; i < defs->n; i++) {
        char *title = lsp_profile_lens(doc, &defs->defs[i]);
        char *fn = title ? fp_json_quote(defs->defs[i].qualname) : NULL;
        if (fn) cJSON_AddItemToArray(lenses, lens_new(defs->defs[i].def_line, doc, fn, "profile"));
        free(fn);
        free(title);
    }
}

void lsp_lens_request(const cJSON *id, const cJSON *params)
{
    lsp_doc *doc = lsp_doc_find(fp_json_str(fp_json_get(params, "textDocument"), "uri", NULL));
    cJSON *lenses = cJSON_CreateArray();
    lens_add_profile(doc, lenses);
    int live = 0;
    for (int i = 0; i < lsp_procs_count(); i++)
        live += !lsp_proc_at(i)->closing;
    if (!doc || !doc->path[0] || live == 0) {
        lsp_rpc_result(id, lenses);
        return;
    }
    /* The maps of this file in every process, asked once (the answer refreshes the lenses). */
    bool asked = false;
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (!p->closing && !lsp_proc_map_cached(p, doc->path)) {
            lsp_proc_map(p, doc->path, lens_on_map, NULL);
            asked = true;
        }
    }
    bool any_map = false, file_loaded = false;
    lens_loaded(doc->path, NULL, &any_map, &file_loaded, NULL);
    if (any_map && !file_loaded) {
        cJSON_AddItemToArray(lenses, lens_new(0, doc, NULL, "not-loaded"));
        lsp_rpc_result(id, lenses);
        return;
    }
    if (file_loaded) lens_compare_soon(doc);
    const lsp_defs *defs = lsp_doc_defs(doc);
    const cJSON *cursors[LSP_MAX_PROCS] = {0};
    for (int i = 0; i < defs->n && !asked; i++) {
        const lsp_def *d = &defs->defs[i];
        if (d->is_class || !lens_loaded(doc->path, d->qualname, &any_map, &file_loaded, cursors))
            continue;
        char *fn = fp_json_quote(d->qualname);
        if (!fn) break;
        if (lsp_monitor_active(doc->path, d->qualname))
            cJSON_AddItemToArray(lenses, lens_new(d->def_line, doc, fn, "figures"));
        if (lsp_trace_active(doc->path, d->qualname))
            cJSON_AddItemToArray(lenses, lens_new(d->def_line, doc, fn, "traced"));
        if (lens_changed(doc, d->qualname))
            cJSON_AddItemToArray(lenses, lens_new(d->def_line, doc, fn, "changed"));
        static const char *const actions[] = {"watch", "trace", "monitor", "reload"};
        for (size_t k = 0; k < sizeof actions / sizeof actions[0]; k++)
            cJSON_AddItemToArray(lenses, lens_new(d->def_line, doc, fn, actions[k]));
        free(fn);
    }
    lsp_rpc_result(id, lenses);
}

/* ---------------------------------------------------------------------------------------------
 * codeLens/resolve
 */

static void lens_command(cJSON *lens, const char *title, const char *command, const char *uri,
                         const char *qualname, const char *scope)
{
    cJSON_DeleteItemFromObjectCaseSensitive(lens, "command");
    cJSON *c = cJSON_AddObjectToObject(lens, "command");
    cJSON_AddStringToObject(c, "title", title);
    cJSON_AddStringToObject(c, "command", command);
    if (!command[0]) return;
    cJSON *args = cJSON_AddArrayToObject(c, "arguments");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "uri", uri);
    if (qualname) cJSON_AddStringToObject(a, "function", qualname);
    if (scope) cJSON_AddStringToObject(a, "scope", scope);
    cJSON_AddItemToArray(args, a);
}

void lsp_lens_resolve(const cJSON *id, const cJSON *params)
{
    const cJSON *data = fp_json_get(params, "data");
    const cJSON *number = fp_json_get(data, "doc");
    const char *fn = fp_json_str(data, "function", NULL);
    const char *action = fp_json_str(data, "action", NULL);
    if (!cJSON_IsObject(params) || !cJSON_IsNumber(number) || !action) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "codeLens/resolve: not a lens of fp-lsp (no data.doc and data.action)");
        return;
    }
    static const char *const known[] = {"not-loaded", "figures", "profile", "traced", "changed",
                                        "watch",      "trace",   "monitor", "reload"};
    size_t k = 0;
    while (k < sizeof known / sizeof known[0] && strcmp(known[k], action) != 0)
        k++;
    if (k == sizeof known / sizeof known[0]) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "codeLens/resolve: unknown lens action '%s'",
                      action);
        return;
    }
    cJSON *lens = cJSON_Duplicate(params, 1);
    lsp_doc *doc = lsp_doc_numbered((int)number->valuedouble);
    if (!doc) { /* closed since the lenses were given: a title, nothing to run */
        lens_command(lens, "fp: the document was closed", "", "", NULL, NULL);
        lsp_rpc_result(id, lens);
        return;
    }
    const char *uri = doc->uri;
    const char *path = doc->path;
    char title[512];
    if (strcmp(action, "not-loaded") == 0) {
        char pids[256] = "";
        for (int i = 0; i < lsp_procs_count(); i++) {
            lsp_proc *p = lsp_proc_at(i);
            if (p->closing) continue;
            snprintf(pids + strlen(pids), sizeof pids - strlen(pids), "%s%d", pids[0] ? ", " : "",
                     p->pid);
        }
        snprintf(title, sizeof title, "fp: not loaded in process %s", pids);
        lens_command(lens, title, "", uri, NULL, NULL);
    } else if (strcmp(action, "figures") == 0) {
        char *figures = fn ? lsp_monitor_lens(path, fn) : NULL;
        lens_command(lens, figures ? figures : "fp: monitoring", "fp.monitor", uri, fn, "off");
        free(figures);
    } else if (strcmp(action, "profile") == 0) {
        const lsp_def *def = fn ? lsp_defs_find(lsp_doc_defs(doc), fn) : NULL;
        char *figures = def ? lsp_profile_lens(doc, def) : NULL;
        bool running = lsp_profile_running() > 0;
        lens_command(lens, figures ? figures : "fp profile: no samples",
                     running ? "fp.profile.stop" : "fp.profile.clear", uri, NULL, NULL);
        free(figures);
    } else if (strcmp(action, "traced") == 0) {
        char *figures = fn ? lsp_trace_lens(path, fn) : NULL;
        lens_command(lens, figures ? figures : "fp trace: over", "fp.stop", uri, fn, NULL);
        free(figures);
    } else if (strcmp(action, "changed") == 0) {
        lens_command(lens, "changed since loaded", "fp.reload", uri, fn, NULL);
    } else if (strcmp(action, "watch") == 0 || strcmp(action, "trace") == 0 ||
               strcmp(action, "monitor") == 0 || strcmp(action, "reload") == 0) {
        char command[32];
        snprintf(command, sizeof command, "fp.%s", action);
        bool monitored = strcmp(action, "monitor") == 0 && fn && lsp_monitor_active(path, fn);
        lens_command(lens, monitored ? "monitor off" : action, command, uri, fn,
                     monitored ? "off" : NULL);
    } else {
        cJSON_Delete(lens);
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "codeLens/resolve: unknown lens action '%s'",
                      action);
        return;
    }
    lsp_rpc_result(id, lens);
}
