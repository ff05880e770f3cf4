/* Where gilstat's probes go: take_gil and drop_gil in the interpreter the process runs (its
 * libpython, or the executable), found in the symbol table (or in the debug file named by the
 * build id), turned into file offsets, and checked against DWARF for inlined copies that a
 * probe on the out-of-line function would miss. Refuses whatever would not be exact. */
#include "gil_internal.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwelf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fp_attach.h"
#include "fp_proc.h"

typedef struct sym_file {
    int fd;
    Elf *elf;
} sym_file;

static int sym_open(const char *path, sym_file *f)
{
    f->elf = NULL;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) return -1;
    elf_version(EV_CURRENT);
    f->elf = elf_begin(f->fd, ELF_C_READ_MMAP, NULL);
    if (f->elf && elf_kind(f->elf) == ELF_K_ELF) return 0;
    if (f->elf) elf_end(f->elf);
    close(f->fd);
    f->elf = NULL;
    f->fd = -1;
    errno = 0; /* opened, but not an ELF file */
    return -1;
}

static void sym_close(sym_file *f)
{
    if (f->elf) elf_end(f->elf);
    if (f->fd >= 0) close(f->fd);
    f->elf = NULL;
    f->fd = -1;
}

static void gil_note(gil_target *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void gil_note(gil_target *t, const char *fmt, ...)
{
    if (t->nnotes >= GIL_MAX_NOTES) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->notes[t->nnotes++], sizeof t->notes[0], fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------------
 * Symbols
 */

typedef enum name_class {
    NAME_NO,       /* another function */
    NAME_CALLABLE, /* the function, or a whole copy of it: entered by calls */
    NAME_COLD,     /* its cold tail (name.cold): entered by jumps from the body, never called */
    NAME_PART,     /* the rest of a function whose head was inlined into its callers */
} name_class;

/* GCC's clones keep the whole function (take_gil.constprop.0, .isra.0, .lto_priv.0), so a
 * probe on each copy sees every call; any other suffix is not understood and not trusted. */
static bool suffix_is_clone(const char *rest)
{
    static const char *const known[] = {"constprop", "isra", "lto_priv", "localalias"};
    char buf[96];
    snprintf(buf, sizeof buf, "%s", rest);
    char *save = NULL;
    for (char *w = strtok_r(buf, ".", &save); w; w = strtok_r(NULL, ".", &save)) {
        bool ok = strspn(w, "0123456789") == strlen(w);
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !ok; i++)
            ok = strcmp(w, known[i]) == 0;
        if (!ok) return false;
    }
    return true;
}

static name_class classify(const char *sym, const char *fn)
{
    size_t n = strlen(fn);
    if (strncmp(sym, fn, n) != 0) return NAME_NO;
    const char *rest = sym + n;
    if (*rest == '\0') return NAME_CALLABLE;
    if (*rest != '.') return NAME_NO;
    if (strstr(rest, ".part")) return NAME_PART;
    if (strstr(rest, ".cold")) return NAME_COLD;
    return suffix_is_clone(rest + 1) ? NAME_CALLABLE : NAME_PART;
}

static bool site_known(const gil_target *t, gil_kind kind, uint64_t addr)
{
    for (int i = 0; i < t->nsites; i++)
        if (t->sites[i].kind == kind && t->sites[i].addr == addr) return true;
    return false;
}

static int site_add(gil_target *t, gil_kind kind, uint64_t addr, const char *what)
{
    if (site_known(t, kind, addr)) return 0;
    if (t->nsites >= GIL_MAX_SITES) return -1;
    gil_site *s = &t->sites[t->nsites++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->addr = addr;
    snprintf(s->what, sizeof s->what, "%s", what);
    return 0;
}

typedef struct sym_scan {
    gil_target *t;
    char part[96]; /* a partially inlined copy seen: its name */
    bool overflow;
} sym_scan;

static void scan_one(sym_scan *sc, const char *name, const GElf_Sym *sym)
{
    static const struct {
        const char *fn;
        gil_kind in, out;
    } fns[] = {{"take_gil", GIL_TAKE_IN, GIL_TAKE_OUT}, {"drop_gil", GIL_DROP_IN, GIL_DROP_OUT}};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        name_class c = classify(name, fns[i].fn);
        if (c == NAME_PART) snprintf(sc->part, sizeof sc->part, "%s", name);
        if (c != NAME_CALLABLE) continue;
        if (site_add(sc->t, fns[i].in, sym->st_value, name) != 0 ||
            site_add(sc->t, fns[i].out, sym->st_value, name) != 0)
            sc->overflow = true;
    }
}

static void scan_symbols(Elf *elf, sym_scan *sc)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        /* A symbol table moved to a debug file leaves a NOBITS section without data. */
        if (!data || !data->d_buf || sh.sh_entsize == 0) continue;
        size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 1; i < count; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
                sym.st_shndx == SHN_UNDEF || sym.st_value == 0)
                continue;
            const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
            if (name) scan_one(sc, name, &sym);
        }
    }
}

