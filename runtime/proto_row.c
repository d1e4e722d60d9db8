/* proto_row.c - a row table written as a protobuf message of the writer schema proto_desc.c
 * builds (field k of a RECORD = its k-th column), walked as json_row.c walks it, straight into the
 * request's buffer.
 *
 * Why by hand and not protobuf-c: a row's message type is only known at run time (from the table),
 * and protobuf-c packs only types compiled in; building its C structs per row would cost more than
 * writing the bytes. The wire format of the few types a row uses is small: varints (INT64,
 * TIMESTAMP, DATE, BOOL), fixed64 (FLOAT64), length-delimited (strings, bytes, RECORDs, packed
 * repeated numbers). A length-delimited value is written after a 5-byte hole that its length then
 * fills, the value moved back over the unused bytes (rows are small next to the buffer). The
 * values are checked as schema_check.c checks a row's JSON, so a row goes through either method
 * alike; the error names the field by its path as json_row.c's do. */
#include "proto_row.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "json_lua.h"
#include "json_out.h"
#include "json_row.h"
#include "proto_desc.h"
#include "pull_reply.h"
#include "schema_scalar.h"

/* A path is at most a key per RECORD level and an index per REPEATED level. */
#define PATH_DEPTH (2 * BP_SCHEMA_MAX_DEPTH + 4)
#define TWO53 9007199254740992.0
#define TS_MIN_SEC (-62135596800LL)     /* 0001-01-01T00:00:00Z, as schema_scalar.c */
#define TS_MAX_SEC 253402300799LL       /* 9999-12-31T23:59:59Z */
#define LUA_TCDATA 10                   /* LuaJIT's FFI data, which lua.h does not name */

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2 };

struct enc {
    lua_State *L;
    bp_buf_t *b;
    const char *key[PATH_DEPTH + 1];    /* key[d] the column at depth d, or NULL: index[d] */
    size_t klen[PATH_DEPTH + 1];
    int index[PATH_DEPTH + 1];
    char *err;
    size_t errlen;
    int empty_repeated_fails;           /* bp_proto_row_meta's */
};

/* Formats the error, prefixed with the path of the value at depth
 * ("row field items[1].price: "). */
