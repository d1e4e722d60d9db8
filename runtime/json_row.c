/* json_row.c - a map's row table written as JSON text straight into the batch's output buffer,
 * with its ingestion_time column; the fast path of the batch loop's encode. lua-cjson stays the
 * encoder of record: whatever this file does not write exactly as lua-cjson (configured as
 * scripts/bepipe/host.lua configures it) would, it declines, and the loop encodes with lua-cjson.
 *
 * Why a hand-written writer next to lua-cjson: lua-cjson formats every number with
 * snprintf("%.14g") (glibc's multi-precision printf: 6-7% of the local path's CPU), and hands
 * back each row as a Lua string that is interned and then copied into the batch buffer. Here
 * integers and amounts in whole cents, which is nearly every number a row holds, are written
 * digit by digit (the same text %.14g gives: see put_number), other numbers with the same
 * snprintf, and the row goes to the buffer once. No library in Debian writes Lua tables.
 *
 * Declined (lua-cjson then decides, with its own result or error): keys that are not strings in
 * an object, sparse arrays (lua-cjson refuses them), NaN and infinities, values other than
 * strings, numbers, booleans, tables and cjson.null, nesting past JSON_ROW_DEPTH, a row that
 * is empty or an array, and a row larger than the batch buffer may grow. Key order is lua_next's,
 * as in lua-cjson. tests/unit/test_json_row.c compares the two on every byte and many numbers. */
#include "json_row.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "bp_ffi.h"
#include "json_bytes.h"

#define JSON_ROW_DEPTH 100
#define DECLINE (-1)

/* lua-cjson's escapes: control characters, '"', '/', '\\' and DEL (tested byte by byte) */
static const char *const escape[256] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ['"'] = "\\\"", ['/'] = "\\/", ['\\'] = "\\\\", [127] = "\\u007f",
};

static int
room(bp_batch_t *b, size_t n)
{
    if (b->out_cap - b->out_len >= n)
        return 0;
    return bp_ffi_batch_reserve(b, n) == 0 ? 0 : DECLINE;
}

static int
put(bp_batch_t *b, const char *s, size_t n)
{
    if (room(b, n) != 0)
        return DECLINE;
    memcpy(b->out + b->out_len, s, n);
    b->out_len += n;
    return 0;
}

/* Nonzero when one of the 8 bytes of w needs an escape: below 0x20, '"', '/', '\\' or DEL. */
static inline uint64_t
escape8(uint64_t w)
{
    return bp_bytes_below(w, 0x20) | bp_bytes_eq(w, '"') | bp_bytes_eq(w, '/') |
           bp_bytes_eq(w, '\\') | bp_bytes_eq(w, 127);
}

static int
put_string(bp_batch_t *b, const char *s, size_t n)
{
    /* the worst case (every byte a \u00XX) reserved once: rows are small next to the buffer */
    if (n > SIZE_MAX / 8 || room(b, 6 * n + 2) != 0)
        return DECLINE;
    char *o = b->out + b->out_len;
    *o++ = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        while (i + 8 <= n && (memcpy(&w, s + i, 8), !escape8(w)))
            i += 8;
        if (i >= n)
            break;
        const char *e = escape[(unsigned char)s[i]];
        if (!e)
            continue;
        memcpy(o, s + run, i - run);
        o += i - run;
        size_t el = strlen(e);
        memcpy(o, e, el);
        o += el;
        run = i + 1;
    }
    memcpy(o, s + run, n - run);
    o += n - run;
    *o++ = '"';
    b->out_len = (size_t)(o - b->out);
    return 0;
}

/* Digits of u (< 10^19) at the end of buf; returns where they start. */
static char *
digits(char *end, uint64_t u)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

/* The text of %.14g, which is lua-cjson's: an integer below 1e14 has at most 14 digits, and an
 * amount below 1e12 that is the double nearest to a whole number of cents k / 100 prints as
 * that number (its 14 significant digits round to k / 100 exactly, trailing zeros dropped); the
 * rest through snprintf itself. */
