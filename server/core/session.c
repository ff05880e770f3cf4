/* A session with the agent inside one target: find its socket (or inject the agent and wait
 * for it to come up), then exchange JSON-RPC messages with bounded, interruptible waits.
 * Every failure a user can meet here ends in an fp_error that says what to do. */
#include "fp_session.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fp_frame.h"
#include "fp_log.h"
#include "fp_paths.h"
#include "fp_rpc.h"
#include "fp_turns.h"

/* The agent's I/O thread answers ping, status and detach without the GIL, so an answer that
 * takes longer than this means something is wrong, not that the target is busy (the bound is
 * generous for machines under heavy load, where the agent's thread may wait to be scheduled). */
#define SESSION_PING_MS 5000
#define SESSION_STATUS_MS 1000
#define SESSION_DETACH_MS 1000
/* Writing a request only stalls when the agent stopped reading altogether. */
#define SESSION_SEND_MS 5000
#define SESSION_ATTACH_DEFAULT_MS 5000
#define SESSION_BACKOFF_FIRST_MS 5
#define SESSION_BACKOFF_MAX_MS 100

struct fp_session {
    fp_target target;
    int fd;
    bool injected;
    bool debug;
    bool closed;    /* the agent hung up: nothing more can be sent */
    bool abandoned; /* a request was given up on (timeout, Ctrl-C) and may still be queued */
    int64_t next_id;
    fp_frame_reader reader;
    cJSON *last_error;
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* as fp reaches it */
    char agent_path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* as the agent sees it */
};

#define SLOG(s, ...)                                                                               \
    do {                                                                                           \
        if ((s)->debug) fp_log_debug(__VA_ARGS__);                                                 \
    } while (0)

static double session_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* "250 ms" or "30 s" / "2.5 s": how long a wait lasted, for messages. */
static void session_format_ms(char *buf, size_t size, double ms)
{
    if (ms < 1000)
        snprintf(buf, size, "%.0f ms", ms);
    else if ((long long)ms % 1000 == 0)
        snprintf(buf, size, "%lld s", (long long)ms / 1000);
    else
        snprintf(buf, size, "%.1f s", ms / 1000);
}

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
 * Errors
 */

static int session_closed_error(fp_session *s, fp_error *err)
{
    s->closed = true;
    int pid = s->target.pid;
    if (session_proc_gone(pid))
        return fp_error_set(err, FP_E_CLOSED, NULL, "process %d exited", pid);
    return fp_error_set(err, FP_E_CLOSED,
                        "the agent was shut down (shutdown command) or the process is exiting;\n"
                        "run fp again to reconnect",
                        "the agent in process %d closed the connection", pid);
}

/* Appends "did you mean: a, b, c?" for a data.suggestions array. */
static void session_hint_suggestions(char *hint, size_t size, const cJSON *data)
{
    const cJSON *sug = cJSON_GetObjectItemCaseSensitive(data, "suggestions");
    if (!cJSON_IsArray(sug) || cJSON_GetArraySize(sug) == 0) return;
    size_t len = strlen(hint);
    int n = snprintf(hint + len, size - len, "%sdid you mean: ", len ? "\n" : "");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, sug)
    {
        if (!cJSON_IsString(it)) continue;
        len = strlen(hint);
        if (n < 0 || len + 1 >= size) break;
        snprintf(hint + len, size - len, "%s%s", i++ ? ", " : "", it->valuestring);
    }
    len = strlen(hint);
    if (len + 1 < size) snprintf(hint + len, size - len, "?");
}

/* Copies text into hint, keeping the end when it does not fit: the last lines of a traceback
 * are the ones that say what went wrong. */
static void session_hint_tail(char *hint, size_t size, const char *text)
{
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n')
        n--;
    if (n < size) {
        snprintf(hint, size, "%.*s", (int)n, text);
        return;
    }
    const char *p = text + n - (size - 8);
    const char *nl = memchr(p, '\n', (size_t)(text + n - p));
    if (nl) p = nl + 1;
    snprintf(hint, size, "...\n%.*s", (int)(text + n - p), p);
}

