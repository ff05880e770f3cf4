/* The call tree of a trace/event (protocol/methods.md, trace.start) as text, one line per call
 * path: its share of the invocation, its cost, the function, where it is defined and, for the
 * root's calls, the line that made them; the calls under -i or below -d summed up under their
 * caller. fp prints it for `trace`; fp-lsp shows it in the hover of a traced function. */
#ifndef FP_TRACE_TEXT_H
#define FP_TRACE_TEXT_H

#include <cjson/cJSON.h>
#include <stdio.h>

/* Writes the tree rooted at node (a NODE of the model) to out. */
void fp_trace_text_tree(FILE *out, const cJSON *node);

#endif
