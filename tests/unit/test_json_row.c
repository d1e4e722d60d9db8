/* Unit tests: the row writer (json_row.c). Strings byte for byte as lua-cjson writes them but for
 * the escapes JSON does not need ('/' and DEL go as they are); every number as the shortest text
 * that reads back to the same double (integers below 2^53 as their digits), computed here another
 * way; 64-bit integers exactly; a value that cannot be written is an error naming its field,
 * with the buffer as it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_ffi.h"
#include "cjson_state.h"
#include "json_row.h"

static const char MEMBER[] = ",\"ingestion_time\":\"2026-12-02T04:00:00.000000Z\"}";

/* expected_g(row, member): lua-cjson's text without its needless escapes, with member in place
 * of the last brace (rows of strings, booleans, null and small integers only), or nil, err */
static const char prelude[] =
    "function expected_g(row, member)\n"
    "  local ok, s = pcall(json.encode, row)\n"
    "  if not ok then return nil, s end\n"
    "  s = s:gsub('\\\\/', '/'):gsub('\\\\u007f', '\\127')\n"
    "  return s:sub(1, -2) .. member\n"
    "end\n";

static lua_State *
state(void)
{
    lua_State *L = cjson_state(prelude);
    lua_pushcfunction(L, bp_json_row_encode);
    lua_setglobal(L, "encode_row");
    lua_pushcfunction(L, bp_json_encode);
    lua_setglobal(L, "encode");
    return L;
}

/* Runs the writer on the row the Lua expression `expr` builds. Returns the text written (after
 * checking offset and length), or NULL with the reason in *why and the buffer unchanged. */
static const char *
write_row(lua_State *L, bp_batch_t *b, const char *expr, const char *member, size_t *len,
          char *why, size_t whylen)
{
    char code[8192];
    snprintf(code, sizeof(code), "return %s", expr);
    if (luaL_dostring(L, code) != 0)
        fail_msg("%s: %s", expr, lua_tostring(L, -1));
    int rowi = lua_gettop(L);
    size_t before = b->out_len;
    lua_getglobal(L, "encode_row");
    lua_pushlightuserdata(L, b);
    lua_pushvalue(L, rowi);
    lua_pushstring(L, member);
    assert_int_equal(lua_pcall(L, 3, 2, 0), 0);
    if (!lua_isnumber(L, -2)) {
        assert_true(lua_isnil(L, -2));
        snprintf(why, whylen, "%s", lua_tostring(L, -1));
        assert_int_equal(b->out_len, before);
        lua_settop(L, rowi - 1);
        return NULL;
    }
    size_t off = (size_t)lua_tonumber(L, -2);
    *len = (size_t)lua_tonumber(L, -1);
    assert_int_equal(off, before);
    assert_int_equal(b->out_len, before + *len);
    lua_settop(L, rowi - 1);
    return b->out + off;
}

/* The row must be written as expected_g says. */
static void
row_as_cjson(lua_State *L, bp_batch_t *b, const char *expr)
{
    size_t len;
    char why[300];
    const char *t = write_row(L, b, expr, MEMBER, &len, why, sizeof(why));
    if (!t)
        fail_msg("%s: refused: %s", expr, why);
    char code[8192];
    snprintf(code, sizeof(code), "return expected_g(%s, ...)", expr);
    assert_int_equal(luaL_loadstring(L, code), 0);
    lua_pushstring(L, MEMBER);
    assert_int_equal(lua_pcall(L, 1, 2, 0), 0);
    if (lua_isnil(L, -2))
        fail_msg("%s: written, but lua-cjson refuses it: %s", expr, lua_tostring(L, -1));
    size_t el;
    const char *e = lua_tolstring(L, -2, &el);
    if (el != len || memcmp(e, t, len) != 0)
        fail_msg("%s:\n  writer:   %.*s\n  expected: %s", expr, (int)len, t, e);
    lua_pop(L, 2);
}

/* The row must be refused with a reason containing `want`. */
static void
row_refused(lua_State *L, bp_batch_t *b, const char *expr, const char *want)
{
    size_t len;
    char why[300];
    const char *t = write_row(L, b, expr, MEMBER, &len, why, sizeof(why));
    if (t)
        fail_msg("%s: written as %.*s", expr, (int)len, t);
    if (!strstr(why, want))
        fail_msg("%s: reason %s lacks %s", expr, why, want);
}

