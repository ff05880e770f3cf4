/* Human renderers for mem: the summary by type (with the process's and the interpreter's
 * figures), mem diff's start, progress and end (by type, or by line with --traces), mem top
 * (tracemalloc, by line with a short traceback) and mem off. They read the models of
 * protocol/methods.md (mem.*); --json prints those models instead. */
#include "fp_cli.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

static const char *rm_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double rm_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool rm_true(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* "1,234,567" (sign when asked), into buf. */
static const char *rm_count(char *buf, size_t size, double v, bool sign)
{
    char digits[32];
    long long n = (long long)llround(fabs(v));
    snprintf(digits, sizeof digits, "%lld", n);
    size_t len = strlen(digits), o = 0;
    if (v < 0 || (sign && v > 0)) buf[o++] = v < 0 ? '-' : '+';
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* "512 B", "4.6 KiB", "1.2 GiB" (sign when asked), into buf. */
static const char *rm_size(char *buf, size_t size, double bytes, bool sign)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = fabs(bytes);
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    const char *s = bytes < 0 ? "-" : (sign && bytes > 0 ? "+" : "");
    if (u == 0)
        snprintf(buf, size, "%s%.0f B", s, v);
    else
        snprintf(buf, size, "%s%.1f %s", s, v, units[u]);
    return buf;
}

/* ---- tracked objects by type */

static void rm_type_rows(FILE *out, const cJSON *rows, bool sign)
{
    fprintf(out, "%14s %12s  %s\n", "COUNT", "SIZE", "TYPE");
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        char c[32], sz[32];
        fprintf(out, "%14s %12s  %s\n", rm_count(c, sizeof c, rm_num(row, "count", 0), sign),
                rm_size(sz, sizeof sz, rm_num(row, "size", 0), sign), rm_str(row, "type", "?"));
    }
}

/* "5,000,000 tracked objects examined in 1.23 s" or the partial-coverage sentence. */
static void rm_coverage(FILE *out, const cJSON *m, const char *what)
{
    char a[32], b[32];
    double objects = rm_num(m, "objects", 0);
    if (rm_true(m, "complete")) {
        fprintf(out, "%s: all %s tracked objects examined in %.2f s", what,
                rm_count(a, sizeof a, objects, false), rm_num(m, "seconds", 0));
    } else {
        fprintf(out,
                "%s: PARTIAL, the %.1f s budget ran out after %s of the %s tracked objects "
                "(%.1f%%, an even sample); --budget S allows more time",
                what, rm_num(m, "budget_s", 0),
                rm_count(a, sizeof a, rm_num(m, "covered", 0), false),
                rm_count(b, sizeof b, objects, false), rm_num(m, "share", 0) * 100.0);
    }
    const cJSON *untracked = cJSON_GetObjectItemCaseSensitive(m, "untracked_objects");
    if (cJSON_IsNumber(untracked))
        fprintf(out, "; %s untracked objects found through them%s",
                rm_count(a, sizeof a, untracked->valuedouble, false),
                rm_true(m, "untracked_complete") ? "" : " (not all: the budget ran out)");
    fputc('\n', out);
}

static void rm_figures(FILE *out, const cJSON *r)
{
    const cJSON *proc = cJSON_GetObjectItemCaseSensitive(r, "process");
    const cJSON *interp = cJSON_GetObjectItemCaseSensitive(r, "interpreter");
    const cJSON *gc = cJSON_GetObjectItemCaseSensitive(interp, "gc");
    char a[32], b[32];
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(proc, "rss_bytes")))
        fprintf(out, "process: RSS %s (peak %s)\n",
                rm_size(a, sizeof a, rm_num(proc, "rss_bytes", 0), false),
                rm_size(b, sizeof b, rm_num(proc, "rss_peak_bytes", 0), false));
    if (!cJSON_IsObject(interp)) return;
    fprintf(out, "interpreter: %s allocated blocks (sys.getallocatedblocks)",
            rm_count(a, sizeof a, rm_num(interp, "allocated_blocks", 0), false));
    if (cJSON_IsObject(gc)) {
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(gc, "counts");
        const cJSON *thresholds = cJSON_GetObjectItemCaseSensitive(gc, "thresholds");
        fprintf(out, "; gc %s, counts", rm_true(gc, "enabled") ? "enabled" : "DISABLED");
        const cJSON *v;
        int i = 0;
        cJSON_ArrayForEach(v, counts) fprintf(out, "%s%.0f", i++ ? "/" : " ", v->valuedouble);
        fputs(" (thresholds", out);
        i = 0;
        cJSON_ArrayForEach(v, thresholds) fprintf(out, "%s%.0f", i++ ? "/" : " ", v->valuedouble);
        fputs("), collections", out);
        i = 0;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(gc, "generations"))
            fprintf(out, "%s%.0f", i++ ? "/" : " ", rm_num(v, "collections", 0));
        fprintf(out, ", gc.garbage %.0f", rm_num(gc, "garbage", 0));
    }
    fputc('\n', out);
}

