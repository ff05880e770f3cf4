/* textDocument/hover on a function: its monitor figures per process, the call tree of its
 * latest traced invocation, and the full value trees of its latest watched call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_json.h"
#include "lsp.h"

void lsp_hover_request(const cJSON *id, const cJSON *params)
{
    lsp_doc *doc = lsp_doc_find(fp_json_str(fp_json_get(params, "textDocument"), "uri", NULL));
    const cJSON *pos = fp_json_get(params, "position");
    if (!doc || !cJSON_IsNumber(fp_json_get(pos, "line"))) {
        lsp_rpc_result(id, NULL);
        return;
    }
    const lsp_def *def = lsp_defs_at(lsp_doc_defs(doc), (int)fp_json_num(pos, "line", 0));
    if (!def || !doc->path[0]) {
        lsp_rpc_result(id, NULL);
        return;
    }
    char *parts[3] = {lsp_monitor_hover(doc->path, def->qualname),
                      lsp_trace_hover(doc->path, def->qualname), lsp_watch_hover(doc, def)};
    size_t n = 8;
    for (int i = 0; i < 3; i++)
        n += parts[i] ? strlen(parts[i]) + 2 : 0;
    if (n == 8) {
        lsp_rpc_result(id, NULL);
        return;
    }
    char *text = malloc(n);
    if (text) {
        text[0] = '\0';
        for (int i = 0; i < 3; i++) {
            if (!parts[i]) continue;
            if (text[0]) strcat(text, "\n\n");
            strcat(text, parts[i]);
        }
    }
    for (int i = 0; i < 3; i++)
        free(parts[i]);
    cJSON *r = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(r, "contents");
    cJSON_AddStringToObject(c, "kind", "markdown");
    cJSON_AddStringToObject(c, "value", text ? text : "");
    free(text);
    lsp_rpc_result(id, r);
}
