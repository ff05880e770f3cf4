/* Human output made safe: every byte fp prints for a person passes through a filter that shows
 * control characters escaped (ESC as \x1b), so that text from the target (a repr, a type name,
 * an exception message, console output) can never move the cursor, clear the screen, retitle the
 * window or hide what follows. The filter sits on stdout (human output; --json output is JSON,
 * whose strings are escaped already and keep the exact text) and stderr, where every renderer,
 * message and hint ends up, and on the files commands write for humans (stack -f). */
#ifndef FP_SAFE_H
#define FP_SAFE_H

#include <stdbool.h>
#include <stdio.h>

/* Replaces stdout (unless json) and stderr by filtering streams over fds 1 and 2; once, at the
 * start of main. */
void safe_install(bool json);
/* The unfiltered stream under f when f is one of the installed filters, else f: for the line
 * editor, which writes its own terminal sequences. */
FILE *safe_real(FILE *f);
/* A filtering stream writing to under (not closed with it: fclose the result, then under).
 * NULL when out of memory. */
FILE *safe_wrap(FILE *under);
#endif
