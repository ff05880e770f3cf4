/* The command grammar of fp (PyFlightProfiler's, kept for its users' muscle memory): the
 * table of commands with their help, a shell-like tokenizer, and a parser from a command line
 * to an agent method + params. Lives in the core because fp and fp-lsp share it. */
#ifndef FP_COMMANDS_H
#define FP_COMMANDS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "fp_error.h"

typedef enum fp_cmd_id {
    FP_CMD_HELP,
    FP_CMD_STATUS,
    FP_CMD_MODULE,
    FP_CMD_GETGLOBAL,
    FP_CMD_STACK,
    FP_CMD_CONSOLE,
    FP_CMD_HISTORY,
    FP_CMD_QUIT,
    FP_CMD_SHUTDOWN,
    FP_CMD_PERF,
    FP_CMD_GILSTAT,
    FP_CMD_WATCH,
    FP_CMD_TT,
    FP_CMD_TRACE,
    FP_CMD_MONITOR,
    FP_CMD_RELOAD,
    FP_CMD_MEM,
    FP_CMD_VMTOOL,

    FP_CMD_TORCH,
} fp_cmd_id;

typedef enum fp_cmd_opt_kind {
    FP_OPT_FLAG,   /* present or not; sets a bool param */
    FP_OPT_STRING, /* takes a value */
    FP_OPT_INT,    /* takes a number within [min, max] */
} fp_cmd_opt_kind;

typedef struct fp_cmd_opt {
    const char *short_name; /* "-x", or NULL */
    const char *long_name;  /* "--expand", or NULL */
    fp_cmd_opt_kind kind;
    const char *key;     /* the params member it sets; NULL: the client handles it */
    const char *metavar; /* "N", "EXPR", "FILE" for options with a value */
    int min, max, def;   /* FP_OPT_INT: accepted range and default */
    const char *help;    /* one line, without the default (added from def) */
} fp_cmd_opt;

/* Streaming commands report through notifications until they finish or are stopped
 * (--timeout, Ctrl-C); stopping one is not a failure. Whatever the flag, a result holding
 * "stream": {"id_key", "id", "end", "stop"} (protocol/methods.md, "Streams") makes fp wait for
 * the notifications whose params[id_key] == id until the one named end, or stop it with the
 * request stop {id_key: id} at Ctrl-C or --timeout (watch, tt -t, trace). */
#define FP_CMD_STREAMING 0x1u
/* Outside commands read the process from outside (fp_remote): fp runs them itself, without
 * loading the agent; fp PID --cmd with only such commands never injects anything. Their
 * options still go to params. */
#define FP_CMD_OUTSIDE 0x2u

/* Terminal-only commands (console, history, quit): only a terminal front end runs them; they
 * are in the table for its grammar, help and completion. */
#define FP_CMD_TERMINAL 0x4u

struct fp_command;
struct fp_cmd_parsed;
/* A command's own parse step, after the options: its positional arguments (pos[0..npos)) into
 * *params, which it may replace (tt builds each action's params). Returns 0, or -1 with err. */
typedef int (*fp_cmd_parse_fn)(const struct fp_command *c, const char **pos, int npos,
                               cJSON **params, struct fp_cmd_parsed *out, fp_error *err);

typedef struct fp_command {
    fp_cmd_id id;
    const char *name;
    const char *method; /* agent method; NULL for commands the client handles itself */
    const char *usage;  /* "getglobal module [class] field [-e EXPR] ..." */
    const char *summary;
    const char *help;       /* description and examples; the options are listed from opts */
    const fp_cmd_opt *opts; /* terminated by an entry with no names; never NULL */
    int min_args, max_args; /* positional arguments */
    unsigned flags;
    fp_cmd_parse_fn parse; /* NULL: the options are all there is */
    const char *needs;     /* what too few arguments lack: "2 or 3 names (module [class] method)" */
} fp_command;

typedef struct fp_cmd_parsed {
    const fp_command *cmd;
    cJSON *params; /* the agent request's params (owned), NULL for client-side commands */
    char *file;    /* stack/perf -f FILE: where the client writes its output; else NULL */
    char *topic;   /* help COMMAND; else NULL */
    /* The agent method when the options choose it (tt -l, tt -i ...); NULL: cmd->method. */
    const char *method;
} fp_cmd_parsed;

/* The table, in the order help lists it (borrowed, static). */
const fp_command *fp_commands_table(size_t *count);
/* The command called name (aliases included: exit is quit), or NULL. */
const fp_command *fp_commands_find(const char *name);
/* The command name nearest to name (typos, prefixes), or NULL when none is close. */
const char *fp_commands_suggest(const char *name);

/* Splits line like a shell: blanks separate words; '...' is literal; "..." allows \" and \\;
 * outside quotes a backslash escapes the next character. *argv is malloc'd (NULL-terminated);
 * free it with fp_commands_free_argv. Returns 0, or -1 with err (unterminated quote). */
int fp_commands_tokenize(const char *line, int *argc, char ***argv, fp_error *err);
void fp_commands_free_argv(int argc, char **argv);

/* Parses argv[0] (the command) and its arguments. Returns 0 with *out filled (free it with
 * fp_commands_parsed_free), or -1 with err (FP_E_USAGE: the message names the culprit, the
 * hint shows the usage line or a near command name). */
int fp_commands_parse(int argc, char **argv, fp_cmd_parsed *out, fp_error *err);
/* Whether running p takes the agent in the process: false for what the client does alone
 * (help, history, quit) and for FP_CMD_OUTSIDE commands, unless an option of theirs needs
 * Python objects (stack -a). */
bool fp_commands_needs_agent(const fp_cmd_parsed *p);
/* Tokenizes and parses line. Returns 1 with *out filled, 0 for a blank line, -1 with err. */
int fp_commands_parse_line(const char *line, fp_cmd_parsed *out, fp_error *err);
void fp_commands_parsed_free(fp_cmd_parsed *p);

/* Help text, malloc'd (caller frees): the list of commands when topic is NULL, else one
 * command's usage, description and options. NULL with err for an unknown topic. */
char *fp_commands_help(const char *topic, fp_error *err);

/* Completion candidates for the word that ends at cursor in line: command names for the
 * first word (and for help's argument), option names for a word starting with '-'.
 * Fills out with up to max borrowed strings, sets *word_start; returns the count. */
int fp_commands_complete(const char *line, size_t cursor, const char **out, int max,
                         size_t *word_start);

/* A word that names something in the process (the locating grammar `module [class] name` of
 * watch, trace, monitor, reload, getglobal, tt -t, torch, vmtool -c): what the agent's
 * `complete` method needs to offer names of the process for it. */
typedef struct fp_cmd_name_slot {
    int nwords;         /* names already typed before it: 0 (module), 1 (class or name), 2 */
    char words[2][256]; /* those names */
    const char *kind;   /* "function", "global" or "class" (protocol/methods.md, complete) */
    size_t word_start;  /* where the word being typed starts in the line */
} fp_cmd_name_slot;

/* Whether the word that ends at cursor in line is such a name; fills *slot when it is. */
bool fp_commands_name_slot(const char *line, size_t cursor, fp_cmd_name_slot *slot);

#endif
