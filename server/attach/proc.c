/* What a process is, read from /proc: its state, owner, executable, mappings, and whether
 * (and which) CPython runs in it. Also memory access for the attach engine. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "attach_internal.h"
#include "fp_elf.h"
#include "fp_log.h"

/* ===================================================================== debug log */

/* Per thread: fp-lsp attaches to several processes at once from worker threads, each with its
 * own --debug setting, and the lines go through the one log of the client (fp_log.h). */
static _Thread_local bool debug_on;

void fp_attach_set_debug(bool on)
{
    debug_on = on;
}

bool fp_attach_debug_enabled(void)
{
    return debug_on;
}

void fp_attach_debug(const char *fmt, ...)
{
    if (!debug_on) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fp_log_debug("%s", line);
}

/* ===================================================================== small readers */

static int read_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t used = 0;
    while (used + 1 < size) {
        ssize_t n = read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += (size_t)n;
    }
    close(fd);
    buf[used] = '\0';
    return (int)used;
}

/* ===================================================================== process maps */

int fp_maps_read(int pid, fp_map **out)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t cap = 256, n = 0;
    fp_map *maps = malloc(cap * sizeof *maps);
    char *line = NULL;
    size_t linecap = 0;
    while (maps && getline(&line, &linecap, f) > 0) {
        if (n == cap) {
            fp_map *grown = realloc(maps, (cap *= 2) * sizeof *maps);
            if (!grown) break;
            maps = grown;
        }
        fp_map *m = &maps[n];
        int off = 0;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %*s %*s%n", &m->start, &m->end,
                   m->perms, &m->offset, &off) < 4)
            continue;
        const char *p = line + off;
        while (*p == ' ')
            p++;
        snprintf(m->path, sizeof m->path, "%s", p);
        m->path[strcspn(m->path, "\n")] = '\0';
        n++;
    }
    free(line);
    fclose(f);
    if (!maps) return -1;
    *out = maps;
    return (int)n;
}

const fp_map *fp_maps_find(const fp_map *maps, int n, bool (*pred)(const char *path))
{
    /* maps are in address order: a file's first mapping is its load base */
    for (int i = 0; i < n; i++)
        if (maps[i].path[0] == '/' && pred(maps[i].path)) return &maps[i];
    return NULL;
}

void fp_maps_target_path(int pid, const char *path, char *buf, size_t size)
{
    /* /proc/PID/root reaches the file in the target's mount namespace (containers). */
    snprintf(buf, size, "/proc/%d/root%s", pid, path);
    if (access(buf, R_OK) != 0) snprintf(buf, size, "%s", path);
}

uint64_t fp_maps_symbol(int pid, const fp_map *m, const char *name)
{
    char file[PATH_MAX + 32];
    fp_maps_target_path(pid, m->path, file, sizeof file);
    uint64_t value = 0, first_vaddr = 0;
    if (fp_elf_symbol(file, name, &value, &first_vaddr) != 0 || value == 0) return 0;
    /* the mapping with file offset 0 holds the first PT_LOAD segment */
    return m->start - m->offset - first_vaddr + value;
}

static int mem_fallback(int pid, uint64_t addr, void *buf, size_t len, bool write_mode)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int fd = open(path, (write_mode ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -errno;
    ssize_t n = write_mode ? pwrite(fd, buf, len, (off_t)addr) : pread(fd, buf, len, (off_t)addr);
    int e = errno;
    close(fd);
    return n == (ssize_t)len ? 0 : -(n < 0 ? e : EIO);
}

int fp_mem_read(int pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len) return 0;
    return mem_fallback(pid, addr, buf, len, false);
}

int fp_mem_write(int pid, uint64_t addr, const void *buf, size_t len)
{
    struct iovec local = {(void *)buf, len}, remote = {(void *)(uintptr_t)addr, len};
    if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len) return 0;
    return mem_fallback(pid, addr, (void *)buf, len, true);
}

/* ===================================================================== CPython detection */

static bool is_libpython(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libpython3.", 11) == 0 && strstr(base, ".so") != NULL;
}

/* "3.12.1" from a path like /root/.pyenv/versions/3.12.1/..., else "" */
static void version_from_path(const char *path, char *buf, size_t size)
{
    regex_t re;
    regmatch_t m[2];
    buf[0] = '\0';
    if (regcomp(&re, "/(3\\.[0-9]+\\.[0-9]+)[^/]*/", REG_EXTENDED) != 0) return;
    if (regexec(&re, path, 2, m, 0) == 0)
        snprintf(buf, size, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), path + m[1].rm_so);
    regfree(&re);
}

