/* monitor's histogram (see fp_hist.h). */
#include "fp_hist.h"

#include <math.h>
#include <string.h>

void fp_hist_add_sparse(fp_hist *h, const cJSON *sparse)
{
    const cJSON *pair;
    cJSON_ArrayForEach(pair, sparse)
    {
        const cJSON *b = cJSON_GetArrayItem(pair, 0), *n = cJSON_GetArrayItem(pair, 1);
        if (!cJSON_IsNumber(b) || !cJSON_IsNumber(n) || n->valuedouble < 0) continue;
        int i = (int)b->valuedouble;
        if (i < 0) i = 0;
        if (i >= FP_HIST_BUCKETS) i = FP_HIST_BUCKETS - 1;
        h->counts[i] += (uint64_t)n->valuedouble;
        h->total += (uint64_t)n->valuedouble;
    }
}

void fp_hist_diff(fp_hist *out, const fp_hist *a, const fp_hist *b)
{
    out->total = 0;
    for (int i = 0; i < FP_HIST_BUCKETS; i++) {
        out->counts[i] = a->counts[i] > b->counts[i] ? a->counts[i] - b->counts[i] : 0;
        out->total += out->counts[i];
    }
}

double fp_hist_quantile_ms(const fp_hist *h, double q, double max_ms)
{
    if (h->total == 0) return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->total);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < FP_HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            double upper = FP_HIST_BASE_NS * pow(2.0, (double)(i + 1) / FP_HIST_PER_OCTAVE) / 1e6;
            return max_ms > 0 && upper > max_ms ? max_ms : upper;
        }
    }
    return max_ms;
}
