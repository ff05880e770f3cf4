/* User-visible errors: what happened, and what to do about it. One place formats them. */
#ifndef FP_ERROR_H
#define FP_ERROR_H

#include <stdio.h>

typedef enum fp_errcode {
    FP_OK = 0,
    FP_E_NO_PROCESS,    /* no such process */
    FP_E_NOT_PYTHON,    /* the process is not a CPython interpreter */
    FP_E_PERMISSION,    /* ptrace / socket access refused */
    FP_E_EXITING,       /* the process is exiting or a zombie */
    FP_E_UNSUPPORTED,   /* Python version, architecture or libc we cannot handle */
    FP_E_INJECT,        /* the remote dlopen failed */
    FP_E_AGENT_TIMEOUT, /* the agent did not come up in time */
    FP_E_CONNECT,       /* cannot reach the agent's socket */
    FP_E_PROTOCOL,      /* malformed answer from the agent */
    FP_E_REMOTE,        /* the agent answered with a JSON-RPC error (see rpc_code) */
    FP_E_TIMEOUT,       /* a request took longer than its limit */
    FP_E_CLOSED,        /* the agent closed the connection (target exited?) */
    FP_E_USAGE,         /* bad command-line input */
    FP_E_IO,            /* local I/O failure (writing a file, ...) */
    FP_E_INTERNAL,
    FP_E_INTERRUPTED, /* a signal (Ctrl-C) interrupted a wait; the request may still finish */
    FP_E_UNTRUSTED,   /* a socket, peer or file that another user could control: refused */
} fp_errcode;

typedef struct fp_error {
    fp_errcode code;
    int rpc_code;       /* JSON-RPC error code when code == FP_E_REMOTE */
    char message[1024]; /* what happened, one line */
    char hint[1024];    /* what to do, may be empty or several lines */
} fp_error;

void fp_error_clear(fp_error *e);
/* Sets code, message (printf-style) and hint (may be NULL). Returns -1 for `return
 * fp_error_set(...)`. */
int fp_error_set(fp_error *e, fp_errcode code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prints "fp: MESSAGE" then each hint line indented, to f. */
void fp_error_print(const fp_error *e, FILE *f);
/* The remedy paragraph for ptrace permission problems (CAP_SYS_PTRACE, ptrace_scope, ...). */
const char *fp_error_ptrace_hint(void);
/* A stable lowercase name for code ("remote", "timeout", ...), used in fp --json output. */
const char *fp_error_code_name(fp_errcode code);

#endif
