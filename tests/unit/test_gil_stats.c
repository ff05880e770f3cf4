/* Unit tests of gilstat's accounting (server/remote/gil_stats.c): known event sequences give
 * exact counts and times; events that do not fit a thread's state are counted, never timed;
 * holds are clipped to the window for hold_pct; thresholds produce spans; a seeded holder is
 * shown but never timed. The tids used are not threads of this process (names stay empty). */
#include <stdint.h>

#include "check.h"
#include "gil_internal.h"

#define MS 1000000ull
#define TID 999999001

static gil_span spans[16];
static int nspans;

static void on_span(const gil_span *s, void *ud)
{
    (void)ud;
    if (nspans < 16) spans[nspans++] = *s;
}

static void ev(gil_stats *s, int tid, gil_kind kind, uint64_t t)
{
    gil_record r = {.time_ns = t, .tid = (uint32_t)tid, .kind = (uint32_t)kind};
    fp_gil_stats_record(s, &r);
}

static const cJSON *row(const cJSON *report, int tid)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(report, "threads"))
    {
        if ((int)cJSON_GetObjectItemCaseSensitive(t, "tid")->valuedouble == tid) return t;
    }
    return NULL;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v ? v->valuedouble : -1;
}

/* take 0-2 ms waiting, hold 2-10, drop 10-11; twice. */
static void test_cycles(void)
{
    gil_stats s;
    fp_gil_stats_init(&s, 1, 0, 0, 0);
    for (int k = 0; k < 2; k++) {
        uint64_t b = (uint64_t)k * 20 * MS;
        ev(&s, TID, GIL_TAKE_IN, b);
        ev(&s, TID, GIL_TAKE_OUT, b + 2 * MS);
        ev(&s, TID, GIL_DROP_IN, b + 10 * MS);
        ev(&s, TID, GIL_DROP_OUT, b + 11 * MS);
    }
    cJSON *rep = fp_gil_stats_report(&s, 40 * MS, 0);
    const cJSON *r = row(rep, TID);
    CHECK(r != NULL);
    CHECK_EQ_INT(num(r, "takecnt"), 2);
    CHECK_EQ_INT(num(r, "take_all"), 4 * MS);
    CHECK_EQ_INT(num(r, "takeavg"), 2 * MS);
    CHECK_EQ_INT(num(r, "holdcnt"), 2);
    CHECK_EQ_INT(num(r, "hold_all"), 16 * MS);
    CHECK_EQ_INT(num(r, "hold_max"), 8 * MS);
    CHECK_EQ_INT(num(r, "dropcnt"), 2);
    CHECK_EQ_INT(num(r, "drop_all"), 2 * MS);
    CHECK_EQ_INT(num(r, "dropavg"), 1 * MS);
    CHECK_EQ_INT(num(r, "unmatched"), 0);
    CHECK_EQ_INT(num(r, "hold_pct"), 40); /* 16 of 40 ms */
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(r, "state")->valuestring, "idle");
    cJSON_Delete(rep);
    /* The next window starts empty; an idle thread is not listed. */
    rep = fp_gil_stats_report(&s, 50 * MS, 0);
    CHECK(row(rep, TID) == NULL);
    cJSON_Delete(rep);
    fp_gil_stats_free(&s);
}

/* A hold that crosses the window boundary counts where it ends, but hold_pct is clipped. */
static void test_clipping(void)
{
    gil_stats s;
    fp_gil_stats_init(&s, 1, 0, 0, 0);
    ev(&s, TID, GIL_TAKE_IN, 1 * MS);
    ev(&s, TID, GIL_TAKE_OUT, 2 * MS);
    cJSON *rep = fp_gil_stats_report(&s, 10 * MS, 0); /* holding since 2 ms */
    const cJSON *r = row(rep, TID);
    CHECK_EQ_INT(num(r, "holdcnt"), 0);
    CHECK_EQ_INT(num(r, "hold_pct"), 80); /* 8 of 10 ms so far */
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(r, "state")->valuestring, "holding");
    CHECK_EQ_INT(num(r, "state_ms"), 8);
    cJSON_Delete(rep);
    ev(&s, TID, GIL_DROP_IN, 15 * MS);
    ev(&s, TID, GIL_DROP_OUT, 15 * MS + 1000);
    rep = fp_gil_stats_report(&s, 20 * MS, 0);
    r = row(rep, TID);
    CHECK_EQ_INT(num(r, "hold_all"), 13 * MS); /* the whole hold, where it ended */
    CHECK_EQ_INT(num(r, "hold_pct"), 50);      /* 5 of these 10 ms */
    cJSON_Delete(rep);
    fp_gil_stats_free(&s);
}

