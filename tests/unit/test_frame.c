/* Unit tests for protocol/frame.c: the incremental Content-Length reader (splits, merges,
 * malformed headers, limits) and the writer (partial writes, timeouts, closed peers without
 * SIGPIPE). */
#include "check.h"
#include "fp_frame.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BODIES 8

typedef struct drained {
    int count;
    char *bodies[MAX_BODIES];
    size_t lens[MAX_BODIES];
    int last_rc;
    const char *err;
} drained;

/* Takes every whole body out of the reader into d; stops at MORE or an error. */
static void drain(fp_frame_reader *r, drained *d)
{
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        d->last_rc = fp_frame_reader_next(r, &body, &len, &d->err);
        if (d->last_rc != FP_FRAME_OK) return;
        if (d->count < MAX_BODIES) {
            d->bodies[d->count] = body;
            d->lens[d->count] = len;
        } else {
            free(body);
        }
        d->count++;
    }
}

static void drained_free(drained *d)
{
    for (int i = 0; i < d->count && i < MAX_BODIES; i++)
        free(d->bodies[i]);
    memset(d, 0, sizeof(*d));
}

/* Feeds text (NUL-terminated) in one go to a fresh reader and returns the first next() code. */
static int first_rc(const char *text, size_t max_body, const char **err)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, max_body);
    fp_frame_reader_feed(&r, text, strlen(text));
    char *body = NULL;
    size_t len = 0;
    int rc = fp_frame_reader_next(&r, &body, &len, err);
    free(body);
    fp_frame_reader_free(&r);
    return rc;
}

static void test_single(void)
{
    const char *msg = "Content-Length: 17\r\n\r\n{\"jsonrpc\":\"2.0\"}";
    fp_frame_reader r;
    fp_frame_reader_init(&r, 0);
    CHECK_EQ_INT(r.max_body, FP_FRAME_DEFAULT_MAX);
    CHECK_EQ_INT(fp_frame_reader_feed(&r, msg, strlen(msg)), 0);
    drained d = {0};
    drain(&r, &d);
    CHECK_EQ_INT(d.count, 1);
    CHECK_EQ_INT(d.last_rc, FP_FRAME_MORE);
    if (d.count == 1) {
        CHECK_STR(d.bodies[0], "{\"jsonrpc\":\"2.0\"}");
        CHECK_EQ_INT(d.lens[0], 17);
    }
    CHECK_EQ_INT(r.len, 0);
    drained_free(&d);
    fp_frame_reader_free(&r);
}

static const char TWO[] = "Content-Length: 5\r\n\r\nhello"
                          "Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
                          "Content-Length: 11\r\n\r\n{\"x\":[1,2]}";

static void check_two(const drained *d, const char *what, size_t split)
{
    int ok = d->count == 2 && d->last_rc == FP_FRAME_MORE && d->lens[0] == 5 && d->lens[1] == 11 &&
             strcmp(d->bodies[0], "hello") == 0 && strcmp(d->bodies[1], "{\"x\":[1,2]}") == 0;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "    %s at %zu: %d bodies, rc %d\n", what, split, d->count, d->last_rc);
}

static void test_split_everywhere(void)
{
    size_t total = sizeof(TWO) - 1;
    for (size_t split = 0; split <= total; split++) {
        fp_frame_reader r;
        fp_frame_reader_init(&r, 1024);
        drained d = {0};
        fp_frame_reader_feed(&r, TWO, split);
        drain(&r, &d);
        fp_frame_reader_feed(&r, TWO + split, total - split);
        drain(&r, &d);
        check_two(&d, "split", split);
        drained_free(&d);
        fp_frame_reader_free(&r);
    }
}

static void test_byte_at_a_time(void)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    drained d = {0};
    for (size_t i = 0; i < sizeof(TWO) - 1; i++) {
        fp_frame_reader_feed(&r, TWO + i, 1);
        drain(&r, &d);
    }
    check_two(&d, "byte at a time", 0);
    drained_free(&d);
    fp_frame_reader_free(&r);
}

static void test_merged(void)
{
    const char *three = "Content-Length: 2\r\n\r\n{}"
                        "Content-Length: 2\r\n\r\n[]"
                        "Content-Length: 4\r\n\r\nnullContent-Len";
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    fp_frame_reader_feed(&r, three, strlen(three));
    drained d = {0};
    drain(&r, &d);
    CHECK_EQ_INT(d.count, 3);
    CHECK_EQ_INT(d.last_rc, FP_FRAME_MORE);
    if (d.count == 3) {
        CHECK_STR(d.bodies[0], "{}");
        CHECK_STR(d.bodies[1], "[]");
        CHECK_STR(d.bodies[2], "null");
    }
    CHECK_EQ_INT(r.len, strlen("Content-Len")); /* the partial fourth header stays buffered */
    drained_free(&d);
    fp_frame_reader_free(&r);
}

