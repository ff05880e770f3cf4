/* The command grammar: table, help, tokenizer, parser and completion (see fp_commands.h).
 * Validation happens here, before anything reaches the agent, so a typo costs no round trip
 * and every front end reports it the same way. */
#include "fp_commands.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * The table
 */

static const fp_cmd_opt no_opts[] = {{0}};

static const fp_cmd_opt getglobal_opts[] = {
    {"-e", "--expr", FP_OPT_STRING, "expr", "EXPR", 0, 0, 0,
     "show EXPR instead, evaluated with `target` bound to the value"},
    {"-x", "--expand", FP_OPT_INT, "depth", "N", 1, 4, 1, "depth of the value tree, 1 to 4"},
    {"-r", "--raw", FP_OPT_FLAG, "raw", NULL, 0, 0, 0, "print the full repr instead of a tree"},
    {"-v", "--verbose", FP_OPT_FLAG, "verbose", NULL, 0, 0, 0,
     "list every item of long containers (else the first 20)"},
    {0},
};

static const fp_cmd_opt stack_opts[] = {
    {"-f", "--file", FP_OPT_STRING, NULL, "FILE", 0, 0, 0,
     "write the stacks to FILE instead of the terminal"},
    {NULL, "--native", FP_OPT_FLAG, "native", NULL, 0, 0, 0,
     "interleave the C frames (native code, the interpreter's own)"},
    {"-a", "--async", FP_OPT_FLAG, "async", NULL, 0, 0, 0,
     "the asyncio tasks of every event loop instead (needs the agent and the GIL)"},
    {0},
};

static const fp_cmd_opt perf_opts[] = {
    {"-f", "--file", FP_OPT_STRING, NULL, "FILE", 0, 0, 0,
     "write the profile to FILE (default flamegraph.svg, profile.speedscope.json or "
     "profile.collapsed by format)"},
    {"-r", "--rate", FP_OPT_INT, "rate", "RATE", 1, 10000, 100, "samples per second"},
    {"-d", "--duration", FP_OPT_INT, "duration", "SECONDS", 0, 86400, 0,
     "stop after SECONDS (0: at Ctrl-C or --timeout)"},
    {NULL, "--native", FP_OPT_FLAG, "native", NULL, 0, 0, 0,
     "C frames too (stops the process briefly at every sample)"},
    {NULL, "--gil", FP_OPT_FLAG, "gil", NULL, 0, 0, 0, "only the thread holding the GIL"},
    {NULL, "--idle", FP_OPT_FLAG, "idle", NULL, 0, 0, 0,
     "also threads that are idle (not running and not holding the GIL)"},
    {NULL, "--format", FP_OPT_STRING, "format", "FORMAT", 0, 0, 0,
     "svg (flame graph, default), speedscope (JSON) or collapsed (text)"},
    {0},
};

static const fp_cmd_opt gilstat_opts[] = {
    {"-i", "--interval", FP_OPT_INT, "interval_s", "SECS", 1, 3600, 5,
     "seconds between two per-thread reports"},
    {0},
};

static const fp_cmd_opt watch_opts[] = {
    {NULL, "--expr", FP_OPT_STRING, "expr", "E", 0, 0, 0,
     "what to show per call, e.g. \"args[0], return_obj\" (default args,kwargs)"},
    {"-f", "--filter", FP_OPT_STRING, "filter", "COND", 0, 0, 0,
     "only calls for which COND is true, e.g. \"cost > 10 and args[0] == 'x'\""},
    {"-e", "--exception", FP_OPT_FLAG, "exceptions", NULL, 0, 0, 0,
     "only calls that raised (`exception` is in scope)"},
    {"-x", "--expand", FP_OPT_INT, "depth", "N", 1, 4, 1, "depth of the value trees, 1 to 4"},
    {"-n", "--limit", FP_OPT_INT, "limit", "N", 1, 1000000, 10, "stop after N calls"},
    {"-r", "--raw", FP_OPT_FLAG, "raw", NULL, 0, 0, 0, "print full reprs instead of trees"},
    {"-v", "--verbose", FP_OPT_FLAG, "verbose", NULL, 0, 0, 0,
     "list every item of long containers (else the first 20)"},
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "observe the function NAME defined inside method (one level deep)"},
    {0},
};

/* tt: the action options have no params key; commands_parse_tt builds each method's params. */
static const fp_cmd_opt tt_opts[] = {
    {"-t", "--time-tunnel", FP_OPT_FLAG, "record", NULL, 0, 0, 0,
     "record calls of module [class] method"},
    {"-l", "--list", FP_OPT_FLAG, "list", NULL, 0, 0, 0, "list the records"},
    {"-i", "--index", FP_OPT_STRING, "index", "IDX", 0, 0, 0, "show record IDX in detail"},
    {"-p", "--play", FP_OPT_FLAG, "play", NULL, 0, 0, 0,
     "with -i: call the function again with the recorded target and arguments"},
    {"-d", "--delete", FP_OPT_STRING, "delete", "IDX", 0, 0, 0, "delete record IDX"},
    {"-da", "--delete-all", FP_OPT_FLAG, "delete_all", NULL, 0, 0, 0, "delete every record"},
    {"-m", "--method", FP_OPT_STRING, "method_filter", "M", 0, 0, 0,
     "with -l: only records of module.class.method (class None for functions)"},
    {"-f", "--filter", FP_OPT_STRING, "filter", "COND", 0, 0, 0,
     "with -t: record only calls for which COND is true"},
    {"-n", "--limit", FP_OPT_INT, "limit", "N", 1, 10000, 50, "with -t: stop after N records"},
    {NULL, "--copy", FP_OPT_FLAG, "copy", NULL, 0, 0, 0,
     "with -t: deep-copy target, arguments and result when recorded (default: by reference)"},
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "with -t: a function nested one level inside method"},
    {"-x", "--expand", FP_OPT_INT, "depth", "N", 1, 4, 1, "with -i: depth of the value trees"},
    {"-r", "--raw", FP_OPT_FLAG, "raw", NULL, 0, 0, 0, "with -i: full reprs instead of trees"},
    {"-v", "--verbose", FP_OPT_FLAG, "verbose", NULL, 0, 0, 0,
     "with -i: every item of long containers"},
    {0},
};

/* trace: -i and -et take decimals (0.1 ms); commands_parse_trace turns them into numbers. The
 * long names are the seed's. */
static const fp_cmd_opt monitor_opts[] = {
    {"-c", "--cycle", FP_OPT_INT, "interval_s", "SECONDS", 1, 3600, 5,
     "seconds between two reports"},
    {"-n", "--limit", FP_OPT_INT, "limit", "N", 0, 1000000, 0,
     "stop after N reports (0: until stopped)"},
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "monitor the function NAME defined inside method (one level deep)"},
    {0},
};

/* reload: --source FILE is read here (commands_parse_reload), its text sent as params.source. */
static const fp_cmd_opt reload_opts[] = {
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "reload the function NAME defined inside method (one level deep)"},
    {NULL, "--source", FP_OPT_STRING, "source", "FILE", 0, 0, 0,
     "take the new source from FILE (the whole module's text) instead of the function's file"},
    {"-v", "--verbose", FP_OPT_FLAG, "verbose", NULL, 0, 0, 0, "also print the new source"},
    {NULL, "--dry-run", FP_OPT_FLAG, "dry_run", NULL, 0, 0, 0,
     "check the new source and show the diff, change nothing"},
    {NULL, "--undo", FP_OPT_FLAG, "undo", NULL, 0, 0, 0,
     "put back the version the last reload replaced (repeat to go further back)"},
    {0},
};

/* mem: the subcommand chooses the method; commands_parse_mem keeps each method's params. */
static const fp_cmd_opt mem_opts[] = {
    {"-i", "--interval", FP_OPT_STRING, "interval_s", "S", 0, 0, 0,
     "mem diff: seconds between the two snapshots"},
    {NULL, "--limit", FP_OPT_INT, "limit", "N", 1, 100000, 20, "rows to show"},
    {NULL, "--order", FP_OPT_STRING, "order", "ORDER", 0, 0, 0,
     "descending (largest first, the default) or ascending"},
    {NULL, "--traces", FP_OPT_FLAG, "traces", NULL, 0, 0, 0,
     "mem diff: where memory was allocated (tracemalloc), by line, instead of types"},
    {NULL, "--traceback", FP_OPT_INT, "traceback", "N", 1, 100, 5,
     "mem top, mem diff --traces: frames of the traceback shown per line"},
    {NULL, "--budget", FP_OPT_STRING, "budget_s", "S", 0, 0, 0,
     "summary, diff: time allowed per snapshot (default 5 s; beyond it, a partial result)"},
    {NULL, "--all", FP_OPT_FLAG, "untracked", NULL, 0, 0, 0,
     "summary, diff: also objects the garbage collector does not track (str, int, bytes...)"},
    {0},
};

static const fp_cmd_opt vmtool_opts[] = {
    {"-a", "--action", FP_OPT_STRING, "action", "ACTION", 0, 0, 0, "getInstances or forceGc"},
    {"-c", "--class", FP_OPT_FLAG, "class_given", NULL, 0, 0, 0,
     "getInstances: the class follows, as module class"},
    {"-e", "--expr", FP_OPT_STRING, "expr", "EXPR", 0, 0, 0,
     "show EXPR instead, evaluated with `instances` bound to the list"},
    {"-x", "--expand", FP_OPT_INT, "depth", "N", 1, 4, 1, "depth of the value trees, 1 to 4"},
    {"-n", "--limit", FP_OPT_INT, "limit", "N", -1, 1000000, 10,
     "instances to show (and bind to `instances`); -1: all"},
    {"-r", "--raw", FP_OPT_FLAG, "raw", NULL, 0, 0, 0, "print full reprs instead of trees"},
    {"-v", "--verbose", FP_OPT_FLAG, "verbose", NULL, 0, 0, 0,
     "list every item of long containers (else the first 20)"},
    {NULL, "--subclasses", FP_OPT_FLAG, "subclasses", NULL, 0, 0, 0,
     "also instances of the class's subclasses (each says its class)"},
    {0},
};

