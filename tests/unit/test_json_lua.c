/* Unit tests: the fast decoder (json_lua.cpp) against lua-cjson, configured as
 * scripts/bepipe/host.lua configures it. Wherever the fast path answers, its value must be the
 * one lua-cjson gives (deep, with the sign of zero), but for integers past 2^53: those it gives
 * exactly, as int64 cdata, where lua-cjson rounds them to a double, and there bepipe.inexact
 * must find them in the text (the batch loop dead-letters what lua-cjson decoded with one, so
 * the two decoders never give different values). Where lua-cjson would answer differently or
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
#include "json_row.h"
#include "schema_scalar.h"


static lua_State *
state(void)
{
    lua_State *L = cjson_state(NULL);
    lua_pushcfunction(L, bp_json_lua_inexact);
    lua_setglobal(L, "inexact");
    return L;
}

/* Runs Lua code; fails the test with its error. */
static void
lua_ok(lua_State *L, const char *code)
{
    if (luaL_dostring(L, code) != 0)
        fail_msg("%s", lua_tostring(L, -1));
}

/* Whether bepipe.inexact finds an integer past 2^53 in the text. */
static int
has_inexact(lua_State *L, const char *text, size_t n)
{
    lua_getglobal(L, "inexact");
    lua_pushlstring(L, text, n);
    assert_int_equal(lua_pcall(L, 1, 1, 0), 0);
    int found = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return found;
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
        fail_msg("fast path decoded what lua-cjson refuses (%s): %.200s", lua_tostring(L, -1),
                 text);
    lua_getglobal(L, "agree");
    lua_insert(L, -3);
    assert_int_equal(lua_pcall(L, 2, 2, 0), 0);
    if (!lua_toboolean(L, -2))
        fail_msg("fast path and lua-cjson differ on: %.200s", text);
    int big = lua_toboolean(L, -1);
    if (big != has_inexact(L, text, n))
        fail_msg("bepipe.inexact %s an integer past 2^53 in: %.200s", big ? "misses" : "invents",
                 text);
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
    /* simdjson's DOM gives 0 for -0, lua-cjson -0.0: parsed again with -0 written -0.0 */
    assert_int_equal(cmp(L, "{\"a\":-0}"), FAST);
    assert_int_equal(cmp(L, "{\"a\":[1, -0 ],\"b\":-0.5,\"c\":-0e1,\"d\":1e-0,\"e\":0}"), FAST);
    assert_int_equal(cmp(L, "{\"s\":\"x\\\"-0\",\"-0\":[-0,\"-0\"],\"n\":-0}"), FAST);
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

/* A document over BP_JSON_LUA_MAX gets a parser of its own (so its integers stay exact); one
 * over BP_JSON_LUA_BIG_MAX goes to lua-cjson. */
static void
large_documents_are_decoded_too(void **st)
{
    (void)st;
    lua_State *L = state();
    size_t n = BP_JSON_LUA_BIG_MAX + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memcpy(big, "{\"a\":\"", 6);
    memset(big + 6, 'x', n - 8);
    memcpy(big + n - 2, "\"}", 2);
    big[n] = 0;
    assert_int_equal(compare(L, big, n), DECLINED);
    size_t m = BP_JSON_LUA_MAX + 16;
    memcpy(big + m - 27, "\",\"n\":123456789012345678}", 25);
    assert_int_equal(compare(L, big, m - 2), FAST);
    assert_int_equal(compare(L, big, BP_JSON_LUA_MAX - 2), DECLINED);    /* cut: invalid */
    assert_int_equal(compare(L, big, 1000), DECLINED);   /* cut: invalid */
    memcpy(big + 994, "\"}", 2);
    assert_int_equal(compare(L, big, 996), FAST);
    free(big);
    lua_close(L);
}

/* Decodes {"n":TEXT} with the fast path and writes n back (bp_json_encode): the text each
 * number reaches the row with. */
static const char *
through(lua_State *L, const char *num, char *out, size_t size)
{
    char text[200];
    snprintf(text, sizeof(text), "{\"n\":%s}", num);
    if (!bp_json_lua_push(L, text, strlen(text)))
        return NULL;
    lua_getfield(L, -1, "n");
    lua_remove(L, -2);
    lua_pushcfunction(L, bp_json_encode);
    lua_insert(L, -2);
    assert_int_equal(lua_pcall(L, 1, 1, 0), 0);
    snprintf(out, size, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return out;
}

static void
integers_are_exact_at_every_magnitude(void **st)
{
    (void)st;
    lua_State *L = state();
    /* the text in the event, the type the script sees, the text the row gets */
    static const char *const table[][3] = {
        {"1234567890123456", "number", "1234567890123456"},
        {"123456789012345678", "cdata", "123456789012345678"},
        {"1234567.8912345678", "number", "1234567.8912345678"},    /* the event's, not 1234567.8912345679 */
        {"9007199254740991", "number", "9007199254740991"},        /* 2^53 - 1 */
        {"9007199254740992", "cdata", "9007199254740992"},         /* 2^53 */
        {"-9007199254740992", "cdata", "-9007199254740992"},
        {"9007199254740993", "cdata", "9007199254740993"},         /* 2^53 + 1 */
        {"-9007199254740993", "cdata", "-9007199254740993"},
        {"9223372036854775807", "cdata", "9223372036854775807"},   /* 2^63 - 1 */
        {"-9223372036854775808", "cdata", "-9223372036854775808"}, /* -2^63 */
        /* past the int64 range: a double, as lua-cjson gives it */
        {"9223372036854775808", "number", "9.223372036854776e+18"},
        {"18446744073709551615", "number", "1.8446744073709552e+19"},
        {"-0.0", "number", "-0"},
        {"0.1", "number", "0.1"},
        {"1e300", "number", "1e+300"},
        {"5e-324", "number", "5e-324"},
        {"4.9406564584124654e-324", "number", "4.9406564584124654e-324"},
        {"2.2250738585072014e-308", "number", "2.2250738585072014e-308"},
        {"2.2250738585072009e-308", "number", "2.2250738585072009e-308"},  /* subnormal */
        {"0.30000000000000004", "number", "0.30000000000000004"},
        {"1.7976931348623157e308", "number", "1.7976931348623157e+308"},
        /* a double in the text: 2^53, whose row is the event's text (more than the double
         * carries), which INT64 refuses rather than store 9007199254740992 */
        {"9007199254740993.0", "number", "9007199254740993.0"},
        {"9007199254740992.5", "number", "9007199254740992.5"},
        {"9007199254740992.0", "number", "9007199254740992.0"},
        {"9007199254740991.0", "number", "9007199254740991"},
        {"-0", "number", "-0"},
    };
    char got[80];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (!through(L, table[i][0], got, sizeof(got)))
            fail_msg("%s: declined", table[i][0]);
        if (strcmp(got, table[i][2]) != 0)
            fail_msg("%s: row text %s, want %s", table[i][0], got, table[i][2]);
        char text[200];
        snprintf(text, sizeof(text), "{\"n\":%s}", table[i][0]);
        assert_true(bp_json_lua_push(L, text, strlen(text)));
        lua_getfield(L, -1, "n");
        if (strcmp(luaL_typename(L, -1), table[i][1]) != 0)
            fail_msg("%s: a %s, want a %s", table[i][0], luaL_typename(L, -1), table[i][1]);
        lua_pop(L, 2);
        assert_int_equal(compare(L, text, strlen(text)), FAST);
    }
    /* a script's arithmetic and comparisons on them */
    const char *text = "{\"a\":123456789012345678,\"b\":9007199254740993}";
    assert_true(bp_json_lua_push(L, text, strlen(text)));
    lua_setglobal(L, "ev");
    lua_ok(L, "assert(ev.a + 1 == 123456789012345679LL) "
                                      "assert(ev.b > 2^53 and ev.b == 9007199254740993LL) "
                                      "assert(require('bepipe.check').integer(ev.a)) "
                                      "assert(require('bepipe.int64').text(ev.a) == "
                                      "'123456789012345678')");
    /* past 64 bits: a double either way, declined here, lua-cjson's double in the loop */
    assert_null(through(L, "18446744073709551616", got, sizeof(got)));
    assert_null(through(L, "-9223372036854775809", got, sizeof(got)));
    lua_close(L);
}

static void
inexact_names_the_field(void **st)
{
    (void)st;
    lua_State *L = state();
    lua_ok(L,
        "local function t(s, path, digits)\n"
        "  local p, d = inexact(s)\n"
        "  assert(p == path and d == digits, s .. ': ' .. tostring(p) .. ' ' .. tostring(d))\n"
        "end\n"
        "t('{\"a\":1,\"b\":[1,2,{\"c\":123456789012345678}]}', 'b[2].c', '123456789012345678')\n"
        "t('{\"a\":-0,\"q\":-9007199254740993}', 'q', '-9007199254740993')\n"
        "t('{\"s\":\"x\\\\\" 9007199254740993\", \"k\" : 9007199254740993}', 'k',"
        " '9007199254740993')\n"
        "t('{\"a\":9007199254740992,\"b\":1e300,\"c\":9007199254740993.5}', nil, nil)\n"
        "t('{\"a\":18446744073709551616,\"b\":-9223372036854775809}', nil, nil)\n"
        "t('{\"a\":9223372036854775808,\"b\":18446744073709551615}', nil, nil)\n"
        "t('{\"a\":-9223372036854775808}', 'a', '-9223372036854775808')\n"
        "t('{\"a\":[[9223372036854775807]]}', 'a[0][0]', '9223372036854775807')\n");
    lua_close(L);
}

/* The schema check's verdict on a row's number text for a column of type t. */
static int
number_ok(enum bp_schema_type t, const char *row)
{
    size_t n = strlen(row);
    int simple = n > 0 && strspn(row + (row[0] == '-'), "0123456789") == n - (row[0] == '-');
    return bp_schema_number_ok(t, row, n, simple);
}

/* From 2^52 to 2^53 doubles are whole numbers, and a fraction in the text vanishes in the
 * double (4503599627370496.5 reads as 4503599627370496): the script sees that double, the row
 * gets the event's own text, which reads back to the same double (FLOAT64) and which INT64
 * refuses; a text whose value is an integer (4503599627370496.0, 4.503599627370496e15) stays
 * the integer's digits. */
static void
a_fraction_the_double_loses_never_reaches_int64(void **st)
{
    (void)st;
    lua_State *L = state();
    /* the text in the event, the double the script sees, the text the row gets, INT64 takes */
    static const struct {
        const char *text;
        double v;
        const char *row;
        int int64;
    } table[] = {
        {"4503599627370496.5", 4503599627370496.0, "4503599627370496.5", 0},
        {"-4503599627370496.5", -4503599627370496.0, "-4503599627370496.5", 0},
        {"4503599627370497.5", 4503599627370498.0, "4503599627370497.5", 0},  /* to even */
        {"45035996273704965e-1", 4503599627370496.0, "45035996273704965e-1", 0},
        {"6.0000000000000001e15", 6e15, "6.0000000000000001e15", 0},
        {"9007199254740990.5", 9007199254740990.0, "9007199254740990.5", 0},  /* 2^53 - 2 */
        {"-9007199254740991.4", -9007199254740991.0, "-9007199254740991.4", 0},
        /* below 2^52 in the text, 2^52 in the double */
        {"4503599627370495.9", 4503599627370496.0, "4503599627370495.9", 0},
        /* below 2^52 doubles are half apart: the fraction is kept, as ever */
        {"4503599627370495.5", 4503599627370495.5, "4503599627370495.5", 0},
        /* 2^53 in the double: the event's text, refused from 2^53 on as before */
        {"9007199254740991.5", 9007199254740992.0, "9007199254740991.5", 0},
        {"9.007199254740992e15", 9007199254740992.0, "9007199254740992.0", 0},
        /* exact: an integer on the digits */
        {"4503599627370496", 4503599627370496.0, "4503599627370496", 1},
        {"4503599627370496.0", 4503599627370496.0, "4503599627370496", 1},
        {"4.503599627370496e15", 4503599627370496.0, "4503599627370496", 1},
        {"-4503599627370496.000", -4503599627370496.0, "-4503599627370496", 1},
        {"6e15", 6e15, "6000000000000000", 1},
        {"9007199254740991.0", 9007199254740991.0, "9007199254740991", 1},
        {"4503599627370495", 4503599627370495.0, "4503599627370495", 1},
    };
    char got[80];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *t = table[i].text;
        if (!through(L, t, got, sizeof(got)))
            fail_msg("%s: declined", t);
        if (strcmp(got, table[i].row) != 0)
            fail_msg("%s: row text %s, want %s", t, got, table[i].row);
        if (number_ok(BP_SCHEMA_INT64, got) != table[i].int64)
            fail_msg("%s: INT64 %s row text %s", t, table[i].int64 ? "refuses" : "takes", got);
        if (!number_ok(BP_SCHEMA_FLOAT64, got) || strtod(got, NULL) != table[i].v)
            fail_msg("%s: FLOAT64 does not read %.17g back from %s", t, table[i].v, got);
        char text[200];
        snprintf(text, sizeof(text), "{\"n\":%s}", t);
        assert_true(bp_json_lua_push(L, text, strlen(text)));
        lua_getfield(L, -1, "n");
        if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) != table[i].v)
            fail_msg("%s: the script sees %s %.17g", t, luaL_typename(L, -1),
                     lua_tonumber(L, -1));
        lua_pop(L, 2);
        assert_int_equal(compare(L, text, strlen(text)), FAST);
    }
    size_t n;
    /* found among other numbers, strings holding digits, and -0 (the text parsed again) */
    const char *ev = "{\"s\":\"1.5 \\\" -2\",\"a\":[1.5,-0,{\"b\":-4503599627370496.5}],"
                     "\"c\":4503599627370499.5e0,\"d\":5e15}";
    assert_true(bp_json_lua_push(L, ev, strlen(ev)));
    lua_pop(L, 1);
    const char *lt = bp_json_lua_lost_text(-4503599627370496.0, &n);
    assert_non_null(lt);
    assert_int_equal(n, 19);
    assert_memory_equal(lt, "-4503599627370496.5", 19);
    assert_non_null(bp_json_lua_lost_text(4503599627370500.0, &n));
    assert_memory_equal(bp_json_lua_lost_text(4503599627370500.0, &n), "4503599627370499.5e0",
                        20);
    assert_null(bp_json_lua_lost_text(5e15, &n));
    assert_null(bp_json_lua_lost_text(4503599627370496.0, &n));    /* its sign is its own */
    /* the next event's decode forgets them */
    assert_true(bp_json_lua_push(L, "{\"d\":5e15}", 10));
    lua_pop(L, 1);
    assert_null(bp_json_lua_lost_text(-4503599627370496.0, &n));
    /* text the fast path declines (invalid UTF-8): bepipe.inexact notes what lua-cjson read */
    const char *bad = "{\"s\":\"\xff\",\"n\":4503599627370496.5}";
    assert_int_equal(compare(L, bad, strlen(bad)), DECLINED);
    assert_false(has_inexact(L, bad, strlen(bad)));
    assert_non_null(bp_json_lua_lost_text(4503599627370496.0, &n));
    /* a text lua-cjson reads but JSON does not write is never a row's: named instead */
    lua_ok(L, "local p, t, w = inexact('{\"s\":\"\\255\",\"n\":45035996273704965.e-1}') "
              "assert(p == 'n' and t == '45035996273704965.e-1' and w == 'fraction', "
              "tostring(p) .. ' ' .. tostring(t) .. ' ' .. tostring(w))");
    /* many in one event: every one noted, with its own text, by both decoders (repeats of
     * one double: the first text) */
    char many[4000] = "{\"x\":1,\"m\":[";
    for (int i = 0; i < 100; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%ld.5", i ? "," : "",
                 4600000000000000L + 2 * (i % 90));
    strcat(many, "]}");
    for (int path = 0; path < 2; path++) {
        if (path == 0)
            assert_int_equal(compare(L, many, strlen(many)), FAST);
        else
            assert_false(has_inexact(L, many, strlen(many)));
        for (int i = 0; i < 90; i++) {
            char want[40];
            snprintf(want, sizeof(want), "%ld.5", 4600000000000000L + 2 * i);
            const char *lt2 = bp_json_lua_lost_text((double)(4600000000000000L + 2 * i), &n);
            if (!lt2 || n != strlen(want) || memcmp(lt2, want, n) != 0)
                fail_msg("%s: noted as %.*s", want, lt2 ? (int)n : 4, lt2 ? lt2 : "none");
        }
        assert_null(bp_json_lua_lost_text(4600000000000001.0, &n));
        many[strlen(many) - 2] = 0;
        strcat(many, ",\"\xff\"]}");   /* the second time declined: lua-cjson's path */
    }
    /* a text longer than it keeps: declined by the fast path, named by bepipe.inexact */
    char longer[300] = "{\"x\":1,\"m\":[1.5,4600000000000000.5";
    for (int i = 0; i < 120; i++)
        strcat(longer, "1");
    strcat(longer, "]}");
    assert_int_equal(compare(L, longer, strlen(longer)), DECLINED);
    lua_getglobal(L, "inexact");
    lua_pushstring(L, longer);
    assert_int_equal(lua_pcall(L, 1, 3, 0), 0);
    assert_string_equal(lua_tostring(L, -3), "m[1]");
    assert_int_equal(strlen(lua_tostring(L, -2)), 18 + 120);
    assert_string_equal(lua_tostring(L, -1), "fraction");
    lua_close(L);
}

