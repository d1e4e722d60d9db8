/* rt.c - the runtime's struct: the effective configuration, building and freeing it, running
 * batches through Lua and the sinks, and readiness (/readyz). Start-up and the wiring of the
 * clients, sinks and watchers: rt_start.c; reloads and the schemas in force: rt_reload.c.
 * Everything here runs on the one loop thread. */
#include "rt.h"
#include "rt_reload.h"
#include "dead_format.h"
#include "dispatch.h"
#include "httpd.h"
#include "guard.h"
#include "log.h"
#include "preflight.h"
#include "row_meta.h"
#include "store_write.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Defaults + pipeline.lua (already in h's config) + rt's command-line overrides -> out, then
 * the defaults that depend on the rest (bp_config_finish). The one way a configuration is made:
 * start, --check and reload. Returns 0, or -1 with err set. */
int
bp_rt_effective_config(const struct bp_rt *rt, const struct bp_lua_host *h,
                       struct bp_config *out, char *err, size_t errlen)
{
    bp_config_copy(out, bp_lua_host_config(h));
    for (size_t i = 0; i < rt->noverrides; i++)
        if (bp_config_set(out, rt->overrides[i].key, rt->overrides[i].value, err, errlen) != 0)
            goto fail;
    if (bp_config_finish(out, rt->pipeline_path, err, errlen) != 0)
        goto fail;
    return 0;
fail:
    bp_config_free(out);
    return -1;
}

/* The columns the pipeline writes beyond what its maps return must be in the DDL's schemas:
 * the metadata columns routes ask for, and the columns of the dead-letter format. Returns 0, or
 * -1 with err naming the route or table and the column. --check, start and reload. */
int
bp_rt_check_columns(const struct bp_rt *rt, char *err, size_t errlen)
{
    size_t n;
    const struct bp_route *routes = bp_lua_host_routes(rt->host, &n);
    if (bp_meta_check_routes(routes, n, &rt->schemas, err, errlen) != 0 ||
        bp_dead_check_table(&rt->schemas, rt->cfg.dead_letter_table, rt->cfg.dead_letter_format,
                            err, errlen) != 0)
        return -1;
    return 0;
}

/* Loads the pipeline (compiles every script) and the configuration. No I/O starts here, which
 * is all `--check` needs. Returns the runtime, or NULL with err set. */
struct bp_rt *
bp_rt_new(const char *pipeline_path, const char *lib_dir, const struct bp_kv *overrides,
          size_t noverrides, char *err, size_t errlen)
{
    struct bp_rt *rt = bp_xcalloc(1, sizeof(*rt));
    bp_metrics_hists_init(&rt->stats.ack_latency, &rt->stats.batch_seconds);
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
    if (bp_rt_effective_config(rt, rt->host, &rt->cfg, err, errlen) != 0)
        goto fail;
    bp_lua_host_set_memory_limit(rt->host, (size_t)rt->cfg.lua_memory_mb << 20);
    if (bp_lua_host_set_route_field(rt->host, rt->cfg.route_field, err, errlen) != 0)
        goto fail;
    bp_rt_load_schemas(rt, rt->host, 0);
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
    bp_httpd_free(rt->httpd);   /* no request may see the runtime half freed */
    rt->httpd = NULL;
    if (rt->source)
        rt->source->ops->destroy(rt->source);
    rt->source = NULL;
    /* HTTP first: in-flight calls are dropped without callbacks, so nothing below is touched */
    bp_api_free(rt->api_auth);
    bp_api_free(rt->api_plain);
    bp_preflight_free(rt->preflight);   /* after the APIs: they may hold its calls */
    bp_tables_sync_free(rt->tables_sync);
    bp_lua_host_free(rt->pending_host);
    bp_schema_set_clear(&rt->live_schemas);
    bp_rt_forget_replied(rt);
    free(rt->bucket);
    bp_http_free(rt->http);
    bp_auth_free(rt->auth);
    bp_endpoints_free(&rt->ep);
    bp_archive_free(&rt->archive);
    bp_rt_defer_free(rt);
    bp_batches_free(&rt->tables);
    bp_ack_free(&rt->ack);
    if (rt->row_store)
        rt->row_store->ops->destroy(rt->row_store);
    bp_row_protos_free(rt->protos);
    free(rt->protos);
    if (rt->store)
        rt->store->ops->destroy(rt->store);
    bp_guard_free(rt->guard);   /* its thread may look at the host: stop it first */
    if (rt->loop && ev_is_active(&rt->rebuild))
        ev_timer_stop(rt->loop, &rt->rebuild);
    bp_lua_host_free(rt->host);
    bp_config_free(&rt->cfg);
    for (size_t i = 0; i < rt->noverrides; i++) {
        free(rt->overrides[i].key);
        free(rt->overrides[i].value);
    }
    free(rt->overrides);
    free(rt->route_batch);
    free(rt->route_schema);
    bp_schema_set_clear(&rt->schemas);
    free(rt->results);
    free(rt->batch.out);
    bp_buf_free(&rt->entry);
    free(rt->pipeline_path);
    free(rt->lib_dir);
    free(rt->not_ready);
    free(rt->failing);
    free(rt);
}

/* Runs one batch of messages through Lua and the sinks. The messages are lent: they must stay
 * valid until this returns; those the batch time cap (lua.batch_budget_ms) leaves, or that come
 * while such messages wait, are copied and run later from the loop (rt_defer.c). slots (or
 * NULL) are their ack slots from bp_ack_new. Returns 0, or -1 when a sink failed (the caller
 * stops). */
