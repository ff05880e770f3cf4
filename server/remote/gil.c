/* gilstat's collector (fp_gil.h): locates take_gil/drop_gil, installs the probes, drains their
 * ring buffer on a short schedule, and turns the accounting into models: a report per window,
 * a threshold report per slow wait or hold (with the thread's stack, taken while the span was
 * still going on when it lasted long enough for fp to see it), and start/stop records. */
#include "fp_gil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "gil_internal.h"
#include "fp_notes.h"

#define GIL_DEFAULT_INTERVAL_MS 5000
#define GIL_POLL_MAX_NS 50000000ull /* drain at least every 50 ms: the ring never fills */
#define GIL_POLL_MIN_NS 1000000ull
#define GIL_ONGOING_NS 1000000000ull /* a span this long is reported before it ends */
#define GIL_STACKS_PER_S 20          /* stacks are cheap from outside, but not free */

struct fp_gil {
    fp_gil_opts opts;
    gil_target target;
    gil_probes probes;
    gil_stats stats;
    int pidfd; /* readable when the process exits; -1 where the kernel has no pidfd_open */
    bool exited;
    uint64_t started, next_report, interval_ns, poll_ns;
    uint64_t lost_total, lost_window, records;
    uint64_t stack_second;
    int stacks_in_second;
    gil_stack_reader *reader; /* when opts.stack is NULL */
};

static void gil_drain(fp_gil *g);

static void gil_emit(fp_gil *g, const char *method, cJSON *model)
{
    if (model && g->opts.emit) g->opts.emit(method, model, g->opts.emit_ud);
    cJSON_Delete(model);
}

/* ---------------------------------------------------------------------------------------------
 * Stacks
 */

/* The thread's stack now, or NULL with why. Rate-limited: a storm of slow spans must not turn
 * fp into a busy reader of the process's memory. */
static cJSON *gil_stack(fp_gil *g, int tid, char *why, size_t size)
{
    uint64_t second = fp_gil_now_ns() / 1000000000ull;
    if (second != g->stack_second) {
        g->stack_second = second;
        g->stacks_in_second = 0;
    }
    if (++g->stacks_in_second > GIL_STACKS_PER_S) {
        snprintf(why, size, "stack skipped: more than %d slow spans this second", GIL_STACKS_PER_S);
        return NULL;
    }
    why[0] = '\0';
    cJSON *st = NULL;
    if (g->opts.stack) {
        st = g->opts.stack(g->target.pid, tid, g->opts.stack_ud, why, size);
    } else {
        if (!g->reader) g->reader = fp_gil_stack_reader_new(g->target.pid);
        if (g->reader) st = fp_gil_stack_read(g->reader, tid, why, size);
    }
    if (!st && !why[0]) snprintf(why, size, "stack unavailable");
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Threshold reports
 */

static cJSON *threshold_model(fp_gil *g, const gil_span *sp, uint64_t now)
{
    gil_thread *t = sp->thread;
    bool hold = sp->kind == GIL_DROP_IN;
    uint64_t end = sp->end ? sp->end : now;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "pid", g->target.pid);
    cJSON_AddNumberToObject(o, "tid", t->tid);
    cJSON_AddStringToObject(o, "name", fp_gil_thread_name(t));
    cJSON_AddStringToObject(o, "kind", hold ? "hold" : "take");
    cJSON_AddNumberToObject(o, "ms", (double)(end - sp->start) / 1e6);
    cJSON_AddNumberToObject(o, "threshold_ms",
                            (double)(hold ? g->stats.hold_thr_ns : g->stats.take_thr_ns) / 1e6);
    cJSON_AddBoolToObject(o, "ended", sp->end != 0);
    /* Held since before gilstat on: ms is a lower bound. */
    cJSON_AddBoolToObject(o, "at_least", t->since_unknown);
    cJSON_AddNumberToObject(o, "at_s", (double)(sp->start - g->started) / 1e9);
    return o;
}

