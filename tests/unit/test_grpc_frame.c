/* Unit tests: gRPC's message prefix and trailer values (grpc_frame.c) on hostile input - messages
 * split at every byte, zero-length messages, a length over the cap (no allocation), a 4 GiB
 * length, the compressed flag, a reply cut mid-prefix or mid-message, a callback that stops;
 * grpc-status digits, percent-decoding of grpc-message (bad escapes kept, NUL replaced), base64
 * details padded and not and broken, grpc-timeout units, and the code tables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_frame.h"

struct got {
    int n;
    size_t lens[16];
    char text[256];
    size_t text_len;
    int stop_after;
};

static int
collect(void *arg, const uint8_t *msg, size_t len)
{
    struct got *g = arg;
    if (g->n < 16)
        g->lens[g->n] = len;
    g->n++;
    if (g->text_len + len + 1 < sizeof g->text) {
        memcpy(g->text + g->text_len, msg, len);
        g->text_len += len;
        g->text[g->text_len++] = '|';
    }
    return g->stop_after && g->n >= g->stop_after;
}

static size_t
framed(uint8_t *out, const char *msg)
{
    size_t len = strlen(msg);
    bp_grpc_prefix(out, (uint32_t)len);
    memcpy(out + BP_GRPC_PREFIX, msg, len);
    return BP_GRPC_PREFIX + len;
}

static void
messages_split_at_every_byte(void **state)
{
    (void)state;
    uint8_t wire[128];
    size_t n = framed(wire, "hello");
    n += framed(wire + n, "");
    n += framed(wire + n, "world!");
    for (size_t chunk = 1; chunk <= n; chunk++) {
        struct bp_grpc_reader r;
        struct got g = {0};
        bp_grpc_reader_init(&r, 64);
        for (size_t off = 0; off < n; off += chunk) {
            size_t k = n - off < chunk ? n - off : chunk;
            assert_int_equal(bp_grpc_reader_feed(&r, wire + off, k, collect, &g), 0);
        }
        assert_int_equal(g.n, 3);
        assert_int_equal(g.lens[1], 0);
        assert_string_equal(g.text, "hello||world!|");
        assert_false(bp_grpc_reader_partial(&r));
        bp_grpc_reader_free(&r);
    }
}

static void
length_over_cap_fails_without_allocating(void **state)
{
    (void)state;
    struct bp_grpc_reader r;
    struct got g = {0};
    bp_grpc_reader_init(&r, 16);
    uint8_t wire[] = {0, 0, 0, 0, 17, 'x'};
    assert_int_equal(bp_grpc_reader_feed(&r, wire, sizeof wire, collect, &g),
                     BP_GRPC_RESOURCE_EXHAUSTED);
    assert_null(r.msg);
    assert_non_null(strstr(r.error, "17 bytes"));
    /* a failed reader stays failed */
    assert_int_equal(bp_grpc_reader_feed(&r, wire, 5, collect, &g), BP_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(g.n, 0);
    bp_grpc_reader_free(&r);

    uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3};
    bp_grpc_reader_init(&r, (size_t)16 << 20);
    assert_int_equal(bp_grpc_reader_feed(&r, huge, sizeof huge, collect, &g),
                     BP_GRPC_RESOURCE_EXHAUSTED);
    assert_null(r.msg);
    bp_grpc_reader_free(&r);
}

static void
compressed_or_bad_flag_fails(void **state)
{
    (void)state;
    for (uint8_t flag = 1; flag < 3; flag++) {
        struct bp_grpc_reader r;
        struct got g = {0};
        bp_grpc_reader_init(&r, 64);
        uint8_t wire[] = {flag, 0, 0, 0, 1, 'x'};
        assert_int_equal(bp_grpc_reader_feed(&r, wire, sizeof wire, collect, &g),
                         BP_GRPC_INTERNAL);
        assert_int_equal(g.n, 0);
        bp_grpc_reader_free(&r);
    }
}

static void
truncated_reply_is_partial(void **state)
{
    (void)state;
    uint8_t wire[32];
    size_t n = framed(wire, "abcdef");
    for (size_t cut = 1; cut < n; cut++) {
        struct bp_grpc_reader r;
        struct got g = {0};
        bp_grpc_reader_init(&r, 64);
        assert_int_equal(bp_grpc_reader_feed(&r, wire, cut, collect, &g), 0);
        assert_int_equal(g.n, 0);
        assert_true(bp_grpc_reader_partial(&r));
        bp_grpc_reader_free(&r);
    }
}

static void
callback_stops_the_feed(void **state)
{
    (void)state;
    uint8_t wire[64];
    size_t n = framed(wire, "a");
    n += framed(wire + n, "b");
    struct bp_grpc_reader r;
    struct got g = {.stop_after = 1};
    bp_grpc_reader_init(&r, 64);
    assert_int_equal(bp_grpc_reader_feed(&r, wire, n, collect, &g), 1);
    assert_int_equal(g.n, 1);
    bp_grpc_reader_free(&r);
}