/* torch: the subcommand (profile, memory -s, memory -r) chooses the method and which of these
 * apply; commands_parse_torch checks and builds each method's params. */
static const fp_cmd_opt torch_opts[] = {
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "the function NAME defined inside method (one level deep)"},
    {"-f", "--file", FP_OPT_STRING, "file", "FILE", 0, 0, 0,
     "where the process writes the output, relative to fp's working directory (default "
     "trace.json; snapshot.pickle for memory)"},
    {"-n", "--limit", FP_OPT_INT, "limit", "N", 1, 100, 1,
     "profile: the next N calls, one trace each (FILE-1.json, FILE-2.json...)"},
    {"-s", "--snapshot", FP_OPT_FLAG, "snapshot", NULL, 0, 0, 0,
     "memory: the CUDA caching allocator's snapshot, now"},
    {"-r", "--record", FP_OPT_FLAG, "record", NULL, 0, 0, 0,
     "memory: the allocator's history around the next call of module [class] method"},
    {NULL, "--cpu", FP_OPT_FLAG, "cpu", NULL, 0, 0, 0,
     "profile: CPU activities only, even in a process that uses CUDA"},
    {NULL, "--cuda", FP_OPT_FLAG, "cuda", NULL, 0, 0, 0,
     "profile: CUDA activities too, refused when the process has not initialised CUDA"},
    {NULL, "--stack", FP_OPT_FLAG, "with_stack", NULL, 0, 0, 0,
     "profile: record the Python stack of every operator (more overhead)"},
    {NULL, "--top", FP_OPT_INT, "top", "N", 1, 1000, 10,
     "how many operators (or allocations) the summary lists"},
    {NULL, "--max-entries", FP_OPT_INT, "max_entries", "N", 1, 100000000, 100000,
     "memory -r: the most allocator events kept (the oldest are overwritten)"},
    {0},
};

static const fp_cmd_opt trace_opts[] = {
    {"-i", "--interval", FP_OPT_STRING, "interval", "MS", 0, 0, 0,
     "hide inner calls that took less than MS milliseconds in all (default 0.1; 0: all)"},
    {"-d", "--depth", FP_OPT_INT, "depth", "N", 0, 100, 0,
     "show N levels of calls below the traced one, however cheap (-i is then 0); 0: no limit"},
    {"-et", "--entrance_time", FP_OPT_STRING, "min_cost", "MS", 0, 0, 0,
     "only invocations that took more than MS milliseconds"},
    {"-f", "--filter_expr", FP_OPT_STRING, "filter", "COND", 0, 0, 0,
     "only calls for which COND is true; target, args and kwargs are in scope"},
    {"-n", "--limits", FP_OPT_INT, "limit", "N", 1, 1000000, 10, "stop after N invocations"},
    {"-nm", "--nested-method", FP_OPT_STRING, "nested", "NAME", 0, 0, 0,
     "trace the function NAME defined inside method (one level deep)"},
    {NULL, "--recorder", FP_OPT_STRING, "recorder", "KIND", 0, 0, 0,
     "native (the agent library's, default) or python (its pure-Python twin)"},
    {0},
};

/* The commands' own parse steps (see fp_cmd_parse_fn), after the table. */
static int commands_parse_help(const fp_command *c, const char **pos, int npos, cJSON **params,
                               fp_cmd_parsed *out, fp_error *err);
static int commands_parse_module(const fp_command *c, const char **pos, int npos, cJSON **params,
                                 fp_cmd_parsed *out, fp_error *err);
static int commands_parse_getglobal(const fp_command *c, const char **pos, int npos, cJSON **params,
                                    fp_cmd_parsed *out, fp_error *err);
static int commands_parse_outside(const fp_command *c, const char **pos, int npos, cJSON **params,
                                  fp_cmd_parsed *out, fp_error *err);
static int commands_parse_gilstat(const fp_command *c, const char **pos, int npos, cJSON **params,
                                  fp_cmd_parsed *out, fp_error *err);
static int commands_parse_watch(const fp_command *c, const char **pos, int npos, cJSON **params,
                                fp_cmd_parsed *out, fp_error *err);
static int commands_parse_tt(const fp_command *c, const char **pos, int npos, cJSON **params,
                             fp_cmd_parsed *out, fp_error *err);
static int commands_parse_trace(const fp_command *c, const char **pos, int npos, cJSON **params,
                                fp_cmd_parsed *out, fp_error *err);
static int commands_parse_monitor(const fp_command *c, const char **pos, int npos, cJSON **params,
                                  fp_cmd_parsed *out, fp_error *err);

static int commands_parse_torch(const fp_command *c, const char **pos, int npos, cJSON **params,
                                fp_cmd_parsed *out, fp_error *err);
static int commands_parse_reload(const fp_command *c, const char **pos, int npos, cJSON **params,
                                 fp_cmd_parsed *out, fp_error *err);
static int commands_parse_mem(const fp_command *c, const char **pos, int npos, cJSON **params,
                              fp_cmd_parsed *out, fp_error *err);
static int commands_parse_vmtool(const fp_command *c, const char **pos, int npos, cJSON **params,
                                 fp_cmd_parsed *out, fp_error *err);

#define NAMES_METHOD "2 or 3 names (module [class] method)"

