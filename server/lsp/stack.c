/* fp.stack: every thread's stack read from outside (server/remote through the core's stack
 * execution: no agent, works while a thread holds the GIL or threads are deadlocked), shown
 * two ways: a read-only text document in the runtime directory that the client opens
 * (window/showDocument), its frames as file:line for editors to jump to; and an Information
 * diagnostic on each frame's line in the open documents, naming the thread, so a stuck process
 * shows where each thread is, in the code. The read (ptrace stops, ELF reading) runs on libuv's
 * thread pool. Shown until fp.stack.clear, or the next fp.stack of that process. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp_commands.h"
#include "fp_json.h"
#include "fp_outfile.h"
#include "lsp.h"

/* The latest stack of one process. */
typedef struct stack_shot {
    struct stack_shot *next;
    int pid;
    cJSON *model; /* the stack model (protocol/methods.md, "stack from outside") */
    char file[4096];
} stack_shot;

static stack_shot *shots;

/* fp.stack without a pid: every attached process, answered once all are read. */
typedef struct stack_batch {
    cJSON *id;
    int pending;
    cJSON *stacks, *failed;
} stack_batch;

typedef struct stack_job {
    uv_work_t work;
    stack_batch *batch; /* NULL: the answer is this process's model */
    cJSON *id;
    int pid;
    cJSON *model; /* set by the sink, on the thread pool */
    bool failed;
    fp_error err;
} stack_job;

static void stack_sink_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x;
    stack_job *j = ud;
    cJSON_Delete(j->model);
    j->model = cJSON_Duplicate(result, 1);
}

static void stack_sink_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    stack_job *j = ud;
    if (end->err) {
        j->failed = true;
        j->err = *end->err;
    }
}

static void stack_work(uv_work_t *w)
{
    stack_job *j = w->data;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddNumberToObject(params, "pid", j->pid);
    fp_cmd_parsed parsed = {.cmd = fp_commands_find("stack"), .params = params};
    fp_exec_env env = {.pid = j->pid, .timeout_ms = -1, .debug = lsp.debug};
    fp_exec_sink sink = {.result = stack_sink_result, .end = stack_sink_end, .ud = j};
    /* Reading from outside ends within the start: the exec is over when it returns. */
    fp_exec *x = parsed.cmd ? fp_exec_start(&env, &parsed, &sink) : NULL;
    fp_exec_free(x);
    cJSON_Delete(params);
}

/* ---------------------------------------------------------------------------------------------
 * The document
 */

static void stack_thread_title(const cJSON *th, char *buf, size_t size)
{
    int n = snprintf(buf, size, "Thread %s (", fp_json_str(th, "name", "?"));
    const cJSON *native = fp_json_get(th, "native_id");
    if (cJSON_IsNumber(native))
        n += snprintf(buf + n, size - (size_t)n, "native %.0f, ", native->valuedouble);
    n += snprintf(buf + n, size - (size_t)n, "ident %.0f", fp_json_num(th, "ident", 0));
    if (fp_json_bool(th, "main")) n += snprintf(buf + n, size - (size_t)n, ", main");
    if (fp_json_bool(th, "daemon")) n += snprintf(buf + n, size - (size_t)n, ", daemon");
    n += snprintf(buf + n, size - (size_t)n, ") %s", fp_json_str(th, "state_name", ""));
    if (fp_json_bool(th, "holds_gil") && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " [holds the GIL]");
}

/* The text: like `fp stack`, with each frame as file:line (editors link those). */
static void stack_render(FILE *f, const cJSON *m)
{
    const cJSON *threads = fp_json_get(m, "threads");
    int n = cJSON_GetArraySize(threads);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
    fprintf(f,
            "Process %.0f (Python %s): %d thread%s, read from outside at %s (threads paused "
            "%.3f ms)\n",
            fp_json_num(m, "pid", 0), fp_json_str(m, "python_version", "?"), n, n == 1 ? "" : "s",
            when, fp_json_num(m, "pause_ms", 0));
    const cJSON *th;
    cJSON_ArrayForEach(th, threads)
    {
        char title[256];
        stack_thread_title(th, title, sizeof title);
        fprintf(f, "\n%s", title);
        const cJSON *frames = fp_json_get(th, "frames");
        if (cJSON_GetArraySize(frames) == 0) {
            fprintf(f, "\n  (no Python frames: idle, or between calls)\n");
            continue;
        }
        fprintf(f, ", most recent call last:\n");
        const cJSON *fr;
        cJSON_ArrayForEach(fr, frames)
        {
            fprintf(f, "  %s:%.0f in %s\n", fp_json_str(fr, "file", "?"),
                    fp_json_num(fr, "line", 0),
                    fp_json_str(fr, "qualname", fp_json_str(fr, "function", "?")));
            const char *src = fp_json_str(fr, "source", "");
            if (src[0]) fprintf(f, "      %s\n", src);
        }
    }
}

