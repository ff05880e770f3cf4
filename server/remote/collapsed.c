/* Collapsed stacks, the plain-text exchange format of flame graph tools: one line per
 * distinct stack, "root;...;leaf COUNT", threads merged. Frame names are the full labels
 * ("hot_loop (/srv/app/hot.py:12)") with ';' and line breaks made harmless. */
#include <stdlib.h>
#include <string.h>

#include "fp_profile.h"

static const fp_profile *collapsed_ctx;

/* Orders stacks by their frames so that equal stacks of different threads are neighbours. */
static int collapsed_cmp(const void *a, const void *b)
{
    const fp_profile_stack *sa = fp_profile_stack_at(collapsed_ctx, *(const int *)a);
    const fp_profile_stack *sb = fp_profile_stack_at(collapsed_ctx, *(const int *)b);
    int n = sa->nframes < sb->nframes ? sa->nframes : sb->nframes;
    for (int i = 0; i < n; i++)
        if (sa->frames[i] != sb->frames[i]) return sa->frames[i] < sb->frames[i] ? -1 : 1;
    return sa->nframes - sb->nframes;
}

static bool collapsed_same(const fp_profile_stack *a, const fp_profile_stack *b)
{
    return a->nframes == b->nframes &&
           memcmp(a->frames, b->frames, (size_t)a->nframes * sizeof *a->frames) == 0;
}

static void collapsed_frame(FILE *f, const fp_profile_frame *fr)
{
    char label[1024];
    fp_profile_frame_label(fr, true, label, sizeof label);
    for (char *c = label; *c; c++)
        if (*c == ';' || *c == '\n' || *c == '\r') *c = ':';
    fputs(label, f);
}

static int collapsed_write(const fp_profile *p, FILE *f, fp_error *err)
{
    int n = fp_profile_nstacks(p);
    int *order = malloc(((size_t)n + 1) * sizeof *order);
    if (!order) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    for (int i = 0; i < n; i++)
        order[i] = i;
    collapsed_ctx = p;
    qsort(order, (size_t)n, sizeof *order, collapsed_cmp);
    for (int i = 0; i < n;) {
        const fp_profile_stack *s = fp_profile_stack_at(p, order[i]);
        uint64_t count = 0;
        int j = i;
        for (; j < n && collapsed_same(s, fp_profile_stack_at(p, order[j])); j++)
            count += fp_profile_stack_at(p, order[j])->count;
        i = j;
        /* A sample with no frame at all (a thread between two Python calls) has no line. */
        if (s->nframes == 0) continue;
        for (int k = 0; k < s->nframes; k++) {
            if (k) fputc(';', f);
            collapsed_frame(f, fp_profile_frame_at(p, s->frames[k]));
        }
        fprintf(f, " %llu\n", (unsigned long long)count);
    }
    free(order);
    return 0;
}

const fp_recorder fp_collapsed_recorder = {
    .format = "collapsed",
    .default_file = "profile.collapsed",
    .description = "collapsed stacks, one \"root;...;leaf COUNT\" line per stack",
    .write = collapsed_write,
};
