/* What an agent loaded in a process says about itself, read from its memory from outside: the
 * reason it gave up starting (fp_attach_agent_error in fp_attach.h). The library's exported
 * symbol is found in the mapped file, as for fp_agent_start. */
#include "fp_attach.h"

#include <stdlib.h>
#include <string.h>

#include "fp_paths.h"
#include "fp_proc.h"

#define AGENT_ERROR_SYMBOL "fp_agent_startup_error"
#define AGENT_ERROR_SIZE 256 /* its size in agent/native/agent.c */

static bool agent_state_is_agent(const char *path)
{
    const char *base = strrchr(path, '/');
    return strcmp(base ? base + 1 : path, FP_AGENT_LIB_NAME) == 0;
}

int fp_attach_agent_error(int pid, char *buf, size_t size)
{
    if (size == 0) return -1;
    buf[0] = '\0';
    fp_map *maps = NULL;
    int n = fp_maps_read(pid, &maps);
    if (n < 0) return -1;
    const fp_map *agent = fp_maps_find(maps, n, agent_state_is_agent);
    uint64_t addr = agent ? fp_maps_symbol(pid, agent, AGENT_ERROR_SYMBOL) : 0;
    free(maps);
    if (!addr) return -1;
    char text[AGENT_ERROR_SIZE];
    if (fp_mem_read(pid, addr, text, sizeof text) != 0) return -1;
    text[sizeof text - 1] = '\0';
    /* The agent's text, but shown by fp: printable ASCII only. */
    size_t o = 0;
    for (size_t i = 0; text[i] && o + 1 < size; i++)
        buf[o++] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
    buf[o] = '\0';
    return o > 0 ? 1 : 0;
}
