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

bool fp_json_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        unsigned c = *p;
        if (c < 0x80) {
            p++;
            continue;
        }
        size_t more;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) {
            more = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= more) return false;
        for (size_t i = 1; i <= more; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        p += more + 1;
    }
    return true;
}
