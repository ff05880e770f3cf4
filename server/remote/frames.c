/* A thread's Python frames read from outside, innermost first: the PyFrameObject chain
 * (f_back) up to 3.10, the _PyInterpreterFrame chain (previous) from 3.11. Two steps: the
 * chains while the threads are stopped (one read per chain level for all threads at once),
 * then, once they run again, each frame's code object, name and line. Garbage ends a
 * chain, never the reader. A chain read while its thread runs (sampling) can also end
 * early, on a frame that was suspended or reused meanwhile: a chain is only whole when it
 * ends on the frame its thread entered Python with (frames_rooted), else it is torn. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "remote_internal.h"

#define FRAMES_RECENT 16 /* a cycle shorter than this ends the chain at once */

/* 3.11+ frame owners (Include/internal/pycore_frame.h) */
#define FRAMES_OWNED_BY_THREAD 0 /* on the thread's data stack (not a generator's) */
#define FRAMES_OWNED_BY_CSTACK 3 /* 3.12+: the shim frame an eval loop entered from C pushes */
#define FRAMES_TRAMPOLINE "<interpreter trampoline>" /* 3.12+: the shim frames' code (<shim>) */
/* CO_GENERATOR | CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR */
#define FRAMES_CO_RESUMABLE (0x20 | 0x80 | 0x100 | 0x200)

typedef struct frames_walk {
    fp_remote *r;
    fp_frame *frames;
    bool *entry;
    int cap, max, count;
    bool grow;     /* frames and entry are malloc'd and grow up to max */
    uint64_t next; /* the frame to read next; 0: the walk is over */
    uint64_t recent[FRAMES_RECENT];
    int steps;
    bool torn;   /* stopped on an unreadable frame, a bad code object or a cycle */
    bool rooted; /* ended on its thread's entry frame (frames_rooted) */
} frames_walk;

/* Whether addr was visited lately (a cycle in a torn chain); remembers it. */
static bool frames_cycle(frames_walk *w, uint64_t addr)
{
    for (int i = 0; i < FRAMES_RECENT && i < w->steps; i++)
        if (w->recent[i] == addr) return true;
    w->recent[w->steps++ % FRAMES_RECENT] = addr;
    return false;
}

/* Whether a frame with no previous one is the frame its thread entered Python with: the only
 * place a whole chain may end. A generator's or coroutine's frame has no previous one while
 * it is suspended, so a chain read as it suspended (or as its slot was reused) ends on it.
 * - up to 3.10: a frame object that belongs to no generator (f_gen NULL);
 * - 3.11: a frame the eval loop was entered with (is_entry) on the thread's data stack;
 * - 3.12+: the shim frame every eval loop entered from C pushes first (owned by the C stack).
 * (A thread whose very first Python frame is a generator's, resumed from C, reads as torn
 * before 3.12: no chain tells it apart from a suspended one.) */
static bool frames_rooted(const frames_walk *w, const uint8_t *buf, size_t len, bool shim)
{
    const fp_py_layout *l = &w->r->layout;
    if (w->r->minor <= 10)
        return l->frame_gen < 0 || fp_remote_field_ptr(buf, len, l->frame_gen) == 0;
    if (l->frame_owner < 0 || (size_t)l->frame_owner >= len) return true; /* cannot tell */
    if (w->r->minor == 11)
        return buf[l->frame_owner] == FRAMES_OWNED_BY_THREAD &&
               (l->frame_is_entry < 0 || buf[l->frame_is_entry]);
    return shim;
}

/* 3.12+: a shim frame, the entry frame an eval loop entered from C pushes: owned by the C
 * stack, or running the interpreter trampoline. The eval loop fills that frame in on its C
 * stack without ordering the stores, and a read racing with it may find the frame linked
 * before its owner byte is written: the trampoline says what it is then. */
static bool frames_shim(const frames_walk *w, const uint8_t *buf, uint64_t code)
{
    const fp_py_layout *l = &w->r->layout;
    if (w->r->minor < 12 || l->frame_owner < 0) return false;
    return buf[l->frame_owner] == FRAMES_OWNED_BY_CSTACK ||
           (w->r->trampoline_code && code == w->r->trampoline_code);
}

/* Where the walk goes after a frame: previous, unless the chain ends or loops. */
static void frames_go(frames_walk *w, uint64_t previous)
{
    w->next = 0;
    if (!previous || w->count >= w->max) return;
    if (frames_cycle(w, previous)) {
        w->torn = true;
        return;
    }
    w->next = previous;
}

