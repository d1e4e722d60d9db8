/* lua_host.c - lua_State lifecycle. A host is complete or it does not exist: bp_lua_host_new
 * loads pipeline.lua and every route script, resolves the batch entry once (kept as a registry
 * ref, never looked up per event) and only then returns, so a reload can build a new host beside
 * the running one and swap it in, or throw it away with the error, and never run half a pipeline. */
#include "lua_host.h"
#include "json_lua.h"
#include "json_row.h"
#include "log.h"
#include "row_meta.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lua-cjson linked from Debian's liblua5.1-cjson, so no cpath look-up is needed at run time. */
extern int luaopen_cjson(lua_State *L);

/* The state's allocator with a cap (lua.memory_mb): an accounting wrapper around LuaJIT's own
 * allocator, taken from a luaL_newstate state with lua_getallocf and put back wrapped with
 * lua_setallocf. LuaJIT 2.1 on amd64 is built with GC64 (Debian 12's is: ffi.abi "gc64") and
 * would take a malloc-based allocator through lua_newstate as well, but glibc's realloc in
 * place of LuaJIT's allocator cost 4% more CPU on the local bench; the wrapper costs nothing
 * measurable. The first refusal raises the cap by a quarter so that the error can unwind and
 * the event be dead-lettered: LuaJIT retries what failed (e.g. growing its string table, 8 MB
 * for 1M strings) at the next allocation, in our error path. The runtime then rebuilds the
 * state. */
struct lua_alloc {
    lua_Alloc inner;
    void *inner_ud;
    size_t used;
    size_t cap;      /* refuse growth past this */
    size_t limit;    /* lua.memory_mb in bytes; cap is raised past it once hit */
    int hit;
};

static void *
capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_alloc *a = ud;
    size_t old = ptr ? osize : 0;
    if (nsize > old && a->used + (nsize - old) > a->cap) {
        if (!a->hit) {
            a->hit = 1;
            a->cap = a->used + a->limit / 4;
        }
        return NULL;
    }
    void *p = a->inner(a->inner_ud, ptr, osize, nsize);
    if (p || nsize == 0)
        a->used = a->used - old + nsize;
    return p;
}

/* Wraps the allocator of L (see struct lua_alloc), counting what it already holds. */
static void
cap_state(lua_State *L, struct lua_alloc *a)
{
    a->inner = lua_getallocf(L, &a->inner_ud);
    a->used = (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
    lua_setallocf(L, capped_alloc, a);
}

struct bp_lua_host {
    lua_State *L;
    struct lua_alloc alloc;
    int process_ref;
    int generation;
    struct bp_route *routes;
    size_t nroutes;
    struct bp_config cfg;
};

/* Message handler for lua_pcall: adds the Lua stack so errors name file and line. */
static int
traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

/* Copies the error on top of the stack, folded onto one line (log lines are one line each). */
static void
copy_error(lua_State *L, char *err, size_t errlen)
{
    const char *msg = lua_tostring(L, -1);
    size_t o = 0;
    int space = 0;
    for (const char *p = msg ? msg : "unknown Lua error"; *p && o + 1 < errlen; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            space = 1;
            continue;
        }
        if (space && o) {
            err[o++] = ' ';
            if (o + 1 >= errlen)
                break;
        }
        space = 0;
        err[o++] = *p;
    }
    err[o] = '\0';
}

/* Module look-up, so that paths belong to the pipeline: `bepipe` and `bepipe.*` come only from
 * the install's library (lib_dir), ahead of every other searcher, so a user's folder cannot
 * shadow them with a stale copy; every other module (the event scripts) only from the
 * pipeline's own folder, then the system's Lua folders (third-party modules), never from the
 * working directory or the binary's shipped scripts, so a script missing from the user's folder
 * is an error instead of the shipped one of the same name. */
