/* gilstat's accounting: each thread walks idle -> waiting (in take_gil) -> holding -> dropping
 * (in drop_gil) -> idle, and every step's duration is summed into the current report window.
 * Only spans whose both ends were seen are timed; anything that does not fit the walk is
 * counted as unmatched rather than guessed. */
#include "gil_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "fp_clock.h"

uint64_t fp_gil_now_ns(void)
{
    return fp_clock_ns();
}

void fp_gil_stats_init(gil_stats *s, int pid, double take_ms, double hold_ms, uint64_t now)
{
    memset(s, 0, sizeof *s);
    s->pid = pid;
    s->take_thr_ns = take_ms > 0 ? (uint64_t)(take_ms * 1e6) : 0;
    s->hold_thr_ns = hold_ms > 0 ? (uint64_t)(hold_ms * 1e6) : 0;
    s->window_start = now;
    s->valid_from = now;
}

void fp_gil_stats_free(gil_stats *s)
{
    for (int i = 0; i < s->nthreads; i++)
        cJSON_Delete(s->threads[i].stack);
    free(s->threads);
    s->threads = NULL;
    s->nthreads = s->cap = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Threads
 */

static void thread_read_name(int pid, gil_thread *t)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/comm", pid, t->tid);
    FILE *f = fopen(path, "re");
    if (!f) {
        t->gone = true;
        return;
    }
    char buf[sizeof t->name];
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(t->name, sizeof t->name, "%s", buf);
    }
    fclose(f);
}

static gil_thread *thread_get(gil_stats *s, int tid)
{
    for (int i = 0; i < s->nthreads; i++)
        if (s->threads[i].tid == tid) return &s->threads[i];
    if (s->nthreads == s->cap) {
        int cap = s->cap ? s->cap * 2 : 16;
        gil_thread *nt = realloc(s->threads, (size_t)cap * sizeof *nt);
        if (!nt) return NULL;
        s->threads = nt;
        s->cap = cap;
    }
    gil_thread *t = &s->threads[s->nthreads++];
    memset(t, 0, sizeof *t);
    t->tid = tid;
    thread_read_name(s->pid, t);
    return t;
}

void fp_gil_stats_name(gil_stats *s, int tid, const char *name)
{
    for (int i = 0; i < s->nthreads; i++)
        if (s->threads[i].tid == tid)
            snprintf(s->threads[i].pyname, sizeof s->threads[i].pyname, "%s", name);
}

const char *fp_gil_thread_name(const gil_thread *t)
{
    return t->pyname[0] ? t->pyname : t->name;
}

static void thread_enter(gil_thread *t, gil_state state, uint64_t at)
{
    t->state = state;
    t->since = at;
    t->since_unknown = false;
    t->over_seen = false;
    t->ongoing_sent = false;
    cJSON_Delete(t->stack);
    t->stack = NULL;
    t->stack_at = 0;
}

static void span_end(gil_stats *s, gil_thread *t, gil_kind kind, uint64_t end)
{
    if (!s->on_span) return;
    gil_span sp = {.thread = t, .kind = kind, .start = t->since, .end = end};
    s->on_span(&sp, s->span_ud);
}

/* ---------------------------------------------------------------------------------------------
 * Events
 */

/* From the state's start to at. The kernel's clock is read on whichever CPU the thread runs,
 * and two reads on two CPUs can be a few ns out of order: never a negative time. */
static uint64_t span_ns(const gil_thread *t, uint64_t at)
{
    return at > t->since ? at - t->since : 0;
}

/* The part of the hold that began at t->since and lasts until at inside this window. */
static uint64_t held_in_window(const gil_stats *s, const gil_thread *t, uint64_t at)
{
    uint64_t from = t->since > s->window_start ? t->since : s->window_start;
    return at > from ? at - from : 0;
}

static void on_take_in(gil_thread *t, uint64_t at)
{
    /* A seeded hold may have ended before the snapshot that saw it: not a mismatch. */
    if ((t->state == GIL_HOLDING && !t->since_unknown) || t->state == GIL_WAITING)
        t->win.unmatched++;
    thread_enter(t, GIL_WAITING, at);
}

