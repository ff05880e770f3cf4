/* --debug tracing: elapsed-time stamped lines on stderr (see fp_log.h). */
#include "fp_log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "fp_clock.h"

static double log_t0;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init(void)
{
    log_t0 = fp_clock_ms();
}

void fp_log_start(void)
{
    pthread_once(&log_once, log_init);
}

double fp_log_elapsed_ms(void)
{
    pthread_once(&log_once, log_init);
    return fp_clock_ms() - log_t0;
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
