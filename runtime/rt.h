/* rt.h - struct bp_rt: the one mutable global of a process. It owns the loop, the effective
 * configuration, the Lua host, the source and the sinks. */
#ifndef BP_RT_H
#define BP_RT_H

#include <ev.h>

#include "ack.h"
#include "api.h"
#include "endpoints.h"
#include "archive.h"
#include "batch.h"
#include "bp_ffi.h"
#include "buf.h"
#include "config.h"
#include "lua_host.h"
#include "store.h"

struct bp_source;

struct bp_source_ops {
    const char *kind;
    /* Every destination of the message has answered: ok = all stored (ack it), else nack it. */
    void (*acked)(struct bp_source *s, uint64_t cookie, int ok);
    /* Messages received and not yet acked or nacked (the drain waits for 0). */
    size_t (*outstanding)(struct bp_source *s);
    void (*pause)(struct bp_source *s);
    void (*resume)(struct bp_source *s);
    /* Stops reading for good (drain); buffered complete lines are still delivered first. */
    void (*stop)(struct bp_source *s);
    void (*destroy)(struct bp_source *s);
};

struct bp_source {
    const struct bp_source_ops *ops;
};

struct bp_kv {
    char *key;
    char *value;
};

#define BP_LAT_SAMPLES 8192

struct bp_stats {
    double batch_secs[BP_LAT_SAMPLES];     /* Lua + dispatch time of the last batches */
    unsigned long batches;
    unsigned long read;
    unsigned long skipped;                 /* blank lines */
    unsigned long rows;                    /* rows handed to table batches */
    unsigned long dead[BP_STAGE_INSERT + 1];
    unsigned long reloads, reload_failures;
};

struct bp_rt {
    struct ev_loop *loop;
    char *pipeline_path;
    char *lib_dir;
    struct bp_kv *overrides;    /* command-line settings, re-applied on every reload */
    size_t noverrides;
    struct bp_config cfg;       /* effective: defaults + pipeline.lua + command line */
    struct bp_lua_host *host;
    int generation;

    struct bp_http *http;
    struct bp_auth *auth;
    struct bp_api *api_auth;    /* calls that carry a token */
    struct bp_api *api_plain;   /* calls to emulators, without one */
    struct bp_endpoints ep;
    struct bp_store *store;
    struct bp_ack ack;
    struct bp_batches tables;
    size_t *route_batch;        /* route index of the current host -> index in tables */
    size_t nroutes;
    size_t dead_batch;
    struct bp_archive archive;
    struct bp_source *source;

    bp_batch_t batch;           /* lent to Lua per batch; its out buffer is reused */
    bp_result_t *results;       /* one per message of a batch */
    size_t results_cap;
    bp_buf_t entry;             /* scratch for one insertAll entry */

    struct bp_stats stats;
    double started_at;
    unsigned long stats_last_read;
    double stats_last_at;

    ev_signal sighup, sigterm, sigint;
    ev_timer tick;
    ev_timer stats_timer;
    ev_timer drain_timer;
    double drain_started;
    int drain_phase;            /* 0 running, 1 flushing sinks, 2 sending acks, 3 done */
    int draining;
    int exit_code;
    struct bp_guard *guard;     /* script time budget, suspects, memory cap (guard.c) */
};

struct bp_rt *bp_rt_new(const char *pipeline_path, const char *lib_dir,
                        const struct bp_kv *overrides, size_t noverrides, char *err,
                        size_t errlen);
void bp_rt_free(struct bp_rt *rt);
int bp_rt_effective_config(const struct bp_lua_host *h, const struct bp_kv *ov, size_t nov,
                           struct bp_config *out, char *err, size_t errlen) BP_WUR;
int bp_rt_start(struct bp_rt *rt, char *err, size_t errlen) BP_WUR;
int bp_rt_run(struct bp_rt *rt);
int bp_rt_reload(struct bp_rt *rt);
void bp_rt_drain(struct bp_rt *rt, const char *why);
void bp_rt_log_summary(struct bp_rt *rt);

/* Called by sources. */
int bp_rt_process(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots,
                  size_t n) BP_WUR;
int bp_rt_dead_letter(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage,
                      const char *reason, const char *etype, size_t etype_len) BP_WUR;
int bp_rt_rejected_row(void *rt, const char *table, const char *entry, size_t len,
                       const char *reason, uint32_t slot);
void bp_rt_source_finished(struct bp_rt *rt);
int bp_rt_sinks_busy(struct bp_rt *rt);

/* dispatch.c */
int bp_dispatch_batch(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots,
                      const bp_result_t *res, size_t n, const char *out, size_t outlen) BP_WUR;
extern const char *const bp_stage_names[BP_STAGE_INSERT + 1];

/* source_ndjson.c */
struct bp_source *bp_source_ndjson_new(struct bp_rt *rt, const char *path, char *err,
                                       size_t errlen);

/* source_pubsub.c */
struct bp_source *bp_source_pubsub_new(struct bp_rt *rt, struct bp_api *api, const char *base,
                                       const char *subscription, char *err, size_t errlen);
void bp_source_pubsub_nack_all(struct bp_source *s);
size_t bp_source_pubsub_calls(struct bp_source *s);
void bp_source_pubsub_stats(struct bp_source *s, unsigned long *pulled, unsigned long *acked,
                            unsigned long *nacked, unsigned long *extended);

#endif