/* The text of the number the Lua expression gives, as the writer writes it ({n=...}). */
static void
number_text(lua_State *L, bp_batch_t *b, const char *expr, char *out, size_t size)
{
    char row[300];
    size_t len;
    char why[300];
    snprintf(row, sizeof(row), "{n=%s}", expr);
    const char *t = write_row(L, b, row, "}", &len, why, sizeof(why));
    if (!t)
        fail_msg("%s: refused: %s", expr, why);
    assert_true(len > 6 && memcmp(t, "{\"n\":", 5) == 0 && t[len - 1] == '}');
    snprintf(out, size, "%.*s", (int)(len - 6), t + 5);
}

static bp_batch_t
batch(void)
{
    bp_batch_t b;
    memset(&b, 0, sizeof(b));
    return b;
}

static void
strings_and_rows_escape_only_what_json_needs(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    row_as_cjson(L, &b, "{event_type='order', order_id='o-1', items={{product_id='p',"
                        "quantity=3}, {product_id='q', quantity=1}}, shipping_address={street="
                        "'1 Main St', city='Köln'}, gift=false, ok=true, "
                        "note=require('cjson').null, tags={}}");
    row_as_cjson(L, &b, "{a={1, nil, 3}, b={[2]='x'}, c={{}, {{}}}}");
    row_as_cjson(L, &b, "{url='https://x/y?a=\"b\"\\\\', t='\\t\\n\\r\\b\\f\\0\\127é'}");
    /* every byte alone */
    char expr[128];
    for (int c = 0; c < 256; c++) {
        snprintf(expr, sizeof(expr), "{s=string.char(%d)}", c);
        row_as_cjson(L, &b, expr);
    }
    /* an escape at every place of a long string (the writer tests 8 bytes a turn) */
    static const int special[] = {0, 10, 31, '"', '/', '\\', 127, 128, 255, ' ', 'a'};
    for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++)
        for (int at = 1; at <= 26; at++) {
            snprintf(expr, sizeof(expr), "{s=('x'):rep(%d) .. string.char(%d) .. ('y'):rep(%d)}",
                     at - 1, special[k], 26 - at);
            row_as_cjson(L, &b, expr);
        }
    /* '/' as it is: a long URL-like text stays its own size (lua-cjson doubled it) */
    size_t len;
    char why[300];
    const char *t = write_row(L, &b, "{s=('/'):rep(100000)}", "}", &len, why, sizeof(why));
    assert_non_null(t);
    assert_int_equal(len, 100000 + 8);
    /* an empty row gets the member alone; "}" leaves a row as it is */
    t = write_row(L, &b, "{}", MEMBER, &len, why, sizeof(why));
    assert_non_null(t);
    assert_int_equal(len, strlen(MEMBER));
    assert_memory_equal(t, "{\"ingestion_time\"", 17);
    t = write_row(L, &b, "{a=1}", "}", &len, why, sizeof(why));
    assert_non_null(t);
    assert_int_equal(len, 7);
    assert_memory_equal(t, "{\"a\":1}", 7);
    /* number keys are written as strings, as lua-cjson writes them */
    t = write_row(L, &b, "{a={[1.5]=1}}", "}", &len, why, sizeof(why));
    assert_non_null(t);
    assert_memory_equal(t, "{\"a\":{\"1.5\":1}}", len);
    free(b.out);
    lua_close(L);
}

/* The shortest "%.*g" text that strtod reads back to v; integers below 2^53 as "%.0f". */
static void
reference(double v, char *out, size_t size)
{
    if (fabs(v) < 9007199254740992.0 && v == floor(v)) {
        snprintf(out, size, "%s%.0f", signbit(v) ? "-" : "", fabs(v));
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, size, "%.*g", p, v);
        if (strtod(out, NULL) == v)
            break;
    }
    /* from 2^53 on, bare digits would pass for an exact integer: a double's get ".0" */
    if (fabs(v) >= 9007199254740992.0 && !strpbrk(out, ".e"))
        strncat(out, ".0", size - strlen(out) - 1);
}

