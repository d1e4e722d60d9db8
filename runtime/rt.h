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
#include "metrics.h"
#include "row_protos.h"
#include "schema.h"
#include "source.h"
#include "store.h"
#include "tables_update.h"

struct bp_replay_opts;

struct bp_kv {
    char *key;
    char *value;
};

#define BP_LAT_SAMPLES 8192

struct bp_stats {
    double batch_secs[BP_LAT_SAMPLES];     /* Lua + dispatch time of the last batches */
    unsigned long batches;
    unsigned long read;
    unsigned long rows;                    /* rows handed to table batches */
    unsigned long dead[BP_STAGE_SCHEMA + 1];
    unsigned long reloads, reload_failures;
    unsigned long quarantined;             /* messages set aside (set_aside.c) */
    struct bp_hist ack_latency, batch_seconds;     /* /metrics (metrics.c) */
};

/* The drain, one step per drain_timer tick (drain.c). */
enum bp_drain_phase {
    BP_DRAIN_RUNNING = 0,   /* not draining */
    BP_DRAIN_SINKS,         /* source stopped, sinks flushed: waiting for their answers */
    BP_DRAIN_ACKS,          /* acks of what was stored sent, the rest nacked: waiting for them */
    BP_DRAIN_DONE           /* the loop is told to end */
};

/* What the sinks' backlog asks of sources and archive objects (pressure.c). */
struct bp_pressure {
    int sinks_busy;         /* a source without flow control of its own waits */
    double roll_age;        /* archive objects at least this old are finished now */
    size_t release_messages;    /* flow control wants this many of the archive's messages on
                                 * their way to be acked (bp_archive_release) */
    size_t release_keep;        /* ... leaving open objects this many (late folders' ones) */
    double release_age;         /* ... from objects at least this old */
};

/* Messages a batch time cap left, waiting for a later batch (rt_defer.c). */
struct bp_defer {
    struct bp_defer_msg *v;
    size_t head, n, cap;
    int running;            /* a slice of the queue is in bp_rt_process */
    unsigned long deferred; /* messages queued so far (a message may be queued more than once) */
    ev_idle idle;
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
    struct bp_store *row_store; /* bigquery.method = storage_write: the rows' store, or NULL
                                 * (rows go to store) */
    struct bp_row_protos *protos;   /* with row_store: the batch loop's rows as protobuf
                                     * (row_protos.h), else NULL */
    struct bp_ack ack;
    struct bp_batches tables;
    size_t *route_batch;        /* route index of the current host -> index in tables */
    size_t nroutes;
    struct bp_schema_set schemas;           /* the DDL's table schemas, read at start */
    const struct bp_schema **route_schema;  /* route index -> its table's schema, or NULL */
    size_t dead_batch;
    struct bp_archive archive;
    struct bp_source *source;
    struct bp_preflight *preflight;
    char auth_hint[1024];       /* which credentials were found, for preflight messages */
    char *bucket;               /* the archive's bucket */
    int preflight_only;         /* --check --online: stop after the preflight */

    bp_batch_t batch;           /* lent to Lua per batch; its out buffer is reused */
    bp_result_t *results;       /* one per message of a batch */
    size_t results_cap;
    bp_buf_t entry;             /* scratch for one insertAll entry */
    struct bp_defer defer;      /* the rest of batches cut by lua.batch_budget_ms */

    struct bp_stats stats;
    double started_at;
    unsigned long stats_last_read;
    double stats_last_at;

    ev_signal sighup, sigterm, sigint;
    ev_timer tick;
    ev_timer stats_timer;
    ev_timer drain_timer;
    double drain_started;
    double drain_acks_until;    /* monotonic time the drain stops waiting for acknowledges */
    enum bp_drain_phase drain_phase;
    int draining;
    int exit_code;
    int pulls_paused;           /* the archive's upload queue is full (pressure.c) */
    unsigned long pull_pauses;  /* times it filled */

