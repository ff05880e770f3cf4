/* Threads named as the program knows them: threading's names and daemon flags, read from
 * outside in threading._active ({ident: Thread}) of the main interpreter's sys.modules.
 * Nothing here needs the threads stopped: the names change rarely, and a torn read only
 * leaves a thread unnamed. */
#include <string.h>

#include "remote_internal.h"

typedef struct names_ctx {
    fp_thread *threads;
    int n;
    fp_remote_arena *arena;
} names_ctx;

static bool names_on_thread(fp_remote *r, uint64_t key, uint64_t value, void *ud)
{
    names_ctx *c = ud;
    int64_t ident = 0;
    if (fp_remote_read_int(r, key, &ident) != 0) return false;
    for (int i = 0; i < c->n; i++) {
        fp_thread *t = &c->threads[i];
        if (t->ident != (unsigned long)ident) continue;
        char name[256];
        uint64_t s = fp_remote_attr(r, value, "_name");
        if (s && fp_remote_read_str(r, s, name, sizeof name) >= 0)
            t->thread_name = fp_remote_arena_strdup(c->arena, name);
        int64_t daemon = 0;
        uint64_t d = fp_remote_attr(r, value, "_daemonic");
        if (d && fp_remote_read_int(r, d, &daemon) == 0) t->daemon = daemon != 0;
        break;
    }
    return false; /* every item */
}

/* threading._active, or 0 when the program never imported threading. */
static uint64_t names_active(fp_remote *r)
{
    const fp_py_layout *l = &r->layout;
    uint64_t interp = 0, modules = 0, module = 0, dict = 0;
    if (fp_remote_read_ptr(r, r->runtime + (uint64_t)l->runtime_interpreters_main, &interp) != 0 ||
        fp_remote_read_ptr(r, interp + (uint64_t)l->interp_modules, &modules) != 0 || !modules)
        return 0;
    module = fp_remote_dict_get(r, modules, "threading");
    if (!module || fp_remote_read_ptr(r, module + (uint64_t)l->module_dict, &dict) != 0) return 0;
    return fp_remote_dict_get(r, dict, "_active");
}

void fp_remote_thread_names(fp_remote *r, fp_thread *threads, int n, fp_remote_arena *a)
{
    uint64_t active = names_active(r);
    if (!active) return;
    names_ctx c = {threads, n, a};
    fp_remote_dict_each(r, active, names_on_thread, &c);
}
