/* Unit tests for server/core/commands.c: the tokenizer, every command's parse (its params, the
 * method its options choose, the client-side fields), each kind of usage error with its
 * message, and completion. */
#include "check.h"
#include "fp_commands.h"

#include <stdlib.h>
#include <string.h>

/* Parses line; returns the params as compact JSON (malloc'd, "" for none), or NULL with err. */
static char *parse(const char *line, fp_cmd_parsed *p, fp_error *err)
{
    fp_error_clear(err);
    int r = fp_commands_parse_line(line, p, err);
    if (r != 1) return NULL;
    return p->params ? cJSON_PrintUnformatted(p->params) : strdup("");
}

/* Parses line, expects success with these params (NULL: don't compare), and frees it. */
static void check_params(const char *line, const char *want_cmd, const char *want_params)
{
    fp_cmd_parsed p;
    fp_error e;
    char *got = parse(line, &p, &e);
    if (!got) fprintf(stderr, "    %s: %s\n", line, e.message);
    CHECK(got != NULL);
    if (got) {
        CHECK_STR(p.cmd->name, want_cmd);
        if (want_params) CHECK_STR(got, want_params);
    }
    free(got);
    fp_commands_parsed_free(&p);
}

/* Parses line, expects a usage error whose message contains want. */
static void check_usage(const char *line, const char *want)
{
    fp_cmd_parsed p;
    fp_error e;
    char *got = parse(line, &p, &e);
    CHECK(got == NULL);
    CHECK_EQ_INT(e.code, FP_E_USAGE);
    CHECK(strstr(e.message, want) != NULL);
    if (!strstr(e.message, want)) fprintf(stderr, "    %s -> %s\n", line, e.message);
    free(got);
    fp_commands_parsed_free(&p);
}

static void test_tokenize(void)
{
    int argc;
    char **argv;
    fp_error e;
    CHECK_EQ_INT(fp_commands_tokenize("  a 'b c' \"d \\\" e\" f\\ g \"x\\ny\"", &argc, &argv, &e),
                 0);
    CHECK_EQ_INT(argc, 5);
    CHECK_STR(argv[0], "a");
    CHECK_STR(argv[1], "b c");
    CHECK_STR(argv[2], "d \" e");
    CHECK_STR(argv[3], "f g");
    CHECK_STR(argv[4], "x\\ny"); /* Python's own escapes pass through double quotes */
    CHECK(argv[5] == NULL);
    fp_commands_free_argv(argc, argv);
    CHECK_EQ_INT(fp_commands_tokenize("watch 'oops", &argc, &argv, &e), -1);
    CHECK(strstr(e.message, "unterminated single quote") != NULL);
    CHECK_EQ_INT(fp_commands_tokenize("x \"open", &argc, &argv, &e), -1);
    CHECK(strstr(e.message, "unterminated double quote") != NULL);
}

static void test_blank_and_unknown(void)
{
    fp_cmd_parsed p;
    fp_error e;
    CHECK_EQ_INT(fp_commands_parse_line("   ", &p, &e), 0);
    check_usage("stakc", "unknown command 'stakc'");
    CHECK_EQ_INT(fp_commands_parse_line("stakc", &p, &e), -1);
    CHECK(strstr(e.hint, "did you mean 'stack'?") != NULL);
    CHECK_STR(fp_commands_suggest("getglobl"), "getglobal");
    CHECK_STR(fp_commands_suggest("zzzzzz"), NULL);
    CHECK_STR(fp_commands_find("exit")->name, "quit");
}