/* Below 2^52 a text of more than 15 significant digits can say more than its double too
 * (1.9999999999999999 reads as 2, 1234567.8912345678 as the double of 1234567.8912345679): the
 * row gets the event's text (FLOAT64 reads the same double, NUMERIC the event's value, INT64
 * refuses what is no integer on its digits); a text its double's shortest text equals in value
 * stays the shortest text; through both decoders. */
static void
a_fraction_below_2_52_the_double_loses_never_reaches_int64(void **st)
{
    (void)st;
    lua_State *L = state();
    static const struct {
        const char *text;
        double v;
        const char *row;
        int int64;
    } table[] = {
        {"1.9999999999999999", 2.0, "1.9999999999999999", 0},
        {"-1.9999999999999999", -2.0, "-1.9999999999999999", 0},
        {"0.99999999999999999", 1.0, "0.99999999999999999", 0},
        {"99999999999999.99999", 1e14, "99999999999999.99999", 0},
        {"1234567.8912345678", 1234567.8912345678, "1234567.8912345678", 0},
        {"1.00000000000000001e3", 1000.0, "1.00000000000000001e3", 0},
        {"0.10000000000000000555", 0.1, "0.10000000000000000555", 0},
        /* the same value as the shortest text: that text */
        {"2.0000000000000000", 2.0, "2", 1},
        {"1.5000000000000000000e0", 1.5, "1.5", 0},
        {"0.30000000000000004", 0.30000000000000004, "0.30000000000000004", 0},
        {"123456789012345.6", 123456789012345.6, "123456789012345.6", 0},
        {"0.1", 0.1, "0.1", 0},
        {"1.999999999999999", 1.999999999999999, "1.999999999999999", 0},   /* 16 digits */
    };
    char got[80];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *t = table[i].text;
        if (!through(L, t, got, sizeof(got)))
            fail_msg("%s: declined", t);
        if (strcmp(got, table[i].row) != 0)
            fail_msg("%s: row text %s, want %s", t, got, table[i].row);
        if (number_ok(BP_SCHEMA_INT64, got) != table[i].int64)
            fail_msg("%s: INT64 %s row text %s", t, table[i].int64 ? "refuses" : "takes", got);
        if (!number_ok(BP_SCHEMA_NUMERIC, got) || strtod(got, NULL) != table[i].v)
            fail_msg("%s: FLOAT64 does not read %.17g back from %s", t, table[i].v, got);
        char text[200];
        snprintf(text, sizeof(text), "{\"n\":%s}", t);
        assert_true(bp_json_lua_push(L, text, strlen(text)));
        lua_getfield(L, -1, "n");
        if (lua_type(L, -1) != LUA_TNUMBER || lua_tonumber(L, -1) != table[i].v)
            fail_msg("%s: the script sees %.17g", t, lua_tonumber(L, -1));
        lua_pop(L, 2);
        assert_int_equal(compare(L, text, strlen(text)), FAST);
        /* lua-cjson's path (declined: invalid UTF-8): bepipe.inexact notes the same */
        snprintf(text, sizeof(text), "{\"s\":\"\xff\",\"n\":%s}", t);
        assert_int_equal(compare(L, text, strlen(text)), DECLINED);
        assert_false(has_inexact(L, text, strlen(text)));
        size_t n;
        const char *lt = bp_json_lua_lost_text(table[i].v, &n);
        char sh[40];
        size_t shn = bp_json_number_text(sh, sizeof(sh), table[i].v);
        int noted = shn != strlen(table[i].row) || memcmp(sh, table[i].row, shn) != 0;
        if (!noted ? lt != NULL : !lt || n != strlen(t) || memcmp(lt, t, n) != 0)
            fail_msg("%s: lua-cjson's path notes %.*s", t, lt ? (int)n : 4, lt ? lt : "none");
    }
    /* found at every offset from 8-byte alignment (the quick look tests 8 bytes at a time),
     * the shortest at the very end of the text */
    for (int pad = 0; pad < 9; pad++) {
        char text[200];
        snprintf(text, sizeof(text), "{\"p\":\"%.*s\",\"n\":[1.5,1.9999999999999999]}", pad,
                 "xxxxxxxxx");
        assert_true(bp_json_lua_push(L, text, strlen(text)));
        lua_pop(L, 1);
        size_t n;
        const char *lt = bp_json_lua_lost_text(2.0, &n);
        if (!lt || n != 18 || memcmp(lt, "1.9999999999999999", 18) != 0)
            fail_msg("%s: not noted", text);
    }
    assert_true(bp_json_lua_push(L, "{\"n\":1.00000000000000001}", 25));
    lua_pop(L, 1);
    size_t n1;
    assert_non_null(bp_json_lua_lost_text(1.0, &n1));
    /* a text that underflows to 0 is noted for 0, never for -0.0 (found by the fuzz target:
     * -0.0 was written as that text, and read back as 0) */
    const char *under = "{\"z\":-0.0,\"n\":29007199254760993.2250738585072014e-3308}";
    assert_true(bp_json_lua_push(L, under, strlen(under)));
    lua_pop(L, 1);
    assert_non_null(bp_json_lua_lost_text(0.0, &n1));
    assert_null(bp_json_lua_lost_text(-0.0, &n1));
    assert_int_equal(compare(L, under, strlen(under)), FAST);
    /* digits in a string are no number */
    const char *str = "{\"s\":\"1.9999999999999999\",\"n\":2.5}";
    assert_true(bp_json_lua_push(L, str, strlen(str)));
    lua_pop(L, 1);
    assert_null(bp_json_lua_lost_text(2.0, &n1));
    lua_close(L);
}

