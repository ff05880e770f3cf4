/* One command line of fp, from text to output: parse it, run it in the client or send it to
 * the agent, render the model for humans or print it as JSON, and report every error the
 * same way (human text on stderr, plus a JSON error line with --json). */
#include "fp_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_log.h"

void run_emit_json(const char *command, const char *key, const cJSON *value)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "command", command);
    /* A reference: the caller keeps ownership of value. */
    if (value)
        cJSON_AddItemReferenceToObject(o, key, (cJSON *)value);
    else
        cJSON_AddNullToObject(o, key);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return;
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_free(text);
}

void run_report(const cli *c, const char *command, const fp_error *e)
{
    fflush(stdout); /* keep the order of what was printed before */
    /* The terminal echoed "^C" where the cursor was: start the message on a line of its own. */
    if (e->code == FP_E_INTERRUPTED && isatty(STDERR_FILENO)) fputc('\n', stderr);
    fp_error_print(e, stderr);
    if (!c->json) return;
    cJSON *err = cJSON_CreateObject();
    if (!err) return;
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
    const cJSON *last =
        c->session && e->code == FP_E_REMOTE ? fp_session_last_error(c->session) : NULL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(last, "data");
    if (data) cJSON_AddItemToObject(err, "data", cJSON_Duplicate(data, 1));
    cJSON *o = cJSON_CreateObject();
    if (command)
        cJSON_AddStringToObject(o, "command", command);
    else
        cJSON_AddNullToObject(o, "command");
    cJSON_AddItemToObject(o, "error", err);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return;
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_free(text);
}

void run_history_add(cli *c, const char *line)
{
    if (c->nhistory == c->history_cap) {
        size_t cap = c->history_cap ? c->history_cap * 2 : 32;
        char **h = realloc(c->history, cap * sizeof *h);
        if (!h) return;
        c->history = h;
        c->history_cap = cap;
    }
    char *copy = strdup(line);
    if (copy) c->history[c->nhistory++] = copy;
}

void run_history_free(cli *c)
{
    for (size_t i = 0; i < c->nhistory; i++)
        free(c->history[i]);
    free(c->history);
    c->history = NULL;
    c->nhistory = c->history_cap = 0;
}

cJSON *run_call(cli *c, const char *method, cJSON *params, fp_notify_fn on_notify, void *ud,
                fp_error *e)
{
    return fp_session_call(c->session, method, params, c->timeout_ms, on_notify, ud, e);
}

/* ---- client-side commands */