static bool frames_room(frames_walk *w)
{
    if (w->count < w->cap) return true;
    if (!w->grow || w->cap >= w->max) return false;
    int cap = w->cap * 2 < w->max ? w->cap * 2 : w->max;
    fp_frame *f = realloc(w->frames, (size_t)cap * sizeof *f);
    if (f) w->frames = f;
    bool *e = f ? realloc(w->entry, (size_t)cap * sizeof *e) : NULL;
    if (e) w->entry = e;
    if (!f || !e) return false;
    w->cap = cap;
    return true;
}

/* A raw frame: the code object's address and the instruction's byte offset (kept in
 * offset until fp_remote_resolve_frames names it). */
static void frames_add(frames_walk *w, uint64_t code, long addrq, bool entry)
{
    if (!frames_room(w)) {
        w->max = w->count; /* out of memory: what was read is kept */
        return;
    }
    fp_frame *f = &w->frames[w->count];
    memset(f, 0, sizeof *f);
    f->kind = FP_FRAME_PYTHON;
    f->addr = code;
    f->offset = (uint64_t)(int64_t)addrq;
    if (w->entry) w->entry[w->count] = entry;
    w->count++;
}

/* The bytes of a frame the reader needs: one read per frame. */
static size_t frames_block_len(const fp_py_layout *l)
{
    long fields[] = {l->frame_previous, l->frame_code,     l->frame_lasti, l->frame_instr,
                     l->frame_owner,    l->frame_is_entry, l->frame_gen};
    long max = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i] > max) max = fields[i];
    return (size_t)max + 8;
}

#define FRAMES_BLOCK_MAX 256

/* One frame, read into buf: record it and move on. PyFrameObject up to 3.10,
 * _PyInterpreterFrame from 3.11 (where the C stack's shim frames are skipped). */
static void frames_take(frames_walk *w, const uint8_t *buf, size_t len)
{
    const fp_py_layout *l = &w->r->layout;
    uint64_t previous = fp_remote_field_ptr(buf, len, l->frame_previous);
    uint64_t code = fp_remote_field_ptr(buf, len, l->frame_code);
    bool shim = frames_shim(w, buf, code);
    if (!previous) w->rooted = frames_rooted(w, buf, len, shim);
    if (w->r->minor <= 10) {
        long lasti = fp_remote_field_i32(buf, len, l->frame_lasti);
        /* f_lasti counts bytes up to 3.9, code units of two bytes in 3.10 */
        long addrq = w->r->minor >= 10 && lasti >= 0 ? lasti * 2 : lasti;
        frames_add(w, code, addrq, true); /* one eval loop call per frame */
        frames_go(w, previous);
        return;
    }
    if (shim) {
        /* the frame pushed just before this shim is the first its eval loop ran */
        if (w->entry && w->count > 0) w->entry[w->count - 1] = true;
        frames_go(w, previous);
        return;
    }
    uint64_t instr = fp_remote_field_ptr(buf, len, l->frame_instr);
    uint64_t start = code + (uint64_t)l->code_adaptive;
    bool entry = l->frame_is_entry >= 0 && buf[l->frame_is_entry];
    frames_add(w, code, (long)(int64_t)(instr - start), entry);
    frames_go(w, previous);
}

/* The end of a walk: what a torn chain leaves for the sampler, and the outermost entry. */
static void frames_finish(frames_walk *w)
{
    /* A chain that does not end at its root was read while the thread changed it (or is
     * damaged): counted, so that a sampler can tell a torn stack from a short one. One cut
     * at max frames (deep recursion) is whole as far as it goes. */
    if (w->next && w->count < w->max) w->torn = true;
    if (!w->next && w->count > 0 && w->count < w->max && !w->rooted) w->torn = true;
    if (w->torn) w->r->torn_reads++;
    /* 3.12+: the outermost frame sits on a shim that the walk never sees after it */
    if (w->entry && w->count > 0 && w->r->minor >= 12) w->entry[w->count - 1] = true;
}

/* ===================================================================== the first frame */

static uint64_t frames_current(fp_remote *r, uint64_t tstate)
{
    const fp_py_layout *l = &r->layout;
    uint64_t p = 0;
    if (fp_remote_read_ptr(r, tstate + (uint64_t)l->tstate_frame, &p) != 0 || !p) return 0;
    if (l->cframe_current_frame < 0) return p;
    /* 3.11, 3.12: the thread state points at a _PyCFrame, which points at the frame */
    uint64_t frame = 0;
    if (fp_remote_read_ptr(r, p + (uint64_t)l->cframe_current_frame, &frame) != 0) return 0;
    return frame;
}

