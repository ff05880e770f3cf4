/* Unit tests for server/core/channel.c over a socketpair, this test playing the agent: request
 * ids, answers in any order, late answers dropped (after a timeout, after forget), timeouts and
 * their GIL hint, notifications routed to their stream, the connection going away, the error
 * decoding, the blocking call and Ctrl-C, and a channel freed from its own callback. */
#include "check.h"
#include "fp_channel.h"
#include "fp_clock.h"
#include "fp_frame.h"
#include "fp_rpc.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the agent's side */

typedef struct agent {
    int fd;
    fp_frame_reader reader;
} agent;

/* The next request the channel sent (caller frees), waiting up to 2 s. */
static cJSON *agent_read(agent *a)
{
    double deadline = fp_clock_ms() + 2000;
    for (;;) {
        char *body;
        size_t len;
        const char *why;
        if (fp_frame_reader_next(&a->reader, &body, &len, &why) == FP_FRAME_OK) {
            cJSON *msg = cJSON_ParseWithLength(body, len);
            free(body);
            return msg;
        }
        struct pollfd p = {.fd = a->fd, .events = POLLIN};
        int left = (int)(deadline - fp_clock_ms());
        if (left <= 0 || poll(&p, 1, left) <= 0) return NULL;
        char buf[4096];
        ssize_t n = read(a->fd, buf, sizeof buf);
        if (n <= 0) return NULL;
        fp_frame_reader_feed(&a->reader, buf, (size_t)n);
    }
}

static double agent_id(const cJSON *req)
{
    return cJSON_GetObjectItem(req, "id")->valuedouble;
}

static const char *agent_method(const cJSON *req)
{
    return cJSON_GetObjectItem(req, "method")->valuestring;
}

static void agent_send(agent *a, const char *text)
{
    CHECK_EQ_INT(fp_frame_write(a->fd, text, strlen(text), 1000), 0);
}

static void agent_answer(agent *a, double id, const char *result)
{
    char text[1024];
    snprintf(text, sizeof text, "{\"jsonrpc\":\"2.0\",\"id\":%.0f,\"result\":%s}", id, result);
    agent_send(a, text);
}

/* ---- the channel's side */

typedef struct reply {
    int calls;
    char result[512];
    fp_error err;
    bool had_rpc_error;
} reply;

static void on_reply(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)ch;
    reply *out = ud;
    out->calls++;
    if (r->err) {
        out->err = *r->err;
        out->had_rpc_error = r->rpc_error != NULL;
        return;
    }
    char *text = cJSON_PrintUnformatted(r->result);
    snprintf(out->result, sizeof out->result, "%s", text ? text : "?");
    free(text);
}

typedef struct notes {
    int count;
    char last[128];
} notes;

static void on_note(fp_channel *ch, const char *method, const cJSON *params, void *ud)
{
    (void)ch, (void)params;
    notes *n = ud;
    n->count++;
    snprintf(n->last, sizeof n->last, "%s", method);
}

/* Drives ch until cond or 2 s. */
#define DRIVE_UNTIL(ch, cond)                                                                      \
    do {                                                                                           \
        double until_ = fp_clock_ms() + 2000;                                                      \
        while (!(cond) && fp_clock_ms() < until_) {                                                \
            struct pollfd p_ = {.fd = fp_channel_fd(ch), .events = POLLIN};                        \
            poll(&p_, 1, 10);                                                                      \
            fp_channel_drive(ch);                                                                  \
        }                                                                                          \
    } while (0)

static fp_channel *setup(agent *a)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    a->fd = sv[1];
    fp_frame_reader_init(&a->reader, FP_FRAME_DEFAULT_MAX);
    /* Our own pid: "the agent in process N closed the connection" (not "exited"). */
    return fp_channel_new(sv[0], (int)getpid(), false);
}

static void teardown(fp_channel *ch, agent *a)
{
    fp_channel_free(ch);
    close(a->fd);
    fp_frame_reader_free(&a->reader);
}

