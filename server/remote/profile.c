/* The aggregated profile behind perf: functions, threads, stacks and lines, each interned
 * once with its counts, so that a long run at 1000 Hz costs memory in proportion to the
 * distinct stacks, not to the samples. Also the summary model and the recorder registry. */
#include "fp_profile.h"
#include "fp_outfile.h"

#include "remote_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct profile_index {
    int *slots;
    size_t cap;
} profile_index;

struct fp_profile {
    fp_profile_meta meta;
    uint64_t samples;
    fp_remote_arena *arena; /* interned strings, the stacks' frame lists */

    fp_profile_frame *frames;
    uint64_t *frame_seen; /* the sample that last counted it in total */
    int nframes, frames_cap;
    profile_index frame_index;

    fp_profile_thread *threads;
    int nthreads, threads_cap, last_thread;

    fp_profile_stack *stacks;
    uint64_t *stack_hash;
    int nstacks, stacks_cap;
    profile_index stack_index;

    fp_profile_line *lines;
    uint64_t *line_seen;
    int nlines, lines_cap;
    profile_index line_index;

    int *scratch; /* one sample's frame indexes */
    int scratch_cap;
};

/* ===================================================================== memory */

static uint64_t profile_hash_bytes(uint64_t h, const void *data, size_t len)
{
    const unsigned char *s = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 1099511628211ull; /* FNV-1a */
    return h;
}

/* The profile's own copy of s: the snapshot that lent it is freed after each sample, and
 * equal strings become equal pointers, which the tables below compare. */
static const char *profile_intern(fp_profile *p, const char *s)
{
    return fp_remote_arena_intern(p->arena, s ? s : "??");
}

static bool profile_reserve(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap) return true;
    int ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *a = realloc(*arr, (size_t)ncap * elem);
    if (!a) return false;
    *arr = a;
    *cap = ncap;
    return true;
}

/* ===================================================================== index tables */

typedef bool (*profile_eq_fn)(const fp_profile *p, int idx, const void *key);

/* The slot for key: holding its index, or free (-1). count is the entries in the table. */
static int *profile_index_slot(const fp_profile *p, profile_index *ix, uint64_t hash,
                               const void *key, profile_eq_fn eq)
{
    size_t mask = ix->cap - 1;
    size_t j = hash & mask;
    while (ix->slots[j] >= 0 && !eq(p, ix->slots[j], key))
        j = (j + 1) & mask;
    return &ix->slots[j];
}

/* Keeps the table at most half full; hashes come back from hash_of(p, idx). */
static bool profile_index_fit(fp_profile *p, profile_index *ix, int count,
                              uint64_t (*hash_of)(const fp_profile *p, int idx))
{
    if ((size_t)(count + 1) * 2 <= ix->cap) return true;
    size_t cap = ix->cap ? ix->cap * 2 : 256;
    int *slots = malloc(cap * sizeof *slots);
    if (!slots) return false;
    memset(slots, 0xff, cap * sizeof *slots);
    for (int i = 0; i < count; i++) {
        size_t j = hash_of(p, i) & (cap - 1);
        while (slots[j] >= 0)
            j = (j + 1) & (cap - 1);
        slots[j] = i;
    }
    free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return true;
}

/* ---- functions (frames) */

typedef struct profile_frame_key {
    fp_frame_kind kind;
    const char *function, *file; /* interned */
    int first_line;
} profile_frame_key;

static uint64_t profile_frame_hash(const profile_frame_key *k)
{
    uint64_t h = 1469598103934665603ull;
    h = profile_hash_bytes(h, &k->kind, sizeof k->kind);
    h = profile_hash_bytes(h, &k->function, sizeof k->function);
    h = profile_hash_bytes(h, &k->file, sizeof k->file);
    return profile_hash_bytes(h, &k->first_line, sizeof k->first_line);
}

static uint64_t profile_frame_hash_of(const fp_profile *p, int i)
{
    const fp_profile_frame *f = &p->frames[i];
    profile_frame_key k = {f->kind, f->function, f->file, f->first_line};
    return profile_frame_hash(&k);
}

static bool profile_frame_eq(const fp_profile *p, int i, const void *key)
{
    const profile_frame_key *k = key;
    const fp_profile_frame *f = &p->frames[i];
    return f->kind == k->kind && f->function == k->function && f->file == k->file &&
           f->first_line == k->first_line;
}

