/* fp-lsp's life, as LSP 3.17 describes it: initialize (capabilities both ways, the position
 * encoding), initialized, the requests of a running server, shutdown (everything fp-lsp
 * installed in every process is removed), exit (0 after shutdown, else 1). Requests before
 * initialize are answered -32002, after shutdown -32600; unknown methods -32601. Settings come
 * with initialize (initializationOptions) and workspace/didChangeConfiguration. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_json.h"
#include "lsp.h"

lsp_server lsp;

static void lifecycle_settings_defaults(lsp_settings *s)
{
    s->reload_on_save = false;
    snprintf(s->watch_expr, sizeof s->watch_expr, "%s", "args, kwargs, return_obj");
    s->watch_depth = 1;
    s->watch_limit = 100;
    s->monitor_interval_s = 1.0;
    s->hot_threshold_pct = 1.0;
    s->lens_refresh_ms = LSP_LENS_REFRESH_MS;
    s->profile_rate_hz = 100;
    s->profile_sliding = false;
    s->profile_window_s = 10;
    s->profile_refresh_s = 2;
    snprintf(s->profile_format, sizeof s->profile_format, "svg");
    snprintf(s->profile_open, sizeof s->profile_open, "ask");
}

/* The "profile" section: {rate, window: "cumulative"|"sliding", windowSeconds,
 * refreshSeconds, format: "svg"|"speedscope", open: "ask"|"always"|"never"}. */
static void lifecycle_profile_settings(const cJSON *p, lsp_settings *d)
{
    double rate = fp_json_num(p, "rate", d->profile_rate_hz);
    if (rate >= 1 && rate <= 1000) d->profile_rate_hz = rate;
    const char *window = fp_json_str(p, "window", NULL);
    if (window && strcmp(window, "sliding") == 0) d->profile_sliding = true;
    if (window && strcmp(window, "cumulative") == 0) d->profile_sliding = false;
    double ws = fp_json_num(p, "windowSeconds", d->profile_window_s);
    if (ws >= 1 && ws <= 600) d->profile_window_s = ws;
    double rs = fp_json_num(p, "refreshSeconds", d->profile_refresh_s);
    if (rs >= 0.5 && rs <= 60) d->profile_refresh_s = rs;
    const char *format = fp_json_str(p, "format", "");
    if (strcmp(format, "svg") == 0 || strcmp(format, "speedscope") == 0)
        snprintf(d->profile_format, sizeof d->profile_format, "%s", format);
    const char *open = fp_json_str(p, "open", "");
    if (strcmp(open, "ask") == 0 || strcmp(open, "always") == 0 || strcmp(open, "never") == 0)
        snprintf(d->profile_open, sizeof d->profile_open, "%s", open);
}

/* Settings are {"fp": {...}} (a client's whole configuration) or the fp section itself. */
static void lifecycle_settings_apply(const cJSON *any)
{
    const cJSON *s = fp_json_get(any, "fp");
    if (!cJSON_IsObject(s)) s = any;
    if (!cJSON_IsObject(s)) return;
    lsp_settings *d = &lsp.settings;
    if (cJSON_IsBool(fp_json_get(s, "reloadOnSave")))
        d->reload_on_save = fp_json_bool(s, "reloadOnSave");
    const cJSON *w = fp_json_get(s, "watch");
    const char *expr = fp_json_str(w, "expr", NULL);
    if (expr && expr[0]) snprintf(d->watch_expr, sizeof d->watch_expr, "%s", expr);
    double depth = fp_json_num(w, "depth", d->watch_depth);
    if (depth >= 1 && depth <= 4) d->watch_depth = (int)depth;
    double limit = fp_json_num(w, "limit", d->watch_limit);
    if (limit >= 1 && limit <= 1000000) d->watch_limit = (int)limit;
    double iv = fp_json_num(s, "monitorInterval", d->monitor_interval_s);
    if (iv >= 0.1 && iv <= 60) d->monitor_interval_s = iv;
    double thr = fp_json_num(s, "hotThreshold", d->hot_threshold_pct);
    if (thr >= 0 && thr <= 100) d->hot_threshold_pct = thr;
    double refresh = fp_json_num(s, "lensRefreshMs", d->lens_refresh_ms);
    if (refresh >= LSP_LENS_REFRESH_MS && refresh <= 60000) d->lens_refresh_ms = (int)refresh;
    const cJSON *prof = fp_json_get(s, "profile");
    if (cJSON_IsObject(prof)) lifecycle_profile_settings(prof, d);
}

