/* Unit tests for protocol/rpc.c: validation of received JSON-RPC 2.0 messages, the error
 * responses for bad input, the exact text of built messages, and sending over a socket. */
#include "check.h"
#include "fp_frame.h"
#include "fp_rpc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int parse_text(const char *text, fp_rpc_msg *m, cJSON **err)
{
    return fp_rpc_parse(text, strlen(text), m, err);
}

/* Prints msg, compares with want, and frees msg. */
static void check_text(cJSON *msg, const char *want)
{
    CHECK(msg != NULL);
    char *got = fp_rpc_print(msg);
    CHECK_STR(got, want);
    free(got);
    cJSON_Delete(msg);
}

static void test_request(void)
{
    fp_rpc_msg m;
    cJSON *err = NULL;
    const char *text = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\",\"params\":{\"a\":1}}";
    CHECK_EQ_INT(parse_text(text, &m, &err), 0);
    CHECK(err == NULL);
    CHECK_EQ_INT(m.kind, FP_RPC_REQUEST);
    CHECK(cJSON_IsNumber(m.id) && m.id->valuedouble == 7);
    CHECK_STR(m.method, "ping");
    CHECK(cJSON_IsObject(m.params));
    CHECK(m.result == NULL && m.error == NULL);
    fp_rpc_msg_free(&m);
    CHECK(m.root == NULL);

    /* String ids, array params, and an id of null are requests too. */
    text = "{\"method\":\"stack\",\"params\":[],\"id\":\"abc\",\"jsonrpc\":\"2.0\"}";
    CHECK_EQ_INT(parse_text(text, &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_REQUEST);
    CHECK(cJSON_IsString(m.id) && strcmp(m.id->valuestring, "abc") == 0);
    CHECK(cJSON_IsArray(m.params));
    fp_rpc_msg_free(&m);

    CHECK_EQ_INT(parse_text("{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"x\"}", &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_REQUEST);
    CHECK(cJSON_IsNull(m.id));
    CHECK(m.params == NULL);
    fp_rpc_msg_free(&m);
}

static void test_notification(void)
{
    fp_rpc_msg m;
    const char *text = " {\"jsonrpc\":\"2.0\",\"method\":\"exit\"}\r\n";
    CHECK_EQ_INT(parse_text(text, &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_NOTIFICATION);
    CHECK(m.id == NULL);
    CHECK_STR(m.method, "exit");
    CHECK(m.params == NULL);
    fp_rpc_msg_free(&m);

    /* "params": null (sent by some editors for void LSP methods) reads as no params. */
    CHECK_EQ_INT(parse_text("{\"jsonrpc\":\"2.0\",\"method\":\"exit\",\"params\":null}", &m, NULL),
                 0);
    CHECK_EQ_INT(m.kind, FP_RPC_NOTIFICATION);
    CHECK(m.params == NULL);
    fp_rpc_msg_free(&m);
}

static void test_responses(void)
{
    fp_rpc_msg m;
    CHECK_EQ_INT(parse_text("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"pong\":true}}", &m, NULL),
                 0);
    CHECK_EQ_INT(m.kind, FP_RPC_RESPONSE);
    CHECK(cJSON_IsNumber(m.id) && m.id->valuedouble == 3);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m.result, "pong")));
    CHECK(m.error == NULL && m.method == NULL);
    fp_rpc_msg_free(&m);

    CHECK_EQ_INT(parse_text("{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":null}", &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_RESPONSE);
    CHECK(cJSON_IsNull(m.result));
    fp_rpc_msg_free(&m);

    const char *text = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32001,"
                       "\"message\":\"not found\",\"data\":{\"missing\":\"module\"}}}";
    CHECK_EQ_INT(parse_text(text, &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_RESPONSE);
    CHECK(cJSON_IsNull(m.id));
    CHECK(m.result == NULL);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(m.error, "code");
    CHECK(cJSON_IsNumber(code) && code->valuedouble == FP_ERR_NOT_FOUND);
    fp_rpc_msg_free(&m);
}

/* Checks an error response: code, id (printed JSON text) and message prefix. */
static void check_error_response(cJSON *err, int code, const char *id_text, const char *prefix)
{
    CHECK(err != NULL);
    if (!err) return;
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(err, "jsonrpc")), "2.0");
    char *id = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(err, "id"));
    CHECK_STR(id, id_text);
    free(id);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(err, "error");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    CHECK(cJSON_IsNumber(c) && c->valueint == code);
    const char *message = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "message"));
    CHECK(message && strncmp(message, prefix, strlen(prefix)) == 0);
    if (message && strncmp(message, prefix, strlen(prefix)) != 0)
        fprintf(stderr, "    message: %s\n", message);
    cJSON_Delete(err);
}

