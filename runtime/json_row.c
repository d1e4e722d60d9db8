/* json_row.c - a map's row table written as JSON text straight into the batch's output buffer,
 * with its ingestion_time column: the encoder of record for rows (lua-cjson writes them only
 * where this file is absent: tests/lua's simulation).
 *
 * Why not lua-cjson: Debian's lua-cjson writes every number with "%.14g" (1234567890123456
 * became 1.2345678901235e+15, 1234567.8912345678 lost its last digits) and escapes '/' as "\/"
 * (a URL-heavy text doubles, and insertAll bills and caps bytes). Here:
 *   - a number is written as the shortest text that reads back to the same double (0.1 stays
 *     0.1, 1234567.8912345678 stays itself): integers below 2^53 and amounts in whole cents,
 *     nearly every number a row holds, digit by digit; others with "%.15g", "%.16g", "%.17g",
 *     the first that strtod reads back to the same double (subnormals from "%.1g" on);
 *   - a double of 2^53 or more in magnitude that %g writes as bare digits gets ".0": it may be
 *     a rounded integer (9007199254740993.0 is the double 2^53; the decoder carries an integer
 *     written 2^53 as a cdata), and an INT64 column must not take it for exact digits;
 *   - a double whose event text said more than the double carries (1.9999999999999999 decoded
 *     to 2, 4503599627370496.5 to 4503599627370496, 1234567.8912345678) is written as the
 *     event's text (bp_json_lua_lost_text): it reads back to the same double (FLOAT64), is the
 *     event's value (NUMERIC), and is no integer for an INT64 column;
 *   - an int64_t / uint64_t cdata (how the decoders in json_lua.cpp carry an integer past 2^53)
 *     is written as its exact digits;
 *   - strings escape only what JSON needs: '"', '\\' and control characters;
 *   - the row goes to the buffer once, not as an interned Lua string copied afterwards.
 * A value that cannot be written (a function, userdata, other cdata, NaN or an infinity, a
 * table that contains itself or nests past JSON_ROW_DEPTH, a key that is neither a string nor a
 * number, an excessively sparse array as lua-cjson's encode_sparse_array(false, 2, 10) calls
 * one) is an error naming the field by its path: "row field items[1].price: NaN is not a JSON
 * number".
 * Key order is lua_next's; number keys are written as strings, as lua-cjson does. */
#include "json_row.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bp_ffi.h"
#include "json_bytes.h"
#include "json_lua.h"

#define JSON_ROW_DEPTH 100

/* JSON's escapes: control characters, '"' and '\\' (tested byte by byte) */
static const char *const escape[256] = {
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007",
    "\\b", "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f",
    "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
    "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
    ['"'] = "\\\"", ['\\'] = "\\\\",
};

/* One encoding: the buffer, the path of the value being written (for the error) and the
 * error. path[d] is the key (a string on the Lua stack, kept there while its value is written)
 * or the array index of the value at depth d; tables[d] the table itself, for cycles. */
struct enc {
    lua_State *L;
    bp_batch_t *b;
    const char *key[JSON_ROW_DEPTH + 2];
    size_t klen[JSON_ROW_DEPTH + 2];
    int index[JSON_ROW_DEPTH + 2];
    const void *tables[JSON_ROW_DEPTH + 2];
    char nkey[JSON_ROW_DEPTH + 2][40];    /* the text of a number key */
    char err[400];
};

/* Formats the error, prefixed with the path of the value at depth ("row field items[1].price: ";
 * a path past PATH_MAX bytes is cut with "..."). */
