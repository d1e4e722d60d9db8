/* json_row.h - Lua values written as JSON: a map's row into the batch buffer, and any value
 * into a string, numbers exactly. See json_row.c. */
#ifndef BP_JSON_ROW_H
#define BP_JSON_ROW_H

#include <stddef.h>

#include <lua.h>

/* lua_CFunction (batch light userdata, row table, member): appends the row's JSON text to the
 * batch's output buffer with its closing brace replaced by member (`,"ingestion_time":"…"}`, or
 * "}" for the row as it is), and returns (offset, length) of the text in the buffer. Returns
 * (nil, reason) with the buffer as it was when the row cannot be written; the reason names the
 * field by its path ("row field items[1].price: NaN is not a JSON number"). Found in the
 * registry as "bepipe.encode_row" (scripts/bepipe/host.lua's batch loop). Raises on misuse and
 * on a Lua memory error. */
int bp_json_row_encode(lua_State *L);

/* lua_CFunction (value): the value's JSON text, as bp_json_row_encode writes it (numbers
 * exactly, no needless escapes), or (nil, reason). Found in the registry as "bepipe.encode"
 * (`bepipe-lua test`'s fixtures). */
int bp_json_encode(lua_State *L);

/* Writes the shortest text that strtod reads back to the double v (JSON's number grammar;
 * "-0" for negative zero) into buf (size >= 40); returns its length, or 0 for NaN, an
 * infinity or a smaller buf. No terminating NUL is promised. */
size_t bp_json_number_text(char *buf, size_t size, double v);

#endif
