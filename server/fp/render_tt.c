/* Human renderers for tt (the time tunnel): the recording's start, one line per record as it is
 * recorded, the end; the list of records; one record in detail (also a replay's); deletions.
 * They read the models of protocol/methods.md (tt.*); --json prints those models instead. */
#include "fp_cli.h"
#include "fp_json.h"

#include <string.h>

/* A record's cost and thread as text (render_cost, render_thread write to a FILE). */
static void rt_field(char *buf, size_t size, const cJSON *r, bool thread)
{
    buf[0] = '\0';
    FILE *f = fmemopen(buf, size, "w");
    if (!f) return;
    if (thread)
        render_thread(f, cJSON_GetObjectItemCaseSensitive(r, "thread"));
    else
        render_cost(f, fp_json_num(r, "cost_ms", 0));
    fclose(f);
}

/* Column widths of the list (a streamed record has none: NULL). */
typedef struct rt_widths {
    int cost, thread, method;
} rt_widths;

/* One line: index, time, cost, thread, method, outcome and the summary of the result. */
static void rt_line(FILE *out, const cJSON *r, const rt_widths *w)
{
    char line[256], cost[32], thread[160];
    render_oneline(line, sizeof line, fp_json_str(r, "summary", ""));
    rt_field(cost, sizeof cost, r, false);
    rt_field(thread, sizeof thread, r, true);
    fprintf(out, "%6.0f  ", fp_json_num(r, "index", 0));
    render_epoch(out, fp_json_num(r, "time", 0));
    fprintf(out, "  %*s  %-*s  %-*s  %s %s", w ? w->cost : 0, cost, w ? w->thread : 0, thread,
            w ? w->method : 0, fp_json_str(r, "method", "?"), fp_json_str(r, "outcome", "?"), line);
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(r, "replay_of");
    if (cJSON_IsNumber(of)) fprintf(out, "  (replay of %.0f)", of->valuedouble);
    fputc('\n', out);
}

static int rt_max(int a, int b)
{
    return a > b ? a : b;
}

static void rt_started(FILE *out, const cJSON *r)
{
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(r, "located");
    fprintf(
        out,
        "recording calls of %s (%s, %s:%.0f) from index %.0f; stops after %.0f (Ctrl-C stops)\n",
        fp_json_str(loc, "qualname", "?"), fp_json_str(loc, "kind", "?"),
        fp_json_str(loc, "file", "?"), fp_json_num(loc, "line", 0), fp_json_num(r, "next_index", 0),
        fp_json_num(r, "limit", 0));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "copy")))
        fputs("  arguments, target and result are deep-copied when recorded (--copy)\n", out);
    else
        fputs("  arguments, target and result are kept by reference: later changes to them show "
              "(--copy copies)\n",
              out);
    const char *filter = fp_json_str(r, "filter", NULL);
    if (filter) fprintf(out, "  only calls where %s\n", filter);
    const char *note = fp_json_str(r, "note", NULL);
    if (note) fprintf(out, "  note: %s\n", note);
}

static void rt_list(FILE *out, const cJSON *r)
{
    const cJSON *records = cJSON_GetObjectItemCaseSensitive(r, "records");
    int n = cJSON_GetArraySize(records);
    const char *method = fp_json_str(r, "method", NULL);
    if (n == 0) {
        fprintf(out, "no records%s%s (tt -t module [class] method records calls)\n",
                method ? " of " : "", method ? method : "");
        return;
    }
    /* The widest of each column, header included, so that rows and header line up. */
    rt_widths w = {(int)strlen("COST"), (int)strlen("THREAD"), (int)strlen("METHOD")};
    const cJSON *rec;
    cJSON_ArrayForEach(rec, records)
    {
        char cost[32], thread[160];
        rt_field(cost, sizeof cost, rec, false);
        rt_field(thread, sizeof thread, rec, true);
        w.cost = rt_max(w.cost, (int)strlen(cost));
        w.thread = rt_max(w.thread, (int)strlen(thread));
        w.method = rt_max(w.method, (int)strlen(fp_json_str(rec, "method", "?")));
    }
    fprintf(out, "%6s  %-23s  %*s  %-*s  %-*s  %s\n", "INDEX", "TIME", w.cost, "COST", w.thread,
            "THREAD", w.method, "METHOD", "RESULT");
    cJSON_ArrayForEach(rec, records) rt_line(out, rec, &w);
    fprintf(out, "%d record%s", n, n == 1 ? "" : "s");
    if (method) fprintf(out, " of %s (%.0f in the tunnel)", method, fp_json_num(r, "stored", 0));
    fputs("; tt -i IDX shows one\n", out);
}

