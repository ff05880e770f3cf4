/* libFuzzer target: fp-lsp itself (server/lsp/, without its main) fed arbitrary JSON-RPC
 * messages the way an editor sends them: framed on its stdin, read by its libuv loop, answered
 * on its stdout. Each input is a session: one message per line, from a fresh server state. For
 * every message, whatever it holds (bad JSON, not an object, bad ids, unknown methods, any
 * params for any method and command, in any order around initialize and shutdown), the server
 * answers a request exactly once with its id, a notification never, everything it writes is a
 * well-framed JSON-RPC message, and it keeps serving (it never exits on bad input).
 *
 * Left out, so that a run touches no process of the machine: `exit` (it ends the server, by
 * design), and the commands fp.attach and fp.listProcesses. The server's stdin and stdout are
 * pipes of this program; stdout is given back at exit. FUZZ_LSP_SHOW=1 prints every message in
 * and out on stderr. */
#include <assert.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "fp_frame.h"
#include "fp_json.h"
#include "fp_rpc.h"
#include "lsp.h"

#define SERVER_MAX_MESSAGES 64
#define SERVER_MAX_BODY (256u << 10)

void lsp_settings_init(void);

static int to_server = -1, from_server = -1, saved_stdout = -1;

/* What this program printed (buffered by stdio) goes to the real stdout. */
static void server_restore_stdout(void)
{
    if (saved_stdout >= 0) dup2(saved_stdout, 1);
    fflush(stdout);
}

static void server_start(void)
{
    int in[2], out[2];
    assert(pipe(in) == 0 && pipe(out) == 0);
    fcntl(in[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(out[1], F_SETPIPE_SZ, 1 << 20);
    fflush(stdout);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16); /* held until exit, even on a terminal */
    saved_stdout = dup(1);
    assert(saved_stdout >= 0);
    atexit(server_restore_stdout);
    assert(dup2(in[0], 0) == 0 && dup2(out[1], 1) == 1);
    close(in[0]);
    close(out[1]);
    to_server = in[1];
    from_server = out[0];
    fcntl(from_server, F_SETFL, fcntl(from_server, F_GETFL) | O_NONBLOCK);
    lsp.loop = uv_default_loop();
    lsp_settings_init();
    assert(lsp_rpc_start(lsp.loop) == 0);
}

/* A fresh server state for each input (what a new editor session would find). */
static void server_reset(void)
{
    lsp.initialized = lsp.shut_down = false;
    lsp.utf8 = lsp.lens_refresh = lsp.hint_refresh = lsp.progress = lsp.show_document = false;
    lsp_watch_stop(NULL, NULL);
    lsp_monitor_stop(NULL, NULL);
    lsp_docs_free_all();
    lsp_settings_init();
}

/* Runs the loop until the server has read everything written to it. */
static void server_pump(void)
{
    for (int i = 0; i < 10000; i++) {
        int queued = 0;
        assert(ioctl(0, FIONREAD, &queued) == 0);
        uv_run(lsp.loop, UV_RUN_NOWAIT);
        if (queued == 0) return;
    }
    assert(!"the server stopped reading its stdin");
}

/* How a message's answer is tied to it. */
typedef enum server_tie {
    TIE_ID,         /* its id */
    TIE_NULL_ERROR, /* id null, an error: the server could not read a request in it */
    TIE_NULL,       /* id null, result or error: a request whose id is a fraction (executed) */
} server_tie;

/* What the server wrote since the last call, checked; returns how many responses, and checks
 * that each answers as tie says. */
static int server_answers(const cJSON *id, server_tie tie)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, 64u << 20);
    char buf[65536];
    for (int quiet = 0; quiet < 2;) {
        ssize_t n = read(from_server, buf, sizeof buf);
        if (n > 0) {
            assert(fp_frame_reader_feed(&r, buf, (size_t)n) == 0);
            quiet = 0;
            continue;
        }
        uv_run(lsp.loop, UV_RUN_NOWAIT); /* writes still queued, if any */
        quiet++;
    }
    int responses = 0;
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *err = NULL;
        int rc = fp_frame_reader_next(&r, &body, &len, &err);
        if (rc == FP_FRAME_MORE) break;
        assert(rc == FP_FRAME_OK);
        fp_rpc_msg m;
        if (getenv("FUZZ_LSP_SHOW")) fprintf(stderr, "< %s\n", body);
        assert(fp_rpc_parse(body, len, &m, NULL) == 0);
        if (m.kind == FP_RPC_RESPONSE) {
            responses++;
            if (tie == TIE_ID)
                assert(cJSON_Compare(m.id, id, 1));
            else
                assert(cJSON_IsNull(m.id) && (m.error || tie == TIE_NULL));
        }
        fp_rpc_msg_free(&m);
        free(body);
    }
    assert(r.len == 0); /* nothing half written */
    fp_frame_reader_free(&r);
    return responses;
}