/* The function whose symbol covers addr, for naming an inlined copy's place. */
static void sym_enclosing(Elf *elf, uint64_t addr, char *buf, size_t size)
{
    snprintf(buf, size, "0x%llx", (unsigned long long)addr);
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM))
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (!data || !data->d_buf || sh.sh_entsize == 0) continue;
        for (size_t i = 1; i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
                addr < sym.st_value || addr >= sym.st_value + sym.st_size)
                continue;
            const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
            if (name) snprintf(buf, size, "%s", name);
            return;
        }
    }
}

static bool has_section(Elf *elf, const char *want)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(elf, &shstrndx) != 0) return false;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(elf, scn)) != NULL) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS) continue;
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        if (name && strcmp(name, want) == 0) return true;
    }
    return false;
}

/* /usr/lib/debug/.build-id/ab/cdef...debug for elf, looked for in the process's file system
 * first (where its interpreter came from), then in ours. Returns 0 with f open, or -1. */
static int debug_file_open(int pid, Elf *elf, sym_file *f, char *path, size_t size)
{
    const unsigned char *id;
    ssize_t n = dwelf_elf_gnu_build_id(elf, (const void **)&id);
    if (n < 2) return -1;
    char rel[256];
    int len = snprintf(rel, sizeof rel, "/usr/lib/debug/.build-id/%02x/", id[0]);
    for (ssize_t i = 1; i < n && len < (int)sizeof rel - 8; i++)
        len += snprintf(rel + len, sizeof rel - (size_t)len, "%02x", id[i]);
    snprintf(rel + len, sizeof rel - (size_t)len, ".debug");
    fp_maps_target_path(pid, rel, path, size);
    if (sym_open(path, f) == 0) return 0;
    snprintf(path, size, "%s", rel);
    return sym_open(path, f);
}

/* ---------------------------------------------------------------------------------------------
 * Inlined copies (DWARF)
 */

typedef struct inline_scan {
    gil_target *t;
    Elf *symelf;
    int takes;         /* inlined copies of take_gil */
    char take_in[96];  /* the function one of them is in */
    Dwarf_Off seen[8]; /* compilation units already walked */
    int nseen;
    bool overflow;
} inline_scan;

static const char *origin_name(Dwarf_Die *die)
{
    Dwarf_Attribute a;
    Dwarf_Die origin;
    if (!dwarf_attr_integrate(die, DW_AT_abstract_origin, &a) || !dwarf_formref_die(&a, &origin))
        return NULL;
    Dwarf_Attribute na;
    return dwarf_formstring(dwarf_attr_integrate(&origin, DW_AT_name, &na));
}

static void inline_found(inline_scan *is, Dwarf_Die *die, const char *name)
{
    Dwarf_Addr pc;
    if (dwarf_entrypc(die, &pc) != 0) return;
    char where[64], what[96];
    sym_enclosing(is->symelf, pc, where, sizeof where);
    if (strcmp(name, "take_gil") == 0) {
        is->takes++;
        snprintf(is->take_in, sizeof is->take_in, "%s", where);
        return;
    }
    /* drop_gil inlined: its first instruction still marks the end of the hold exactly; only
     * the time spent inside it cannot be measured (there is no return to probe). */
    snprintf(what, sizeof what, "drop_gil inlined in %s", where);
    if (site_add(is->t, GIL_DROP_IN, pc, what) != 0) is->overflow = true;
}