static void rt_detail(FILE *out, const cJSON *r)
{
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(r, "index");
    if (cJSON_IsNumber(index))
        fprintf(out, "record %.0f", index->valuedouble);
    else
        fputs("replay (not stored)", out);
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(r, "replay_of");
    if (cJSON_IsNumber(of)) fprintf(out, ", replay of %.0f", of->valuedouble);
    fprintf(out, ": %s  ", fp_json_str(r, "method", "?"));
    render_epoch(out, fp_json_num(r, "time", 0));
    fputs("  ", out);
    render_thread(out, cJSON_GetObjectItemCaseSensitive(r, "thread"));
    fputs("  cost ", out);
    render_cost(out, fp_json_num(r, "cost_ms", 0));
    fputc('\n', out);
    bool cut = false;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(r, "values"))
    {
        cut |= render_value_tree(out, fp_json_str(item, "expr", "?"),
                                 cJSON_GetObjectItemCaseSensitive(item, "value"), 2);
    }
    render_exception(out, cJSON_GetObjectItemCaseSensitive(r, "exception"), 2);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "copied")))
        fputs("  (copied when recorded)\n", out);
    else
        fputs("  (kept by reference: shows the objects as they are now)\n", out);
    const char *note = fp_json_str(r, "copy_note", NULL);
    if (note) fprintf(out, "  note: %s\n", note);
    note = fp_json_str(r, "note", NULL);
    if (note) fprintf(out, "  note: %s\n", note);
    if (cut) fputs("(... has more inside: -x N shows deeper levels)\n", out);
}

static void rt_deleted(FILE *out, const cJSON *r)
{
    const cJSON *gone = cJSON_GetObjectItemCaseSensitive(r, "deleted");
    int n = cJSON_GetArraySize(gone);
    if (n == 1)
        fprintf(out, "deleted record %.0f\n", cJSON_GetArrayItem(gone, 0)->valuedouble);
    else
        fprintf(out, "deleted %d record%s\n", n, n == 1 ? "" : "s");
}

static void rt_stopped(FILE *out, const cJSON *r)
{
    int n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "stopped"));
    fprintf(out, "stopped %d recording%s\n", n, n == 1 ? "" : "s");
}

void render_tt_result(FILE *out, const char *method, const cJSON *result)
{
    if (strcmp(method, "tt.start") == 0)
        rt_started(out, result);
    else if (strcmp(method, "tt.list") == 0)
        rt_list(out, result);
    else if (strcmp(method, "tt.show") == 0 || strcmp(method, "tt.replay") == 0)
        rt_detail(out, result);
    else if (strcmp(method, "tt.delete") == 0)
        rt_deleted(out, result);
    else if (strcmp(method, "tt.stop") == 0)
        rt_stopped(out, result);
}

void render_tt_record(FILE *out, const cJSON *record)
{
    rt_line(out, record, NULL);
    double dropped = fp_json_num(record, "dropped", 0);
    if (dropped > 0)
        fprintf(out, "        (%.0f earlier report%s dropped; tt -l lists every record)\n", dropped,
                dropped == 1 ? "" : "s");
}

void render_tt_end(FILE *out, const cJSON *end)
{
    const char *reason = fp_json_str(end, "reason", "?");
    const char *why = strcmp(reason, "limit") == 0 ? "the -n limit was reached"
                      : strcmp(reason, "full") == 0
                          ? "the time tunnel is full (tt -d / tt -da frees room)"
                      : strcmp(reason, "stopped") == 0       ? "stopped"
                      : strcmp(reason, "filter_failed") == 0 ? "the filter kept failing"
                                                             : reason;
    double count = fp_json_num(end, "count", 0);
    fprintf(out,
            "recording ended: %.0f call%s recorded, %s; tt -l lists them, tt -i IDX shows one\n",
            count, count == 1 ? "" : "s", why);
    double errors = fp_json_num(end, "filter_errors", 0);
    if (errors > 0)
        fprintf(out, "  the filter raised for %.0f call%s (not recorded)\n", errors,
                errors == 1 ? "" : "s");
}
