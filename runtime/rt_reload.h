/* rt_reload.h - what rt.c needs of rt_reload.c: the schemas in force and their binding to the
 * routes, at start and after a table sync. The reload entry points themselves are in rt.h.
 * Internal to the runtime (rt*.c, dispatch.c); all on the loop thread, none calls back. */
#ifndef BP_RT_RELOAD_H
#define BP_RT_RELOAD_H

#include "rt.h"

/* Points every route of rt->host at its table's batch in rt->tables (created on first use) and
 * at the schema its rows are checked against (the live table's, else the DDL's, else none; none
 * at all with schema.check = 0). Run whenever the host, the tables or the schemas change. */
void bp_rt_bind_routes(struct bp_rt *rt);

/* The schema in force for table: the live table's (BigQuery checks rows against it), else the
 * DDL's; NULL when neither is known. Whatever schema.check says: the Storage Write store sends
 * rows under it. */
const struct bp_schema *bp_rt_table_schema(const struct bp_rt *rt, const char *table);

/* The live schemas of a table sync replace those in force (live is taken and left empty), and
 * the routes are bound again. */
void bp_rt_adopt_live(struct bp_rt *rt, struct bp_schema_set *live);

/* One table's live schema as the service gave it (an AppendRows reply's updated_schema: the
 * table changed under the run) replaces the one in force (taken: freed by rt), as a table sync
 * would, and the routes are bound again: the next rows are checked, and written, against it. */
void bp_rt_adopt_table(struct bp_rt *rt, const char *table, struct bp_schema *taken);

/* Forgets the tables whose schema a reply gave during the sync in flight (a sync starting, or
 * the run ending): bp_rt_adopt_live keeps those over a sync's that lacks their columns. */
void bp_rt_forget_replied(struct bp_rt *rt);

/* Reads the DDL folder's schemas (bp_rt_ddl_dir, through host's bepipe.ddl) into rt->schemas.
 * A folder that cannot be read or parsed is a warning: keep_old 0 (start) leaves no schemas,
 * keep_old 1 (reload) keeps those in force. Does not bind the routes. */
void bp_rt_load_schemas(struct bp_rt *rt, struct bp_lua_host *host, int keep_old);

/* Starts a sync of the current host's tables for their live schemas (adopted when it answers);
 * while one is in flight, marks rt->tables_resync: that one's answer starts it again. A sync that
 * cannot start is logged (the schemas in force stay). Cloud path only. */
void bp_rt_refresh_live(struct bp_rt *rt);

#endif
