/* fp_source.h: the target's files, read with the target's rights. Root hands the work to a
 * child that enters the target's root and working directory (chroot + fchdir on the target's own
 * /proc/PID/root and /proc/PID/cwd) and takes its file-system credentials; the child opens each
 * file and passes the descriptor back over a socket pair (SCM_RIGHTS), so fp reads exactly what
 * the target could have opened, nothing more. The child runs only system calls after fork (fp-lsp
 * has threads), and dies with fp (PR_SET_PDEATHSIG). */
#include "fp_source.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The child answers within this, or is killed and no more files are read. */
#define SOURCE_REPLY_MS 2000
#define SOURCE_MAX_GROUPS 1024
#define SOURCE_MAX_PATH 4096

typedef enum source_mode {
    SOURCE_DIRECT, /* fp has the target's rights already (same user) */
    SOURCE_CHILD,  /* fp is root: a child with the target's credentials opens the files */
    SOURCE_NONE,   /* nothing can be read (the target's credentials are unknown, the child died) */
} source_mode;

struct fp_source_reader {
    int pid;
    source_mode mode;
    uid_t fsuid;
    gid_t fsgid;
    gid_t *groups;
    int ngroups;
    int rootfd, cwdfd; /* O_PATH: the target's / and working directory */
    pid_t child;       /* 0 until started */
    int sock;          /* our end of the pair with the child */
};

/* ===================================================================== credentials */

/* Field `which` (0 real .. 3 file system) of the "Uid:" or "Gid:" line, and the groups. */
static int source_read_creds(fp_source_reader *r)
{
    char path[64], line[8192];
    snprintf(path, sizeof path, "/proc/%d/status", r->pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long v[4];
        if (sscanf(line, "Uid: %lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) == 4) {
            r->fsuid = (uid_t)v[3];
            found |= 1;
        } else if (sscanf(line, "Gid: %lu %lu %lu %lu", &v[0], &v[1], &v[2], &v[3]) == 4) {
            r->fsgid = (gid_t)v[3];
            found |= 2;
        } else if (strncmp(line, "Groups:", 7) == 0) {
            found |= 4;
            r->groups = calloc(SOURCE_MAX_GROUPS, sizeof *r->groups);
            if (!r->groups) break;
            char *p = line + 7, *end;
            for (;;) {
                unsigned long g = strtoul(p, &end, 10);
                if (end == p) break;
                if (r->ngroups == SOURCE_MAX_GROUPS) {
                    found = 0; /* a partial list could grant less or more than the target has */
                    break;
                }
                r->groups[r->ngroups++] = (gid_t)g;
                p = end;
            }
        }
    }
    fclose(f);
    return found == 7 ? 0 : -1;
}

fp_source_reader *fp_source_reader_new(int pid)
{
    fp_source_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->pid = pid;
    r->sock = -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/root", pid);
    r->rootfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    r->cwdfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (r->rootfd < 0 || source_read_creds(r) != 0)
        r->mode = SOURCE_NONE;
    else if (geteuid() == 0)
        r->mode = SOURCE_CHILD;
    else if (r->fsuid == geteuid())
        r->mode = SOURCE_DIRECT;
    else
        r->mode = SOURCE_NONE; /* another user's process: fp could not read its frames either */
    return r;
}

static void source_stop_child(fp_source_reader *r)
{
    if (r->sock >= 0) close(r->sock); /* the child reads EOF and exits */
    r->sock = -1;
    if (r->child > 0) {
        int st;
        /* It exits at once on EOF; one that does not (stuck in a file system) is killed. */
        for (int i = 0; i < 100 && waitpid(r->child, &st, WNOHANG) == 0; i++) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
            if (i == 99) {
                kill(r->child, SIGKILL);
                waitpid(r->child, &st, 0);
            }
        }
    }
    r->child = 0;
}

void fp_source_reader_free(fp_source_reader *r)
{
    if (!r) return;
    source_stop_child(r);
    if (r->rootfd >= 0) close(r->rootfd);
    if (r->cwdfd >= 0) close(r->cwdfd);
    free(r->groups);
    free(r);
}

/* ===================================================================== opening a file */

/* Opens path for reading if it is a regular file: first as O_PATH (opening a FIFO or a device
 * for real could block or act), then for real, checking the type again. O_NONBLOCK keeps a FIFO
 * swapped in between from blocking. Returns the fd or -1. Used in the child (system calls only). */
