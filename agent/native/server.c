/* The agent's socket and its I/O thread: the per-user directory and agent-NS-PID.sock, the peer
 * check, one poll() loop over the listener, the clients and the wake-up eventfd, the framing,
 * and the methods answered without the GIL (ping, status, detach, shutdown). The I/O thread
 * never calls into Python, so it stays responsive while another thread holds the GIL forever. */
#include "agent.h"
#include "fp_paths.h"
#include "fp_rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Out of fds or memory, accept() fails at once while the listener stays readable: pause. */
#define FP_SERVER_ACCEPT_PAUSE_MS 100

/* ===================================== The socket ============================================ */

/* /tmp/fp-UID must be a real directory (no symlink), ours, mode 0700; otherwise another user
 * could reach or replace our socket, and we give up rather than serve through it. */
static int fp_server_prepare_dir(const char *dir, uid_t uid)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fp_agent_set_error("cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(dir, &st) != 0) {
        fp_agent_set_error("cannot stat %s: %s", dir, strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode) || !S_ISDIR(st.st_mode)) {
        fp_agent_set_error("%s is not a directory (%s); remove it", dir,
                           S_ISLNK(st.st_mode) ? "a symlink" : "another kind of file");
        return -1;
    }
    if (st.st_uid != uid) {
        fp_agent_set_error("%s belongs to uid %u, not to uid %u; remove it", dir,
                           (unsigned)st.st_uid, (unsigned)uid);
        return -1;
    }
    /* What was checked by name is then held open: it cannot be swapped under the chmod. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat held;
    int rc = -1;
    if (fd < 0 || fstat(fd, &held) != 0) {
        fp_agent_set_error("cannot open %s: %s", dir, strerror(errno));
    } else if (held.st_dev != st.st_dev || held.st_ino != st.st_ino || held.st_uid != uid) {
        fp_agent_set_error("%s changed while it was checked; try again", dir);
    } else if ((held.st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0) {
        /* mkdir's mode went through the umask, and an old directory may have been widened. */
        fp_agent_set_error("cannot make %s private (chmod 0700): %s", dir, strerror(errno));
    } else {
        rc = 0;
    }
    if (fd >= 0) close(fd);
    return rc;
}

static void fp_server_close_fds(fp_agent *a)
{
    pthread_mutex_lock(&fp_agent_lock);
    if (a->listen_fd >= 0) close(a->listen_fd);
    a->listen_fd = -1;
    pthread_mutex_unlock(&fp_agent_lock);
}