static void test_simple_commands(void)
{
    check_params("status", "status", "{}");
    check_params("module /srv/app/x.py", "module", "{\"path\":\"/srv/app/x.py\"}");
    check_usage("module", "module needs a FILEPATH");
    check_usage("status now", "status takes no arguments, got 'now'");
    check_params("getglobal m f", "getglobal",
                 "{\"module\":\"m\",\"class\":null,\"field\":\"f\",\"expr\":null,\"depth\":1,"
                 "\"raw\":false,\"verbose\":false}");
    check_params("getglobal m C f -x 3 -e 'len(target)' -r", "getglobal",
                 "{\"module\":\"m\",\"class\":\"C\",\"field\":\"f\",\"expr\":\"len(target)\","
                 "\"depth\":3,\"raw\":true,\"verbose\":false}");
    check_usage("getglobal m", "getglobal needs 2 or 3 names (module [class] field), got 1");
    check_usage("getglobal m C f extra", "too many arguments for getglobal: 'extra'");
    check_usage("getglobal m f -x 9", "option -x/--expand: 9 is out of range (1 to 4)");
    check_usage("getglobal m f -x two", "option -x/--expand expects a whole number from 1 to 4");
    check_usage("getglobal m f -e", "option -e/--expr needs a value (EXPR)");
    check_usage("getglobal m f --bogus", "unknown option '--bogus' for getglobal");
    check_usage("getglobal m f -r=1", "unknown option '-r=1'");
    check_usage("getglobal m f --raw=1", "option -r/--raw takes no value");
    check_params("getglobal m f --expand=2", "getglobal", NULL);
}

static void test_help(void)
{
    fp_cmd_parsed p;
    fp_error e;
    char *got = parse("help watch", &p, &e);
    CHECK(got != NULL);
    CHECK_STR(p.topic, "watch");
    CHECK(p.params == NULL); /* the client answers help itself */
    free(got);
    fp_commands_parsed_free(&p);
    check_usage("help wacth", "no help for 'wacth'");
    char *text = fp_commands_help("trace", &e);
    CHECK(text && strstr(text, "usage: trace module [class] method") != NULL);
    CHECK(text && strstr(text, "-n, --limits N") != NULL && strstr(text, "(default 10)") != NULL);
    free(text);
    text = fp_commands_help(NULL, &e);
    CHECK(text && strstr(text, "Commands:\n") == text && strstr(text, "  gilstat ") != NULL);
    free(text);
}

static void test_outside_commands(void)
{
    fp_cmd_parsed p;
    fp_error e;
    char *got = parse("stack 42 -f /tmp/s.txt --native", &p, &e);
    CHECK_STR(got, "{\"pid\":42,\"native\":true,\"async\":false}");
    CHECK_STR(p.file, "/tmp/s.txt");
    CHECK(p.cmd->flags & FP_CMD_OUTSIDE);
    CHECK(!fp_commands_needs_agent(&p));
    free(got);
    fp_commands_parsed_free(&p);
    got = parse("stack -a", &p, &e);
    CHECK(got != NULL && fp_commands_needs_agent(&p)); /* asyncio tasks need the agent */
    free(got);
    fp_commands_parsed_free(&p);
    check_usage("stack x1", "'x1' is not a process id");
    check_params("perf -r 250 -d 3 --format speedscope --gil", "perf",
                 "{\"pid\":null,\"rate\":250,\"duration\":3,\"native\":false,\"gil\":true,"
                 "\"idle\":false,\"format\":\"speedscope\"}");
    check_usage("perf -r 0", "option -r/--rate: 0 is out of range (1 to 10000)");
    check_params("gilstat on", "gilstat",
                 "{\"interval_s\":5,\"action\":\"on\",\"take_ms\":0,\"hold_ms\":0}");
    check_params("gilstat on 50 2.5 -i 2", "gilstat",
                 "{\"interval_s\":2,\"action\":\"on\",\"take_ms\":50,\"hold_ms\":2.5}");
    check_params("gilstat off", "gilstat", NULL);
    check_usage("gilstat", "gilstat needs on or off");
    check_usage("gilstat maybe", "gilstat takes on or off, got 'maybe'");
    check_usage("gilstat on 50", "gilstat on takes both TAKE_MS and HOLD_MS, or none");
    check_usage("gilstat off 1", "gilstat off takes no arguments");
    check_usage("gilstat on x 5", "TAKE_MS must be a number of milliseconds >= 0, got 'x'");
}

