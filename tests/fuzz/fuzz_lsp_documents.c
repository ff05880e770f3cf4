/* libFuzzer target: fp-lsp's open documents (server/lsp/documents.c) under arbitrary
 * textDocument/didOpen and incremental didChange edits, in either position encoding. After
 * every edit the document's text is exactly the text before it with the range replaced, the
 * range's offsets never leave the text (nor, in valid UTF-8, the line they name), the functions
 * found in it are those of a fresh scan, and uris and paths convert back and forth.
 *
 * Input: a flags byte (bit 0: UTF-8 positions, else UTF-16), the initial text (a length byte,
 * then its bytes), then edits: [kind, l1, c1, l2, c2, n, n bytes of text]. kind % 4: 0 a range,
 * 1 the whole text, 2 a malformed range (ignored), 3 a range with large numbers (clamped). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

#define DOC_URI "file:///fuzz/doc%20one.py"

typedef struct input {
    const uint8_t *p;
    size_t left;
} input;

static bool take(input *in, uint8_t *b)
{
    if (in->left == 0) return false;
    *b = *in->p++;
    in->left--;
    return true;
}

/* n bytes of text, NULs left out (a JSON string holds none once decoded). */
static char *take_text(input *in, size_t n)
{
    if (n > in->left) n = in->left;
    char *t = malloc(n + 1);
    assert(t);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (in->p[i]) t[k++] = (char)in->p[i];
    t[k] = '\0';
    in->p += n;
    in->left -= n;
    return t;
}

/* ---------------------------------------------------------------------------------------------
 * The reference: what a position means, by code points, for valid UTF-8
 */

static bool utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (n == 0 || i + n > len) return false;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

static size_t ref_offset(const char *s, size_t len, int line, int character, bool utf8)
{
    size_t off = 0;
    for (int l = 0; l < line; l++) {
        while (off < len && s[off] != '\n')
            off++;
        if (off == len) return len; /* past the last line: the end */
        off++;
    }
    int units = 0;
    while (off < len && s[off] != '\n' && units < character) {
        unsigned char c = (unsigned char)s[off];
        size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        units += utf8 ? (int)n : (n == 4 ? 2 : 1); /* UTF-16: astral code points are pairs */
        off += n;
    }
    return off;
}

/* ---------------------------------------------------------------------------------------------
 * The editor's messages
 */

static cJSON *position(int line, int character)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "line", line);
    cJSON_AddNumberToObject(p, "character", character);
    return p;
}

static void did_open(const char *text)
{
    cJSON *params = cJSON_CreateObject();
    cJSON *td = cJSON_AddObjectToObject(params, "textDocument");
    cJSON_AddStringToObject(td, "uri", DOC_URI);
    cJSON_AddStringToObject(td, "languageId", "python");
    cJSON_AddNumberToObject(td, "version", 1);
    cJSON_AddStringToObject(td, "text", text);
    lsp_doc_did_open(params);
    cJSON_Delete(params);
}

static void did_change(int version, const cJSON *range, const char *text)
{
    cJSON *params = cJSON_CreateObject();
    cJSON *td = cJSON_AddObjectToObject(params, "textDocument");
    cJSON_AddStringToObject(td, "uri", DOC_URI);
    cJSON_AddNumberToObject(td, "version", version);
    cJSON *changes = cJSON_AddArrayToObject(params, "contentChanges");
    cJSON *ch = cJSON_CreateObject();
    if (range) cJSON_AddItemToObject(ch, "range", cJSON_Duplicate(range, 1));
    cJSON_AddStringToObject(ch, "text", text);
    cJSON_AddItemToArray(changes, ch);
    lsp_doc_did_change(params);
    cJSON_Delete(params);
}

static int number(uint8_t b, bool large)
{
    return large ? (int)b * 4099 : (b < 250 ? b : (b - 249) * 1000);
}

/* The document's defs are a fresh scan's. */
static void check_defs(lsp_doc *doc)
{
    const lsp_defs *cached = lsp_doc_defs(doc);
    lsp_defs fresh;
    lsp_pyscan(doc->text, doc->len, &fresh);
    assert(cached->n == fresh.n);
    for (int i = 0; i < fresh.n; i++)
        assert(strcmp(cached->defs[i].qualname, fresh.defs[i].qualname) == 0 &&
               cached->defs[i].def_line == fresh.defs[i].def_line);
    lsp_defs_free(&fresh);
}

static void check_uri(const char *text)
{
    /* A path made of the text's first line converts to a uri and back. */
    char path[512] = "/";
    size_t n = 1;
    for (const char *p = text; *p && *p != '\n' && n + 1 < sizeof path; p++)
        path[n++] = *p;
    path[n] = '\0';
    char *uri = lsp_path_to_uri(path);
    assert(uri && strncmp(uri, "file:///", 8) == 0);
    char back[4096];
    assert(lsp_uri_to_path(uri, back, sizeof back) && strcmp(back, path) == 0);
    free(uri);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    uint8_t flags = 0, n = 0;
    if (!take(&in, &flags) || !take(&in, &n)) return 0;
    lsp.utf8 = flags & 1;
    char *model = take_text(&in, n);
    did_open(model);
    lsp_doc *doc = lsp_doc_find(DOC_URI);
    assert(doc && strcmp(doc->text, model) == 0 && strcmp(doc->path, "/fuzz/doc one.py") == 0);
    check_uri(model);
    int version = 1;
    uint8_t e[6];
    for (;;) {
        size_t got = 0;
        while (got < sizeof e && take(&in, &e[got]))
            got++;
        if (got < sizeof e) break;
        char *text = take_text(&in, e[5]);
        int kind = e[0] % 4;
        bool large = kind == 3;
        int l1 = number(e[1], large), c1 = number(e[2], large);
        int l2 = number(e[3], large), c2 = number(e[4], large);
        size_t mlen = strlen(model);
        char *want;
        cJSON *range = NULL;
        if (kind == 1) {
            want = strdup(text);
        } else {
            range = cJSON_CreateObject();
            cJSON_AddItemToObject(range, "start", position(kind == 2 ? -l1 - 1 : l1, c1));
            cJSON_AddItemToObject(range, "end", position(l2, c2));
            size_t from = lsp_doc_offset(doc, l1, c1), to = lsp_doc_offset(doc, l2, c2);
            assert(from <= mlen && to <= mlen);
            if (utf8_valid(model, mlen)) {
                assert(from == ref_offset(model, mlen, l1, c1, lsp.utf8));
                assert(to == ref_offset(model, mlen, l2, c2, lsp.utf8));
            }
            if (kind == 2) {
                want = strdup(model); /* a malformed range: the change is ignored */
            } else {
                if (to < from) to = from;
                size_t tl = strlen(text);
                want = malloc(mlen - (to - from) + tl + 1);
                assert(want);
                memcpy(want, model, from);
                memcpy(want + from, text, tl);
                memcpy(want + from + tl, model + to, mlen - to + 1);
            }
        }
        did_change(++version, range, text);
        cJSON_Delete(range);
        assert(lsp_doc_find(DOC_URI) == doc && doc->version == version);
        assert(doc->len == strlen(doc->text) && strcmp(doc->text, want) == 0);
        free(model);
        model = want;
        free(text);
        check_defs(doc);
    }
    free(model);
    lsp_docs_free_all();
    return 0;
}