static int
put_number(bp_batch_t *b, double v)
{
    char buf[40];
    char *end = buf + sizeof(buf), *p;
    if (!isfinite(v))
        return DECLINE;
    double a = fabs(v);
    if (a < 1e14 && v == (double)(int64_t)v) {
        p = digits(end, (uint64_t)a);
        if (signbit(v))
            *--p = '-';
        return put(b, p, (size_t)(end - p));
    }
    if (a < 1e12) {
        double k = floor(a * 100 + 0.5);
        if (k / 100 == a) {
            uint64_t c = (uint64_t)k;
            p = end;
            if (c % 10)
                *--p = (char)('0' + c % 10);
            if (c % 100)
                *--p = (char)('0' + c / 10 % 10);
            *--p = '.';
            p = digits(p, c / 100);
            if (v < 0)
                *--p = '-';
            return put(b, p, (size_t)(end - p));
        }
    }
    int n = snprintf(buf, sizeof(buf), "%.14g", v);
    return n > 0 && (size_t)n < sizeof(buf) ? put(b, buf, (size_t)n) : DECLINE;
}

static int put_value(lua_State *L, bp_batch_t *b, int idx, int depth);

/* Array length as lua-cjson finds it: > 0 when every key is an integer >= 1 (holes become null),
 * 0 for an object or an empty table, DECLINE for an array lua-cjson calls excessively sparse
 * (encode_sparse_array(false, 2, 10)). */
static int
array_length(lua_State *L, int idx)
{
    lua_Number max = 0;
    int items = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_Number k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
        if (k < 1 || k != floor(k)) {
            lua_pop(L, 2);
            return 0;
        }
        if (k > max)
            max = k;
        items++;
        lua_pop(L, 1);
    }
    if (max > 10 && max > items * 2.0)
        return DECLINE;
    return max > INT32_MAX ? DECLINE : (int)max;
}

static int
put_table(lua_State *L, bp_batch_t *b, int idx, int depth)
{
    if (depth > JSON_ROW_DEPTH || !lua_checkstack(L, 4))
        return DECLINE;
    int n = array_length(L, idx);
    if (n < 0)
        return DECLINE;
    if (n > 0) {
        if (put(b, "[", 1) != 0)
            return DECLINE;
        for (int i = 1; i <= n; i++) {
            if (i > 1 && put(b, ",", 1) != 0)
                return DECLINE;
            lua_rawgeti(L, idx, i);
            int rc = lua_isnil(L, -1) ? put(b, "null", 4) : put_value(L, b, lua_gettop(L), depth);
            lua_pop(L, 1);
            if (rc != 0)
                return DECLINE;
        }
        return put(b, "]", 1);
    }
    if (put(b, "{", 1) != 0)
        return DECLINE;
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t kl;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
        if (!k || (!first && put(b, ",", 1) != 0) || put_string(b, k, kl) != 0 ||
            put(b, ":", 1) != 0 || put_value(L, b, lua_gettop(L), depth) != 0) {
            lua_pop(L, 2);
            return DECLINE;
        }
        first = 0;
        lua_pop(L, 1);
    }
    return put(b, "}", 1);
}

static int
put_value(lua_State *L, bp_batch_t *b, int idx, int depth)
{
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(b, s, n);
    }
    case LUA_TNUMBER:
        return put_number(b, lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(b, "true", 4) : put(b, "false", 5);
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, idx) == NULL ? put(b, "null", 4) : DECLINE;
    case LUA_TTABLE:
        return put_table(L, b, idx, depth + 1);
    default:
        return DECLINE;
    }
}

/* See json_row.h. */
int
bp_json_row_encode(lua_State *L)
{
    bp_batch_t *b = lua_touserdata(L, 1);
    size_t ml;
    const char *member = lua_tolstring(L, 3, &ml);
    if (!b || lua_type(L, 2) != LUA_TTABLE || !member || ml < 2)
        return 0;
    size_t start = b->out_len;
    if (put_table(L, b, 2, 1) != 0 || b->out_len - start <= 2 || b->out[start] != '{') {
        b->out_len = start;    /* declined: lua-cjson writes it */
        return 0;
    }
    b->out_len--;    /* the closing brace: the member ends with its own */
    if (put(b, member, ml) != 0) {
        b->out_len = start;
        return 0;
    }
    lua_pushnumber(L, (lua_Number)start);
    lua_pushnumber(L, (lua_Number)(b->out_len - start));
    return 2;
}
