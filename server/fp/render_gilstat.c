/* gilstat's models for humans: the start line, a table per report window (one row per thread,
 * the seed's columns), threshold reports with the thread's stack, and the stop line.
 * The models themselves are documented in protocol/jsonl.md ("gilstat"). */
#include "fp_cli.h"
#include "fp_json.h"
#include "fp_notes.h"

#include <string.h>
#include <time.h>

/* ns as "812ns", "41.2us", "7.02ms", "1.42s": three significant digits, a unit that fits. */
static const char *rg_dur(char *buf, size_t size, double ns)
{
    static const struct {
        double scale;
        const char *unit;
    } units[] = {{1e9, "s"}, {1e6, "ms"}, {1e3, "us"}};
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ns < units[i].scale) continue;
        double v = ns / units[i].scale;
        snprintf(buf, size, v >= 100 ? "%.0f%s" : v >= 10 ? "%.1f%s" : "%.2f%s", v, units[i].unit);
        return buf;
    }
    snprintf(buf, size, "%.0fns", ns);
    return buf;
}

static void render_gilstat_started(FILE *out, const cJSON *m)
{
    const cJSON *probes = cJSON_GetObjectItemCaseSensitive(m, "probes");
    fprintf(out, "gilstat on: process %.0f (Python %s), %d probes on take_gil/drop_gil in %s\n",
            fp_json_num(m, "pid", 0), fp_json_str(m, "python", "?"), cJSON_GetArraySize(probes),
            fp_json_str(m, "file", "?"));
    fprintf(out, "  a report every %.0f s", fp_json_num(m, "interval_s", 0));
    double take = fp_json_num(m, "take_ms", 0), hold = fp_json_num(m, "hold_ms", 0);
    if (take > 0) fprintf(out, "; waits over %g ms", take);
    if (hold > 0) fprintf(out, "%s holds over %g ms", take > 0 ? " and" : ";", hold);
    if (take > 0 || hold > 0) fputs(" reported with the thread's stack", out);
    fputc('\n', out);
    const cJSON *n;
    cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(m, "notes"))
    {
        if (cJSON_IsString(n)) fprintf(out, "  note: %s\n", n->valuestring);
    }
}

/* The NAME column fits threading's names ("Thread-7 (process_request_thread)") up to this. */
#define RENDER_GILSTAT_NAME_MAX 36

static void render_gilstat_row(FILE *out, const cJSON *t, int name_width)
{
    char b[8][24];
    char state[32] = "";
    const char *st = fp_json_str(t, "state", "");
    if (strcmp(st, "holding") == 0 || strcmp(st, "waiting") == 0)
        snprintf(state, sizeof state, "%s %s%s", st,
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "state_at_least")) ? ">=" : "",
                 rg_dur(b[7], sizeof b[7], fp_json_num(t, "state_ms", 0) * 1e6));
    fprintf(out, "  %-8.0f %-*.*s %8.0f %9s %9s %6.1f%% %9s %9s %8.0f %9s %9s  %s\n",
            fp_json_num(t, "tid", 0), name_width, name_width, fp_json_str(t, "name", ""),
            fp_json_num(t, "takecnt", 0), rg_dur(b[0], sizeof b[0], fp_json_num(t, "hold_all", 0)),
            rg_dur(b[1], sizeof b[1], fp_json_num(t, "holdavg", 0)), fp_json_num(t, "hold_pct", 0),
            rg_dur(b[2], sizeof b[2], fp_json_num(t, "take_all", 0)),
            rg_dur(b[3], sizeof b[3], fp_json_num(t, "takeavg", 0)), fp_json_num(t, "dropcnt", 0),
            rg_dur(b[4], sizeof b[4], fp_json_num(t, "drop_all", 0)),
            rg_dur(b[5], sizeof b[5], fp_json_num(t, "dropavg", 0)), state);
}

