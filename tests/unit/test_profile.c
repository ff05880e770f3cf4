/* The profile aggregation and its recorders on a synthetic profile: counts (self, total once
 * per sample, lines), collapsed lines, speedscope's shape, and an SVG that escapes names. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fp_profile.h"

static fp_frame py(const char *fn, const char *file, int first, int line)
{
    return (fp_frame){
        .kind = FP_FRAME_PYTHON, .function = fn, .file = file, .line = line, .first_line = first};
}

static fp_frame nat(const char *fn, const char *file)
{
    return (fp_frame){.kind = FP_FRAME_NATIVE, .function = fn, .file = file};
}

/* 6 samples of thread 1 in hot_loop (two lines), 2 in cold, 1 recursive, 1 idle thread. */
static fp_profile *sample_profile(void)
{
    fp_profile *p = fp_profile_new();
    fp_thread t1 = {.native_id = 101, .name = "main"}, t2 = {.native_id = 102, .name = "io"};
    fp_frame hot[] = {py("hot_loop", "/app/hot.py", 10, 12), py("main", "/app/hot.py", 30, 33),
                      py("<module>", "/app/hot.py", 1, 40)};
    fp_frame hot2[] = {py("hot_loop", "/app/hot.py", 10, 13), py("main", "/app/hot.py", 30, 33),
                       py("<module>", "/app/hot.py", 1, 40)};
    fp_frame cold[] = {py("cold", "/app/hot.py", 20, 21), py("main", "/app/hot.py", 30, 34),
                       py("<module>", "/app/hot.py", 1, 40)};
    fp_frame rec[] = {py("f", "/app/r.py", 1, 2), py("f", "/app/r.py", 1, 3),
                      py("<module>", "/app/hot.py", 1, 40)};
    fp_frame idle[] = {nat("clock_nanosleep", "/lib/libc.so.6"),
                       py("wait<&\"x'>", "/app/io;x.py", 5, 6)};
    for (int i = 0; i < 4; i++)
        fp_profile_add(p, &t1, hot, 3, false);
    for (int i = 0; i < 2; i++)
        fp_profile_add(p, &t1, hot2, 3, false);
    for (int i = 0; i < 2; i++)
        fp_profile_add(p, &t1, cold, 3, false);
    fp_profile_add(p, &t1, rec, 3, false);
    fp_profile_add(p, &t2, idle, 2, true);
    fp_profile_meta *m = fp_profile_meta_of(p);
    m->pid = 42;
    snprintf(m->python, sizeof m->python, "3.12.1");
    m->rate_hz = 100;
    return p;
}

static const fp_profile_frame *find_frame(const fp_profile *p, const char *fn)
{
    for (int i = 0; i < fp_profile_nframes(p); i++)
        if (strcmp(fp_profile_frame_at(p, i)->function, fn) == 0) return fp_profile_frame_at(p, i);
    return NULL;
}

static const fp_profile_line *find_line(const fp_profile *p, const char *file, int line)
{
    for (int i = 0; i < fp_profile_nlines(p); i++) {
        const fp_profile_line *l = fp_profile_line_at(p, i);
        if (strcmp(l->file, file) == 0 && l->line == line) return l;
    }
    return NULL;
}

static void test_counts(void)
{
    fp_profile *p = sample_profile();
    CHECK_EQ_INT(fp_profile_samples(p), 10);
    CHECK_EQ_INT(fp_profile_nthreads(p), 2);
    const fp_profile_frame *hot = find_frame(p, "hot_loop");
    CHECK(hot && hot->self == 6 && hot->total == 6);
    const fp_profile_frame *mod = find_frame(p, "<module>");
    CHECK(mod && mod->self == 0 && mod->total == 9);
    /* Recursion counts once in total. */
    const fp_profile_frame *f = find_frame(p, "f");
    CHECK(f && f->self == 1 && f->total == 1);
    const fp_profile_line *l12 = find_line(p, "/app/hot.py", 12);
    CHECK(l12 && l12->self == 4 && l12->total == 4);
    const fp_profile_line *l33 = find_line(p, "/app/hot.py", 33);
    CHECK(l33 && l33->self == 0 && l33->total == 6);
    const fp_profile_line *l40 = find_line(p, "/app/hot.py", 40);
    CHECK(l40 && l40->total == 9);
    /* Same functions in the same thread: one stack, whatever the lines. */
    CHECK_EQ_INT(fp_profile_nstacks(p), 4);
    fp_profile_free(p);
}

