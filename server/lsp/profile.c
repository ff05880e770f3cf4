/* fp.profile: the sampler of server/remote run inside fp-lsp (the core's perf execution, no
 * agent: it works while a thread holds the GIL), its figures shown in every open document as
 * inlay hints at the end of hot lines ("█▌ 12.4% (self 9.8%)") and per-function totals in the
 * lens, refreshed every few seconds over the whole run or a sliding window. fp.profile.stop
 * writes the flame graph (perf's SVG or speedscope) and offers to open it; the figures stay
 * until fp.profile.clear. Starting and stopping a sampler (reading the ELF, joining its thread,
 * writing the file) run on libuv's thread pool, never on the loop. Lines follow their
 * function by name when the file moved since it was loaded, as the lenses do. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fp_commands.h"
#include "fp_json.h"
#include "fp_paths.h"
#include "fp_profile.h"
#include "lsp.h"

/* Windows kept for a sliding window: refresh periods, at most. */
#define PROF_RING 120

/* ===================================== Figures =============================================== */

/* One line (line > 0) or one function (line == 0) of one file, with its samples. */
typedef struct prof_entry {
    char *file, *function;
    int first_line, line;
    uint64_t self, total;
} prof_entry;

typedef struct prof_agg {
    prof_entry *e;
    int n, cap;
    int *slots; /* open addressing: entry index + 1, 0 empty */
    int nslots;
    uint64_t samples;
} prof_agg;

static uint64_t prof_hash(const char *file, const char *function, int first_line, int line)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *s = file; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    for (const char *s = function; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ (uint64_t)first_line) * 1099511628211ull;
    return (h ^ (uint64_t)line) * 1099511628211ull;
}

static void prof_agg_clear(prof_agg *a)
{
    for (int i = 0; i < a->n; i++) {
        free(a->e[i].file);
        free(a->e[i].function);
    }
    free(a->e);
    free(a->slots);
    memset(a, 0, sizeof *a);
}

static bool prof_agg_rehash(prof_agg *a, int nslots)
{
    int *slots = calloc((size_t)nslots, sizeof *slots);
    if (!slots) return false;
    for (int i = 0; i < a->n; i++) {
        const prof_entry *e = &a->e[i];
        size_t h = prof_hash(e->file, e->function, e->first_line, e->line) & (size_t)(nslots - 1);
        while (slots[h])
            h = (h + 1) & (size_t)(nslots - 1);
        slots[h] = i + 1;
    }
    free(a->slots);
    a->slots = slots;
    a->nslots = nslots;
    return true;
}

static void prof_agg_add(prof_agg *a, const char *file, const char *function, int first_line,
                         int line, uint64_t self, uint64_t total)
{
    if ((a->n + 1) * 2 > a->nslots && !prof_agg_rehash(a, a->nslots ? a->nslots * 2 : 256)) return;
    size_t mask = (size_t)(a->nslots - 1);
    size_t h = prof_hash(file, function, first_line, line) & mask;
    for (int i; (i = a->slots[h]) != 0; h = (h + 1) & mask) {
        prof_entry *e = &a->e[i - 1];
        if (e->line == line && e->first_line == first_line && strcmp(e->file, file) == 0 &&
            strcmp(e->function, function) == 0) {
            e->self += self;
            e->total += total;
            return;
        }
    }
    if (a->n == a->cap) {
        int cap = a->cap ? a->cap * 2 : 128;
        prof_entry *grown = realloc(a->e, (size_t)cap * sizeof *grown);
        if (!grown) return;
        a->e = grown;
        a->cap = cap;
    }
    char *f = strdup(file), *fn = strdup(function);
    if (!f || !fn) {
        free(f);
        free(fn);
        return;
    }
    a->e[a->n] = (prof_entry){.file = f,
                              .function = fn,
                              .first_line = first_line,
                              .line = line,
                              .self = self,
                              .total = total};
    a->slots[h] = ++a->n;
}

static void prof_agg_merge(prof_agg *dst, const prof_agg *src)
{
    for (int i = 0; i < src->n; i++) {
        const prof_entry *e = &src->e[i];
        prof_agg_add(dst, e->file, e->function, e->first_line, e->line, e->self, e->total);
    }
    dst->samples += src->samples;
}

