/* Command execution, shared by the front ends: from a parsed command (fp_commands.h) to its
 * models. An exec sends the agent request and follows the stream it starts (the id_key/end/stop
 * protocol of protocol/methods.md), or runs an outside command (stack read from outside, the
 * perf sampler, the gilstat collector), and hands every model to a sink: the result, each
 * notification, the end. It never blocks for long and never waits by itself: the owner of the
 * loop drives it (fp_exec_tick at fp_exec_next_deadline, and the channel), and stops it for
 * Ctrl-C, a timeout or a detach with fp_exec_stop. fp_exec_wait is the blocking driver of the
 * terminal client.
 * Ownership: fp_exec_start copies what it needs of the parsed command; the front end frees the
 * exec with fp_exec_free once fp_exec_done (never from a sink callback). Models handed to the
 * sink are borrowed for the call. */
#ifndef FP_EXEC_H
#define FP_EXEC_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "fp_channel.h"
#include "fp_commands.h"
#include "fp_error.h"

typedef struct fp_exec fp_exec;

/* How a command ended. */
typedef struct fp_exec_end {
    const fp_error *err;    /* NULL: it succeeded (a stream stopped by the user succeeded) */
    const cJSON *rpc_error; /* the agent's error object when err->code == FP_E_REMOTE */
    const char *stopped_by; /* set when fp_exec_stop ended it ("Ctrl-C", "--timeout", ...) */
    int reports;            /* notifications its stream delivered (its end excluded) */
} fp_exec_end;

typedef struct fp_exec_sink {
    /* The command's result model: the agent's answer, or the model the core built (stack from
     * outside, perf's summary). Streams start with it. */
    void (*result)(void *ud, const fp_exec *x, const cJSON *result);
    /* A notification of the command's stream (watch/event, gilstat/report, ...). gilstat's
     * come from the thread that drives the exec. */
    void (*note)(void *ud, const fp_exec *x, const char *method, const cJSON *params);
    /* Outside commands that run until stopped, once they run: perf {pid, rate_hz,
     * duration_s}. May be NULL. */
    void (*started)(void *ud, const fp_exec *x, const cJSON *info);
    /* The command is over; called exactly once. */
    void (*end)(void *ud, const fp_exec *x, const fp_exec_end *end);
    void *ud;
} fp_exec_sink;

typedef struct fp_exec_env {
    fp_channel *ch; /* the agent of the attached process; NULL when there is none */
    int pid;        /* the attached process: outside commands read it unless given a PID */
    int timeout_ms; /* bound of one agent request; -1: none. Streams are bounded by the driver. */
    bool debug;     /* log to stderr */
} fp_exec_env;

/* Starts p. The sink may be called from within (a command that ends at once: a read from
 * outside, an error before anything was sent). NULL only when out of memory. */
fp_exec *fp_exec_start(const fp_exec_env *env, const fp_cmd_parsed *p, const fp_exec_sink *sink);
/* Asks a running command to stop; why ("Ctrl-C", "--timeout", "detach") names the reason in its
 * end. A stream is stopped with its stop request (its last events still come); outside commands
 * stop at once. Does nothing once it is done or already stopping. */
void fp_exec_stop(fp_exec *x, const char *why);
/* Runs what fell due (perf's end, gilstat's reports, the end of a closed connection). */
void fp_exec_tick(fp_exec *x);
/* When fp_exec_tick is due next (fp_clock_ms), -1 when only the channel's traffic matters. */
double fp_exec_next_deadline(const fp_exec *x);
bool fp_exec_done(const fp_exec *x);
/* Whether the exec talks to the agent (its channel must be driven). */
bool fp_exec_uses_channel(const fp_exec *x);
const fp_cmd_parsed *fp_exec_command(const fp_exec *x);
void fp_exec_free(fp_exec *x);

/* perf while it samples (the editor's hot lines): the samples taken since the last window, as
 * a profile of their own (the caller frees it), or NULL when x is not sampling. *ended (may be
 * NULL) tells whether sampling ended by itself (the process exited): stop x then, to write the
 * profile. Call from the thread that drives x, never while another thread stops it. */
struct fp_profile *fp_exec_perf_window(fp_exec *x, bool *ended);

typedef struct fp_exec_wait_opts {
    double until_ms;        /* fp_clock_ms at which to stop it with until_name; -1: never */
    const char *until_name; /* "--timeout" */
    volatile sig_atomic_t *interrupted; /* set by a SIGINT handler: stop with "Ctrl-C" */
    atomic_int *stop;                   /* set by another thread: stop with *stop_reason */
    const char *const *stop_reason;
} fp_exec_wait_opts;

/* Drives x (and its channel) in poll until it is done. Returns once fp_exec_done. */
void fp_exec_wait(fp_exec *x, const fp_exec_wait_opts *o);

/* An exec driven on a thread of its own (fp's shell keeps reading commands meanwhile: gilstat
 * in the background). The thread starts with every signal blocked; the sink is called from it. */
typedef struct fp_exec_thread fp_exec_thread;
/* Starts driving x (which the thread then owns). NULL with err when no thread can be made (x
 * is then stopped and freed). */
fp_exec_thread *fp_exec_thread_start(fp_exec *x, fp_error *err);
/* Whether its exec is still running (it may end by itself: the process exited). */
bool fp_exec_thread_running(const fp_exec_thread *t);
/* Stops the exec with why (when still running), joins the thread and frees everything. */
void fp_exec_thread_stop(fp_exec_thread *t, const char *why);

#endif
