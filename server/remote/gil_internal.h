/* Private interfaces of gilstat's collector (see fp_gil.h): where the probes go (gil_symbols.c),
 * the probes and their ring buffer (gil_bpf.c), and the per-thread accounting (gil_stats.c);
 * gil.c ties them together. */
#ifndef GIL_INTERNAL_H
#define GIL_INTERNAL_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "fp_error.h"

/* What a probe hit means. The values are stamped into each record by the BPF programs. */
typedef enum gil_kind {
    GIL_TAKE_IN = 0,  /* take_gil entered: the thread starts waiting */
    GIL_TAKE_OUT = 1, /* take_gil returned: the thread holds the GIL */
    GIL_DROP_IN = 2,  /* drop_gil entered: the hold ends */
    GIL_DROP_OUT = 3, /* drop_gil returned */
    GIL_NKINDS = 4,
} gil_kind;

/* ---------------------------------------------------------------------------------------------
 * gil_symbols.c: where take_gil and drop_gil are in the target's interpreter
 */

#define GIL_MAX_SITES 16
#define GIL_MAX_NOTES 4

typedef struct gil_site {
    gil_kind kind;
    uint64_t addr;   /* link-time address (st_value, or an inlined copy's entry pc) */
    uint64_t offset; /* the same instruction as a file offset: what the uprobe names */
    char what[96];   /* "take_gil.constprop.0", "drop_gil inlined at 0x266467" */
} gil_site;

typedef struct gil_target {
    int pid;
    char version[32];       /* "3.12.1" */
    char shown[PATH_MAX];   /* the probed file as the process maps it */
    char file[PATH_MAX];    /* the same file through /proc/PID/root (what the kernel opens) */
    char symbols[PATH_MAX]; /* where the symbols came from (the file or its debug file) */
    gil_site sites[GIL_MAX_SITES];
    int nsites;
    char notes[GIL_MAX_NOTES][256]; /* caveats worth telling the user */
    int nnotes;
} gil_target;

/* Fills t for pid. Fails with FP_E_NO_PROCESS, FP_E_NOT_PYTHON, FP_E_PERMISSION, or
 * FP_E_UNSUPPORTED when the functions cannot be probed exactly (no symbols, inlined). */
int fp_gil_locate(int pid, gil_target *t, fp_error *err);

/* ---------------------------------------------------------------------------------------------
 * gil_bpf.c: the uprobes, their BPF programs and the ring buffer they write to
 */

/* One probe hit, as the BPF program writes it into the ring. */
typedef struct gil_record {
    uint64_t time_ns; /* CLOCK_MONOTONIC */
    uint32_t tid;     /* the kernel's thread id (as seen from the initial pid namespace) */
    uint32_t kind;    /* gil_kind */
} gil_record;

typedef struct gil_probes {
    int ring_fd, lost_fd;
    int prog_fd[GIL_NKINDS];
    int event_fd[GIL_MAX_SITES]; /* one perf uprobe event per probe (before Linux 6.6) */
    int nevents;
    int link_fd[2]; /* or two uprobe_multi links: returns, entries */
    int nlinks;
    bool multi;
    void *consumer; /* mmap'd consumer page (read-write) */
    void *producer; /* mmap'd producer page + the data pages, mapped twice */
    size_t page, size;
} gil_probes;

/* Opens one uprobe per site on t->file, each running a BPF program that appends a
 * gil_record to the ring. p is zeroed first; on failure everything opened is closed. */
int fp_gil_probes_open(gil_probes *p, const gil_target *t, fp_error *err);
typedef void (*gil_record_fn)(const gil_record *r, void *ud);
/* Hands every complete record in the ring to fn, oldest first; returns how many. */
long fp_gil_probes_drain(gil_probes *p, gil_record_fn fn, void *ud);
/* Records the BPF programs could not write because the ring was full, since the start. */
uint64_t fp_gil_probes_lost(const gil_probes *p);
/* Closes every fd: the kernel removes the probes with the last one. Safe on a zeroed p. */
void fp_gil_probes_close(gil_probes *p);

/* ---------------------------------------------------------------------------------------------
 * gil_stats.c: per-thread accounting over report windows
 */

typedef enum gil_state {
    GIL_UNKNOWN = 0, /* no event seen yet, or events were lost */
    GIL_IDLE,        /* between drop_gil's return and the next take_gil */
    GIL_WAITING,     /* inside take_gil */
    GIL_HOLDING,     /* between take_gil's return and drop_gil */
    GIL_DROPPING,    /* inside drop_gil */
} gil_state;