static const fp_command commands[] = {
    {FP_CMD_HELP, "help", NULL, "help [command]",
     "list the commands, or show one command's options",
     "Without a command, lists every command with one line about it.\n"
     "With one, shows its usage, what it does and its options with their defaults.",
     no_opts, 0, 1, 0, commands_parse_help, NULL},
    {FP_CMD_STATUS, "status", "status", "status",
     "the agent's state: Python version, clients, uptime, GIL wait",
     "Answered by the agent without the GIL, so it works while another thread holds it:\n"
     "'GIL wait' says how long this session's requests have been waiting for it.",
     no_opts, 0, 0, 0, NULL, NULL},
    {FP_CMD_MODULE, "module", "module", "module FILEPATH",
     "which module name a source file is loaded as",
     "FILEPATH is absolute, or relative to the target's working directory.\n"
     "Example:\n"
     "  module /srv/app/models.py",
     no_opts, 1, 1, 0, commands_parse_module, "a FILEPATH"},
    {FP_CMD_GETGLOBAL, "getglobal", "getglobal",
     "getglobal module [class] field [-e EXPR] [-x N] [-r] [-v]",
     "a module global or a class attribute, as a value tree",
     "module is the import path as the program imported it (__main__ for the script that\n"
     "was run); class only when field is a class attribute.\n"
     "Examples:\n"
     "  getglobal __main__ config\n"
     "  getglobal app.models User registry -x 2\n"
     "  getglobal __main__ cache -e \"len(target)\"",
     getglobal_opts, 2, 3, 0, commands_parse_getglobal, "2 or 3 names (module [class] field)"},
    {FP_CMD_STACK, "stack", "stack", "stack [PID] [-f FILE] [--native] [-a|--async]",
     "the stack of every thread, read from outside the process",
     "Read from outside the process, without the agent and without the GIL: it works\n"
     "while a thread holds the GIL forever or threads are deadlocked. The threads are\n"
     "stopped only while their frames are walked (a fraction of a millisecond for a few\n"
     "threads). Frames are listed like a traceback, the innermost (current) frame last;\n"
     "the thread holding the GIL is marked. PID reads another process (default: the one\n"
     "fp is attached to).\n"
     "With -a, the asyncio tasks of every event loop: name, state, coroutine and the\n"
     "chain of awaits; these are Python objects, so -a asks the agent and needs the GIL.\n"
     "Examples:\n"
     "  stack\n"
     "  stack --native -f /tmp/stacks.txt\n"
     "  stack -a",
     stack_opts, 0, 1, FP_CMD_OUTSIDE, commands_parse_outside, NULL},
    {FP_CMD_PERF, "perf", NULL,
     "perf [PID] [-f FILE] [-r RATE] [-d SECONDS] [--native] [--gil] [--idle] [--format F]",
     "a sampling profile from outside the process: flame graph, hot functions and lines",
     "Reads every thread's Python stack RATE times a second from outside the process: no\n"
     "agent is loaded, the process is not stopped (but with --native), and it works while a\n"
     "thread holds the GIL. Runs until -d, --timeout or Ctrl-C (or the process's exit), then\n"
     "writes the profile and prints the top functions by self and total samples and the\n"
     "hottest lines. PID defaults to the attached process. Idle threads (not running and not\n"
     "holding the GIL, e.g. in time.sleep or waiting for a lock) are left out unless --idle.\n"
     "Examples:\n"
     "  perf -d 10                          flamegraph.svg, 100 Hz, 10 s\n"
     "  perf -r 1000 --format speedscope    until Ctrl-C\n"
     "  perf 4242 --native -d 5 -f native.svg",
     perf_opts, 0, 1, FP_CMD_OUTSIDE, commands_parse_outside, NULL},
    {FP_CMD_GILSTAT, "gilstat", NULL, "gilstat on [TAKE_MS HOLD_MS] [-i SECS] | gilstat off",
     "GIL statistics per thread from outside the process: waits, holds, releases",
     "Counts and times every acquisition (take) and release (drop) of the GIL by every thread,\n"
     "exactly, with uprobes on the interpreter's take_gil/drop_gil: no agent is loaded and\n"
     "the process is never stopped. Every SECS seconds (default 5) a table per thread: takecnt,\n"
     "hold_all, holdavg, take_all (time spent waiting), takeavg, dropcnt, drop_all (time\n"
     "inside drop_gil), dropavg. With TAKE_MS and HOLD_MS, also a report with the thread's\n"
     "stack each time one waited for the GIL longer than TAKE_MS or held it longer than\n"
     "HOLD_MS (0 turns one off). In the shell it runs in the background until gilstat off;\n"
     "with --cmd until --timeout or Ctrl-C. Needs root (or CAP_PERFMON and CAP_BPF).\n"
     "Examples:\n"
     "  gilstat on\n"
     "  gilstat on 50 20          report waits over 50 ms and holds over 20 ms\n"
     "  gilstat off",
     gilstat_opts, 1, 3, FP_CMD_OUTSIDE | FP_CMD_STREAMING, commands_parse_gilstat, "on or off"},
    {FP_CMD_CONSOLE, "console", NULL, "console", "an interactive Python console inside the process",
     "Each console has its own namespace; print() and expression values come back to you,\n"
     "never to the process's own stdout. Ctrl-D or exit() leaves. When stdin is not a\n"
     "terminal, its lines are run one by one without prompts.",
     no_opts, 0, 0, FP_CMD_TERMINAL, NULL, NULL},
    {FP_CMD_HISTORY, "history", NULL, "history", "the commands entered so far",
     "Lists the commands of this session, oldest first.", no_opts, 0, 0, FP_CMD_TERMINAL, NULL,
     NULL},
    {FP_CMD_QUIT, "quit", NULL, "quit", "detach and leave (also: exit, Ctrl-D)",
     "Removes everything this session installed in the process, then leaves.\n"
     "The agent stays loaded and idle, ready for the next fp.",
     no_opts, 0, 0, FP_CMD_TERMINAL, NULL, NULL},
    {FP_CMD_SHUTDOWN, "shutdown", "shutdown", "shutdown",
     "stop the agent in the process for every client, then leave",
     "Detaches every client, unloads the agent's Python package and removes its socket.\n"
     "The library stays mapped; the next fp PID starts the agent again.",
     no_opts, 0, 0, 0, NULL, NULL},
    {FP_CMD_WATCH, "watch", "watch.start",
     "watch module [class] method [--expr E] [-f COND] [-e] [-x N] [-n N] [-r] [-v] [-nm NAME]",
     "the arguments, result and cost of each call of a function, as it happens",
     "Every caller is observed (any thread, `from m import f` references, bound methods,\n"
     "callbacks); the function keeps its identity and behaviour, and is restored exactly at\n"
     "the -n limit, Ctrl-C, --timeout, quit or disconnect. E and COND are Python expressions\n"
     "with target (the instance, or None), return_obj, cost (ms), args, kwargs, params and\n"
     "exception (for calls that raised) in scope, plus the function's module globals.\n"
     "fp sees each call bound to the parameters, not how it was spelt, so that a COND holds\n"
     "whichever way the caller passed an argument:\n"
     "  args    every positional parameter's value in order, then the extra *args\n"
     "  kwargs  every parameter that can be passed by keyword, then the extra **kwargs; a\n"
     "          parameter holding its default is left out, and so are the positional ones\n"
     "          when extra *args were passed. For total(self, prices, coupon=None), both\n"
     "          total(p, coupon=\"HALF\") and total(p, \"HALF\") have kwargs.get(\"coupon\") ==\n"
     "          \"HALF\", and args[0] is p.\n"
     "  params  every parameter by name (defaults, *args and **kwargs included)\n"
     "A COND that uses neither return_obj, cost nor exception is checked when the call starts.\n"
     "A call whose COND raises is not shown and does not count toward -n; after 3 identical\n"
     "failures in a row the watch stops with the error. Decorated functions (functools.wraps)\n"
     "are observed through __wrapped__; properties via their getter.\n"
     "Examples:\n"
     "  watch __main__ handle_request\n"
     "  watch app.shop Cart add --expr \"args[0], return_obj\" -f \"cost > 5\" -n 3\n"
     "  watch app.jobs run -e --expr \"exception\" -x 2\n"
     "  watch app.views Home get -nm render_row",
     watch_opts, 2, 3, FP_CMD_STREAMING, commands_parse_watch, NAMES_METHOD},
    {FP_CMD_TT, "tt", "tt.list",
     "tt -t module [class] method [-f COND] [-n N] [--copy] | -l [-m M] | -i IDX [-p] [-x N] [-r] "
     "[-v] | -d IDX | -da",
     "time tunnel: record calls, look at them later, replay one",
     "tt -t records calls (indices from 1000) while it runs, until -n, Ctrl-C or --timeout;\n"
     "the records stay in the process (for every client) until deleted. Arguments, target and\n"
     "result are kept BY REFERENCE: a later change to those objects shows in the record;\n"
     "--copy deep-copies them when recorded (what cannot be copied stays a reference, noted).\n"
     "-i IDX -p calls the function again, in the agent's thread, with the recorded target and\n"
     "arguments; the replay is a new record.\n"
     "Examples:\n"
     "  tt -t app.shop Cart checkout -n 20 -f \"return_obj['success'] == False\"\n"
     "  tt -l -m app.shop.Cart.checkout\n"
     "  tt -i 1003 -x 3\n"
     "  tt -i 1003 -p\n"
     "  tt -da",
     tt_opts, 0, 3, 0, commands_parse_tt, NULL},
    {FP_CMD_TRACE, "trace", "trace.start",
     "trace module [class] method [-i MS] [-d N] [-et MS] [-f COND] [-n N] [-nm NAME]",
     "the call tree of each invocation of a function, with the cost of every inner call",
     "For each invocation (on any thread), every call it makes, Python functions and the C\n"
     "functions they call (time.sleep, sorted, a driver's execute), as a tree: calls of the\n"
     "same function from the same place are merged (count, total time), each with its share\n"
     "of the invocation and, for Python code, file:line of its definition. Calls that took\n"
     "less than -i in all are summed up under their caller. The profile hook is set only on\n"
     "the thread running the invocation and only while it runs; a thread that already has a\n"
     "profiler is left alone (that call is reported as skipped). Generators and coroutines\n"
     "are one invocation from start to end, their suspensions shown as <suspended>.\n"
     "Examples:\n"
     "  trace __main__ handle_request\n"
     "  trace app.shop Cart checkout -i 1 -n 3\n"
     "  trace app.shop Cart checkout -et 30 -f \"args[0]['user'] == 'bob'\"\n"
     "  trace app.views Home get -d 2",
     trace_opts, 2, 3, FP_CMD_STREAMING, commands_parse_trace, NAMES_METHOD},
    {FP_CMD_MONITOR, "monitor", "monitor.start",
     "monitor module [class] method [-c SECONDS] [-n N] [-nm NAME]",
     "a function's calls, rate, errors and latency per interval, counted inside the process",
     "Counts every call of the function (any thread) inside the process, with a latency\n"
     "histogram of fixed buckets, and prints one line per interval: calls and rate, errors,\n"
     "mean, p50, p95 and max cost of that interval (quantiles to about 10%). Cheaper than\n"
     "watch, which reports each call. Runs until -n reports, Ctrl-C or --timeout.\n"
     "Examples:\n"
     "  monitor __main__ handle_request\n"
     "  monitor app.shop Cart checkout -c 10 -n 6",
     monitor_opts, 2, 3, FP_CMD_STREAMING, commands_parse_monitor, NAMES_METHOD},
    {FP_CMD_TORCH, "torch", "torch.profile.start",
     "torch profile module [class] method [-nm NAME] [-f FILE] [-n N] [--cpu|--cuda] [--stack] | "
     "torch memory -s [-f FILE] | torch memory -r module [class] method [-nm NAME] [-f FILE]",
     "PyTorch's profiler around the next call of a function; CUDA memory snapshots",
     "profile runs torch's profiler (CPU activities, and CUDA ones when the process has\n"
     "initialised CUDA) around the next call of the function, on the thread that makes it;\n"
     "it writes a Chrome trace (open it in Perfetto or chrome://tracing) and prints the\n"
     "operators by self CPU (and CUDA) time, the call's cost and the memory it allocated.\n"
     "memory -s writes the CUDA caching allocator's snapshot (for pytorch.org/memory_viz);\n"
     "memory -r records the allocator's history around the next call, then snapshots it.\n"
     "The files are written by the process itself (its user, its view of the file system);\n"
     "a relative FILE is relative to fp's working directory. torch is never imported into\n"
     "a process that did not import it, and a profiler the program runs is never taken over.\n"
     "Examples:\n"
     "  torch profile app.model Net forward\n"
     "  torch profile __main__ train_step -n 3 -f /tmp/step.json\n"
     "  torch memory -s -f /tmp/now.pickle\n"
     "  torch memory -r app.model Net forward",
     torch_opts, 1, 4, 0, commands_parse_torch, "profile or memory"},
    {FP_CMD_RELOAD, "reload", "reload",
     "reload module [class] method [-nm NAME] [--source FILE] [-v] [--dry-run] | reload --undo "
     "module [class] method [-nm NAME]",
     "replace a function's code in the running process with its edited source",
     "Compiles the module's current source (the function's file, or --source FILE) and\n"
     "gives the function the new code of the same name: the function object stays, so every\n"
     "reference to it (imports elsewhere, bound methods, callbacks, a running watch) runs the\n"
     "new code from its next call on; calls already running finish with the old code.\n"
     "Defaults are evaluated again; decorators are not applied again. Nothing changes when\n"
     "the swap is not safe (a syntax error, other closure variables, a generator that would\n"
     "become a function...): the error says why and where. Prints a diff, what else changed\n"
     "and what the swap does not reach. --undo puts the previous version back exactly.\n"
     "Examples:\n"
     "  reload app.shop Cart total\n"
     "  reload app.shop Cart total --dry-run\n"
     "  reload __main__ handler --source /tmp/handler_fixed.py -v\n"
     "  reload app.views render -nm row\n"
     "  reload --undo app.shop Cart total",
     reload_opts, 2, 3, 0, commands_parse_reload, NAMES_METHOD},
    {FP_CMD_MEM, "mem", "mem.summary",
     "mem summary [--limit N] [--order O] [--all] | mem diff --interval S [--limit N] [--order O] "
     "[--traces] | mem top [--limit N] [--traceback N] | mem off",
     "memory: live objects by type, their change over time, where memory is allocated",
     "mem summary: the live objects by type (count, total shallow size: each object itself),\n"
     "with the process's RSS and the interpreter's own figures. It walks the objects the\n"
     "garbage collector tracks within --budget (5 s; beyond it, an even sample, said so);\n"
     "--all adds the objects it does not track (str, int, float, bytes...).\n"
     "mem diff --interval S: two summaries S seconds apart and the change per type, largest\n"
     "growth first; with --traces, where memory was allocated (tracemalloc), by line.\n"
     "mem top: where the memory allocated now was allocated (tracemalloc), by line, with a\n"
     "short traceback. fp starts tracemalloc when needed (what was allocated before is not\n"
     "seen) and stops it at mem off, quit or shutdown; one the program started stays.\n"
     "Examples:\n"
     "  mem summary --limit 10\n"
     "  mem diff --interval 30\n"
     "  mem top --traceback 8\n"
     "  mem diff --interval 10 --traces\n"
     "  mem off",
     mem_opts, 0, 1, 0, commands_parse_mem, "a subcommand (summary, diff, top or off)"},
    {FP_CMD_VMTOOL, "vmtool", "vmtool.instances",
     "vmtool -a getInstances -c module class [-e EXPR] [-x N] [-n N] [-r] [-v] [--subclasses] | "
     "vmtool -a forceGc",
     "live instances of a class; a forced garbage collection",
     "-a getInstances: the live instances of the class (exactly that class, or with\n"
     "--subclasses its subclasses too); the total count is always given, -n of them shown\n"
     "(-1: all). EXPR is evaluated with `instances` bound to the list of those shown.\n"
     "-a forceGc: a full collection, generation by generation: what each collected, what\n"
     "could not be collected, and how long it took.\n"
     "Examples:\n"
     "  vmtool -a getInstances -c app.models User -n 3 -x 2\n"
     "  vmtool -a getInstances -c app.models User -e \"len(instances)\" -n -1\n"
     "  vmtool -a getInstances -c app.models Base --subclasses\n"
     "  vmtool -a forceGc",
     vmtool_opts, 0, 2, 0, commands_parse_vmtool, NULL},
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

const fp_command *fp_commands_table(size_t *count)
{
    if (count) *count = N_COMMANDS;
    return commands;
}

const fp_command *fp_commands_find(const char *name)
{
    if (!name) return NULL;
    if (strcmp(name, "exit") == 0) name = "quit";
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

/* Optimal string alignment distance: edits plus swaps of adjacent letters ("stakc"). */
static size_t commands_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return SIZE_MAX;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *fp_commands_suggest(const char *name)
{
    if (!name || !name[0]) return NULL;
    size_t len = strlen(name);
    /* Short words are close to everything: allow one edit for them, two for longer ones. */
    size_t limit = len <= 4 ? 1 : 2;
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    const char *names[N_COMMANDS + 1];
    for (size_t i = 0; i < N_COMMANDS; i++)
        names[i] = commands[i].name;
    names[N_COMMANDS] = "exit";
    for (size_t i = 0; i <= N_COMMANDS; i++) {
        if (len >= 2 && strncmp(names[i], name, len) == 0) return names[i];
        size_t d = commands_distance(name, names[i]);
        if (d <= limit && d < best_d) {
            best = names[i];
            best_d = d;
        }
    }
    return best;
}

/* ---------------------------------------------------------------------------------------------
 * Tokenizer
 */

int fp_commands_tokenize(const char *line, int *argc, char ***argv, fp_error *err)
{
    size_t cap = 8;
    int n = 0;
    char **v = calloc(cap, sizeof *v);
    char *word = malloc(strlen(line) + 1);
    if (!v || !word) {
        free(v);
        free(word);
        return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    }
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p) break;
        size_t w = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            if (*p == '\'') {
                const char *end = strchr(p + 1, '\'');
                if (!end) {
                    free(word);
                    fp_commands_free_argv(n, v);
                    return fp_error_set(err, FP_E_USAGE, "close it with another ' or drop it",
                                        "unterminated single quote in: %s", line);
                }
                memcpy(word + w, p + 1, (size_t)(end - p - 1));
                w += (size_t)(end - p - 1);
                p = end + 1;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    /* Inside double quotes only \" and \\ are escapes, as in a shell, so
                     * Python's own escapes ("\n" in an expression) pass through untouched. */
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                    word[w++] = *p++;
                }
                if (!*p) {
                    free(word);
                    fp_commands_free_argv(n, v);
                    return fp_error_set(err, FP_E_USAGE, "close it with another \" or drop it",
                                        "unterminated double quote in: %s", line);
                }
                p++;
            } else if (*p == '\\' && p[1]) {
                word[w++] = p[1];
                p += 2;
            } else {
                word[w++] = *p++;
            }
        }
        if ((size_t)n + 2 > cap) {
            cap *= 2;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(word);
                fp_commands_free_argv(n, v);
                return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
            }
            v = nv;
        }
        v[n] = strndup(word, w);
        if (!v[n]) {
            free(word);
            fp_commands_free_argv(n, v);
            return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        }
        v[++n] = NULL;
    }
    free(word);
    *argc = n;
    *argv = v;
    return 0;
}

