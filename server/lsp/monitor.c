/* fp.monitor: live per-function figures. */
#include "lsp.h"

void lsp_monitor_command(const cJSON *id, const cJSON *arg)
{
    (void)arg;
    lsp_rpc_error(id, LSP_ERR_REQUEST_FAILED, "fp.monitor: not wired yet");
}

int lsp_monitor_stop(const char *path, const char *qualname)
{
    (void)path, (void)qualname;
    return 0;
}

void lsp_monitor_proc_gone(lsp_proc *p)
{
    (void)p;
}

int lsp_monitor_count(void)
{
    return 0;
}

char *lsp_monitor_lens(const char *path, const char *qualname)
{
    (void)path, (void)qualname;
    return NULL;
}

char *lsp_monitor_hover(const char *path, const char *qualname)
{
    (void)path, (void)qualname;
    return NULL;
}

void lsp_monitor_reloaded(const char *path, const char *qualname)
{
    (void)path, (void)qualname;
}
