/* fp-lsp's private header: the server's state and what each module offers the others. One
 * libuv loop runs everything (stdio, every agent's socket, the timers); attaching runs on
 * libuv's thread pool. Modules: rpc.c (the LSP wire), lifecycle.c (initialize, shutdown,
 * settings), documents.c (open documents and their text), pyscan.c (functions in a buffer),
 * procs.c (attached processes and their agents), features: lenses.c, watch.c, monitor.c,
 * reload.c, profile.c, trace.c, stack.c, hints.c (inlay hints), hover.c, diagnostics.c,
 * commands.c (workspace/executeCommand, fp/status). */
#ifndef FP_LSP_H
#define FP_LSP_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "fp_attach.h"
#include "fp_channel.h"
#include "fp_error.h"
#include "fp_exec.h"

/* ===================================== Limits ================================================ */

#define LSP_MAX_PROCS 64
/* Watched calls kept per function and process (the latest, shown as diagnostics). */
#define LSP_WATCH_KEEP 5
/* Lenses are refreshed at most this often while figures change. */
#define LSP_LENS_REFRESH_MS 500
/* Standard and LSP error codes fp-lsp answers with. */
#define LSP_ERR_PARSE -32700
#define LSP_ERR_INVALID_REQUEST -32600
#define LSP_ERR_METHOD_NOT_FOUND -32601
#define LSP_ERR_INVALID_PARAMS -32602
#define LSP_ERR_INTERNAL -32603
#define LSP_ERR_NOT_INITIALIZED -32002
#define LSP_ERR_REQUEST_FAILED -32803
#define LSP_ERR_CANCELLED -32800

/* ===================================== Documents (documents.c, pyscan.c) ===================== */

/* A function or class found in a buffer's text (pyscan.c): by name and nesting, as Python names
 * it (co_qualname: "Cart.add", "outer.<locals>.inner"). Lines are 0-based. */
typedef struct lsp_def {
    char *qualname;
    char *name;
    bool is_class;
    bool is_async;
    int def_line;   /* the `def`/`class` line */
    int first_line; /* its first decorator's line, else def_line */
    int last_line;  /* the last line of its body */
    int depth;      /* nesting: 0 at module level */
} lsp_def;

typedef struct lsp_defs {
    lsp_def *defs; /* in source order */
    int n;
} lsp_defs;

/* Scans Python source for its defs (tolerant: a buffer being edited need not parse). */
void lsp_pyscan(const char *text, size_t len, lsp_defs *out);
void lsp_defs_free(lsp_defs *d);
/* The innermost def whose lines hold line, or NULL. */
const lsp_def *lsp_defs_at(const lsp_defs *d, int line);
const lsp_def *lsp_defs_find(const lsp_defs *d, const char *qualname);

typedef struct lsp_doc {
    struct lsp_doc *next;
    char *uri;
    char *path; /* the file the uri names ("" for a uri that is not a file) */
    int number; /* given at didOpen, never reused: lens data names the document by it */
    int version;
    char *text;
    size_t len, cap;
    lsp_defs defs; /* of the current text, made when needed */
    bool defs_valid;
} lsp_doc;

lsp_doc *lsp_doc_find(const char *uri);
/* The open document given that number at didOpen, or NULL (closed since). */
lsp_doc *lsp_doc_numbered(int number);
/* The defs of doc's current text. */
const lsp_defs *lsp_doc_defs(lsp_doc *doc);
/* Every open document, for a walk. */
lsp_doc *lsp_docs_first(void);
void lsp_docs_free_all(void);
/* Byte offset of (line, character) in doc (characters in the negotiated encoding), clamped. */
size_t lsp_doc_offset(const lsp_doc *doc, int line, int character);
/* The length of line (0-based) in the negotiated encoding's units: where its end is. */
int lsp_doc_line_end(const lsp_doc *doc, int line);
/* How many lines doc has (a last line without a newline counts). */
int lsp_doc_lines(const lsp_doc *doc);
/* file:///a/b -> /a/b (percent-decoded) into buf; returns false for other schemes. */
bool lsp_uri_to_path(const char *uri, char *buf, size_t size);
/* /a/b -> file:///a/b (caller frees). */
char *lsp_path_to_uri(const char *path);