/* The Python lines and functions of a sampler's window. */
static void prof_agg_of_profile(prof_agg *a, const fp_profile *p)
{
    for (int i = 0; i < fp_profile_nlines(p); i++) {
        const fp_profile_line *l = fp_profile_line_at(p, i);
        prof_agg_add(a, l->file, l->function, l->first_line, l->line, l->self, l->total);
    }
    for (int i = 0; i < fp_profile_nframes(p); i++) {
        const fp_profile_frame *f = fp_profile_frame_at(p, i);
        if (f->kind == FP_FRAME_PYTHON)
            prof_agg_add(a, f->file, f->function, f->first_line, 0, f->self, f->total);
    }
    a->samples += fp_profile_samples(p);
}

/* ===================================== Runs ================================================== */

/* What the perf exec's sink hands over. The sink runs on the thread pool (the exec starts and
 * stops there): the loop reads this only once that job is over. */
typedef struct prof_stash {
    cJSON *summary; /* perf's summary model at the end: file, format, samples... */
    bool failed;
    fp_error err;
} prof_stash;

/* The sampling of one process. */
typedef struct prof_run {
    struct prof_run *next;
    int pid;
    fp_exec *x;    /* the perf exec while it samples, else NULL */
    bool busy;     /* a start or stop job has it on the thread pool */
    bool stopping; /* ... the stop job */
    bool ended;    /* sampling is over (stopped, the process exited, or it failed) */
    prof_agg whole;
    prof_agg ring[PROF_RING];
    int ring_at, ring_n;
    prof_stash stash;
    char why[64]; /* what ended it */
} prof_run;

static prof_run *runs;
static prof_agg shown; /* what the hints and lenses show: every run's window summed */
static uv_timer_t prof_timer;
static bool prof_timer_init;

int lsp_profile_running(void)
{
    int n = 0;
    for (prof_run *r = runs; r; r = r->next)
        n += !r->ended;
    return n;
}

static prof_run *prof_find(int pid)
{
    for (prof_run *r = runs; r; r = r->next)
        if (r->pid == pid) return r;
    return NULL;
}

static void prof_run_free(prof_run *r)
{
    prof_agg_clear(&r->whole);
    for (int i = 0; i < PROF_RING; i++)
        prof_agg_clear(&r->ring[i]);
    cJSON_Delete(r->stash.summary);
    free(r);
}

static void prof_sink_result(void *ud, const fp_exec *x, const cJSON *result)
{
    (void)x;
    prof_stash *st = ud;
    cJSON_Delete(st->summary);
    st->summary = cJSON_Duplicate(result, 1);
}

static void prof_sink_end(void *ud, const fp_exec *x, const fp_exec_end *end)
{
    (void)x;
    prof_stash *st = ud;
    if (end->err) {
        st->failed = true;
        st->err = *end->err;
    }
}

/* Sums every run's figures into what is shown. */
static void prof_recompute(void)
{
    prof_agg_clear(&shown);
    for (prof_run *r = runs; r; r = r->next) {
        if (!lsp.settings.profile_sliding) {
            prof_agg_merge(&shown, &r->whole);
            continue;
        }
        for (int i = 1; i <= r->ring_n; i++)
            prof_agg_merge(&shown, &r->ring[(r->ring_at - i + PROF_RING) % PROF_RING]);
    }
}

static void prof_changed(void)
{
    prof_recompute();
    lsp_hints_changed();
    lsp_lens_changed();
}

/* Takes the samples of r's last period into its figures; true when sampling ended by itself. */
static bool prof_take(prof_run *r)
{
    bool ended = false;
    fp_profile *w = r->x && !r->busy ? fp_exec_perf_window(r->x, &ended) : NULL;
    if (!w) return ended;
    int keep = (int)(lsp.settings.profile_window_s / lsp.settings.profile_refresh_s + 0.5);
    if (keep < 1) keep = 1;
    if (keep > PROF_RING) keep = PROF_RING;
    prof_agg win = {0};
    prof_agg_of_profile(&win, w);
    fp_profile_free(w);
    prof_agg_merge(&r->whole, &win);
    /* The ring holds the last `keep` periods, oldest dropped. */
    while (r->ring_n >= keep) {
        int oldest = (r->ring_at - r->ring_n + PROF_RING) % PROF_RING;
        prof_agg_clear(&r->ring[oldest]);
        r->ring_n--;
    }
    prof_agg_clear(&r->ring[r->ring_at]);
    r->ring[r->ring_at] = win;
    r->ring_at = (r->ring_at + 1) % PROF_RING;
    r->ring_n++;
    return ended;
}