/* An event from a writer of printf's %.17g (jansson, C and C++ serializers): most of its
 * doubles are written with 17 digits that say more than the double (0.41000000000000003), and
 * an event with many of them is ordinary data: decoded by the fast path, never dead-lettered. */
static void
many_17_digit_texts_are_not_dead_lettered(void **st)
{
    (void)st;
    lua_State *L = state();
    char text[2000];
    size_t k = (size_t)snprintf(text, sizeof(text), "{\"xs\":[");
    for (int i = 1; i <= 60; i++)
        k += (size_t)snprintf(text + k, sizeof(text) - k, "%s%.17g", i > 1 ? "," : "",
                              i / 10.0 + 0.01);
    k += (size_t)snprintf(text + k, sizeof(text) - k, "]}");
    assert_true(k < sizeof(text));
    int fast = compare(L, text, k) == FAST;
    if (has_inexact(L, text, k))
        fail_msg("lua-cjson's path refuses: %s", text);
    if (!fast)
        fail_msg("declined: %s", text);
    size_t n;
    const char *lt = bp_json_lua_lost_text(5.0099999999999998, &n);
    assert_non_null(lt);
    assert_memory_equal(lt, "5.0099999999999998", n);
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
        cmocka_unit_test(large_documents_are_decoded_too),
        cmocka_unit_test(integers_are_exact_at_every_magnitude),
        cmocka_unit_test(inexact_names_the_field),
        cmocka_unit_test(a_fraction_the_double_loses_never_reaches_int64),
        cmocka_unit_test(a_fraction_below_2_52_the_double_loses_never_reaches_int64),
        cmocka_unit_test(many_17_digit_texts_are_not_dead_lettered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
