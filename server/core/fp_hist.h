/* The latency histogram of monitor (agent method monitor.start, protocol/methods.md): fixed
 * buckets on a log scale, four per octave from 1 µs, 96 in all (the last holds everything from
 * about 16.8 s up). Counts of several processes add up bucket by bucket, so quantiles of a
 * whole service come from the sum. */
#ifndef FP_HIST_H
#define FP_HIST_H

#include <cjson/cJSON.h>
#include <stdint.h>

#define FP_HIST_BUCKETS 96
#define FP_HIST_BASE_NS 1000.0
#define FP_HIST_PER_OCTAVE 4

typedef struct fp_hist {
    uint64_t counts[FP_HIST_BUCKETS];
    uint64_t total;
} fp_hist;

/* Adds a sparse [[bucket, count], ...] array (as the agent sends it) to h. */
void fp_hist_add_sparse(fp_hist *h, const cJSON *sparse);
/* a - b, bucket by bucket (counts never below 0): what came after b was taken. */
void fp_hist_diff(fp_hist *out, const fp_hist *a, const fp_hist *b);
/* The q-quantile (0..1) in milliseconds: the upper bound of the bucket holding it, at most
 * max_ms (the largest value seen) when that is known (> 0). 0 for an empty histogram. */
double fp_hist_quantile_ms(const fp_hist *h, double q, double max_ms);

#endif