static const char search_code[] =
    "local lib, dir = ...\n"
    "local libpath = lib .. '/?.lua;' .. lib .. '/?/init.lua'\n"
    "local searchpath, loadfile = package.searchpath, loadfile\n"
    "local sys = {}\n"
    "for entry in package.path:gmatch('[^;]+') do\n"
    "  if not entry:find('^%./') then sys[#sys + 1] = entry end\n"
    "end\n"
    "package.path = dir .. '/?.lua;' .. dir .. '/?/init.lua;' .. table.concat(sys, ';')\n"
    "table.insert(package.loaders, 2, function(name)\n"
    "  if name ~= 'bepipe' and name:sub(1, 7) ~= 'bepipe.' then return nil end\n"
    "  local file, err = searchpath(name, libpath)\n"
    "  if not file then return '\\n\\tthe bepipe library has no ' .. name .. ' in ' .. lib end\n"
    "  local f, lerr = loadfile(file)\n"
    "  if not f then error(lerr, 0) end\n"
    "  return f\n"
    "end)\n";

/* Sets the module look-up (above), preloads lua-cjson and registers the fast decoder and encoder. Returns
 * 0, or -1 with err set. */
static int
set_path(lua_State *L, const char *pipeline_path, const char *lib_dir, char *err, size_t errlen)
{
    char dir[4096];
    const char *slash = strrchr(pipeline_path, '/');
    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - pipeline_path), pipeline_path);
    else
        snprintf(dir, sizeof(dir), ".");
    if (luaL_loadbuffer(L, search_code, sizeof(search_code) - 1, "=module paths") != 0) {
        copy_error(L, err, errlen);
        lua_pop(L, 1);
        return -1;
    }
    lua_pushstring(L, lib_dir);
    lua_pushstring(L, dir);
    if (lua_pcall(L, 2, 0, 0) != 0) {
        copy_error(L, err, errlen);
        lua_pop(L, 1);
        return -1;
    }
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 2);
    /* the batch loop's fast decoder (json_lua.cpp), taken by scripts/bepipe/host.lua */
    lua_pushcfunction(L, bp_json_lua_decode_msg);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.decode_msg");
    lua_pushcfunction(L, bp_json_lua_inexact);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.inexact");
    lua_pushcfunction(L, bp_json_lua_decode);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.decode");
    /* and the row writer (json_row.c), the one of `bepipe-lua test`'s fixtures too */
    lua_pushcfunction(L, bp_json_row_encode);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.encode_row");
    lua_pushcfunction(L, bp_json_encode);
    lua_setfield(L, LUA_REGISTRYINDEX, "bepipe.encode");
    return 0;
}

/* Reads desc.options (flat key -> value) into h->cfg, each value with its Lua type so that
 * bp_config_set_value can refuse a boolean where a number belongs, or a number where text does. */
