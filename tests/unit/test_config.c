/* Unit tests: the option table (defaults, ranges, types, flags), gs:// path splitting, the
 * endpoint form, and the defaults bp_config_finish fills (dead-letter table, state_dir). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "endpoints.h"

static struct bp_val
lua_string(const char *s)
{
    struct bp_val v = { BP_VAL_STRING, s, 0, 0 };
    return v;
}

static struct bp_val
lua_number(double x)
{
    struct bp_val v = { BP_VAL_NUMBER, NULL, x, 0 };
    return v;
}

static struct bp_val
lua_boolean(int b)
{
    struct bp_val v = { BP_VAL_BOOLEAN, NULL, 0, b };
    return v;
}

static struct bp_val
lua_other(const char *type)
{
    struct bp_val v = { BP_VAL_OTHER, type, 0, 0 };
    return v;
}

/* Sets key to v and expects a refusal whose message is "KEY: expected ..., got GOT". */
static void
refused(struct bp_config *c, const char *key, struct bp_val v, const char *got)
{
    char err[512], want[256];
    if (bp_config_set_value(c, key, &v, err, sizeof(err)) == 0)
        fail_msg("%s accepted a value it should refuse (%s)", key, got);
    snprintf(want, sizeof(want), "%s: expected ", key);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("%s: message does not name the key and what it expects: %s", key, err);
    snprintf(want, sizeof(want), ", got %s", got);
    if (strlen(err) < strlen(want) || strcmp(err + strlen(err) - strlen(want), want) != 0)
        fail_msg("%s: message does not end with the value (%s): %s", key, want, err);
}

static void
accepted(struct bp_config *c, const char *key, struct bp_val v)
{
    char err[512];
    if (bp_config_set_value(c, key, &v, err, sizeof(err)) != 0)
        fail_msg("%s refused a value it takes: %s", key, err);
}

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
    assert_string_equal(err, "bigquery.batch_rows: expected an integer in 1..50000, got \"2.5\"");
    assert_int_equal(bp_config_set(&c, "bigquery.batch_rows", "0", err, sizeof(err)), -1);
    assert_string_equal(err, "bigquery.batch_rows: expected an integer in 1..50000, got \"0\"");
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

/* Every option is type-checked against pipeline.lua's Lua types: an integer takes only a
 * number without a fraction in its range (not true, not "5", not 2.5), a switch true/false or
 * 1/0, a string option only a string; command-line text is parsed as the option's type. */
static void
every_option_is_type_checked(void **state)
{
    (void)state;
    size_t n;
    const struct bp_opt *o = bp_config_options(&n);
    struct bp_config c;
    bp_config_init(&c);
    char text[64];
    for (size_t i = 0; i < n; i++) {
        const char *k = o[i].key;
        refused(&c, k, lua_other("table"), "a table");
        refused(&c, k, lua_other("function"), "a function");
        if (o[i].type == BP_OPT_INT) {
            refused(&c, k, lua_boolean(1), "true");
            refused(&c, k, lua_string("5"), "\"5\"");
            snprintf(text, sizeof(text), "%ld.5", o[i].min);
            refused(&c, k, lua_number(o[i].min + 0.5), text);
            snprintf(text, sizeof(text), "%ld", o[i].max + 1);
            refused(&c, k, lua_number((double)o[i].max + 1), text);
            accepted(&c, k, lua_number((double)o[i].min));
            accepted(&c, k, lua_number((double)o[i].max));
            struct bp_val t = { BP_VAL_TEXT, "true", 0, 0 };
            refused(&c, k, t, "\"true\"");
            snprintf(text, sizeof(text), "%ld", o[i].min);
            t.text = text;
            accepted(&c, k, t);
        } else if (o[i].type == BP_OPT_BOOL) {
            refused(&c, k, lua_number(2), "2");
            refused(&c, k, lua_string("true"), "\"true\"");
            accepted(&c, k, lua_boolean(0));
            accepted(&c, k, lua_boolean(1));
            accepted(&c, k, lua_number(0));
            struct bp_val t = { BP_VAL_TEXT, "false", 0, 0 };
            accepted(&c, k, t);
            t.text = "maybe";
            refused(&c, k, t, "\"maybe\"");
        } else {
            refused(&c, k, lua_number(42), "42");
            refused(&c, k, lua_boolean(0), "false");
        }
    }
    bp_config_free(&c);
}