/* ===================================== Stopping ============================================== */

/* One fp.profile.stop: its answer (the fan) and the files written so far. */
typedef struct prof_stop {
    lsp_fan *fan;
    cJSON *files; /* [{pid, file, format, samples}] */
    int pending;  /* stop jobs not over yet */
} prof_stop;

typedef struct prof_job {
    uv_work_t work;
    prof_run *r;
    prof_stop *stop;
    /* starting */
    lsp_fan *fan;
    cJSON *params;
    char file[4096];
} prof_job;

static void prof_offer(const char *file);

static void prof_stop_work(uv_work_t *w)
{
    prof_job *j = w->data;
    /* Joins the sampler, writes the flame graph; the sink keeps the summary in the run. */
    fp_exec_stop(j->r->x, j->r->why);
}

static void prof_stop_after(uv_work_t *w, int status)
{
    (void)status;
    prof_job *j = w->data;
    prof_run *r = j->r;
    prof_stop *s = j->stop;
    r->busy = r->stopping = false;
    r->ended = true;
    fp_exec_free(r->x);
    r->x = NULL;
    const char *file = fp_json_str(r->stash.summary, "file", NULL);
    if (s) {
        if (file) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "pid", r->pid);
            cJSON_AddStringToObject(o, "file", file);
            cJSON_AddStringToObject(o, "format", fp_json_str(r->stash.summary, "format", ""));
            cJSON_AddNumberToObject(o, "samples", fp_json_num(r->stash.summary, "samples", 0));
            cJSON_AddItemToArray(s->files, o);
            lsp_fan_set(s->fan, "profiles", cJSON_Duplicate(s->files, 1));
            lsp_fan_ok(s->fan, r->pid);
        } else {
            fp_error e;
            if (r->stash.failed)
                e = r->stash.err;
            else
                fp_error_set(&e, FP_E_INTERNAL, NULL, "the profile of process %d was not written",
                             r->pid);
            lsp_fan_fail(s->fan, r->pid, &e);
        }
    } else if (!lsp.exiting) {
        if (file)
            lsp_show(3, "fp: process %d ended; its profile is in %s", r->pid, file);
        else if (r->stash.failed)
            lsp_log(2, "fp: the profile of process %d ended: %s", r->pid, r->stash.err.message);
    }
    if (file && !lsp.exiting) prof_offer(file);
    if (s && --s->pending == 0) { /* the fan answered with the last one */
        cJSON_Delete(s->files);
        free(s);
    }
    free(j);
    if (!lsp.exiting) {
        prof_changed();
        if (!s) lsp_status_changed(); /* a fan's answer sends it */
    }
}

/* Stops r on the thread pool (its last samples taken first); s counts it, may be NULL. */
static bool prof_stop_run(prof_run *r, prof_stop *s, const char *why)
{
    if (!r->x || r->busy) return false;
    prof_take(r);
    prof_job *j = calloc(1, sizeof *j);
    if (!j) return false;
    j->r = r;
    j->stop = s;
    j->work.data = j;
    snprintf(r->why, sizeof r->why, "%s", why);
    if (uv_queue_work(lsp.loop, &j->work, prof_stop_work, prof_stop_after) != 0) {
        free(j);
        return false;
    }
    r->busy = r->stopping = true; /* the job runs on another thread; its end comes later */
    if (s) {
        s->pending++;
        lsp_fan_add(s->fan);
    }
    return true;
}

static void prof_on_timer(uv_timer_t *t)
{
    (void)t;
    bool any = false;
    for (prof_run *r = runs; r; r = r->next) {
        if (!r->x || r->busy) continue;
        any = true;
        if (prof_take(r)) prof_stop_run(r, NULL, "the process's exit");
    }
    if (any) prof_changed();
    if (!lsp_profile_running()) uv_timer_stop(&prof_timer);
}

