/* fp.reload: the editor's text of a function pushed into the running process (the agent's
 * reload method, given the whole buffer: it picks the function by name and nesting). */
#include <string.h>

#include "lsp.h"

void lsp_reload_command(const cJSON *id, const cJSON *arg)
{
    (void)arg;
    lsp_rpc_error(id, LSP_ERR_REQUEST_FAILED, "fp.reload: not wired yet");
}

void lsp_reload_on_save(lsp_doc *doc)
{
    (void)doc;
}

void lsp_reload_diagnostics(lsp_doc *doc, cJSON *out)
{
    (void)doc, (void)out;
}

void lsp_reload_forget(const char *path)
{
    (void)path;
}
