/* The stack command in the terminal client: every thread's stack read from outside the
 * process (server/remote/, no agent, no GIL), or with -a the asyncio tasks, which only the
 * agent can walk. Also the human renderers of both models. */
#include "fp_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fp_log.h"
#include "fp_remote.h"

/* ===================================================================== small readers */

static const char *stack_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double stack_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool stack_bool(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* ===================================================================== rendering: threads */

static void stack_render_frame(FILE *out, const cJSON *f)
{
    if (strcmp(stack_str(f, "kind", "python"), "native") == 0) {
        double off = stack_num(f, "offset", 0);
        fprintf(out, "  <native> %s", stack_str(f, "function", "??"));
        if (off > 0) fprintf(out, "+0x%llx", (unsigned long long)off);
        fprintf(out, " in %s\n", stack_str(f, "file", "??"));
        return;
    }
    fprintf(out, "  File \"%s\", line %.0f, in %s\n", stack_str(f, "file", "?"),
            stack_num(f, "line", 0), stack_str(f, "function", "?"));
    const char *src = stack_str(f, "source", "");
    if (src[0]) fprintf(out, "    %s\n", src);
}

static void stack_render_thread(FILE *out, const cJSON *th)
{
    fprintf(out, "\nThread %s (", stack_str(th, "name", "?"));
    const cJSON *native = cJSON_GetObjectItemCaseSensitive(th, "native_id");
    if (cJSON_IsNumber(native)) fprintf(out, "native %.0f, ", native->valuedouble);
    fprintf(out, "ident %.0f", stack_num(th, "ident", 0));
    if (stack_bool(th, "main")) fputs(", main", out);
    if (stack_bool(th, "daemon")) fputs(", daemon", out);
    fputc(')', out);
    const char *state = stack_str(th, "state_name", NULL);
    if (state) fprintf(out, " %s", state);
    if (stack_bool(th, "holds_gil")) fputs(" [holds the GIL]", out);
    const cJSON *frames = cJSON_GetObjectItemCaseSensitive(th, "frames");
    if (cJSON_GetArraySize(frames) == 0) {
        bool python = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(th, "python"));
        fputs(python ? "\n  (no Python frames: idle, or between calls)\n" : "\n  (no frames)\n",
              out);
        return;
    }
    fputs(", most recent call last:\n", out);
    const cJSON *f;
    cJSON_ArrayForEach(f, frames)
    {
        stack_render_frame(out, f);
    }
}

static void stack_render_threads(FILE *out, const cJSON *r)
{
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(r, "threads");
    int n = cJSON_GetArraySize(threads);
    fprintf(out, "Process %.0f", stack_num(r, "pid", 0));
    const char *version = stack_str(r, "python_version", NULL);
    if (version && version[0]) fprintf(out, " (Python %s)", version);
    fprintf(out, ": %d thread%s", n, n == 1 ? "" : "s");
    if (strcmp(stack_str(r, "source", ""), "outside") == 0) {
        double pause = stack_num(r, "pause_ms", 0);
        if (pause > 0)
            fprintf(out, ", read from outside (threads paused %.2f ms)", pause);
        else
            fputs(", read from outside", out);
    }
    fputc('\n', out);
    const cJSON *th;
    cJSON_ArrayForEach(th, threads)
    {
        stack_render_thread(out, th);
    }
}

/* ===================================================================== rendering: tasks */

static void stack_render_task(FILE *out, const cJSON *t)
{
    fprintf(out, "  Task %s %s", stack_str(t, "name", "?"), stack_str(t, "state", "?"));
    const char *coro = stack_str(t, "coroutine", NULL);
    if (coro) fprintf(out, " coroutine %s", coro);
    const char *waiting = stack_str(t, "waiting_on", NULL);
    if (waiting) fprintf(out, "\n    awaiting %s", waiting);
    const char *exc = stack_str(t, "exception", NULL);
    if (exc) fprintf(out, "\n    raised %s", exc);
    fputc('\n', out);
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(t, "awaits"))
    {
        fprintf(out, "    File \"%s\", line %.0f, in %s\n", stack_str(f, "file", "?"),
                stack_num(f, "line", 0), stack_str(f, "function", "?"));
        const char *src = stack_str(f, "source", "");
        if (src[0]) fprintf(out, "      %s\n", src);
    }
}

static void stack_render_tasks(FILE *out, const cJSON *r)
{
    const cJSON *loops = cJSON_GetObjectItemCaseSensitive(r, "loops");
    int n = cJSON_GetArraySize(loops);
    fprintf(out, "Process %.0f: %d event loop%s\n", stack_num(r, "pid", 0), n, n == 1 ? "" : "s");
    const cJSON *loop;
    cJSON_ArrayForEach(loop, loops)
    {
        const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(loop, "tasks");
        int nt = cJSON_GetArraySize(tasks);
        fprintf(out, "\nEvent loop %s", stack_str(loop, "loop", "?"));
        const char *thread = stack_str(loop, "thread", NULL);
        if (thread) fprintf(out, " in thread %s", thread);
        fprintf(out, " (%s): %d task%s",
                stack_bool(loop, "running")  ? "running"
                : stack_bool(loop, "closed") ? "closed"
                                             : "not running",
                nt, nt == 1 ? "" : "s");
        double done = stack_num(loop, "done", 0);
        if (done > 0) fprintf(out, " (and %.0f done, not shown)", done);
        fputc('\n', out);
        const cJSON *t;
        cJSON_ArrayForEach(t, tasks)
        {
            stack_render_task(out, t);
        }
    }
    if (n == 0)
        fputs(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "asyncio"))
                  ? "(the program has not imported asyncio)\n"
                  : "(no asyncio event loop with tasks in this process)\n",
              out);
}