static void on_take_out(gil_stats *s, gil_thread *t, uint64_t at)
{
    if (t->state == GIL_WAITING) {
        uint64_t wait = span_ns(t, at);
        t->win.takecnt++;
        t->win.take_all += wait;
        if (wait > t->win.take_max) t->win.take_max = wait;
        if (s->take_thr_ns && wait > s->take_thr_ns) span_end(s, t, GIL_TAKE_OUT, at);
    } else if (t->state != GIL_UNKNOWN && !t->since_unknown) {
        t->win.unmatched++;
    }
    thread_enter(t, GIL_HOLDING, at);
}

static void on_drop_in(gil_stats *s, gil_thread *t, uint64_t at)
{
    if (t->state == GIL_HOLDING && !t->since_unknown) {
        uint64_t hold = span_ns(t, at);
        t->win.holdcnt++;
        t->win.hold_all += hold;
        t->win.held_in += held_in_window(s, t, at);
        if (hold > t->win.hold_max) t->win.hold_max = hold;
        if (s->hold_thr_ns && hold > s->hold_thr_ns) span_end(s, t, GIL_DROP_IN, at);
    } else if (t->state == GIL_IDLE || t->state == GIL_DROPPING) {
        t->win.unmatched++;
    }
    /* UNKNOWN: the hold began before gilstat; WAITING: take_gil drops the GIL it just got
     * when the interpreter is finalizing. Either way the release itself happened. */
    t->win.dropcnt++;
    thread_enter(t, GIL_DROPPING, at);
}

static void on_drop_out(gil_thread *t, uint64_t at)
{
    if (t->state == GIL_DROPPING) {
        t->win.droptimed++;
        t->win.drop_all += span_ns(t, at);
    } else if (t->state != GIL_UNKNOWN) {
        t->win.unmatched++;
    }
    thread_enter(t, GIL_IDLE, at);
}

void fp_gil_stats_record(gil_stats *s, const gil_record *r)
{
    if (r->time_ns < s->valid_from) return; /* before every probe was in place */
    gil_thread *t = thread_get(s, (int)r->tid);
    if (!t) return;
    t->seen = true;
    switch (r->kind) {
    case GIL_TAKE_IN:
        on_take_in(t, r->time_ns);
        break;
    case GIL_TAKE_OUT:
        on_take_out(s, t, r->time_ns);
        break;
    case GIL_DROP_IN:
        on_drop_in(s, t, r->time_ns);
        break;
    case GIL_DROP_OUT:
        on_drop_out(t, r->time_ns);
        break;
    default:
        break;
    }
}

void fp_gil_stats_seed_holder(gil_stats *s, int tid, uint64_t at)
{
    for (int i = 0; i < s->nthreads; i++)
        if (s->threads[i].tid == tid) return;
    gil_thread *t = thread_get(s, tid);
    if (!t) return;
    thread_enter(t, GIL_HOLDING, at);
    t->since_unknown = true;
}