int fp_agent_server_open(fp_agent *a)
{
    uid_t uid = geteuid();
    char dir[64];
    if (fp_paths_socket_dir(uid, dir, sizeof(dir)) != 0 ||
        fp_paths_socket(uid, fp_paths_pid_ns(0), getpid(), a->sock_path, sizeof(a->sock_path)) !=
            0) {
        fp_agent_set_error("socket path too long");
        return -1;
    }
    if (fp_server_prepare_dir(dir, uid) != 0) return -1;

    a->rbuf = malloc(FP_AGENT_READ_CHUNK);
    if (!a->rbuf) {
        fp_agent_set_error("out of memory");
        return -1;
    }
    /* Created under the lock so that a fork child knows exactly which fds are ours. */
    pthread_mutex_lock(&fp_agent_lock);
    a->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int fds_ok = a->wake_fd >= 0 && a->listen_fd >= 0;
    int err = errno;
    pthread_mutex_unlock(&fp_agent_lock);
    if (!fds_ok) {
        fp_agent_set_error("cannot create the agent's socket: %s", strerror(err));
        fp_server_close_fds(a);
        return -1;
    }

    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", a->sock_path);
    /* A stale socket of an earlier process with our pid (the directory is ours alone). */
    unlink(a->sock_path);
    if (bind(a->listen_fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        fp_agent_set_error("cannot bind %s: %s", a->sock_path, strerror(errno));
        fp_server_close_fds(a);
        return -1;
    }
    if (chmod(a->sock_path, 0600) != 0 || listen(a->listen_fd, FP_AGENT_MAX_CLIENTS) != 0) {
        fp_agent_set_error("cannot listen on %s: %s", a->sock_path, strerror(errno));
        fp_server_close_fds(a);
        unlink(a->sock_path);
        return -1;
    }
    return 0;
}

void fp_agent_server_close(fp_agent *a)
{
    /* The path goes and this instance stops being the current one in one step: a client that
     * finds no socket and calls fp_agent_start() at once gets a new instance (which binds the
     * same path), never "already running" from this one, whose shutdown may take a while. */
    pthread_mutex_lock(&fp_agent_lock);
    int had = a->listen_fd >= 0;
    if (had) {
        unlink(a->sock_path);
        fp_agent_retire(a);
    }
    pthread_mutex_unlock(&fp_agent_lock);
    if (had) fp_server_close_fds(a);
}

/* ===================================== Output ================================================ */

/* Tells emit (events.c) whether this client's unsent output is too big to take more events. */
static void fp_server_note_backlog(fp_agent_client *c)
{
    atomic_store(&c->out_full, c->out_len - c->out_off > FP_AGENT_OUT_HIGH);
}

/* Sends what it can without blocking. A client that fails, or whose last reply is out, is
 * marked dead (it is dropped at the end of the poll round). */
static void fp_server_flush(fp_agent_client *c)
{
    fp_server_note_backlog(c);
    while (!c->dead && c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fp_server_note_backlog(c);
            return;
        } else {
            c->dead = 1;
            return;
        }
    }
    c->out_off = c->out_len = 0;
    fp_server_note_backlog(c);
    if (c->out_cap > FP_AGENT_OUT_HIGH) { /* do not keep a big buffer for an idle client */
        free(c->out);
        c->out = NULL;
        c->out_cap = 0;
    }
    if (c->close_when_flushed) c->dead = 1;
}

/* Appends one framed message to the client's output. */
static void fp_server_queue(fp_agent_client *c, const char *text, size_t len)
{
    if (c->dead) return;
    char head[48];
    int hl = snprintf(head, sizeof(head), "Content-Length: %zu\r\n\r\n", len);
    if (c->out_off > 0) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    size_t need = c->out_len + (size_t)hl + len;
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *out = realloc(c->out, cap);
        if (!out) {
            c->dead = 1; /* a reply we cannot deliver would leave the client waiting forever */
            return;
        }
        c->out = out;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, head, (size_t)hl);
    memcpy(c->out + c->out_len + (size_t)hl, text, len);
    c->out_len = need;
}

/* Queues and frees msg (which may be NULL: out of memory, nothing to say). */
static void fp_server_send(fp_agent_client *c, cJSON *msg)
{
    char *text = msg ? fp_rpc_print(msg) : NULL;
    cJSON_Delete(msg);
    if (!text) return;
    fp_server_queue(c, text, strlen(text));
    free(text);
    fp_server_flush(c);
}

static void fp_server_send_error(fp_agent_client *c, const cJSON *id, int code, const char *why)
{
    fp_server_send(c, fp_rpc_error(id, code, why, NULL));
}

/* Moves the replies the worker produced to the output, in the order they were made. */
static void fp_server_take_replies(fp_agent_client *c)
{
    fp_agent_reply *list = fp_agent_client_take_replies(c);
    for (fp_agent_reply *r = list; r; r = r->next) {
        /* Every event taken here goes out: emit already refused (and counted, for the next
         * event and the stream's end to report) those beyond the limits, out_full included, so
         * at most FP_EVENTS_MAX_BYTES arrive past FP_AGENT_OUT_HIGH. Dropping one here would
         * lose it uncounted. */
        if (r->text && r->len) fp_server_queue(c, r->text, r->len);
        if (r->close) {
            c->close_when_flushed = 1;
            c->reading = 0;
        }
    }
    fp_agent_reply_free(list);
    fp_server_flush(c);
}

/* ===================================== Methods without the GIL =============================== */

