/* The string storage of a snapshot: copies appended to large blocks and freed all at once,
 * so that a snapshot of a thousand frames costs a few allocations, not thousands. */
#include <stdlib.h>
#include <string.h>

#include "remote_internal.h"

#define ARENA_BLOCK 65536

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    char data[];
} arena_block;

struct fp_remote_arena {
    arena_block *head;
};

fp_remote_arena *fp_remote_arena_new(void)
{
    return calloc(1, sizeof(fp_remote_arena));
}

static char *arena_alloc(fp_remote_arena *a, size_t len)
{
    arena_block *b = a->head;
    if (!b || b->cap - b->used < len) {
        size_t cap = len > ARENA_BLOCK ? len : ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = b->data + b->used;
    b->used += len;
    return p;
}

const char *fp_remote_arena_strdup(fp_remote_arena *a, const char *s)
{
    if (!s) s = "";
    size_t len = strlen(s) + 1;
    char *p = a ? arena_alloc(a, len) : NULL;
    if (!p) return "?";
    memcpy(p, s, len);
    return p;
}

void fp_remote_arena_free(fp_remote_arena *a)
{
    if (!a) return;
    while (a->head) {
        arena_block *next = a->head->next;
        free(a->head);
        a->head = next;
    }
    free(a);
}
