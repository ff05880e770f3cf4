/* Who fp trusts: the agent's socket and the process behind it, and the agent files fp injects.
 * fp often runs as root against another user's process; anything in a path that user (or a
 * third one) controls could make root talk to an impostor or load an impostor's code. These
 * checks refuse such things with a message naming the path and the owner found. */
#ifndef FP_TRUST_H
#define FP_TRUST_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "fp_attach.h"
#include "fp_error.h"

enum {
    FP_TRUST_OK = 0,
    FP_TRUST_ABSENT = 1, /* no socket there (or no directory): nothing to refuse */
};

/* Before connecting to socket_path (/tmp/fp-UID/agent-NS-PID.sock, possibly under
 * /proc/PID/root): every directory on the way is a real directory (a link only when root's),
 * none writable by others unless sticky; the agent's directory is t->uid's or root's, mode 0700;
 * the socket is a socket of t->uid or root, not a link. Returns FP_TRUST_OK, FP_TRUST_ABSENT,
 * or -1 with err (FP_E_UNTRUSTED). */
int fp_trust_socket(const fp_target *t, const char *socket_path, fp_error *err);

/* After connecting fd to socket_path: the peer (SO_PEERCRED) is t->uid or root, and its pid is
 * t->pid. A peer whose pid is not visible from here (fp in a pid namespace of its own) sets
 * *confirm: the caller asks the agent's status and passes it to fp_trust_confirm. Returns 0, or
 * -1 with err (FP_E_UNTRUSTED). */
int fp_trust_peer(int fd, const fp_target *t, const char *socket_path, bool *confirm,
                  fp_error *err);

/* The agent's status names the process it runs in (pid_ns, start_time): they must be those of
 * t->pid. Returns 0, or -1 with err (FP_E_UNTRUSTED). */
int fp_trust_confirm(const cJSON *status, const fp_target *t, const char *socket_path,
                     fp_error *err);

/* The agent library (an absolute path without links) and the fp_agent package beside it
 * (<dir>/python/fp_agent) may be changed only by root or the user running fp: the file, every
 * directory above it (sticky ones excepted) and everything in the package. Returns 0, or -1
 * with err (FP_E_UNTRUSTED). */
int fp_trust_agent_files(const char *lib, fp_error *err);

#endif
