/* rt_start.c - start-up and wiring: the cloud clients (HTTP, credentials, API layers), the
 * sinks and the source, the loop's watchers (signals, the sinks' tick), and the order a run
 * starts in: configuration check -> listener -> preflight -> --create-tables -> the tables'
 * live schemas -> the source. The struct itself, batches and readiness are in rt.c. Everything
 * here runs on the one loop thread. */
#include "rt.h"
#include "store_write.h"
#include "rt_reload.h"
#include "guard.h"
#include "log.h"
#include "replay.h"
#include "tables_create.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_RT_VERSION
#define BP_RT_VERSION "0.1.0"
#endif

/* SIGHUP reloads the pipeline; SIGTERM and SIGINT drain. */
static void
on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)revents;
    if (w->signum == SIGHUP) {
        bp_log(BP_LOG_INFO, "main", "SIGHUP: reloading %s", rt->pipeline_path);
        (void)bp_rt_reload(rt);
    } else {
        bp_rt_drain(rt, w->signum == SIGTERM ? "SIGTERM" : "SIGINT");
    }
}

/* The sinks' tick: table batches flushed by age, archive objects rolled and released as the
 * backlog asks (pressure.c); a sink that failed for good drains the process. */
static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    struct bp_pressure pr;
    (void)w;
    (void)revents;
    /* ages on the monotonic clock: ev_now follows the wall clock, which NTP or a VM migration
     * may step by minutes either way */
    double now = bp_time_mono();
    bp_rt_pressure_tick(rt);
    bp_rt_pressure(rt, &pr);
    if (bp_batches_tick(&rt->tables, now) != 0 ||
        bp_archive_roll_older(&rt->archive, now, pr.roll_age) != 0 ||
        bp_archive_release(&rt->archive, now, pr.release_messages, pr.release_keep,
                           pr.release_age) != 0) {
        bp_log(BP_LOG_ERROR, "main", "a sink failed; stopping");
        rt->exit_code = 1;
        bp_rt_drain(rt, "sink failure");
    }
}

/* The ack tracker's verdict on a message: pass it to the source that owns the message. */
static void
on_acked(void *owner, uint32_t slot, uint64_t cookie, int ok)
{
    struct bp_rt *rt = owner;
    (void)cookie;
    if (rt->source && rt->source->ops->acked)
        rt->source->ops->acked(rt->source, slot, ok);
}

/* HTTP, credentials and the API layers, for the Pub/Sub source or the cloud store. Emulator
 * endpoints get calls without a token unless auth.mode is adc. */
static int
start_cloud(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    if (bp_rt_cloud_settings(c, &rt->ep, &rt->auth, err, errlen) != 0)
        return -1;
    if (rt->auth)
        bp_log(BP_LOG_INFO, "auth", "credentials: %s (%s)",
               bp_auth_kind_name(bp_auth_kind(rt->auth)), bp_auth_source(rt->auth));
    struct bp_http_opts ho = { c->ca_file, 10000, "bepipe-lua/" BP_RT_VERSION };
    rt->http = bp_http_new(rt->loop, &ho, err, errlen);
    if (!rt->http)
        return -1;
    int force = strcmp(c->auth_mode, "adc") == 0;
    struct bp_api_retry retry = { (int)c->retry_attempts, 0.2, c->retry_max_ms / 1000.0, 600.0 };
    rt->api_auth = bp_api_new(rt->loop, rt->http, rt->auth, &retry);
    /* with auth.mode=adc even emulator calls carry the token (tests of token expiry) */
    rt->api_plain = bp_api_new(rt->loop, rt->http, force ? rt->auth : NULL, &retry);
    return 0;
}

/* The API layer for calls to an endpoint: without a token for an emulator (unless auth.mode is
 * adc, see start_cloud), with one otherwise. */
struct bp_api *
bp_rt_api_for(const struct bp_rt *rt, int emulated)
{
    return emulated ? rt->api_plain : rt->api_auth;
}

/* Whether the source reads only local files (--input, a replay of local archive files): with
 * --local-out nothing needs the cloud APIs or a preflight. */
