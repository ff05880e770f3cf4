/* libFuzzer target: fp-lsp's scanner of Python buffers (server/lsp/pyscan.c) on arbitrary text, as
 * an editor sends it mid-edit. Whatever comes, every def it reports sits on a line that starts
 * with `def`/`class` (lines are never miscounted), its lines are ordered (decorator, def, last
 * line of its body, inside its parent's), its qualname is its parent's plus its name, and the
 * lookups by line and by name agree with the list. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

/* Byte offsets of the start of each line of text (a line per '\n', plus the last). */
static size_t *line_starts(const char *text, size_t len, int *nlines)
{
    int n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    size_t *starts = malloc((size_t)n * sizeof *starts);
    assert(starts);
    int k = 0;
    starts[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') starts[k++] = i + 1;
    *nlines = n;
    return starts;
}

static bool starts_with_word(const char *s, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - s) > n && memcmp(s, word, n) == 0 && (s[n] == ' ' || s[n] == '\t');
}

static const char *skip_blanks(const char *s, const char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

/* The line really is a def (or class) line, as the scanner says. */
static void check_def_line(const char *text, size_t len, const size_t *starts, int nlines,
                           const lsp_def *d)
{
    assert(d->def_line >= 0 && d->def_line < nlines);
    const char *s = text + starts[d->def_line];
    const char *end = text + len;
    s = skip_blanks(s, end);
    if (d->is_async) {
        assert(starts_with_word(s, end, "async"));
        s = skip_blanks(s + 5, end);
    }
    assert(starts_with_word(s, end, d->is_class ? "class" : "def"));
    s = skip_blanks(s + (d->is_class ? 5 : 3), end);
    assert((size_t)(end - s) >= strlen(d->name) && memcmp(s, d->name, strlen(d->name)) == 0);
    if (d->first_line != d->def_line) {
        assert(d->first_line >= 0 && d->first_line < d->def_line);
        const char *at = skip_blanks(text + starts[d->first_line], end);
        assert(at < end && *at == '@');
    }
}

static void check_parent(const lsp_defs *defs, int i)
{
    const lsp_def *d = &defs->defs[i];
    size_t nl = strlen(d->name), ql = strlen(d->qualname);
    assert(nl > 0 && ql >= nl && strcmp(d->qualname + ql - nl, d->name) == 0);
    if (d->depth == 0) {
        assert(strcmp(d->qualname, d->name) == 0);
        return;
    }
    /* Its parent is the nearest def before it one level up, and holds it. */
    int j = i - 1;
    while (j >= 0 && defs->defs[j].depth != d->depth - 1)
        j--;
    assert(j >= 0);
    const lsp_def *p = &defs->defs[j];
    assert(p->def_line < d->def_line && d->last_line <= p->last_line);
    const char *sep = p->is_class ? "." : ".<locals>.";
    size_t pl = strlen(p->qualname), sl = strlen(sep);
    assert(ql == pl + sl + nl && memcmp(d->qualname, p->qualname, pl) == 0 &&
           memcmp(d->qualname + pl, sep, sl) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    lsp_defs defs;
    lsp_pyscan(text, size, &defs);
    int nlines = 0;
    size_t *starts = line_starts(text, size, &nlines);
    for (int i = 0; i < defs.n; i++) {
        const lsp_def *d = &defs.defs[i];
        assert(d->name && d->qualname);
        assert(d->first_line <= d->def_line && d->def_line <= d->last_line);
        assert(d->last_line < nlines);
        if (i > 0) assert(defs.defs[i - 1].def_line < d->def_line); /* one def per line, in order */
        check_def_line(text, size, starts, nlines, d);
        check_parent(&defs, i);
        /* By name: the first def of that name. */
        const lsp_def *f = lsp_defs_find(&defs, d->qualname);
        assert(f && f <= d && strcmp(f->qualname, d->qualname) == 0);
        /* By line: the innermost def holding the line. */
        const lsp_def *at = lsp_defs_at(&defs, d->def_line);
        assert(at && at->first_line <= d->def_line && d->def_line <= at->last_line &&
               at->depth >= d->depth);
    }
    assert(lsp_defs_at(&defs, -1) == NULL && lsp_defs_at(&defs, nlines) == NULL);
    /* The same text gives the same defs. */
    lsp_defs again;
    lsp_pyscan(text, size, &again);
    assert(again.n == defs.n);
    for (int i = 0; i < defs.n; i++)
        assert(strcmp(again.defs[i].qualname, defs.defs[i].qualname) == 0 &&
               again.defs[i].last_line == defs.defs[i].last_line);
    lsp_defs_free(&again);
    lsp_defs_free(&defs);
    free(starts);
    return 0;
}
