/* Streams: a command whose result holds "stream": {"id_key", "id", "end", "stop"} (watch,
 * tt -t, trace) goes on after its result. fp hands the stream's notifications to the command's
 * renderer as they come, until the one named `end`; Ctrl-C or --timeout stop it early with the
 * request `stop` {id_key: id}, which is not a failure. The agent sends the start result before
 * the first notification, so the result's header always comes first. */
#include "fp_cli.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "fp_log.h"

/* How long fp waits for the agent to confirm a stop (it flushes the stream's last events). */
#define STREAM_STOP_MS 3000

typedef struct stream_ctx {
    const char *key;
    double id;
    const char *end;
    fp_notify_fn on_notify;
    void *ud;
    int reports; /* notifications of this stream, its end excluded */
    bool ended;
    char error[512]; /* the end says why the stream could not go on ("error"), or "" */
} stream_ctx;

static double stream_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Passes on the notifications of this stream; others (another command's) are not ours. */
static void stream_filter(const char *method, const cJSON *params, void *ud)
{
    stream_ctx *s = ud;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(params, s->key);
    if (!cJSON_IsNumber(id) || id->valuedouble != s->id) return;
    bool end = strcmp(method, s->end) == 0;
    if (!end) s->reports++;
    if (s->on_notify) s->on_notify(method, params, s->ud);
    if (end) {
        s->ended = true;
        const cJSON *error = cJSON_GetObjectItemCaseSensitive(params, "error");
        if (cJSON_IsString(error) && error->valuestring[0])
            snprintf(s->error, sizeof s->error, "%s", error->valuestring);
    }
}

static const char *stream_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Reads what the socket has. Returns 0, or -1 with e when the connection is gone. */
static int stream_drain(cli *c, stream_ctx *s, fp_error *e)
{
    cJSON *msg;
    int r;
    while (!s->ended && (r = fp_session_read(c->session, &msg, e)) == 1) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(msg, "method");
        if (cJSON_IsString(m) && !cJSON_GetObjectItemCaseSensitive(msg, "id"))
            stream_filter(m->valuestring, cJSON_GetObjectItemCaseSensitive(msg, "params"), s);
        /* Anything else is the late answer to a request given up on: dropped. */
        cJSON_Delete(msg);
    }
    return s->ended ? 0 : (r < 0 ? -1 : 0);
}

int stream_follow(cli *c, const fp_cmd_parsed *p, const cJSON *result, fp_notify_fn on_notify,
                  void *ud)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(result, "stream");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(st, "id");
    stream_ctx s = {.key = stream_str(st, "id_key"),
                    .end = stream_str(st, "end"),
                    .on_notify = on_notify,
                    .ud = ud};
    const char *stop = stream_str(st, "stop");
    if (!s.key || !s.end || !stop || !cJSON_IsNumber(id))
        return CLI_EXIT_OK; /* nothing to follow */
    s.id = id->valuedouble;

    double started = stream_now_ms();
    const char *why = NULL;
    fp_error e;
    fp_error_clear(&e);
    while (!why) {
        if (stream_drain(c, &s, &e) != 0) {
            if (e.code == FP_E_CLOSED) {
                c->detached = true;
                c->quit = true;
            }
            run_report(c, p->cmd->name, &e);
            return CLI_EXIT_FAILED;
        }
        if (s.ended && s.error[0]) {
            /* A stream that could not go on (its filter kept failing) is a failed command. */
            fflush(stdout);
            fprintf(stderr, "fp: %s: %s\n", p->cmd->name, s.error);
            return CLI_EXIT_FAILED;
        }
        if (s.ended) return CLI_EXIT_OK;
        if (cli_interrupted) {
            why = "Ctrl-C";
            break;
        }
        int wait = -1;
        if (c->timeout_set) {
            double left = (double)c->timeout_ms - (stream_now_ms() - started);
            if (left <= 0) {
                why = "--timeout";
                break;
            }
            wait = (int)left + 1;
        }
        struct pollfd pfd = {.fd = fp_session_fd(c->session), .events = POLLIN};
        if (poll(&pfd, 1, wait) < 0 && errno != EINTR) {
            fp_error_set(&e, FP_E_IO, NULL, "poll failed: %s", strerror(errno));
            run_report(c, p->cmd->name, &e);
            return CLI_EXIT_FAILED;
        }
    }

    /* Stopped by the user: the agent removes what it installed and sends the stream's end. */
    cJSON *params = cJSON_CreateObject();
    cJSON_AddItemToObject(params, s.key, cJSON_Duplicate(id, 1));
    if (c->debug) fp_log_debug("stopping the stream with '%s' (%s)", stop, why);
    cli_interrupted = 0;
    fp_error_clear(&e);
    cJSON *r = fp_session_call(c->session, stop, params, STREAM_STOP_MS, stream_filter, &s, &e);
    if (!r && e.code == FP_E_CLOSED) c->detached = true;
    cJSON_Delete(r);
    /* Only what the stream reported goes to stdout; the reason goes to stderr, as always. */
    fflush(stdout);
    fprintf(stderr, "fp: %s stopped (%s) after %d report%s\n", p->cmd->name, why, s.reports,
            s.reports == 1 ? "" : "s");
    return CLI_EXIT_OK;
}
