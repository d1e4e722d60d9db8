/* Unit tests of the pull reply scanner (pull_reply.c): fields found in place, escapes decoded,
 * items without an ackId or message skipped, unknown members of any shape skipped, and every
 * malformed reply refused whole (as the lua-cjson decoder it replaced refused it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pull_reply.h"

static int
decode(struct bp_pull_reply *r, const char *body)
{
    char err[256];
    return bp_pull_reply_decode(r, body, strlen(body), err, sizeof(err));
}

static void
assert_span(const char *p, size_t n, const char *want)
{
    assert_non_null(p);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void
fields_and_escapes(void **state)
{
    (void)state;
    struct bp_pull_reply r;
    const char *body =
        " {\"extra\": [1, -2.5e3, {\"a\": [true, false, null]}, \"s\\\"\"],\n"
        "  \"receivedMessages\": [\n"
        "   {\"ackId\": \"A1\", \"deliveryAttempt\": 3, \"message\": {\"data\": \"eyJ9\",\n"
        "    \"messageId\": \"m\\u00e91\", \"publishTime\": \"2025-03-01T12:00:00.5Z\",\n"
        "    \"attributes\": {\"k\": \"v\", \"x\": \"\\ud83d\\ude00\"}, \"orderingKey\": \"\"}},\n"
        "   {\"message\": {\"data\": \"eA==\"}},\n"
        "   {\"ackId\": \"A3\", \"message\": \"not an object\"},\n"
        "   \"not an item\",\n"
        "   {\"ackId\": \"A\\/5\", \"message\": {\"attributes\": {}, \"data\": 7}}\n"
        "  ]} ";
    assert_int_equal(decode(&r, body), 0);
    assert_int_equal(r.n, 2);
    assert_span(r.msgs[0].ack_id, r.msgs[0].ack_id_len, "A1");
    assert_int_equal(r.msgs[0].delivery_attempt, 3);
    assert_span(r.msgs[0].data_b64, r.msgs[0].data_b64_len, "eyJ9");
    assert_span(r.msgs[0].message_id, r.msgs[0].message_id_len, "m\xc3\xa9" "1");
    assert_string_equal(r.msgs[0].publish_time, "2025-03-01T12:00:00.5Z");
    assert_span(r.msgs[0].attrs, r.msgs[0].attrs_len,
                "{\"k\": \"v\", \"x\": \"\\ud83d\\ude00\"}");
    assert_span(r.msgs[1].ack_id, r.msgs[1].ack_id_len, "A/5");
    assert_null(r.msgs[1].data_b64);        /* not a string: missing */
    assert_null(r.msgs[1].attrs);           /* empty: none */
    assert_null(r.msgs[1].publish_time);
    bp_pull_reply_free(&r);

    assert_int_equal(decode(&r, "{}"), 0);
    assert_int_equal(r.n, 0);
    bp_pull_reply_free(&r);
    assert_int_equal(decode(&r, "{\"receivedMessages\": []}"), 0);
    assert_int_equal(r.n, 0);
    bp_pull_reply_free(&r);
}

static void
malformed_replies_are_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "", " ", "[]", "\"x\"", "null", "{", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{\"a\":1} x",
        "{\"a\":01}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":tru}", "{\"a\":\"x}",
        "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\x01\"}", "{\"a\":[1,2}", "{\"a\":[1 2]}", "{\"a\" 1}", "{1:2}",
        "{\"receivedMessages\":[{\"ackId\":\"A\",\"message\":{\"data\":\"x\"}]}",
        "{\"receivedMessages\":[{\"ackId\":\"A\",\"message\":{\"data\":\"x\"}},]}",
        "{\"receivedMessages\":[{\"ackId\":\"A\",\"message\":{\"attributes\":{\"k\":}}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct bp_pull_reply r;
        if (decode(&r, bad[i]) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_null(r.msgs);
    }
    /* nesting past 64 is refused, within it accepted */
    char deep[400];
    struct bp_pull_reply r;
    for (int d = 60; d <= 70; d += 10) {
        size_t n = 0;
        n += (size_t)sprintf(deep + n, "{\"a\":");
        for (int i = 0; i < d; i++)
            deep[n++] = '[';
        for (int i = 0; i < d; i++)
            deep[n++] = ']';
        deep[n++] = '}';
        deep[n] = '\0';
        assert_int_equal(decode(&r, deep), d <= 60 ? 0 : -1);
        bp_pull_reply_free(&r);
    }
}

/* The scanner reads plain string text eight bytes at a time: a quote, backslash or control byte
 * at any offset of a long string (and bytes from 0x80 up, which are plain) is found where it is,
 * whatever its place in the word, and the last bytes before the end are still checked. */
