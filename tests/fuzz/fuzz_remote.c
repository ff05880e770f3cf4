/* libFuzzer target: the out-of-process reader (server/remote/) on made-up memory. Everything it
 * reads from a target (thread states, frame chains, code objects, strings, line tables, dicts)
 * may be garbage: a torn read while the target runs, or a hostile process. Given memory that is
 * the fuzzer's input (a window at a fixed address, or that input repeated over the whole address
 * space, so that every pointer leads somewhere and chains loop), the reader must end every walk
 * cleanly: no crash, no read outside what it asked for, no loop that does not end. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remote_internal.h"

#define FUZZ_BASE 0x100000000ull
#define FUZZ_THREADS 16 /* threads whose frames are read, of those found */
#define FUZZ_FRAMES 128

typedef struct fuzz_mem {
    const uint8_t *data;
    size_t size;
    int tiled;
} fuzz_mem;

static int fuzz_read(void *ud, uint64_t addr, void *buf, size_t len)
{
    const fuzz_mem *m = ud;
    if (m->size == 0) return -1;
    if (!m->tiled) {
        if (addr < FUZZ_BASE || addr - FUZZ_BASE > m->size || len > m->size - (addr - FUZZ_BASE))
            return -1;
        memcpy(buf, m->data + (addr - FUZZ_BASE), len);
        return 0;
    }
    uint8_t *out = buf;
    for (size_t i = 0; i < len; i++)
        out[i] = m->data[(addr + i) % m->size];
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    int minor = 8 + data[0] % 6;
    const fp_py_layout *layout = fp_remote_layout_builtin(minor);
    if (!layout) return 0;
    fuzz_mem mem = {.data = data + 2, .size = size - 2, .tiled = data[1] & 1};
    fp_remote *r = calloc(1, sizeof *r);
    if (!r) return 0;
    r->pid = -1; /* never a real process: every read goes through fuzz_read */
    r->minor = minor;
    snprintf(r->version, sizeof r->version, "3.%d", minor);
    r->layout = *layout;
    r->runtime = FUZZ_BASE;
    r->code_type = data[1] & 2 ? FUZZ_BASE + 64 : 0;
    r->pthread_tid_off = -2;
    r->read_mem = fuzz_read;
    r->read_ud = &mem;

    fp_error err;
    fp_error_clear(&err);
    fp_thread *threads = NULL;
    int n = fp_remote_read_threads(r, &threads, &err);
    fp_remote_arena *arena = fp_remote_arena_new();
    if (n > 0 && arena) {
        int m = n < FUZZ_THREADS ? n : FUZZ_THREADS;
        uint64_t tstates[FUZZ_THREADS];
        for (int i = 0; i < m; i++)
            tstates[i] = threads[i].tstate;
        /* Many chains at once, as a snapshot reads them, then one by one. */
        fp_remote_chain chains[FUZZ_THREADS];
        memset(chains, 0, sizeof chains);
        bool torn = false;
        if (fp_remote_read_chains(r, tstates, m, FUZZ_FRAMES, chains) == 0) {
            for (int i = 0; i < m; i++) {
                threads[i].frames = chains[i].frames;
                threads[i].nframes =
                    fp_remote_resolve_frames(r, chains[i].frames, chains[i].count, arena, &torn);
                free(chains[i].entry);
            }
        }
        fp_frame frames[FUZZ_FRAMES];
        bool entry[FUZZ_FRAMES];
        int count = fp_remote_read_frames(r, tstates[0], frames, entry, FUZZ_FRAMES);
        fp_remote_resolve_frames(r, frames, count, arena, &torn);
        fp_remote_thread_names(r, threads, m, arena);
        /* The stack model over all of it (its source files cannot be read: no process). */
        fp_remote_snapshot snap = {.threads = threads, .nthreads = m, .strings = NULL};
        cJSON *model = fp_remote_stack_model(r, &snap);
        cJSON_Delete(model);
        for (int i = 0; i < m; i++)
            free(threads[i].frames);
    }
    free(threads);
    fp_remote_arena_free(arena);
    fp_remote_code_cache_free(&r->codes);
    free(r);
    return 0;
}
