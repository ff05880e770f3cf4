/* The human rendering of perf's summary model (fp_profile_summary_model plus the output
 * file): what was sampled and how well, where the profile was written, the top functions by
 * self and by total samples, and the hottest lines. */
#include <string.h>

#include "fp_cli.h"

static double render_perf_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0.0;
}

static const char *render_perf_str(const cJSON *o, const char *key)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, key));
    return s ? s : "";
}

/* The last path component, for the tables (the JSON keeps the full path). */
static const char *render_perf_base(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash && slash[1] ? slash + 1 : path;
}

static void render_perf_header(FILE *out, const cJSON *m)
{
    fprintf(out, "perf: %.0f samples of %.0f thread%s of process %.0f (Python %s) in %.1f s\n",
            render_perf_num(m, "samples"), render_perf_num(m, "threads"),
            render_perf_num(m, "threads") == 1 ? "" : "s", render_perf_num(m, "pid"),
            render_perf_str(m, "python"), render_perf_num(m, "duration_s"));
    fprintf(out, "      rate %.0f Hz requested, %.1f Hz achieved (%.0f ticks); %.0f lost",
            render_perf_num(m, "rate_hz"), render_perf_num(m, "achieved_hz"),
            render_perf_num(m, "ticks"), render_perf_num(m, "lost"));
    const char *opts[3] = {0};
    int n = 0;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "native"))) opts[n++] = "--native";
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "gil"))) opts[n++] = "--gil";
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "idle"))) opts[n++] = "--idle";
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%s", i ? " " : "; ", opts[i]);
    fputc('\n', out);
    const char *stopped = render_perf_str(m, "stopped_by");
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
        const char *kind = render_perf_str(f, "kind");
        char where[512];
        if (strcmp(kind, "python") == 0)
            snprintf(where, sizeof where, "%s:%.0f", render_perf_base(render_perf_str(f, "file")),
                     render_perf_num(f, "line"));
        else
            snprintf(where, sizeof where, "%s", render_perf_base(render_perf_str(f, "file")));
        fprintf(out, "  %5.1f%%  %5.1f%%  %s (%s)\n", render_perf_num(f, "self_pct"),
                render_perf_num(f, "total_pct"), render_perf_str(f, "function"), where);
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
        if (n++ == max || render_perf_num(l, "self") == 0) break;
        fprintf(out, "  %5.1f%%  %5.1f%%  %s:%.0f in %s\n", render_perf_num(l, "self_pct"),
                render_perf_num(l, "total_pct"), render_perf_base(render_perf_str(l, "file")),
                render_perf_num(l, "line"), render_perf_str(l, "function"));
    }
}

void render_perf(FILE *out, const cJSON *model)
{
    render_perf_header(out, model);
    const char *file = render_perf_str(model, "file");
    if (file[0]) fprintf(out, "      %s written to %s\n", render_perf_str(model, "format"), file);
    if (render_perf_num(model, "samples") == 0) {
        fprintf(out, "\nNo samples: no thread ran Python code while it was sampled. Idle threads "
                     "are left out by default: --idle includes them.\n");
        return;
    }
    render_perf_functions(out, model, "top_self", "Top functions by self samples (running)");
    render_perf_functions(out, model, "top_total", "Top functions by total samples (on the stack)");
    render_perf_lines(out, model, 10);
}
