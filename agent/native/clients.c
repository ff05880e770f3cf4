/* Client records and their worker threads: a client's Python requests wait in its queue and are
 * run in order by its own worker, which takes the GIL; replies go back to the I/O thread through
 * the client's reply list and the wake-up eventfd. Records are refcounted (the I/O thread holds
 * one while the connection is open, the worker one while it runs) so a worker stuck on the GIL
 * can finish its cleanup whenever it gets the GIL, long after the connection is gone. */
#include "agent.h"
#include "fp_rpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Never reset, not even by a restart: the Python side keys per-client state by these ids, and
 * a stopped instance's worker may still clean up an old client after a new instance started. */
static _Atomic int64_t fp_client_next_id;

/* ===================================== Records =============================================== */

fp_agent_client *fp_agent_client_new(fp_agent *a, int fd)
{
    fp_agent_client *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    if (pthread_cond_init(&c->cv, NULL) != 0) {
        free(c);
        return NULL;
    }
    c->agent = a;
    c->fd = fd;
    c->refs = 1;
    c->connected = 1;
    c->reading = 1;
    fp_frame_reader_init(&c->reader, FP_RPC_AGENT_MAX_REQUEST);
    return c;
}

void fp_agent_client_accepted(fp_agent_client *c, int fd)
{
    c->fd = fd;
    c->id = atomic_fetch_add(&fp_client_next_id, 1) + 1;
    fp_agent_events_connected(c);
}

static void fp_client_free_jobs(fp_agent_job *j)
{
    while (j) {
        fp_agent_job *next = j->next;
        free(j->body);
        cJSON_Delete(j->id);
        free(j);
        j = next;
    }
}

void fp_agent_reply_free(fp_agent_reply *r)
{
    while (r) {
        fp_agent_reply *next = r->next;
        free(r->text);
        free(r);
        r = next;
    }
}

void fp_agent_client_unref(fp_agent_client *c)
{
    pthread_mutex_lock(&fp_agent_lock);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&fp_agent_lock);
    if (!last) return;
    fp_client_free_jobs(c->jobs_head);
    fp_agent_reply_free(c->replies_head);
    fp_frame_reader_free(&c->reader);
    free(c->out);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static fp_agent_job *fp_client_job(fp_agent_job_kind kind, const cJSON *id)
{
    fp_agent_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->kind = kind;
    if (id) {
        j->id = cJSON_Duplicate(id, 1);
        if (!j->id) {
            free(j);
            return NULL;
        }
    }
    return j;
}

/* Lock held. */
static void fp_client_append_job(fp_agent_client *c, fp_agent_job *j)
{
    if (c->jobs_tail)
        c->jobs_tail->next = j;
    else
        c->jobs_head = j;
    c->jobs_tail = j;
    pthread_cond_signal(&c->cv);
}

int fp_agent_client_defer(fp_agent_client *c)
{
    static const char body[] = "{\"jsonrpc\":\"2.0\",\"method\":\"agent.deferred\"}";
    if (!c->connected || c->worker != FP_AGENT_WORKER_RUNNING || c->cleanup_queued) return 0;
    if (c->deferred_queued) return 1;
    fp_agent_job *j = fp_client_job(FP_AGENT_JOB_CALL, NULL);
    if (j) j->body = malloc(sizeof body);
    if (!j || !j->body) {
        free(j);
        return 0;
    }
    memcpy(j->body, body, sizeof body);
    j->len = sizeof body - 1;
    j->deferred = 1;
    c->deferred_queued = 1;
    c->pending++;
    fp_client_append_job(c, j);
    return 1;
}

