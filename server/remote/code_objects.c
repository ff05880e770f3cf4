/* Code objects read from outside, cached by address: their name, file, first line and line
 * table are read once, so that a repeated sample costs one small read per frame (the check
 * that the address still holds the same code object: its str pointers and first line). */
#include <stdlib.h>
#include <string.h>

#include "remote_internal.h"

#define CODE_CACHE_CAP 4096 /* a power of two */
#define CODE_PROBES 8
#define CODE_MAX_LINETABLE (1 << 20)

static size_t code_hash(uint64_t addr)
{
    return (size_t)((addr >> 4) * 0x9e3779b97f4a7c15ull >> 32) & (CODE_CACHE_CAP - 1);
}

static void code_entry_clear(fp_remote_code *c)
{
    free(c->name);
    free(c->qualname);
    free(c->file);
    free(c->linetable);
    memset(c, 0, sizeof *c);
}

void fp_remote_code_cache_free(fp_remote_code_cache *cache)
{
    if (!cache->slots) return;
    for (size_t i = 0; i < cache->cap; i++)
        if (cache->slots[i].addr) code_entry_clear(&cache->slots[i]);
    free(cache->slots);
    memset(cache, 0, sizeof *cache);
}

/* How much of the code object's head holds every field the reader uses. */
static size_t code_head_len(const fp_py_layout *l)
{
    long fields[] = {l->code_filename,  l->code_name,        l->code_qualname,
                     l->code_linetable, l->code_firstlineno, l->code_firsttraceable,
                     l->object_type,    l->code_flags};
    long max = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i] > max) max = fields[i];
    return (size_t)max + 8;
}

/* The slot for addr: its entry, a free one, or the one to evict. */
static fp_remote_code *code_slot(fp_remote_code_cache *cache, uint64_t addr)
{
    size_t h = code_hash(addr);
    fp_remote_code *free_slot = NULL;
    for (size_t k = 0; k < CODE_PROBES; k++) {
        fp_remote_code *c = &cache->slots[(h + k) & (CODE_CACHE_CAP - 1)];
        if (c->addr == addr) return c;
        if (!c->addr && !free_slot) free_slot = c;
    }
    return free_slot ? free_slot : &cache->slots[h];
}

static char *code_read_name(fp_remote *r, uint64_t str)
{
    char buf[FP_REMOTE_MAX_STR];
    if (fp_remote_read_str(r, str, buf, sizeof buf) < 0) return NULL;
    return strdup(buf);
}

/* Reads the strings and line table into c (the slot, cleared before). */
static int code_fill(fp_remote *r, fp_remote_code *c, uint64_t addr, const uint8_t *head,
                     size_t hlen)
{
    const fp_py_layout *l = &r->layout;
    c->name = code_read_name(r, c->name_ptr);
    c->qualname = l->code_qualname >= 0
                      ? code_read_name(r, fp_remote_field_ptr(head, hlen, l->code_qualname))
                      : strdup(c->name ? c->name : "");
    c->file = code_read_name(r, c->filename_ptr);
    if (!c->name || !c->qualname || !c->file) return -1;
    uint64_t table = fp_remote_field_ptr(head, hlen, l->code_linetable);
    /* without a line table the frame still has a name: line 0 says "unknown" */
    c->linetable = fp_remote_read_bytes(r, table, CODE_MAX_LINETABLE, &c->linetable_len);
    c->addr = addr;
    return 0;
}

const fp_remote_code *fp_remote_code_get(fp_remote *r, uint64_t addr)
{
    const fp_py_layout *l = &r->layout;
    fp_remote_code_cache *cache = &r->codes;
    if (!cache->slots) {
        cache->slots = calloc(CODE_CACHE_CAP, sizeof *cache->slots);
        if (!cache->slots) return NULL;
        cache->cap = CODE_CACHE_CAP;
    }
    uint8_t head[512];
    size_t hlen = code_head_len(l);
    if (hlen > sizeof head || fp_remote_read(r, addr, head, hlen) != 0) return NULL;
    if (r->code_type && fp_remote_field_ptr(head, hlen, l->object_type) != r->code_type)
        return NULL; /* not a code object (3.13 frames may run other executables) */
    uint64_t file = fp_remote_field_ptr(head, hlen, l->code_filename);
    uint64_t name = fp_remote_field_ptr(head, hlen, l->code_name);
    int firstlineno = fp_remote_field_i32(head, hlen, l->code_firstlineno);

    fp_remote_code *c = code_slot(cache, addr);
    if (c->addr == addr && c->filename_ptr == file && c->name_ptr == name &&
        c->firstlineno == firstlineno)
        return c;
    if (c->addr) {
        code_entry_clear(c);
        cache->used--;
    }
    c->filename_ptr = file;
    c->name_ptr = name;
    c->firstlineno = firstlineno;
    c->firsttraceable = fp_remote_field_i32(head, hlen, l->code_firsttraceable);
    c->flags = fp_remote_field_i32(head, hlen, l->code_flags);
    if (code_fill(r, c, addr, head, hlen) != 0) {
        code_entry_clear(c);
        return NULL;
    }
    cache->used++;
    return c;
}

int fp_remote_code_line(const fp_remote *r, const fp_remote_code *c, long addrq)
{
    if (!c->linetable) return addrq < 0 ? c->firstlineno : 0;
    if (r->minor <= 9)
        return fp_remote_line_lnotab(c->linetable, c->linetable_len, c->firstlineno, addrq);
    if (r->minor == 10)
        return fp_remote_line_310(c->linetable, c->linetable_len, c->firstlineno, addrq);
    return fp_remote_line_locations(c->linetable, c->linetable_len, c->firstlineno, addrq);
}
