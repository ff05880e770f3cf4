/* Unit tests for server/remote/linetable.c: the three line-table formats decoded for every
 * instruction of one function, against what each CPython itself says (the vectors below were
 * printed by CPython 3.8 to 3.13 with dis.findlinestarts / co_lines() for the same source),
 * plus hand-made edge cases: not-started frames, truncated and garbage tables. */
#include "check.h"
#include "remote_internal.h"

#include <stdint.h>

/* Generated from this source, compiled as "t.py" (300 blank lines in the middle):
 *   def f(a, b):
 *       x = a + b
 *       for i in range(3):
 *           if i:
 *               x += i
 *       <300 blank lines>
 *       y = [x for x in range(a)]
 *       try:
 *           z = 1 / b
 *       except ZeroDivisionError:
 *           z = 0
 *       return (x, y, z, "%s" % (a,
 *           b))
 */
static const uint8_t py38_table[] = {0,  1, 8, 1, 12, 1, 4,  1, 10, 127, 0,  127, 0, 48,
                                     18, 1, 2, 1, 12, 1, 14, 1, 10, 1,   10, 1,   2, 255};
static const int py38_lines[] = {
    3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   5,   5,   6,   6,   6,   6,   6,   308, 308,
    308, 308, 308, 308, 308, 308, 308, 309, 310, 310, 310, 310, 310, 310, 311, 311, 311, 311, 311,
    311, 311, 312, 312, 312, 312, 312, 313, 313, 313, 313, 313, 314, 313, 313, 313, 313};
#define PY38_FIRST 2
static const uint8_t py39_table[] = {0,  1, 8, 1, 12, 1, 4,  1, 10, 127, 0,  127, 0, 48,
                                     18, 1, 2, 1, 12, 1, 12, 1, 10, 1,   10, 1,   2, 255};
static const int py39_lines[] = {
    3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   5,   5,   6,   6,   6,   6,   6,   308,
    308, 308, 308, 308, 308, 308, 308, 308, 309, 310, 310, 310, 310, 310, 310, 311, 311, 311,
    311, 311, 311, 312, 312, 312, 312, 312, 313, 313, 313, 313, 313, 314, 313, 313, 313, 313};
#define PY39_FIRST 2
static const uint8_t py310_table[] = {8, 1, 12, 1, 4,  1, 8, 1, 2, 128, 0,  127, 0, 127, 18, 48,
                                      2, 1, 12, 1, 12, 1, 8, 1, 2, 255, 10, 2,   2, 1,   8,  255};
static const int py310_lines[] = {
    3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   5,   5,   6,   6,   6,   6,   0,   308,
    308, 308, 308, 308, 308, 308, 308, 308, 309, 310, 310, 310, 310, 310, 310, 311, 311, 311,
    311, 311, 311, 312, 312, 312, 312, 311, 313, 313, 313, 313, 313, 314, 313, 313, 313, 313};
#define PY310_FIRST 2
static const uint8_t py311_table[] = {
    128, 0,   216, 8,   9,   136, 65,  137, 5,   128, 65,  221, 13,  18,  144, 49,  137, 88, 140,
    88,  240, 0,   2,   5,   19,  240, 0,   2,   5,   19,  136, 1,   216, 11,  12,  240, 0,  1,
    9,   19,  216, 12,  13,  144, 17,  137, 70,  136, 65,  248, 240, 92,  9,   0,   9,   30, 208,
    8,   29,  149, 69,  152, 33,  145, 72,  148, 72,  208, 8,   29,  209, 8,   29,  212, 8,  29,
    128, 65,  240, 2,   3,   5,   14,  216, 12,  13,  144, 1,   137, 69,  136, 1,   136, 1,  248,
    221, 11,  28,  240, 0,   1,   5,   14,  240, 0,   1,   5,   14,  240, 0,   1,   5,   14, 216,
    12,  13,  136, 1,   136, 1,   136, 1,   240, 3,   1,   5,   14,  248, 248, 248, 224, 12, 13,
    136, 113, 144, 33,  144, 84,  152, 81,  216, 8,   9,   240, 3,   1,   29,  11,  241, 0,  1,
    22,  11,  240, 0,   1,   12,  12,  240, 0,   1,   5,   12};