void fp_commands_free_argv(int argc, char **argv)
{
    if (!argv) return;
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    free(argv);
}

/* ---------------------------------------------------------------------------------------------
 * Parser
 */

static int commands_usage_error(const fp_command *c, fp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int commands_usage_error(const fp_command *c, fp_error *err, const char *fmt, ...)
{
    char msg[512], hint[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(hint, sizeof hint, "usage: %s\n(help %s lists the options)", c->usage, c->name);
    return fp_error_set(err, FP_E_USAGE, hint, "%s", msg);
}

/* "-x/--expand", for messages. */
static void commands_opt_name(const fp_cmd_opt *o, char *buf, size_t size)
{
    if (o->short_name && o->long_name)
        snprintf(buf, size, "%s/%s", o->short_name, o->long_name);
    else
        snprintf(buf, size, "%s", o->short_name ? o->short_name : o->long_name);
}

static const fp_cmd_opt *commands_find_opt(const fp_command *c, const char *name, size_t len)
{
    for (const fp_cmd_opt *o = c->opts; o->short_name || o->long_name; o++) {
        if (o->short_name && strlen(o->short_name) == len && strncmp(o->short_name, name, len) == 0)
            return o;
        if (o->long_name && strlen(o->long_name) == len && strncmp(o->long_name, name, len) == 0)
            return o;
    }
    return NULL;
}

static int commands_parse_int(const fp_command *c, const fp_cmd_opt *o, const char *text, int *out,
                              fp_error *err)
{
    char name[64];
    commands_opt_name(o, name, sizeof name);
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno == ERANGE) {
        char hint[512];
        snprintf(hint, sizeof hint, "usage: %s", c->usage);
        return fp_error_set(err, FP_E_USAGE, hint,
                            "option %s expects a whole number from %d to %d, got '%s'", name,
                            o->min, o->max, text);
    }
    if (v < o->min || v > o->max) {
        char hint[512];
        snprintf(hint, sizeof hint, "usage: %s", c->usage);
        return fp_error_set(err, FP_E_USAGE, hint, "option %s: %ld is out of range (%d to %d)",
                            name, v, o->min, o->max);
    }
    *out = (int)v;
    return 0;
}

/* Options set their params member (or, for client-side ones, out->file); positionals are
 * collected in pos. */
static int commands_parse_args(const fp_command *c, int argc, char **argv, cJSON *params,
                               fp_cmd_parsed *out, const char **pos, int *npos, fp_error *err)
{
    bool only_positional = false;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *tok = argv[i];
        if (only_positional || tok[0] != '-' || tok[1] == '\0') {
            if (*npos >= c->max_args) {
                if (c->max_args == 0)
                    return commands_usage_error(c, err, "%s takes no arguments, got '%s'", c->name,
                                                tok);
                return commands_usage_error(c, err, "too many arguments for %s: '%s'", c->name,
                                            tok);
            }
            pos[(*npos)++] = tok;
            continue;
        }
        if (strcmp(tok, "--") == 0) {
            only_positional = true;
            continue;
        }
        const char *eq = strncmp(tok, "--", 2) == 0 ? strchr(tok, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - tok) : strlen(tok);
        const fp_cmd_opt *o = commands_find_opt(c, tok, nlen);
        if (!o) return commands_usage_error(c, err, "unknown option '%s' for %s", tok, c->name);
        char name[64];
        commands_opt_name(o, name, sizeof name);
        if (o->kind == FP_OPT_FLAG) {
            if (eq) return commands_usage_error(c, err, "option %s takes no value", name);
            if (o->key) cJSON_ReplaceItemInObjectCaseSensitive(params, o->key, cJSON_CreateTrue());
            continue;
        }
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!val)
            return commands_usage_error(c, err, "option %s needs a value (%s)", name, o->metavar);
        if (o->kind == FP_OPT_INT) {
            int v = 0;
            if (commands_parse_int(c, o, val, &v, err) != 0) return -1;
            if (o->key)
                cJSON_ReplaceItemInObjectCaseSensitive(params, o->key, cJSON_CreateNumber(v));
        } else if (o->key) {
            cJSON_ReplaceItemInObjectCaseSensitive(params, o->key, cJSON_CreateString(val));
        } else {
            /* The one client-side option with a value so far: stack -f FILE. */
            free(out->file);
            out->file = strdup(val);
        }
    }
    if (*npos < c->min_args) {
        if (c->min_args > 1)
            return commands_usage_error(c, err, "%s needs %s, got %d", c->name,
                                        c->needs ? c->needs : "more arguments", *npos);
        return commands_usage_error(c, err, "%s needs %s", c->name,
                                    c->needs ? c->needs : "more arguments");
    }
    return 0;
}

