/* Content-Length framing (see fp_frame.h): an incremental reader that copes with messages
 * split at any byte or merged in one read, and a writer that never raises SIGPIPE, because
 * the same code runs inside the target process, whose signal dispositions are not ours. */
#include "fp_frame.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* A header block (terminator included) longer than this is garbage, not a slow peer. */
#define FRAME_MAX_HEADER 8192u
/* An idle reader keeps at most this much buffer; a 64 MiB body should not pin 64 MiB. */
#define FRAME_KEEP_CAP (64u * 1024u)

static const char HEADER_END[] = "\r\n\r\n";
#define HEADER_END_LEN 4u

/* ---- reader ------------------------------------------------------------------------------ */

void fp_frame_reader_init(fp_frame_reader *r, size_t max_body)
{
    memset(r, 0, sizeof(*r));
    r->max_body = max_body ? max_body : FP_FRAME_DEFAULT_MAX;
}

void fp_frame_reader_free(fp_frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = 0;
    r->cap = 0;
}

static int reader_reserve(fp_frame_reader *r, size_t extra)
{
    if (extra > SIZE_MAX - r->len) return FP_FRAME_E_NOMEM;
    size_t need = r->len + extra;
    if (need <= r->cap) return 0;
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *buf = realloc(r->buf, cap);
    if (!buf) return FP_FRAME_E_NOMEM;
    r->buf = buf;
    r->cap = cap;
    return 0;
}

int fp_frame_reader_feed(fp_frame_reader *r, const char *data, size_t n)
{
    /* After a framing error nothing more will be parsed: keeping the bytes would only let a
     * misbehaving peer grow our memory. */
    if (r->failed || n == 0) return 0;
    if (r->skip) { /* the rest of a refused body: dropped, never buffered */
        size_t drop = n < r->skip ? n : r->skip;
        r->skip -= drop;
        data += drop;
        n -= drop;
        if (n == 0) return 0;
    }
    if (reader_reserve(r, n) != 0) return FP_FRAME_E_NOMEM;
    memcpy(r->buf + r->len, data, n);
    r->len += n;
    return 0;
}

static bool name_is(const char *line, size_t name_len, const char *want)
{
    return name_len == strlen(want) && strncasecmp(line, want, name_len) == 0;
}

/* Parses the digits of a Content-Length value. A value above max is reported as too big
 * (not malformed): it is a well-formed number we refuse. Sign, spaces inside, hex: malformed. */
static int parse_length(const char *s, size_t n, size_t max, size_t *out)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0) return FP_FRAME_E_HEADER;
    size_t v = 0;
    bool over = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return FP_FRAME_E_HEADER;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (SIZE_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (over) return FP_FRAME_E_TOOBIG; /* *out untouched: no length to skip */
    *out = v;
    return v > max ? FP_FRAME_E_TOOBIG : 0;
}

typedef struct frame_header {
    size_t header_len; /* bytes up to and including the blank line */
    size_t body_len;
    const char *err;
} frame_header;

/* Parses the header lines in buf[0, end): each "Name: value" and ending in \r\n. */
static int parse_headers(const char *buf, size_t end, size_t max_body, frame_header *h)
{
    bool have_length = false;
    size_t pos = 0;
    while (pos < end) {
        const char *line = buf + pos;
        const char *crlf = memmem(line, end - pos, "\r\n", 2);
        if (!crlf) break; /* cannot happen: the block handed to us ends in \r\n */
        size_t line_len = (size_t)(crlf - line);
        pos += line_len + 2;
        for (size_t i = 0; i < line_len; i++) {
            unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t') || c > 0x7e) {
                h->err = "non-ASCII or control character in a message header";
                return FP_FRAME_E_HEADER;
            }
        }
        const char *colon = memchr(line, ':', line_len);
        if (!colon || colon == line) {
            h->err = "message header line without \"Name:\"";
            return FP_FRAME_E_HEADER;
        }
        size_t name_len = (size_t)(colon - line);
        if (!name_is(line, name_len, "Content-Length"))
            continue; /* Content-Type and friends carry nothing we need */
        size_t value = SIZE_MAX;
        int rc = parse_length(colon + 1, line_len - name_len - 1, max_body, &value);
        if (rc == FP_FRAME_E_TOOBIG) {
            h->err = "Content-Length is above the largest accepted message";
            h->body_len = value; /* SIZE_MAX when it does not even fit */
            return rc;
        }
        if (rc != 0) {
            h->err = "Content-Length is not a non-negative decimal number";
            return rc;
        }
        if (have_length && value != h->body_len) {
            h->err = "conflicting Content-Length headers";
            return FP_FRAME_E_HEADER;
        }
        have_length = true;
        h->body_len = value;
    }
    if (!have_length) {
        h->err = "message header without Content-Length";
        return FP_FRAME_E_HEADER;
    }
    return 0;
}