static int BP_PRINTF(3, 4)
fail(struct enc *e, int depth, const char *fmt, ...)
{
    size_t n = 0;
    if (e->errlen == 0)
        return -1;
    e->err[0] = 0;
    if (depth > 0)
        n = (size_t)snprintf(e->err, e->errlen, "row field ");
    for (int d = 1; d <= depth && d <= PATH_DEPTH && n < e->errlen; d++) {
        int w = e->key[d] ? snprintf(e->err + n, e->errlen - n, "%s%.*s", d > 1 ? "." : "",
                                     (int)(e->klen[d] > 64 ? 64 : e->klen[d]), e->key[d])
                          : snprintf(e->err + n, e->errlen - n, "[%d]", e->index[d]);
        n = w < 0 ? n : n + (size_t)w;
    }
    if (depth > 0 && n < e->errlen)
        n += (size_t)snprintf(e->err + n, e->errlen - n, ": ");
    if (n < e->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->err + n, e->errlen - n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int
room(struct enc *e, size_t n)
{
    if (bp_buf_reserve(e->b, n) == 0)
        return 0;
    return fail(e, 0, "the rows pass the request's size limit");
}

static size_t
varint_to(uint8_t *o, uint64_t v)
{
    size_t k = 0;
    while (v >= 0x80) {
        o[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[k++] = (uint8_t)v;
    return k;
}

static int
put_varint(struct enc *e, uint64_t v)
{
    if (room(e, 10) != 0)
        return -1;
    e->b->len += varint_to((uint8_t *)e->b->data + e->b->len, v);
    return 0;
}

/* The field's key; number 0 writes none (an element of a packed array). */
static int
put_tag(struct enc *e, size_t number, int wt)
{
    return number ? put_varint(e, ((uint64_t)number << 3) | (uint64_t)wt) : 0;
}

static int
put_bytes(struct enc *e, size_t number, const char *p, size_t n)
{
    if (put_tag(e, number, WT_LEN) != 0 || put_varint(e, n) != 0 || room(e, n) != 0)
        return -1;
    if (n)
        memcpy(e->b->data + e->b->len, p, n);
    e->b->len += n;
    return 0;
}

/* Opens a length-delimited value: a hole of 5 bytes (lengths below 2^35) at *mark. */
static int
open_len(struct enc *e, size_t *mark)
{
    if (room(e, 5) != 0)
        return -1;
    *mark = e->b->len;
    e->b->len += 5;
    return 0;
}

/* Closes it: the length in the hole, the value moved back over the bytes the length left. */
static int
close_len(struct enc *e, size_t mark)
{
    char *base = e->b->data + mark;
    size_t n = e->b->len - mark - 5;
    uint8_t v[10];
    if (n >= ((size_t)1 << 35))
        return fail(e, 0, "a value passes 32 GB");
    size_t k = varint_to(v, n);
    memcpy(base, v, k);
    memmove(base + k, base + 5, n);
    e->b->len = mark + k + n;
    return 0;
}

/* `string "3x"`, `number 1.5`, `table`, for the messages. */
static const char *
describe(struct enc *e, int vi, char *buf, size_t size)
{
    lua_State *L = e->L;
    size_t n;
    switch (lua_type(L, vi)) {
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, vi, &n);
        snprintf(buf, size, "string \"%.*s%s\"", (int)(n > 40 ? 40 : n), s, n > 40 ? "..." : "");
        return buf;
    }
    case LUA_TNUMBER: {
        char t[48];
        double d = lua_tonumber(L, vi);
        size_t k = bp_json_number_text(t, sizeof(t), d);
        if (k)
            snprintf(buf, size, "number %.*s", (int)k, t);
        else
            snprintf(buf, size, "number %s", isnan(d) ? "NaN" : d > 0 ? "inf" : "-inf");
        return buf;
    }
    case LUA_TBOOLEAN:
        return lua_toboolean(L, vi) ? "true" : "false";
    default:
        snprintf(buf, size, "%s", luaL_typename(L, vi));
        return buf;
    }
}

static int
wrong(struct enc *e, const struct bp_schema_field *f, int vi, int depth)
{
    char d[80];
    return fail(e, depth, "%s expected, got %s", f->type_name, describe(e, vi, d, sizeof(d)));
}

/* An int64_t / uint64_t cdata's digits through bepipe.int_text (the C API has no view of a
 * cdata's type), into buf; NULL for another cdata. */
static const char *
cdata_text(struct enc *e, int vi, char *buf, size_t size)
{
    lua_State *L = e->L;
    const char *out = NULL;
    lua_getfield(L, LUA_REGISTRYINDEX, "bepipe.int_text");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    lua_pushvalue(L, vi);
    lua_call(L, 1, 1);
    size_t n;
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (s && n < size) {
        memcpy(buf, s, n + 1);
        out = buf;
    }
    lua_pop(L, 1);
    return out;
}

/* s[0..n) with the white space around it cut (the checker's numbers allow it). */
static const char *
trim(const char *s, size_t *n)
{
    while (*n && (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')))
        s++, (*n)--;
    while (*n && (s[*n - 1] == ' ' || (s[*n - 1] >= '\t' && s[*n - 1] <= '\r')))
        (*n)--;
    return s;
}

/* The integer digits (text, from a string or a cdata) as an int64; -1 past its range. */
static int
parse_int64(const char *s, size_t n, int64_t *v)
{
    char buf[64];
    s = trim(s, &n);
    if (n == 0 || n >= sizeof(buf))
        return -1;      /* the checker took it, so its digits fit: only zeros could be longer */
    memcpy(buf, s, n);
    buf[n] = 0;
    errno = 0;
    char *end;
    long long x = strtoll(buf, &end, 10);
    if (errno != 0 || *end != 0)
        return -1;
    *v = x;
    return 0;
}

/* An INT64 column's value. */
static int
int64_value(struct enc *e, const struct bp_schema_field *f, int vi, int depth, int64_t *v)
{
    lua_State *L = e->L;
    char buf[64];
    size_t n;
    switch (lua_type(L, vi)) {
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, vi);
        if (d != floor(d) || !isfinite(d))
            return wrong(e, f, vi, depth);
        /* from 2^53 on a double may be a rounded integer (9007199254740993 is the double 2^53):
         * refused as json_row.c's text of it ("9007199254740992.0") is by schema_scalar.c */
        if (fabs(d) >= TWO53)
            return fail(e, depth, "number %.17g is 2^53 or past it, where a double may be a "
                        "rounded integer (an INT64 from 2^53 on needs an int64 cdata)", d);
        /* a whole double the event wrote with a fraction it lost (1.9999999999999999 is 2,
         * json_lua.cpp) */
        size_t tn;
        const char *t = bp_json_lua_lost_text(d, &tn);
        if (t)
            return fail(e, depth, "INT64 expected, got number %.*s (the event's text: its "
                        "double %.17g lost the fraction)", (int)tn, t, d);
        *v = (int64_t)d;
        return 0;
    }
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, vi, &n);
        if (!bp_schema_string_ok(BP_SCHEMA_INT64, s, n) || parse_int64(s, n, v) != 0)
            return wrong(e, f, vi, depth);
        return 0;
    }
    case LUA_TCDATA: {
        const char *s = cdata_text(e, vi, buf, sizeof(buf));
        if (!s)
            return fail(e, depth, "a cdata other than int64_t / uint64_t cannot be written");
        if (parse_int64(s, strlen(s), v) != 0)
            return fail(e, depth, "%s is past INT64's range", s);
        return 0;
    }
    default:
        return wrong(e, f, vi, depth);
    }
}