static const int py311_lines[] = {
    2,   3,   3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
    4,   4,   4,   4,   5,   5,   6,   6,   6,   6,   6,   0,   308, 308, 308, 308, 308, 308, 308,
    308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 309,
    310, 310, 310, 310, 310, 310, 0,   311, 311, 311, 311, 311, 311, 311, 311, 311, 312, 312, 312,
    312, 311, 0,   0,   0,   313, 313, 313, 313, 313, 314, 313, 313, 313, 313, 313};
#define PY311_FIRST 2
static const uint8_t py312_table[] = {
    128, 0,   216, 8,   9,   136, 65,  137, 5,  128, 65,  220, 13,  18, 144, 49,  139, 88,  242,
    0,   2,   5,   19,  136, 1,   218, 11,  12, 216, 12,  13,  144, 17, 137, 70,  137, 65,  240,
    5,   2,   5,   19,  244, 96,  9,   0,   21, 26,  152, 33,  147, 72, 214, 8,   29,  136, 113,
    138, 17,  208, 8,   29,  128, 65,  208, 8,  29,  240, 2,   3,   5,  14,  216, 12,  13,  144,
    1,   137, 69,  136, 1,   240, 6,   0,   13, 14,  136, 113, 144, 33, 144, 84,  152, 81,  216,
    8,   9,   240, 3,   1,   29,  11,  241, 0,  1,   22,  11,  240, 0,  1,   12,  12,  240, 0,
    1,   5,   12,  249, 242, 11,  0,   9,   30, 248, 244, 6,   0,   12, 29,  242, 0,   1,   5,
    14,  216, 12,  13,  138, 1,   240, 3,   1,  5,   14,  250};
static const int py312_lines[] = {
    2,   3,   3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
    4,   5,   5,   5,   6,   6,   6,   6,   6,   6,   4,   308, 308, 308, 308, 308, 308, 308, 308,
    308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 309, 310, 310,
    310, 310, 310, 313, 313, 313, 313, 313, 314, 313, 313, 313, 313, 313, 0,   0,   308, 308, 308,
    0,   311, 311, 311, 311, 311, 311, 311, 311, 312, 312, 312, 312, 311, 0,   0,   0};
#define PY312_FIRST 2
static const uint8_t py313_table[] = {
    128, 0,   216, 8,   9,   137, 5,  128, 65,  220, 13,  18, 144, 49,  142, 88,  136, 1,
    223, 11,  12,  136, 49,  216, 12, 13,  137, 70,  138, 65, 241, 5,   0,   14,  22,  244,
    96,  9,   0,   21,  26,  152, 33, 148, 72,  211, 8,   29, 145, 72,  136, 113, 138, 17,
    145, 72,  128, 65,  208, 8,   29, 240, 2,   3,   5,   14, 216, 12,  13,  144, 1,   137,
    69,  136, 1,   240, 6,   0,   13, 14,  136, 113, 144, 84, 152, 81,  216, 8,   9,   240,
    3,   1,   29,  11,  241, 0,   1,  22,  11,  240, 0,   1,  12,  12,  240, 0,   1,   5,
    12,  249, 242, 11,  0,   9,   30, 248, 244, 6,   0,   12, 29,  243, 0,   1,   5,   14,
    216, 12,  13,  138, 1,   240, 3,  1,   5,   14,  250};
static const int py313_lines[] = {
    2,   3,   3,   3,   3,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,
    4,   4,   5,   5,   5,   5,   5,   5,   5,   5,   5,   6,   6,   6,   6,   6,   6,
    4,   4,   308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 308,
    308, 308, 308, 308, 308, 308, 308, 308, 308, 308, 309, 310, 310, 310, 310, 310, 313,
    313, 313, 313, 314, 313, 313, 313, 313, 313, 0,   0,   308, 308, 308, 0,   311, 311,
    311, 311, 311, 311, 311, 311, 311, 312, 312, 312, 312, 311, 0,   0,   0};
#define PY313_FIRST 2

