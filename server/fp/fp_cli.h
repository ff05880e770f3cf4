/* The terminal client's private interfaces: the run context shared by main, the shell and
 * the console, command dispatch (run.c), human renderers (render.c), and the line-editor
 * helpers the shell and the console share. */
#ifndef FP_CLI_H
#define FP_CLI_H

#include <cjson/cJSON.h>
#include <histedit.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "fp_attach.h"
#include "fp_commands.h"
#include "fp_error.h"
#include "fp_session.h"

/* Exit statuses of fp, defined here and nowhere else (documented in fp --help):
 * 0 ok (a stream stopped by Ctrl-C or --timeout included), 1 a command failed, 2 bad usage, or
 * the process cannot be attached to or read (cli_status tells which errors those are). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

/* The exit status an error gives. */
int cli_status(const fp_error *e);

typedef struct cli {
    fp_session *session;
    int pid;
    bool json;        /* print models as JSON Lines on stdout */
    bool debug;       /* log steps to stderr */
    bool interactive; /* stdin is a terminal and no --cmd: prompts, line editing */
    int timeout_ms;   /* bound for each command, -1: none */
    bool timeout_set; /* --timeout was given (streaming commands are bounded only then) */
    bool quit;        /* quit/exit/shutdown ran: leave after this command */
    bool detached;    /* the session is gone (shutdown, agent hung up): do not send detach */
    char **history;   /* the command lines of this run, oldest first */
    size_t nhistory, history_cap;
} cli;

/* Set by the SIGINT handler; whoever waits clears it before waiting. */
extern volatile sig_atomic_t cli_interrupted;

/* ---- run.c: one command line, from text to rendered output */

/* Runs one command line. Returns CLI_EXIT_OK, CLI_EXIT_FAILED (the command failed) or
 * CLI_EXIT_USAGE (it did not parse); sets c->quit when the session should end. */
int run_line(cli *c, const char *line);
void run_history_add(cli *c, const char *line);
void run_history_free(cli *c);
/* Prints e the human way on stderr and, with --json, as an error line on stdout; rpc_error is
 * the agent's error object (for its data), may be NULL. Returns cli_status(e). */
int run_report(const cli *c, const char *command, const fp_error *e, const cJSON *rpc_error);
/* With --json: prints {"command": command, key: value} on one line (value is borrowed). */
void run_emit_json(const char *command, const char *key, const cJSON *value);
/* Sends method with the command's bound, handling Ctrl-C. Returns the result or NULL with e
 * (e->code FP_E_INTERRUPTED when the user pressed Ctrl-C). params is taken. */
cJSON *run_call(cli *c, const char *method, cJSON *params, fp_error *e);
/* When c's process has Python child processes (a pre-forking server's master and its workers),
 * says on stderr that the requests may run in those, naming them. Returns whether it did. */
bool run_hint_workers(const cli *c);
/* Stops what runs in the background (gilstat in the shell), when fp leaves. */
void run_background_end(void);

/* ---- render.c: the human renderers, one per command model */

/* Renders the result of the agent command p->cmd to out. */
void render_result(FILE *out, const fp_cmd_parsed *p, const cJSON *result);
/* Renders a notification that arrived during a (streaming) command. */
void render_notification(FILE *out, const fp_cmd_parsed *p, const char *method,
                         const cJSON *params);
/* text with control characters (newlines in argv) turned into spaces, in buf. */
const char *render_oneline(char *buf, size_t size, const char *text);
/* The table printed by `fp` without a PID. */
void render_processes(FILE *out, const fp_target *targets, int n);

/* ---- render_watch.c, render_tt.c: watch and tt models and notifications */

void render_watch_started(FILE *out, const cJSON *result);
void render_watch_event(FILE *out, const cJSON *event);
void render_watch_end(FILE *out, const cJSON *end);
/* tt's results, by the method that produced them (tt.start, tt.list, tt.show, ...). */
void render_tt_result(FILE *out, const char *method, const cJSON *result);
void render_tt_record(FILE *out, const cJSON *record);
void render_tt_end(FILE *out, const cJSON *end);
/* A VALUE tree (protocol/methods.md) under label, indented; returns whether a node was cut by
 * the depth limit (the caller may suggest -x). */