/* Sums over one window; times in ns. A wait or hold counts in the window where it ends. */
typedef struct gil_counts {
    uint64_t takecnt, take_all, take_max;
    uint64_t holdcnt, hold_all, hold_max; /* holds whose start was seen */
    uint64_t held_in;                     /* hold time inside this window (holds clipped) */
    uint64_t dropcnt;                     /* drop_gil entries */
    uint64_t droptimed, drop_all;         /* drop_gil calls whose return was seen */
    uint64_t unmatched;                   /* events that did not fit the thread's state */
} gil_counts;

typedef struct gil_thread {
    int tid;
    char name[32];   /* /proc/PID/task/TID/comm */
    char pyname[64]; /* threading's name (fp_gil_stats_name), "" when unknown */
    gil_state state;
    uint64_t since;     /* when state began */
    bool since_unknown; /* holding since before gilstat on: since is only a lower bound */
    bool over_seen;     /* the current wait or hold was seen past its threshold */
    bool ongoing_sent;  /* ... and reported while still going on */
    cJSON *stack;       /* stack taken while the current wait or hold was over its threshold */
    uint64_t stack_at;  /* when it was taken */
    gil_counts win;     /* this window */
    bool seen;          /* had an event in this window */
    bool gone;          /* the thread has exited */
} gil_thread;

/* A wait or hold longer than its threshold, ended (or still going, end == 0). */
typedef struct gil_span {
    gil_thread *thread;
    gil_kind kind; /* GIL_TAKE_OUT: a wait; GIL_DROP_IN: a hold */
    uint64_t start, end;
} gil_span;
typedef void (*gil_span_fn)(const gil_span *s, void *ud);

typedef struct gil_stats {
    int pid;
    gil_thread *threads;
    int nthreads, cap;
    uint64_t take_thr_ns, hold_thr_ns; /* 0: no threshold */
    uint64_t window_start;
    uint64_t valid_from; /* records older than this are ignored (set by init to its now) */
    int seq;
    gil_span_fn on_span;
    void *span_ud;
} gil_stats;

void fp_gil_stats_init(gil_stats *s, int pid, double take_ms, double hold_ms, uint64_t now);
void fp_gil_stats_free(gil_stats *s);
/* Applies one record; calls on_span for a wait or hold over its threshold that it ends. */
void fp_gil_stats_record(gil_stats *s, const gil_record *r);
/* After lost events nobody's state can be trusted: every thread restarts from unknown. */
void fp_gil_stats_forget(gil_stats *s);
/* The thread holding the GIL when gilstat started (read from a stack snapshot): its hold has
 * no seen start, so it is shown and reported as lasting at least since `at`, never timed.
 * Only for a thread with no event yet (events say more than the snapshot). */
void fp_gil_stats_seed_holder(gil_stats *s, int tid, uint64_t at);
/* The report model of the window [window_start, now), then a fresh window from now
 * (caller frees the model). lost: records lost in this window. */
cJSON *fp_gil_stats_report(gil_stats *s, uint64_t now, uint64_t lost);
/* Names thread tid as the program does (threading's name), when gilstat knows the thread. */
void fp_gil_stats_name(gil_stats *s, int tid, const char *name);
/* The name to show for a thread: threading's, else the kernel's. */
const char *fp_gil_thread_name(const gil_thread *t);

/* ---------------------------------------------------------------------------------------------
 * gil_stack.c: a thread's Python stack for threshold reports, read from outside
 */

typedef struct gil_stack_reader gil_stack_reader;
gil_stack_reader *fp_gil_stack_reader_new(int pid);
void fp_gil_stack_reader_free(gil_stack_reader *sr);
/* Thread tid's frames now (the stack model's FRAME array, outermost first; caller frees), or
 * NULL with why filled. The process is not stopped: the frames may be torn. */
cJSON *fp_gil_stack_read(gil_stack_reader *sr, int tid, char *why, size_t size);
/* The kernel id of the thread holding the GIL now, 0 when none or unknown. */
int fp_gil_stack_holder(gil_stack_reader *sr);
/* Names the threads of s as threading does (read from outside, the process not stopped). */
void fp_gil_stack_names(gil_stack_reader *sr, gil_stats *s);

/* CLOCK_MONOTONIC in ns: the clock the BPF programs stamp records with. */
uint64_t fp_gil_now_ns(void);

#endif
