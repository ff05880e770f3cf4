/* The channel to one agent (see fp_channel.h): a write queue, an incremental frame reader,
 * the requests in flight and the notification routes. Everything happens in fp_channel_drive,
 * called by the owner of the loop; nothing here sleeps or polls but fp_channel_wait, the
 * blocking driver fp uses. */
#include "fp_channel.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fp_clock.h"
#include "fp_frame.h"
#include "fp_json.h"
#include "fp_log.h"
#include "fp_rpc.h"

/* After a timeout fp asks the agent's I/O thread (which needs no GIL) whether a thread holds
 * the GIL, to say why nothing came back. That answer takes microseconds; the bound is for a
 * machine under heavy load. */
#define CHANNEL_STATUS_MS 1000
/* Bytes read per drive: one chatty agent cannot starve the others of fp-lsp's loop. */
#define CHANNEL_READ_BUDGET (1u << 20)

typedef struct channel_pending {
    struct channel_pending *next;
    int64_t id;
    char method[64];
    double deadline; /* fp_clock_ms; -1: none */
    int timeout_ms;
    fp_channel_reply_fn cb;
    void *ud;
    /* Timed out; waiting for the status request (probe) to tell why, then cb gets the error.
     * Its own answer, when it comes, is dropped. */
    bool expired;
    fp_error err; /* the timeout, while the probe runs */
} channel_pending;

typedef struct channel_route {
    struct channel_route *next;
    int handle;
    char key[32];
    double id;
    fp_channel_note_fn fn;
    void *ud;
} channel_route;

struct fp_channel {
    int fd;
    int pid;
    bool debug;
    bool closed;   /* the connection is gone */
    bool drained;  /* and what the agent sent before it went was read */
    bool doomed;   /* freed from a callback: the drive frees it on the way out */
    int depth;     /* drives in progress (callbacks may drive again: fp_channel_call) */
    int abandoned; /* requests given up on (timeout, forget) whose answers may still come */
    int64_t next_id;
    int next_route;
    fp_frame_reader reader;
    char *out; /* framed bytes not yet written */
    size_t out_off, out_len, out_cap;
    channel_pending *pending;
    channel_route *routes;
    fp_channel_note_fn default_fn;
    void *default_ud;
};

#define CLOG(ch, ...)                                                                              \
    do {                                                                                           \
        if ((ch)->debug) fp_log_debug(__VA_ARGS__);                                                \
    } while (0)

/* ---------------------------------------------------------------------------------------------
 * Life
 */

static void channel_fail_all(fp_channel *ch);

fp_channel *fp_channel_new(int fd, int pid, bool debug)
{
    fp_channel *ch = calloc(1, sizeof *ch);
    int fl = fcntl(fd, F_GETFL);
    if (!ch || fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        free(ch);
        close(fd);
        return NULL;
    }
    ch->fd = fd;
    ch->pid = pid;
    ch->debug = debug;
    ch->next_id = 1;
    ch->next_route = 1;
    fp_frame_reader_init(&ch->reader, FP_FRAME_DEFAULT_MAX);
    return ch;
}

static void channel_destroy(fp_channel *ch)
{
    if (ch->fd >= 0) close(ch->fd);
    fp_frame_reader_free(&ch->reader);
    free(ch->out);
    while (ch->pending) {
        channel_pending *next = ch->pending->next;
        free(ch->pending);
        ch->pending = next;
    }
    while (ch->routes) {
        channel_route *next = ch->routes->next;
        free(ch->routes);
        ch->routes = next;
    }
    free(ch);
}

void fp_channel_free(fp_channel *ch)
{
    if (!ch) return;
    if (ch->depth > 0) {
        ch->doomed = true;
        return;
    }
    channel_destroy(ch);
}

void fp_channel_abort(fp_channel *ch)
{
    if (!ch->closed) shutdown(ch->fd, SHUT_RDWR);
    ch->closed = ch->drained = true;
    ch->depth++;
    channel_fail_all(ch);
    if (--ch->depth == 0 && ch->doomed) channel_destroy(ch);
}

