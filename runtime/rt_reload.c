/* rt_reload.c - reloading the scripts, and the schemas rows are checked against: the DDL's (read
 * at start and again on each reload) and the live tables' (from a table sync, rt_tables.c), bound
 * to the routes of the host in force. A reload builds a complete new host beside the running one
 * and swaps it in between batches, at once or once its tables are patched to the new DDL
 * (--update-tables, --create-tables); on any failure the old scripts keep running. Everything
 * here runs on the one loop thread. */
#include "log.h"
#include "rt.h"
#include "rt_reload.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Points every route of the current host at its table's batch (tables appear on first use). */
void
bp_rt_bind_routes(struct bp_rt *rt)
{
    size_t n;
    const struct bp_route *routes = bp_lua_host_routes(rt->host, &n);
    free(rt->route_batch);
    rt->route_batch = bp_xcalloc(n ? n : 1, sizeof(*rt->route_batch));
    for (size_t i = 0; i < n; i++)
        rt->route_batch[i] = bp_batches_index(&rt->tables, routes[i].table);
    rt->nroutes = n;
    /* a route whose table has no DDL has no schema: its rows go unchecked, as are all rows
     * with schema.check = 0 */
    free(rt->route_schema);
    rt->route_schema = bp_xcalloc(n ? n : 1, sizeof(*rt->route_schema));
    for (size_t i = 0; i < n && rt->cfg.schema_check; i++)
        rt->route_schema[i] = bp_rt_table_schema(rt, routes[i].table);
    if (rt->protos) {
        /* the schema the Storage Write store sends each table's rows under (checked or not):
         * what the batch loop writes them against */
        const struct bp_schema **w = bp_xcalloc(n ? n : 1, sizeof(*w));
        for (size_t i = 0; i < n; i++)
            w[i] = bp_rt_table_schema(rt, routes[i].table);
        bp_row_protos_bind(rt->protos, w, n);
        free(w);
    }
}

/* See rt_reload.h. */
const struct bp_schema *
bp_rt_table_schema(const struct bp_rt *rt, const char *table)
{
    const struct bp_schema *s = bp_schema_set_find(&rt->live_schemas, table);
    return s ? s : bp_schema_set_find(&rt->schemas, table);
}

/* Puts taken as table's schema in set (the one it replaces freed). */
static void
set_put(struct bp_schema_set *set, const char *table, struct bp_schema *taken)
{
    size_t i = 0;
    while (i < set->n && strcmp(set->tables[i], table) != 0)
        i++;
    if (i == set->n) {
        set->tables = bp_xrealloc(set->tables, (set->n + 1) * sizeof(*set->tables));
        set->schemas = bp_xrealloc(set->schemas, (set->n + 1) * sizeof(*set->schemas));
        set->tables[i] = bp_xstrdup(table);
        set->schemas[i] = NULL;
        set->n++;
    }
    bp_schema_free(set->schemas[i]);
    set->schemas[i] = taken;
}

/* Whether a has a column (by name) that b lacks. */
static int
has_column_beyond(const struct bp_schema *a, const struct bp_schema *b)
{
    for (size_t i = 0; i < a->root.nfields; i++)
        if (!bp_schema_field_find(&b->root, a->root.fields[i].name, a->root.fields[i].name_len))
            return 1;
    return 0;
}

/* See rt_reload.h. */
void
bp_rt_forget_replied(struct bp_rt *rt)
{
    for (size_t i = 0; i < rt->nreplied; i++)
        free(rt->replied[i]);
    free(rt->replied);
    rt->replied = NULL;
    rt->nreplied = 0;
}

/* The live schemas from a table sync (taken) replace those in force, but for a table whose
 * schema an AppendRows reply gave while the sync ran: the sync may have read the table before
 * it changed, so the reply's stays when it has a column the sync's lacks (a column the table
 * gained; taking the sync's would dead-letter the rows filling it, and no reply says so again). */
void
bp_rt_adopt_live(struct bp_rt *rt, struct bp_schema_set *live)
{
    for (size_t r = 0; r < rt->nreplied; r++) {
        struct bp_schema_set *old = &rt->live_schemas;
        for (size_t i = 0; i < old->n; i++) {
            if (strcmp(old->tables[i], rt->replied[r]) != 0 || !old->schemas[i])
                continue;
            const struct bp_schema *synced = bp_schema_set_find(live, old->tables[i]);
            if (!synced || has_column_beyond(old->schemas[i], synced)) {
                bp_log(BP_LOG_INFO, "schema", "%s: the schema an AppendRows reply gave during "
                       "the table sync stays (the sync read the table before it changed)",
                       old->tables[i]);
                set_put(live, old->tables[i], old->schemas[i]);
                old->schemas[i] = NULL;
            }
        }
    }
    bp_rt_forget_replied(rt);
    bp_schema_set_clear(&rt->live_schemas);
    rt->live_schemas = *live;
    memset(live, 0, sizeof(*live));
    bp_rt_bind_routes(rt);
}

