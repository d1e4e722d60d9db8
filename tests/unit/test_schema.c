/* Unit tests: bp_schema (building from a table resource) and bp_schema_check (one row against a
 * schema). The agreement test runs every row of tests/unit/data/schema_verdicts.json, the
 * emulator's verdicts (tests/tools/schema_verdicts.js), through the C checker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lua_host.h"
#include "schema.h"

static const char ORDERS[] =
    "{\"tableReference\":{\"tableId\":\"orders\"},\"schema\":{\"fields\":["
    "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"amount\",\"type\":\"FLOAT64\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"ts\",\"type\":\"TIMESTAMP\"},"
    "{\"name\":\"items\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
    "{\"name\":\"product_id\",\"type\":\"STRING\"},{\"name\":\"quantity\",\"type\":\"INT64\"}]}]}}";

static struct bp_schema *
orders(void)
{
    char why[200];
    struct bp_schema *s = bp_schema_from_json(ORDERS, strlen(ORDERS), why, sizeof(why));
    assert_non_null(s);
    return s;
}

static const char *
verdict(const struct bp_schema *s, const char *row)
{
    static char why[300];
    if (bp_schema_check(s, row, strlen(row), why, sizeof(why)) == 0)
        return "ok";
    assert_true(why[0] != 0);
    return why;
}

static void
messages_name_the_path(void **state)
{
    (void)state;
    struct bp_schema *s = orders();
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1}"), "ok");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"methdo\":1}"),
                        "methdo: no such field");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\"}"), "amount: missing REQUIRED field");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":null}"),
                        "amount: missing REQUIRED field (null)");
    assert_string_equal(
        verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"items\":[{\"quantity\":1},"
                   "{\"quantity\":\"2\"},{\"quantity\":\"3x\"}]}"),
        "items[2].quantity: INT64 expected, got string \"3x\"");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"items\":{}}"),
                        "items: REPEATED field expected an array, got an object");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"items\":[null]}"),
                        "items[0]: NULL in a REPEATED field");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"items\":[5]}"),
                        "items[0]: RECORD expected an object, got number 5");
    assert_string_equal(verdict(s, "{\"order_id\":[\"o\"],\"amount\":1}"),
                        "order_id: array given for a field that is not REPEATED");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":{}}"),
                        "amount: FLOAT64 expected, got an object");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"ts\":\"soon\"}"),
                        "ts: TIMESTAMP expected, got string \"soon\"");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1,\"items\":[{\"x\":1}]}"),
                        "items[0].x: no such field");
    bp_schema_free(s);
}

static void
bad_json_and_row_limit(void **state)
{
    (void)state;
    struct bp_schema *s = orders();
    assert_string_equal(verdict(s, "[1]"), "row: not a JSON object");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1"), "row: invalid JSON at byte 26");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":01}"), "row: invalid JSON at byte 26");
    assert_string_equal(verdict(s, "{\"order_id\":\"o\",\"amount\":1} x"), "row: invalid JSON at byte 28");
    assert_string_equal(verdict(s, "{\"order_id\":\"a\x01\",\"amount\":1}"), "order_id: invalid JSON at byte 13");
    /* A row just over BigQuery's 10 MB limit is refused before it is even scanned. */
    size_t n = BP_SCHEMA_MAX_ROW + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    char why[200];
    assert_int_equal(bp_schema_check(s, big, n, why, sizeof(why)), -1);
    assert_string_equal(why, "row: 10000001 bytes, over BigQuery's row limit of 10000000 bytes");
    /* ... and one of almost 10 MB of STRING is fine. */
    int head = snprintf(big, n, "{\"order_id\":\"o\",\"amount\":1,\"items\":[{\"product_id\":\"");
    memset(big + head, 'a', BP_SCHEMA_MAX_ROW - (size_t)head - 4);
    memcpy(big + BP_SCHEMA_MAX_ROW - 4, "\"}]}", 4);
    assert_int_equal(bp_schema_check(s, big, BP_SCHEMA_MAX_ROW, why, sizeof(why)), 0);
    free(big);
    bp_schema_free(s);
}

/* Every proper prefix of a valid row is refused with a reason, reading nothing past its end
 * (each prefix in a buffer of its own size, for ASan; the fuzzer found `{"j":` read past). */
