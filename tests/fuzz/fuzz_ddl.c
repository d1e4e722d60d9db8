/* Fuzz target: the DDL reader (scripts/bepipe/ddl.lua) in the pipeline's Lua state: parse the
 * input as CREATE TABLE statements, then encode every table resource as the core does for
 * --create-tables. A Lua error is a clean refusal; only a crash or a hang is a finding. */
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "fuzz_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char chunk[] =
    "local sql = ...\n"
    "local ddl = require 'bepipe.ddl'\n"
    "local cjson = require 'cjson'\n"
    "local list, err = ddl.parse(sql)\n"
    "if os.getenv('FUZZ_DEBUG') then io.stderr:write(#(list or {}), ' ', tostring(err), '\\n') end\n"
    "for _, t in ipairs(list or {}) do\n"
    "  t.resource.tableReference.projectId = 'p'\n"
    "  t.resource.tableReference.datasetId = 'd'\n"
    "  cjson.encode(t.resource)\n"
    "end\n";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ref = LUA_NOREF;
    lua_State *L = bp_lua_host_state(fuzz_host());
    int top = lua_gettop(L);
    if (ref == LUA_NOREF) {
        if (luaL_loadbuffer(L, chunk, sizeof(chunk) - 1, "=fuzz_ddl") != 0)
            abort();
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != 0 && getenv("FUZZ_DEBUG"))
        fprintf(stderr, "ddl: %s\n", lua_tostring(L, -1));
    lua_settop(L, top);
    return 0;
}
