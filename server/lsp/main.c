/* fp-lsp, the editor backend: a language server on stdin/stdout that attaches to running
 * CPython processes and shows, in the source, what fp shows in a terminal: live call costs as
 * code lenses, watched values as diagnostics, reloads of edited functions. One libuv loop runs
 * it (lsp.h); protocol/lsp.md documents its commands and notifications. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "fp_log.h"
#include "lsp.h"

void lsp_settings_init(void);

static void lsp_usage(FILE *out)
{
    fprintf(out, "usage: fp-lsp [--debug] [--version | --help]\n"
                 "\n"
                 "The fp language server, started by an editor and speaking LSP 3.17 on\n"
                 "stdin/stdout: attach to a running Python process from the editor, see live call\n"
                 "costs on each function, watch a function's calls, reload an edited function.\n"
                 "Commands and notifications: protocol/lsp.md.\n"
                 "  --debug    log each attach and agent message to stderr\n"
                 "  --version  print the version and exit\n"
                 "  --help     print this help and exit\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("fp-lsp %s\nlibuv %s\n", FP_VERSION, uv_version_string());
            return 0;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            lsp_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--debug") == 0) {
            lsp.debug = true;
            continue;
        }
        if (strcmp(argv[i], "--stdio") == 0) continue; /* what clients pass by habit */
        fprintf(stderr, "fp-lsp: unknown option '%s'\n", argv[i]);
        lsp_usage(stderr);
        return 2;
    }
    fp_log_start();
    /* A dead agent or editor must not kill the server: writes report EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    lsp_settings_init();
    lsp.loop = uv_default_loop();
    if (lsp_rpc_start(lsp.loop) != 0) {
        fprintf(stderr, "fp-lsp: cannot use stdin/stdout as pipes: start it from an editor (it "
                        "speaks LSP on stdio)\n");
        return 2;
    }
    uv_run(lsp.loop, UV_RUN_DEFAULT);
    lsp_docs_free_all();
    uv_loop_close(lsp.loop);
    return lsp.exiting ? lsp.exit_code : 1;
}
