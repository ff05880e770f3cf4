/* libfpagent's entry points and lifecycle: the constructor and fp_agent_start() (which only
 * create the I/O thread), the I/O thread's life from waiting for Python to the end of a
 * shutdown, and fork handling (a child never uses the parent's socket or connections). */
#include "agent.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

pthread_mutex_t fp_agent_lock = PTHREAD_MUTEX_INITIALIZER;

/* Locked: the running instance (NULL when stopped), and every instance not yet freed. */
static fp_agent *fp_agent_current;
static fp_agent *fp_agent_instances;
static uint64_t fp_agent_gen;

static pthread_once_t fp_agent_once = PTHREAD_ONCE_INIT;
static char fp_agent_error[256];
/* Why the last start gave up, "" while it starts or runs. Exported as data so that fp can read it
 * from outside (process_vm_readv at this symbol) and show the agent's own reason, without
 * stopping the target to call anything. */
FP_AGENT_EXPORT char fp_agent_startup_error[256];

/* Waiting for Py_IsInitialized() when preloaded: from 1 ms, doubling, up to this. */
#define FP_AGENT_WAIT_MAX_MS 1000

/* ===================================== Helpers =============================================== */

int64_t fp_agent_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int fp_agent_spawn(pthread_t *thread, size_t stack, int detached, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err) return err;
    pthread_attr_setstacksize(&attr, stack);
    if (detached) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* The new thread inherits this mask: no signal of the target's is ever delivered to it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(thread, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return err;
}

