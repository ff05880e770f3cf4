/* Native frames of a ptrace-stopped thread: unwound with libunwind's remote (ptrace)
 * unwinder, named from the process's mapped files with libdw's dwfl (.symtab, or .dynsym
 * alone for a stripped interpreter), and merged with the thread's Python frames. */
#include "fp_native.h"

#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <libunwind-ptrace.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fp_proc.h"
#include "remote_internal.h"
#include "fp_clock.h"

/* A module that was not mapped at the last look may have been dlopen'ed since; look again,
 * but not for every unknown address of a stack that is simply garbage. */
#define NATIVE_REFRESH_NS (250 * 1000000LL)
/* The symbol cache is cleared past this many entries: a long profile of code that keeps
 * generating new code (a JIT) must not grow fp without bound. */
#define NATIVE_CACHE_MAX (1u << 20)

typedef struct native_sym_entry {
    uint64_t key; /* ip * 2 + (ip is a return address); 0: free slot */
    const char *function;
    const char *file;
    uint64_t offset;
} native_sym_entry;

struct fp_native {
    int pid;
    unw_addr_space_t as;
    Dwfl *dwfl;
    long long refreshed_ns;
    native_sym_entry *syms; /* open addressing on key */
    size_t nsyms, syms_cap;
    fp_remote_arena *strings; /* symbol and file names, one copy each, for the handle's life */
};

/* ===================================================================== strings */

/* One copy of each name for the handle's life, so frames may keep pointers to it. */
static const char *native_intern(fp_native *n, const char *s)
{
    const char *copy = fp_remote_arena_intern(n->strings, s);
    return copy ? copy : "??";
}

/* ===================================================================== modules (dwfl) */

/* dwfl's callbacks get no handle of ours; the pid whose files are being opened is set here
 * around every dwfl call that may open one (one thread uses a handle at a time). */
static _Thread_local int native_current_pid;

/* Opens the module's file in the target's mount namespace (a process in a container maps
 * files of its own root), falling back to libdw's own search. */
static int native_find_elf(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base,
                           char **file_name, Elf **elfp)
{
    if (modname[0] == '/' && native_current_pid > 0) {
        char path[PATH_MAX + 64];
        fp_maps_target_path(native_current_pid, modname, path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            *file_name = strdup(path);
            *elfp = NULL;
            return fd;
        }
    }
    return dwfl_linux_proc_find_elf(mod, userdata, modname, base, file_name, elfp);
}

/* No separate debug files: the symbol tables of the mapped files are enough to name
 * functions, and looking elsewhere (debuginfod) could wait on the network. */
static int native_find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                                 Dwarf_Addr base, const char *file_name, const char *debuglink_file,
                                 GElf_Word debuglink_crc, char **debuginfo_file_name)
{
    return -1;
}

static char *native_debuginfo_path;

static const Dwfl_Callbacks native_callbacks = {
    .find_elf = native_find_elf,
    .find_debuginfo = native_find_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &native_debuginfo_path,
};

static int native_report(fp_native *n)
{
    native_current_pid = n->pid;
    dwfl_report_begin(n->dwfl);
    int r = dwfl_linux_proc_report(n->dwfl, n->pid);
    dwfl_report_end(n->dwfl, NULL, NULL);
    n->refreshed_ns = (long long)fp_clock_ns();
    return r;
}

/* ===================================================================== open / close */

fp_native *fp_native_open(int pid, fp_error *err)
{
    fp_native *n = calloc(1, sizeof *n);
    if (!n) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    n->pid = pid;
    n->as = unw_create_addr_space(&_UPT_accessors, 0);
    n->dwfl = dwfl_begin(&native_callbacks);
    n->strings = fp_remote_arena_new();
    if (!n->as || !n->dwfl || !n->strings) {
        fp_native_close(n);
        fp_error_set(err, FP_E_INTERNAL, NULL,
                     "cannot set up the native unwinder (libunwind/libdw)");
        return NULL;
    }
    /* Unwind tables parsed once per address: sampling revisits the same code all the time. */
    unw_set_caching_policy(n->as, UNW_CACHE_GLOBAL);
    int r = native_report(n);
    if (r != 0) {
        fp_native_close(n);
        /* dwfl_linux_proc_report gives an errno value, or -1 for its own errors. */
        if (r == ENOENT) {
            fp_error_set(err, FP_E_NO_PROCESS, NULL, "process %d does not exist", pid);
        } else if (r == EACCES || r == EPERM) {
            fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                         "cannot read the mappings of process %d: %s", pid, strerror(r));
        } else {
            fp_error_set(err, FP_E_INTERNAL, NULL, "cannot read the mappings of process %d: %s",
                         pid, r > 0 ? strerror(r) : dwfl_errmsg(-1));
        }
        return NULL;
    }
    return n;
}