static bool lifecycle_client_offers(const cJSON *caps, const char *const *path, int n)
{
    const cJSON *v = caps;
    for (int i = 0; i < n && v; i++)
        v = fp_json_get(v, path[i]);
    return cJSON_IsTrue(v);
}

static void lifecycle_initialize(const cJSON *id, const cJSON *params)
{
    if (lsp.initialized) {
        lsp_rpc_error(id, LSP_ERR_INVALID_REQUEST, "initialize was already answered: send it once");
        return;
    }
    const cJSON *caps = fp_json_get(params, "capabilities");
    static const char *const refresh[] = {"workspace", "codeLens", "refreshSupport"};
    static const char *const hints[] = {"workspace", "inlayHint", "refreshSupport"};
    static const char *const progress[] = {"window", "workDoneProgress"};
    static const char *const show[] = {"window", "showDocument", "support"};
    lsp.lens_refresh = lifecycle_client_offers(caps, refresh, 3);
    lsp.hint_refresh = lifecycle_client_offers(caps, hints, 3);
    lsp.progress = lifecycle_client_offers(caps, progress, 2);
    lsp.show_document = lifecycle_client_offers(caps, show, 3);
    /* UTF-8 positions when the client can (no conversion), UTF-16 otherwise (the default). */
    const cJSON *enc;
    cJSON_ArrayForEach(enc, fp_json_get(fp_json_get(caps, "general"), "positionEncodings"))
    {
        if (cJSON_IsString(enc) && strcmp(enc->valuestring, "utf-8") == 0) lsp.utf8 = true;
    }
    lifecycle_settings_apply(fp_json_get(params, "initializationOptions"));

    cJSON *r = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(r, "capabilities");
    cJSON_AddStringToObject(c, "positionEncoding", lsp.utf8 ? "utf-8" : "utf-16");
    cJSON *sync = cJSON_AddObjectToObject(c, "textDocumentSync");
    cJSON_AddBoolToObject(sync, "openClose", true);
    cJSON_AddNumberToObject(sync, "change", 2); /* incremental */
    cJSON_AddObjectToObject(sync, "save");
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(c, "codeLensProvider"), "resolveProvider", true);
    cJSON_AddItemToObject(cJSON_AddObjectToObject(c, "executeCommandProvider"), "commands",
                          lsp_commands_list());
    cJSON_AddBoolToObject(c, "hoverProvider", true);
    cJSON_AddBoolToObject(c, "inlayHintProvider", true);
    cJSON *info = cJSON_AddObjectToObject(r, "serverInfo");
    cJSON_AddStringToObject(info, "name", "fp-lsp");
    cJSON_AddStringToObject(info, "version", FP_VERSION);
    lsp.initialized = true;
    lsp_rpc_result(id, r);
}

static void lifecycle_shutdown(const cJSON *id)
{
    /* Everything installed in every process goes now; the channels close. */
    lsp_profile_shutdown();
    lsp_procs_detach(0);
    lsp.shut_down = true;
    lsp_rpc_result(id, NULL);
}

void lsp_exit(int code)
{
    if (lsp.exiting) return;
    lsp.exiting = true;
    lsp.exit_code = code;
    lsp_profile_shutdown();
    lsp_procs_detach(0);
    lsp_rpc_close();
}

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 */