/* A TIMESTAMP column's value in microseconds: a string the checker takes, or a number of
 * seconds (a fraction kept to the microsecond nearest the double). */
static int
timestamp_value(struct enc *e, const struct bp_schema_field *f, int vi, int depth, int64_t *us)
{
    lua_State *L = e->L;
    char buf[64];
    size_t n;
    switch (lua_type(L, vi)) {
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, vi, &n);
        return bp_schema_timestamp_us(s, n, us) == 0 ? 0 : wrong(e, f, vi, depth);
    }
    case LUA_TNUMBER: {
        double d = lua_tonumber(L, vi);
        if (!(d >= (double)TS_MIN_SEC && d < (double)TS_MAX_SEC + 1))
            return wrong(e, f, vi, depth);
        /* floor and the difference are exact in this range; only the fraction rounds */
        double sec = floor(d);
        int64_t frac = (int64_t)llround((d - sec) * 1e6);
        *us = (int64_t)sec * 1000000 + frac;
        return 0;
    }
    case LUA_TCDATA: {
        const char *s = cdata_text(e, vi, buf, sizeof(buf));
        int64_t sec;
        if (!s || parse_int64(s, strlen(s), &sec) != 0 || sec < TS_MIN_SEC || sec > TS_MAX_SEC)
            return fail(e, depth, "TIMESTAMP expected, got %s", s ? s : "a cdata");
        *us = sec * 1000000;
        return 0;
    }
    default:
        return wrong(e, f, vi, depth);
    }
}

/* A FLOAT64 column's value. */
static int
double_value(struct enc *e, const struct bp_schema_field *f, int vi, int depth, double *v)
{
    lua_State *L = e->L;
    char buf[64];
    size_t n;
    switch (lua_type(L, vi)) {
    case LUA_TNUMBER:
        *v = lua_tonumber(L, vi);
        if (isnan(*v))
            return fail(e, depth, "NaN is not a JSON number");
        if (!isfinite(*v))
            return fail(e, depth, "%s is not a JSON number", *v > 0 ? "inf" : "-inf");
        return 0;
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, vi, &n);
        if (!bp_schema_string_ok(BP_SCHEMA_FLOAT64, s, n))
            return wrong(e, f, vi, depth);
        s = trim(s, &n);
        char *tmp = n < sizeof(buf) ? buf : bp_xmalloc(n + 1);
        memcpy(tmp, s, n);
        tmp[n] = 0;
        *v = strtod(tmp, NULL);
        if (tmp != buf)
            free(tmp);
        return 0;
    }
    case LUA_TCDATA: {
        const char *s = cdata_text(e, vi, buf, sizeof(buf));
        if (!s)
            return fail(e, depth, "a cdata other than int64_t / uint64_t cannot be written");
        *v = strtod(s, NULL);   /* the double nearest the integer, as BigQuery reads its digits */
        return 0;
    }
    default:
        return wrong(e, f, vi, depth);
    }
}