static void prof_timer_start(void)
{
    if (!prof_timer_init) {
        uv_timer_init(lsp.loop, &prof_timer);
        uv_unref((uv_handle_t *)&prof_timer);
        prof_timer_init = true;
    }
    uint64_t ms = (uint64_t)(lsp.settings.profile_refresh_s * 1000);
    if (!uv_is_active((uv_handle_t *)&prof_timer))
        uv_timer_start(&prof_timer, prof_on_timer, ms, ms);
}

/* ===================================== Opening the flame graph ================================ */

static void prof_on_opened(const cJSON *result, const cJSON *error, void *ud)
{
    (void)ud;
    if (error || (result && !fp_json_bool(result, "success")))
        lsp_log(2, "fp: the client did not open the flame graph");
}

static void prof_open(const char *file)
{
    char *uri = lsp_path_to_uri(file);
    if (!uri) return;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "uri", uri);
    cJSON_AddTrueToObject(p, "external");
    free(uri);
    lsp_rpc_request("window/showDocument", p, prof_on_opened, NULL);
}

static void prof_on_answer(const cJSON *result, const cJSON *error, void *ud)
{
    char *file = ud;
    if (!error && strcmp(fp_json_str(result, "title", ""), "Open flame graph") == 0)
        prof_open(file);
    free(file);
}

/* "ask": a message with an action; "always": opened at once; "never": only logged. */
static void prof_offer(const char *file)
{
    lsp_log(3, "fp: flame graph written to %s", file);
    const char *how = lsp.settings.profile_open;
    if (!lsp.show_document || strcmp(how, "never") == 0) return;
    if (strcmp(how, "always") == 0) {
        prof_open(file);
        return;
    }
    char *copy = strdup(file);
    if (!copy) return;
    char msg[4200];
    snprintf(msg, sizeof msg, "fp: flame graph written to %s", file);
    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "type", 3);
    cJSON_AddStringToObject(p, "message", msg);
    cJSON *actions = cJSON_AddArrayToObject(p, "actions");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddStringToObject(a, "title", "Open flame graph");
    cJSON_AddItemToArray(actions, a);
    lsp_rpc_request("window/showMessageRequest", p, prof_on_answer, copy);
}

/* ===================================== Starting ============================================== */

int lsp_runtime_dir(char *buf, size_t size, fp_error *err)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (xdg && xdg[0] == '/' && stat(xdg, &st) == 0 && S_ISDIR(st.st_mode) &&
        st.st_uid == getuid()) {
        if ((size_t)snprintf(buf, size, "%s/fp", xdg) >= size) goto too_long;
    } else if (fp_paths_socket_dir(getuid(), buf, size) != 0) {
        goto too_long;
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return fp_error_set(err, FP_E_IO, "set XDG_RUNTIME_DIR to a directory of yours",
                            "cannot create %s: %s", buf, strerror(errno));
    if (lstat(buf, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077))
        return fp_error_set(err, FP_E_UNTRUSTED,
                            "remove it, or set XDG_RUNTIME_DIR to a directory of yours",
                            "%s is not a private directory of this user", buf);
    return 0;
too_long:
    return fp_error_set(err, FP_E_IO, NULL, "the runtime directory's path is too long");
}

static void prof_start_work(uv_work_t *w)
{
    prof_job *j = w->data;
    fp_cmd_parsed parsed = {.cmd = fp_commands_find("perf"), .params = j->params, .file = j->file};
    fp_exec_env env = {.pid = j->r->pid, .timeout_ms = -1, .debug = lsp.debug};
    fp_exec_sink sink = {.result = prof_sink_result, .end = prof_sink_end, .ud = &j->r->stash};
    j->r->x = parsed.cmd ? fp_exec_start(&env, &parsed, &sink) : NULL;
}

