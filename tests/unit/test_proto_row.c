/* Unit tests: the row encoder (proto_row.c). Rows are read back with the test's own wire reader
 * (proto_wire_read.h): each column type's value at its edges (2^53 +- 1, INT64's ends, negative
 * numbers, NaN refused, DATE and TIMESTAMP forms into days and microseconds), RECORDs, REPEATED
 * (packed numbers), BYTES from base64, the meta column; a row that cannot be written is an error
 * naming the field, with the buffer as it was. Then a differential check: generated schemas and
 * rows, the bytes decoded by protobufjs (Node) with the descriptor proto_desc.c built, compared
 * with the rows' values (skipped with one line when node or protobufjs is absent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cjson_state.h"
#include "json_lua.h"
#include "json_row.h"
#include "proto_desc.h"
#include "proto_put.h"
#include "proto_row.h"
#include "proto_wire_read.h"
#include "schema.h"

static struct bp_schema *
schema(const char *json)
{
    char why[300];
    struct bp_schema *s = bp_schema_from_json(json, strlen(json), why, sizeof(why));
    if (!s)
        fail_msg("schema: %s", why);
    return s;
}

/* Encodes the row the Lua expression expr builds onto b. Returns 0 with the row message's fields
 * in fs[0..*nf) (pointing into b), or -1 with why and b as it was. */
static int
enc(lua_State *L, const struct bp_schema *s, const char *expr, const struct bp_proto_row_meta *meta,
    bp_buf_t *b, struct wf *fs, size_t *nf, char *why, size_t whylen)
{
    char code[4096];
    snprintf(code, sizeof(code), "return %s", expr);
    if (luaL_dostring(L, code) != 0)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
    int top = lua_gettop(L);
    size_t before = b->len;
    int rc = bp_proto_row_append(s, L, -1, meta, b, why, whylen);
    assert_int_equal(lua_gettop(L), top);
    lua_settop(L, top - 1);
    if (rc != 0) {
        assert_int_equal(b->len, before);
        return -1;
    }
    struct wf outer[2];
    assert_int_equal(wire_fields(b->data + before, b->len - before, outer, 2), 1);
    assert_int_equal(outer[0].num, 1);
    assert_int_equal(outer[0].wt, 2);
    *nf = wire_fields(outer[0].p, outer[0].n, fs, 64);
    return 0;
}

/* The single field the row must have, of number num. */
static const struct wf *
only(lua_State *L, const struct bp_schema *s, const char *expr, bp_buf_t *b, uint32_t num)
{
    static struct wf fs[64];
    size_t nf;
    char why[300];
    if (enc(L, s, expr, NULL, b, fs, &nf, why, sizeof(why)) != 0)
        fail_msg("%s: %s", expr, why);
    assert_int_equal(nf, 1);
    assert_int_equal(fs[0].num, num);
    return &fs[0];
}

static void
refused(lua_State *L, const struct bp_schema *s, const char *expr, bp_buf_t *b, const char *msg)
{
    struct wf fs[64];
    size_t nf;
    char why[300];
    if (enc(L, s, expr, NULL, b, fs, &nf, why, sizeof(why)) == 0)
        fail_msg("%s was written", expr);
    assert_string_equal(why, msg);
}

static const char TYPES[] =
    "[{\"name\":\"i\",\"type\":\"INT64\"},{\"name\":\"f\",\"type\":\"FLOAT64\"},"
    "{\"name\":\"ts\",\"type\":\"TIMESTAMP\"},{\"name\":\"d\",\"type\":\"DATE\"},"
    "{\"name\":\"b\",\"type\":\"BOOL\"},{\"name\":\"s\",\"type\":\"STRING\"},"
    "{\"name\":\"n\",\"type\":\"NUMERIC\"},{\"name\":\"by\",\"type\":\"BYTES\"},"
    "{\"name\":\"t\",\"type\":\"TIME\"},{\"name\":\"dt\",\"type\":\"DATETIME\"},"
    "{\"name\":\"j\",\"type\":\"JSON\"},{\"name\":\"g\",\"type\":\"GEOGRAPHY\"}]";

