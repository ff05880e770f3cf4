/* Clients of one user take turns on a process while they hold its threads: an attach (from the
 * first look at the process until its agent answers) and a read that stops the threads (`stack`,
 * `perf --native`). Without turns, one finds the threads stopped under the other's ptrace: the
 * attach fails ("stopped", "permission denied"), the read cannot pause them. */
#ifndef FP_TURNS_H
#define FP_TURNS_H

#include <stddef.h>

#include "fp_error.h"

typedef struct fp_turn {
    int fd; /* the locked file, -1: no turn held */
    char path[128];
} fp_turn;

/* fp's own directory (/tmp/fp-EUID), made when `create`; -1 when it is not a directory of ours
 * (then nothing in it is used). */
int fp_turn_own_dir(char *dir, size_t size, int create);

/* Waits up to timeout_ms for process pid's turn. 1: taken (give it back with fp_turn_give);
 * 0: no turn can be had here (fp's directory is not usable: go on without one); -1 with err:
 * another fp held it for all that time. */
int fp_turn_take(int pid, int timeout_ms, fp_turn *turn, fp_error *err);
void fp_turn_give(fp_turn *turn);

#endif
