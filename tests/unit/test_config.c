/* Unit tests: the option table (defaults, ranges, types, flags) and gs:// path splitting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static void
defaults_are_the_design_ones(void **state)
{
    (void)state;
    struct bp_config c;
    bp_config_init(&c);
    assert_int_equal(c.batch_rows, 500);
    assert_int_equal(c.batch_bytes, 5 * 1024 * 1024);
    assert_int_equal(c.batch_ms, 1000);
    assert_true(c.roll_seconds <= 60);
    assert_string_equal(c.bq_dataset, "backend_events_data");
    assert_string_equal(c.archive_path, "gs://backend_events_data/output");
    assert_null(c.input);
    bp_config_free(&c);
}

static void
set_parses_and_checks(void **state)
{
    (void)state;
    struct bp_config c;
    char err[256];
    bp_config_init(&c);
    assert_int_equal(bp_config_set(&c, "bigquery.batch_rows", "100", err, sizeof(err)), 0);
    assert_int_equal(c.batch_rows, 100);
    assert_int_equal(bp_config_set(&c, "bigquery.batch_rows", "250.0", err, sizeof(err)), 0);
    assert_int_equal(c.batch_rows, 250);
    assert_int_equal(bp_config_set(&c, "bigquery.batch_rows", "2.5", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an integer"));
    assert_int_equal(bp_config_set(&c, "bigquery.batch_rows", "0", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "out of range"));
    /* never over the API's 10 MB */
    assert_int_equal(bp_config_set(&c, "bigquery.batch_bytes", "10485760", err, sizeof(err)), -1);
    assert_int_equal(bp_config_set(&c, "no.such", "1", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown option"));
    assert_int_equal(bp_config_set(&c, "bigquery.dataset", "ds2", err, sizeof(err)), 0);
    assert_string_equal(c.bq_dataset, "ds2");
    struct bp_config d;
    bp_config_copy(&d, &c);
    assert_string_equal(d.bq_dataset, "ds2");
    assert_ptr_not_equal(d.bq_dataset, c.bq_dataset);
    bp_config_free(&c);
    bp_config_free(&d);
}

static void
seed_flags_map_to_options(void **state)
{
    (void)state;
    const char *flags[] = { "--input_subscription", "--bq_project", "--bq_dataset",
                            "--gcs_output_path", "--project", "--input", "--local-out" };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
        assert_non_null(bp_config_find_flag(flags[i]));
    assert_string_equal(bp_config_find_flag("--bq_dataset")->key, "bigquery.dataset");
    assert_null(bp_config_find_flag("--runner"));
}

static void
archive_path_split(void **state)
{
    (void)state;
    char *b, *p;
    assert_int_equal(bp_config_archive_split("gs://bucket/a/b/", &b, &p), 0);
    assert_string_equal(b, "bucket");
    assert_string_equal(p, "a/b");
    free(b);
    free(p);
    assert_int_equal(bp_config_archive_split("gs://bucket", &b, &p), 0);
    assert_string_equal(p, "");
    free(b);
    free(p);
    assert_int_equal(bp_config_archive_split("s3://bucket/x", &b, &p), -1);
    assert_int_equal(bp_config_archive_split("gs:///x", &b, &p), -1);
    assert_int_equal(bp_config_archive_split(NULL, &b, &p), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_design_ones),
        cmocka_unit_test(set_parses_and_checks),
        cmocka_unit_test(seed_flags_map_to_options),
        cmocka_unit_test(archive_path_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
