/* libFuzzer target: the Content-Length framing reader (protocol/frame.c) fed arbitrary bytes in
 * arbitrary pieces. Whatever comes, it returns whole bodies within its limit, reports errors
 * that stick (except a refused size, which it skips), and what it returns frames back to itself. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fp_frame.h"

static void drain(fp_frame_reader *r, size_t max)
{
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *err = NULL;
        int rc = fp_frame_reader_next(r, &body, &len, &err);
        if (rc == FP_FRAME_MORE) return;
        if (rc != FP_FRAME_OK) {
            assert(err && err[0] && !body);
            if (rc == FP_FRAME_E_TOOBIG && r->too_big) {
                r->too_big = 0;
                continue; /* skipped: the next message may follow */
            }
            assert(r->failed == rc);
            return;
        }
        assert(body && len <= max && body[len] == '\0');
        /* A body framed again reads back the same. */
        size_t flen = 0;
        char *framed = fp_frame_encode(body, len, &flen);
        assert(framed);
        fp_frame_reader again;
        fp_frame_reader_init(&again, max);
        assert(fp_frame_reader_feed(&again, framed, flen) == 0);
        char *back = NULL;
        size_t blen = 0;
        assert(fp_frame_reader_next(&again, &back, &blen, &err) == FP_FRAME_OK);
        assert(blen == len && memcmp(back, body, len) == 0);
        free(back);
        fp_frame_reader_free(&again);
        free(framed);
        free(body);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    /* The first two bytes choose the limit and how the rest is cut into reads. */
    size_t max = 1 + (size_t)data[0] * 64;
    size_t piece = 1 + data[1] % 97;
    fp_frame_reader r;
    fp_frame_reader_init(&r, max);
    for (size_t off = 2; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        if (fp_frame_reader_feed(&r, (const char *)data + off, n) != 0) break;
        drain(&r, max);
        assert(r.len <= size); /* never more than what came in */
    }
    fp_frame_reader_free(&r);
    return 0;
}
