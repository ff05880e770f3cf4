/* Command execution (see fp_exec.h): the dispatcher, agent requests and the streams they
 * start, and the blocking driver of the terminal client. Outside commands are in
 * exec_outside.c. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_internal.h"
#include "fp_clock.h"
#include "fp_json.h"
#include "fp_log.h"

/* How long a stopped stream may take to confirm (the agent flushes its last events first). */
#define EXEC_STOP_MS 3000

#define XLOG(x, ...)                                                                               \
    do {                                                                                           \
        if ((x)->env.debug) fp_log_debug(__VA_ARGS__);                                             \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Ending
 */

void exec_finish(fp_exec *x, const fp_error *err, const cJSON *rpc_error)
{
    if (x->done) return;
    x->done = true;
    if (x->route) {
        fp_channel_unroute(x->env.ch, x->route);
        x->route = 0;
    }
    if (x->req) {
        fp_channel_forget(x->env.ch, x->req);
        x->req = 0;
    }
    fp_exec_end end = {.err = err,
                       .rpc_error = rpc_error,
                       .stopped_by = x->why[0] ? x->why : NULL,
                       .reports = x->reports};
    if (x->sink.end) x->sink.end(x->sink.ud, x, &end);
}

void exec_fail(fp_exec *x, fp_errcode code, const char *hint, const char *fmt, ...)
{
    fp_error e;
    fp_error_clear(&e);
    char msg[sizeof e.message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fp_error_set(&e, code, hint, "%s", msg);
    exec_finish(x, &e, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Agent requests and streams
 */

static void exec_on_note(fp_channel *ch, const char *method, const cJSON *params, void *ud)
{
    (void)ch;
    fp_exec *x = ud;
    bool end = strcmp(method, x->stream_end) == 0;
    if (!end) x->reports++;
    if (x->sink.note) x->sink.note(x->sink.ud, x, method, params);
    /* Stopped by us: the stop request's answer ends it, after this last notification. */
    if (end && !x->stopping) {
        /* A stream that could not go on (its filter kept failing) is a command that failed. */
        const char *error = fp_json_str(params, "error", "");
        if (error[0])
            exec_fail(x, FP_E_REMOTE, NULL, "%s: %s", x->p.cmd->name, error);
        else
            exec_finish(x, NULL, NULL);
    }
}

static void exec_on_stopped(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    fp_exec *x = ud;
    x->req = 0;
    XLOG(x, "'%s' %s", x->stream_stop, r->err ? r->err->message : "answered");
    exec_finish(x, NULL, NULL);
}

static void exec_send_stop(fp_exec *x)
{
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, x->stream_key, x->stream_id);
    XLOG(x, "stopping the stream with '%s' (%s)", x->stream_stop, x->why);
    fp_error e;
    x->req =
        fp_channel_request(x->env.ch, x->stream_stop, params, EXEC_STOP_MS, exec_on_stopped, x, &e);
    if (!x->req) exec_finish(x, NULL, NULL); /* the connection is gone: nothing left to stop */
}

/* A result holding "stream": {id_key, id, end, stop} starts a stream; returns whether it did. */
static bool exec_follow(fp_exec *x, const cJSON *result)
{
    const cJSON *st = fp_json_get(result, "stream");
    const cJSON *id = fp_json_get(st, "id");
    const char *key = fp_json_str(st, "id_key", NULL);
    const char *end = fp_json_str(st, "end", NULL);
    const char *stop = fp_json_str(st, "stop", NULL);
    if (!key || !end || !stop || !cJSON_IsNumber(id)) return false;
    snprintf(x->stream_key, sizeof x->stream_key, "%s", key);
    snprintf(x->stream_end, sizeof x->stream_end, "%s", end);
    snprintf(x->stream_stop, sizeof x->stream_stop, "%s", stop);
    x->stream_id = id->valuedouble;
    x->route = fp_channel_route(x->env.ch, key, x->stream_id, exec_on_note, x);
    return x->route != 0;
}

static void exec_on_reply(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    fp_exec *x = ud;
    x->req = 0;
    XLOG(x, "'%s' %s", x->method, r->err ? "failed" : "answered");
    if (r->err) {
        fp_error e = *r->err;
        if (e.code == FP_E_TIMEOUT && x->timeout_hint)
            snprintf(e.hint, sizeof e.hint, "%s", x->timeout_hint);
        exec_finish(x, &e, r->rpc_error);
        return;
    }
    if (x->stopping) {
        /* Stopped before it answered: a stream it started is stopped at once, unseen. */
        if (exec_follow(x, r->result))
            exec_send_stop(x);
        else
            exec_finish(x, NULL, NULL);
        return;
    }
    if (x->sink.result) x->sink.result(x->sink.ud, x, r->result);
    if (x->done) return;
    if (!exec_follow(x, r->result)) exec_finish(x, NULL, NULL);
}

void exec_agent_start(fp_exec *x, const char *method, cJSON *params)
{
    x->kind = EXEC_AGENT;
    snprintf(x->method, sizeof x->method, "%s", method);
    if (!x->env.ch) {
        cJSON_Delete(params);
        char hint[160];
        snprintf(hint, sizeof hint, "attach to it: fp PID --cmd '%s ...'", x->p.cmd->name);
        exec_fail(x, FP_E_USAGE, hint, "%s needs a process, and none is attached", x->p.cmd->name);
        return;
    }
    /* A stream runs until stopped: only the driver bounds it. */
    bool streaming = x->p.cmd->flags & FP_CMD_STREAMING;
    int timeout = streaming ? -1 : x->env.timeout_ms;
    XLOG(x, "sending '%s'", method);
    fp_error e;
    x->sent_ms = fp_clock_ms();
    x->req = fp_channel_request(x->env.ch, method, params ? params : cJSON_CreateObject(), timeout,
                                exec_on_reply, x, &e);
    if (!x->req) exec_finish(x, &e, NULL);
}

static void exec_agent_stop(fp_exec *x)
{
    if (x->route) {
        if (!x->req) exec_send_stop(x);
        return;
    }
    if (!(x->p.cmd->flags & FP_CMD_STREAMING)) {
        /* A plain request given up on: its answer is dropped when it comes. */
        fp_channel_forget(x->env.ch, x->req);
        x->req = 0;
        fp_error e;
        fp_error_set(&e, FP_E_INTERRUPTED,
                     "the agent may still finish it in the background; its answer is dropped",
                     "interrupted while waiting for '%s'", x->method);
        x->why[0] = '\0'; /* an error, not a stop */
        exec_finish(x, &e, NULL);
        return;
    }
    if (x->stopped_by_deadline) {
        /* A stream whose start never answered within the whole --timeout never started (the GIL
         * is held, say): that is the timeout of its start, with the reason, not a stop. */
        fp_channel_expire_now(x->env.ch, x->req, fp_clock_ms() - x->sent_ms);
        x->why[0] = '\0'; /* an error, not a stop */
        return;
    }
    /* The start has not been answered yet: wait a little for it, to stop what it starts. */
    x->stop_deadline = fp_clock_ms() + EXEC_STOP_MS;
}

static void exec_agent_tick(fp_exec *x)
{
    if (x->stop_deadline > 0 && x->req && fp_clock_ms() >= x->stop_deadline) {
        exec_finish(x, NULL, NULL);
        return;
    }
    if (x->route && !x->req && fp_channel_closed(x->env.ch)) {
        /* A stream whose connection went away: say how, as a request would. */
        fp_error e;
        fp_channel_closed_error(x->env.ch, &e);
        exec_finish(x, &e, NULL);
    }
}

/* ---------------------------------------------------------------------------------------------
 * The dispatcher
 */

static int exec_copy_parsed(fp_cmd_parsed *to, const fp_cmd_parsed *from)
{
    memset(to, 0, sizeof *to);
    to->cmd = from->cmd;
    to->method = from->method;
    to->params = from->params ? cJSON_Duplicate(from->params, 1) : NULL;
    to->file = from->file ? strdup(from->file) : NULL;
    to->topic = from->topic ? strdup(from->topic) : NULL;
    if ((from->params && !to->params) || (from->file && !to->file) || (from->topic && !to->topic)) {
        fp_commands_parsed_free(to);
        return -1;
    }
    return 0;
}

fp_exec *fp_exec_start(const fp_exec_env *env, const fp_cmd_parsed *p, const fp_exec_sink *sink)
{
    fp_exec *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    if (exec_copy_parsed(&x->p, p) != 0) {
        free(x);
        return NULL;
    }
    x->env = *env;
    x->sink = *sink;
    x->perf_until = -1;
    switch (p->cmd->id) {
    case FP_CMD_STACK:
        exec_stack_start(x);
        break;
    case FP_CMD_PERF:
        exec_perf_start(x);
        break;
    case FP_CMD_GILSTAT:
        exec_gilstat_start(x);
        break;
    default:
        if (!p->cmd->method && !p->method) {
            exec_fail(x, FP_E_INTERNAL, NULL, "'%s' is run by the front end itself", p->cmd->name);
            break;
        }
        exec_agent_start(x, p->method ? p->method : p->cmd->method,
                         x->p.params ? cJSON_Duplicate(x->p.params, 1) : NULL);
        break;
    }
    return x;
}

void fp_exec_stop(fp_exec *x, const char *why)
{
    if (x->done || x->stopping) return;
    x->stopping = true;
    snprintf(x->why, sizeof x->why, "%s", why ? why : "stopped");
    switch (x->kind) {
    case EXEC_AGENT:
        exec_agent_stop(x);
        break;
    case EXEC_PERF:
        exec_perf_stop(x, x->why);
        break;
    case EXEC_GILSTAT:
        exec_gilstat_stop(x, x->why);
        break;
    case EXEC_STACK:
        break;
    }
}

void fp_exec_tick(fp_exec *x)
{
    if (x->done) return;
    switch (x->kind) {
    case EXEC_AGENT:
        exec_agent_tick(x);
        break;
    case EXEC_PERF:
        exec_perf_tick(x);
        break;
    case EXEC_GILSTAT:
        exec_gilstat_tick(x);
        break;
    case EXEC_STACK:
        break;
    }
}

double fp_exec_next_deadline(const fp_exec *x)
{
    if (x->done) return -1;
    switch (x->kind) {
    case EXEC_AGENT:
        return x->stop_deadline > 0 ? x->stop_deadline : -1;
    case EXEC_PERF: {
        /* The sampler's own end (the process's exit) is looked for this often. */
        double poll = fp_clock_ms() + 20;
        return x->perf_until >= 0 && x->perf_until < poll ? x->perf_until : poll;
    }
    case EXEC_GILSTAT:
        return exec_gilstat_deadline(x);
    case EXEC_STACK:
        return -1;
    }
    return -1;
}

bool fp_exec_done(const fp_exec *x)
{
    return x->done;
}

bool fp_exec_uses_channel(const fp_exec *x)
{
    return x->kind == EXEC_AGENT && x->env.ch;
}

const fp_cmd_parsed *fp_exec_command(const fp_exec *x)
{
    return &x->p;
}

void fp_exec_free(fp_exec *x)
{
    if (!x) return;
    if (!x->done) {
        /* Freed while running (fp-lsp closing a connection): stop what runs outside quietly. */
        x->sink = (fp_exec_sink){0};
        fp_exec_stop(x, "detach");
        exec_finish(x, NULL, NULL);
    }
    fp_commands_parsed_free(&x->p);
    free(x->perf_path);
    free(x);
}

/* ---------------------------------------------------------------------------------------------
 * The blocking driver (fp)
 */

/* Whether x runs until stopped (a stream, perf, gilstat), which a deadline of the driver ends;
 * a plain request has its own timeout instead. */
static bool exec_open_ended(const fp_exec *x)
{
    if (x->kind == EXEC_PERF || x->kind == EXEC_GILSTAT) return true;
    return x->kind == EXEC_AGENT && (x->route || (x->p.cmd->flags & FP_CMD_STREAMING));
}

void fp_exec_wait(fp_exec *x, const fp_exec_wait_opts *o)
{
    while (!x->done) {
        double now = fp_clock_ms();
        if (!x->stopping) {
            if (o->interrupted && *o->interrupted) {
                *o->interrupted = 0;
                fp_exec_stop(x, "Ctrl-C");
            } else if (o->stop && atomic_load(o->stop)) {
                fp_exec_stop(x, o->stop_reason && *o->stop_reason ? *o->stop_reason : "stopped");
            } else if (o->until_ms >= 0 && now >= o->until_ms && exec_open_ended(x)) {
                x->stopped_by_deadline = true;
                fp_exec_stop(x, o->until_name ? o->until_name : "--timeout");
            }
            if (x->done) break;
        }
        fp_channel *ch = fp_exec_uses_channel(x) ? x->env.ch : NULL;
        double next = fp_exec_next_deadline(x);
        double chd = ch ? fp_channel_next_deadline(ch) : -1;
        if (chd >= 0 && (next < 0 || chd < next)) next = chd;
        if (!x->stopping && o->until_ms >= 0 && exec_open_ended(x) &&
            (next < 0 || o->until_ms < next))
            next = o->until_ms;
        /* Another thread's stop flag is looked at this often. */
        if (o->stop && (next < 0 || next > now + 100)) next = now + 100;
        int wait = next < 0 ? -1 : (next <= now ? 0 : (int)(next - now) + 1);
        struct pollfd pfd = {.fd = ch ? fp_channel_fd(ch) : -1,
                             .events = POLLIN | (ch && fp_channel_wants_write(ch) ? POLLOUT : 0)};
        int pr = poll(&pfd, ch ? 1 : 0, wait);
        if (pr < 0 && errno == EINTR) {
            /* Ctrl-C (the handler has no SA_RESTART): noticed at the top of the loop. */
            if (o->interrupted && !*o->interrupted && !x->stopping) *o->interrupted = 1;
            continue;
        }
        if (ch) fp_channel_drive(ch);
        fp_exec_tick(x);
    }
}

/* ---------------------------------------------------------------------------------------------
 * On a thread of its own
 */

struct fp_exec_thread {
    pthread_t thread;
    fp_exec *x;
    atomic_int stop;
    atomic_int ended;
    const char *why; /* published to the thread by the atomic store of stop */
};

static void *exec_thread_main(void *arg)
{
    fp_exec_thread *t = arg;
    fp_exec_wait_opts o = {.until_ms = -1, .stop = &t->stop, .stop_reason = &t->why};
    fp_exec_wait(t->x, &o);
    atomic_store(&t->ended, 1);
    return NULL;
}

fp_exec_thread *fp_exec_thread_start(fp_exec *x, fp_error *err)
{
    fp_exec_thread *t = calloc(1, sizeof *t);
    if (t) {
        t->x = x;
        atomic_init(&t->stop, 0);
        atomic_init(&t->ended, 0);
        /* The thread must never take the front end's Ctrl-C (it interrupts the shell's waits). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&t->thread, NULL, exec_thread_main, t);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc == 0) return t;
        free(t);
    }
    fp_error_set(err, FP_E_INTERNAL, NULL, "cannot start a thread to run '%s'", x->p.cmd->name);
    fp_exec_stop(x, "no thread");
    fp_exec_free(x);
    return NULL;
}

bool fp_exec_thread_running(const fp_exec_thread *t)
{
    return !atomic_load(&t->ended);
}

void fp_exec_thread_stop(fp_exec_thread *t, const char *why)
{
    if (!t) return;
    t->why = why;
    atomic_store(&t->stop, 1);
    pthread_join(t->thread, NULL);
    fp_exec_free(t->x);
    free(t);
}
