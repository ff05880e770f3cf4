/* fp-lsp: the language server front end. This version only answers --version and --help;
 * the server itself (lifecycle, documents, lenses, ...) lands in later modules. */
#include <stdio.h>
#include <string.h>
#include <uv.h>

static void lsp_usage(FILE *out)
{
    fprintf(out, "usage: fp-lsp [--version | --help]\n"
                 "\n"
                 "The fp language server, started by an editor and speaking LSP on stdin/stdout.\n"
                 "  --version  print the version and exit\n"
                 "  --help     print this help and exit\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("fp-lsp %s\nlibuv %s\n", FP_VERSION, uv_version_string());
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        lsp_usage(stdout);
        return 0;
    }
    fprintf(stderr,
            "fp-lsp: the language server is not available in this version yet.\n"
            "Use the fp command line (fp PID) meanwhile; fp-lsp --help lists what works.\n");
    return 2;
}