/* Lock held. A reply for a connection the I/O thread already let go is dropped. */
static void fp_client_push_reply(fp_agent_client *c, fp_agent_reply *r)
{
    if (!c->connected) {
        fp_agent_reply_free(r);
        return;
    }
    if (c->replies_tail)
        c->replies_tail->next = r;
    else
        c->replies_head = r;
    c->replies_tail = r;
    /* Under the lock: the I/O thread closes wake_fd only under it, so the fd number cannot
     * have been reused by the target in between. */
    uint64_t one = 1;
    if (c->agent->wake_fd >= 0 && write(c->agent->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already non-zero, the I/O thread will wake anyway. */
    }
}

/* ===================================== The worker ============================================ */

static fp_agent_reply *fp_client_reply(char *text, int close)
{
    fp_agent_reply *r = calloc(1, sizeof(*r));
    if (!r) {
        free(text);
        return NULL;
    }
    r->text = text;
    r->len = text ? strlen(text) : 0;
    r->close = close;
    return r;
}

/* Takes the GIL, noting since when we wait for it (status.gil_wait_ms). */
static int fp_client_gil_ensure(fp_agent_client *c)
{
    int64_t now = fp_agent_now_ns();
    atomic_store(&c->gil_wait_since, now > 0 ? now : 1);
    int state = fp_agent_py_gil_ensure();
    atomic_store(&c->gil_wait_since, 0);
    return state;
}

static fp_agent_reply *fp_client_run_call(fp_agent_client *c, fp_agent_job *j)
{
    char *text = NULL, *err = NULL;
    int code = FP_RPC_INTERNAL_ERROR;
    /* Checked before asking for the GIL: a foreign thread that asks during finalization may be
     * ended by CPython with pthread_exit (and we hold none of our locks here). */
    if (!fp_agent_py_usable()) {
        code = FP_ERR_CANCELLED;
        err = strdup("the Python interpreter is shutting down");
    } else {
        int state = fp_client_gil_ensure(c);
        /* The wait may have been long: a client gone meanwhile gets nothing run for it. */
        pthread_mutex_lock(&fp_agent_lock);
        int connected = c->connected;
        c->in_call = connected;
        pthread_mutex_unlock(&fp_agent_lock);
        if (connected) {
            fp_agent_py_handle(c->agent->gen, c->id, j->body, j->len, &text, &err);
            pthread_mutex_lock(&fp_agent_lock);
            c->in_call = 0;
            pthread_mutex_unlock(&fp_agent_lock);
        }
        fp_agent_py_gil_release(state);
    }
    if (text) {
        free(err);
        return fp_client_reply(text, 0);
    }
    if (!j->id) { /* a notification: nothing to answer, not even an error */
        free(err);
        return NULL;
    }
    if (!err) return NULL; /* handle chose not to answer */
    cJSON *msg = fp_rpc_error(j->id, code, err, NULL);
    free(err);
    char *out = msg ? fp_rpc_print(msg) : NULL;
    cJSON_Delete(msg);
    return out ? fp_client_reply(out, 0) : NULL;
}

/* client_gone for this client, when there is a package that may hold something of it. */
static void fp_client_cleanup(fp_agent_client *c)
{
    if (!fp_agent_py_ready() || !fp_agent_py_usable()) return;
    int state = fp_client_gil_ensure(c);
    fp_agent_py_client_gone(c->id);
    fp_agent_py_gil_release(state);
}

static fp_agent_reply *fp_client_run_detach(fp_agent_client *c, fp_agent_job *j)
{
    fp_client_cleanup(c);
    char *out = NULL;
    if (j->id) {
        cJSON *msg = fp_rpc_result(j->id, cJSON_CreateObject());
        out = msg ? fp_rpc_print(msg) : NULL;
        cJSON_Delete(msg);
    }
    /* Even without a text (a notification, or no memory) the reply closes the connection. */
    return fp_client_reply(out, 1);
}

static void *fp_client_worker(void *arg)
{
    fp_agent_client *c = arg;
    fp_agent *a = c->agent;
    pthread_setname_np(pthread_self(), "fp-agent-work");
    pthread_mutex_lock(&fp_agent_lock);
    c->worker_thread = (unsigned long)pthread_self();
    pthread_mutex_unlock(&fp_agent_lock);

    for (int last = 0; !last;) {
        pthread_mutex_lock(&fp_agent_lock);
        while (!c->jobs_head)
            pthread_cond_wait(&c->cv, &fp_agent_lock);
        fp_agent_job *j = c->jobs_head;
        c->jobs_head = j->next;
        if (!c->jobs_head) c->jobs_tail = NULL;
        j->next = NULL;
        if (j->deferred) c->deferred_queued = 0; /* work deferred from now on needs another */
        pthread_mutex_unlock(&fp_agent_lock);

        fp_agent_reply *r = NULL;
        if (j->kind == FP_AGENT_JOB_CALL) {
            r = fp_client_run_call(c, j);
        } else if (j->kind == FP_AGENT_JOB_DETACH) {
            r = fp_client_run_detach(c, j);
            last = 1;
        } else {
            fp_client_cleanup(c);
            last = 1;
        }

        pthread_mutex_lock(&fp_agent_lock);
        if (j->kind == FP_AGENT_JOB_CALL) c->pending--;
        if (r) fp_client_push_reply(c, r);
        pthread_mutex_unlock(&fp_agent_lock);
        fp_client_free_jobs(j);
    }

    pthread_mutex_lock(&fp_agent_lock);
    c->worker = FP_AGENT_WORKER_DONE;
    a->workers_alive--;
    if (c->orphaned) a->orphans--;
    /* Signalled under the lock: once we unlock, the stopping instance may be freed, so `a` is
     * not touched after this. */
    pthread_cond_broadcast(&a->workers_done);
    pthread_mutex_unlock(&fp_agent_lock);
    fp_agent_client_unref(c);
    return NULL;
}

/* A client that left while its request runs (a runaway loop typed in the console) must not
 * leave that code running in the target: this thread takes the GIL, which the running code
 * hands over within the switch interval, and interrupts the worker's call. */
static void *fp_client_interrupter(void *arg)
{
    fp_agent_client *c = arg;
    pthread_setname_np(pthread_self(), "fp-agent-intr");
    if (fp_agent_py_usable()) {
        int state = fp_agent_py_gil_ensure();
        /* in_call only changes under the GIL, which we hold: the call is still running. */
        pthread_mutex_lock(&fp_agent_lock);
        int in_call = c->in_call;
        unsigned long thread = c->worker_thread;
        pthread_mutex_unlock(&fp_agent_lock);
        if (in_call) fp_agent_py_interrupt(thread);
        fp_agent_py_gil_release(state);
    }
    fp_agent_client_unref(c);
    return NULL;
}

/* ===================================== Queueing (I/O thread) ================================= */

int fp_agent_client_submit(fp_agent_client *c, char *body, size_t len, const cJSON *id,
                           const char **why)
{
    fp_agent *a = c->agent;
    fp_agent_job *j = fp_client_job(FP_AGENT_JOB_CALL, id);
    if (!j) {
        free(body);
        *why = "out of memory";
        return FP_RPC_INTERNAL_ERROR;
    }
    j->body = body;
    j->len = len;

    int start = 0;
    pthread_mutex_lock(&fp_agent_lock);
    if (c->cleanup_queued) {
        pthread_mutex_unlock(&fp_agent_lock);
        fp_client_free_jobs(j);
        *why = "cancelled: the client is detaching";
        return FP_ERR_CANCELLED;
    }
    if (c->pending >= FP_AGENT_MAX_QUEUE) {
        pthread_mutex_unlock(&fp_agent_lock);
        fp_client_free_jobs(j);
        *why = "busy: 256 requests of this client are already waiting; wait for their answers";
        return FP_ERR_BUSY;
    }
    if (c->worker == FP_AGENT_WORKER_NONE) {
        if (a->orphans >= FP_AGENT_MAX_ORPHANS) {
            pthread_mutex_unlock(&fp_agent_lock);
            fp_client_free_jobs(j);
            *why = "busy: 4 agent threads of clients that left are still waiting for the GIL, "
                   "which a thread of the process has not released; the agent starts no more "
                   "until one gets it (fp can still read stacks from outside the process)";
            return FP_ERR_BUSY;
        }
        if (a->workers_alive >= FP_AGENT_MAX_WORKERS) {
            pthread_mutex_unlock(&fp_agent_lock);
            fp_client_free_jobs(j);
            *why = "busy: too many agent threads are waiting for the GIL; the GIL may be stuck "
                   "(fp can still read stacks from outside the process)";
            return FP_ERR_BUSY;
        }
        c->worker = FP_AGENT_WORKER_RUNNING;
        a->workers_alive++;
        c->refs++;
        start = 1;
    }
    fp_client_append_job(c, j);
    c->pending++;
    pthread_mutex_unlock(&fp_agent_lock);

    if (!start) return 0;
    pthread_t t;
    /* Not under the lock: thread creation takes loader locks a forking thread may want. */
    int err = fp_agent_spawn(&t, FP_AGENT_WORKER_STACK, 1, fp_client_worker, c);
    if (err == 0) return 0;

    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_job *dropped = c->jobs_head; /* only this request: there was no worker before */
    c->jobs_head = c->jobs_tail = NULL;
    c->pending = 0;
    c->worker = FP_AGENT_WORKER_NONE;
    a->workers_alive--;
    c->refs--; /* the I/O thread still holds its own */
    pthread_cond_broadcast(&a->workers_done);
    pthread_mutex_unlock(&fp_agent_lock);
    fp_client_free_jobs(dropped);
    *why = "cannot start a worker thread in the target";
    return FP_RPC_INTERNAL_ERROR;
}

int fp_agent_client_detach(fp_agent_client *c, const cJSON *id)
{
    fp_agent_job *j = fp_client_job(FP_AGENT_JOB_DETACH, id);
    pthread_mutex_lock(&fp_agent_lock);
    if (c->worker != FP_AGENT_WORKER_RUNNING || c->cleanup_queued || !j) {
        /* Without a worker nothing of this client is in Python: the I/O thread answers.
         * (Out of memory: the disconnect that follows queues the cleanup instead.) */
        pthread_mutex_unlock(&fp_agent_lock);
        fp_client_free_jobs(j);
        return 0;
    }
    c->cleanup_queued = 1;
    fp_client_append_job(c, j);
    pthread_mutex_unlock(&fp_agent_lock);
    return 1;
}

void fp_agent_client_disconnect(fp_agent_client *c)
{
    fp_agent_job *gone = fp_client_job(FP_AGENT_JOB_GONE, NULL);
    fp_agent_job *dropped = NULL, **tail = &dropped;

    pthread_mutex_lock(&fp_agent_lock);
    c->connected = 0;
    fp_agent_events_disconnected(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    fp_agent_reply *replies = c->replies_head;
    c->replies_head = c->replies_tail = NULL;
    c->notes_queued = 0;
    c->notes_bytes = 0;
    /* Queued requests of a client that left are not run; a queued detach still is (it is the
     * cleanup), and the request running now finishes. */
    fp_agent_job **p = &c->jobs_head;
    c->jobs_tail = NULL;
    while (*p) {
        fp_agent_job *j = *p;
        if (j->kind == FP_AGENT_JOB_CALL) {
            *p = j->next;
            j->next = NULL;
            *tail = j;
            tail = &j->next;
            c->pending--;
        } else {
            c->jobs_tail = j;
            p = &j->next;
        }
    }
    if (c->worker == FP_AGENT_WORKER_RUNNING && !c->orphaned) {
        c->orphaned = 1; /* alive without its client until it gets the GIL */
        c->agent->orphans++;
    }
    if (c->worker == FP_AGENT_WORKER_RUNNING && !c->cleanup_queued && gone) {
        c->cleanup_queued = 1;
        fp_client_append_job(c, gone);
        gone = NULL;
    }
    int interrupt = c->in_call && !c->interrupted;
    if (interrupt) {
        c->interrupted = 1;
        c->refs++; /* the interrupter's */
    }
    pthread_mutex_unlock(&fp_agent_lock);

    pthread_t t;
    if (interrupt && fp_agent_spawn(&t, FP_AGENT_IO_STACK, 1, fp_client_interrupter, c) != 0)
        fp_agent_client_unref(c); /* no thread: the call runs to its end */

    fp_client_free_jobs(dropped);
    fp_client_free_jobs(gone);
    fp_agent_reply_free(replies);
    /* The I/O side's buffers go now, not when a stuck worker lets go of the record. */
    fp_frame_reader_free(&c->reader);
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
}

fp_agent_reply *fp_agent_client_take_replies(fp_agent_client *c)
{
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_reply *r = c->replies_head;
    c->replies_head = c->replies_tail = NULL;
    c->notes_queued = 0;
    c->notes_bytes = 0;
    pthread_mutex_unlock(&fp_agent_lock);
    return r;
}

void fp_agent_client_stats(fp_agent_client *c, int64_t *gil_wait_ms, int *pending)
{
    int64_t since = atomic_load(&c->gil_wait_since);
    *gil_wait_ms = since ? (fp_agent_now_ns() - since) / 1000000 : 0;
    if (*gil_wait_ms < 0) *gil_wait_ms = 0;
    pthread_mutex_lock(&fp_agent_lock);
    *pending = c->pending;
    pthread_mutex_unlock(&fp_agent_lock);
}
