/* metrics.h - the runtime's counters as Prometheus text exposition (format 0.0.4), and the two
 * histograms the counters alone cannot give (ack latency, batch time).
 *
 * Names follow Prometheus conventions: bepipe_ prefix, _total for counters, base units in the
 * name (_seconds, _bytes), variable parts as labels. Every family gets HELP and TYPE lines, also
 * when it has no sample yet, so dashboards and alerts can rely on the names. */
#ifndef BP_METRICS_H
#define BP_METRICS_H

#include "api.h"
#include "bp_ffi.h"
#include "buf.h"
#include "common.h"
#include "source.h"

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

/* Gives the runtime's two histograms their buckets (before anything observes into them). */
void bp_metrics_hists_init(struct bp_hist *ack_latency, struct bp_hist *batch_seconds);

/* One destination table's counters. */
struct bp_metrics_table {
    const char *table;                  /* borrowed from the runtime for one render */
    unsigned long rows_stored, rows_rejected;
};

/* Everything /metrics shows, as plain values: the runtime fills it (bp_rt_metrics_snapshot,
 * rt_metrics.c) and bp_metrics_render writes it, so the exposition is tested from a hand-made
 * one. Pointers are borrowed for one render. */
struct bp_metrics_snapshot {
    /* the process */
    double start_time;                  /* Unix time */
    int ready;                          /* what /readyz answers: 1 = 200 */
    int generation;                     /* of the loaded scripts */
    unsigned long reloads, reload_failures;
    size_t lua_memory;                  /* bytes of the Lua state (0 without one) */
    unsigned long log_lines_dropped;
    /* the source */
    unsigned long read;                 /* messages handed to the pipeline */
    struct bp_source_stats source;
    size_t outstanding;                 /* messages received, not yet acked or nacked */
    /* the sinks */
    const struct bp_metrics_table *tables;
    size_t ntables;
    unsigned long insert_failures;
    unsigned long dead[BP_STAGE_SCHEMA + 1];    /* dead letters by stage (BP_STAGE_*) */
    struct {
        unsigned long objects, lines;
        unsigned long long bytes;
        unsigned long failures, lines_compacted, lines_raw, redelivered;
    } archive;
    unsigned long quarantined;
    /* bigquery.method = storage_write (rendered only when storage_write is 1) */
    int storage_write;
    unsigned long append_calls, append_requests, append_retries, append_failures;
    unsigned long long append_bytes;
    unsigned long append_rows_encoded, append_rows_read_back;
    /* Google's APIs (both API layers added up) */
    unsigned long http[BP_API_KINDS][BP_API_CODES];     /* answers by api and status code */
    struct bp_api_stats api;            /* retries, failures, token_refreshes, token_failures */
    /* the histograms */
    struct bp_hist ack_latency, batch_seconds;
};

/* The whole exposition of snap, appended to out. Returns 0, or -1 when out's maximum was
 * reached. */
int bp_metrics_render(const struct bp_metrics_snapshot *snap, bp_buf_t *out) BP_WUR;

#endif