int fp_remote_read_frames(fp_remote *r, uint64_t tstate, fp_frame *frames, bool *entry, int max)
{
    frames_walk w = {.r = r, .frames = frames, .entry = entry, .cap = max, .max = max};
    w.next = frames_current(r, tstate);
    if (!w.next) return 0; /* idle: no Python code running in this thread */
    frames_cycle(&w, w.next);
    uint8_t buf[FRAMES_BLOCK_MAX];
    size_t len = frames_block_len(&r->layout);
    while (w.next && len <= sizeof buf) {
        if (fp_remote_read(r, w.next, buf, len) != 0) break;
        frames_take(&w, buf, len);
    }
    frames_finish(&w);
    return w.count;
}

/* ===================================================================== many threads at once */

/* Reads n blocks (remote[i] into local[i]) with as few system calls as the kernel allows:
 * process_vm_readv takes up to IOV_MAX pieces and stops at the first unreadable one, which
 * is marked failed before going on with the rest. */
static void frames_read_many(fp_remote *r, struct iovec *local, struct iovec *remote, int n,
                             bool *ok)
{
    int i = 0;
    while (i < n) {
        int chunk = n - i < IOV_MAX ? n - i : IOV_MAX;
        ssize_t got = r->read_mem ? -1
                                  : process_vm_readv(r->pid, local + i, (unsigned long)chunk,
                                                     remote + i, (unsigned long)chunk, 0);
        if (got < 0 && (r->read_mem || errno == ENOSYS || errno == EPERM)) {
            /* no process_vm_readv here: one by one through the fallback */
            for (; i < n; i++)
                ok[i] = fp_remote_read(r, (uint64_t)(uintptr_t)remote[i].iov_base,
                                       local[i].iov_base, local[i].iov_len) == 0;
            return;
        }
        /* whole pieces only: count the ones read, the next one failed */
        size_t bytes = got > 0 ? (size_t)got : 0;
        int done = 0;
        while (done < chunk && bytes >= remote[i + done].iov_len) {
            bytes -= remote[i + done].iov_len;
            ok[i + done++] = true;
        }
        i += done;
        if (done < chunk) {
            ok[i++] = false;
            r->read_errors++;
        }
    }
}

/* The first frame of each thread: the frame pointer in each thread state, and in 3.11 and
 * 3.12 the _PyCFrame in between. */
static void frames_current_many(fp_remote *r, const uint64_t *tstates, int n, frames_walk *w,
                                struct iovec *local, struct iovec *remote, bool *ok)
{
    const fp_py_layout *l = &r->layout;
    for (int i = 0; i < n; i++) {
        local[i] = (struct iovec){&w[i].next, sizeof w[i].next};
        remote[i] = (struct iovec){(void *)(uintptr_t)(tstates[i] + (uint64_t)l->tstate_frame),
                                   sizeof w[i].next};
    }
    frames_read_many(r, local, remote, n, ok);
    if (l->cframe_current_frame < 0) {
        for (int i = 0; i < n; i++)
            if (!ok[i]) w[i].next = 0;
        return;
    }
    int m = 0;
    int *who = malloc((size_t)n * sizeof *who);
    if (!who) return;
    for (int i = 0; i < n; i++) {
        uint64_t cframe = ok[i] ? w[i].next : 0;
        w[i].next = 0;
        if (!cframe) continue;
        local[m] = (struct iovec){&w[i].next, sizeof w[i].next};
        remote[m] = (struct iovec){(void *)(uintptr_t)(cframe + (uint64_t)l->cframe_current_frame),
                                   sizeof w[i].next};
        who[m++] = i;
    }
    frames_read_many(r, local, remote, m, ok);
    for (int k = 0; k < m; k++)
        if (!ok[k]) w[who[k]].next = 0;
    free(who);
}

