/* cJSON readers (see fp_json.h). */
#include "fp_json.h"

const cJSON *fp_json_get(const cJSON *o, const char *key)
{
    return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

const char *fp_json_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = fp_json_get(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : dflt;
}

double fp_json_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = fp_json_get(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

bool fp_json_bool(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(fp_json_get(o, key));
}

bool fp_json_has(const cJSON *o, const char *key)
{
    return fp_json_get(o, key) != NULL;
}