/* The text of a column written as a proto string (STRING, GEOGRAPHY, NUMERIC, TIME, DATETIME,
 * JSON), into *p / *n (buf holds a number's text). */
static int
text_value(struct enc *e, const struct bp_schema_field *f, int vi, int depth, const char **p,
           size_t *n, char *buf, size_t size)
{
    lua_State *L = e->L;
    int t = lua_type(L, vi);
    enum bp_schema_type ty = f->type;
    if (t == LUA_TSTRING) {
        *p = lua_tolstring(L, vi, n);
        if (ty == BP_SCHEMA_STRING)
            return 0;
        if (ty == BP_SCHEMA_JSON ? !bp_schema_json_text_ok(*p, *n)
                                 : !bp_schema_string_ok(ty, *p, *n))
            return wrong(e, f, vi, depth);
        if (ty == BP_SCHEMA_NUMERIC || ty == BP_SCHEMA_DATETIME)
            *p = trim(*p, n);
        return 0;
    }
    if (t == LUA_TNUMBER && (ty == BP_SCHEMA_STRING || ty == BP_SCHEMA_NUMERIC)) {
        double d = lua_tonumber(L, vi);
        if (!isfinite(d))
            return fail(e, depth, "%s is not a JSON number", isnan(d) ? "NaN" : d > 0 ? "inf"
                                                                                  : "-inf");
        /* a double whose event text said more than it carries (1234567.8912345678): the
         * event's value (json_lua.cpp) */
        if ((*p = bp_json_lua_lost_text(d, n)) != NULL)
            return 0;
        *n = bp_json_number_text(buf, size, d);
        *p = buf;
        return *n ? 0 : wrong(e, f, vi, depth);
    }
    if (t == LUA_TCDATA && (ty == BP_SCHEMA_STRING || ty == BP_SCHEMA_NUMERIC)) {
        *p = cdata_text(e, vi, buf, size);
        if (!*p)
            return fail(e, depth, "a cdata other than int64_t / uint64_t cannot be written");
        *n = strlen(*p);
        return 0;
    }
    if (t == LUA_TBOOLEAN && ty == BP_SCHEMA_STRING) {
        *p = lua_toboolean(L, vi) ? "true" : "false";
        *n = strlen(*p);
        return 0;
    }
    return wrong(e, f, vi, depth);
}

/* A BYTES column: base64 text (as insertAll takes it), its bytes written. */
static int
put_base64(struct enc *e, const struct bp_schema_field *f, size_t number, int vi, int depth)
{
    size_t n, mark;
    if (lua_type(e->L, vi) != LUA_TSTRING)
        return wrong(e, f, vi, depth);
    const char *s = lua_tolstring(e->L, vi, &n);
    if (!bp_schema_string_ok(BP_SCHEMA_BYTES, s, n))
        return wrong(e, f, vi, depth);
    if (put_tag(e, number, WT_LEN) != 0 || open_len(e, &mark) != 0 || room(e, n / 4 * 3 + 3) != 0)
        return -1;
    /* the padded part, then an unpadded tail (the checker takes one) padded here */
    size_t whole = n - n % 4;
    char tail[4] = {'=', '=', '=', '='};
    long k = bp_pull_data_decode(e->b->data + e->b->len, s, whole);
    if (k >= 0) {
        e->b->len += (size_t)k;
        memcpy(tail, s + whole, n % 4);
        k = n % 4 ? bp_pull_data_decode(e->b->data + e->b->len, tail, 4) : 0;
    }
    if (k < 0)
        return wrong(e, f, vi, depth);
    e->b->len += (size_t)k;
    return close_len(e, mark);
}

static int put_record(struct enc *e, const struct bp_schema_field *rec, int vi, int depth,
                      const struct bp_schema_field *given);

