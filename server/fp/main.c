/* fp, the terminal client: reads its arguments, lists the Python processes one may attach to
 * or attaches to one, then runs the --cmd commands or the interactive shell, and detaches.
 * Exit status: 0 ok, 1 a command failed, 2 bad usage or the attach failed. */
#include "fp_cli.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_log.h"
#include "fp_models.h"
#include "fp_safe.h"

#define MAIN_CMD_TIMEOUT_MS 30000
#define MAIN_MAX_CMDS 64

volatile sig_atomic_t cli_interrupted;

static const char main_usage[] =
    "usage: fp [--debug] [--json] [--timeout S] [--cmd COMMAND]... [PID]\n"
    "\n"
    "Attaches to a running CPython process (3.8 to 3.13) without restarting it, and lets\n"
    "you inspect it. Without PID, lists the Python processes you may attach to.\n"
    "\n"
    "  PID            the process to attach to; opens an interactive shell\n"
    "  --cmd COMMAND  run COMMAND and exit instead of opening the shell, e.g.\n"
    "                 --cmd stack, --cmd 'getglobal __main__ config -x 2'; may be\n"
    "                 repeated: the commands run in order, stopping at the first failure\n"
    "  --json         print each command's result as one JSON line on stdout (schema:\n"
    "                 protocol/jsonl.md); errors are printed there as JSON too, and to\n"
    "                 stderr as text\n"
    "  --timeout S    stop waiting for a command after S seconds (decimals allowed).\n"
    "                 Default: 30 with --cmd or when commands come from a pipe, no limit\n"
    "                 in the interactive shell (Ctrl-C stops waiting). Commands that run\n"
    "                 until stopped (watch, trace, tt -t, perf, gilstat) stop after S\n"
    "                 seconds (the default too, unless perf -d says how long) or at\n"
    "                 Ctrl-C, keep what they printed, say why on stderr and exit 0\n"
    "  --debug        log each attach step to stderr, with elapsed milliseconds\n"
    "  -h, --help     show this text\n"
    "  -V, --version  show fp's version\n"
    "\n"
    "In the shell, help lists the commands and help COMMAND shows their options;\n"
    "commands can also be piped in: fp PID < commands.txt. Commands that need no\n"
    "process run without a PID: fp --cmd 'help perf', fp --cmd 'stack 4242'.\n"
    "Exit status: 0 ok (a command stopped by Ctrl-C or --timeout included); 1 a command\n"
    "failed; 2 bad usage, or the process cannot be attached to or read (no such process,\n"
    "not a CPython, permission denied, its agent did not come up).\n"
    "Environment: FP_AGENT_LIB, the libfpagent.so to load (default: ../lib/fp/ next to fp).\n";

typedef struct main_args {
    int pid; /* 0: none given */
    bool json, debug;
    int timeout_ms; /* -1: not given */
    const char *cmds[MAIN_MAX_CMDS];
    int ncmds;
} main_args;

static int main_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int main_usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fp_error e;
    fp_error_set(&e, FP_E_USAGE, "fp --help shows the options", "%s", msg);
    fp_error_print(&e, stderr);
    return CLI_EXIT_USAGE;
}

/* "--name VALUE" or "--name=VALUE": the value, advancing *i; NULL when missing. */
static const char *main_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (*i + 1 < argc) return argv[++*i];
    return NULL;
}

static bool main_is_opt(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

/* Returns -1 to go on, else the exit status (help, version, usage errors). */
static int main_parse(int argc, char **argv, main_args *a)
{
    bool only_pid = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (only_pid || arg[0] != '-' || arg[1] == '\0') {
            if (a->pid) return main_usage_error("one process at a time: unexpected '%s'", arg);
            char *end;
            errno = 0;
            long pid = strtol(arg, &end, 10);
            if (end == arg || *end || errno || pid <= 0 || pid > INT_MAX) {
                fp_error e;
                fp_error_set(&e, FP_E_USAGE,
                             "run fp without arguments to list the Python processes you may "
                             "attach to",
                             "'%s' is not a process id", arg);
                fp_error_print(&e, stderr);
                return CLI_EXIT_USAGE;
            }
            a->pid = (int)pid;
        } else if (strcmp(arg, "--") == 0) {
            only_pid = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            fputs(main_usage, stdout);
            return CLI_EXIT_OK;
        } else if (strcmp(arg, "-V") == 0 || strcmp(arg, "--version") == 0) {
            printf("fp %s\n", FP_VERSION);
            return CLI_EXIT_OK;
        } else if (strcmp(arg, "--debug") == 0) {
            a->debug = true;
        } else if (strcmp(arg, "--json") == 0) {
            a->json = true;
        } else if (main_is_opt(arg, "--timeout")) {
            const char *v = main_value(argc, argv, &i, "--timeout");
            if (!v) return main_usage_error("%s needs a number of seconds", "--timeout");
            char *end;
            errno = 0;
            double s = strtod(v, &end);
            if (end == v || *end || errno || !(s > 0) || s > 86400.0 * 365)
                return main_usage_error("--timeout expects a positive number of seconds, got '%s'",
                                        v);
            a->timeout_ms = (int)(s * 1000 + 0.5);
            if (a->timeout_ms < 1) a->timeout_ms = 1;
        } else if (main_is_opt(arg, "--cmd")) {
            const char *v = main_value(argc, argv, &i, "--cmd");
            if (!v) return main_usage_error("%s needs a command, e.g. --cmd stack", "--cmd");
            if (a->ncmds == MAIN_MAX_CMDS) return main_usage_error("too many %s", "--cmd");
            a->cmds[a->ncmds++] = v;
        } else {
            return main_usage_error("unknown option '%s'", arg);
        }
    }
    return -1;
}