int
bp_rt_local_source(const struct bp_rt *rt)
{
    return rt->replay ? !rt->replay->remote : rt->cfg.input != NULL;
}

/* Builds the source the run asked for (replay, --input file, or the Pub/Sub subscription) and
 * starts it; /readyz can then open. Returns 0, or -1 with err set. */
static int
start_source(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    if (rt->replay)
        rt->source = bp_source_replay_new(rt, rt->replay, rt->http ? bp_rt_api_for(rt,
                                          rt->ep.storage_emulated) : NULL,
                                          rt->http ? rt->ep.storage : NULL, err, errlen);
    else if (c->input)
        rt->source = bp_source_ndjson_new(rt, c->input, err, errlen);
    else
        rt->source = bp_source_pubsub_new(rt, bp_rt_api_for(rt, rt->ep.pubsub_emulated),
                                          rt->ep.pubsub, c->subscription, err, errlen);
    if (!rt->source)
        return -1;
    if (rt->source->ops->start(rt->source, err, errlen) != 0)
        return -1;
    rt->source_started = 1;     /* /readyz */
    return 0;
}

/* The tables answered (and were patched): the live schemas in force, then the source. */
static void
tables_synced(void *arg, int status, struct bp_schema_set *live)
{
    struct bp_rt *rt = arg;
    char err[1024];
    rt->tables_sync = NULL;
    if (status != 0) {
        bp_log(BP_LOG_ERROR, "main", "the tables could not be brought to the DDL (see above); "
               "stopping before any pull");
        rt->exit_code = 1;
        bp_rt_drain(rt, "table update failed");
        return;
    }
    bp_log(BP_LOG_INFO, "schema", "rows are checked against the live schemas of %zu tables",
           live->n);
    bp_rt_adopt_live(rt, live);
    if (rt->tables_resync && !rt->draining) {
        rt->tables_resync = 0;     /* a reload came meanwhile: its routes' tables */
        bp_rt_refresh_live(rt);
    }
    if (!rt->draining && start_source(rt, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "main", "%s", err);
        rt->exit_code = 1;
        bp_rt_drain(rt, "source failure");
    }
}

/* On the cloud path the routed tables' live schemas (and with --update-tables or
 * --create-tables the patches) come before the first pull; the source starts in
 * tables_synced. */
static int
sync_then_start(struct bp_rt *rt, char *err, size_t errlen)
{
    int rc = bp_rt_tables_sync(rt, rt->host, tables_synced, err, errlen);
    return rc == 1 ? start_source(rt, err, errlen) : rc;
}

/* --create-tables answered: the tables' live schemas, then the source; a failure stops. */
static void
tables_created(void *arg, int status)
{
    struct bp_rt *rt = arg;
    char err[1024];
    if (status != 0) {
        bp_log(BP_LOG_ERROR, "main", "--create-tables failed (see above); stopping");
        rt->exit_code = 1;
        bp_rt_drain(rt, "table creation failed");
        return;
    }
    bp_log(BP_LOG_INFO, "tables", "dataset and tables are ready");
    if (!rt->draining && sync_then_start(rt, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "main", "%s", err);
        rt->exit_code = 1;
        bp_rt_drain(rt, "source failure");
    }
}

/* --create-tables: the DDL's table resources to BigQuery (dataset and tables); the run goes on
 * in tables_created. Returns 0, or -1 with err set when the DDL cannot be read. */
static int
create_tables(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char dir[4096];
    char **bodies;
    size_t n;
    bp_rt_ddl_dir(rt, dir, sizeof(dir));
    if (bp_lua_host_table_resources(rt->host, dir, c->bq_project, c->bq_dataset, &bodies, &n,
                                    err, errlen) != 0)
        return -1;
    bp_tables_create(bp_rt_api_for(rt, rt->ep.bigquery_emulated), rt->ep.bigquery,
                     c->bq_project, c->bq_dataset, bodies, n, tables_created, rt);
    return 0;
}

/* The dead-letter table failed for good: nothing more can be stored safely, so pulling stops,
 * what is in flight is nacked, and the process exits non-zero (a restart after the table is
 * fixed resumes). Never a loop of redeliveries. */
