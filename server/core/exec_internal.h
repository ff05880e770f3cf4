/* Private to the command execution (exec.c: the dispatcher, agent requests and streams, the
 * blocking driver; exec_outside.c: stack, perf and gilstat read from outside). */
#ifndef FP_EXEC_INTERNAL_H
#define FP_EXEC_INTERNAL_H

#include <stdint.h>

#include "fp_exec.h"
#include "fp_gil.h"
#include "fp_profile.h"
#include "fp_remote.h"
#include "fp_sampler.h"

typedef enum exec_kind {
    EXEC_AGENT = 1, /* one agent request, maybe starting a stream */
    EXEC_STACK,     /* stack from outside */
    EXEC_PERF,      /* the sampler, until stopped */
    EXEC_GILSTAT,   /* the GIL collector, until stopped */
} exec_kind;

struct fp_exec {
    fp_exec_env env;
    fp_exec_sink sink;
    fp_cmd_parsed p; /* a copy, owned */
    exec_kind kind;
    bool done;
    bool stopping;
    bool stopped_by_deadline; /* the driver's --timeout, not Ctrl-C or a caller */
    char why[32];             /* what stopped it */
    int reports;

    /* --- EXEC_AGENT --- */
    char method[64];
    int64_t req;         /* the request in flight (start or stop), 0 when none */
    int route;           /* the stream's notification route, 0 when none */
    char stream_key[32]; /* params[key] == id: the stream's notifications */
    double stream_id;
    char stream_end[64];      /* the notification that ends it */
    char stream_stop[64];     /* the request that stops it */
    double sent_ms;           /* when the request went out */
    double stop_deadline;     /* stopped before the start answer came: give up on it then */
    const char *timeout_hint; /* replaces the hint of a timeout (stack -a) */

    /* --- EXEC_PERF --- */
    fp_remote *remote;
    fp_sampler *sampler;
    const fp_recorder *rec;
    char *perf_path;
    double perf_until; /* -d: fp_clock_ms when it ends, -1: until stopped */
    bool perf_sampled; /* its first samples were taken (logged once, with --debug) */

    /* --- EXEC_GILSTAT --- */
    fp_gil *gil;
};

/* Ends x: the sink's end once, with err (may be NULL) and the stop reason if any. */
void exec_finish(fp_exec *x, const fp_error *err, const cJSON *rpc_error);
/* Ends x with an error made here (printf-style message; hint may be NULL). */
void exec_fail(fp_exec *x, fp_errcode code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void exec_stack_start(fp_exec *x);
void exec_perf_start(fp_exec *x);
void exec_perf_stop(fp_exec *x, const char *why);
void exec_perf_tick(fp_exec *x);
void exec_gilstat_start(fp_exec *x);
void exec_gilstat_stop(fp_exec *x, const char *why);
void exec_gilstat_tick(fp_exec *x);
double exec_gilstat_deadline(const fp_exec *x);

/* An agent request for x (stack -a goes through the agent too). */
void exec_agent_start(fp_exec *x, const char *method, cJSON *params);

#endif
