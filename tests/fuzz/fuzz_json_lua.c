/* Fuzz target: the fast event decoder (runtime/json_lua.cpp, simdjson) and row writer
 * (runtime/json_row.c) differentially against lua-cjson, configured as scripts/bepipe/host.lua
 * configures it. Wherever the decoder answers, lua-cjson must give the same value (deep, with the
 * sign of zero); wherever the writer answers for that value, its text must be lua-cjson's, byte
 * for byte. Either may decline anything; a decline leaves the stack / buffer as it was. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/cjson_state.h"
#include "bp_ffi.h"
#include "json_lua.h"
#include "json_row.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char prelude[] =
    "return function(v, s, written)\n"
    "  local ok, w = pcall(json.decode, s)\n"
    "  if not (ok and same(v, w)) then return false end\n"
    "  if written == nil then return true end\n"
    "  local ok2, e = pcall(json.encode, v)\n"
    "  return ok2 and e:sub(1, -2) .. ',\"t\":1}' == written\n"
    "end\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L) {
        L = cjson_state(NULL);
        if (luaL_loadstring(L, prelude) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
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
    /* the decoded value through the writer, into a batch buffer that already holds a row */
    static bp_batch_t b;
    b.out_len = 0;
    if (bp_ffi_batch_reserve(&b, 3) != 0)
        __builtin_trap();
    memcpy(b.out, "{x}", 3);
    b.out_len = 3;
    lua_pushcfunction(L, bp_json_row_encode);
    lua_pushlightuserdata(L, &b);
    lua_pushvalue(L, -3);
    lua_pushstring(L, ",\"t\":1}");
    if (lua_pcall(L, 3, 2, 0) != 0)
        __builtin_trap();
    int written = lua_isnumber(L, -2);
    if (written ? (size_t)lua_tonumber(L, -2) != 3 || b.out_len != 3 + (size_t)lua_tonumber(L, -1)
                : b.out_len != 3)
        __builtin_trap();
    lua_pop(L, 2);
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    lua_pushlstring(L, (const char *)data, size);
    if (written)
        lua_pushlstring(L, b.out + 3, b.out_len - 3);
    else
        lua_pushnil(L);
    if (lua_pcall(L, 3, 1, 0) != 0 || !lua_toboolean(L, -1)) {
        fprintf(stderr, "fuzz_json_lua: the fast paths and lua-cjson differ on %.*s\n",
                (int)(size < 400 ? size : 400), (const char *)data);
        __builtin_trap();
    }
    lua_settop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
