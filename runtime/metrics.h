/* metrics.h - the runtime's counters as Prometheus text exposition (format 0.0.4), and the two
 * histograms the counters alone cannot give (ack latency, batch time).
 *
 * Names follow Prometheus conventions: bepipe_ prefix, _total for counters, base units in the
 * name (_seconds, _bytes), variable parts as labels. Every family gets HELP and TYPE lines, also
 * when it has no sample yet, so dashboards and alerts can rely on the names. */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include "buf.h"
#include "common.h"

#define BP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A histogram with fixed upper bounds (ascending; +Inf is implicit). Observing is O(buckets)
 * and allocation-free: it runs per acked message. */
#define BP_HIST_MAX_BOUNDS 20
struct bp_hist {
    const double *bounds;
    size_t nbounds;
    unsigned long counts[BP_HIST_MAX_BOUNDS + 1];   /* per bucket (not cumulative); last: +Inf */
    double sum;
    unsigned long count;
};

/* nbounds <= BP_HIST_MAX_BOUNDS; bounds must outlive h (static tables). */
void bp_hist_init(struct bp_hist *h, const double *bounds, size_t nbounds);
void bp_hist_observe(struct bp_hist *h, double v);

struct bp_label {
    const char *name;
    const char *value;   /* escaped on output (\\, \", newline) */
};

/* The writers behind /metrics, each appending to b. Return 0, or -1 when b is full. */
int bp_metrics_family(bp_buf_t *b, const char *name, const char *type, const char *help) BP_WUR;
int bp_metrics_sample(bp_buf_t *b, const char *name, const struct bp_label *labels,
                      size_t nlabels, double value) BP_WUR;
/* HELP/TYPE, then name_bucket{le=...} (cumulative), name_sum and name_count. */
int bp_metrics_hist(bp_buf_t *b, const char *name, const char *help,
                    const struct bp_hist *h) BP_WUR;

struct bp_rt;
/* Sets up the runtime's histograms (called once from bp_rt_new). */
void bp_metrics_init(struct bp_rt *rt);
/* The whole exposition of rt's state, appended to out. Reads counters only: safe from any loop
 * callback. Returns 0, or -1 when out's maximum was reached. */
int bp_metrics_render(struct bp_rt *rt, bp_buf_t *out) BP_WUR;

#endif
