/* A channel: the connection to one agent, as both front ends use it. It keeps the requests in
 * flight with their callbacks and deadlines, routes each notification to the stream it belongs
 * to, drops the late answers of requests given up on, and decodes the agent's errors into
 * fp_error. It never blocks and never waits by itself: whoever owns the loop drives it — fp's
 * blocking calls (fp_channel_call), fp-lsp's libuv loop (readiness of fp_channel_fd, a timer
 * at fp_channel_next_deadline).
 * Ownership: fp_channel_new takes the connected socket; fp_channel_free closes it. Callbacks
 * run only from fp_channel_drive (or a function that drives, like fp_channel_call), never
 * from the call that registered them. A callback may send requests, add or remove routes and
 * free the channel (the free then happens when the drive returns). */
#ifndef FP_CHANNEL_H
#define FP_CHANNEL_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "fp_error.h"

typedef struct fp_channel fp_channel;

/* What a request came to: a result, or an error (FP_E_REMOTE: the agent answered with an
 * error, rpc_error is its object; FP_E_TIMEOUT; FP_E_CLOSED: the agent hung up; ...). */
typedef struct fp_channel_reply {
    cJSON *result; /* owned by the channel; a callback keeps it by setting this to NULL */
    const fp_error *err;
    const cJSON *rpc_error; /* FP_E_REMOTE only: {code, message, data} */
    const char *method;
} fp_channel_reply;

typedef void (*fp_channel_reply_fn)(fp_channel *ch, fp_channel_reply *r, void *ud);
typedef void (*fp_channel_note_fn)(fp_channel *ch, const char *method, const cJSON *params,
                                   void *ud);

/* Takes fd, a connected socket to the agent of process pid (made non-blocking here). NULL when
 * out of memory (fd is then closed). debug: log each message's fate to stderr. */
fp_channel *fp_channel_new(int fd, int pid, bool debug);
/* Closes the connection. Pending callbacks are not called. */
void fp_channel_free(fp_channel *ch);
/* Closes the connection now and fails every request in flight (their callbacks run now, with
 * FP_E_CLOSED): for a front end that lets an agent go while it still waits for answers. */
void fp_channel_abort(fp_channel *ch);
int fp_channel_fd(const fp_channel *ch);
int fp_channel_pid(const fp_channel *ch);
/* The agent hung up (or the connection broke): requests fail with FP_E_CLOSED. */
bool fp_channel_closed(const fp_channel *ch);
/* What a request meets once the connection is closed: the process exited, or its agent hung up
 * (shut down, exiting), with what to do. */
void fp_channel_closed_error(const fp_channel *ch, fp_error *err);

/* Sends method(params) (params taken, may be NULL). cb(ud) is called exactly once, from a
 * later drive: with the answer, or with an error — FP_E_TIMEOUT once timeout_ms (-1: never)
 * has passed, FP_E_CLOSED. Returns the request's id (> 0), or 0 with err when nothing could be
 * sent at all (the connection is closed; cb is then never called). */
int64_t fp_channel_request(fp_channel *ch, const char *method, cJSON *params, int timeout_ms,
                           fp_channel_reply_fn cb, void *ud, fp_error *err);
/* Sends a notification (no answer). Returns 0, or -1 with err. */
int fp_channel_notify(fp_channel *ch, const char *method, cJSON *params, fp_error *err);
/* Gives up on request id: its callback is never called, its answer is dropped. */
void fp_channel_forget(fp_channel *ch, int64_t id);
/* Request id times out now, as if its timeout had been waited_ms: its callback gets the timeout
 * error (with the GIL's state) from the next drive. */
void fp_channel_expire_now(fp_channel *ch, int64_t id, double waited_ms);
/* Whether a request was given up on (timeout, forget) and its answer has not come yet: the
 * agent may still be working on it, and answers this client's requests in order. */
bool fp_channel_abandoned(const fp_channel *ch);
/* Whether requests are in flight, or output waits to be written. */
bool fp_channel_busy(const fp_channel *ch);

/* Notifications whose params[key] equals id (a stream's, protocol/methods.md "Streams") go to
 * fn; the others to the default handler, else they are dropped. Returns the route (> 0). */
int fp_channel_route(fp_channel *ch, const char *key, double id, fp_channel_note_fn fn, void *ud);
void fp_channel_unroute(fp_channel *ch, int route);
void fp_channel_set_default(fp_channel *ch, fp_channel_note_fn fn, void *ud);

/* Driving. fp_channel_drive reads what the socket has, writes what is queued, expires
 * overdue requests and runs the callbacks. Returns 0, or -1 once the connection is gone (every
 * pending callback has then had FP_E_CLOSED). Call it when the fd is readable, when it is
 * writable while fp_channel_wants_write, and at fp_channel_next_deadline. */
int fp_channel_drive(fp_channel *ch);
bool fp_channel_wants_write(const fp_channel *ch);
/* The earliest deadline of a pending request (fp_clock_ms), or -1 when there is none. */
double fp_channel_next_deadline(const fp_channel *ch);

/* Blocks in poll, driving ch, until *done becomes true or until_ms (fp_clock_ms; -1: no
 * limit). Returns 1 when *done, 0 at until_ms, -1 when the connection is gone and *done is
 * still false, -2 when a signal interrupted the wait (Ctrl-C) or *interrupted was set. */
int fp_channel_wait(fp_channel *ch, const bool *done, double until_ms,
                    volatile sig_atomic_t *interrupted);

/* The blocking call of fp: sends method(params) (params taken) and drives ch until the answer,
 * timeout_ms (-1: none) or Ctrl-C (*interrupted set, or a signal interrupting the wait: the
 * request is then forgotten, FP_E_INTERRUPTED). Returns the result (caller frees) or NULL with
 * err; *rpc_error (when not NULL) gets a copy of the agent's error object (caller frees). */
cJSON *fp_channel_call(fp_channel *ch, const char *method, cJSON *params, int timeout_ms,
                       volatile sig_atomic_t *interrupted, fp_error *err, cJSON **rpc_error);

/* The agent's error object for a request of method (of process pid) as an fp_error: the
 * agent's message, err->rpc_code, and in err->hint what to do (near names, the traceback's
 * last lines, why the GIL matters, ...). Public so that every front end explains the same way. */
void fp_channel_decode_error(const char *method, int pid, const cJSON *error, fp_error *err);

#endif
