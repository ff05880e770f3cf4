/* JSON-RPC 2.0 on cJSON (see fp_rpc.h): validating a received message, building requests,
 * notifications and responses, and printing/sending them. Used inside the target too, so it
 * prints nothing and keeps cJSON trees local to the function that builds them. */
#include "fp_rpc.h"

#include "fp_frame.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integral doubles below this are printed by cJSON as plain integers ("%1.15g" is exact up to
 * 15 digits); larger ones may come out as "1e+15", so they are written as raw text instead. */
#define RPC_PLAIN_ID_LIMIT 1e15
/* 2^63: integral doubles in (-2^63, 2^63) convert to int64_t without overflow. */
#define RPC_INT64_LIMIT 9223372036854775808.0

/* ---- ids --------------------------------------------------------------------------------- */

static bool is_integral(double d, int64_t *out)
{
    if (!(d > -RPC_INT64_LIMIT && d < RPC_INT64_LIMIT)) return false; /* also rejects NaN */
    int64_t i = (int64_t)d;
    if ((double)i != d) return false;
    if (out) *out = i;
    return true;
}

static cJSON *id_from_int(int64_t id)
{
    double d = (double)id;
    if (d > -RPC_PLAIN_ID_LIMIT && d < RPC_PLAIN_ID_LIMIT) return cJSON_CreateNumber(d);
    char text[32];
    snprintf(text, sizeof(text), "%" PRId64, id);
    return cJSON_CreateRaw(text);
}

/* A fresh copy of a message id: integers stay integers, strings stay strings, and a missing
 * or unusable id becomes null (the JSON-RPC answer for "the id could not be read"). */
static cJSON *id_copy(const cJSON *id)
{
    if (!id || cJSON_IsNull(id)) return cJSON_CreateNull();
    if (cJSON_IsString(id)) return cJSON_CreateString(id->valuestring);
    if (cJSON_IsRaw(id)) return cJSON_CreateRaw(id->valuestring);
    int64_t i;
    if (cJSON_IsNumber(id) && is_integral(id->valuedouble, &i)) return id_from_int(i);
    return cJSON_CreateNull();
}

/* JSON-RPC allows a string, a number or null; fp keeps to integers among the numbers. */
static bool id_is_valid(const cJSON *id)
{
    if (cJSON_IsNull(id) || cJSON_IsString(id)) return true;
    return cJSON_IsNumber(id) && is_integral(id->valuedouble, NULL);
}

/* ---- builders ---------------------------------------------------------------------------- */

/* Takes ownership of child: attaches it to obj, or frees it and returns false (obj or child
 * NULL, i.e. an earlier allocation failed). Lets builders chain without leaking. */
static bool add(cJSON *obj, const char *key, cJSON *child)
{
    if (!obj || !child) {
        cJSON_Delete(child);
        return false;
    }
    if (!cJSON_AddItemToObject(obj, key, child)) {
        cJSON_Delete(child);
        return false;
    }
    return true;
}

