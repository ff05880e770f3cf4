/* The human renderers of `torch`: what a profile or a recording is waiting for, each profiled
 * call's summary (the operators by self CPU and CUDA time, the memory the call allocated, where
 * the trace went), the allocator's history of a recorded call, a snapshot, and the end. */
#include "fp_cli.h"

#include <string.h>

static const char *rt_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double rt_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* "512 B", "1.5 KiB", "12.0 MiB", "1.25 GiB"; negative sizes keep their sign. */
static void rt_bytes(FILE *out, double n)
{
    const char *sign = n < 0 ? "-" : "";
    if (n < 0) n = -n;
    if (n < 1024)
        fprintf(out, "%s%.0f B", sign, n);
    else if (n < 1024.0 * 1024)
        fprintf(out, "%s%.1f KiB", sign, n / 1024);
    else if (n < 1024.0 * 1024 * 1024)
        fprintf(out, "%s%.1f MiB", sign, n / (1024.0 * 1024));
    else
        fprintf(out, "%s%.2f GiB", sign, n / (1024.0 * 1024 * 1024));
}

static void rt_located(FILE *out, const cJSON *r)
{
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(r, "located");
    fprintf(out, "%s (%s, %s:%.0f)", rt_str(loc, "qualname", "?"), rt_str(loc, "kind", "function"),
            rt_str(loc, "file", "?"), rt_num(loc, "line", 0));
}

static void rt_note(FILE *out, const cJSON *r)
{
    const char *note = rt_str(r, "note", NULL);
    if (note) fprintf(out, "note: %s\n", note);
    const char *busy = rt_str(r, "busy", NULL);
    if (busy) fprintf(out, "waiting: %s\n", busy);
}

/* ---- results */

static void rt_profile_started(FILE *out, const cJSON *r)
{
    double limit = rt_num(r, "limit", 1);
    fputs("profiling ", out);
    if (limit > 1)
        fprintf(out, "the next %.0f calls of ", limit);
    else
        fputs("the next call of ", out);
    rt_located(out, r);
    const char *device = rt_str(r, "device", "auto");
    if (strcmp(device, "cuda") == 0)
        fputs(" with torch's profiler: CPU and CUDA activities", out);
    else if (strcmp(device, "cpu") == 0)
        fputs(" with torch's profiler: CPU activities only", out);
    else if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "cuda")))
        fputs(" with torch's profiler: CPU and CUDA activities (the process uses CUDA)", out);
    else
        fputs(" with torch's profiler: CPU activities (the process has not initialised CUDA)", out);
    fprintf(out, "; trace to %s%s (Ctrl-C stops)\n", rt_str(r, "file", "?"),
            limit > 1 ? " with the call's number before the extension" : "");
    rt_note(out, r);
}

static void rt_record_started(FILE *out, const cJSON *r)
{
    fputs("recording the CUDA allocator's history around the next call of ", out);
    rt_located(out, r);
    fprintf(out, "; snapshot to %s (Ctrl-C stops)\n", rt_str(r, "file", "?"));
    rt_note(out, r);
}

static void rt_origin(FILE *out, const cJSON *a)
{
    const cJSON *origin = cJSON_GetObjectItemCaseSensitive(a, "origin");
    if (cJSON_IsObject(origin)) {
        fprintf(out, "  %s:%.0f in %s", rt_str(origin, "file", "?"), rt_num(origin, "line", 0),
                rt_str(origin, "name", "?"));
        return;
    }
    const cJSON *frames = cJSON_GetObjectItemCaseSensitive(a, "frames");
    if (cJSON_GetArraySize(frames) == 0)
        fputs("  (no stack: made before recording started, or recorded without one)", out);
    else
        fputs("  (inside torch only)", out);
}

static void rt_largest(FILE *out, const cJSON *largest, const char *title)
{
    if (cJSON_GetArraySize(largest) == 0) return;
    fprintf(out, "%s:\n", title);
    const cJSON *a;
    cJSON_ArrayForEach(a, largest)
    {
        fputs("  ", out);
        rt_bytes(out, rt_num(a, "size", 0));
        fprintf(out, "  cuda:%.0f", rt_num(a, "device", 0));
        rt_origin(out, a);
        fputc('\n', out);
    }
}

static void rt_written(FILE *out, const cJSON *r, const char *how)
{
    const char *file = rt_str(r, "file", NULL);
    if (!file) return;
    fprintf(out, "written to %s (", file);
    rt_bytes(out, rt_num(r, "bytes", 0));
    fprintf(out, "): %s\n", how);
}