int fp_channel_fd(const fp_channel *ch)
{
    return ch->fd;
}

int fp_channel_pid(const fp_channel *ch)
{
    return ch->pid;
}

bool fp_channel_closed(const fp_channel *ch)
{
    return ch->closed;
}

bool fp_channel_busy(const fp_channel *ch)
{
    return ch->pending || ch->out_len > ch->out_off;
}

bool fp_channel_wants_write(const fp_channel *ch)
{
    return !ch->closed && ch->out_len > ch->out_off;
}

/* ---------------------------------------------------------------------------------------------
 * Errors
 */

/* "250 ms" or "30 s" / "2.5 s": how long a wait lasted, for messages. */
static void channel_format_ms(char *buf, size_t size, double ms)
{
    if (ms < 1000)
        snprintf(buf, size, "%.0f ms", ms);
    else if ((long long)ms % 1000 == 0)
        snprintf(buf, size, "%lld s", (long long)ms / 1000);
    else
        snprintf(buf, size, "%.1f s", ms / 1000);
}

static bool channel_proc_gone(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f) return true;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may contain spaces and parentheses: the state follows the last ')'. */
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2]) return true;
    return p[2] == 'Z' || p[2] == 'X';
}

/* A killed process closes its sockets before it is a zombie: the closed connection can be seen
 * while /proc still shows it running. Waits that long (bounded) to tell an exit from a shutdown,
 * only when someone is told (a request in flight, a stream). */
#define CHANNEL_EXIT_GRACE_MS 500

static bool channel_proc_exits(int pid)
{
    for (int waited = 0; waited < CHANNEL_EXIT_GRACE_MS; waited += 10) {
        if (channel_proc_gone(pid)) return true;
        fp_clock_sleep_ms(10);
    }
    return channel_proc_gone(pid);
}

void fp_channel_closed_error(const fp_channel *ch, fp_error *err)
{
    if (channel_proc_exits(ch->pid)) {
        fp_error_set(err, FP_E_CLOSED, NULL, "process %d exited", ch->pid);
        return;
    }
    fp_error_set(err, FP_E_CLOSED,
                 "the agent was shut down (shutdown command) or the process is exiting;\n"
                 "run fp again to reconnect",
                 "the agent in process %d closed the connection", ch->pid);
}

/* Appends "did you mean: a, b, c?" for a data.suggestions array. */
static void channel_hint_suggestions(char *hint, size_t size, const cJSON *data)
{
    const cJSON *sug = fp_json_get(data, "suggestions");
    if (!cJSON_IsArray(sug) || cJSON_GetArraySize(sug) == 0) return;
    size_t len = strlen(hint);
    int n = snprintf(hint + len, size - len, "%sdid you mean: ", len ? "\n" : "");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, sug)
    {
        if (!cJSON_IsString(it)) continue;
        len = strlen(hint);
        if (n < 0 || len + 1 >= size) break;
        snprintf(hint + len, size - len, "%s%s", i++ ? ", " : "", it->valuestring);
    }
    len = strlen(hint);
    if (len + 1 < size) snprintf(hint + len, size - len, "?");
}

/* Copies text into hint, keeping the end when it does not fit: the last lines of a traceback
 * are the ones that say what went wrong. */
static void channel_hint_tail(char *hint, size_t size, const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n')
        n--;
    if (n < size) {
        snprintf(hint, size, "%.*s", (int)n, text);
        return;
    }
    const char *p = text + n - (size - 8);
    const char *nl = memchr(p, '\n', (size_t)(text + n - p));
    if (nl) p = nl + 1;
    snprintf(hint, size, "...\n%.*s", (int)(text + n - p), p);
}