static void
dead_letter_unusable(void *owner, const char *table, const char *why)
{
    struct bp_rt *rt = owner;
    bp_log(BP_LOG_ERROR, "main", "the dead-letter table %s cannot be written (%s); stopping: "
           "fix the table (or bigquery.dead_letter_table) and restart", table, why);
    bp_rt_set_unready_reason(rt, "the dead-letter table cannot be written");
    bp_rt_source_failed(rt, "dead-letter table unusable");
}

/* The archive's bucket refused an object for good: the raw archive cannot be written, and no
 * message may be acked without it, so the pipeline stops instead of redelivering forever. */
static void
archive_unusable(void *owner, const char *why)
{
    struct bp_rt *rt = owner;
    bp_log(BP_LOG_ERROR, "main", "the archive cannot be written (%s); stopping: fix the bucket "
           "or its permissions (roles/storage.objectCreator) or archive.path, and restart", why);
    bp_rt_set_unready_reason(rt, "the archive bucket cannot be written");
    bp_rt_source_failed(rt, "archive unusable");
}

/* The Storage Write store's look-up of the schema a table's rows are written with. */
static const struct bp_schema *
table_schema(void *owner, const char *table)
{
    return bp_rt_table_schema(owner, table);
}

/* An AppendRows reply said the table's schema changed: the live one in force from now on. */
static void
table_schema_updated(void *owner, const char *table, struct bp_schema *taken)
{
    bp_rt_adopt_table(owner, table, taken);
}

/* bigquery.method = storage_write: rows through the Storage Write API (store_write.c); the
 * archive stays with the cloud store. Returns 0, or -1 with err set. */
static int
open_row_store(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char *host;
    int port, emulated;
    if (bp_endpoint_storage_write(c->bigquery_storage_endpoint, &host, &port, &emulated, err,
                                  errlen) != 0)
        return -1;
    int force = strcmp(c->auth_mode, "adc") == 0;
    struct bp_store_write_opts o = {
        .loop = rt->loop, .host = host, .port = port, .tls = !emulated, .ca_file = c->ca_file,
        .user_agent = "bepipe-lua/" BP_RT_VERSION, .api = bp_rt_api_for(rt, emulated),
        .auth = emulated && !force ? NULL : rt->auth, .max_attempts = (int)c->retry_attempts,
        .rpc_timeout = (double)c->append_timeout_seconds, .project = c->bq_project, .dataset = c->bq_dataset,
        .schema_for = table_schema, .schema_updated = table_schema_updated, .owner = rt,
        .lib_dir = rt->lib_dir,
        .exactly_once = (int)c->exactly_once, .state_dir = c->state_dir,
        .pipeline = rt->pipeline_path, .worker = rt->worker_index,
        .trim_on_write = c->input != NULL || rt->replay != NULL,
    };
    rt->row_store = bp_store_write_new(&o, err, errlen);
    if (rt->row_store)
        bp_log(BP_LOG_INFO, "bigquery", "rows go through the Storage Write API (%s) at %s:%d "
               "(%s)", c->exactly_once ? "committed streams, exactly-once" :
               "default stream, at-least-once", host, port, emulated ? "h2c" : "TLS");
    free(host);
    return rt->row_store ? 0 : -1;
}

/* The store (local folder or the cloud APIs), the table batches, the dead-letter batch and the
 * archive. Returns 0, or -1 with err set. */