typedef int (*decoder)(const uint8_t *tab, size_t len, int firstlineno, long addrq);

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Every code unit's line, as the interpreter gave it. */
static void check_vector(const char *name, decoder fn, const uint8_t *tab, size_t len, int first,
                         const int *lines, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int got = fn(tab, len, first, (long)(2 * i));
        if (got != lines[i] && bad++ < 5)
            fprintf(stderr, "%s: offset %zu: line %d, expected %d\n", name, 2 * i, got, lines[i]);
    }
    CHECK(bad == 0);
}

static void test_interpreters(void)
{
    check_vector("3.8", fp_remote_line_lnotab, py38_table, N(py38_table), PY38_FIRST, py38_lines,
                 N(py38_lines));
    check_vector("3.9", fp_remote_line_lnotab, py39_table, N(py39_table), PY39_FIRST, py39_lines,
                 N(py39_lines));
    check_vector("3.10", fp_remote_line_310, py310_table, N(py310_table), PY310_FIRST, py310_lines,
                 N(py310_lines));
    check_vector("3.11", fp_remote_line_locations, py311_table, N(py311_table), PY311_FIRST,
                 py311_lines, N(py311_lines));
    check_vector("3.12", fp_remote_line_locations, py312_table, N(py312_table), PY312_FIRST,
                 py312_lines, N(py312_lines));
    check_vector("3.13", fp_remote_line_locations, py313_table, N(py313_table), PY313_FIRST,
                 py313_lines, N(py313_lines));
}

/* A frame that has not started (f_lasti -1, or prev_instr before the code) is on its first
 * line, as CPython reports it. */
static void test_not_started(void)
{
    CHECK_EQ_INT(fp_remote_line_lnotab(py38_table, N(py38_table), 7, -1), 7);
    CHECK_EQ_INT(fp_remote_line_310(py310_table, N(py310_table), 7, -2), 7);
    CHECK_EQ_INT(fp_remote_line_locations(py312_table, N(py312_table), 7, -2), 7);
}

/* Past the end of a table, or in a torn one: no line (0), never a crash or a read past it. */
static void test_garbage(void)
{
    CHECK_EQ_INT(fp_remote_line_310(py310_table, N(py310_table), 1, 1 << 20), 0);
    CHECK_EQ_INT(fp_remote_line_locations(py312_table, N(py312_table), 1, 1 << 20), 0);
    CHECK_EQ_INT(fp_remote_line_locations(NULL, 0, 5, 0), 0);
    CHECK_EQ_INT(fp_remote_line_lnotab(NULL, 0, 5, 10), 5);
    /* an entry without its start bit */
    static const uint8_t no_start[] = {0x01, 0x02};
    CHECK_EQ_INT(fp_remote_line_locations(no_start, N(no_start), 5, 0), 0);
    /* a long-form entry cut in the middle of its varints */
    static const uint8_t cut[] = {0x80 | (14 << 3), 0x42};
    CHECK_EQ_INT(fp_remote_line_locations(cut, N(cut), 5, 0), 0);
    /* an endless varint */
    uint8_t endless[64];
    endless[0] = 0x80 | (13 << 3);
    for (size_t i = 1; i < N(endless); i++)
        endless[i] = 0x7f;
    CHECK_EQ_INT(fp_remote_line_locations(endless, N(endless), 5, 0), 0);
}

/* Hand-made 3.11+ entries: each form's line delta. */
static void test_location_forms(void)
{
    static const uint8_t tab[] = {
        0x80 | (13 << 3) | 0, 0x06,                   /* no columns, delta +3: line 13 */
        0x80 | (11 << 3) | 1, 4,    8,                /* one-line form, delta +1: line 14 */
        0x80 | (15 << 3) | 0,                         /* no location */
        0x80 | (0 << 3) | 0,  0x11,                   /* short form: same line 14 */
        0x80 | (14 << 3) | 0, 0x05, 0x00, 0x01, 0x02, /* long form, delta -2: line 12 */
    };
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 0), 13);
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 2), 14);
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 4), 14);
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 6), 0);
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 8), 14);
    CHECK_EQ_INT(fp_remote_line_locations(tab, N(tab), 10, 10), 12);
}

int main(void)
{
    test_interpreters();
    test_not_started();
    test_garbage();
    test_location_forms();
    return check_summary();
}