/* Adds the stack: the one taken while the span was still going on, else one taken now. */
static void threshold_stack(fp_gil *g, cJSON *o, gil_thread *t, const gil_span *sp, uint64_t now)
{
    char why[160] = "";
    cJSON *st = t->stack;
    t->stack = NULL;
    uint64_t at = t->stack_at;
    if (!st) {
        st = gil_stack(g, t->tid, why, sizeof why);
        at = now;
    }
    if (st) {
        bool during = !sp->end || at <= sp->end;
        cJSON_AddItemToObject(o, "stack", st);
        cJSON_AddStringToObject(o, "stack_when", during ? "during" : "after");
        if (during)
            snprintf(why, sizeof why, "taken %.1f ms into the %s", (double)(at - sp->start) / 1e6,
                     sp->kind == GIL_DROP_IN ? "hold" : "wait");
        else
            snprintf(why, sizeof why, "taken %.1f ms after it ended: the thread may have moved on",
                     (double)(at - sp->end) / 1e6);
    } else {
        cJSON_AddNullToObject(o, "stack");
        cJSON_AddNullToObject(o, "stack_when");
    }
    cJSON_AddStringToObject(o, "stack_note", why);
}

static void gil_on_span(const gil_span *sp, void *ud)
{
    fp_gil *g = ud;
    uint64_t now = fp_gil_now_ns();
    cJSON *o = threshold_model(g, sp, now);
    if (!o) return;
    threshold_stack(g, o, sp->thread, sp, now);
    gil_emit(g, FP_NOTE_GILSTAT_THRESHOLD, o);
}

/* Spans still going on: past the threshold, take the stack while the thread is still in it
 * (that is the stack worth seeing); past GIL_ONGOING_NS, report it now (a GIL held forever
 * never ends). */
