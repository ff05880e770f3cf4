/* From an instruction's byte offset to its source line, for the three formats CPython has
 * used: co_lnotab (3.8, 3.9), the 3.10 co_linetable, and the 3.11+ location table (see
 * Objects/lnotab_notes.txt and InternalDocs of each version). Pure functions over bytes. */
#include "remote_internal.h"

/* ===================================================================== 3.8, 3.9: co_lnotab */

int fp_remote_line_lnotab(const uint8_t *tab, size_t len, int firstlineno, long addrq)
{
    /* pairs (address increment, signed line increment): the line applies from the
     * address it is reached at */
    int line = firstlineno;
    long addr = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        addr += tab[i];
        if (addr > addrq) break;
        line += (int8_t)tab[i + 1];
    }
    return line;
}

/* ===================================================================== 3.10: co_linetable */

int fp_remote_line_310(const uint8_t *tab, size_t len, int firstlineno, long addrq)
{
    if (addrq < 0) return firstlineno;
    /* pairs (range length in bytes, signed line delta; -128: the range has no line) */
    int line = firstlineno;
    long end = 0;
    for (size_t i = 0; i + 1 < len; i += 2) {
        long start = end;
        end += tab[i];
        int8_t delta = (int8_t)tab[i + 1];
        if (delta != -128) line += delta;
        if (start <= addrq && addrq < end) return delta == -128 ? 0 : line;
    }
    return 0;
}

/* ===================================================================== 3.11+: locations */

typedef struct lt_reader {
    const uint8_t *p, *end;
} lt_reader;

/* Unsigned varint: 6 bits a byte, low bits first, 0x40 set on every byte but the last. */
static bool lt_varint(lt_reader *rd, unsigned long *out)
{
    unsigned long v = 0;
    for (int shift = 0; rd->p < rd->end && shift < 60; shift += 6) {
        uint8_t b = *rd->p++;
        v |= (unsigned long)(b & 0x3f) << shift;
        if (!(b & 0x40)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Signed varint: the sign in the lowest bit. */
static bool lt_svarint(lt_reader *rd, long *out)
{
    unsigned long v;
    if (!lt_varint(rd, &v)) return false;
    *out = (v & 1) ? -(long)(v >> 1) : (long)(v >> 1);
    return true;
}

static bool lt_skip(lt_reader *rd, int n)
{
    if (rd->end - rd->p < n) return false;
    rd->p += n;
    return true;
}

/* The line delta of one entry (code: its 4-bit form), moving past its payload; *none is set
 * for an entry with no location. */
static bool lt_entry_delta(lt_reader *rd, int code, long *delta, bool *none)
{
    unsigned long ignored;
    *delta = 0;
    *none = false;
    switch (code) {
    case 15: /* no location */
        *none = true;
        return true;
    case 14: /* long form: line delta, end line delta, column + 1, end column + 1 */
        return lt_svarint(rd, delta) && lt_varint(rd, &ignored) && lt_varint(rd, &ignored) &&
               lt_varint(rd, &ignored);
    case 13: /* no column: line delta */
        return lt_svarint(rd, delta);
    case 10:
    case 11:
    case 12: /* one line: delta 0 to 2, then start and end columns */
        *delta = code - 10;
        return lt_skip(rd, 2);
    default: /* short form: same line, one byte of columns */
        return lt_skip(rd, 1);
    }
}

int fp_remote_line_locations(const uint8_t *tab, size_t len, int firstlineno, long addrq)
{
    if (addrq < 0) return firstlineno;
    lt_reader rd = {tab, tab + len};
    long line = firstlineno, end = 0;
    while (rd.p < rd.end) {
        uint8_t first = *rd.p++;
        if (!(first & 0x80)) return 0; /* every entry starts with the high bit set */
        int code = (first >> 3) & 15;
        long start = end;
        end += 2 * ((first & 7) + 1); /* length in code units of two bytes */
        long delta;
        bool none;
        if (!lt_entry_delta(&rd, code, &delta, &none)) return 0;
        line += delta;
        if (start <= addrq && addrq < end) return none ? 0 : (int)line;
    }
    return 0;
}