static int main_list(const main_args *a)
{
    fp_target *targets = NULL;
    int n = fp_target_list(&targets);
    if (n < 0) {
        fp_error e;
        fp_error_set(&e, FP_E_IO, NULL, "cannot list the processes in /proc");
        cli c = {.json = a->json};
        run_report(&c, "list", &e, NULL);
        return CLI_EXIT_FAILED;
    }
    if (a->json) {
        cJSON *model = fp_model_processes(targets, n);
        run_emit_json("list", "result", model);
        cJSON_Delete(model);
        free(targets);
        return CLI_EXIT_OK;
    }
    if (n == 0) {
        printf("no Python processes you may attach to\n");
        if (geteuid() != 0) printf("  (only your own processes are listed; root sees all)\n");
    } else {
        render_processes(stdout, targets, n);
        printf("attach with: fp PID   (one command: fp PID --cmd stack; commands: fp PID, then "
               "help)\n");
    }
    free(targets);
    return CLI_EXIT_OK;
}

static void main_on_sigint(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

static void main_signals(void)
{
    /* A dead agent must not kill fp through SIGPIPE; the write reports EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    /* No SA_RESTART: Ctrl-C must interrupt the wait for an answer (poll gives EINTR). */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = main_on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

static fp_session *main_attach(const main_args *a, fp_error *e)
{
    fp_session_opts o = {.debug = a->debug};
    /* Ctrl-C waits until the attach is over: tearing an injection half-way could leave the
     * target stopped or with altered registers. The attach is bounded, so the wait is short. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    fp_session *s = fp_session_open(a->pid, &o, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return s;
}

/* Whether every --cmd is an outside command (perf): then fp loads no agent at all. A line
 * that does not parse needs the normal path, which reports it. */
static bool main_outside_only(const main_args *a)
{
    if (a->ncmds == 0) return false;
    for (int i = 0; i < a->ncmds; i++) {
        fp_cmd_parsed p;
        fp_error e;
        fp_error_clear(&e);
        /* stack -a is an outside command that still asks the agent. A line that does not
         * parse needs no agent either: it is reported, and the run stops there. */
        int parsed = fp_commands_parse_line(a->cmds[i], &p, &e);
        bool outside =
            parsed != 1 || ((p.cmd->flags & FP_CMD_OUTSIDE) && !fp_commands_needs_agent(&p));
        fp_commands_parsed_free(&p);
        if (!outside) return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    fp_log_start();
    main_args a = {.timeout_ms = -1};
    int rc = main_parse(argc, argv, &a);
    if (rc >= 0) return rc;
    main_signals();
    safe_install(a.json); /* text from the target never reaches the terminal raw */
    if (!a.pid && !a.ncmds) return main_list(&a);

    cli c = {.pid = a.pid, .json = a.json, .debug = a.debug};
    c.interactive = a.ncmds == 0 && isatty(STDIN_FILENO);
    c.timeout_set = a.timeout_ms > 0;
    c.timeout_ms = c.timeout_set ? a.timeout_ms : (c.interactive ? -1 : MAIN_CMD_TIMEOUT_MS);

    fp_error e;
    fp_error_clear(&e);
    cli_interrupted = 0;
    if (!a.pid || main_outside_only(&a)) {
        /* No process, or only outside commands: nothing is attached, no agent is loaded. */
        if (a.debug) fp_log_debug("outside commands only: no agent is loaded");
        rc = CLI_EXIT_OK;
        for (int i = 0; i < a.ncmds && rc == CLI_EXIT_OK && !c.quit; i++) {
            run_history_add(&c, a.cmds[i]);
            rc = run_line(&c, a.cmds[i]);
        }
        run_history_free(&c);
        return rc;
    }
    c.session = main_attach(&a, &e);
    if (!c.session) {
        run_report(&c, "attach", &e, NULL);
        return CLI_EXIT_USAGE;
    }
    if (a.debug)
        fp_log_debug("attached to process %d (%s)", a.pid,
                     fp_session_injected(c.session) ? "agent injected now"
                                                    : "agent was already running");
    if (cli_interrupted) {
        fprintf(stderr, "fp: interrupted\n");
        fp_session_close(c.session);
        return CLI_EXIT_FAILED;
    }

    if (c.interactive) {
        const fp_target *t = fp_session_target(c.session);
        char cmd[sizeof t->cmdline];
        printf("attached to process %d (Python %s): %s\n", t->pid,
               t->py_version[0] ? t->py_version : "?", render_oneline(cmd, sizeof cmd, t->cmdline));
        printf("help lists the commands; Ctrl-D or quit detaches and leaves\n");
        fflush(stdout);
        run_hint_workers(&c);
    }

    rc = CLI_EXIT_OK;
    if (a.ncmds) {
        for (int i = 0; i < a.ncmds && !c.quit; i++) {
            run_history_add(&c, a.cmds[i]);
            rc = run_line(&c, a.cmds[i]);
            if (rc != CLI_EXIT_OK) break;
        }
    } else {
        rc = shell_run(&c);
    }

    if (a.debug) fp_log_debug("detaching");
    fp_session_close(c.session);
    run_history_free(&c);
    return rc;
}
