/* --debug tracing shared by the core and the front ends: one line per step on stderr,
 * stamped with the milliseconds elapsed since fp_log_start, so slow steps stand out. */
#ifndef FP_LOG_H
#define FP_LOG_H

/* Marks time zero (the first fp_log_debug call does it when nobody did). */
void fp_log_start(void);
/* Milliseconds since time zero. */
double fp_log_elapsed_ms(void);
/* Writes "fp[debug] +12.3 ms: MESSAGE" to stderr. Callers decide whether debugging is on. */
void fp_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
