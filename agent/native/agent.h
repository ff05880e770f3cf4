/* libfpagent's private header: the state its files share and what each file offers the others.
 * One agent instance (socket, clients, I/O thread) runs at a time; a stopped instance lingers
 * only while workers stuck on the GIL finish their cleanup, so nothing is freed under them. */
#ifndef FP_AGENT_H
#define FP_AGENT_H

#include "fp_frame.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FP_AGENT_EXPORT __attribute__((visibility("default")))

/* ===================================== Limits ================================================ */

#define FP_AGENT_MAX_CLIENTS 16
/* Python requests queued (or running) per client; more are answered -32005. */
#define FP_AGENT_MAX_QUEUE 256
/* Worker threads alive at once, including those of gone clients still waiting for the GIL to
 * clean up: without a cap, clients that come and go while the GIL is stuck would pile them up. */
#define FP_AGENT_MAX_WORKERS 64
/* Workers whose client left while they wait for the GIL (or run) are kept until they get it:
 * a thread cannot be taken back from PyGILState_Ensure. Past this many, clients that come and
 * go while the GIL is stuck get no new worker ("busy"), so each costs no thread. */
#define FP_AGENT_MAX_ORPHANS 4
/* Once this much output waits for a client that does not read, its input is no longer read. */
#define FP_AGENT_OUT_HIGH (4u << 20)
/* Bytes taken from one client per poll round, so that one busy client cannot starve others. */
#define FP_AGENT_READ_CHUNK (64u * 1024u)
/* The I/O thread never runs Python code; workers do, so they get a Python-sized stack. */
#define FP_AGENT_IO_STACK (256u * 1024u)
#define FP_AGENT_WORKER_STACK (8u << 20)
/* How long shutdown tries to deliver what is still buffered before closing connections. */
#define FP_AGENT_FLUSH_MS 1000

/* ===================================== Instance & clients ==================================== */

/* fp_agent_lock guards every field marked "locked" below, the instance list and the
 * fds an instance records (so that a fork child closes exactly the agent's fds). It is never
 * held across a call into Python or a blocking call. */
extern pthread_mutex_t fp_agent_lock;

typedef enum fp_agent_job_kind {
    FP_AGENT_JOB_CALL = 1,   /* a Python request: hand body to dispatch.handle */
    FP_AGENT_JOB_DETACH = 2, /* client_gone, then answer {} and close */
    FP_AGENT_JOB_GONE = 3,   /* the connection is closed: client_gone, nothing to answer */
} fp_agent_job_kind;

typedef struct fp_agent_job {
    struct fp_agent_job *next;
    fp_agent_job_kind kind;
    char *body; /* CALL: the request text, owned */
    size_t len;
    cJSON *id;    /* the request id (owned copy; NULL for notifications) */
    int deferred; /* the agent.deferred notification (fp_agent_client_defer) */
} fp_agent_job;

typedef struct fp_agent_reply {
    struct fp_agent_reply *next;
    char *text; /* a whole JSON-RPC response, owned */
    size_t len;
    int close; /* close the connection once this is written (detach) */
    /* An event pushed by emit (events.c): may be dropped when the client does not read. */
    int notification;
} fp_agent_reply;

typedef enum fp_agent_worker_state {
    FP_AGENT_WORKER_NONE = 0,
    FP_AGENT_WORKER_RUNNING = 1,
    FP_AGENT_WORKER_DONE = 2,
} fp_agent_worker_state;

struct fp_agent;

typedef struct fp_agent_client {
    /* --- fixed once accepted --- */
    struct fp_agent *agent;
    int64_t id; /* unique in the process, across restarts: the Python side keys state by it */

    /* --- I/O thread only --- */
    fp_frame_reader reader;
    char *out; /* framed bytes not yet sent */
    size_t out_off, out_len, out_cap;
    int reading;            /* 0 after detach or shutdown: further input is ignored */
    int close_when_flushed; /* the last reply (detach) is in out */
    int dead;               /* to be dropped at the end of this poll round */

    /* --- locked --- */
    int fd; /* -1 once closed; only the I/O thread writes it (under the lock) and uses it */
    int refs;
    int connected; /* 0 once the I/O thread let the connection go: replies are discarded */
    fp_agent_worker_state worker;
    int cleanup_queued; /* a DETACH or GONE job is queued: no more jobs */
    int in_call;        /* the worker is inside dispatch.handle (changes only under the GIL) */
    int orphaned;       /* the connection went while the worker was alive (counted in orphans) */
    int interrupted;    /* an interrupt of that call was sent (the client left mid-request) */
    unsigned long worker_thread; /* the worker's pthread_t */
    fp_agent_job *jobs_head, *jobs_tail;
    int pending;         /* CALL jobs queued or running */
    int deferred_queued; /* the job that runs the package's deferred work is queued, not begun */
    fp_agent_reply *replies_head, *replies_tail;
    pthread_cond_t cv; /* the worker waits here for jobs */
    int notes_queued;  /* notifications in the reply list (events.c) */
    size_t notes_bytes;
    int64_t notes_dropped; /* notifications dropped: the client did not keep up */

    /* --- atomic --- */
    _Atomic int64_t gil_wait_since; /* monotonic ns when the worker began waiting; 0 if not */
    /* Unsent output above FP_AGENT_OUT_HIGH (set by the I/O thread): emit drops events. */
    atomic_int out_full;
} fp_agent_client;

