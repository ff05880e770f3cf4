/* Sampling a CPython process from outside: every thread's stack at a given rate (once per
 * period, at a random instant inside it, so that work paced at the rate cannot hide), read
 * without stopping the target (or stopping it for native frames), aggregated into a
 * profile. A stack torn by the running thread (fp_thread.torn) is dropped and counted as
 * lost. The whole run comes back at the end; windows of it can be taken while it runs
 * (the editor's hot-line annotations).
 * Ownership: fp_sampler_start returns a sampler that fp_sampler_stop ends and frees; every
 * profile handed out (windows, the run) is the caller's to fp_profile_free. */
#ifndef FP_SAMPLER_H
#define FP_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "fp_error.h"
#include "fp_profile.h"
#include "fp_remote.h"

#define FP_SAMPLER_DEFAULT_HZ 100.0
#define FP_SAMPLER_MAX_HZ 10000.0

typedef struct fp_sampler_opts {
    double rate_hz; /* sampling instants per second; 0: FP_SAMPLER_DEFAULT_HZ */
    /* C frames too, merged with the Python ones. Unwinding needs the threads stopped, so
     * every sample stops the process (for a fraction of a millisecond): more overhead. */
    bool native;
    bool gil_only; /* only the thread that holds the GIL (none in an instant: no sample) */
    /* Also idle threads. A thread is idle when it is not running (its kernel state is not R:
     * asleep in a system call, waiting for a lock, for I/O, or for the GIL) and it does not
     * hold the GIL. By default idle threads are not sampled. */
    bool idle;
} fp_sampler_opts;

typedef struct fp_sampler fp_sampler;

/* Starts sampling r on a thread of its own; r must stay open, and unused by anyone else,
 * until fp_sampler_stop. NULL with err for bad options or when the thread cannot start. */
fp_sampler *fp_sampler_start(fp_remote *r, const fp_sampler_opts *o, fp_error *err);

/* The samples taken since the previous window (or the start), as a profile of their own
 * whose meta counts that window's ticks, lost samples and duration; its lines are the
 * editor's hot lines (fp_profile_line_at: file, line, self, total). Never NULL but when out
 * of memory. Safe to call from any one thread while sampling runs. */
fp_profile *fp_sampler_take_window(fp_sampler *s);

/* True once sampling has ended by itself: the process exited (err: FP_E_NO_PROCESS) or could
 * no longer be read (err says why). err may be NULL. */
bool fp_sampler_finished(fp_sampler *s, fp_error *err);

/* Stops sampling, frees the sampler and returns the profile of the whole run (meta filled:
 * ticks, lost, achieved rate, duration). *err is set when sampling ended by itself with an
 * error (the profile still holds what was taken before). */
fp_profile *fp_sampler_stop(fp_sampler *s, fp_error *err);

/* Thread samples taken so far (any thread may ask while sampling runs). */
uint64_t fp_sampler_samples(fp_sampler *s);

/* Whether a thread counts as idle (see fp_sampler_opts.idle). */
bool fp_sampler_thread_idle(const fp_thread *t);

#endif