static void test_header_case_and_extras(void)
{
    const char *msgs[] = {
        "content-length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}",
        "Content-Type: application/json\r\nCONTENT-LENGTH:2\r\n\r\n{}",
        "cOnTeNt-LeNgTh: \t2 \r\n\r\n{}",
        "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}", /* repeated, same value */
        "Content-Length: 002\r\n\r\n{}",
    };
    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        fp_frame_reader r;
        fp_frame_reader_init(&r, 1024);
        fp_frame_reader_feed(&r, msgs[i], strlen(msgs[i]));
        drained d = {0};
        drain(&r, &d);
        CHECK_EQ_INT(d.count, 1);
        if (d.count == 1) CHECK_STR(d.bodies[0], "{}");
        drained_free(&d);
        fp_frame_reader_free(&r);
    }
}

static void test_bad_headers(void)
{
    const char *bad[] = {
        "Content-Type: application/json\r\n\r\n{}",         /* missing */
        "Content-Length: abc\r\n\r\n{}",                    /* non-numeric */
        "Content-Length: 12a\r\n\r\n{}",                    /* trailing garbage */
        "Content-Length: 0x10\r\n\r\n{}",                   /* hex */
        "Content-Length: -5\r\n\r\n{}",                     /* negative */
        "Content-Length: +5\r\n\r\n{}",                     /* signed */
        "Content-Length: 1 2\r\n\r\n{}",                    /* space inside */
        "Content-Length:\r\n\r\n{}",                        /* empty */
        "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", /* conflicting */
        "Content-Length 2\r\n\r\n{}",                       /* no colon */
        ": 2\r\n\r\n{}",                                    /* no name */
        "{\"jsonrpc\":\"2.0\"}\r\n\r\n",                    /* no header at all */
        "Content-Length: 2\nX: y\r\n\r\n{}",                /* bare LF inside the block */
        "\r\n\r\n{}",                                       /* empty header line */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *err = NULL;
        int rc = first_rc(bad[i], 1024, &err);
        CHECK_EQ_INT(rc, FP_FRAME_E_HEADER);
        CHECK(err != NULL && err[0] != '\0');
        if (rc != FP_FRAME_E_HEADER) fprintf(stderr, "    input %zu: %s\n", i, bad[i]);
    }
}

static void test_failure_sticks(void)
{
    const char *text = "Content-Length: x\r\n\r\n";
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    fp_frame_reader_feed(&r, text, strlen(text));
    char *body = NULL;
    size_t len = 0;
    const char *err = NULL;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_HEADER);
    CHECK(r.failed != 0);
    /* A good message afterwards cannot resynchronise the stream. */
    const char *good = "Content-Length: 2\r\n\r\n{}";
    CHECK_EQ_INT(fp_frame_reader_feed(&r, good, strlen(good)), 0);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_HEADER);
    CHECK(body == NULL);
    CHECK(err != NULL);
    /* err may be NULL. */
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, NULL), FP_FRAME_E_HEADER);
    fp_frame_reader_free(&r);
}

/* A reader that must go on (fp-lsp) resynchronises at the next header, even one split
 * between reads, dropping the broken header and the body that followed it. */
static void test_resync(void)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    const char *broken = "Content-Lenght: 5\r\n\r\nhello garbage Cont";
    fp_frame_reader_feed(&r, broken, strlen(broken));
    char *body = NULL;
    size_t len = 0;
    const char *err = NULL;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_HEADER);
    fp_frame_reader_resync(&r);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_MORE);
    const char *rest = "ent-length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]";
    fp_frame_reader_feed(&r, rest, strlen(rest));
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_OK);
    CHECK(body && strcmp(body, "{}") == 0);
    free(body);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_OK);
    CHECK(body && strcmp(body, "[1]") == 0);
    free(body);
    fp_frame_reader_free(&r);
}

static void test_too_big(void)
{
    const char *err = NULL;
    /* Only the header has arrived: the limit is enforced before any body byte. */
    CHECK_EQ_INT(first_rc("Content-Length: 101\r\n\r\n", 100, &err), FP_FRAME_E_TOOBIG);
    CHECK(err != NULL);
    CHECK_EQ_INT(first_rc("Content-Length: 100\r\n\r\n", 100, &err), FP_FRAME_MORE);
    CHECK_EQ_INT(first_rc("Content-Length: 99999999999999999999999999\r\n\r\n", 100, &err),
                 FP_FRAME_E_TOOBIG);
    CHECK_EQ_INT(first_rc("Content-Length: 67108865\r\n\r\n", 0, &err), FP_FRAME_E_TOOBIG);
    CHECK_EQ_INT(first_rc("Content-Length: 67108864\r\n\r\n", 0, &err), FP_FRAME_MORE);
}