static void prof_start_after(uv_work_t *w, int status)
{
    (void)status;
    prof_job *j = w->data;
    prof_run *r = j->r;
    r->busy = false;
    cJSON_Delete(j->params);
    if (!r->x || fp_exec_done(r->x)) {
        fp_error e;
        if (r->stash.failed)
            e = r->stash.err;
        else
            fp_error_set(&e, FP_E_INTERNAL, NULL, "cannot start sampling process %d", r->pid);
        fp_exec_free(r->x);
        r->x = NULL;
        r->ended = true;
        lsp_fan_fail(j->fan, r->pid, &e);
    } else if (lsp.exiting) {
        fp_exec_free(r->x);
        r->x = NULL;
        r->ended = true;
        lsp_fan_ok(j->fan, r->pid);
    } else {
        lsp_fan_ok(j->fan, r->pid);
        prof_timer_start();
    }
    free(j);
}

/* A file name for pid's flame graph in the runtime directory. */
static int prof_file(int pid, const char *format, char *buf, size_t size, fp_error *err)
{
    char dir[4000];
    if (lsp_runtime_dir(dir, sizeof dir, err) != 0) return -1;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y%m%d-%H%M%S", localtime_r(&now, &tm));
    const char *ext = strcmp(format, "speedscope") == 0 ? "speedscope.json" : "svg";
    snprintf(buf, size, "%s/profile-%d-%s.%s", dir, pid, when, ext);
    return 0;
}

static void prof_start(lsp_fan *fan, int pid, double rate, const char *format)
{
    prof_run *old = prof_find(pid);
    lsp_fan_add(fan);
    if (old && old->stopping) {
        fp_error e;
        fp_error_set(&e, FP_E_USAGE, "try again in a moment",
                     "the profile of process %d is being written", pid);
        lsp_fan_fail(fan, pid, &e);
        return;
    }
    if (old && !old->ended) { /* already sampling (or starting): it goes on */
        lsp_fan_ok(fan, pid);
        return;
    }
    prof_job *j = calloc(1, sizeof *j);
    prof_run *r = old ? old : calloc(1, sizeof *r);
    fp_error e;
    if (!j || !r || prof_file(pid, format, j->file, sizeof j->file, &e) != 0) {
        if (!j || !r) fp_error_set(&e, FP_E_INTERNAL, NULL, "out of memory");
        free(j);
        if (!old) free(r);
        lsp_fan_fail(fan, pid, &e);
        return;
    }
    if (old) { /* a new run of the same process: its old figures make way */
        prof_agg_clear(&r->whole);
        for (int i = 0; i < PROF_RING; i++)
            prof_agg_clear(&r->ring[i]);
        r->ring_n = r->ring_at = 0;
        cJSON_Delete(r->stash.summary);
        r->stash.summary = NULL;
        r->stash.failed = false;
    } else {
        r->pid = pid;
        r->next = runs;
        runs = r;
    }
    r->ended = false;
    r->busy = true;
    j->r = r;
    j->fan = fan;
    j->params = cJSON_CreateObject();
    cJSON_AddNumberToObject(j->params, "pid", pid);
    cJSON_AddNumberToObject(j->params, "rate", rate);
    cJSON_AddStringToObject(j->params, "format", format);
    j->work.data = j;
    if (uv_queue_work(lsp.loop, &j->work, prof_start_work, prof_start_after) != 0) {
        r->busy = false;
        r->ended = true;
        cJSON_Delete(j->params);
        free(j);
        fp_error_set(&e, FP_E_INTERNAL, NULL, "cannot queue the start of sampling");
        lsp_fan_fail(fan, pid, &e);
    }
}