/* major.minor from "libpython3.12.so.1.0" or ".../python3.11" */
static void minor_from_name(const char *path, int *major, int *minor)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *p = strstr(base, "python3.");
    if (p && sscanf(p, "python%d.%d", major, minor) == 2) return;
    *major = *minor = 0;
}

static void detect_python(fp_target *t, const fp_map *maps, int n)
{
    const fp_map *lib = fp_maps_find(maps, n, is_libpython);
    const fp_map *exe = NULL;
    for (int i = 0; i < n && !exe; i++)
        if (strcmp(maps[i].path, t->exe) == 0) exe = &maps[i];
    const fp_map *py = lib;
    if (lib) {
        snprintf(t->libpython, sizeof t->libpython, "%s", lib->path);
    } else if (exe && fp_maps_symbol(t->pid, exe, "_PyRuntime") != 0) {
        py = exe; /* a statically linked interpreter exports the C API itself */
    }
    if (!py) return;
    t->is_python = true;
    minor_from_name(py->path, &t->py_major, &t->py_minor);

    /* Py_Version (3.11+) gives the exact version; older ones: the install path, or X.Y */
    uint64_t addr = fp_maps_symbol(t->pid, py, "Py_Version");
    unsigned long hex = 0;
    if (addr && fp_mem_read(t->pid, addr, &hex, sizeof hex) == 0 && (hex >> 24) == 3) {
        t->py_major = 3;
        t->py_minor = (int)((hex >> 16) & 0xff);
        snprintf(t->py_version, sizeof t->py_version, "3.%d.%d", t->py_minor,
                 (int)((hex >> 8) & 0xff));
        return;
    }
    version_from_path(py->path, t->py_version, sizeof t->py_version);
    if (t->py_version[0]) {
        sscanf(t->py_version, "%d.%d", &t->py_major, &t->py_minor);
    } else if (t->py_major) {
        snprintf(t->py_version, sizeof t->py_version, "%d.%d", t->py_major, t->py_minor);
    }
}

/* ===================================================================== fp_target */

static int read_status_fields(fp_target *t)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", t->pid);
    if (read_file(path, buf, sizeof buf) < 0) return -1;
    const char *uid = strstr(buf, "\nUid:");
    unsigned ruid = 0, euid = 0;
    if (uid && sscanf(uid, "\nUid: %u %u", &ruid, &euid) == 2) t->uid = euid;
    t->ns_pid = t->pid;
    const char *ns = strstr(buf, "\nNSpid:");
    if (ns) {
        /* the last field is the pid in the innermost namespace */
        const char *end = strchr(ns + 1, '\n');
        const char *p = end ? end : ns + strlen(ns);
        while (p > ns && !isspace((unsigned char)p[-1]))
            p--;
        t->ns_pid = atoi(p);
    }
    return 0;
}

static void read_cmdline(fp_target *t)
{
    char path[64], buf[sizeof t->cmdline];
    snprintf(path, sizeof path, "/proc/%d/cmdline", t->pid);
    int n = read_file(path, buf, sizeof buf);
    for (int i = 0; i < n; i++)
        if (buf[i] == '\0') buf[i] = ' ';
    while (n > 0 && buf[n - 1] == ' ')
        buf[--n] = '\0';
    snprintf(t->cmdline, sizeof t->cmdline, "%s", n > 0 ? buf : "");
}

int fp_target_inspect(int pid, fp_target *t, fp_error *err)
{
    memset(t, 0, sizeof *t);
    t->pid = pid;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (pid <= 0 || read_file(path, buf, sizeof buf) < 0)
        return fp_error_set(err, FP_E_NO_PROCESS,
                            "Check the PID: run `fp` without arguments to list the Python "
                            "processes you can attach to.",
                            "no process with PID %d", pid);
    const char *close_paren = strrchr(buf, ')');
    t->state = close_paren && close_paren[1] ? close_paren[2] : '?';
    if (close_paren && close_paren[1] && close_paren[2]) t->ppid = atoi(close_paren + 3);
    if (t->state == 'Z' || t->state == 'X')
        return fp_error_set(err, FP_E_EXITING, "Nothing to attach to: the process has ended.",
                            "process %d is exiting (state %c)", pid, t->state);
    read_status_fields(t);
    read_cmdline(t);
    snprintf(path, sizeof path, "/proc/%d/cwd", pid);
    ssize_t cn = readlink(path, t->cwd, sizeof t->cwd - 1);
    t->cwd[cn > 0 ? cn : 0] = '\0';

    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t n = readlink(path, t->exe, sizeof t->exe - 1);
    if (n < 0) {
        if (errno == EACCES || errno == EPERM)
            return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                                "permission denied reading process %d (owned by uid %u)", pid,
                                (unsigned)t->uid);
        if (errno == ENOENT)
            return fp_error_set(err, FP_E_EXITING, "Nothing to attach to: the process has ended.",
                                "process %d has no executable (exiting, or a kernel thread)", pid);
        return fp_error_set(err, FP_E_NO_PROCESS, NULL, "cannot read process %d: %s", pid,
                            strerror(errno));
    }
    t->exe[n] = '\0';
    const char *deleted = strstr(t->exe, " (deleted)");
    if (deleted && deleted[10] == '\0') t->exe[deleted - t->exe] = '\0';

    fp_map *maps = NULL;
    int nmaps = fp_maps_read(pid, &maps);
    if (nmaps < 0)
        return fp_error_set(err, FP_E_PERMISSION, fp_error_ptrace_hint(),
                            "permission denied reading the memory map of process %d", pid);
    detect_python(t, maps, nmaps);
    free(maps);
    return 0;
}

