/* The gilstat command in the terminal client: runs the collector (server/remote/gil.c) on the
 * process. With --cmd or piped commands it streams reports until --timeout, Ctrl-C or the
 * process's exit; in the interactive shell it runs on a thread of its own until gilstat off,
 * quit or fp's exit, so the shell stays usable. The probes belong to fp's file descriptors:
 * however fp ends, the kernel removes them. */
#include "fp_cli.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fp_gil.h"

#define GILSTAT_STEP_MS 100 /* the longest a step waits: bounds how late Ctrl-C is noticed */

typedef struct gilstat_bg {
    pthread_t thread;
    fp_gil *g;
    bool started;     /* a thread exists and must be joined */
    atomic_int stop;  /* set by gilstat off / fp's exit */
    atomic_int ended; /* the thread has finished (the process exited) */
    const char *why;  /* what stopped it, for the stop line */
} gilstat_bg;

static gilstat_bg gilstat_background;

static void gilstat_emit(const char *method, const cJSON *model, void *ud)
{
    bool json = *(const bool *)ud;
    /* One report stays in one piece even while the shell prints something else. */
    flockfile(stdout);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "method", method);
            cJSON_AddItemReferenceToObject(o, "params", (cJSON *)model);
            run_emit_json("gilstat", "notification", o);
            cJSON_Delete(o);
        }
    } else {
        render_gilstat(stdout, method, model);
        fflush(stdout);
    }
    funlockfile(stdout);
}

static double gilstat_param(const fp_cmd_parsed *p, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(p->params, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static uint64_t gilstat_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void gilstat_result(cli *c, const char *action, bool background)
{
    if (!c->json) return;
    cJSON *r = cJSON_CreateObject();
    if (!r) return;
    cJSON_AddStringToObject(r, "action", action);
    cJSON_AddBoolToObject(r, "background", background);
    run_emit_json("gilstat", "result", r);
    cJSON_Delete(r);
}

/* ---- in the foreground: --cmd and scripts */

static int gilstat_foreground(cli *c, fp_gil *g)
{
    uint64_t deadline = c->timeout_set ? gilstat_now_ms() + (uint64_t)c->timeout_ms : 0;
    const char *why = NULL;
    cli_interrupted = 0;
    while (!why) {
        int wait = GILSTAT_STEP_MS;
        if (deadline) {
            uint64_t now = gilstat_now_ms();
            if (now >= deadline) {
                why = "--timeout";
                break;
            }
            if (deadline - now < (uint64_t)wait) wait = (int)(deadline - now);
        }
        if (fp_gil_step(g, wait) == 0) why = "the process exited";
        if (cli_interrupted) why = "Ctrl-C";
    }
    fp_gil_close(g, why);
    fflush(stdout);
    return CLI_EXIT_OK;
}

/* ---- in the background: the interactive shell */

static void *gilstat_thread(void *arg)
{
    gilstat_bg *bg = arg;
    while (!atomic_load(&bg->stop))
        if (fp_gil_step(bg->g, GILSTAT_STEP_MS) == 0) break;
    fp_gil_close(bg->g, bg->why);
    bg->g = NULL;
    atomic_store(&bg->ended, 1);
    return NULL;
}

/* Stops and joins the background collector, if any; its last report and the stop line are
 * printed by it. Returns whether one was running. */
static bool gilstat_stop_background(const char *why)
{
    gilstat_bg *bg = &gilstat_background;
    if (!bg->started) return false;
    bool was_running = !atomic_load(&bg->ended);
    bg->why = why; /* published to the thread by the atomic store below */
    atomic_store(&bg->stop, 1);
    pthread_join(bg->thread, NULL);
    bg->started = false;
    return was_running;
}

static void gilstat_atexit(void)
{
    gilstat_stop_background("fp left");
}

static int gilstat_start_background(cli *c, fp_gil *g)
{
    static bool registered;
    gilstat_bg *bg = &gilstat_background;
    bg->g = g;
    atomic_store(&bg->stop, 0);
    atomic_store(&bg->ended, 0);
    /* The collector must never take the shell's Ctrl-C (it interrupts the shell's waits):
     * it starts with every signal blocked. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&bg->thread, NULL, gilstat_thread, bg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fp_gil_close(g, "no thread");
        fp_error e;
        fp_error_set(&e, FP_E_INTERNAL, NULL, "cannot start gilstat's thread");
        run_report(c, "gilstat", &e);
        return CLI_EXIT_FAILED;
    }
    bg->started = true;
    if (!registered) registered = atexit(gilstat_atexit) == 0;
    gilstat_result(c, "on", true);
    if (!c->json) printf("gilstat runs in the background; gilstat off stops it\n");
    return CLI_EXIT_OK;
}

/* ---- the command */

static int gilstat_off(cli *c)
{
    /* A collector whose process exited has finished on its own: join it quietly. */
    bool ended = gilstat_background.started && atomic_load(&gilstat_background.ended);
    if (!gilstat_stop_background("gilstat off") && !ended) {
        fp_error e;
        fp_error_set(&e, FP_E_USAGE, "gilstat on starts it", "gilstat is not running");
        run_report(c, "gilstat", &e);
        return CLI_EXIT_FAILED;
    }
    gilstat_result(c, "off", false);
    return CLI_EXIT_OK;
}

int gilstat_run(cli *c, const fp_cmd_parsed *p)
{
    const char *action =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p->params, "action"));
    if (action && strcmp(action, "off") == 0) return gilstat_off(c);
    if (gilstat_background.started && !atomic_load(&gilstat_background.ended)) {
        fp_error e;
        fp_error_set(&e, FP_E_USAGE, "gilstat off stops it first", "gilstat is already on");
        run_report(c, "gilstat", &e);
        return CLI_EXIT_FAILED;
    }
    if (gilstat_background.started) gilstat_stop_background(NULL); /* join a finished one */

    static bool json;
    json = c->json;
    fp_gil_opts o = {
        .take_ms = gilstat_param(p, "take_ms"),
        .hold_ms = gilstat_param(p, "hold_ms"),
        .interval_ms = (int)(gilstat_param(p, "interval_s") * 1000),
        .emit = gilstat_emit,
        .emit_ud = &json,
    };
    fp_error e;
    fp_error_clear(&e);
    fp_gil *g = fp_gil_open(c->pid, &o, &e);
    if (!g) {
        run_report(c, "gilstat", &e);
        return CLI_EXIT_FAILED;
    }
    return c->interactive ? gilstat_start_background(c, g) : gilstat_foreground(c, g);
}