static void
int64_at_the_edges(void **state)
{
    (void)state;
    lua_State *L = cjson_state("I = require('bepipe.int64').make");
    struct bp_schema *s = schema(TYPES);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    const struct wf *f;
    assert_int_equal(only(L, s, "{i = 2^53 - 1}", &b, 1)->u, 9007199254740991ULL);
    /* 2^53 itself only as a cdata: the double 2^53 is also what 2^53 + 1 rounds to (the JSON
     * row writer marks it "9007199254740992.0", which the schema check refuses alike) */
    refused(L, s, "{i = 2^53}", &b, "row field i: number 9007199254740992 is 2^53 or past it, "
            "where a double may be a rounded integer (an INT64 from 2^53 on needs an int64 "
            "cdata)");
    refused(L, s, "{i = -(2^53)}", &b, "row field i: number -9007199254740992 is 2^53 or past "
            "it, where a double may be a rounded integer (an INT64 from 2^53 on needs an int64 "
            "cdata)");
    assert_int_equal(only(L, s, "{i = I(2097152, 0)}", &b, 1)->u, 9007199254740992ULL);
    /* one past 2^53 only as an int64 cdata (as the event decoder gives it) */
    assert_int_equal(only(L, s, "{i = I(2097152, 1)}", &b, 1)->u, 9007199254740993ULL);
    assert_int_equal(only(L, s, "{i = I(2147483647, 4294967295)}", &b, 1)->u,
                     9223372036854775807ULL);
    assert_int_equal(only(L, s, "{i = I(2147483648, 0)}", &b, 1)->u, 0x8000000000000000ULL);
    assert_int_equal(only(L, s, "{i = I(0, 1, true)}", &b, 1)->u, 1);
    f = only(L, s, "{i = -5}", &b, 1);
    assert_int_equal(f->wt, 0);
    assert_int_equal(f->u, (uint64_t)-5LL);
    assert_int_equal(only(L, s, "{i = '9223372036854775807'}", &b, 1)->u, 9223372036854775807ULL);
    assert_int_equal(only(L, s, "{i = ' -42 '}", &b, 1)->u, (uint64_t)-42LL);
    assert_int_equal(only(L, s, "{i = 1e3}", &b, 1)->u, 1000);
    refused(L, s, "{i = 2^53 + 2}", &b, "row field i: number 9007199254740994 is 2^53 or past "
            "it, where a double may be a rounded integer (an INT64 from 2^53 on needs an int64 "
            "cdata)");
    refused(L, s, "{i = 1.5}", &b, "row field i: INT64 expected, got number 1.5");
    refused(L, s, "{i = 0/0}", &b, "row field i: INT64 expected, got number NaN");
    refused(L, s, "{i = '9223372036854775808'}", &b,
            "row field i: INT64 expected, got string \"9223372036854775808\"");
    refused(L, s, "{i = I(2147483648, 0, true)}", &b,
            "row field i: 9223372036854775808 is past INT64's range");
    refused(L, s, "{i = true}", &b, "row field i: INT64 expected, got true");
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

static double
dbl(const struct wf *f)
{
    double d;
    assert_int_equal(f->wt, 1);
    memcpy(&d, &f->u, 8);
    return d;
}

/* A whole double from 2^52 to 2^53 that the event decoder noted as a fraction it lost
 * (4503599627370496.5 reads as 4503599627370496): INT64 refuses it, FLOAT64 takes the double. */
static void
int64_refuses_a_fraction_the_double_lost(void **state)
{
    (void)state;
    lua_State *L = cjson_state(NULL);
    struct bp_schema *s = schema(TYPES);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    const char *ev = "{\"q\":4503599627370496.5,\"r\":-9007199254740990.5}";
    assert_int_equal(bp_json_lua_push(L, ev, strlen(ev)), 1);
    lua_pop(L, 1);
    refused(L, s, "{i = 2^52}", &b, "row field i: INT64 expected, got number 4503599627370496.5 "
            "(the event's text: its double 4503599627370496 lost the fraction)");
    refused(L, s, "{i = -(2^53 - 2)}", &b, "row field i: INT64 expected, got number "
            "-9007199254740990.5 (the event's text: its double -9007199254740990 lost the "
            "fraction)");
    assert_int_equal(only(L, s, "{i = 2^52 + 2}", &b, 1)->u, 4503599627370498ULL);
    assert_true(dbl(only(L, s, "{f = 2^52}", &b, 2)) == 4503599627370496.0);
    /* below 2^52 too: a text of more digits than its double carries; NUMERIC gets that text */
    const char *ev2 = "{\"q\":1.9999999999999999,\"r\":1234567.8912345678}";
    assert_int_equal(bp_json_lua_push(L, ev2, strlen(ev2)), 1);
    lua_pop(L, 1);
    refused(L, s, "{i = 2}", &b, "row field i: INT64 expected, got number 1.9999999999999999 "
            "(the event's text: its double 2 lost the fraction)");
    assert_true(dbl(only(L, s, "{f = 2}", &b, 2)) == 2.0);
    assert_true(wire_is(only(L, s, "{n = 1234567.8912345678}", &b, 7), "1234567.8912345678"));
    assert_true(wire_is(only(L, s, "{n = 2}", &b, 7), "1.9999999999999999"));
    assert_true(dbl(only(L, s, "{f = 1234567.8912345678}", &b, 2)) == 1234567.8912345678);
    /* the next event forgets them */
    assert_int_equal(bp_json_lua_push(L, "{\"q\":1}", 7), 1);
    lua_pop(L, 1);
    assert_int_equal(only(L, s, "{i = 2^52}", &b, 1)->u, 4503599627370496ULL);
    assert_int_equal(only(L, s, "{i = 2}", &b, 1)->u, 2);
    assert_true(wire_is(only(L, s, "{n = 1234567.8912345678}", &b, 7), "1234567.8912345679"));
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

static void
floats_bools_and_text(void **state)
{
    (void)state;
    lua_State *L = cjson_state("I = require('bepipe.int64').make");
    struct bp_schema *s = schema(TYPES);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_true(dbl(only(L, s, "{f = 0.1}", &b, 2)) == 0.1);
    assert_true(signbit(dbl(only(L, s, "{f = -0.0}", &b, 2))));
    assert_true(dbl(only(L, s, "{f = 1234567.8912345678}", &b, 2)) == 1234567.8912345678);
    assert_true(dbl(only(L, s, "{f = ' 2.5e3 '}", &b, 2)) == 2500);
    assert_true(isnan(dbl(only(L, s, "{f = 'NaN'}", &b, 2))));
    assert_true(isinf(dbl(only(L, s, "{f = '-Infinity'}", &b, 2))));
    assert_true(dbl(only(L, s, "{f = I(2097152, 1)}", &b, 2)) == 9007199254740992.0);
    refused(L, s, "{f = 0/0}", &b, "row field f: NaN is not a JSON number");
    refused(L, s, "{f = -1/0}", &b, "row field f: -inf is not a JSON number");
    refused(L, s, "{f = 'x1'}", &b, "row field f: FLOAT64 expected, got string \"x1\"");
    assert_int_equal(only(L, s, "{b = true}", &b, 5)->u, 1);
    assert_int_equal(only(L, s, "{b = false}", &b, 5)->u, 0);
    assert_int_equal(only(L, s, "{b = 'TRUE'}", &b, 5)->u, 1);
    assert_int_equal(only(L, s, "{b = 'False'}", &b, 5)->u, 0);
    refused(L, s, "{b = 1}", &b, "row field b: BOOL expected, got number 1");
    /* text: strings as they are (bytes, NULs included); numbers as their shortest text */
    const struct wf *f = only(L, s, "{s = 'a/\\0b'}", &b, 6);
    assert_true(f->n == 4 && memcmp(f->p, "a/\0b", 4) == 0);
    assert_true(wire_is(only(L, s, "{s = 0.1}", &b, 6), "0.1"));
    assert_true(wire_is(only(L, s, "{s = true}", &b, 6), "true"));
    assert_true(wire_is(only(L, s, "{s = I(2097152, 1)}", &b, 6), "9007199254740993"));
    assert_true(wire_is(only(L, s, "{n = ' 123.456789012345678901234 '}", &b, 7),
                        "123.456789012345678901234"));
    assert_true(wire_is(only(L, s, "{n = 12.5}", &b, 7), "12.5"));
    refused(L, s, "{n = '1.2.3'}", &b, "row field n: NUMERIC expected, got string \"1.2.3\"");
    assert_true(wire_is(only(L, s, "{t = '23:59:59.999999'}", &b, 9), "23:59:59.999999"));
    refused(L, s, "{t = '24:00'}", &b, "row field t: TIME expected, got string \"24:00\"");
    assert_true(wire_is(only(L, s, "{dt = '2024-01-02 03:04:05'}", &b, 10),
                        "2024-01-02 03:04:05"));
    assert_true(wire_is(only(L, s, "{j = '{\"a\":[1,2]}'}", &b, 11), "{\"a\":[1,2]}"));
    refused(L, s, "{j = 5}", &b, "row field j: JSON expected, got number 5");
    refused(L, s, "{j = '{\"a\":'}", &b, "row field j: JSON expected, got string \"{\"a\":\"");
    assert_true(wire_is(only(L, s, "{j = ' [1, \"x\"] '}", &b, 11), " [1, \"x\"] "));
    assert_true(wire_is(only(L, s, "{g = 'POINT(1 2)'}", &b, 12), "POINT(1 2)"));
    /* BYTES: base64, padded or not */
    assert_true(wire_is(only(L, s, "{by = 'aGVsbG8='}", &b, 8), "hello"));
    assert_true(wire_is(only(L, s, "{by = 'aGVsbG8'}", &b, 8), "hello"));
    assert_true(wire_is(only(L, s, "{by = 'aGk='}", &b, 8), "hi"));
    assert_true(wire_is(only(L, s, "{by = ''}", &b, 8), ""));
    refused(L, s, "{by = 'a$=='}", &b, "row field by: BYTES expected, got string \"a$==\"");
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

/* Text that is not UTF-8 (a map may put any bytes in a string) is written as the insertAll path
 * stores it: dispatch.c puts the row's JSON through bp_json_text_utf8, which makes each byte of an
 * invalid sequence U+FFFD; a protobuf string must be UTF-8, and a raw 0xff there is refused by a
 * strict reader or stored as another value than insertAll's. */
static void
text_not_utf8_as_its_json_reads_back(void **state)
{
    (void)state;
    lua_State *L = cjson_state("I = require('bepipe.int64').make");
    struct bp_schema *s = schema(
        "[{\"name\":\"s\",\"type\":\"STRING\"},{\"name\":\"j\",\"type\":\"JSON\"},"
        "{\"name\":\"g\",\"type\":\"GEOGRAPHY\"},"
        "{\"name\":\"rs\",\"type\":\"STRING\",\"mode\":\"REPEATED\"}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    static const struct { const char *lua, *want; size_t wn; uint32_t num; } cases[] = {
        {"{s = 'a\\255b'}", "a\xef\xbf\xbd" "b", 5, 1},
        {"{s = '\\192\\128'}", "\xef\xbf\xbd\xef\xbf\xbd", 6, 1},               /* overlong */
        {"{s = 'x\\237\\160\\128'}", "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 10, 1},  /* surrogate */
        {"{s = '\\240\\159\\152'}", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 9, 1},  /* cut short */
        {"{s = 'caf\\195\\169 \\240\\159\\152\\128'}", "caf\xc3\xa9 \xf0\x9f\x98\x80", 10, 1},
        {"{j = '\"\\255\"'}", "\"\xef\xbf\xbd\"", 5, 2},
        {"{g = 'P\\255'}", "P\xef\xbf\xbd", 4, 3},
        {"{rs = {'\\255'}}", "\xef\xbf\xbd", 3, 4},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        const struct wf *f = only(L, s, cases[k].lua, &b, cases[k].num);
        if (f->n != cases[k].wn || memcmp(f->p, cases[k].want, f->n) != 0)
            fail_msg("%s written as %zu bytes, not as its JSON reads back", cases[k].lua, f->n);
    }
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

static void
timestamps_and_dates(void **state)
{
    (void)state;
    lua_State *L = cjson_state("I = require('bepipe.int64').make");
    struct bp_schema *s = schema(TYPES);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    static const struct { const char *expr; int64_t us; } ts[] = {
        {"{ts = '1970-01-01T00:00:00Z'}", 0},
        {"{ts = '2024-01-02T03:04:05Z'}", 1704164645000000LL},
        {"{ts = '2024-01-02T03:04:05.123456Z'}", 1704164645123456LL},
        {"{ts = '2024-01-02 03:04:05.5'}", 1704164645500000LL},
        {"{ts = '2024-01-02T04:04:05.000001+01:00'}", 1704164645000001LL},
        {"{ts = '2024-01-02T03:04:05-0130'}", 1704164645000000LL + 5400000000LL},
        {"{ts = ' 2024-1-2 3:04 UTC '}", 1704164640000000LL},
        {"{ts = '2024-01-02'}", 1704153600000000LL},
        {"{ts = '1969-12-31T23:59:59.999999Z'}", -1},
        {"{ts = '0001-01-01T00:00:00Z'}", -62135596800000000LL},
        {"{ts = '9999-12-31T23:59:59.999999Z'}", 253402300799999999LL},
        {"{ts = 1704164645}", 1704164645000000LL},
        {"{ts = 1.5}", 1500000},
        {"{ts = -0.5}", -500000},
        {"{ts = 1704164645.25}", 1704164645250000LL},
        {"{ts = I(0, 1704164645)}", 1704164645000000LL},
    };
    for (size_t i = 0; i < BP_ARRAY_LEN(ts); i++) {
        const struct wf *f = only(L, s, ts[i].expr, &b, 3);
        assert_int_equal(f->wt, 0);
        if ((int64_t)f->u != ts[i].us)
            fail_msg("%s: %lld, not %lld", ts[i].expr, (long long)f->u, (long long)ts[i].us);
    }
    refused(L, s, "{ts = '10000-01-01T00:00:00Z'}", &b,
            "row field ts: TIMESTAMP expected, got string \"10000-01-01T00:00:00Z\"");
    refused(L, s, "{ts = '2024-01-02T03:04:05.1234567Z'}", &b,
            "row field ts: TIMESTAMP expected, got string \"2024-01-02T03:04:05.1234567Z\"");
    refused(L, s, "{ts = 253402300800}", &b,
            "row field ts: TIMESTAMP expected, got number 253402300800");
    refused(L, s, "{ts = 0/0}", &b, "row field ts: TIMESTAMP expected, got number NaN");
    assert_int_equal(only(L, s, "{d = '1970-01-01'}", &b, 4)->u, 0);
    assert_int_equal(only(L, s, "{d = '2024-02-29'}", &b, 4)->u, 19782);
    /* an int32 before 1970 is sign-extended: read back as 64 bits, it is -1 */
    assert_int_equal((int64_t)only(L, s, "{d = '1969-12-31'}", &b, 4)->u, -1);
    assert_int_equal((int64_t)only(L, s, "{d = '0001-01-01'}", &b, 4)->u, -719162);
    assert_int_equal(only(L, s, "{d = '9999-12-31'}", &b, 4)->u, 2932896);
    refused(L, s, "{d = '2023-02-29'}", &b,
            "row field d: DATE expected, got string \"2023-02-29\"");
    refused(L, s, "{d = 19782}", &b, "row field d: DATE expected, got number 19782");
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

static const char ORDER[] =
    "[{\"name\":\"id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"qs\",\"type\":\"INT64\",\"mode\":\"REPEATED\"},"
    "{\"name\":\"tags\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
    "{\"name\":\"items\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
    "  {\"name\":\"quantity\",\"type\":\"INT64\"},{\"name\":\"price\",\"type\":\"FLOAT64\"},"
    "  {\"name\":\"sku\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"}]},"
    "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]},"
    "{\"name\":\"ingestion_time\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"}]";

static void
records_and_repeated(void **state)
{
    (void)state;
    lua_State *L = cjson_state(NULL);
    struct bp_schema *s = schema(ORDER);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct wf fs[64], sub[8];
    size_t nf;
    char why[300];
    struct bp_proto_row_meta meta = {"ingestion_time", 1704164645000001LL, 0};
    assert_int_equal(enc(L, s, "{ID = 'o1', qs = {1, -2, 300}, tags = {'a', 'b'}, "
                               "items = {{sku = 'x', quantity = 2, price = 9.5}, {sku = 'y'}}, "
                               "addr = {city = 'Oslo'}, Ingestion_Time = '2000-01-01'}",
                         &meta, &b, fs, &nf, why, sizeof(why)), 0);
    /* id, qs (packed), 2 tags, 2 items, addr, the row's ingestion_time, then meta's */
    assert_int_equal(nf, 9);
    assert_true(wire_is(wire_find(fs, nf, 1, 0), "o1"));     /* found case-insensitively */
    const struct wf *qs = wire_find(fs, nf, 2, 0);
    assert_int_equal(qs->wt, 2);
    size_t i = 0;
    assert_int_equal(wire_varint(qs->p, qs->n, &i), 1);
    assert_int_equal(wire_varint(qs->p, qs->n, &i), (uint64_t)-2LL);
    assert_int_equal(wire_varint(qs->p, qs->n, &i), 300);
    assert_int_equal(i, qs->n);
    assert_null(wire_find(fs, nf, 2, 1));
    assert_true(wire_is(wire_find(fs, nf, 3, 0), "a"));
    assert_true(wire_is(wire_find(fs, nf, 3, 1), "b"));
    const struct wf *it = wire_find(fs, nf, 4, 0);
    size_t ns = wire_fields(it->p, it->n, sub, 8);
    assert_int_equal(ns, 3);
    assert_true(wire_is(wire_find(sub, ns, 3, 0), "x"));
    assert_int_equal(wire_find(sub, ns, 1, 0)->u, 2);
    assert_true(dbl(wire_find(sub, ns, 2, 0)) == 9.5);
    it = wire_find(fs, nf, 4, 1);
    assert_int_equal(wire_fields(it->p, it->n, sub, 8), 1);
    it = wire_find(fs, nf, 5, 0);
    assert_int_equal(wire_fields(it->p, it->n, sub, 8), 1);
    assert_true(wire_is(&sub[0], "Oslo"));
    /* the meta column comes last, so a reader keeps it over the row's own */
    assert_int_equal(fs[nf - 1].num, 6);
    assert_int_equal(fs[nf - 1].u, 1704164645000001ULL);
    assert_int_equal(wire_find(fs, nf, 6, 0)->u, 946684800000000ULL);
    /* a REQUIRED meta column need not be in the row; empty arrays and null write nothing */
    assert_int_equal(enc(L, s, "{id = 'o2', qs = {}, addr = json.null, items = {}}", &meta, &b,
                         fs, &nf, why, sizeof(why)), 0);
    assert_int_equal(nf, 2);
    /* a RECORD of 200 bytes: its length needs 2 bytes of the 5 kept for it */
    assert_int_equal(enc(L, s, "{id = 'o3', addr = {city = string.rep('c', 200)}}", &meta, &b,
                         fs, &nf, why, sizeof(why)), 0);
    assert_int_equal(wire_find(fs, nf, 5, 0)->n, 203);
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

static void
errors_name_the_field(void **state)
{
    (void)state;
    lua_State *L = cjson_state(NULL);
    struct bp_schema *s = schema(ORDER);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_buf_append(&b, "keep", 4), 0);
    refused(L, s, "{id = 'o', nope = 1, ingestion_time = 0}", &b, "row field nope: no such field");
    refused(L, s, "{ingestion_time = 0}", &b, "row field id: missing REQUIRED field");
    refused(L, s, "{id = json.null, ingestion_time = 0}", &b,
            "row field id: missing REQUIRED field (null)");
    refused(L, s, "{id = 'o', ingestion_time = 0, items = {{sku = 's'}, {quantity = 1}}}", &b,
            "row field items[1].sku: missing REQUIRED field");
    refused(L, s, "{id = 'o', ingestion_time = 0, items = {{sku = 's'}, {sku = 't', "
                  "quantity = '3x'}}}", &b,
            "row field items[1].quantity: INT64 expected, got string \"3x\"");
    refused(L, s, "{id = 'o', ingestion_time = 0, qs = {1, json.null, 3}}", &b,
            "row field qs[1]: NULL in a REPEATED field");
    refused(L, s, "{id = 'o', ingestion_time = 0, qs = {1, nil, 3}}", &b,
            "row field qs[1]: NULL in a REPEATED field");
    refused(L, s, "{id = 'o', ingestion_time = 0, qs = 5}", &b,
            "row field qs: REPEATED field expected an array, got number 5");
    refused(L, s, "{id = 'o', ingestion_time = 0, qs = {a = 1}}", &b,
            "row field qs: REPEATED field expected an array, got object");
    refused(L, s, "{id = {'a'}, ingestion_time = 0}", &b,
            "row field id: array given for a field that is not REPEATED");
    refused(L, s, "{id = {}, ingestion_time = 0}", &b, "row field id: STRING expected, got table");
    refused(L, s, "{id = 'o', ingestion_time = 0, addr = 'x'}", &b,
            "row field addr: RECORD expected an object, got string \"x\"");
    refused(L, s, "{id = 'o', ingestion_time = 0, addr = {'x'}}", &b,
            "row field addr: RECORD expected an object, got array");
    refused(L, s, "{'a', 'b'}", &b, "the row is a list, not an object with named columns");
    refused(L, s, "{id = print, ingestion_time = 0}", &b,
            "row field id: STRING expected, got function");
    assert_int_equal(b.len, 4);
    /* not a table; the meta column must be a TIMESTAMP the table has */
    char why[300];
    lua_pushnumber(L, 1);
    assert_int_equal(bp_proto_row_append(s, L, -1, NULL, &b, why, sizeof(why)), -1);
    assert_string_equal(why, "the row is a number, not a table");
    lua_settop(L, 0);
    lua_newtable(L);
    struct bp_proto_row_meta meta = {"id", 0, 0};
    assert_int_equal(bp_proto_row_append(s, L, 1, &meta, &b, why, sizeof(why)), -1);
    assert_string_equal(why, "the table has no TIMESTAMP column id");
    /* the buffer's limit: an error, the buffer as it was */
    bp_buf_t small;
    bp_buf_init(&small, 64);
    refused(L, s, "{id = string.rep('x', 100), ingestion_time = 0}", &small,
            "the rows pass the request's size limit");
    assert_int_equal(small.len, 0);
    bp_buf_free(&small);
    bp_buf_free(&b);
    bp_schema_free(s);
    lua_close(L);
}

/* Rows C writes column by column (proto_put.c): the dead-letter table of the Dataflow format,
 * with its REPEATED RECORD of attributes; errors sticky, the buffer as it was. */
static void
c_values_column_by_column(void **state)
{
    (void)state;
    struct bp_schema *s = schema(
        "[{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"payloadString\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"payloadBytes\",\"type\":\"BYTES\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"attributes\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
        "  {\"name\":\"key\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
        "  {\"name\":\"value\",\"type\":\"STRING\"}]},"
        "{\"name\":\"attempts\",\"type\":\"INT64\"},{\"name\":\"attrs\",\"type\":\"JSON\"}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct bp_proto_put w;
    char err[300];
    bp_proto_put_begin(&w, s, &b);
    bp_proto_put_timestamp(&w, "timestamp", -1);
    bp_proto_put_string(&w, "payloadstring", "{\"a\":1}", 7);
    bp_proto_put_bytes(&w, "payloadBytes", "\0\xff", 2);
    for (int i = 0; i < 2; i++) {
        bp_proto_put_open(&w, "attributes");
        bp_proto_put_string(&w, "key", i ? "k2" : "k1", 2);
        if (i)
            bp_proto_put_string(&w, "value", "v", 1);
        bp_proto_put_close(&w);
    }
    bp_proto_put_int64(&w, "attempts", -3);
    bp_proto_put_string(&w, "attrs", "{}", 2);
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), 0);
    struct wf outer[2], fs[16], sub[4];
    assert_int_equal(wire_fields(b.data, b.len, outer, 2), 1);
    size_t nf = wire_fields(outer[0].p, outer[0].n, fs, 16);
    assert_int_equal(nf, 7);
    assert_int_equal((int64_t)wire_find(fs, nf, 1, 0)->u, -1);
    assert_true(wire_is(wire_find(fs, nf, 2, 0), "{\"a\":1}"));
    const struct wf *by = wire_find(fs, nf, 3, 0);
    assert_true(by->n == 2 && memcmp(by->p, "\0\xff", 2) == 0);
    const struct wf *a = wire_find(fs, nf, 4, 1);
    size_t ns = wire_fields(a->p, a->n, sub, 4);
    assert_int_equal(ns, 2);
    assert_true(wire_is(&sub[0], "k2") && wire_is(&sub[1], "v"));
    assert_int_equal((int64_t)wire_find(fs, nf, 5, 0)->u, -3);
    assert_true(wire_is(wire_find(fs, nf, 6, 0), "{}"));
    size_t kept = b.len;
    /* errors: the first one is kept, the row undone */
    static const char *const want[] = {
        "payloadString: missing REQUIRED column", "nope: no such column",
        "attempts: a INT64 column cannot take this value", "key: missing REQUIRED column",
        "1 RECORD(s) left open", "a RECORD closed that was not open",
    };
    for (int k = 0; k < 6; k++) {
        bp_proto_put_begin(&w, s, &b);
        bp_proto_put_timestamp(&w, "timestamp", 0);
        if (k != 0)
            bp_proto_put_string(&w, "payloadString", "", 0);
        bp_proto_put_bytes(&w, "payloadBytes", "", 0);
        if (k == 1)
            bp_proto_put_int64(&w, "nope", 1);
        if (k == 2)
            bp_proto_put_string(&w, "attempts", "1", 1);
        if (k == 3 || k == 4) {
            bp_proto_put_open(&w, "attributes");
            bp_proto_put_string(&w, "value", "v", 1);
            if (k == 3)
                bp_proto_put_close(&w);
        }
        if (k == 5)
            bp_proto_put_close(&w);
        if (k != 4)
            bp_proto_put_string(&w, "attrs", "{}", 2);    /* after an error: nothing */
        assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
        assert_string_equal(err, want[k]);
        assert_int_equal(b.len, kept);
    }
    bp_buf_t small;
    bp_buf_init(&small, 20);
    bp_proto_put_begin(&w, s, &small);
    bp_proto_put_timestamp(&w, "timestamp", 0);
    bp_proto_put_string(&w, "payloadString", "0123456789012345678901234", 25);
    bp_proto_put_bytes(&w, "payloadBytes", "", 0);
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
    assert_string_equal(err, "the rows pass the request's size limit");
    assert_int_equal(small.len, 0);
    bp_buf_free(&small);
    bp_buf_free(&b);
    bp_schema_free(s);
}