static void test_streams(void)
{
    check_params("watch m C f --expr 'args[0], return_obj' -f 'cost > 5' -n 3 -nm inner", "watch",
                 "{\"expr\":\"args[0], return_obj\",\"filter\":\"cost > 5\",\"exceptions\":false,"
                 "\"depth\":1,\"limit\":3,\"raw\":false,\"verbose\":false,\"nested\":\"inner\","
                 "\"module\":\"m\",\"class\":\"C\",\"method\":\"f\"}");
    check_usage("watch m", "watch needs 2 or 3 names (module [class] method), got 1");
    check_usage("watch m f -n 0", "option -n/--limit: 0 is out of range");
    check_params("trace m f -i 0.5 -et 20 -d 2", "trace", NULL);
    fp_cmd_parsed p;
    fp_error e;
    char *got = parse("trace m f -i 0.5 -et 20", &p, &e);
    CHECK(got != NULL);
    CHECK(cJSON_GetObjectItem(p.params, "interval")->valuedouble == 0.5);
    CHECK(cJSON_GetObjectItem(p.params, "min_cost")->valuedouble == 20);
    free(got);
    fp_commands_parsed_free(&p);
    check_usage("trace m f -i fast", "option -i/--interval expects milliseconds");
    check_usage("trace m f -et -3", "option -et/--entrance_time expects milliseconds");
}