static void inline_walk(inline_scan *is, Dwarf_Die *parent)
{
    Dwarf_Die child;
    if (dwarf_child(parent, &child) != 0) return;
    do {
        if (dwarf_tag(&child) == DW_TAG_inlined_subroutine) {
            const char *name = origin_name(&child);
            if (name && (strcmp(name, "take_gil") == 0 || strcmp(name, "drop_gil") == 0))
                inline_found(is, &child, name);
        }
        inline_walk(is, &child);
    } while (dwarf_siblingof(&child, &child) == 0);
}

/* A static function can only be inlined inside its own translation unit (without LTO), so
 * walking the units that hold the out-of-line copies finds every inlined one. */
static void inline_check(gil_target *t, Elf *symelf, Dwarf *dw, inline_scan *is)
{
    memset(is, 0, sizeof *is);
    is->t = t;
    is->symelf = symelf;
    int n = t->nsites;
    for (int i = 0; i < n; i++) {
        Dwarf_Die cu;
        if (!dwarf_addrdie(dw, t->sites[i].addr, &cu)) continue;
        Dwarf_Off off = dwarf_dieoffset(&cu);
        bool seen = false;
        for (int k = 0; k < is->nseen; k++)
            seen = seen || is->seen[k] == off;
        if (seen || is->nseen == (int)(sizeof is->seen / sizeof is->seen[0])) continue;
        is->seen[is->nseen++] = off;
        inline_walk(is, &cu);
    }
}

/* ---------------------------------------------------------------------------------------------
 * File offsets
 */

