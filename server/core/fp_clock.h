/* The one monotonic clock of the client side: deadlines, timeouts and durations are all
 * measured on CLOCK_MONOTONIC, which never jumps with the wall clock. */
#ifndef FP_CLOCK_H
#define FP_CLOCK_H

#include <stdint.h>

/* Milliseconds and nanoseconds on CLOCK_MONOTONIC (an arbitrary origin: compare, subtract). */
double fp_clock_ms(void);
uint64_t fp_clock_ns(void);
/* Sleeps ms milliseconds, resuming after signals; returns early only if ms <= 0. */
void fp_clock_sleep_ms(double ms);

#endif
