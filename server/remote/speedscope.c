/* speedscope's file format (https://www.speedscope.app/file-format-schema.json): the
 * functions once in shared.frames, then one "sampled" profile per thread whose samples are
 * the distinct stacks (root first) weighted by their counts, so the file stays small. */
#include <stdlib.h>

#include "fp_profile.h"

static cJSON *speedscope_frames(const fp_profile *p)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < fp_profile_nframes(p); i++) {
        const fp_profile_frame *f = fp_profile_frame_at(p, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", f->function);
        cJSON_AddStringToObject(o, "file", f->file);
        if (f->kind == FP_FRAME_PYTHON && f->first_line > 0)
            cJSON_AddNumberToObject(o, "line", f->first_line);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static cJSON *speedscope_thread(const fp_profile *p, int thread)
{
    const fp_profile_thread *t = fp_profile_thread_at(p, thread);
    char name[96];
    snprintf(name, sizeof name, "%s (thread %d)", t->name[0] ? t->name : "?", t->native_id);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "sampled");
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "unit", "none");
    cJSON_AddNumberToObject(o, "startValue", 0);
    cJSON *samples = cJSON_AddArrayToObject(o, "samples");
    cJSON *weights = cJSON_AddArrayToObject(o, "weights");
    uint64_t total = 0;
    for (int i = 0; i < fp_profile_nstacks(p); i++) {
        const fp_profile_stack *s = fp_profile_stack_at(p, i);
        if (s->thread != thread) continue;
        cJSON_AddItemToArray(samples, cJSON_CreateIntArray(s->frames, s->nframes));
        cJSON_AddItemToArray(weights, cJSON_CreateNumber((double)s->count));
        total += s->count;
    }
    cJSON_AddNumberToObject(o, "endValue", (double)total);
    return o;
}

static int speedscope_busiest(const fp_profile *p)
{
    int n = fp_profile_nthreads(p), best = 0;
    uint64_t *counts = calloc((size_t)n + 1, sizeof *counts);
    if (!counts) return 0;
    for (int i = 0; i < fp_profile_nstacks(p); i++) {
        const fp_profile_stack *s = fp_profile_stack_at(p, i);
        counts[s->thread] += s->count - s->idle;
    }
    for (int t = 1; t < n; t++)
        if (counts[t] > counts[best]) best = t;
    free(counts);
    return best;
}

static cJSON *speedscope_model(const fp_profile *p)
{
    const fp_profile_meta *m = fp_profile_meta_get(p);
    char name[128];
    snprintf(name, sizeof name, "fp perf: process %d (Python %s), %.0f Hz", m->pid,
             m->python[0] ? m->python : "?", m->rate_hz);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "$schema", "https://www.speedscope.app/file-format-schema.json");
    cJSON_AddStringToObject(root, "name", name);
    cJSON_AddStringToObject(root, "exporter", "fp " FP_VERSION);
    /* Open on the busiest thread: the main thread is often only waiting for the others. */
    cJSON_AddNumberToObject(root, "activeProfileIndex", speedscope_busiest(p));
    cJSON *shared = cJSON_AddObjectToObject(root, "shared");
    cJSON_AddItemToObject(shared, "frames", speedscope_frames(p));
    cJSON *profiles = cJSON_AddArrayToObject(root, "profiles");
    for (int t = 0; t < fp_profile_nthreads(p); t++)
        cJSON_AddItemToArray(profiles, speedscope_thread(p, t));
    return root;
}

static int speedscope_write(const fp_profile *p, FILE *f, fp_error *err)
{
    cJSON *root = speedscope_model(p);
    char *text = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    fputs(text, f);
    fputc('\n', f);
    cJSON_free(text);
    return 0;
}

const fp_recorder fp_speedscope_recorder = {
    .format = "speedscope",
    .default_file = "profile.speedscope.json",
    .description = "speedscope JSON (open it at speedscope.app or in its local build)",
    .write = speedscope_write,
};