/* Finds and parses the header block at the start of the buffer.
 * Returns FP_FRAME_OK with *h filled, FP_FRAME_MORE, or an error. */
static int reader_header(const fp_frame_reader *r, frame_header *h)
{
    size_t scan = r->len < FRAME_MAX_HEADER ? r->len : FRAME_MAX_HEADER;
    const char *end = r->buf ? memmem(r->buf, scan, HEADER_END, HEADER_END_LEN) : NULL;
    if (!end) {
        if (r->len < FRAME_MAX_HEADER) return FP_FRAME_MORE;
        h->err = "message header block longer than 8 KiB";
        return FP_FRAME_E_HEADER;
    }
    size_t lines_len = (size_t)(end - r->buf) + 2; /* keep the last line's \r\n */
    h->header_len = (size_t)(end - r->buf) + HEADER_END_LEN;
    int rc = parse_headers(r->buf, lines_len, r->max_body, h);
    return rc == 0 ? FP_FRAME_OK : rc;
}

static void reader_consume(fp_frame_reader *r, size_t n)
{
    r->len -= n;
    if (r->len > 0) {
        memmove(r->buf, r->buf + n, r->len);
        return;
    }
    if (r->cap > FRAME_KEEP_CAP) fp_frame_reader_free(r);
}

static const char *reader_failure_text(int code)
{
    switch (code) {
    case FP_FRAME_E_TOOBIG:
        return "Content-Length is above the largest accepted message";
    case FP_FRAME_E_NOMEM:
        return "out of memory";
    default:
        return "malformed message header";
    }
}

#define FRAME_MARK "content-length:"
#define FRAME_MARK_LEN (sizeof FRAME_MARK - 1)

void fp_frame_reader_resync(fp_frame_reader *r)
{
    r->failed = 0;
    r->hunting = 1;
    if (r->len > 0) reader_consume(r, 1); /* past the broken header's first byte */
}

/* While hunting: drops what comes before the next header. Returns 1 when one starts the
 * buffer, 0 when more bytes are needed. */
static int reader_hunt(fp_frame_reader *r)
{
    for (size_t i = 0; i + FRAME_MARK_LEN <= r->len; i++) {
        if (strncasecmp(r->buf + i, FRAME_MARK, FRAME_MARK_LEN) == 0) {
            reader_consume(r, i);
            r->hunting = 0;
            return 1;
        }
    }
    /* Keep a tail that may be the start of the header, split by the reads. */
    if (r->len >= FRAME_MARK_LEN) reader_consume(r, r->len - (FRAME_MARK_LEN - 1));
    return 0;
}

int fp_frame_reader_next(fp_frame_reader *r, char **body, size_t *len, const char **err)
{
    *body = NULL;
    *len = 0;
    if (err) *err = NULL;
    if (r->hunting && !reader_hunt(r)) return FP_FRAME_MORE;
    if (r->failed) {
        if (err) *err = reader_failure_text(r->failed);
        return r->failed;
    }
    /* The header is parsed again on every call until its body is complete. That costs at most
     * 8 KiB of scanning per read and keeps the reader's state to the buffer alone. */
    frame_header h = {0};
    int rc = reader_header(r, &h);
    if (rc == FP_FRAME_E_TOOBIG && h.body_len != SIZE_MAX && h.header_len > 0) {
        /* A length we refuse but can skip: drop the header and the body (what is buffered
         * now, the rest as it is fed), so the next message can still be read. */
        size_t have = r->len - h.header_len;
        size_t drop = have < h.body_len ? have : h.body_len;
        reader_consume(r, h.header_len + drop);
        r->skip = h.body_len - drop;
        r->too_big = h.body_len;
        if (err) *err = h.err;
        return rc;
    }
    if (rc < 0) {
        r->failed = rc;
        if (err) *err = h.err;
        return rc;
    }
    if (rc == FP_FRAME_MORE || r->len - h.header_len < h.body_len) return FP_FRAME_MORE;
    char *copy = malloc(h.body_len + 1);
    if (!copy) {
        /* Not a stream error: the caller may free memory and call again. */
        if (err) *err = reader_failure_text(FP_FRAME_E_NOMEM);
        return FP_FRAME_E_NOMEM;
    }
    memcpy(copy, r->buf + h.header_len, h.body_len);
    copy[h.body_len] = '\0';
    reader_consume(r, h.header_len + h.body_len);
    *body = copy;
    *len = h.body_len;
    return FP_FRAME_OK;
}

