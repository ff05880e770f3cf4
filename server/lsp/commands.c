/* workspace/executeCommand: every action of fp-lsp is a command, so any LSP client can use it
 * with no code of its own (protocol/lsp.md lists them with their arguments), and fp/status,
 * the notification that tells the client what is attached and what runs. A command's argument
 * is an object (arguments[0]), or for fp.attach a bare pid. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_json.h"
#include "lsp.h"

static void commands_list_processes(const cJSON *id, const cJSON *arg)
{
    (void)arg;
    lsp_rpc_result(id, lsp_procs_list());
}

/* {pid, children} or pid. */
static void commands_attach(const cJSON *id, const cJSON *arg)
{
    const cJSON *pid = cJSON_IsNumber(arg) ? arg : fp_json_get(arg, "pid");
    if (!cJSON_IsNumber(pid) || pid->valuedouble < 1 || pid->valuedouble > 1 << 30) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.attach takes {\"pid\": N, \"children\": bool} or [N]: the process to "
                      "attach to (fp.listProcesses lists them)");
        return;
    }
    lsp_procs_attach(id, (int)pid->valuedouble, fp_json_bool(arg, "children"));
}

static void commands_detach(const cJSON *id, const cJSON *arg)
{
    const cJSON *pid = cJSON_IsNumber(arg) ? arg : fp_json_get(arg, "pid");
    int which = cJSON_IsNumber(pid) ? (int)pid->valuedouble : 0;
    if (which && !lsp_proc_find(which)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "process %d is not attached", which);
        return;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON *gone = cJSON_AddArrayToObject(r, "detached");
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (!p->closing && (!which || p->pid == which || p->parent == which))
            cJSON_AddItemToArray(gone, cJSON_CreateNumber(p->pid));
    }
    lsp_procs_detach(which);
    lsp_lens_changed();
    lsp_diagnostics_publish_all();
    lsp_rpc_result(id, r);
}

static void commands_stop(const cJSON *id, const cJSON *arg)
{
    lsp_target_fn t;
    char err[256];
    if (!lsp_target_fn_from(arg, &t, err, sizeof err)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.stop: %s", err);
        return;
    }
    int watches = lsp_watch_stop(t.path, t.def->qualname);
    int monitors = lsp_monitor_stop(t.path, t.def->qualname);
    int traces = lsp_trace_stop(t.path, t.def->qualname);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "function", t.def->qualname);
    cJSON_AddNumberToObject(r, "watches", watches);
    cJSON_AddNumberToObject(r, "monitors", monitors);
    cJSON_AddNumberToObject(r, "traces", traces);
    lsp_diagnostics_publish(t.doc);
    lsp_lens_changed();
    lsp_status_changed();
    lsp_rpc_result(id, r);
}

static cJSON *commands_status_model(void)
{
    cJSON *s = cJSON_CreateObject();
    cJSON *procs = cJSON_AddArrayToObject(s, "processes");
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (p->closing) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pid", p->pid);
        if (p->parent) cJSON_AddNumberToObject(o, "parent", p->parent);
        cJSON_AddStringToObject(o, "python_version", p->target.py_version);
        cJSON_AddStringToObject(o, "cmdline", p->target.cmdline);
        cJSON_AddItemToArray(procs, o);
    }
    cJSON_AddNumberToObject(s, "monitoring", lsp_monitor_count());
    cJSON_AddNumberToObject(s, "watching", lsp_watch_count());
    cJSON_AddNumberToObject(s, "tracing", lsp_trace_count());
    cJSON_AddBoolToObject(s, "profiling", lsp_profile_running() > 0);
    return s;
}

static void commands_status(const cJSON *id, const cJSON *arg)
{
    (void)arg;
    lsp_rpc_result(id, commands_status_model());
}

void lsp_status_changed(void)
{
    if (lsp.exiting) return;
    lsp_rpc_notify("fp/status", commands_status_model());
}

typedef void (*commands_fn)(const cJSON *id, const cJSON *arg);

static const struct {
    const char *name;
    commands_fn fn;
} commands_table[] = {
    {"fp.listProcesses", commands_list_processes},
    {"fp.attach", commands_attach},
    {"fp.detach", commands_detach},
    {"fp.status", commands_status},
    {"fp.watch", lsp_watch_command},
    {"fp.monitor", lsp_monitor_command},
    {"fp.reload", lsp_reload_command},
    {"fp.stop", commands_stop},
    {"fp.trace", lsp_trace_command},
    {"fp.profile", lsp_profile_command},
    {"fp.profile.stop", lsp_profile_stop_command},
    {"fp.profile.clear", lsp_profile_clear_command},
    {"fp.stack", lsp_stack_command},
    {"fp.stack.clear", lsp_stack_clear_command},
};

cJSON *lsp_commands_list(void)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < sizeof commands_table / sizeof commands_table[0]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(commands_table[i].name));
    return a;
}

