/* Unit tests: the fast decoder (json_lua.cpp) against lua-cjson, configured as
 * scripts/bepipe/host.lua configures it. Wherever the fast path answers, its value must be the
 * one lua-cjson gives (deep, with the sign of zero); where lua-cjson would answer differently or
 * refuse, the fast path must decline. Generated events must take the fast path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_ffi.h"
#include "cjson_state.h"
#include "json_lua.h"

static lua_State *
state(void)
{
    return cjson_state(NULL);
}

enum verdict { FAST, DECLINED };

/* Decodes text both ways; fails when the fast path answers with a value lua-cjson does not give
 * (or where lua-cjson refuses). Returns whether the fast path answered. */
static enum verdict
compare(lua_State *L, const char *text, size_t n)
{
    int top = lua_gettop(L);
    int fast = bp_json_lua_push(L, text, n);
    if (!fast) {
        assert_int_equal(lua_gettop(L), top);
        return DECLINED;
    }
    assert_int_equal(lua_gettop(L), top + 1);
    lua_getglobal(L, "json");
    lua_getfield(L, -1, "decode");
    lua_remove(L, -2);
    lua_pushlstring(L, text, n);
    if (lua_pcall(L, 1, 1, 0) != 0)
        fail_msg("fast path decoded what lua-cjson refuses (%s): %.200s", lua_tostring(L, -1), text);
    lua_getglobal(L, "same");
    lua_insert(L, -3);
    assert_int_equal(lua_pcall(L, 2, 1, 0), 0);
    if (!lua_toboolean(L, -1))
        fail_msg("fast path and lua-cjson differ on: %.200s", text);
    lua_settop(L, top);
    return FAST;
}

static enum verdict
cmp(lua_State *L, const char *text)
{
    return compare(L, text, strlen(text));
}

static void
events_take_the_fast_path_with_cjsons_values(void **st)
{
    (void)st;
    lua_State *L = state();
    assert_int_equal(cmp(L, "{\"event_type\":\"order\",\"order_id\":\"o-1\",\"items\":[{\"product_id\":"
                            "\"p\",\"quantity\":3,\"price\":36.42}],\"total_amount\":109.26,"
                            "\"shipping_address\":{\"street\":\"1 Main St\",\"city\":\"X\"},"
                            "\"note\":null,\"gift\":false,\"tags\":[],\"meta\":{}}"), FAST);
    assert_int_equal(cmp(L, "  {\"a\":\"\\u00e9\\ud83d\\ude00\\n\\\"\\/\\u0000\"} \n"), FAST);
    assert_int_equal(cmp(L, "{\"a\":1,\"a\":2}"), FAST);    /* the last key wins in both */
    assert_int_equal(cmp(L, "{\"a\":-0.0,\"b\":-1.5e-10,\"c\":1E5,\"d\":4.9e-324}"), FAST);
    assert_int_equal(cmp(L, "{\"a\":9007199254740993,\"b\":18446744073709551615,"
                            "\"c\":-9223372036854775808,\"d\":1e-400,\"e\":0}"), FAST);
    assert_int_equal(cmp(L, "{\"a\":[null,1,[2,[3]],{\"b\":[]}]}"), FAST);
    /* gen_events.lua's corpus, as the bench and the tests generate it */
    FILE *f = popen("luajit " SRC_ROOT "/tests/tools/gen_events.lua --count 3000 --seed 9 "
                    "--invalid-pct 10 --lateness live", "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0, fast = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        n++;
        fast += compare(L, line, (size_t)len) == FAST;
    }
    free(line);
    assert_int_equal(pclose(f), 0);
    assert_int_equal(n, 3000);
    /* only the invalid ones that are not JSON objects or hold -0 may decline */
    assert_true(fast > n * 85 / 100);
    lua_close(L);
}

static void
declines_where_cjson_differs_or_refuses(void **st)
{
    (void)st;
    lua_State *L = state();
    /* simdjson's DOM gives 0 for -0; lua-cjson -0.0 */
    assert_int_equal(cmp(L, "{\"a\":-0}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":[1, -0 ]}"), DECLINED);
    assert_int_equal(cmp(L, "{\"d\":\"2025-03-01\",\"a\":0}"), FAST);   /* "-0" in a string */
    /* lua-cjson takes these, simdjson does not: lua-cjson decides */
    assert_int_equal(cmp(L, "{\"a\":18446744073709551616}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":1e400}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":\"x\001y\"}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":\"\377\"}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":1.}"), DECLINED);
    /* both refuse */
    assert_int_equal(cmp(L, "{\"a\":\"\\ud800\"}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":01}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":1} x"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":tru}"), DECLINED);
    assert_int_equal(cmp(L, "{\"a\":1"), DECLINED);
    assert_int_equal(cmp(L, ""), DECLINED);
    /* not an object: the batch loop's own reason */
    assert_int_equal(cmp(L, "[1]"), DECLINED);
    assert_int_equal(cmp(L, "\"s\""), DECLINED);
    lua_close(L);
}

/* lua-cjson's limit is 64 levels; at 65 it refuses, and so must the fast path decline */
static void
depth_follows_cjsons_limit(void **st)
{
    (void)st;
    lua_State *L = state();
    char buf[1024];
    for (int d = 60; d <= 70; d++) {
        size_t n = 0;
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"a\":");
        for (int i = 1; i < d; i++)
            buf[n++] = '[';
        buf[n++] = '1';
        for (int i = 1; i < d; i++)
            buf[n++] = ']';
        buf[n++] = '}';
        buf[n] = 0;
        assert_int_equal(cmp(L, buf), d <= 64 ? FAST : DECLINED);
    }
    lua_close(L);
}

static void
batch_entry_reads_the_message_at_an_index(void **st)
{
    (void)st;
    lua_State *L = state();
    bp_msg_t msgs[2];
    memset(msgs, 0, sizeof(msgs));
    msgs[0].data = "{\"a\":1}";
    msgs[0].len = 7;
    msgs[1].data = "not json";
    msgs[1].len = 8;
    bp_batch_t b;
    memset(&b, 0, sizeof(b));
    b.msgs = msgs;
    b.n = 2;
    for (int i = -1; i <= 2; i++) {
        lua_pushcfunction(L, bp_json_lua_decode_msg);
        lua_pushlightuserdata(L, &b);
        lua_pushinteger(L, i);
        assert_int_equal(lua_pcall(L, 2, 1, 0), 0);
        assert_int_equal(lua_type(L, -1), i == 0 ? LUA_TTABLE : LUA_TNIL);
        lua_pop(L, 1);
    }
    lua_close(L);
}

/* A document over BP_JSON_LUA_MAX goes to lua-cjson (the parser's memory stays bounded). */
static void
large_documents_decline(void **st)
{
    (void)st;
    lua_State *L = state();
    size_t n = BP_JSON_LUA_MAX + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memcpy(big, "{\"a\":\"", 6);
    memset(big + 6, 'x', n - 8);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = 0;
    assert_int_equal(compare(L, big, n), DECLINED);
    assert_int_equal(compare(L, big, 1000), DECLINED);   /* cut: invalid */
    memcpy(big + 994, "\"}", 2);
    assert_int_equal(compare(L, big, 996), FAST);
    free(big);
    lua_close(L);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_take_the_fast_path_with_cjsons_values),
        cmocka_unit_test(declines_where_cjson_differs_or_refuses),
        cmocka_unit_test(depth_follows_cjsons_limit),
        cmocka_unit_test(batch_entry_reads_the_message_at_an_index),
        cmocka_unit_test(large_documents_decline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
