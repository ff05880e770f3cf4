/* Holding threads of another process still for a moment, to read it from outside (stacks,
 * native unwinding): PTRACE_SEIZE + PTRACE_INTERRUPT, no register touched, released exactly
 * as they were. A signal that reaches a thread before it stops is passed on at once, with
 * its original siginfo (the thread runs its handler, then stops); signals that come while
 * it is stopped stay pending and are delivered by the kernel at the release. Implemented in
 * ptrace.c next to the attach engine's own stop. */
#ifndef FP_PTRACE_H
#define FP_PTRACE_H

#include <stdbool.h>

typedef struct fp_ptrace_hold {
    int tid;
    int err;      /* why it is not stopped: an errno (ESRCH gone, EPERM refused, ETIMEDOUT...) */
    bool seized;  /* traced by us: release it, or reap it once it stops (fp_ptrace_reap) */
    bool stopped; /* in our interrupt stop: it runs no code until released */
    int passed;   /* signals passed on while it was being stopped */
} fp_ptrace_hold;

/* Seizes and interrupts every holds[i].tid at once, then waits up to
 * timeout_ms for all of them to stop. Fills the other members. Returns how many stopped. */
int fp_ptrace_hold_all(fp_ptrace_hold *holds, int n, int timeout_ms);
/* Lets every stopped thread of holds go (PTRACE_DETACH, which restarts an interrupted system
 * call). A seized thread that never stopped keeps seized = true. */
void fp_ptrace_release_all(fp_ptrace_hold *holds, int n);
/* A seized thread that had not stopped: waits up to wait_ms for its stop, then releases it.
 * Returns true when it is released or gone, false when it still has not stopped. */
bool fp_ptrace_reap(int tid, int wait_ms);

#endif