static int site_offsets(gil_target *t, Elf *probed, fp_error *err)
{
    size_t nph;
    if (elf_getphdrnum(probed, &nph) != 0)
        return fp_error_set(err, FP_E_UNSUPPORTED, NULL, "%s has no program headers", t->shown);
    for (int i = 0; i < t->nsites; i++) {
        gil_site *s = &t->sites[i];
        bool found = false;
        for (size_t k = 0; k < nph && !found; k++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(probed, (int)k, &ph) || ph.p_type != PT_LOAD ||
                !(ph.p_flags & PF_X) || s->addr < ph.p_vaddr || s->addr >= ph.p_vaddr + ph.p_filesz)
                continue;
            s->offset = s->addr - ph.p_vaddr + ph.p_offset;
            found = true;
        }
        if (!found)
            return fp_error_set(err, FP_E_UNSUPPORTED,
                                "the symbols may belong to another build of this file",
                                "%s (0x%llx) is outside the executable segments of %s", s->what,
                                (unsigned long long)s->addr, t->shown);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Locating
 */

static const char no_symbols_hint[] =
    "take_gil and drop_gil are the interpreter's private functions that take and release the\n"
    "GIL; without their symbols no probe sees every switch. The exported PyEval_SaveThread and\n"
    "PyEval_RestoreThread miss the releases the interpreter makes by itself every switch\n"
    "interval, so counting those would give wrong numbers, and fp does not guess.\n"
    "Install the interpreter's debug symbols (Debian: python3.X-dbgsym from the debian-debug\n"
    "archive; fp looks in /usr/lib/debug/.build-id), or run the program under a Python whose\n"
    "libpython keeps its symbol table (pyenv's builds do).";

static int locate_symbols(gil_target *t, sym_file *probed, sym_file *dbg, fp_error *err)
{
    sym_scan sc = {.t = t};
    scan_symbols(probed->elf, &sc);
    snprintf(t->symbols, sizeof t->symbols, "%s", t->shown);
    char dbg_path[PATH_MAX];
    if (t->nsites == 0 &&
        debug_file_open(t->pid, probed->elf, dbg, dbg_path, sizeof dbg_path) == 0) {
        scan_symbols(dbg->elf, &sc);
        snprintf(t->symbols, sizeof t->symbols, "%s", dbg_path);
    }
    if (sc.overflow)
        return fp_error_set(err, FP_E_UNSUPPORTED, NULL,
                            "%s has more copies of take_gil/drop_gil than gilstat can probe (%d)",
                            t->shown, GIL_MAX_SITES);
    if (sc.part[0])
        return fp_error_set(err, FP_E_UNSUPPORTED,
                            "the compiler split the function and inlined its head into its "
                            "callers; a probe would miss those calls",
                            "gilstat cannot count GIL switches exactly in process %d: %s has "
                            "only part of %s as a function",
                            t->pid, t->shown, sc.part);
    bool take = false, drop = false;
    for (int i = 0; i < t->nsites; i++) {
        take = take || t->sites[i].kind == GIL_TAKE_IN;
        drop = drop || t->sites[i].kind == GIL_DROP_IN;
    }
    if (!take || !drop)
        return fp_error_set(err, FP_E_UNSUPPORTED, no_symbols_hint,
                            "gilstat cannot count GIL switches exactly in process %d (Python "
                            "%s): %s has no symbol for %s (a stripped build)",
                            t->pid, t->version, t->shown,
                            !take && !drop ? "take_gil and drop_gil"
                            : !take        ? "take_gil"
                                           : "drop_gil");
    return 0;
}

static int locate_inlined(gil_target *t, sym_file *probed, sym_file *dbg, fp_error *err)
{
    Elf *dwelf = dbg->elf && has_section(dbg->elf, ".debug_info") ? dbg->elf : probed->elf;
    Dwarf *dw =
        has_section(dwelf, ".debug_info") ? dwarf_begin_elf(dwelf, DWARF_C_READ, NULL) : NULL;
    if (!dw) {
        gil_note(t, "no debug information: copies of take_gil/drop_gil inlined into other "
                    "functions could not be checked for");
        return 0;
    }
    inline_scan is;
    inline_check(t, dbg->elf ? dbg->elf : probed->elf, dw, &is);
    dwarf_end(dw);
    if (is.overflow)
        return fp_error_set(err, FP_E_UNSUPPORTED, NULL,
                            "%s has more inlined copies of drop_gil than gilstat can probe",
                            t->shown);
    if (is.takes)
        return fp_error_set(err, FP_E_UNSUPPORTED,
                            "an inlined copy has no return to probe, so the end of those waits "
                            "cannot be seen",
                            "gilstat cannot time GIL acquisitions exactly in process %d: take_gil "
                            "is inlined in %d place%s of %s (e.g. %s)",
                            t->pid, is.takes, is.takes == 1 ? "" : "s", t->shown, is.take_in);
    return 0;
}

int fp_gil_locate(int pid, gil_target *t, fp_error *err)
{
    memset(t, 0, sizeof *t);
    t->pid = pid;
    fp_target tg;
    if (fp_target_check(pid, &tg, err) != 0) return -1;
    snprintf(t->version, sizeof t->version, "%s", tg.py_version);
    snprintf(t->shown, sizeof t->shown, "%s", tg.libpython[0] ? tg.libpython : tg.exe);
    if (strstr(t->shown, " (deleted)"))
        return fp_error_set(
            err, FP_E_UNSUPPORTED, "restart the program to probe the installed file",
            "the interpreter file of process %d was replaced or deleted: %s", pid, t->shown);
    fp_maps_target_path(pid, t->shown, t->file, sizeof t->file);

    sym_file probed, dbg = {.fd = -1};
    if (sym_open(t->file, &probed) != 0) {
        int e = errno;
        return fp_error_set(err, e == EACCES || e == EPERM ? FP_E_PERMISSION : FP_E_UNSUPPORTED,
                            NULL, "cannot read the interpreter %s: %s", t->file,
                            e ? strerror(e) : "not an ELF file");
    }
    int rc = locate_symbols(t, &probed, &dbg, err);
    if (rc == 0) rc = locate_inlined(t, &probed, &dbg, err);
    if (rc == 0) rc = site_offsets(t, probed.elf, err);
    sym_close(&dbg);
    sym_close(&probed);
    return rc;
}
