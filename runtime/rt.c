/* rt.c - the runtime: builds the pipeline from the Lua host and the configuration, runs batches,
 * reloads, drains. Everything here runs on the one loop thread. */
#include "rt.h"
#include "guard.h"
#include "log.h"
#include "tables_create.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BP_RT_VERSION
#define BP_RT_VERSION "0.1.0"
#endif

/* Defaults + pipeline.lua (already in the host's config) + command-line overrides -> out.
 * Returns 0, or -1 with err set. */
int
bp_rt_effective_config(const struct bp_lua_host *h, const struct bp_kv *ov, size_t nov,
                       struct bp_config *out, char *err, size_t errlen)
{
    bp_config_copy(out, bp_lua_host_config(h));
    for (size_t i = 0; i < nov; i++)
        if (bp_config_set(out, ov[i].key, ov[i].value, err, errlen) != 0) {
            bp_config_free(out);
            return -1;
        }
    return 0;
}

/* Points every route of the current host at its table's batch (tables appear on first use). */
static void
bind_routes(struct bp_rt *rt)
{
    size_t n;
    const struct bp_route *routes = bp_lua_host_routes(rt->host, &n);
    free(rt->route_batch);
    rt->route_batch = bp_xcalloc(n ? n : 1, sizeof(*rt->route_batch));
    for (size_t i = 0; i < n; i++)
        rt->route_batch[i] = bp_batches_index(&rt->tables, routes[i].table);
    rt->nroutes = n;
}

/* Loads the pipeline (compiles every script) and the configuration. No I/O starts here, which
 * is all `--check` needs. Returns the runtime, or NULL with err set. */
struct bp_rt *
bp_rt_new(const char *pipeline_path, const char *lib_dir, const struct bp_kv *overrides,
          size_t noverrides, char *err, size_t errlen)
{
    struct bp_rt *rt = bp_xcalloc(1, sizeof(*rt));
    rt->pipeline_path = bp_xstrdup(pipeline_path);
    rt->lib_dir = bp_xstrdup(lib_dir);
    rt->overrides = bp_xcalloc(noverrides ? noverrides : 1, sizeof(*rt->overrides));
    for (size_t i = 0; i < noverrides; i++) {
        rt->overrides[i].key = bp_xstrdup(overrides[i].key);
        rt->overrides[i].value = bp_xstrdup(overrides[i].value);
    }
    rt->noverrides = noverrides;
    bp_buf_init(&rt->entry, 16 * 1024 * 1024);
    rt->generation = 1;
    rt->host = bp_lua_host_new(pipeline_path, lib_dir, rt->generation, err, errlen);
    if (!rt->host)
        goto fail;
    if (bp_rt_effective_config(rt->host, overrides, noverrides, &rt->cfg, err, errlen) != 0)
        goto fail;
    bp_lua_host_set_memory_limit(rt->host, (size_t)rt->cfg.lua_memory_mb << 20);
    return rt;
fail:
    bp_rt_free(rt);
    return NULL;
}

void
bp_rt_free(struct bp_rt *rt)
{
    if (!rt)
        return;
    if (rt->source)
        rt->source->ops->destroy(rt->source);
    rt->source = NULL;
    /* HTTP first: in-flight calls are dropped without callbacks, so nothing below is touched */
    bp_api_free(rt->api_auth);
    bp_api_free(rt->api_plain);
    bp_http_free(rt->http);
    bp_auth_free(rt->auth);
    bp_endpoints_free(&rt->ep);
    bp_archive_free(&rt->archive);
    bp_batches_free(&rt->tables);
    bp_ack_free(&rt->ack);
    if (rt->store)
        rt->store->ops->destroy(rt->store);
    bp_guard_free(rt->guard);   /* its thread may look at the host: stop it first */
    bp_lua_host_free(rt->host);
    bp_config_free(&rt->cfg);
    for (size_t i = 0; i < rt->noverrides; i++) {
        free(rt->overrides[i].key);
        free(rt->overrides[i].value);
    }
    free(rt->overrides);
    free(rt->route_batch);
    free(rt->results);
    free(rt->batch.out);
    bp_buf_free(&rt->entry);
    free(rt->pipeline_path);
    free(rt->lib_dir);
    free(rt);
}

/* Runs one batch of messages through Lua and the sinks. The messages are lent: they must stay
 * valid until this returns. slots (or NULL) are their ack slots from bp_ack_new. Returns 0, or
 * -1 when a sink failed (the caller stops). */