static int stack_write(stack_shot *s, fp_error *err)
{
    char dir[4000];
    if (lsp_runtime_dir(dir, sizeof dir, err) != 0) return -1;
    snprintf(s->file, sizeof s->file, "%s/stack-%d.txt", dir, s->pid);
    fp_outfile o;
    if (fp_outfile_begin(&o, s->file, err) != 0) return -1;
    stack_render(o.f, s->model);
    return fp_outfile_commit(&o, err);
}

/* ---------------------------------------------------------------------------------------------
 * fp.stack
 */

static stack_shot *stack_find(int pid)
{
    for (stack_shot *s = shots; s; s = s->next)
        if (s->pid == pid) return s;
    return NULL;
}

static void stack_on_shown(const cJSON *result, const cJSON *error, void *ud)
{
    (void)ud;
    if (error || !fp_json_bool(result, "success"))
        lsp_log(2, "fp: the client did not open the stack document");
}

/* Keeps j's model as its process's latest stack, writes and shows its document. The model
 * (with "document") is returned for the answer; NULL with err when it could not be read. */
static cJSON *stack_keep(stack_job *j, fp_error *err)
{
    if (!j->model) {
        *err = j->err;
        if (!j->failed) fp_error_set(err, FP_E_INTERNAL, NULL, "cannot read process %d", j->pid);
        return NULL;
    }
    stack_shot *s = stack_find(j->pid);
    if (!s && (s = calloc(1, sizeof *s))) {
        s->pid = j->pid;
        s->next = shots;
        shots = s;
    }
    if (!s) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    cJSON_Delete(s->model);
    s->model = j->model;
    j->model = NULL;
    fp_error e;
    cJSON *r = cJSON_Duplicate(s->model, 1);
    if (stack_write(s, &e) == 0) {
        char *uri = lsp_path_to_uri(s->file);
        cJSON_AddStringToObject(r, "document", uri ? uri : "");
        if (uri && lsp.show_document) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "uri", uri);
            cJSON_AddTrueToObject(p, "takeFocus");
            lsp_rpc_request("window/showDocument", p, stack_on_shown, NULL);
        }
        free(uri);
    } else {
        s->file[0] = '\0';
        lsp_log(2, "fp: the stack of process %d was not written: %s", s->pid, e.message);
    }
    return r;
}

static void stack_after(uv_work_t *w, int status)
{
    (void)status;
    stack_job *j = w->data;
    stack_batch *b = j->batch;
    if (!lsp.exiting) {
        fp_error e;
        cJSON *r = stack_keep(j, &e);
        lsp_diagnostics_publish_all();
        if (!b && r) {
            lsp_rpc_result(j->id, r);
        } else if (!b) {
            lsp_rpc_fp_error(j->id, &e);
        } else if (r) {
            cJSON_AddItemToArray(b->stacks, r);
        } else {
            cJSON *f = cJSON_CreateObject();
            cJSON_AddNumberToObject(f, "pid", j->pid);
            cJSON_AddStringToObject(f, "code", fp_error_code_name(e.code));
            cJSON_AddStringToObject(f, "message", e.message);
            if (e.hint[0]) cJSON_AddStringToObject(f, "hint", e.hint);
            cJSON_AddItemToArray(b->failed, f);
        }
    }
    if (b && --b->pending == 0) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToObject(r, "stacks", b->stacks);
        cJSON_AddItemToObject(r, "failed", b->failed);
        lsp_rpc_result(b->id, r);
        cJSON_Delete(b->id);
        free(b);
    }
    cJSON_Delete(j->model);
    cJSON_Delete(j->id);
    free(j);
}

/* Queues the read of pid; false when it cannot be. */
static bool stack_queue(const cJSON *id, stack_batch *b, int pid)
{
    stack_job *j = calloc(1, sizeof *j);
    if (!j) return false;
    j->id = b ? NULL : cJSON_Duplicate(id, 1);
    j->batch = b;
    j->pid = pid;
    j->work.data = j;
    if (uv_queue_work(lsp.loop, &j->work, stack_work, stack_after) != 0) {
        cJSON_Delete(j->id);
        free(j);
        return false;
    }
    if (b) b->pending++;
    return true;
}

/* fp.stack without a pid: every attached process; {"stacks": [model], "failed": [...]}. */
static void stack_attached(const cJSON *id)
{
    stack_batch *b = calloc(1, sizeof *b);
    if (!b) {
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    b->id = cJSON_Duplicate(id, 1);
    b->stacks = cJSON_CreateArray();
    b->failed = cJSON_CreateArray();
    b->pending = 1; /* held while queueing */
    for (int i = 0; i < lsp_procs_count(); i++) {
        lsp_proc *p = lsp_proc_at(i);
        if (!p->closing) stack_queue(id, b, p->pid);
    }
    if (--b->pending > 0) return;
    lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                  "fp.stack takes {\"pid\": N}: the process whose threads to show (it need not "
                  "be attached); without one it reads every attached process, and none is");
    cJSON_Delete(b->stacks);
    cJSON_Delete(b->failed);
    cJSON_Delete(b->id);
    free(b);
}