void lsp_commands_execute(const cJSON *id, const cJSON *params)
{
    const char *name = fp_json_str(params, "command", NULL);
    const cJSON *args = fp_json_get(params, "arguments");
    if (!name) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "workspace/executeCommand needs a command name");
        return;
    }
    if (args && !cJSON_IsArray(args)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "arguments of %s must be an array", name);
        return;
    }
    const cJSON *arg = cJSON_GetArrayItem(args, 0);
    /* An empty array stands for no argument: Lua clients encode an empty table as []. */
    if (cJSON_IsArray(arg) && cJSON_GetArraySize(arg) == 0) arg = NULL;
    for (size_t i = 0; i < sizeof commands_table / sizeof commands_table[0]; i++) {
        if (strcmp(name, commands_table[i].name) == 0) {
            commands_table[i].fn(id, arg);
            return;
        }
    }
    lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                  "fp-lsp has no command '%s' (see fp.listProcesses, "
                  "fp.attach, fp.watch, fp.monitor, fp.reload, ...)",
                  name);
}

/* ---------------------------------------------------------------------------------------------
 * Where a command acts
 */

bool lsp_target_fn_from(const cJSON *arg, lsp_target_fn *t, char *err, size_t size)
{
    memset(t, 0, sizeof *t);
    /* {uri, line} or LSP's own shape, {textDocument: {uri}, position: {line}} (VS Code's). */
    const char *uri =
        fp_json_str(arg, "uri", fp_json_str(fp_json_get(arg, "textDocument"), "uri", NULL));
    if (!uri) {
        snprintf(err, size, "give {\"uri\": ..., \"line\": N} or {\"uri\": ..., \"function\": Q}");
        return false;
    }
    t->doc = lsp_doc_find(uri);
    if (!t->doc) {
        snprintf(err, size, "%s is not open in the editor (open it first)", uri);
        return false;
    }
    if (!t->doc->path[0]) {
        snprintf(err, size, "%s is not a file: fp maps files to the code a process runs", uri);
        return false;
    }
    snprintf(t->path, sizeof t->path, "%s", t->doc->path);
    const lsp_defs *defs = lsp_doc_defs(t->doc);
    const char *fn = fp_json_str(arg, "function", NULL);
    const cJSON *line = fp_json_get(arg, "line");
    if (!line) line = fp_json_get(fp_json_get(arg, "position"), "line");
    if (fn) {
        t->def = lsp_defs_find(defs, fn);
        if (!t->def) {
            snprintf(err, size, "no function %s in %s", fn, uri);
            return false;
        }
    } else if (cJSON_IsNumber(line)) {
        t->def = lsp_defs_at(defs, (int)line->valuedouble);
        while (t->def && t->def->is_class) { /* a class's own lines: no function there */
            t->def = NULL;
        }
        if (!t->def) {
            snprintf(err, size, "line %d of %s is not inside a function",
                     (int)line->valuedouble + 1, uri);
            return false;
        }
    } else {
        snprintf(err, size, "give the function's \"line\" (0-based) or its \"function\" name");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Commands on several processes
 */

struct lsp_fan {
    cJSON *id;
    char command[32];
    int pending;
    cJSON *result, *ok, *failed;
    fp_error first; /* the first failure, for an answer when nothing succeeded */
};

lsp_fan *lsp_fan_new(const cJSON *id, const char *command)
{
    lsp_fan *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->id = cJSON_Duplicate(id, 1);
    snprintf(f->command, sizeof f->command, "%s", command);
    f->pending = 1;
    f->result = cJSON_CreateObject();
    f->ok = cJSON_AddArrayToObject(f->result, "pids");
    f->failed = cJSON_AddArrayToObject(f->result, "failed");
    return f;
}

void lsp_fan_add(lsp_fan *f)
{
    f->pending++;
}

static void fan_settle(lsp_fan *f)
{
    if (--f->pending > 0) return;
    if (cJSON_GetArraySize(f->ok) == 0 && cJSON_GetArraySize(f->failed) > 0) {
        lsp_rpc_fp_error(f->id, &f->first);
        cJSON_Delete(f->result);
    } else if (cJSON_GetArraySize(f->ok) == 0) {
        fp_error e;
        fp_error_set(&e, FP_E_USAGE, "attach to a process first: fp.attach {\"pid\": N}",
                     "%s: no process is attached", f->command);
        lsp_rpc_fp_error(f->id, &e);
        cJSON_Delete(f->result);
    } else {
        lsp_rpc_result(f->id, f->result);
    }
    cJSON_Delete(f->id);
    free(f);
    lsp_status_changed();
}

void lsp_fan_ok(lsp_fan *f, int pid)
{
    cJSON_AddItemToArray(f->ok, cJSON_CreateNumber(pid));
    fan_settle(f);
}

void lsp_fan_fail(lsp_fan *f, int pid, const fp_error *e)
{
    if (cJSON_GetArraySize(f->failed) == 0) f->first = *e;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "pid", pid);
    cJSON_AddStringToObject(o, "code", fp_error_code_name(e->code));
    cJSON_AddStringToObject(o, "message", e->message);
    if (e->hint[0]) cJSON_AddStringToObject(o, "hint", e->hint);
    cJSON_AddItemToArray(f->failed, o);
    fan_settle(f);
}

void lsp_fan_set(lsp_fan *f, const char *key, cJSON *value)
{
    cJSON_DeleteItemFromObjectCaseSensitive(f->result, key);
    cJSON_AddItemToObject(f->result, key, value);
}

void lsp_fan_close(lsp_fan *f)
{
    fan_settle(f);
}
