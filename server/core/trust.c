/* The checks of fp_trust.h. Paths are walked one component at a time with O_PATH|O_NOFOLLOW
 * from an open directory, so that what is checked is what is there (a link is seen as a link,
 * not as what it points to), and every refusal names the path, what was found and whose it is. */
#include "fp_trust.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fp_paths.h"

/* The fp_agent package is a few dozen files; a tree much bigger than this is not ours. */
#define TRUST_MAX_PACKAGE_ENTRIES 4096
#define TRUST_MAX_PACKAGE_DEPTH 8

static const char *trust_kind(mode_t mode)
{
    if (S_ISLNK(mode)) return "a symlink";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISFIFO(mode)) return "a FIFO";
    return "a device or other special file";
}

static bool trust_owner_ok(const fp_target *t, uid_t uid)
{
    return uid == 0 || uid == t->uid;
}

/* Writable by group or others, and not sticky (in a sticky directory nobody can rename or remove
 * what is not theirs). */
static bool trust_open_to_others(const struct stat *st)
{
    return (st->st_mode & (S_IWGRP | S_IWOTH)) &&
           !(S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX));
}

/* ---------------------------------------------------------------------------------------------
 * The agent's socket
 */

static int trust_refuse_socket(fp_error *err, const fp_target *t, const char *path,
                               const char *what)
{
    char hint[768];
    snprintf(hint, sizeof hint,
             "fp talks only to an agent in a directory of the target's user (uid %u) or root,\n"
             "mode 0700, through a socket of that user. Something else is there, possibly put by\n"
             "another user to pass for the agent of process %d. Remove it as root (rm -rf %.200s)\n"
             "and run fp again: the agent makes its own.",
             (unsigned)t->uid, t->pid, path);
    return fp_error_set(err, FP_E_UNTRUSTED, hint, "not talking to the agent of process %d: %s",
                        t->pid, what);
}

/* Splits "/proc/N/root/tmp/..." into the root to walk from and the path inside it. */
static void trust_split_root(const char *path, char *root, size_t size, const char **inside)
{
    int n = 0, end = 0;
    if (sscanf(path, "/proc/%d/root%n", &n, &end) == 1 && end > 0 && path[end] == '/') {
        snprintf(root, size, "%.*s", end, path);
        *inside = path + end;
        return;
    }
    snprintf(root, size, "/");
    *inside = path;
}

#define TRUST_MAX_COMPONENTS 32

