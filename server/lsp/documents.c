/* The documents the editor has open: their text, kept in step with incremental changes
 * (ranges in the negotiated encoding: UTF-8 bytes or UTF-16 code units), and the functions in
 * that text (pyscan.c), made again only when the text changed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_json.h"
#include "lsp.h"

static lsp_doc *docs;

lsp_doc *lsp_doc_numbered(int number)
{
    for (lsp_doc *d = docs; d; d = d->next)
        if (d->number == number) return d;
    return NULL;
}

lsp_doc *lsp_doc_find(const char *uri)
{
    if (!uri) return NULL;
    for (lsp_doc *d = docs; d; d = d->next)
        if (strcmp(d->uri, uri) == 0) return d;
    return NULL;
}

lsp_doc *lsp_docs_first(void)
{
    return docs;
}

const lsp_defs *lsp_doc_defs(lsp_doc *doc)
{
    if (!doc->defs_valid) {
        lsp_defs_free(&doc->defs);
        lsp_pyscan(doc->text, doc->len, &doc->defs);
        doc->defs_valid = true;
    }
    return &doc->defs;
}

/* ---------------------------------------------------------------------------------------------
 * Uris
 */

static int documents_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool lsp_uri_to_path(const char *uri, char *buf, size_t size)
{
    if (!uri || strncmp(uri, "file://", 7) != 0 || size == 0) return false;
    const char *p = uri + 7;
    if (strncmp(p, "localhost/", 10) == 0) p += 9;
    if (*p != '/') return false;
    size_t n = 0;
    for (; *p && n + 1 < size; p++) {
        int hi, lo;
        if (*p == '%' && (hi = documents_hex(p[1])) >= 0 && (lo = documents_hex(p[2])) >= 0) {
            buf[n++] = (char)(hi * 16 + lo);
            p += 2;
        } else {
            buf[n++] = *p;
        }
    }
    buf[n] = '\0';
    return *p == '\0';
}

char *lsp_path_to_uri(const char *path)
{
    size_t len = strlen(path);
    char *uri = malloc(7 + 3 * len + 1);
    if (!uri) return NULL;
    char *o = uri + sprintf(uri, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return uri;
}

/* ---------------------------------------------------------------------------------------------
 * Positions
 */

/* Bytes of the UTF-8 sequence that starts with c (1 for a stray continuation byte). */
static size_t documents_seq_len(unsigned char c)
{
    if (c >= 0xF0) return 4;
    if (c >= 0xE0) return 3;
    if (c >= 0xC0) return 2;
    return 1;
}

size_t lsp_doc_offset(const lsp_doc *doc, int line, int character)
{
    size_t off = 0;
    for (int l = 0; l < line && off < doc->len; l++) {
        const char *nl = memchr(doc->text + off, '\n', doc->len - off);
        if (!nl) return doc->len;
        off = (size_t)(nl - doc->text) + 1;
    }
    /* character counts units of the negotiated encoding, never past the line's end. */
    int units = 0;
    while (off < doc->len && doc->text[off] != '\n' && units < character) {
        size_t n = documents_seq_len((unsigned char)doc->text[off]);
        if (off + n > doc->len) n = doc->len - off;
        units += lsp.utf8 ? (int)n : (n == 4 ? 2 : 1);
        off += n;
    }
    return off;
}

int lsp_doc_line_end(const lsp_doc *doc, int line)
{
    size_t off = lsp_doc_offset(doc, line, 0);
    int units = 0;
    while (off < doc->len && doc->text[off] != '\n') {
        size_t n = documents_seq_len((unsigned char)doc->text[off]);
        if (off + n > doc->len) n = doc->len - off;
        units += lsp.utf8 ? (int)n : (n == 4 ? 2 : 1);
        off += n;
    }
    return units;
}

int lsp_doc_lines(const lsp_doc *doc)
{
    int n = 1;
    for (size_t i = 0; i < doc->len; i++)
        n += doc->text[i] == '\n';
    return n;
}

/* ---------------------------------------------------------------------------------------------
 * Changes
 */

static bool documents_set(lsp_doc *doc, const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy) return false;
    memcpy(copy, text, len);
    copy[len] = '\0';
    free(doc->text);
    doc->text = copy;
    doc->len = doc->cap = len;
    doc->defs_valid = false;
    return true;
}

