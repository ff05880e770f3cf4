/* GIL statistics from outside the process (`gilstat`): every GIL acquisition and release of
 * every thread, counted and timed exactly, from uprobes on CPython's take_gil/drop_gil whose
 * hits a tiny BPF program stamps into one ring buffer. No agent, no ptrace; closing the
 * collector (or fp's exit) removes every probe. Ownership: fp_gil_open returns a collector the
 * caller frees with fp_gil_close; models passed to the emit callback are borrowed for the call. */
#ifndef FP_GIL_H
#define FP_GIL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "fp_error.h"

typedef struct fp_gil fp_gil;

/* Receives each model: method is FP_NOTE_GILSTAT_STARTED, _REPORT (every interval),
 * _THRESHOLD (a wait or hold longer than its threshold) or _STOPPED (fp_notes.h). */
typedef void (*fp_gil_emit_fn)(const char *method, const cJSON *model, void *ud);

/* Returns thread tid's Python stack as a JSON array of frames (outermost first, like the
 * stack command's FRAME: file, line, function, source), caller frees; or NULL with why
 * filled (one line). Called from the collector's thread, while the thread may still run. */
typedef cJSON *(*fp_gil_stack_fn)(int pid, int tid, void *ud, char *why, size_t why_size);

typedef struct fp_gil_opts {
    double take_ms;  /* report each wait for the GIL longer than this; 0: none */
    double hold_ms;  /* report each hold of the GIL longer than this; 0: none */
    int interval_ms; /* periodic per-thread reports; 0: 5000 */
    fp_gil_emit_fn emit;
    void *emit_ud;
    fp_gil_stack_fn stack; /* NULL: read from outside with fp_remote (FP_SNAP_NO_STOP) */
    void *stack_ud;
} fp_gil_opts;

/* Finds take_gil/drop_gil in pid's interpreter, installs the probes and emits
 * FP_NOTE_GILSTAT_STARTED. Fails with FP_E_NO_PROCESS, FP_E_NOT_PYTHON, FP_E_PERMISSION or
 * FP_E_UNSUPPORTED (a build or kernel where exact counts are impossible: the message says why). */
fp_gil *fp_gil_open(int pid, const fp_gil_opts *opts, fp_error *err);

/* Waits up to max_wait_ms for the next thing to do, then processes the events that arrived
 * and emits the reports that fell due. Returns 1 while the process runs, 0 once it has exited
 * (the last report is then emitted by fp_gil_close). */
int fp_gil_step(fp_gil *g, int max_wait_ms);

/* Milliseconds until fp_gil_step has something to do (drain the probes, a report due). A loop
 * that steps with max_wait_ms 0 calls it again then. */
int fp_gil_due_ms(const fp_gil *g);

/* Emits the last, partial window's report and FP_NOTE_GILSTAT_STOPPED with reason ("gilstat off",
 * "timeout", ...), removes every probe and frees g. NULL is ignored. */
void fp_gil_close(fp_gil *g, const char *reason);

#endif