    /* the HTTP listener and what /readyz answers */
    struct bp_httpd *httpd;
    int source_started;
    char *not_ready;            /* bp_rt_set_ready(rt, 0, why): e.g. preflight not passed yet */
    char *failing;              /* bp_rt_set_unready_reason: a destination failing for good */
    struct bp_guard *guard;
    ev_timer rebuild;           /* the Lua state hit its memory cap (bp_rt_rebuild_soon) */
    int worker_index;           /* --workers: 0..N-1; the HTTP listener's port moves by it */     /* script time budget, suspects, memory cap (guard.c) */
    int workers;                /* --workers N (0 or 1: one process) */

    /* schema evolution: the live tables' schemas win over the DDL's */
    struct bp_schema_set live_schemas;      /* from tables.get (or the patch), cloud path */
    struct bp_tables_sync *tables_sync;     /* the sync in flight (rt_tables.c), or NULL */
    struct bp_lua_host *pending_host;       /* a reload waiting for its tables' patch */
    int tables_resync;                      /* a reload came while a sync ran: sync again */
    char **replied;                         /* tables whose schema an AppendRows reply gave */
    size_t nreplied;                        /* while tables_sync ran (rt_reload.c) */
    /* `bepipe-lua replay`'s options, NULL for a run */
    const struct bp_replay_opts *replay;
};

struct bp_rt *bp_rt_new(const char *pipeline_path, const char *lib_dir,
                        const struct bp_kv *overrides, size_t noverrides, char *err,
                        size_t errlen);
void bp_rt_free(struct bp_rt *rt);
int bp_rt_effective_config(const struct bp_rt *rt, const struct bp_lua_host *h,
                           struct bp_config *out, char *err, size_t errlen) BP_WUR;
/* Everything the run refuses about its configuration, without starting anything (rt_preflight.c):
 * the DDL's columns, archive.path, the endpoints and credentials the cloud side would use
 * (files read, nothing sent), --local-out's folder, the input file, http.listen, and --workers
 * (rt->workers > 1) with a file source. bp_rt_start runs it first; --check runs it alone.
 * Returns 0, or -1 with err naming the setting. */
int bp_rt_check_config(struct bp_rt *rt, char *err, size_t errlen) BP_WUR;
/* rt_preflight.c: the cloud side's settings as a run uses them: the endpoints into ep, and when
 * a call will carry a token (auth.mode adc, or auto with an endpoint that is not an emulator)
 * the credentials into *auth (key files are read and parsed; nothing is sent), else NULL. The
 * start and bp_rt_check_config. Returns 0, or -1 with err naming the setting (ep and *auth are
 * then empty). */
int bp_rt_cloud_settings(const struct bp_config *c, struct bp_endpoints *ep,
                         struct bp_auth **auth, char *err, size_t errlen) BP_WUR;
/* rt_start.c: whether the source reads only local files (--input, a replay of local archive
 * files). */
int bp_rt_local_source(const struct bp_rt *rt);
/* rt_start.c: checks the configuration, opens the cloud clients, the sinks and the listener,
 * starts the preflight (then the tables, then the source) and arms the watchers. Returns 0,
 * or -1 with err set. */
int bp_rt_start(struct bp_rt *rt, char *err, size_t errlen) BP_WUR;
/* rt_start.c: runs the loop until drained. Returns the process exit code. */
int bp_rt_run(struct bp_rt *rt);
int bp_rt_reload(struct bp_rt *rt);
/* The same, with the reason of a failure in err (POST /reload answers it): 0 swapped, 1
 * waiting for the tables' patch (--update-tables/--create-tables: the new scripts are swapped
 * in once it succeeded, kept out if it fails; logged either way), -1 kept. */
int bp_rt_reload_err(struct bp_rt *rt, char *err, size_t errlen);
int bp_rt_dead_letter(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage,
                      const char *reason, const char *etype, size_t etype_len) BP_WUR;
/* Called by stores' callbacks for rows BigQuery refused (batch.c). */
int bp_rt_rejected_row(void *rt, const char *table, const char *entry, size_t len,
                       const char *reason, uint32_t slot);