int fp_target_check(int pid, fp_target *t, fp_error *err)
{
    if (fp_target_inspect(pid, t, err) != 0) return -1;
    if (!t->is_python)
        return fp_error_set(err, FP_E_NOT_PYTHON,
                            "fp attaches to CPython 3.8 or newer; run `fp` without arguments to "
                            "list the Python processes on this machine.",
                            "process %d (%s) is not a CPython interpreter", pid, t->exe);
    if (t->py_major == 3 && t->py_minor > 0 && t->py_minor < 8)
        return fp_error_set(err, FP_E_UNSUPPORTED, "fp supports CPython 3.8 and newer.",
                            "process %d runs Python %s, which fp does not support", pid,
                            t->py_version);
    if (t->state == 'T' || t->state == 't')
        return fp_error_set(err, FP_E_EXITING,
                            "Resume it first (kill -CONT PID, or continue it in its debugger).",
                            "process %d is stopped (state %c)", pid, t->state);
    return 0;
}

/* list with each process's listed children right after it (depth first), in place. */
static fp_target *target_tree_order(fp_target *list, size_t n)
{
    fp_target *out = malloc((n ? n : 1) * sizeof *out);
    bool *placed = calloc(n ? n : 1, sizeof *placed);
    size_t *stack = malloc((n ? n : 1) * sizeof *stack);
    if (!out || !placed || !stack) {
        free(out);
        free(placed);
        free(stack);
        return list; /* unordered, but complete */
    }
    size_t k = 0;
    for (size_t root = 0; root < n; root++) {
        bool has_parent = false;
        for (size_t j = 0; j < n && !has_parent; j++)
            has_parent = j != root && list[j].pid == list[root].ppid;
        if (has_parent || placed[root]) continue;
        size_t sp = 0;
        stack[sp++] = root;
        placed[root] = true;
        while (sp > 0) {
            size_t i = stack[--sp];
            out[k++] = list[i];
            /* Children pushed in reverse: they come out in /proc order. */
            for (size_t j = n; j-- > 0;) {
                if (!placed[j] && list[j].ppid == list[i].pid) {
                    placed[j] = true;
                    stack[sp++] = j;
                }
            }
        }
    }
    for (size_t i = 0; i < n; i++) /* a cycle cannot happen in /proc, but never lose one */
        if (!placed[i]) out[k++] = list[i];
    free(placed);
    free(stack);
    free(list);
    return out;
}

int fp_target_list(fp_target **out)
{
    DIR *d = opendir("/proc");
    if (!d) return -1;
    size_t cap = 16, n = 0;
    fp_target *list = malloc(cap * sizeof *list);
    uid_t me = geteuid();
    struct dirent *e;
    while (list && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        int pid = atoi(e->d_name);
        if (pid == getpid()) continue;
        fp_target t;
        fp_error ignored;
        if (fp_target_inspect(pid, &t, &ignored) != 0 || !t.is_python) continue;
        if (me != 0 && t.uid != me) continue;
        if (n == cap) {
            fp_target *grown = realloc(list, (cap *= 2) * sizeof *list);
            if (!grown) break;
            list = grown;
        }
        list[n++] = t;
    }
    closedir(d);
    if (!list) return -1;
    *out = target_tree_order(list, n);
    return (int)n;
}

int fp_target_children(int pid, int *pids, int max)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while (n < max && (e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        char cpath[64];
        snprintf(cpath, sizeof cpath, "/proc/%d/task/%d/children", pid, atoi(e->d_name));
        if (read_file(cpath, buf, sizeof buf) <= 0) continue;
        for (char *p = buf; *p && n < max;) {
            char *end;
            long child = strtol(p, &end, 10);
            if (end == p) break;
            p = end;
            fp_target t;
            fp_error ignored;
            if (child > 0 && fp_target_inspect((int)child, &t, &ignored) == 0 && t.is_python)
                pids[n++] = (int)child;
        }
    }
    closedir(d);
    return n;
}