/* Params with every member at its default, so the agent sees one complete shape. */
static cJSON *commands_default_params(const fp_command *c)
{
    cJSON *p = cJSON_CreateObject();
    if (!p) return NULL;
    if (c->id == FP_CMD_GETGLOBAL) {
        cJSON_AddNullToObject(p, "module");
        cJSON_AddNullToObject(p, "class");
        cJSON_AddNullToObject(p, "field");
    }
    if (c->id == FP_CMD_PERF || c->id == FP_CMD_STACK) cJSON_AddNullToObject(p, "pid");
    for (const fp_cmd_opt *o = c->opts; o->short_name || o->long_name; o++) {
        if (!o->key) continue;
        if (o->kind == FP_OPT_FLAG)
            cJSON_AddFalseToObject(p, o->key);
        else if (o->kind == FP_OPT_INT)
            cJSON_AddNumberToObject(p, o->key, o->def);
        else
            cJSON_AddNullToObject(p, o->key);
    }
    return p;
}

/* module [class] method: the names into params. */
static void commands_names(const char **pos, int npos, cJSON *params)
{
    cJSON_AddStringToObject(params, "module", pos[0]);
    if (npos == 3)
        cJSON_AddStringToObject(params, "class", pos[1]);
    else
        cJSON_AddNullToObject(params, "class");
    cJSON_AddStringToObject(params, "method", pos[npos - 1]);
}

static bool commands_flag(const cJSON *params, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, key));
}

static const char *commands_string(const cJSON *params, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int commands_tt_index(const fp_command *c, const char *opt, const char *text, cJSON *out,
                             fp_error *err)
{
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < 0 || v > INT_MAX)
        return commands_usage_error(
            c, err, "option %s expects a record index (e.g. 1000), got '%s'", opt, text);
    cJSON_AddNumberToObject(out, "index", (double)v);
    return 0;
}

/* A decimal option of trace (-i, -et): its text into a number, at least 0. */
static int commands_trace_ms(const fp_command *c, cJSON *params, const char *key, const char *opt,
                             fp_error *err)
{
    const char *text = commands_string(params, key);
    if (!text) return 0;
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !(v >= 0) || v > 1e9)
        return commands_usage_error(c, err,
                                    "option %s expects milliseconds (a number like 0.5 or 20), got "
                                    "'%s'",
                                    opt, text);
    cJSON_ReplaceItemInObjectCaseSensitive(params, key, cJSON_CreateNumber(v));
    return 0;
}

/* trace module [class] method: the names, and -i/-et as numbers. */
static int commands_parse_trace(const fp_command *c, const char **pos, int npos, cJSON **pp,
                                fp_cmd_parsed *out, fp_error *err)
{
    (void)out;
    cJSON *params = *pp;
    commands_names(pos, npos, params);
    if (commands_trace_ms(c, params, "interval", "-i/--interval", err) != 0) return -1;
    return commands_trace_ms(c, params, "min_cost", "-et/--entrance_time", err);
}

/* monitor module [class] method: one function, in monitor.start's list. */
static int commands_parse_monitor(const fp_command *c, const char **pos, int npos, cJSON **params,
                                  fp_cmd_parsed *out, fp_error *err)
{
    (void)c, (void)out, (void)err;
    cJSON *fn = cJSON_CreateObject();
    commands_names(pos, npos, fn);
    cJSON *nested = cJSON_DetachItemFromObjectCaseSensitive(*params, "nested");
    cJSON_AddItemToObject(fn, "nested", nested ? nested : cJSON_CreateNull());
    cJSON *list = cJSON_AddArrayToObject(*params, "functions");
    cJSON_AddItemToArray(list, fn);
    return 0;
}

/* ---- reload, mem, vmtool */

static bool commands_utf8(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char ch = (unsigned char)s[i];
        size_t extra;
        if (ch < 0x80)
            extra = 0;
        else if (ch >= 0xC2 && ch <= 0xDF)
            extra = 1;
        else if (ch >= 0xE0 && ch <= 0xEF)
            extra = 2;
        else if (ch >= 0xF0 && ch <= 0xF4)
            extra = 3;
        else
            return false;
        if (i + extra >= len && extra) return false;
        for (size_t k = 1; k <= extra; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return false;
        i += extra + 1;
    }
    return true;
}

/* Reads path whole into *text (malloc'd, NUL-terminated): the new source reload sends. */
static int commands_read_text(const char *path, char **text, fp_error *err)
{
    enum { MAX_SOURCE = 16 << 20 };
    FILE *f = fopen(path, "re");
    if (!f)
        return fp_error_set(err, FP_E_IO, "give the path of the module's edited source",
                            "cannot read %s: %s", path, strerror(errno));
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
        if (len + 1 == cap) {
            if (cap > MAX_SOURCE) break;
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory reading %s", path);
    if (failed || len + 1 == cap) {
        free(buf);
        return fp_error_set(err, FP_E_IO, NULL, "cannot read %s: %s", path,
                            failed ? "read error" : "larger than 16 MiB");
    }
    buf[len] = '\0';
    /* Sent as JSON text: it must be UTF-8 (the agent's own file reads follow coding cookies). */
    if (memchr(buf, '\0', len) || !commands_utf8(buf, len)) {
        free(buf);
        return fp_error_set(err, FP_E_USAGE, "save the file as UTF-8",
                            "%s is not UTF-8 text (or holds a NUL byte)", path);
    }
    *text = buf;
    return 0;
}

/* reload module [class] method: --undo chooses reload.undo; --source FILE becomes the text. */
static int commands_parse_reload(const fp_command *c, const char **pos, int npos, cJSON **pp,
                                 fp_cmd_parsed *out, fp_error *err)
{
    cJSON *params = *pp;
    commands_names(pos, npos, params);
    bool undo = commands_flag(params, "undo");
    cJSON_DeleteItemFromObjectCaseSensitive(params, "undo");
    const char *path = commands_string(params, "source");
    if (undo) {
        if (path || commands_flag(params, "dry_run"))
            return commands_usage_error(c, err,
                                        "reload --undo takes neither --source nor --dry-run");
        out->method = "reload.undo";
        cJSON_DeleteItemFromObjectCaseSensitive(params, "source");
        cJSON_DeleteItemFromObjectCaseSensitive(params, "dry_run");
        return 0;
    }
    if (!path) return 0;
    char *text = NULL;
    if (commands_read_text(path, &text, err) != 0) return -1;
    char *real = realpath(path, NULL);
    cJSON_ReplaceItemInObjectCaseSensitive(params, "source", cJSON_CreateString(text));
    cJSON_AddStringToObject(params, "filename", real ? real : path);
    free(real);
    free(text);
    return 0;
}

/* A number of seconds given as text (--interval, --budget) into params[key]. */
static int commands_seconds(const fp_command *c, cJSON *params, const char *key, const char *opt,
                            double low, fp_error *err)
{
    const char *text = commands_string(params, key);
    if (!text) return 0;
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !(v >= low) || v > 86400)
        return commands_usage_error(c, err, "option %s expects seconds (at least %g), got '%s'",
                                    opt, low, text);
    cJSON_ReplaceItemInObjectCaseSensitive(params, key, cJSON_CreateNumber(v));
    return 0;
}

/* mem summary|diff|top|off: the method, and only the params it takes (they replace the
 * parsed ones). */