/* set_aside.c: a dead-letter row the dead-letter table refused (bp_dead_refused_fn). */
int bp_rt_dead_refused(void *rt, const char *table, const char *entry, size_t len,
                       const char *reason, uint32_t slot, int attempt);

/* A reload swapped in at once, without any table call (the memory cap's rebuild: the state
 * must go now; the live schemas in force stay). */
int bp_rt_rebuild(struct bp_rt *rt);
/* The same from the loop, soon, and not at once: a source may still hold strings of the old
 * state (a Pub/Sub pull reply lives in it until all its batches are done). Called after a batch
 * when bp_guard_check_memory says so; once while one is pending. */
void bp_rt_rebuild_soon(struct bp_rt *rt);

/* rt_tables.c: starts the sync of h's tables with BigQuery (tables.get, and with
 * --update-tables or --create-tables the patch of every DDL table), done(rt, ...) later from
 * the loop; rt->tables_sync holds it meanwhile (done clears it). Returns 0 when started, 1 when
 * there is nothing to sync (local path, no tables), -1 when the DDL cannot be read (err). */
int bp_rt_tables_sync(struct bp_rt *rt, struct bp_lua_host *h, bp_tables_sync_fn done,
                      char *err, size_t errlen) BP_WUR;

/* rt_start.c: the API layer for an endpoint: no token for an emulator (unless auth.mode is adc). */
struct bp_api *bp_rt_api_for(const struct bp_rt *rt, int emulated);

/* rt_preflight.c: starts the preflight of the source and sinks (see preflight.h). */
void bp_rt_preflight_start(struct bp_rt *rt, void (*done)(void *rt, int ok, const char *msg));

/* The metadata columns routes ask for and the dead-letter format's columns are in the DDL's
 * schemas (rt.c). Returns 0, or -1 with err naming what lacks which column. */
int bp_rt_check_columns(const struct bp_rt *rt, char *err, size_t errlen) BP_WUR;

/* Where the pipeline's CREATE TABLE files are (bigquery.ddl_dir, else ddl/ of its folder). */
void bp_rt_ddl_dir(const struct bp_rt *rt, char *out, size_t outlen);

/* rt_defer.c: messages a batch time cap left run in later batches, from the loop. bp_rt_defer
 * copies them (front: back at the queue's head, for the rest of a slice taken from it);
 * bp_rt_defer_first says a new batch must queue behind them; bp_rt_deferred counts them. */
void bp_rt_defer(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots, size_t n,
                 int front);
int bp_rt_defer_first(const struct bp_rt *rt);
size_t bp_rt_deferred(const struct bp_rt *rt);
void bp_rt_defer_free(struct bp_rt *rt);

/* drain.c */
void bp_rt_drain(struct bp_rt *rt, const char *why);

/* pressure.c */
void bp_rt_pressure(struct bp_rt *rt, struct bp_pressure *out);
/* Resumes a source paused by a full upload queue once it has room (pressure.c); per tick. */
void bp_rt_pressure_tick(struct bp_rt *rt);

/* Readiness (/readyz, rt.c): ready once the source started, unless draining, gated with
 * bp_rt_set_ready(rt, 0, why) (preflight; open by default) or a destination failing for good
 * (bp_rt_set_unready_reason(rt, why); NULL clears it). bp_rt_ready returns 1, or 0 with the
 * reason in why. All on the loop thread. */
void bp_rt_set_ready(struct bp_rt *rt, int ready, const char *why);
void bp_rt_set_unready_reason(struct bp_rt *rt, const char *why);
int bp_rt_ready(const struct bp_rt *rt, char *why, size_t whylen);

/* rt_metrics.c: the snapshot /metrics writes (out->tables is allocated: free() it), and the
 * HTTP listener on addr answering from rt's loop (NULL with err set). */
void bp_rt_metrics_snapshot(struct bp_rt *rt, struct bp_metrics_snapshot *out);
struct bp_httpd *bp_rt_httpd_new(struct bp_rt *rt, const char *addr, char *err, size_t errlen);

/* stats.c */
void bp_rt_stats_start(struct bp_rt *rt);
void bp_rt_log_summary(struct bp_rt *rt);

#endif