static void rm_summary(FILE *out, const cJSON *r)
{
    char a[32], b[32];
    fprintf(out,
            "live objects by type, %s first (sizes are shallow: each object itself, not what "
            "it refers to)%s\n",
            strcmp(rm_str(r, "order", "descending"), "ascending") == 0 ? "smallest" : "largest",
            rm_true(r, "untracked") ? ""
                                    : "; objects the garbage collector does not track (str, int, "
                                      "float, bytes...) are not counted: --all adds them");
    rm_type_rows(out, cJSON_GetObjectItemCaseSensitive(r, "rows"), false);
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(r, "total");
    fprintf(out, "total: %s objects, %s, in %.0f types (%d shown)\n",
            rm_count(a, sizeof a, rm_num(total, "count", 0), false),
            rm_size(b, sizeof b, rm_num(total, "size", 0), false), rm_num(r, "types", 0),
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "rows")));
    rm_coverage(out, r, "coverage");
    rm_figures(out, r);
}

/* ---- tracemalloc rows: size, count, file:line, source, then the traceback */

static void rm_tracemalloc_note(FILE *out, const cJSON *t)
{
    if (!cJSON_IsObject(t)) return;
    const char *note = rm_str(t, "note", NULL);
    if (note) fprintf(out, "tracemalloc: %s\n", note);
    const char *tb = rm_str(t, "traceback_note", NULL);
    if (tb) fprintf(out, "tracemalloc: %s\n", tb);
}

static void rm_line_rows(FILE *out, const cJSON *rows, bool sign)
{
    fprintf(out, "%12s %10s  %s\n", "SIZE", "COUNT", "WHERE");
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        char c[32], sz[32];
        fprintf(out, "%12s %10s  %s:%.0f", rm_size(sz, sizeof sz, rm_num(row, "size", 0), sign),
                rm_count(c, sizeof c, rm_num(row, "count", 0), sign), rm_str(row, "file", "?"),
                rm_num(row, "line", 0));
        const char *src = rm_str(row, "source", "");
        if (src[0]) fprintf(out, "  %s", src);
        fputc('\n', out);
        const cJSON *frames = cJSON_GetObjectItemCaseSensitive(row, "traceback");
        if (cJSON_GetArraySize(frames) <= 1) continue;
        const cJSON *f;
        cJSON_ArrayForEach(f, frames)
        {
            fprintf(out, "%26s%s:%.0f", "", rm_str(f, "file", "?"), rm_num(f, "line", 0));
            const char *fs = rm_str(f, "source", "");
            if (fs[0]) fprintf(out, "  %s", fs);
            fputc('\n', out);
        }
    }
}

static void rm_top(FILE *out, const cJSON *r)
{
    char a[32], b[32], c[32];
    rm_tracemalloc_note(out, cJSON_GetObjectItemCaseSensitive(r, "tracemalloc"));
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(r, "total");
    fprintf(out,
            "memory allocated now, by the line that allocated it (%d of %.0f lines; traced %s, "
            "peak %s; tracemalloc itself uses %s):\n",
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r, "top")), rm_num(r, "lines", 0),
            rm_size(a, sizeof a, rm_num(total, "size", 0), false),
            rm_size(b, sizeof b, rm_num(r, "traced_peak_bytes", 0), false),
            rm_size(c, sizeof c, rm_num(r, "tracemalloc_overhead_bytes", 0), false));
    rm_line_rows(out, cJSON_GetObjectItemCaseSensitive(r, "top"), false);
    fputs("(mem off stops tracemalloc if fp started it)\n", out);
}

/* ---- mem diff: start, progress, end */

static bool rm_progress_shown; /* a progress line without its newline is on the terminal */