/* The strings the run refuses unless they have a form, refused when set, with the value. */
static void
string_forms_are_checked_when_set(void **state)
{
    (void)state;
    struct bp_config c;
    char err[512];
    bp_config_init(&c);
    refused(&c, "archive.path", lua_string("s3://bucket/x"), "\"s3://bucket/x\"");
    refused(&c, "archive.path", lua_number(42), "42");
    refused(&c, "archive.path", lua_string("gs:///x"), "\"gs:///x\"");
    accepted(&c, "archive.path", lua_string("gs://b/p"));
    refused(&c, "archive.time", lua_string("ingest"), "\"ingest\"");
    refused(&c, "dead_letter.format", lua_string("beam"), "\"beam\"");
    refused(&c, "auth.mode", lua_string("oauth"), "\"oauth\"");
    refused(&c, "source.subscription", lua_string("my-sub"), "\"my-sub\"");
    refused(&c, "source.subscription", lua_string("projects/p/topics/t"),
            "\"projects/p/topics/t\"");
    refused(&c, "source.subscription", lua_string("projects//subscriptions/s"),
            "\"projects//subscriptions/s\"");
    accepted(&c, "source.subscription", lua_string("projects/p/subscriptions/s"));
    refused(&c, "endpoints.pubsub", lua_string("ftp://host"), "\"ftp://host\"");
    refused(&c, "endpoints.storage", lua_string("http://host:99999"), "\"http://host:99999\"");
    refused(&c, "auth.token_url", lua_string("http:// x"), "\"http:// x\"");
    refused(&c, "route_field", lua_string(""), "\"\"");
    refused(&c, "bigquery.dataset", lua_string(""), "\"\"");
    assert_int_equal(bp_config_set(&c, "archive.path", "s3://bucket/x", err, sizeof(err)), -1);
    assert_string_equal(err, "archive.path: expected gs://BUCKET[/PREFIX], got \"s3://bucket/x\"");
    assert_string_equal(c.archive_path, "gs://b/p");   /* a refusal changes nothing */
    /* an option off by default is turned off again by "" */
    assert_int_equal(bp_config_set(&c, "local_out", "/tmp/x", err, sizeof(err)), 0);
    assert_int_equal(bp_config_set(&c, "local_out", "", err, sizeof(err)), 0);
    assert_null(c.local_out);
    bp_config_free(&c);
}

/* pipeline.lua's tables arrive flattened: a table where a value belongs ("route_field.table")
 * is named as such, a value where a section belongs too; an empty section sets nothing. */
