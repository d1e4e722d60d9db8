/* lua_host.h - one lua_State per loaded pipeline: load, resolve the batch entry, run batches. */
#ifndef BP_LUA_HOST_H
#define BP_LUA_HOST_H

#include "bp_ffi.h"
#include "common.h"
#include "config.h"

struct bp_route {
    char *name;    /* event type, e.g. "order" */
    char *table;   /* BigQuery table of its rows */
    unsigned metadata;  /* BP_META_* columns its rows get (row_meta.h); 0 = none */
};

struct bp_lua_host;

struct bp_lua_host *bp_lua_host_new(const char *pipeline_path, const char *lib_dir, int generation,
                                    char *err, size_t errlen);
void bp_lua_host_free(struct bp_lua_host *h);
int bp_lua_host_generation(const struct bp_lua_host *h);
const struct bp_route *bp_lua_host_routes(const struct bp_lua_host *h, size_t *n);
const struct bp_config *bp_lua_host_config(const struct bp_lua_host *h);
int bp_lua_host_process(struct bp_lua_host *h, bp_batch_t *b, char *err, size_t errlen) BP_WUR;
size_t bp_lua_host_memory(const struct bp_lua_host *h);
int bp_lua_host_table_resources(struct bp_lua_host *h, const char *ddl_dir, const char *project,
                                const char *dataset, char ***out, size_t *n, char *err,
                                size_t errlen) BP_WUR;
void bp_lua_host_set_memory_limit(struct bp_lua_host *h, size_t bytes);
int bp_lua_host_set_route_field(struct bp_lua_host *h, const char *field, char *err,
                                size_t errlen) BP_WUR;
int bp_lua_host_memory_hit(const struct bp_lua_host *h);
int bp_lua_host_check_ddl(struct bp_lua_host *h, const char *ddl_dir, char *err,
                          size_t errlen) BP_WUR;
struct lua_State;
struct lua_State *bp_lua_host_state(struct bp_lua_host *h);

#endif