/* fp.profile {pid?, rate?, format?}: pid, else every attached process. */
void lsp_profile_command(const cJSON *id, const cJSON *arg)
{
    const cJSON *pid = fp_json_get(arg, "pid");
    if (arg && !cJSON_IsObject(arg) && !cJSON_IsNull(arg)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.profile takes {\"pid\": N, \"rate\": HZ, \"format\": \"svg\"|"
                      "\"speedscope\"} (every member optional)");
        return;
    }
    if (pid && (!cJSON_IsNumber(pid) || pid->valuedouble < 1 || pid->valuedouble > 1 << 30)) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.profile: pid is a process id (fp.listProcesses lists them)");
        return;
    }
    double rate = fp_json_num(arg, "rate", lsp.settings.profile_rate_hz);
    if (rate < 1 || rate > 1000) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS, "fp.profile: rate is 1 to 1000 samples a second");
        return;
    }
    const char *format = fp_json_str(arg, "format", lsp.settings.profile_format);
    if (strcmp(format, "svg") != 0 && strcmp(format, "speedscope") != 0) {
        lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                      "fp.profile: format is \"svg\" (a flame graph) or \"speedscope\", not \"%s\"",
                      format);
        return;
    }
    lsp_fan *fan = lsp_fan_new(id, "fp.profile");
    if (!fan) {
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    lsp_fan_set(fan, "rate_hz", cJSON_CreateNumber(rate));
    lsp_fan_set(fan, "format", cJSON_CreateString(format));
    if (pid) {
        prof_start(fan, (int)pid->valuedouble, rate, format);
    } else {
        for (int i = 0; i < lsp_procs_count(); i++) {
            lsp_proc *p = lsp_proc_at(i);
            if (!p->closing) prof_start(fan, p->pid, rate, format);
        }
    }
    lsp_fan_close(fan);
}

/* fp.profile.stop {pid?}: every running profile, or pid's. */
void lsp_profile_stop_command(const cJSON *id, const cJSON *arg)
{
    int pid = (int)fp_json_num(arg, "pid", 0);
    int n = 0;
    for (prof_run *r = runs; r; r = r->next)
        n += (!pid || r->pid == pid) && r->x && !r->busy;
    if (n == 0) {
        if (pid)
            lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                          "fp.profile.stop: process %d is not being profiled (fp.profile starts)",
                          pid);
        else
            lsp_rpc_error(id, LSP_ERR_INVALID_PARAMS,
                          "fp.profile.stop: no profile is running (fp.profile starts one)");
        return;
    }
    prof_stop *s = calloc(1, sizeof *s);
    lsp_fan *fan = s ? lsp_fan_new(id, "fp.profile.stop") : NULL;
    if (!fan) {
        free(s);
        lsp_rpc_error(id, LSP_ERR_INTERNAL, "out of memory");
        return;
    }
    s->fan = fan;
    s->files = cJSON_CreateArray();
    lsp_fan_set(fan, "profiles", cJSON_CreateArray());
    for (prof_run *r = runs; r; r = r->next)
        if (!pid || r->pid == pid) prof_stop_run(r, s, "fp.profile.stop");
    if (s->pending == 0) { /* none could be queued: the fan answers with nothing stopped */
        cJSON_Delete(s->files);
        free(s);
    }
    lsp_fan_close(fan);
}