#define PATH_MAX_TEXT 160
static int __attribute__((format(printf, 3, 4)))
fail(struct enc *e, int depth, const char *fmt, ...)
{
    size_t n = 0;
    if (depth > 0)
        n = (size_t)snprintf(e->err, sizeof(e->err), "row field ");
    for (int d = 1; d <= depth && d <= JSON_ROW_DEPTH + 1; d++) {
        if (n > PATH_MAX_TEXT) {
            n += (size_t)snprintf(e->err + n, sizeof(e->err) - n, "...");
            break;
        }
        int w = e->key[d] ? snprintf(e->err + n, sizeof(e->err) - n, "%s%.*s", d > 1 ? "." : "",
                                     (int)(e->klen[d] > 64 ? 64 : e->klen[d]), e->key[d])
                          : snprintf(e->err + n, sizeof(e->err) - n, "[%d]", e->index[d]);
        n = w < 0 ? n : n + (size_t)w;
    }
    if (depth > 0) {
        memcpy(e->err + n, ": ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + n, sizeof(e->err) - n, fmt, ap);
    va_end(ap);
    return -1;
}

static int
room(struct enc *e, size_t n)
{
    bp_batch_t *b = e->b;
    if (b->out_cap - b->out_len >= n)
        return 0;
    if (bp_ffi_batch_reserve(b, n) == 0)
        return 0;
    return fail(e, 0, "the row passes the batch output limit");
}

static int
put(struct enc *e, const char *s, size_t n)
{
    if (room(e, n) != 0)
        return -1;
    memcpy(e->b->out + e->b->out_len, s, n);
    e->b->out_len += n;
    return 0;
}

/* Nonzero when one of the 8 bytes of w needs an escape: below 0x20, '"' or '\\'. */
static inline uint64_t
escape8(uint64_t w)
{
    return bp_bytes_below(w, 0x20) | bp_bytes_eq(w, '"') | bp_bytes_eq(w, '\\');
}

static int
put_string(struct enc *e, const char *s, size_t n)
{
    /* the worst case (every byte a \u00XX) reserved once: rows are small next to the buffer */
    if (n > SIZE_MAX / 8 || room(e, 6 * n + 2) != 0)
        return -1;
    bp_batch_t *b = e->b;
    char *o = b->out + b->out_len;
    *o++ = '"';
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        while (i + 8 <= n && (memcpy(&w, s + i, 8), !escape8(w)))
            i += 8;
        if (i >= n)
            break;
        const char *x = escape[(unsigned char)s[i]];
        if (!x)
            continue;
        memcpy(o, s + run, i - run);
        o += i - run;
        size_t xl = strlen(x);
        memcpy(o, x, xl);
        o += xl;
        run = i + 1;
    }
    memcpy(o, s + run, n - run);
    o += n - run;
    *o++ = '"';
    b->out_len = (size_t)(o - b->out);
    return 0;
}

/* Digits of u at the end of buf; returns where they start. */
static char *
digits(char *end, uint64_t u)
{
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return end;
}

/* See json_row.h. */
size_t
bp_json_number_text(char *buf, size_t size, double v)
{
    char tmp[40];
    char *end = tmp + sizeof(tmp), *p = NULL;
    double a = fabs(v);
    if (!isfinite(v) || size < sizeof(tmp))
        return 0;
    if (a < 9007199254740992.0 && v == (double)(int64_t)v) {
        /* an integer: every one below 2^53 is a double, its digits the shortest text */
        p = digits(end, (uint64_t)a);
    } else if (a < 1e12) {
        /* the double nearest to a whole number of cents k / 100 (k / 100 is correctly
         * rounded): its at most 14 significant digits read back to it, and no shorter text
         * does (two decimals of 15 digits or fewer are never the same double) */
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
        }
    }
    if (p) {
        if (signbit(v))
            *--p = '-';
        memcpy(buf, p, (size_t)(end - p));
        return (size_t)(end - p);
    }
    /* a normal double carries 15.95 digits, so one of 15 to 17 is the shortest that reads back;
     * a subnormal carries fewer */
    for (int prec = a < DBL_MIN ? 1 : 15; prec <= 17; prec++) {
        int n = snprintf(buf, size, "%.*g", prec, v);
        if (n <= 0 || (size_t)n >= size)
            return 0;
        if (prec == 17 || strtod(buf, NULL) == v)
            return (size_t)n;
    }
    return 0;
}

