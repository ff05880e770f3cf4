/* The human renderer of `trace`: each traced invocation as a call tree (fp_trace_text.h, shared
 * with fp-lsp's hover), then why the trace ended. */
#include "fp_cli.h"
#include "fp_json.h"
#include "fp_notes.h"
#include "fp_trace_text.h"

#include <string.h>

static void render_trace_event(FILE *out, const cJSON *p)
{
    fprintf(out, "[%.0f] ", fp_json_num(p, "index", 0));
    render_epoch(out, fp_json_num(p, "time", 0));
    fputs("  ", out);
    render_thread(out, cJSON_GetObjectItemCaseSensitive(p, "thread"));
    fputs("  cost ", out);
    render_cost(out, fp_json_num(p, "cost_ms", 0));
    fputc('\n', out);
    const cJSON *tree = cJSON_GetObjectItemCaseSensitive(p, "tree");
    if (cJSON_IsObject(tree)) fp_trace_text_tree(out, tree);
    const cJSON *cut = cJSON_GetObjectItemCaseSensitive(tree, "truncated");
    if (cJSON_GetArraySize(cut) > 0) {
        fputs("(the tree is incomplete:", out);
        const cJSON *w;
        cJSON_ArrayForEach(w, cut)
        {
            const char *why = cJSON_IsString(w) ? w->valuestring : "";
            if (strcmp(why, "nodes") == 0)
                fputs(" too many distinct calls", out);
            else if (strcmp(why, "depth") == 0)
                fputs(" calls nested too deeply", out);
            else if (strcmp(why, "stopped") == 0)
                fputs(" the recording was stopped early", out);
            else
                fprintf(out, " %s", why);
        }
        fputs(")\n", out);
    }
    double dropped = fp_json_num(p, "dropped", 0);
    if (dropped > 0)
        fprintf(out, "(%.0f earlier event%s dropped: fp did not read fast enough)\n", dropped,
                dropped == 1 ? "" : "s");
}

static const char *render_trace_reason(const char *reason)
{
    if (strcmp(reason, "limit") == 0) return "the -n limit was reached";
    if (strcmp(reason, "detached") == 0) return "the client detached";
    if (strcmp(reason, "filter_failed") == 0) return "the filter kept failing";
    return reason;
}

void render_trace_notification(FILE *out, const char *method, const cJSON *params)
{
    if (strcmp(method, FP_NOTE_TRACE_EVENT) == 0) {
        render_trace_event(out, params);
    } else if (strcmp(method, FP_NOTE_TRACE_SKIPPED) == 0) {
        fputs("skipped a call on ", out);
        render_thread(out, cJSON_GetObjectItemCaseSensitive(params, "thread"));
        fprintf(out, ": %s\n", fp_json_str(params, "reason", "?"));
    } else if (strcmp(method, FP_NOTE_TRACE_END) == 0) {
        double count = fp_json_num(params, "count", 0);
        fprintf(out, "trace ended: %.0f invocation%s shown, %s; the function is restored\n", count,
                count == 1 ? "" : "s", render_trace_reason(fp_json_str(params, "reason", "?")));
        double discarded = fp_json_num(params, "discarded", 0);
        double skipped = fp_json_num(params, "skipped", 0);
        double dropped = fp_json_num(params, "dropped", 0);
        if (discarded > 0) fprintf(out, "  %.0f faster than -et left out\n", discarded);
        if (skipped > 0)
            fprintf(out, "  %.0f skipped (a thread with a profiler of its own)\n", skipped);
        if (dropped > 0) fprintf(out, "  %.0f event%s dropped\n", dropped, dropped == 1 ? "" : "s");
        double errors = fp_json_num(params, "filter_errors", 0);
        if (errors > 0)
            fprintf(out, "  the filter raised for %.0f call%s (not traced)\n", errors,
                    errors == 1 ? "" : "s");
    } else {
        char *text = cJSON_PrintUnformatted(params);
        fprintf(out, "%s: %s\n", method, text ? text : "");
        cJSON_free(text);
    }
}

void render_trace_result(FILE *out, const cJSON *r)
{
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(r, "located");
    fprintf(out, "tracing %s (%s, %s:%.0f)", fp_json_str(loc, "qualname", "?"),
            fp_json_str(loc, "kind", "?"), fp_json_str(loc, "file", "?"),
            fp_json_num(loc, "line", 0));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(loc, "async")))
        fputs(", async", out);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(loc, "generator")))
        fputs(", generator", out);
    const cJSON *depth = cJSON_GetObjectItemCaseSensitive(r, "depth");
    if (cJSON_IsNumber(depth))
        fprintf(out, "; %.0f level%s deep", depth->valuedouble, depth->valuedouble == 1 ? "" : "s");
    else if (fp_json_num(r, "interval", 0.1) > 0)
        fprintf(out, "; calls under %g ms hidden", fp_json_num(r, "interval", 0.1));
    else
        fputs("; every call shown", out);
    double min_cost = fp_json_num(r, "min_cost", 0);
    if (min_cost > 0) fprintf(out, "; only invocations over %g ms", min_cost);
    const char *filter = fp_json_str(r, "filter", NULL);
    if (filter) fprintf(out, "; where %s", filter);
    double limit = fp_json_num(r, "limit", 10);
    fprintf(out, "; stops after %.0f invocation%s (Ctrl-C stops)\n", limit, limit == 1 ? "" : "s");
    const char *note = fp_json_str(r, "note", NULL);
    if (note) fprintf(out, "  note: %s\n", note);
    const char *recorder = fp_json_str(r, "recorder", "native");
    if (strcmp(recorder, "native") != 0)
        fprintf(out, "  note: recording with the %s recorder (slower than the agent's C one)\n",
                recorder);
}