static void rm_end_progress(FILE *out)
{
    if (!rm_progress_shown) return;
    fputs("\r\033[K", out);
    rm_progress_shown = false;
}

static void rm_diff_started(FILE *out, const cJSON *r)
{
    const cJSON *first = cJSON_GetObjectItemCaseSensitive(r, "first");
    if (rm_true(r, "traces")) {
        rm_tracemalloc_note(out, cJSON_GetObjectItemCaseSensitive(first, "tracemalloc"));
        fprintf(out,
                "first tracemalloc snapshot taken (%.0f traces); the second in %g s (Ctrl-C "
                "stops)\n",
                rm_num(first, "traces", 0), rm_num(r, "interval_s", 0));
        return;
    }
    rm_coverage(out, first, "first snapshot");
    fprintf(out, "the second in %g s (Ctrl-C stops)\n", rm_num(r, "interval_s", 0));
}

static void rm_diff_progress(FILE *out, const cJSON *p)
{
    double elapsed = rm_num(p, "elapsed_s", 0), interval = rm_num(p, "interval_s", 0);
    if (isatty(fileno(out))) {
        fprintf(out, "\r\033[Kwaiting: %.0f s of %g s", elapsed, interval);
        rm_progress_shown = true;
    } else {
        fprintf(out, "waiting: %.0f s of %g s\n", elapsed, interval);
    }
}

static void rm_diff_end(FILE *out, const cJSON *e)
{
    rm_end_progress(out);
    const char *reason = rm_str(e, "reason", "?");
    if (strcmp(reason, "done") != 0) {
        const char *error = rm_str(e, "error", NULL);
        fprintf(out, "mem diff ended before its second snapshot: %s%s%s\n",
                strcmp(reason, "stopped") == 0    ? "stopped"
                : strcmp(reason, "detached") == 0 ? "the client detached"
                                                  : reason,
                error ? ": " : "", error ? error : "");
        return;
    }
    char a[32], b[32];
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(e, "rows");
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(e, "total");
    bool ascending = strcmp(rm_str(e, "order", "descending"), "ascending") == 0;
    if (rm_true(e, "traces")) {
        rm_tracemalloc_note(out, cJSON_GetObjectItemCaseSensitive(e, "tracemalloc"));
        fprintf(out,
                "change of the traced memory over %.1f s, by line, %s first (%d of %.0f lines "
                "that changed; in all %s in %s blocks):\n",
                rm_num(e, "elapsed_s", 0), ascending ? "shrink" : "growth",
                cJSON_GetArraySize(rows), rm_num(e, "changed_lines", 0),
                rm_size(a, sizeof a, rm_num(total, "size", 0), true),
                rm_count(b, sizeof b, rm_num(total, "count", 0), true));
        rm_line_rows(out, rows, true);
        return;
    }
    fprintf(out,
            "change over %.1f s by type, %s first (%d of %.0f types that changed; in all %s "
            "objects, %s)%s:\n",
            rm_num(e, "elapsed_s", 0), ascending ? "shrink" : "growth", cJSON_GetArraySize(rows),
            rm_num(e, "changed_types", 0), rm_count(a, sizeof a, rm_num(total, "count", 0), true),
            rm_size(b, sizeof b, rm_num(total, "size", 0), true),
            rm_true(e, "estimated") ? " ESTIMATED: a snapshot was partial, both are scaled to the "
                                      "whole"
                                    : "");
    if (cJSON_GetArraySize(rows) == 0)
        fputs("  (no type changed)\n", out);
    else
        rm_type_rows(out, rows, true);
    rm_coverage(out, cJSON_GetObjectItemCaseSensitive(e, "after"), "second snapshot");
}

/* ---- dispatch */

void render_mem_result(FILE *out, const char *method, const cJSON *r)
{
    if (strcmp(method, "mem.summary") == 0)
        rm_summary(out, r);
    else if (strcmp(method, "mem.diff") == 0)
        rm_diff_started(out, r);
    else if (strcmp(method, "mem.top") == 0)
        rm_top(out, r);
    else
        fprintf(out, "%s\n", rm_str(r, "message", "done"));
}

void render_mem_notification(FILE *out, const char *method, const cJSON *params)
{
    if (strcmp(method, "mem/progress") == 0)
        rm_diff_progress(out, params);
    else
        rm_diff_end(out, params);
}