static int
put_number(struct enc *e, int depth, double v)
{
    char buf[40];
    if (isnan(v))
        return fail(e, depth, "NaN is not a JSON number");
    if (!isfinite(v))
        return fail(e, depth, "%s is not a JSON number", v > 0 ? "inf" : "-inf");
    double a = fabs(v);
    /* a double whose event text said more than it carries (4503599627370496.5 is the whole
     * double 4503599627370496, 1.9999999999999999 is 2, 1234567.8912345678 is the double of
     * 1234567.8912345679) is written as that text: it reads back to v (FLOAT64), a NUMERIC
     * column stores the event's value, and schema_scalar.c refuses it for INT64 */
    size_t tn;
    const char *t = bp_json_lua_lost_text(v, &tn);
    if (t)
        return put(e, t, tn);
    size_t n = bp_json_number_text(buf, sizeof(buf), v);
    if (n == 0)
        return fail(e, depth, "the number %g cannot be written", v);
    /* from 2^53 on a double may hold a rounded integer (12345678901234567.0 is the double
     * 12345678901234568, 9007199254740993.0 is 2^53), and bare digits would pass for an exact
     * one: ".0" keeps it a double, which schema_scalar.c refuses for INT64 from 2^53 on */
    if (a >= 9007199254740992.0 && n + 2 < sizeof(buf) && !memchr(buf, '.', n) &&
        !memchr(buf, 'e', n)) {
        memcpy(buf + n, ".0", 2);
        n += 2;
    }
    return put(e, buf, n);
}

/* An int64_t / uint64_t cdata, as its digits. bepipe.int_text (scripts/bepipe/int64.lua, in the
 * registry) tells the two from other cdata: the C API has no view of a cdata's type. */
static int
put_cdata(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    lua_getfield(L, LUA_REGISTRYINDEX, "bepipe.int_text");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return fail(e, depth, "a cdata cannot be written");
    }
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    int rc = s ? put(e, s, n) : fail(e, depth, "a cdata other than int64_t / uint64_t "
                                              "cannot be written");
    lua_pop(L, 1);
    return rc;
}

static int put_value(struct enc *e, int idx, int depth);

/* Array length as lua-cjson finds it: > 0 when every key is an integer >= 1 (holes become null),
 * 0 for an object or an empty table, -1 (an error) for an array lua-cjson calls excessively
 * sparse (encode_sparse_array(false, 2, 10)). */
static int
array_length(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
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
    if ((max > 10 && max > items * 2.0) || max > INT32_MAX)
        return fail(e, depth, "an excessively sparse array (%d values, largest index %.0f)",
                    items, max);
    return (int)max;
}

