/* JSON-RPC 2.0 messages on cJSON, shared by the agent, the core library and fp-lsp.
 * Ownership: builders take ownership of the cJSON they are given and return a new tree the
 * caller frees with cJSON_Delete; fp_rpc_print returns a malloc'd string the caller frees. */
#ifndef FP_RPC_H
#define FP_RPC_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* Standard JSON-RPC codes. */
#define FP_RPC_PARSE_ERROR -32700
#define FP_RPC_INVALID_REQUEST -32600
#define FP_RPC_METHOD_NOT_FOUND -32601
#define FP_RPC_INVALID_PARAMS -32602
#define FP_RPC_INTERNAL_ERROR -32603
/* fp's own codes (catalogue in protocol/methods.md). */
#define FP_ERR_NOT_FOUND                                                                           \
    -32001                 /* module / class / attribute / file not found; data.suggestions        \
                            */
#define FP_ERR_EVAL -32002 /* a user expression failed to compile or raised; data.traceback */
#define FP_ERR_GIL_TIMEOUT -32003   /* the GIL could not be taken in time */
#define FP_ERR_NOT_SUPPORTED -32004 /* the request cannot be served by this target */
#define FP_ERR_BUSY -32005          /* a limit was reached (too many clients, sessions) */
#define FP_ERR_CANCELLED -32006     /* the request was cancelled or the agent is shutting down */

/* The largest request body the agent reads (a bigger one is answered -32600 and skipped): a
 * request is a command line, an expression (at most 64 Ki characters) or console input (at most
 * 1 Mi characters), never more. Clients check it before sending. */
#define FP_RPC_AGENT_MAX_REQUEST (8u << 20)

typedef enum fp_rpc_kind {
    FP_RPC_REQUEST = 1,      /* method + id */
    FP_RPC_NOTIFICATION = 2, /* method, no id */
    FP_RPC_RESPONSE = 3,     /* result or error + id */
} fp_rpc_kind;

typedef struct fp_rpc_msg {
    cJSON *root; /* owns the whole message; free with fp_rpc_msg_free */
    fp_rpc_kind kind;
    const cJSON *id;     /* borrowed from root; NULL for notifications */
    const char *method;  /* borrowed; requests and notifications */
    const cJSON *params; /* borrowed; may be NULL */
    const cJSON *result; /* borrowed; responses */
    const cJSON *error;  /* borrowed; error responses */
} fp_rpc_msg;

/* Parses and validates one message. Returns 0 on success. On failure returns the JSON-RPC
 * error code (FP_RPC_PARSE_ERROR, also for a body that is not UTF-8, or FP_RPC_INVALID_REQUEST)
 * and, when error_response is not NULL, stores a ready error response (with the request id when
 * it could be read). */
int fp_rpc_parse(const char *body, size_t len, fp_rpc_msg *out, cJSON **error_response);
void fp_rpc_msg_free(fp_rpc_msg *m);

cJSON *fp_rpc_request(int64_t id, const char *method, cJSON *params);
cJSON *fp_rpc_notification(const char *method, cJSON *params);
/* id is copied (it may be NULL: the response then carries "id": null). */
cJSON *fp_rpc_result(const cJSON *id, cJSON *result);
cJSON *fp_rpc_error(const cJSON *id, int code, const char *message, cJSON *data);
/* Compact text of a message, malloc'd. */
char *fp_rpc_print(const cJSON *msg);
/* Compact text of any cJSON value, malloc'd, as cJSON_PrintUnformatted writes it but with
 * integers written without a printf round trip; its length in *len when len is not NULL. NULL
 * when out of memory, nested too deep or holding a raw item without text. */
char *fp_json_print(const cJSON *v, size_t *len);
/* s as a JSON string, quotes included, malloc'd (NULL when out of memory): for text built
 * around it, such as a cJSON_CreateRaw item. */
char *fp_json_quote(const char *s);
/* Convenience: print msg compactly and write it framed to fd (see fp_frame_write). */
int fp_rpc_send(int fd, const cJSON *msg, int timeout_ms);
/* Like fp_rpc_send, but -EMSGSIZE (nothing written) when the body is longer than max. */
int fp_rpc_send_bounded(int fd, const cJSON *msg, size_t max, int timeout_ms);
/* Index of the first byte of text[0, len) that is not well-formed UTF-8, or len when all is. */
size_t fp_rpc_utf8_invalid_at(const char *text, size_t len);

#endif