/* A body above the limit with a readable length is skipped as it arrives (never buffered), and
 * the next message is read; a length that does not even fit stays a fatal error. */
static void test_too_big_is_skipped(void)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, 8);
    const char *head = "Content-Length: 20\r\n\r\n0123456789";
    fp_frame_reader_feed(&r, head, strlen(head));
    char *body = NULL;
    size_t len = 0;
    const char *err = NULL;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_TOOBIG);
    CHECK_EQ_INT(r.too_big, 20);
    CHECK(r.len == 0 && r.skip == 10);
    const char *rest = "abcdefghijContent-Length: 2\r\n\r\n{}";
    for (const char *p = rest; *p; p++) /* byte by byte: the skip ends mid-read */
        fp_frame_reader_feed(&r, p, 1);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_OK);
    CHECK(len == 2 && memcmp(body, "{}", 2) == 0);
    free(body);
    fp_frame_reader_free(&r);

    fp_frame_reader_init(&r, 8);
    const char *huge = "Content-Length: 99999999999999999999999999\r\n\r\n";
    fp_frame_reader_feed(&r, huge, strlen(huge));
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_TOOBIG);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_TOOBIG); /* sticks */
    fp_frame_reader_free(&r);
}

static void test_header_limit(void)
{
    size_t n = 9000;
    char *text = malloc(n + 1);
    memcpy(text, "X-Pad: ", 7);
    memset(text + 7, 'a', n - 7);
    text[n] = '\0';
    const char *err = NULL;
    CHECK_EQ_INT(first_rc(text, 1024, &err), FP_FRAME_E_HEADER);
    CHECK(err != NULL);
    text[4000] = '\0'; /* a long but not over-long block just waits for more */
    CHECK_EQ_INT(first_rc(text, 1024, &err), FP_FRAME_MORE);
    /* Many small headers, over 8 KiB in total, still without the blank line. */
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    for (int i = 0; i < 1100; i++)
        fp_frame_reader_feed(&r, "X-A: b\r\n", 8);
    char *body = NULL;
    size_t len = 0;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &body, &len, &err), FP_FRAME_E_HEADER);
    fp_frame_reader_free(&r);
    free(text);
}

static void test_empty_body(void)
{
    const char *text = "Content-Length: 0\r\n\r\nContent-Length: 1\r\n\r\nx";
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    fp_frame_reader_feed(&r, text, strlen(text));
    drained d = {0};
    drain(&r, &d);
    CHECK_EQ_INT(d.count, 2);
    if (d.count == 2) {
        CHECK(d.bodies[0] != NULL);
        CHECK_EQ_INT(d.lens[0], 0);
        CHECK_STR(d.bodies[0], "");
        CHECK_STR(d.bodies[1], "x");
    }
    drained_free(&d);
    fp_frame_reader_free(&r);
}

static void test_encode_round_trip(void)
{
    const char body[] = "{\"a\":\"\xc3\xa9\",\"b\":\"x\0y\"}"; /* UTF-8 and a NUL byte */
    size_t blen = sizeof(body) - 1;
    size_t out_len = 0;
    char *framed = fp_frame_encode(body, blen, &out_len);
    CHECK(framed != NULL);
    if (!framed) return;
    char header[64];
    int hlen = snprintf(header, sizeof(header), "Content-Length: %zu\r\n\r\n", blen);
    CHECK(strncmp(framed, header, (size_t)hlen) == 0);
    CHECK_EQ_INT(out_len, (size_t)hlen + blen);
    fp_frame_reader r;
    fp_frame_reader_init(&r, 1024);
    fp_frame_reader_feed(&r, framed, out_len);
    char *got = NULL;
    size_t len = 0;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &got, &len, NULL), FP_FRAME_OK);
    CHECK_EQ_INT(len, blen);
    CHECK(got && memcmp(got, body, blen) == 0 && got[blen] == '\0');
    free(got);
    free(framed);
    fp_frame_reader_free(&r);

    framed = fp_frame_encode("", 0, &out_len);
    CHECK_STR(framed, "Content-Length: 0\r\n\r\n");
    CHECK_EQ_INT(out_len, 21);
    free(framed);
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct sink {
    int fd;
    char *data;
    size_t len;
} sink;

