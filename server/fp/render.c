/* Human renderers: one per command model (status, module, getglobal, stack, ...). They only
 * read the model the agent produced; --json prints that same model instead. Fields a renderer
 * does not know are shown generically, so a newer agent never loses information. */
#include "fp_cli.h"
#include "fp_json.h"
#include "fp_models.h"
#include "fp_notes.h"

#include <stdlib.h>
#include <string.h>

/* Writes text, indenting every line after the first by indent spaces. */
static void render_indented(FILE *out, const char *text, int indent)
{
    for (const char *p = text; *p; p++) {
        fputc(*p, out);
        if (*p == '\n' && p[1]) fprintf(out, "%*s", indent, "");
    }
}

static void render_duration(FILE *out, double seconds)
{
    if (seconds < 60)
        fprintf(out, "%.1f s", seconds);
    else if (seconds < 3600)
        fprintf(out, "%d min %d s", (int)seconds / 60, (int)seconds % 60);
    else
        fprintf(out, "%d h %d min", (int)seconds / 3600, ((int)seconds % 3600) / 60);
}

/* Any value, compactly, for fields without a dedicated renderer. */
static void render_generic(FILE *out, const cJSON *v)
{
    if (cJSON_IsString(v)) {
        fputs(v->valuestring, out);
        return;
    }
    char *text = cJSON_PrintUnformatted(v);
    if (text) fputs(text, out);
    cJSON_free(text);
}

/* ---- status */

static void render_status(FILE *out, const cJSON *r)
{
    static const char *const known[] = {"pid",      "agent_version", "python_version", "clients",
                                        "uptime_s", "python_ready",  "gil_wait_ms",    "pending"};
    fprintf(out, "agent in process %.0f\n", fp_json_num(r, "pid", 0));
    fprintf(out, "  %-14s %s\n", "Python", fp_json_str(r, "python_version", "?"));
    fprintf(out, "  %-14s %s\n", "agent", fp_json_str(r, "agent_version", "?"));
    fprintf(out, "  %-14s ", "uptime");
    render_duration(out, fp_json_num(r, "uptime_s", 0));
    fprintf(out, "\n  %-14s %.0f\n", "clients", fp_json_num(r, "clients", 0));
    fprintf(out, "  %-14s %s\n", "Python side",
            fp_json_bool(r, "python_ready") ? "ready" : "not loaded yet (loads on first use)");
    double gil = fp_json_num(r, "gil_wait_ms", 0);
    if (gil > 0)
        fprintf(out, "  %-14s %.0f ms: another thread holds the GIL\n", "GIL wait", gil);
    else
        fprintf(out, "  %-14s none\n", "GIL wait");
    fprintf(out, "  %-14s %.0f\n", "pending", fp_json_num(r, "pending", 0));
    const cJSON *it;
    cJSON_ArrayForEach(it, r)
    {
        bool seen = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            seen = seen || strcmp(it->string, known[i]) == 0;
        if (seen) continue;
        fprintf(out, "  %-14s ", it->string);
        render_generic(out, it);
        fputc('\n', out);
    }
}

/* ---- module */

static void render_module(FILE *out, const cJSON *r)
{
    fprintf(out, "%s is loaded as module '%s'\n", fp_json_str(r, "path", "?"),
            fp_json_str(r, "module", "?"));
    const cJSON *others = cJSON_GetObjectItemCaseSensitive(r, "others");
    if (!cJSON_IsArray(others) || cJSON_GetArraySize(others) == 0) return;
    fprintf(out, "  also loaded as ");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, others)
    {
        if (cJSON_IsString(it)) fprintf(out, "%s'%s'", i++ ? ", " : "", it->valuestring);
    }
    fputc('\n', out);
}

/* ---- getglobal: the value tree */

typedef struct render_tree {
    bool expandable_seen;
} render_tree;

static void render_node(FILE *out, const char *name, const cJSON *v, int indent, render_tree *t)
{
    fprintf(out, "%*s%s: %s = ", indent, "", name, fp_json_str(v, "type", "?"));
    render_indented(out, fp_json_str(v, "repr", ""), indent + 4);
    if (fp_json_bool(v, "repr_truncated")) fputs(" (cut; -r shows all)", out);
    if (fp_json_bool(v, "expandable")) {
        fputs(" ...", out);
        t->expandable_seen = true;
    }
    fputc('\n', out);
    const cJSON *children = cJSON_GetObjectItemCaseSensitive(v, "children");
    const cJSON *child;
    cJSON_ArrayForEach(child, children)
    {
        render_node(out, fp_json_str(child, "name", "?"),
                    cJSON_GetObjectItemCaseSensitive(child, "value"), indent + 2, t);
    }
    double omitted = fp_json_num(v, "omitted", 0);
    if (omitted > 0) fprintf(out, "%*s(%.0f more, use -v)\n", indent + 2, "", omitted);
}

static void render_getglobal(FILE *out, const fp_cmd_parsed *p, const cJSON *r)
{
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(r, "value");
    const cJSON *params = p ? p->params : NULL;
    bool raw = fp_json_bool(params, "raw");
    if (raw || !cJSON_IsObject(value)) {
        fputs(fp_json_str(value, "repr", ""), out);
        fputc('\n', out);
        return;
    }
    /* The root is named as the user asked for it: the expression, or [Class.]field. */
    char label[512];
    const char *expr = fp_json_str(r, "expr", NULL);
    const char *cls = fp_json_str(r, "class", NULL);
    const char *field = fp_json_str(r, "field", "value");
    if (expr)
        snprintf(label, sizeof label, "%s", expr);
    else if (cls)
        snprintf(label, sizeof label, "%s.%s", cls, field);
    else
        snprintf(label, sizeof label, "%s", field);
    render_tree t = {0};
    render_node(out, label, value, 0, &t);
    int depth = (int)fp_json_num(params, "depth", 1);
    if (t.expandable_seen && depth < 4)
        fprintf(out, "(... has more inside: -x %d shows one level deeper)\n", depth + 1);
}

