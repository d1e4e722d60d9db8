/* json_lua.h - an event's JSON text to Lua values, fast (simdjson), or declined for lua-cjson.
 * See json_lua.cpp for why, and for what is declined. */
#ifndef BP_JSON_LUA_H
#define BP_JSON_LUA_H

#include <stddef.h>

#include <lua.h>

/* lua-cjson's decode_max_depth in scripts/bepipe/host.lua: deeper text is declined */
#define BP_JSON_LUA_DEPTH 64
/* the reused parser's size; a larger document gets a parser of its own, freed after it (a
 * parser's memory follows the largest document it has parsed) */
#define BP_JSON_LUA_MAX (1u << 20)
/* larger documents are declined (and go to lua-cjson); Pub/Sub's messages stop at 10 MB */
#define BP_JSON_LUA_BIG_MAX (16u << 20)

/* Decodes the JSON object text p[0..n) and pushes it as lua-cjson would: tables (objects and
 * arrays), strings, numbers, booleans, and cjson.null (a NULL light userdata). Returns 1 with the
 * value pushed, or 0 with the stack as it was when declined: the text is not an object, or not one
 * this fast path decodes exactly as lua-cjson does (see json_lua.cpp); the caller then decodes it
 * with lua-cjson. Notes the numbers whose text says more than their double
 * (bp_json_lua_lost_text).
 * Raises only a Lua memory error (the state's cap). */
int bp_json_lua_push(lua_State *L, const char *p, size_t n);

/* The text the last JSON text decoded (bp_json_lua_push, bp_json_lua_inexact, on this thread)
 * wrote a number as when that text says more than its double v: a fraction or an exponent with
 * more than 15 significant digits whose decimal value is not that of v's shortest text
 * (1.9999999999999999 decoded to 2, 4503599627370496.5 to 4503599627370496, 1234567.8912345678
 * to the double of 1234567.8912345679). NULL when v is no such double (always NULL when the
 * text had none: one compare). The row writers call it for every double: the row then carries
 * the event's own text, which reads back to v (FLOAT64), is the event's value (NUMERIC), and
 * which an INT64 column refuses unless an integer on its digits. The text (*n bytes, not
 * terminated) stays valid until the next decode. */
const char *bp_json_lua_lost_text(double v, size_t *n);

/* lua_CFunction (batch light userdata, index): bp_json_lua_push of the batch's message at index
 * (0-based); returns the table, or nothing when declined or out of range. The batch loop in
 * scripts/bepipe/host.lua calls it, found in the registry as "bepipe.decode_msg". */
int bp_json_lua_decode_msg(lua_State *L);

/* lua_CFunction (text): bp_json_lua_push of the text: the table, or nothing when declined.
 * Found in the registry as "bepipe.decode" (`bepipe-lua test`'s fixtures). */
int bp_json_lua_decode(lua_State *L);

/* lua_CFunction (text): for JSON text that lua-cjson decoded (the fast path declined it), the
 * path (`items[2].quantity`), the text and "integer" for its first integer past 2^53 in
 * magnitude that an int64_t holds, which lua-cjson rounds to a double; or the same with
 * "fraction" for a number whose text says more than its double and which cannot be noted as
 * bp_json_lua_push notes it (a text over 111 characters, no memory, or text JSON does not
 * write); nothing when there is none. Notes the others as bp_json_lua_push does
 * (bp_json_lua_lost_text). The batch loop dead-letters an event with such a number rather
 * than change it. Found in the registry as "bepipe.inexact". */
int bp_json_lua_inexact(lua_State *L);

#endif
