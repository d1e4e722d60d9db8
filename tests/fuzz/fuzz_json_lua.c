/* Fuzz target: the fast event decoder (runtime/json_lua.cpp, simdjson) and row writer
 * (runtime/json_row.c) differentially against lua-cjson, configured as scripts/bepipe/host.lua
 * configures it. Wherever the decoder answers, lua-cjson must give the same value (deep, with the
 * sign of zero), but for an integer past 2^53, which the decoder gives exactly (an int64 cdata)
 * and lua-cjson as its nearest double; bepipe.inexact must then find it in the text (the batch
 * loop dead-letters what lua-cjson decoded with one; it may also find one a repeated key hid).
 * The writer must write every decoded value, and lua-cjson must read its text back to what it
 * reads from the input. A decline leaves the stack as it was. */
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
    "  local same_v, big = false, false\n"
    "  if ok then same_v, big = agree(v, w) end\n"
    "  if not same_v then return false, 'decoded' end\n"
    "  if big and inexact(s) == nil then return false, 'inexact' end\n"
    "  if written == nil then return false, 'not written' end\n"
    "  local ok2, r = pcall(json.decode, written)\n"
    "  if not ok2 or r.t ~= 1 then return false, 'written text' end\n"
    "  r.t = w.t\n"
    "  return same(r, w), 'written value'\n"
    "end\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static lua_State *L;
    if (!L) {
        L = cjson_state(NULL);
        lua_pushcfunction(L, bp_json_lua_inexact);
        lua_setglobal(L, "inexact");
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
    if (lua_pcall(L, 3, 2, 0) != 0 || !lua_toboolean(L, -2)) {
        fprintf(stderr, "fuzz_json_lua: the fast paths and lua-cjson differ (%s) on %.*s\n",
                lua_tostring(L, -1), (int)(size < 400 ? size : 400), (const char *)data);
        __builtin_trap();
    }
    lua_settop(L, 1);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
