/* --debug tracing: elapsed-time stamped lines on stderr (see fp_log.h). */
#include "fp_log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

static struct timespec log_t0;
static bool log_started;

void fp_log_start(void)
{
    clock_gettime(CLOCK_MONOTONIC, &log_t0);
    log_started = true;
}

double fp_log_elapsed_ms(void)
{
    if (!log_started) fp_log_start();
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - log_t0.tv_sec) * 1e3 +
           (double)(now.tv_nsec - log_t0.tv_nsec) / 1e6;
}

void fp_log_debug(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line keeps lines whole when another thread logs too. */
    fprintf(stderr, "fp[debug] +%.1f ms: %s\n", fp_log_elapsed_ms(), line);
}