/* Events that do not fit: counted as unmatched, never turned into times. */
static void test_unmatched(void)
{
    gil_stats s;
    fp_gil_stats_init(&s, 1, 0, 0, 0);
    ev(&s, TID, GIL_DROP_IN, 1 * MS);  /* a hold from before the start: a release, untimed */
    ev(&s, TID, GIL_DROP_OUT, 2 * MS); /* timed: its entry was seen */
    ev(&s, TID, GIL_TAKE_IN, 3 * MS);
    ev(&s, TID, GIL_TAKE_IN, 4 * MS); /* twice in a row */
    ev(&s, TID, GIL_TAKE_OUT, 5 * MS);
    ev(&s, TID, GIL_DROP_OUT, 6 * MS); /* no entry */
    cJSON *rep = fp_gil_stats_report(&s, 10 * MS, 0);
    const cJSON *r = row(rep, TID);
    CHECK_EQ_INT(num(r, "dropcnt"), 1);
    CHECK_EQ_INT(num(r, "holdcnt"), 0);
    CHECK_EQ_INT(num(r, "drop_timed"), 1);
    CHECK_EQ_INT(num(r, "takecnt"), 1);
    CHECK_EQ_INT(num(r, "take_all"), 1 * MS); /* from the second entry */
    CHECK_EQ_INT(num(r, "unmatched"), 2);
    cJSON_Delete(rep);
    /* After lost events every state is unknown: a return is then not a mismatch. */
    fp_gil_stats_forget(&s);
    ev(&s, TID, GIL_TAKE_OUT, 11 * MS);
    rep = fp_gil_stats_report(&s, 20 * MS, 3);
    r = row(rep, TID);
    CHECK_EQ_INT(num(r, "unmatched"), 0);
    CHECK_EQ_INT(num(r, "takecnt"), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(rep, "complete")));
    CHECK_EQ_INT(num(rep, "lost"), 3);
    cJSON_Delete(rep);
    fp_gil_stats_free(&s);
}

/* Thresholds: a wait and a hold over theirs end as spans; shorter ones do not. An inlined
 * drop_gil (no return) leaves the release untimed. */
static void test_thresholds(void)
{
    gil_stats s;
    fp_gil_stats_init(&s, 1, 5, 20, 0);
    s.on_span = on_span;
    nspans = 0;
    ev(&s, TID, GIL_TAKE_IN, 0);
    ev(&s, TID, GIL_TAKE_OUT, 6 * MS); /* waited 6 > 5 */
    ev(&s, TID, GIL_DROP_IN, 16 * MS); /* held 10 < 20 */
    ev(&s, TID, GIL_TAKE_IN, 17 * MS); /* no drop return: inlined copy */
    ev(&s, TID, GIL_TAKE_OUT, 18 * MS);
    ev(&s, TID, GIL_DROP_IN, 48 * MS); /* held 30 > 20 */
    CHECK_EQ_INT(nspans, 2);
    CHECK_EQ_INT(spans[0].kind, GIL_TAKE_OUT);
    CHECK_EQ_INT(spans[0].end - spans[0].start, 6 * MS);
    CHECK_EQ_INT(spans[1].kind, GIL_DROP_IN);
    CHECK_EQ_INT(spans[1].end - spans[1].start, 30 * MS);
    cJSON *rep = fp_gil_stats_report(&s, 50 * MS, 0);
    const cJSON *r = row(rep, TID);
    CHECK_EQ_INT(num(r, "dropcnt"), 2);
    CHECK_EQ_INT(num(r, "drop_timed"), 0);
    CHECK_EQ_INT(num(r, "dropavg"), 0);
    CHECK_EQ_INT(num(r, "unmatched"), 0);
    cJSON_Delete(rep);
    fp_gil_stats_free(&s);
}

/* The holder seeded from a snapshot: shown as holding at least since then, never timed. */
static void test_seeded_holder(void)
{
    gil_stats s;
    fp_gil_stats_init(&s, 1, 0, 0, 0);
    fp_gil_stats_seed_holder(&s, TID, 0);
    cJSON *rep = fp_gil_stats_report(&s, 10 * MS, 0);
    const cJSON *r = row(rep, TID);
    CHECK(r != NULL);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "state_at_least")));
    CHECK_EQ_INT(num(r, "hold_pct"), 100);
    cJSON_Delete(rep);
    ev(&s, TID, GIL_DROP_IN, 12 * MS);
    ev(&s, TID, GIL_DROP_OUT, 13 * MS);
    ev(&s, TID, GIL_TAKE_IN, 14 * MS);
    ev(&s, TID, GIL_TAKE_OUT, 15 * MS);
    rep = fp_gil_stats_report(&s, 20 * MS, 0);
    r = row(rep, TID);
    CHECK_EQ_INT(num(r, "holdcnt"), 0); /* its start was never seen */
    CHECK_EQ_INT(num(r, "dropcnt"), 1);
    CHECK_EQ_INT(num(r, "takecnt"), 1);
    CHECK_EQ_INT(num(r, "unmatched"), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "state_at_least")));
    cJSON_Delete(rep);
    /* A thread with events is not seeded over. */
    fp_gil_stats_seed_holder(&s, TID, 16 * MS);
    ev(&s, TID, GIL_DROP_IN, 17 * MS);
    rep = fp_gil_stats_report(&s, 30 * MS, 0);
    CHECK_EQ_INT(num(row(rep, TID), "hold_all"), 2 * MS);
    cJSON_Delete(rep);
    fp_gil_stats_free(&s);
}

int main(void)
{
    test_cycles();
    test_clipping();
    test_unmatched();
    test_thresholds();
    test_seeded_holder();
    return check_summary();
}
