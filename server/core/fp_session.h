/* A session with the agent inside one target: find or start the agent, then talk to it over a
 * channel (fp_channel.h). fp_session_connect is the attach job both front ends use (blocking,
 * thread-safe: fp-lsp runs it on a worker thread); fp_session_open wraps it with the blocking
 * calls of the terminal client. */
#ifndef FP_SESSION_H
#define FP_SESSION_H

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "fp_attach.h"
#include "fp_channel.h"
#include "fp_error.h"

typedef struct fp_session fp_session;

typedef struct fp_session_opts {
    bool debug;            /* log attach and connection steps to stderr */
    int attach_timeout_ms; /* bound for injection + the agent coming up (default 5000) */
    const char *agent_lib; /* libfpagent.so to inject; NULL: fp_session_agent_lib() */
} fp_session_opts;

/* What an attach job gives back: the channel to the agent (the caller frees it), the target as
 * inspected, and whether the agent had to be injected now (false: one was already running). */
typedef struct fp_connected {
    fp_channel *ch;
    fp_target target;
    bool injected;
} fp_connected;

/* Checks the target, connects to its agent, injecting the agent first when none answers.
 * Blocks up to the attach bound; uses no process-wide state (the signal mask it changes is the
 * calling thread's), so attaches to different processes may run on several threads at once.
 * Returns 0 with *out filled, or -1 with err. */
int fp_session_connect(int pid, const fp_session_opts *opts, fp_connected *out, fp_error *err);

/* fp_session_connect, as a session. Returns NULL with err set on failure. */
fp_session *fp_session_open(int pid, const fp_session_opts *opts, fp_error *err);
/* Sends `detach` (best effort, bounded) and closes the connection; frees s. */
void fp_session_close(fp_session *s);

const fp_target *fp_session_target(const fp_session *s);
/* True when this open had to inject the agent (false: an agent was already running). */
bool fp_session_injected(const fp_session *s);
/* The channel of the session (borrowed): for streams and the non-blocking use of requests. */
fp_channel *fp_session_channel(const fp_session *s);

/* fp_channel_call on the session's channel: sends a request and waits up to timeout_ms (-1:
 * forever) or until Ctrl-C (interrupted, may be NULL). params is taken. Returns the result
 * (caller frees), or NULL with err: FP_E_REMOTE (err->rpc_code set, the agent's message and,
 * in err->hint, its data rendered for humans), FP_E_TIMEOUT, FP_E_CLOSED, FP_E_INTERRUPTED. */
cJSON *fp_session_call(fp_session *s, const char *method, cJSON *params, int timeout_ms,
                       volatile sig_atomic_t *interrupted, fp_error *err);
/* The error object of the last FP_E_REMOTE failure of fp_session_call (borrowed, valid until
 * the next call). */
const cJSON *fp_session_last_error(const fp_session *s);

/* Path of the agent library next to this executable: <exe dir>/../lib/fp/libfpagent.so, or
 * $FP_AGENT_LIB when set. Returns 0, or -1 with err when it does not exist. */
int fp_session_agent_lib(char *buf, size_t size, fp_error *err);

#endif