void fp_channel_decode_error(const char *method, int pid, const cJSON *error, fp_error *err)
{
    const cJSON *code = fp_json_get(error, "code");
    const cJSON *data = fp_json_get(error, "data");
    int rpc = cJSON_IsNumber(code) ? code->valueint : FP_RPC_INTERNAL_ERROR;
    const char *msg = fp_json_str(error, "message", "");

    fp_error_set(err, FP_E_REMOTE, NULL, "%s", msg[0] ? msg : "the agent reported an error");
    err->rpc_code = rpc;
    char *hint = err->hint;
    size_t hsize = sizeof err->hint;

    switch (rpc) {
    case FP_ERR_EVAL: {
        const char *tb = fp_json_str(data, "traceback", "");
        const char *exc = fp_json_str(data, "exception", NULL);
        if (tb[0])
            channel_hint_tail(hint, hsize, tb);
        else if (exc)
            channel_hint_tail(hint, hsize, exc);
        break;
    }
    case FP_ERR_GIL_TIMEOUT: {
        const cJSON *w = fp_json_get(data, "waited_ms");
        char waited[32] = "";
        if (cJSON_IsNumber(w)) channel_format_ms(waited, sizeof waited, w->valuedouble);
        snprintf(hint, hsize,
                 "a thread holds the GIL and did not release it%s%s, so the agent cannot run\n"
                 "Python code in process %d now. Commands that read the process from outside do\n"
                 "not need the GIL: `stack` shows every thread and which one holds it.",
                 waited[0] ? " in " : "", waited, pid);
        break;
    }
    case FP_RPC_METHOD_NOT_FOUND:
        snprintf(hint, hsize, "the agent does not serve '%s': is it an older version than fp?",
                 method);
        channel_hint_suggestions(hint, hsize, data);
        break;
    case FP_ERR_BUSY:
        snprintf(hint, hsize, "close another fp or editor session attached to process %d", pid);
        break;
    case FP_ERR_CANCELLED:
        snprintf(hint, hsize, "the agent is shutting down or the request was cancelled");
        break;
    default: {
        /* For a file, the suggestions are modules loaded from a file of the same name. */
        const cJSON *sug = fp_json_get(data, "suggestions");
        if (strcmp(fp_json_str(data, "missing", ""), "file") == 0 && cJSON_GetArraySize(sug) > 0) {
            char *list = cJSON_PrintUnformatted(sug);
            snprintf(hint, hsize, "modules loaded from a file with that name: %s",
                     list ? list : "?");
            cJSON_free(list);
        } else {
            channel_hint_suggestions(hint, hsize, data);
        }
        break;
    }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Writing
 */

static int channel_queue(fp_channel *ch, const cJSON *msg, const char *method, fp_error *err)
{
    char *text = fp_rpc_print(msg);
    if (text && strlen(text) > FP_RPC_AGENT_MAX_REQUEST) {
        free(text);
        return fp_error_set(err, FP_E_USAGE,
                            "expressions are limited to 64 Ki characters, console input to 1 Mi",
                            "'%s' is too large to send: the agent reads requests of at most %u MiB",
                            method, FP_RPC_AGENT_MAX_REQUEST >> 20);
    }
    size_t flen = 0;
    char *framed = text ? fp_frame_encode(text, strlen(text), &flen) : NULL;
    free(text);
    if (!framed) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory building a request");
    if (ch->out_off > 0 && ch->out_off == ch->out_len) ch->out_off = ch->out_len = 0;
    if (ch->out_len + flen > ch->out_cap) {
        /* Compact first: what was written is gone. */
        if (ch->out_off > 0) {
            memmove(ch->out, ch->out + ch->out_off, ch->out_len - ch->out_off);
            ch->out_len -= ch->out_off;
            ch->out_off = 0;
        }
        size_t cap = ch->out_cap ? ch->out_cap : 4096;
        while (cap < ch->out_len + flen)
            cap *= 2;
        char *grown = realloc(ch->out, cap);
        if (!grown) {
            free(framed);
            return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory queueing a request");
        }
        ch->out = grown;
        ch->out_cap = cap;
    }
    memcpy(ch->out + ch->out_len, framed, flen);
    ch->out_len += flen;
    free(framed);
    return 0;
}

/* Writes what the socket takes now. A broken connection is noticed here or by the read. */
static void channel_flush(fp_channel *ch)
{
    while (!ch->closed && ch->out_off < ch->out_len) {
        ssize_t n = send(ch->fd, ch->out + ch->out_off, ch->out_len - ch->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            ch->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        CLOG(ch, "writing to the agent failed: %s", n < 0 ? strerror(errno) : "no progress");
        ch->closed = true;
    }
}

int64_t fp_channel_request(fp_channel *ch, const char *method, cJSON *params, int timeout_ms,
                           fp_channel_reply_fn cb, void *ud, fp_error *err)
{
    if (ch->closed) {
        cJSON_Delete(params);
        fp_channel_closed_error(ch, err);
        return 0;
    }
    channel_pending *p = calloc(1, sizeof *p);
    if (!p) {
        cJSON_Delete(params);
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return 0;
    }
    int64_t id = ch->next_id++;
    cJSON *req = fp_rpc_request(id, method, params);
    if (!req || channel_queue(ch, req, method, err) != 0) {
        if (!req) fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory building a request");
        cJSON_Delete(req);
        free(p);
        return 0;
    }
    cJSON_Delete(req);
    p->id = id;
    snprintf(p->method, sizeof p->method, "%s", method);
    p->deadline = timeout_ms >= 0 ? fp_clock_ms() + timeout_ms : -1;
    p->timeout_ms = timeout_ms;
    p->cb = cb;
    p->ud = ud;
    /* Appended: deadlines and answers are looked up by walking the (short) list in order. */
    channel_pending **tail = &ch->pending;
    while (*tail)
        tail = &(*tail)->next;
    *tail = p;
    CLOG(ch, "sending '%s' (id %lld)", method, (long long)id);
    channel_flush(ch);
    return id;
}

int fp_channel_notify(fp_channel *ch, const char *method, cJSON *params, fp_error *err)
{
    if (ch->closed) {
        cJSON_Delete(params);
        fp_channel_closed_error(ch, err);
        return -1;
    }
    cJSON *msg = fp_rpc_notification(method, params);
    if (!msg) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    int rc = channel_queue(ch, msg, method, err);
    cJSON_Delete(msg);
    if (rc == 0) channel_flush(ch);
    return rc;
}

static channel_pending *channel_take(fp_channel *ch, int64_t id)
{
    for (channel_pending **pp = &ch->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            channel_pending *p = *pp;
            *pp = p->next;
            p->next = NULL;
            return p;
        }
    }
    return NULL;
}

void fp_channel_forget(fp_channel *ch, int64_t id)
{
    channel_pending *p = channel_take(ch, id);
    if (!p) return;
    ch->abandoned++;
    free(p);
}

void fp_channel_expire_now(fp_channel *ch, int64_t id, double waited_ms)
{
    for (channel_pending *p = ch->pending; p; p = p->next) {
        if (p->id == id && !p->expired) {
            p->deadline = fp_clock_ms();
            p->timeout_ms = waited_ms > 0 ? (int)waited_ms : 0;
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Routes
 */

int fp_channel_route(fp_channel *ch, const char *key, double id, fp_channel_note_fn fn, void *ud)
{
    channel_route *r = calloc(1, sizeof *r);
    if (!r) return 0;
    r->handle = ch->next_route++;
    snprintf(r->key, sizeof r->key, "%s", key);
    r->id = id;
    r->fn = fn;
    r->ud = ud;
    r->next = ch->routes;
    ch->routes = r;
    return r->handle;
}

void fp_channel_unroute(fp_channel *ch, int route)
{
    for (channel_route **rr = &ch->routes; *rr; rr = &(*rr)->next) {
        if ((*rr)->handle == route) {
            channel_route *r = *rr;
            *rr = r->next;
            free(r);
            return;
        }
    }
}

void fp_channel_set_default(fp_channel *ch, fp_channel_note_fn fn, void *ud)
{
    ch->default_fn = fn;
    ch->default_ud = ud;
}

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 */

static void channel_finish(fp_channel *ch, channel_pending *p, cJSON *result, const fp_error *err,
                           const cJSON *rpc_error)
{
    fp_channel_reply r = {
        .result = result, .err = err, .rpc_error = rpc_error, .method = p->method};
    if (p->cb) p->cb(ch, &r, p->ud);
    cJSON_Delete(r.result);
    free(p);
}

static void channel_on_note(fp_channel *ch, const char *method, const cJSON *params)
{
    for (channel_route *r = ch->routes; r; r = r->next) {
        const cJSON *v = fp_json_get(params, r->key);
        if (cJSON_IsNumber(v) && v->valuedouble == r->id) {
            r->fn(ch, method, params, r->ud);
            return;
        }
    }
    if (ch->default_fn)
        ch->default_fn(ch, method, params, ch->default_ud);
    else
        CLOG(ch, "dropping the notification '%s' (no stream of ours)", method);
}

static void channel_on_message(fp_channel *ch, cJSON *msg)
{
    const cJSON *m = fp_json_get(msg, "method");
    const cJSON *mid = fp_json_get(msg, "id");
    if (cJSON_IsString(m)) {
        /* The agent sends clients notifications only, never requests. */
        if (!mid) channel_on_note(ch, m->valuestring, fp_json_get(msg, "params"));
        return;
    }
    const cJSON *e = fp_json_get(msg, "error");
    if (e && (!mid || cJSON_IsNull(mid))) {
        /* An error the agent could not tie to a request (it refused the connection as busy, or
         * could not read what came): it answers the oldest request still waiting. */
        channel_pending *oldest = ch->pending;
        while (oldest && oldest->expired)
            oldest = oldest->next;
        if (!oldest) {
            CLOG(ch, "the agent sent an error for no request: %s", fp_json_str(e, "message", "?"));
            return;
        }
        fp_error err;
        fp_channel_decode_error(oldest->method, ch->pid, e, &err);
        channel_finish(ch, channel_take(ch, oldest->id), NULL, &err, e);
        return;
    }
    channel_pending *p = cJSON_IsNumber(mid) ? channel_take(ch, (int64_t)mid->valuedouble) : NULL;
    if (!p || p->expired) {
        /* The late answer to a request given up on (timeout, Ctrl-C). */
        CLOG(ch, "dropping a late answer (id %s)", cJSON_IsNumber(mid) ? "number" : "missing");
        if (p) {
            /* Its probe answers on its own and still needs the record: keep it. */
            p->next = ch->pending;
            ch->pending = p;
        }
        if (ch->abandoned > 0) ch->abandoned--;
        return;
    }
    if (e) {
        fp_error err;
        fp_channel_decode_error(p->method, ch->pid, e, &err);
        channel_finish(ch, p, NULL, &err, e);
        return;
    }
    cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(msg, "result");
    channel_finish(ch, p, result ? result : cJSON_CreateNull(), NULL, NULL);
}

/* Reads what is there; returns -1 when the connection is gone. */
static int channel_read(fp_channel *ch)
{
    size_t budget = CHANNEL_READ_BUDGET;
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *ferr = NULL;
        int r = fp_frame_reader_next(&ch->reader, &body, &len, &ferr);
        if (r == FP_FRAME_OK) {
            fp_rpc_msg m;
            int pr = fp_rpc_parse(body, len, &m, NULL);
            free(body);
            if (pr != 0) {
                CLOG(ch, "the agent sent a malformed message (JSON-RPC error %d): closing", pr);
                return -1;
            }
            cJSON *root = m.root;
            m.root = NULL;
            fp_rpc_msg_free(&m);
            channel_on_message(ch, root);
            cJSON_Delete(root);
            if (ch->closed || ch->doomed) return ch->closed ? -1 : 0;
            continue;
        }
        if (r < 0) {
            CLOG(ch, "bad framing from the agent: %s", ferr ? ferr : "unknown error");
            return -1;
        }
        if (budget == 0) return 0;
        char buf[65536];
        ssize_t n = read(ch->fd, buf, sizeof buf);
        if (n > 0) {
            budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
            if (fp_frame_reader_feed(&ch->reader, buf, (size_t)n) != 0) return -1;
            continue;
        }
        if (n == 0) return -1;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == EINTR) continue;
        CLOG(ch, "reading from the agent failed: %s", strerror(errno));
        return -1;
    }
}

/* The connection is gone: every request in flight fails, the expired ones with their timeout. */
static void channel_fail_all(fp_channel *ch)
{
    fp_error closed;
    if (ch->pending) fp_channel_closed_error(ch, &closed);
    while (ch->pending && !ch->doomed) {
        channel_pending *p = ch->pending;
        ch->pending = p->next;
        channel_finish(ch, p, NULL, p->expired ? &p->err : &closed, NULL);
    }
}

typedef struct channel_probe {
    int64_t id; /* the timed-out request */
} channel_probe;

/* The answer to the status request sent after a timeout: the timed-out request's callback
 * gets its error, with the reason when a thread holds the GIL. */
static void channel_on_probe(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    channel_probe *probe = ud;
    channel_pending *p = channel_take(ch, probe->id);
    free(probe);
    if (!p) return;
    const cJSON *w = fp_json_get(r->result, "gil_wait_ms");
    if (cJSON_IsNumber(w) && w->valuedouble > 0) {
        char waited[32];
        channel_format_ms(waited, sizeof waited, w->valuedouble);
        snprintf(p->err.hint, sizeof p->err.hint,
                 "the agent has been waiting %s for the GIL: another thread holds it and does\n"
                 "not let go (a long C call, or a busy loop in an extension). Commands that read\n"
                 "the process from outside do not need the GIL and still work: `stack` shows\n"
                 "every thread and which one holds it.",
                 waited);
    }
    channel_finish(ch, p, NULL, &p->err, NULL);
}

static bool channel_is_gilless(const char *method)
{
    return strcmp(method, "status") == 0 || strcmp(method, "ping") == 0 ||
           strcmp(method, "detach") == 0;
}

static void channel_expire(fp_channel *ch)
{
    double now = fp_clock_ms();
    for (channel_pending *p = ch->pending; p && !ch->doomed;) {
        if (p->expired || p->deadline < 0 || p->deadline > now) {
            p = p->next;
            continue;
        }
        char took[32];
        channel_format_ms(took, sizeof took, p->timeout_ms);
        p->expired = true;
        ch->abandoned++;
        fp_error_set(&p->err, FP_E_TIMEOUT,
                     "the agent is still working on it (its answer will be dropped when it "
                     "comes);\nallow more time (fp --timeout S) or try a smaller request",
                     "'%s' got no answer from process %d within %s", p->method, ch->pid, took);
        p = p->next;
    }
    /* Each expired request: ask why (without the GIL), or fail it at once. Restart the walk
     * after each callback: a callback may change the list. */
    for (;;) {
        channel_pending *p = ch->pending;
        while (p && !(p->expired && p->deadline >= 0))
            p = p->next;
        if (!p || ch->doomed) break;
        p->deadline = -1; /* handled: only the probe's answer completes it now */
        channel_probe *probe = NULL;
        fp_error e2;
        if (!channel_is_gilless(p->method) && !ch->closed) probe = calloc(1, sizeof *probe);
        if (probe) {
            probe->id = p->id;
            if (fp_channel_request(ch, "status", NULL, CHANNEL_STATUS_MS, channel_on_probe, probe,
                                   &e2) != 0)
                continue;
            free(probe);
        }
        channel_take(ch, p->id);
        channel_finish(ch, p, NULL, &p->err, NULL);
    }
}

double fp_channel_next_deadline(const fp_channel *ch)
{
    double best = -1;
    for (const channel_pending *p = ch->pending; p; p = p->next)
        if (p->deadline >= 0 && (best < 0 || p->deadline < best)) best = p->deadline;
    return best;
}

int fp_channel_drive(fp_channel *ch)
{
    ch->depth++;
    if (!ch->closed) channel_flush(ch);
    /* Read even after a failed write: the agent may have said why it closed (busy) before it did.
     */
    if (!ch->drained && channel_read(ch) != 0) ch->closed = true;
    if (ch->closed) ch->drained = true;
    if (!ch->doomed) channel_expire(ch);
    if (ch->closed && !ch->doomed) channel_fail_all(ch);
    if (!ch->closed && !ch->doomed) channel_flush(ch);
    bool closed = ch->closed;
    if (--ch->depth == 0 && ch->doomed) {
        channel_destroy(ch);
        return -1;
    }
    return closed ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Blocking use (fp)
 */

int fp_channel_wait(fp_channel *ch, const bool *done, double until_ms,
                    volatile sig_atomic_t *interrupted)
{
    for (;;) {
        if (*done) return 1;
        if (interrupted && *interrupted) return -2;
        if (ch->closed) {
            fp_channel_drive(ch); /* fail what is still pending */
            return *done ? 1 : -1;
        }
        double now = fp_clock_ms();
        double next = fp_channel_next_deadline(ch);
        if (until_ms >= 0 && (next < 0 || until_ms < next)) next = until_ms;
        if (until_ms >= 0 && now >= until_ms) return 0;
        int wait = -1;
        if (next >= 0) wait = next <= now ? 0 : (int)(next - now) + 1;
        struct pollfd pfd = {.fd = ch->fd,
                             .events = POLLIN | (fp_channel_wants_write(ch) ? POLLOUT : 0)};
        int pr = poll(&pfd, 1, wait);
        if (pr < 0 && errno == EINTR) {
            if (interrupted) return -2;
            continue;
        }
        if (pr < 0) {
            CLOG(ch, "poll failed: %s", strerror(errno));
            ch->closed = ch->drained = true;
        }
        fp_channel_drive(ch);
    }
}

typedef struct channel_call {
    bool done;
    cJSON *result;
    fp_error err;
    cJSON *rpc_error;
} channel_call;

static void channel_on_call(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    channel_call *c = ud;
    c->done = true;
    if (r->err) {
        c->err = *r->err;
        if (r->rpc_error) c->rpc_error = cJSON_Duplicate(r->rpc_error, 1);
        return;
    }
    c->result = r->result;
    r->result = NULL;
}

cJSON *fp_channel_call(fp_channel *ch, const char *method, cJSON *params, int timeout_ms,
                       volatile sig_atomic_t *interrupted, fp_error *err, cJSON **rpc_error)
{
    if (rpc_error) *rpc_error = NULL;
    channel_call c = {0};
    int64_t id = fp_channel_request(ch, method, params, timeout_ms, channel_on_call, &c, err);
    if (id == 0) return NULL;
    int w = fp_channel_wait(ch, &c.done, -1, interrupted);
    if (w == -2 && !c.done) {
        fp_channel_forget(ch, id);
        fp_error_set(err, FP_E_INTERRUPTED,
                     "the agent may still finish it in the background; its answer is dropped",
                     "interrupted while waiting for '%s'", method);
        return NULL;
    }
    if (!c.done) { /* cannot happen: a closed channel fails every request */
        fp_channel_closed_error(ch, err);
        return NULL;
    }
    if (c.result) return c.result;
    *err = c.err;
    if (rpc_error)
        *rpc_error = c.rpc_error;
    else
        cJSON_Delete(c.rpc_error);
    return NULL;
}

bool fp_channel_abandoned(const fp_channel *ch)
{
    return ch->abandoned > 0;
}