/* Runs Lua code, failing the test with its error. */
static void
lua_run(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != 0)
        fail_msg("%s: %s", code, lua_tostring(L, -1));
}

/* Generated schemas (every type and mode, RECORDs three deep, names that are not identifiers)
 * and rows (tests/unit/proto_gen.lua): written here, then decoded by protobufjs with the
 * descriptor written here and compared value by value (tests/unit/proto_check.js). */
#define DIFF_SCHEMAS 300
static void
differential_with_protobufjs(void **state)
{
    (void)state;
    if (getenv("BP_ALLOC_FAIL_AT") || getenv("BP_ALLOC_COUNT")) {
        print_message("  skipped: the protobufjs check runs Node, not under allocation faults\n");
        skip();
    }
    if (system("command -v node >/dev/null 2>&1") != 0) {
        print_message("  skipped: no node on the PATH for the protobufjs check\n");
        skip();
    }
    lua_State *L = cjson_state(NULL);
    lua_pushcfunction(L, bp_json_encode);
    lua_setglobal(L, "encode");
    lua_run(L, "package.path = '" SRC_ROOT "/tests/unit/?.lua;' .. package.path "
               "gen = require 'proto_gen' cases = {}");
    size_t total = 0;
    for (int seed = 1; seed <= DIFF_SCHEMAS; seed++) {
        char code[200], why[300];
        snprintf(code, sizeof(code), "F, R, E = gen.gen(%d) return assert(encode(F))", seed);
        lua_run(L, code);
        size_t n;
        const char *fields = lua_tolstring(L, -1, &n);
        struct bp_schema *s = bp_schema_from_json(fields, n, why, sizeof(why));
        if (!s)
            fail_msg("seed %d: %s: %s", seed, fields, why);
        lua_pop(L, 1);
        bp_buf_t desc, rows;
        bp_buf_init(&desc, 1 << 20);
        bp_buf_init(&rows, 1 << 24);
        if (bp_proto_descriptor(s, &desc, why, sizeof(why)) != 0)
            fail_msg("seed %d: %s", seed, why);
        lua_getglobal(L, "R");
        size_t nrows = lua_objlen(L, -1);
        for (size_t i = 1; i <= nrows; i++) {
            lua_rawgeti(L, -1, (int)i);
            if (bp_proto_row_append(s, L, -1, NULL, &rows, why, sizeof(why)) != 0)
                fail_msg("seed %d row %zu: %s", seed, i, why);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        total += nrows;
        lua_getglobal(L, "gen");
        lua_getfield(L, -1, "base64");
        lua_pushlstring(L, desc.data, desc.len);
        lua_call(L, 1, 1);
        lua_setglobal(L, "D");
        lua_getfield(L, -1, "base64");
        lua_pushlstring(L, rows.data, rows.len);
        lua_call(L, 1, 1);
        lua_setglobal(L, "B");
        lua_pop(L, 1);
        lua_run(L, "cases[#cases + 1] = {fields = F, descriptor = D, rows = B, expect = E}");
        bp_buf_free(&desc);
        bp_buf_free(&rows);
        bp_schema_free(s);
    }
    char path[] = "/tmp/bp_proto_cases_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char code[300];
    snprintf(code, sizeof(code), "local f = assert(io.open('%s', 'w')) "
             "f:write(assert(encode(cases))) f:close()", path);
    lua_run(L, code);
    lua_close(L);
    char cmd[600], out[4000];
    snprintf(cmd, sizeof(cmd), "node '%s/tests/unit/proto_check.js' '%s' "
             "'%s/tests/emulator/conformance' '%s/tests/emulator' 2>&1", SRC_ROOT, path, SRC_ROOT,
             SRC_ROOT);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = 0;
    int rc = pclose(p);
    unlink(path);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
        print_message("  skipped: protobufjs not installed (make deps-test, "
                      "tests/emulator/conformance)\n");
        skip();
    }
    print_message("  %zu rows; protobufjs: %s", total, out);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
        fail_msg("protobufjs disagrees:\n%s", out);
}