int
bp_rt_process(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots, size_t n)
{
    int src;
    /* suspects (delivered before, never completed) are dead-lettered before Lua sees them */
    n = bp_guard_screen(rt, &msgs, &slots, n, &src);
    if (src != 0)
        return -1;
    if (n == 0)
        return 0;
    if (n > rt->results_cap) {
        free(rt->results);
        rt->results = bp_xcalloc(n, sizeof(*rt->results));
        rt->results_cap = n;
    }
    bp_batch_t *b = &rt->batch;
    b->msgs = msgs;
    b->results = rt->results;
    b->n = (int32_t)n;
    b->now = bp_time_now();
    bp_time_rfc3339(b->now, b->now_str);
    rt->stats.read += n;

    char err[2048];
    double t0 = bp_time_mono();
    bp_guard_arm(rt, b);
    int lrc = bp_lua_host_process(rt->host, b, err, sizeof(err));
    bp_guard_disarm(rt);
    if (lrc != 0) {
        /* The host itself failed (not one event): nothing is lost, the whole batch is dead-lettered. */
        bp_log(BP_LOG_ERROR, "lua", "batch entry failed, dead-lettering %zu events: %s", n, err);
        for (size_t i = 0; i < n; i++) {
            uint32_t slot = slots ? slots[i] : BP_ACK_NONE;
            int rc = bp_rt_dead_letter(rt, &msgs[i], slot, BP_STAGE_MAP, err, NULL, 0);
            bp_ack_done(&rt->ack, slot, rc == 0);
            if (rc != 0)
                return -1;
        }
        bp_guard_check_memory(rt);
        return 0;
    }
    int rc = bp_dispatch_batch(rt, msgs, slots, rt->results, n, b->out, b->out_len);
    rt->stats.batch_secs[rt->stats.batches++ % BP_LAT_SAMPLES] = bp_time_mono() - t0;
    bp_guard_check_memory(rt);   /* past its memory cap: the state is rebuilt from the loop */
    return rc;
}

/* Builds a complete new host beside the running one and swaps it in; on any failure the old
 * scripts keep running and the error (with file and line) is logged. Runs between batches: a
 * signal watcher never fires inside one. Returns 0 when swapped, -1 when kept. */
int
bp_rt_reload(struct bp_rt *rt)
{
    char err[4096];
    struct bp_config cfg;
    struct bp_lua_host *h = bp_lua_host_new(rt->pipeline_path, rt->lib_dir, rt->generation + 1,
                                            err, sizeof(err));
    if (!h || bp_rt_effective_config(h, rt->overrides, rt->noverrides, &cfg, err,
                                     sizeof(err)) != 0) {
        rt->stats.reload_failures++;
        bp_log(BP_LOG_ERROR, "reload", "failed, generation %d keeps running: %s", rt->generation,
               err);
        bp_lua_host_free(h);
        return -1;
    }
    bp_config_diff_log(&rt->cfg, &cfg);
    bp_config_free(&cfg);
    bp_lua_host_set_memory_limit(h, (size_t)rt->cfg.lua_memory_mb << 20);
    bp_lua_host_free(rt->host);
    rt->host = h;
    rt->generation++;
    bind_routes(rt);
    rt->stats.reloads++;
    bp_log(BP_LOG_INFO, "reload", "generation %d loaded from %s", rt->generation,
           rt->pipeline_path);
    return 0;
}

static int
flush_all(struct bp_rt *rt)
{
    int rc = 0;
    if (bp_batches_flush_all(&rt->tables) != 0)
        rc = -1;
    if (bp_archive_finish_all(&rt->archive) != 0)
        rc = -1;
    return rc;
}

/* Everything written has been answered (stores, batches, archive uploads). */
static int
sinks_idle(struct bp_rt *rt)
{
    return rt->tables.in_flight == 0 && rt->archive.in_flight == 0 &&
           (!rt->store || rt->store->ops->pending(rt->store) == 0);
}

static int
source_idle(struct bp_rt *rt)
{
    if (!rt->source || strcmp(rt->source->ops->kind, "pubsub") != 0)
        return 1;
    return bp_source_pubsub_calls(rt->source) == 0;
}

/* The drain, one step per timer tick: (1) wait for the sinks to answer what was flushed,
 * (2) send the acks that produced and nack the rest, (3) wait for those calls, leave the loop.
 * Past drain_seconds whatever is still outstanding is nacked, so Pub/Sub redelivers it soon
 * instead of after its lease. */