typedef enum fp_agent_state {
    FP_AGENT_STARTING = 0, /* waiting for Python, making the socket */
    FP_AGENT_LISTENING = 1,
    FP_AGENT_STOPPING = 2, /* socket gone; waiting for workers to clean up */
} fp_agent_state;

typedef struct fp_agent {
    uint64_t gen; /* which start this is; owns the loaded Python package while current */
    int64_t started_ns;

    /* --- locked --- */
    struct fp_agent *next_instance; /* the list of every live instance */
    fp_agent_state state;
    int listen_fd, wake_fd; /* -1 when closed */
    int workers_alive;
    int orphans; /* workers of clients that left (FP_AGENT_MAX_ORPHANS) */
    pthread_cond_t workers_done;

    /* --- I/O thread only (clients and nclients are changed under the lock, so that a fork
     * child finds every connection fd; sock_path is set before the state is LISTENING) --- */
    char sock_path[108];
    fp_agent_client *clients[FP_AGENT_MAX_CLIENTS];
    int nclients;
    char *rbuf;                  /* FP_AGENT_READ_CHUNK bytes */
    int64_t accept_paused_until; /* out of fds: stop accepting for a moment */
} fp_agent;

/* ===================================== agent.c: lifecycle ==================================== */

int64_t fp_agent_now_ns(void);
/* Starts a thread with every signal blocked (the target's signals must never land on our
 * threads). Returns 0 or an errno value. */
int fp_agent_spawn(pthread_t *thread, size_t stack, int detached, void *(*fn)(void *), void *arg);
/* Records why the agent is not running, for fp_agent_last_error(). */
void fp_agent_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Lock held: the instance is stopping and no longer the current one (fp_agent_start() makes a
 * new one from now on). */
void fp_agent_retire(fp_agent *a);

/* ===================================== server.c: socket and I/O thread ======================= */

/* Makes /tmp/fp-UID and listens on its agent-NS-PID.sock. Returns 0, or -1 (error recorded). */
int fp_agent_server_open(fp_agent *a);
/* The poll loop; returns once a client asked for shutdown (every connection is then closed). */
void fp_agent_server_run(fp_agent *a);
/* Stops listening, removes the socket file and retires the instance. */
void fp_agent_server_close(fp_agent *a);
/* What the poll loop does with n bytes read from c: framing, then each whole message (the
 * methods without the GIL answered, the others queued). Replies go to c's output, sent as the
 * socket allows. Returns 1 when a client asked for shutdown. The fuzz target drives it directly. */
int fp_agent_server_feed(fp_agent *a, fp_agent_client *c, const char *data, size_t n);

/* ===================================== clients.c: records, queues, workers =================== */

/* A record for an accepted connection; the I/O thread holds the first reference. */
fp_agent_client *fp_agent_client_new(fp_agent *a, int fd);
/* The connection was accepted (lock held): records its fd and gives the client its id. */
void fp_agent_client_accepted(fp_agent_client *c, int fd);
void fp_agent_client_unref(fp_agent_client *c); /* lock not held */
/* Queues a Python request (body ownership passes to the queue, also on failure); starts the
 * worker at the first one. Returns 0, or an error code with *why (static) for the reply. */
int fp_agent_client_submit(fp_agent_client *c, char *body, size_t len, const cJSON *id,
                           const char **why);
/* Lock held. Queues, behind the client's requests, the notification that makes its worker run
 * the work the package deferred for it (events.defer), unless one is queued and not begun.
 * Returns 1 when the work will run, 0 when the client has no worker running. */
int fp_agent_client_defer(fp_agent_client *c);
/* Queues the detach behind the client's requests. Returns 1 when queued (the worker answers),
 * 0 when the client has no worker (the caller answers at once). */
int fp_agent_client_detach(fp_agent_client *c, const cJSON *id);
/* The connection is being closed: queued requests are dropped, the worker (if any) cleans up
 * and ends. Closes c->fd under the lock. */
