/* The interactive shell: a libedit prompt "fp PID> " with history and tab completion of
 * command names and options; plain line reading when stdin is not a terminal (scripts).
 * Also the line-editor helpers the console reuses. */
#include "fp_cli.h"
#include "fp_json.h"
#include "fp_safe.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define SHELL_HISTORY_SIZE 1000
#define SHELL_MAX_MATCHES 128

/* ---- line-editor helpers */

unsigned char shell_insert_completion(EditLine *el, size_t wlen, const char *const *matches, int n,
                                      bool space_after_one)
{
    if (n <= 0) return CC_REFRESH_BEEP;
    size_t common = strlen(matches[0]);
    for (int i = 1; i < n; i++) {
        size_t k = 0;
        while (k < common && matches[i][k] == matches[0][k])
            k++;
        common = k;
    }
    if (common > wlen || (n == 1 && space_after_one)) {
        char ins[512];
        snprintf(ins, sizeof ins, "%.*s%s", (int)(common - wlen), matches[0] + wlen,
                 n == 1 && space_after_one ? " " : "");
        if (ins[0] && el_insertstr(el, ins) != 0) return CC_ERROR;
        return CC_REFRESH;
    }
    /* Nothing to add: show the choices in columns, then the prompt and the line again. */
    size_t width = 0;
    for (int i = 0; i < n; i++)
        if (strlen(matches[i]) > width) width = strlen(matches[i]);
    width += 2;
    struct winsize ws;
    size_t cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col ? ws.ws_col : 80;
    size_t per_row = cols / width ? cols / width : 1;
    size_t rows = ((size_t)n + per_row - 1) / per_row;
    fputc('\n', stdout);
    for (size_t r = 0; r < rows; r++) {
        /* Down the columns, as ls does: alphabetical order reads top to bottom. */
        for (size_t col = 0; col < per_row; col++) {
            size_t i = col * rows + r;
            if (i >= (size_t)n) break;
            bool last = col + 1 == per_row || (col + 1) * rows + r >= (size_t)n;
            if (last)
                fputs(matches[i], stdout);
            else
                printf("%-*s", (int)width, matches[i]);
            if (last) break;
        }
        fputc('\n', stdout);
    }
    fflush(stdout);
    return CC_REDISPLAY;
}

EditLine *shell_editor(const char *name, char *(*prompt_fn)(EditLine *),
                       unsigned char (*complete_fn)(EditLine *, int), void *clientdata,
                       History **hist)
{
    /* The editor writes its own terminal sequences: it gets the streams under the filter. */
    EditLine *el = el_init(name, stdin, safe_real(stdout), safe_real(stderr));
    if (!el) return NULL;
    HistEvent ev;
    *hist = history_init();
    if (*hist) {
        history(*hist, &ev, H_SETSIZE, SHELL_HISTORY_SIZE);
        history(*hist, &ev, H_SETUNIQUE, 1);
        el_set(el, EL_HIST, history, *hist);
    }
    el_set(el, EL_EDITOR, "emacs");
    el_set(el, EL_PROMPT, prompt_fn);
    el_set(el, EL_CLIENTDATA, clientdata);
    /* Our SIGINT handler must see Ctrl-C (it interrupts the read); libedit's own signal
     * handling would re-send the signal to the whole process group. */
    el_set(el, EL_SIGNAL, 0);
    if (complete_fn) {
        el_set(el, EL_ADDFN, "fp-complete", "complete", complete_fn);
        el_set(el, EL_BIND, "^I", "fp-complete", NULL);
    }
    el_source(el, NULL); /* the user's ~/.editrc, as every libedit program does */
    return el;
}

void shell_editor_end(EditLine *el, History *hist)
{
    if (el) el_end(el);
    if (hist) history_end(hist);
}

char *shell_read(EditLine *el, History *hist, bool *interrupted)
{
    *interrupted = false;
    cli_interrupted = 0;
    int count = 0;
    errno = 0;
    const char *line = el_gets(el, &count);
    if (!line || count <= 0) {
        if (cli_interrupted || errno == EINTR) {
            /* Ctrl-C: drop what was typed, start a fresh line. */
            *interrupted = true;
            el_reset(el);
            fputc('\n', stdout);
            fflush(stdout);
            return NULL;
        }
        fputc('\n', stdout); /* Ctrl-D leaves the cursor after the prompt */
        fflush(stdout);
        return NULL;
    }
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    char *copy = strndup(line, n);
    if (copy && hist && n > 0) {
        HistEvent ev;
        history(hist, &ev, H_ENTER, copy);
    }
    return copy;
}

/* ---- the fp shell */

static char shell_prompt_text[64];

