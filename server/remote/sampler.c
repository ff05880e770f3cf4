/* The sampler behind perf: a thread of ours reads every thread's stack of the target once in
 * every period of the rate, at a random instant inside it (absolute deadlines with
 * clock_nanosleep, so the rate does not drift with the time each read takes), counts torn
 * reads as lost, and aggregates the rest into the run's profile and the current window.
 * Random instants, because work paced at the sampling rate (a server under a steady load of
 * N requests a second, a loop on a timer) would otherwise be seen at the same phase every
 * time: always, or never. */
#include "fp_sampler.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Longest single sleep: a stop request is seen within this, whatever the rate. */
#define SAMPLER_MAX_NAP_NS (50 * 1000000LL)
/* The sampling thread's nice value, when the system allows raising it. */
#define SAMPLER_NICE (-10)
/* How far behind its schedule the sampler may be and still catch up. */
#define SAMPLER_MAX_CATCH_UP_NS (100 * 1000000LL)
/* Reads that keep failing for this long, for a reason that is not a torn read, end the run
 * (the interpreter is finalizing, or memory is unreadable): nothing more will come. */
#define SAMPLER_GIVE_UP_NS (3 * 1000000000LL)

struct fp_sampler {
    fp_remote *r;
    fp_sampler_opts o;
    long long period_ns;
    pthread_t thread;
    atomic_bool stop;
    atomic_bool finished;
    fp_error finish_err; /* written by the thread before finished is set */

    fp_profile *run; /* the sampling thread's alone until it is joined */
    long long start_ns, end_ns;
    uint64_t ticks, lost, resyncs;
    long long read_ns_total, read_ns_max;
    atomic_uint_fast64_t samples; /* thread samples added to the run, readable from any thread */

    uint64_t rng; /* the sampling thread's: where in each period the next read falls */

    pthread_mutex_t lock; /* guards the window */
    fp_profile *window;
    long long window_start_ns;
    uint64_t window_ticks, window_lost;
};

