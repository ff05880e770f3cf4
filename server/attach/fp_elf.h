/* ELF symbol lookup with libelf: find a symbol's value in a file's .dynsym/.symtab, and the
 * file's load bias so that a runtime address = map start - first PT_LOAD page + value. */
#ifndef FP_ELF_H
#define FP_ELF_H

#include <stdbool.h>
#include <stdint.h>

/* Looks up name in path's .dynsym then .symtab. Returns 0 and sets *value (st_value) or -1.
 * *first_load_vaddr (may be NULL) receives the lowest PT_LOAD p_vaddr rounded down to a page. */
int fp_elf_symbol(const char *path, const char *name, uint64_t *value, uint64_t *first_load_vaddr);
/* Same for several names at once (one open); values[i] is 0 for a name not found.
 * Returns the number found, or -1 when the file cannot be read as ELF. */
int fp_elf_symbols(const char *path, const char *const *names, int n, uint64_t *values,
                   uint64_t *first_load_vaddr);

#endif