static cJSON *commands_mem(const fp_command *c, const char **pos, int npos, cJSON *parsed,
                           fp_cmd_parsed *out, fp_error *err)
{
    static const struct {
        const char *name, *method;
        const char *keys[8];
    } subs[] = {
        {"summary", "mem.summary", {"limit", "order", "budget_s", "untracked"}},
        {"diff",
         "mem.diff",
         {"interval_s", "limit", "order", "budget_s", "untracked", "traces", "traceback"}},
        {"top", "mem.top", {"limit", "traceback"}},
        {"off", "mem.off", {NULL}},
    };
    if (npos == 0) {
        commands_usage_error(c, err, "mem needs a subcommand: summary, diff, top or off");
        return NULL;
    }
    size_t which = sizeof subs / sizeof subs[0];
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(pos[0], subs[i].name) == 0) which = i;
    if (which == sizeof subs / sizeof subs[0]) {
        commands_usage_error(c, err, "unknown mem subcommand '%s' (summary, diff, top or off)",
                             pos[0]);
        return NULL;
    }
    if (commands_seconds(c, parsed, "interval_s", "-i/--interval", 0.1, err) != 0 ||
        commands_seconds(c, parsed, "budget_s", "--budget", 0.05, err) != 0)
        return NULL;
    const char *order = commands_string(parsed, "order");
    if (order && strcmp(order, "descending") != 0 && strcmp(order, "ascending") != 0) {
        commands_usage_error(c, err, "--order takes descending or ascending, got '%s'", order);
        return NULL;
    }
    if (which == 1 && !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(parsed, "interval_s"))) {
        commands_usage_error(c, err, "mem diff needs --interval S (seconds between the snapshots)");
        return NULL;
    }
    /* An option given for a subcommand that does not take it is a mistake worth saying. */
    static const char *const given_keys[] = {"interval_s", "order", "traces", "budget_s",
                                             "untracked"};
    static const char *const given_names[] = {"--interval", "--order", "--traces", "--budget",
                                              "--all"};
    for (size_t g = 0; g < sizeof given_keys / sizeof given_keys[0]; g++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, given_keys[g]);
        if (cJSON_IsNull(v) || cJSON_IsFalse(v) || !v) continue;
        bool taken = false;
        for (size_t k = 0; subs[which].keys[k]; k++)
            taken = taken || strcmp(subs[which].keys[k], given_keys[g]) == 0;
        if (!taken) {
            commands_usage_error(c, err, "%s is not an option of mem %s", given_names[g],
                                 subs[which].name);
            return NULL;
        }
    }
    out->method = subs[which].method;
    cJSON *p = cJSON_CreateObject();
    for (size_t k = 0; subs[which].keys[k]; k++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, subs[which].keys[k]);
        if (v && !cJSON_IsNull(v))
            cJSON_AddItemToObject(p, subs[which].keys[k], cJSON_Duplicate(v, 1));
    }
    cJSON_Delete(parsed);
    return p;
}

/* vmtool -a getInstances -c module class | -a forceGc. Returns the new params or NULL. */
static cJSON *commands_vmtool(const fp_command *c, const char **pos, int npos, cJSON *parsed,
                              fp_cmd_parsed *out, fp_error *err)
{
    const char *action = commands_string(parsed, "action");
    if (!action) {
        commands_usage_error(c, err, "vmtool needs an action: -a getInstances or -a forceGc");
        return NULL;
    }
    cJSON *p = cJSON_CreateObject();
    if (strcmp(action, "forceGc") == 0) {
        if (npos > 0 || commands_flag(parsed, "class_given")) {
            commands_usage_error(c, err, "vmtool -a forceGc takes no class");
            goto fail;
        }
        out->method = "vmtool.gc";
    } else if (strcmp(action, "getInstances") == 0) {
        if (npos != 2 || !commands_flag(parsed, "class_given")) {
            commands_usage_error(c, err, "vmtool -a getInstances needs -c module class%s",
                                 npos == 2 ? " (the -c is missing)" : "");
            goto fail;
        }
        const cJSON *limit = cJSON_GetObjectItemCaseSensitive(parsed, "limit");
        if (cJSON_IsNumber(limit) && limit->valuedouble == 0) {
            commands_usage_error(c, err,
                                 "-n takes a number of instances (1 or more), or -1 for all");
            goto fail;
        }
        out->method = "vmtool.instances";
        cJSON_AddStringToObject(p, "module", pos[0]);
        cJSON_AddStringToObject(p, "class", pos[1]);
        static const char *const keys[] = {"expr", "depth",   "limit",
                                           "raw",  "verbose", "subclasses"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, keys[i]);
            if (v) cJSON_AddItemToObject(p, keys[i], cJSON_Duplicate(v, 1));
        }
    } else {
        commands_usage_error(c, err, "unknown vmtool action '%s' (getInstances or forceGc)",
                             action);
        goto fail;
    }
    cJSON_Delete(parsed);
    return p;
fail:
    cJSON_Delete(p);
    return NULL;
}

/* The hooks of mem and vmtool: their params replace the parsed ones (consumed on success). */
static int commands_parse_mem(const fp_command *c, const char **pos, int npos, cJSON **params,
                              fp_cmd_parsed *out, fp_error *err)
{
    cJSON *p = commands_mem(c, pos, npos, *params, out, err);
    if (!p) return -1;
    *params = p;
    return 0;
}

static int commands_parse_vmtool(const fp_command *c, const char **pos, int npos, cJSON **params,
                                 fp_cmd_parsed *out, fp_error *err)
{
    cJSON *p = commands_vmtool(c, pos, npos, *params, out, err);
    if (!p) return -1;
    *params = p;
    return 0;
}

/* A file the target writes: made absolute against fp's working directory, which is what the
 * user typing a relative name means (the target's own directory is unknown to them). */
static int commands_abs_file(const fp_command *c, const char *file, cJSON *out, fp_error *err)
{
    if (file[0] == '/') {
        cJSON_AddStringToObject(out, "file", file);
        return 0;
    }
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return commands_usage_error(c, err,
                                    "cannot resolve '%s': fp's working directory is gone (%s)",
                                    file, strerror(errno));
    size_t need = strlen(cwd) + strlen(file) + 2;
    char *abs = malloc(need);
    if (!abs) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    snprintf(abs, need, "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", file);
    cJSON_AddStringToObject(out, "file", abs);
    free(abs);
    return 0;
}

/* Copies the named members of from into to. */
static void commands_copy(cJSON *to, const cJSON *from, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(from, keys[i]);
        if (v) cJSON_AddItemToObject(to, keys[i], cJSON_Duplicate(v, 1));
    }
}

/* Options given that the subcommand does not take: the first one, for the error. */
static const char *commands_torch_extra(const cJSON *parsed, const char *const *keys, size_t n)
{
    static const char *const names[][2] = {
        {"limit", "-n"},    {"snapshot", "-s"},
        {"record", "-r"},   {"cpu", "--cpu"},
        {"cuda", "--cuda"}, {"with_stack", "--stack"},
        {"nested", "-nm"},  {"max_entries", "--max-entries"},
    };
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, keys[i]);
        bool given = cJSON_IsTrue(v) || cJSON_IsString(v);
        if (strcmp(keys[i], "limit") == 0) given = cJSON_IsNumber(v) && v->valuedouble != 1;
        if (strcmp(keys[i], "max_entries") == 0)
            given = cJSON_IsNumber(v) && v->valuedouble != 100000;
        if (!given) continue;
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            if (strcmp(names[j][0], keys[i]) == 0) return names[j][1];
    }
    return NULL;
}

/* torch profile ... | torch memory -s | torch memory -r ...: the method and its params.
 * Returns the new params (the parsed ones are consumed) or NULL with err. */
static cJSON *commands_torch(const fp_command *c, const char **pos, int npos, cJSON *parsed,
                             fp_cmd_parsed *out, fp_error *err)
{
    const char *sub = pos[0];
    cJSON *p = cJSON_CreateObject();
    const char *file = commands_string(parsed, "file");
    const char *extra = NULL;
    if (strcmp(sub, "profile") == 0) {
        static const char *const not_here[] = {"snapshot", "record", "max_entries"};
        extra = commands_torch_extra(parsed, not_here, 3);
        if (extra) {
            commands_usage_error(c, err, "option %s is for torch memory, not torch profile", extra);
            goto fail;
        }
        if (npos < 3) {
            commands_usage_error(c, err,
                                 "torch profile needs 2 or 3 names (module [class] method), got %d",
                                 npos - 1);
            goto fail;
        }
        if (commands_flag(parsed, "cpu") && commands_flag(parsed, "cuda")) {
            commands_usage_error(c, err, "--cpu and --cuda exclude each other");
            goto fail;
        }
        out->method = "torch.profile.start";
        commands_names(pos + 1, npos - 1, p);
        static const char *const keys[] = {"nested", "limit", "top", "with_stack"};
        commands_copy(p, parsed, keys, sizeof keys / sizeof keys[0]);
        cJSON_AddStringToObject(p, "device",
                                commands_flag(parsed, "cpu")    ? "cpu"
                                : commands_flag(parsed, "cuda") ? "cuda"
                                                                : "auto");
        if (commands_abs_file(c, file ? file : "trace.json", p, err) != 0) goto fail;
    } else if (strcmp(sub, "memory") == 0) {
        bool snap = commands_flag(parsed, "snapshot"), rec = commands_flag(parsed, "record");
        if (snap == rec) {
            commands_usage_error(
                c, err,
                "torch memory needs one of -s (snapshot now) or -r (record the next "
                "call)%s",
                snap ? "; both were given" : "");
            goto fail;
        }
        static const char *const not_here[] = {"limit", "cpu", "cuda", "with_stack"};
        extra = commands_torch_extra(parsed, not_here, 4);
        if (extra) {
            commands_usage_error(c, err, "option %s is for torch profile, not torch memory", extra);
            goto fail;
        }
        if (snap) {
            static const char *const snap_extra[] = {"nested", "max_entries"};
            extra = commands_torch_extra(parsed, snap_extra, 2);
            if (extra) {
                commands_usage_error(c, err, "torch memory -s takes no function; got option %s",
                                     extra);
                goto fail;
            }
            if (npos > 1) {
                commands_usage_error(c, err, "torch memory -s takes no function; got '%s'", pos[1]);
                goto fail;
            }
            out->method = "torch.memory.snapshot";
            static const char *const keys[] = {"top"};
            commands_copy(p, parsed, keys, 1);
        } else {
            if (npos < 3) {
                commands_usage_error(
                    c, err, "torch memory -r needs 2 or 3 names (module [class] method), got %d",
                    npos - 1);
                goto fail;
            }
            out->method = "torch.memory.record";
            commands_names(pos + 1, npos - 1, p);
            static const char *const keys[] = {"nested", "top", "max_entries"};
            commands_copy(p, parsed, keys, sizeof keys / sizeof keys[0]);
        }
        if (commands_abs_file(c, file ? file : "snapshot.pickle", p, err) != 0) goto fail;
    } else {
        commands_usage_error(c, err, "torch takes profile or memory, got '%s'", sub);
        goto fail;
    }
    cJSON_Delete(parsed);
    return p;
fail:
    cJSON_Delete(p);
    return NULL;
}

