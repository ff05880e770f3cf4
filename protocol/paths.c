/* Where an agent's socket lives (see fp_paths.h). Kept in protocol/ because the agent, which
 * creates the socket, and every client, which connects to it, must agree to the byte. */
#include "fp_paths.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

unsigned long long fp_paths_start_time(int pid)
{
    char path[64], buf[1024];
    if (pid > 0)
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields are counted after the last ')',
     * which is followed by field 3 (the state). */
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    p++;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ')
            p++;
        if (field == 22) return strtoull(p, NULL, 10);
        p = strchr(p, ' ');
        if (!p) return 0;
    }
    return 0;
}