static int source_open_regular(int dirfd, const char *path, bool in_root)
{
    int fd;
    if (in_root) {
        /* Same user, no chroot: resolve as if rootfd were / (links included); before Linux
         * 5.6, relative to it (a link to an absolute path then resolves in fp's root). */
        struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
        fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd < 0 && errno == ENOSYS)
            fd = openat(dirfd, path + strspn(path, "/"), O_PATH | O_CLOEXEC);
    } else {
        fd = openat(dirfd, path, O_PATH | O_CLOEXEC);
    }
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -1;
    }
    /* Reopening the O_PATH descriptor checks permissions with our (the target's) rights. */
    char self[32] = "/proc/self/fd/", digits[12];
    int nd = 0;
    for (unsigned v = (unsigned)fd; nd == 0 || v; v /= 10) /* no stdio in the child */
        digits[nd++] = (char)('0' + v % 10);
    for (size_t at = strlen(self); nd > 0; at++)
        self[at] = digits[--nd], self[at + 1] = '\0';
    int rfd = open(self, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (rfd < 0)
        rfd = in_root ? -1 : openat(dirfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    close(fd);
    if (rfd < 0) return -1;
    if (fstat(rfd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(rfd);
        return -1;
    }
    return rfd;
}

static ssize_t source_send_fd(int sock, int fd)
{
    char byte = fd >= 0 ? 1 : 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    return sendmsg(sock, &msg, MSG_NOSIGNAL);
}

/* The child: become the target (its root, its working directory, its credentials), then open
 * each path received and send back its fd (or nothing). */
static void source_child(fp_source_reader *r, int sock, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* fp died before the line above took effect */
    if (fchdir(r->rootfd) != 0 || chroot(".") != 0) _exit(1);
    if (fchdir(r->cwdfd >= 0 ? r->cwdfd : r->rootfd) != 0) _exit(1);
    /* Raw system calls: the child of a threaded process must not take glibc's setxid path. */
    if (syscall(SYS_setgroups, (size_t)r->ngroups, r->groups) != 0 ||
        syscall(SYS_setresgid, r->fsgid, r->fsgid, r->fsgid) != 0 ||
        syscall(SYS_setresuid, r->fsuid, r->fsuid, r->fsuid) != 0)
        _exit(1);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    char path[SOURCE_MAX_PATH + 1];
    for (;;) {
        ssize_t n = recv(sock, path, SOURCE_MAX_PATH, 0);
        if (n <= 0) _exit(0);
        path[n] = '\0';
        int fd = source_open_regular(AT_FDCWD, path, false);
        ssize_t sent = source_send_fd(sock, fd);
        if (fd >= 0) close(fd);
        if (sent < 0) _exit(0);
    }
}

static int source_start_child(fp_source_reader *r)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (pid == 0) {
        close(sv[0]);
        source_child(r, sv[1], parent);
        _exit(1);
    }
    close(sv[1]);
    r->child = pid;
    r->sock = sv[0];
    return 0;
}

/* Asks the child for path; returns the fd it opened, or -1. */
static int source_ask_child(fp_source_reader *r, const char *path)
{
    if (r->child == 0 && source_start_child(r) != 0) {
        r->mode = SOURCE_NONE;
        return -1;
    }
    size_t len = strlen(path);
    if (len == 0 || len > SOURCE_MAX_PATH) return -1;
    if (send(r->sock, path, len, MSG_NOSIGNAL) != (ssize_t)len) goto broken;
    struct pollfd p = {.fd = r->sock, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, SOURCE_REPLY_MS)) < 0 && errno == EINTR)
        ;
    if (rc <= 0) goto broken;
    char byte = 0;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n = recvmsg(r->sock, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) goto broken;
    int fd = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int)))
            memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return byte ? fd : -1;

broken: /* a child that does not answer reads nothing more */
    source_stop_child(r);
    r->mode = SOURCE_NONE;
    return -1;
}

/* ===================================================================== reading */

char *fp_source_read(fp_source_reader *r, const char *path, size_t max, size_t *len)
{
    *len = 0;
    if (!r || !path[0]) return NULL;
    int fd = -1;
    if (r->mode == SOURCE_CHILD)
        fd = source_ask_child(r, path);
    else if (r->mode == SOURCE_DIRECT && path[0] == '/')
        fd = source_open_regular(r->rootfd, path, true);
    else if (r->mode == SOURCE_DIRECT && r->cwdfd >= 0)
        fd = source_open_regular(r->cwdfd, path, false);
    if (fd < 0) return NULL;

    struct stat st;
    char *data = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size <= max)
        data = malloc((size_t)st.st_size + 1);
    size_t used = 0;
    /* The file may grow while read: never past what was allocated. */
    while (data && used < (size_t)st.st_size) {
        ssize_t n = read(fd, data + used, (size_t)st.st_size - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += (size_t)n;
    }
    close(fd);
    if (data) data[used] = '\0';
    *len = used;
    return data;
}
