/* Models the core builds itself (not the agent), shared by both front ends: an error, the
 * process list, help. Each returns a new cJSON tree the caller deletes (NULL when out of
 * memory); schemas in protocol/jsonl.md. */
#ifndef FP_MODELS_H
#define FP_MODELS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "fp_attach.h"
#include "fp_error.h"

/* {"code", "rpc_code", "message", "hint", "data"?}: data is the agent's error data (copied),
 * from its error object rpc_error (may be NULL). */
cJSON *fp_model_error(const fp_error *e, const cJSON *rpc_error);
/* {"processes": [{"pid", "ppid", "uid", "user", "python_version", "exe", "cmdline", "cwd"}]},
 * each child right after its parent. */
cJSON *fp_model_processes(const fp_target *targets, int n);
/* The user name of uid (its number when it has none), in buf. */
const char *fp_model_user(uid_t uid, char *buf, size_t size);
/* help's model: {"commands": [{name, usage, summary}]} or, for a topic, {name, usage, summary,
 * help}. NULL with err for an unknown topic. */
cJSON *fp_model_help(const char *topic, fp_error *err);

#endif