/* ---- dispatch */

void render_result(FILE *out, const fp_cmd_parsed *p, const cJSON *result)
{
    switch (p->cmd->id) {
    case FP_CMD_STATUS:
        render_status(out, result);
        break;
    case FP_CMD_MODULE:
        render_module(out, result);
        break;
    case FP_CMD_GETGLOBAL:
        render_getglobal(out, p, result);
        break;
    case FP_CMD_STACK:
        stack_render(out, result); /* stack.c */
        break;
    case FP_CMD_SHUTDOWN:
        fputs("the agent was shut down; the next fp PID starts it again\n", out);
        break;
    case FP_CMD_WATCH:
        render_watch_started(out, result); /* render_watch.c */
        break;
    case FP_CMD_TT:
        render_tt_result(out, p->method ? p->method : p->cmd->method, result); /* render_tt.c */
        break;
    case FP_CMD_TRACE:
        render_trace_result(out, result); /* render_trace.c */
        break;
    case FP_CMD_PERF:
        render_perf(out, result); /* render_perf.c */
        break;
    case FP_CMD_MONITOR:
        render_monitor_started(out, result); /* render_monitor.c */
        break;
    case FP_CMD_RELOAD:
        render_reload(out, result); /* render_reload.c */
        break;
    case FP_CMD_MEM:
        render_mem_result(out, p->method ? p->method : p->cmd->method, result); /* render_mem.c */
        break;
    case FP_CMD_VMTOOL:
        render_vmtool_result(out, p->method ? p->method : p->cmd->method, result);
        break;
    case FP_CMD_TORCH:
        render_torch_result(out, p->method ? p->method : p->cmd->method,
                            result); /* render_torch.c */
        break;
    default:
        if (!cJSON_IsNull(result)) {
            char *text = cJSON_Print(result);
            if (text) fprintf(out, "%s\n", text);
            cJSON_free(text);
        }
        break;
    }
}

void render_notification(FILE *out, const fp_cmd_parsed *p, const char *method, const cJSON *params)
{
    /* watch and tt (render_watch.c, render_tt.c) */
    if (strcmp(method, FP_NOTE_WATCH_EVENT) == 0) {
        render_watch_event(out, params);
        return;
    }
    if (strcmp(method, FP_NOTE_WATCH_END) == 0) {
        render_watch_end(out, params);
        return;
    }
    if (strcmp(method, FP_NOTE_TT_RECORD) == 0) {
        render_tt_record(out, params);
        return;
    }
    if (strcmp(method, FP_NOTE_TT_END) == 0) {
        render_tt_end(out, params);
        return;
    }
    if (strncmp(method, "torch/", 6) == 0) { /* render_torch.c */
        render_torch_notification(out, method, params);
        return;
    }
    if (strncmp(method, "mem/", 4) == 0) { /* render_mem.c */
        render_mem_notification(out, method, params);
        return;
    }
    if (strncmp(method, FP_NOTE_TRACE_PREFIX, strlen(FP_NOTE_TRACE_PREFIX)) == 0) {
        render_trace_notification(out, method, params); /* render_trace.c */
        return;
    }
    if (strcmp(method, FP_NOTE_MONITOR_REPORT) == 0) {
        render_monitor_report(out, params); /* render_monitor.c */
        return;
    }
    if (strcmp(method, FP_NOTE_MONITOR_END) == 0) {
        render_monitor_end(out, params);
        return;
    }
    if (p->cmd->id == FP_CMD_GILSTAT) {
        render_gilstat(out, method, params); /* render_gilstat.c */
        return;
    }
    /* Without a renderer, show the raw report rather than nothing. */
    fprintf(out, "%s: ", method);
    if (params) render_generic(out, params);
    fputc('\n', out);
}

/* ---- the process list */

const char *render_oneline(char *buf, size_t size, const char *text)
{
    /* argv may hold newlines (python -c 'multi\nline'): keep each process on one line. */
    size_t i = 0;
    for (; text[i] && i + 1 < size; i++)
        buf[i] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? ' ' : text[i];
    buf[i] = '\0';
    return buf;
}

/* How many of targets[i]'s ancestors are listed (the list has children after their parent). */
static int render_depth(const fp_target *targets, int i)
{
    int depth = 0;
    for (int ppid = targets[i].ppid, guard = 0; guard < 16; guard++) {
        int parent = -1;
        for (int j = 0; j < i && parent < 0; j++)
            if (targets[j].pid == ppid) parent = j;
        if (parent < 0) break;
        depth++;
        ppid = targets[parent].ppid;
    }
    return depth;
}

void render_processes(FILE *out, const fp_target *targets, int n)
{
    fprintf(out, "%7s %7s  %-10s %-8s %s\n", "PID", "PPID", "USER", "PYTHON", "COMMAND");
    for (int i = 0; i < n; i++) {
        const fp_target *t = &targets[i];
        char user[64];
        char cmd[sizeof t->cmdline];
        /* A child of a listed process (a server's worker) is drawn under it. */
        int depth = render_depth(targets, i);
        fprintf(out, "%7d %7d  %-10s %-8s %*s%s%s\n", t->pid, t->ppid,
                fp_model_user(t->uid, user, sizeof user), t->py_version[0] ? t->py_version : "?",
                depth > 1 ? 2 * (depth - 1) : 0, "", depth ? "\u2514 " : "",
                render_oneline(cmd, sizeof cmd, t->cmdline[0] ? t->cmdline : t->exe));
    }
}
