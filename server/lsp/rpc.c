/* The LSP wire of fp-lsp: stdin and stdout as libuv pipes, the one framing of protocol/
 * (Content-Length), JSON-RPC messages out (responses, notifications, the server's own requests
 * to the client with their callbacks) and in (handed whole to lsp_dispatch). A malformed
 * message is answered and the server reads on; a broken header cannot be resynchronised, so
 * the stream is then read as lost and the server ends. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_frame.h"
#include "fp_json.h"
#include "fp_rpc.h"
#include "lsp.h"

/* A client may send large documents, but not more than this in one message. */
#define RPC_MAX_BODY (64u << 20)
#define RPC_MAX_CANCELLED 64

typedef struct rpc_pending {
    struct rpc_pending *next;
    int64_t id;
    lsp_client_reply_fn cb;
    void *ud;
} rpc_pending;

static struct {
    uv_pipe_t in, out;
    bool in_open, out_open, closing;
    fp_frame_reader reader;
    int64_t next_id;
    rpc_pending *pending;
    double cancelled[RPC_MAX_CANCELLED]; /* ids of requests the client cancelled (numbers) */
    int ncancelled;
} rpc;

/* ---------------------------------------------------------------------------------------------
 * Writing
 */

typedef struct rpc_write {
    uv_write_t req;
    char *body;
    char header[48];
} rpc_write;

static void rpc_on_written(uv_write_t *req, int status)
{
    (void)status; /* a client gone: the read side notices and the server ends */
    rpc_write *w = (rpc_write *)req;
    free(w->body);
    free(w);
}

/* Writes msg framed: its header and its text as two buffers, the text not copied again. */
static void rpc_send(cJSON *msg)
{
    size_t len = 0;
    char *text = msg ? fp_json_print(msg, &len) : NULL;
    cJSON_Delete(msg);
    rpc_write *w = text && rpc.out_open ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        free(text);
        return;
    }
    w->body = text;
    int hlen = snprintf(w->header, sizeof w->header, "Content-Length: %zu\r\n\r\n", len);
    uv_buf_t bufs[2] = {uv_buf_init(w->header, (unsigned)hlen), uv_buf_init(text, (unsigned)len)};
    if (uv_write(&w->req, (uv_stream_t *)&rpc.out, bufs, 2, rpc_on_written) != 0) {
        free(text);
        free(w);
    }
}

void lsp_rpc_result(const cJSON *id, cJSON *result)
{
    rpc_send(fp_rpc_result(id, result ? result : cJSON_CreateNull()));
}

static void rpc_error_data(const cJSON *id, int code, const char *message, cJSON *data)
{
    rpc_send(fp_rpc_error(id, code, message, data));
}

void lsp_rpc_error(const cJSON *id, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rpc_error_data(id, code, msg, NULL);
}

void lsp_rpc_fp_error(const cJSON *id, const fp_error *e)
{
    cJSON *data = cJSON_CreateObject();
    cJSON_AddStringToObject(data, "code", fp_error_code_name(e->code));
    if (e->hint[0]) cJSON_AddStringToObject(data, "hint", e->hint);
    if (e->code == FP_E_REMOTE) cJSON_AddNumberToObject(data, "rpc_code", e->rpc_code);
    rpc_error_data(id, LSP_ERR_REQUEST_FAILED, e->message, data);
}

void lsp_rpc_notify(const char *method, cJSON *params)
{
    rpc_send(fp_rpc_notification(method, params));
}

void lsp_rpc_request(const char *method, cJSON *params, lsp_client_reply_fn cb, void *ud)
{
    rpc_pending *p = calloc(1, sizeof *p);
    if (!p) {
        cJSON_Delete(params);
        return;
    }
    p->id = ++rpc.next_id;
    p->cb = cb;
    p->ud = ud;
    p->next = rpc.pending;
    rpc.pending = p;
    /* Ids of our own requests are strings, never confused with the client's numbers. */
    char id[32];
    snprintf(id, sizeof id, "fp-%lld", (long long)p->id);
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "jsonrpc", "2.0");
    cJSON_AddStringToObject(msg, "id", id);
    cJSON_AddStringToObject(msg, "method", method);
    if (params) cJSON_AddItemToObject(msg, "params", params);
    rpc_send(msg);
}