static int profile_frame_id(fp_profile *p, const fp_frame *fr)
{
    profile_frame_key k = {fr->kind, profile_intern(p, fr->function), profile_intern(p, fr->file),
                           fr->kind == FP_FRAME_PYTHON ? fr->first_line : 0};
    if (!k.function || !k.file) return -1;
    if (!profile_index_fit(p, &p->frame_index, p->nframes, profile_frame_hash_of)) return -1;
    int *slot =
        profile_index_slot(p, &p->frame_index, profile_frame_hash(&k), &k, profile_frame_eq);
    if (*slot >= 0) return *slot;
    int cap = p->frames_cap;
    if (!profile_reserve((void **)&p->frames, &cap, p->nframes + 1, sizeof *p->frames)) return -1;
    int cap2 = p->frames_cap;
    if (!profile_reserve((void **)&p->frame_seen, &cap2, p->nframes + 1, sizeof *p->frame_seen))
        return -1;
    p->frames_cap = cap;
    p->frames[p->nframes] = (fp_profile_frame){k.kind, k.function, k.file, k.first_line, 0, 0};
    p->frame_seen[p->nframes] = 0;
    *slot = p->nframes;
    return p->nframes++;
}

/* ---- stacks */

typedef struct profile_stack_key {
    int thread;
    const int *frames;
    int nframes;
    uint64_t hash;
} profile_stack_key;

static uint64_t profile_stack_hash(int thread, const int *frames, int n)
{
    uint64_t h = profile_hash_bytes(1469598103934665603ull, &thread, sizeof thread);
    return profile_hash_bytes(h, frames, (size_t)n * sizeof *frames);
}

static uint64_t profile_stack_hash_of(const fp_profile *p, int i)
{
    return p->stack_hash[i];
}

static bool profile_stack_eq(const fp_profile *p, int i, const void *key)
{
    const profile_stack_key *k = key;
    const fp_profile_stack *s = &p->stacks[i];
    return p->stack_hash[i] == k->hash && s->thread == k->thread && s->nframes == k->nframes &&
           memcmp(s->frames, k->frames, (size_t)k->nframes * sizeof *k->frames) == 0;
}

static fp_profile_stack *profile_stack(fp_profile *p, int thread, const int *frames, int n)
{
    profile_stack_key k = {thread, frames, n, profile_stack_hash(thread, frames, n)};
    if (!profile_index_fit(p, &p->stack_index, p->nstacks, profile_stack_hash_of)) return NULL;
    int *slot = profile_index_slot(p, &p->stack_index, k.hash, &k, profile_stack_eq);
    if (*slot >= 0) return &p->stacks[*slot];
    int cap = p->stacks_cap;
    if (!profile_reserve((void **)&p->stacks, &cap, p->nstacks + 1, sizeof *p->stacks)) return NULL;
    int cap2 = p->stacks_cap;
    if (!profile_reserve((void **)&p->stack_hash, &cap2, p->nstacks + 1, sizeof *p->stack_hash))
        return NULL;
    p->stacks_cap = cap;
    int *copy = n ? fp_remote_arena_alloc(p->arena, (size_t)n * sizeof *copy, sizeof *copy) : NULL;
    if (n && !copy) return NULL;
    if (n) memcpy(copy, frames, (size_t)n * sizeof *copy);
    p->stacks[p->nstacks] = (fp_profile_stack){thread, copy, n, 0, 0};
    p->stack_hash[p->nstacks] = k.hash;
    *slot = p->nstacks;
    return &p->stacks[p->nstacks++];
}

/* ---- lines */

typedef struct profile_line_key {
    const char *file; /* interned */
    int line;
} profile_line_key;

static uint64_t profile_line_hash(const profile_line_key *k)
{
    uint64_t h = profile_hash_bytes(1469598103934665603ull, &k->file, sizeof k->file);
    return profile_hash_bytes(h, &k->line, sizeof k->line);
}

static uint64_t profile_line_hash_of(const fp_profile *p, int i)
{
    profile_line_key k = {p->lines[i].file, p->lines[i].line};
    return profile_line_hash(&k);
}

static bool profile_line_eq(const fp_profile *p, int i, const void *key)
{
    const profile_line_key *k = key;
    return p->lines[i].file == k->file && p->lines[i].line == k->line;
}

