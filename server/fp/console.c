/* The `console` command: a Python REPL whose code runs inside the target. Each line goes to
 * the agent (console.eval), which says whether the statement needs more lines; at a
 * terminal it has prompts and tab completion (console.complete), from a pipe it runs the
 * lines it reads, silently, like `python < script.py`. */
#include "fp_cli.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fp_rpc.h"

/* Completion must feel instant; a target too busy to answer this fast gets a beep. */
#define CONSOLE_COMPLETE_MS 2000
#define CONSOLE_CLOSE_MS 2000
#define CONSOLE_MAX_MATCHES 256

typedef struct console {
    cli *c;
    int session;
    bool more; /* the agent waits for the rest of a statement */
} console;

static char *console_prompt_ps1(EditLine *el)
{
    console *k = NULL;
    el_get(el, EL_CLIENTDATA, &k);
    return k && k->more ? "... " : ">>> ";
}

static bool console_word_char(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_' || ch == '.';
}

static unsigned char console_complete(EditLine *el, int ch)
{
    (void)ch;
    console *k = NULL;
    el_get(el, EL_CLIENTDATA, &k);
    const LineInfo *li = el_line(el);
    size_t cursor = (size_t)(li->cursor - li->buffer);
    size_t ws = cursor;
    while (ws > 0 && console_word_char(li->buffer[ws - 1]))
        ws--;
    /* Tab at the start of a line indents, as in Python's own REPL. */
    bool blank = true;
    for (size_t i = 0; i < ws; i++)
        blank = blank && (li->buffer[i] == ' ' || li->buffer[i] == '\t');
    if (ws == cursor && blank) {
        el_insertstr(el, "    ");
        return CC_REFRESH;
    }
    if (!k || ws == cursor) return CC_REFRESH_BEEP;

    char *word = strndup(li->buffer + ws, cursor - ws);
    if (!word) return CC_ERROR;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "session", k->session);
    cJSON_AddStringToObject(params, "text", word);
    fp_error e;
    fp_error_clear(&e);
    cJSON *r =
        fp_session_call(k->c->session, "console.complete", params, CONSOLE_COMPLETE_MS, NULL, &e);
    const char *m[CONSOLE_MAX_MATCHES];
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r, "matches"))
    {
        if (n < CONSOLE_MAX_MATCHES && cJSON_IsString(it) &&
            strncmp(it->valuestring, word, strlen(word)) == 0)
            m[n++] = it->valuestring;
    }
    unsigned char res = shell_insert_completion(el, strlen(word), m, n, false);
    cJSON_Delete(r);
    free(word);
    return res;
}

/* One line to the agent. Returns 0, 1 when the console should end (exit() or the session is
 * gone), -1 when this line failed but the console goes on. */
static int console_eval(console *k, const char *source)
{
    cli *c = k->c;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "session", k->session);
    cJSON_AddStringToObject(params, "source", source);
    fp_error e;
    fp_error_clear(&e);
    cli_interrupted = 0;
    cJSON *r = run_call(c, "console.eval", params, &e);
    if (!r) {
        if (e.code == FP_E_INTERRUPTED) {
            fflush(stdout);
            if (isatty(STDERR_FILENO)) fputc('\n', stderr); /* after the echoed ^C */
            fprintf(stderr, "KeyboardInterrupt: fp stopped waiting; the code keeps running in "
                            "the process\n");
            k->more = false;
            return -1;
        }
        run_report(c, "console", &e, fp_session_last_error(c->session));
        if (e.code == FP_E_CLOSED) {
            c->detached = true;
            c->quit = true;
            return 1;
        }
        /* The agent lost the session (-32001 missing session): nothing more will work. */
        return e.code == FP_E_REMOTE && e.rpc_code != FP_ERR_NOT_FOUND ? -1 : 1;
    }
    if (c->json) {
        run_emit_json("console.eval", "result", r);
    } else {
        const char *out = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "output"));
        if (out) fputs(out, stdout);
        fflush(stdout);
    }
    k->more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "more"));
    bool done = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "exit"));
    cJSON_Delete(r);
    return done ? 1 : 0;
}

static int console_loop_terminal(console *k)
{
    History *hist = NULL;
    EditLine *el = shell_editor("fp-console", console_prompt_ps1, console_complete, k, &hist);
    if (!el) return -1;
    for (;;) {
        bool interrupted;
        char *line = shell_read(el, hist, &interrupted);
        if (!line) {
            if (!interrupted) break;
            if (k->more)
                fprintf(stderr, "(the statement stays open: an empty line ends it, Ctrl-D "
                                "leaves)\n");
            else
                fprintf(stderr, "KeyboardInterrupt\n");
            continue;
        }
        int r = console_eval(k, line);
        free(line);
        if (r == 1) break;
    }
    shell_editor_end(el, hist);
    return 0;
}

static int console_loop_pipe(console *k)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int failed = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        int r = console_eval(k, line);
        if (r < 0) failed = 1;
        if (r == 1) {
            free(line);
            return failed;
        }
    }
    free(line);
    /* End of input inside a block runs the block, as python does with a script. */
    if (k->more && console_eval(k, "") < 0) failed = 1;
    return failed;
}

int console_run(cli *c)
{
    fp_error e;
    fp_error_clear(&e);
    cli_interrupted = 0;
    cJSON *r = run_call(c, "console.open", cJSON_CreateObject(), &e);
    if (!r) {
        run_report(c, "console", &e, fp_session_last_error(c->session));
        if (e.code == FP_E_CLOSED) c->detached = c->quit = true;
        return CLI_EXIT_FAILED;
    }
    console k = {.c = c};
    k.session = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "session"));
    bool terminal = isatty(STDIN_FILENO);
    if (c->json) {
        run_emit_json("console.open", "result", r);
    } else if (terminal) {
        const char *banner = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "banner"));
        if (banner && banner[0])
            printf("%s\n", banner);
        else
            printf("Python console in process %d; Ctrl-D leaves\n", c->pid);
        fflush(stdout);
    }
    cJSON_Delete(r);

    int failed = terminal ? console_loop_terminal(&k) : console_loop_pipe(&k);

    if (!c->detached) {
        cJSON *params = cJSON_CreateObject();
        cJSON_AddNumberToObject(params, "session", k.session);
        fp_error_clear(&e);
        cJSON *closed =
            fp_session_call(c->session, "console.close", params, CONSOLE_CLOSE_MS, NULL, &e);
        if (c->json && closed) run_emit_json("console.close", "result", closed);
        cJSON_Delete(closed);
        if (!closed && e.code == FP_E_CLOSED) {
            /* The process died (or the agent went) while the console waited for input. */
            run_report(c, "console", &e, NULL);
            c->detached = c->quit = true;
            failed = 1;
        }
    }
    return failed ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}
