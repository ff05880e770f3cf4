/* Turns on a process (see fp_turns.h): an flock on /tmp/fp-EUID/attach-PID.lock. The holder
 * unlinks the file before letting go, so a waiter that locked a file no longer at the path
 * tries again with the new one. */
#include "fp_turns.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fp_paths.h"
#include "fp_clock.h"

/* Only a directory of ours is used, as for the agent's socket: another user's directory could
 * hold or fake anything. */
int fp_turn_own_dir(char *dir, size_t size, int create)
{
    struct stat st;
    if (fp_paths_socket_dir(geteuid(), dir, size) != 0) return -1;
    if (create && mkdir(dir, 0700) != 0 && errno != EEXIST) return -1;
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) return -1;
    return 0;
}

int fp_turn_take(int pid, int timeout_ms, fp_turn *turn, fp_error *err)
{
    char dir[64];
    turn->fd = -1;
    turn->path[0] = '\0';
    if (fp_turn_own_dir(dir, sizeof dir, 1) != 0) {
        /* Named all the same, for the caller's messages ("... not usable"). */
        if (fp_paths_socket_dir(geteuid(), turn->path, sizeof turn->path) != 0)
            turn->path[0] = '\0';
        return 0;
    }
    snprintf(turn->path, sizeof turn->path, "%s/attach-%d.lock", dir, pid);
    double deadline = fp_clock_ms() + timeout_ms;
    int pause_ms = 1;
    for (;;) {
        int fd = open(turn->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) return 0;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            struct stat held, now;
            if (fstat(fd, &held) == 0 && stat(turn->path, &now) == 0 && held.st_ino == now.st_ino &&
                held.st_dev == now.st_dev) {
                turn->fd = fd;
                return 1;
            }
            close(fd); /* the last holder unlinked it: lock the new one */
            continue;
        }
        int e = errno;
        close(fd);
        if (e != EWOULDBLOCK && e != EINTR) return 0;
        if (fp_clock_ms() + pause_ms >= deadline) {
            fp_error_set(err, FP_E_AGENT_TIMEOUT,
                         "another fp has been attaching to it or reading its threads all that "
                         "time (see its output); try again once it is done",
                         "gave up waiting for another fp using process %d", pid);
            return -1;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = pause_ms * 1000000L};
        nanosleep(&ts, NULL);
        if (pause_ms < 8) pause_ms *= 2;
    }
}

void fp_turn_give(fp_turn *turn)
{
    if (turn->fd < 0) return;
    unlink(turn->path);
    close(turn->fd);
    turn->fd = -1;
}