/* {"jsonrpc": "2.0"} plus the id when has_id; a NULL id with has_id is a failed copy. */
static cJSON *envelope(bool has_id, cJSON *id)
{
    cJSON *msg = cJSON_CreateObject();
    if (!add(msg, "jsonrpc", cJSON_CreateString("2.0"))) {
        cJSON_Delete(msg);
        cJSON_Delete(id);
        return NULL;
    }
    if (has_id && !add(msg, "id", id)) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

static cJSON *with_method(cJSON *msg, const char *method, cJSON *params)
{
    if (!msg || !add(msg, "method", cJSON_CreateString(method ? method : ""))) {
        cJSON_Delete(msg);
        cJSON_Delete(params);
        return NULL;
    }
    if (params && !add(msg, "params", params)) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

cJSON *fp_rpc_request(int64_t id, const char *method, cJSON *params)
{
    return with_method(envelope(true, id_from_int(id)), method, params);
}

cJSON *fp_rpc_notification(const char *method, cJSON *params)
{
    return with_method(envelope(false, NULL), method, params);
}

cJSON *fp_rpc_result(const cJSON *id, cJSON *result)
{
    cJSON *msg = envelope(true, id_copy(id));
    if (!result) result = cJSON_CreateNull();
    if (!add(msg, "result", result)) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

static cJSON *error_object(int code, const char *message, cJSON *data)
{
    cJSON *err = cJSON_CreateObject();
    bool ok = add(err, "code", cJSON_CreateNumber(code)) &&
              add(err, "message", cJSON_CreateString(message ? message : ""));
    if (!ok) {
        cJSON_Delete(err);
        cJSON_Delete(data);
        return NULL;
    }
    if (data && !add(err, "data", data)) {
        cJSON_Delete(err);
        return NULL;
    }
    return err;
}

cJSON *fp_rpc_error(const cJSON *id, int code, const char *message, cJSON *data)
{
    cJSON *msg = envelope(true, id_copy(id));
    if (!add(msg, "error", error_object(code, message, data))) {
        cJSON_Delete(msg);
        return NULL;
    }
    return msg;
}

char *fp_rpc_print(const cJSON *msg)
{
    return fp_json_print(msg, NULL);
}

int fp_rpc_send(int fd, const cJSON *msg, int timeout_ms)
{
    return fp_rpc_send_bounded(fd, msg, SIZE_MAX, timeout_ms);
}

int fp_rpc_send_bounded(int fd, const cJSON *msg, size_t max, int timeout_ms)
{
    size_t len;
    char *text = msg ? fp_json_print(msg, &len) : NULL;
    if (!text) return -ENOMEM;
    int rc = len > max ? -EMSGSIZE : fp_frame_write(fd, text, len, timeout_ms);
    cJSON_free(text);
    return rc;
}

/* ---- UTF-8 ------------------------------------------------------------------------------- */

size_t fp_rpc_utf8_invalid_at(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n = c >= 0xc2 && c <= 0xdf   ? 2
                   : c >= 0xe0 && c <= 0xef ? 3
                   : c >= 0xf0 && c <= 0xf4 ? 4
                                            : 0;
        if (n == 0 || i + n > len) return i;
        unsigned char b = p[i + 1];
        /* No overlong forms, no surrogates, nothing above U+10FFFF. */
        unsigned char lo = c == 0xe0 ? 0xa0 : c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : c == 0xf4 ? 0x8f : 0xbf;
        if (b < lo || b > hi) return i;
        for (size_t k = 2; k < n; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xbf) return i;
        i += n;
    }
    return len;
}

/* ---- parsing ----------------------------------------------------------------------------- */

static void set_error(cJSON **error_response, const cJSON *id, int code, const char *message)
{
    if (error_response) *error_response = fp_rpc_error(id, code, message, NULL);
}

static bool only_space(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return false;
    }
    return true;
}

/* Parses body as exactly one JSON value. Returns NULL and a message on failure.
 * cJSON_GetErrorPtr is process-global (racy between threads), so the position comes from
 * return_parse_end instead. */
static cJSON *parse_json(const char *body, size_t len, char *why, size_t why_size)
{
    const char *end = NULL;
    cJSON *root = len > 0 ? cJSON_ParseWithLengthOpts(body, len, &end, false) : NULL;
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        snprintf(why, why_size, "Parse error: invalid JSON at byte %zu", at);
        return NULL;
    }
    size_t used = (size_t)(end - body);
    if (used < len && !only_space(end, len - used)) {
        snprintf(why, why_size, "Parse error: unexpected data after the JSON value at byte %zu",
                 used);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

static bool is_structured(const cJSON *v)
{
    return cJSON_IsObject(v) || cJSON_IsArray(v);
}

static const char *check_error_member(const cJSON *error)
{
    if (!cJSON_IsObject(error)) return "Invalid Request: \"error\" must be an object";
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    if (!cJSON_IsNumber(code) || !is_integral(code->valuedouble, NULL))
        return "Invalid Request: \"error.code\" must be an integer";
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(error, "message")))
        return "Invalid Request: \"error.message\" must be a string";
    return NULL;
}