void lsp_doc_did_open(const cJSON *params);
void lsp_doc_did_change(const cJSON *params);
void lsp_doc_did_close(const cJSON *params);
void lsp_doc_did_save(const cJSON *params);

/* ===================================== The wire (rpc.c) ====================================== */

typedef void (*lsp_client_reply_fn)(const cJSON *result, const cJSON *error, void *ud);

/* Starts reading stdin and writing stdout on loop. */
int lsp_rpc_start(uv_loop_t *loop);
/* Sends a response to request id (result taken; NULL: null). */
void lsp_rpc_result(const cJSON *id, cJSON *result);
void lsp_rpc_error(const cJSON *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An error made of an fp_error: message, and the hint as data.hint. */
void lsp_rpc_fp_error(const cJSON *id, const fp_error *e);
void lsp_rpc_notify(const char *method, cJSON *params);
/* A request to the client; cb (may be NULL) gets its answer. */
void lsp_rpc_request(const char *method, cJSON *params, lsp_client_reply_fn cb, void *ud);
/* Whether request id was cancelled by the client ($/cancelRequest). */
bool lsp_rpc_cancelled(const cJSON *id);
/* Stops reading stdin and closes stdout once what is queued is written. */
void lsp_rpc_close(void);

/* window/logMessage and window/showMessage (type: 1 error, 2 warning, 3 info, 4 log). */
void lsp_log(int type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lsp_show(int type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Work done progress: begin returns a token (0 when the client does not support it). */
int lsp_progress_begin(const char *title, const char *message);
void lsp_progress_report(int token, const char *message);
void lsp_progress_end(int token, const char *message);

/* ===================================== Lifecycle and settings (lifecycle.c) ================== */

typedef struct lsp_settings {
    bool reload_on_save;
    char watch_expr[256];
    int watch_depth;
    int watch_limit;
    double monitor_interval_s;
    double hot_threshold_pct;
    int lens_refresh_ms;
    /* fp.profile */
    double profile_rate_hz;
    bool profile_sliding; /* a sliding window of profile_window_s, else the whole run */
    double profile_window_s;
    double profile_refresh_s; /* hints and lenses refreshed this often while it samples */
    char profile_format[16];  /* "svg" or "speedscope" */
    char profile_open[8];     /* "ask", "always", "never": open the flame graph at the stop */
} lsp_settings;

typedef struct lsp_server {
    uv_loop_t *loop;
    bool initialized; /* initialize answered */
    bool shut_down;   /* shutdown received: only exit now */
    bool exiting;
    int exit_code;
    bool utf8;          /* positions in UTF-8 bytes (negotiated), else UTF-16 code units */
    bool lens_refresh;  /* the client supports workspace/codeLens/refresh */
    bool hint_refresh;  /* ... workspace/inlayHint/refresh */
    bool progress;      /* ... window/workDoneProgress */
    bool show_document; /* ... window/showDocument */
    bool debug;
    lsp_settings settings;
} lsp_server;

extern lsp_server lsp;

/* Dispatches one message from the client (the whole JSON-RPC object). */
void lsp_dispatch(const cJSON *msg);
/* Ends the server: detaches every process, closes the wire; the loop then ends. */
void lsp_exit(int code);

/* ===================================== Processes (procs.c) =================================== */

typedef struct lsp_proc lsp_proc;

struct lsp_proc {
    int pid;
    int parent; /* attached as a child of this pid (children: true), else 0 */
    fp_target target;
    fp_channel *ch;
    uv_poll_t poll;
    uv_timer_t timer;
    bool closing;
    bool gone;
    /* Files whose code map was asked: path -> the agent's model (functions), cached. */
    cJSON *maps; /* {path: map result} */
};

/* The attached processes. */
int lsp_procs_count(void);
lsp_proc *lsp_proc_at(int i);
lsp_proc *lsp_proc_find(int pid);
/* Starts attaching pid (and its Python children); reply(id) when every attach is over. */
void lsp_procs_attach(const cJSON *id, int pid, bool children);
/* Detaches pid (0: every process): removes what fp-lsp installed there, closes the channel. */
void lsp_procs_detach(int pid);
/* The channel needs driving again (a request was queued): re-arms its poll and timer. */
void lsp_proc_kick(lsp_proc *p);
/* fp.listProcesses's model. */
cJSON *lsp_procs_list(void);

/* The exec x (a stream started on p) is driven with p's channel and freed once done. */
void lsp_proc_track(lsp_proc *p, fp_exec *x);
/* Starts command (watch, trace) in p on the function fn (an entry of the agent's code.map: its
 * "locate"), with the members of options added to its params, and tracks it with p. Returns
 * 0 with *running (NULL when it already ended), or -1 with err. */
int lsp_proc_exec_at(lsp_proc *p, const char *command, const cJSON *fn, const cJSON *options,
                     const fp_exec_sink *sink, fp_exec **running, fp_error *err);
/* The error of a process that cannot take a command: why, or "no longer attached". */
void lsp_proc_absent_error(const lsp_proc *p, const fp_error *why, fp_error *out);
/* A request to the agent of p, answered through cb (on the loop). */
int64_t lsp_proc_request(lsp_proc *p, const char *method, cJSON *params, int timeout_ms,
                         fp_channel_reply_fn cb, void *ud);

/* ===================================== Code maps (procs.c) =================================== */

/* The code p runs from path (the agent's code.map), fetched once and cached; cb is called when
 * it is known (map NULL with err when the process cannot tell). */
typedef void (*lsp_map_fn)(lsp_proc *p, const char *path, const cJSON *map, const fp_error *err,
                           void *ud);
void lsp_proc_map(lsp_proc *p, const char *path, lsp_map_fn cb, void *ud);
/* The cached map of path in p, or NULL (not asked yet, or asked and not loaded). */
const cJSON *lsp_proc_map_cached(const lsp_proc *p, const char *path);
/* The function entry named qualname in a map, or NULL. */
const cJSON *lsp_map_function(const cJSON *map, const char *qualname);
/* The same, searching from `from` (a member of the map's functions, or NULL: the first) to the
 * end and then from the first: linear over a file when asked in the file's order. */
const cJSON *lsp_map_function_from(const cJSON *map, const char *qualname, const cJSON *from);
/* The entry of the function qualname that p runs from path, through its code map; err when
 * there is none (the file is not imported there, no such function, one fp cannot reach). */
typedef void (*lsp_locate_fn)(lsp_proc *p, const cJSON *fn, const fp_error *err, void *ud);
void lsp_proc_locate(lsp_proc *p, const char *path, const char *qualname, lsp_locate_fn cb,
                     void *ud);
/* Forgets p's cached maps (a reload changed the code). */
void lsp_proc_maps_forget(lsp_proc *p, const char *path);

/* ===================================== Features ============================================== */

/* A command acting on several processes at once answers when each has answered (commands.c):
 * {..., "pids": [ok pids], "failed": [{pid, code, message, hint}]}, or an error when every one
 * failed. The fan starts holding one count, released by lsp_fan_close. */
typedef struct lsp_fan lsp_fan;
lsp_fan *lsp_fan_new(const cJSON *id, const char *command);
void lsp_fan_add(lsp_fan *f);
void lsp_fan_ok(lsp_fan *f, int pid);
void lsp_fan_fail(lsp_fan *f, int pid, const fp_error *e);
/* A member of the result (value taken). */
void lsp_fan_set(lsp_fan *f, const char *key, cJSON *value);
void lsp_fan_close(lsp_fan *f);

/* Where a command acts: a document's function, by uri + (line or qualname). */
typedef struct lsp_target_fn {
    lsp_doc *doc;
    const lsp_def *def;
    char path[4096];
} lsp_target_fn;
/* Reads {uri, line | function} from a command's argument; false with a message in err. */
bool lsp_target_fn_from(const cJSON *arg, lsp_target_fn *t, char *err, size_t size);

/* lenses.c */
void lsp_lens_request(const cJSON *id, const cJSON *params);
void lsp_lens_resolve(const cJSON *id, const cJSON *params);
/* Figures changed: asks the client to refresh its lenses (throttled). */
void lsp_lens_changed(void);

/* watch.c */
void lsp_watch_command(const cJSON *id, const cJSON *arg);
/* Stops the watches on qualname in path (NULL: every watch); returns how many. */
int lsp_watch_stop(const char *path, const char *qualname);
void lsp_watch_proc_gone(lsp_proc *p);
int lsp_watch_count(void);
/* Diagnostics and hover text of the watches in path (diagnostics.c, hover.c call these). */
void lsp_watch_diagnostics(lsp_doc *doc, cJSON *out);
char *lsp_watch_hover(lsp_doc *doc, const lsp_def *def);

/* monitor.c */
void lsp_monitor_command(const cJSON *id, const cJSON *arg);
int lsp_monitor_stop(const char *path, const char *qualname);
void lsp_monitor_proc_gone(lsp_proc *p);
int lsp_monitor_count(void);
bool lsp_monitor_active(const char *path, const char *qualname);
/* The lens title of a monitored function (caller frees), or NULL when it is not monitored. */
char *lsp_monitor_lens(const char *path, const char *qualname);
char *lsp_monitor_hover(const char *path, const char *qualname);
/* A reload of qualname took effect: figures from now on are shown beside the ones before. */
void lsp_monitor_reloaded(const char *path, const char *qualname);

/* reload.c */
void lsp_reload_command(const cJSON *id, const cJSON *arg);
void lsp_reload_on_save(lsp_doc *doc);
void lsp_reload_diagnostics(lsp_doc *doc, cJSON *out);
void lsp_reload_forget(const char *path);

/* profile.c: fp.profile (the sampler, run here), its hints and lenses. */
void lsp_profile_command(const cJSON *id, const cJSON *arg);
void lsp_profile_stop_command(const cJSON *id, const cJSON *arg);
void lsp_profile_clear_command(const cJSON *id, const cJSON *arg);
/* Processes being sampled now. */
int lsp_profile_running(void);
/* The inlay hints of doc's hot lines between lines from and to (0-based, inclusive) into out. */
void lsp_profile_hints(lsp_doc *doc, int from, int to, cJSON *out);
/* The lens title of qualname's figures (caller frees), NULL when it has none. */
char *lsp_profile_lens(lsp_doc *doc, const lsp_def *def);
/* Stops every sampler at once (the server ends): their files are written, nothing is shown. */
void lsp_profile_shutdown(void);
/* The directory fp-lsp writes its files to ($XDG_RUNTIME_DIR/fp, else /tmp/fp-UID), made 0700
 * when missing. 0, or -1 with err. */
int lsp_runtime_dir(char *buf, size_t size, fp_error *err);

/* trace.c: fp.trace (the agent's trace stream), its hints, lens and hover. */
void lsp_trace_command(const cJSON *id, const cJSON *arg);
int lsp_trace_stop(const char *path, const char *qualname);
void lsp_trace_proc_gone(lsp_proc *p);
int lsp_trace_count(void);
void lsp_trace_hints(lsp_doc *doc, int from, int to, cJSON *out);
/* Whether fp-lsp traces qualname of path (its lens shows). */
bool lsp_trace_active(const char *path, const char *qualname);
char *lsp_trace_lens(const char *path, const char *qualname);
char *lsp_trace_hover(const char *path, const char *qualname);

/* stack.c: fp.stack (every thread read from outside), its document and diagnostics. */
void lsp_stack_command(const cJSON *id, const cJSON *arg);
void lsp_stack_clear_command(const cJSON *id, const cJSON *arg);
void lsp_stack_diagnostics(lsp_doc *doc, cJSON *out);

/* hints.c: textDocument/inlayHint (profile and trace figures); asks the client to refresh. */
void lsp_hints_request(const cJSON *id, const cJSON *params);
void lsp_hints_changed(void);

/* hover.c */
void lsp_hover_request(const cJSON *id, const cJSON *params);

/* diagnostics.c: republishes doc's diagnostics (watch values, reload refusals). */
void lsp_diagnostics_publish(lsp_doc *doc);
void lsp_diagnostics_publish_path(const char *path);
void lsp_diagnostics_publish_all(void);

/* commands.c */
void lsp_commands_execute(const cJSON *id, const cJSON *params);
/* The commands the server serves (executeCommandProvider.commands), a new array. */
cJSON *lsp_commands_list(void);
/* Sends fp/status (what is attached and active). */
void lsp_status_changed(void);

#endif
