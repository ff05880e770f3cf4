/* Human renderers for watch: the start result (what is observed, how), each call's event (time,
 * thread, cost, then every expression as a value tree, the exception for calls that raised) and
 * the end of the stream. They read the models of protocol/methods.md (watch.start, watch/event,
 * watch/end); --json prints those models instead. */
#include "fp_cli.h"
#include "fp_json.h"

#include <string.h>
#include <time.h>

/* Writes text, indenting every line after the first by indent spaces. */
static void rw_indented(FILE *out, const char *text, int indent)
{
    for (const char *p = text; *p; p++) {
        fputc(*p, out);
        if (*p == '\n' && p[1]) fprintf(out, "%*s", indent, "");
    }
}

/* ---- value trees (shared with render_tt.c) */

static bool rw_node(FILE *out, const char *name, const cJSON *v, int indent)
{
    bool cut = false;
    fprintf(out, "%*s%s: %s = ", indent, "", name, fp_json_str(v, "type", "?"));
    rw_indented(out, fp_json_str(v, "repr", ""), indent + 4);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "repr_truncated")))
        fputs(" (cut; -r shows all)", out);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "cycle"))) fputs(" (cycle)", out);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "expandable"))) {
        fputs(" ...", out);
        cut = true;
    }
    fputc('\n', out);
    const cJSON *child;
    cJSON_ArrayForEach(child, cJSON_GetObjectItemCaseSensitive(v, "children"))
    {
        cut |= rw_node(out, fp_json_str(child, "name", "?"),
                       cJSON_GetObjectItemCaseSensitive(child, "value"), indent + 2);
    }
    double omitted = fp_json_num(v, "omitted", 0);
    if (omitted > 0) fprintf(out, "%*s(%.0f more, -v shows all)\n", indent + 2, "", omitted);
    return cut;
}

bool render_value_tree(FILE *out, const char *label, const cJSON *value, int indent)
{
    if (!cJSON_IsObject(value)) {
        fprintf(out, "%*s%s: ?\n", indent, "", label);
        return false;
    }
    return rw_node(out, label, value, indent);
}

/* ---- pieces of an event */

void render_epoch(FILE *out, double epoch)
{
    time_t secs = (time_t)epoch;
    struct tm tm;
    char buf[32] = "?";
    if (localtime_r(&secs, &tm)) strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    int ms = (int)((epoch - (double)secs) * 1000.0);
    if (ms < 0) ms = 0;
    if (ms > 999) ms = 999;
    fprintf(out, "%s.%03d", buf, ms);
}

void render_thread(FILE *out, const cJSON *thread)
{
    const char *name = fp_json_str(thread, "name", NULL);
    double ident = fp_json_num(thread, "ident", 0);
    if (name)
        fprintf(out, "%s (%.0f)", name, ident);
    else
        fprintf(out, "thread %.0f", ident);
}

void render_cost(FILE *out, double ms)
{
    if (ms < 1)
        fprintf(out, "%.3f ms", ms);
    else if (ms < 1000)
        fprintf(out, "%.2f ms", ms);
    else
        fprintf(out, "%.3f s", ms / 1000.0);
}

void render_exception(FILE *out, const cJSON *exc, int indent)
{
    if (!cJSON_IsObject(exc)) return;
    const char *msg = fp_json_str(exc, "message", "");
    fprintf(out, "%*sraised %s%s%s\n", indent, "", fp_json_str(exc, "type", "?"),
            msg[0] ? ": " : "", msg);
    const char *tb = fp_json_str(exc, "traceback", NULL);
    if (tb && tb[0]) {
        fprintf(out, "%*s", indent + 2, "");
        rw_indented(out, tb, indent + 2);
        if (tb[strlen(tb) - 1] != '\n') fputc('\n', out);
    }
}

/* ---- watch.start, watch/event, watch/end */

void render_watch_started(FILE *out, const cJSON *r)
{
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(r, "located");
    fprintf(out, "watching %s (%s, %s:%.0f)", fp_json_str(loc, "qualname", "?"),
            fp_json_str(loc, "kind", "?"), fp_json_str(loc, "file", "?"),
            fp_json_num(loc, "line", 0));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(loc, "async")))
        fputs(", async", out);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(loc, "generator")))
        fputs(", generator", out);
    fprintf(out, "; stops after %.0f call%s", fp_json_num(r, "limit", 0),
            fp_json_num(r, "limit", 0) == 1 ? "" : "s");
    const char *filter = fp_json_str(r, "filter", NULL);
    if (filter) fprintf(out, " where %s", filter);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "exceptions")))
        fputs(" (only calls that raise)", out);
    fputs(" (Ctrl-C stops)\n", out);
    const char *note = fp_json_str(r, "note", NULL);
    if (note) fprintf(out, "  note: %s\n", note);
}

void render_watch_event(FILE *out, const cJSON *ev)
{
    fprintf(out, "[%.0f] ", fp_json_num(ev, "index", 0));
    render_epoch(out, fp_json_num(ev, "time", 0));
    fputs("  ", out);
    render_thread(out, cJSON_GetObjectItemCaseSensitive(ev, "thread"));
    fputs("  cost ", out);
    render_cost(out, fp_json_num(ev, "cost_ms", 0));
    fputc('\n', out);
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(ev, "values"))
    {
        const char *expr = fp_json_str(item, "expr", "?");
        const char *error = fp_json_str(item, "error", NULL);
        if (error)
            fprintf(out, "  %s: failed: %s\n", expr, error);
        else
            render_value_tree(out, expr, cJSON_GetObjectItemCaseSensitive(item, "value"), 2);
    }
    render_exception(out, cJSON_GetObjectItemCaseSensitive(ev, "exception"), 2);
    double dropped = fp_json_num(ev, "dropped", 0);
    if (dropped > 0)
        fprintf(out, "  (%.0f earlier event%s dropped: fp did not read fast enough)\n", dropped,
                dropped == 1 ? "" : "s");
}

void render_watch_end(FILE *out, const cJSON *end)
{
    const char *reason = fp_json_str(end, "reason", "?");
    double count = fp_json_num(end, "count", 0);
    const char *why = strcmp(reason, "limit") == 0           ? "the -n limit was reached"
                      : strcmp(reason, "stopped") == 0       ? "stopped"
                      : strcmp(reason, "detached") == 0      ? "the client detached"
                      : strcmp(reason, "filter_failed") == 0 ? "the filter kept failing"
                                                             : reason;
    fprintf(out, "watch ended: %.0f call%s reported, %s; the function is restored\n", count,
            count == 1 ? "" : "s", why);
    double errors = fp_json_num(end, "filter_errors", 0);
    if (errors > 0)
        fprintf(out, "  the filter raised for %.0f call%s (not shown, not counted toward -n)\n",
                errors, errors == 1 ? "" : "s");
    double dropped = fp_json_num(end, "dropped", 0);
    if (dropped > 0) fprintf(out, "  %.0f event%s dropped\n", dropped, dropped == 1 ? "" : "s");
}
