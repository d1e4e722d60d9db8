/* Fuzz target: the fast event decoder (runtime/json_lua.cpp, simdjson) differentially against
 * lua-cjson, configured as scripts/bepipe/host.lua configures it. Wherever the fast path answers,
 * lua-cjson must give the same value (deep, with the sign of zero); the fast path may decline
 * anything. Also checks the Lua stack is left as it was on a decline. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "json_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern int luaopen_cjson(lua_State *L);

static const char prelude[] =
    "local cjson = require 'cjson'\n"
    "local json = cjson.new()\n"
    "json.decode_invalid_numbers(false)\n"
    "json.decode_max_depth(64)\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then return a == b and 1 / a == 1 / b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return function(v, s)\n"
    "  local ok, w = pcall(json.decode, s)\n"
    "  return ok and same(v, w)\n"
    "end\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L) {
        L = luaL_newstate();
        luaL_openlibs(L);
        lua_getglobal(L, "package");
        lua_getfield(L, -1, "preload");
        lua_pushcfunction(L, luaopen_cjson);
        lua_setfield(L, -2, "cjson");
        lua_pop(L, 2);
        if (luaL_dostring(L, prelude) != 0) {
            fprintf(stderr, "fuzz_json_lua: %s\n", lua_tostring(L, -1));
            abort();
        }
        /* the comparer stays at stack index 1 */
    }
    if (!bp_json_lua_push(L, (const char *)data, size)) {
        if (lua_gettop(L) != 1)
            __builtin_trap();
        return 0;
    }
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 2, 1, 0) != 0 || !lua_toboolean(L, -1)) {
        fprintf(stderr, "fuzz_json_lua: the fast path and lua-cjson differ on %.*s\n",
                (int)(size < 400 ? size : 400), (const char *)data);
        __builtin_trap();
    }
    lua_settop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
