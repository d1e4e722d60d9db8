/* Unit tests: bp_buf (growth, hard cap) and the JSON string encoder (escapes, invalid UTF-8). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json_out.h"

static void
buf_grows_and_respects_max(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1000);
    for (int i = 0; i < 99; i++)
        assert_int_equal(bp_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(b.len, 990);
    assert_int_equal(bp_buf_append(&b, "0123456789", 10), 0);
    assert_int_equal(bp_buf_append(&b, "x", 1), -1);   /* would pass the cap */
    assert_int_equal(b.len, 1000);
    bp_buf_consume(&b, 995);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "56789", 5);
    bp_buf_free(&b);
    bp_buf_free(&b);   /* twice is safe */
}

static void
buf_reserve_overflow_is_refused(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, SIZE_MAX);
    assert_int_equal(bp_buf_append(&b, "ab", 2), 0);
    assert_int_equal(bp_buf_reserve(&b, SIZE_MAX - 1), -1);
    bp_buf_free(&b);
}

static const char *
enc(bp_buf_t *b, const char *s, size_t n)
{
    bp_buf_reset(b);
    assert_int_equal(bp_json_string(b, s, n), 0);
    assert_int_equal(bp_buf_append(b, "", 1), 0);
    return b->data;
}

static void
json_escapes(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_string_equal(enc(&b, "plain", 5), "\"plain\"");
    assert_string_equal(enc(&b, "a\"b\\c", 5), "\"a\\\"b\\\\c\"");
    assert_string_equal(enc(&b, "\n\r\t\b\f", 5), "\"\\n\\r\\t\\b\\f\"");
    assert_string_equal(enc(&b, "\x01\x1f", 2), "\"\\u0001\\u001f\"");
    assert_string_equal(enc(&b, "nul\0x", 5), "\"nul\\u0000x\"");
    assert_string_equal(enc(&b, "", 0), "\"\"");
    bp_buf_free(&b);
}

static void
json_utf8(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_string_equal(enc(&b, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14),
                        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    assert_string_equal(enc(&b, "\xff", 1), "\"\\ufffd\"");
    assert_string_equal(enc(&b, "\xc0\xaf", 2), "\"\\ufffd\\ufffd\"");          /* overlong */
    assert_string_equal(enc(&b, "\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\""); /* surrogate */
    assert_string_equal(enc(&b, "\xe2\x82", 2), "\"\\ufffd\\ufffd\"");          /* truncated */
    assert_string_equal(enc(&b, "\xf4\x90\x80\x80", 4),
                        "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");                   /* > U+10FFFF */
    assert_int_equal(bp_utf8_valid_prefix("ab\xc3\xa9\xc3", 5), 4);
    bp_buf_free(&b);
}

static void
json_respects_cap(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 64);
    assert_int_equal(bp_json_string(&b, "0123456789", 10), 0);
    assert_int_equal(bp_json_string(&b, "0123456789012345678901234567890123456789", 40), -1);
    bp_buf_free(&b);
}

static const char *
cut(bp_buf_t *b, const char *s, size_t n, size_t max_out)
{
    bp_buf_reset(b);
    assert_int_equal(bp_json_string_cut(b, s, n, max_out), 0);
    assert_int_equal(bp_buf_append(b, "", 1), 0);
    return b->data;
}

/* Dead-letter fields: cut between characters with a marker naming what was left out. */
static void
json_cut_marks_what_it_left_out(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_string_equal(cut(&b, "abc", 3, 3), "\"abc\"");          /* fits: no marker */
    assert_string_equal(cut(&b, "abcdef", 6, 3), "\"abc\xe2\x80\xa6[truncated 3 bytes]\"");
    /* an escape is never split: \" is 2 bytes out */
    assert_string_equal(cut(&b, "a\"b", 3, 2), "\"a\xe2\x80\xa6[truncated 2 bytes]\"");
    /* nor a UTF-8 sequence (e-acute is 2 bytes) */
    assert_string_equal(cut(&b, "a\xc3\xa9z", 4, 2), "\"a\xe2\x80\xa6[truncated 3 bytes]\"");
    assert_string_equal(cut(&b, "\xff\xff", 2, 6), "\"\\ufffd\xe2\x80\xa6[truncated 1 bytes]\"");
    /* 1 MB of escapes stays under the cap, whatever it holds */
    size_t n = 1 << 20;
    char *big = malloc(n);
    memset(big, '\x01', n);
    bp_buf_t l;
    bp_buf_init(&l, 16 << 20);
    assert_int_equal(bp_json_string_cut(&l, big, n, 4096), 0);
    assert_true(l.len < 4096 + 64);
    bp_buf_free(&l);
    free(big);
    bp_buf_free(&b);
}

static const char *
text(bp_buf_t *b, const char *s, size_t n)
{
    bp_buf_reset(b);
    assert_int_equal(bp_json_text_utf8(b, s, n), 0);
    assert_int_equal(bp_buf_append(b, "", 1), 0);
    return b->data;
}

/* Rows from the scripts: valid text is copied as it is, invalid UTF-8 becomes \ufffd. */
static void
json_text_replaces_invalid_utf8(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    assert_string_equal(text(&b, "{\"a\":\"plain text, long enough\"}", 32),
                        "{\"a\":\"plain text, long enough\"}");
    assert_string_equal(text(&b, "{\"a\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}", 18),
                        "{\"a\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}");
    assert_string_equal(text(&b, "{\"a\":\"x\xffy\xc3(\xed\xa0\x80\"}", 16),
                        "{\"a\":\"x\\ufffdy\\ufffd(\\ufffd\\ufffd\\ufffd\"}");
    assert_string_equal(text(&b, "0123456789abcdef\xe2\x82", 18), "0123456789abcdef\\ufffd\\ufffd");
    bp_buf_t c;
    bp_buf_init(&c, 8);
    assert_int_equal(bp_json_text_utf8(&c, "0123456789", 10), -1);   /* the cap holds */
    bp_buf_free(&c);
    bp_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_grows_and_respects_max),
        cmocka_unit_test(buf_reserve_overflow_is_refused),
        cmocka_unit_test(json_escapes),
        cmocka_unit_test(json_utf8),
        cmocka_unit_test(json_respects_cap),
        cmocka_unit_test(json_cut_marks_what_it_left_out),
        cmocka_unit_test(json_text_replaces_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
