/* Where an agent's socket lives (see fp_paths.h). Kept in protocol/ because the agent, which
 * creates the socket, and every client, which connects to it, must agree to the byte. */
#include "fp_paths.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>

/* snprintf that reports truncation as failure: a cut path would name another file. */
__attribute__((format(printf, 3, 4))) static int format_path(char *buf, size_t size,
                                                             const char *fmt, ...)
{
    if (!buf || size == 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

int fp_paths_socket_dir(uid_t uid, char *buf, size_t size)
{
    return format_path(buf, size, FP_SOCKET_DIR_FMT, (unsigned)uid);
}

int fp_paths_socket(uid_t uid, unsigned long long pid_ns, int pid, char *buf, size_t size)
{
    return format_path(buf, size, FP_SOCKET_DIR_FMT "/" FP_SOCKET_NAME_FMT, (unsigned)uid, pid_ns,
                       pid);
}

unsigned long long fp_paths_pid_ns(int pid)
{
    char path[64];
    struct stat st;
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/ns/pid", pid);
    else
        snprintf(path, sizeof path, "/proc/self/ns/pid");
    return stat(path, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}