/* Writes n rows of L's global row() with proto_row.c as the batch loop does (row_protos.c) and
 * checks their JSON text (json_row.c) with schema_check.c: the rows written that the check
 * refuses (printed, the first 10) are returned; *written, *checked and *empty (rows refused for
 * an empty table in a REPEATED column) count. */
static int
writer_vs_check(lua_State *L, const struct bp_schema *s, int n, int *written, int *checked,
                int *empty_repeated)
{
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    int disagree = 0;
    struct bp_proto_row_meta loop = {.ts_column = NULL, .empty_repeated_fails = 1};
    for (int k = 0; k < n; k++) {
        lua_settop(L, 0);
        lua_getglobal(L, "row");
        assert_int_equal(lua_pcall(L, 0, 1, 0), 0);
        /* the JSON text the batch loop writes beside it (json_row.c) */
        lua_pushcfunction(L, bp_json_encode);
        lua_pushvalue(L, -2);
        assert_int_equal(lua_pcall(L, 1, 2, 0), 0);
        size_t jn = 0;
        const char *js = lua_tolstring(L, -2, &jn);
        char why[400] = "", cwhy[400] = "";
        bp_buf_reset(&b);
        int w = js && bp_proto_row_append(s, L, -3, &loop, &b, why, sizeof(why)) == 0;
        int c = js && bp_schema_check(s, js, jn, cwhy, sizeof(cwhy)) == 0;
        *written += w;
        *checked += c;
        if (!w && strstr(why, "got an empty table"))
            (*empty_repeated)++;
        if (w && !c && disagree++ < 10)
            print_message("written but refused by the check: %s (%s)\n", js, cwhy);
    }
    lua_settop(L, 0);
    bp_buf_free(&b);
    return disagree;
}

