/* json_lua.cpp - an event's JSON text to Lua values, through simdjson's DOM parser (Debian's
 * libsimdjson). The fast path of the batch loop's decode: lua-cjson stays the decoder of record.
 *
 * Why not lua-cjson alone: it grows every table key by key (lua_newtable, then a rehash at 1, 2,
 * 4, 8 ... members), and its tokenizer runs a byte at a time; simdjson parses the text first and
 * knows each object's and array's size, so every table is created at its final size. On the live
 * corpus this decodes in ~0.6x lua-cjson's time (tests/bench/run measures the whole path).
 *
 * Same values as lua-cjson, or none: the fast path only answers where its result is exactly what
 * lua-cjson (configured as scripts/bepipe/host.lua configures it) would return, and declines
 * everything else, which the caller then decodes with lua-cjson: its result or its error message,
 * unchanged. Declined: text that simdjson refuses (invalid JSON, and also what lua-cjson takes but
 * simdjson does not: invalid UTF-8, raw control characters in strings, `1.`, integers past
 * 64 bits, numbers past the double range), nesting deeper than lua-cjson's limit, documents over
 * BP_JSON_LUA_MAX bytes (the parser's memory grows to the largest document it has seen), a top
 * level that is not an object, and an integer zero written `-0` (simdjson's DOM gives 0, lua-cjson
 * -0.0). tests/unit/test_json_lua.c and tests/fuzz/fuzz_json_lua.c compare the two. */
#include <simdjson.h>

#include <cstdlib>
#include <cstring>

extern "C" {
#include "bp_ffi.h"
#include "json_lua.h"
#include <lua.h>
}

using namespace simdjson;

namespace {

/* One parser per thread (the daemon's loop is one thread; the watchdog never decodes). Its
 * buffers are reused from one document to the next. */
thread_local dom::parser *parser;
/* The text with SIMDJSON_PADDING readable bytes after it, which simdjson needs; reused. */
thread_local char *pad_buf;
thread_local size_t pad_cap;

struct walk {
    lua_State *L;
    bool zero_int;    /* an integer 0 was pushed: it may have been written -0 */
};

/* Pushes e and everything in it; false when past the depth (nothing pushed for e then, the
 * caller pops what it pushed). Lua memory errors unwind through here: nothing below holds a
 * resource. */
bool push(walk &w, dom::element e, int depth)
{
    lua_State *L = w.L;
    switch (e.type()) {
    case dom::element_type::OBJECT: {
        if (depth > BP_JSON_LUA_DEPTH || !lua_checkstack(L, 3))
            return false;
        dom::object o = e.get_object().value_unsafe();
        lua_createtable(L, 0, (int)o.size());
        for (dom::key_value_pair kv : o) {
            lua_pushlstring(L, kv.key.data(), kv.key.size());
            if (!push(w, kv.value, depth + 1)) {
                lua_pop(L, 2);
                return false;
            }
            lua_rawset(L, -3);    /* a repeated key: the last one wins, as in lua-cjson */
        }
        return true;
    }
    case dom::element_type::ARRAY: {
        if (depth > BP_JSON_LUA_DEPTH || !lua_checkstack(L, 2))
            return false;
        dom::array a = e.get_array().value_unsafe();
        lua_createtable(L, (int)a.size(), 0);
        int i = 1;
        for (dom::element v : a) {
            if (!push(w, v, depth + 1)) {
                lua_pop(L, 1);
                return false;
            }
            lua_rawseti(L, -2, i++);
        }
        return true;
    }
    case dom::element_type::STRING: {
        std::string_view s = e.get_string().value_unsafe();
        lua_pushlstring(L, s.data(), s.size());
        return true;
    }
    case dom::element_type::INT64: {
        int64_t v = e.get_int64().value_unsafe();
        w.zero_int |= v == 0;
        /* the nearest double, as strtod gives it for the same digits */
        lua_pushnumber(L, (lua_Number)v);
        return true;
    }
    case dom::element_type::UINT64:
        lua_pushnumber(L, (lua_Number)e.get_uint64().value_unsafe());
        return true;
    case dom::element_type::DOUBLE:
        lua_pushnumber(L, e.get_double().value_unsafe());
        return true;
    case dom::element_type::BOOL:
        lua_pushboolean(L, e.get_bool().value_unsafe());
        return true;
    case dom::element_type::NULL_VALUE:
        lua_pushlightuserdata(L, NULL);    /* cjson.null */
        return true;
    }
    return false;
}

/* True when the text may hold a number written -0 (a '-' then '0' and no more digits, after a
 * ':', ',' or '['): such an event is left to lua-cjson. Strings can match too; they only cost
 * the fallback. */
bool has_minus_zero(const char *p, size_t n)
{
    for (const char *q = (const char *)memchr(p, '-', n); q;
         q = (const char *)memchr(q + 1, '-', n - (size_t)(q + 1 - p))) {
        size_t at = (size_t)(q - p);
        if (at + 1 >= n || q[1] != '0')
            continue;
        char next = at + 2 < n ? q[2] : ' ';
        if (next >= '0' && next <= '9')
            continue;
        const char *b = q;
        while (b > p && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\n' || b[-1] == '\r'))
            b--;
        if (b > p && (b[-1] == ':' || b[-1] == ',' || b[-1] == '['))
            return true;
    }
    return false;
}

bool padded_copy(const char *p, size_t n)
{
    if (n + SIMDJSON_PADDING > pad_cap) {
        size_t cap = n + SIMDJSON_PADDING;
        cap = cap < 4096 ? 4096 : cap + cap / 2;
        char *nb = (char *)realloc(pad_buf, cap);
        if (!nb)
            return false;
        pad_buf = nb;
        pad_cap = cap;
    }
    memcpy(pad_buf, p, n);
    memset(pad_buf + n, 0, SIMDJSON_PADDING);
    return true;
}

} // namespace

/* See json_lua.h. */
extern "C" int
bp_json_lua_push(lua_State *L, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i == n || p[i] != '{' || n > BP_JSON_LUA_MAX)
        return 0;
    if (!parser) {
        parser = new (std::nothrow) dom::parser(BP_JSON_LUA_MAX);
        if (!parser)
            return 0;
    }
    if (!padded_copy(p, n))
        return 0;
    dom::element root;
    if (parser->parse(pad_buf, n, false).get(root) != SUCCESS)
        return 0;
    walk w = { L, false };
    int top = lua_gettop(L);
    if (!push(w, root, 1) || (w.zero_int && has_minus_zero(p, n))) {
        lua_settop(L, top);
        return 0;
    }
    return 1;
}

/* See json_lua.h. */
extern "C" int
bp_json_lua_decode_msg(lua_State *L)
{
    const bp_batch_t *b = (const bp_batch_t *)lua_touserdata(L, 1);
    lua_Integer i = lua_tointeger(L, 2);
    if (!b || i < 0 || i >= b->n)
        return 0;
    const bp_msg_t *m = &b->msgs[i];
    return bp_json_lua_push(L, m->data, m->len);
}