static void
on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)w;
    (void)revents;
    int late = bp_time_mono() - rt->drain_started > rt->cfg.drain_seconds;
    if (rt->drain_phase == 1 && (sinks_idle(rt) || late)) {
        if (!sinks_idle(rt)) {
            bp_log(BP_LOG_WARN, "main", "drain timeout: sinks still busy; nacking what is left");
            rt->exit_code = 1;
        }
        if (rt->source && strcmp(rt->source->ops->kind, "pubsub") == 0) {
            rt->source->ops->stop(rt->source);   /* flushes the acks queued meanwhile */
            bp_source_pubsub_nack_all(rt->source);
        }
        rt->drain_phase = 2;
        rt->drain_started = bp_time_mono() - rt->cfg.drain_seconds + 5.0;  /* 5 s for acks */
        return;
    }
    if (rt->drain_phase == 2 && (source_idle(rt) || late)) {
        rt->drain_phase = 3;
        ev_timer_stop(loop, &rt->drain_timer);
        ev_break(loop, EVBREAK_ALL);
    }
}

/* Stops reading and flushes every sink; the loop ends once they have answered and the acks
 * are out (at once for local files). */
void
bp_rt_drain(struct bp_rt *rt, const char *why)
{
    if (rt->draining)
        return;
    rt->draining = 1;
    bp_log(BP_LOG_INFO, "main", "draining (%s)", why);
    if (rt->source)
        rt->source->ops->stop(rt->source);
    /* a store that fails at once (local disk) is fatal; cloud failures were answered by
     * nacks and redelivery, and are no reason for a failed exit */
    if (flush_all(rt) != 0)
        rt->exit_code = 1;
    ev_timer_stop(rt->loop, &rt->tick);
    ev_timer_stop(rt->loop, &rt->stats_timer);
    ev_signal_stop(rt->loop, &rt->sighup);
    rt->drain_phase = 1;
    rt->drain_started = bp_time_mono();
    ev_timer_init(&rt->drain_timer, on_drain_timer, 0., 0.05);
    ev_timer_start(rt->loop, &rt->drain_timer);
}

/* Whether the sinks hold so much unanswered work that a source without flow control of its own
 * (a file) should wait: too many requests in flight, or too many archive bytes in memory. */
int
bp_rt_sinks_busy(struct bp_rt *rt)
{
    if (rt->tables.in_flight + rt->archive.in_flight > 32)
        return 1;
    return rt->store->ops->objects_in_memory &&
           bp_archive_open_bytes(&rt->archive) > (size_t)rt->cfg.max_outstanding_bytes;
}

/* The source has delivered everything it will (end of file). */
void
bp_rt_source_finished(struct bp_rt *rt)
{
    bp_rt_drain(rt, "end of input");
}

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

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)w;
    (void)revents;
    double now = ev_now(loop);
    /* flow control near its limit: finish archive objects early so their messages can be
     * acked and pulling goes on (see bp_archive_roll_older) */
    size_t out = rt->source && rt->source->ops->outstanding
                     ? rt->source->ops->outstanding(rt->source) : 0;
    double roll = out * 2 >= (size_t)rt->cfg.max_outstanding_messages ? 0.5
                                                                      : (double)rt->cfg.roll_seconds;
    /* objects held in memory (cloud) are finished before they pass the byte budget, whatever
     * the source (a file source has no flow control of its own) */
    if (rt->store->ops->objects_in_memory &&
        bp_archive_open_bytes(&rt->archive) > (size_t)rt->cfg.max_outstanding_bytes / 2)
        roll = 0;
    if (bp_batches_tick(&rt->tables, now) != 0 || bp_archive_roll_older(&rt->archive, now, roll) != 0) {
        bp_log(BP_LOG_ERROR, "main", "a sink failed; stopping");
        rt->exit_code = 1;
        bp_rt_drain(rt, "sink failure");
    }
}