int fp_trust_socket(const fp_target *t, const char *socket_path, fp_error *err)
{
    char root[64];
    const char *inside;
    trust_split_root(socket_path, root, sizeof root, &inside);

    /* The components of the path inside the target's root: /tmp, fp-UID, agent-NS-PID.sock. */
    char copy[PATH_MAX];
    const char *comps[TRUST_MAX_COMPONENTS];
    int n = 0;
    if ((size_t)snprintf(copy, sizeof copy, "%s", inside) >= sizeof copy)
        return trust_refuse_socket(err, t, socket_path, "the path is too long");
    for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (n == TRUST_MAX_COMPONENTS)
            return trust_refuse_socket(err, t, socket_path, "the path is too deep");
        comps[n++] = c;
    }
    if (n < 2) return trust_refuse_socket(err, t, socket_path, "not a socket in a directory");

    int dirfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) {
        if (errno == ENOENT) return FP_TRUST_ABSENT;
        return fp_error_set(err, FP_E_PERMISSION, NULL,
                            "cannot open %s to check the agent's socket: %s", root,
                            strerror(errno));
    }
    char walked[PATH_MAX];
    size_t wlen = (size_t)snprintf(walked, sizeof walked, "%s", strcmp(root, "/") ? root : "");
    int rc = FP_TRUST_OK;
    for (int i = 0; i < n && rc == FP_TRUST_OK; i++) {
        bool last = i == n - 1, agent_dir = i == n - 2;
        wlen += (size_t)snprintf(walked + wlen, sizeof walked - wlen, "/%s", comps[i]);
        if (wlen >= sizeof walked) {
            rc = trust_refuse_socket(err, t, socket_path, "the path is too long");
            break;
        }
        int fd = openat(dirfd, comps[i], O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            int e = errno;
            if (fd >= 0) close(fd);
            if (e == ENOENT || e == ENOTDIR)
                rc = FP_TRUST_ABSENT;
            else
                rc = fp_error_set(err, FP_E_PERMISSION, NULL, "cannot check %s: %s", walked,
                                  strerror(e));
            break;
        }
        if (S_ISLNK(st.st_mode) && !last && !agent_dir && st.st_uid == 0) {
            /* A system's own link (/tmp -> /var/tmp) is root's: follow it. */
            close(fd);
            fd = openat(dirfd, comps[i], O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0 || fstat(fd, &st) != 0) {
                if (fd >= 0) close(fd);
                rc = FP_TRUST_ABSENT;
                break;
            }
        }
        char what[PATH_MAX + 256];
        what[0] = '\0';
        if (S_ISLNK(st.st_mode))
            snprintf(what, sizeof what, "%s is a symlink (owned by uid %u), not %s", walked,
                     (unsigned)st.st_uid, last ? "the agent's socket" : "a directory");
        else if (!last && !S_ISDIR(st.st_mode))
            snprintf(what, sizeof what, "%s is %s (owned by uid %u), not a directory", walked,
                     trust_kind(st.st_mode), (unsigned)st.st_uid);
        else if (agent_dir && !trust_owner_ok(t, st.st_uid))
            snprintf(what, sizeof what,
                     "the agent's directory %s belongs to uid %u, not to the target's user "
                     "(uid %u) or root",
                     walked, (unsigned)st.st_uid, (unsigned)t->uid);
        else if (agent_dir && (st.st_mode & 07777) != 0700)
            snprintf(what, sizeof what,
                     "the agent's directory %s has mode %04o (owner uid %u), not 0700: others "
                     "may have put something there",
                     walked, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
        else if (!last && !agent_dir && trust_open_to_others(&st))
            snprintf(what, sizeof what,
                     "%s is writable by others (mode %04o, owner uid %u) and not sticky: anyone "
                     "could replace the agent's directory",
                     walked, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
        else if (last && !S_ISSOCK(st.st_mode))
            snprintf(what, sizeof what, "%s is %s (owned by uid %u), not the agent's socket",
                     walked, trust_kind(st.st_mode), (unsigned)st.st_uid);
        else if (last && !trust_owner_ok(t, st.st_uid))
            snprintf(what, sizeof what,
                     "the socket %s belongs to uid %u, not to the target's user (uid %u) or root",
                     walked, (unsigned)st.st_uid, (unsigned)t->uid);
        if (what[0]) rc = trust_refuse_socket(err, t, walked, what);
        close(dirfd);
        dirfd = fd;
    }
    close(dirfd);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The peer
 */

static int trust_refuse_peer(fp_error *err, const fp_target *t, const char *path, const char *what)
{
    char hint[512];
    snprintf(hint, sizeof hint,
             "fp talks only to the agent inside process %d. Whatever listens on that socket was\n"
             "put there to pass for it; remove the socket as root (rm -f %.200s) and run fp again.",
             t->pid, path);
    return fp_error_set(err, FP_E_UNTRUSTED, hint,
                        "not talking to the agent of process %d through %s: %s", t->pid, path,
                        what);
}

int fp_trust_peer(int fd, const fp_target *t, const char *socket_path, bool *confirm, fp_error *err)
{
    *confirm = false;
    struct ucred cred;
    socklen_t len = sizeof cred;
    char what[256];
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof cred) {
        snprintf(what, sizeof what, "cannot tell who serves it (SO_PEERCRED: %s)", strerror(errno));
        return trust_refuse_peer(err, t, socket_path, what);
    }
    if (!trust_owner_ok(t, cred.uid)) {
        snprintf(what, sizeof what,
                 "it is served by uid %u (process %d), not by the target's user (uid %u) or root",
                 (unsigned)cred.uid, (int)cred.pid, (unsigned)t->uid);
        return trust_refuse_peer(err, t, socket_path, what);
    }
    if (cred.pid == t->pid) return 0;
    if (cred.pid == 0) {
        /* The peer's pid does not exist in fp's pid namespace: its status must say which
         * process it is. */
        *confirm = true;
        return 0;
    }
    snprintf(what, sizeof what, "it is served by process %d (uid %u), not by process %d",
             (int)cred.pid, (unsigned)cred.uid, t->pid);
    return trust_refuse_peer(err, t, socket_path, what);
}

int fp_trust_confirm(const cJSON *status, const fp_target *t, const char *socket_path,
                     fp_error *err)
{
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(status, "pid_ns");
    const cJSON *start = cJSON_GetObjectItemCaseSensitive(status, "start_time");
    unsigned long long want_ns = fp_paths_pid_ns(t->pid);
    unsigned long long want_start = fp_paths_start_time(t->pid);
    if (cJSON_IsNumber(ns) && cJSON_IsNumber(start) && want_ns && want_start &&
        (unsigned long long)ns->valuedouble == want_ns &&
        (unsigned long long)start->valuedouble == want_start)
        return 0;
    char what[384];
    snprintf(what, sizeof what,
             "its process is not visible from fp's pid namespace, and it could not confirm it "
             "runs in process %d (pid namespace %llu, started at tick %llu)",
             t->pid, want_ns, want_start);
    return trust_refuse_peer(err, t, socket_path, what);
}

/* ---------------------------------------------------------------------------------------------
 * The agent's files
 */

static int trust_refuse_file(fp_error *err, const char *lib, const char *what)
{
    char hint[768];
    snprintf(hint, sizeof hint,
             "the agent runs inside the target with the target's rights: a library or package\n"
             "that another user can change would run that user's code there. Install fp where\n"
             "only root or you can write (make install), or fix it: chown -R root: and chmod -R\n"
             "go-w on the files named. FP_AGENT_LIB chooses another library.");
    return fp_error_set(err, FP_E_UNTRUSTED, hint, "refusing the agent library %s: %s", lib, what);
}

/* The owner and mode of one file or directory of the agent (lstat: a link is refused). */
static int trust_check_entry(const char *lib, const char *path, const struct stat *st,
                             bool allow_link, fp_error *err)
{
    uid_t me = geteuid();
    char what[PATH_MAX + 192];
    if (S_ISLNK(st->st_mode) && !allow_link) {
        snprintf(what, sizeof what, "%s is a symlink (owned by uid %u)", path,
                 (unsigned)st->st_uid);
        return trust_refuse_file(err, lib, what);
    }
    if (st->st_uid != 0 && st->st_uid != me) {
        snprintf(what, sizeof what, "%s belongs to uid %u, not to root or you (uid %u)", path,
                 (unsigned)st->st_uid, (unsigned)me);
        return trust_refuse_file(err, lib, what);
    }
    if (!S_ISLNK(st->st_mode) && trust_open_to_others(st)) {
        snprintf(what, sizeof what, "%s is writable by others (mode %04o)", path,
                 (unsigned)(st->st_mode & 07777));
        return trust_refuse_file(err, lib, what);
    }
    return 0;
}

/* Every entry below dir (the package), depth first; *budget bounds the walk. */
static int trust_check_tree(const char *lib, const char *dir, int depth, int *budget, fp_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return 0; /* unreadable is not writable by others; the agent reports what it lacks */
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (--*budget < 0) {
            rc = trust_refuse_file(err, lib, "its package directory holds too many files");
            break;
        }
        rc = trust_check_entry(lib, path, &st, false, err);
        if (rc == 0 && S_ISDIR(st.st_mode)) {
            if (depth >= TRUST_MAX_PACKAGE_DEPTH)
                rc = trust_refuse_file(err, lib, "its package directory is nested too deeply");
            else
                rc = trust_check_tree(lib, path, depth + 1, budget, err);
        }
    }
    closedir(d);
    return rc;
}