static void
numbers_are_the_shortest_text_of_their_double(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    static const char *const fixed[] = {
        "0", "-0", "1", "-1", "3", "1e13", "99999999999999", "-99999999999999", "1e14",
        "123456789012345", "2^53", "-2^53", "2^53 - 1", "2^63", "1e300", "0.5", "-0.5",
        "0.05", "0.01", "0.1", "0.3", "0.1 + 0.2", "36.42", "1/3", "2/3", "1e-5", "-1e-7",
        "4.9e-324", "999999999999.99", "1e12 - 0.01", "1e12", "1e12 + 0.01", "123456789.12",
        "0.001", "1.005", "2.675", "1.15", "-109.26", "5e-324", "1.7976931348623157e308",
        "12.5", "1234567.8912345678", "1234567890123456", "2.2250738585072014e-308",
        "2.2250738585072009e-308", "1e15 + 0.5", "1e23", "-1e-300",
    };
    char got[64], want[64], expr[128];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        number_text(L, &b, fixed[i], got, sizeof(got));
        snprintf(expr, sizeof(expr), "return %s", fixed[i]);
        assert_int_equal(luaL_dostring(L, expr), 0);
        double v = lua_tonumber(L, -1);
        lua_pop(L, 1);
        reference(v, want, sizeof(want));
        if (strcmp(got, want) != 0)
            fail_msg("%s: writer %s, shortest %s", fixed[i], got, want);
    }
    /* the figures users saw changed, and the old text of each */
    static const char *const table[][2] = {
        {"1234567890123456", "1234567890123456"},    /* was 1.2345678901235e+15 */
        {"1234567.8912345678", "1234567.8912345679"},    /* the same double; was 1234567.8912346 */
        {"0.1", "0.1"},
        {"1e300", "1e+300"},
        {"2^53 - 1", "9007199254740991"},    /* was 9.007199254741e+15 */
        {"-0", "-0"},
        {"5e-324", "5e-324"},    /* was 4.9406564584125e-324 */
        {"2.2250738585072014e-308", "2.2250738585072014e-308"},    /* was 2.2250738585072e-308 */
        {"0.1 + 0.2", "0.30000000000000004"},    /* was 0.3 */
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        number_text(L, &b, table[i][0], got, sizeof(got));
        if (strcmp(got, table[i][1]) != 0)
            fail_msg("%s: writer %s, want %s", table[i][0], got, table[i][1]);
    }
    /* amounts in cents and near them, integers, and random doubles of every magnitude */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        double v;
        switch (i % 5) {
        case 0: v = (rand() % 2000000000 - 1000000000) / 100.0; break;
        case 1: v = (double)((int64_t)rand() * rand()) * (i % 3 ? 1 : -1); break;
        case 2: v = ldexp((double)rand() / RAND_MAX, rand() % 2000 - 1000); break;
        case 3: v = ldexp((double)rand(), rand() % 40); break;
        default: v = (rand() % 100000) / 100.0 + (rand() % 3 - 1) * 1e-9; break;
        }
        snprintf(expr, sizeof(expr), "%.17g", v);
        number_text(L, &b, expr, got, sizeof(got));
        reference(v, want, sizeof(want));
        if (strcmp(got, want) != 0)
            fail_msg("%s: writer %s, shortest %s", expr, got, want);
        assert_true(strtod(got, NULL) == v);
    }
    free(b.out);
    lua_close(L);
}

