/* The event channel: `emit(client_id, text[, reply])`, a C function handed to the agent's package,
 * which the observed code's own threads call (GIL held) to push a notification to one client while
 * a watch, trace or tt runs. It copies the text into the client's reply list and wakes the I/O
 * thread, which frames and writes it. It never blocks: a client that is gone or slow loses the
 * event (emit returns False and the package counts it). */
#include "agent.h"
#include "pyapi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ===================================== Limits ================================================ */

/* Notifications queued for one client and not yet taken by the I/O thread; more are dropped.
 * The I/O thread also drops them while the client's unsent output is above FP_AGENT_OUT_HIGH,
 * so a client that does not read costs at most about OUT_HIGH + these bytes. */
#define FP_EVENTS_MAX_QUEUED 4096
#define FP_EVENTS_MAX_BYTES (16u << 20)

/* ===================================== Connected clients ===================================== */

/* Every client whose connection is open, by id (locked: fp_agent_lock). Across restarts ids are
 * unique, so one table serves every instance. */
static fp_agent_client *fp_events_clients[FP_AGENT_MAX_CLIENTS * 4];

void fp_agent_events_connected(fp_agent_client *c)
{
    for (size_t i = 0; i < sizeof fp_events_clients / sizeof fp_events_clients[0]; i++) {
        if (!fp_events_clients[i]) {
            fp_events_clients[i] = c;
            return;
        }
    }
    /* Full (only if many stopped instances linger): this client gets no events. */
}

void fp_agent_events_disconnected(fp_agent_client *c)
{
    for (size_t i = 0; i < sizeof fp_events_clients / sizeof fp_events_clients[0]; i++)
        if (fp_events_clients[i] == c) fp_events_clients[i] = NULL;
}

void fp_agent_events_forget_all(void)
{
    memset(fp_events_clients, 0, sizeof fp_events_clients);
}

static fp_agent_client *fp_events_find(int64_t id)
{
    for (size_t i = 0; i < sizeof fp_events_clients / sizeof fp_events_clients[0]; i++) {
        fp_agent_client *c = fp_events_clients[i];
        if (c && c->id == id) return c;
    }
    return NULL;
}

/* ===================================== emit ================================================== */

/* Returns 1 when queued, 0 when dropped (no such client, gone, or too much waiting). A reply
 * (a response sent this way to order it before a stream's events) is never dropped for being
 * slow: like the worker's replies it only needs the client to be there. */
static int fp_events_push(int64_t client, const char *text, size_t len, int reply)
{
    /* Copied before taking the lock: the lock is shared with the I/O thread. */
    fp_agent_reply *r = calloc(1, sizeof(*r));
    char *copy = malloc(len + 1);
    if (!r || !copy) {
        free(r);
        free(copy);
        return 0;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    r->text = copy;
    r->len = len;
    r->notification = !reply;

    int queued = 0;
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_client *c = fp_events_find(client);
    if (c && c->connected &&
        (reply || (!atomic_load(&c->out_full) && c->notes_queued < FP_EVENTS_MAX_QUEUED &&
                   c->notes_bytes + len <= FP_EVENTS_MAX_BYTES))) {
        int was_empty = c->replies_head == NULL;
        if (c->replies_tail)
            c->replies_tail->next = r;
        else
            c->replies_head = r;
        c->replies_tail = r;
        if (!reply) {
            c->notes_queued++;
            c->notes_bytes += len;
        }
        /* A non-empty list means a wake-up is already pending (whoever made it non-empty wrote
         * to the eventfd, and the I/O thread takes the whole list after reading it): one
         * system call per burst, not per event. */
        uint64_t one = 1;
        if (was_empty && c->agent->wake_fd >= 0 &&
            write(c->agent->wake_fd, &one, sizeof(one)) < 0) {
            /* EAGAIN: the counter is already non-zero */
        }
        queued = 1;
    } else if (c) {
        c->notes_dropped++;
    }
    pthread_mutex_unlock(&fp_agent_lock);
    if (!queued) fp_agent_reply_free(r);
    return queued;
}

static fp_pyobj *fp_events_emit(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 2 && nargs != 3) {
        fp_py.PyErr_SetString(*fp_py.type_error,
                              "emit(client_id, text[, reply]) takes 2 or 3 arguments");
        return NULL;
    }
    int reply = 0;
    if (nargs == 3 && (reply = fp_py.PyObject_IsTrue(args[2])) < 0) return NULL;
    long long client = fp_py.PyLong_AsLongLong(args[0]);
    if (client == -1 && fp_py.PyErr_Occurred()) return NULL;
    ssize_t len = 0;
    const char *text = fp_py.PyUnicode_AsUTF8AndSize(args[1], &len);
    if (!text) return NULL;
    return fp_py.PyBool_FromLong(fp_events_push(client, text, (size_t)len, reply));
}