static int profile_line_id(fp_profile *p, const fp_profile_frame *f, int line)
{
    profile_line_key k = {f->file, line};
    if (!profile_index_fit(p, &p->line_index, p->nlines, profile_line_hash_of)) return -1;
    int *slot = profile_index_slot(p, &p->line_index, profile_line_hash(&k), &k, profile_line_eq);
    if (*slot >= 0) return *slot;
    int cap = p->lines_cap;
    if (!profile_reserve((void **)&p->lines, &cap, p->nlines + 1, sizeof *p->lines)) return -1;
    int cap2 = p->lines_cap;
    if (!profile_reserve((void **)&p->line_seen, &cap2, p->nlines + 1, sizeof *p->line_seen))
        return -1;
    p->lines_cap = cap;
    p->lines[p->nlines] = (fp_profile_line){f->file, line, f->function, f->first_line, 0, 0};
    p->line_seen[p->nlines] = 0;
    *slot = p->nlines;
    return p->nlines++;
}

/* ---- threads */

static int profile_thread_id(fp_profile *p, const fp_thread *t)
{
    /* Few threads, and consecutive samples are mostly of the same one. */
    if (p->last_thread < p->nthreads && p->threads[p->last_thread].native_id == t->native_id)
        return p->last_thread;
    for (int i = 0; i < p->nthreads; i++)
        if (p->threads[i].native_id == t->native_id) return p->last_thread = i;
    if (!profile_reserve((void **)&p->threads, &p->threads_cap, p->nthreads + 1,
                         sizeof *p->threads))
        return -1;
    fp_profile_thread *nt = &p->threads[p->nthreads];
    nt->native_id = t->native_id;
    snprintf(nt->name, sizeof nt->name, "%s", t->name);
    return p->last_thread = p->nthreads++;
}

/* ===================================================================== public */

fp_profile *fp_profile_new(void)
{
    fp_profile *p = calloc(1, sizeof(fp_profile));
    if (p && !(p->arena = fp_remote_arena_new())) {
        free(p);
        return NULL;
    }
    return p;
}

void fp_profile_free(fp_profile *p)
{
    if (!p) return;
    fp_remote_arena_free(p->arena);
    free(p->frames);
    free(p->frame_seen);
    free(p->frame_index.slots);
    free(p->threads);
    free(p->stacks);
    free(p->stack_hash);
    free(p->stack_index.slots);
    free(p->lines);
    free(p->line_seen);
    free(p->line_index.slots);
    free(p->scratch);
    free(p);
}

/* Counts the Python lines of one sample: self for the innermost, total once each. */
static int profile_add_lines(fp_profile *p, const fp_frame *frames, int nframes)
{
    bool innermost = true;
    for (int i = 0; i < nframes; i++) {
        const fp_frame *fr = &frames[i];
        if (fr->kind != FP_FRAME_PYTHON || fr->line <= 0) continue;
        /* frames[i]'s function was interned by the caller; find it again for the line. */
        const fp_profile_frame *f = &p->frames[p->scratch[nframes - 1 - i]];
        int id = profile_line_id(p, f, fr->line);
        if (id < 0) return -1;
        if (innermost) p->lines[id].self++;
        innermost = false;
        if (p->line_seen[id] == p->samples) continue;
        p->line_seen[id] = p->samples;
        p->lines[id].total++;
    }
    return 0;
}

int fp_profile_add(fp_profile *p, const fp_thread *t, const fp_frame *frames, int nframes,
                   bool idle)
{
    if (!profile_reserve((void **)&p->scratch, &p->scratch_cap, nframes + 1, sizeof *p->scratch))
        return -1;
    int thread = profile_thread_id(p, t);
    if (thread < 0) return -1;
    p->samples++;
    /* Root first: innermost-first frames go to the end of the scratch array. */
    for (int i = 0; i < nframes; i++) {
        int id = profile_frame_id(p, &frames[i]);
        if (id < 0) return -1;
        p->scratch[nframes - 1 - i] = id;
        if (i == 0) p->frames[id].self++;
        if (p->frame_seen[id] == p->samples) continue;
        p->frame_seen[id] = p->samples;
        p->frames[id].total++;
    }
    fp_profile_stack *s = profile_stack(p, thread, p->scratch, nframes);
    if (!s) return -1;
    s->count++;
    if (idle) s->idle++;
    return profile_add_lines(p, frames, nframes);
}

