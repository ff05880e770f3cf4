/* The functions and classes of a Python buffer, found by their `def`/`class` lines and their
 * indentation, and named as Python names them (co_qualname: "Cart.add", "outer.<locals>.inner").
 * It reads logical lines (brackets, backslashes and strings may span physical lines) and skips
 * comments and strings, so a `def` in a docstring is not one. It never fails: a buffer in the
 * middle of an edit gives what can be read of it. Lenses are matched to the running code by
 * these names, not by line numbers, so they stay on their function while lines move. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

#define PYSCAN_MAX_DEPTH 64

typedef struct pyscan {
    const char *s;
    size_t len, pos;
    int line; /* 0-based line of pos */
} pyscan;

/* Skips a string literal starting at pos (at its quote, after any prefix). */
static void pyscan_string(pyscan *p)
{
    char q = p->s[p->pos];
    bool triple = p->pos + 2 < p->len && p->s[p->pos + 1] == q && p->s[p->pos + 2] == q;
    p->pos += triple ? 3 : 1;
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '\\' && p->pos + 1 < p->len) {
            if (p->s[p->pos + 1] == '\n') p->line++;
            p->pos += 2;
            continue;
        }
        if (c == '\n') {
            if (!triple) return; /* an unterminated string ends at its line */
            p->line++;
        }
        if (c == q &&
            (!triple || (p->pos + 2 < p->len && p->s[p->pos + 1] == q && p->s[p->pos + 2] == q))) {
            p->pos += triple ? 3 : 1;
            return;
        }
        p->pos++;
    }
}

/* Skips to the end of the logical line that starts at pos; returns its last physical line. */
static int pyscan_logical_end(pyscan *p)
{
    int depth = 0;
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n')
                p->pos++;
            continue;
        }
        if (c == '"' || c == '\'') {
            pyscan_string(p);
            continue;
        }
        if (c == '\\' && p->pos + 1 < p->len && p->s[p->pos + 1] == '\n') {
            p->pos += 2;
            p->line++;
            continue;
        }
        if (c == '(' || c == '[' || c == '{') depth++;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
        if (c == '\n') {
            if (depth == 0) {
                int last = p->line;
                p->pos++;
                p->line++;
                return last;
            }
            p->line++;
        }
        p->pos++;
    }
    return p->line;
}

static bool pyscan_word(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len > n && strncmp(s, word, n) == 0 && (s[n] == ' ' || s[n] == '\t');
}

static void pyscan_add(lsp_defs *out, int *cap, const lsp_def *d)
{
    if (out->n == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        lsp_def *grown = realloc(out->defs, (size_t)ncap * sizeof *grown);
        if (!grown) return;
        out->defs = grown;
        *cap = ncap;
    }
    out->defs[out->n++] = *d;
}

void lsp_pyscan(const char *text, size_t len, lsp_defs *out)
{
    out->defs = NULL;
    out->n = 0;
    int cap = 0;
    pyscan p = {.s = text, .len = len};
    /* The defs still open, innermost last: their index in out and their indentation. */
    int open[PYSCAN_MAX_DEPTH], open_indent[PYSCAN_MAX_DEPTH], nopen = 0;
    int last_code_line = -1; /* the last line of the last logical line with code */
    int decorator_line = -1; /* the first of the decorators right above, -1: none */
    while (p.pos < p.len) {
        /* Indentation of this physical line. */
        int indent = 0;
        size_t start = p.pos;
        while (p.pos < p.len && (text[p.pos] == ' ' || text[p.pos] == '\t')) {
            indent = text[p.pos] == '\t' ? (indent / 8 + 1) * 8 : indent + 1;
            p.pos++;
        }
        if (p.pos >= p.len) break;
        char c = text[p.pos];
        if (c == '\n' || c == '#' || c == '\r') { /* blank or comment: closes nothing */
            while (p.pos < p.len && text[p.pos] != '\n')
                p.pos++;
            if (p.pos < p.len) p.pos++;
            p.line++;
            continue;
        }
        (void)start;
        int line = p.line;
        /* A statement at this indentation closes the defs indented as much or more. */
        while (nopen > 0 && open_indent[nopen - 1] >= indent) {
            out->defs[open[nopen - 1]].last_line = last_code_line;
            nopen--;
        }
        const char *w = text + p.pos;
        size_t left = p.len - p.pos;
        bool is_async = pyscan_word(w, left, "async");
        if (is_async) {
            size_t k = 5;
            while (k < left && (w[k] == ' ' || w[k] == '\t'))
                k++;
            w += k;
            left -= k;
        }
        bool is_def = pyscan_word(w, left, "def");
        bool is_class = !is_async && pyscan_word(w, left, "class");
        bool is_decorator = c == '@';
        if ((is_def || is_class) && nopen < PYSCAN_MAX_DEPTH) {
            size_t k = is_def ? 3 : 5;
            while (k < left && (w[k] == ' ' || w[k] == '\t'))
                k++;
            size_t n0 = k;
            while (k < left &&
                   (isalnum((unsigned char)w[k]) || w[k] == '_' || (unsigned char)w[k] >= 0x80))
                k++;
            if (k > n0) {
                lsp_def d = {0};
                d.name = strndup(w + n0, k - n0);
                d.is_class = is_class;
                d.is_async = is_async;
                d.def_line = line;
                d.first_line = decorator_line >= 0 ? decorator_line : line;
                d.depth = nopen;
                const lsp_def *parent = nopen ? &out->defs[open[nopen - 1]] : NULL;
                if (!parent) {
                    d.qualname = strdup(d.name);
                } else {
                    const char *sep = parent->is_class ? "." : ".<locals>.";
                    size_t qn = strlen(parent->qualname) + strlen(sep) + strlen(d.name) + 1;
                    d.qualname = malloc(qn);
                    if (d.qualname)
                        snprintf(d.qualname, qn, "%s%s%s", parent->qualname, sep, d.name);
                }
                int before = out->n;
                if (d.name && d.qualname) pyscan_add(out, &cap, &d);
                if (out->n > before) {
                    open[nopen] = out->n - 1;
                    open_indent[nopen] = indent;
                    nopen++;
                } else {
                    free(d.name);
                    free(d.qualname);
                }
            }
        }
        last_code_line = pyscan_logical_end(&p);
        if (is_decorator) {
            if (decorator_line < 0) decorator_line = line;
        } else {
            decorator_line = -1;
        }
        /* A one-line def (def f(): pass) ends on its line; its body is that line. */
        if ((is_def || is_class) && nopen > 0 && out->defs[open[nopen - 1]].def_line == line)
            out->defs[open[nopen - 1]].last_line = last_code_line;
    }
    while (nopen > 0) {
        out->defs[open[nopen - 1]].last_line = last_code_line;
        nopen--;
    }
}

void lsp_defs_free(lsp_defs *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->defs[i].name);
        free(d->defs[i].qualname);
    }
    free(d->defs);
    d->defs = NULL;
    d->n = 0;
}

const lsp_def *lsp_defs_at(const lsp_defs *d, int line)
{
    const lsp_def *best = NULL;
    for (int i = 0; i < d->n; i++) {
        const lsp_def *f = &d->defs[i];
        if (line >= f->first_line && line <= f->last_line && (!best || f->depth > best->depth))
            best = f;
    }
    return best;
}

const lsp_def *lsp_defs_find(const lsp_defs *d, const char *qualname)
{
    for (int i = 0; qualname && i < d->n; i++)
        if (strcmp(d->defs[i].qualname, qualname) == 0) return &d->defs[i];
    return NULL;
}