static int
read_options(struct bp_lua_host *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_getfield(L, -1, "options");
    if (!lua_istable(L, -1)) {
        snprintf(err, errlen, "bepipe.host.load returned no options table");
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        struct bp_val v = { BP_VAL_OTHER, lua_typename(L, lua_type(L, -1)), 0, 0 };
        if (lua_type(L, -1) == LUA_TSTRING) {
            v.kind = BP_VAL_STRING;
            v.text = lua_tostring(L, -1);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            v.kind = BP_VAL_NUMBER;
            v.num = lua_tonumber(L, -1);
        } else if (lua_type(L, -1) == LUA_TBOOLEAN) {
            v.kind = BP_VAL_BOOLEAN;
            v.boolean = lua_toboolean(L, -1);
        }
        if (!key || bp_config_set_value(&h->cfg, key, &v, err, errlen) != 0) {
            if (!key)
                snprintf(err, errlen, "pipeline.lua: option keys must be strings");
            lua_pop(L, 3);
            return -1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* Reads route i's `metadata` (on top: nil, or a list of column names bepipe.host checked) into
 * a BP_META_* mask. Returns 0, or -1 with err set on a name C does not know. */
static int
read_metadata(lua_State *L, struct bp_route *r, char *err, size_t errlen)
{
    if (!lua_istable(L, -1))
        return 0;
    for (int k = 1; k <= (int)lua_objlen(L, -1); k++) {
        lua_rawgeti(L, -1, k);
        const char *col = lua_tostring(L, -1);
        unsigned bit = col ? bp_meta_bit(col) : 0;
        lua_pop(L, 1);
        if (!bit) {
            snprintf(err, errlen, "route %s: unknown metadata column", r->name);
            return -1;
        }
        r->metadata |= bit;
    }
    return 0;
}

/* Reads desc.routes (array of {name=, table=, metadata=}) into h->routes. */
static int
read_routes(struct bp_lua_host *h, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_getfield(L, -1, "routes");
    size_t n = lua_objlen(L, -1);
    h->routes = bp_xcalloc(n ? n : 1, sizeof(*h->routes));
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        lua_getfield(L, -1, "name");
        lua_getfield(L, -2, "table");
        const char *name = lua_tostring(L, -2), *table = lua_tostring(L, -1);
        if (!name || !table) {
            snprintf(err, errlen, "route %zu has no name or table", i + 1);
            lua_pop(L, 4);
            return -1;
        }
        h->routes[i].name = bp_xstrdup(name);
        h->routes[i].table = bp_xstrdup(table);
        h->nroutes++;
        lua_getfield(L, -3, "metadata");
        if (read_metadata(L, &h->routes[i], err, errlen) != 0) {
            lua_pop(L, 5);
            return -1;
        }
        lua_pop(L, 4);
    }
    lua_pop(L, 1);
    return 0;
}

/* Loads pipeline.lua and its scripts into a new lua_State. Returns the host, or NULL with the
 * error (file:line and traceback when Lua has one) in err. */
struct bp_lua_host *
bp_lua_host_new(const char *pipeline_path, const char *lib_dir, int generation, char *err,
                size_t errlen)
{
    struct bp_lua_host *h = bp_xcalloc(1, sizeof(*h));
    h->generation = generation;
    h->process_ref = LUA_NOREF;
    bp_config_init(&h->cfg);
    h->alloc.limit = h->alloc.cap = (size_t)h->cfg.lua_memory_mb * 1024 * 1024;
    h->L = luaL_newstate();
    if (h->L)
        cap_state(h->L, &h->alloc);
    if (!h->L) {
        snprintf(err, errlen, "cannot create a Lua state (out of memory)");
        goto fail;
    }
    lua_State *L = h->L;
    luaL_openlibs(L);
    if (set_path(L, pipeline_path, lib_dir, err, errlen) != 0)
        goto fail;

    /* Load errors already name file and line; a traceback would only add our own frames. */
    lua_getglobal(L, "require");
    lua_pushstring(L, "bepipe.host");
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
        copy_error(L, err, errlen);
        goto fail;
    }
    lua_getfield(L, -1, "load");
    lua_pushstring(L, pipeline_path);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        copy_error(L, err, errlen);
        goto fail;
    }
    if (read_options(h, err, errlen) != 0 || read_routes(h, err, errlen) != 0)
        goto fail;
    lua_pop(L, 1);
    lua_getfield(L, -1, "process");
    if (!lua_isfunction(L, -1)) {
        snprintf(err, errlen, "bepipe.host has no process function");
        goto fail;
    }
    h->process_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    /* only C calls the entry: scripts reach the module (bepipe.message()), and process() casts
     * its argument to a batch pointer */
    lua_pushnil(L);
    lua_setfield(L, -2, "process");
    lua_settop(L, 0);
    return h;
fail:
    bp_lua_host_free(h);
    return NULL;
}

void
bp_lua_host_free(struct bp_lua_host *h)
{
    if (!h)
        return;
    if (h->L)
        lua_close(h->L);
    for (size_t i = 0; i < h->nroutes; i++) {
        free(h->routes[i].name);
        free(h->routes[i].table);
    }
    free(h->routes);
    bp_config_free(&h->cfg);
    free(h);
}

int
bp_lua_host_generation(const struct bp_lua_host *h)
{
    return h->generation;
}

const struct bp_route *
bp_lua_host_routes(const struct bp_lua_host *h, size_t *n)
{
    *n = h->nroutes;
    return h->routes;
}

/* Defaults overlaid with what pipeline.lua set (the command line is applied by the caller). */
const struct bp_config *
bp_lua_host_config(const struct bp_lua_host *h)
{
    return &h->cfg;
}

/* Runs the Lua entry on one batch: it fills b->results and appends rows and reasons to b->out
 * (b->out_len is reset here). Returns 0, or -1 when the entry itself failed (not an event: those
 * are dead-lettered inside Lua), with the traceback in err. */
int
bp_lua_host_process(struct bp_lua_host *h, bp_batch_t *b, char *err, size_t errlen)
{
    lua_State *L = h->L;
    b->generation = h->generation;
    b->out_len = 0;
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->process_ref);
    lua_pushlightuserdata(L, b);
    int rc = lua_pcall(L, 1, 0, 1);
    if (rc != 0)
        copy_error(L, err, errlen);
    lua_settop(L, 0);
    return rc ? -1 : 0;
}

