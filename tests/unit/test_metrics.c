/* Unit tests: the Prometheus text writers (escaping, values, histograms) and the parsing of
 * http.listen addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
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
        cmocka_unit_test(listen_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