static void test_parse_errors(void)
{
    const char *bad[] = {"{", "", "   ", "{\"jsonrpc\":\"2.0\"} x", "nul", "{\"a\":1,}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fp_rpc_msg m;
        cJSON *err = NULL;
        CHECK_EQ_INT(parse_text(bad[i], &m, &err), FP_RPC_PARSE_ERROR);
        CHECK(m.root == NULL);
        check_error_response(err, FP_RPC_PARSE_ERROR, "null", "Parse error: ");
    }
    /* The length bounds the parse: a valid prefix followed by bytes past len is fine. */
    fp_rpc_msg m;
    CHECK_EQ_INT(fp_rpc_parse("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}garbage", 30, &m, NULL), 0);
    fp_rpc_msg_free(&m);
    /* error_response may be NULL. */
    CHECK_EQ_INT(parse_text("[", &m, NULL), FP_RPC_PARSE_ERROR);

    cJSON *err = NULL;
    CHECK_EQ_INT(parse_text("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"", &m, &err),
                 FP_RPC_PARSE_ERROR);
    char *text = fp_rpc_print(err);
    const char *want = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
                       "\"message\":\"Parse error: ";
    CHECK(text && strncmp(text, want, strlen(want)) == 0);
    free(text);
    cJSON_Delete(err);
}

static void test_invalid_requests(void)
{
    struct {
        const char *text;
        const char *id;
    } cases[] = {
        {"{\"jsonrpc\":\"1.0\",\"id\":5,\"method\":\"x\"}", "5"},
        {"{\"id\":5,\"method\":\"x\"}", "5"},
        {"{\"jsonrpc\":2.0,\"id\":\"s\",\"method\":\"x\"}", "\"s\""},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":3}", "\"abc\""},
        {"{\"jsonrpc\":\"2.0\",\"id\":6}", "6"},
        {"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"x\",\"params\":3}", "6"},
        {"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"x\",\"result\":3}", "6"},
        {"{\"jsonrpc\":\"2.0\",\"result\":3}", "null"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":1,\"error\":{\"code\":1,\"message\":\"m\"}}",
         "8"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"error\":\"boom\"}", "8"},
        {"{\"jsonrpc\":\"2.0\",\"id\":8,\"error\":{\"code\":\"x\",\"message\":\"m\"}}", "8"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", "null"},
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"x\"}", "null"},
        {"{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"x\"}", "null"},
        {"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]", "null"}, /* batch */
        {"[]", "null"},
        {"42", "null"},
        {"\"text\"", "null"},
        {"null", "null"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fp_rpc_msg m;
        cJSON *err = NULL;
        int rc = parse_text(cases[i].text, &m, &err);
        CHECK_EQ_INT(rc, FP_RPC_INVALID_REQUEST);
        if (rc != FP_RPC_INVALID_REQUEST) fprintf(stderr, "    input: %s\n", cases[i].text);
        CHECK(m.root == NULL);
        check_error_response(err, FP_RPC_INVALID_REQUEST, cases[i].id, "Invalid Request: ");
    }
}

static void test_builders(void)
{
    check_text(fp_rpc_request(1, "ping", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "path", "/app/main.py");
    check_text(fp_rpc_request(42, "module", params),
               "{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"module\","
               "\"params\":{\"path\":\"/app/main.py\"}}");
    /* Integer ids stay integers however large. */
    check_text(fp_rpc_request(5000000000LL, "x", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":5000000000,\"method\":\"x\"}");
    check_text(fp_rpc_request(1000000000000000LL, "x", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":1000000000000000,\"method\":\"x\"}");
    check_text(fp_rpc_request(INT64_MAX, "x", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":9223372036854775807,\"method\":\"x\"}");
    check_text(fp_rpc_request(-3, "x", NULL), "{\"jsonrpc\":\"2.0\",\"id\":-3,\"method\":\"x\"}");
    check_text(fp_rpc_notification("exit", NULL), "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    check_text(fp_rpc_notification("$/progress", cJSON_CreateArray()),
               "{\"jsonrpc\":\"2.0\",\"method\":\"$/progress\",\"params\":[]}");

    cJSON *id = cJSON_CreateNumber(7);
    cJSON *result = cJSON_CreateObject();
    cJSON_AddTrueToObject(result, "pong");
    check_text(fp_rpc_result(id, result),
               "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"pong\":true}}");
    cJSON_Delete(id);
    check_text(fp_rpc_result(NULL, NULL), "{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":null}");
    id = cJSON_CreateString("req-1");
    check_text(fp_rpc_result(id, cJSON_CreateObject()),
               "{\"jsonrpc\":\"2.0\",\"id\":\"req-1\",\"result\":{}}");
    cJSON_Delete(id);
    id = cJSON_CreateNumber(2e15);
    check_text(fp_rpc_result(id, NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":2000000000000000,\"result\":null}");
    cJSON_Delete(id);

    id = cJSON_CreateNumber(3);
    cJSON *data = cJSON_CreateObject();
    cJSON *suggestions = cJSON_AddArrayToObject(data, "suggestions");
    cJSON_AddItemToArray(suggestions, cJSON_CreateString("ping"));
    check_text(fp_rpc_error(id, FP_RPC_METHOD_NOT_FOUND, "no such method: pnig", data),
               "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32601,"
               "\"message\":\"no such method: pnig\",\"data\":{\"suggestions\":[\"ping\"]}}}");
    check_text(fp_rpc_error(id, FP_ERR_BUSY, "too many clients", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32005,"
               "\"message\":\"too many clients\"}}");
    cJSON_Delete(id);
    check_text(fp_rpc_error(NULL, FP_RPC_INTERNAL_ERROR, "quote \" and \\", NULL),
               "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,"
               "\"message\":\"quote \\\" and \\\\\"}}");
    CHECK(fp_rpc_print(NULL) == NULL);
}

/* A built message parses back as the same kind of message. */
static void test_round_trip(void)
{
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "depth", 2);
    cJSON *req = fp_rpc_request(99, "getglobal", params);
    char *text = fp_rpc_print(req);
    fp_rpc_msg m;
    CHECK_EQ_INT(parse_text(text, &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_REQUEST);
    CHECK_STR(m.method, "getglobal");
    CHECK(m.id && m.id->valuedouble == 99);
    cJSON *resp = fp_rpc_result(m.id, cJSON_CreateString("ok"));
    char *resp_text = fp_rpc_print(resp);
    CHECK_STR(resp_text, "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":\"ok\"}");
    free(resp_text);
    cJSON_Delete(resp);
    fp_rpc_msg_free(&m);
    fp_rpc_msg_free(&m); /* freeing twice is harmless */
    free(text);
    cJSON_Delete(req);
}

static void test_send(void)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cJSON *req = fp_rpc_request(1, "ping", NULL);
    cJSON *note = fp_rpc_notification("exit", NULL);
    CHECK_EQ_INT(fp_rpc_send(sv[0], req, 1000), 0);
    CHECK_EQ_INT(fp_rpc_send(sv[0], note, 1000), 0);
    cJSON_Delete(req);
    cJSON_Delete(note);
    close(sv[0]);

    fp_frame_reader r;
    fp_frame_reader_init(&r, 0);
    char buf[256];
    ssize_t n;
    while ((n = read(sv[1], buf, sizeof(buf))) > 0)
        fp_frame_reader_feed(&r, buf, (size_t)n);
    close(sv[1]);

    char *body = NULL;
    size_t len = 0;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, NULL), FP_FRAME_OK);
    fp_rpc_msg m;
    CHECK_EQ_INT(fp_rpc_parse(body, len, &m, NULL), 0);
    CHECK_EQ_INT(m.kind, FP_RPC_REQUEST);
    CHECK_STR(m.method, "ping");
    fp_rpc_msg_free(&m);
    free(body);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, NULL), FP_FRAME_OK);
    CHECK_STR(body, "{\"jsonrpc\":\"2.0\",\"method\":\"exit\"}");
    free(body);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, NULL), FP_FRAME_MORE);
    fp_frame_reader_free(&r);

    /* Sending to a closed peer is an error, not a signal. */
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    req = fp_rpc_request(2, "ping", NULL);
    CHECK(fp_rpc_send(sv[0], req, 1000) < 0);
    cJSON_Delete(req);
    close(sv[0]);
}