bool render_value_tree(FILE *out, const char *label, const cJSON *value, int indent);
/* "0.012 ms", "12.35 ms", "1.204 s"; "2024-05-01 12:00:01.123" (local time); "name (ident)". */
void render_cost(FILE *out, double ms);
void render_epoch(FILE *out, double epoch);
void render_thread(FILE *out, const cJSON *thread);
/* "raised Type: message" and the traceback, indented. */
void render_exception(FILE *out, const cJSON *exc, int indent);

/* ---- render_monitor.c: monitor's start, reports and end */

void render_monitor_started(FILE *out, const cJSON *result);
void render_monitor_report(FILE *out, const cJSON *report);
void render_monitor_end(FILE *out, const cJSON *end);

/* ---- render_trace.c: the trace command's call trees */

/* A trace/event, trace/skipped, trace/start or trace/end notification. */
void render_trace_notification(FILE *out, const char *method, const cJSON *params);
/* The trace request's result: what is traced, with which options. */
void render_trace_result(FILE *out, const cJSON *result);

/* ---- render_reload.c, render_mem.c, render_vmtool.c */

/* reload's and reload.undo's result (the diff, what changed, the warnings; new_source with -v). */
void render_reload(FILE *out, const cJSON *result);
/* mem's results, by the method that produced them (mem.summary, mem.diff, mem.top, mem.off). */
void render_mem_result(FILE *out, const char *method, const cJSON *result);
/* mem/progress and mem/end (the diff), the notifications of mem diff's stream. */
void render_mem_notification(FILE *out, const char *method, const cJSON *params);
/* vmtool's results, by method (vmtool.instances, vmtool.gc). */
void render_vmtool_result(FILE *out, const char *method, const cJSON *result);

/* ---- render_torch.c: the torch command's models and notifications */

/* torch's results, by the method that produced them (torch.profile.start, torch.memory.*). */
void render_torch_result(FILE *out, const char *method, const cJSON *result);
/* A torch/profile, torch/memory, torch/skipped or torch/end notification. */
void render_torch_notification(FILE *out, const char *method, const cJSON *params);

/* ---- render_perf.c: the perf command (outside the process, no agent) */

/* Renders perf's summary model (fp_profile_summary_model + file, format, stopped_by). */
void render_perf(FILE *out, const cJSON *model);

/* ---- render_stack.c: the stack command's models */

/* Renders either stack model: threads (from outside or the agent's) or asyncio tasks. */
void stack_render(FILE *out, const cJSON *result);

/* ---- shell.c: the interactive shell and the line-editor helpers */

/* Reads commands (libedit at a terminal, plain lines otherwise) until quit or end of input.
 * Returns the exit status. */
int shell_run(cli *c);
/* Completes the wlen characters before the cursor from matches (each starting with them):
 * inserts their common part, or lists them when that adds nothing. For EL_ADDFN functions. */
unsigned char shell_insert_completion(EditLine *el, size_t wlen, const char *const *matches, int n,
                                      bool space_after_one);
/* A line editor for prompt_fn with tab bound to complete_fn and its own in-memory history
 * (caller frees both with shell_editor_end). */
EditLine *shell_editor(const char *name, char *(*prompt_fn)(EditLine *),
                       unsigned char (*complete_fn)(EditLine *, int), void *clientdata,
                       History **hist);
void shell_editor_end(EditLine *el, History *hist);
/* Reads one line from el without its newline (malloc'd). NULL at end of input (Ctrl-D);
 * *interrupted tells Ctrl-C apart (then NULL too). Enters the line into hist. */
char *shell_read(EditLine *el, History *hist, bool *interrupted);

/* ---- console.c: the `console` command */

/* Runs a console session. Returns CLI_EXIT_OK or CLI_EXIT_FAILED. */
int console_run(cli *c);

/* ---- render_gilstat.c: the `gilstat` command's models */

/* Renders one gilstat model (method: FP_NOTE_GILSTAT_STARTED, _REPORT, _THRESHOLD, _STOPPED). */
void render_gilstat(FILE *out, const char *method, const cJSON *model);

#endif
