/* json_lua.h - an event's JSON text to Lua values, fast (simdjson), or declined for lua-cjson.
 * See json_lua.cpp for why, and for what is declined. */
#ifndef BP_JSON_LUA_H
#define BP_JSON_LUA_H

#include <stddef.h>

#include <lua.h>

/* lua-cjson's decode_max_depth in scripts/bepipe/host.lua: deeper text is declined */
#define BP_JSON_LUA_DEPTH 64
/* larger documents are declined (and go to lua-cjson): the parser's memory follows the
 * largest document it has parsed */
#define BP_JSON_LUA_MAX (1u << 20)

/* Decodes the JSON object text p[0..n) and pushes it as lua-cjson would: tables (objects and
 * arrays), strings, numbers, booleans, and cjson.null (a NULL light userdata). Returns 1 with the
 * value pushed, or 0 with the stack as it was when declined: the text is not an object, or not one
 * this fast path decodes exactly as lua-cjson does (see json_lua.cpp); the caller then decodes it
 * with lua-cjson. Raises only a Lua memory error (the state's cap). */
int bp_json_lua_push(lua_State *L, const char *p, size_t n);

/* lua_CFunction (batch light userdata, index): bp_json_lua_push of the batch's message at index
 * (0-based); returns the table, or nothing when declined or out of range. The batch loop in
 * scripts/bepipe/host.lua calls it, found in the registry as "bepipe.decode_msg". */
int bp_json_lua_decode_msg(lua_State *L);

#endif