/* fp_json_print writes what cJSON_PrintUnformatted writes, for every kind of value, and text
 * that reads back to the same numbers. */
static void check_print_like_cjson(const char *json)
{
    cJSON *v = cJSON_Parse(json);
    CHECK(v != NULL);
    char *want = cJSON_PrintUnformatted(v);
    size_t len = 0;
    char *got = fp_json_print(v, &len);
    CHECK_STR(got, want);
    CHECK(got && len == strlen(got));
    free(got);
    cJSON_free(want);
    cJSON_Delete(v);
}

static void test_print(void)
{
    check_print_like_cjson("{\"a\":[1,-2,0,3.5,-0.25,1e300,123456789012345,1e15,-1e16,"
                           "0.1,2.5e-7],\"b\":{\"c\":null,\"d\":true,"
                           "\"e\":false},\"s\":\"q\\\"b\\\\s\\/n\\n\\r\\t\\b\\f"
                           "\\u0001\\u001f\u00e9\u2192\",\"\":[],\"o\":{},\"k\\n\":\"\"}");
    check_print_like_cjson("[]");
    check_print_like_cjson("\"only\"");
    check_print_like_cjson("-7");
    /* Numbers read back exactly, where cJSON accepts 15 digits that are only close. */
    cJSON *big = cJSON_CreateNumber(9007199254740992.0);
    char *big_text = fp_json_print(big, NULL);
    CHECK_STR(big_text, "9007199254740992");
    free(big_text);
    cJSON_Delete(big);
    for (int i = 0; i < 2000; i++) {
        double d = (double)(i * 7919 % 10007) / (i + 1) * (i % 2 ? 1e-9 : 1e9);
        cJSON *n = cJSON_CreateNumber(d);
        char *text = fp_json_print(n, NULL);
        CHECK(text && strtod(text, NULL) == d);
        free(text);
        cJSON_Delete(n);
    }
    /* What JSON cannot say: NaN and infinities are null, as cJSON prints them. */
    cJSON *n = cJSON_CreateNumber(NAN);
    char *text = fp_json_print(n, NULL);
    CHECK_STR(text, "null");
    free(text);
    cJSON_Delete(n);
    cJSON *raw = cJSON_CreateRaw("{\"r\":1}");
    text = fp_json_print(raw, NULL);
    CHECK_STR(text, "{\"r\":1}");
    free(text);
    cJSON_Delete(raw);
    CHECK(fp_json_print(NULL, NULL) == NULL);
    /* Nesting past cJSON's limit is refused, not a stack overflow. */
    cJSON *deep = cJSON_CreateArray(), *at = deep;
    for (int i = 0; i < CJSON_NESTING_LIMIT + 2; i++) {
        cJSON *inner = cJSON_CreateArray();
        cJSON_AddItemToArray(at, inner);
        at = inner;
    }
    CHECK(fp_json_print(deep, NULL) == NULL);
    cJSON_Delete(deep);
}

int main(void)
{
    test_print();
    test_request();
    test_notification();
    test_responses();
    test_parse_errors();
    test_invalid_requests();
    test_builders();
    test_round_trip();
    test_send();
    return check_summary();
}