fp_profile_meta *fp_profile_meta_of(fp_profile *p)
{
    return &p->meta;
}

const fp_profile_meta *fp_profile_meta_get(const fp_profile *p)
{
    return &p->meta;
}

uint64_t fp_profile_samples(const fp_profile *p)
{
    return p->samples;
}

int fp_profile_nframes(const fp_profile *p)
{
    return p->nframes;
}

const fp_profile_frame *fp_profile_frame_at(const fp_profile *p, int i)
{
    return &p->frames[i];
}

int fp_profile_nthreads(const fp_profile *p)
{
    return p->nthreads;
}

const fp_profile_thread *fp_profile_thread_at(const fp_profile *p, int i)
{
    return &p->threads[i];
}

int fp_profile_nstacks(const fp_profile *p)
{
    return p->nstacks;
}

const fp_profile_stack *fp_profile_stack_at(const fp_profile *p, int i)
{
    return &p->stacks[i];
}

int fp_profile_nlines(const fp_profile *p)
{
    return p->nlines;
}

const fp_profile_line *fp_profile_line_at(const fp_profile *p, int i)
{
    return &p->lines[i];
}

void fp_profile_frame_label(const fp_profile_frame *f, bool full_path, char *buf, size_t size)
{
    const char *file = f->file;
    if (!full_path) {
        const char *slash = strrchr(file, '/');
        if (slash && slash[1]) file = slash + 1;
    }
    if (f->kind == FP_FRAME_PYTHON)
        snprintf(buf, size, "%s (%s:%d)", f->function, file, f->first_line);
    else
        snprintf(buf, size, "%s (%s)", f->function, file);
}

/* ===================================================================== summary model */

static const fp_profile *profile_sort_ctx;

