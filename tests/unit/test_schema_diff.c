/* Unit tests: bp_schema_diff (a DDL against the live table: the log line and the tables.patch
 * BigQuery accepts, or the change it refuses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_diff.h"

/* The live table as tables.get answers it: legacy type names, modes spelled out. */
static const char LIVE[] =
    "{\"tableReference\":{\"tableId\":\"orders\"},\"schema\":{\"fields\":["
    "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\",\"description\":\"id\"},"
    "{\"name\":\"amount\",\"type\":\"FLOAT\",\"mode\":\"NULLABLE\"},"
    "{\"name\":\"addr\",\"type\":\"RECORD\",\"mode\":\"NULLABLE\",\"fields\":["
    "{\"name\":\"city\",\"type\":\"STRING\",\"mode\":\"NULLABLE\"}]}]}}";

static void
diff(const char *ddl_fields, struct bp_schema_diff *d)
{
    char ddl[4096];
    snprintf(ddl, sizeof(ddl), "{\"tableReference\":{\"tableId\":\"orders\"},\"schema\":"
             "{\"fields\":[%s]}}", ddl_fields);
    assert_int_equal(bp_schema_diff(ddl, strlen(ddl), LIVE, strlen(LIVE), d), 0);
}

#define SAME \
    "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"}," \
    "{\"name\":\"Amount\",\"type\":\"FLOAT64\"}," \
    "{\"name\":\"addr\",\"type\":\"STRUCT\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}"

static void
aliases_and_case_agree(void **state)
{
    (void)state;
    struct bp_schema_diff d;
    diff(SAME, &d);
    assert_string_equal(d.summary, "");
    assert_string_equal(d.error, "");
    assert_null(d.patch);
    bp_schema_diff_free(&d);
}

static void
new_columns_and_record_fields_make_a_patch(void **state)
{
    (void)state;
    struct bp_schema_diff d;
    diff("{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
         "{\"name\":\"amount\",\"type\":\"FLOAT64\"},"
         "{\"name\":\"note\",\"type\":\"STRING\"},"
         "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"},"
         "{\"name\":\"zip\",\"type\":\"STRING\"}]},"
         "{\"name\":\"tags\",\"type\":\"STRING\",\"mode\":\"REPEATED\"}", &d);
    assert_string_equal(d.summary, "only in the DDL: addr.zip, note, tags");
    assert_string_equal(d.error, "");
    assert_int_equal(d.added, 3);
    assert_non_null(d.patch);
    /* the live fields first, as they are (the description kept), then the new ones */
    json_t *p = json_loads(d.patch, 0, NULL);
    json_t *f = json_object_get(json_object_get(p, "schema"), "fields");
    assert_int_equal(json_array_size(f), 5);
    const char *names[] = { "order_id", "amount", "addr", "note", "tags" };
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(f, i), "name")),
                            names[i]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(f, 0), "description")),
                        "id");
    assert_string_equal(json_string_value(json_object_get(json_array_get(f, 1), "type")), "FLOAT");
    json_t *addr = json_object_get(json_array_get(f, 2), "fields");
    assert_int_equal(json_array_size(addr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(addr, 1), "name")), "zip");
    json_decref(p);
    bp_schema_diff_free(&d);
}

static void
required_relaxed_to_nullable(void **state)
{
    (void)state;
    struct bp_schema_diff d;
    diff("{\"name\":\"order_id\",\"type\":\"STRING\"},{\"name\":\"amount\",\"type\":\"FLOAT\"},"
         "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}",
         &d);
    assert_string_equal(d.summary, "mode differs: order_id (DDL NULLABLE, table REQUIRED)");
    assert_string_equal(d.error, "");
    assert_int_equal(d.relaxed, 1);
    assert_non_null(strstr(d.patch, "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"NULLABLE\""));
    bp_schema_diff_free(&d);
}

/* Each change BigQuery refuses: named in error, no patch; the summary still lists it. */
static void
refused_changes_name_the_column(void **state)
{
    (void)state;
    static const struct { const char *fields, *summary, *error; } cases[] = {
        { "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}",
          "only in the table: amount", "column amount is in the table but not in the DDL" },
        { "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"amount\",\"type\":\"INT64\"},"
          "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}",
          "type differs: amount (DDL INT64, table FLOAT64)",
          "column amount: the DDL says INT64, the table FLOAT64" },
        { "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"amount\",\"type\":\"FLOAT\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}",
          "mode differs: amount (DDL REQUIRED, table NULLABLE)",
          "column amount: the DDL says REQUIRED, the table NULLABLE" },
        { SAME ",{\"name\":\"must\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"}",
          "only in the DDL: must", "new column must is REQUIRED" },
        { "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"amount\",\"type\":\"FLOAT\"},"
          "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"INT64\"}]}",
          "type differs: addr.city (DDL INT64, table STRING)", "column addr.city: the DDL says" },
        { "{\"name\":\"order_id\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
          "{\"name\":\"amount\",\"type\":\"FLOAT\",\"mode\":\"REPEATED\"},"
          "{\"name\":\"addr\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"city\",\"type\":\"STRING\"}]}",
          "mode differs: amount (DDL REPEATED, table NULLABLE)", "column amount: the DDL says" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bp_schema_diff d;
        diff(cases[i].fields, &d);
        assert_string_equal(d.summary, cases[i].summary);
        if (strncmp(d.error, cases[i].error, strlen(cases[i].error)) != 0)
            fail_msg("case %zu: error '%s'", i, d.error);
        assert_null(d.patch);
        bp_schema_diff_free(&d);
    }
}

static void
not_a_schema(void **state)
{
    (void)state;
    struct bp_schema_diff d;
    assert_int_equal(bp_schema_diff("{}", 2, LIVE, strlen(LIVE), &d), -1);
    assert_non_null(strstr(d.error, "DDL"));
    assert_int_equal(bp_schema_diff(LIVE, strlen(LIVE), "not json", 8, &d), -1);
    assert_non_null(strstr(d.error, "live table"));
    assert_null(d.patch);
}

/* A long list is cut, never overflows. */
static void
long_lists_are_cut(void **state)
{
    (void)state;
    char fields[60000];
    size_t len = (size_t)snprintf(fields, sizeof(fields), "%s", SAME);
    for (int i = 0; i < 500; i++)
        len += (size_t)snprintf(fields + len, sizeof(fields) - len,
                                ",{\"name\":\"a_rather_long_column_name_%d\",\"type\":\"STRING\"}", i);
    char ddl[65536];
    snprintf(ddl, sizeof(ddl), "{\"schema\":{\"fields\":[%s]}}", fields);
    struct bp_schema_diff d;
    assert_int_equal(bp_schema_diff(ddl, strlen(ddl), LIVE, strlen(LIVE), &d), 0);
    assert_int_equal(d.added, 500);
    assert_non_null(strstr(d.summary, "..."));
    assert_true(strlen(d.summary) < sizeof(d.summary));
    assert_non_null(d.patch);
    bp_schema_diff_free(&d);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(aliases_and_case_agree),
        cmocka_unit_test(new_columns_and_record_fields_make_a_patch),
        cmocka_unit_test(required_relaxed_to_nullable),
        cmocka_unit_test(refused_changes_name_the_column),
        cmocka_unit_test(not_a_schema),
        cmocka_unit_test(long_lists_are_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
