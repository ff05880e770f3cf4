/* libFuzzer target: the ELF symbol reader (server/attach/elf.c) on corrupted files. fp reads the
 * symbol tables of files a target maps, which that target's user may have written: a truncated,
 * inconsistent or hostile file must give "not found", never a crash or a read out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fp_elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz-elf", MFD_CLOEXEC);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    static const char *const names[] = {"dlopen",      "__libc_dlopen_mode", "_PyRuntime",
                                        "PyCode_Type", "fp_agent_start",     "take_gil"};
    uint64_t values[6], first = 0, one = 0;
    fp_elf_symbols(path, names, 6, values, &first);
    fp_elf_symbol(path, "Py_Version", &one, NULL);
    close(fd);
    return 0;
}