/* What the row writer takes the schema check takes too: dispatch.c skips the check of a row the
 * batch loop wrote as protobuf under the same schema, so a row the writer accepts but the check
 * refuses would reach the table instead of the dead letter. Random rows of every column type
 * (values of every kind, unknown and missing columns, REPEATED and RECORD), each written by
 * proto_row.c as the batch loop calls it (row_protos.c) and, as the JSON text json_row.c gives
 * it, checked by schema_check.c. An empty table in a REPEATED column is the case to watch: its
 * JSON text is "{}" (json_row.c cannot tell an empty array from an empty object), which the
 * check refuses, so the batch loop's writer refuses it too (empty_repeated_fails); without that
 * storage_write would store a row insertAll's check dead-letters. */
static void
rows_the_writer_takes_pass_the_schema_check(void **state)
{
    (void)state;
    lua_State *L = cjson_state(
        "I = require('bepipe.int64').make\n"
        "local vals = { 0, -5, 7, 1.5, -0.25, 2^53, 2^53 + 2, -(2^53), 1e300, 1e-300, -0.0,\n"
        "  1e3, 123456789012, I(2097152, 1), I(0, 5), I(2147483647, 4294967295),\n"
        "  I(2147483648, 0, true), true, false, json.null, '', 'abc', '0', '-42', ' -42 ',\n"
        "  '1.5', '1e5', '9223372036854775807', '9223372036854775808', '+3', '0x10', 'NaN',\n"
        "  'Infinity', '-Infinity', 'inf', 'true', 'false', 'TRUE', '1', 'QUJD', 'QUJ', 'QUJD\\n',\n"
        "  'not base64!', '2024-01-02', '2024-1-2', '2024-02-30', '0001-01-01', '9999-12-31',\n"
        "  '2024-01-02T03:04:05Z', '2024-01-02 03:04:05', '2024-01-02T03:04:05.123456+01:00',\n"
        "  '2024-01-02T03:04:05.1234567Z', '2024-01-02T24:00:00Z', '1700000000', '12:34:56',\n"
        "  '12:34:56.789', '25:00:00', '2024-01-02T03:04:05', '2024-01-02 03:04:05.5',\n"
        "  '{\"a\":1}', '[1,2]', 'null', '{bad', 'POINT(1 2)', '\\0', 'caf\\195\\169',\n"
        "  '\\255\\254', '123456789012345678901234567890.123456789', '1e400', '-1.5e-3',\n"
        "  '99999999999999999999999999999.999999999', '0.0000000001' }\n"
        "local cols = { 'i', 'f', 'ts', 'd', 'b', 's', 'n', 'by', 't', 'dt', 'j', 'g', 'ri',\n"
        "  'rs', 'rec', 'req', 'zz' }\n"
        "math.randomseed(20261208)\n"
        "local function value(depth)\n"
        "  local k = math.random(20)\n"
        "  if k == 1 and depth < 2 then\n"
        "    local t = {} for j = 1, math.random(0, 3) do t[j] = value(depth + 1) end return t\n"
        "  elseif k == 2 and depth < 2 then\n"
        "    return { x = value(depth + 1), y = value(depth + 1) }\n"
        "  end\n"
        "  return vals[math.random(#vals)]\n"
        "end\n"
        "function row()\n"
        "  local r = {}\n"
        "  for j = 1, math.random(0, 4) do r[cols[math.random(#cols)]] = value(0) end\n"
        "  if math.random(4) > 1 then r.req = vals[math.random(#vals)] end\n"
        "  return r\n"
        "end\n");
    struct bp_schema *s = schema(
        "[{\"name\":\"i\",\"type\":\"INT64\"},{\"name\":\"f\",\"type\":\"FLOAT64\"},"
        "{\"name\":\"ts\",\"type\":\"TIMESTAMP\"},{\"name\":\"d\",\"type\":\"DATE\"},"
        "{\"name\":\"b\",\"type\":\"BOOL\"},{\"name\":\"s\",\"type\":\"STRING\"},"
        "{\"name\":\"n\",\"type\":\"NUMERIC\"},{\"name\":\"by\",\"type\":\"BYTES\"},"
        "{\"name\":\"t\",\"type\":\"TIME\"},{\"name\":\"dt\",\"type\":\"DATETIME\"},"
        "{\"name\":\"j\",\"type\":\"JSON\"},{\"name\":\"g\",\"type\":\"GEOGRAPHY\"},"
        "{\"name\":\"ri\",\"type\":\"INT64\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rs\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"rec\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"x\",\"type\":\"INT64\"},"
        "{\"name\":\"y\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"}]},"
        "{\"name\":\"req\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"}]");
    int written = 0, checked = 0, empty_repeated = 0;
    int disagree = writer_vs_check(L, s, 60000, &written, &checked, &empty_repeated);
    print_message("%d of 60000 random rows written, %d passed the check, %d refused for an "
                  "empty REPEATED\n", written, checked, empty_repeated);
    assert_int_equal(disagree, 0);
    assert_true(empty_repeated > 0);    /* the generator reaches the case */
    assert_true(written > 1000);    /* the generator reaches rows both take */
    bp_schema_free(s);
    lua_close(L);
}