/* See rt_reload.h. */
void
bp_rt_adopt_table(struct bp_rt *rt, const char *table, struct bp_schema *taken)
{
    if (rt->tables_sync) {
        /* a sync in flight may have read the table before this change: its end keeps this */
        rt->replied = bp_xrealloc(rt->replied, (rt->nreplied + 1) * sizeof(*rt->replied));
        rt->replied[rt->nreplied++] = bp_xstrdup(table);
    }
    set_put(&rt->live_schemas, table, taken);
    bp_rt_bind_routes(rt);
}

/* Reads the schema of every table in the pipeline's DDL folder (through host's bepipe.ddl) into
 * rt->schemas, so rows are checked before they leave (dispatch.c). At start (keep_old 0) no DDL
 * folder, or one that does not parse, means no checks (--check reports the DDL's problems): a
 * warning, not a failure to start. On reload the DDL is read again, so a column added with the
 * scripts that fill it is known before their rows flow; a DDL that no longer parses keeps the
 * schemas in force (keep_old 1). */
void
bp_rt_load_schemas(struct bp_rt *rt, struct bp_lua_host *host, int keep_old)
{
    char dir[4096], err[1024];
    char **bodies = NULL;
    size_t n = 0;
    struct bp_schema_set set = {0};
    bp_rt_ddl_dir(rt, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (d)
        closedir(d);
    if (d && (bp_lua_host_table_resources(host, dir, "_", "_", &bodies, &n, err,
                                          sizeof(err)) != 0 ||
              bp_schema_set_add_resources(&set, bodies, n, err, sizeof(err)) != 0)) {
        bp_log(BP_LOG_WARN, "schema", "%s: DDL in %s: %s", keep_old ? "the schemas in force stay"
               : "rows are not checked against the DDL", dir, err);
        bp_schema_set_clear(&set);
        if (keep_old)
            goto done;
    }
    bp_schema_set_clear(&rt->schemas);
    rt->schemas = set;
done:
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
}

/* Swaps h in for the running host: from here on batches run h's scripts against its DDL's
 * schemas (the live ones still win). */
static void
swap_host(struct bp_rt *rt, struct bp_lua_host *h)
{
    char why[1024];
    bp_lua_host_set_memory_limit(h, (size_t)rt->cfg.lua_memory_mb << 20);
    /* the running configuration's: options apply at the next restart (bp_config_diff_log) */
    if (bp_lua_host_set_route_field(h, rt->cfg.route_field, why, sizeof(why)) != 0)
        bp_log(BP_LOG_ERROR, "reload", "route_field %s not set: %s", rt->cfg.route_field, why);
    bp_lua_host_free(rt->host);
    rt->host = h;
    if (rt->protos)
        bp_row_protos_register(rt->protos, bp_lua_host_state(h));
    rt->generation++;
    bp_rt_load_schemas(rt, rt->host, 1);
    bp_rt_bind_routes(rt);
    char err[1024];
    if (bp_rt_check_columns(rt, err, sizeof(err)) != 0)
        bp_log(BP_LOG_ERROR, "reload", "%s: those rows become dead letters of stage schema",
               err);
    rt->stats.reloads++;
    bp_log(BP_LOG_INFO, "reload", "generation %d loaded from %s", rt->generation,
           rt->pipeline_path);
}

static void live_refreshed(void *arg, int status, struct bp_schema_set *live);

/* After a swap on the cloud path: the live schemas of the new routes' tables (a sync in
 * flight is answered first, then this runs again). */
void
bp_rt_refresh_live(struct bp_rt *rt)
{
    char err[1024];
    if (rt->tables_sync) {
        rt->tables_resync = 1;
        return;
    }
    if (bp_rt_tables_sync(rt, rt->host, live_refreshed, err, sizeof(err)) < 0)
        bp_log(BP_LOG_WARN, "schema", "no live schemas after the reload: %s", err);
}

static void
live_refreshed(void *arg, int status, struct bp_schema_set *live)
{
    struct bp_rt *rt = arg;
    rt->tables_sync = NULL;
    if (status == 0)
        bp_rt_adopt_live(rt, live);
    if (rt->tables_resync && !rt->draining) {
        rt->tables_resync = 0;
        bp_rt_refresh_live(rt);
    }
}

/* The reload's tables were patched (or not): only then do the new scripts run. */
static void
reload_patched(void *arg, int status, struct bp_schema_set *live)
{
    struct bp_rt *rt = arg;
    struct bp_lua_host *h = rt->pending_host;
    /* the memory cap's rebuild (bp_rt_rebuild) may have swapped a host in meanwhile: h's
     * generation would then be taken */
    int stale = bp_lua_host_generation(h) != rt->generation + 1;
    rt->tables_sync = NULL;
    rt->pending_host = NULL;
    if (status != 0 || rt->draining || stale) {
        rt->stats.reload_failures++;
        bp_log(BP_LOG_ERROR, "reload", "failed, generation %d keeps running: %s", rt->generation,
               rt->draining ? "draining" : stale ? "the scripts were rebuilt meanwhile; reload "
               "again" : "its tables could not be brought to the new DDL (see above)");
        bp_lua_host_free(h);
        return;
    }
    swap_host(rt, h);
    bp_rt_adopt_live(rt, live);
}

/* Builds a complete new host beside the running one and swaps it in; on any failure the old
 * scripts keep running and the error (with file and line) is logged. With --update-tables or
 * --create-tables on the cloud path the swap waits until the new DDL is patched into the
 * tables (1); otherwise it is at once (0) and the live schemas are fetched again after it.
 * tables 0: no table call at all. Runs between batches: a signal watcher never fires inside
 * one. Returns -1 (the reason in err) when kept. */
static int
reload(struct bp_rt *rt, int tables, char *err, size_t errlen)
{
    struct bp_config cfg;
    int patch = tables && (rt->cfg.update_tables || rt->cfg.create_tables);
    if (patch && rt->pending_host) {
        snprintf(err, errlen, "a reload is waiting for its tables' patch; try again after it");
        goto fail;
    }
    struct bp_lua_host *h = bp_lua_host_new(rt->pipeline_path, rt->lib_dir, rt->generation + 1,
                                            err, errlen);
    if (!h || bp_rt_effective_config(rt, h, &cfg, err, errlen) != 0) {
        bp_lua_host_free(h);
        goto fail;
    }
    bp_config_diff_log(&rt->cfg, &cfg);
    bp_config_free(&cfg);
    if (patch && rt->loop && !rt->tables_sync) {
        int rc = bp_rt_tables_sync(rt, h, reload_patched, err, errlen);
        if (rc == 0) {
            rt->pending_host = h;
            bp_log(BP_LOG_INFO, "reload", "generation %d waits for its tables' patch",
                   rt->generation + 1);
            return 1;
        }
        if (rc < 0) {
            bp_lua_host_free(h);
            goto fail;
        }
    } else if (patch && rt->tables_sync) {
        bp_lua_host_free(h);
        snprintf(err, errlen, "the tables are being synced; try again after it");
        goto fail;
    }
    swap_host(rt, h);
    if (tables && rt->loop)
        bp_rt_refresh_live(rt);
    return 0;
fail:
    rt->stats.reload_failures++;
    bp_log(BP_LOG_ERROR, "reload", "failed, generation %d keeps running: %s", rt->generation,
           err);
    return -1;
}

/* See rt.h. */
int
bp_rt_reload_err(struct bp_rt *rt, char *err, size_t errlen)
{
    return reload(rt, 1, err, errlen);
}

/* See rt.h. */
int
bp_rt_rebuild(struct bp_rt *rt)
{
    char err[4096];
    return reload(rt, 0, err, sizeof(err));
}

/* The state hit lua.memory_mb: a fresh one from the same scripts (a reload, which re-binds the
 * routes; the old state goes on if that fails). */
static void
on_rebuild(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)w;
    (void)revents;
    if (!bp_lua_host_memory_hit(rt->host))
        return;
    bp_log(BP_LOG_WARN, "lua", "the Lua state hit lua.memory_mb=%ld; rebuilding it",
           rt->cfg.lua_memory_mb);
    (void)bp_rt_rebuild(rt);
}

/* See rt.h. */
void
bp_rt_rebuild_soon(struct bp_rt *rt)
{
    if (ev_is_active(&rt->rebuild))
        return;
    ev_timer_init(&rt->rebuild, on_rebuild, 0., 0.);
    ev_timer_start(rt->loop, &rt->rebuild);
}

/* SIGHUP's reload: the reason of a failure goes to the log only. */
int
bp_rt_reload(struct bp_rt *rt)
{
    char err[4096];
    return bp_rt_reload_err(rt, err, sizeof(err));
}