static void
every_truncation_is_refused(void **state)
{
    (void)state;
    struct bp_schema *s = orders();
    const char *row = "{\"order_id\":\"o\\u00e9\",\"amount\":-1.5e3,\"ts\":\"2024-01-02T03:04:05Z\","
                      "\"items\":[{\"product_id\":\"p\",\"quantity\":2},{\"quantity\":null}]}";
    size_t n = strlen(row);
    char why[300];
    assert_int_equal(bp_schema_check(s, row, n, why, sizeof(why)), 0);
    for (size_t k = 0; k < n; k++) {
        char *p = malloc(k ? k : 1);
        assert_non_null(p);
        memcpy(p, row, k);
        why[0] = 0;
        assert_int_equal(bp_schema_check(s, p, k, why, sizeof(why)), -1);
        assert_true(why[0] != 0);
        free(p);
    }
    bp_schema_free(s);
}

static void
schemas_that_are_refused(void **state)
{
    (void)state;
    char why[200];
    static const char *const bad[] = {
        "{\"fields\":[{\"name\":\"a\",\"type\":\"WORD\"}]}",
        "{\"fields\":[{\"name\":\"a\",\"type\":\"STRING\",\"mode\":\"SOMETIMES\"}]}",
        "{\"fields\":[{\"name\":\"a\",\"type\":\"RECORD\"}]}",
        "{\"fields\":[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"A\",\"type\":\"INT64\"}]}",
        "{\"fields\":[{\"type\":\"STRING\"}]}",
        "{\"schema\":{}}",
        "{\"fields\":[",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        assert_null(bp_schema_from_json(bad[i], strlen(bad[i]), why, sizeof(why)));
        assert_true(why[0] != 0);
    }
    bp_schema_free(NULL);
}

/* The emulator's location has no array indices and keeps the key's spelling. */
static void
strip_indices(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    for (; *in && o + 1 < cap; in++) {
        if (*in == '[') {
            while (*in && *in != ']')
                in++;
            if (!*in)
                break;
            continue;
        }
        out[o++] = *in;
    }
    out[o] = 0;
}

/* INT64 numbers: a bare integer on its digits, the whole int64 range and no more (one past 2^53
 * reaches the row exactly: the row writer writes 64-bit integers as their digits); a number with
 * a fraction or an exponent is a double, an integer only up to 2^53 (past it the text may be a
 * rounded value: 1.2345678901235e+17 was 123456789012345678 written with 14 digits), and only
 * when its digits are an integer (4503599627370496.5 reads as the double 4503599627370496). */
#define ROW_Q "{\"order_id\":\"o\",\"amount\":1,\"items\":[{\"quantity\":%s}]}"

static void
int64_numbers_are_exact(void **state)
{
    (void)state;
    struct bp_schema *s = orders();
    static const char *const ok[] = {
        "1", "-0", "123456789012345678", "9007199254740993", "9223372036854775807",
        "-9223372036854775808", "1e3", "9007199254740991.0", "-9e15", "9007199254740992",
        /* from 2^52 to 2^53: an integer on the text's digits */
        "4503599627370496.0", "4.503599627370496e15", "-4503599627370496.000", "0.5e1",
        "45035996273704960e-1",
    };
    static const char *const refused[] = {
        "9223372036854775808", "-9223372036854775809", "18446744073709551615",
        "1.2345678901235e+17", "9007199254740994.0", "1e19", "1.5",
        /* the double 2^53 may be a rounded 2^53 + 1 */
        "9007199254740992.0", "-9007199254740992.0", "9007199254740993.0", "9.007199254740993e15",
        /* a fraction its double loses (from 2^52 doubles are whole numbers; below, in a text
         * of 17 digits) */
        "4503599627370496.5", "-4503599627370496.5", "45035996273704965e-1", "9007199254740990.5",
        "4503599627370495.9", "1.00000000000000001", "2e-1",
    };
    char row[200];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(row, sizeof(row), ROW_Q, ok[i]);
        if (strcmp(verdict(s, row), "ok") != 0)
            fail_msg("%s refused: %s", ok[i], verdict(s, row));
    }
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(row, sizeof(row), ROW_Q, refused[i]);
        const char *v = verdict(s, row);
        if (strncmp(v, "items[0].quantity: INT64 expected", 33) != 0)
            fail_msg("%s: %s", refused[i], v);
    }
    bp_schema_free(s);
}

/* Where the checker is right and the emulator is not: the emulator reads a JSON number as a
 * double and takes 2^63 and 2^63 + 1 (both 2^63 as doubles) for INT64; the checker reads a bare
 * integer's digits, and the int64 range ends at 2^63 - 1 (BigQuery refuses past it). */
static int
int64_stricter(const char *row)
{
    return strcmp(row, "{\"req\":\"r\",\"i\":9223372036854775808}") == 0 ||
           strcmp(row, "{\"req\":\"r\",\"i\":9223372036854775809}") == 0;
}

