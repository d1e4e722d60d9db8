/* Unit tests: the Prometheus text writers (escaping, values, histograms), the whole /metrics
 * exposition of a hand-made snapshot, and the parsing of http.listen addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "httpd.h"
#include "metrics.h"

static char *
text_of(bp_buf_t *b)
{
    assert_int_equal(bp_buf_append(b, "", 1), 0);   /* NUL for the string compares */
    return b->data;
}

static void
family_and_samples(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct bp_label l[2] = { { "table", "a\"b\\c\nd" }, { "code", "200" } };
    assert_int_equal(bp_metrics_family(&b, "bepipe_x_total", "counter", "Help with \\ and\nnl."),
                     0);
    assert_int_equal(bp_metrics_sample(&b, "bepipe_x_total", l, 2, 12), 0);
    assert_int_equal(bp_metrics_sample(&b, "bepipe_x_total", NULL, 0, 0.25), 0);
    assert_int_equal(bp_metrics_sample(&b, "bepipe_x_total", NULL, 0, 9007199254740993.0), 0);
    assert_string_equal(text_of(&b),
                        "# HELP bepipe_x_total Help with \\\\ and\\nnl.\n"
                        "# TYPE bepipe_x_total counter\n"
                        "bepipe_x_total{table=\"a\\\"b\\\\c\\nd\",code=\"200\"} 12\n"
                        "bepipe_x_total 0.25\n"
                        "bepipe_x_total 9007199254740992\n");
    bp_buf_free(&b);
}

static void
histogram_is_cumulative_with_inclusive_bounds(void **state)
{
    (void)state;
    static const double bounds[] = { 0.1, 1, 10 };
    struct bp_hist h;
    bp_hist_init(&h, bounds, 3);
    bp_hist_observe(&h, 0.05);
    bp_hist_observe(&h, 0.1);    /* le is inclusive */
    bp_hist_observe(&h, 5);
    bp_hist_observe(&h, 100);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_metrics_hist(&b, "bepipe_t_seconds", "T.", &h), 0);
    assert_string_equal(text_of(&b),
                        "# HELP bepipe_t_seconds T.\n"
                        "# TYPE bepipe_t_seconds histogram\n"
                        "bepipe_t_seconds_bucket{le=\"0.1\"} 2\n"
                        "bepipe_t_seconds_bucket{le=\"1\"} 2\n"
                        "bepipe_t_seconds_bucket{le=\"10\"} 3\n"
                        "bepipe_t_seconds_bucket{le=\"+Inf\"} 4\n"
                        "bepipe_t_seconds_sum 105.15000000000001\n"
                        "bepipe_t_seconds_count 4\n");
    bp_buf_free(&b);
}

static void
full_buffer_is_an_error(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 16);
    assert_int_equal(bp_metrics_family(&b, "bepipe_long_name_total", "counter", "x"), -1);
    bp_buf_free(&b);
}

/* The whole of path, NUL-terminated (malloc'd). */
static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *s = calloc(1, 1 << 16);
    assert_non_null(s);
    size_t n = fread(s, 1, (1 << 16) - 1, f);
    assert_true(n > 0 && n < (1 << 16) - 1);
    fclose(f);
    return s;
}

/* A snapshot with a different value in every field, so that a value written under the wrong
 * name shows. */