int
bp_rt_process(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots, size_t n)
{
    int src;
    if (bp_rt_defer_first(rt)) {
        bp_rt_defer(rt, msgs, slots, n, 0);
        return 0;
    }
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
    if (rt->protos)
        bp_row_protos_begin(rt->protos, n, b->now_str);

    char err[2048];
    double t0 = bp_time_mono();
    bp_guard_arm(rt, b);
    int lrc = bp_lua_host_process(rt->host, b, err, sizeof(err));
    size_t ran = bp_guard_disarm(rt, n);
    if (lrc == 0 && ran < n) {
        /* the batch held the loop lua.batch_budget_ms: the rest runs after the loop's turn */
        bp_log_rl(BP_LOG_WARN, "lua", "batch time", "a batch ran past lua.batch_budget_ms=%ld "
                  "after %zu of %zu events; the rest runs in a later batch",
                  rt->cfg.lua_batch_budget_ms, ran, n);
        bp_rt_defer(rt, msgs + ran, slots ? slots + ran : NULL, n - ran, rt->defer.running);
        n = ran;
    }
    rt->stats.read += n;
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
        if (bp_guard_check_memory(rt))
            bp_rt_rebuild_soon(rt);
        return 0;
    }
    int rc = bp_dispatch_batch(rt, msgs, slots, rt->results, n, b->out, b->out_len);
    double secs = bp_time_mono() - t0;
    rt->stats.batch_secs[rt->stats.batches++ % BP_LAT_SAMPLES] = secs;
    bp_hist_observe(&rt->stats.batch_seconds, secs);
    if (bp_guard_check_memory(rt))  /* past its memory cap: the state is rebuilt from the loop */
        bp_rt_rebuild_soon(rt);
    return rc;
}

/* Whether a source without flow control of its own should wait (see pressure.c). */
int
bp_rt_sinks_busy(struct bp_rt *rt)
{
    struct bp_pressure pr;
    bp_rt_pressure(rt, &pr);
    return pr.sinks_busy;
}

struct ev_loop *
bp_rt_loop(struct bp_rt *rt)
{
    return rt->loop;
}

struct bp_ack *
bp_rt_ack(struct bp_rt *rt)
{
    return &rt->ack;
}

const struct bp_config *
bp_rt_config(const struct bp_rt *rt)
{
    return &rt->cfg;
}

/* A message that never reaches Lua (a line too long, data that is not base64): counted as read
 * and dead-lettered. */
int
bp_rt_process_dead(struct bp_rt *rt, const bp_msg_t *m, uint32_t slot, int stage,
                   const char *reason)
{
    rt->stats.read++;
    int rc = bp_rt_dead_letter(rt, m, slot, stage, reason, NULL, 0);
    bp_ack_done(&rt->ack, slot, rc == 0);
    return rc;
}

/* The DDL folder belongs to the pipeline: bigquery.ddl_dir (relative to the working folder),
 * else ddl/ in the pipeline's folder, the one holding pipeline.lua, or its parent when that is
 * scripts/ (this repository, and the install's share/bepipe-lua/scripts). Never the binary's:
 * a user's tables come from the user's DDL. */
void
bp_rt_ddl_dir(const struct bp_rt *rt, char *out, size_t outlen)
{
    if (rt->cfg.ddl_dir) {
        snprintf(out, outlen, "%s", rt->cfg.ddl_dir);
        return;
    }
    char dir[4096];
    const char *slash = strrchr(rt->pipeline_path, '/');
    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - rt->pipeline_path), rt->pipeline_path);
    else
        snprintf(dir, sizeof(dir), ".");
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    if (strcmp(base, "scripts") == 0)
        snprintf(out, outlen, "%s/..%s", dir, "/ddl");
    else
        snprintf(out, outlen, "%s/ddl", dir);
}

/* ---- readiness (/readyz) ---- */

static void
set_reason(char **slot, const char *why)
{
    free(*slot);
    *slot = why ? bp_xstrdup(why) : NULL;
}

/* The gate the preflight drives: ready = 0 holds /readyz at 503 with why; 1 opens it. */
void
bp_rt_set_ready(struct bp_rt *rt, int ready, const char *why)
{
    set_reason(&rt->not_ready, ready ? NULL : (why ? why : "not ready"));
}

/* A destination is failing for good (why), or no longer (NULL). */
void
bp_rt_set_unready_reason(struct bp_rt *rt, const char *why)
{
    set_reason(&rt->failing, why);
}

/* 1 when /readyz should answer 200; else 0 with the first reason that holds it back. */
int
bp_rt_ready(const struct bp_rt *rt, char *why, size_t whylen)
{
    const char *r = rt->draining ? "draining" : rt->not_ready ? rt->not_ready
                  : rt->failing ? rt->failing : !rt->source_started ? "source not started" : NULL;
    /* a paused table (a 403 or 404 that may pass): its rows wait, the probe says why */
    const struct bp_rowbatch *p = r ? NULL : bp_batches_paused(&rt->tables);
    if (p) {
        snprintf(why, whylen, "table %s paused, %zu rows held: %s", p->table, p->held_rows,
                 p->paused_why);
        return 0;
    }
    const char *bucket = !r && !rt->cfg.local_out && rt->store
                             ? bp_store_cloud_refusing(rt->store) : NULL;
    if (bucket) {
        snprintf(why, whylen, "archive uploads paused: %s", bucket);
        return 0;
    }
    snprintf(why, whylen, "%s", r ? r : "ready");
    return r == NULL;
}

/* See source.h. */
int
bp_rt_wants_acked_ids(const struct bp_rt *rt)
{
    return rt->row_store && rt->cfg.exactly_once;
}

/* See source.h. */
void
bp_rt_message_acked(struct bp_rt *rt, const char *id, size_t len)
{
    if (rt->row_store)
        bp_store_write_acked(rt->row_store, id, len);
}