static void render_gilstat_report(FILE *out, const cJSON *m)
{
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(m, "total");
    time_t now = time(NULL);
    struct tm tm;
    char clock[16];
    strftime(clock, sizeof clock, "%H:%M:%S", localtime_r(&now, &tm));
    fprintf(out, "\ngilstat #%.0f at %s: %.2f s, the GIL was held %.1f%% of the time\n",
            fp_json_num(m, "seq", 0), clock, fp_json_num(m, "window_ms", 0) / 1e3,
            fp_json_num(total, "hold_pct", 0));
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(m, "threads");
    if (cJSON_GetArraySize(threads) == 0) {
        fputs("  (no thread took or released the GIL in this window)\n", out);
    } else {
        int width = 15;
        const cJSON *t;
        cJSON_ArrayForEach(t, threads)
        {
            int n = (int)strlen(fp_json_str(t, "name", ""));
            if (n > width) width = n < RENDER_GILSTAT_NAME_MAX ? n : RENDER_GILSTAT_NAME_MAX;
        }
        fprintf(out, "  %-8s %-*s %8s %9s %9s %7s %9s %9s %8s %9s %9s  %s\n", "TID", width, "NAME",
                "TAKECNT", "HOLD_ALL", "HOLDAVG", "HOLD%", "TAKE_ALL", "TAKEAVG", "DROPCNT",
                "DROP_ALL", "DROPAVG", "NOW");
        cJSON_ArrayForEach(t, threads)
        {
            render_gilstat_row(out, t, width);
        }
    }
    double lost = fp_json_num(m, "lost", 0), unmatched = fp_json_num(total, "unmatched", 0);
    if (lost > 0)
        fprintf(out, "  ! %.0f events lost (the ring buffer was full): this window is incomplete\n",
                lost);
    if (unmatched > 0)
        fprintf(out, "  ! %.0f events did not match their thread's state (not counted)\n",
                unmatched);
}

static void render_gilstat_threshold(FILE *out, const cJSON *m)
{
    bool hold = strcmp(fp_json_str(m, "kind", ""), "hold") == 0;
    bool ended = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "ended"));
    char d[24];
    bool at_least = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "at_least"));
    fprintf(out, "\ngilstat: thread %.0f (%s) %s the GIL for %s%s%s (%sover %g ms)\n",
            fp_json_num(m, "tid", 0), fp_json_str(m, "name", "?"),
            hold ? (ended ? "held" : "has been holding")
                 : (ended ? "waited for" : "has been waiting for"),
            at_least ? "at least " : "", rg_dur(d, sizeof d, fp_json_num(m, "ms", 0) * 1e6),
            at_least || ended ? "" : " so far", at_least ? "since before gilstat on; " : "",
            fp_json_num(m, "threshold_ms", 0));
    const cJSON *frames = cJSON_GetObjectItemCaseSensitive(m, "stack");
    if (!cJSON_IsArray(frames)) {
        fprintf(out, "  (%s)\n", fp_json_str(m, "stack_note", "stack unavailable"));
        return;
    }
    fprintf(out, "  stack, %s (most recent call last):\n", fp_json_str(m, "stack_note", ""));
    const cJSON *f;
    cJSON_ArrayForEach(f, frames)
    {
        fprintf(out, "    File \"%s\", line %.0f, in %s\n", fp_json_str(f, "file", "?"),
                fp_json_num(f, "line", 0), fp_json_str(f, "function", "?"));
        const char *src = fp_json_str(f, "source", "");
        if (src[0]) fprintf(out, "      %s\n", src);
    }
}

static void render_gilstat_stopped(FILE *out, const cJSON *m)
{
    double lost = fp_json_num(m, "lost", 0);
    fprintf(out, "gilstat off (%s): %.0f events in %.1f s, ", fp_json_str(m, "reason", "?"),
            fp_json_num(m, "events", 0), fp_json_num(m, "duration_s", 0));
    if (lost > 0)
        fprintf(out, "%.0f lost", lost);
    else
        fputs("none lost", out);
    fputs("; every probe removed\n", out);
}

void render_gilstat(FILE *out, const char *method, const cJSON *model)
{
    if (strcmp(method, FP_NOTE_GILSTAT_STARTED) == 0)
        render_gilstat_started(out, model);
    else if (strcmp(method, FP_NOTE_GILSTAT_REPORT) == 0)
        render_gilstat_report(out, model);
    else if (strcmp(method, FP_NOTE_GILSTAT_THRESHOLD) == 0)
        render_gilstat_threshold(out, model);
    else if (strcmp(method, FP_NOTE_GILSTAT_STOPPED) == 0)
        render_gilstat_stopped(out, model);
}
