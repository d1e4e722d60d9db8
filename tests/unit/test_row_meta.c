/* Unit tests: metadata columns spliced into rows (row_meta.c) and dead letters in the Dataflow
 * template's format (dead_format.c): values, NULLs, the schema check of the spliced row, the
 * column checks of --check, base64 of every tail length, attributes as key/value records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dead_format.h"
#include "lua_host.h"
#include "row_meta.h"
#include "schema.h"

static bp_msg_t
msg(const char *data, const char *attrs, int attempt)
{
    bp_msg_t m;
    memset(&m, 0, sizeof(m));
    m.data = data;
    m.len = strlen(data);
    m.id = "1796169623716000";
    m.id_len = strlen(m.id);
    m.publish_time = 1764633600.25;   /* 2025-12-02T00:00:00.250000Z */
    m.attrs = attrs;
    m.attrs_len = attrs ? strlen(attrs) : 0;
    m.delivery_attempt = attempt;
    return m;
}

static char *
spliced(const char *row, unsigned mask, const bp_msg_t *m, const char *sub)
{
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_buf_append_str(&b, "{\"json\":"), 0);
    size_t at = b.len;
    assert_int_equal(bp_buf_append_str(&b, row), 0);
    assert_int_equal(bp_meta_splice(&b, at, mask, m, sub), 0);
    char *out = strndup(b.data + at, b.len - at);
    bp_buf_free(&b);
    return out;
}

static void
splice_writes_every_column(void **state)
{
    (void)state;
    bp_msg_t m = msg("{}", "{\"src\":\"web\"}", 3);
    char *r = spliced("{\"a\":1}", BP_META_ALL, &m, "projects/p/subscriptions/s");
    assert_string_equal(r, "{\"a\":1,\"message_id\":\"1796169623716000\",\"publish_time\":"
                        "\"2025-12-02T00:00:00.250000Z\",\"attributes\":\"{\\\"src\\\":"
                        "\\\"web\\\"}\",\"subscription_name\":\"projects/p/subscriptions/s\","
                        "\"delivery_attempt\":3}");
    free(r);
}

static void
splice_nulls_and_subsets(void **state)
{
    (void)state;
    bp_msg_t m = msg("{}", NULL, 0);
    m.publish_time = 0;
    char *r = spliced("{\"a\":1}", BP_META_ALL, &m, NULL);
    assert_string_equal(r, "{\"a\":1,\"message_id\":\"1796169623716000\",\"publish_time\":null,"
                        "\"attributes\":null,\"subscription_name\":null,"
                        "\"delivery_attempt\":null}");
    free(r);
    r = spliced("{}", BP_META_MESSAGE_ID | BP_META_DELIVERY_ATTEMPT, &m, NULL);
    assert_string_equal(r, "{\"message_id\":\"1796169623716000\",\"delivery_attempt\":null}");
    free(r);
    bp_buf_t b;
    bp_buf_init(&b, 1024);
    assert_int_equal(bp_buf_append_str(&b, "[1]"), 0);
    assert_int_equal(bp_meta_splice(&b, 0, BP_META_ALL, &m, NULL), -1);   /* not an object */
    bp_buf_free(&b);
    assert_int_equal(bp_meta_bit("delivery_attempt"), BP_META_DELIVERY_ATTEMPT);
    assert_int_equal(bp_meta_bit("ordering_key"), 0);
}

static const char TABLE[] =
    "{\"tableReference\":{\"tableId\":\"t\"},\"schema\":{\"fields\":["
    "{\"name\":\"a\",\"type\":\"INT64\"},{\"name\":\"message_id\",\"type\":\"STRING\","
    "\"mode\":\"REQUIRED\"},{\"name\":\"publish_time\",\"type\":\"TIMESTAMP\"},"
    "{\"name\":\"attributes\",\"type\":\"JSON\"},{\"name\":\"subscription_name\","
    "\"type\":\"STRING\"}]}}";