void fp_gil_stats_forget(gil_stats *s)
{
    for (int i = 0; i < s->nthreads; i++)
        thread_enter(&s->threads[i], GIL_UNKNOWN, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Reports
 */

static const char *state_name(gil_state st)
{
    switch (st) {
    case GIL_IDLE:
        return "idle";
    case GIL_WAITING:
        return "waiting";
    case GIL_HOLDING:
        return "holding";
    case GIL_DROPPING:
        return "dropping";
    default:
        return "unknown";
    }
}

static double avg(uint64_t sum, uint64_t n)
{
    return n ? (double)sum / (double)n : 0;
}

static cJSON *thread_model(const gil_thread *t, uint64_t now, uint64_t window)
{
    const gil_counts *c = &t->win;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "tid", t->tid);
    cJSON_AddStringToObject(o, "name", fp_gil_thread_name(t));
    cJSON_AddStringToObject(o, "comm", t->name);
    cJSON_AddNumberToObject(o, "takecnt", (double)c->takecnt);
    cJSON_AddNumberToObject(o, "take_all", (double)c->take_all);
    cJSON_AddNumberToObject(o, "takeavg", avg(c->take_all, c->takecnt));
    cJSON_AddNumberToObject(o, "take_max", (double)c->take_max);
    cJSON_AddNumberToObject(o, "holdcnt", (double)c->holdcnt);
    cJSON_AddNumberToObject(o, "hold_all", (double)c->hold_all);
    cJSON_AddNumberToObject(o, "holdavg", avg(c->hold_all, c->holdcnt));
    cJSON_AddNumberToObject(o, "hold_max", (double)c->hold_max);
    cJSON_AddNumberToObject(o, "hold_pct",
                            window ? 100.0 * (double)c->held_in / (double)window : 0);
    cJSON_AddNumberToObject(o, "dropcnt", (double)c->dropcnt);
    cJSON_AddNumberToObject(o, "drop_all", (double)c->drop_all);
    cJSON_AddNumberToObject(o, "dropavg", avg(c->drop_all, c->droptimed));
    cJSON_AddNumberToObject(o, "drop_timed", (double)c->droptimed);
    cJSON_AddNumberToObject(o, "unmatched", (double)c->unmatched);
    cJSON_AddStringToObject(o, "state", state_name(t->state));
    bool open = t->state == GIL_WAITING || t->state == GIL_HOLDING;
    cJSON_AddNumberToObject(o, "state_ms", open && now > t->since ? (now - t->since) / 1e6 : 0);
    cJSON_AddBoolToObject(o, "state_at_least", open && t->since_unknown);
    return o;
}

static void totals_add(gil_counts *sum, const gil_counts *c)
{
    sum->takecnt += c->takecnt;
    sum->take_all += c->take_all;
    sum->holdcnt += c->holdcnt;
    sum->hold_all += c->hold_all;
    sum->held_in += c->held_in;
    sum->dropcnt += c->dropcnt;
    sum->droptimed += c->droptimed;
    sum->drop_all += c->drop_all;
    sum->unmatched += c->unmatched;
}

static cJSON *totals_model(const gil_counts *c, uint64_t window)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "takecnt", (double)c->takecnt);
    cJSON_AddNumberToObject(o, "take_all", (double)c->take_all);
    cJSON_AddNumberToObject(o, "hold_all", (double)c->hold_all);
    cJSON_AddNumberToObject(o, "hold_pct",
                            window ? 100.0 * (double)c->held_in / (double)window : 0);
    cJSON_AddNumberToObject(o, "dropcnt", (double)c->dropcnt);
    cJSON_AddNumberToObject(o, "drop_all", (double)c->drop_all);
    cJSON_AddNumberToObject(o, "unmatched", (double)c->unmatched);
    return o;
}

static int by_tid(const void *a, const void *b)
{
    const gil_thread *x = a, *y = b;
    return (x->tid > y->tid) - (x->tid < y->tid);
}

/* Threads that exited (or that /proc does not show) and were quiet for a whole window leave
 * the table. */
static void threads_prune(gil_stats *s)
{
    int k = 0;
    for (int i = 0; i < s->nthreads; i++) {
        if (s->threads[i].gone) {
            cJSON_Delete(s->threads[i].stack);
            continue;
        }
        s->threads[k++] = s->threads[i];
    }
    s->nthreads = k;
}

cJSON *fp_gil_stats_report(gil_stats *s, uint64_t now, uint64_t lost)
{
    uint64_t window = now > s->window_start ? now - s->window_start : 0;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "seq", ++s->seq);
    cJSON_AddNumberToObject(o, "pid", s->pid);
    cJSON_AddNumberToObject(o, "window_ms", window / 1e6);
    cJSON_AddNumberToObject(o, "lost", (double)lost);
    cJSON_AddBoolToObject(o, "complete", lost == 0);
    cJSON *arr = cJSON_AddArrayToObject(o, "threads");
    qsort(s->threads, (size_t)s->nthreads, sizeof *s->threads, by_tid);
    gil_counts sum = {0};
    for (int i = 0; i < s->nthreads; i++) {
        gil_thread *t = &s->threads[i];
        thread_read_name(s->pid, t);
        bool open = t->state == GIL_WAITING || t->state == GIL_HOLDING;
        /* The part of a hold still going on that falls in this window. */
        if (t->state == GIL_HOLDING && now > t->since) t->win.held_in += held_in_window(s, t, now);
        if (t->seen || open) {
            cJSON_AddItemToArray(arr, thread_model(t, now, window));
            totals_add(&sum, &t->win);
        }
        /* Forgotten only once quiet: a thread /proc cannot show (another pid namespace's
         * ids) keeps its state while it has events. */
        t->gone = t->gone && !t->seen && !open;
        memset(&t->win, 0, sizeof t->win);
        t->seen = false;
    }
    cJSON_AddItemToObject(o, "total", totals_model(&sum, window));
    threads_prune(s);
    s->window_start = now;
    return o;
}