int fp_trust_agent_files(const char *lib, fp_error *err)
{
    if (lib[0] != '/') return trust_refuse_file(err, lib, "not an absolute path");
    struct stat st;
    if (lstat(lib, &st) != 0)
        return fp_error_set(err, FP_E_INJECT, NULL, "cannot read the agent library %s: %s", lib,
                            strerror(errno));
    if (!S_ISREG(st.st_mode)) {
        char what[64];
        snprintf(what, sizeof what, "it is %s, not a regular file", trust_kind(st.st_mode));
        return trust_refuse_file(err, lib, what);
    }
    if (trust_check_entry(lib, lib, &st, false, err) != 0) return -1;

    /* Every directory above it: whoever may rename one may put another library in its place. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", lib);
    for (char *slash = strrchr(dir, '/'); slash; slash = strrchr(dir, '/')) {
        if (slash == dir) {
            dir[1] = '\0';
        } else {
            *slash = '\0';
        }
        if (lstat(dir, &st) != 0)
            return fp_error_set(err, FP_E_INJECT, NULL, "cannot check %s: %s", dir,
                                strerror(errno));
        if (trust_check_entry(lib, dir, &st, false, err) != 0) return -1;
        if (slash == dir) break;
    }

    /* The package the agent imports: <dir of the library>/python/fp_agent. */
    char pkg[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", lib);
    *strrchr(dir, '/') = '\0';
    if ((size_t)snprintf(pkg, sizeof pkg, "%s/%s", dir[0] ? dir : "", FP_AGENT_PY_SUBDIR) >=
        sizeof pkg)
        return 0;
    if (lstat(pkg, &st) != 0) return 0; /* no package: the agent says so at its first request */
    if (trust_check_entry(lib, pkg, &st, false, err) != 0) return -1;
    int budget = TRUST_MAX_PACKAGE_ENTRIES;
    return S_ISDIR(st.st_mode) ? trust_check_tree(lib, pkg, 0, &budget, err) : 0;
}