void fp_agent_client_disconnect(fp_agent_client *c);
/* The replies the worker produced, oldest first; the caller owns the list. */
fp_agent_reply *fp_agent_client_take_replies(fp_agent_client *c);
void fp_agent_reply_free(fp_agent_reply *r);
/* For status: how long the worker has been waiting for the GIL and the requests not answered. */
void fp_agent_client_stats(fp_agent_client *c, int64_t *gil_wait_ms, int *pending);

/* ===================================== pyapi.c: the Python C API ============================= */

/* Looks up the C API into fp_py (pyapi.h). Returns 0 when every function the agent needs to run
 * is there, -1 otherwise; fp_py_usable tells about the optional parts. */
int fp_agent_py_resolve(void);
/* Py_IsInitialized(); 0 when the API is not resolved. */
int fp_agent_py_initialized(void);
/* Once initialized: checks the interpreter is not finalizing and notes its version.
 * Returns 0, or -1 (error recorded). */
int fp_agent_py_ready_to_serve(void);
/* Initialized and not finalizing: only then may a thread of ours ask for the GIL. */
int fp_agent_py_usable(void);
/* The Python version ("3.12.1", from Py_GetVersion()), needs no GIL; "" when unknown. */
const char *fp_agent_py_version(void);
/* The package is imported (status.python_ready). */
int fp_agent_py_ready(void);
/* Finds <dir of libfpagent.so>/python/fp_agent; once, before the first import. */
void fp_agent_py_locate(void);

int fp_agent_py_gil_ensure(void);
void fp_agent_py_gil_release(int state);

/* The following need the GIL. */
/* dispatch.handle(client, body): 0 with *reply (malloc'd, NULL for no reply), or -1 with *err
 * (malloc'd text for a -32603 error). Imports the package first if needed, owned by gen. */
int fp_agent_py_handle(uint64_t gen, int64_t client, const char *body, size_t len, char **reply,
                       char **err);
/* Interrupts the Python code running on thread (a pthread_t, CPython's thread ident) with
 * KeyboardInterrupt. */
void fp_agent_py_interrupt(unsigned long thread);
/* dispatch.client_gone(client), when the package is loaded. */
void fp_agent_py_client_gone(int64_t client);
/* dispatch.shutdown() and the references dropped, if instance gen owns the package. */
void fp_agent_py_unload(uint64_t gen);
/* Whether a fresh start would have to unload the package on behalf of gen (no GIL needed). */
int fp_agent_py_owned_by(uint64_t gen);

/* ===================================== trace.c: the trace recorder =========================== */

/* Gives the package (a module object) its recorder: sets package._native_trace to a dict of
 * functions (start, stop, cancel, tree, check, strays, active). Needs the GIL. Returns 0, or
 * -1 (nothing set, no exception left) when this Python lacks a function the recorder needs. */
int fp_agent_trace_export(void *package);

/* ===================================== events.c: notifications from any thread ============== */

/* Sets package._native_emit to emit(client_id, text) -> bool. Needs the GIL. Returns 0, or -1
 * (nothing set, no exception left) when this Python lacks a function it needs. */
int fp_agent_events_export(void *package);
/* A connection opened / is being closed (lock held): whether emit may reach the client. */
void fp_agent_events_connected(fp_agent_client *c);
void fp_agent_events_disconnected(fp_agent_client *c);
/* In a fork child: no client is reachable (lock held or single-threaded). */
void fp_agent_events_forget_all(void);

/* ===================================== monitor.c: sys.monitoring callbacks in C ============= */

/* Sets package._native_monitor (configure, on_start, on_return, on_unwind). Needs the GIL.
 * Returns 0, or -1 (nothing set, no exception left) on Pythons before 3.12. */
int fp_agent_monitor_export(void *package);

/* ===================================== counter.c: monitor's calls counted in C ============== */

#define FP_COUNTS_BUCKETS 96 /* monitor.py's BUCKETS */
typedef struct fp_counts {
    unsigned long long calls, errors, total_ns, max_ns, min_ns;
    unsigned long long hist[FP_COUNTS_BUCKETS];
} fp_counts;

/* time.perf_counter_ns()'s clock. */
unsigned long long fp_counts_now_ns(void);
/* One call of cost_ns ended (raised: by an exception). */
void fp_counts_add(fp_counts *c, unsigned long long cost_ns, int raised);
/* (calls, errors, total_ns, max_ns, min_ns, [(bucket, n)]) of c, which starts again from zero;
 * NULL with an exception when out of memory. Needs the GIL. */
struct fp_pyobj *fp_counts_take(fp_counts *c);
/* Sets package._native_counter (the code-swap engine's counters: configure, new, free, take,
 * gate_of, done, end). Needs the GIL. 0, or -1 when this Python lacks a function it needs. */
int fp_agent_counter_export(void *package);

#endif