/* One value of column f, as field `number` (0: an element of a packed array, no key). */
static int
put_one(struct enc *e, const struct bp_schema_field *f, size_t number, int vi, int depth)
{
    lua_State *L = e->L;
    int64_t i = 0;
    double d = 0;
    size_t n = 0, mark;
    const char *p = NULL;
    char buf[64];
    switch (f->type) {
    case BP_SCHEMA_RECORD:
        if (lua_type(L, vi) != LUA_TTABLE)
            return fail(e, depth, "RECORD expected an object, got %s",
                        describe(e, vi, buf, sizeof(buf)));
        if (put_tag(e, number, WT_LEN) != 0 || open_len(e, &mark) != 0 ||
            put_record(e, f, vi, depth, NULL) != 0)
            return -1;
        return close_len(e, mark);
    case BP_SCHEMA_INT64:
        if (int64_value(e, f, vi, depth, &i) != 0)
            return -1;
        return put_tag(e, number, WT_VARINT) != 0 ? -1 : put_varint(e, (uint64_t)i);
    case BP_SCHEMA_TIMESTAMP:
        if (timestamp_value(e, f, vi, depth, &i) != 0)
            return -1;
        return put_tag(e, number, WT_VARINT) != 0 ? -1 : put_varint(e, (uint64_t)i);
    case BP_SCHEMA_DATE: {
        int32_t days;
        if (lua_type(L, vi) != LUA_TSTRING)
            return wrong(e, f, vi, depth);
        p = lua_tolstring(L, vi, &n);
        if (bp_schema_date_days(p, n, &days) != 0)
            return wrong(e, f, vi, depth);
        /* an int32 is sign-extended to 64 bits on the wire (a date before 1970: 10 bytes) */
        return put_tag(e, number, WT_VARINT) != 0 ? -1 : put_varint(e, (uint64_t)(int64_t)days);
    }
    case BP_SCHEMA_BOOL: {
        int v;
        if (lua_type(L, vi) == LUA_TBOOLEAN) {
            v = lua_toboolean(L, vi);
        } else if (lua_type(L, vi) == LUA_TSTRING) {
            p = lua_tolstring(L, vi, &n);
            if (!bp_schema_string_ok(BP_SCHEMA_BOOL, p, n))
                return wrong(e, f, vi, depth);
            v = n == 4;     /* "true" in any case; "false" has 5 letters */
        } else {
            return wrong(e, f, vi, depth);
        }
        return put_tag(e, number, WT_VARINT) != 0 ? -1 : put_varint(e, (uint64_t)v);
    }
    case BP_SCHEMA_FLOAT64: {
        uint64_t bits;
        if (double_value(e, f, vi, depth, &d) != 0 || put_tag(e, number, WT_FIXED64) != 0 ||
            room(e, 8) != 0)
            return -1;
        memcpy(&bits, &d, 8);
        uint8_t *o = (uint8_t *)e->b->data + e->b->len;
        for (int k = 0; k < 8; k++)
            o[k] = (uint8_t)(bits >> (8 * k));   /* little-endian on every host */
        e->b->len += 8;
        return 0;
    }
    case BP_SCHEMA_BYTES:
        return put_base64(e, f, number, vi, depth);
    case BP_SCHEMA_STRING: case BP_SCHEMA_NUMERIC: case BP_SCHEMA_TIME: case BP_SCHEMA_DATETIME:
    case BP_SCHEMA_JSON:
        if (text_value(e, f, vi, depth, &p, &n, buf, sizeof(buf)) != 0)
            return -1;
        /* text that is not UTF-8 (a map may put any bytes in a string): what the JSON path
         * stores, U+FFFD for each invalid byte (dispatch.c's bp_json_text_utf8), not bytes a
         * protobuf string must not hold */
        if (bp_utf8_valid_prefix(p, n) != n) {
            if (put_tag(e, number, WT_LEN) != 0 || open_len(e, &mark) != 0)
                return -1;
            if (bp_utf8_fixed(e->b, p, n) != 0)
                return fail(e, 0, "the rows pass the request's size limit");
            return close_len(e, mark);
        }
        return put_bytes(e, number, p, n);
    case BP_SCHEMA_ANY:
        break;
    }
    return fail(e, depth, "a %s column cannot be written with the Storage Write API",
                f->type_name);
}

/* The length of a Lua array (every key an integer 1..n, no holes), 0 for an empty table, -1 for
 * anything else (*hole: the first missing index, or 0 when a key is not an array index). */
