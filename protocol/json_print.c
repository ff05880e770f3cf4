/* Compact JSON text of a cJSON tree (see fp_rpc.h). cJSON's own printer formats every number
 * with "%1.15g" and reads it back with sscanf to check it round-trips, about a microsecond and a
 * half each; fp's messages are mostly integers (ids, lines, counts, pids), so those are written
 * digit by digit here and only fractions go through printf. Everything else is as cJSON prints
 * it: the same escapes, keys in order, no whitespace. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp_rpc.h"

typedef struct {
    char *buf;
    size_t len, cap;
    bool failed;
} jbuf;

static bool jb_reserve(jbuf *b, size_t more)
{
    if (b->failed) return false;
    if (b->len + more <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more) {
        if (cap > SIZE_MAX / 2) {
            b->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *p = realloc(b->buf, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->buf = p;
    b->cap = cap;
    return true;
}

static void jb_put(jbuf *b, const char *s, size_t n)
{
    if (!jb_reserve(b, n)) return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void jb_char(jbuf *b, char c)
{
    if (!jb_reserve(b, 1)) return;
    b->buf[b->len++] = c;
}

/* Integers below 2^53 are exact in a double and printed as such; cJSON's "%1.15g" prints the
 * same digits for them up to 15 digits, and exponent notation past that. */
#define JSON_EXACT_INT 1e15

static void jb_number(jbuf *b, double d)
{
    if (isnan(d) || isinf(d)) {
        jb_put(b, "null", 4);
        return;
    }
    /* No floor() or fabs(): the agent's library links no libm. */
    if (d > -JSON_EXACT_INT && d < JSON_EXACT_INT && d == (double)(long long)d) {
        char digits[24];
        int n = 0;
        uint64_t v = (uint64_t)(d < 0 ? -d : d);
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        if (!jb_reserve(b, (size_t)n + 1)) return;
        if (d < 0) b->buf[b->len++] = '-';
        while (n)
            b->buf[b->len++] = digits[--n];
        return;
    }
    char text[32];
    int n = snprintf(text, sizeof text, "%1.15g", d);
    if (strtod(text, NULL) != d) n = snprintf(text, sizeof text, "%1.17g", d);
    jb_put(b, text, (size_t)n);
}

static void jb_string(jbuf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    jb_char(b, '"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (;;) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p != '"' && *p != '\\')
            p++;
        jb_put(b, (const char *)run, (size_t)(p - run));
        unsigned char c = *p;
        if (!c) break;
        p++;
        char esc[6] = {'\\', 0};
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            jb_put(b, esc, 6);
            continue;
        }
        jb_put(b, esc, 2);
    }
    jb_char(b, '"');
}

static void jb_value(jbuf *b, const cJSON *v, int depth)
{
    if (depth > CJSON_NESTING_LIMIT) {
        b->failed = true;
        return;
    }
    switch (v->type & 0xFF) {
    case cJSON_False:
        jb_put(b, "false", 5);
        break;
    case cJSON_True:
        jb_put(b, "true", 4);
        break;
    case cJSON_NULL:
        jb_put(b, "null", 4);
        break;
    case cJSON_Number:
        jb_number(b, v->valuedouble);
        break;
    case cJSON_String:
        jb_string(b, v->valuestring);
        break;
    case cJSON_Raw:
        if (!v->valuestring) {
            b->failed = true;
            return;
        }
        jb_put(b, v->valuestring, strlen(v->valuestring));
        break;
    case cJSON_Array:
    case cJSON_Object: {
        bool object = (v->type & 0xFF) == cJSON_Object;
        jb_char(b, object ? '{' : '[');
        for (const cJSON *c = v->child; c && !b->failed; c = c->next) {
            if (c != v->child) jb_char(b, ',');
            if (object) {
                jb_string(b, c->string);
                jb_char(b, ':');
            }
            jb_value(b, c, depth + 1);
        }
        jb_char(b, object ? '}' : ']');
        break;
    }
    default:
        b->failed = true;
    }
}

char *fp_json_print(const cJSON *v, size_t *len)
{
    if (!v) return NULL;
    jbuf b = {0};
    jb_value(&b, v, 0);
    jb_char(&b, '\0');
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    if (len) *len = b.len - 1;
    return b.buf;
}

char *fp_json_quote(const char *s)
{
    jbuf b = {0};
    jb_string(&b, s);
    jb_char(&b, '\0');
    if (b.failed) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}
