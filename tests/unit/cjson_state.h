/* cjson_state.h - a Lua state for the tests that compare the fast JSON paths (json_lua.cpp,
 * json_row.c) with lua-cjson: lua-cjson preloaded, bepipe.int64 installed (integers past 2^53 as
 * cdata, as host.lua installs it) and, as globals, `json` (an instance configured as
 * scripts/bepipe/host.lua configures its own), `same(a, b)` (deep equality, with the sign of
 * zero; 64-bit integers of the same type and value) and `agree(fast, cjson)`. Used by
 * tests/unit/test_json_*.c and tests/fuzz/fuzz_json_lua.c. */
#ifndef BP_TEST_CJSON_STATE_H
#define BP_TEST_CJSON_STATE_H

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

extern int luaopen_cjson(lua_State *L);

static const char cjson_state_prelude[] =
    "package.path = '" SRC_ROOT "/scripts/?.lua;' .. package.path\n"
    "require('bepipe.int64').install()\n"
    "local cjson = require 'cjson'\n"
    "json = cjson.new()\n"
    "json.decode_invalid_numbers(false)\n"
    "json.decode_max_depth(64)\n"
    "json.encode_invalid_numbers(false)\n"
    "json.encode_sparse_array(false, 2, 10)\n"
    "function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return a == b and 1 / a == 1 / b end\n"
    "  if type(a) == 'cdata' then return tostring(a) == tostring(b) end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    /* agree(fast, cjson): true when equal as `same` says, or where fast holds an int64 /
     * uint64 cdata, cjson holds that integer's nearest double; second result: fast held one
     * that cjson rounds (past 2^53: 2^53 itself is a cdata too, and cjson's double is exact) */
    "local big\n"
    "local function agree1(a, b)\n"
    "  if type(a) == 'cdata' then\n"
    "    if a > 2^53 or a < -2^53 then big = true end\n"
    "    return type(b) == 'number' and tonumber(a) == b\n"
    "  end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return same(a, b) end\n"
    "  for k, v in pairs(a) do if not agree1(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "function agree(a, b) big = false local ok = agree1(a, b) return ok, big end\n";

/* The state, after running `extra` (more Lua, or NULL); aborts with the error on failure. */
static lua_State *
cjson_state(const char *extra)
{
    lua_State *L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 2);
    if (luaL_dostring(L, cjson_state_prelude) != 0 || (extra && luaL_dostring(L, extra) != 0)) {
        fprintf(stderr, "cjson_state: %s\n", lua_tostring(L, -1));
        abort();
    }
    return L;
}

#endif
