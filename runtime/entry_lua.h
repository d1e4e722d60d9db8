/* entry_lua.h - insertAll entries read back into Lua tables, for a writer that encodes rows from
 * a Lua table (the Storage Write API's protobuf rows, proto_row.c) while batches hold the checked
 * insertAll entries ({"insertId":..,"json":{row}}, one per line): the rows the batch loop did not
 * write as protobuf itself (row_protos.h), such as the dead-letter table's.
 *
 * A reader owns a Lua state of its own (not the map's: it runs on the loop between batches, and
 * the map's state may be rebuilt or reloaded meanwhile). json_lua.cpp reads an entry at once
 * when it can; what it declines goes through lua-cjson, with integers past 2^53 kept exact as
 * int64 cdata (bepipe.int64) and a number that cannot be read exactly refused, never rounded.
 * Not thread-safe; one reader per store. */
#ifndef BP_ENTRY_LUA_H
#define BP_ENTRY_LUA_H

#include <stddef.h>

#include <lua.h>

#include "common.h"

typedef struct bp_entry_lua bp_entry_lua_t;

/* A reader whose decoder finds the bepipe Lua library (bepipe.int64) in lib_dir. Returns NULL
 * with err filled when the state cannot be made or the library not loaded. */
bp_entry_lua_t *bp_entry_lua_new(const char *lib_dir, char *err, size_t errlen);

/* The reader's state, where bp_entry_lua_push leaves its row. */
lua_State *bp_entry_lua_state(bp_entry_lua_t *r);

/* Pushes the "json" member (the row) of the entry e (n bytes, one line, no newline) onto the
 * reader's state as a Lua table. Returns 0 with the table at the top of the stack (the caller
 * pops it: lua_settop(state, 0)), or -1 with why filled and the stack left empty: not JSON, a
 * number that cannot be read exactly, not an object, no "json" object in it. */
int bp_entry_lua_push(bp_entry_lua_t *r, const char *e, size_t n, char *why, size_t whylen) BP_WUR;

/* A step of garbage collection: a batch's rows, collected between batches rather than at the
 * allocator's pace. */
void bp_entry_lua_collect(bp_entry_lua_t *r);

/* Closes the state and frees r; NULL is fine. */
void bp_entry_lua_free(bp_entry_lua_t *r);

#endif