/* fp.profile.clear {}: forgets the figures of profiles that ended. */
void lsp_profile_clear_command(const cJSON *id, const cJSON *arg)
{
    (void)arg;
    int n = 0;
    for (prof_run **rr = &runs; *rr;) {
        prof_run *r = *rr;
        if (!r->ended || r->busy) {
            rr = &r->next;
            continue;
        }
        *rr = r->next;
        prof_run_free(r);
        n++;
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddNumberToObject(res, "cleared", n);
    cJSON_AddNumberToObject(res, "running", lsp_profile_running());
    prof_changed();
    lsp_rpc_result(id, res);
}

void lsp_profile_shutdown(void)
{
    if (prof_timer_init) uv_timer_stop(&prof_timer);
    for (prof_run *r = runs; r; r = r->next) {
        if (!r->x || r->busy) continue; /* a job's end frees it */
        fp_exec_free(r->x);
        r->x = NULL;
        r->ended = true;
    }
}

/* ===================================== Showing =============================================== */

/* The def of doc that the function (as the process names it: co_qualname on 3.11+, co_name
 * before) defined at first_line (1-based, as loaded) is now: by name, the nearest to where it
 * was when names repeat. NULL when none. */
static const lsp_def *prof_def_of(lsp_doc *doc, const char *function, int first_line)
{
    const lsp_defs *defs = lsp_doc_defs(doc);
    const lsp_def *exact = lsp_defs_find(defs, function);
    if (exact) return exact;
    const lsp_def *best = NULL;
    int best_d = 0;
    for (int i = 0; i < defs->n; i++) {
        const lsp_def *d = &defs->defs[i];
        if (d->is_class || strcmp(d->name, function) != 0) continue;
        int dist = abs(d->first_line + 1 - first_line);
        if (!best || dist < best_d) {
            best = d;
            best_d = dist;
        }
    }
    return best;
}

/* "█▌": one block per 10 %, a half block for what is left. */
static void prof_bar(double pct, char *buf, size_t size)
{
    size_t n = 0;
    int full = (int)(pct / 10);
    if (full > 10) full = 10;
    buf[0] = '\0';
    for (int i = 0; i < full && n + 4 < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "\u2588");
    if (full < 10 && pct - full * 10 > 0.05 && n + 4 < size) snprintf(buf + n, size - n, "\u258c");
}

static double prof_pct(uint64_t n)
{
    return shown.samples ? 100.0 * (double)n / (double)shown.samples : 0;
}

static cJSON *prof_hint(int line, int character, const prof_entry *e)
{
    char bar[64], label[160], tip[512];
    double total = prof_pct(e->total), self = prof_pct(e->self);
    prof_bar(total, bar, sizeof bar);
    snprintf(label, sizeof label, "%s %.1f%% (self %.1f%%)", bar, total, self);
    snprintf(tip, sizeof tip,
             "fp profile: this line was on the stack in %llu of %llu samples (%.1f%%), running in "
             "%llu (%.1f%%); in %s, line %d as loaded",
             (unsigned long long)e->total, (unsigned long long)shown.samples, total,
             (unsigned long long)e->self, self, e->function, e->line);
    cJSON *h = cJSON_CreateObject();
    cJSON *pos = cJSON_AddObjectToObject(h, "position");
    cJSON_AddNumberToObject(pos, "line", line);
    cJSON_AddNumberToObject(pos, "character", character);
    cJSON_AddStringToObject(h, "label", label);
    cJSON_AddStringToObject(h, "tooltip", tip);
    cJSON_AddBoolToObject(h, "paddingLeft", true);
    cJSON *data = cJSON_AddObjectToObject(h, "data");
    cJSON_AddStringToObject(data, "source", "fp profile");
    cJSON_AddNumberToObject(data, "total_pct", total);
    cJSON_AddNumberToObject(data, "self_pct", self);
    cJSON_AddNumberToObject(data, "samples", (double)e->total);
    return h;
}

void lsp_profile_hints(lsp_doc *doc, int from, int to, cJSON *out)
{
    if (!doc->path[0] || shown.samples == 0) return;
    int nlines = lsp_doc_lines(doc);
    for (int i = 0; i < shown.n; i++) {
        const prof_entry *e = &shown.e[i];
        if (e->line <= 0 || strcmp(e->file, doc->path) != 0) continue;
        if (prof_pct(e->total) < lsp.settings.hot_threshold_pct || e->total == 0) continue;
        /* Where the line is now: as far below its function's first line as it was. */
        const lsp_def *d = prof_def_of(doc, e->function, e->first_line);
        int line = d ? d->first_line + (e->line - e->first_line) : e->line - 1;
        if (line < 0 || line >= nlines || line < from || line > to) continue;
        cJSON_AddItemToArray(out, prof_hint(line, lsp_doc_line_end(doc, line), e));
    }
}

char *lsp_profile_lens(lsp_doc *doc, const lsp_def *def)
{
    if (!doc->path[0] || shown.samples == 0 || def->is_class) return NULL;
    uint64_t self = 0, total = 0;
    bool found = false;
    for (int i = 0; i < shown.n; i++) {
        const prof_entry *e = &shown.e[i];
        if (e->line != 0 || strcmp(e->file, doc->path) != 0) continue;
        if (prof_def_of(doc, e->function, e->first_line) != def) continue;
        self += e->self;
        total += e->total;
        found = true;
    }
    if (!found) return NULL;
    char title[256];
    snprintf(title, sizeof title, "fp profile: %.1f%% of samples (self %.1f%%)%s", prof_pct(total),
             prof_pct(self), lsp_profile_running() ? "" : " \u00b7 stopped");
    return strdup(title);
}