/* tt: each action chooses its method and gets only its own params. */
static void test_tt(void)
{
    struct {
        const char *line, *method, *params;
    } cases[] = {
        {"tt -t m C f -n 20 --copy", "tt.start",
         "{\"module\":\"m\",\"class\":\"C\",\"method\":\"f\",\"nested\":null,\"filter\":null,"
         "\"limit\":20,\"copy\":true}"},
        {"tt -l", "tt.list", "{\"method\":null}"},
        {"tt -l -m m.C.f", "tt.list", "{\"method\":\"m.C.f\"}"},
        {"tt -i 1003 -x 2", "tt.show",
         "{\"index\":1003,\"depth\":2,\"raw\":false,\"verbose\":false}"},
        {"tt -i 1003 -p", "tt.replay",
         "{\"index\":1003,\"depth\":1,\"raw\":false,\"verbose\":false}"},
        {"tt -d 1001", "tt.delete", "{\"index\":1001}"},
        {"tt -da", "tt.delete", "{\"all\":true}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fp_cmd_parsed p;
        fp_error e;
        char *got = parse(cases[i].line, &p, &e);
        CHECK(got != NULL);
        CHECK_STR(p.method, cases[i].method);
        CHECK_STR(got, cases[i].params);
        free(got);
        fp_commands_parsed_free(&p);
    }
    check_usage("tt", "tt needs exactly one of -t, -l, -i IDX, -d IDX, -da");
    check_usage("tt -l -da", "(several were given)");
    check_usage("tt -l -p", "-p replays a record: give it with -i IDX");
    check_usage("tt -l m f", "module [class] method are for tt -t; got 'm'");
    check_usage("tt -t m", "tt -t needs 2 or 3 names (module [class] method), got 1");
    check_usage("tt -i x", "option -i expects a record index (e.g. 1000), got 'x'");
}

static void test_table(void)
{
    size_t n;
    const fp_command *all = fp_commands_table(&n);
    CHECK(n > 10);
    for (size_t i = 0; i < n; i++) {
        const fp_command *c = &all[i];
        /* A command either goes to the agent, or is run by the front ends (outside commands,
         * help), or is the terminal's own. */
        int kinds = (c->method != NULL) + ((c->flags & FP_CMD_OUTSIDE) != 0) +
                    ((c->flags & FP_CMD_TERMINAL) != 0);
        CHECK(kinds <= 1 || (c->flags & FP_CMD_OUTSIDE)); /* stack has both: -a asks the agent */
        CHECK(c->usage && strncmp(c->usage, c->name, strlen(c->name)) == 0);
        CHECK(c->min_args <= c->max_args);
        CHECK(c->min_args == 0 || c->needs != NULL); /* too few arguments are named */
    }
    CHECK(fp_commands_find("console")->flags & FP_CMD_TERMINAL);
    CHECK(fp_commands_find("history")->flags & FP_CMD_TERMINAL);
    CHECK(fp_commands_find("quit")->flags & FP_CMD_TERMINAL);
    CHECK(!(fp_commands_find("watch")->flags & FP_CMD_TERMINAL));
}

static void test_complete(void)
{
    const char *m[32];
    size_t ws;
    int n = fp_commands_complete("wa", 2, m, 32, &ws);
    CHECK_EQ_INT(n, 1);
    CHECK_STR(m[0], "watch");
    CHECK_EQ_INT(ws, 0);
    n = fp_commands_complete("help tr", 7, m, 32, &ws);
    CHECK(n == 1 && strcmp(m[0], "trace") == 0 && ws == 5);
    n = fp_commands_complete("stack --n", 9, m, 32, &ws);
    CHECK(n == 1 && strcmp(m[0], "--native") == 0);
    n = fp_commands_complete("perf -", 6, m, 32, &ws);
    CHECK(n >= 7); /* -f --file -r --rate -d --duration --native ... */
    n = fp_commands_complete("e", 1, m, 32, &ws);
    CHECK(n == 1 && strcmp(m[0], "exit") == 0);
}

static bool slot_of(const char *line, fp_cmd_name_slot *s)
{
    return fp_commands_name_slot(line, strlen(line), s);
}

static void test_name_slots(void)
{
    fp_cmd_name_slot s;
    CHECK(slot_of("watch sho", &s) && s.nwords == 0 && strcmp(s.kind, "function") == 0);
    CHECK_EQ_INT(s.word_start, 6);
    CHECK(slot_of("watch shop Cart to", &s) && s.nwords == 2);
    CHECK_STR(s.words[0], "shop");
    CHECK_STR(s.words[1], "Cart");
    CHECK(!slot_of("watch shop Cart total ", &s)); /* all three names given */
    /* Options and their values are not names. */
    CHECK(slot_of("watch -x 2 --expr args shop ", &s) && s.nwords == 1);
    CHECK_STR(s.words[0], "shop");
    CHECK(!slot_of("watch shop -n ", &s));  /* the value of -n */
    CHECK(!slot_of("watch shop --ex", &s)); /* an option being typed */
    CHECK(slot_of("getglobal shop ", &s) && strcmp(s.kind, "global") == 0);
    /* Names only after the flag that introduces them. */
    CHECK(!slot_of("tt ", &s));
    CHECK(slot_of("tt -t shop ", &s) && s.nwords == 1);
    CHECK(slot_of("vmtool -a getInstances -c sh", &s) && strcmp(s.kind, "class") == 0);
    CHECK(!slot_of("vmtool -a getInstances -c shop Cart ", &s));
    CHECK(slot_of("torch profile model ", &s) && s.nwords == 1);
    CHECK_STR(s.words[0], "model");
    CHECK(!slot_of("torch memory -s ", &s));
    CHECK(slot_of("torch memory -r mo", &s) && s.nwords == 0);
    CHECK(!slot_of("stack ", &s));
    CHECK(!slot_of("wat", &s)); /* the command itself */
}

int main(void)
{
    test_tokenize();
    test_blank_and_unknown();
    test_simple_commands();
    test_help();
    test_outside_commands();
    test_streams();
    test_tt();
    test_table();
    test_complete();
    test_name_slots();
    return check_summary();
}
