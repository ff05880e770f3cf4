/* User-visible errors: one place that fills and formats them, so every message fp prints
 * has the same shape ("fp: what happened" + indented lines saying what to do). */
#include "fp_error.h"

#include <stdarg.h>
#include <string.h>

void fp_error_clear(fp_error *e)
{
    if (!e) return;
    e->code = FP_OK;
    e->rpc_code = 0;
    e->message[0] = '\0';
    e->hint[0] = '\0';
}

int fp_error_set(fp_error *e, fp_errcode code, const char *hint, const char *fmt, ...)
{
    if (!e) return -1;
    e->code = code;
    e->rpc_code = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    snprintf(e->hint, sizeof e->hint, "%s", hint ? hint : "");
    return -1;
}

void fp_error_print(const fp_error *e, FILE *f)
{
    if (!e || !f) return;
    fprintf(f, "fp: %s\n", e->message[0] ? e->message : "unknown error");
    /* Each hint line is indented so the remedy reads as belonging to the message above. */
    const char *p = e->hint;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0) fprintf(f, "  %.*s\n", (int)n, p);
        p += n;
        if (*p == '\n') p++;
    }
    fflush(f);
}

const char *fp_error_ptrace_hint(void)
{
    return "fp attaches with ptrace, which the kernel refused. To allow it:\n"
           "- run fp as the same user as the target process, or as root;\n"
           "- in a container, add the CAP_SYS_PTRACE capability\n"
           "  (docker run --cap-add=SYS_PTRACE ..., or in Kubernetes\n"
           "  securityContext.capabilities.add: [\"SYS_PTRACE\"]);\n"
           "- if /proc/sys/kernel/yama/ptrace_scope is 1 or more, run fp as root or set it\n"
           "  to 0 (sysctl kernel.yama.ptrace_scope=0); with 3, no process may attach at all\n"
           "  until the next reboot.";
}

const char *fp_error_code_name(fp_errcode code)
{
    /* These names are part of fp --json's schema (protocol/jsonl.md): never rename one. */
    switch (code) {
    case FP_OK:
        return "ok";
    case FP_E_NO_PROCESS:
        return "no_process";
    case FP_E_NOT_PYTHON:
        return "not_python";
    case FP_E_PERMISSION:
        return "permission";
    case FP_E_EXITING:
        return "exiting";
    case FP_E_UNSUPPORTED:
        return "unsupported";
    case FP_E_INJECT:
        return "inject";
    case FP_E_AGENT_TIMEOUT:
        return "agent_timeout";
    case FP_E_CONNECT:
        return "connect";
    case FP_E_PROTOCOL:
        return "protocol";
    case FP_E_REMOTE:
        return "remote";
    case FP_E_TIMEOUT:
        return "timeout";
    case FP_E_CLOSED:
        return "closed";
    case FP_E_USAGE:
        return "usage";
    case FP_E_IO:
        return "io";
    case FP_E_INTERNAL:
        return "internal";
    case FP_E_INTERRUPTED:
        return "interrupted";
    case FP_E_UNTRUSTED:
        return "untrusted";
    }
    return "internal";
}
