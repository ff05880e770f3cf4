/* The stacks in gilstat's threshold reports: read from outside with the out-of-process reader
 * (fp_remote), without stopping the process, while the slow wait or hold may still be going
 * on. The reader is opened at the first slow span and kept for the collector's life. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_remote.h"
#include "gil_internal.h"

struct gil_stack_reader {
    int pid;
    fp_remote *remote;
    char failed[160]; /* why the reader could not be opened; then no more tries */
};

gil_stack_reader *fp_gil_stack_reader_new(int pid)
{
    gil_stack_reader *sr = calloc(1, sizeof *sr);
    if (sr) sr->pid = pid;
    return sr;
}

void fp_gil_stack_reader_free(gil_stack_reader *sr)
{
    if (!sr) return;
    fp_remote_close(sr->remote);
    free(sr);
}

/* The frames of thread tid in the stack model, detached from it (caller frees). */
static cJSON *frames_of(cJSON *model, int tid)
{
    cJSON *threads = cJSON_GetObjectItemCaseSensitive(model, "threads");
    cJSON *th;
    cJSON_ArrayForEach(th, threads)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(th, "native_id");
        if (cJSON_IsNumber(id) && (int)id->valuedouble == tid)
            return cJSON_DetachItemFromObjectCaseSensitive(th, "frames");
    }
    return NULL;
}

static bool reader_open(gil_stack_reader *sr)
{
    if (!sr->remote && !sr->failed[0]) {
        fp_error e;
        fp_error_clear(&e);
        sr->remote = fp_remote_open(sr->pid, &e);
        if (!sr->remote) snprintf(sr->failed, sizeof sr->failed, "%.150s", e.message);
    }
    return sr->remote != NULL;
}

int fp_gil_stack_holder(gil_stack_reader *sr)
{
    fp_remote_snapshot snap;
    fp_error e;
    if (!reader_open(sr) || fp_remote_snapshot_take(sr->remote, FP_SNAP_NO_STOP, &snap, &e) != 0)
        return 0;
    int tid = 0;
    for (int i = 0; i < snap.nthreads && !tid; i++)
        if (snap.threads[i].holds_gil) tid = snap.threads[i].native_id;
    fp_remote_snapshot_free(&snap);
    return tid;
}

void fp_gil_stack_names(gil_stack_reader *sr, gil_stats *s)
{
    fp_remote_snapshot snap;
    fp_error e;
    fp_error_clear(&e);
    if (!reader_open(sr) ||
        fp_remote_snapshot_take(sr->remote, FP_SNAP_NO_STOP | FP_SNAP_THREAD_NAMES, &snap, &e) != 0)
        return; /* the kernel's names stay */
    for (int i = 0; i < snap.nthreads; i++)
        if (snap.threads[i].native_id > 0 && snap.threads[i].thread_name)
            fp_gil_stats_name(s, snap.threads[i].native_id, snap.threads[i].thread_name);
    fp_remote_snapshot_free(&snap);
}

cJSON *fp_gil_stack_read(gil_stack_reader *sr, int tid, char *why, size_t size)
{
    if (!reader_open(sr)) {
        snprintf(why, size, "stack unavailable: %s", sr->failed);
        return NULL;
    }
    fp_remote_snapshot snap;
    fp_error e;
    fp_error_clear(&e);
    /* Never stop the process for this: the stack is a hint, the counts are the measurement. */
    if (fp_remote_snapshot_take(sr->remote, FP_SNAP_NO_STOP, &snap, &e) != 0) {
        snprintf(why, size, "stack unavailable: %.150s", e.message);
        return NULL;
    }
    cJSON *model = fp_remote_stack_model(sr->remote, &snap);
    fp_remote_snapshot_free(&snap);
    cJSON *frames = model ? frames_of(model, tid) : NULL;
    cJSON_Delete(model);
    if (!frames) snprintf(why, size, "stack unavailable: thread %d has no Python frames now", tid);
    return frames;
}
