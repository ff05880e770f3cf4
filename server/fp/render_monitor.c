/* Human renderers for monitor: what is monitored (the start result), a line per function and
 * interval (monitor/report: the figures of that interval; the agent sends those since the start
 * too, for --json and the editor), and the end. */
#include <string.h>

#include "fp_cli.h"
#include "fp_json.h"
#include "fp_notes.h"

void render_monitor_started(FILE *out, const cJSON *result)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(result, "functions"))
    {
        const cJSON *loc = fp_json_get(f, "located");
        if (loc)
            fprintf(out, "monitoring %s (%s, %s:%.0f) every %g s; Ctrl-C stops\n",
                    fp_json_str(loc, "qualname", "?"), fp_json_str(loc, "kind", "?"),
                    fp_json_str(loc, "file", "?"), fp_json_num(loc, "line", 0),
                    fp_json_num(result, "interval_s", 0));
        else
            fprintf(out, "cannot monitor function %.0f: %s\n", fp_json_num(f, "key", 0),
                    fp_json_str(fp_json_get(f, "error"), "message", "?"));
    }
    fprintf(out, "%-23s %-28s %8s %8s %6s %10s %10s %10s %10s\n", "TIME", "FUNCTION", "CALLS",
            "RATE/s", "ERRORS", "MEAN", "P50", "P95", "MAX");
}

static void render_monitor_ms(FILE *out, double ms)
{
    char buf[32];
    if (ms < 1)
        snprintf(buf, sizeof buf, "%.1f us", ms * 1000);
    else
        snprintf(buf, sizeof buf, "%.2f ms", ms);
    fprintf(out, " %10s", buf);
}

void render_monitor_report(FILE *out, const cJSON *report)
{
    double interval = fp_json_num(report, "interval_s", 0);
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(report, "functions"))
    {
        const cJSON *iv = fp_json_get(f, "interval");
        double calls = fp_json_num(iv, "calls", 0);
        render_epoch(out, fp_json_num(report, "t", 0));
        char name[64];
        fprintf(out, " %-28s %8.0f %8.1f %6.0f",
                render_oneline(name, sizeof name, fp_json_str(f, "qualname", "?")), calls,
                interval > 0 ? calls / interval : 0, fp_json_num(iv, "errors", 0));
        render_monitor_ms(out, calls > 0 ? fp_json_num(iv, "total_ms", 0) / calls : 0);
        render_monitor_ms(out, fp_json_num(iv, "p50_ms", 0));
        render_monitor_ms(out, fp_json_num(iv, "p95_ms", 0));
        render_monitor_ms(out, fp_json_num(iv, "max_ms", 0));
        fputc('\n', out);
    }
}

void render_monitor_end(FILE *out, const cJSON *end)
{
    fprintf(out, "monitor ended (%s) after %.0f report%s", fp_json_str(end, "reason", "?"),
            fp_json_num(end, "reports", 0), fp_json_num(end, "reports", 0) == 1 ? "" : "s");
    const cJSON *f;
    cJSON_ArrayForEach(f, fp_json_get(end, "functions"))
    {
        fprintf(out, "; %.0f calls, %.0f errors", fp_json_num(f, "calls", 0),
                fp_json_num(f, "errors", 0));
    }
    if (fp_json_num(end, "dropped", 0) > 0)
        fprintf(out, "; %.0f reports dropped (the client did not keep up)",
                fp_json_num(end, "dropped", 0));
    fputc('\n', out);
}