static long
array_length(lua_State *L, int vi, long *hole)
{
    double max = 0;
    long items = 0;
    *hole = 0;
    lua_pushnil(L);
    while (lua_next(L, vi)) {
        double k = lua_type(L, -2) == LUA_TNUMBER ? lua_tonumber(L, -2) : 0;
        lua_pop(L, 1);
        if (k < 1 || k != floor(k) || k > INT32_MAX) {
            lua_pop(L, 1);
            return -1;
        }
        if (k > max)
            max = k;
        items++;
    }
    if ((double)items != max) {
        for (long i = 1; i <= (long)max && !*hole; i++) {
            lua_rawgeti(L, vi, (int)i);
            if (lua_isnil(L, -1))
                *hole = i;
            lua_pop(L, 1);
        }
        return -1;
    }
    return items;
}

static int
is_null(lua_State *L, int vi)
{
    return lua_type(L, vi) == LUA_TLIGHTUSERDATA && lua_touserdata(L, vi) == NULL;
}

/* A REPEATED column's array: packed for numbers and bools (as the descriptor declares them),
 * else one field per element. */
static int
put_repeated(struct enc *e, const struct bp_schema_field *f, size_t number, int vi, int depth)
{
    lua_State *L = e->L;
    long hole, n;
    char buf[80];
    if (lua_type(L, vi) != LUA_TTABLE)
        return fail(e, depth, "REPEATED field expected an array, got %s",
                    describe(e, vi, buf, sizeof(buf)));
    if ((n = array_length(L, vi, &hole)) < 0) {
        if (!hole)
            return fail(e, depth, "REPEATED field expected an array, got object");
        e->key[depth + 1] = NULL;
        e->index[depth + 1] = (int)hole - 1;
        return fail(e, depth + 1, "NULL in a REPEATED field");
    }
    int type = bp_proto_field_type(f);
    int packed = type != 9 && type != 11 && type != 12;     /* not string, message, bytes */
    size_t mark = 0;
    if (n == 0 && e->empty_repeated_fails)
        return fail(e, depth, "REPEATED field expected an array, got an empty table (its JSON "
                    "is {}, an object)");
    if (n == 0)
        return 0;
    if (packed && (put_tag(e, number, WT_LEN) != 0 || open_len(e, &mark) != 0))
        return -1;
    for (long i = 1; i <= n; i++) {
        e->key[depth + 1] = NULL;
        e->index[depth + 1] = (int)i - 1;   /* 0-based in the path, as the checker's */
        lua_rawgeti(L, vi, (int)i);
        int rc = is_null(L, -1) ? fail(e, depth + 1, "NULL in a REPEATED field")
                                : put_one(e, f, packed ? 0 : number, lua_gettop(L), depth + 1);
        lua_pop(L, 1);
        if (rc != 0)
            return -1;
    }
    return packed ? close_len(e, mark) : 0;
}

/* A value for column f of rec (at -1), by its mode. */
static int
put_column(struct enc *e, const struct bp_schema_field *rec, const struct bp_schema_field *f,
           int depth)
{
    lua_State *L = e->L;
    int vi = lua_gettop(L);
    size_t number = (size_t)(f - rec->fields) + 1;
    char buf[80];
    if (f->mode == BP_SCHEMA_REPEATED)
        return put_repeated(e, f, number, vi, depth);
    if (lua_type(L, vi) == LUA_TTABLE && f->type != BP_SCHEMA_RECORD) {
        long hole;
        return array_length(L, vi, &hole) > 0 || hole
                   ? fail(e, depth, "array given for a field that is not REPEATED")
                   : fail(e, depth, "%s expected, got %s", f->type_name,
                          describe(e, vi, buf, sizeof(buf)));
    }
    return put_one(e, f, number, vi, depth);
}

/* The columns of RECORD rec from the table at vi (the message's body, no length); given: a
 * column the caller writes itself (it counts as present), or NULL. */
