/* textDocument/publishDiagnostics: one list per open document, made of what the features have
 * for its file (watched calls, reload refusals and consequences), republished whenever one of
 * them changes. */
#include <string.h>

#include "lsp.h"

void lsp_diagnostics_publish(lsp_doc *doc)
{
    if (lsp.exiting || !lsp.initialized) return;
    cJSON *list = cJSON_CreateArray();
    if (doc->path[0]) {
        lsp_watch_diagnostics(doc, list);
        lsp_reload_diagnostics(doc, list);
        lsp_stack_diagnostics(doc, list);
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "uri", doc->uri);
    cJSON_AddNumberToObject(p, "version", doc->version);
    cJSON_AddItemToObject(p, "diagnostics", list);
    lsp_rpc_notify("textDocument/publishDiagnostics", p);
}

void lsp_diagnostics_publish_path(const char *path)
{
    for (lsp_doc *d = lsp_docs_first(); d; d = d->next)
        if (strcmp(d->path, path) == 0) lsp_diagnostics_publish(d);
}

void lsp_diagnostics_publish_all(void)
{
    for (lsp_doc *d = lsp_docs_first(); d; d = d->next)
        lsp_diagnostics_publish(d);
}
