/* Where an agent listens: one directory per user (mode 0700), one socket per process (0600).
 * Shared by the agent (which creates them) and the clients (which connect). */
#ifndef FP_PATHS_H
#define FP_PATHS_H

#include <stddef.h>
#include <sys/types.h>

#define FP_SOCKET_DIR_FMT "/tmp/fp-%u"
#define FP_SOCKET_NAME_FMT "agent-%llu-%d.sock"
#define FP_AGENT_LIB_NAME "libfpagent.so"
/* The agent's Python package lives in <dir of libfpagent.so>/python/fp_agent. */
#define FP_AGENT_PY_SUBDIR "python"

/* Writes "/tmp/fp-UID" into buf. Returns 0, or -1 when it does not fit. */
int fp_paths_socket_dir(uid_t uid, char *buf, size_t size);
/* Writes "/tmp/fp-UID/agent-NS-PID.sock" into buf: NS is the inode of the process's pid
 * namespace (/proc/PID/ns/pid), pid is as the agent sees itself. Two processes that share a
 * /tmp but live in different pid namespaces (containers) may have the same pid: the namespace
 * keeps their sockets apart. */
int fp_paths_socket(uid_t uid, unsigned long long pid_ns, int pid, char *buf, size_t size);
/* The pid namespace inode of pid (0: self), or 0 when /proc does not tell. */
unsigned long long fp_paths_pid_ns(int pid);
/* The start time of pid (0: self) in clock ticks after boot (/proc/PID/stat field 22), or 0.
 * With the pid namespace, what names one process wherever it is seen from: the agent reports
 * both in `status` so that a client that cannot see its pid can still tell it is the target. */
unsigned long long fp_paths_start_time(int pid);

#endif