static int profile_by_self(const void *a, const void *b)
{
    const fp_profile_frame *fa = &profile_sort_ctx->frames[*(const int *)a];
    const fp_profile_frame *fb = &profile_sort_ctx->frames[*(const int *)b];
    if (fa->self != fb->self) return fa->self < fb->self ? 1 : -1;
    if (fa->total != fb->total) return fa->total < fb->total ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

static int profile_by_total(const void *a, const void *b)
{
    const fp_profile_frame *fa = &profile_sort_ctx->frames[*(const int *)a];
    const fp_profile_frame *fb = &profile_sort_ctx->frames[*(const int *)b];
    if (fa->total != fb->total) return fa->total < fb->total ? 1 : -1;
    if (fa->self != fb->self) return fa->self < fb->self ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

static int profile_line_by_self(const void *a, const void *b)
{
    const fp_profile_line *la = &profile_sort_ctx->lines[*(const int *)a];
    const fp_profile_line *lb = &profile_sort_ctx->lines[*(const int *)b];
    if (la->self != lb->self) return la->self < lb->self ? 1 : -1;
    if (la->total != lb->total) return la->total < lb->total ? 1 : -1;
    return *(const int *)a - *(const int *)b;
}

static const char *profile_kind_name(fp_frame_kind k)
{
    return k == FP_FRAME_PYTHON ? "python" : "native";
}

static double profile_pct(uint64_t n, uint64_t of)
{
    return of ? 100.0 * (double)n / (double)of : 0.0;
}

static cJSON *profile_function_model(const fp_profile *p, int i)
{
    const fp_profile_frame *f = &p->frames[i];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "function", f->function);
    cJSON_AddStringToObject(o, "file", f->file);
    cJSON_AddNumberToObject(o, "line", f->first_line);
    cJSON_AddStringToObject(o, "kind", profile_kind_name(f->kind));
    cJSON_AddNumberToObject(o, "self", (double)f->self);
    cJSON_AddNumberToObject(o, "total", (double)f->total);
    cJSON_AddNumberToObject(o, "self_pct", profile_pct(f->self, p->samples));
    cJSON_AddNumberToObject(o, "total_pct", profile_pct(f->total, p->samples));
    return o;
}

static void profile_add_top(cJSON *model, const char *key, const fp_profile *p, int *order, int n,
                            int top, int (*cmp)(const void *, const void *), bool need_self)
{
    profile_sort_ctx = p;
    qsort(order, (size_t)n, sizeof *order, cmp);
    cJSON *arr = cJSON_AddArrayToObject(model, key);
    for (int i = 0; i < n && i < top; i++) {
        if (need_self && p->frames[order[i]].self == 0) break;
        cJSON_AddItemToArray(arr, profile_function_model(p, order[i]));
    }
}

static void profile_add_meta(cJSON *model, const fp_profile *p)
{
    const fp_profile_meta *m = &p->meta;
    cJSON_AddNumberToObject(model, "pid", m->pid);
    cJSON_AddStringToObject(model, "python", m->python);
    cJSON_AddNumberToObject(model, "rate_hz", m->rate_hz);
    cJSON_AddNumberToObject(model, "achieved_hz", m->achieved_hz);
    cJSON_AddNumberToObject(model, "duration_s", m->duration_s);
    cJSON_AddNumberToObject(model, "ticks", (double)m->ticks);
    cJSON_AddNumberToObject(model, "samples", (double)p->samples);
    cJSON_AddNumberToObject(model, "lost", (double)m->lost);
    cJSON_AddNumberToObject(model, "threads", p->nthreads);
    cJSON_AddBoolToObject(model, "native", m->native);
    cJSON_AddBoolToObject(model, "gil", m->gil_only);
    cJSON_AddBoolToObject(model, "idle", m->idle);
    cJSON_AddNumberToObject(model, "read_ms_avg", m->read_ms_avg);
    cJSON_AddNumberToObject(model, "read_ms_max", m->read_ms_max);
    cJSON_AddNumberToObject(model, "resyncs", (double)m->resyncs);
}

static void profile_add_lines_model(cJSON *model, const fp_profile *p, int lines)
{
    int *order = malloc(((size_t)p->nlines + 1) * sizeof *order);
    cJSON *arr = cJSON_AddArrayToObject(model, "lines");
    if (!order) return;
    for (int i = 0; i < p->nlines; i++)
        order[i] = i;
    profile_sort_ctx = p;
    qsort(order, (size_t)p->nlines, sizeof *order, profile_line_by_self);
    for (int i = 0; i < p->nlines && i < lines; i++) {
        const fp_profile_line *l = &p->lines[order[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", l->file);
        cJSON_AddNumberToObject(o, "line", l->line);
        cJSON_AddStringToObject(o, "function", l->function);
        cJSON_AddNumberToObject(o, "self", (double)l->self);
        cJSON_AddNumberToObject(o, "total", (double)l->total);
        cJSON_AddNumberToObject(o, "self_pct", profile_pct(l->self, p->samples));
        cJSON_AddNumberToObject(o, "total_pct", profile_pct(l->total, p->samples));
        cJSON_AddItemToArray(arr, o);
    }
    free(order);
}

cJSON *fp_profile_summary_model(const fp_profile *p, int top, int lines)
{
    cJSON *model = cJSON_CreateObject();
    if (!model) return NULL;
    profile_add_meta(model, p);
    int *order = malloc(((size_t)p->nframes + 1) * sizeof *order);
    if (!order) {
        cJSON_Delete(model);
        return NULL;
    }
    for (int i = 0; i < p->nframes; i++)
        order[i] = i;
    profile_add_top(model, "top_self", p, order, p->nframes, top, profile_by_self, true);
    profile_add_top(model, "top_total", p, order, p->nframes, top, profile_by_total, false);
    free(order);
    profile_add_lines_model(model, p, lines);
    return model;
}

/* ===================================================================== recorders */

const fp_recorder *fp_recorder_find(const char *format)
{
    static const fp_recorder *const all[] = {&fp_flamegraph_recorder, &fp_speedscope_recorder,
                                             &fp_collapsed_recorder};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->format, format) == 0) return all[i];
    return NULL;
}

int fp_recorder_write_file(const fp_recorder *rec, const fp_profile *p, const char *path,
                           fp_error *err)
{
    /* Written beside the destination and renamed over it (fp_outfile.h): a failed or
     * interrupted write never leaves half a flame graph where the last good one was. */
    fp_outfile o;
    if (fp_outfile_begin(&o, path, err) != 0) return -1;
    if (rec->write(p, o.f, err) != 0) {
        fp_outfile_abort(&o);
        return -1;
    }
    return fp_outfile_commit(&o, err);
}
