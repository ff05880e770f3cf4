/* Unit tests for server/attach/elf.c against the real files attach works on (libc, the system
 * python3.11, a pyenv libpython). Expected values come from readelf, run through popen, so
 * the tests follow whatever versions of those files this machine has. */
#include "check.h"
#include "fp_elf.h"

#include <glob.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"
#define SYSTEM_PYTHON "/usr/bin/python3.11"

static int skipped;

static void skip(const char *what)
{
    printf("note: skipped: %s\n", what);
    skipped++;
}

/* The value readelf reports for name in path's symbol tables (table: "--dyn-syms" or
 * "--syms"): defined, with the default version ("name" or "name@@V") over "name@V".
 * Returns the number of defined entries seen with that plain name (0: not listed). */
static int readelf_value(const char *path, const char *table, const char *name, uint64_t *out)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "readelf -W %s '%s' 2>/dev/null", table, path);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char line[1024];
    int seen = 0;
    int best = 0; /* 2: default version, 1: hidden version */
    size_t n = strlen(name);
    while (fgets(line, sizeof(line), p)) {
        unsigned long long value;
        char size[32], type[32], bind[32], vis[32], ndx[32], sym[512];
        if (sscanf(line, " %*[0-9]: %llx %31s %31s %31s %31s %31s %511s", &value, size, type, bind,
                   vis, ndx, sym) != 7)
            continue;
        if (strcmp(ndx, "UND") == 0 || strncmp(sym, name, n) != 0) continue;
        if (sym[n] != '\0' && sym[n] != '@') continue;
        seen++;
        int rank = sym[n] == '\0' || sym[n + 1] == '@' ? 2 : 1;
        if (rank > best) {
            best = rank;
            *out = value;
        }
    }
    pclose(p);
    return seen;
}

/* The lowest PT_LOAD p_vaddr from readelf -l, rounded down to a page. */
static int readelf_first_load(const char *path, uint64_t *out)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "readelf -W -l '%s' 2>/dev/null", path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[1024];
    uint64_t low = UINT64_MAX;
    while (fgets(line, sizeof(line), p)) {
        char kind[32];
        unsigned long long offset, vaddr;
        if (sscanf(line, " %31s %llx %llx", kind, &offset, &vaddr) == 3 &&
            strcmp(kind, "LOAD") == 0 && vaddr < low)
            low = vaddr;
    }
    pclose(p);
    if (low == UINT64_MAX) return -1;
    *out = low & ~(uint64_t)4095;
    return 0;
}