static long long sampler_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* splitmix64: a uniform double in [0, 1); a sampler's own, so no lock and no global state. */
static double sampler_uniform(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

static void sampler_sleep_until(long long deadline_ns)
{
    struct timespec ts = {deadline_ns / 1000000000LL, deadline_ns % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

uint64_t fp_sampler_samples(fp_sampler *s)
{
    return atomic_load(&s->samples);
}

bool fp_sampler_thread_idle(const fp_thread *t)
{
    return t->state != 'R' && !t->holds_gil;
}

static void sampler_fill_meta(fp_profile *p, const fp_sampler *s, uint64_t ticks, uint64_t lost,
                              long long start_ns, long long end_ns)
{
    fp_profile_meta *m = fp_profile_meta_of(p);
    m->pid = fp_remote_pid(s->r);
    snprintf(m->python, sizeof m->python, "%s", fp_remote_version(s->r));
    m->rate_hz = s->o.rate_hz;
    m->duration_s = end_ns > start_ns ? (double)(end_ns - start_ns) / 1e9 : 0.0;
    m->achieved_hz = m->duration_s > 0 ? (double)ticks / m->duration_s : 0.0;
    m->ticks = ticks;
    m->lost = lost;
    m->native = s->o.native;
    m->gil_only = s->o.gil_only;
    m->idle = s->o.idle;
}

/* ===================================================================== one tick */

static bool sampler_wanted(const fp_sampler *s, const fp_thread *t, bool *idle)
{
    *idle = fp_sampler_thread_idle(t);
    if (t->nframes <= 0) return false;
    if (s->o.gil_only) return t->holds_gil;
    return s->o.idle || !*idle;
}

static void sampler_record(fp_sampler *s, const fp_remote_snapshot *snap)
{
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < snap->nthreads; i++) {
        const fp_thread *t = &snap->threads[i];
        bool idle;
        if (t->torn) {
            /* Its frames changed under the read: a cut stack would put time in the wrong
             * place, so the sample is dropped and counted. */
            s->lost++;
            s->window_lost++;
            continue;
        }
        if (!sampler_wanted(s, t, &idle)) continue;
        fp_profile_add(s->run, t, t->frames, t->nframes, idle);
        atomic_fetch_add(&s->samples, 1);
        if (s->window) fp_profile_add(s->window, t, t->frames, t->nframes, idle);
    }
    s->window_ticks++;
    pthread_mutex_unlock(&s->lock);
}

static void sampler_count_lost(fp_sampler *s)
{
    s->lost++;
    pthread_mutex_lock(&s->lock);
    s->window_ticks++;
    s->window_lost++;
    pthread_mutex_unlock(&s->lock);
}

static bool sampler_fatal(const fp_error *e, int pid)
{
    if (e->code == FP_E_NO_PROCESS || e->code == FP_E_EXITING || e->code == FP_E_PERMISSION)
        return true;
    /* A process that has just exited can fail in any way: check it is still there. */
    return kill(pid, 0) != 0 && errno == ESRCH;
}

static void sampler_finish(fp_sampler *s, const fp_error *e)
{
    s->finish_err = *e;
    if (e->code != FP_E_NO_PROCESS && e->code != FP_E_EXITING && kill(fp_remote_pid(s->r), 0) &&
        errno == ESRCH)
        fp_error_set(&s->finish_err, FP_E_NO_PROCESS, NULL, "process %d exited",
                     fp_remote_pid(s->r));
    atomic_store(&s->finished, true);
}

static bool sampler_any_torn(const fp_remote_snapshot *snap)
{
    for (int i = 0; i < snap->nthreads; i++)
        if (snap->threads[i].torn) return true;
    return false;
}

/* Takes one tick; false when sampling must end. */
static bool sampler_tick(fp_sampler *s, long long *failing_since)
{
    unsigned flags = s->o.native ? FP_SNAP_NATIVE : FP_SNAP_NO_STOP;
    fp_remote_snapshot snap;
    fp_error e;
    fp_error_clear(&e);
    s->ticks++;
    long long t0 = sampler_now_ns();
    int r = fp_remote_snapshot_take(s->r, flags, &snap, &e);
    if (r == 0 && sampler_any_torn(&snap)) {
        /* A stack that changes fast (deep recursion, many short calls) tears often; one
         * read again, tens of microseconds later, usually holds, and keeps the profile from
         * losing exactly the busiest moments. */
        fp_remote_snapshot_free(&snap);
        r = fp_remote_snapshot_take(s->r, flags, &snap, &e);
    }
    long long took = sampler_now_ns() - t0;
    s->read_ns_total += took;
    if (took > s->read_ns_max) s->read_ns_max = took;
    if (r != 0) {
        sampler_count_lost(s);
        long long now = sampler_now_ns();
        if (!*failing_since) *failing_since = now;
        if (sampler_fatal(&e, fp_remote_pid(s->r)) || now - *failing_since > SAMPLER_GIVE_UP_NS) {
            sampler_finish(s, &e);
            return false;
        }
        return true;
    }
    *failing_since = 0;
    sampler_record(s, &snap);
    fp_remote_snapshot_free(&snap);
    return true;
}

static void *sampler_main(void *arg)
{
    fp_sampler *s = arg;
    /* Signals (Ctrl-C) are for the thread that waits on the user. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    /* On a busy machine a woken thread may wait long for a core, and the schedule slips.
     * Where allowed (root, CAP_SYS_NICE), this thread alone gets a higher priority: it runs
     * for tens of microseconds per instant, so it cannot starve anyone. Else as it is. */
    if (setpriority(PRIO_PROCESS, (id_t)gettid(), SAMPLER_NICE) != 0) errno = 0;

    /* One read in each period [slot, slot + period), at a uniformly random instant: the mean
     * rate is the asked one exactly, and no phase of the target's own rhythm is favoured. */
    long long slot = s->start_ns, failing_since = 0;
    while (!atomic_load(&s->stop)) {
        long long at = slot + (long long)(sampler_uniform(&s->rng) * (double)s->period_ns);
        long long now = sampler_now_ns();
        while (!atomic_load(&s->stop) && now < at) {
            sampler_sleep_until(at - now > SAMPLER_MAX_NAP_NS ? now + SAMPLER_MAX_NAP_NS : at);
            now = sampler_now_ns();
        }
        if (atomic_load(&s->stop) || !sampler_tick(s, &failing_since)) break;
        slot += s->period_ns;
        now = sampler_now_ns();
        /* A short delay (a read that took long, the thread preempted for a few ms) is made
         * up by taking the missed instants at once, so the rate holds; after a long stall
         * (the machine suspended, the target stopped by a debugger) the schedule restarts
         * from now instead of sampling the same state in a burst. */
        if (now - slot > SAMPLER_MAX_CATCH_UP_NS) {
            slot = now;
            s->resyncs++;
        }
    }
    s->end_ns = sampler_now_ns();
    return NULL;
}

/* ===================================================================== public */

fp_sampler *fp_sampler_start(fp_remote *r, const fp_sampler_opts *o, fp_error *err)
{
    fp_sampler_opts opts = *o;
    if (opts.rate_hz == 0) opts.rate_hz = FP_SAMPLER_DEFAULT_HZ;
    if (!(opts.rate_hz > 0) || opts.rate_hz > FP_SAMPLER_MAX_HZ) {
        fp_error_set(err, FP_E_USAGE, NULL, "sampling rate %g Hz is out of range (up to %g)",
                     opts.rate_hz, FP_SAMPLER_MAX_HZ);
        return NULL;
    }
    fp_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    s->r = r;
    s->o = opts;
    s->period_ns = (long long)(1e9 / opts.rate_hz);
    /* Seeded apart for every run: two fp sampling at once do not share their instants. */
    s->rng = (uint64_t)sampler_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s;
    s->run = fp_profile_new();
    s->window = fp_profile_new();
    pthread_mutex_init(&s->lock, NULL);
    s->start_ns = s->window_start_ns = sampler_now_ns();
    if (!s->run || !s->window || pthread_create(&s->thread, NULL, sampler_main, s) != 0) {
        fp_profile_free(s->run);
        fp_profile_free(s->window);
        pthread_mutex_destroy(&s->lock);
        free(s);
        fp_error_set(err, FP_E_INTERNAL, NULL, "cannot start the sampling thread");
        return NULL;
    }
    return s;
}

fp_profile *fp_sampler_take_window(fp_sampler *s)
{
    fp_profile *fresh = fp_profile_new();
    long long now = sampler_now_ns();
    pthread_mutex_lock(&s->lock);
    fp_profile *w = s->window;
    if (w) sampler_fill_meta(w, s, s->window_ticks, s->window_lost, s->window_start_ns, now);
    /* Out of memory: the samples keep going to the run, the window starts again later. */
    s->window = fresh;
    s->window_start_ns = now;
    s->window_ticks = s->window_lost = 0;
    pthread_mutex_unlock(&s->lock);
    return w;
}

bool fp_sampler_finished(fp_sampler *s, fp_error *err)
{
    if (!atomic_load(&s->finished)) return false;
    if (err) *err = s->finish_err;
    return true;
}

fp_profile *fp_sampler_stop(fp_sampler *s, fp_error *err)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    if (atomic_load(&s->finished) && err) *err = s->finish_err;
    fp_profile *run = s->run;
    sampler_fill_meta(run, s, s->ticks, s->lost, s->start_ns, s->end_ns);
    /* The sampling thread's own counters, whole-run only (windows are read while it runs). */
    fp_profile_meta *m = fp_profile_meta_of(run);
    m->read_ms_avg = s->ticks ? (double)s->read_ns_total / (double)s->ticks / 1e6 : 0.0;
    m->read_ms_max = (double)s->read_ns_max / 1e6;
    m->resyncs = s->resyncs;
    fp_profile_free(s->window);
    pthread_mutex_destroy(&s->lock);
    free(s);
    return run;
}