static int
open_sinks(struct bp_rt *rt, const char *bucket, const char *prefix, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    if (c->local_out)
        rt->store = bp_store_local_new(c->local_out, bucket, err, errlen);
    else
        rt->store = bp_store_cloud_new(bp_rt_api_for(rt, rt->ep.bigquery_emulated),
                                       bp_rt_api_for(rt, rt->ep.storage_emulated),
                                       &rt->ep, c->bq_project, c->bq_dataset, bucket,
                                       /* an object rolls at roll_bytes, so it holds at
                                        * most that plus one line (a message: <= 10 MB) */
                                       (size_t)c->roll_bytes + 1024 * 1024 +
                                       (c->max_line_bytes > 10 * 1024 * 1024 ?
                                        (size_t)c->max_line_bytes : 10 * 1024 * 1024),
                                       (size_t)c->max_uploads);
    if (!rt->store)
        return -1;
    if (!c->local_out)
        bp_store_cloud_set_refused(rt->store, rt->loop, (double)c->refused_grace_seconds);
    /* igzip level 1: level 2 stores 1.5% fewer bytes for 7% more CPU (gz.c's measurements) */
    if (strcmp(c->archive_compression, "gzip") == 0) {
        if (c->local_out) {
            bp_log(BP_LOG_INFO, "archive", "archive.compression=gzip applies to Cloud Storage "
                   "uploads; --local-out writes the archive as NDJSON a person can read");
        } else if (bp_store_cloud_set_gzip(rt->store, 1) != 0) {
            snprintf(err, errlen, "archive.compression=gzip: the compressor cannot be allocated");
            return -1;
        }
    }
    /* a file source never acks: the file is the copy a power cut cannot take */
    if (c->local_out && (c->input || (rt->replay && !rt->replay->resume)))
        bp_store_local_set_sync(rt->store, 0);
    if (!c->local_out && strcmp(c->bq_method, "storage_write") == 0) {
        if (open_row_store(rt, err, errlen) != 0)
            return -1;
        /* rows written as protobuf by the batch loop itself (row_protos.c), bound to the
         * routes' schemas by bp_rt_bind_routes below */
        rt->protos = bp_xmalloc(sizeof(*rt->protos));
        bp_row_protos_init(rt->protos);
        bp_row_protos_register(rt->protos, bp_lua_host_state(rt->host));
    }
    bp_ack_init(&rt->ack, on_acked, rt);
    bp_batches_init(&rt->tables, rt->row_store ? rt->row_store : rt->store, &rt->ack, (size_t)c->batch_rows,
                    (size_t)c->batch_bytes, c->batch_ms / 1000.0);
    bp_batches_set_refused_grace(&rt->tables, (double)c->refused_grace_seconds);
    bp_batches_on_rejected(&rt->tables, bp_rt_rejected_row, rt);
    bp_batches_on_fatal(&rt->tables, dead_letter_unusable);
    bp_batches_on_dead_refused(&rt->tables, bp_rt_dead_refused);
    rt->dead_batch = bp_batches_index(&rt->tables, c->dead_letter_table);
    rt->tables.v[rt->dead_batch]->is_dead_letter = 1;
    bp_rt_bind_routes(rt);
    struct bp_archive_params ap = {
        .prefix = prefix, .roll_bytes = (size_t)c->roll_bytes,
        .roll_seconds = (double)c->roll_seconds, .budget_bytes = (size_t)c->archive_open_bytes,
        .max_files = (size_t)c->max_open_objects,
        .dedup_ids = (size_t)c->archive_dedup_ids,
    };
    bp_archive_init(&rt->archive, rt->store, &rt->ack, &ap);
    bp_archive_on_fatal(&rt->archive, archive_unusable, rt);
    /* a replay's lines came from the archive: written again only with --archive */
    rt->archive.discard = rt->replay && !rt->replay->archive;
    return 0;
}

/* Signals (reload, drain), the sinks' tick and the stats line. */
static void
arm_watchers(struct bp_rt *rt)
{
    ev_signal_init(&rt->sighup, on_signal, SIGHUP);
    ev_signal_init(&rt->sigterm, on_signal, SIGTERM);
    ev_signal_init(&rt->sigint, on_signal, SIGINT);
    ev_signal_start(rt->loop, &rt->sighup);
    ev_signal_start(rt->loop, &rt->sigterm);
    ev_signal_start(rt->loop, &rt->sigint);
    double tick = rt->cfg.batch_ms / 4000.0;
    if (tick > 0.25)
        tick = 0.25;
    ev_timer_init(&rt->tick, on_tick, tick, tick);
    ev_timer_start(rt->loop, &rt->tick);
    bp_rt_stats_start(rt);
}

