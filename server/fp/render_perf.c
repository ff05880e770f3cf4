/* The human rendering of perf's summary model (fp_profile_summary_model plus the output
 * file): what was sampled and how well, where the profile was written, the top functions by
 * self and by total samples, and the hottest lines. */
#include <string.h>

#include "fp_cli.h"
#include "fp_json.h"

/* The last path component, for the tables (the JSON keeps the full path). */
static const char *render_perf_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

static void render_perf_header(FILE *out, const cJSON *m)
{
    fprintf(out, "perf: %.0f samples of %.0f thread%s of process %.0f (Python %s) in %.1f s\n",
            fp_json_num(m, "samples", 0), fp_json_num(m, "threads", 0),
            fp_json_num(m, "threads", 0) == 1 ? "" : "s", fp_json_num(m, "pid", 0),
            fp_json_str(m, "python", ""), fp_json_num(m, "duration_s", 0));
    fprintf(out, "      rate %.0f Hz requested, %.1f Hz achieved (%.0f ticks); %.0f lost",
            fp_json_num(m, "rate_hz", 0), fp_json_num(m, "achieved_hz", 0),
            fp_json_num(m, "ticks", 0), fp_json_num(m, "lost", 0));
    const char *opts[3] = {0};
    int n = 0;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "native"))) opts[n++] = "--native";
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "gil"))) opts[n++] = "--gil";
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "idle"))) opts[n++] = "--idle";
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%s", i ? " " : "; ", opts[i]);
    fputc('\n', out);
    const char *stopped = fp_json_str(m, "stopped_by", "");
    if (stopped[0]) fprintf(out, "      stopped by %s\n", stopped);
}

static void render_perf_functions(FILE *out, const cJSON *m, const char *key, const char *title)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(m, key);
    if (cJSON_GetArraySize(arr) == 0) return;
    fprintf(out, "\n%s\n   self%%  total%%  function\n", title);
    const cJSON *f;
    cJSON_ArrayForEach(f, arr)
    {
        const char *kind = fp_json_str(f, "kind", "");
        char where[512];
        if (strcmp(kind, "python") == 0)
            snprintf(where, sizeof where, "%s:%.0f", render_perf_base(fp_json_str(f, "file", "")),
                     fp_json_num(f, "line", 0));
        else
            snprintf(where, sizeof where, "%s", render_perf_base(fp_json_str(f, "file", "")));
        fprintf(out, "  %5.1f%%  %5.1f%%  %s (%s)\n", fp_json_num(f, "self_pct", 0),
                fp_json_num(f, "total_pct", 0), fp_json_str(f, "function", ""), where);
    }
}

static void render_perf_lines(FILE *out, const cJSON *m, int max)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(m, "lines");
    if (cJSON_GetArraySize(arr) == 0) return;
    fprintf(out, "\nHot lines (self samples)\n   self%%  total%%  line\n");
    int n = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, arr)
    {
        if (n++ == max || fp_json_num(l, "self", 0) == 0) break;
        fprintf(out, "  %5.1f%%  %5.1f%%  %s:%.0f in %s\n", fp_json_num(l, "self_pct", 0),
                fp_json_num(l, "total_pct", 0), render_perf_base(fp_json_str(l, "file", "")),
                fp_json_num(l, "line", 0), fp_json_str(l, "function", ""));
    }
}

void render_perf(FILE *out, const cJSON *model)
{
    render_perf_header(out, model);
    const char *file = fp_json_str(model, "file", "");
    if (file[0]) fprintf(out, "      %s written to %s\n", fp_json_str(model, "format", ""), file);
    if (fp_json_num(model, "samples", 0) == 0) {
        fprintf(out, "\nNo samples: no thread ran Python code while it was sampled. Idle threads "
                     "are left out by default: --idle includes them.\n");
        return;
    }
    render_perf_functions(out, model, "top_self", "Top functions by self samples (running)");
    render_perf_functions(out, model, "top_total", "Top functions by total samples (on the stack)");
    render_perf_lines(out, model, 10);
}
