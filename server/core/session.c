/* A session with the agent inside one target: find its socket (or inject the agent and wait
 * for it to come up), then hand the connection to a channel (fp_channel.h). Finding and
 * injecting is a job that blocks for up to the attach bound and touches no process-wide state,
 * so it can run on a worker thread (fp-lsp attaches to several processes at once) while the
 * blocking session calls below serve the terminal client.
 * Every failure a user can meet here ends in an fp_error that says what to do. */
#include "fp_session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fp_clock.h"
#include "fp_log.h"
#include "fp_paths.h"
#include "fp_trust.h"
#include "fp_turns.h"

/* The agent's I/O thread answers ping, status and detach without the GIL, so an answer that
 * takes longer than this means something is wrong, not that the target is busy (the bound is
 * generous for machines under heavy load, where the agent's thread may wait to be scheduled). */
#define SESSION_PING_MS 5000
#define SESSION_DETACH_MS 1000
#define SESSION_ATTACH_DEFAULT_MS 5000
#define SESSION_BACKOFF_FIRST_MS 5
#define SESSION_BACKOFF_MAX_MS 100

/* One attach in progress: everything it needs is here, nothing is global. */
typedef struct session_job {
    fp_target target;
    fp_channel *ch; /* the connection being tried, NULL when none */
    bool injected;
    bool debug;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* as fp reaches it */
    char agent_path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* as the agent sees it */
} session_job;

struct fp_session {
    fp_target target;
    fp_channel *ch;
    bool injected;
    bool debug;
    cJSON *last_error;
};

#define SLOG(s, ...)                                                                               \
    do {                                                                                           \
        if ((s)->debug) fp_log_debug(__VA_ARGS__);                                                 \
    } while (0)

/* The state letter from /proc/PID/stat, or 0 when the process is gone. */
static char session_proc_state(int pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may contain spaces and parentheses: the state follows the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2]) return 0;
    return p[2];
}

static bool session_proc_gone(int pid)
{
    char st = session_proc_state(pid);
    return st == 0 || st == 'Z' || st == 'X';
}

/* Whether libfpagent.so is mapped in pid; when in doubt, say yes (the caller then keeps a
 * socket that might still belong to a live agent). */
static bool session_agent_mapped(int pid)
{
    char path[64], line[PATH_MAX + 128];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f) return true;
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "/" FP_AGENT_LIB_NAME) != NULL;
    fclose(f);
    return found;
}

/* ---------------------------------------------------------------------------------------------
 * Finding the agent
 */

/* The agent names its socket after its uid and its pid as it sees them; going through
 * /proc/PID/root reaches it inside another mount namespace (a container's own /tmp). */
static int session_socket_path(session_job *s, fp_error *err)
{
    const fp_target *t = &s->target;
    char plain[sizeof s->socket_path];
    int ns_pid = t->ns_pid > 0 ? t->ns_pid : t->pid;
    if (fp_paths_socket(t->uid, fp_paths_pid_ns(t->pid), ns_pid, plain, sizeof plain) != 0)
        return fp_error_set(err, FP_E_INTERNAL, NULL, "socket path for process %d too long",
                            t->pid);
    char root[64], full[sizeof root + sizeof plain];
    memcpy(s->agent_path, plain, strlen(plain) + 1);
    snprintf(root, sizeof root, "/proc/%d/root/", t->pid);
    snprintf(full, sizeof full, "/proc/%d/root%s", t->pid, plain);
    struct stat st;
    if (stat(root, &st) == 0 && strlen(full) < sizeof s->socket_path) {
        memcpy(s->socket_path, full, strlen(full) + 1);
    } else {
        SLOG(s, "%s is not usable (%s): using the plain path", root, strerror(errno));
        memcpy(s->socket_path, plain, strlen(plain) + 1);
    }
    return 0;
}

static void session_disconnect(session_job *s)
{
    fp_channel_free(s->ch);
    s->ch = NULL;
}