static fp_pyobj *fp_events_defer(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 1) {
        fp_py.PyErr_SetString(*fp_py.type_error, "defer(client_id) takes 1 argument");
        return NULL;
    }
    long long client = fp_py.PyLong_AsLongLong(args[0]);
    if (client == -1 && fp_py.PyErr_Occurred()) return NULL;
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_client *c = fp_events_find(client);
    int queued = c && fp_agent_client_defer(c);
    pthread_mutex_unlock(&fp_agent_lock);
    return fp_py.PyBool_FromLong(queued);
}

/* defer_after: a thread of ours sleeps, then queues the agent.deferred job, so that work due
 * later (mem diff's second snapshot, its progress reports) runs on the client's worker without
 * holding it meanwhile: the client's other requests (a stop) are served while it waits. */
#define FP_EVENTS_MAX_TIMERS 64
#define FP_EVENTS_TIMER_STACK (64u * 1024u)
static atomic_int fp_events_timers;

typedef struct fp_events_timer {
    int64_t client;
    int64_t ms;
} fp_events_timer;

static void *fp_events_timer_main(void *arg)
{
    fp_events_timer *t = arg;
    pthread_setname_np(pthread_self(), "fp-agent-timer");
    struct timespec left = {(time_t)(t->ms / 1000), (long)(t->ms % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_client *c = fp_events_find(t->client); /* NULL once the client is gone */
    if (c) fp_agent_client_defer(c);
    pthread_mutex_unlock(&fp_agent_lock);
    free(t);
    atomic_fetch_sub(&fp_events_timers, 1);
    return NULL;
}

static fp_pyobj *fp_events_defer_after(fp_pyobj *self, fp_pyobj *const *args, ssize_t nargs)
{
    (void)self;
    if (nargs != 2) {
        fp_py.PyErr_SetString(*fp_py.type_error, "defer_after(client_id, ms) takes 2 arguments");
        return NULL;
    }
    long long client = fp_py.PyLong_AsLongLong(args[0]);
    if (client == -1 && fp_py.PyErr_Occurred()) return NULL;
    long long ms = fp_py.PyLong_AsLongLong(args[1]);
    if (ms == -1 && fp_py.PyErr_Occurred()) return NULL;
    if (ms < 0) ms = 0;
    if (ms > 86400000LL) ms = 86400000LL;
    if (atomic_fetch_add(&fp_events_timers, 1) >= FP_EVENTS_MAX_TIMERS) {
        atomic_fetch_sub(&fp_events_timers, 1);
        return fp_py.PyBool_FromLong(0);
    }
    fp_events_timer *t = malloc(sizeof(*t));
    pthread_t thread;
    if (t) {
        t->client = client;
        t->ms = ms;
    }
    if (!t || fp_agent_spawn(&thread, FP_EVENTS_TIMER_STACK, 1, fp_events_timer_main, t) != 0) {
        free(t);
        atomic_fetch_sub(&fp_events_timers, 1);
        return fp_py.PyBool_FromLong(0);
    }
    return fp_py.PyBool_FromLong(1);
}

static fp_py_methoddef fp_events_methods[] = {
    {"emit", (fp_py_cfunc)(void (*)(void))fp_events_emit, FP_METH_FASTCALL,
     "emit(client_id, text, reply=False) -> bool: queue a JSON-RPC notification (or, with "
     "reply, a response) for a client; False when it was dropped (client gone or not reading)."},
    {"defer", (fp_py_cfunc)(void (*)(void))fp_events_defer, FP_METH_FASTCALL,
     "defer(client_id) -> bool: have the client's worker call dispatch with agent.deferred "
     "soon (once for any number of calls before it runs); False when it has no worker."},
    {"defer_after", (fp_py_cfunc)(void (*)(void))fp_events_defer_after, FP_METH_FASTCALL,
     "defer_after(client_id, ms) -> bool: the same as defer, ms milliseconds from now (a thread "
     "of the agent waits); False when no more timers can be started."},
};

int fp_agent_events_export(void *package)
{
    if (!fp_py_usable(FP_PYG_EVENTS)) return -1;
    static const char *const attrs[] = {"_native_emit", "_native_defer", "_native_defer_after"};
    int rc = 0;
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        fp_pyobj *f = fp_py.PyCFunction_NewEx(&fp_events_methods[i], NULL, NULL);
        if (!f || fp_py.PyObject_SetAttrString(package, attrs[i], f) != 0) rc = -1;
        if (f) fp_py.Py_DecRef(f);
    }
    if (rc < 0) fp_py.PyErr_Clear();
    return rc;
}