/* int64_t / uint64_t cdata, as the decoder carries integers past 2^53: their exact digits */
static void
integers_past_2_53_are_written_exactly(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    static const char *const table[][2] = {
        {"9007199254740993LL", "9007199254740993"},
        {"-9007199254740993LL", "-9007199254740993"},
        {"123456789012345678LL", "123456789012345678"},
        {"9223372036854775807LL", "9223372036854775807"},
        {"-9223372036854775807LL - 1", "-9223372036854775808"},
        {"18446744073709551615ULL", "18446744073709551615"},
        {"require('bepipe.int64').make(0x1b69b4b, 0xa630f34e, false)", "123456789012345678"},
        {"require('bepipe.int64').make(0xffffffff, 0xffffffff, false)", "-1"},
        {"require('bepipe.int64').make(0xffffffff, 0xffffffff, true)", "18446744073709551615"},
    };
    char got[64];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        number_text(L, &b, table[i][0], got, sizeof(got));
        if (strcmp(got, table[i][1]) != 0)
            fail_msg("%s: writer %s, want %s", table[i][0], got, table[i][1]);
    }
    /* a double past 2^53 may hold a rounded integer (12345678901234567.0 is the double
     * 12345678901234568): never bare digits, which an INT64 column would take as exact */
    static const char *const dbl[][2] = {
        {"2^53 + 2", "9007199254740994.0"},
        {"-(2^53 + 2)", "-9007199254740994.0"},
        {"12345678901234567", "12345678901234568.0"},
        {"99999999999999990", "9.999999999999998e+16"},
        /* 2^53 is also the double of 9007199254740993.0 (the decoder carries an integer
         * written 2^53 as a cdata) */
        {"2^53", "9007199254740992.0"},
        {"-(2^53)", "-9007199254740992.0"},
        {"2^53 - 1", "9007199254740991"},
        {"1e16", "1e+16"},
        {"1e17", "1e+17"},
        {"2^63", "9.223372036854776e+18"},
    };
    for (size_t i = 0; i < sizeof(dbl) / sizeof(dbl[0]); i++) {
        number_text(L, &b, dbl[i][0], got, sizeof(got));
        if (strcmp(got, dbl[i][1]) != 0)
            fail_msg("%s: writer %s, want %s", dbl[i][0], got, dbl[i][1]);
    }
    /* other cdata are not numbers */
    row_refused(L, &b, "{p=require('ffi').new('int[1]')}",
                "row field p: a cdata other than int64_t / uint64_t cannot be written");
    row_refused(L, &b, "{p=require('ffi').new('double', 1)}", "row field p: a cdata");
    free(b.out);
    lua_close(L);
}

static void
values_that_cannot_be_written_name_their_field(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    row_as_cjson(L, &b, "{x=1}");    /* the buffer holds something already */
    row_refused(L, &b, "{n=0/0}", "row field n: NaN is not a JSON number");
    row_refused(L, &b, "{a={b={1, 2, 1/0}}}", "row field a.b[2]: inf is not a JSON number");
    row_refused(L, &b, "{a=-1/0}", "row field a: -inf is not a JSON number");
    row_refused(L, &b, "{items={{price=1}, {price=print}}}",
                "row field items[1].price: a function cannot be written");
    row_refused(L, &b, "{u=io.stdout}", "row field u: a userdata cannot be written");
    row_refused(L, &b, "{c=coroutine.create(print)}", "row field c: a thread cannot be written");
    row_refused(L, &b, "{a={[1]=1, [20]=2}}", "row field a: an excessively sparse array");
    row_refused(L, &b, "{a={[true]=1}}", "row field a: the table has a key of type boolean");
    row_refused(L, &b, "{1, 2}", "the row is a list");
    row_refused(L, &b, "(function() local t = {} t.self = t return {a = {t}} end)()",
                "row field a[0].self: the table contains itself");
    row_refused(L, &b, "(function() local t = {} for i = 1, 150 do t = {t} end "
                       "return {deep = t} end)()", "nested deeper than 100");
    row_as_cjson(L, &b, "(function() local t = {} for i = 1, 90 do t = {t} end "
                        "return {deep = t} end)()");
    /* the same table twice, not inside itself, is fine */
    row_as_cjson(L, &b, "(function() local t = {1} return {a = t, b = {t, t}} end)()");
    free(b.out);
    lua_close(L);
}

/* bepipe.encode: any value to a string, as the row writer writes it */
static void
encode_gives_the_text_or_the_reason(void **st)
{
    (void)st;
    lua_State *L = state();
    assert_int_equal(luaL_dostring(L, "local s = encode({a={1.5, 'x/y', 123456789012345678LL}}) "
                                      "assert(s == '{\"a\":[1.5,\"x/y\",123456789012345678]}', s) "
                                      "assert(encode(0.1) == '0.1') "
                                      "local n, why = encode({f=print}) "
                                      "assert(n == nil and why:find('row field f'), why)"), 0);
    lua_close(L);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(strings_and_rows_escape_only_what_json_needs),
        cmocka_unit_test(numbers_are_the_shortest_text_of_their_double),
        cmocka_unit_test(integers_past_2_53_are_written_exactly),
        cmocka_unit_test(values_that_cannot_be_written_name_their_field),
        cmocka_unit_test(encode_gives_the_text_or_the_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