static char *write_to_string(const fp_recorder *rec, const fp_profile *p)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fp_error e;
    fp_error_clear(&e);
    CHECK_EQ_INT(rec->write(p, f, &e), 0);
    fclose(f);
    return buf;
}

static void test_collapsed(void)
{
    fp_profile *p = sample_profile();
    char *text = write_to_string(fp_recorder_find("collapsed"), p);
    CHECK(strstr(text,
                 "<module> (/app/hot.py:1);main (/app/hot.py:30);hot_loop (/app/hot.py:10) 6\n") !=
          NULL);
    CHECK(strstr(text, "cold (/app/hot.py:20) 2\n") != NULL);
    /* ';' inside a name must not split a frame. */
    CHECK(strstr(text, "wait<&\"x'> (/app/io:x.py:5);clock_nanosleep (/lib/libc.so.6) 1\n") !=
          NULL);
    int lines = 0;
    for (char *c = text; *c; c++)
        lines += *c == '\n';
    CHECK_EQ_INT(lines, 4);
    free(text);
    fp_profile_free(p);
}

static void test_speedscope(void)
{
    fp_profile *p = sample_profile();
    char *text = write_to_string(fp_recorder_find("speedscope"), p);
    cJSON *root = cJSON_Parse(text);
    CHECK(root != NULL);
    cJSON *frames = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "shared"), "frames");
    CHECK_EQ_INT(cJSON_GetArraySize(frames), fp_profile_nframes(p));
    cJSON *profiles = cJSON_GetObjectItem(root, "profiles");
    CHECK_EQ_INT(cJSON_GetArraySize(profiles), 2);
    cJSON *first = cJSON_GetArrayItem(profiles, 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(first, "type")), "sampled");
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(first, "samples")),
                 cJSON_GetArraySize(cJSON_GetObjectItem(first, "weights")));
    CHECK_EQ_INT(cJSON_GetObjectItem(first, "endValue")->valuedouble, 9);
    cJSON_Delete(root);
    free(text);
    fp_profile_free(p);
}

static void test_svg(void)
{
    fp_profile *p = sample_profile();
    char *text = write_to_string(fp_recorder_find("svg"), p);
    CHECK(strncmp(text, "<?xml", 5) == 0);
    CHECK(strstr(text, "hot_loop (hot.py:10)") != NULL);
    CHECK(strstr(text, "wait&lt;&amp;&quot;x&apos;&gt;") != NULL);
    CHECK(strstr(text, "wait<&") == NULL);
    CHECK(strstr(text, "</svg>\n") != NULL);
    CHECK(strstr(text, "http://") == strstr(text, "http://www.w3.org/2000/svg"));
    free(text);
    fp_profile_free(p);
}

static void test_summary(void)
{
    fp_profile *p = sample_profile();
    cJSON *m = fp_profile_summary_model(p, 3, 2);
    cJSON *top = cJSON_GetObjectItem(m, "top_self");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(top, 0), "function")),
              "hot_loop");
    CHECK_EQ_INT(cJSON_GetObjectItem(cJSON_GetArrayItem(top, 0), "self_pct")->valuedouble, 60);
    cJSON *total = cJSON_GetObjectItem(m, "top_total");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(total, 0), "function")),
              "<module>");
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(m, "lines")), 2);
    cJSON_Delete(m);
    fp_profile_free(p);
}

int main(void)
{
    test_counts();
    test_collapsed();
    test_speedscope();
    test_svg();
    test_summary();
    return check_summary();
}
