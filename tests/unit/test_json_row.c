/* Unit tests: the row writer (json_row.c) against lua-cjson, configured as
 * scripts/bepipe/host.lua configures it. Where the writer answers, its text must be lua-cjson's
 * byte for byte (with the ingestion_time member in place of the closing brace); where lua-cjson
 * would refuse or write something else, the writer must decline and leave the buffer as it was. */
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

/* expected(row): lua-cjson's text with MEMBER in place of the last brace, or nil, err */
static const char prelude[] =
    "function expected_g(row, member)\n"
    "  local ok, s = pcall(json.encode, row)\n"
    "  if not ok then return nil, s end\n"
    "  return s:sub(1, -2) .. member\n"
    "end\n";

static lua_State *
state(void)
{
    lua_State *L = cjson_state(prelude);
    lua_pushcfunction(L, bp_json_row_encode);
    lua_setglobal(L, "encode_row");
    return L;
}

enum verdict { WRITTEN, DECLINED };

/* Runs the writer on the row the Lua expression `expr` builds, compares with lua-cjson. */
static enum verdict
row(lua_State *L, bp_batch_t *b, const char *expr)
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
    lua_pushstring(L, MEMBER);
    assert_int_equal(lua_pcall(L, 3, 2, 0), 0);
    int written = lua_isnumber(L, -2);
    size_t off = (size_t)lua_tonumber(L, -2), len = (size_t)lua_tonumber(L, -1);
    lua_pop(L, 2);
    if (!written) {
        assert_int_equal(b->out_len, before);
        lua_settop(L, rowi - 1);
        return DECLINED;
    }
    assert_int_equal(off, before);
    assert_int_equal(b->out_len, before + len);
    lua_getglobal(L, "expected_g");
    lua_pushvalue(L, rowi);
    lua_pushstring(L, MEMBER);
    assert_int_equal(lua_pcall(L, 2, 2, 0), 0);
    if (lua_isnil(L, -2))
        fail_msg("%s: written, but lua-cjson refuses it: %s", expr, lua_tostring(L, -1));
    size_t el;
    const char *e = lua_tolstring(L, -2, &el);
    if (el != len || memcmp(e, b->out + off, len) != 0)
        fail_msg("%s:\n  writer:    %.*s\n  lua-cjson: %s", expr, (int)len, b->out + off, e);
    lua_settop(L, rowi - 1);
    return WRITTEN;
}

static bp_batch_t
batch(void)
{
    bp_batch_t b;
    memset(&b, 0, sizeof(b));
    return b;
}

static void
rows_are_written_as_lua_cjson_writes_them(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    assert_int_equal(row(L, &b, "{event_type='order', order_id='o-1', items={{product_id='p',"
                                "quantity=3, price=36.42}, {product_id='q', quantity=1, "
                                "price=0.05}}, total_amount=109.31, shipping_address={street="
                                "'1 Main St', city='Köln'}, gift=false, ok=true, "
                                "note=require('cjson').null, tags={}}"), WRITTEN);
    assert_int_equal(row(L, &b, "{a={1, nil, 3}, b={[2]='x'}, c={{}, {{}}}}"), WRITTEN);
    assert_int_equal(row(L, &b, "{url='https://x/y?a=\"b\"\\\\', t='\\t\\n\\r\\b\\f\\0\\127é'}"),
                     WRITTEN);
    /* every byte alone, as lua-cjson escapes it */
    char expr[128];
    for (int c = 0; c < 256; c++) {
        snprintf(expr, sizeof(expr), "{s=string.char(%d)}", c);
        assert_int_equal(row(L, &b, expr), WRITTEN);
    }
    /* an escape at every place of a long string (the writer tests 8 bytes a turn) */
    static const int special[] = {0, 10, 31, '"', '/', '\\', 127, 128, 255, ' ', 'a'};
    for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++)
        for (int at = 1; at <= 26; at++) {
            snprintf(expr, sizeof(expr), "{s=('x'):rep(%d) .. string.char(%d) .. ('y'):rep(%d)}",
                     at - 1, special[k], 26 - at);
            assert_int_equal(row(L, &b, expr), WRITTEN);
        }
    free(b.out);
    lua_close(L);
}

static void
numbers_are_lua_cjsons_fourteen_digits(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    static const char *const fixed[] = {
        "0", "-0", "1", "-1", "3", "1e13", "99999999999999", "-99999999999999", "1e14",
        "123456789012345", "2^53", "-2^53", "2^63", "1e300", "0.5", "-0.5", "0.05", "0.01",
        "0.1", "0.3", "0.1 + 0.2", "36.42", "1/3", "2/3", "1e-5", "-1e-7", "4.9e-324",
        "999999999999.99", "1e12 - 0.01", "1e12", "1e12 + 0.01", "123456789.12", "0.001",
        "1.005", "2.675", "1.15", "-109.26", "5e-324", "1.7976931348623157e308", "12.5",
    };
    char expr[128];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        snprintf(expr, sizeof(expr), "{n=%s}", fixed[i]);
        assert_int_equal(row(L, &b, expr), WRITTEN);
    }
    /* amounts in cents and near them, integers, and random doubles of every magnitude */
    srand(7);
    for (int i = 0; i < 20000; i++) {
        double v;
        switch (i % 4) {
        case 0: v = (rand() % 2000000000 - 1000000000) / 100.0; break;
        case 1: v = (double)((int64_t)rand() * rand()) * (i % 3 ? 1 : -1); break;
        case 2: v = ldexp((double)rand() / RAND_MAX, rand() % 200 - 100); break;
        default: v = (rand() % 100000) / 100.0 + (rand() % 3 - 1) * 1e-9; break;
        }
        snprintf(expr, sizeof(expr), "{n=%.17g}", v);
        assert_int_equal(row(L, &b, expr), WRITTEN);
    }
    free(b.out);
    lua_close(L);
}

static void
declines_what_lua_cjson_refuses_or_writes_otherwise(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_batch_t b = batch();
    assert_int_equal(row(L, &b, "{x=1}"), WRITTEN);   /* the buffer holds something already */
    assert_int_equal(row(L, &b, "{n=0/0}"), DECLINED);
    assert_int_equal(row(L, &b, "{n=1/0}"), DECLINED);
    assert_int_equal(row(L, &b, "{a={[1]=1, [20]=2}}"), DECLINED);     /* excessively sparse */
    assert_int_equal(row(L, &b, "{a={[1.5]=1}}"), DECLINED);           /* number key */
    assert_int_equal(row(L, &b, "{a={[true]=1}}"), DECLINED);
    assert_int_equal(row(L, &b, "{f=print}"), DECLINED);
    assert_int_equal(row(L, &b, "{u=io.stdout}"), DECLINED);
    assert_int_equal(row(L, &b, "{}"), DECLINED);                      /* no member to replace */
    assert_int_equal(row(L, &b, "{1, 2}"), DECLINED);                  /* not an object */
    assert_int_equal(row(L, &b, "(function() local t = {} for i = 1, 150 do t = {t} end "
                                "return {deep = t} end)()"), DECLINED);
    assert_int_equal(row(L, &b, "(function() local t = {} for i = 1, 90 do t = {t} end "
                                "return {deep = t} end)()"), WRITTEN);
    free(b.out);
    lua_close(L);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rows_are_written_as_lua_cjson_writes_them),
        cmocka_unit_test(numbers_are_lua_cjsons_fourteen_digits),
        cmocka_unit_test(declines_what_lua_cjson_refuses_or_writes_otherwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