/* ---- writer ------------------------------------------------------------------------------ */

static int format_header(char *buf, size_t size, size_t body_len)
{
    int n = snprintf(buf, size, "Content-Length: %zu\r\n\r\n", body_len);
    return n > 0 && (size_t)n < size ? n : -1;
}

char *fp_frame_encode(const char *body, size_t len, size_t *out_len)
{
    char header[64];
    int hlen = format_header(header, sizeof(header), len);
    if (hlen < 0 || len > SIZE_MAX - (size_t)hlen - 1) return NULL;
    char *out = malloc((size_t)hlen + len + 1);
    if (!out) return NULL;
    memcpy(out, header, (size_t)hlen);
    if (len > 0) memcpy(out + hlen, body, len);
    out[(size_t)hlen + len] = '\0';
    if (out_len) *out_len = (size_t)hlen + len;
    return out;
}

/* writev on a non-socket (pipe, tty) with SIGPIPE blocked for this thread; a SIGPIPE the
 * write raised is taken off the pending set before the old mask comes back, so the process
 * never sees it. One that was already pending before us is left alone. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
    sigset_t pipe_set, old_mask, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    if (pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask) != 0) return writev(fd, iov, iovcnt);
    ssize_t n = writev(fd, iov, iovcnt);
    int saved = errno;
    if (n < 0 && saved == EPIPE && !was_pending) {
        const struct timespec zero = {0, 0};
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    errno = saved;
    return n;
}

typedef struct frame_out {
    int fd;
    bool not_socket; /* learned from the first ENOTSOCK */
    struct iovec iov[2];
    int iovcnt;
} frame_out;

/* One write attempt. A socket gets MSG_DONTWAIT so that even a blocking socket cannot hold us
 * past the timeout: when it is full we poll instead. */
static ssize_t out_write_once(frame_out *o)
{
    if (!o->not_socket) {
        struct msghdr msg = {.msg_iov = o->iov, .msg_iovlen = (size_t)o->iovcnt};
        ssize_t n = sendmsg(o->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0 || errno != ENOTSOCK) return n;
        o->not_socket = true;
    }
    return writev_nosigpipe(o->fd, o->iov, o->iovcnt);
}

static void out_advance(frame_out *o, size_t n)
{
    while (n > 0 && o->iovcnt > 0) {
        if (n < o->iov[0].iov_len) {
            o->iov[0].iov_base = (char *)o->iov[0].iov_base + n;
            o->iov[0].iov_len -= n;
            return;
        }
        n -= o->iov[0].iov_len;
        o->iov[0] = o->iov[1];
        o->iovcnt--;
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for writability until the deadline (-1: none). Returns 0, or -errno. */
static int wait_writable(int fd, int64_t deadline)
{
    for (;;) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) return -ETIMEDOUT;
            wait = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int rc = poll(&p, 1, wait);
        if (rc > 0) {
            if (p.revents & POLLNVAL) return -EBADF;
            return 0; /* writable, or an error/hang-up the next write will name */
        }
        if (rc == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

/* The timeout covers the whole frame. After an error part of the frame may have gone out, so
 * the caller must close the connection. A blocking pipe (not a socket) cannot be bounded:
 * writev may block there however long the reader takes. */
int fp_frame_write(int fd, const char *body, size_t len, int timeout_ms)
{
    char header[64];
    int hlen = format_header(header, sizeof(header), len);
    if (hlen < 0) return -EINVAL;
    frame_out o = {.fd = fd, .iovcnt = len > 0 ? 2 : 1};
    o.iov[0] = (struct iovec){.iov_base = header, .iov_len = (size_t)hlen};
    o.iov[1] = (struct iovec){.iov_base = (void *)body, .iov_len = len};
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    while (o.iovcnt > 0) {
        ssize_t n = out_write_once(&o);
        if (n > 0) {
            out_advance(&o, (size_t)n);
            continue;
        }
        if (n == 0) return -EIO; /* no progress and no error: do not spin */
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int rc = wait_writable(fd, deadline);
        if (rc < 0) return rc;
    }
    return 0;
}