static void
on_stats(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)w;
    (void)revents;
    double now = ev_now(loop);
    double dt = now - rt->stats_last_at;
    double rate = dt > 0 ? (double)(rt->stats.read - rt->stats_last_read) / dt : 0;
    unsigned long dead = 0;
    for (int i = 1; i <= BP_STAGE_INSERT; i++)
        dead += rt->stats.dead[i];
    bp_log(BP_LOG_INFO, "stats", "read=%lu rows=%lu dead=%lu rate=%.0f/s objects=%lu "
           "lua_kb=%zu generation=%d", rt->stats.read, rt->stats.rows, dead, rate,
           rt->archive.objects_done, bp_lua_host_memory(rt->host) / 1024, rt->generation);
    rt->stats_last_at = now;
    rt->stats_last_read = rt->stats.read;
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
    if (bp_endpoints_init(&rt->ep, c->pubsub_endpoint, c->bigquery_endpoint, c->storage_endpoint,
                          err, errlen) != 0)
        return -1;
    struct bp_http_opts ho = { c->ca_file, 10000, "bepipe-lua/" BP_RT_VERSION };
    rt->http = bp_http_new(rt->loop, &ho, err, errlen);
    if (!rt->http)
        return -1;
    int force = strcmp(c->auth_mode, "adc") == 0;
    if (strcmp(c->auth_mode, "none") != 0 && strcmp(c->auth_mode, "auto") != 0 && !force) {
        snprintf(err, errlen, "auth.mode must be auto, adc or none, not '%s'", c->auth_mode);
        return -1;
    }
    int need_token = force || (strcmp(c->auth_mode, "auto") == 0 &&
                               (!rt->ep.pubsub_emulated || !rt->ep.bigquery_emulated ||
                                !rt->ep.storage_emulated));
    if (need_token) {
        rt->auth = bp_auth_new(c->auth_key_file, 0, NULL, err, errlen);
        if (!rt->auth)
            return -1;
        if (c->auth_token_url && bp_auth_set_token_url(rt->auth, c->auth_token_url, err,
                                                       errlen) != 0)
            return -1;
        bp_log(BP_LOG_INFO, "auth", "credentials: %s (%s)",
               bp_auth_kind_name(bp_auth_kind(rt->auth)), bp_auth_source(rt->auth));
    }
    struct bp_api_retry retry = { (int)c->retry_attempts, 0.2, c->retry_max_ms / 1000.0, 600.0 };
    rt->api_auth = bp_api_new(rt->loop, rt->http, rt->auth, &retry);
    /* with auth.mode=adc even emulator calls carry the token (tests of token expiry) */
    rt->api_plain = bp_api_new(rt->loop, rt->http, force ? rt->auth : NULL, &retry);
    return 0;
}

static int
start_source(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    if (c->input)
        rt->source = bp_source_ndjson_new(rt, c->input, err, errlen);
    else
        rt->source = bp_source_pubsub_new(rt, rt->ep.pubsub_emulated ? rt->api_plain
                                                                     : rt->api_auth,
                                          rt->ep.pubsub, c->subscription, err, errlen);
    return rt->source ? 0 : -1;
}

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
    if (!rt->draining && start_source(rt, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "main", "%s", err);
        rt->exit_code = 1;
        bp_rt_drain(rt, "source failure");
    }
}

/* The DDL folder: bigquery.ddl_dir, else ddl/ beside the scripts folder (a checkout, or the
 * install's share/bepipe-lua/ddl next to share/bepipe-lua/lua). */
static void
ddl_dir(struct bp_rt *rt, char *out, size_t outlen)
{
    if (rt->cfg.ddl_dir) {
        snprintf(out, outlen, "%s", rt->cfg.ddl_dir);
        return;
    }
    snprintf(out, outlen, "%s/../ddl", rt->lib_dir);
}

static int
create_tables(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char dir[4096];
    char **bodies;
    size_t n;
    ddl_dir(rt, dir, sizeof(dir));
    if (bp_lua_host_table_resources(rt->host, dir, c->bq_project, c->bq_dataset, &bodies, &n,
                                    err, errlen) != 0)
        return -1;
    bp_tables_create(rt->ep.bigquery_emulated ? rt->api_plain : rt->api_auth, rt->ep.bigquery,
                     c->bq_project, c->bq_dataset, bodies, n, tables_created, rt);
    return 0;
}

