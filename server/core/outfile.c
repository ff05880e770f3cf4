/* fp_outfile.h. The destination's directory is reached one component at a time (O_PATH,
 * O_NOFOLLOW): a link on the way is followed only when it belongs to root or to the user running
 * fp, so a link planted by another user never redirects where root writes; the last component
 * is never followed. Names are then used relative to that directory's descriptor. */
#include "fp_outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OUTFILE_MAX_COMPONENTS 256
#define OUTFILE_TRIES 64

static const char *outfile_kind(mode_t mode)
{
    if (S_ISLNK(mode)) return "a symlink";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
    return "not a regular file";
}

static int outfile_io_error(fp_error *err, const char *path, const char *what, int e)
{
    return fp_error_set(err, FP_E_IO, "check the directory exists and that you may write there",
                        "cannot write %s: %s%s%s", path, what ? what : "", what ? ": " : "",
                        strerror(e));
}

/* Opens the directory dir (O_PATH), refusing links that belong to someone else. */
static int outfile_open_dir(const char *path, const char *dir, fp_error *err)
{
    int fd = open(dir[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        outfile_io_error(err, path, NULL, errno);
        return -1;
    }
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", dir);
    uid_t me = geteuid();
    int n = 0;
    for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (++n > OUTFILE_MAX_COMPONENTS) {
            close(fd);
            fp_error_set(err, FP_E_IO, NULL, "cannot write %s: the path is too deep", path);
            return -1;
        }
        int next = openat(fd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (next < 0 || fstat(next, &st) != 0) {
            int e = errno;
            if (next >= 0) close(next);
            close(fd);
            outfile_io_error(err, path, NULL, e);
            return -1;
        }
        if (S_ISLNK(st.st_mode)) {
            close(next);
            if (st.st_uid != 0 && st.st_uid != me) {
                close(fd);
                char hint[256];
                snprintf(hint, sizeof hint,
                         "fp follows only links of root or of you (uid %u): give the real path",
                         (unsigned)me);
                fp_error_set(err, FP_E_UNTRUSTED, hint,
                             "not writing %s: its directory '%s' is reached through a link of "
                             "uid %u",
                             path, c, (unsigned)st.st_uid);
                return -1;
            }
            next = openat(fd, c, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (next < 0) {
                int e = errno;
                close(fd);
                outfile_io_error(err, path, NULL, e);
                return -1;
            }
        } else if (!S_ISDIR(st.st_mode)) {
            close(next);
            close(fd);
            outfile_io_error(err, path, NULL, ENOTDIR);
            return -1;
        }
        close(fd);
        fd = next;
    }
    return fd;
}

/* The destination, if it exists, must be a regular file: *mode gets its permissions (kept for
 * the new file), 0 when there is none. */
static int outfile_check_target(const fp_outfile *o, mode_t *mode, fp_error *err)
{
    struct stat st;
    *mode = 0;
    if (fstatat(o->dirfd, o->base, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) return 0;
        return outfile_io_error(err, o->path, NULL, errno);
    }
    if (S_ISREG(st.st_mode)) {
        *mode = st.st_mode & 07777;
        return 0;
    }
    char hint[256];
    snprintf(hint, sizeof hint,
             S_ISLNK(st.st_mode)
                 ? "fp does not write through links: give the path of the file itself"
                 : "fp writes only regular files: give another path, or remove it first");
    return fp_error_set(err, FP_E_IO, hint, "not writing %s: it is %s", o->path,
                        outfile_kind(st.st_mode));
}

static void outfile_tmp_name(fp_outfile *o)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)o;
    }
    /* Short enough for any base name: NAME_MAX bounds the whole. */
    snprintf(o->tmp, sizeof o->tmp, ".%.200s.fp-%016llx", o->base, (unsigned long long)r);
}

int fp_outfile_begin(fp_outfile *o, const char *path, fp_error *err)
{
    memset(o, 0, sizeof *o);
    o->dirfd = -1;
    if (!path || !path[0]) return fp_error_set(err, FP_E_USAGE, NULL, "an empty file name");
    if (strlen(path) >= sizeof o->path)
        return fp_error_set(err, FP_E_IO, NULL, "cannot write %.200s...: the path is too long",
                            path);
    snprintf(o->path, sizeof o->path, "%s", path);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') /* "out/" names a directory: refused below */
        n--;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (strlen(base) > NAME_MAX)
        return fp_error_set(err, FP_E_IO, NULL, "cannot write %s: the file name is too long", path);
    memcpy(o->base, base, strlen(base) + 1); /* fits: at most NAME_MAX, checked above */
    if (!o->base[0] || strcmp(o->base, ".") == 0 || strcmp(o->base, "..") == 0 ||
        path[strlen(path) - 1] == '/')
        return fp_error_set(err, FP_E_IO, "give a file name, not a directory",
                            "not writing %s: it names a directory", path);
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");

    o->dirfd = outfile_open_dir(path, dir, err);
    if (o->dirfd < 0) return -1;
    mode_t mode;
    if (outfile_check_target(o, &mode, err) != 0) {
        fp_outfile_abort(o);
        return -1;
    }
    int fd = -1;
    for (int i = 0; i < OUTFILE_TRIES && fd < 0; i++) {
        outfile_tmp_name(o);
        fd = openat(o->dirfd, o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    mode ? mode : 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        int e = errno;
        o->tmp[0] = '\0';
        fp_outfile_abort(o);
        return outfile_io_error(err, path, NULL, e);
    }
    if (mode) fchmod(fd, mode); /* the replaced file's mode, not the umask's */
    o->f = fdopen(fd, "w");
    if (!o->f) {
        int e = errno;
        close(fd);
        fp_outfile_abort(o);
        return outfile_io_error(err, path, NULL, e);
    }
    return 0;
}

void fp_outfile_abort(fp_outfile *o)
{
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->dirfd >= 0 && o->tmp[0]) unlinkat(o->dirfd, o->tmp, 0);
    o->tmp[0] = '\0';
    if (o->dirfd >= 0) close(o->dirfd);
    o->dirfd = -1;
}

int fp_outfile_commit(fp_outfile *o, fp_error *err)
{
    if (!o->f) return fp_error_set(err, FP_E_INTERNAL, NULL, "%s was not opened", o->path);
    bool failed = fflush(o->f) != 0 || ferror(o->f);
    int e = errno;
    if (fclose(o->f) != 0 && !failed) {
        failed = true;
        e = errno;
    }
    o->f = NULL;
    if (failed) {
        fp_outfile_abort(o);
        return fp_error_set(err, FP_E_IO, e == ENOSPC ? "the disk is full" : NULL,
                            "writing %s failed: %s (nothing was written there)", o->path,
                            strerror(e));
    }
    /* Checked again: a long command (perf) runs between begin and commit. rename() replaces a
     * link put there meanwhile rather than writing through it. */
    mode_t mode;
    if (outfile_check_target(o, &mode, err) != 0) {
        fp_outfile_abort(o);
        return -1;
    }
    if (renameat(o->dirfd, o->tmp, o->dirfd, o->base) != 0) {
        e = errno;
        fp_outfile_abort(o);
        return outfile_io_error(err, o->path, NULL, e);
    }
    o->tmp[0] = '\0';
    fp_outfile_abort(o); /* closes the directory */
    return 0;
}

int fp_outfile_check(const char *path, fp_error *err)
{
    fp_outfile o;
    if (fp_outfile_begin(&o, path, err) != 0) return -1;
    fp_outfile_abort(&o);
    return 0;
}