static int
put_array(struct enc *e, int idx, int depth, int n)
{
    lua_State *L = e->L;
    if (put(e, "[", 1) != 0)
        return -1;
    for (int i = 1; i <= n; i++) {
        if (i > 1 && put(e, ",", 1) != 0)
            return -1;
        e->key[depth + 1] = NULL;
        e->index[depth + 1] = i - 1;    /* 0-based in the path, as the scripts' reasons are */
        lua_rawgeti(L, idx, i);
        int rc = lua_isnil(L, -1) ? put(e, "null", 4) : put_value(e, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    return put(e, "]", 1);
}

/* The key at -2 (lua_next's) as a JSON string; a number key as lua-cjson writes it. */
static int
put_key(struct enc *e, int depth)
{
    lua_State *L = e->L;
    size_t kl;
    if (lua_type(L, -2) == LUA_TSTRING) {
        const char *k = lua_tolstring(L, -2, &kl);
        e->key[depth + 1] = k;
        e->klen[depth + 1] = kl;
        return put_string(e, k, kl);
    }
    if (lua_type(L, -2) == LUA_TNUMBER) {
        char *buf = e->nkey[depth + 1];
        size_t n = bp_json_number_text(buf, sizeof(e->nkey[0]), lua_tonumber(L, -2));
        if (n == 0)
            return fail(e, depth, "the table has a key that is not a finite number");
        e->key[depth + 1] = buf;
        e->klen[depth + 1] = n;
        return put_string(e, buf, n);
    }
    return fail(e, depth, "the table has a key of type %s (JSON object keys are strings)",
                luaL_typename(L, -2));
}

static int
put_table(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    const void *t = lua_topointer(L, idx);
    for (int d = 0; d < depth; d++)
        if (e->tables[d] == t)
            return fail(e, depth, "the table contains itself");
    if (depth > JSON_ROW_DEPTH)
        return fail(e, depth, "nested deeper than %d tables", JSON_ROW_DEPTH);
    if (!lua_checkstack(L, 4))
        return fail(e, depth, "nested too deep for the Lua stack");
    e->tables[depth] = t;
    int n = array_length(e, idx, depth);
    if (n < 0)
        return -1;
    if (n > 0)
        return put_array(e, idx, depth, n);
    if (put(e, "{", 1) != 0)
        return -1;
    int first = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if ((!first && put(e, ",", 1) != 0) || put_key(e, depth) != 0 || put(e, ":", 1) != 0 ||
            put_value(e, lua_gettop(L), depth + 1) != 0) {
            lua_pop(L, 2);
            return -1;
        }
        first = 0;
        lua_pop(L, 1);
    }
    return put(e, "}", 1);
}

static int
put_value(struct enc *e, int idx, int depth)
{
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        return put_string(e, s, n);
    }
    case LUA_TNUMBER:
        return put_number(e, depth, lua_tonumber(L, idx));
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? put(e, "true", 4) : put(e, "false", 5);
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return put(e, "null", 4);    /* cjson.null */
        return fail(e, depth, "a light userdata cannot be written");
    case LUA_TTABLE:
        return put_table(e, idx, depth);
    case 10:    /* LUA_TCDATA: LuaJIT's FFI data, which lua.h does not name */
        return put_cdata(e, idx, depth);
    default:
        return fail(e, depth, "a %s cannot be written", luaL_typename(L, idx));
    }
}

/* See json_row.h. */
int
bp_json_row_encode(lua_State *L)
{
    bp_batch_t *b = lua_touserdata(L, 1);
    size_t ml;
    const char *member = lua_tolstring(L, 3, &ml);
    if (!b || lua_type(L, 2) != LUA_TTABLE || !member || ml < 1 || member[ml - 1] != '}')
        return luaL_error(L, "encode_row(batch, row table, member ending in '}')");
    /* on the C stack (~9 KB): nothing to free when a Lua error unwinds through here */
    struct enc enc, *e = &enc;
    e->L = L;
    e->b = b;
    e->err[0] = 0;
    size_t start = b->out_len;
    int rc = put_table(e, 2, 0);
    if (rc == 0 && b->out[start] != '{')
        rc = fail(e, 0, "the row is a list, not an object with named columns");
    if (rc == 0) {
        /* the closing brace goes: the member ends with its own; after a lone '{' (an empty
         * row) without its leading comma */
        b->out_len--;
        int lone = b->out_len - start == 1 && member[0] == ',';
        rc = put(e, member + lone, ml - (size_t)lone);
    }
    if (rc != 0) {
        b->out_len = start;
        lua_pushnil(L);
        lua_pushstring(L, e->err);
        return 2;
    }
    lua_pushnumber(L, (lua_Number)start);
    lua_pushnumber(L, (lua_Number)(b->out_len - start));
    return 2;
}

/* See json_row.h. */
int
bp_json_encode(lua_State *L)
{
    bp_batch_t b;
    memset(&b, 0, sizeof(b));
    /* b.out leaks only if a Lua memory error unwinds through here (then the runtime rebuilds
     * the state); this runs for `bepipe-lua test`'s fixtures, not per event */
    struct enc enc, *e = &enc;
    e->L = L;
    e->b = &b;
    e->err[0] = 0;
    lua_settop(L, 1);
    int rc = put_value(e, 1, 0);
    if (rc != 0) {
        free(b.out);
        lua_pushnil(L);
        lua_pushstring(L, e->err);
        return 2;
    }
    lua_pushlstring(L, b.out, b.out_len);
    free(b.out);
    return 1;
}
