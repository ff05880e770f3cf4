/* Reading a process from outside: its mappings (/proc/PID/maps), symbols of mapped files,
 * and its memory (process_vm_readv, /proc/PID/mem). Shared by the attach engine and the
 * out-of-process readers. */
#ifndef FP_PROC_H
#define FP_PROC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fp_map {
    uint64_t start, end, offset;
    char perms[5];
    char path[PATH_MAX];
} fp_map;

/* Reads /proc/PID/maps. *out is malloc'd (caller frees); returns the count or -1 (errno set). */
int fp_maps_read(int pid, fp_map **out);
/* The lowest mapping (offset 0) of the first file whose path matches pred; NULL if none. */
const fp_map *fp_maps_find(const fp_map *maps, int n, bool (*pred)(const char *path));
/* Path under /proc/PID/root so that files are read in the target's mount namespace. */
void fp_maps_target_path(int pid, const char *path, char *buf, size_t size);
/* Runtime address of symbol `name` of the mapped file m, 0 when not found. */
uint64_t fp_maps_symbol(int pid, const fp_map *m, const char *name);
/* Reads len bytes at addr in pid (process_vm_readv, falling back to /proc/PID/mem). */
int fp_mem_read(int pid, uint64_t addr, void *buf, size_t len);
/* Writes len bytes at addr in pid (process_vm_writev, falling back to /proc/PID/mem). */
int fp_mem_write(int pid, uint64_t addr, const void *buf, size_t len);

#endif
