/* Human renderers for vmtool: the live instances of a class (counts by class, then each shown
 * instance, or the expression's value, as a value tree) and a forced garbage collection (per
 * generation). They read the models of protocol/methods.md (vmtool.instances, vmtool.gc). */
#include "fp_cli.h"

#include <string.h>

static const char *rv_str(const cJSON *o, const char *key, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static double rv_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void rv_instances(FILE *out, const cJSON *r)
{
    double total = rv_num(r, "total", 0), shown = rv_num(r, "shown", 0);
    bool subclasses = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "subclasses"));
    fprintf(out, "%.0f live instance%s of %s.%s%s", total, total == 1 ? "" : "s",
            rv_str(r, "module", "?"), rv_str(r, "class", "?"),
            subclasses ? " and its subclasses" : " (exactly that class)");
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(r, "by_class");
    if (subclasses && cJSON_GetArraySize(by) > 0) {
        fputs(":", out);
        const cJSON *c;
        int i = 0;
        cJSON_ArrayForEach(c, by) fprintf(out, "%s %s %.0f", i++ ? "," : "",
                                          rv_str(c, "class", "?"), rv_num(c, "count", 0));
    }
    if (shown < total) fprintf(out, "; %.0f shown (-n N shows more, -n -1 all)", shown);
    fputc('\n', out);
    const char *note = rv_str(r, "note", NULL);
    if (note) fprintf(out, "note: %s\n", note);
    /* With -r the agent sends only type and repr: the trees below are then one line each. */
    const cJSON *value = cJSON_GetObjectItemCaseSensitive(r, "value");
    if (value) {
        render_value_tree(out, rv_str(r, "expr", "value"), value, 0);
        return;
    }
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(r, "instances"))
    {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, "value");
        char label[64];
        snprintf(label, sizeof label, "[%.0f]", rv_num(item, "index", 0));
        render_value_tree(out, label, v, 0);
    }
}

static void rv_gc(FILE *out, const cJSON *r)
{
    fprintf(out,
            "full collection in %.2f ms: %.0f unreachable object%s found, %.0f collected, "
            "%.0f uncollectable%s\n",
            rv_num(r, "ms", 0), rv_num(r, "unreachable", 0),
            rv_num(r, "unreachable", 0) == 1 ? "" : "s", rv_num(r, "collected", 0),
            rv_num(r, "uncollectable", 0),
            cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "enabled"))
                ? ""
                : " (automatic collection is disabled in this process)");
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(r, "generations"))
    {
        fprintf(out, "  generation %.0f: %.0f collected, %.0f uncollectable, %.2f ms\n",
                rv_num(g, "generation", 0), rv_num(g, "collected", 0),
                rv_num(g, "uncollectable", 0), rv_num(g, "ms", 0));
    }
    fprintf(out, "tracked objects: %.0f before, %.0f after; gc.garbage holds %.0f\n",
            rv_num(r, "tracked_before", 0), rv_num(r, "tracked_after", 0), rv_num(r, "garbage", 0));
    const cJSON *o;
    cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(r, "garbage_new"))
        fprintf(out, "  uncollectable: %s %s\n", rv_str(o, "type", "?"), rv_str(o, "repr", ""));
}

void render_vmtool_result(FILE *out, const char *method, const cJSON *r)
{
    if (strcmp(method, "vmtool.gc") == 0)
        rv_gc(out, r);
    else
        rv_instances(out, r);
}
