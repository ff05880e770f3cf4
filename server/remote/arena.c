/* The one arena of the out-of-process readers: copies appended to large blocks and freed all at
 * once (a snapshot of a thousand frames costs a few allocations, not thousands), and an
 * interner over it (one copy of each distinct string: equal strings become equal pointers,
 * which the profile's tables compare, and symbol names live as long as their handle). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "remote_internal.h"

#define ARENA_BLOCK 65536

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[]; /* aligned for anything */
} arena_block;

struct fp_remote_arena {
    arena_block *head;
    const char **strings; /* interned, open addressing on their hash */
    size_t nstrings, strings_cap;
};

fp_remote_arena *fp_remote_arena_new(void)
{
    return calloc(1, sizeof(fp_remote_arena));
}

void *fp_remote_arena_alloc(fp_remote_arena *a, size_t len, size_t align)
{
    if (!a) return NULL;
    arena_block *b = a->head;
    size_t at = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || at + len > b->cap) {
        size_t cap = len + align > ARENA_BLOCK ? len + align : ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        at = 0;
    }
    b->used = at + len;
    return (char *)b->data + at;
}

const char *fp_remote_arena_strdup(fp_remote_arena *a, const char *s)
{
    if (!s) s = "";
    size_t len = strlen(s) + 1;
    char *p = fp_remote_arena_alloc(a, len, 1);
    if (!p) return "?";
    memcpy(p, s, len);
    return p;
}

static uint64_t arena_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int arena_strings_grow(fp_remote_arena *a)
{
    size_t cap = a->strings_cap ? a->strings_cap * 2 : 1024;
    const char **t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < a->strings_cap; i++) {
        if (!a->strings[i]) continue;
        size_t j = arena_hash(a->strings[i]) & (cap - 1);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = a->strings[i];
    }
    free(a->strings);
    a->strings = t;
    a->strings_cap = cap;
    return 0;
}

const char *fp_remote_arena_intern(fp_remote_arena *a, const char *s)
{
    if (!a || !s) return NULL;
    if ((a->nstrings + 1) * 2 > a->strings_cap && arena_strings_grow(a) != 0) return NULL;
    size_t mask = a->strings_cap - 1;
    size_t j = arena_hash(s) & mask;
    for (; a->strings[j]; j = (j + 1) & mask)
        if (strcmp(a->strings[j], s) == 0) return a->strings[j];
    size_t len = strlen(s) + 1;
    char *copy = fp_remote_arena_alloc(a, len, 1);
    if (!copy) return NULL;
    memcpy(copy, s, len);
    a->strings[j] = copy;
    a->nstrings++;
    return copy;
}

void fp_remote_arena_free(fp_remote_arena *a)
{
    if (!a) return;
    while (a->head) {
        arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
    free(a->strings);
    free(a);
}