/* The same on nested columns: RECORDs three deep, REQUIRED columns inside a REPEATED RECORD,
 * BIGNUMERIC, and values of every shape (tables with number keys, arrays with holes, tables
 * mixing an array and named keys, RECORDs given arrays or scalars, keys in another case). */
static void
nested_rows_the_writer_takes_pass_the_schema_check(void **state)
{
    (void)state;
    lua_State *L = cjson_state(
        "I = require('bepipe.int64').make\n"
        "local vals = { 0, -1, 2.5, 2^53 - 1, 1e20, true, false, json.null, '', 'x', '12',\n"
        "  ' 7 ', '1e400', '-0', 'true', 'QUJD', '12:30', '2024-01-02', '2024-01-02T03:04:05',\n"
        "  '2024-01-02 03:04:05 UTC', '{}', '[1]', '123456789012345678901234567890123456789.1',\n"
        "  I(0, 7), 'caf\\195\\169' }\n"
        "local names = { 'a', 'b', 'c', 'r', 'A', 'R', 'bn', 'x', 'y', 'z', 'q' }\n"
        "math.randomseed(20261209)\n"
        "local function value(depth)\n"
        "  local k = math.random(12)\n"
        "  if depth < 4 and k <= 2 then\n"
        "    local t = {} for j = 1, math.random(0, 3) do t[j] = value(depth + 1) end\n"
        "    if math.random(6) == 1 then t[math.random(2, 5)] = nil end\n"
        "    if math.random(6) == 1 then t.a = value(depth + 1) end\n"
        "    return t\n"
        "  elseif depth < 4 and k <= 5 then\n"
        "    local t = {}\n"
        "    for j = 1, math.random(0, 3) do t[names[math.random(#names)]] = value(depth + 1) end\n"
        "    if math.random(8) == 1 then t[math.random(1, 3)] = value(depth + 1) end\n"
        "    return t\n"
        "  end\n"
        "  return vals[math.random(#vals)]\n"
        "end\n"
        "function row()\n"
        "  local r = {}\n"
        "  for j = 1, math.random(0, 4) do r[names[math.random(#names)]] = value(0) end\n"
        "  return r\n"
        "end\n");
    struct bp_schema *s = schema(
        "[{\"name\":\"a\",\"type\":\"INT64\"},{\"name\":\"bn\",\"type\":\"BIGNUMERIC\"},"
        "{\"name\":\"r\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
        "  {\"name\":\"x\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
        "  {\"name\":\"y\",\"type\":\"TIME\"},"
        "  {\"name\":\"z\",\"type\":\"RECORD\",\"fields\":["
        "    {\"name\":\"q\",\"type\":\"DATETIME\",\"mode\":\"REPEATED\"},"
        "    {\"name\":\"a\",\"type\":\"RECORD\",\"fields\":["
        "      {\"name\":\"b\",\"type\":\"BOOL\",\"mode\":\"REQUIRED\"},"
        "      {\"name\":\"c\",\"type\":\"BYTES\"}]}]}]},"
        "{\"name\":\"b\",\"type\":\"RECORD\",\"fields\":["
        "  {\"name\":\"x\",\"type\":\"FLOAT64\",\"mode\":\"REPEATED\"},"
        "  {\"name\":\"y\",\"type\":\"JSON\"},{\"name\":\"z\",\"type\":\"DATE\"}]},"
        "{\"name\":\"c\",\"type\":\"TIMESTAMP\",\"mode\":\"REPEATED\"}]");
    int written = 0, checked = 0, empty_repeated = 0;
    int disagree = writer_vs_check(L, s, 60000, &written, &checked, &empty_repeated);
    print_message("%d of 60000 random nested rows written, %d passed the check, %d refused for "
                  "an empty REPEATED\n", written, checked, empty_repeated);
    assert_int_equal(disagree, 0);
    assert_true(written > 1000);
    bp_schema_free(s);
    lua_close(L);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(int64_at_the_edges),
        cmocka_unit_test(floats_bools_and_text),
        cmocka_unit_test(text_not_utf8_as_its_json_reads_back),
        cmocka_unit_test(int64_refuses_a_fraction_the_double_lost),
        cmocka_unit_test(timestamps_and_dates),
        cmocka_unit_test(records_and_repeated),
        cmocka_unit_test(errors_name_the_field),
        cmocka_unit_test(c_values_column_by_column),
        cmocka_unit_test(differential_with_protobufjs),
        cmocka_unit_test(rows_the_writer_takes_pass_the_schema_check),
        cmocka_unit_test(nested_rows_the_writer_takes_pass_the_schema_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
