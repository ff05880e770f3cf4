/* Output files (stack -f, perf -f, and every command that writes one): fp, often root, writes
 * only to the path it was given and never through a link someone else controls. The data goes
 * to a new file beside the destination (created with O_EXCL|O_NOFOLLOW) that is renamed over
 * it once complete, so a failure (a full disk, Ctrl-C) leaves the old file, or nothing, never a
 * partial one; an existing destination that is not a regular file (a FIFO that would block, a
 * directory, a device, a symlink) is refused before anything is written. */
#ifndef FP_OUTFILE_H
#define FP_OUTFILE_H

#include <limits.h>
#include <stdio.h>

#include "fp_error.h"

typedef struct fp_outfile {
    FILE *f;   /* write the contents here */
    int dirfd; /* the destination's directory (O_PATH) */
    char path[PATH_MAX];
    char base[NAME_MAX + 1];
    char tmp[NAME_MAX + 1];
} fp_outfile;

/* Checks path and creates the temporary file beside it. Returns 0 (o->f is open), or -1 with
 * err (FP_E_IO, or FP_E_UNTRUSTED for a link of another user) and nothing created. */
int fp_outfile_begin(fp_outfile *o, const char *path, fp_error *err);
/* Flushes and closes o->f and renames the file into place (the destination checked again).
 * Returns 0, or -1 with err; on failure the temporary file is removed and path is untouched. */
int fp_outfile_commit(fp_outfile *o, fp_error *err);
/* Removes the temporary file without touching path (after a failure before commit). */
void fp_outfile_abort(fp_outfile *o);

/* Whether path could be written now, checked by creating and removing a temporary file beside
 * it: for commands that run long before they write (perf). Returns 0, or -1 with err. */
int fp_outfile_check(const char *path, fp_error *err);

#endif