/* One level of every chain still going: each thread's next frame, all in one read. */
static bool frames_level(fp_remote *r, frames_walk *w, int n, uint8_t *blocks, size_t len,
                         struct iovec *local, struct iovec *remote, bool *ok, int *who)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!w[i].next) continue;
        local[m] = (struct iovec){blocks + (size_t)m * len, len};
        remote[m] = (struct iovec){(void *)(uintptr_t)w[i].next, len};
        who[m++] = i;
    }
    if (m == 0) return false;
    frames_read_many(r, local, remote, m, ok);
    for (int k = 0; k < m; k++) {
        frames_walk *x = &w[who[k]];
        if (!ok[k]) {
            x->torn = true;
            x->next = 0;
            continue;
        }
        frames_take(x, blocks + (size_t)k * len, len);
    }
    return true;
}

int fp_remote_read_chains(fp_remote *r, const uint64_t *tstates, int n, int max,
                          fp_remote_chain *out)
{
    size_t len = frames_block_len(&r->layout);
    frames_walk *w = calloc((size_t)n + 1, sizeof *w);
    struct iovec *local = malloc(((size_t)n + 1) * sizeof *local);
    struct iovec *remote = malloc(((size_t)n + 1) * sizeof *remote);
    bool *ok = malloc(((size_t)n + 1) * sizeof *ok);
    int *who = malloc(((size_t)n + 1) * sizeof *who);
    uint8_t *blocks = malloc(((size_t)n + 1) * len);
    int rc = -1;
    if (!w || !local || !remote || !ok || !who || !blocks || len > FRAMES_BLOCK_MAX) goto done;
    for (int i = 0; i < n; i++)
        w[i] = (frames_walk){.r = r, .max = max, .grow = true};
    frames_current_many(r, tstates, n, w, local, remote, ok);
    for (int i = 0; i < n; i++) {
        if (w[i].next) frames_cycle(&w[i], w[i].next);
        w[i].cap = 16;
        w[i].frames = malloc((size_t)w[i].cap * sizeof *w[i].frames);
        w[i].entry = malloc((size_t)w[i].cap * sizeof *w[i].entry);
        if (!w[i].frames || !w[i].entry) w[i].cap = 0, w[i].grow = false;
    }
    while (frames_level(r, w, n, blocks, len, local, remote, ok, who)) {
    }
    for (int i = 0; i < n; i++) {
        frames_finish(&w[i]);
        out[i] = (fp_remote_chain){w[i].frames, w[i].entry, w[i].count, w[i].torn};
    }
    rc = 0;
done:
    free(w);
    free(local);
    free(remote);
    free(ok);
    free(who);
    free(blocks);
    return rc;
}

/* ===================================================================== naming frames */

int fp_remote_resolve_frames(fp_remote *r, fp_frame *frames, int n, fp_remote_arena *a, bool *torn)
{
    int kept = 0;
    int outermost_flags = 0; /* co_flags of the outermost Python frame named */
    for (int i = 0; i < n; i++) {
        fp_frame f = frames[i];
        if (f.kind != FP_FRAME_PYTHON || f.function) {
            frames[kept++] = f;
            continue;
        }
        long addrq = (long)(int64_t)f.offset;
        const fp_remote_code *c = fp_remote_code_get(r, f.addr);
        /* not a code object: a torn chain, or a 3.13 frame running something else */
        if (!c) continue;
        /* A shim read before its owner byte was written (frames_shim): call plumbing, never
         * a frame of the program's; its code object is remembered for the next walks. */
        if (r->minor >= 12 && c->name && c->file && strcmp(c->name, FRAMES_TRAMPOLINE) == 0 &&
            strcmp(c->file, "<shim>") == 0) {
            r->trampoline_code = f.addr;
            continue;
        }
        /* A frame that has not reached its first traceable instruction is being set up;
         * CPython does not show it either. (Frames in a thread's chain are running, so a
         * generator's frame is always past it.) */
        if (r->minor >= 11 && addrq < 2L * c->firsttraceable) continue;
        outermost_flags = c->flags;
        f.function = fp_remote_arena_strdup(a, c->qualname);
        f.name = fp_remote_arena_strdup(a, c->name);
        f.file = fp_remote_arena_strdup(a, c->file);
        f.line = fp_remote_code_line(r, c, addrq);
        f.first_line = c->firstlineno;
        f.offset = 0;
        frames[kept++] = f;
    }
    /* Up to 3.10 a generator that has just finished has cleared both its frame's f_back and
     * f_gen: a read that reached that frame ends on it as if on a root. A thread's first
     * frame never runs a generator's or coroutine's code (see frames_rooted). */
    if (torn && r->minor <= 10 && (outermost_flags & FRAMES_CO_RESUMABLE)) *torn = true;
    return kept;
}