void lsp_stack_command(const cJSON *id, const cJSON *arg)
{
    const cJSON *pid = cJSON_IsNumber(arg) ? arg : fp_json_get(arg, "pid");
    if (!pid) {
        stack_attached(id);
        return;
    }
    if (!cJSON_IsNumber(pid) || pid->valuedouble < 1 || pid->valuedouble > 1 << 30) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.stack takes {\"pid\": N}: the process whose threads to show (it need "
                      "not be attached)");
        return;
    }
    if (!stack_queue(id, NULL, (int)pid->valuedouble))
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "cannot queue the read of process %d",
                      (int)pid->valuedouble);
}

/* fp.stack.clear {pid?}: the stacks shown (of pid, else every one) go. */
void lsp_stack_clear_command(const cJSON *id, const cJSON *arg)
{
    int pid = (int)fp_json_num(arg, "pid", 0);
    int n = 0;
    for (stack_shot **ss = &shots; *ss;) {
        stack_shot *s = *ss;
        if (pid && s->pid != pid) {
            ss = &s->next;
            continue;
        }
        *ss = s->next;
        cJSON_Delete(s->model);
        free(s);
        n++;
    }
    lsp_diagnostics_publish_all();
    cJSON *r = cJSON_CreateObject();
    cJSON_AddNumberToObject(r, "cleared", n);
    lsp_rpc_result(id, r);
}

/* ---------------------------------------------------------------------------------------------
 * Diagnostics
 */

/* The 0-based line of doc holding `source` (stripped) nearest to line, else line itself: the
 * file may have moved since the process loaded it. */
static int stack_line_in(lsp_doc *doc, int line, const char *source)
{
    if (!source[0]) return line;
    size_t want = strlen(source);
    int best = -1, i = 0;
    for (size_t off = 0; off <= doc->len; i++) {
        const char *nl = memchr(doc->text + off, '\n', doc->len - off);
        size_t end = nl ? (size_t)(nl - doc->text) : doc->len;
        size_t a = off, b = end;
        while (a < b && (doc->text[a] == ' ' || doc->text[a] == '\t'))
            a++;
        while (b > a &&
               (doc->text[b - 1] == ' ' || doc->text[b - 1] == '\t' || doc->text[b - 1] == '\r'))
            b--;
        if (b - a == want && memcmp(doc->text + a, source, want) == 0 &&
            (best < 0 || abs(i - line) < abs(best - line)))
            best = i;
        if (!nl) break;
        off = end + 1;
    }
    return best >= 0 ? best : line;
}

void lsp_stack_diagnostics(lsp_doc *doc, cJSON *out)
{
    int nlines = lsp_doc_lines(doc);
    for (stack_shot *s = shots; s; s = s->next) {
        const cJSON *th;
        cJSON_ArrayForEach(th, fp_json_get(s->model, "threads"))
        {
            const cJSON *frames = fp_json_get(th, "frames");
            int nframes = cJSON_GetArraySize(frames), k = 0;
            const cJSON *fr;
            cJSON_ArrayForEach(fr, frames)
            {
                k++;
                if (strcmp(fp_json_str(fr, "file", ""), doc->path) != 0) continue;
                int line = stack_line_in(doc, (int)fp_json_num(fr, "line", 0) - 1,
                                         fp_json_str(fr, "source", ""));
                if (line < 0 || line >= nlines) continue;
                char title[256], msg[512];
                stack_thread_title(th, title, sizeof title);
                snprintf(msg, sizeof msg, "%s of process %d is %s %s", title, s->pid,
                         k == nframes ? "here, in" : "in a call from here, in",
                         fp_json_str(fr, "qualname", fp_json_str(fr, "function", "?")));
                cJSON *d = cJSON_CreateObject();
                cJSON *range = cJSON_AddObjectToObject(d, "range");
                cJSON *a = cJSON_AddObjectToObject(range, "start");
                cJSON_AddNumberToObject(a, "line", line);
                cJSON_AddNumberToObject(a, "character", 0);
                cJSON *b = cJSON_AddObjectToObject(range, "end");
                cJSON_AddNumberToObject(b, "line", line);
                cJSON_AddNumberToObject(b, "character", lsp_doc_line_end(doc, line));
                cJSON_AddNumberToObject(d, "severity", 3);
                cJSON_AddStringToObject(d, "source", "fp stack");
                cJSON_AddStringToObject(d, "message", msg);
                cJSON *data = cJSON_AddObjectToObject(d, "data");
                cJSON_AddNumberToObject(data, "pid", s->pid);
                cJSON_AddNumberToObject(data, "ident", fp_json_num(th, "ident", 0));
                cJSON_AddStringToObject(data, "thread", fp_json_str(th, "name", "?"));
                cJSON_AddBoolToObject(data, "innermost", k == nframes);
                cJSON_AddItemToArray(out, d);
            }
        }
    }
}
