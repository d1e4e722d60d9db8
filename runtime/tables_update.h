/* tables_update.h - the live tables' schemas at start and on reload (tables.get: the live table
 * wins over the DDL for the row check), and with --update-tables / --create-tables the
 * tables.patch that brings a table to its DDL before any row of the new DDL flows (schema
 * evolution; the comparison itself is schema_diff.c). */
#ifndef BP_TABLES_UPDATE_H
#define BP_TABLES_UPDATE_H

#include "common.h"
#include "schema.h"

struct bp_api;
struct bp_tables_sync;

struct bp_tables_sync_params {
    struct bp_api *api;
    const char *base;               /* ".../bigquery/v2" */
    const char *project, *dataset;
    const char *const *tables;      /* the routed tables: their live schemas are wanted */
    size_t ntables;
    char *const *bodies;            /* the DDL's tables.insert resources (for project.dataset) */
    size_t nbodies;
    int update;     /* patch each DDL table that exists to its DDL, refuse what cannot be */
    int create;     /* with update: a DDL table that does not exist is created (tables.insert) */
};

/* status 0: *live holds the schema of every table that answered (the caller takes its
 * contents; tables that did not answer are missing: their DDL schema applies, as logged).
 * status -1 (update only): a table could not be brought to its DDL, as logged (error lines
 * naming the table and the column); *live is empty. */
typedef void (*bp_tables_sync_fn)(void *arg, int status, struct bp_schema_set *live);

/* Starts a GET per table (the routed ones, and with update every DDL table), then with update
 * a PATCH (or a tables.insert) per table that needs one, all in parallel; everything in params
 * is copied. A GET that fails after the API's retries is logged and that table keeps its DDL
 * schema (without update) or fails the sync (with update: nothing is known to patch). done runs
 * once, from the loop, never inside this call. Returns the sync (freed after done returns), or
 * NULL when nothing was started (no tables: done is not called). */
struct bp_tables_sync *bp_tables_sync_start(const struct bp_tables_sync_params *params,
                                            bp_tables_sync_fn done, void *arg);

/* Forgets a sync whose calls were dropped (the API layer freed first): no callback runs after
 * this. NULL is fine. */
void bp_tables_sync_free(struct bp_tables_sync *s);

#endif