static void test_ids_and_order(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    reply r1 = {0}, r2 = {0};
    fp_error e;
    int64_t id1 = fp_channel_request(ch, "status", NULL, -1, on_reply, &r1, &e);
    int64_t id2 = fp_channel_request(ch, "getglobal", cJSON_CreateObject(), -1, on_reply, &r2, &e);
    CHECK(id1 > 0 && id2 == id1 + 1);
    cJSON *q1 = agent_read(&a), *q2 = agent_read(&a);
    CHECK(q1 && q2);
    CHECK_STR(agent_method(q1), "status");
    CHECK_STR(agent_method(q2), "getglobal");
    CHECK_EQ_INT((int64_t)agent_id(q2), id2);
    /* Answered in the other order: each reaches its own callback, once. */
    agent_answer(&a, agent_id(q2), "{\"v\":2}");
    agent_answer(&a, agent_id(q1), "{\"v\":1}");
    CHECK(r1.calls == 0); /* nothing runs before the channel is driven */
    DRIVE_UNTIL(ch, r1.calls && r2.calls);
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r2.calls, 1);
    CHECK_STR(r1.result, "{\"v\":1}");
    CHECK_STR(r2.result, "{\"v\":2}");
    CHECK(!fp_channel_busy(ch));
    cJSON_Delete(q1);
    cJSON_Delete(q2);
    teardown(ch, &a);
}

static void test_late_answers(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    reply r = {0}, forgotten = {0};
    fp_error e;
    int64_t id = fp_channel_request(ch, "getglobal", NULL, -1, on_reply, &forgotten, &e);
    fp_channel_forget(ch, id);
    CHECK(fp_channel_abandoned(ch));
    fp_channel_request(ch, "module", NULL, -1, on_reply, &r, &e);
    cJSON *q1 = agent_read(&a), *q2 = agent_read(&a);
    agent_answer(&a, agent_id(q1), "1"); /* the forgotten one's: dropped */
    agent_answer(&a, 999, "2");          /* an id never sent: dropped */
    agent_answer(&a, agent_id(q2), "3");
    DRIVE_UNTIL(ch, r.calls);
    CHECK_EQ_INT(forgotten.calls, 0);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_STR(r.result, "3");
    CHECK(!fp_channel_abandoned(ch)); /* its answer came: nothing is owed any more */
    cJSON_Delete(q1);
    cJSON_Delete(q2);
    teardown(ch, &a);
}

static void test_timeout_and_gil_hint(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    reply r = {0};
    fp_error e;
    double t0 = fp_clock_ms();
    fp_channel_request(ch, "getglobal", NULL, 50, on_reply, &r, &e);
    cJSON *q = agent_read(&a);
    CHECK(fp_channel_next_deadline(ch) >= t0 + 50);
    /* No answer: at the deadline the channel asks, without the GIL, whether a thread holds it. */
    while (fp_clock_ms() < t0 + 60)
        fp_channel_drive(ch);
    fp_channel_drive(ch);
    CHECK_EQ_INT(r.calls, 0); /* the callback waits for that answer */
    cJSON *probe = agent_read(&a);
    CHECK(probe != NULL);
    CHECK_STR(agent_method(probe), "status");
    agent_answer(&a, agent_id(probe), "{\"gil_wait_ms\":2500}");
    agent_answer(&a, agent_id(q), "\"too late\""); /* the timed-out answer: dropped */
    DRIVE_UNTIL(ch, r.calls);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.err.code, FP_E_TIMEOUT);
    CHECK(strstr(r.err.message, "'getglobal' got no answer from process") != NULL);
    CHECK(strstr(r.err.message, "within 50 ms") != NULL);
    CHECK(strstr(r.err.hint, "waiting 2.5 s for the GIL") != NULL);
    cJSON_Delete(q);
    cJSON_Delete(probe);

    /* The timed-out answer coming before the probe's: still dropped, the error still comes. */
    reply late = {0};
    t0 = fp_clock_ms();
    fp_channel_request(ch, "getglobal", NULL, 20, on_reply, &late, &e);
    cJSON *q3 = agent_read(&a);
    while (fp_clock_ms() < t0 + 30)
        fp_channel_drive(ch);
    fp_channel_drive(ch);
    cJSON *probe3 = agent_read(&a);
    CHECK(probe3 != NULL);
    agent_answer(&a, agent_id(q3), "\"too late\"");
    DRIVE_UNTIL(ch, !fp_channel_abandoned(ch));
    CHECK_EQ_INT(late.calls, 0);
    agent_answer(&a, agent_id(probe3), "{\"gil_wait_ms\":0}");
    DRIVE_UNTIL(ch, late.calls);
    CHECK_EQ_INT(late.calls, 1);
    CHECK_EQ_INT(late.err.code, FP_E_TIMEOUT);
    CHECK(strstr(late.err.hint, "still working on it") != NULL);
    cJSON_Delete(q3);
    cJSON_Delete(probe3);

    /* A request the I/O thread answers (status) gets no probe. */
    reply s = {0};
    t0 = fp_clock_ms();
    fp_channel_request(ch, "status", NULL, 20, on_reply, &s, &e);
    cJSON *q2 = agent_read(&a);
    DRIVE_UNTIL(ch, s.calls);
    CHECK_EQ_INT(s.err.code, FP_E_TIMEOUT);
    CHECK(strstr(s.err.hint, "still working on it") != NULL);
    cJSON_Delete(q2);
    teardown(ch, &a);
}