typedef void (*lifecycle_request_fn)(const cJSON *id, const cJSON *params);
typedef void (*lifecycle_note_fn)(const cJSON *params);

static const struct {
    const char *method;
    lifecycle_request_fn fn;
} lifecycle_requests[] = {
    {"textDocument/codeLens", lsp_lens_request},
    {"codeLens/resolve", lsp_lens_resolve},
    {"textDocument/hover", lsp_hover_request},
    {"textDocument/inlayHint", lsp_hints_request},
    {"workspace/executeCommand", lsp_commands_execute},
};

static void lifecycle_did_change_configuration(const cJSON *params)
{
    lifecycle_settings_apply(fp_json_get(params, "settings"));
}

static void lifecycle_initialized(const cJSON *params)
{
    (void)params;
}

static const struct {
    const char *method;
    lifecycle_note_fn fn;
} lifecycle_notes[] = {
    {"initialized", lifecycle_initialized},
    {"textDocument/didOpen", lsp_doc_did_open},
    {"textDocument/didChange", lsp_doc_did_change},
    {"textDocument/didClose", lsp_doc_did_close},
    {"textDocument/didSave", lsp_doc_did_save},
    {"workspace/didChangeConfiguration", lifecycle_did_change_configuration},
};

void lsp_dispatch(const cJSON *msg)
{
    const cJSON *method = fp_json_get(msg, "method");
    const cJSON *id = fp_json_get(msg, "id");
    const cJSON *params = fp_json_get(msg, "params");
    bool request = id != NULL;
    if (request && !cJSON_IsString(id) &&
        !(cJSON_IsNumber(id) && id->valuedouble >= -9007199254740991.0 &&
          id->valuedouble <= 9007199254740991.0 &&
          id->valuedouble == (double)(int64_t)id->valuedouble)) {
        lsp_rpc_error(NULL, LSP_ERR_INVALID_REQUEST, "a request id is an integer or a string");
        return;
    }
    if (!cJSON_IsString(method)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_REQUEST, "a request or notification has a method");
        return;
    }
    const char *m = method->valuestring;
    if (params && !cJSON_IsObject(params) && !cJSON_IsArray(params)) {
        if (request)
            lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                          "params of '%s' must be an object or an array", m);
        return;
    }
    if (strcmp(m, "exit") == 0) {
        lsp_exit(lsp.shut_down ? 0 : 1);
        return;
    }
    if (strcmp(m, "initialize") == 0) {
        if (request) lifecycle_initialize(id, params);
        return;
    }
    if (!lsp.initialized) {
        if (request)
            lsp_rpc_error(id, LSP_ERR_NOT_INITIALIZED,
                          "'%s' before initialize: the server is not initialized yet", m);
        return;
    }
    if (lsp.shut_down) {
        if (request)
            lsp_rpc_error(id, LSP_ERR_INVALID_REQUEST,
                          "'%s' after shutdown: the server only accepts exit now", m);
        return;
    }
    if (strcmp(m, "shutdown") == 0) {
        if (request) lifecycle_shutdown(id);
        return;
    }
    if (request) {
        for (size_t i = 0; i < sizeof lifecycle_requests / sizeof lifecycle_requests[0]; i++) {
            if (strcmp(m, lifecycle_requests[i].method) == 0) {
                lifecycle_requests[i].fn(id, params);
                return;
            }
        }
        lsp_rpc_error(id, LSP_ERR_METHOD_NOT_FOUND, "fp-lsp does not serve '%s'", m);
        return;
    }
    for (size_t i = 0; i < sizeof lifecycle_notes / sizeof lifecycle_notes[0]; i++) {
        if (strcmp(m, lifecycle_notes[i].method) == 0) {
            lifecycle_notes[i].fn(params);
            return;
        }
    }
    /* Unknown notifications are ignored ($/ ones may be, the others too: they need no answer). */
}

void lsp_settings_init(void);
void lsp_settings_init(void)
{
    lifecycle_settings_defaults(&lsp.settings);
}
