/* The models the core builds itself (see fp_models.h). */
#include "fp_models.h"

#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>

#include "fp_commands.h"
#include "fp_json.h"

cJSON *fp_model_error(const fp_error *e, const cJSON *rpc_error)
{
    cJSON *err = cJSON_CreateObject();
    if (!err) return NULL;
    cJSON_AddStringToObject(err, "code", fp_error_code_name(e->code));
    if (e->code == FP_E_REMOTE)
        cJSON_AddNumberToObject(err, "rpc_code", e->rpc_code);
    else
        cJSON_AddNullToObject(err, "rpc_code");
    cJSON_AddStringToObject(err, "message", e->message);
    if (e->hint[0])
        cJSON_AddStringToObject(err, "hint", e->hint);
    else
        cJSON_AddNullToObject(err, "hint");
    /* The agent's own data (suggestions, traceback) for scripts that want more than text. */
    const cJSON *data = e->code == FP_E_REMOTE ? fp_json_get(rpc_error, "data") : NULL;
    if (data) cJSON_AddItemToObject(err, "data", cJSON_Duplicate(data, 1));
    return err;
}

const char *fp_model_user(uid_t uid, char *buf, size_t size)
{
    struct passwd pw, *found = NULL;
    char scratch[1024];
    if (getpwuid_r(uid, &pw, scratch, sizeof scratch, &found) == 0 && found && found->pw_name)
        snprintf(buf, size, "%s", found->pw_name);
    else
        snprintf(buf, size, "%u", (unsigned)uid);
    return buf;
}

cJSON *fp_model_processes(const fp_target *targets, int n)
{
    cJSON *model = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(model, "processes");
    for (int i = 0; i < n; i++) {
        const fp_target *t = &targets[i];
        char user[64];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pid", t->pid);
        cJSON_AddNumberToObject(o, "ppid", t->ppid);
        cJSON_AddNumberToObject(o, "uid", t->uid);
        cJSON_AddStringToObject(o, "user", fp_model_user(t->uid, user, sizeof user));
        cJSON_AddStringToObject(o, "python_version", t->py_version);
        cJSON_AddStringToObject(o, "exe", t->exe);
        cJSON_AddStringToObject(o, "cmdline", t->cmdline);
        cJSON_AddStringToObject(o, "cwd", t->cwd);
        cJSON_AddItemToArray(arr, o);
    }
    return model;
}

cJSON *fp_model_help(const char *topic, fp_error *err)
{
    char *text = fp_commands_help(topic, err);
    if (!text) return NULL;
    cJSON *model = cJSON_CreateObject();
    if (topic) {
        const fp_command *cmd = fp_commands_find(topic);
        cJSON_AddStringToObject(model, "name", cmd->name);
        cJSON_AddStringToObject(model, "usage", cmd->usage);
        cJSON_AddStringToObject(model, "summary", cmd->summary);
        cJSON_AddStringToObject(model, "help", text);
    } else {
        size_t n;
        const fp_command *all = fp_commands_table(&n);
        cJSON *arr = cJSON_AddArrayToObject(model, "commands");
        for (size_t i = 0; i < n; i++) {
            cJSON *one = cJSON_CreateObject();
            cJSON_AddStringToObject(one, "name", all[i].name);
            cJSON_AddStringToObject(one, "usage", all[i].usage);
            cJSON_AddStringToObject(one, "summary", all[i].summary);
            cJSON_AddItemToArray(arr, one);
        }
    }
    free(text);
    return model;
}