void fp_agent_set_error(const char *fmt, ...)
{
    char text[sizeof(fp_agent_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&fp_agent_lock);
    memcpy(fp_agent_error, text, sizeof(text));
    pthread_mutex_unlock(&fp_agent_lock);
}

/* Our threads run our code until they end, so the library must stay mapped even if whoever
 * loaded it calls dlclose(): take a reference that can never be dropped. */
static void fp_agent_pin(void)
{
    static atomic_int pinned;
    Dl_info info;
    if (atomic_exchange(&pinned, 1)) return;
    if (dladdr((void *)&fp_agent_pin, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

/* ===================================== Instances ============================================= */

static fp_agent *fp_agent_new(void)
{
    fp_agent *a = calloc(1, sizeof(*a));
    if (!a) return NULL;
    if (pthread_cond_init(&a->workers_done, NULL) != 0) {
        free(a);
        return NULL;
    }
    a->listen_fd = a->wake_fd = -1;
    a->started_ns = fp_agent_now_ns();
    return a;
}

/* Lock held. */
static void fp_agent_unlink(fp_agent *a)
{
    for (fp_agent **p = &fp_agent_instances; *p; p = &(*p)->next_instance) {
        if (*p == a) {
            *p = a->next_instance;
            break;
        }
    }
    if (fp_agent_current == a) fp_agent_current = NULL;
}

static void fp_agent_free(fp_agent *a)
{
    pthread_cond_destroy(&a->workers_done);
    free(a->rbuf);
    free(a);
}

/* Lock held. From here on fp_agent_start() makes a new instance. */
void fp_agent_retire(fp_agent *a)
{
    a->state = FP_AGENT_STOPPING;
    if (fp_agent_current == a) fp_agent_current = NULL;
}

/* Python code runs on a Python-sized stack, not on the I/O thread's small one. */
static void *fp_agent_unloader(void *arg)
{
    fp_agent *a = arg;
    pthread_setname_np(pthread_self(), "fp-agent-stop");
    if (!fp_agent_py_usable()) return NULL;
    int state = fp_agent_py_gil_ensure();
    fp_agent_py_unload(a->gen);
    fp_agent_py_gil_release(state);
    return NULL;
}

/* The end of an instance, on its I/O thread: a new instance may start at once; this one waits
 * for its workers' cleanups (client_gone, however long the GIL takes), unloads the package
 * unless a newer instance took it over, and frees itself. */
static void fp_agent_finish(fp_agent *a)
{
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_retire(a);
    while (a->workers_alive > 0)
        pthread_cond_wait(&a->workers_done, &fp_agent_lock);
    pthread_mutex_unlock(&fp_agent_lock);

    if (fp_agent_py_owned_by(a->gen)) {
        pthread_t t;
        if (fp_agent_spawn(&t, FP_AGENT_WORKER_STACK, 0, fp_agent_unloader, a) == 0)
            pthread_join(t, NULL);
    }

    pthread_mutex_lock(&fp_agent_lock);
    if (a->wake_fd >= 0) close(a->wake_fd);
    a->wake_fd = -1;
    fp_agent_unlink(a);
    pthread_mutex_unlock(&fp_agent_lock);
    fp_agent_free(a);
}

/* Preloaded, we start before the interpreter exists. Returns 0 once it is initialized. */
static int fp_agent_wait_python(void)
{
    if (fp_agent_py_resolve() != 0) return -1; /* not a Python process: nothing to do here */
    long wait_ms = 1;
    while (!fp_agent_py_initialized()) {
        struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (wait_ms < FP_AGENT_WAIT_MAX_MS) wait_ms *= 2;
    }
    return fp_agent_py_ready_to_serve();
}

static void *fp_agent_io_main(void *arg)
{
    fp_agent *a = arg;
    pthread_setname_np(pthread_self(), "fp-agent-io");
    fp_agent_pin();
    if (fp_agent_wait_python() == 0 && fp_agent_server_open(a) == 0) {
        pthread_mutex_lock(&fp_agent_lock);
        a->state = FP_AGENT_LISTENING;
        pthread_mutex_unlock(&fp_agent_lock);
        fp_agent_server_run(a); /* returns after a shutdown request */
    } else {
        pthread_mutex_lock(&fp_agent_lock);
        snprintf(fp_agent_startup_error, sizeof(fp_agent_startup_error), "%s",
                 fp_agent_error[0] ? fp_agent_error : "it gave up starting (no reason recorded)");
        pthread_mutex_unlock(&fp_agent_lock);
    }
    fp_agent_server_close(a);
    fp_agent_finish(a);
    return NULL;
}

/* ===================================== fork ================================================== */

/* The lock is taken around fork so that the child sees consistent records; nothing of ours
 * holds it for long or while waiting on anything. */
static void fp_agent_atfork_prepare(void)
{
    pthread_mutex_lock(&fp_agent_lock);
}

static void fp_agent_atfork_parent(void)
{
    pthread_mutex_unlock(&fp_agent_lock);
}

/* The child has none of our threads: its agent is simply not running. It closes its copies of
 * our fds (a parent's client would otherwise never see EOF when the parent lets it go) but
 * leaves the socket file, which is the parent's. Records are leaked, not freed: small, and
 * their condition variables may be in any state. fp_agent_start() starts afresh. */
static void fp_agent_atfork_child(void)
{
    for (fp_agent *a = fp_agent_instances; a; a = a->next_instance) {
        if (a->listen_fd >= 0) close(a->listen_fd);
        if (a->wake_fd >= 0) close(a->wake_fd);
        a->listen_fd = a->wake_fd = -1;
        for (int i = 0; i < a->nclients; i++) {
            if (a->clients[i]->fd >= 0) close(a->clients[i]->fd);
            a->clients[i]->fd = -1;
        }
    }
    fp_agent_instances = NULL;
    fp_agent_current = NULL;
    fp_agent_events_forget_all();
    pthread_mutex_init(&fp_agent_lock, NULL);
}

static void fp_agent_init_once(void)
{
    pthread_atfork(fp_agent_atfork_prepare, fp_agent_atfork_parent, fp_agent_atfork_child);
    fp_agent_py_locate();
}

/* ===================================== Entry points ========================================== */

FP_AGENT_EXPORT int fp_agent_start(void)
{
    pthread_once(&fp_agent_once, fp_agent_init_once);
    pthread_mutex_lock(&fp_agent_lock);
    if (fp_agent_current) {
        pthread_mutex_unlock(&fp_agent_lock);
        return 0;
    }
    fp_agent *a = fp_agent_new();
    if (!a) {
        pthread_mutex_unlock(&fp_agent_lock);
        return -1;
    }
    a->gen = ++fp_agent_gen;
    a->next_instance = fp_agent_instances;
    fp_agent_instances = a;
    fp_agent_current = a;
    fp_agent_error[0] = '\0';
    fp_agent_startup_error[0] = '\0';
    pthread_mutex_unlock(&fp_agent_lock);

    pthread_t t;
    int err = fp_agent_spawn(&t, FP_AGENT_IO_STACK, 1, fp_agent_io_main, a);
    if (err == 0) return 0;
    pthread_mutex_lock(&fp_agent_lock);
    fp_agent_unlink(a);
    pthread_mutex_unlock(&fp_agent_lock);
    fp_agent_free(a);
    fp_agent_set_error("cannot start the agent's thread: %s", strerror(err));
    return -1;
}

/* 1 while the agent listens on its socket; 0 while it starts, after a shutdown or when it
 * gave up (fp_agent_last_error says why). */
FP_AGENT_EXPORT int fp_agent_running(void)
{
    pthread_mutex_lock(&fp_agent_lock);
    int running = fp_agent_current && fp_agent_current->state == FP_AGENT_LISTENING;
    pthread_mutex_unlock(&fp_agent_lock);
    return running;
}

/* Why the agent is not running ("" when nothing went wrong); for the injector to read. */
FP_AGENT_EXPORT const char *fp_agent_last_error(void)
{
    return fp_agent_error;
}

/* Loaded by dlopen() on a thread the injector borrowed: only start the I/O thread, return. */
__attribute__((constructor)) static void fp_agent_constructor(void)
{
    fp_agent_start();
}

/* At exit() (after the interpreter is finalized) the socket file would outlive the process:
 * remove it, nothing else. Our threads are not stopped; exit_group ends them. (Not an atexit
 * handler: this runs with the library's other finalizers and touches no Python state.) */
__attribute__((destructor)) static void fp_agent_destructor(void)
{
    /* Held only for microseconds by our threads; still, exit must never wait on us for long:
     * after ~50 ms the file is left (clients treat a refused connect as no agent). */
    int tries = 0;
    while (pthread_mutex_trylock(&fp_agent_lock) != 0) {
        if (++tries > 50) return;
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    fp_agent *a = fp_agent_current;
    if (a && a->state == FP_AGENT_LISTENING && a->sock_path[0]) unlink(a->sock_path);
    pthread_mutex_unlock(&fp_agent_lock);
}