static char *shell_prompt(EditLine *el)
{
    (void)el;
    return shell_prompt_text;
}

/* The agent answers a completion at once (it reads namespaces, runs no code); a process whose
 * GIL is held gets a beep after this long rather than a frozen prompt. */
#define SHELL_COMPLETE_TIMEOUT_MS 1500

/* Names of the process for the word being typed (modules, classes, functions, globals), from
 * the agent's `complete` method. */
static unsigned char shell_complete_names(EditLine *el, cli *c, const fp_cmd_name_slot *slot,
                                          const char *text)
{
    if (!c->session || c->detached) return CC_REFRESH_BEEP;
    cJSON *params = cJSON_CreateObject();
    cJSON *words = cJSON_AddArrayToObject(params, "words");
    for (int i = 0; i < slot->nwords; i++)
        cJSON_AddItemToArray(words, cJSON_CreateString(slot->words[i]));
    cJSON_AddStringToObject(params, "text", text);
    cJSON_AddStringToObject(params, "kind", slot->kind);
    cJSON_AddNumberToObject(params, "limit", SHELL_MAX_MATCHES);
    fp_error e;
    cJSON *r = fp_session_call(c->session, "complete", params, SHELL_COMPLETE_TIMEOUT_MS,
                               &cli_interrupted, &e);
    if (!r) return CC_REFRESH_BEEP;
    const char *m[SHELL_MAX_MATCHES];
    int n = 0;
    const cJSON *match;
    cJSON_ArrayForEach(match, fp_json_get(r, "matches"))
    {
        const char *name = fp_json_str(match, "name", NULL);
        if (name && n < SHELL_MAX_MATCHES) m[n++] = name;
    }
    unsigned char rc = shell_insert_completion(el, strlen(text), m, n, true);
    cJSON_Delete(r);
    return rc;
}

static unsigned char shell_complete(EditLine *el, int ch)
{
    (void)ch;
    const LineInfo *li = el_line(el);
    size_t cursor = (size_t)(li->cursor - li->buffer);
    char line[1024];
    if (cursor >= sizeof line) return CC_REFRESH_BEEP;
    memcpy(line, li->buffer, cursor);
    line[cursor] = '\0';
    const char *m[SHELL_MAX_MATCHES];
    size_t ws = 0;
    int n = fp_commands_complete(line, cursor, m, SHELL_MAX_MATCHES, &ws);
    fp_cmd_name_slot slot;
    if (n == 0 && fp_commands_name_slot(line, cursor, &slot)) {
        cli *c = NULL;
        el_get(el, EL_CLIENTDATA, &c);
        if (c) return shell_complete_names(el, c, &slot, line + slot.word_start);
    }
    return shell_insert_completion(el, cursor - ws, m, n, true);
}

static void shell_history_path(char *buf, size_t size)
{
    const char *home = getenv("HOME");
    if (home && home[0])
        snprintf(buf, size, "%s/.fp_history", home);
    else
        buf[0] = '\0';
}

static int shell_interactive(cli *c)
{
    snprintf(shell_prompt_text, sizeof shell_prompt_text, "fp %d> ", c->pid);
    History *hist = NULL;
    EditLine *el = shell_editor("fp", shell_prompt, shell_complete, c, &hist);
    if (!el) {
        fp_error e;
        fp_error_set(&e, FP_E_INTERNAL, NULL, "cannot start the line editor");
        run_report(c, NULL, &e, NULL);
        return CLI_EXIT_FAILED;
    }
    char path[4096];
    shell_history_path(path, sizeof path);
    HistEvent ev;
    if (hist && path[0]) history(hist, &ev, H_LOAD, path);

    for (;;) {
        bool interrupted;
        char *line = shell_read(el, hist, &interrupted);
        if (!line) {
            if (interrupted) continue;
            break;
        }
        const char *p = line + strspn(line, " \t");
        if (*p) {
            run_history_add(c, line);
            run_line(c, line);
        }
        free(line);
        if (c->quit) break;
    }
    if (hist && path[0]) history(hist, &ev, H_SAVE, path);
    shell_editor_end(el, hist);
    return CLI_EXIT_OK;
}

/* Commands from a pipe or a file: no prompt, and the status says whether any failed. */
static int shell_script(cli *c)
{
    int status = CLI_EXIT_OK;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (!c->quit && (n = getline(&line, &cap, stdin)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        const char *p = line + strspn(line, " \t");
        if (!*p || *p == '#') continue;
        run_history_add(c, line);
        int rc = run_line(c, line);
        if (rc != CLI_EXIT_OK) status = rc;
    }
    free(line);
    return status;
}

int shell_run(cli *c)
{
    return c->interactive ? shell_interactive(c) : shell_script(c);
}