static void
status_digits(void **state)
{
    (void)state;
    assert_int_equal(bp_grpc_parse_status("0", 1), 0);
    assert_int_equal(bp_grpc_parse_status("14", 2), 14);
    assert_int_equal(bp_grpc_parse_status("999", 3), 999);
    assert_int_equal(bp_grpc_parse_status("", 0), -1);
    assert_int_equal(bp_grpc_parse_status("1000", 4), -1);
    assert_int_equal(bp_grpc_parse_status("-1", 2), -1);
    assert_int_equal(bp_grpc_parse_status(" 1", 2), -1);
    assert_int_equal(bp_grpc_parse_status("1x", 2), -1);
}

static void
message_percent_decoding(void **state)
{
    (void)state;
    const char *in = "bad%20row%3A%201%zz%4";
    char *s = bp_grpc_percent_decode(in, strlen(in));
    assert_non_null(s);    /* (NULL only out of memory: the allocation-failure run) */
    assert_string_equal(s, "bad row: 1%zz%4");
    free(s);
    s = bp_grpc_percent_decode("a%00b%", 6);
    assert_non_null(s);
    assert_string_equal(s, "a?b%");
    free(s);
    s = bp_grpc_percent_decode("", 0);
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
}

static void
details_base64(void **state)
{
    (void)state;
    static const uint8_t want[] = {0x08, 0x03, 0x12, 0x03, 'b', 'a', 'd'};
    const char *forms[] = {"CAMSA2JhZA", "CAMSA2JhZA=="};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *out;
        size_t n;
        assert_int_equal(bp_grpc_base64_decode(forms[i], strlen(forms[i]), &out, &n), 0);
        assert_int_equal(n, sizeof want);
        assert_memory_equal(out, want, n);
        free(out);
    }
    const char *bad[] = {"CAMSA2Jh!A", "C", "CA MS", "CAMSA2JhZA===x"};
    for (size_t i = 0; i < 4; i++) {
        uint8_t *out;
        size_t n;
        assert_int_equal(bp_grpc_base64_decode(bad[i], strlen(bad[i]), &out, &n), -1);
        assert_null(out);
    }
}

static void
timeout_units(void **state)
{
    (void)state;
    char b[16];
    assert_int_equal(bp_grpc_timeout_format(0.05, b, sizeof b), 9);
    assert_string_equal(b, "50000000n");
    assert_true(bp_grpc_timeout_format(30, b, sizeof b) > 0);
    assert_string_equal(b, "30000000u");
    assert_true(bp_grpc_timeout_format(600, b, sizeof b) > 0);
    assert_string_equal(b, "600000m");
    assert_true(bp_grpc_timeout_format(1e9, b, sizeof b) > 0);
    assert_string_equal(b, "16666667M");
    assert_int_equal(bp_grpc_timeout_format(0, b, sizeof b), -1);
    assert_int_equal(bp_grpc_timeout_format(-1, b, sizeof b), -1);
    assert_int_equal(bp_grpc_timeout_format(1, b, 4), -1);
}

static void
code_tables(void **state)
{
    (void)state;
    assert_string_equal(bp_grpc_code_name(14), "UNAVAILABLE");
    assert_string_equal(bp_grpc_code_name(99), "UNKNOWN_CODE");
    assert_true(bp_grpc_retryable(BP_GRPC_UNAVAILABLE));
    assert_true(bp_grpc_retryable(BP_GRPC_RESOURCE_EXHAUSTED));
    assert_false(bp_grpc_retryable(BP_GRPC_INVALID_ARGUMENT));
    assert_false(bp_grpc_retryable(BP_GRPC_ALREADY_EXISTS));
    assert_false(bp_grpc_retryable(BP_GRPC_OK));
    assert_int_equal(bp_grpc_code_from_h2_error(7), BP_GRPC_UNAVAILABLE);
    assert_int_equal(bp_grpc_code_from_h2_error(8), BP_GRPC_CANCELLED);
    assert_int_equal(bp_grpc_code_from_h2_error(2), BP_GRPC_INTERNAL);
    assert_int_equal(bp_grpc_code_from_http_status(503), BP_GRPC_UNAVAILABLE);
    assert_int_equal(bp_grpc_code_from_http_status(401), BP_GRPC_UNAUTHENTICATED);
    assert_int_equal(bp_grpc_code_from_http_status(418), BP_GRPC_UNKNOWN);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(messages_split_at_every_byte),
        cmocka_unit_test(length_over_cap_fails_without_allocating),
        cmocka_unit_test(compressed_or_bad_flag_fails),
        cmocka_unit_test(truncated_reply_is_partial),
        cmocka_unit_test(callback_stops_the_feed),
        cmocka_unit_test(status_digits),
        cmocka_unit_test(message_percent_decoding),
        cmocka_unit_test(details_base64),
        cmocka_unit_test(timeout_units),
        cmocka_unit_test(code_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
