/* One command line of fp, from text to output: parse it, run what is the terminal's own (help,
 * history, quit, console) or hand it to the core's execution (fp_exec.h), render each model it
 * produces for humans or print it as JSON, and report every error the same way (human text on
 * stderr, plus a JSON error line with --json). */
#include "fp_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_clock.h"
#include "fp_exec.h"
#include "fp_json.h"
#include "fp_log.h"
#include "fp_models.h"
#include "fp_outfile.h"
#include "fp_safe.h"

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

int cli_status(const fp_error *e)
{
    switch (e->code) {
    case FP_E_USAGE:
    /* The process cannot be attached to or read: the same status for every command. */
    case FP_E_NO_PROCESS:
    case FP_E_NOT_PYTHON:
    case FP_E_PERMISSION:
    case FP_E_EXITING:
    case FP_E_UNSUPPORTED:
    case FP_E_INJECT:
    case FP_E_AGENT_TIMEOUT:
    case FP_E_CONNECT:
        return CLI_EXIT_USAGE;
    default:
        return CLI_EXIT_FAILED;
    }
}

int run_report(const cli *c, const char *command, const fp_error *e, const cJSON *rpc_error)
{
    fflush(stdout); /* keep the order of what was printed before */
    /* The terminal echoed "^C" where the cursor was: start the message on a line of its own. */
    if (e->code == FP_E_INTERRUPTED && isatty(STDERR_FILENO)) fputc('\n', stderr);
    fp_error_print(e, stderr);
    int status = cli_status(e);
    if (!c->json) return status;
    cJSON *o = cJSON_CreateObject();
    if (!o) return status;
    if (command)
        cJSON_AddStringToObject(o, "command", command);
    else
        cJSON_AddNullToObject(o, "command");
    cJSON_AddItemToObject(o, "error", fp_model_error(e, rpc_error));
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return status;
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    cJSON_free(text);
    return status;
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

cJSON *run_call(cli *c, const char *method, cJSON *params, fp_error *e)
{
    return fp_session_call(c->session, method, params, c->timeout_ms, &cli_interrupted, e);
}

bool run_hint_workers(const cli *c)
{
    int kids[8];
    int n = c->pid > 0 ? fp_target_children(c->pid, kids, 8) : 0;
    if (n == 0) return false;
    char list[128] = "";
    for (int i = 0; i < n && i < 6; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", kids[i]);
    fflush(stdout);
    fprintf(stderr,
            "fp: process %d has Python child processes (%s%s): if it is a pre-forking server's\n"
            "  master (gunicorn, uvicorn --workers, a Django autoreloader), its requests run in\n"
            "  those: fp %d\n",
            c->pid, list, n > 6 ? ", ..." : "", kids[0]);
    return true;
}

/* ---- the terminal's own commands */

static int run_help(cli *c, const fp_cmd_parsed *p)
{
    fp_error e;
    fp_error_clear(&e);
    if (c->json) {
        cJSON *model = fp_model_help(p->topic, &e);
        if (!model) return run_report(c, "help", &e, NULL);
        run_emit_json("help", "result", model);
        cJSON_Delete(model);
        return CLI_EXIT_OK;
    }
    char *text = fp_commands_help(p->topic, &e);
    if (!text) return run_report(c, "help", &e, NULL);
    fputs(text, stdout);
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

/* ---- the models of a command, as they come (the sink of its execution) */

typedef struct run_out {
    cli *c;
    const fp_cmd_parsed *p;
    int status;
    bool background; /* driven by another thread: lock stdout per model */
} run_out;

/* Renders result to p->file (human text) instead of the terminal. */
static int run_write_file(run_out *o, const cJSON *result)
{
    const fp_cmd_parsed *p = o->p;
    fp_outfile out; /* never through links, never a FIFO, never half a file */
    fp_error e;
    fp_error_clear(&e);
    if (fp_outfile_begin(&out, p->file, &e) != 0) return run_report(o->c, p->cmd->name, &e, NULL);
    FILE *safe = safe_wrap(out.f); /* text for humans, as on the terminal */
    render_result(safe ? safe : out.f, p, result);
    if (safe) fclose(safe);
    if (fp_outfile_commit(&out, &e) != 0) return run_report(o->c, p->cmd->name, &e, NULL);
    /* With --json, stdout carries only JSON Lines. */
    fprintf(o->c->json ? stderr : stdout, "%s written to %s\n", p->cmd->name, p->file);
    return CLI_EXIT_OK;
}

static void run_on_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x;
    run_out *o = ud;
    const fp_cmd_parsed *p = o->p;
    /* perf writes its own profile (-f names it): only stack's and the agent's results are
     * rendered to a file. */
    if (p->file && p->cmd->id != FP_CMD_PERF) o->status = run_write_file(o, result);
    if (o->status == CLI_EXIT_OK) {
        if (o->c->json)
            run_emit_json(p->cmd->name, "result", result);
        else if (!p->file || p->cmd->id == FP_CMD_PERF)
            render_result(stdout, p, result);
    }
    fflush(stdout);
}

/* Streaming commands (watch, trace, gilstat, ...) report through notifications: each is printed
 * as it arrives, so a command stopped by --timeout or Ctrl-C has shown everything it got. */
static void run_on_note(void *ud, const fp_exec *x, const char *method, const cJSON *params)
{
    (void)x;
    run_out *o = ud;
    /* One report stays in one piece even while the shell prints something else. */
    flockfile(stdout);
    if (o->c->json) {
        cJSON *n = cJSON_CreateObject();
        cJSON_AddStringToObject(n, "method", method);
        if (params) cJSON_AddItemReferenceToObject(n, "params", (cJSON *)params);
        run_emit_json(o->p->cmd->name, "notification", n);
        cJSON_Delete(n);
    } else {
        render_notification(stdout, o->p, method, params);
        fflush(stdout);
    }
    funlockfile(stdout);
}

static void run_on_started(void *ud, const fp_exec *x, const cJSON *info)
{
    (void)x;
    run_out *o = ud;
    if (o->c->interactive && !o->c->json && o->p->cmd->id == FP_CMD_PERF)
        fprintf(stderr, "sampling process %.0f at %g Hz%s; Ctrl-C stops\n",
                fp_json_num(info, "pid", 0), fp_json_num(info, "rate_hz", 0),
                fp_json_num(info, "duration_s", 0) > 0 ? " (-d)" : "");
}

static void run_on_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    run_out *o = ud;
    cli *c = o->c;
    const fp_command *cmd = o->p->cmd;
    if (end->err) {
        if (end->err->code == FP_E_CLOSED) c->detached = c->quit = true;
        o->status = run_report(c, cmd->name, end->err, end->rpc_error);
        return;
    }
    /* Stopped by the user: not a failure. Only what the stream reported goes to stdout; the
     * reason goes to stderr, as always. The outside commands say it in their own models. */
    if (end->stopped_by && cmd->method) {
        fflush(stdout);
        fprintf(stderr, "fp: %s stopped (%s) after %d report%s\n", cmd->name, end->stopped_by,
                end->reports, end->reports == 1 ? "" : "s");
        /* Nothing seen in a master that only hands requests to its workers: say where to look. */
        if (end->reports == 0) run_hint_workers(c);
    }
    if (cmd->id == FP_CMD_SHUTDOWN) {
        /* The agent closes every connection now; there is nothing left to detach. */
        c->quit = true;
        c->detached = true;
    }
}

static const fp_exec_sink run_sink = {
    .result = run_on_result,
    .note = run_on_note,
    .started = run_on_started,
    .end = run_on_end,
};

/* The default bound, stretched for what says how long it takes (mem: its --budget, and a diff's
 * --interval); an explicit --timeout is kept as given. */
static int run_default_bound(const cli *c, const fp_cmd_parsed *p)
{
    double budget = fp_json_num(p->params, "budget_s", -1);
    double interval = fp_json_num(p->params, "interval_s", 0);
    if (c->timeout_set || c->timeout_ms < 0 || budget < 0) return c->timeout_ms;
    double need = (budget + (p->cmd->id == FP_CMD_MEM ? interval : 0)) * 1000 + 15000;
    return need > c->timeout_ms ? (int)need : c->timeout_ms;
}

static fp_exec *run_start(cli *c, const fp_cmd_parsed *p, run_out *o)
{
    fp_exec_env env = {
        .ch = c->session ? fp_session_channel(c->session) : NULL,
        .pid = c->pid,
        .timeout_ms = run_default_bound(c, p),
        .debug = c->debug,
    };
    fp_exec_sink sink = run_sink;
    sink.ud = o;
    return fp_exec_start(&env, p, &sink);
}

/* ---- gilstat in the shell: in the background, until gilstat off, quit or fp's exit */

static struct {
    fp_exec_thread *thread;
    run_out out;
    fp_cmd_parsed parsed; /* the command the background exec reports for */
} run_bg;

static void run_gilstat_result(cli *c, const char *action, bool background)
{
    if (!c->json) return;
    cJSON *r = cJSON_CreateObject();
    if (!r) return;
    cJSON_AddStringToObject(r, "action", action);
    cJSON_AddBoolToObject(r, "background", background);
    run_emit_json("gilstat", "result", r);
    cJSON_Delete(r);
}

/* Stops and joins the background command, if any; its last report and stop line are printed
 * by it. Returns whether one was still running. */
static bool run_background_stop(const char *why)
{
    if (!run_bg.thread) return false;
    bool running = fp_exec_thread_running(run_bg.thread);
    fp_exec_thread_stop(run_bg.thread, why);
    run_bg.thread = NULL;
    fp_commands_parsed_free(&run_bg.parsed);
    return running;
}

void run_background_end(void)
{
    run_background_stop("fp left");
}

/* gilstat on in the shell, or gilstat off. Returns the status, or -1 to run it in the
 * foreground like any command. */
static int run_gilstat_shell(cli *c, fp_cmd_parsed *p)
{
    bool off = strcmp(fp_json_str(p->params, "action", ""), "off") == 0;
    fp_error e;
    if (off) {
        /* A collector whose process exited has finished on its own: join it quietly. */
        if (!run_bg.thread) return -1; /* not running: the core says so */
        run_background_stop("gilstat off");
        run_gilstat_result(c, "off", false);
        return CLI_EXIT_OK;
    }
    if (run_bg.thread && fp_exec_thread_running(run_bg.thread)) {
        fp_error_set(&e, FP_E_USAGE, "gilstat off stops it first", "gilstat is already on");
        return run_report(c, "gilstat", &e, NULL);
    }
    run_background_stop(NULL); /* join a finished one */
    if (!c->interactive) return -1;

    run_bg.parsed = *p; /* the background exec reports for it: it outlives this line */
    memset(p, 0, sizeof *p);
    run_bg.out = (run_out){.c = c, .p = &run_bg.parsed, .status = CLI_EXIT_OK, .background = true};
    fp_exec *x = run_start(c, &run_bg.parsed, &run_bg.out);
    if (!x) return CLI_EXIT_FAILED;
    if (fp_exec_done(x)) { /* failed at once: reported */
        int status = run_bg.out.status;
        fp_exec_free(x);
        fp_commands_parsed_free(&run_bg.parsed);
        return status;
    }
    run_bg.thread = fp_exec_thread_start(x, &e);
    if (!run_bg.thread) {
        fp_commands_parsed_free(&run_bg.parsed);
        return run_report(c, "gilstat", &e, NULL);
    }
    static bool registered;
    if (!registered) registered = atexit(run_background_end) == 0;
    run_gilstat_result(c, "on", true);
    if (!c->json) printf("gilstat runs in the background; gilstat off stops it\n");
    return CLI_EXIT_OK;
}

/* ---- everything else: the core runs it, fp drives it here until it ends */

static int run_exec(cli *c, const fp_cmd_parsed *p)
{
    run_out o = {.c = c, .p = p, .status = CLI_EXIT_OK};
    double started = fp_clock_ms();
    cli_interrupted = 0;
    fp_exec *x = run_start(c, p, &o);
    if (!x) {
        fp_error e;
        fp_error_set(&e, FP_E_INTERNAL, NULL, "out of memory");
        return run_report(c, p->cmd->name, &e, NULL);
    }
    /* What runs until stopped (streams, perf, gilstat) is bounded by --timeout, and outside
     * the interactive shell by its default too, unless perf's -d says how long; a request is
     * bounded by its own timeout. */
    fp_exec_wait_opts w = {
        .until_ms = -1, .until_name = "--timeout", .interrupted = &cli_interrupted};
    bool timed = p->cmd->id == FP_CMD_PERF && fp_json_num(p->params, "duration", 0) > 0;
    if (c->timeout_set) {
        w.until_ms = started + c->timeout_ms;
    } else if (!c->interactive && !timed) {
        w.until_ms = started + run_default_bound(c, p);
        w.until_name = "the default --timeout of 30 s; --timeout S sets another";
    }
    fp_exec_wait(x, &w);
    fp_exec_free(x);
    cli_interrupted = 0;
    return o.status;
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
        return run_report(c, word[0] ? word : NULL, &e, NULL);
    }

    int rc = -1;
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
        rc = CLI_EXIT_OK;
        break;
    case FP_CMD_CONSOLE:
        rc = console_run(c);
        break;
    case FP_CMD_GILSTAT:
        rc = run_gilstat_shell(c, &p);
        break;
    default:
        break;
    }
    if (rc < 0) rc = run_exec(c, &p);
    fp_commands_parsed_free(&p);
    return rc;
}