/* The client's answer to one of our requests. */
static void rpc_on_answer(const cJSON *msg)
{
    const char *id = fp_json_str(msg, "id", "");
    long long n = strncmp(id, "fp-", 3) == 0 ? atoll(id + 3) : -1;
    for (rpc_pending **pp = &rpc.pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id != n) continue;
        rpc_pending *p = *pp;
        *pp = p->next;
        if (p->cb) p->cb(fp_json_get(msg, "result"), fp_json_get(msg, "error"), p->ud);
        free(p);
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Cancellation: long requests (attach) look whether the client gave up on them.
 */

static void rpc_on_cancel(const cJSON *params)
{
    const cJSON *id = fp_json_get(params, "id");
    if (!cJSON_IsNumber(id)) return;
    if (rpc.ncancelled == RPC_MAX_CANCELLED) {
        memmove(rpc.cancelled, rpc.cancelled + 1, sizeof rpc.cancelled - sizeof rpc.cancelled[0]);
        rpc.ncancelled--;
    }
    rpc.cancelled[rpc.ncancelled++] = id->valuedouble;
}

bool lsp_rpc_cancelled(const cJSON *id)
{
    if (!cJSON_IsNumber(id)) return false;
    for (int i = 0; i < rpc.ncancelled; i++)
        if (rpc.cancelled[i] == id->valuedouble) return true;
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 */

static void rpc_on_body(const char *body, size_t len)
{
    if (!fp_json_utf8_valid(body, len)) {
        lsp_rpc_error(NULL, LSP_ERR_PARSE,
                      "the message is not valid UTF-8 (%zu bytes): fp-lsp reads on; LSP messages "
                      "are UTF-8 JSON",
                      len);
        return;
    }
    cJSON *msg = cJSON_ParseWithLength(body, len);
    if (!msg) {
        lsp_rpc_error(NULL, LSP_ERR_PARSE,
                      "the message is not JSON (%zu bytes): fp-lsp reads on; check the client's "
                      "encoder",
                      len);
        return;
    }
    if (!cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        lsp_rpc_error(NULL, LSP_ERR_INVALID_REQUEST, "a JSON-RPC message is an object");
        return;
    }
    const cJSON *method = fp_json_get(msg, "method");
    if (!method && (fp_json_has(msg, "result") || fp_json_has(msg, "error"))) {
        rpc_on_answer(msg);
    } else if (cJSON_IsString(method) && strcmp(method->valuestring, "$/cancelRequest") == 0) {
        rpc_on_cancel(fp_json_get(msg, "params"));
    } else {
        lsp_dispatch(msg);
    }
    cJSON_Delete(msg);
}

static void rpc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char chunk[65536];
    (void)suggested;
    *buf = uv_buf_init(chunk, sizeof chunk);
}

static void rpc_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)s;
    if (n < 0) {
        /* The editor closed our stdin (it quit, or died): nothing more will come. */
        lsp_exit(lsp.shut_down ? 0 : 1);
        return;
    }
    if (n == 0) return;
    if (fp_frame_reader_feed(&rpc.reader, buf->base, (size_t)n) != 0) {
        lsp_log(1, "out of memory reading a message: fp-lsp ends");
        lsp_exit(1);
        return;
    }
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *why = NULL;
        int r = fp_frame_reader_next(&rpc.reader, &body, &len, &why);
        if (r == FP_FRAME_MORE) return;
        if (r == FP_FRAME_E_NOMEM) {
            lsp_log(1, "out of memory reading a message: fp-lsp ends");
            lsp_exit(1);
            return;
        }
        if (r < 0) {
            /* A body too big is skipped as it arrives; after a broken header, what follows is
             * dropped up to the next header. Either way the server reads on. */
            lsp_rpc_error(NULL, LSP_ERR_PARSE,
                          "bad message framing: %s; fp-lsp skips to the next message (check the "
                          "client's encoder)",
                          why ? why : "?");
            if (rpc.reader.failed) fp_frame_reader_resync(&rpc.reader);
            continue;
        }
        rpc_on_body(body, len);
        free(body);
        if (lsp.exiting) return;
    }
}

int lsp_rpc_start(uv_loop_t *loop)
{
    /* A file or a device (`fp-lsp < /dev/null`) cannot be polled: libuv would abort on it. */
    uv_handle_type in = uv_guess_handle(0);
    if (in == UV_FILE || in == UV_UNKNOWN_HANDLE || uv_guess_handle(1) == UV_UNKNOWN_HANDLE)
        return -1;
    fp_frame_reader_init(&rpc.reader, RPC_MAX_BODY);
    if (uv_pipe_init(loop, &rpc.in, 0) != 0 || uv_pipe_open(&rpc.in, 0) != 0) return -1;
    rpc.in_open = true;
    if (uv_pipe_init(loop, &rpc.out, 0) != 0 || uv_pipe_open(&rpc.out, 1) != 0) return -1;
    rpc.out_open = true;
    return uv_read_start((uv_stream_t *)&rpc.in, rpc_alloc, rpc_on_read);
}

static void rpc_on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    uv_close((uv_handle_t *)req->handle, NULL);
    free(req);
}