/* Opens the sinks and the source and arms the watchers. Returns 0, or -1 with err set. */
int
bp_rt_start(struct bp_rt *rt, char *err, size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char *bucket = NULL, *prefix = NULL;
    if (bp_config_archive_split(c->archive_path, &bucket, &prefix) != 0) {
        snprintf(err, errlen, "archive.path '%s' is not gs://BUCKET[/PREFIX]",
                 c->archive_path ? c->archive_path : "");
        return -1;
    }
    rt->loop = ev_default_loop(0);
    ev_set_userdata(rt->loop, rt);
    int need_cloud = !c->local_out || !c->input;
    if (need_cloud && start_cloud(rt, err, errlen) != 0)
        goto fail;
    if (c->local_out)
        rt->store = bp_store_local_new(c->local_out, bucket, err, errlen);
    else
        rt->store = bp_store_cloud_new(rt->ep.bigquery_emulated ? rt->api_plain : rt->api_auth,
                                       rt->ep.storage_emulated ? rt->api_plain : rt->api_auth,
                                       &rt->ep, c->bq_project, c->bq_dataset, bucket,
                                       (size_t)c->roll_bytes + 1024 * 1024);
    if (!rt->store)
        goto fail;
    bp_ack_init(&rt->ack, on_acked, rt);
    bp_batches_init(&rt->tables, rt->store, &rt->ack, (size_t)c->batch_rows,
                    (size_t)c->batch_bytes, c->batch_ms / 1000.0);
    bp_batches_on_rejected(&rt->tables, bp_rt_rejected_row, rt);
    rt->dead_batch = bp_batches_index(&rt->tables, c->dead_letter_table);
    rt->tables.v[rt->dead_batch]->is_dead_letter = 1;
    bind_routes(rt);
    bp_archive_init(&rt->archive, rt->store, &rt->ack, prefix, (size_t)c->roll_bytes,
                    (double)c->roll_seconds, (size_t)c->max_open_objects);
    if (bp_guard_start(rt, err, errlen) != 0)
        goto fail;
    free(bucket);
    free(prefix);
    bucket = prefix = NULL;

    if (c->create_tables && !c->local_out) {
        /* the source starts once the tables exist (tables_created) */
        if (create_tables(rt, err, errlen) != 0)
            return -1;
    } else if (start_source(rt, err, errlen) != 0) {
        return -1;
    }

    ev_signal_init(&rt->sighup, on_signal, SIGHUP);
    ev_signal_init(&rt->sigterm, on_signal, SIGTERM);
    ev_signal_init(&rt->sigint, on_signal, SIGINT);
    ev_signal_start(rt->loop, &rt->sighup);
    ev_signal_start(rt->loop, &rt->sigterm);
    ev_signal_start(rt->loop, &rt->sigint);
    double tick = c->batch_ms / 4000.0;
    if (tick > 0.25)
        tick = 0.25;
    ev_timer_init(&rt->tick, on_tick, tick, tick);
    ev_timer_start(rt->loop, &rt->tick);
    if (c->stats_seconds > 0) {
        ev_timer_init(&rt->stats_timer, on_stats, (double)c->stats_seconds,
                      (double)c->stats_seconds);
        ev_timer_start(rt->loop, &rt->stats_timer);
    }
    rt->started_at = bp_time_mono();
    rt->stats_last_at = ev_now(rt->loop);
    return 0;
fail:
    free(bucket);
    free(prefix);
    return -1;
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

/* Peak resident memory of this process in KB (VmHWM; 0 if /proc is not there). Not rusage: its
 * ru_maxrss keeps the parent's size from before exec. */
static long
peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Percentile p (0..100) of the recorded batch times, in milliseconds. */
static double
batch_ms_percentile(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i] * 1000.0;
}

/* One line with the totals: per table rows stored, per stage dead letters, archive objects. */
void
bp_rt_log_summary(struct bp_rt *rt)
{
    char line[1024];
    size_t n = 0;
    for (size_t i = 0; i < rt->tables.n && n < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%lu", rt->tables.v[i]->table,
                              rt->tables.v[i]->rows_stored);
    for (int s = 1; s <= BP_STAGE_INSERT && n < sizeof(line); s++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, " dead_%s=%lu", bp_stage_names[s],
                              rt->stats.dead[s]);
    double secs = rt->loop ? bp_time_mono() - rt->started_at : 0;
    size_t ns = rt->stats.batches < BP_LAT_SAMPLES ? rt->stats.batches : BP_LAT_SAMPLES;
    double *sorted = bp_xcalloc(ns ? ns : 1, sizeof(double));
    memcpy(sorted, rt->stats.batch_secs, ns * sizeof(double));
    qsort(sorted, ns, sizeof(double), cmp_double);
    bp_log(BP_LOG_INFO, "summary", "read=%lu skipped=%lu%s objects=%lu archived=%lu "
           "seconds=%.2f rate=%.0f/s batches=%lu batch_ms_p50=%.3f batch_ms_p99=%.3f "
           "batch_ms_max=%.3f peak_rss_kb=%ld", rt->stats.read, rt->stats.skipped, line,
           rt->archive.objects_done, rt->archive.lines_done, secs,
           secs > 0 ? rt->stats.read / secs : 0.0, rt->stats.batches,
           batch_ms_percentile(sorted, ns, 50), batch_ms_percentile(sorted, ns, 99),
           batch_ms_percentile(sorted, ns, 100), peak_rss_kb());
    free(sorted);
}