void fp_native_close(fp_native *n)
{
    if (!n) return;
    if (n->as) unw_destroy_addr_space(n->as);
    if (n->dwfl) dwfl_end(n->dwfl);
    free(n->syms);
    fp_remote_arena_free(n->strings);
    free(n);
}

/* ===================================================================== unwinding */

int fp_native_unwind(fp_native *n, int tid, uint64_t *ips, int max, fp_error *err)
{
    if (max < 1) return fp_error_set(err, FP_E_INTERNAL, NULL, "no room for native frames");
    void *upt = _UPT_create(tid);
    if (!upt) return fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
    unw_cursor_t cursor;
    int r = unw_init_remote(&cursor, n->as, upt);
    if (r < 0) {
        _UPT_destroy(upt);
        return fp_error_set(err, FP_E_INTERNAL, NULL,
                            "cannot read the registers of thread %d (is it stopped?): %s", tid,
                            unw_strerror(r));
    }
    int count = 0;
    uint64_t prev_sp = 0;
    bool prev_signal = false;
    for (;;) {
        unw_word_t ip = 0, sp = 0;
        if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
        unw_get_reg(&cursor, UNW_REG_SP, &sp);
        /* A corrupt stack can make the unwinder go round in circles: the stack pointer of
         * each outer frame must not be below the inner one's, but across a signal frame
         * (a handler on an alternate stack, e.g. faulthandler's) anything goes. */
        if (count > 0 && sp < prev_sp && !prev_signal) break;
        prev_sp = sp;
        prev_signal = unw_is_signal_frame(&cursor) > 0;
        ips[count++] = ip;
        if (count == max) break;
        if (unw_step(&cursor) <= 0) break;
    }
    _UPT_destroy(upt);
    if (count == 0)
        return fp_error_set(err, FP_E_INTERNAL, NULL, "no native frame for thread %d", tid);
    return count;
}

/* ===================================================================== symbols */

static bool native_syms_grow(fp_native *n)
{
    size_t cap = n->syms_cap ? n->syms_cap * 2 : 4096;
    native_sym_entry *t = calloc(cap, sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < n->syms_cap; i++) {
        if (!n->syms[i].key) continue;
        size_t j = (n->syms[i].key * 0x9e3779b97f4a7c15ull >> 20) & (cap - 1);
        while (t[j].key)
            j = (j + 1) & (cap - 1);
        t[j] = n->syms[i];
    }
    free(n->syms);
    n->syms = t;
    n->syms_cap = cap;
    return true;
}

static void native_syms_clear(fp_native *n)
{
    if (n->syms) memset(n->syms, 0, n->syms_cap * sizeof *n->syms);
    n->nsyms = 0;
}

/* The slot of key: its entry, or the free slot where it goes (NULL: out of memory). */
static native_sym_entry *native_syms_slot(fp_native *n, uint64_t key)
{
    if (n->nsyms >= NATIVE_CACHE_MAX) native_syms_clear(n);
    if ((n->nsyms + 1) * 2 > n->syms_cap && !native_syms_grow(n)) return NULL;
    size_t mask = n->syms_cap - 1;
    size_t j = (key * 0x9e3779b97f4a7c15ull >> 20) & mask;
    while (n->syms[j].key && n->syms[j].key != key)
        j = (j + 1) & mask;
    return &n->syms[j];
}

