/* rt_tables.c - which tables the runtime asks tables_update.c to sync: the routed tables of a
 * Lua host (their live schemas win for the row check) and, with --update-tables or
 * --create-tables, every table of the DDL the host reads (patched to it). At start before the
 * source starts; on reload before (update) or after (otherwise) the new scripts are swapped in
 * (rt_reload.c). Cloud path only: --local-out has no live tables. */
#include "log.h"
#include "rt_reload.h"
#include "rt.h"
#include "tables_update.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* See rt.h. */
int
bp_rt_tables_sync(struct bp_rt *rt, struct bp_lua_host *h, bp_tables_sync_fn done, char *err,
                  size_t errlen)
{
    struct bp_config *c = &rt->cfg;
    char dir[4096];
    char **bodies = NULL;
    size_t n = 0, nroutes;
    int update = c->create_tables || c->update_tables;
    struct bp_api *api = bp_rt_api_for(rt, rt->ep.bigquery_emulated);
    if (c->local_out || !api)
        return 1;
    bp_rt_ddl_dir(rt, dir, sizeof(dir));
    DIR *d = opendir(dir);
    if (d)
        closedir(d);
    if ((d || update) && bp_lua_host_table_resources(h, dir, c->bq_project, c->bq_dataset,
                                                     &bodies, &n, err, errlen) != 0) {
        if (update)
            return -1;
        /* bp_rt_load_schemas already warned: the live schemas still come, without a comparison */
        bodies = NULL;
        n = 0;
    }
    const struct bp_route *routes = bp_lua_host_routes(h, &nroutes);
    const char **tables = bp_xcalloc(nroutes ? nroutes : 1, sizeof(*tables));
    for (size_t i = 0; i < nroutes; i++)
        tables[i] = routes[i].table;
    struct bp_tables_sync_params p = {
        .api = api, .base = rt->ep.bigquery, .project = c->bq_project, .dataset = c->bq_dataset,
        .tables = tables, .ntables = nroutes, .bodies = bodies, .nbodies = n,
        .update = update, .create = (int)c->create_tables,
    };
    bp_rt_forget_replied(rt);
    rt->tables_sync = bp_tables_sync_start(&p, done, rt);
    free(tables);
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
    return rt->tables_sync ? 0 : 1;
}