static cJSON *fp_server_status(fp_agent *a, fp_agent_client *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int64_t gil_wait_ms = 0;
    int pending = 0;
    fp_agent_client_stats(c, &gil_wait_ms, &pending);
    double uptime = (double)((fp_agent_now_ns() - a->started_ns) / 1000000) / 1000.0;

    cJSON_AddNumberToObject(o, "pid", getpid());
    /* Which process this is, for a client that cannot see our pid (fp_trust_confirm). */
    cJSON_AddNumberToObject(o, "pid_ns", (double)fp_paths_pid_ns(0));
    cJSON_AddNumberToObject(o, "start_time", (double)fp_paths_start_time(0));
    cJSON_AddStringToObject(o, "agent_version", FP_VERSION);
    cJSON_AddStringToObject(o, "python_version", fp_agent_py_version());
    cJSON_AddNumberToObject(o, "clients", a->nclients);
    cJSON_AddNumberToObject(o, "uptime_s", uptime);
    cJSON_AddBoolToObject(o, "python_ready", fp_agent_py_ready());
    cJSON_AddNumberToObject(o, "gil_wait_ms", (double)gil_wait_ms);
    cJSON_AddNumberToObject(o, "pending", pending);
    return o;
}

static void fp_server_detach(fp_agent_client *c, const cJSON *id)
{
    c->reading = 0;
    if (fp_agent_client_detach(c, id))
        return; /* the worker answers once the client's queued requests are done */
    if (id) fp_server_send(c, fp_rpc_result(id, cJSON_CreateObject()));
    c->close_when_flushed = 1;
    fp_server_flush(c);
}

/* Handles one message (takes body). Returns 1 when the client asked for shutdown. */
static int fp_server_message(fp_agent *a, fp_agent_client *c, char *body, size_t len)
{
    fp_rpc_msg m;
    cJSON *error_response = NULL;
    if (fp_rpc_parse(body, len, &m, &error_response) != 0) {
        free(body);
        fp_server_send(c, error_response); /* -32700 or -32600 */
        return 0;
    }
    int stop = 0;
    const cJSON *id = m.kind == FP_RPC_REQUEST ? m.id : NULL;
    if (m.kind == FP_RPC_RESPONSE) {
        /* The agent sends no requests, so there is nothing a response could answer. */
    } else if (strcmp(m.method, "ping") == 0) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddBoolToObject(r, "pong", 1);
        if (id)
            fp_server_send(c, fp_rpc_result(id, r));
        else
            cJSON_Delete(r);
    } else if (strcmp(m.method, "status") == 0) {
        if (id) fp_server_send(c, fp_rpc_result(id, fp_server_status(a, c)));
    } else if (strcmp(m.method, "detach") == 0) {
        fp_server_detach(c, id);
    } else if (strcmp(m.method, "shutdown") == 0) {
        if (id) fp_server_send(c, fp_rpc_result(id, cJSON_CreateObject()));
        stop = 1;
    } else {
        const char *why = NULL;
        int code = fp_agent_client_submit(c, body, len, id, &why);
        body = NULL; /* the queue owns it now, also on failure */
        if (code != 0 && id) fp_server_send_error(c, id, code, why);
    }
    free(body);
    fp_rpc_msg_free(&m);
    return stop;
}

/* ===================================== Input ================================================= */

/* Reads what is there and handles every whole message. Returns 1 on shutdown. */
static int fp_server_read(fp_agent *a, fp_agent_client *c)
{
    ssize_t n = recv(c->fd, a->rbuf, FP_AGENT_READ_CHUNK, MSG_DONTWAIT);
    if (n == 0) {
        c->dead = 1; /* EOF: the client went away without detach; same cleanup */
        return 0;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) c->dead = 1;
        return 0;
    }
    return fp_agent_server_feed(a, c, a->rbuf, (size_t)n);
}

