/* json_row.h - a map's row table written as JSON into the batch buffer (lua-cjson where it
 * declines). See json_row.c. */
#ifndef BP_JSON_ROW_H
#define BP_JSON_ROW_H

#include <lua.h>

/* lua_CFunction (batch light userdata, row table, member): appends the row's JSON text, as
 * lua-cjson would write it, to the batch's output buffer with its closing brace replaced by
 * member (`,"ingestion_time":"…"}`), and returns (offset, length) of the text in the buffer.
 * Returns nothing, with the buffer as it was, when it declines (see json_row.c); the batch loop
 * in scripts/bepipe/host.lua then encodes with lua-cjson. Found in the registry as
 * "bepipe.encode_row". Raises only a Lua memory error. */
int bp_json_row_encode(lua_State *L);

#endif