static void
spliced_row_passes_the_schema_and_missing_columns_are_named(void **state)
{
    (void)state;
    char why[512];
    struct bp_schema_set set = {0};
    char *bodies[] = { (char *)TABLE };
    assert_int_equal(bp_schema_set_add_resources(&set, bodies, 1, why, sizeof(why)), 0);
    const struct bp_schema *s = bp_schema_set_find(&set, "t");
    bp_msg_t m = msg("{}", "{\"k\":\"v\"}", 0);
    unsigned four = BP_META_ALL & ~BP_META_DELIVERY_ATTEMPT;
    char *r = spliced("{\"a\":1}", four, &m, "projects/p/subscriptions/s");
    assert_int_equal(bp_schema_check(s, r, strlen(r), why, sizeof(why)), 0);
    /* without the splice the REQUIRED message_id is missing: the check sees the full row */
    assert_int_equal(bp_schema_check(s, "{\"a\":1}", 7, why, sizeof(why)), -1);
    free(r);
    assert_int_equal(bp_meta_missing(s, four), -1);
    assert_int_equal(bp_meta_missing(s, BP_META_ALL), 4);
    struct bp_route routes[] = { { "inv", "t", BP_META_ALL }, { "other", "nodl", BP_META_ALL } };
    assert_int_equal(bp_meta_check_routes(routes, 2, &set, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "route inv asks for metadata column delivery_attempt, but "
                                "table t has no column delivery_attempt"));
    assert_non_null(strstr(why, "delivery_attempt INT64"));
    routes[0].metadata = four;
    assert_int_equal(bp_meta_check_routes(routes, 2, &set, why, sizeof(why)), 0);
    assert_int_equal(bp_dead_check_table(&set, "t", "dataflow", why, sizeof(why)), -1);
    assert_non_null(strstr(why, "dead_letter.table t has no column timestamp"));
    assert_int_equal(bp_dead_check_table(&set, "nodl", "dataflow", why, sizeof(why)), 0);
    bp_schema_set_clear(&set);
}

/* bp_dead_dataflow_entry of a dead letter without protobuf. */
static int
dataflow(bp_buf_t *b, const bp_msg_t *m, const char *stage, const char *reason,
         const char *etype, const char *now)
{
    struct bp_dead_letter d = {m, stage, reason, strlen(reason), etype, etype ? strlen(etype) : 0,
                               now, now};
    return bp_dead_dataflow_entry(b, &d, NULL);
}

/* The payloadBytes value of a dead letter of `data`. */
static char *
payload_bytes(const char *data, size_t len)
{
    bp_buf_t b;
    bp_buf_init(&b, 4 << 20);
    bp_msg_t m = msg("", NULL, 0);
    m.data = data;
    m.len = len;
    assert_int_equal(dataflow(&b, &m, "parse", "x", NULL, "2025-12-02T00:00:00.000000Z"), 0);
    assert_int_equal(bp_buf_append(&b, "", 1), 0);
    const char *p = strstr(b.data, "\"payloadBytes\":\"") + 16;
    char *out = strndup(p, (size_t)(strchr(p, '"') - p));
    bp_buf_free(&b);
    return out;
}

static void
dataflow_payload_bytes_is_base64_of_the_raw_payload(void **state)
{
    (void)state;
    const char *want[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy" };
    for (size_t n = 0; n <= 6; n++) {
        char *got = payload_bytes("foobar", n);
        assert_string_equal(got, want[n]);
        free(got);
    }
    char *got = payload_bytes("\xff\x00\xfe", 3);
    assert_string_equal(got, "/wD+");
    free(got);
    /* a 2 MB payload: the first 768 KiB, whole base64 groups */
    size_t big = 2u << 20;
    char *data = malloc(big);
    memset(data, 'a', big);
    got = payload_bytes(data, big);
    assert_int_equal(strlen(got), BP_DEAD_PAYLOAD_MAX);
    free(got);
    free(data);
}

static void
dataflow_row_has_the_templates_columns(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 4 << 20);
    bp_msg_t m = msg("{\"x\":1}", "{\"src\":\"web\",\"k\":\"v\"}", 0);
    assert_int_equal(dataflow(&b, &m, "validate", "x: must be a string", "order",
                              "2025-12-02T00:00:01.000000Z"), 0);
    assert_int_equal(bp_buf_append(&b, "", 1), 0);
    assert_string_equal(b.data,
        "{\"insertId\":\"1796169623716000\",\"json\":{\"timestamp\":"
        "\"2025-12-02T00:00:01.000000Z\",\"payloadString\":\"{\\\"x\\\":1}\",\"payloadBytes\":"
        "\"eyJ4IjoxfQ==\",\"attributes\":[{\"key\":\"src\",\"value\":\"web\"},{\"key\":\"k\","
        "\"value\":\"v\"}],\"errorMessage\":\"validate: x: must be a string\",\"stacktrace\":"
        "\"bepipe-lua stage validate, event_type order, message_id 1796169623716000, "
        "publish_time 2025-12-02T00:00:00.250000Z\"}}");
    /* without attributes: an empty REPEATED field */
    m = msg("{}", NULL, 0);
    assert_int_equal(dataflow(&b, &m, "parse", "p", NULL, "t"), 0);
    assert_int_equal(bp_buf_append(&b, "", 1), 0);
    assert_non_null(strstr(b.data, "\"attributes\":[],"));
    assert_non_null(strstr(b.data, "event_type -,"));
    bp_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splice_writes_every_column),
        cmocka_unit_test(splice_nulls_and_subsets),
        cmocka_unit_test(spliced_row_passes_the_schema_and_missing_columns_are_named),
        cmocka_unit_test(dataflow_payload_bytes_is_base64_of_the_raw_payload),
        cmocka_unit_test(dataflow_row_has_the_templates_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