static void rt_snapshot(FILE *out, const cJSON *r)
{
    const cJSON *devices = cJSON_GetObjectItemCaseSensitive(r, "devices");
    fprintf(out, "CUDA caching allocator snapshot (torch %s)\n", rt_str(r, "torch_version", "?"));
    const cJSON *d;
    cJSON_ArrayForEach(d, devices)
    {
        fprintf(out, "  cuda:%.0f  reserved ", rt_num(d, "device", 0));
        rt_bytes(out, rt_num(d, "reserved_bytes", 0));
        fputs(", allocated ", out);
        rt_bytes(out, rt_num(d, "allocated_bytes", 0));
        fprintf(out, " in %.0f segments, %.0f blocks", rt_num(d, "segments", 0),
                rt_num(d, "blocks", 0));
        double entries = rt_num(d, "history_entries", 0);
        if (entries > 0) fprintf(out, "; %.0f history entries", entries);
        fputc('\n', out);
    }
    if (cJSON_GetArraySize(devices) == 0) fputs("  no CUDA memory is reserved\n", out);
    rt_largest(out, cJSON_GetObjectItemCaseSensitive(r, "largest"), "largest live allocations");
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "history")))
        fputs("the program does not record the allocator's history: allocations have no stacks "
              "(torch "
              "memory -r records them around a call)\n",
              out);
    rt_written(out, r, "open it at https://pytorch.org/memory_viz");
}

void render_torch_result(FILE *out, const char *method, const cJSON *result)
{
    if (strcmp(method, "torch.profile.start") == 0)
        rt_profile_started(out, result);
    else if (strcmp(method, "torch.memory.record") == 0)
        rt_record_started(out, result);
    else if (strcmp(method, "torch.memory.snapshot") == 0)
        rt_snapshot(out, result);
}

/* ---- notifications */

static void rt_header(FILE *out, const cJSON *ev)
{
    fprintf(out, "[%.0f] ", rt_num(ev, "index", 0));
    render_epoch(out, rt_num(ev, "time", 0));
    fputs("  ", out);
    render_thread(out, cJSON_GetObjectItemCaseSensitive(ev, "thread"));
    fputs("  cost ", out);
    render_cost(out, rt_num(ev, "cost_ms", 0));
    const char *raised = rt_str(ev, "raised", NULL);
    if (raised) fprintf(out, "  (raised %s)", raised);
    fputc('\n', out);
}

static void rt_ops(FILE *out, const cJSON *ops, const char *self_key, const char *total_key,
                   const char *self_label, const char *total_label, double all_ms)
{
    if (cJSON_GetArraySize(ops) == 0) return;
    fprintf(out, "  %12s %6s %12s %7s  NAME\n", self_label, "%", total_label, "CALLS");
    const cJSON *op;
    cJSON_ArrayForEach(op, ops)
    {
        double self = rt_num(op, self_key, 0);
        fprintf(out, "  %9.3f ms %5.1f%% %9.3f ms %7.0f  %s\n", self,
                all_ms > 0 ? 100.0 * self / all_ms : 0, rt_num(op, total_key, 0),
                rt_num(op, "count", 0), rt_str(op, "name", "?"));
    }
}

static void rt_profile(FILE *out, const cJSON *ev)
{
    rt_header(out, ev);
    const char *error = rt_str(ev, "error", NULL);
    double cpu_ms = rt_num(ev, "self_cpu_ms", 0);
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(ev, "ops");
    if (ops) {
        fprintf(out, "operators by self CPU time (%.0f operators, %.0f calls, ",
                rt_num(ev, "operators", 0), rt_num(ev, "op_calls", 0));
        render_cost(out, cpu_ms);
        fputs(" of CPU in all):\n", out);
        rt_ops(out, ops, "self_cpu_ms", "cpu_ms", "SELF CPU", "TOTAL CPU", cpu_ms);
        if (cJSON_GetArraySize(ops) == 0) fputs("  (no torch operator ran during the call)\n", out);
    }
    const cJSON *cuda_ops = cJSON_GetObjectItemCaseSensitive(ev, "cuda_ops");
    if (cuda_ops) {
        double cuda_ms = rt_num(ev, "self_cuda_ms", 0);
        fputs("operators and kernels by self CUDA time (", out);
        render_cost(out, cuda_ms);
        fputs(" of CUDA in all):\n", out);
        rt_ops(out, cuda_ops, "self_cuda_ms", "cuda_ms", "SELF CUDA", "TOTAL CUDA", cuda_ms);
        if (cJSON_GetArraySize(cuda_ops) == 0) fputs("  (no CUDA activity during the call)\n", out);
    }
    const cJSON *mem;
    cJSON_ArrayForEach(mem, cJSON_GetObjectItemCaseSensitive(ev, "memory"))
    {
        fprintf(out, "memory (%s) during the call: peak ", rt_str(mem, "device", "?"));
        rt_bytes(out, rt_num(mem, "peak_bytes", 0));
        fputs(" above what it started with, ", out);
        rt_bytes(out, rt_num(mem, "end_bytes", 0));
        fprintf(out, " still held at its end; %.0f allocations, ", rt_num(mem, "allocations", 0));
        rt_bytes(out, rt_num(mem, "allocated_bytes", 0));
        fputs(" in all\n", out);
    }
    if (error) fprintf(out, "error: %s\n", error);
    rt_written(out, ev, "open it in https://ui.perfetto.dev or chrome://tracing");
}