static void native_lookup(fp_native *n, uint64_t addr, native_sym_entry *e)
{
    native_current_pid = n->pid;
    Dwfl_Module *mod = dwfl_addrmodule(n->dwfl, addr);
    if (!mod && (long long)fp_clock_ns() - n->refreshed_ns > NATIVE_REFRESH_NS) {
        /* Possibly a library loaded since: report the modules again, and forget the cached
         * unwind tables and names, which may describe files that are gone. */
        native_report(n);
        unw_flush_cache(n->as, 0, 0);
        native_syms_clear(n);
        mod = dwfl_addrmodule(n->dwfl, addr);
    }
    e->function = "??";
    e->file = "??";
    e->offset = 0;
    if (!mod) return;
    const char *modname = dwfl_module_info(mod, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
    if (modname) e->file = native_intern(n, modname);
    GElf_Off off = 0;
    GElf_Sym sym;
    /* Only a symbol whose extent covers addr (or a size-less one before it): in a stripped
     * file, a static function must read "??", not the exported function placed before it. */
    const char *name = dwfl_module_addrinfo(mod, addr, &off, &sym, NULL, NULL, NULL);
    if (!name || !name[0]) return;
    e->function = native_intern(n, name);
    e->offset = off;
}

void fp_native_symbolize(fp_native *n, uint64_t ip, int frame_index, fp_native_sym *out)
{
    /* A return address may be the first byte of the next function when the call was the
     * last instruction (noreturn callees): name the byte before it. */
    uint64_t adjust = frame_index > 0 && ip > 0 ? 1 : 0;
    uint64_t key = ip * 2 + adjust;
    native_sym_entry *slot = native_syms_slot(n, key);
    native_sym_entry found;
    if (slot && slot->key == key) {
        found = *slot;
    } else {
        native_lookup(n, ip - adjust, &found);
        found.key = key;
        /* The lookup may have cleared the table: find the slot again. */
        slot = native_syms_slot(n, key);
        if (slot && !slot->key) {
            *slot = found;
            n->nsyms++;
        }
    }
    out->function = found.function;
    out->file = found.file;
    out->offset = found.function[0] == '?' ? 0 : found.offset + adjust;
}

/* ===================================================================== merging */

/* The eval loop's C function; the compiler may split off ".cold" parts of it. */
static bool native_is_eval(const char *fn)
{
    static const char eval[] = "_PyEval_EvalFrameDefault";
    size_t len = sizeof eval - 1;
    return strncmp(fn, eval, len) == 0 && (fn[len] == '\0' || fn[len] == '.');
}

/* C functions whose only job is to enter the eval loop: with the Python frames in place of
 * the loop they say nothing more, and dropping them keeps --native stacks readable. */
static bool native_is_plumbing(const char *fn)
{
    static const char *const names[] = {
        "_PyEval_EvalFrame",  "_PyEval_EvalCode",       "_PyEval_EvalCodeWithName",
        "_PyEval_Vector",     "function_code_fastcall", "_PyFunction_Vectorcall",
        "PyEval_EvalFrameEx", "call_function", /* 3.8 - 3.10: the eval loop's call helper */
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(fn, names[i]) == 0) return true;
    return false;
}

/* Python frames [*pi, end] run by one C call of the eval loop: up to its entry frame. */
static int native_take_python(const fp_frame *py, const bool *py_entry, int npy, int *pi,
                              fp_frame *out, int count, int max)
{
    while (*pi < npy && count < max) {
        int i = (*pi)++;
        out[count++] = py[i];
        if (!py_entry || py_entry[i]) break;
    }
    return count;
}

int fp_native_merge_symbols(const uint64_t *ips, const fp_native_sym *syms, int nips,
                            const fp_frame *py, const bool *py_entry, int npy, fp_frame *out,
                            int max)
{
    int count = 0, pi = 0;
    for (int k = 0; k < nips && count < max; k++) {
        const fp_native_sym *s = &syms[k];
        if (native_is_eval(s->function) && pi < npy) {
            count = native_take_python(py, py_entry, npy, &pi, out, count, max);
            continue;
        }
        if (native_is_plumbing(s->function)) continue;
        out[count++] = (fp_frame){
            .kind = FP_FRAME_NATIVE,
            .function = s->function,
            .file = s->file,
            .addr = ips[k],
            .offset = s->offset,
        };
    }
    while (pi < npy && count < max)
        out[count++] = py[pi++];
    return count;
}

int fp_native_merge(fp_native *n, const uint64_t *ips, int nips, const fp_frame *py,
                    const bool *py_entry, int npy, fp_frame *out, int max)
{
    fp_native_sym *syms = malloc(((size_t)nips + 1) * sizeof *syms);
    if (!syms) return 0;
    for (int k = 0; k < nips; k++)
        fp_native_symbolize(n, ips[k], k, &syms[k]);
    int count = fp_native_merge_symbols(ips, syms, nips, py, py_entry, npy, out, max);
    free(syms);
    return count;
}
