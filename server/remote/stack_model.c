/* The `stack` command's model built from a snapshot: threads with their frames outermost
 * first, like a traceback, each Python frame with its source line read from the file the
 * target sees, with the target's rights (fp_source.h). The schema is in protocol/methods.md. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fp_proc.h"
#include "fp_source.h"
#include "remote_internal.h"

#define MODEL_MAX_FILES 64
#define MODEL_MAX_FILE (8 << 20) /* source files bigger than this are not read */
#define MODEL_MAX_LINE 1000

/* ===================================================================== source lines */

typedef struct model_file {
    char *path; /* as the code object names it */
    char *data; /* NULL: not readable */
    size_t len;
} model_file;

typedef struct model_sources {
    int pid;
    fp_source_reader *reader; /* made at the first file */
    model_file files[MODEL_MAX_FILES];
    int n;
} model_sources;

/* The file as the target sees it and with the target's rights (fp_source.h): root must never
 * show lines of a file the target's user could not read. */
static model_file *model_open(model_sources *s, const char *path)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->files[i].path, path) == 0) return &s->files[i];
    if (s->n == MODEL_MAX_FILES) return NULL;
    model_file *f = &s->files[s->n];
    f->path = strdup(path);
    if (!f->path) return NULL;
    s->n++;
    if (!s->reader) s->reader = fp_source_reader_new(s->pid);
    f->data = fp_source_read(s->reader, path, MODEL_MAX_FILE, &f->len);
    return f;
}

static void model_sources_free(model_sources *s)
{
    for (int i = 0; i < s->n; i++) {
        free(s->files[i].path);
        free(s->files[i].data);
    }
    fp_source_reader_free(s->reader);
}

/* Valid UTF-8 from bytes: anything else becomes '?', so that the model is always valid JSON
 * text for any reader. */
static void model_utf8(const char *in, size_t len, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < size;) {
        unsigned char c = (unsigned char)in[i];
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + (size_t)n <= len && !(n == 1 && c < 0x20 && c != '\t');
        for (int k = 1; ok && k < n; k++)
            ok = ((unsigned char)in[i + k] >> 6) == 2;
        if (!ok) {
            out[o++] = c < 0x20 ? ' ' : '?';
            i++;
            continue;
        }
        memcpy(out + o, in + i, (size_t)n);
        o += (size_t)n;
        i += (size_t)n;
    }
    out[o] = '\0';
}

/* Line number `line` of the file, stripped of surrounding blanks, in buf ("" if none). */
static const char *model_source_line(model_sources *s, const char *path, int line, char *buf,
                                     size_t size)
{
    buf[0] = '\0';
    if (line <= 0 || !path[0] || path[0] == '<') return buf; /* <string>, <frozen ...> */
    model_file *f = model_open(s, path);
    if (!f || !f->data) return buf;
    const char *p = f->data, *end = f->data + f->len;
    for (int n = 1; n < line && p < end; n++) {
        p = memchr(p, '\n', (size_t)(end - p));
        if (!p) return buf;
        p++;
    }
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    while (p < eol && isspace((unsigned char)*p))
        p++;
    while (eol > p && isspace((unsigned char)eol[-1]))
        eol--;
    size_t len = (size_t)(eol - p);
    if (len > MODEL_MAX_LINE) len = MODEL_MAX_LINE;
    model_utf8(p, len, buf, size);
    return buf;
}

/* ===================================================================== the model */

static const char *model_state_name(char state)
{
    switch (state) {
    case 'R':
        return "running";
    case 'S':
        return "sleeping";
    case 'D':
        return "uninterruptible";
    case 'T':
        return "stopped";
    case 't':
        return "traced";
    case 'Z':
        return "zombie";
    case 'I':
        return "idle";
    default:
        return "unknown";
    }
}

static void model_add_string(cJSON *o, const char *key, const char *value)
{
    char buf[FP_REMOTE_MAX_STR * 2];
    model_utf8(value ? value : "", value ? strlen(value) : 0, buf, sizeof buf);
    cJSON_AddStringToObject(o, key, buf);
}

static cJSON *model_frame(model_sources *src, const fp_frame *f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    bool native = f->kind == FP_FRAME_NATIVE;
    model_add_string(o, "file", f->file);
    cJSON_AddNumberToObject(o, "line", native ? 0 : f->line);
    /* function: co_name, as tracebacks (and the agent's stack) name it; qualname: with the
     * class (3.11+ knows it; before, the same as function) */
    model_add_string(o, "function", native || !f->name ? f->function : f->name);
    if (!native) model_add_string(o, "qualname", f->function);
    char line[MODEL_MAX_LINE * 2];
    cJSON_AddStringToObject(
        o, "source", native ? "" : model_source_line(src, f->file, f->line, line, sizeof line));
    cJSON_AddStringToObject(o, "kind", native ? "native" : "python");
    if (native) {
        char addr[32];
        snprintf(addr, sizeof addr, "0x%llx", (unsigned long long)f->addr);
        cJSON_AddStringToObject(o, "addr", addr);
        cJSON_AddNumberToObject(o, "offset", (double)f->offset);
    }
    return o;
}

static cJSON *model_thread(model_sources *src, const fp_thread *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "ident", (double)t->ident);
    if (t->native_id > 0)
        cJSON_AddNumberToObject(o, "native_id", t->native_id);
    else
        cJSON_AddNullToObject(o, "native_id");
    model_add_string(o, "name", t->thread_name ? t->thread_name : t->name);
    if (t->daemon >= 0)
        cJSON_AddBoolToObject(o, "daemon", t->daemon);
    else
        cJSON_AddNullToObject(o, "daemon");
    cJSON_AddBoolToObject(o, "main", t->is_main);
    cJSON_AddBoolToObject(o, "holds_gil", t->holds_gil);
    cJSON_AddBoolToObject(o, "python", t->tstate != 0);
    char state[2] = {t->state ? t->state : '?', 0};
    cJSON_AddStringToObject(o, "state", state);
    cJSON_AddStringToObject(o, "state_name", model_state_name(t->state));
    cJSON *frames = cJSON_AddArrayToObject(o, "frames");
    /* outermost first, like a traceback: the snapshot lists the innermost first */
    for (int i = t->nframes - 1; frames && i >= 0; i--)
        cJSON_AddItemToArray(frames, model_frame(src, &t->frames[i]));
    return o;
}

cJSON *fp_remote_stack_model(const fp_remote *r, const fp_remote_snapshot *s)
{
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cJSON_AddNumberToObject(m, "pid", r->pid);
    cJSON_AddStringToObject(m, "python_version", r->version);
    cJSON_AddStringToObject(m, "source", "outside");
    cJSON_AddNumberToObject(m, "pause_ms", s->pause_ms);
    cJSON *threads = cJSON_AddArrayToObject(m, "threads");
    model_sources src = {.pid = r->pid};
    for (int i = 0; threads && i < s->nthreads; i++)
        cJSON_AddItemToArray(threads, model_thread(&src, &s->threads[i]));
    model_sources_free(&src);
    return m;
}
