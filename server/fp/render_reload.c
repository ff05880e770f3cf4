/* Human renderer for reload and reload --undo: what was replaced, the diff, what else changed,
 * and the warnings (calls still running the old code, decorators not applied again...). It
 * reads the models of protocol/methods.md (reload, reload.undo); --json prints them instead. */
#include "fp_cli.h"

#include <string.h>
#include <time.h>

static const char *rr_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double rr_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static bool rr_true(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

/* Prints text with every line after the first indented. */
static void rr_indented(FILE *out, const char *text, int indent)
{
    for (const char *p = text; *p; p++) {
        fputc(*p, out);
        if (*p == '\n' && p[1]) fprintf(out, "%*s", indent, "");
    }
}

static void rr_located(FILE *out, const cJSON *loc)
{
    fprintf(out, "%s (%s, %s:%.0f)", rr_str(loc, "qualname", "?"), rr_str(loc, "kind", "?"),
            rr_str(loc, "file", "?"), rr_num(loc, "line", 0));
}

static void rr_versions(FILE *out, double n)
{
    if (n <= 0)
        fputs("no earlier version kept", out);
    else
        fprintf(out, "%.0f earlier version%s kept (reload --undo)", n, n == 1 ? "" : "s");
}

static void rr_diff(FILE *out, const cJSON *r)
{
    const char *diff = rr_str(r, "diff", NULL);
    if (diff && diff[0]) {
        fputs(diff, out);
        if (diff[strlen(diff) - 1] != '\n') fputc('\n', out);
        return;
    }
    const char *note = rr_str(r, "diff_note", NULL);
    if (note) fprintf(out, "(no diff: %s)\n", note);
}

static void rr_changed(FILE *out, const cJSON *changed)
{
    if (!cJSON_IsObject(changed)) return;
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(changed, "signature");
    const cJSON *deco = cJSON_GetObjectItemCaseSensitive(changed, "decorators");
    bool any = false;
    fputs("changed:", out);
    if (rr_true(changed, "code")) {
        fputs(" code", out);
        any = true;
    }
    if (cJSON_IsObject(sig)) {
        fprintf(out, "%s signature %s -> %s", any ? ";" : "", rr_str(sig, "old", "?"),
                rr_str(sig, "new", "?"));
        any = true;
    }
    if (rr_true(changed, "defaults")) {
        fprintf(out, "%s defaults", any ? ";" : "");
        any = true;
    }
    if (rr_true(changed, "docstring")) {
        fprintf(out, "%s docstring", any ? ";" : "");
        any = true;
    }
    if (cJSON_IsObject(deco)) {
        fprintf(out, "%s decorators (not applied again)", any ? ";" : "");
        any = true;
    }
    if (!any) fputs(" nothing", out);
    fputc('\n', out);
}

static void rr_warnings(FILE *out, const cJSON *r)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(r, "warnings"))
    {
        fputs("warning: ", out);
        rr_indented(out, rr_str(w, "message", "?"), 9);
        fputc('\n', out);
    }
}

static void rr_reload(FILE *out, const cJSON *r)
{
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(r, "located");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(r, "source");
    bool dry = rr_true(r, "dry_run");
    if (rr_true(r, "unchanged")) {
        rr_located(out, loc);
        fprintf(out,
                ": the new source (%s:%.0f) compiles to the code running now; nothing was "
                "replaced\n",
                rr_str(src, "filename", "?"), rr_num(src, "line", 0));
        return;
    }
    fputs(dry ? "would reload " : "reloaded ", out);
    rr_located(out, loc);
    fprintf(out, " from %s:%.0f", rr_str(src, "filename", "?"), rr_num(src, "line", 0));
    if (strcmp(rr_str(src, "from", ""), "text") == 0) fputs(" (the text given)", out);
    if (dry) {
        fputs("; --dry-run: nothing was changed\n", out);
    } else {
        fputs("; ", out);
        rr_versions(out, rr_num(r, "versions", 0));
        fputc('\n', out);
    }
    const char *note = rr_str(r, "note", NULL);
    if (note) fprintf(out, "note: %s\n", note);
    rr_diff(out, r);
    rr_changed(out, cJSON_GetObjectItemCaseSensitive(r, "changed"));
    rr_warnings(out, r);
}

static void rr_undo(FILE *out, const cJSON *r)
{
    const cJSON *restored = cJSON_GetObjectItemCaseSensitive(r, "restored");
    fputs("undid the last reload of ", out);
    rr_located(out, cJSON_GetObjectItemCaseSensitive(r, "located"));
    double at = rr_num(restored, "reloaded_at", 0);
    if (at > 0) {
        fputs(": the code it replaced at ", out);
        render_epoch(out, at);
        fputs(" is back", out);
    }
    fputs("; ", out);
    rr_versions(out, rr_num(r, "versions", 0));
    fputc('\n', out);
    rr_diff(out, r);
    rr_warnings(out, r);
}

void render_reload(FILE *out, const cJSON *r)
{
    if (strcmp(rr_str(r, "action", ""), "undo") == 0)
        rr_undo(out, r);
    else
        rr_reload(out, r);
    const char *text = rr_str(r, "new_source", NULL);
    if (text) { /* only with -v */
        fputs("new source:\n", out);
        fputs(text, out);
        if (text[0] && text[strlen(text) - 1] != '\n') fputc('\n', out);
    }
}