int fp_agent_server_feed(fp_agent *a, fp_agent_client *c, const char *data, size_t n)
{
    if (fp_frame_reader_feed(&c->reader, data, n) != 0) {
        c->dead = 1;
        return 0;
    }
    while (c->reading && !c->dead) {
        char *body = NULL;
        size_t len = 0;
        const char *err = NULL;
        int rc = fp_frame_reader_next(&c->reader, &body, &len, &err);
        if (rc == FP_FRAME_MORE) break;
        if (rc == FP_FRAME_E_TOOBIG && c->reader.too_big) {
            /* Refused unread (the reader drops its body as it comes): say why, go on. */
            char why[192];
            snprintf(why, sizeof(why),
                     "Invalid Request: too large (%zu bytes); the agent reads requests of at most "
                     "%u MiB (expressions of at most 64 Ki characters)",
                     c->reader.too_big, FP_RPC_AGENT_MAX_REQUEST >> 20);
            c->reader.too_big = 0;
            fp_server_send_error(c, NULL, FP_RPC_INVALID_REQUEST, why);
            continue;
        }
        if (rc != FP_FRAME_OK) {
            c->dead = 1; /* framing errors cannot be resynchronised */
            break;
        }
        if (fp_server_message(a, c, body, len)) return 1;
    }
    return 0;
}

/* ===================================== Connections =========================================== */

static int fp_server_peer_ok(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) return 0;
    return cred.uid == 0 || cred.uid == geteuid();
}

static const char fp_server_busy_body[] =
    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32005,\"message\":\"busy: the agent "
    "already serves 16 clients; close one (detach) and try again\"}}";

/* Best effort, never blocking: the connection is closed right after. */
static void fp_server_refuse_busy(int fd)
{
    char msg[256];
    int n = snprintf(msg, sizeof(msg), "Content-Length: %zu\r\n\r\n%s",
                     sizeof(fp_server_busy_body) - 1, fp_server_busy_body);
    if (n > 0 && (size_t)n < sizeof(msg) &&
        send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing to do: the peer will see the connection close */
    }
}

/* Accepts one connection. Returns 1 to try another, 0 when none is left (or accepting must
 * pause). The accept, the checks and the recording all happen under the lock, so that a fork
 * child never inherits a connection fd it does not know about. */
