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

/* Exit statuses of fp (documented in fp --help). */
enum { CLI_EXIT_OK = 0, CLI_EXIT_FAILED = 1, CLI_EXIT_USAGE = 2 };

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
/* Prints e the human way on stderr and, with --json, as an error line on stdout. */
void run_report(const cli *c, const char *command, const fp_error *e);
/* With --json: prints {"command": command, key: value} on one line (value is borrowed). */
void run_emit_json(const char *command, const char *key, const cJSON *value);
/* Sends method with the command's bound, handling Ctrl-C. Returns the result or NULL with e
 * (e->code FP_E_INTERRUPTED when the user pressed Ctrl-C). params is taken. */
cJSON *run_call(cli *c, const char *method, cJSON *params, fp_notify_fn on_notify, void *ud,
                fp_error *e);

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
/* The process list as the model --json prints. */
cJSON *render_processes_model(const fp_target *targets, int n);

/* ---- stream.c: results that start a stream (watch, tt -t, trace) */

/* Follows the stream that result started ("stream": {id_key, id, end, stop}), passing its
 * notifications to on_notify until its end, Ctrl-C or --timeout (which stop it). Returns a
 * CLI_EXIT_* status; a result without a usable "stream" returns CLI_EXIT_OK at once. */
int stream_follow(cli *c, const fp_cmd_parsed *p, const cJSON *result, fp_notify_fn on_notify,
                  void *ud);

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

/* ---- render_trace.c: the trace command's call trees */

/* A trace/event, trace/skipped, trace/start or trace/end notification. */
void render_trace_notification(FILE *out, const char *method, const cJSON *params);
/* The trace request's result: what is traced, with which options. */
void render_trace_result(FILE *out, const cJSON *result);

/* ---- render_torch.c: the torch command's models and notifications */

/* torch's results, by the method that produced them (torch.profile.start, torch.memory.*). */
void render_torch_result(FILE *out, const char *method, const cJSON *result);
/* A torch/profile, torch/memory, torch/skipped or torch/end notification. */
void render_torch_notification(FILE *out, const char *method, const cJSON *params);

/* ---- perf.c, render_perf.c: the perf command (outside the process, no agent) */

/* Samples, writes the profile and prints the summary. Returns a CLI_EXIT_* status. */
int perf_run(cli *c, const fp_cmd_parsed *p);
/* Renders perf's summary model (fp_profile_summary_model + file, format, stopped_by). */
void render_perf(FILE *out, const cJSON *model);

/* ---- stack.c: the stack command (from outside the process; -a through the agent) */

/* Reads and shows the stacks (or with -a the asyncio tasks). Returns a CLI_EXIT_* status. */
int stack_run(cli *c, const fp_cmd_parsed *p);
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

/* ---- gilstat.c, render_gilstat.c: the `gilstat` command (no agent) */

/* gilstat on: streams until --timeout/Ctrl-C, or in the interactive shell starts a background
 * collector; gilstat off stops that one. Returns CLI_EXIT_OK or CLI_EXIT_FAILED. */
int gilstat_run(cli *c, const fp_cmd_parsed *p);
/* Renders one gilstat model (method: "gilstat.started", ".report", ".threshold", ".stopped"). */
void render_gilstat(FILE *out, const char *method, const cJSON *model);

#endif