static void
tables_where_values_belong(void **state)
{
    (void)state;
    struct bp_config c;
    char err[512];
    bp_config_init(&c);
    struct bp_val v = lua_string("x");
    assert_int_equal(bp_config_set_value(&c, "route_field.table", &v, err, sizeof(err)), -1);
    assert_string_equal(err, "route_field: expected the name of an event field, got a table");
    assert_int_equal(bp_config_set_value(&c, "archive.path.x", &v, err, sizeof(err)), -1);
    assert_string_equal(err, "archive.path: expected gs://BUCKET[/PREFIX], got a table");
    assert_int_equal(bp_config_set_value(&c, "source", &v, err, sizeof(err)), -1);
    assert_string_equal(err, "source: expected a table of source.* options, got \"x\"");
    v = lua_other("table");
    assert_int_equal(bp_config_set_value(&c, "source", &v, err, sizeof(err)), 0);
    /* the command line has no tables: an unknown key is just that */
    assert_int_equal(bp_config_set(&c, "route_field.table", "x", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unknown option 'route_field.table'"));
    bp_config_free(&c);
}

static void
endpoint_forms(void **state)
{
    (void)state;
    const char *good[] = { "localhost:8085", "http://127.0.0.1:9", "https://h/bigquery/v2",
                           "http://[::1]:8080", "host", "http://h_1.example:1/" };
    const char *bad[] = { "", "ftp://h", "http://", "http://:80", "h:0", "h:65536", "h:x",
                          "a b:1", "http://[::1", "http://h:80:90", "[::1]x" };
    for (size_t i = 0; i < BP_ARRAY_LEN(good); i++)
        if (!bp_endpoint_valid(good[i]))
            fail_msg("refused %s", good[i]);
    for (size_t i = 0; i < BP_ARRAY_LEN(bad); i++)
        if (bp_endpoint_valid(bad[i]))
            fail_msg("accepted %s", bad[i]);
}

/* dead_letter.format brings its own table unless one is named. */
static void
dead_letter_table_follows_the_format(void **state)
{
    (void)state;
    struct bp_config c;
    char err[512];
    bp_config_init(&c);
    assert_int_equal(bp_config_set(&c, "dead_letter.format", "dataflow", err, sizeof(err)), 0);
    assert_int_equal(bp_config_finish(&c, "/dev/null", err, sizeof(err)), 0);
    assert_string_equal(c.dead_letter_table, "events_error_records");
    bp_config_free(&c);
    bp_config_init(&c);
    assert_int_equal(bp_config_finish(&c, "/dev/null", err, sizeof(err)), 0);
    assert_string_equal(c.dead_letter_table, "rejected_events");
    bp_config_free(&c);
    bp_config_init(&c);
    assert_int_equal(bp_config_set(&c, "dead_letter.format", "dataflow", err, sizeof(err)), 0);
    assert_int_equal(bp_config_set(&c, "dead_letter.table", "mine", err, sizeof(err)), 0);
    assert_int_equal(bp_config_finish(&c, "/dev/null", err, sizeof(err)), 0);
    assert_string_equal(c.dead_letter_table, "mine");
    bp_config_free(&c);
}

static char *
state_dir_of(const char *pipeline, const char *explicit_dir)
{
    struct bp_config c;
    char err[512];
    bp_config_init(&c);
    if (explicit_dir)
        assert_int_equal(bp_config_set(&c, "state_dir", explicit_dir, err, sizeof(err)), 0);
    assert_int_equal(bp_config_finish(&c, pipeline, err, sizeof(err)), 0);
    char *dir = strdup(c.state_dir);
    bp_config_free(&c);
    return dir;
}

/* Two pipelines never share a suspects file by default; one pipeline (its workers, its
 * restarts, however its path is written) always has the same; an explicit state_dir is kept. */
static void
state_dir_is_per_pipeline(void **state)
{
    (void)state;
    char tmp[] = "/tmp/bp-test-config-XXXXXX", a[128], b[128], a2[160], xdg[160];
    assert_non_null(mkdtemp(tmp));
    snprintf(xdg, sizeof(xdg), "%s/state", tmp);
    setenv("XDG_STATE_HOME", xdg, 1);
    unsetenv("STATE_DIRECTORY");
    snprintf(a, sizeof(a), "%s/a.lua", tmp);
    snprintf(b, sizeof(b), "%s/b", tmp);
    assert_int_equal(mkdir(b, 0700), 0);
    snprintf(b, sizeof(b), "%s/b/a.lua", tmp);
    FILE *f = fopen(a, "w");
    assert_non_null(f);
    fclose(f);
    f = fopen(b, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(a2, sizeof(a2), "%s/b/../a.lua", tmp);
    char *da = state_dir_of(a, NULL), *db = state_dir_of(b, NULL), *da2 = state_dir_of(a2, NULL);
    char *dx = state_dir_of(a, "/srv/state");
    assert_string_not_equal(da, db);
    assert_string_equal(da, da2);
    assert_string_equal(dx, "/srv/state");
    snprintf(xdg, sizeof(xdg), "%s/state/bepipe-lua/a-", tmp);
    assert_true(strncmp(da, xdg, strlen(xdg)) == 0);
    assert_int_equal(strlen(da), strlen(xdg) + 12);
    /* a Kubernetes ConfigMap mounts pipeline.lua as a symlink through ..data into a folder
     * named after each update of the map: its state must outlive the updates */
    char cm[160], v1[200], v2[200], link[200], data[200], tmpl[200];
    snprintf(cm, sizeof(cm), "%s/cm", tmp);
    snprintf(v1, sizeof(v1), "%s/..2026_12_07_11_00_00.1", cm);
    snprintf(v2, sizeof(v2), "%s/..2026_12_07_12_00_00.2", cm);
    snprintf(data, sizeof(data), "%s/..data", cm);
    snprintf(tmpl, sizeof(tmpl), "%s/..data_tmp", cm);
    snprintf(link, sizeof(link), "%s/pipeline.lua", cm);
    assert_int_equal(mkdir(cm, 0700), 0);
    assert_int_equal(mkdir(v1, 0700), 0);
    assert_int_equal(mkdir(v2, 0700), 0);
    char f1[240], f2[240];
    snprintf(f1, sizeof(f1), "%s/pipeline.lua", v1);
    snprintf(f2, sizeof(f2), "%s/pipeline.lua", v2);
    fclose(fopen(f1, "w"));
    fclose(fopen(f2, "w"));
    assert_int_equal(symlink("..2026_12_07_11_00_00.1", data), 0);
    assert_int_equal(symlink("..data/pipeline.lua", link), 0);
    char *before = state_dir_of(link, NULL);
    assert_int_equal(symlink("..2026_12_07_12_00_00.2", tmpl), 0);
    assert_int_equal(rename(tmpl, data), 0);    /* the kubelet's atomic update */
    char *after = state_dir_of(link, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
    unlink(link);
    unlink(data);
    unlink(f1);
    unlink(f2);
    rmdir(v1);
    rmdir(v2);
    rmdir(cm);
    free(da);
    free(db);
    free(da2);
    free(dx);
    unlink(a);
    unlink(b);
    snprintf(b, sizeof(b), "%s/b", tmp);
    rmdir(b);
    rmdir(tmp);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_are_the_design_ones),
        cmocka_unit_test(set_parses_and_checks),
        cmocka_unit_test(seed_flags_map_to_options),
        cmocka_unit_test(archive_path_split),
        cmocka_unit_test(every_option_is_type_checked),
        cmocka_unit_test(string_forms_are_checked_when_set),
        cmocka_unit_test(tables_where_values_belong),
        cmocka_unit_test(endpoint_forms),
        cmocka_unit_test(dead_letter_table_follows_the_format),
        cmocka_unit_test(state_dir_is_per_pipeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
