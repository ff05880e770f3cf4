/* ELF symbol lookup with libelf (see fp_elf.h): the attach engine needs the file offsets of a
 * few functions (dlopen, Py_Initialize, PyGILState_Ensure, ...) in the target's libc and
 * libpython, and the first PT_LOAD page, to turn their values into run-time addresses. */
#include "fp_elf.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* versym entry bit marking a non-default version ("name@VER" rather than "name@@VER");
 * glibc's <elf.h> has no name for it. */
#define ELF_VERSYM_HIDDEN 0x8000u
#define ELF_PAGE_MASK (~(uint64_t)4095)

/* How good a match is: the sum of the bits below; a higher rank wins, the first of equal
 * ranks stays. Binding comes first (an exported symbol over a file-local one of the same
 * name), then the version the dynamic linker would bind ("name@@VER" over "name@VER"), then
 * the type (a function or object over a marker or an IFUNC resolver). */
enum {
    RANK_NONE = 0,
    RANK_DEFINED = 1,
    RANK_FUNC_OR_OBJECT = 2,
    RANK_DEFAULT_VERSION = 4,
    RANK_EXPORTED = 8,
    RANK_FINAL = 16, /* found in .dynsym: .symtab may not replace it */
};

typedef struct elf_lookup {
    const char *const *names;
    int n;
    uint64_t *values;
    int *ranks;
} elf_lookup;

/* ---- matching ---------------------------------------------------------------------------- */

/* A .dynsym name is plain and its version comes from .gnu.version; a .symtab name may carry
 * the version in the text ("dlopen@@GLIBC_2.34", "dlopen@GLIBC_2.2.5"). Returns 0 for no
 * match, else 1 plus whether the textual version is a hidden (single-@) one. */
static int name_matches(const char *sym, const char *want, int *hidden_text)
{
    size_t n = strlen(want);
    if (strncmp(sym, want, n) != 0) return 0;
    *hidden_text = 0;
    if (sym[n] == '\0') return 1;
    if (sym[n] != '@') return 0;
    *hidden_text = sym[n + 1] != '@';
    return 1;
}

static int symbol_rank(const GElf_Sym *sym, int hidden)
{
    if (sym->st_shndx == SHN_UNDEF) return RANK_NONE;
    int bind = GELF_ST_BIND(sym->st_info);
    int type = GELF_ST_TYPE(sym->st_info);
    int rank = RANK_DEFINED;
    if (type == STT_FUNC || type == STT_OBJECT) rank |= RANK_FUNC_OR_OBJECT;
    if (!hidden) rank |= RANK_DEFAULT_VERSION;
    if (bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE) rank |= RANK_EXPORTED;
    return rank;
}

static void offer(elf_lookup *l, const char *sym_name, const GElf_Sym *sym, int versym_hidden)
{
    for (int i = 0; i < l->n; i++) {
        int text_hidden = 0;
        if (!l->names[i] || !name_matches(sym_name, l->names[i], &text_hidden)) continue;
        int rank = symbol_rank(sym, versym_hidden || text_hidden);
        if (rank > l->ranks[i]) {
            l->ranks[i] = rank;
            l->values[i] = sym->st_value;
        }
    }
}

/* ---- sections ---------------------------------------------------------------------------- */

/* The .gnu.version data that belongs to the symbol table at index symtab_ndx, or NULL. */
static Elf_Data *versym_for(Elf *e, size_t symtab_ndx)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_GNU_versym && sh.sh_link == symtab_ndx)
            return elf_getdata(scn, NULL);
    }
    return NULL;
}

static int versym_hidden(Elf_Data *versyms, size_t ndx)
{
    GElf_Versym vs;
    if (!versyms || !gelf_getversym(versyms, (int)ndx, &vs)) return 0;
    return (vs & ELF_VERSYM_HIDDEN) != 0;
}

static void scan_symbols(Elf *e, Elf_Scn *scn, const GElf_Shdr *sh, elf_lookup *l)
{
    Elf_Data *data = elf_getdata(scn, NULL);
    /* A symbol table moved to a debuginfo file leaves a NOBITS section without data. */
    if (!data || !data->d_buf || sh->sh_entsize == 0) return;
    Elf_Data *versyms = sh->sh_type == SHT_DYNSYM ? versym_for(e, elf_ndxscn(scn)) : NULL;
    size_t count = sh->sh_size / sh->sh_entsize;
    for (size_t i = 1; i < count; i++) { /* entry 0 is the null symbol */
        GElf_Sym sym;
        if (!gelf_getsym(data, (int)i, &sym) || sym.st_name == 0) continue;
        const char *name = elf_strptr(e, sh->sh_link, sym.st_name);
        if (name) offer(l, name, &sym, versym_hidden(versyms, i));
    }
}

static void scan_tables(Elf *e, Elf64_Word type, elf_lookup *l)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn)) != NULL) {
        GElf_Shdr sh;
        if (gelf_getshdr(scn, &sh) && sh.sh_type == type) scan_symbols(e, scn, &sh, l);
    }
}

static int missing(const elf_lookup *l)
{
    for (int i = 0; i < l->n; i++) {
        if (l->ranks[i] == RANK_NONE) return 1;
    }
    return 0;
}

static uint64_t lowest_load_page(Elf *e)
{
    size_t phnum = 0;
    if (elf_getphdrnum(e, &phnum) != 0) return 0;
    uint64_t low = UINT64_MAX;
    for (size_t i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && ph.p_vaddr < low)
            low = ph.p_vaddr;
    }
    return low == UINT64_MAX ? 0 : low & ELF_PAGE_MASK;
}

/* ---- entry points ------------------------------------------------------------------------ */

static int lookup(Elf *e, elf_lookup *l, uint64_t *first_load_vaddr)
{
    if (first_load_vaddr) *first_load_vaddr = lowest_load_page(e);
    /* .dynsym first: it is what the dynamic linker itself resolves against. .symtab (absent
     * from stripped binaries) only fills in the names .dynsym lacks. */
    scan_tables(e, SHT_DYNSYM, l);
    if (missing(l)) {
        for (int i = 0; i < l->n; i++) {
            if (l->ranks[i] != RANK_NONE) l->ranks[i] |= RANK_FINAL;
        }
        scan_tables(e, SHT_SYMTAB, l);
    }
    int found = 0;
    for (int i = 0; i < l->n; i++)
        found += l->ranks[i] != RANK_NONE;
    return found;
}

int fp_elf_symbols(const char *path, const char *const *names, int n, uint64_t *values,
                   uint64_t *first_load_vaddr)
{
    if (n < 0 || (n > 0 && (!names || !values))) return -1;
    for (int i = 0; i < n; i++)
        values[i] = 0;
    if (elf_version(EV_CURRENT) == EV_NONE) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int found = -1;
    int *ranks = calloc(n > 0 ? (size_t)n : 1, sizeof(*ranks));
    Elf *e = ranks ? elf_begin(fd, ELF_C_READ_MMAP, NULL) : NULL;
    if (e && elf_kind(e) == ELF_K_ELF) {
        elf_lookup l = {.names = names, .n = n, .values = values, .ranks = ranks};
        found = lookup(e, &l, first_load_vaddr);
    }
    if (e) elf_end(e);
    free(ranks);
    close(fd);
    return found;
}

int fp_elf_symbol(const char *path, const char *name, uint64_t *value, uint64_t *first_load_vaddr)
{
    uint64_t v = 0;
    if (fp_elf_symbols(path, &name, 1, &v, first_load_vaddr) != 1) return -1;
    if (value) *value = v;
    return 0;
}