/* Fills out from a parsed object. Returns NULL when it is a valid JSON-RPC 2.0 message, else
 * the reason. */
static const char *classify(const cJSON *root, fp_rpc_msg *out)
{
    /* The id first: every later complaint is answered with it when it is readable. */
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    if (id && !id_is_valid(id))
        return "Invalid Request: \"id\" must be an integer, a string or null";
    out->id = id;
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(root, "jsonrpc");
    if (!cJSON_IsString(version) || strcmp(version->valuestring, "2.0") != 0)
        return "Invalid Request: \"jsonrpc\" must be \"2.0\"";
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(root, "method");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "params");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(root, "result");
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (method) {
        if (!cJSON_IsString(method)) return "Invalid Request: \"method\" must be a string";
        /* "params": null is read as no params: some editors send it for LSP's void requests
         * (shutdown, exit) although JSON-RPC asks for a structured value. */
        if (cJSON_IsNull(params)) params = NULL;
        if (params && !is_structured(params))
            return "Invalid Request: \"params\" must be an object or an array";
        if (result || error)
            return "Invalid Request: a request cannot carry \"result\" or \"error\"";
        out->kind = id ? FP_RPC_REQUEST : FP_RPC_NOTIFICATION;
        out->method = method->valuestring;
        out->params = params;
        return NULL;
    }
    if (!result && !error) return "Invalid Request: neither \"method\" nor \"result\"/\"error\"";
    if (result && error)
        return "Invalid Request: a response carries \"result\" or \"error\", not both";
    if (!id) return "Invalid Request: a response needs an \"id\"";
    const char *why = error ? check_error_member(error) : NULL;
    if (why) return why;
    out->kind = FP_RPC_RESPONSE;
    out->result = result;
    out->error = error;
    return NULL;
}

int fp_rpc_parse(const char *body, size_t len, fp_rpc_msg *out, cJSON **error_response)
{
    memset(out, 0, sizeof(*out));
    if (error_response) *error_response = NULL;
    char why[128];
    /* JSON text is UTF-8 (RFC 8259); cJSON would pass other bytes through to every reader. */
    size_t bad = fp_rpc_utf8_invalid_at(body, len);
    if (bad < len) {
        snprintf(why, sizeof(why), "Parse error: the message is not UTF-8 (byte %zu)", bad);
        set_error(error_response, NULL, FP_RPC_PARSE_ERROR, why);
        return FP_RPC_PARSE_ERROR;
    }
    cJSON *root = parse_json(body, len, why, sizeof(why));
    if (!root) {
        set_error(error_response, NULL, FP_RPC_PARSE_ERROR, why);
        return FP_RPC_PARSE_ERROR;
    }
    /* Batches (arrays) are refused as invalid requests: no fp client sends them, and
     * answering one needs a batch response the front ends would never use. */
    if (!cJSON_IsObject(root)) {
        set_error(error_response, NULL, FP_RPC_INVALID_REQUEST,
                  cJSON_IsArray(root) ? "Invalid Request: batches are not supported"
                                      : "Invalid Request: a message must be a JSON object");
        cJSON_Delete(root);
        return FP_RPC_INVALID_REQUEST;
    }
    const char *invalid = classify(root, out);
    if (invalid) {
        set_error(error_response, out->id, FP_RPC_INVALID_REQUEST, invalid);
        cJSON_Delete(root);
        memset(out, 0, sizeof(*out));
        return FP_RPC_INVALID_REQUEST;
    }
    out->root = root;
    return 0;
}

void fp_rpc_msg_free(fp_rpc_msg *m)
{
    if (!m) return;
    cJSON_Delete(m->root);
    memset(m, 0, sizeof(*m));
}
