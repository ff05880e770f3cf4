/* textDocument/inlayHint: the figures fp-lsp shows at the end of lines (the profile's hot
 * lines, profile.c; the trace's calling lines, trace.c), and workspace/inlayHint/refresh when they
 * change, at most every lens_refresh_ms, when the client supports it (else it asks again on its own
 * schedule). */
#include "fp_clock.h"
#include "fp_json.h"
#include "lsp.h"

static uv_timer_t hints_timer;
static bool hints_timer_init, hints_pending;
static double hints_last;

static void hints_send_refresh(void)
{
    hints_pending = false;
    hints_last = fp_clock_ms();
    if (lsp.hint_refresh && !lsp.exiting)
        lsp_rpc_request("workspace/inlayHint/refresh", NULL, NULL, NULL);
}

static void hints_on_timer(uv_timer_t *t)
{
    (void)t;
    if (hints_pending) hints_send_refresh();
}

void lsp_hints_changed(void)
{
    if (!lsp.hint_refresh || lsp.exiting) return;
    if (!hints_timer_init) {
        uv_timer_init(lsp.loop, &hints_timer);
        uv_unref((uv_handle_t *)&hints_timer);
        hints_timer_init = true;
    }
    double since = fp_clock_ms() - hints_last;
    if (since >= lsp.settings.lens_refresh_ms) {
        hints_send_refresh();
        return;
    }
    if (hints_pending) return;
    hints_pending = true;
    uv_timer_start(&hints_timer, hints_on_timer,
                   (uint64_t)(lsp.settings.lens_refresh_ms - since) + 1, 0);
}

void lsp_hints_request(const cJSON *id, const cJSON *params)
{
    lsp_doc *doc = lsp_doc_find(fp_json_str(fp_json_get(params, "textDocument"), "uri", NULL));
    const cJSON *range = fp_json_get(params, "range");
    cJSON *hints = cJSON_CreateArray();
    if (!doc) {
        lsp_rpc_result(id, hints);
        return;
    }
    int from = (int)fp_json_num(fp_json_get(range, "start"), "line", 0);
    int to = (int)fp_json_num(fp_json_get(range, "end"), "line", 1 << 30);
    lsp_profile_hints(doc, from, to, hints);
    lsp_trace_hints(doc, from, to, hints);
    lsp_rpc_result(id, hints);
}
