/* textDocument/hover on a function: the full value trees of its latest watched call, and its
 * monitor figures per process. */
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
    char *watched = lsp_watch_hover(doc, def);
    char *monitored = lsp_monitor_hover(doc->path, def->qualname);
    if (!watched && !monitored) {
        lsp_rpc_result(id, NULL);
        return;
    }
    size_t n = (watched ? strlen(watched) : 0) + (monitored ? strlen(monitored) : 0) + 8;
    char *text = malloc(n);
    if (text)
        snprintf(text, n, "%s%s%s", monitored ? monitored : "", monitored && watched ? "\n\n" : "",
                 watched ? watched : "");
    free(watched);
    free(monitored);
    cJSON *r = cJSON_CreateObject();
    cJSON *c = cJSON_AddObjectToObject(r, "contents");
    cJSON_AddStringToObject(c, "kind", "markdown");
    cJSON_AddStringToObject(c, "value", text ? text : "");
    free(text);
    lsp_rpc_result(id, r);
}