/* After a passed preflight (or none): --create-tables first, else the source. */
static int
begin_pipeline(struct bp_rt *rt, char *err, size_t errlen)
{
    if (rt->cfg.create_tables && !rt->cfg.local_out)
        return create_tables(rt, err, errlen);   /* the source starts in tables_created */
    return sync_then_start(rt, err, errlen);
}

/* The preflight's verdict: opens or holds /readyz; --check --online stops here, a failure
 * stops the loop, a pass begins the pipeline. */
static void
preflight_done(void *arg, int ok, const char *msg)
{
    struct bp_rt *rt = arg;
    char err[1024];
    if (!ok) {
        bp_log(BP_LOG_ERROR, "preflight", "%s", msg);
        rt->exit_code = 1;
        bp_rt_set_ready(rt, 0, msg);
    } else {
        bp_log(BP_LOG_INFO, "preflight", "ok: credentials, source and destinations checked");
        bp_rt_set_ready(rt, 1, NULL);
    }
    if (rt->preflight_only || !ok) {
        /* nothing was read: no drain to wait for */
        ev_break(rt->loop, EVBREAK_ALL);
        return;
    }
    if (begin_pipeline(rt, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "main", "%s", err);
        bp_rt_source_failed(rt, "start failed");
    }
}

/* The preflight, or the pipeline at once when there is nothing remote to check. */
static int
preflight(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    if (c->preflight_seconds == 0 || (bp_rt_local_source(rt) && c->local_out)) {
        if (rt->preflight_only) {
            ev_break(rt->loop, EVBREAK_ALL);
            return 0;
        }
        return begin_pipeline(rt, err, errlen);
    }
    bp_rt_set_ready(rt, 0, "preflight running");
    bp_rt_preflight_start(rt, preflight_done);
    return 0;
}

/* The listener's ADDR:PORT: with --workers, worker i listens on PORT + i (port 0 stays 0). */
static const char *
http_address(const struct bp_rt *rt, const char *listen, char *out, size_t outlen)
{
    const char *colon = strrchr(listen, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || *end || port <= 0 || rt->worker_index == 0)
        return listen;
    snprintf(out, outlen, "%.*s:%ld", (int)(colon - listen), listen, port + rt->worker_index);
    return out;
}

/* Opens the sinks and the source and arms the watchers. Returns 0, or -1 with err set. */
int
bp_rt_start(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char *bucket = NULL, *prefix = NULL, addr[512];
    if (bp_rt_check_config(rt, err, errlen) != 0)
        return -1;
    if (bp_config_archive_split(c->archive_path, &bucket, &prefix) != 0) {
        snprintf(err, errlen, "archive.path: expected gs://BUCKET[/PREFIX], got \"%s\"",
                 c->archive_path ? c->archive_path : "");
        return -1;
    }
    rt->loop = ev_default_loop(0);
    ev_set_userdata(rt->loop, rt);
    int need_cloud = !c->local_out || !bp_rt_local_source(rt);
    int rc = need_cloud ? start_cloud(rt, err, errlen) : 0;
    if (rc == 0)
        rc = open_sinks(rt, bucket, prefix, err, errlen);
    if (rc == 0)
        rc = bp_guard_start(rt, err, errlen);
    rt->bucket = bucket;
    free(prefix);
    if (rc != 0)
        return -1;
    /* the listener before the preflight and the source, so /healthz answers while they run
     * and /readyz says what holds the pipeline back */
    if (c->http_listen &&
        !(rt->httpd = bp_rt_httpd_new(rt, http_address(rt, c->http_listen, addr, sizeof(addr)),
                                      err, errlen)))
        return -1;
    if (preflight(rt, err, errlen) != 0)
        return -1;
    arm_watchers(rt);
    return 0;
}

/* Runs the loop until drained. Returns the process exit code. */
int
bp_rt_run(struct bp_rt *rt)
{
    ev_run(rt->loop, 0);
    ev_signal_stop(rt->loop, &rt->sigterm);
    ev_signal_stop(rt->loop, &rt->sigint);
    return rt->exit_code;
}

