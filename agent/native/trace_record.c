/* The trace recorder's calling-context tree (see trace_internal.h): what a recording holds,
 * the clock it reads, and the parts of the tree's upkeep that do not run at every event. */
#include "trace_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

_Thread_local fp_trace_rec *fp_trace_tls;
_Atomic long fp_trace_strays;
const char fp_trace_capsule_name[] = "fp_agent.trace.recording";
int fp_trace_code_mode;

/* ===================================== Ticks ================================================= */

/* Every call reads the clock twice, so its price matters: the TSC costs a third of a vDSO
 * clock_gettime. It is used only where the kernel itself keeps time with it (clocksource
 * "tsc": invariant and synchronised across CPUs); costs are converted to ns when the tree is
 * read, by the rate measured since the package was loaded. Elsewhere ticks are ns. */
int fp_trace_tsc;
static int64_t fp_trace_cal_ns;
static int64_t fp_trace_cal_ticks;

void fp_trace_ticks_init(void)
{
#if defined(__x86_64__)
    unsigned a = 0, b = 0, c = 0, d = 0;
    char source[32] = "";
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "re");
    if (f) {
        if (!fgets(source, sizeof source, f)) source[0] = '\0';
        fclose(f);
    }
    /* CPUID 0x80000007 EDX bit 8: invariant TSC. */
    if (strncmp(source, "tsc", 3) == 0 && (source[3] == '\n' || source[3] == '\0') &&
        __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8)))
        fp_trace_tsc = 1;
#endif
    fp_trace_cal_ns = fp_trace_now();
    fp_trace_cal_ticks = fp_trace_ticks();
}

double fp_trace_tick_ns(void)
{
    if (!fp_trace_tsc) return 1.0;
    int64_t ns = fp_trace_now() - fp_trace_cal_ns, ticks = fp_trace_ticks() - fp_trace_cal_ticks;
    return ns > 0 && ticks > 0 ? (double)ns / (double)ticks : 1.0;
}

/* ===================================== The tree ============================================== */

void fp_trace_unref(fp_trace_rec *r)
{
    if (--r->refs > 0) return;
    for (uint32_t i = 1; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        if (n->kind == FP_TRACE_PY) fp_py.Py_DecRef((fp_pyobj *)n->key);
        if (n->owner) fp_py.Py_DecRef(n->owner);
    }
    if (r->root_code) fp_py.Py_DecRef(r->root_code);
    if (r->root_frame) fp_py.Py_DecRef(r->root_frame);
    if (r->pass_frame) fp_py.Py_DecRef(r->pass_frame);
    free(r->nodes);
    free(r->table);
    free(r);
}

int fp_trace_grow_table(fp_trace_rec *r)
{
    uint32_t size = r->tmask ? (r->tmask + 1) * 2 : 1024;
    uint32_t *t = calloc(size, sizeof *t);
    if (!t) return -1;
    for (uint32_t i = 1; i < r->nnodes; i++) {
        fp_trace_node *n = &r->nodes[i];
        size_t h = fp_trace_hash(n->parent, n->key, n->owner, n->call_line) & (size - 1);
        while (t[h])
            h = (h + 1) & (size - 1);
        t[h] = i;
    }
    free(r->table);
    r->table = t;
    r->tmask = size - 1;
    return 0;
}

uint32_t fp_trace_child(fp_trace_rec *r, uint32_t parent, uint8_t kind, const void *key,
                        fp_pyobj *owner, int32_t call_line, int *created)
{
    *created = 0;
    size_t h = fp_trace_hash(parent, key, owner, call_line) & r->tmask;
    for (uint32_t i; (i = r->table[h]) != 0; h = (h + 1) & r->tmask) {
        fp_trace_node *n = &r->nodes[i];
        if (n->key == key && n->owner == owner && n->parent == parent && n->kind == kind &&
            n->call_line == call_line)
            return i;
    }
    if (r->nodes[parent].depth >= r->max_depth) return FP_TRACE_NONE;
    if (r->nnodes >= r->max_nodes) {
        r->cut |= FP_TRACE_CUT_NODES;
        return FP_TRACE_NONE;
    }
    if (r->nnodes == r->cap) {
        uint32_t cap = r->cap * 2;
        fp_trace_node *nodes = realloc(r->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            r->cut |= FP_TRACE_CUT_NODES;
            return FP_TRACE_NONE;
        }
        r->nodes = nodes;
        r->cap = cap;
    }
    /* Keep the table at most half full. */
    if ((r->nnodes + 1) * 2 > r->tmask + 1) {
        if (fp_trace_grow_table(r) != 0) {
            r->cut |= FP_TRACE_CUT_NODES;
            return FP_TRACE_NONE;
        }
        h = fp_trace_hash(parent, key, owner, call_line) & r->tmask;
        while (r->table[h])
            h = (h + 1) & r->tmask;
    }
    uint32_t i = r->nnodes++;
    r->nodes[i] = (fp_trace_node){.key = key,
                                  .owner = owner,
                                  .parent = parent,
                                  .depth = (uint16_t)(r->nodes[parent].depth + 1),
                                  .kind = kind,
                                  .call_line = call_line};
    r->table[h] = i;
    *created = 1;
    return i;
}

void fp_trace_mark_stop(fp_trace_rec *r)
{
    if (!r->t_stop) {
        r->t_stop = fp_trace_now();
        r->tick_stop = fp_trace_ticks();
    }
}

/* Ends a recording that no event will reach any more: calls still open (the root suspended in
 * one, an exception on its way, the probe's own frames) end at its stop time. */
void fp_trace_finish(fp_trace_rec *r)
{
    while (r->sp > 0)
        fp_trace_pop(r, r->tick_stop);
    r->stopped = 1;
    /* Nothing is compared any more (a hook still installed elsewhere only leaves): the frames
     * go now, not with the recording. */
    if (r->root_frame) fp_py.Py_DecRef(r->root_frame);
    if (r->pass_frame) fp_py.Py_DecRef(r->pass_frame);
    r->root_frame = r->pass_frame = NULL;
}
