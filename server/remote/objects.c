/* Python objects read from outside: str (every compact kind, converted to UTF-8), bytes, int,
 * dicts (combined and split tables) and instance attributes (__dict__, 3.11+ managed dicts
 * and 3.13 inline values). Every read is bounded; a torn object reads as "not found". */
#include <stdlib.h>
#include <string.h>

#include "remote_internal.h"

#define OBJ_MAX_DICT_ENTRIES 65536
#define OBJ_HEADER_MAX 128 /* bytes of an object header read at once (str, bytes, dict keys) */

/* ===================================================================== str */

static size_t obj_utf8_put(char *out, size_t room, uint32_t cp)
{
    char tmp[4];
    size_t n;
    if (cp >= 0xd800 && cp <= 0xdfff) cp = 0xfffd; /* lone surrogates (surrogateescape) */
    if (cp > 0x10ffff) cp = 0xfffd;
    if (cp < 0x80) {
        tmp[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        tmp[0] = (char)(0xc0 | (cp >> 6));
        tmp[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        tmp[0] = (char)(0xe0 | (cp >> 12));
        tmp[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        tmp[0] = (char)(0xf0 | (cp >> 18));
        tmp[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        tmp[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        tmp[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    if (n > room) return 0;
    memcpy(out, tmp, n);
    return n;
}

/* Code points of width kind (1, 2, 4) to UTF-8 in buf; returns the length written. */
static int obj_to_utf8(const uint8_t *data, size_t count, int kind, char *buf, size_t size)
{
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t cp;
        if (kind == 1) {
            cp = data[i];
        } else if (kind == 2) {
            uint16_t v;
            memcpy(&v, data + 2 * i, 2);
            cp = v;
        } else {
            memcpy(&cp, data + 4 * i, 4);
        }
        size_t n = obj_utf8_put(buf + used, size - 1 - used, cp);
        if (n == 0) break;
        used += n;
    }
    buf[used] = '\0';
    return (int)used;
}

int fp_remote_read_str(fp_remote *r, uint64_t addr, char *buf, size_t size)
{
    const fp_py_layout *l = &r->layout;
    uint8_t head[OBJ_HEADER_MAX];
    size_t hlen = (size_t)l->unicode_compact_data + 8;
    if (size == 0 || hlen > sizeof head || fp_remote_read(r, addr, head, hlen) != 0) return -1;
    int64_t length = (int64_t)fp_remote_field_ptr(head, hlen, l->unicode_length);
    uint32_t state = (uint32_t)fp_remote_field_i32(head, hlen, l->unicode_state);
    int kind = (state >> 2) & 7;
    bool compact = (state >> 5) & 1, ascii = (state >> 6) & 1;
    if (length < 0 || length > (1 << 20) || (kind != 1 && kind != 2 && kind != 4) ||
        (ascii && kind != 1))
        return -1;
    uint64_t data;
    if (compact)
        data = addr + (uint64_t)(ascii ? l->unicode_ascii_data : l->unicode_compact_data);
    else
        data = fp_remote_field_ptr(head, hlen, l->unicode_data_any); /* a legacy str */
    /* at most as many code points as fit: each takes one byte of UTF-8 at least */
    size_t count = (size_t)length < size - 1 ? (size_t)length : size - 1;
    if (count == 0) {
        buf[0] = '\0';
        return 0;
    }
    uint8_t *raw = malloc(count * (size_t)kind);
    if (!raw) return -1;
    int n = -1;
    if (fp_remote_read(r, data, raw, count * (size_t)kind) == 0)
        n = obj_to_utf8(raw, count, kind, buf, size);
    free(raw);
    return n;
}

/* ===================================================================== bytes, int */

uint8_t *fp_remote_read_bytes(fp_remote *r, uint64_t addr, size_t max, size_t *len)
{
    const fp_py_layout *l = &r->layout;
    uint8_t head[OBJ_HEADER_MAX];
    size_t hlen = (size_t)l->bytes_data;
    *len = 0;
    if (hlen > sizeof head || fp_remote_read(r, addr, head, hlen) != 0) return NULL;
    int64_t size = (int64_t)fp_remote_field_ptr(head, hlen, l->bytes_size);
    if (size < 0 || (uint64_t)size > max) return NULL;
    uint8_t *data = malloc(size ? (size_t)size : 1);
    if (!data) return NULL;
    if (size && fp_remote_read(r, addr + hlen, data, (size_t)size) != 0) {
        free(data);
        return NULL;
    }
    *len = (size_t)size;
    return data;
}

int fp_remote_read_int(fp_remote *r, uint64_t addr, int64_t *out)
{
    const fp_py_layout *l = &r->layout;
    uint8_t buf[64];
    size_t len = (size_t)l->long_digits + 3 * sizeof(uint32_t);
    if (len > sizeof buf || fp_remote_read(r, addr, buf, len) != 0) return -1;
    int64_t tag = (int64_t)fp_remote_field_ptr(buf, len, l->long_size);
    int64_t ndigits;
    bool negative;
    if (r->minor >= 12) {
        /* lv_tag: digit count << 3 | sign (0 positive, 1 zero, 2 negative) */
        ndigits = (int64_t)((uint64_t)tag >> 3);
        negative = (tag & 3) == 2;
    } else {
        ndigits = tag < 0 ? -tag : tag;
        negative = tag < 0;
    }
    if (ndigits > 3) return -1; /* more than 90 bits: not an id */
    uint64_t v = 0;
    for (int64_t i = ndigits - 1; i >= 0; i--) {
        uint32_t d = (uint32_t)fp_remote_field_i32(buf, len, l->long_digits + 4 * (long)i);
        v = (v << 30) | (d & 0x3fffffff);
    }
    *out = negative ? -(int64_t)v : (int64_t)v;
    return 0;
}

/* ===================================================================== dicts */

typedef struct obj_entries {
    uint64_t entries; /* address of the first entry */
    size_t entry_size, key_off, value_off;
    int64_t count;
} obj_entries;

/* Where the entries of the keys object at keys are, and how they look. */
static int obj_keys_entries(fp_remote *r, uint64_t keys, obj_entries *e)
{
    const fp_py_layout *l = &r->layout;
    uint8_t head[OBJ_HEADER_MAX];
    size_t hlen = (size_t)l->keys_indices;
    if (hlen > sizeof head || fp_remote_read(r, keys, head, hlen) != 0) return -1;
    e->count = (int64_t)fp_remote_field_ptr(head, hlen, l->keys_nentries);
    if (e->count < 0 || e->count > OBJ_MAX_DICT_ENTRIES) return -1;
    uint64_t index_bytes;
    if (l->keys_size >= 0) { /* 3.8 - 3.10 */
        int64_t size = (int64_t)fp_remote_field_ptr(head, hlen, l->keys_size);
        if (size <= 0 || size > (int64_t)OBJ_MAX_DICT_ENTRIES * 4) return -1;
        int width = size <= 0xff ? 1 : size <= 0xffff ? 2 : 4;
        index_bytes = (uint64_t)size * (uint64_t)width;
        e->entry_size = 24; /* hash, key, value */
        e->key_off = 8;
        e->value_off = 16;
    } else {
        uint8_t log2_index_bytes = head[l->keys_log2_index_bytes];
        uint8_t kind = head[l->keys_kind];
        if (log2_index_bytes > 24) return -1;
        index_bytes = 1ULL << log2_index_bytes;
        bool general = kind == 0; /* DICT_KEYS_GENERAL; unicode and split keys carry no hash */
        e->entry_size = general ? 24 : 16;
        e->key_off = general ? 8 : 0;
        e->value_off = general ? 16 : 8;
    }
    e->entries = keys + hlen + index_bytes;
    return 0;
}

static bool obj_str_equals(fp_remote *r, uint64_t key, const char *name)
{
    char buf[256];
    int n = fp_remote_read_str(r, key, buf, sizeof buf);
    return n >= 0 && strcmp(buf, name) == 0;
}

/* Calls fn for each live item of the keys object (values: the split table's values array,
 * 0 for a combined table); stops when fn returns true. */
static int obj_keys_each(fp_remote *r, uint64_t keys, uint64_t values, fp_remote_item_fn fn,
                         void *ud)
{
    obj_entries e;
    if (obj_keys_entries(r, keys, &e) != 0) return -1;
    if (e.count == 0) return 0;
    size_t len = (size_t)e.count * e.entry_size;
    uint8_t *buf = malloc(len);
    if (!buf) return -1;
    if (fp_remote_read(r, e.entries, buf, len) != 0) {
        free(buf);
        return -1;
    }
    for (int64_t i = 0; i < e.count; i++) {
        const uint8_t *ent = buf + (size_t)i * e.entry_size;
        uint64_t key = fp_remote_field_ptr(ent, e.entry_size, (long)e.key_off);
        uint64_t value = fp_remote_field_ptr(ent, e.entry_size, (long)e.value_off);
        if (values &&
            fp_remote_read_ptr(r, values + (uint64_t)r->layout.values_values + 8 * (uint64_t)i,
                               &value) != 0)
            continue;
        if (!key || !value) continue; /* a deleted item */
        if (fn(r, key, value, ud)) break;
    }
    free(buf);
    return 0;
}

int fp_remote_dict_each(fp_remote *r, uint64_t dict, fp_remote_item_fn fn, void *ud)
{
    uint64_t head[2];
    const fp_py_layout *l = &r->layout;
    if (fp_remote_read(r, dict + (uint64_t)l->dict_keys, head, sizeof head) != 0 ||
        l->dict_values != l->dict_keys + 8)
        return -1;
    return obj_keys_each(r, head[0], head[1], fn, ud);
}

typedef struct obj_find {
    const char *name;
    uint64_t value;
} obj_find;

static bool obj_find_fn(fp_remote *r, uint64_t key, uint64_t value, void *ud)
{
    obj_find *f = ud;
    if (!obj_str_equals(r, key, f->name)) return false;
    f->value = value;
    return true;
}

uint64_t fp_remote_dict_get(fp_remote *r, uint64_t dict, const char *name)
{
    obj_find f = {name, 0};
    if (!dict || fp_remote_dict_each(r, dict, obj_find_fn, &f) != 0) return 0;
    return f.value;
}

/* ===================================================================== attributes */

#define OBJ_TPFLAGS_INLINE_VALUES (1UL << 2) /* 3.13+ */
#define OBJ_TPFLAGS_MANAGED_DICT (1UL << 4)  /* 3.11+ */

/* An attribute that lives in the instance's dict (not a slot, not a property). */
uint64_t fp_remote_attr(fp_remote *r, uint64_t obj, const char *name)
{
    const fp_py_layout *l = &r->layout;
    uint64_t type = 0;
    if (fp_remote_read_ptr(r, obj + (uint64_t)l->object_type, &type) != 0) return 0;
    uint8_t t[1024];
    size_t tlen = (size_t)l->heaptype_cached_keys + 8;
    if (tlen > sizeof t || fp_remote_read(r, type, t, tlen) != 0) return 0;
    uint64_t flags = fp_remote_field_ptr(t, tlen, l->type_flags);
    if (r->minor < 11 || !(flags & OBJ_TPFLAGS_MANAGED_DICT)) {
        int64_t dictoffset = (int64_t)fp_remote_field_ptr(t, tlen, l->type_dictoffset);
        uint64_t dict = 0;
        if (dictoffset <= 0 || fp_remote_read_ptr(r, obj + (uint64_t)dictoffset, &dict) != 0)
            return 0;
        return fp_remote_dict_get(r, dict, name);
    }
    /* managed dict: a dict pointer 3 words before the object, or only the values */
    uint64_t slot = 0, values = 0;
    if (fp_remote_read_ptr(r, obj - 24, &slot) != 0) return 0;
    if (r->minor == 11) {
        if (slot) return fp_remote_dict_get(r, slot, name);
        if (fp_remote_read_ptr(r, obj - 32, &values) != 0) return 0;
    } else if (r->minor == 12) {
        if (slot && !(slot & 1)) return fp_remote_dict_get(r, slot, name);
        values = slot ? slot + 1 : 0; /* tagged: the values' address minus one */
    } else {
        if (slot) return fp_remote_dict_get(r, slot, name);
        if (!(flags & OBJ_TPFLAGS_INLINE_VALUES)) return 0;
        values = obj + fp_remote_field_ptr(t, tlen, l->type_basicsize);
        uint8_t valid = 0;
        if (fp_remote_read(r, values + (uint64_t)l->values_valid, &valid, 1) != 0 || !valid)
            return 0;
    }
    uint64_t keys = fp_remote_field_ptr(t, tlen, l->heaptype_cached_keys);
    if (!values || !keys) return 0;
    obj_find f = {name, 0};
    if (obj_keys_each(r, keys, values, obj_find_fn, &f) != 0) return 0;
    return f.value;
}