/* fp_elf_symbol agrees with readelf (--dyn-syms) for name in path. */
static void check_symbol(const char *path, const char *name)
{
    uint64_t want = 0, got = 0, load = 1;
    if (readelf_value(path, "--dyn-syms", name, &want) == 0) {
        fprintf(stderr, "    readelf does not list %s in %s\n", name, path);
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(fp_elf_symbol(path, name, &got, &load), 0);
    CHECK(got == want);
    if (got != want)
        fprintf(stderr, "    %s in %s: got 0x%" PRIx64 ", readelf says 0x%" PRIx64 "\n", name, path,
                got, want);
}

static void check_first_load(const char *path, uint64_t expected)
{
    uint64_t load = 1, from_readelf = 2;
    CHECK_EQ_INT(fp_elf_symbol(path, "no_such_symbol_fp", NULL, &load), -1);
    CHECK_EQ_INT(load, expected);
    if (readelf_first_load(path, &from_readelf) == 0) CHECK_EQ_INT(load, from_readelf);
}

static void test_libc(void)
{
    if (access(LIBC, R_OK) != 0) {
        skip(LIBC " is absent");
        return;
    }
    check_symbol(LIBC, "dlopen");
    check_symbol(LIBC, "malloc");
    /* Two versions at different addresses: the default (@@) one must win. */
    check_symbol(LIBC, "realpath");
    check_symbol(LIBC, "posix_spawn");
    check_symbol(LIBC, "pthread_cond_wait");
    check_symbol(LIBC, "memcpy");
    check_first_load(LIBC, 0);
}

static void test_system_python(void)
{
    if (access(SYSTEM_PYTHON, R_OK) != 0) {
        skip(SYSTEM_PYTHON " is absent");
        return;
    }
    check_symbol(SYSTEM_PYTHON, "Py_Initialize");
    check_symbol(SYSTEM_PYTHON, "PyGILState_Ensure");
    check_first_load(SYSTEM_PYTHON, 0x400000);
}

/* The pyenv libpython with the highest minor version, or NULL. */
static char *newest_pyenv_libpython(void)
{
    glob_t g;
    if (glob("/root/.pyenv/versions/*/lib/libpython3.*.so.1.0", 0, NULL, &g) != 0) return NULL;
    char *best = NULL;
    int best_minor = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/');
        int minor = -1;
        if (base && sscanf(base, "/libpython3.%d", &minor) == 1 && minor > best_minor) {
            best_minor = minor;
            free(best);
            best = strdup(g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return best;
}

/* Every pyenv libpython (3.6 to 3.13 here): the two functions attach calls first. */
static void test_every_pyenv_libpython(void)
{
    glob_t g;
    if (glob("/root/.pyenv/versions/*/lib/libpython3.*.so.1.0", 0, NULL, &g) != 0) {
        skip("no pyenv libpython under /root/.pyenv/versions");
        return;
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        check_symbol(g.gl_pathv[i], "Py_Initialize");
        check_symbol(g.gl_pathv[i], "PyGILState_Ensure");
    }
    printf("note: checked %zu pyenv libpythons\n", g.gl_pathc);
    globfree(&g);
}

static void test_pyenv_libpython(void)
{
    char *lib = newest_pyenv_libpython();
    if (!lib) {
        skip("no pyenv libpython under /root/.pyenv/versions");
        return;
    }
    printf("note: pyenv libpython: %s\n", lib);
    check_symbol(lib, "Py_Initialize");
    check_symbol(lib, "PyGILState_Ensure");
    check_first_load(lib, 0);

    /* A static function is only in .symtab: found there when .dynsym lacks it. */
    uint64_t want = 0, got = 0;
    if (readelf_value(lib, "--syms", "bytearray_reverse", &want) == 1) {
        CHECK_EQ_INT(fp_elf_symbol(lib, "bytearray_reverse", &got, NULL), 0);
        CHECK(got == want);
    } else {
        skip("bytearray_reverse is not a unique .symtab entry in this libpython");
    }

    const char *names[] = {"Py_Initialize", "no_such_symbol_fp", "PyGILState_Ensure"};
    uint64_t values[3] = {1, 1, 1};
    uint64_t load = 1;
    CHECK_EQ_INT(fp_elf_symbols(lib, names, 3, values, &load), 2);
    CHECK(values[0] != 0 && values[2] != 0);
    CHECK_EQ_INT(values[1], 0);
    CHECK_EQ_INT(load, 0);
    uint64_t one = 0;
    CHECK_EQ_INT(fp_elf_symbol(lib, "Py_Initialize", &one, NULL), 0);
    CHECK(one == values[0]);
    free(lib);
}

static void test_not_found(void)
{
    uint64_t value = 7;
    CHECK_EQ_INT(fp_elf_symbol(LIBC, "no_such_symbol_fp", &value, NULL), -1);
    CHECK_EQ_INT(value, 7); /* untouched on failure */
    /* A prefix of a real name is not a match. */
    CHECK_EQ_INT(fp_elf_symbol(LIBC, "dlope", &value, NULL), -1);
    /* Undefined references are not definitions: python3.11 imports but does not define it. */
    if (readelf_value(SYSTEM_PYTHON, "--dyn-syms", "pthread_create", &value) == 0)
        CHECK_EQ_INT(fp_elf_symbol(SYSTEM_PYTHON, "pthread_create", &value, NULL), -1);
}

static void test_not_elf(void)
{
    uint64_t value = 0, load = 0;
    const char *name = "dlopen";
    uint64_t values[1];
    CHECK_EQ_INT(fp_elf_symbol("/etc/hostname", "dlopen", &value, &load), -1);
    CHECK_EQ_INT(fp_elf_symbols("/etc/hostname", &name, 1, values, NULL), -1);
    CHECK_EQ_INT(fp_elf_symbol("/nonexistent/fp/file", "dlopen", &value, NULL), -1);
    CHECK_EQ_INT(fp_elf_symbols("/", &name, 1, values, NULL), -1);
    CHECK_EQ_INT(fp_elf_symbols(LIBC, NULL, 0, NULL, NULL), 0);
}

int main(void)
{
    test_libc();
    test_system_python();
    test_pyenv_libpython();
    test_every_pyenv_libpython();
    test_not_found();
    test_not_elf();
    if (skipped) printf("note: %d check group(s) skipped\n", skipped);
    return check_summary();
}