static int commands_parse_torch(const fp_command *c, const char **pos, int npos, cJSON **params,
                                fp_cmd_parsed *out, fp_error *err)
{
    cJSON *p = commands_torch(c, pos, npos, *params, out, err);
    if (!p) return -1;
    *params = p;
    return 0;
}

/* tt: one action among -t, -l, -i, -d, -da chooses the method; each gets only its params,
 * which replace the parsed ones. */
static int commands_parse_tt(const fp_command *c, const char **pos, int npos, cJSON **pp,
                             fp_cmd_parsed *out, fp_error *err)
{
    const cJSON *parsed = *pp;
    bool record = commands_flag(parsed, "record"), list = commands_flag(parsed, "list");
    bool play = commands_flag(parsed, "play"), all = commands_flag(parsed, "delete_all");
    const char *index = commands_string(parsed, "index"), *del = commands_string(parsed, "delete");
    int actions = record + list + (index != NULL) + (del != NULL) + all;
    cJSON *p = cJSON_CreateObject();
    if (actions != 1) {
        commands_usage_error(c, err, "tt needs exactly one of -t, -l, -i IDX, -d IDX, -da%s",
                             actions ? " (several were given)" : "");
        goto fail;
    }
    if (play && !index) {
        commands_usage_error(c, err, "-p replays a record: give it with -i IDX");
        goto fail;
    }
    if (!record && npos > 0) {
        commands_usage_error(c, err, "module [class] method are for tt -t; got '%s'", pos[0]);
        goto fail;
    }
    if (record) {
        if (npos < 2) {
            commands_usage_error(c, err, "tt -t needs 2 or 3 names (module [class] method), got %d",
                                 npos);
            goto fail;
        }
        out->method = "tt.start";
        commands_names(pos, npos, p);
        static const char *const keys[] = {"nested", "filter", "limit", "copy"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, keys[i]);
            if (v) cJSON_AddItemToObject(p, keys[i], cJSON_Duplicate(v, 1));
        }
    } else if (list) {
        out->method = "tt.list";
        const char *m = commands_string(parsed, "method_filter");
        if (m)
            cJSON_AddStringToObject(p, "method", m);
        else
            cJSON_AddNullToObject(p, "method");
    } else if (index) {
        out->method = play ? "tt.replay" : "tt.show";
        if (commands_tt_index(c, "-i", index, p, err) != 0) goto fail;
        static const char *const keys[] = {"depth", "raw", "verbose"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(parsed, keys[i]);
            if (v) cJSON_AddItemToObject(p, keys[i], cJSON_Duplicate(v, 1));
        }
    } else if (del) {
        out->method = "tt.delete";
        if (commands_tt_index(c, "-d", del, p, err) != 0) goto fail;
    } else {
        out->method = "tt.delete";
        cJSON_AddTrueToObject(p, "all");
    }
    cJSON_Delete(*pp);
    *pp = p;
    return 0;
fail:
    cJSON_Delete(p);
    return -1;
}

/* An outside command's optional PID argument, into params.pid. */
static int commands_parse_pid(const fp_command *c, const char *text, cJSON *params, fp_error *err)
{
    errno = 0;
    char *end;
    long pid = strtol(text, &end, 10);
    if (end == text || *end || errno || pid <= 0 || pid > INT_MAX)
        return commands_usage_error(c, err, "'%s' is not a process id", text);
    cJSON_ReplaceItemInObjectCaseSensitive(params, "pid", cJSON_CreateNumber((double)pid));
    return 0;
}

bool fp_commands_needs_agent(const fp_cmd_parsed *p)
{
    if (!p->cmd) return false;
    switch (p->cmd->id) {
    case FP_CMD_HELP:
    case FP_CMD_HISTORY:
    case FP_CMD_QUIT:
        return false;
    default:
        break;
    }
    if (!(p->cmd->flags & FP_CMD_OUTSIDE)) return true;
    /* asyncio tasks are Python objects: only the agent can walk them */
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p->params, "async"));
}

/* gilstat on [TAKE_MS HOLD_MS] | gilstat off, into params.action, take_ms, hold_ms. */
static int commands_parse_gilstat(const fp_command *c, const char **pos, int npos, cJSON **pp,
                                  fp_cmd_parsed *out, fp_error *err)
{
    (void)out;
    cJSON *params = *pp;
    bool on = strcmp(pos[0], "on") == 0;
    if (!on && strcmp(pos[0], "off") != 0)
        return commands_usage_error(c, err, "gilstat takes on or off, got '%s'", pos[0]);
    if (!on && npos > 1) return commands_usage_error(c, err, "gilstat off takes no arguments");
    if (on && npos == 2)
        return commands_usage_error(c, err, "gilstat on takes both TAKE_MS and HOLD_MS, or none");
    cJSON_AddStringToObject(params, "action", pos[0]);
    static const char *const keys[] = {"take_ms", "hold_ms"};
    for (int i = 0; i < 2; i++) {
        double ms = 0;
        if (npos == 3) {
            char *end;
            errno = 0;
            ms = strtod(pos[1 + i], &end);
            if (end == pos[1 + i] || *end || errno || !(ms >= 0) || ms > 86400000)
                return commands_usage_error(c, err,
                                            "%s must be a number of milliseconds >= 0, got '%s'",
                                            i ? "HOLD_MS" : "TAKE_MS", pos[1 + i]);
        }
        cJSON_AddNumberToObject(params, keys[i], ms);
    }
    return 0;
}

/* help [command]: the topic, which must be a command. */
static int commands_parse_help(const fp_command *c, const char **pos, int npos, cJSON **params,
                               fp_cmd_parsed *out, fp_error *err)
{
    (void)c;
    (void)params;
    if (npos == 0) return 0;
    out->topic = strdup(pos[0]);
    if (fp_commands_find(pos[0])) return 0;
    char *t = fp_commands_help(pos[0], err); /* the error: no such command, and a near one */
    free(t);
    return -1;
}

static int commands_parse_module(const fp_command *c, const char **pos, int npos, cJSON **params,
                                 fp_cmd_parsed *out, fp_error *err)
{
    (void)c, (void)npos, (void)out, (void)err;
    cJSON_AddStringToObject(*params, "path", pos[0]);
    return 0;
}

/* getglobal module field, or module class field. */
static int commands_parse_getglobal(const fp_command *c, const char **pos, int npos, cJSON **params,
                                    fp_cmd_parsed *out, fp_error *err)
{
    (void)c, (void)out, (void)err;
    cJSON_ReplaceItemInObjectCaseSensitive(*params, "module", cJSON_CreateString(pos[0]));
    if (npos == 3)
        cJSON_ReplaceItemInObjectCaseSensitive(*params, "class", cJSON_CreateString(pos[1]));
    cJSON_ReplaceItemInObjectCaseSensitive(*params, "field", cJSON_CreateString(pos[npos - 1]));
    return 0;
}

/* stack [PID], perf [PID]. */
static int commands_parse_outside(const fp_command *c, const char **pos, int npos, cJSON **params,
                                  fp_cmd_parsed *out, fp_error *err)
{
    (void)out;
    return npos == 1 ? commands_parse_pid(c, pos[0], *params, err) : 0;
}

static int commands_parse_watch(const fp_command *c, const char **pos, int npos, cJSON **params,
                                fp_cmd_parsed *out, fp_error *err)
{
    (void)c, (void)out, (void)err;
    commands_names(pos, npos, *params);
    return 0;
}

int fp_commands_parse(int argc, char **argv, fp_cmd_parsed *out, fp_error *err)
{
    memset(out, 0, sizeof *out);
    if (argc < 1 || !argv[0][0])
        return fp_error_set(err, FP_E_USAGE, "help lists the commands", "no command given");
    const fp_command *c = fp_commands_find(argv[0]);
    if (!c) {
        const char *near = fp_commands_suggest(argv[0]);
        char hint[256];
        if (near)
            snprintf(hint, sizeof hint, "did you mean '%s'? (help lists the commands)", near);
        else
            snprintf(hint, sizeof hint, "help lists the commands");
        return fp_error_set(err, FP_E_USAGE, hint, "unknown command '%s'", argv[0]);
    }

    cJSON *params = commands_default_params(c);
    if (!params) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    const char *pos[8];
    int npos = 0;
    out->cmd = c;
    if (commands_parse_args(c, argc, argv, params, out, pos, &npos, err) != 0) {
        cJSON_Delete(params);
        fp_commands_parsed_free(out);
        return -1;
    }

    if (c->parse && c->parse(c, pos, npos, &params, out, err) != 0) {
        cJSON_Delete(params);
        fp_commands_parsed_free(out);
        return -1;
    }

    if (c->method || (c->flags & FP_CMD_OUTSIDE)) {
        out->params = params;
    } else {
        cJSON_Delete(params);
    }
    return 0;
}