static void session_remote_error(fp_session *s, const char *method, const cJSON *error,
                                 fp_error *err)
{
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(error, "message");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(error, "data");
    int rpc = cJSON_IsNumber(code) ? code->valueint : FP_RPC_INTERNAL_ERROR;

    fp_error_set(err, FP_E_REMOTE, NULL, "%s",
                 cJSON_IsString(msg) && msg->valuestring[0] ? msg->valuestring
                                                            : "the agent reported an error");
    err->rpc_code = rpc;
    char *hint = err->hint;
    size_t hsize = sizeof err->hint;

    switch (rpc) {
    case FP_ERR_EVAL: {
        const cJSON *tb = cJSON_GetObjectItemCaseSensitive(data, "traceback");
        const cJSON *exc = cJSON_GetObjectItemCaseSensitive(data, "exception");
        if (cJSON_IsString(tb) && tb->valuestring[0])
            session_hint_tail(hint, hsize, tb->valuestring);
        else if (cJSON_IsString(exc))
            session_hint_tail(hint, hsize, exc->valuestring);
        break;
    }
    case FP_ERR_GIL_TIMEOUT: {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(data, "waited_ms");
        char waited[32] = "";
        if (cJSON_IsNumber(w)) session_format_ms(waited, sizeof waited, w->valuedouble);
        snprintf(hint, hsize,
                 "a thread holds the GIL and did not release it%s%s, so the agent cannot run\n"
                 "Python code in process %d now. Commands that read the process from outside do\n"
                 "not need the GIL: `stack` shows every thread and which one holds it.",
                 waited[0] ? " in " : "", waited, s->target.pid);
        break;
    }
    case FP_RPC_METHOD_NOT_FOUND:
        snprintf(hint, hsize, "the agent does not serve '%s': is it an older version than fp?",
                 method);
        session_hint_suggestions(hint, hsize, data);
        break;
    case FP_ERR_BUSY:
        snprintf(hint, hsize, "close another fp or editor session attached to process %d",
                 s->target.pid);
        break;
    case FP_ERR_CANCELLED:
        snprintf(hint, hsize, "the agent is shutting down or the request was cancelled");
        break;
    default: {
        /* For a file, the suggestions are modules loaded from a file of the same name. */
        const cJSON *missing = cJSON_GetObjectItemCaseSensitive(data, "missing");
        const cJSON *sug = cJSON_GetObjectItemCaseSensitive(data, "suggestions");
        if (cJSON_IsString(missing) && strcmp(missing->valuestring, "file") == 0 &&
            cJSON_GetArraySize(sug) > 0) {
            char *list = cJSON_PrintUnformatted(sug);
            snprintf(hint, hsize, "modules loaded from a file with that name: %s",
                     list ? list : "?");
            cJSON_free(list);
        } else {
            session_hint_suggestions(hint, hsize, data);
        }
        break;
    }
    }

    cJSON_Delete(s->last_error);
    s->last_error = cJSON_Duplicate(error, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

int fp_session_send(fp_session *s, const char *method, cJSON *params, int64_t *id, fp_error *err)
{
    if (s->fd < 0 || s->closed) {
        cJSON_Delete(params);
        return session_closed_error(s, err);
    }
    int64_t my = s->next_id++;
    cJSON *req = fp_rpc_request(my, method, params);
    if (!req) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory building a request");
    int r = fp_rpc_send(s->fd, req, SESSION_SEND_MS);
    cJSON_Delete(req);
    if (r == -EPIPE || r == -ECONNRESET) return session_closed_error(s, err);
    if (r == -EAGAIN || r == -ETIMEDOUT)
        return fp_error_set(err, FP_E_TIMEOUT, "the agent stopped reading its socket",
                            "could not send '%s' to process %d within %d ms", method, s->target.pid,
                            SESSION_SEND_MS);
    if (r == -EINTR)
        return fp_error_set(err, FP_E_INTERRUPTED, NULL, "interrupted while sending '%s'", method);
    if (r != 0)
        return fp_error_set(err, FP_E_IO, NULL, "cannot send '%s' to the agent: %s", method,
                            strerror(-r));
    if (id) *id = my;
    return 0;
}

int fp_session_read(fp_session *s, cJSON **msg, fp_error *err)
{
    *msg = NULL;
    for (;;) {
        char *body = NULL;
        size_t len = 0;
        const char *ferr = NULL;
        int r = fp_frame_reader_next(&s->reader, &body, &len, &ferr);
        if (r == FP_FRAME_OK) {
            fp_rpc_msg m;
            int pr = fp_rpc_parse(body, len, &m, NULL);
            free(body);
            if (pr != 0)
                return fp_error_set(err, FP_E_PROTOCOL,
                                    "fp and the agent may be different versions",
                                    "the agent sent a malformed message (JSON-RPC error %d)", pr);
            /* Keep the tree, let go of the view into it. */
            *msg = m.root;
            m.root = NULL;
            fp_rpc_msg_free(&m);
            return 1;
        }
        if (r < 0) {
            s->closed = true;
            return fp_error_set(err, FP_E_PROTOCOL, "fp and the agent may be different versions",
                                "bad framing from the agent: %s", ferr ? ferr : "unknown error");
        }
        if (s->fd < 0 || s->closed) return session_closed_error(s, err);

        char buf[65536];
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n > 0) {
            if (fp_frame_reader_feed(&s->reader, buf, (size_t)n) != 0)
                return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory reading a message");
            continue;
        }
        if (n == 0) return session_closed_error(s, err);
        if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
        if (errno == EINTR) continue;
        if (errno == ECONNRESET) return session_closed_error(s, err);
        return fp_error_set(err, FP_E_IO, NULL, "cannot read from the agent: %s", strerror(errno));
    }
}

/* After a timeout: is the agent waiting for the GIL? Tells the user why nothing came back. */
static void session_timeout_hint(fp_session *s, const char *method, fp_error *err)
{
    snprintf(err->hint, sizeof err->hint,
             "the agent is still working on it (its answer will be dropped when it comes);\n"
             "allow more time (fp --timeout S) or try a smaller request");
    if (strcmp(method, "status") == 0 || strcmp(method, "ping") == 0 ||
        strcmp(method, "detach") == 0 || s->closed)
        return;
    fp_error e2;
    fp_error_clear(&e2);
    cJSON *st = fp_session_call(s, "status", NULL, SESSION_STATUS_MS, NULL, NULL, &e2);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(st, "gil_wait_ms");
    if (cJSON_IsNumber(w) && w->valuedouble > 0) {
        char waited[32];
        session_format_ms(waited, sizeof waited, w->valuedouble);
        snprintf(err->hint, sizeof err->hint,
                 "the agent has been waiting %s for the GIL: another thread holds it and does\n"
                 "not let go (a long C call, or a busy loop in an extension). Commands that read\n"
                 "the process from outside do not need the GIL and still work: `stack` shows\n"
                 "every thread and which one holds it.",
                 waited);
    }
    cJSON_Delete(st);
}

cJSON *fp_session_call(fp_session *s, const char *method, cJSON *params, int timeout_ms,
                       fp_notify_fn on_notify, void *ud, fp_error *err)
{
    double start = session_now_ms();
    int64_t id;
    if (fp_session_send(s, method, params, &id, err) != 0) return NULL;

    for (;;) {
        cJSON *msg;
        int r;
        while ((r = fp_session_read(s, &msg, err)) == 1) {
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(msg, "method");
            const cJSON *mid = cJSON_GetObjectItemCaseSensitive(msg, "id");
            if (cJSON_IsString(m)) {
                /* Notifications carry no id; the agent sends clients no requests. */
                if (!mid && on_notify)
                    on_notify(m->valuestring, cJSON_GetObjectItemCaseSensitive(msg, "params"), ud);
                cJSON_Delete(msg);
                continue;
            }
            if (!cJSON_IsNumber(mid) || (int64_t)mid->valuedouble != id) {
                /* The late answer to a request given up on (timeout, Ctrl-C). */
                SLOG(s, "dropping a late answer (id %s)",
                     cJSON_IsNumber(mid) ? "number" : "missing");
                cJSON_Delete(msg);
                continue;
            }
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(msg, "error");
            if (e) {
                session_remote_error(s, method, e, err);
                cJSON_Delete(msg);
                return NULL;
            }
            cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(msg, "result");
            cJSON_Delete(msg);
            if (!result) result = cJSON_CreateNull();
            return result;
        }
        if (r < 0) return NULL;

        int wait = -1;
        if (timeout_ms >= 0) {
            double left = (double)timeout_ms - (session_now_ms() - start);
            if (left <= 0) {
                char took[32];
                session_format_ms(took, sizeof took, timeout_ms);
                fp_error_set(err, FP_E_TIMEOUT, NULL,
                             "'%s' got no answer from process %d within %s", method, s->target.pid,
                             took);
                s->abandoned = true;
                session_timeout_hint(s, method, err);
                return NULL;
            }
            wait = (int)left + 1;
        }
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        int pr = poll(&p, 1, wait);
        if (pr < 0 && errno == EINTR) {
            s->abandoned = true;
            fp_error_set(err, FP_E_INTERRUPTED,
                         "the agent may still finish it in the background; its answer is dropped",
                         "interrupted while waiting for '%s'", method);
            return NULL;
        }
        if (pr < 0) {
            fp_error_set(err, FP_E_IO, NULL, "poll failed: %s", strerror(errno));
            return NULL;
        }
    }
}

const cJSON *fp_session_last_error(const fp_session *s)
{
    return s->last_error;
}

const fp_target *fp_session_target(const fp_session *s)
{
    return &s->target;
}

bool fp_session_injected(const fp_session *s)
{
    return s->injected;
}

int fp_session_fd(const fp_session *s)
{
    return s->fd;
}

/* ---------------------------------------------------------------------------------------------
 * Finding the agent
 */

/* The agent names its socket after its uid and its pid as it sees them; going through
 * /proc/PID/root reaches it inside another mount namespace (a container's own /tmp). */
static int session_socket_path(fp_session *s, fp_error *err)
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

static void session_disconnect(fp_session *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    s->closed = false;
    s->abandoned = false;
    fp_frame_reader_free(&s->reader);
    fp_frame_reader_init(&s->reader, FP_FRAME_DEFAULT_MAX);
}

/* Returns 0 when connected, else -errno. */
static int session_connect(fp_session *s)
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
    /* Non-blocking from here on: every wait goes through poll with a bound. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    s->fd = fd;
    return 0;
}

typedef enum session_probe {
    PROBE_OK,      /* connected, the agent answered ping */
    PROBE_ABSENT,  /* no socket */
    PROBE_REFUSED, /* a socket nobody listens on */
    PROBE_HUNGUP,  /* connected, then closed without an answer */
    PROBE_SILENT,  /* connected, no answer in time (err set) */
    PROBE_FAILED,  /* anything else (err set): give up */
} session_probe;