static int run_help(cli *c, const fp_cmd_parsed *p)
{
    fp_error e;
    fp_error_clear(&e);
    char *text = fp_commands_help(p->topic, &e);
    if (!text) {
        run_report(c, "help", &e);
        return CLI_EXIT_USAGE;
    }
    if (!c->json) {
        fputs(text, stdout);
        free(text);
        return CLI_EXIT_OK;
    }
    cJSON *model = cJSON_CreateObject();
    if (p->topic) {
        const fp_command *cmd = fp_commands_find(p->topic);
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
    run_emit_json("help", "result", model);
    cJSON_Delete(model);
    free(text);
    return CLI_EXIT_OK;
}

static int run_history(cli *c)
{
    if (c->json) {
        cJSON *model = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(model, "history");
        for (size_t i = 0; i < c->nhistory; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(c->history[i]));
        run_emit_json("history", "result", model);
        cJSON_Delete(model);
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < c->nhistory; i++)
        printf("%5zu  %s\n", i + 1, c->history[i]);
    return CLI_EXIT_OK;
}

/* ---- agent commands */

typedef struct run_notify_ctx {
    cli *c;
    const fp_cmd_parsed *p;
    int count;
} run_notify_ctx;

/* Streaming commands (watch, trace, ...) report through notifications: each is printed as
 * it arrives, so a command stopped by --timeout or Ctrl-C has shown everything it got. */
static void run_on_notify(const char *method, const cJSON *params, void *ud)
{
    run_notify_ctx *n = ud;
    n->count++;
    if (n->c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", method);
        if (params) cJSON_AddItemReferenceToObject(o, "params", (cJSON *)params);
        run_emit_json(n->p->cmd->name, "notification", o);
        cJSON_Delete(o);
        return;
    }
    render_notification(stdout, n->p, method, params);
    fflush(stdout);
}

static int run_write_file(cli *c, const fp_cmd_parsed *p, const cJSON *result)
{
    FILE *f = fopen(p->file, "we");
    fp_error e;
    if (!f) {
        fp_error_set(&e, FP_E_IO, "check the directory exists and that you may write there",
                     "cannot write %s: %s", p->file, strerror(errno));
        run_report(c, p->cmd->name, &e);
        return CLI_EXIT_FAILED;
    }
    render_result(f, p, result);
    if (ferror(f) | (fclose(f) != 0)) {
        fp_error_set(&e, FP_E_IO, NULL, "writing %s failed: %s", p->file, strerror(errno));
        run_report(c, p->cmd->name, &e);
        return CLI_EXIT_FAILED;
    }
    /* With --json, stdout carries only JSON Lines. */
    fprintf(c->json ? stderr : stdout, "%s written to %s\n", p->cmd->name, p->file);
    return CLI_EXIT_OK;
}

static int run_agent(cli *c, fp_cmd_parsed *p)
{
    const fp_command *cmd = p->cmd;
    bool streaming = cmd->flags & FP_CMD_STREAMING;
    run_notify_ctx n = {.c = c, .p = p};
    fp_error e;
    fp_error_clear(&e);
    cJSON *params = p->params;
    p->params = NULL; /* taken by the call */
    if (!params) params = cJSON_CreateObject();

    int saved = c->timeout_ms;
    /* A stream runs until stopped: only an explicit --timeout bounds it. */
    if (streaming && !c->timeout_set) c->timeout_ms = -1;
    /* mem: a snapshot may take its whole --budget; the default bound waits for it. */
    const cJSON *budget = cJSON_GetObjectItemCaseSensitive(params, "budget_s");
    if (cJSON_IsNumber(budget) && !c->timeout_set && c->timeout_ms >= 0 &&
        budget->valuedouble * 1000 + 15000 > c->timeout_ms)
        c->timeout_ms = (int)(budget->valuedouble * 1000) + 15000;
    /* Some commands choose their method by their options (tt -l, tt -i ...). */
    const char *method = p->method ? p->method : cmd->method;
    if (c->debug) fp_log_debug("sending '%s'", method);
    cli_interrupted = 0;
    cJSON *result = run_call(c, method, params, run_on_notify, &n, &e);
    c->timeout_ms = saved;
    if (c->debug) fp_log_debug("'%s' %s", method, result ? "answered" : "failed");

    if (!result) {
        if (e.code == FP_E_CLOSED) c->detached = true;
        if (streaming && (e.code == FP_E_TIMEOUT || e.code == FP_E_INTERRUPTED)) {
            fprintf(stderr, "fp: %s stopped (%s) after %d report%s\n", cmd->name,
                    e.code == FP_E_TIMEOUT ? "--timeout" : "Ctrl-C", n.count,
                    n.count == 1 ? "" : "s");
            return CLI_EXIT_OK;
        }
        run_report(c, cmd->name, &e);
        if (e.code == FP_E_CLOSED) c->quit = true;
        return CLI_EXIT_FAILED;
    }

    int rc = CLI_EXIT_OK;
    if (p->file) rc = run_write_file(c, p, result);
    if (rc == CLI_EXIT_OK) {
        if (c->json)
            run_emit_json(cmd->name, "result", result);
        else if (!p->file)
            render_result(stdout, p, result);
    }
    fflush(stdout);
    /* A result that starts a stream (watch, tt -t): its notifications follow (stream.c). */
    if (rc == CLI_EXIT_OK && cJSON_GetObjectItemCaseSensitive(result, "stream"))
        rc = stream_follow(c, p, result, run_on_notify, &n);
    cJSON_Delete(result);
    fflush(stdout);

    if (cmd->id == FP_CMD_SHUTDOWN) {
        /* The agent closes every connection now; there is nothing left to detach. */
        c->quit = true;
        c->detached = true;
    }
    return rc;
}

/* The first word of line, for naming the command in errors about a line that did not parse. */
static void run_first_word(const char *line, char *buf, size_t size)
{
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strcspn(line, " \t\r\n");
    if (n >= size) n = size - 1;
    memcpy(buf, line, n);
    buf[n] = '\0';
}

int run_line(cli *c, const char *line)
{
    fp_cmd_parsed p;
    fp_error e;
    fp_error_clear(&e);
    int r = fp_commands_parse_line(line, &p, &e);
    if (r == 0) return CLI_EXIT_OK;
    if (r < 0) {
        char word[128];
        run_first_word(line, word, sizeof word);
        run_report(c, word[0] ? word : NULL, &e);
        return CLI_EXIT_USAGE;
    }

    int rc = CLI_EXIT_OK;
    switch (p.cmd->id) {
    case FP_CMD_HELP:
        rc = run_help(c, &p);
        break;
    case FP_CMD_HISTORY:
        rc = run_history(c);
        break;
    case FP_CMD_QUIT:
        c->quit = true;
        if (c->json) {
            cJSON *empty = cJSON_CreateObject();
            run_emit_json("quit", "result", empty);
            cJSON_Delete(empty);
        }
        break;
    case FP_CMD_CONSOLE:
        rc = console_run(c);
        break;
    case FP_CMD_STACK:
        rc = stack_run(c, &p);
        break;
    case FP_CMD_PERF:
        rc = perf_run(c, &p);
        break;
    case FP_CMD_GILSTAT:
        rc = gilstat_run(c, &p);
        break;
    default:
        rc = run_agent(c, &p);
        break;
    }
    fp_commands_parsed_free(&p);
    return rc;
}
