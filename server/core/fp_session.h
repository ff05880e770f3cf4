/* A session with the agent inside one target: find or start the agent, then exchange
 * JSON-RPC messages over its Unix socket. Used by both front ends (fp and fp-lsp): the
 * blocking fp_session_call serves the terminal client; fp-lsp polls fp_session_fd and uses
 * fp_session_send / fp_session_read. */
#ifndef FP_SESSION_H
#define FP_SESSION_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "fp_attach.h"
#include "fp_error.h"

typedef struct fp_session fp_session;

typedef struct fp_session_opts {
    bool debug;            /* log attach and connection steps to stderr */
    int attach_timeout_ms; /* bound for injection + the agent coming up (default 5000) */
    const char *agent_lib; /* libfpagent.so to inject; NULL: fp_session_agent_lib() */
} fp_session_opts;

/* Receives the notifications that arrive while waiting for a response. */
typedef void (*fp_notify_fn)(const char *method, const cJSON *params, void *ud);

/* Checks the target, connects to its agent, injecting the agent first when none answers.
 * Returns NULL with err set on failure. The caller closes the session with fp_session_close. */
fp_session *fp_session_open(int pid, const fp_session_opts *opts, fp_error *err);
/* Sends `detach` (best effort, bounded) and closes the connection; frees s. */
void fp_session_close(fp_session *s);

const fp_target *fp_session_target(const fp_session *s);
/* True when this open had to inject the agent (false: an agent was already running). */
bool fp_session_injected(const fp_session *s);
int fp_session_fd(const fp_session *s);

/* Sends a request and waits up to timeout_ms (-1: forever) for its response, passing any
 * notification to on_notify (may be NULL). params is taken (freed by the call).
 * Returns the result (caller frees), or NULL with err: FP_E_REMOTE (err->rpc_code set, the
 * agent's message and, in err->hint, its data rendered for humans), FP_E_TIMEOUT, FP_E_CLOSED. */
cJSON *fp_session_call(fp_session *s, const char *method, cJSON *params, int timeout_ms,
                       fp_notify_fn on_notify, void *ud, fp_error *err);
/* The error object of the last FP_E_REMOTE failure (borrowed, valid until the next call). */
const cJSON *fp_session_last_error(const fp_session *s);

/* Non-blocking use: send a request (params taken), get its id. Returns 0 or -1 with err. */
int fp_session_send(fp_session *s, const char *method, cJSON *params, int64_t *id, fp_error *err);
/* Reads what is available on the socket; returns the next whole message in *msg (caller
 * frees with cJSON_Delete), 0 when none is complete yet, -1 with err on EOF or error. */
int fp_session_read(fp_session *s, cJSON **msg, fp_error *err);

/* Path of the agent library next to this executable: <exe dir>/../lib/fp/libfpagent.so, or
 * $FP_AGENT_LIB when set. Returns 0, or -1 with err when it does not exist. */
int fp_session_agent_lib(char *buf, size_t size, fp_error *err);

#endif
