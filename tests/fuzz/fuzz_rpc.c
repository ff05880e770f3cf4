/* libFuzzer target: JSON-RPC 2.0 validation (protocol/rpc.c) on arbitrary bodies. A body is either
 * a valid message, classified consistently, or refused with an error response that is itself a
 * valid message carrying the same code; what fp builds from a message always parses again. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fp_rpc.h"

static void reparse(const cJSON *msg, fp_rpc_kind want)
{
    char *text = fp_rpc_print(msg);
    if (!text) return; /* out of memory */
    fp_rpc_msg m;
    int rc = fp_rpc_parse(text, strlen(text), &m, NULL);
    assert(rc == 0 && m.kind == want);
    fp_rpc_msg_free(&m);
    cJSON_free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fp_rpc_msg m;
    cJSON *error_response = NULL;
    int rc = fp_rpc_parse((const char *)data, size, &m, &error_response);
    if (rc != 0) {
        assert(rc == FP_RPC_PARSE_ERROR || rc == FP_RPC_INVALID_REQUEST);
        assert(!m.root);
        if (error_response) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(error_response, "error");
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
            assert(cJSON_IsNumber(code) && code->valueint == rc);
            reparse(error_response, FP_RPC_RESPONSE);
        }
        cJSON_Delete(error_response);
        return 0;
    }
    assert(!error_response && m.root);
    switch (m.kind) {
    case FP_RPC_REQUEST:
        assert(m.method && m.id);
        /* What the agent answers a request with: a result and an error, both with its id. */
        {
            cJSON *r = fp_rpc_result(m.id, cJSON_Duplicate(m.params, 1));
            reparse(r, FP_RPC_RESPONSE);
            cJSON_Delete(r);
            cJSON *e = fp_rpc_error(m.id, FP_ERR_BUSY, m.method, NULL);
            reparse(e, FP_RPC_RESPONSE);
            cJSON_Delete(e);
        }
        break;
    case FP_RPC_NOTIFICATION:
        assert(m.method && !m.id);
        {
            cJSON *n = fp_rpc_notification(m.method, cJSON_Duplicate(m.params, 1));
            reparse(n, FP_RPC_NOTIFICATION);
            cJSON_Delete(n);
        }
        break;
    case FP_RPC_RESPONSE:
        assert(m.id && (m.result || m.error) && !(m.result && m.error));
        break;
    default:
        assert(0);
    }
    fp_rpc_msg_free(&m);
    return 0;
}