static void
agrees_with_the_emulator(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *doc = json_load_file(SRC_ROOT "/tests/unit/data/schema_verdicts.json", 0, &jerr);
    assert_non_null(doc);
    json_t *schemas = json_object_get(doc, "schemas"), *rows = json_object_get(doc, "rows");
    size_t i, agree = 0, n = json_array_size(rows);
    json_t *r;
    json_array_foreach(rows, i, r) {
        char *text = json_dumps(json_object_get(schemas,
                                                json_string_value(json_object_get(r, "schema"))), 0);
        char why[300], path[300];
        struct bp_schema *s = bp_schema_from_json(text, strlen(text), why, sizeof(why));
        assert_non_null(s);
        const char *row = json_string_value(json_object_get(r, "row"));
        int ok = bp_schema_check(s, row, strlen(row), why, sizeof(why)) == 0;
        int want = json_is_true(json_object_get(r, "ok"));
        const char *loc = json_string_value(json_object_get(r, "loc"));
        if (int64_stricter(row)) {
            want = 0;
            loc = "i";
        }
        char *colon = strstr(why, ": ");
        if (colon)
            *colon = 0;
        strip_indices(why, path, sizeof(path));
        if (ok != want || (!ok && strcasecmp(path, loc) != 0))
            print_message("DISAGREE %s: emulator %s %s (%s), checker %s %s\n", row,
                          want ? "accepts" : "refuses", loc,
                          json_string_value(json_object_get(r, "msg")), ok ? "accepts" : "refuses",
                          ok ? "" : why);
        else
            agree++;
        bp_schema_free(s);
        free(text);
    }
    print_message("checker agrees with the emulator on %zu of %zu rows\n", agree, n);
    assert_int_equal(agree, n);
    json_decref(doc);
}

/* The shipped DDL, read by bepipe.ddl through the Lua host as the runtime does at start. */
static void
schemas_from_the_shipped_ddl(void **state)
{
    (void)state;
    char err[500];
    struct bp_lua_host *h = bp_lua_host_new(SRC_ROOT "/scripts/pipeline.lua", SRC_ROOT "/scripts",
                                            1, err, sizeof(err));
    if (!h)
        fail_msg("host: %s", err);
    char **bodies;
    size_t n;
    assert_int_equal(bp_lua_host_table_resources(h, SRC_ROOT "/ddl", "p", "d", &bodies, &n, err,
                                                 sizeof(err)), 0);
    struct bp_schema_set set = {0};
    assert_int_equal(bp_schema_set_add_resources(&set, bodies, n, err, sizeof(err)), 0);
    assert_int_equal(bp_schema_set_add_resources(&set, bodies, n, err, sizeof(err)), 0);
    assert_int_equal(set.n, n);     /* the same tables again replace, not add */
    const struct bp_schema *o = bp_schema_set_find(&set, "order_events");
    assert_non_null(o);
    assert_null(bp_schema_set_find(&set, "no_such_table"));
    assert_string_equal(verdict(o, "{\"order_id\":\"o\",\"items\":[{\"quantity\":1},"
                                   "{\"quantity\":2},{\"quantity\":\"3x\"}]}"),
                        "items[2].quantity: INT64 expected, got string \"3x\"");
    assert_string_equal(verdict(o, "{\"order_id\":\"o\",\"shipping_address\":{\"city\":\"c\","
                                   "\"zip\":1}}"), "shipping_address.zip: no such field");
    assert_string_equal(verdict(o, "{\"order_id\":\"o\",\"order_date\":\"2024-01-02T03:04:05Z\"}"),
                        "ok");
    char *bad = "{\"tableReference\":{\"tableId\":\"t\"},\"schema\":{\"fields\":[{\"name\":\"a\"}]}}";
    assert_int_equal(bp_schema_set_add_resources(&set, &bad, 1, err, sizeof(err)), -1);
    assert_string_equal(err, "table t: schema field without a name or a type");
    bp_schema_set_clear(&set);
    bp_schema_set_clear(&set);
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
    free(bodies);
    bp_lua_host_free(h);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_name_the_path),
        cmocka_unit_test(bad_json_and_row_limit),
        cmocka_unit_test(every_truncation_is_refused),
        cmocka_unit_test(schemas_that_are_refused),
        cmocka_unit_test(agrees_with_the_emulator),
        cmocka_unit_test(int64_numbers_are_exact),
        cmocka_unit_test(schemas_from_the_shipped_ddl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