static session_probe session_try(fp_session *s, int bound_ms, fp_error *err)
{
    const fp_target *t = &s->target;
    SLOG(s, "connecting to %s", s->socket_path);
    int rc = session_connect(s);
    if (rc == -ENOENT) {
        SLOG(s, "no agent socket");
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

    SLOG(s, "connected; sending ping");
    fp_error e2;
    fp_error_clear(&e2);
    cJSON *pong = fp_session_call(s, "ping", NULL, bound_ms, NULL, NULL, &e2);
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
    SLOG(s, "ping failed: %s", e2.message);
    *err = e2;
    return PROBE_SILENT;
}

static int session_hungup_error(fp_session *s, fp_error *err)
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

static int session_timeout_error(fp_session *s, int timeout_ms, fp_error *err)
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

static void session_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A process killed with its agent inside leaves its socket behind (and a killed fp its lock
 * file). Before injecting, fp removes those of processes that no longer exist, in its own
 * directory and pid namespace only: a pid of another namespace means nothing here. */
static void session_sweep_stale(fp_session *s)
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

/* After injection: connect + ping until the agent answers or the deadline passes. */
static int session_wait_agent(fp_session *s, double deadline, int timeout_ms, fp_error *err)
{
    int backoff = SESSION_BACKOFF_FIRST_MS;
    int tries = 0;
    for (;;) {
        double left = deadline - session_now_ms();
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
        if (session_now_ms() + backoff >= deadline)
            return session_timeout_error(s, timeout_ms, err);
        session_sleep_ms(backoff);
        backoff = backoff * 2 > SESSION_BACKOFF_MAX_MS ? SESSION_BACKOFF_MAX_MS : backoff * 2;
    }
}

fp_session *fp_session_open(int pid, const fp_session_opts *opts, fp_error *err)
{
    fp_error_clear(err);
    fp_session *s = calloc(1, sizeof *s);
    if (!s) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    s->fd = -1;
    s->next_id = 1;
    s->debug = opts && opts->debug;
    fp_frame_reader_init(&s->reader, FP_FRAME_DEFAULT_MAX);
    int attach_ms =
        opts && opts->attach_timeout_ms > 0 ? opts->attach_timeout_ms : SESSION_ATTACH_DEFAULT_MS;

    double deadline = session_now_ms() + attach_ms;
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
        fp_turn_give(&turn);
        return s;
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
    session_sweep_stale(s);
    SLOG(s, "injecting %s into process %d", lib, pid);
    fp_attach_opts ao = {.debug = s->debug, .timeout_ms = attach_ms};
    if (fp_attach_inject(&s->target, lib, &ao, err) != 0) goto fail;
    s->injected = true;
    SLOG(s, "injected; waiting for the agent's socket");
    if (session_wait_agent(s, deadline, attach_ms, err) != 0) goto fail;
    fp_turn_give(&turn);
    return s;

fail:
    fp_turn_give(&turn);
    session_disconnect(s);
    fp_frame_reader_free(&s->reader);
    free(s);
    return NULL;
}

void fp_session_close(fp_session *s)
{
    if (!s) return;
    /* detach is answered after the client's queued requests; behind an abandoned one it
     * could wait for the GIL forever. Closing the socket detaches just the same. */
    if (s->fd >= 0 && !s->closed && !s->abandoned) {
        fp_error e;
        fp_error_clear(&e);
        cJSON *r = fp_session_call(s, "detach", NULL, SESSION_DETACH_MS, NULL, NULL, &e);
        SLOG(s, "detach: %s", r ? "done" : e.message);
        cJSON_Delete(r);
    }
    if (s->fd >= 0) close(s->fd);
    fp_frame_reader_free(&s->reader);
    cJSON_Delete(s->last_error);
    free(s);
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