int fp_commands_parse_line(const char *line, fp_cmd_parsed *out, fp_error *err)
{
    memset(out, 0, sizeof *out);
    int argc;
    char **argv;
    if (fp_commands_tokenize(line, &argc, &argv, err) != 0) return -1;
    if (argc == 0) {
        fp_commands_free_argv(argc, argv);
        return 0;
    }
    int r = fp_commands_parse(argc, argv, out, err);
    fp_commands_free_argv(argc, argv);
    return r == 0 ? 1 : -1;
}

void fp_commands_parsed_free(fp_cmd_parsed *p)
{
    if (!p) return;
    cJSON_Delete(p->params);
    free(p->file);
    free(p->topic);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------------------------------------
 * Help
 */

typedef struct commands_buf {
    char *s;
    size_t len, cap;
    bool failed;
} commands_buf;

static void commands_bprintf(commands_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void commands_bprintf(commands_buf *b, const char *fmt, ...)
{
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->failed = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
}

static void commands_help_one(commands_buf *b, const fp_command *c)
{
    /* Summaries are written lowercase for the command list; a sentence here. */
    commands_bprintf(b, "usage: %s\n\n%c%s.\n", c->usage, toupper((unsigned char)c->summary[0]),
                     c->summary + 1);
    if (c->help && c->help[0]) commands_bprintf(b, "%s\n", c->help);
    if (!c->opts->short_name && !c->opts->long_name) return;
    commands_bprintf(b, "Options:\n");
    for (const fp_cmd_opt *o = c->opts; o->short_name || o->long_name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s%s%s", o->short_name ? o->short_name : "",
                 o->short_name && o->long_name ? ", " : "", o->long_name ? o->long_name : "",
                 o->metavar ? " " : "", o->metavar ? o->metavar : "");
        commands_bprintf(b, "  %-20s %s", left, o->help);
        if (o->kind == FP_OPT_INT) commands_bprintf(b, " (default %d)", o->def);
        commands_bprintf(b, "\n");
    }
}

char *fp_commands_help(const char *topic, fp_error *err)
{
    commands_buf b = {0};
    if (topic) {
        const fp_command *c = fp_commands_find(topic);
        if (!c) {
            const char *near = fp_commands_suggest(topic);
            char hint[256];
            if (near)
                snprintf(hint, sizeof hint, "did you mean 'help %s'? (help lists the commands)",
                         near);
            else
                snprintf(hint, sizeof hint, "help lists the commands");
            fp_error_set(err, FP_E_USAGE, hint, "no help for '%s': there is no such command",
                         topic);
            return NULL;
        }
        commands_help_one(&b, c);
    } else {
        commands_bprintf(&b, "Commands:\n");
        for (size_t i = 0; i < N_COMMANDS; i++)
            commands_bprintf(&b, "  %-10s %s\n", commands[i].name, commands[i].summary);
        commands_bprintf(&b, "help COMMAND shows a command's usage and options.\n");
    }
    if (b.failed || !b.s) {
        free(b.s);
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    return b.s;
}

/* ---------------------------------------------------------------------------------------------
 * Completion
 */

static bool commands_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

int fp_commands_complete(const char *line, size_t cursor, const char **out, int max,
                         size_t *word_start)
{
    size_t len = strlen(line);
    if (cursor > len) cursor = len;
    size_t ws = cursor;
    while (ws > 0 && !commands_blank(line[ws - 1]))
        ws--;
    *word_start = ws;
    const char *word = line + ws;
    size_t wlen = cursor - ws;

    /* The command is the first word; the word being completed is which one? */
    size_t i = 0;
    while (i < ws && commands_blank(line[i]))
        i++;
    size_t cmd_start = i;
    while (i < ws && !commands_blank(line[i]))
        i++;
    size_t cmd_len = i - cmd_start;
    int nwords_before = 0;
    for (size_t k = 0; k < ws; k++)
        if (!commands_blank(line[k]) && (k == 0 || commands_blank(line[k - 1]))) nwords_before++;

    int n = 0;
    if (nwords_before == 0) {
        for (size_t k = 0; k < N_COMMANDS && n < max; k++)
            if (strncmp(commands[k].name, word, wlen) == 0) out[n++] = commands[k].name;
        if (n < max && wlen > 0 && strncmp("exit", word, wlen) == 0) out[n++] = "exit";
        return n;
    }
    char cmd[32];
    if (cmd_len >= sizeof cmd) return 0;
    memcpy(cmd, line + cmd_start, cmd_len);
    cmd[cmd_len] = '\0';
    const fp_command *c = fp_commands_find(cmd);
    if (!c) return 0;
    if (c->id == FP_CMD_HELP && nwords_before == 1) {
        for (size_t k = 0; k < N_COMMANDS && n < max; k++)
            if (strncmp(commands[k].name, word, wlen) == 0) out[n++] = commands[k].name;
        return n;
    }
    if (wlen > 0 && word[0] == '-') {
        for (const fp_cmd_opt *o = c->opts; (o->short_name || o->long_name) && n < max; o++) {
            /* Offer the long name once the user typed "--", both otherwise. */
            if (o->short_name && strncmp(o->short_name, word, wlen) == 0 &&
                !(wlen >= 2 && word[1] == '-'))
                out[n++] = o->short_name;
            if (n < max && o->long_name && strncmp(o->long_name, word, wlen) == 0)
                out[n++] = o->long_name;
        }
    }
    return n;
}

/* Whether one of words[1..nw) is spelled a or b. */
static bool commands_line_has(char words[][256], int nw, const char *a, const char *b)
{
    for (int i = 1; i < nw; i++)
        if (strcmp(words[i], a) == 0 || strcmp(words[i], b) == 0) return true;
    return false;
}

/* The option of c spelled word, or NULL. */
static const fp_cmd_opt *commands_opt_named(const fp_command *c, const char *word)
{
    for (const fp_cmd_opt *o = c->opts; o->short_name || o->long_name; o++)
        if ((o->short_name && strcmp(o->short_name, word) == 0) ||
            (o->long_name && strcmp(o->long_name, word) == 0))
            return o;
    return NULL;
}

bool fp_commands_name_slot(const char *line, size_t cursor, fp_cmd_name_slot *slot)
{
    memset(slot, 0, sizeof *slot);
    size_t len = strlen(line);
    if (cursor > len) cursor = len;
    size_t ws = cursor;
    while (ws > 0 && !commands_blank(line[ws - 1]))
        ws--;
    if (ws < cursor && line[ws] == '-') return false; /* an option is being typed */
    slot->word_start = ws;

    /* The words before the one being typed (no quoting: names have none). */
    char words[16][256];
    int nw = 0;
    for (size_t i = 0; i < ws;) {
        while (i < ws && commands_blank(line[i]))
            i++;
        size_t start = i;
        while (i < ws && !commands_blank(line[i]))
            i++;
        if (i == start) break;
        if (nw == 16 || i - start >= sizeof words[0]) return false;
        memcpy(words[nw], line + start, i - start);
        words[nw++][i - start] = '\0';
    }
    if (nw == 0) return false;
    const fp_command *c = fp_commands_find(words[0]);
    if (!c) return false;
    const char *kind = "function";
    bool needs_flag = false; /* tt -t, vmtool -c, torch memory -r: names only after the flag */
    const char *flag = NULL;
    switch (c->id) {
    case FP_CMD_WATCH:
    case FP_CMD_TRACE:
    case FP_CMD_MONITOR:
    case FP_CMD_RELOAD:
    case FP_CMD_TORCH:
        break;
    case FP_CMD_GETGLOBAL:
        kind = "global";
        break;
    case FP_CMD_TT:
        needs_flag = true, flag = "-t";
        break;
    case FP_CMD_VMTOOL:
        needs_flag = true, flag = "-c", kind = "class";
        break;
    default:
        return false;
    }
    /* The positional words, options and their values left out. */
    const char *pos[16];
    int npos = 0;
    bool flag_seen = false;
    for (int i = 1; i < nw; i++) {
        const fp_cmd_opt *o = words[i][0] == '-' ? commands_opt_named(c, words[i]) : NULL;
        if (o) {
            if (flag && o->short_name && strcmp(o->short_name, flag) == 0) flag_seen = true;
            if (o->kind != FP_OPT_FLAG) {
                if (i + 1 == nw) return false; /* the word being typed is this option's value */
                i++;
            }
            continue;
        }
        pos[npos++] = words[i];
    }
    if (c->id == FP_CMD_TORCH) {
        /* torch profile NAMES..., torch memory -r NAMES... */
        if (npos == 0) return false;
        if (strcmp(pos[0], "memory") == 0) {
            if (!commands_line_has(words, nw, "-r", "--record")) return false;
        } else if (strcmp(pos[0], "profile") != 0) {
            return false;
        }
        memmove(pos, pos + 1, (size_t)--npos * sizeof pos[0]);
    }
    if (needs_flag && !flag_seen) return false;
    int most = c->id == FP_CMD_VMTOOL ? 1 : 2; /* vmtool -c module class */
    if (npos > most) return false;
    slot->nwords = npos;
    for (int i = 0; i < npos; i++)
        snprintf(slot->words[i], sizeof slot->words[i], "%s", pos[i]);
    slot->kind = kind;
    return true;
}
