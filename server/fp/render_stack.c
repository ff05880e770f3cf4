/* The human renderers of the stack command's models: every thread's stack (read from outside
 * the process, or the agent's) and, with -a, the asyncio tasks of every event loop. */
#include "fp_cli.h"
#include "fp_json.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== rendering: threads */

static void stack_render_frame(FILE *out, const cJSON *f)
{
    if (strcmp(fp_json_str(f, "kind", "python"), "native") == 0) {
        double off = fp_json_num(f, "offset", 0);
        fprintf(out, "  <native> %s", fp_json_str(f, "function", "??"));
        if (off > 0) fprintf(out, "+0x%llx", (unsigned long long)off);
        fprintf(out, " in %s\n", fp_json_str(f, "file", "??"));
        return;
    }
    fprintf(out, "  File \"%s\", line %.0f, in %s\n", fp_json_str(f, "file", "?"),
            fp_json_num(f, "line", 0), fp_json_str(f, "function", "?"));
    const char *src = fp_json_str(f, "source", "");
    if (src[0]) fprintf(out, "    %s\n", src);
}

static void stack_render_thread(FILE *out, const cJSON *th)
{
    fprintf(out, "\nThread %s (", fp_json_str(th, "name", "?"));
    const cJSON *native = cJSON_GetObjectItemCaseSensitive(th, "native_id");
    if (cJSON_IsNumber(native)) fprintf(out, "native %.0f, ", native->valuedouble);
    fprintf(out, "ident %.0f", fp_json_num(th, "ident", 0));
    if (fp_json_bool(th, "main")) fputs(", main", out);
    if (fp_json_bool(th, "daemon")) fputs(", daemon", out);
    fputc(')', out);
    const char *state = fp_json_str(th, "state_name", NULL);
    if (state) fprintf(out, " %s", state);
    if (fp_json_bool(th, "holds_gil")) fputs(" [holds the GIL]", out);
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
    fprintf(out, "Process %.0f", fp_json_num(r, "pid", 0));
    const char *version = fp_json_str(r, "python_version", NULL);
    if (version && version[0]) fprintf(out, " (Python %s)", version);
    fprintf(out, ": %d thread%s", n, n == 1 ? "" : "s");
    if (strcmp(fp_json_str(r, "source", ""), "outside") == 0) {
        double pause = fp_json_num(r, "pause_ms", 0);
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
    fprintf(out, "  Task %s %s", fp_json_str(t, "name", "?"), fp_json_str(t, "state", "?"));
    const char *coro = fp_json_str(t, "coroutine", NULL);
    if (coro) fprintf(out, " coroutine %s", coro);
    const char *waiting = fp_json_str(t, "waiting_on", NULL);
    if (waiting) fprintf(out, "\n    awaiting %s", waiting);
    const char *exc = fp_json_str(t, "exception", NULL);
    if (exc) fprintf(out, "\n    raised %s", exc);
    fputc('\n', out);
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(t, "awaits"))
    {
        fprintf(out, "    File \"%s\", line %.0f, in %s\n", fp_json_str(f, "file", "?"),
                fp_json_num(f, "line", 0), fp_json_str(f, "function", "?"));
        const char *src = fp_json_str(f, "source", "");
        if (src[0]) fprintf(out, "      %s\n", src);
    }
}

static void stack_render_tasks(FILE *out, const cJSON *r)
{
    const cJSON *loops = cJSON_GetObjectItemCaseSensitive(r, "loops");
    int n = cJSON_GetArraySize(loops);
    fprintf(out, "Process %.0f: %d event loop%s\n", fp_json_num(r, "pid", 0), n, n == 1 ? "" : "s");
    const cJSON *loop;
    cJSON_ArrayForEach(loop, loops)
    {
        const cJSON *tasks = cJSON_GetObjectItemCaseSensitive(loop, "tasks");
        int nt = cJSON_GetArraySize(tasks);
        fprintf(out, "\nEvent loop %s", fp_json_str(loop, "loop", "?"));
        const char *thread = fp_json_str(loop, "thread", NULL);
        if (thread) fprintf(out, " in thread %s", thread);
        fprintf(out, " (%s): %d task%s",
                fp_json_bool(loop, "running")  ? "running"
                : fp_json_bool(loop, "closed") ? "closed"
                                               : "not running",
                nt, nt == 1 ? "" : "s");
        double done = fp_json_num(loop, "done", 0);
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