static void test_routes(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    notes w1 = {0}, w2 = {0}, other = {0};
    int r1 = fp_channel_route(ch, "watch", 1, on_note, &w1);
    fp_channel_route(ch, "watch", 2, on_note, &w2);
    fp_channel_set_default(ch, on_note, &other);
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"method\":\"watch/event\",\"params\":{\"watch\":2}}");
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"method\":\"watch/event\",\"params\":{\"watch\":1}}");
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"method\":\"watch/end\",\"params\":{\"watch\":1}}");
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"method\":\"trace/event\",\"params\":{\"trace\":1}}");
    DRIVE_UNTIL(ch, other.count == 1);
    CHECK_EQ_INT(w1.count, 2);
    CHECK_STR(w1.last, "watch/end");
    CHECK_EQ_INT(w2.count, 1);
    CHECK_EQ_INT(other.count, 1);
    CHECK_STR(other.last, "trace/event");
    /* Once unrouted, a stream's notifications go to the default handler. */
    fp_channel_unroute(ch, r1);
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"method\":\"watch/event\",\"params\":{\"watch\":1}}");
    DRIVE_UNTIL(ch, other.count == 2);
    CHECK_EQ_INT(w1.count, 2);
    CHECK_EQ_INT(other.count, 2);
    teardown(ch, &a);
}

static void test_closed(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    reply r1 = {0}, r2 = {0};
    fp_error e;
    fp_channel_request(ch, "status", NULL, -1, on_reply, &r1, &e);
    fp_channel_request(ch, "getglobal", NULL, 5000, on_reply, &r2, &e);
    close(a.fd);
    a.fd = -1;
    DRIVE_UNTIL(ch, r1.calls && r2.calls);
    CHECK(fp_channel_closed(ch));
    CHECK_EQ_INT(r1.calls, 1);
    CHECK_EQ_INT(r2.calls, 1);
    CHECK_EQ_INT(r1.err.code, FP_E_CLOSED);
    CHECK(strstr(r1.err.message, "closed the connection") != NULL);
    CHECK(strstr(r1.err.hint, "run fp again") != NULL);
    /* Nothing more can be sent: the error comes at once, the callback never. */
    reply r3 = {0};
    CHECK_EQ_INT(fp_channel_request(ch, "status", NULL, -1, on_reply, &r3, &e), 0);
    CHECK_EQ_INT(e.code, FP_E_CLOSED);
    CHECK_EQ_INT(r3.calls, 0);
    fp_channel_free(ch);
    fp_frame_reader_free(&a.reader);
}

