/* Content-Length framing, the one framing used on every fp wire
 * (editor <-> fp-lsp, client <-> agent): "Content-Length: N\r\n\r\n" + N bytes of JSON.
 * The reader is incremental: feed it whatever read() returned, take whole bodies out. */
#ifndef FP_FRAME_H
#define FP_FRAME_H

#include <stddef.h>
#include <sys/types.h>

/* Largest body a reader accepts unless told otherwise. */
#define FP_FRAME_DEFAULT_MAX (64u * 1024u * 1024u)

enum {
    FP_FRAME_MORE = 0,      /* no whole message buffered yet */
    FP_FRAME_OK = 1,        /* one body returned */
    FP_FRAME_E_HEADER = -1, /* malformed or missing Content-Length header */
    FP_FRAME_E_TOOBIG = -2, /* Content-Length above the reader's limit */
    FP_FRAME_E_NOMEM = -3,
};

typedef struct fp_frame_reader {
    char *buf;       /* buffered bytes not yet returned */
    size_t len;      /* bytes used in buf */
    size_t cap;      /* bytes allocated for buf */
    size_t max_body; /* largest Content-Length accepted */
    int failed;      /* set after an error: the stream cannot be resynchronised */
    size_t skip;     /* body bytes of a refused (too big) message still to be discarded */
    size_t too_big;  /* the Content-Length of the last message refused as too big */
    int hunting;     /* after fp_frame_reader_resync: looking for the next header */
} fp_frame_reader;

void fp_frame_reader_init(fp_frame_reader *r, size_t max_body);
/* Frees the buffer; the reader may be initialised again. */
void fp_frame_reader_free(fp_frame_reader *r);
/* Appends n bytes. Returns 0, or FP_FRAME_E_NOMEM. */
int fp_frame_reader_feed(fp_frame_reader *r, const char *data, size_t n);
/* Takes the next whole body out of the buffer.
 * FP_FRAME_OK: *body is a malloc'd NUL-terminated copy (the caller frees it), *len its length.
 * FP_FRAME_MORE: feed more bytes. Negative: a framing error, *err (static) says which;
 * the connection should be answered (where possible) and closed. The one exception is
 * FP_FRAME_E_TOOBIG for a well-formed length (r->too_big): that body is discarded as it arrives
 * without being kept, so a reader that answers the refusal may go on reading the next message. */
int fp_frame_reader_next(fp_frame_reader *r, char **body, size_t *len, const char **err);

/* After a framing error, for a reader that must go on (a language server's stdin): drops the
 * broken header and whatever follows it up to the next "Content-Length:" (fed later, perhaps),
 * from where fp_frame_reader_next reads on. */
void fp_frame_reader_resync(fp_frame_reader *r);

/* Returns a malloc'd "Content-Length: ...\r\n\r\n<body>" (caller frees), its length in *out_len. */
char *fp_frame_encode(const char *body, size_t len, size_t *out_len);
/* Writes one framed body to a blocking or non-blocking fd, retrying on EINTR/EAGAIN
 * (polling up to timeout_ms for writability; -1 waits forever). Returns 0, or -errno. */
int fp_frame_write(int fd, const char *body, size_t len, int timeout_ms);

#endif
