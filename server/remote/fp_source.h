/* Reading the files a target names (its code objects' file names, for source lines) with the
 * target's rights, not fp's: root attaching to another user's process must never show lines of a
 * file that user could not read. Only regular files are read, and only up to a bound. */
#ifndef FP_SOURCE_H
#define FP_SOURCE_H

#include <stddef.h>

typedef struct fp_source_reader fp_source_reader;

/* A reader of pid's files: paths are resolved as pid sees them (absolute ones in its root,
 * relative ones from its working directory) and opened with its file-system uid, gid and
 * groups. When fp runs as root, that happens in a short-lived child process that takes those
 * credentials (started at the first read, ended by fp_source_reader_free). NULL: no memory. */
fp_source_reader *fp_source_reader_new(int pid);
void fp_source_reader_free(fp_source_reader *r);

/* The contents of path (NUL-terminated, malloc'd, caller frees) and their length in *len, or NULL
 * when the target could not open it, it is not a regular file, or it is larger than max. */
char *fp_source_read(fp_source_reader *r, const char *path, size_t max, size_t *len);

#endif