void stack_render(FILE *out, const cJSON *result)
{
    if (cJSON_GetObjectItemCaseSensitive(result, "loops"))
        stack_render_tasks(out, result);
    else
        stack_render_threads(out, result);
}

/* ===================================================================== running */

/* Where the model goes: a file (human text), stdout as JSON, or stdout for humans. */
static int stack_show(cli *c, const fp_cmd_parsed *p, const cJSON *model)
{
    if (p->file) {
        FILE *f = fopen(p->file, "we");
        fp_error e;
        if (!f) {
            fp_error_set(&e, FP_E_IO, "check the directory exists and that you may write there",
                         "cannot write %s: %s", p->file, strerror(errno));
            run_report(c, "stack", &e);
            return CLI_EXIT_FAILED;
        }
        stack_render(f, model);
        if (ferror(f) | (fclose(f) != 0)) {
            fp_error_set(&e, FP_E_IO, NULL, "writing %s failed: %s", p->file, strerror(errno));
            run_report(c, "stack", &e);
            return CLI_EXIT_FAILED;
        }
        /* With --json, stdout carries only JSON Lines. */
        fprintf(c->json ? stderr : stdout, "stack written to %s\n", p->file);
    }
    if (c->json)
        run_emit_json("stack", "result", model);
    else if (!p->file)
        stack_render(stdout, model);
    fflush(stdout);
    return CLI_EXIT_OK;
}

static int stack_outside(cli *c, const fp_cmd_parsed *p, int pid)
{
    fp_error e;
    fp_error_clear(&e);
    unsigned flags = FP_SNAP_THREAD_NAMES;
    if (stack_bool(p->params, "native")) flags |= FP_SNAP_NATIVE;
    fp_remote *r = fp_remote_open(pid, &e);
    fp_remote_snapshot snap;
    if (!r || fp_remote_snapshot_take(r, flags, &snap, &e) != 0) {
        if (e.code == FP_E_UNSUPPORTED && (flags & FP_SNAP_NATIVE) && !e.hint[0])
            snprintf(e.hint, sizeof e.hint,
                     "native frames are not available in this build yet; stack without --native "
                     "shows the Python frames");
        run_report(c, "stack", &e);
        fp_remote_close(r);
        return CLI_EXIT_FAILED;
    }
    if (c->debug)
        fp_log_debug("stack: %d threads read from outside, threads paused %.3f ms", snap.nthreads,
                     snap.pause_ms);
    cJSON *model = fp_remote_stack_model(r, &snap);
    fp_remote_snapshot_free(&snap);
    fp_remote_close(r);
    if (!model) {
        fp_error_set(&e, FP_E_INTERNAL, NULL, "out of memory building the stack");
        run_report(c, "stack", &e);
        return CLI_EXIT_FAILED;
    }
    int rc = stack_show(c, p, model);
    cJSON_Delete(model);
    return rc;
}

/* -a: the asyncio tasks are Python objects; the agent walks them with the GIL. */
static int stack_async(cli *c, const fp_cmd_parsed *p, int pid)
{
    fp_error e;
    fp_error_clear(&e);
    if (pid != c->pid || !c->session) {
        char hint[128];
        snprintf(hint, sizeof hint, "run fp %d --cmd 'stack -a'", pid);
        fp_error_set(&e, FP_E_USAGE, hint,
                     "stack -a reads asyncio tasks through the agent of the attached process "
                     "only (%d)",
                     c->pid);
        run_report(c, "stack", &e);
        return CLI_EXIT_USAGE;
    }
    cJSON *result = run_call(c, "stack.async", cJSON_CreateObject(), NULL, NULL, &e);
    if (!result) {
        if (e.code == FP_E_TIMEOUT)
            snprintf(e.hint, sizeof e.hint,
                     "asyncio tasks are Python objects: the agent needs the GIL to read them, and "
                     "a\nthread has not released it. `stack` without -a reads every thread from "
                     "outside,\nwithout the GIL, and marks the thread that holds it.");
        if (e.code == FP_E_CLOSED) c->quit = c->detached = true;
        run_report(c, "stack", &e);
        return CLI_EXIT_FAILED;
    }
    int rc = stack_show(c, p, result);
    cJSON_Delete(result);
    return rc;
}

int stack_run(cli *c, const fp_cmd_parsed *p)
{
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(p->params, "pid");
    int target = cJSON_IsNumber(pid) ? (int)pid->valuedouble : c->pid;
    if (stack_bool(p->params, "async")) return stack_async(c, p, target);
    return stack_outside(c, p, target);
}