static int
put_record(struct enc *e, const struct bp_schema_field *rec, int vi, int depth,
           const struct bp_schema_field *given)
{
    lua_State *L = e->L;
    uint64_t seen[BP_SCHEMA_MAX_REQUIRED / 64] = {0};
    if (given && given->required_index >= 0)
        seen[given->required_index / 64] |= (uint64_t)1 << (given->required_index % 64);
    if (depth >= PATH_DEPTH - 2)
        return fail(e, depth, "nested deeper than the schema allows");
    if (!lua_checkstack(L, 8))
        return fail(e, depth, "nested too deep for the Lua stack");
    lua_pushnil(L);
    while (lua_next(L, vi)) {
        size_t kl;
        if (lua_type(L, -2) != LUA_TSTRING)
            return fail(e, depth, "%s", depth == 0 ? "the row is a list, not an object with "
                                                     "named columns"
                                                   : "RECORD expected an object, got array");
        const char *k = lua_tolstring(L, -2, &kl);
        e->key[depth + 1] = k;
        e->klen[depth + 1] = kl;
        const struct bp_schema_field *f = bp_schema_field_find(rec, k, kl);
        if (!f)
            return fail(e, depth + 1, "no such field");
        if (is_null(L, -1)) {
            if (f->mode == BP_SCHEMA_REQUIRED)
                return fail(e, depth + 1, "missing REQUIRED field (null)");
        } else {
            if (put_column(e, rec, f, depth + 1) != 0)
                return -1;
            if (f->required_index >= 0)
                seen[f->required_index / 64] |= (uint64_t)1 << (f->required_index % 64);
        }
        lua_pop(L, 1);
    }
    for (size_t i = 0; i < rec->nfields; i++) {
        const struct bp_schema_field *f = &rec->fields[i];
        if (f->required_index >= 0 &&
            !(seen[f->required_index / 64] & ((uint64_t)1 << (f->required_index % 64)))) {
            e->key[depth + 1] = f->name;
            e->klen[depth + 1] = f->name_len;
            return fail(e, depth + 1, "missing REQUIRED field");
        }
    }
    return 0;
}

/* The meta column f, after the row's own. */
static int
put_meta(struct enc *e, const struct bp_schema *s, const struct bp_schema_field *f,
         const struct bp_proto_row_meta *meta)
{
    size_t number = (size_t)(f - s->root.fields) + 1;
    return put_tag(e, number, WT_VARINT) != 0 ? -1 : put_varint(e, (uint64_t)meta->ts_us);
}

/* See proto_row.h. */
int
bp_proto_row_append(const struct bp_schema *s, lua_State *L, int idx,
                    const struct bp_proto_row_meta *meta, bp_buf_t *rows, char *err,
                    size_t errlen)
{
    struct enc enc = {.L = L, .b = rows, .err = err, .errlen = errlen,
                      .empty_repeated_fails = meta && meta->empty_repeated_fails};
    struct enc *e = &enc;
    size_t start = rows->len, mark;
    int top = lua_gettop(L);
    if (idx < 0)
        idx = top + 1 + idx;
    int rc = -1;
    if (lua_type(L, idx) != LUA_TTABLE) {
        fail(e, 0, "the row is a %s, not a table", luaL_typename(L, idx));
        goto out;
    }
    const struct bp_schema_field *mf = NULL;
    if (meta && meta->ts_column) {
        mf = bp_schema_field_find(&s->root, meta->ts_column, strlen(meta->ts_column));
        if (!mf || mf->type != BP_SCHEMA_TIMESTAMP || mf->mode == BP_SCHEMA_REPEATED) {
            fail(e, 0, "the table has no TIMESTAMP column %s", meta->ts_column);
            goto out;
        }
    }
    /* a REQUIRED meta column counts as present: the row need not hold it */
    if (put_tag(e, 1, WT_LEN) != 0 || open_len(e, &mark) != 0)
        goto out;
    if (put_record(e, &s->root, idx, 0, mf) != 0 || (mf && put_meta(e, s, mf, meta) != 0))
        goto out;
    if (rows->len - mark - 5 > BP_SCHEMA_MAX_ROW) {
        fail(e, 0, "%zu bytes, over BigQuery's row limit of %u bytes", rows->len - mark - 5,
             BP_SCHEMA_MAX_ROW);
        goto out;
    }
    rc = close_len(e, mark);
out:
    lua_settop(L, top);
    if (rc != 0)
        rows->len = start;
    return rc;
}