void lsp_rpc_close(void)
{
    if (rpc.closing) return;
    rpc.closing = true;
    if (rpc.in_open) {
        uv_read_stop((uv_stream_t *)&rpc.in);
        uv_close((uv_handle_t *)&rpc.in, NULL);
        rpc.in_open = false;
    }
    if (rpc.out_open) {
        /* What is queued (the last answers) is written first. */
        uv_shutdown_t *req = calloc(1, sizeof *req);
        if (!req || uv_shutdown(req, (uv_stream_t *)&rpc.out, rpc_on_shutdown) != 0) {
            free(req);
            uv_close((uv_handle_t *)&rpc.out, NULL);
        }
        rpc.out_open = false;
    }
    fp_frame_reader_free(&rpc.reader);
    while (rpc.pending) {
        rpc_pending *next = rpc.pending->next;
        free(rpc.pending);
        rpc.pending = next;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Messages and progress for the user
 */

static void rpc_message(const char *method, int type, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void rpc_message(const char *method, int type, const char *fmt, va_list ap)
{
    char text[4096];
    vsnprintf(text, sizeof text, fmt, ap);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "type", type);
    cJSON_AddStringToObject(p, "message", text);
    lsp_rpc_notify(method, p);
}

void lsp_log(int type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rpc_message("window/logMessage", type, fmt, ap);
    va_end(ap);
}

void lsp_show(int type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rpc_message("window/showMessage", type, fmt, ap);
    va_end(ap);
}

static cJSON *rpc_progress_value(const char *kind, const char *title, const char *message)
{
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "kind", kind);
    if (title) cJSON_AddStringToObject(v, "title", title);
    if (message) cJSON_AddStringToObject(v, "message", message);
    return v;
}

static void rpc_progress(int token, cJSON *value)
{
    char t[32];
    snprintf(t, sizeof t, "fp-progress-%d", token);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "token", t);
    cJSON_AddItemToObject(p, "value", value);
    lsp_rpc_notify("$/progress", p);
}

/* A progress the client is asked to create: nothing may be sent for its token before the
 * client answered (LSP 3.17), so what comes meanwhile waits here. */
typedef struct rpc_progress_rec {
    int token;
    bool created, ended, failed;
    char title[128], message[256], end_message[256];
} rpc_progress_rec;

#define RPC_MAX_PROGRESS 16
static rpc_progress_rec rpc_progresses[RPC_MAX_PROGRESS];

static rpc_progress_rec *rpc_progress_find(int token)
{
    for (int i = 0; i < RPC_MAX_PROGRESS; i++)
        if (rpc_progresses[i].token == token) return &rpc_progresses[i];
    return NULL;
}

static void rpc_on_progress_created(const cJSON *result, const cJSON *error, void *ud)
{
    (void)result;
    rpc_progress_rec *p = rpc_progress_find((int)(intptr_t)ud);
    if (!p) return;
    if (error) {
        p->token = 0; /* the client refused: no progress for this one */
        return;
    }
    p->created = true;
    rpc_progress(p->token,
                 rpc_progress_value("begin", p->title, p->message[0] ? p->message : NULL));
    if (p->ended) {
        rpc_progress(p->token, rpc_progress_value("end", NULL, p->end_message));
        p->token = 0;
    }
}

int lsp_progress_begin(const char *title, const char *message)
{
    static int next;
    if (!lsp.progress) return 0;
    rpc_progress_rec *p = rpc_progress_find(0);
    if (!p) return 0;
    memset(p, 0, sizeof *p);
    p->token = ++next;
    snprintf(p->title, sizeof p->title, "%s", title);
    snprintf(p->message, sizeof p->message, "%s", message ? message : "");
    char t[32];
    snprintf(t, sizeof t, "fp-progress-%d", p->token);
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "token", t);
    lsp_rpc_request("window/workDoneProgress/create", params, rpc_on_progress_created,
                    (void *)(intptr_t)p->token);
    return p->token;
}

void lsp_progress_report(int token, const char *message)
{
    rpc_progress_rec *p = token ? rpc_progress_find(token) : NULL;
    if (!p) return;
    if (!p->created) {
        snprintf(p->message, sizeof p->message, "%s", message); /* the begin says it */
        return;
    }
    rpc_progress(token, rpc_progress_value("report", NULL, message));
}

void lsp_progress_end(int token, const char *message)
{
    rpc_progress_rec *p = token ? rpc_progress_find(token) : NULL;
    if (!p) return;
    if (!p->created) {
        p->ended = true;
        snprintf(p->end_message, sizeof p->end_message, "%s", message ? message : "");
        return;
    }
    rpc_progress(token, rpc_progress_value("end", NULL, message));
    p->token = 0;
}
