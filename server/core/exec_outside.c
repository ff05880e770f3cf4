/* Commands that read the process from outside (server/remote/), without the agent: stack (and
 * its -a, which does need the agent), perf (the sampler until stopped, then the profile
 * written and its summary) and gilstat (the GIL collector's reports until stopped). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exec_internal.h"
#include "fp_clock.h"
#include "fp_json.h"
#include "fp_log.h"
#include "fp_notes.h"
#include "fp_outfile.h"

#define PERF_TOP 10
#define PERF_LINES 20

#define XLOG(x, ...)                                                                               \
    do {                                                                                           \
        if ((x)->env.debug) fp_log_debug(__VA_ARGS__);                                             \
    } while (0)

/* An outside command's PID: params.pid, else the attached process. */
static int exec_target_pid(const fp_exec *x)
{
    const cJSON *pid = fp_json_get(x->p.params, "pid");
    return cJSON_IsNumber(pid) ? (int)pid->valuedouble : x->env.pid;
}

/* ---------------------------------------------------------------------------------------------
 * stack
 */

/* -a: the asyncio tasks are Python objects; the agent walks them with the GIL. */
static void exec_stack_async(fp_exec *x, int pid)
{
    if (pid != x->env.pid || !x->env.ch) {
        char hint[128];
        snprintf(hint, sizeof hint, "run fp %d --cmd 'stack -a'", pid);
        exec_fail(x, FP_E_USAGE, hint,
                  "stack -a reads asyncio tasks through the agent of the attached process only "
                  "(%d)",
                  x->env.pid);
        return;
    }
    x->timeout_hint =
        "asyncio tasks are Python objects: the agent needs the GIL to read them, and a\n"
        "thread has not released it. `stack` without -a reads every thread from outside,\n"
        "without the GIL, and marks the thread that holds it.";
    exec_agent_start(x, "stack.async", cJSON_CreateObject());
}

