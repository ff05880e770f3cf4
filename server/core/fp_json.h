/* Small readers of cJSON models, shared by every renderer and the core: a member's value or a
 * default when it is missing or of another type. Borrowed pointers; nothing is allocated. */
#ifndef FP_JSON_H
#define FP_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

const cJSON *fp_json_get(const cJSON *o, const char *key);
/* The string member key, or dflt. */
const char *fp_json_str(const cJSON *o, const char *key, const char *dflt);
/* The number member key, or dflt. */
double fp_json_num(const cJSON *o, const char *key, double dflt);
/* Whether member key is true (false when missing). */
bool fp_json_bool(const cJSON *o, const char *key);
/* Whether o has member key (whatever its value, null included). */
bool fp_json_has(const cJSON *o, const char *key);

/* Whether s[0..n) is well-formed UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF), as JSON text must be. */
bool fp_json_utf8_valid(const char *s, size_t n);

#endif