static void test_errors(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    reply r = {0};
    fp_error e;
    fp_channel_request(ch, "getglobal", NULL, -1, on_reply, &r, &e);
    cJSON *q = agent_read(&a);
    char text[512];
    snprintf(text, sizeof text,
             "{\"jsonrpc\":\"2.0\",\"id\":%.0f,\"error\":{\"code\":-32001,\"message\":\"no field "
             "'CONFG' in module 'app'\",\"data\":{\"suggestions\":[\"CONFIG\",\"CONF\"]}}}",
             agent_id(q));
    agent_send(&a, text);
    DRIVE_UNTIL(ch, r.calls);
    CHECK_EQ_INT(r.err.code, FP_E_REMOTE);
    CHECK_EQ_INT(r.err.rpc_code, -32001);
    CHECK(r.had_rpc_error);
    CHECK_STR(r.err.message, "no field 'CONFG' in module 'app'");
    CHECK_STR(r.err.hint, "did you mean: CONFIG, CONF?");
    cJSON_Delete(q);
    teardown(ch, &a);

    /* The decoder alone: an expression's traceback keeps its last lines; the GIL; busy. */
    fp_error d;
    cJSON *err =
        cJSON_Parse("{\"code\":-32002,\"message\":\"expression raised\",\"data\":"
                    "{\"traceback\":\"Traceback:\\n  x\\nZeroDivisionError: division\\n\"}}");
    fp_channel_decode_error("getglobal", 7, err, &d);
    CHECK_STR(d.hint, "Traceback:\n  x\nZeroDivisionError: division");
    cJSON_Delete(err);
    err = cJSON_Parse("{\"code\":-32003,\"message\":\"no GIL\",\"data\":{\"waited_ms\":30000}}");
    fp_channel_decode_error("watch.start", 7, err, &d);
    CHECK(strstr(d.hint, "did not release it in 30 s") && strstr(d.hint, "process 7"));
    cJSON_Delete(err);
    err = cJSON_Parse("{\"code\":-32005,\"message\":\"too many clients\"}");
    fp_channel_decode_error("status", 7, err, &d);
    CHECK(strstr(d.hint, "close another fp or editor session attached to process 7") != NULL);
    cJSON_Delete(err);
    err = cJSON_Parse("{\"code\":-32601,\"message\":\"no such method\"}");
    fp_channel_decode_error("mem.summary", 7, err, &d);
    CHECK(strstr(d.hint, "does not serve 'mem.summary'") != NULL);
    cJSON_Delete(err);
}

static void test_blocking_call(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    /* The answer is written before the call: the call finds it when it drives. */
    agent_answer(&a, 1, "{\"pong\":true}");
    fp_error e;
    cJSON *rpc = NULL;
    cJSON *res = fp_channel_call(ch, "ping", NULL, 1000, NULL, &e, &rpc);
    CHECK(res != NULL && rpc == NULL);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(res, "pong")));
    cJSON_Delete(res);
    cJSON *q = agent_read(&a);
    CHECK_STR(agent_method(q), "ping");
    cJSON_Delete(q);
    /* Ctrl-C: the call gives up, forgets the request, and says so. */
    volatile sig_atomic_t interrupted = 1;
    res = fp_channel_call(ch, "getglobal", NULL, -1, &interrupted, &e, &rpc);
    CHECK(res == NULL);
    CHECK_EQ_INT(e.code, FP_E_INTERRUPTED);
    CHECK(fp_channel_abandoned(ch));
    /* An error answer comes back with its object. */
    agent_send(&a, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32004,\"message\":\"no\","
                   "\"data\":{\"x\":1}}}");
    res = fp_channel_call(ch, "torch", NULL, 1000, NULL, &e, &rpc);
    CHECK(res == NULL && e.code == FP_E_REMOTE && e.rpc_code == -32004);
    CHECK(rpc && cJSON_GetObjectItem(cJSON_GetObjectItem(rpc, "data"), "x"));
    cJSON_Delete(rpc);
    teardown(ch, &a);
}

static void free_from_callback(fp_channel *ch, fp_channel_reply *r, void *ud)
{
    (void)r;
    *(int *)ud += 1;
    fp_channel_free(ch); /* the drive finishes, then frees it */
}

static void test_free_from_callback(void)
{
    agent a;
    fp_channel *ch = setup(&a);
    int calls = 0;
    fp_error e;
    fp_channel_request(ch, "detach", NULL, -1, free_from_callback, &calls, &e);
    cJSON *q = agent_read(&a);
    agent_answer(&a, agent_id(q), "{}");
    agent_answer(&a, agent_id(q) + 1, "{}"); /* more input after the callback: never read */
    double until = fp_clock_ms() + 2000;
    int rc = 0;
    while (!calls && fp_clock_ms() < until) {
        struct pollfd p = {.fd = fp_channel_fd(ch), .events = POLLIN};
        poll(&p, 1, 10);
        rc = fp_channel_drive(ch);
    }
    CHECK_EQ_INT(calls, 1);
    CHECK_EQ_INT(rc, -1); /* freed: the caller must not touch it again */
    cJSON_Delete(q);
    close(a.fd);
    fp_frame_reader_free(&a.reader);
}

int main(void)
{
    test_ids_and_order();
    test_late_answers();
    test_timeout_and_gil_hint();
    test_routes();
    test_closed();
    test_errors();
    test_blocking_call();
    test_free_from_callback();
    return check_summary();
}