void exec_stack_start(fp_exec *x)
{
    x->kind = EXEC_STACK;
    int pid = exec_target_pid(x);
    if (pid <= 0) {
        exec_fail(x, FP_E_USAGE, "usage: stack [PID] [-f FILE] [--native] [-a|--async]",
                  "stack needs a process: give its PID");
        return;
    }
    if (fp_json_bool(x->p.params, "async")) {
        exec_stack_async(x, pid);
        return;
    }
    fp_error e;
    fp_error_clear(&e);
    unsigned flags = FP_SNAP_THREAD_NAMES;
    if (fp_json_bool(x->p.params, "native")) flags |= FP_SNAP_NATIVE;
    fp_remote *r = fp_remote_open(pid, &e);
    fp_remote_snapshot snap;
    if (!r || fp_remote_snapshot_take(r, flags, &snap, &e) != 0) {
        if (e.code == FP_E_UNSUPPORTED && (flags & FP_SNAP_NATIVE) && !e.hint[0])
            snprintf(e.hint, sizeof e.hint,
                     "native frames are not available in this build yet; stack without --native "
                     "shows the Python frames");
        fp_remote_close(r);
        exec_finish(x, &e, NULL);
        return;
    }
    XLOG(x, "stack: %d threads read from outside, threads paused %.3f ms", snap.nthreads,
         snap.pause_ms);
    cJSON *model = fp_remote_stack_model(r, &snap);
    fp_remote_snapshot_free(&snap);
    fp_remote_close(r);
    if (!model) {
        exec_fail(x, FP_E_INTERNAL, NULL, "out of memory building the stack");
        return;
    }
    if (x->sink.result) x->sink.result(x->sink.ud, x, model);
    cJSON_Delete(model);
    exec_finish(x, NULL, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * perf
 */

void exec_perf_start(fp_exec *x)
{
    x->kind = EXEC_PERF;
    const cJSON *params = x->p.params;
    int pid = exec_target_pid(x);
    if (pid <= 0) {
        exec_fail(x, FP_E_USAGE, "usage: perf [PID] [-f FILE] [-r RATE] [-d SECONDS] ...",
                  "perf needs a process: give its PID");
        return;
    }
    fp_sampler_opts o = {
        .rate_hz = fp_json_num(params, "rate", FP_SAMPLER_DEFAULT_HZ),
        .native = fp_json_bool(params, "native"),
        .gil_only = fp_json_bool(params, "gil"),
        .idle = fp_json_bool(params, "idle"),
    };
    double duration_s = fp_json_num(params, "duration", 0);
    const char *format = fp_json_str(params, "format", NULL);
    x->rec = fp_recorder_find(format ? format : "svg");
    if (!x->rec) {
        exec_fail(x, FP_E_USAGE, "the formats are svg (default), speedscope, collapsed",
                  "unknown perf format '%s'", format);
        return;
    }
    x->perf_path = strdup(x->p.file ? x->p.file : x->rec->default_file);
    fp_error e;
    fp_error_clear(&e);
    if (!x->perf_path) {
        exec_fail(x, FP_E_INTERNAL, NULL, "out of memory");
        return;
    }
    /* An output file that cannot be written is refused before sampling, not after a long run. */
    if (fp_outfile_check(x->perf_path, &e) != 0 || !(x->remote = fp_remote_open(pid, &e))) {
        exec_finish(x, &e, NULL);
        return;
    }
    XLOG(x, "perf: sampling process %d (Python %s) at %g Hz", pid, fp_remote_version(x->remote),
         o.rate_hz);
    x->sampler = fp_sampler_start(x->remote, &o, &e);
    if (!x->sampler) {
        fp_remote_close(x->remote);
        x->remote = NULL;
        exec_finish(x, &e, NULL);
        return;
    }
    if (duration_s > 0) x->perf_until = fp_clock_ms() + duration_s * 1000;
    if (x->sink.started) {
        cJSON *info = cJSON_CreateObject();
        cJSON_AddNumberToObject(info, "pid", pid);
        cJSON_AddNumberToObject(info, "rate_hz", o.rate_hz);
        cJSON_AddNumberToObject(info, "duration_s", duration_s);
        x->sink.started(x->sink.ud, x, info);
        cJSON_Delete(info);
    }
}

/* The end of a run: the profile written, its summary model handed on. */
static void perf_finish(fp_exec *x, const char *stopped_by)
{
    fp_error end;
    fp_error_clear(&end);
    fp_profile *prof = fp_sampler_stop(x->sampler, &end);
    x->sampler = NULL;
    fp_remote_close(x->remote);
    x->remote = NULL;
    if (!prof) {
        exec_fail(x, FP_E_INTERNAL, NULL, "out of memory");
        return;
    }
    /* The process exiting ends a profile like Ctrl-C does; another failure is reported, and
     * what was sampled before it is still written. */
    if (end.code != FP_OK && fp_profile_samples(prof) == 0) {
        fp_profile_free(prof);
        /* Gone while sampling: the command failed (1), it was not refused at the start (2). */
        if (end.code == FP_E_NO_PROCESS || end.code == FP_E_EXITING) end.code = FP_E_CLOSED;
        exec_finish(x, &end, NULL);
        return;
    }
    if (end.code != FP_OK && end.code != FP_E_NO_PROCESS && end.code != FP_E_EXITING)
        fp_error_print(&end, stderr);
    fp_error e;
    fp_error_clear(&e);
    if (fp_recorder_write_file(x->rec, prof, x->perf_path, &e) != 0) {
        fp_profile_free(prof);
        exec_finish(x, &e, NULL);
        return;
    }
    cJSON *model = fp_profile_summary_model(prof, PERF_TOP, PERF_LINES);
    fp_profile_free(prof);
    if (!model) {
        exec_fail(x, FP_E_INTERNAL, NULL, "out of memory");
        return;
    }
    cJSON_AddStringToObject(model, "file", x->perf_path);
    cJSON_AddStringToObject(model, "format", x->rec->format);
    cJSON_AddStringToObject(model, "stopped_by", stopped_by);
    /* A finished profile is a result, not a stop: the reason is in the model. */
    x->why[0] = '\0';
    if (x->sink.result) x->sink.result(x->sink.ud, x, model);
    cJSON_Delete(model);
    exec_finish(x, NULL, NULL);
}

void exec_perf_stop(fp_exec *x, const char *why)
{
    if (x->sampler) perf_finish(x, why);
}

void exec_perf_tick(fp_exec *x)
{
    if (!x->sampler) return;
    if (!x->perf_sampled && fp_sampler_samples(x->sampler) > 0) {
        x->perf_sampled = true;
        XLOG(x, "perf: the first samples are taken");
    }
    if (fp_sampler_finished(x->sampler, NULL)) {
        perf_finish(x, "the process's exit");
    } else if (x->perf_until >= 0 && fp_clock_ms() >= x->perf_until) {
        perf_finish(x, "-d");
    }
}

fp_profile *fp_exec_perf_window(fp_exec *x, bool *ended)
{
    if (ended) *ended = false;
    if (x->kind != EXEC_PERF || !x->sampler) return NULL;
    if (ended) *ended = fp_sampler_finished(x->sampler, NULL);
    return fp_sampler_take_window(x->sampler);
}

/* ---------------------------------------------------------------------------------------------
 * gilstat
 */

static void exec_gil_emit(const char *method, const cJSON *model, void *ud)
{
    fp_exec *x = ud;
    if (strcmp(method, FP_NOTE_GILSTAT_STOPPED) != 0) x->reports++;
    if (x->sink.note) x->sink.note(x->sink.ud, x, method, model);
}

void exec_gilstat_start(fp_exec *x)
{
    x->kind = EXEC_GILSTAT;
    const cJSON *params = x->p.params;
    if (strcmp(fp_json_str(params, "action", "on"), "off") == 0) {
        exec_fail(x, FP_E_USAGE, "gilstat on starts it", "gilstat is not running");
        return;
    }
    fp_gil_opts o = {
        .take_ms = fp_json_num(params, "take_ms", 0),
        .hold_ms = fp_json_num(params, "hold_ms", 0),
        .interval_ms = (int)(fp_json_num(params, "interval_s", 0) * 1000),
        .emit = exec_gil_emit,
        .emit_ud = x,
    };
    fp_error e;
    fp_error_clear(&e);
    if (exec_target_pid(x) <= 0) {
        exec_fail(x, FP_E_USAGE, "attach to it: fp PID --cmd 'gilstat on'",
                  "gilstat needs a process, and none is attached");
        return;
    }
    x->gil = fp_gil_open(exec_target_pid(x), &o, &e);
    if (!x->gil) exec_finish(x, &e, NULL);
}

void exec_gilstat_stop(fp_exec *x, const char *why)
{
    fp_gil *g = x->gil;
    x->gil = NULL;
    if (g) fp_gil_close(g, why);
    exec_finish(x, NULL, NULL);
}

void exec_gilstat_tick(fp_exec *x)
{
    if (x->gil && fp_gil_step(x->gil, 0) == 0) {
        /* The process exited: its last report and the stop line, then the end. */
        x->why[0] = '\0';
        fp_gil *g = x->gil;
        x->gil = NULL;
        fp_gil_close(g, "the process exited");
        exec_finish(x, NULL, NULL);
    }
}

double exec_gilstat_deadline(const fp_exec *x)
{
    return x->gil ? fp_clock_ms() + fp_gil_due_ms(x->gil) : -1;
}