/* Reads fd until EOF into s (a thread, so the writer can block on a full socket). */
static void *sink_run(void *arg)
{
    sink *s = arg;
    size_t cap = 0;
    char chunk[65536];
    for (;;) {
        ssize_t n = read(s->fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (s->len + (size_t)n > cap) {
            cap = (s->len + (size_t)n) * 2;
            s->data = realloc(s->data, cap);
        }
        memcpy(s->data + s->len, chunk, (size_t)n);
        s->len += (size_t)n;
    }
    return NULL;
}

/* The sink holds exactly two frames: body, then an empty one. */
static void check_received(const sink *s, const char *body, size_t len)
{
    fp_frame_reader r;
    fp_frame_reader_init(&r, 0);
    fp_frame_reader_feed(&r, s->data, s->len);
    char *got = NULL;
    size_t got_len = 0;
    CHECK_EQ_INT(fp_frame_reader_next(&r, &got, &got_len, NULL), FP_FRAME_OK);
    CHECK_EQ_INT(got_len, len);
    CHECK(got && memcmp(got, body, len) == 0);
    free(got);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &got, &got_len, NULL), FP_FRAME_OK);
    CHECK_EQ_INT(got_len, 0);
    free(got);
    CHECK_EQ_INT(fp_frame_reader_next(&r, &got, &got_len, NULL), FP_FRAME_MORE);
    CHECK_EQ_INT(r.len, 0);
    fp_frame_reader_free(&r);
}

static void write_through_socketpair(int nonblocking)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    if (nonblocking) fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    size_t len = 4u * 1024u * 1024u; /* far above the socket buffer: forces partial writes */
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (char)('a' + i % 26);
    sink s = {.fd = sv[1]};
    pthread_t t;
    pthread_create(&t, NULL, sink_run, &s);
    CHECK_EQ_INT(fp_frame_write(sv[0], body, len, 10000), 0);
    CHECK_EQ_INT(fp_frame_write(sv[0], "", 0, 10000), 0);
    close(sv[0]);
    pthread_join(t, NULL);
    check_received(&s, body, len);
    close(sv[1]);
    free(s.data);
    free(body);
}

static void test_write_timeout(void)
{
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    size_t len = 8u * 1024u * 1024u; /* nobody reads: the socket fills up */
    char *body = calloc(1, len);
    /* A blocking socket too: the writer must not block past its timeout. */
    CHECK_EQ_INT(fp_frame_write(sv[0], body, len, 50), -ETIMEDOUT);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    CHECK_EQ_INT(fp_frame_write(sv[0], body, len, 0), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    free(body);
}

static int sigpipe_pending(void)
{
    sigset_t pending;
    sigemptyset(&pending);
    sigpending(&pending);
    return sigismember(&pending, SIGPIPE) == 1;
}

static void test_write_closed_peer(void)
{
    /* With the default disposition a SIGPIPE would kill this test: that is the check. */
    signal(SIGPIPE, SIG_DFL);
    int sv[2];
    CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[1]);
    int rc = fp_frame_write(sv[0], "{}", 2, 1000);
    CHECK(rc == -EPIPE || rc == -ECONNRESET);
    close(sv[0]);

    int p[2];
    CHECK_EQ_INT(pipe(p), 0);
    close(p[0]);
    CHECK_EQ_INT(fp_frame_write(p[1], "{}", 2, 1000), -EPIPE);
    CHECK(!sigpipe_pending());
    close(p[1]);

    /* A SIGPIPE the caller had blocked and pending before the write is left pending. */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    raise(SIGPIPE);
    CHECK(pipe(p) == 0);
    close(p[0]);
    CHECK_EQ_INT(fp_frame_write(p[1], "{}", 2, 1000), -EPIPE);
    CHECK(sigpipe_pending());
    const struct timespec zero = {0, 0};
    sigtimedwait(&set, NULL, &zero);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(p[1]);
}

static void test_write_bad_fd(void)
{
    CHECK_EQ_INT(fp_frame_write(-1, "{}", 2, 100), -EBADF);
}

int main(void)
{
    test_single();
    test_split_everywhere();
    test_byte_at_a_time();
    test_merged();
    test_header_case_and_extras();
    test_bad_headers();
    test_failure_sticks();
    test_resync();
    test_too_big();
    test_too_big_is_skipped();
    test_header_limit();
    test_empty_body();
    test_encode_round_trip();
    write_through_socketpair(0);
    write_through_socketpair(1);
    test_write_timeout();
    test_write_closed_peer();
    test_write_bad_fd();
    return check_summary();
}