/* Pushes bepipe.ddl[name] (the module is loaded once per state by require). Returns 0, or -1
 * with the error on top. */
static int
push_ddl_function(lua_State *L, const char *name)
{
    lua_getglobal(L, "require");
    lua_pushstring(L, "bepipe.ddl");
    if (lua_pcall(L, 1, 1, 0) != 0)
        return -1;
    lua_getfield(L, -1, name);
    return 0;
}

/* The tables.insert bodies (JSON) of every CREATE TABLE in ddl_dir, for project.dataset, via
 * bepipe.ddl. Returns 0 with a malloc'd array of malloc'd strings, or -1 with err (file and
 * reason). Start-up only. */
int
bp_lua_host_table_resources(struct bp_lua_host *h, const char *ddl_dir, const char *project,
                            const char *dataset, char ***out, size_t *n, char *err,
                            size_t errlen)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    *out = NULL;
    *n = 0;
    if (push_ddl_function(L, "resources") != 0)
        goto fail;
    lua_pushstring(L, ddl_dir);
    lua_pushstring(L, project);
    lua_pushstring(L, dataset);
    if (lua_pcall(L, 3, 1, 0) != 0)
        goto fail;
    size_t cnt = lua_objlen(L, -1);
    *out = bp_xcalloc(cnt ? cnt : 1, sizeof(char *));
    for (size_t i = 0; i < cnt; i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        (*out)[i] = bp_xstrndup(s ? s : "{}", s ? len : 2);
        lua_pop(L, 1);
    }
    *n = cnt;
    lua_settop(L, top);
    return 0;
fail:
    copy_error(L, err, errlen);
    lua_settop(L, top);
    return -1;
}

/* --check: every route's table has a CREATE TABLE in ddl_dir (bepipe.ddl.check_tables).
 * Returns 0, or -1 with err naming the tables without one. */
int
bp_lua_host_check_ddl(struct bp_lua_host *h, const char *ddl_dir, char *err, size_t errlen)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    if (push_ddl_function(L, "check_tables") != 0)
        goto fail;
    lua_pushstring(L, ddl_dir);
    lua_createtable(L, (int)h->nroutes, 0);
    for (size_t i = 0; i < h->nroutes; i++) {
        lua_pushstring(L, h->routes[i].table);
        lua_rawseti(L, -2, (int)i + 1);
    }
    if (lua_pcall(L, 2, 2, 0) != 0)
        goto fail;
    if (!lua_toboolean(L, -2))
        goto fail;
    lua_settop(L, top);
    return 0;
fail:
    copy_error(L, err, errlen);
    lua_settop(L, top);
    return -1;
}

/* The state itself, for modules that use lua-cjson through it (pull_reply.c). They must leave
 * the stack as they found it and never run pipeline code. */
lua_State *
bp_lua_host_state(struct bp_lua_host *h)
{
    return h->L;
}

/* Bytes the Lua state holds (for the stats line). */
size_t
bp_lua_host_memory(const struct bp_lua_host *h)
{
    return (size_t)lua_gc(h->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(h->L, LUA_GCCOUNTB, 0);
}

/* Sets the memory cap of the state in bytes (lua.memory_mb after the command line is applied).
 * Loop thread, between batches. */
void
bp_lua_host_set_memory_limit(struct bp_lua_host *h, size_t bytes)
{
    h->alloc.limit = bytes;
    if (!h->alloc.hit)
        h->alloc.cap = bytes;
}

/* Sets the event field that picks the route (route_field after the command line is applied).
 * Loop thread, between batches. Returns 0, or -1 with err set. */
int
bp_lua_host_set_route_field(struct bp_lua_host *h, const char *field, char *err, size_t errlen)
{
    lua_State *L = h->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "bepipe.set_route_field");
    lua_pushstring(L, field);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        copy_error(L, err, errlen);
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* Whether the state has hit its memory cap: the runtime then rebuilds it (bp_rt_reload), since
 * an allocation failed somewhere inside it, perhaps in the middle of a library's update. */
int
bp_lua_host_memory_hit(const struct bp_lua_host *h)
{
    return h->alloc.hit;
}