static void rt_memory(FILE *out, const cJSON *ev)
{
    rt_header(out, ev);
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(ev, "devices"))
    {
        fprintf(out, "cuda:%.0f  allocated ", rt_num(d, "device", 0));
        rt_bytes(out, rt_num(d, "start_allocated_bytes", 0));
        fputs(" at the start, peak ", out);
        rt_bytes(out, rt_num(d, "peak_allocated_bytes", 0));
        fputs(", ", out);
        rt_bytes(out, rt_num(d, "end_allocated_bytes", 0));
        fputs(" at the end; reserved ", out);
        rt_bytes(out, rt_num(d, "start_reserved_bytes", 0));
        fputs(", peak ", out);
        rt_bytes(out, rt_num(d, "peak_reserved_bytes", 0));
        fputs(", ", out);
        rt_bytes(out, rt_num(d, "end_reserved_bytes", 0));
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(d, "counts");
        fprintf(
            out,
            "\n         %.0f allocations, %.0f frees, %.0f new segments, %.0f segments released",
            rt_num(counts, "alloc", 0), rt_num(counts, "free", 0),
            rt_num(counts, "segment_alloc", 0), rt_num(counts, "segment_free", 0));
        if (rt_num(counts, "oom", 0) > 0)
            fprintf(out, ", %.0f OUT OF MEMORY", rt_num(counts, "oom", 0));
        fputc('\n', out);
    }
    rt_largest(out, cJSON_GetObjectItemCaseSensitive(ev, "largest"),
               "largest allocations during the call");
    const char *not_seen = rt_str(ev, "not_seen", NULL);
    if (not_seen) fprintf(out, "not seen: %s\n", not_seen);
    const char *error = rt_str(ev, "error", NULL);
    if (error) fprintf(out, "error: %s\n", error);
    rt_written(out, ev, "open it at https://pytorch.org/memory_viz");
}

static void rt_end(FILE *out, const cJSON *end)
{
    const char *reason = rt_str(end, "reason", "?");
    bool memory = strcmp(rt_str(end, "kind", "profile"), "memory") == 0;
    double count = rt_num(end, "count", 0);
    fprintf(out, "torch %s ended (%s): %.0f call%s %s", memory ? "memory -r" : "profile",
            strcmp(reason, "limit") == 0 ? "done" : reason, count, count == 1 ? "" : "s",
            memory ? "recorded" : "profiled");
    double skipped = rt_num(end, "skipped", 0);
    if (skipped > 0) fprintf(out, ", %.0f skipped", skipped);
    fputc('\n', out);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(end, "pending")) && !memory)
        fputs("a profiled call is still running: torch's profiler stops when it returns (it "
              "belongs to "
              "that call's thread); its results are discarded\n",
              out);
}

void render_torch_notification(FILE *out, const char *method, const cJSON *params)
{
    if (strcmp(method, "torch/profile") == 0)
        rt_profile(out, params);
    else if (strcmp(method, "torch/memory") == 0)
        rt_memory(out, params);
    else if (strcmp(method, "torch/end") == 0)
        rt_end(out, params);
    else if (strcmp(method, "torch/skipped") == 0) {
        fputs("a call on ", out);
        render_thread(out, cJSON_GetObjectItemCaseSensitive(params, "thread"));
        fprintf(out, " was skipped: %s\n", rt_str(params, "reason", "?"));
    }
}
