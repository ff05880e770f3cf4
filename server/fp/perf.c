/* The perf command in the terminal client: samples a process from outside (no agent is
 * injected), until -d SECONDS, --timeout, Ctrl-C or the process's exit, then writes the
 * profile in the chosen format and prints the summary (or its model with --json). */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fp_cli.h"
#include "fp_log.h"
#include "fp_profile.h"
#include "fp_remote.h"
#include "fp_sampler.h"

#define PERF_TOP 10
#define PERF_LINES 20
#define PERF_POLL_NS (20 * 1000000L)

typedef struct perf_args {
    int pid;
    fp_sampler_opts o;
    double duration_s; /* 0: until stopped */
    const fp_recorder *rec;
    const char *path;
} perf_args;

static const cJSON *perf_param(const fp_cmd_parsed *p, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(p->params, key);
}

static int perf_parse(const cli *c, const fp_cmd_parsed *p, perf_args *a, fp_error *e)
{
    memset(a, 0, sizeof *a);
    const cJSON *pid = perf_param(p, "pid");
    a->pid = cJSON_IsNumber(pid) ? pid->valueint : c->pid;
    if (a->pid <= 0)
        return fp_error_set(e, FP_E_USAGE, "usage: perf [PID] [-f FILE] [-r RATE] [-d SECONDS] ...",
                            "perf needs a process: give its PID");
    const cJSON *rate = perf_param(p, "rate"), *dur = perf_param(p, "duration");
    a->o.rate_hz = cJSON_IsNumber(rate) ? rate->valuedouble : FP_SAMPLER_DEFAULT_HZ;
    a->duration_s = cJSON_IsNumber(dur) ? dur->valuedouble : 0;
    a->o.native = cJSON_IsTrue(perf_param(p, "native"));
    a->o.gil_only = cJSON_IsTrue(perf_param(p, "gil"));
    a->o.idle = cJSON_IsTrue(perf_param(p, "idle"));
    const char *format = cJSON_GetStringValue(perf_param(p, "format"));
    a->rec = fp_recorder_find(format ? format : "svg");
    if (!a->rec)
        return fp_error_set(e, FP_E_USAGE, "the formats are svg (default), speedscope, collapsed",
                            "unknown perf format '%s'", format);
    a->path = p->file ? p->file : a->rec->default_file;
    return 0;
}

/* Refuses an output file that cannot be written before sampling, not after a long run. */
static int perf_check_writable(const char *path, fp_error *e)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK) == 0) return 0;
    return fp_error_set(e, FP_E_IO, "check the directory exists and that you may write there",
                        "cannot write %s: %s", path, strerror(errno));
}

static double perf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits for the end of the run; returns what ended it, for the summary. */
static const char *perf_wait(const cli *c, fp_sampler *s, const perf_args *a)
{
    double start = perf_now();
    double limit = a->duration_s > 0 ? a->duration_s : -1;
    const char *limit_name = "-d";
    if (c->timeout_set && (limit < 0 || c->timeout_ms / 1000.0 < limit)) {
        limit = c->timeout_ms / 1000.0;
        limit_name = "--timeout";
    }
    while (!fp_sampler_finished(s, NULL)) {
        if (cli_interrupted) return "Ctrl-C";
        if (limit >= 0 && perf_now() - start >= limit) return limit_name;
        /* Ctrl-C interrupts the nap (the handler has no SA_RESTART). */
        struct timespec nap = {0, PERF_POLL_NS};
        nanosleep(&nap, NULL);
    }
    return "the process's exit";
}

static int perf_output(cli *c, fp_profile *prof, const perf_args *a, const char *stopped_by)
{
    fp_error e;
    fp_error_clear(&e);
    if (fp_recorder_write_file(a->rec, prof, a->path, &e) != 0) {
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    cJSON *model = fp_profile_summary_model(prof, PERF_TOP, PERF_LINES);
    if (!model) {
        fp_error_set(&e, FP_E_INTERNAL, NULL, "out of memory");
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    cJSON_AddStringToObject(model, "file", a->path);
    cJSON_AddStringToObject(model, "format", a->rec->format);
    cJSON_AddStringToObject(model, "stopped_by", stopped_by);
    if (c->json)
        run_emit_json("perf", "result", model);
    else
        render_perf(stdout, model);
    cJSON_Delete(model);
    fflush(stdout);
    return CLI_EXIT_OK;
}

int perf_run(cli *c, const fp_cmd_parsed *p)
{
    perf_args a;
    fp_error e;
    fp_error_clear(&e);
    if (perf_parse(c, p, &a, &e) != 0) {
        run_report(c, "perf", &e);
        return CLI_EXIT_USAGE;
    }
    if (perf_check_writable(a.path, &e) != 0) {
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    fp_remote *r = fp_remote_open(a.pid, &e);
    if (!r) {
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    if (c->debug)
        fp_log_debug("perf: sampling process %d (Python %s) at %g Hz", a.pid, fp_remote_version(r),
                     a.o.rate_hz);
    cli_interrupted = 0;
    fp_sampler *s = fp_sampler_start(r, &a.o, &e);
    if (!s) {
        fp_remote_close(r);
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    if (c->interactive && !c->json)
        fprintf(stderr, "sampling process %d at %g Hz%s; Ctrl-C stops\n", a.pid, a.o.rate_hz,
                a.duration_s > 0 ? " (-d)" : "");
    const char *stopped_by = perf_wait(c, s, &a);
    cli_interrupted = 0;
    fp_error end;
    fp_error_clear(&end);
    fp_profile *prof = fp_sampler_stop(s, &end);
    fp_remote_close(r);
    if (!prof) {
        fp_error_set(&e, FP_E_INTERNAL, NULL, "out of memory");
        run_report(c, "perf", &e);
        return CLI_EXIT_FAILED;
    }
    /* The process exiting ends a profile like Ctrl-C does; another failure is reported,
     * and what was sampled before it is still written. */
    int rc;
    if (end.code != FP_OK && fp_profile_samples(prof) == 0) {
        run_report(c, "perf", &end);
        rc = CLI_EXIT_FAILED;
    } else {
        if (end.code != FP_OK && end.code != FP_E_NO_PROCESS && end.code != FP_E_EXITING)
            fp_error_print(&end, stderr);
        rc = perf_output(c, prof, &a, stopped_by);
    }
    fp_profile_free(prof);
    return rc;
}