static int fp_server_accept_one(fp_agent *a)
{
    fp_agent_client *c = fp_agent_client_new(a, -1);
    if (!c) {
        a->accept_paused_until = fp_agent_now_ns() + FP_SERVER_ACCEPT_PAUSE_MS * 1000000LL;
        return 0;
    }
    int more = 1;
    pthread_mutex_lock(&fp_agent_lock);
    int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    int err = errno;
    if (fd < 0) {
        more = err == EINTR || err == ECONNABORTED;
        if (!more && err != EAGAIN && err != EWOULDBLOCK)
            a->accept_paused_until = fp_agent_now_ns() + FP_SERVER_ACCEPT_PAUSE_MS * 1000000LL;
    } else if (!fp_server_peer_ok(fd)) {
        close(fd); /* another user: closed without a word */
    } else if (a->nclients >= FP_AGENT_MAX_CLIENTS) {
        fp_server_refuse_busy(fd);
        close(fd);
    } else {
        fp_agent_client_accepted(c, fd);
        a->clients[a->nclients++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&fp_agent_lock);
    if (c) fp_agent_client_unref(c);
    return more;
}

static void fp_server_drop(fp_agent *a, int i)
{
    fp_agent_client *c = a->clients[i];
    fp_agent_client_disconnect(c); /* closes the fd, hands the cleanup to the worker */
    pthread_mutex_lock(&fp_agent_lock);
    a->clients[i] = a->clients[--a->nclients];
    a->clients[a->nclients] = NULL;
    pthread_mutex_unlock(&fp_agent_lock);
    fp_agent_client_unref(c);
}

static void fp_server_drop_dead(fp_agent *a)
{
    for (int i = a->nclients - 1; i >= 0; i--)
        if (a->clients[i]->dead) fp_server_drop(a, i);
}

/* Shutdown: deliver what is buffered (the {} of the shutdown itself, replies already made) for
 * a bounded time, then let every connection go; their workers clean up on their own. */
static void fp_server_close_all(fp_agent *a)
{
    int64_t deadline = fp_agent_now_ns() + FP_AGENT_FLUSH_MS * 1000000LL;
    for (int i = 0; i < a->nclients; i++) {
        a->clients[i]->reading = 0;
        fp_server_take_replies(a->clients[i]);
    }
    for (;;) {
        struct pollfd pfd[FP_AGENT_MAX_CLIENTS];
        fp_agent_client *who[FP_AGENT_MAX_CLIENTS];
        int n = 0;
        for (int i = 0; i < a->nclients; i++) {
            fp_agent_client *c = a->clients[i];
            if (!c->dead && c->out_off < c->out_len) {
                pfd[n] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
                who[n++] = c;
            }
        }
        int64_t left_ms = (deadline - fp_agent_now_ns()) / 1000000;
        if (n == 0 || left_ms <= 0) break;
        if (poll(pfd, (nfds_t)n, (int)left_ms) < 0 && errno != EINTR) break;
        for (int k = 0; k < n; k++) {
            if (pfd[k].revents & (POLLERR | POLLHUP | POLLNVAL))
                who[k]->dead = 1;
            else if (pfd[k].revents & POLLOUT)
                fp_server_flush(who[k]);
        }
    }
    while (a->nclients > 0)
        fp_server_drop(a, a->nclients - 1);
}

/* ===================================== The poll loop ========================================= */

void fp_agent_server_run(fp_agent *a)
{
    struct pollfd pfd[2 + FP_AGENT_MAX_CLIENTS];
    fp_agent_client *who[FP_AGENT_MAX_CLIENTS];
    int stop = 0;
    while (!stop) {
        int n = 0, timeout = -1, listen_at = -1;
        pfd[n++] = (struct pollfd){.fd = a->wake_fd, .events = POLLIN};
        int64_t now = fp_agent_now_ns();
        if (a->accept_paused_until && now < a->accept_paused_until) {
            timeout = (int)((a->accept_paused_until - now) / 1000000) + 1;
        } else {
            a->accept_paused_until = 0;
            listen_at = n;
            pfd[n++] = (struct pollfd){.fd = a->listen_fd, .events = POLLIN};
        }
        int first = n;
        for (int i = 0; i < a->nclients; i++) {
            fp_agent_client *c = a->clients[i];
            size_t queued = c->out_len - c->out_off;
            short events = 0;
            /* A client that does not read its replies is not read either, so that it cannot
             * make us buffer without bound. */
            if (c->reading && queued < FP_AGENT_OUT_HIGH) events |= POLLIN;
            if (queued) events |= POLLOUT;
            pfd[n] = (struct pollfd){.fd = c->fd, .events = events};
            who[n - first] = c;
            n++;
        }

        if (poll(pfd, (nfds_t)n, timeout) < 0) {
            if (errno != EINTR) { /* ENOMEM: give the system a moment */
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }

        if (pfd[0].revents & POLLIN) {
            uint64_t count;
            if (read(a->wake_fd, &count, sizeof(count)) < 0) {
                /* EAGAIN: another round already drained it */
            }
            for (int i = 0; i < a->nclients; i++)
                fp_server_take_replies(a->clients[i]);
        }
        for (int k = first; k < n && !stop; k++) {
            fp_agent_client *c = who[k - first];
            short ev = pfd[k].revents;
            if (c->dead || !ev) continue;
            if (ev & POLLNVAL) {
                c->dead = 1;
                continue;
            }
            if (ev & POLLOUT) fp_server_flush(c);
            if (c->dead) continue;
            if (ev & (POLLIN | POLLHUP | POLLERR)) {
                if (c->reading)
                    stop = fp_server_read(a, c);
                else if (ev & (POLLHUP | POLLERR))
                    c->dead = 1; /* detaching and the peer left: its reply has nowhere to go */
            }
        }
        if (!stop && listen_at >= 0 && (pfd[listen_at].revents & POLLIN))
            while (fp_server_accept_one(a))
                ;
        fp_server_drop_dead(a);
    }
    /* Shutdown: stop accepting and remove the socket first, then the clients. */
    fp_agent_server_close(a);
    fp_server_close_all(a);
}