static void
long_strings_at_every_offset(void **state)
{
    (void)state;
    char body[200], data[64];
    struct bp_pull_reply r;
    for (int at = 0; at < 40; at++) {
        /* an escaped quote at offset at: decoded, not the end of the string */
        memset(data, 'A', sizeof(data));
        data[40] = '\0';
        snprintf(body, sizeof(body),
                 "{\"receivedMessages\":[{\"ackId\":\"%.*s\\\"%s\",\"message\":{\"data\":\"%s\"}}]}",
                 at, data, data + at, data);
        assert_int_equal(decode(&r, body), 0);
        assert_int_equal(r.n, 1);
        assert_int_equal(r.msgs[0].ack_id_len, 41);
        assert_int_equal(r.msgs[0].ack_id[at], '"');
        assert_int_equal(r.msgs[0].data_b64_len, 40);
        bp_pull_reply_free(&r);
        /* a control byte at offset at: refused */
        data[at] = '\x1f';
        snprintf(body, sizeof(body), "{\"a\":\"%s\"}", data);
        assert_int_equal(decode(&r, body), -1);
        /* bytes from 0x80 (UTF-8) are plain, and 0x20 is the first plain byte */
        data[at] = (char)(at % 2 ? 0xff : 0x80);
        data[(at + 3) % 40] = ' ';
        snprintf(body, sizeof(body), "{\"receivedMessages\":[{\"ackId\":\"%s\",\"message\":{}}]}",
                 data);
        assert_int_equal(decode(&r, body), 0);
        assert_int_equal(r.n, 1);
        assert_span(r.msgs[0].ack_id, r.msgs[0].ack_id_len, data);
        bp_pull_reply_free(&r);
        /* an unterminated string that ends at any offset: refused */
        snprintf(body, sizeof(body), "{\"a\":\"%.*s", at, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
        assert_int_equal(decode(&r, body), -1);
    }
}

/* Copies (escaped strings, publishTime) go to an arena of chunks: many of them, and one larger
 * than a chunk, all stay valid until the reply is freed. */
static void
copies_across_chunks(void **state)
{
    (void)state;
    size_t cap = 4u << 20, n = 0;
    char *body = malloc(cap), *big = malloc(40001);
    assert_non_null(body);
    assert_non_null(big);
    memset(big, 'b', 40000);
    big[40000] = '\0';
    n += (size_t)sprintf(body + n, "{\"receivedMessages\":[");
    for (int i = 0; i < 3000; i++)
        n += (size_t)sprintf(body + n, "%s{\"ackId\":\"a\\n%d\",\"message\":{\"publishTime\":"
                             "\"2026-12-02T00:00:%02dZ\",\"messageId\":\"%s\\t\"}}", i ? "," : "", i,
                             i % 60, i == 1500 ? big : "m");
    n += (size_t)sprintf(body + n, "]}");
    struct bp_pull_reply r;
    char err[256];
    assert_int_equal(bp_pull_reply_decode(&r, body, n, err, sizeof(err)), 0);
    assert_int_equal(r.n, 3000);
    for (int i = 0; i < 3000; i++) {
        char want[32], pt[32];
        snprintf(want, sizeof(want), "a\n%d", i);
        snprintf(pt, sizeof(pt), "2026-12-02T00:00:%02dZ", i % 60);
        assert_span(r.msgs[i].ack_id, r.msgs[i].ack_id_len, want);
        assert_string_equal(r.msgs[i].publish_time, pt);
        assert_int_equal(r.msgs[i].message_id_len, i == 1500 ? 40001 : 2);
    }
    assert_memory_equal(r.msgs[1500].message_id, big, 40000);
    bp_pull_reply_free(&r);
    assert_null(r.arena);
    free(body);
    free(big);
}

/* Base64 data: every length round-trips against OpenSSL's encoder (all byte values); text that
 * is not padded base64 of Pub/Sub's alphabet is refused. */
static void
data_decodes_and_refuses(void **state)
{
    (void)state;
    unsigned char raw[300];
    char text[404], out[303];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (unsigned char)(i * 151 + 7);
    for (int n = 0; n <= 300; n++) {
        int tl = EVP_EncodeBlock((unsigned char *)text, raw, n);
        assert_int_equal(bp_pull_data_decode(out, text, (size_t)tl), n);
        assert_memory_equal(out, raw, (size_t)n);
    }
    static const char *bad[] = {
        "A", "AB", "ABC", "ABCDE", "A===", "====", "AB=C", "A=BC", "AB\nC", " ABC", "ABC ",
        "AB-_", "ABC\x80", "QUJD====", "QQ=A", "Q\0==",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t l = strlen(bad[i]);
        if (i == sizeof(bad) / sizeof(bad[0]) - 1)
            l = 4;
        if (bp_pull_data_decode(out, bad[i], l) != -1)
            fail_msg("accepted: %s", bad[i]);
    }
    assert_int_equal(bp_pull_data_decode(out, "QUI=", 4), 2);
    assert_memory_equal(out, "AB", 2);
    assert_int_equal(bp_pull_data_decode(out, "QQ==", 4), 1);
    assert_int_equal(out[0], 'A');
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fields_and_escapes),
        cmocka_unit_test(malformed_replies_are_refused),
        cmocka_unit_test(long_strings_at_every_offset),
        cmocka_unit_test(copies_across_chunks),
        cmocka_unit_test(data_decodes_and_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