static void
fill_snapshot(struct bp_metrics_snapshot *m, const struct bp_metrics_table *tables, size_t n)
{
    memset(m, 0, sizeof(*m));
    m->start_time = 1700000000.5;
    m->ready = 1;
    m->generation = 3;
    m->reloads = 4;
    m->reload_failures = 5;
    m->lua_memory = 6000000;
    m->log_lines_dropped = 7;
    m->read = 8;
    m->source = (struct bp_source_stats){ .skipped = 9, .pulled = 10, .acked = 11, .nacked = 12,
                                          .extended = 13, .pull_failures = 14,
                                          .ack_rejected = 15, .outstanding_bytes = 16 };
    m->outstanding = 17;
    m->tables = tables;
    m->ntables = n;
    m->insert_failures = 18;
    for (int s = BP_STAGE_OK; s <= BP_STAGE_SCHEMA; s++)
        m->dead[s] = 100 + (unsigned long)s;
    m->archive.objects = 19;
    m->archive.lines = 20;
    m->archive.bytes = 5000000000ULL;
    m->archive.failures = 21;
    m->archive.lines_compacted = 22;
    m->archive.lines_raw = 23;
    m->archive.redelivered = 24;
    m->quarantined = 25;
    m->http[BP_API_PUBSUB][200] = 26;
    m->http[BP_API_PUBSUB][0] = 27;
    m->http[BP_API_STORAGE][503] = 28;
    m->api = (struct bp_api_stats){ .retries = 29, .failures = 30, .token_refreshes = 31,
                                    .token_failures = 32 };
    bp_metrics_hists_init(&m->ack_latency, &m->batch_seconds);
    bp_hist_observe(&m->ack_latency, 0.3);
    bp_hist_observe(&m->ack_latency, 1000);
    bp_hist_observe(&m->batch_seconds, 0.002);
}

/* The whole exposition of a hand-made snapshot: every family in its order, HELP and TYPE even
 * without samples, labels from the snapshot's tables, stages and API answers. The expected text
 * (after the version) is tests/unit/data/metrics_snapshot.prom. */
static void
snapshot_renders_every_family(void **state)
{
    (void)state;
    struct bp_metrics_table tables[2] = { { "events", 33, 34 }, { "dead\"letters", 35, 0 } };
    struct bp_metrics_snapshot *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    fill_snapshot(m, tables, 2);
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_metrics_render(m, &b), 0);
    const char *text = text_of(&b);
    char *expected = read_file(SRC_ROOT "/tests/unit/data/metrics_snapshot.prom");
    const char *head = "# HELP bepipe_build_info Always 1; the label is the version.\n"
                       "# TYPE bepipe_build_info gauge\n"
                       "bepipe_build_info{version=\"";
    assert_memory_equal(text, head, strlen(head));
    const char *rest = strstr(text, "\"} 1\n# HELP bepipe_start_time_seconds ");
    assert_non_null(rest);
    assert_string_equal(rest + strlen("\"} 1\n"), expected);
    free(expected);
    bp_buf_free(&b);

    /* no tables, no API answers: the families are still there, without samples */
    fill_snapshot(m, NULL, 0);
    memset(m->http, 0, sizeof(m->http));
    bp_buf_init(&b, 1 << 20);
    assert_int_equal(bp_metrics_render(m, &b), 0);
    text = text_of(&b);
    assert_non_null(strstr(text, "# TYPE bepipe_rows_inserted_total counter\n"
                                 "# HELP bepipe_rows_rejected_total "));
    assert_non_null(strstr(text, "# TYPE bepipe_http_requests_total counter\n"
                                 "# HELP bepipe_api_retries_total "));
    bp_buf_free(&b);

    /* a full buffer is an error, never a cut exposition served as whole */
    fill_snapshot(m, tables, 2);
    bp_buf_init(&b, 4096);
    assert_int_equal(bp_metrics_render(m, &b), -1);
    bp_buf_free(&b);
    free(m);
}

static void
listen_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    int v6;
    char err[256];
    assert_int_equal(bp_httpd_parse_addr("127.0.0.1:9464", &ss, &v6, err, sizeof(err)), 0);
    assert_false(v6);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9464);
    assert_int_equal(ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr), 0x7f000001);
    assert_int_equal(bp_httpd_parse_addr("[::1]:0", &ss, &v6, err, sizeof(err)), 0);
    assert_true(v6);
    assert_int_equal(bp_httpd_parse_addr(":9464", &ss, &v6, err, sizeof(err)), 0);
    assert_false(v6);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(INADDR_ANY));
    const char *bad[] = { "9464", "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "::1:9464",
                          "[::1]9464", "host:port" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(bp_httpd_parse_addr(bad[i], &ss, &v6, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "http.listen"));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(family_and_samples),
        cmocka_unit_test(histogram_is_cumulative_with_inclusive_bounds),
        cmocka_unit_test(full_buffer_is_an_error),
        cmocka_unit_test(snapshot_renders_every_family),
        cmocka_unit_test(listen_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