/* Replaces bytes [from, to) with text. */
static bool documents_splice(lsp_doc *doc, size_t from, size_t to, const char *text, size_t len)
{
    if (to < from) to = from;
    size_t nlen = doc->len - (to - from) + len;
    char *n = malloc(nlen + 1);
    if (!n) return false;
    memcpy(n, doc->text, from);
    memcpy(n + from, text, len);
    memcpy(n + from + len, doc->text + to, doc->len - to);
    n[nlen] = '\0';
    free(doc->text);
    doc->text = n;
    doc->len = doc->cap = nlen;
    doc->defs_valid = false;
    return true;
}

static bool documents_position(const cJSON *pos, int *line, int *character)
{
    const cJSON *l = fp_json_get(pos, "line"), *c = fp_json_get(pos, "character");
    if (!cJSON_IsNumber(l) || !cJSON_IsNumber(c) || l->valuedouble < 0 || c->valuedouble < 0)
        return false;
    *line = (int)l->valuedouble;
    *character = (int)c->valuedouble;
    return true;
}

void lsp_doc_did_open(const cJSON *params)
{
    const cJSON *td = fp_json_get(params, "textDocument");
    const char *uri = fp_json_str(td, "uri", NULL);
    const cJSON *text = fp_json_get(td, "text");
    if (!uri || !cJSON_IsString(text)) {
        lsp_log(2, "didOpen without textDocument.uri and text: ignored");
        return;
    }
    lsp_doc *doc = lsp_doc_find(uri);
    if (!doc) {
        doc = calloc(1, sizeof *doc);
        if (!doc) return;
        static int numbers;
        doc->uri = strdup(uri);
        doc->number = ++numbers;
        char path[4096];
        doc->path = strdup(lsp_uri_to_path(uri, path, sizeof path) ? path : "");
        doc->next = docs;
        docs = doc;
    }
    doc->version = (int)fp_json_num(td, "version", 0);
    documents_set(doc, text->valuestring, strlen(text->valuestring));
    lsp_diagnostics_publish(doc);
}

void lsp_doc_did_change(const cJSON *params)
{
    const cJSON *td = fp_json_get(params, "textDocument");
    lsp_doc *doc = lsp_doc_find(fp_json_str(td, "uri", NULL));
    if (!doc) {
        lsp_log(2, "didChange for a document that is not open: ignored");
        return;
    }
    doc->version = (int)fp_json_num(td, "version", doc->version);
    const cJSON *ch;
    cJSON_ArrayForEach(ch, fp_json_get(params, "contentChanges"))
    {
        const cJSON *text = fp_json_get(ch, "text");
        const cJSON *range = fp_json_get(ch, "range");
        if (!cJSON_IsString(text)) continue;
        if (!range) {
            documents_set(doc, text->valuestring, strlen(text->valuestring));
            continue;
        }
        int l1, c1, l2, c2;
        if (!documents_position(fp_json_get(range, "start"), &l1, &c1) ||
            !documents_position(fp_json_get(range, "end"), &l2, &c2)) {
            lsp_log(2, "didChange with a malformed range: that change is ignored");
            continue;
        }
        size_t from = lsp_doc_offset(doc, l1, c1), to = lsp_doc_offset(doc, l2, c2);
        documents_splice(doc, from, to, text->valuestring, strlen(text->valuestring));
    }
}

static void documents_free(lsp_doc *d)
{
    free(d->uri);
    free(d->path);
    free(d->text);
    lsp_defs_free(&d->defs);
    free(d);
}

void lsp_doc_did_close(const cJSON *params)
{
    const char *uri = fp_json_str(fp_json_get(params, "textDocument"), "uri", NULL);
    for (lsp_doc **dd = &docs; uri && *dd; dd = &(*dd)->next) {
        if (strcmp((*dd)->uri, uri) != 0) continue;
        lsp_doc *d = *dd;
        *dd = d->next;
        /* Its diagnostics go with it: an editor shows closed files' too. */
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "uri", d->uri);
        cJSON_AddArrayToObject(p, "diagnostics");
        lsp_rpc_notify("textDocument/publishDiagnostics", p);
        documents_free(d);
        return;
    }
}

void lsp_doc_did_save(const cJSON *params)
{
    lsp_doc *doc = lsp_doc_find(fp_json_str(fp_json_get(params, "textDocument"), "uri", NULL));
    const cJSON *text = fp_json_get(params, "text");
    if (doc && cJSON_IsString(text))
        documents_set(doc, text->valuestring, strlen(text->valuestring));
    if (doc && lsp.settings.reload_on_save) lsp_reload_on_save(doc);
}

void lsp_docs_free_all(void)
{
    while (docs) {
        lsp_doc *next = docs->next;
        documents_free(docs);
        docs = next;
    }
}