static void gil_check_open(fp_gil *g, uint64_t now)
{
    gil_stats *s = &g->stats;
    for (int i = 0; i < s->nthreads; i++) {
        gil_thread *t = &s->threads[i];
        uint64_t thr = t->state == GIL_HOLDING   ? s->hold_thr_ns
                       : t->state == GIL_WAITING ? s->take_thr_ns
                                                 : 0;
        if (!thr || now < t->since || now - t->since <= thr) continue;
        if (!t->over_seen) {
            char why[160];
            t->over_seen = true;
            t->stack = gil_stack(g, t->tid, why, sizeof why);
            t->stack_at = now;
        }
        if (!t->ongoing_sent && now - t->since >= GIL_ONGOING_NS) {
            t->ongoing_sent = true;
            gil_span sp = {.thread = t,
                           .kind = t->state == GIL_HOLDING ? GIL_DROP_IN : GIL_TAKE_OUT,
                           .start = t->since};
            cJSON *o = threshold_model(g, &sp, now);
            if (!o) continue;
            /* Keep the stack for the report at the end of the span: duplicate it. */
            cJSON *keep = t->stack ? cJSON_Duplicate(t->stack, 1) : NULL;
            threshold_stack(g, o, t, &sp, now);
            t->stack = keep;
            gil_emit(g, FP_NOTE_GILSTAT_THRESHOLD, o);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Start
 */

static const char *const kind_names[GIL_NKINDS] = {"take_gil entry", "take_gil return",
                                                   "drop_gil entry", "drop_gil return"};

static cJSON *started_model(const fp_gil *g)
{
    const gil_target *t = &g->target;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "pid", t->pid);
    cJSON_AddStringToObject(o, "python", t->version);
    cJSON_AddStringToObject(o, "file", t->shown);
    cJSON_AddStringToObject(o, "symbols", t->symbols);
    cJSON_AddStringToObject(
        o, "attach", g->probes.multi ? "bpf uprobe_multi links" : "perf uprobe events + bpf");
    cJSON *probes = cJSON_AddArrayToObject(o, "probes");
    for (int i = 0; i < t->nsites; i++) {
        cJSON *p = cJSON_CreateObject();
        char off[32];
        snprintf(off, sizeof off, "0x%llx", (unsigned long long)t->sites[i].offset);
        cJSON_AddStringToObject(p, "function", t->sites[i].what);
        cJSON_AddStringToObject(p, "probe", kind_names[t->sites[i].kind]);
        cJSON_AddStringToObject(p, "offset", off);
        cJSON_AddItemToArray(probes, p);
    }
    cJSON_AddNumberToObject(o, "interval_s", (double)g->interval_ns / 1e9);
    cJSON_AddNumberToObject(o, "take_ms", (double)g->stats.take_thr_ns / 1e6);
    cJSON_AddNumberToObject(o, "hold_ms", (double)g->stats.hold_thr_ns / 1e6);
    cJSON *notes = cJSON_AddArrayToObject(o, "notes");
    for (int i = 0; i < t->nnotes; i++)
        cJSON_AddItemToArray(notes, cJSON_CreateString(t->notes[i]));
    return o;
}

static uint64_t poll_period(const gil_stats *s)
{
    uint64_t thr = 0;
    if (s->take_thr_ns) thr = s->take_thr_ns;
    if (s->hold_thr_ns && (!thr || s->hold_thr_ns < thr)) thr = s->hold_thr_ns;
    /* Half the threshold: a span over it is caught while it still goes on, when it can be. */
    uint64_t p = thr ? thr / 2 : GIL_POLL_MAX_NS;
    if (p > GIL_POLL_MAX_NS) p = GIL_POLL_MAX_NS;
    if (p < GIL_POLL_MIN_NS) p = GIL_POLL_MIN_NS;
    return p;
}

/* A hold that began before the probes has no start to see; the GIL's holder is read once so
 * that a GIL held forever still shows, as held at least since gilstat started. */
static void gil_seed_holder(fp_gil *g)
{
    gil_drain(g);
    if (!g->reader) g->reader = fp_gil_stack_reader_new(g->target.pid);
    int tid = g->reader ? fp_gil_stack_holder(g->reader) : 0;
    if (tid) fp_gil_stats_seed_holder(&g->stats, tid, g->started);
}

fp_gil *fp_gil_open(int pid, const fp_gil_opts *opts, fp_error *err)
{
    if (opts->take_ms < 0 || opts->hold_ms < 0 || opts->interval_ms < 0) {
        fp_error_set(err, FP_E_USAGE, NULL, "gilstat thresholds and interval must be positive");
        return NULL;
    }
    fp_gil *g = calloc(1, sizeof *g);
    if (!g) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    g->opts = *opts;
    g->pidfd = -1;
    if (fp_gil_locate(pid, &g->target, err) != 0 ||
        fp_gil_probes_open(&g->probes, &g->target, err) != 0) {
        free(g);
        return NULL;
    }
    /* The probes go in one after another (returns, then entries): events from before the last
     * one was in are partial and ignored, so the start is now. */
    g->started = fp_gil_now_ns();
#ifdef SYS_pidfd_open
    g->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    fp_gil_stats_init(&g->stats, pid, opts->take_ms, opts->hold_ms, g->started);
    g->stats.on_span = gil_on_span;
    g->stats.span_ud = g;
    g->interval_ns =
        (uint64_t)(opts->interval_ms ? opts->interval_ms : GIL_DEFAULT_INTERVAL_MS) * 1000000ull;
    g->next_report = g->started + g->interval_ns;
    g->poll_ns = poll_period(&g->stats);
    gil_seed_holder(g);
    gil_emit(g, FP_NOTE_GILSTAT_STARTED, started_model(g));
    return g;
}

/* ---------------------------------------------------------------------------------------------
 * Running
 */

static void gil_on_record(const gil_record *r, void *ud)
{
    fp_gil *g = ud;
    g->records++;
    fp_gil_stats_record(&g->stats, r);
}

static void gil_drain(fp_gil *g)
{
    fp_gil_probes_drain(&g->probes, gil_on_record, g);
    uint64_t lost = fp_gil_probes_lost(&g->probes);
    if (lost > g->lost_total) {
        /* Whose events were lost is unknown: nobody's state can be trusted any more. */
        g->lost_window += lost - g->lost_total;
        g->lost_total = lost;
        fp_gil_stats_forget(&g->stats);
    }
}

static bool gil_process_gone(fp_gil *g, int wait_ms)
{
    if (g->pidfd < 0) {
        if (wait_ms > 0) poll(NULL, 0, wait_ms);
        return kill(g->target.pid, 0) != 0 && errno == ESRCH;
    }
    struct pollfd p = {.fd = g->pidfd, .events = POLLIN};
    return poll(&p, 1, wait_ms) > 0 && (p.revents & (POLLIN | POLLHUP));
}

static void gil_report(fp_gil *g, uint64_t now)
{
    /* Threads are named as the program names them (threading, as stack shows them): the
     * kernel's name is the process's for every thread a Python program starts. Read once a
     * window, from outside, without stopping the process. */
    if (!g->reader) g->reader = fp_gil_stack_reader_new(g->target.pid);
    if (g->reader) fp_gil_stack_names(g->reader, &g->stats);
    gil_emit(g, FP_NOTE_GILSTAT_REPORT, fp_gil_stats_report(&g->stats, now, g->lost_window));
    g->lost_window = 0;
}

int fp_gil_step(fp_gil *g, int max_wait_ms)
{
    if (g->exited) return 0;
    uint64_t now = fp_gil_now_ns();
    uint64_t due = now + g->poll_ns < g->next_report ? now + g->poll_ns : g->next_report;
    int64_t wait_ms = due > now ? (int64_t)((due - now + 999999) / 1000000) : 0;
    if (wait_ms > max_wait_ms) wait_ms = max_wait_ms;
    if (wait_ms < 0) wait_ms = 0;
    g->exited = gil_process_gone(g, (int)wait_ms);
    gil_drain(g);
    now = fp_gil_now_ns();
    gil_check_open(g, now);
    if (now >= g->next_report) {
        gil_report(g, now);
        g->next_report += g->interval_ns;
        if (g->next_report <= now) g->next_report = now + g->interval_ns;
    }
    return g->exited ? 0 : 1;
}

int fp_gil_due_ms(const fp_gil *g)
{
    if (g->exited) return 0;
    uint64_t now = fp_gil_now_ns();
    uint64_t due = now + g->poll_ns < g->next_report ? now + g->poll_ns : g->next_report;
    return due > now ? (int)((due - now + 999999) / 1000000) : 0;
}

void fp_gil_close(fp_gil *g, const char *reason)
{
    if (!g) return;
    gil_drain(g);
    uint64_t now = fp_gil_now_ns();
    /* The last, partial window, unless the periodic report has just covered it. */
    if (now - g->stats.window_start >= 10000000ull || g->lost_window) gil_report(g, now);
    fp_gil_probes_close(&g->probes);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "pid", g->target.pid);
        cJSON_AddStringToObject(o, "reason", g->exited ? "the process exited" : reason);
        cJSON_AddNumberToObject(o, "duration_s", (double)(now - g->started) / 1e9);
        cJSON_AddNumberToObject(o, "events", (double)g->records);
        cJSON_AddNumberToObject(o, "lost", (double)g->lost_total);
        cJSON_AddBoolToObject(o, "probes_removed", true);
    }
    gil_emit(g, FP_NOTE_GILSTAT_STOPPED, o);
    fp_gil_stats_free(&g->stats);
    fp_gil_stack_reader_free(g->reader);
    if (g->pidfd >= 0) close(g->pidfd);
    free(g);
}
