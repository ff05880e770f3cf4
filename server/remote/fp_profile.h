/* A sampling profile: thread stacks aggregated with their counts, per-function and per-line
 * self/total samples, and the recorders that write it out (flame graph SVG, speedscope JSON,
 * collapsed stacks), one file per format behind one interface.
 * Ownership: fp_profile_new returns a profile freed with fp_profile_free; it copies every
 * string it is given, and everything it hands out is borrowed until it is freed. */
#ifndef FP_PROFILE_H
#define FP_PROFILE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fp_error.h"
#include "fp_remote.h"

/* A function as the profile knows it: frames with the same kind, function, file and
 * first line are one function, whatever line they were at. */
typedef struct fp_profile_frame {
    fp_frame_kind kind;
    const char *function;
    const char *file; /* Python: co_filename; native: the shared object */
    int first_line;   /* Python: co_firstlineno; native: 0 */
    uint64_t self;    /* samples where it is the innermost frame */
    uint64_t total;   /* samples where it is on the stack (once per sample) */
} fp_profile_frame;

typedef struct fp_profile_thread {
    int native_id;
    char name[32];
} fp_profile_thread;

typedef struct fp_profile_stack {
    int thread;        /* index into threads */
    const int *frames; /* indexes into frames, outermost (root) first */
    int nframes;
    uint64_t count; /* samples with exactly this stack in this thread */
    uint64_t idle;  /* ... of which the thread was idle (--idle) */
} fp_profile_stack;

typedef struct fp_profile_line {
    const char *file;
    int line;
    const char *function; /* the function the line belongs to */
    int first_line;       /* that function's first line */
    uint64_t self;        /* samples where it is the innermost Python line */
    uint64_t total;       /* samples where it is on the stack (once per sample) */
} fp_profile_line;

/* What was asked and achieved; set by whoever records (the sampler), read by the outputs. */
typedef struct fp_profile_meta {
    int pid;
    char python[32];    /* "3.12.1" */
    double rate_hz;     /* requested */
    double achieved_hz; /* ticks taken per second of the run */
    double duration_s;
    uint64_t ticks; /* sampling instants (each reads every thread once) */
    uint64_t lost;  /* thread samples lost: read while the thread changed its stack (torn),
                       plus ticks whose whole read failed */
    bool native, gil_only, idle;
    /* The whole run only (0 in windows): */
    double read_ms_avg, read_ms_max; /* how long reading every thread once took */
    uint64_t resyncs; /* times the sampler fell more than 100 ms behind and skipped ahead */
} fp_profile_meta;

typedef struct fp_profile fp_profile;

fp_profile *fp_profile_new(void);
void fp_profile_free(fp_profile *p);

/* Adds one sample of one thread: frames innermost first (as fp_remote gives them). Python
 * frames with line > 0 count for the line table. Returns 0, or -1 when out of memory. */
int fp_profile_add(fp_profile *p, const fp_thread *t, const fp_frame *frames, int nframes,
                   bool idle);

fp_profile_meta *fp_profile_meta_of(fp_profile *p);
const fp_profile_meta *fp_profile_meta_get(const fp_profile *p);
/* Thread samples added (the denominator of every percentage). */
uint64_t fp_profile_samples(const fp_profile *p);

int fp_profile_nframes(const fp_profile *p);
const fp_profile_frame *fp_profile_frame_at(const fp_profile *p, int i);
int fp_profile_nthreads(const fp_profile *p);
const fp_profile_thread *fp_profile_thread_at(const fp_profile *p, int i);
int fp_profile_nstacks(const fp_profile *p);
const fp_profile_stack *fp_profile_stack_at(const fp_profile *p, int i);
int fp_profile_nlines(const fp_profile *p);
const fp_profile_line *fp_profile_line_at(const fp_profile *p, int i);

/* "hot_loop (hot.py:12)", "clock_nanosleep (libc.so.6)": short, for boxes and summaries.
 * With full_path, the whole file path instead of its last component. */
void fp_profile_frame_label(const fp_profile_frame *f, bool full_path, char *buf, size_t size);

/* The summary model shared by fp --json, fp's renderer and fp-lsp: meta, the top functions
 * by self and by total samples (up to top each), and the hot lines (up to lines, by self
 * then total). Caller deletes it. */
cJSON *fp_profile_summary_model(const fp_profile *p, int top, int lines);

/* ===================================================================== recorders */

typedef struct fp_recorder {
    const char *format;       /* "svg", "speedscope", "collapsed" */
    const char *default_file; /* used when no -f is given */
    const char *description;
    /* Writes p to f; returns 0 or -1 with err (FP_E_IO). */
    int (*write)(const fp_profile *p, FILE *f, fp_error *err);
} fp_recorder;

extern const fp_recorder fp_flamegraph_recorder;
extern const fp_recorder fp_speedscope_recorder;
extern const fp_recorder fp_collapsed_recorder;

/* The recorder for format, or NULL. */
const fp_recorder *fp_recorder_find(const char *format);
/* Writes p to path with rec (the file is replaced only when the write succeeded). */
int fp_recorder_write_file(const fp_recorder *rec, const fp_profile *p, const char *path,
                           fp_error *err);

#endif
