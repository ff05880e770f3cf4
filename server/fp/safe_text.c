/* fp_safe.h: a fopencookie stream that rewrites what is written through it. Kept: printable
 * ASCII, newline, tab and well-formed UTF-8. Escaped: C0 controls and DEL (\x1b), bytes that are
 * not UTF-8 (\xff), and code points a terminal acts on or that reorder the text around them:
 * C1 controls (U+009B is a CSI on its own) and the bidirectional embeddings, overrides and
 * isolates (\u202e). A UTF-8 sequence cut between two writes is held until the next one. */
#include "fp_safe.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct safe_stream {
    int fd;      /* >= 0: the file descriptor written to */
    FILE *under; /* else: the stream written to */
    unsigned char carry[4];
    size_t ncarry;
} safe_stream;

typedef struct safe_out {
    char buf[4096];
    size_t len;
    safe_stream *s;
    int failed;
} safe_out;

static FILE *safe_orig_stdout, *safe_orig_stderr, *safe_stdout, *safe_stderr;

static void safe_flush_out(safe_out *o)
{
    size_t off = 0;
    while (!o->failed && off < o->len) {
        if (o->s->fd >= 0) {
            ssize_t n = write(o->s->fd, o->buf + off, o->len - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                o->failed = 1;
                break;
            }
            off += (size_t)n;
        } else {
            if (fwrite(o->buf + off, 1, o->len - off, o->s->under) != o->len - off) o->failed = 1;
            off = o->len;
        }
    }
    o->len = 0;
}

static void safe_put(safe_out *o, const void *p, size_t n)
{
    if (o->len + n > sizeof o->buf) safe_flush_out(o);
    memcpy(o->buf + o->len, p, n);
    o->len += n;
}

/* "\\xNN" for a byte (wide = 0) or "\\uNNNN" for a code point (wide = 1). */
static void safe_put_escape(safe_out *o, int wide, unsigned v)
{
    char e[16];
    int n = wide ? snprintf(e, sizeof e, "\\u%04x", v) : snprintf(e, sizeof e, "\\x%02x", v);
    safe_put(o, e, (size_t)n);
}

/* Length of the UTF-8 sequence that starts with c (0: c cannot start one), and whether the second
 * byte b is allowed after it (no overlong forms, no surrogates, nothing above U+10FFFF). */
static int safe_seq_len(unsigned char c)
{
    if (c >= 0xc2 && c <= 0xdf) return 2;
    if (c >= 0xe0 && c <= 0xef) return 3;
    if (c >= 0xf0 && c <= 0xf4) return 4;
    return 0;
}

static int safe_second_ok(unsigned char c, unsigned char b)
{
    if (b < 0x80 || b > 0xbf) return 0;
    if (c == 0xe0) return b >= 0xa0;
    if (c == 0xed) return b <= 0x9f;
    if (c == 0xf0) return b >= 0x90;
    if (c == 0xf4) return b <= 0x8f;
    return 1;
}

static int safe_hidden_code_point(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2066 && cp <= 0x2069);
}

/* Rewrites p[0, n) to o; returns how many bytes at the end were kept back (a cut sequence). */
static size_t safe_rewrite(safe_out *o, const unsigned char *p, size_t n, int final)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
            safe_put(o, &c, 1);
            i++;
            continue;
        }
        if (c < 0x80) {
            safe_put_escape(o, 0, c);
            i++;
            continue;
        }
        int len = safe_seq_len(c);
        int ok = len > 0;
        int k = 1;
        for (; ok && k < len && i + (size_t)k < n; k++)
            ok = k == 1 ? safe_second_ok(c, p[i + 1]) : (p[i + k] >= 0x80 && p[i + k] <= 0xbf);
        if (ok && i + (size_t)len > n && !final) return n - i; /* the rest comes next time */
        if (!ok || i + (size_t)len > n) {
            safe_put_escape(o, 0, c);
            i++;
            continue;
        }
        uint32_t cp = c & (0x7f >> len);
        for (k = 1; k < len; k++)
            cp = (cp << 6) | (p[i + k] & 0x3f);
        if (safe_hidden_code_point(cp))
            safe_put_escape(o, 1, cp);
        else
            safe_put(o, p + i, (size_t)len);
        i += (size_t)len;
    }
    return 0;
}

static ssize_t safe_write(void *cookie, const char *buf, size_t size)
{
    safe_stream *s = cookie;
    safe_out o = {.s = s};
    const unsigned char *p = (const unsigned char *)buf;
    size_t n = size;
    unsigned char *joined = NULL;
    if (s->ncarry) { /* complete the sequence held from the last write */
        joined = malloc(s->ncarry + size);
        if (joined) {
            memcpy(joined, s->carry, s->ncarry);
            memcpy(joined + s->ncarry, buf, size);
            p = joined;
            n += s->ncarry;
        } else {
            safe_rewrite(&o, s->carry, s->ncarry, 1);
        }
        s->ncarry = 0;
    }
    size_t kept = safe_rewrite(&o, p, n, 0);
    if (kept) {
        memcpy(s->carry, p + n - kept, kept);
        s->ncarry = kept;
    }
    free(joined);
    safe_flush_out(&o);
    return o.failed ? -1 : (ssize_t)size;
}

static int safe_close(void *cookie)
{
    safe_stream *s = cookie;
    if (s->ncarry) { /* a sequence that never completed */
        safe_out o = {.s = s};
        safe_rewrite(&o, s->carry, s->ncarry, 1);
        safe_flush_out(&o);
    }
    if (s->under) fflush(s->under);
    free(s);
    return 0;
}

static FILE *safe_open(int fd, FILE *under)
{
    safe_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->fd = fd;
    s->under = under;
    cookie_io_functions_t io = {.write = safe_write, .close = safe_close};
    FILE *f = fopencookie(s, "w", io);
    if (!f) free(s);
    return f;
}

FILE *safe_wrap(FILE *under)
{
    return safe_open(-1, under);
}

/* At exit: what a stream still holds goes out through it, then the real streams are back. */
static void safe_uninstall(void)
{
    if (safe_stdout) {
        stdout = safe_orig_stdout;
        fclose(safe_stdout);
        safe_stdout = NULL;
    }
    if (safe_stderr) {
        stderr = safe_orig_stderr;
        fclose(safe_stderr);
        safe_stderr = NULL;
    }
}

void safe_install(bool json)
{
    atexit(safe_uninstall);
    fflush(stdout);
    fflush(stderr);
    if (!json && (safe_stdout = safe_open(STDOUT_FILENO, NULL)) != NULL) {
        /* Same buffering as the stdout it stands for. */
        setvbuf(safe_stdout, NULL, isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF, BUFSIZ);
        safe_orig_stdout = stdout;
        stdout = safe_stdout; /* glibc's stdout is an assignable variable */
    }
    if ((safe_stderr = safe_open(STDERR_FILENO, NULL)) != NULL) {
        setvbuf(safe_stderr, NULL, _IONBF, 0);
        safe_orig_stderr = stderr;
        stderr = safe_stderr;
    }
}

FILE *safe_real(FILE *f)
{
    if (f && f == safe_stdout) return safe_orig_stdout;
    if (f && f == safe_stderr) return safe_orig_stderr;
    return f;
}