/* Returns 0 when connected (s->ch set), else -errno. */
static int session_connect(session_job *s)
{
    session_disconnect(s);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    memcpy(a.sun_path, s->socket_path, strlen(s->socket_path) + 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    /* Non-blocking from here on (the channel): every wait goes through poll with a bound. */
    s->ch = fp_channel_new(fd, s->target.pid, s->debug);
    return s->ch ? 0 : -ENOMEM;
}

typedef enum session_probe {
    PROBE_OK,      /* connected, the agent answered ping */
    PROBE_ABSENT,  /* no socket */
    PROBE_REFUSED, /* a socket nobody listens on */
    PROBE_HUNGUP,  /* connected, then closed without an answer */
    PROBE_SILENT,  /* connected, no answer in time (err set) */
    PROBE_FAILED,  /* anything else (err set): give up */
} session_probe;

static session_probe session_try(session_job *s, int bound_ms, fp_error *err)
{
    const fp_target *t = &s->target;
    /* Nothing is sent to a socket that another user could have put there (fp_trust.h). */
    int trusted = fp_trust_socket(t, s->socket_path, err);
    if (trusted < 0) return PROBE_FAILED;
    if (trusted == FP_TRUST_ABSENT) {
        SLOG(s, "no agent socket at %s", s->socket_path);
        return PROBE_ABSENT;
    }
    SLOG(s, "connecting to %s", s->socket_path);
    int rc = session_connect(s);
    if (rc == -ENOENT) {
        SLOG(s, "no agent socket at %s", s->socket_path);
        return PROBE_ABSENT;
    }
    if (rc == -ECONNREFUSED) {
        SLOG(s, "the socket exists but nothing listens on it");
        return PROBE_REFUSED;
    }
    if (rc == -EACCES || rc == -EPERM) {
        char hint[512];
        snprintf(hint, sizeof hint,
                 "the agent's directory and socket belong to uid %u and only it and root may\n"
                 "connect: run fp as that user (sudo -u '#%u' fp %d) or as root",
                 (unsigned)t->uid, (unsigned)t->uid, t->pid);
        fp_error_set(err, FP_E_PERMISSION, hint,
                     "cannot connect to the agent of process %d: permission denied on %s", t->pid,
                     s->socket_path);
        return PROBE_FAILED;
    }
    if (rc != 0) {
        fp_error_set(err, FP_E_CONNECT, NULL, "cannot connect to the agent's socket %s: %s",
                     s->socket_path, strerror(-rc));
        return PROBE_FAILED;
    }

    bool confirm;
    if (fp_trust_peer(fp_channel_fd(s->ch), t, s->socket_path, &confirm, err) != 0) {
        session_disconnect(s);
        return PROBE_FAILED;
    }
    SLOG(s, "connected; sending ping");
    fp_error e2;
    fp_error_clear(&e2);
    cJSON *pong = fp_channel_call(s->ch, "ping", NULL, bound_ms, NULL, &e2, NULL);
    if (pong && confirm) {
        SLOG(s, "the agent's pid is not visible here: asking it which process it is in");
        cJSON *st = fp_channel_call(s->ch, "status", NULL, bound_ms, NULL, &e2, NULL);
        int ok = st ? fp_trust_confirm(st, t, s->socket_path, err) : (*err = e2, -1);
        cJSON_Delete(st);
        if (ok != 0) {
            cJSON_Delete(pong);
            session_disconnect(s);
            return PROBE_FAILED;
        }
    }
    if (pong) {
        cJSON_Delete(pong);
        SLOG(s, "the agent answered ping");
        return PROBE_OK;
    }
    session_disconnect(s);
    if (e2.code == FP_E_INTERRUPTED) {
        *err = e2;
        return PROBE_FAILED;
    }
    if (e2.code == FP_E_CLOSED) {
        SLOG(s, "the agent hung up without answering");
        return PROBE_HUNGUP;
    }
    if (e2.code == FP_E_REMOTE) { /* it answered, with a refusal (busy): say what it said */
        *err = e2;
        return PROBE_FAILED;
    }
    SLOG(s, "ping failed: %s", e2.message);
    *err = e2;
    return PROBE_SILENT;
}

static int session_hungup_error(session_job *s, fp_error *err)
{
    const fp_target *t = &s->target;
    uid_t me = geteuid();
    if (me != 0 && me != t->uid) {
        char hint[256];
        snprintf(hint, sizeof hint, "run fp as uid %u or as root", (unsigned)t->uid);
        return fp_error_set(err, FP_E_PERMISSION, hint,
                            "the agent of process %d accepts only root and uid %u", t->pid,
                            (unsigned)t->uid);
    }
    return fp_error_set(err, FP_E_CONNECT, "it may be shutting down: try again in a moment",
                        "the agent of process %d closed the connection without answering", t->pid);
}

static int session_timeout_error(session_job *s, int timeout_ms, fp_error *err)
{
    const fp_target *t = &s->target;
    char hint[1024];
    int n = 0;
    char st = session_proc_state(t->pid);
    if (st == 'T' || st == 't')
        n += snprintf(hint, sizeof hint,
                      "process %d is stopped (state %c) right now: resume it with kill -CONT %d.\n",
                      t->pid, st, t->pid);
    snprintf(hint + n, sizeof hint - (size_t)n,
             "The agent was loaded but its socket did not answer. Likely causes:\n"
             "- the interpreter is not initialised yet, or is shutting down: try again;\n"
             "- /tmp is not writable in the target, or is another mount namespace's /tmp\n"
             "  (containers): the agent listens on %s there;\n"
             "- the process was stopped (state T) by a debugger or job control.\n"
             "Run with --debug to see each step.",
             s->agent_path);
    return fp_error_set(err, FP_E_AGENT_TIMEOUT, hint,
                        "the agent in process %d did not come up within %d ms", t->pid, timeout_ms);
}

/* A process killed with its agent inside leaves its socket behind (and a killed fp its lock
 * file). Before injecting, fp removes those of processes that no longer exist, in its own
 * directory and pid namespace only: a pid of another namespace means nothing here. */
static void session_sweep_stale(session_job *s)
{
    char dir[64];
    if (fp_turn_own_dir(dir, sizeof dir, 0) != 0) return;
    DIR *d = opendir(dir);
    if (!d) return;
    unsigned long long own_ns = fp_paths_pid_ns(0), ns;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid = 0, end = 0, lock = 0;
        if (sscanf(e->d_name, "agent-%llu-%d.sock%n", &ns, &pid, &end) == 2) {
            if (ns != own_ns) continue;
        } else if (sscanf(e->d_name, "attach-%d.lock%n", &pid, &end) == 1) {
            lock = 1;
        } else {
            continue;
        }
        if (e->d_name[end] != '\0' || pid <= 0 || kill(pid, 0) == 0 || errno != ESRCH) continue;
        char path[sizeof dir + 256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        int fd = lock ? open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (lock && (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0)) {
            if (fd >= 0) close(fd);
            continue; /* a client still waits on it (it goes when that one is done) */
        }
        if (unlink(path) == 0) SLOG(s, "removed %s, left by process %d (gone)", path, pid);
        if (fd >= 0) close(fd);
    }
    closedir(d);
}

/* The agent records why it gave up starting; fp reads it from the target's memory, so that the
 * user sees that reason at once rather than a timeout with a list of guesses. */
static bool session_agent_gave_up(session_job *s, fp_error *err)
{
    char why[256];
    if (fp_attach_agent_error(s->target.pid, why, sizeof why) != 1) return false;
    SLOG(s, "the agent gave up: %s", why);
    char hint[512];
    snprintf(hint, sizeof hint,
             "fix what it names, then run fp again: the library stays loaded and fp restarts it\n"
             "(its socket would be %s, seen from here as %s)",
             s->agent_path, s->socket_path);
    fp_error_set(err, FP_E_INJECT, hint, "the agent in process %d could not start: %s",
                 s->target.pid, why);
    return true;
}

/* After injection: connect + ping until the agent answers or the deadline passes. */
static int session_wait_agent(session_job *s, double deadline, int timeout_ms, fp_error *err)
{
    int backoff = SESSION_BACKOFF_FIRST_MS;
    int tries = 0;
    for (;;) {
        double left = deadline - fp_clock_ms();
        int bound = left < SESSION_PING_MS ? (int)left : SESSION_PING_MS;
        if (bound < 50) bound = 50; /* always one real try, even when injection ate the time */
        fp_error e2;
        fp_error_clear(&e2);
        tries++;
        session_probe p = session_try(s, bound, &e2);
        if (p == PROBE_OK) {
            SLOG(s, "the agent is up after %d tries", tries);
            return 0;
        }
        if (p == PROBE_FAILED) {
            *err = e2;
            return -1;
        }
        if (session_proc_gone(s->target.pid))
            return fp_error_set(err, FP_E_NO_PROCESS, NULL,
                                "process %d exited while the agent was starting", s->target.pid);
        if (session_agent_gave_up(s, err)) return -1;
        if (fp_clock_ms() + backoff >= deadline) return session_timeout_error(s, timeout_ms, err);
        fp_clock_sleep_ms(backoff);
        backoff = backoff * 2 > SESSION_BACKOFF_MAX_MS ? SESSION_BACKOFF_MAX_MS : backoff * 2;
    }
}

int fp_session_connect(int pid, const fp_session_opts *opts, fp_connected *out, fp_error *err)
{
    fp_error_clear(err);
    memset(out, 0, sizeof *out);
    session_job job = {.debug = opts && opts->debug};
    session_job *s = &job;
    int attach_ms =
        opts && opts->attach_timeout_ms > 0 ? opts->attach_timeout_ms : SESSION_ATTACH_DEFAULT_MS;

    double deadline = fp_clock_ms() + attach_ms;
    /* Other clients of this user wait while this one looks at the process and injects it (see
     * fp_turns.h); nothing is held once an agent answers. */
    fp_turn turn;
    int took = fp_turn_take(pid, attach_ms, &turn, err);
    if (took < 0) goto fail;
    SLOG(s, took ? "holding %s" : "no turn taken (%s not usable)", turn.path);

    SLOG(s, "checking process %d", pid);
    if (fp_target_check(pid, &s->target, err) != 0) goto fail;
    const fp_target *t = &s->target;
    SLOG(s, "process %d: Python %s, uid %u, pid %d in its namespace, state %c, exe %s", t->pid,
         t->py_version[0] ? t->py_version : "?", (unsigned)t->uid, t->ns_pid,
         t->state ? t->state : '?', t->exe);
    if (session_socket_path(s, err) != 0) goto fail;
    SLOG(s, "agent socket: %s", s->socket_path);

    switch (session_try(s, SESSION_PING_MS, err)) {
    case PROBE_OK:
        goto done;
    case PROBE_FAILED:
        goto fail;
    case PROBE_SILENT:
        snprintf(err->hint, sizeof err->hint,
                 "the agent answers ping without the GIL, so it is stuck or the process is\n"
                 "stopped (resume a stopped process with kill -CONT %d)",
                 pid);
        err->code = FP_E_CONNECT;
        goto fail;
    case PROBE_HUNGUP:
        /* An agent that reads a shutdown removes its socket, then closes it: a connection
         * still waiting to be accepted is dropped. That agent is gone; start a new one. */
        if (access(s->socket_path, F_OK) != 0 && errno == ENOENT) {
            SLOG(s, "the agent shut down as we connected; starting a new one");
            break;
        }
        session_hungup_error(s, err);
        goto fail;
    case PROBE_REFUSED:
        /* A socket left by an agent that is gone: remove it so the new agent can bind, but
         * only when no agent is mapped (a mapped one may be restarting and rebind it). */
        if (!session_agent_mapped(pid)) {
            SLOG(s, "removing the stale socket %s", s->socket_path);
            unlink(s->socket_path);
        }
        break;
    case PROBE_ABSENT:
        break;
    }

    char lib[PATH_MAX];
    if (opts && opts->agent_lib) {
        snprintf(lib, sizeof lib, "%s", opts->agent_lib);
    } else if (fp_session_agent_lib(lib, sizeof lib, err) != 0) {
        goto fail;
    }
    /* Injected into the target with its rights: only root or we may be able to change it. */
    if (fp_trust_agent_files(lib, err) != 0) goto fail;
    session_sweep_stale(s);
    SLOG(s, "injecting %s into process %d", lib, pid);
    fp_attach_opts ao = {.debug = s->debug, .timeout_ms = attach_ms};
    if (fp_attach_inject(&s->target, lib, &ao, err) != 0) goto fail;
    s->injected = true;
    SLOG(s, "injected; waiting for the agent's socket");
    if (session_wait_agent(s, deadline, attach_ms, err) != 0) goto fail;

done:
    fp_turn_give(&turn);
    out->ch = s->ch;
    out->target = s->target;
    out->injected = s->injected;
    return 0;

fail:
    fp_turn_give(&turn);
    session_disconnect(s);
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * The blocking session of the terminal client
 */

fp_session *fp_session_open(int pid, const fp_session_opts *opts, fp_error *err)
{
    fp_connected c;
    if (fp_session_connect(pid, opts, &c, err) != 0) return NULL;
    fp_session *s = calloc(1, sizeof *s);
    if (!s) {
        fp_channel_free(c.ch);
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    s->target = c.target;
    s->ch = c.ch;
    s->injected = c.injected;
    s->debug = opts && opts->debug;
    return s;
}

void fp_session_close(fp_session *s)
{
    if (!s) return;
    /* detach is answered after the client's queued requests; behind an abandoned one it
     * could wait for the GIL forever. Closing the socket detaches just the same. */
    if (!fp_channel_closed(s->ch) && !fp_channel_abandoned(s->ch)) {
        fp_error e;
        fp_error_clear(&e);
        cJSON *r = fp_channel_call(s->ch, "detach", NULL, SESSION_DETACH_MS, NULL, &e, NULL);
        SLOG(s, "detach: %s", r ? "done" : e.message);
        cJSON_Delete(r);
    }
    fp_channel_free(s->ch);
    cJSON_Delete(s->last_error);
    free(s);
}

const fp_target *fp_session_target(const fp_session *s)
{
    return &s->target;
}

bool fp_session_injected(const fp_session *s)
{
    return s->injected;
}

fp_channel *fp_session_channel(const fp_session *s)
{
    return s->ch;
}

cJSON *fp_session_call(fp_session *s, const char *method, cJSON *params, int timeout_ms,
                       volatile sig_atomic_t *interrupted, fp_error *err)
{
    cJSON_Delete(s->last_error);
    s->last_error = NULL;
    return fp_channel_call(s->ch, method, params, timeout_ms, interrupted, err, &s->last_error);
}

const cJSON *fp_session_last_error(const fp_session *s)
{
    return s->last_error;
}

int fp_session_agent_lib(char *buf, size_t size, fp_error *err)
{
    char cand[PATH_MAX + 64];
    const char *env = getenv("FP_AGENT_LIB");
    const char *from;
    if (env && env[0]) {
        snprintf(cand, sizeof cand, "%s", env);
        from = "$FP_AGENT_LIB";
    } else {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n < 0)
            return fp_error_set(err, FP_E_INTERNAL, NULL, "cannot read /proc/self/exe: %s",
                                strerror(errno));
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
        snprintf(cand, sizeof cand, "%s/../lib/fp/%s", exe, FP_AGENT_LIB_NAME);
        from = "next to fp";
    }
    char real[PATH_MAX];
    if (!realpath(cand, real))
        return fp_error_set(err, FP_E_INJECT,
                            "set FP_AGENT_LIB to the full path of libfpagent.so, or reinstall fp\n"
                            "(it looks in <prefix>/lib/fp/ next to <prefix>/bin/fp)",
                            "cannot find the agent library %s (%s): %s", cand, from,
                            strerror(errno));
    if (strlen(real) >= size)
        return fp_error_set(err, FP_E_INTERNAL, NULL, "agent library path too long: %s", real);
    memcpy(buf, real, strlen(real) + 1);
    return 0;
}