/* How many responses a message must get (-1: not sent), and whether they carry its id. */
static int server_expect(const char *body, size_t len, server_tie *tie, cJSON **id)
{
    *tie = TIE_NULL_ERROR;
    *id = NULL;
    /* The server passes bytes that are not UTF-8 through to its answers (protocol/lsp.md): such
     * messages are left out, so that everything it writes can be held to JSON's UTF-8. */
    if (fp_rpc_utf8_invalid_at(body, len) < len) return -1;
    cJSON *msg = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(msg)) {
        cJSON_Delete(msg);
        return 1; /* -32700 or -32600, id null */
    }
    const cJSON *method = fp_json_get(msg, "method");
    const cJSON *rid = fp_json_get(msg, "id");
    int want;
    if (!method && (fp_json_has(msg, "result") || fp_json_has(msg, "error"))) {
        want = 0; /* an answer to one of the server's requests */
    } else if (cJSON_IsString(method) && strcmp(method->valuestring, "exit") == 0) {
        want = -1;
    } else if (cJSON_IsString(method) && strcmp(method->valuestring, "$/cancelRequest") == 0) {
        want = 0;
    } else if (rid) {
        want = 1;
        /* Answered with its id when it is a string or an integer (a fraction: with null). */
        double d = cJSON_IsNumber(rid) ? rid->valuedouble : 0;
        bool whole = isfinite(d) && floor(d) == d;
        if (cJSON_IsNumber(rid) && whole && fabs(d) >= 9007199254740992.0)
            want = -1; /* beyond a double's integers: written back as digits, not compared */
        if (cJSON_IsString(rid) || (cJSON_IsNumber(rid) && whole)) {
            *tie = TIE_ID;
            *id = cJSON_Duplicate(rid, 1);
        } else if (cJSON_IsNumber(rid)) {
            *tie = TIE_NULL;
        }
        const char *command = fp_json_str(fp_json_get(msg, "params"), "command", NULL);
        if (cJSON_IsString(method) &&
            strcmp(method->valuestring, "workspace/executeCommand") == 0 && command &&
            (strcmp(command, "fp.attach") == 0 || strcmp(command, "fp.listProcesses") == 0))
            want = -1;
    } else {
        want = cJSON_IsString(method) ? 0 : 1; /* a notification without a method: -32600 */
    }
    cJSON_Delete(msg);
    return want;
}

static void server_send(const char *body, size_t len)
{
    size_t flen = 0;
    char *framed = fp_frame_encode(body, len, &flen);
    assert(framed);
    for (size_t off = 0; off < flen;) {
        ssize_t n = write(to_server, framed + off, flen - off);
        assert(n > 0);
        off += (size_t)n;
    }
    free(framed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (to_server < 0) server_start();
    server_reset();
    server_answers(NULL, TIE_NULL_ERROR); /* what the reset published */
    const char *p = (const char *)data, *end = p + size;
    for (int sent = 0; p < end && sent < SERVER_MAX_MESSAGES; sent++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        const char *body = p;
        p += len + (nl != NULL);
        if (len > SERVER_MAX_BODY) continue;
        server_tie tie;
        cJSON *id;
        int want = server_expect(body, len, &tie, &id);
        if (want >= 0) {
            if (getenv("FUZZ_LSP_SHOW")) fprintf(stderr, "> %.*s\n", (int)len, body);
            server_send(body, len);
            server_pump();
            assert(!lsp.exiting); /* bad input never stops it */
            int got = server_answers(id, tie);
            assert(got == want);
        }
        cJSON_Delete(id);
    }
    return 0;
}
