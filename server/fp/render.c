/* Human renderers: one per command model (status, module, getglobal, stack, ...). They only
 * read the model the agent produced; --json prints that same model instead. Fields a renderer
 * does not know are shown generically, so a newer agent never loses information. */
#include "fp_cli.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>

static const char *render_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double render_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool render_bool(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

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
    fprintf(out, "agent in process %.0f\n", render_num(r, "pid", 0));
    fprintf(out, "  %-14s %s\n", "Python", render_str(r, "python_version", "?"));
    fprintf(out, "  %-14s %s\n", "agent", render_str(r, "agent_version", "?"));
    fprintf(out, "  %-14s ", "uptime");
    render_duration(out, render_num(r, "uptime_s", 0));
    fprintf(out, "\n  %-14s %.0f\n", "clients", render_num(r, "clients", 0));
    fprintf(out, "  %-14s %s\n", "Python side",
            render_bool(r, "python_ready") ? "ready" : "not loaded yet (loads on first use)");
    double gil = render_num(r, "gil_wait_ms", 0);
    if (gil > 0)
        fprintf(out, "  %-14s %.0f ms: another thread holds the GIL\n", "GIL wait", gil);
    else
        fprintf(out, "  %-14s none\n", "GIL wait");
    fprintf(out, "  %-14s %.0f\n", "pending", render_num(r, "pending", 0));
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
    fprintf(out, "%s is loaded as module '%s'\n", render_str(r, "path", "?"),
            render_str(r, "module", "?"));
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
    fprintf(out, "%*s%s: %s = ", indent, "", name, render_str(v, "type", "?"));
    render_indented(out, render_str(v, "repr", ""), indent + 4);
    if (render_bool(v, "repr_truncated")) fputs(" (cut; -r shows all)", out);
    if (render_bool(v, "expandable")) {
        fputs(" ...", out);
        t->expandable_seen = true;
    }
    fputc('\n', out);
    const cJSON *children = cJSON_GetObjectItemCaseSensitive(v, "children");
    const cJSON *child;
    cJSON_ArrayForEach(child, children)
    {
        render_node(out, render_str(child, "name", "?"),
                    cJSON_GetObjectItemCaseSensitive(child, "value"), indent + 2, t);
    }
    double omitted = render_num(v, "omitted", 0);
    if (omitted > 0) fprintf(out, "%*s(%.0f more, use -v)\n", indent + 2, "", omitted);
}

static void render_getglobal(FILE *out, const fp_cmd_parsed *p, const cJSON *r)
{
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(r, "value");
    const cJSON *params = p ? p->params : NULL;
    bool raw = render_bool(params, "raw");
    if (raw || !cJSON_IsObject(value)) {
        fputs(render_str(value, "repr", ""), out);
        fputc('\n', out);
        return;
    }
    /* The root is named as the user asked for it: the expression, or [Class.]field. */
    char label[512];
    const char *expr = render_str(r, "expr", NULL);
    const char *cls = render_str(r, "class", NULL);
    const char *field = render_str(r, "field", "value");
    if (expr)
        snprintf(label, sizeof label, "%s", expr);
    else if (cls)
        snprintf(label, sizeof label, "%s.%s", cls, field);
    else
        snprintf(label, sizeof label, "%s", field);
    render_tree t = {0};
    render_node(out, label, value, 0, &t);
    int depth = (int)render_num(params, "depth", 1);
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
    if (strcmp(method, "watch/event") == 0) {
        render_watch_event(out, params);
        return;
    }
    if (strcmp(method, "watch/end") == 0) {
        render_watch_end(out, params);
        return;
    }
    if (strcmp(method, "tt/record") == 0) {
        render_tt_record(out, params);
        return;
    }
    if (strcmp(method, "tt/end") == 0) {
        render_tt_end(out, params);
        return;
    }
    if (strncmp(method, "torch/", 6) == 0) { /* render_torch.c */
        render_torch_notification(out, method, params);
        return;
    }
    if (strncmp(method, "trace/", 6) == 0) { /* render_trace.c */
        render_trace_notification(out, method, params);
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

static const char *render_user(uid_t uid, char *buf, size_t size)
{
    struct passwd *pw = getpwuid(uid);
    if (pw && pw->pw_name)
        snprintf(buf, size, "%s", pw->pw_name);
    else
        snprintf(buf, size, "%u", (unsigned)uid);
    return buf;
}

void render_processes(FILE *out, const fp_target *targets, int n)
{
    fprintf(out, "%7s  %-10s %-8s %s\n", "PID", "USER", "PYTHON", "COMMAND");
    for (int i = 0; i < n; i++) {
        const fp_target *t = &targets[i];
        char user[64];
        char cmd[sizeof t->cmdline];
        fprintf(out, "%7d  %-10s %-8s %s\n", t->pid, render_user(t->uid, user, sizeof user),
                t->py_version[0] ? t->py_version : "?",
                render_oneline(cmd, sizeof cmd, t->cmdline[0] ? t->cmdline : t->exe));
    }
}

cJSON *render_processes_model(const fp_target *targets, int n)
{
    cJSON *model = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(model, "processes");
    for (int i = 0; i < n; i++) {
        const fp_target *t = &targets[i];
        char user[64];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pid", t->pid);
        cJSON_AddNumberToObject(o, "uid", t->uid);
        cJSON_AddStringToObject(o, "user", render_user(t->uid, user, sizeof user));
        cJSON_AddStringToObject(o, "python_version", t->py_version);
        cJSON_AddStringToObject(o, "exe", t->exe);
        cJSON_AddStringToObject(o, "cmdline", t->cmdline);
        cJSON_AddItemToArray(arr, o);
    }
    return model;
}
