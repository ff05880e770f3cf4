/* The call tree of a trace/event as text (fp_trace_text.h). */
#include "fp_trace_text.h"

#include <stdbool.h>
#include <string.h>

#include "fp_json.h"

/* The branches drawn so far: for each level above, whether a line continues below it. */
#define TRACE_TEXT_MAX_DEPTH 128

typedef struct trace_text_ctx {
    FILE *out;
    char more[TRACE_TEXT_MAX_DEPTH];
} trace_text_ctx;

static void trace_text_prefix(trace_text_ctx *t, int depth, bool last)
{
    for (int i = 1; i < depth && i < TRACE_TEXT_MAX_DEPTH; i++)
        fputs(t->more[i] ? "|   " : "    ", t->out);
    if (depth > 0) fputs(last ? "`---" : "+---", t->out);
}

static void trace_text_hidden(trace_text_ctx *t, const cJSON *hidden, int depth)
{
    double count = fp_json_num(hidden, "count", 0);
    if (count <= 0) return;
    trace_text_prefix(t, depth, true);
    fprintf(t->out, "(%.0f more call%s, %.3f ms, under -i or below -d)\n", count,
            count == 1 ? "" : "s", fp_json_num(hidden, "cost_ms", 0));
}

static void trace_text_node(trace_text_ctx *t, const cJSON *n, int depth, bool last)
{
    trace_text_prefix(t, depth, last);
    if (depth < TRACE_TEXT_MAX_DEPTH) t->more[depth] = !last;
    const char *kind = fp_json_str(n, "kind", "py");
    double count = fp_json_num(n, "count", 1);
    fprintf(t->out, "[%6.2f%% %9.3f ms] ", fp_json_num(n, "pct", 0), fp_json_num(n, "cost_ms", 0));
    if (strcmp(kind, "suspended") == 0) {
        fprintf(t->out, "(suspended: awaiting or yielded%s)\n", count > 1 ? ", several times" : "");
        return;
    }
    fputs(fp_json_str(n, "function", "?"), t->out);
    if (count > 1) fprintf(t->out, " (%.0f calls)", count);
    const char *file = fp_json_str(n, "file", NULL);
    if (file)
        fprintf(t->out, "  %s:%.0f", file, fp_json_num(n, "line", 0));
    else if (strcmp(kind, "c") == 0)
        fputs("  [C]", t->out);
    double call_line = fp_json_num(n, "call_line", 0);
    if (call_line > 0) fprintf(t->out, "  from line %.0f", call_line);
    fputc('\n', t->out);

    const cJSON *children = cJSON_GetObjectItemCaseSensitive(n, "children");
    const cJSON *hidden = cJSON_GetObjectItemCaseSensitive(n, "hidden");
    bool has_hidden = fp_json_num(hidden, "count", 0) > 0;
    int total = cJSON_GetArraySize(children), i = 0;
    const cJSON *child;
    cJSON_ArrayForEach(child, children)
    {
        i++;
        trace_text_node(t, child, depth + 1, i == total && !has_hidden);
    }
    if (has_hidden) trace_text_hidden(t, hidden, depth + 1);
}

void fp_trace_text_tree(FILE *out, const cJSON *node)
{
    trace_text_ctx t = {.out = out};
    trace_text_node(&t, node, 0, true);
}
