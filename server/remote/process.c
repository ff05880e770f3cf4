/* Opening a CPython process for reading from outside: find its interpreter (_PyRuntime in
 * libpython*.so, or in the executable's dynamic symbols for a static build), pick the
 * version's layout, and read its memory with process_vm_readv. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fp_attach.h"
#include "fp_native.h"
#include "fp_proc.h"
#include "remote_internal.h"

/* ===================================================================== memory */

/* User space ends below 2^47 on x86-64 (2^48 with 5-level paging: still below this). */
#define REMOTE_ADDR_MAX (1ULL << 57)

int fp_remote_read(fp_remote *r, uint64_t addr, void *buf, size_t len)
{
    if (addr < 4096 || addr >= REMOTE_ADDR_MAX || len > REMOTE_ADDR_MAX - addr) {
        r->read_errors++;
        return -1;
    }
    if (r->read_mem) {
        if (r->read_mem(r->read_ud, addr, buf, len) == 0) return 0;
        r->read_errors++;
        return -1;
    }
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    ssize_t n = process_vm_readv(r->pid, &local, 1, &remote, 1, 0);
    if (n == (ssize_t)len) return 0;
    /* Garbage pointers (EFAULT) are expected while following a chain that changes under us;
     * only a refused call (seccomp, old kernel) is worth the slower /proc/PID/mem. */
    if (n < 0 && (errno == ENOSYS || errno == EPERM) && fp_mem_read(r->pid, addr, buf, len) == 0)
        return 0;
    r->read_errors++;
    return -1;
}

int fp_remote_read_ptr(fp_remote *r, uint64_t addr, uint64_t *out)
{
    *out = 0;
    return fp_remote_read(r, addr, out, sizeof *out);
}

uint64_t fp_remote_field_ptr(const void *buf, size_t len, long off)
{
    uint64_t v = 0;
    if (off < 0 || (size_t)off + sizeof v > len) return 0;
    memcpy(&v, (const char *)buf + off, sizeof v);
    return v;
}

int32_t fp_remote_field_i32(const void *buf, size_t len, long off)
{
    int32_t v = 0;
    if (off < 0 || (size_t)off + sizeof v > len) return 0;
    memcpy(&v, (const char *)buf + off, sizeof v);
    return v;
}

/* ===================================================================== finding the interpreter */

static const fp_map *process_find_map(const fp_map *maps, int n, const char *path)
{
    for (int i = 0; i < n; i++)
        if (strcmp(maps[i].path, path) == 0) return &maps[i];
    return NULL;
}

static int process_unsupported(int pid, const fp_target *t, fp_error *err)
{
    return fp_error_set(err, FP_E_UNSUPPORTED,
                        "fp reads the stacks of CPython 3.8 to 3.13 from outside.",
                        "process %d runs Python %s, which fp cannot read from outside", pid,
                        t->py_version[0] ? t->py_version : "of an unknown version");
}

/* Looks up _PyRuntime and PyCode_Type where the interpreter lives. */
static int process_symbols(fp_remote *r, const fp_target *t, fp_error *err)
{
    fp_map *maps = NULL;
    int n = fp_maps_read(r->pid, &maps);
    if (n < 0)
        return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                            "cannot read the memory map of process %d", r->pid);
    const fp_map *m = process_find_map(maps, n, t->libpython[0] ? t->libpython : t->exe);
    r->is_static = !t->libpython[0];
    if (m) {
        r->runtime = fp_maps_symbol(r->pid, m, "_PyRuntime");
        r->code_type = fp_maps_symbol(r->pid, m, "PyCode_Type");
    }
    free(maps);
    if (!r->runtime)
        return fp_error_set(
            err, FP_E_NOT_PYTHON,
            "a stripped interpreter without its dynamic symbol table cannot be read "
            "from outside",
            "process %d: the interpreter's _PyRuntime symbol was not found in %s", r->pid,
            t->libpython[0] ? t->libpython : t->exe);
    return 0;
}

static int process_layout(fp_remote *r, const fp_target *t, fp_error *err)
{
    const fp_py_layout *builtin = fp_remote_layout_builtin(r->minor);
    if (builtin) r->layout = *builtin;
    if (r->minor >= 13) {
        /* The interpreter describes itself: its table wins over ours. */
        if (fp_remote_layout_debug(r->pid, r->runtime, r->minor, &r->layout, err) != 0) return -1;
    }
    if (!builtin) return process_unsupported(r->pid, t, err);
    return 0;
}

/* The interpreter must be readable and initialised: one interpreter at least. */
static int process_probe(fp_remote *r, fp_error *err)
{
    uint64_t head = 0;
    errno = 0;
    if (fp_remote_read_ptr(r, r->runtime + (uint64_t)r->layout.runtime_interpreters_head, &head) !=
        0) {
        if (errno == EPERM || errno == EACCES)
            return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                                "permission denied reading the memory of process %d", r->pid);
        return fp_error_set(err, FP_E_NO_PROCESS, NULL, "cannot read the memory of process %d: %s",
                            r->pid, strerror(errno ? errno : EIO));
    }
    if (!head)
        return fp_error_set(err, FP_E_NOT_PYTHON,
                            "the interpreter is starting or has finished; try again",
                            "process %d has no Python interpreter running (not initialised yet, "
                            "or finalised)",
                            r->pid);
    return 0;
}

fp_remote *fp_remote_open(int pid, fp_error *err)
{
    fp_target t;
    if (fp_target_inspect(pid, &t, err) != 0) return NULL;
    if (!t.is_python) {
        fp_error_set(err, FP_E_NOT_PYTHON,
                     "fp reads CPython 3.8 or newer; run `fp` without arguments to list the "
                     "Python processes on this machine.",
                     "process %d (%s) is not a CPython interpreter", pid, t.exe);
        return NULL;
    }
    if (t.py_major != 3 || t.py_minor < 8) {
        process_unsupported(pid, &t, err);
        return NULL;
    }
    fp_remote *r = calloc(1, sizeof *r);
    if (!r) {
        fp_error_set(err, FP_E_INTERNAL, NULL, "out of memory");
        return NULL;
    }
    r->pid = pid;
    r->minor = t.py_minor;
    r->pthread_tid_off = -1;
    snprintf(r->version, sizeof r->version, "%s", t.py_version);
    if (process_symbols(r, &t, err) != 0 || process_layout(r, &t, err) != 0 ||
        process_probe(r, err) != 0) {
        fp_remote_close(r);
        return NULL;
    }
    return r;
}

void fp_remote_close(fp_remote *r)
{
    if (!r) return;
    if (r->nstragglers) fp_remote_reap_stragglers(r, 200);
    fp_remote_code_cache_free(&r->codes);
    if (r->native) fp_native_close(r->native);
    free(r);
}

int fp_remote_pid(const fp_remote *r)
{
    return r->pid;
}

const char *fp_remote_version(const fp_remote *r)
{
    return r->version;
}
