/* entry_lua.c - insertAll entries read back into Lua tables (entry_lua.h): json_lua.cpp first,
 * lua-cjson for what it declines (with bp_json_lua_inexact refusing a number that would not come
 * back exactly), in a Lua state of the reader's own. */
#include "entry_lua.h"

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "json_lua.h"

struct bp_entry_lua {
    lua_State *L;
    int decode_ref;             /* the lua-cjson decoder below, in L's registry */
};

static const char decoder_code[] =
    "local lib, inexact = ...\n"
    "package.path = lib .. '/?.lua;' .. lib .. '/?/init.lua'\n"
    "require('bepipe.int64').install()\n"
    "local cjson = require('cjson').new()\n"
    "cjson.decode_invalid_numbers(false)\n"
    "cjson.decode_max_depth(64)\n"
    "return function(text)\n"
    "  local ok, v = pcall(cjson.decode, text)\n"
    "  if not ok then return nil, tostring(v) end\n"
    "  local path, digits = inexact(text)\n"
    "  if path then return nil, 'the integer ' .. digits .. ' at ' .. path ..\n"
    "    ' cannot be read exactly' end\n"
    "  return v\n"
    "end\n";

extern int luaopen_cjson(lua_State *L);

/* See entry_lua.h. */
bp_entry_lua_t *
bp_entry_lua_new(const char *lib_dir, char *err, size_t errlen)
{
    bp_entry_lua_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->L = luaL_newstate())) {
        snprintf(err, errlen, "storage_write: no memory for a Lua state");
        free(r);
        return NULL;
    }
    lua_State *L = r->L;
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 2);
    if (luaL_loadbuffer(L, decoder_code, sizeof(decoder_code) - 1, "=storage_write") != 0 ||
        (lua_pushstring(L, lib_dir), lua_pushcfunction(L, bp_json_lua_inexact),
         lua_pcall(L, 2, 1, 0) != 0)) {
        snprintf(err, errlen, "storage_write: %s", lua_tostring(L, -1));
        bp_entry_lua_free(r);
        return NULL;
    }
    r->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return r;
}

/* See entry_lua.h. */
lua_State *
bp_entry_lua_state(bp_entry_lua_t *r)
{
    return r->L;
}

/* See entry_lua.h. */
int
bp_entry_lua_push(bp_entry_lua_t *r, const char *e, size_t n, char *why, size_t whylen)
{
    lua_State *L = r->L;
    if (!bp_json_lua_push(L, e, n)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->decode_ref);
        lua_pushlstring(L, e, n);
        if (lua_pcall(L, 1, 2, 0) != 0 || lua_isnil(L, -2)) {
            snprintf(why, whylen, "the row cannot be read for the Storage Write API: %s",
                     lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
            lua_settop(L, 0);
            return -1;
        }
        lua_pop(L, 1);
    }
    if (!lua_istable(L, -1)) {
        snprintf(why, whylen, "the entry is not a JSON object");
        lua_settop(L, 0);
        return -1;
    }
    lua_getfield(L, -1, "json");
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
        snprintf(why, whylen, "the entry has no row object");
        lua_settop(L, 0);
        return -1;
    }
    return 0;
}

/* See entry_lua.h. */
void
bp_entry_lua_collect(bp_entry_lua_t *r)
{
    lua_gc(r->L, LUA_GCSTEP, 200);
}

/* See entry_lua.h. */
void
bp_entry_lua_free(bp_entry_lua_t *r)
{
    if (!r)
        return;
    if (r->L)
        lua_close(r->L);
    free(r);
}
