/* Unit tests: the NDJSON line splitter (CRLF, blank lines, over-long lines whole or across two
 * feeds, the unterminated tail at eof and before it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "ndjson_lines.h"

/* One call on data[*off..len); advances *off by the bytes used. */
static enum bp_ndjson_kind
next(bp_ndjson_lines_t *l, const char *data, size_t len, size_t *off, int eof,
     struct bp_ndjson_line *out)
{
    size_t used = 99;
    enum bp_ndjson_kind k = bp_ndjson_lines_next(l, data + *off, len - *off, eof, &used, out);
    *off += used;
    return k;
}

static void
crlf_and_blank_lines(void **state)
{
    (void)state;
    bp_ndjson_lines_t l;
    struct bp_ndjson_line out;
    const char *in = "{\"a\":1}\r\n \t\r\n\n{\"b\":2}\n";
    size_t off = 0, len = strlen(in);
    bp_ndjson_lines_init(&l, 64);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_LINE);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.p, "{\"a\":1}", 7);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_BLANK);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_BLANK);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_LINE);
    assert_memory_equal(out.p, "{\"b\":2}", 7);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_MORE);
    assert_int_equal(off, len);
}

static void
long_line_whole(void **state)
{
    (void)state;
    bp_ndjson_lines_t l;
    struct bp_ndjson_line out;
    char in[3000];
    memset(in, 'x', 2000);
    in[0] = '<';
    memcpy(in + 2000, "\r\nok\n", 5);
    size_t off = 0, len = 2005;
    bp_ndjson_lines_init(&l, 100);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_TOO_LONG);
    assert_int_equal(out.full_len, 2000);
    assert_int_equal(out.len, BP_NDJSON_KEEP);
    assert_memory_equal(out.p, in, BP_NDJSON_KEEP);
    assert_int_equal(off, 2002);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_LINE);
    assert_memory_equal(out.p, "ok", 2);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_MORE);
}

static void
long_line_across_two_feeds(void **state)
{
    (void)state;
    bp_ndjson_lines_t l;
    struct bp_ndjson_line out;
    size_t off = 0;
    bp_ndjson_lines_init(&l, 10);
    /* first feed: a line, then 15 bytes with no newline: past max_line, consumed */
    const char *a = "ok\n<23456789abcdef";
    assert_int_equal(next(&l, a, strlen(a), &off, 0, &out), BP_NDJSON_LINE);
    assert_int_equal(next(&l, a, strlen(a), &off, 0, &out), BP_NDJSON_MORE);
    assert_int_equal(off, strlen(a));
    /* second feed: the rest of it, then a short line */
    const char *b = "ghij\nz\n";
    off = 0;
    assert_int_equal(next(&l, b, strlen(b), &off, 0, &out), BP_NDJSON_TOO_LONG);
    assert_int_equal(out.full_len, 19);
    assert_int_equal(out.len, 19);
    assert_memory_equal(out.p, "<23456789abcdefghij", 19);
    assert_int_equal(off, 5);
    assert_int_equal(next(&l, b, strlen(b), &off, 0, &out), BP_NDJSON_LINE);
    assert_int_equal(out.len, 1);
    assert_int_equal(next(&l, b, strlen(b), &off, 0, &out), BP_NDJSON_MORE);
    /* an over-long line the stream ends in is reported at eof, even with nothing more fed */
    const char *c = "0123456789AB";
    off = 0;
    assert_int_equal(next(&l, c, strlen(c), &off, 0, &out), BP_NDJSON_MORE);
    assert_int_equal(next(&l, "", 0, &(size_t){0}, 1, &out), BP_NDJSON_TOO_LONG);
    assert_int_equal(out.full_len, 12);
    assert_int_equal(next(&l, "", 0, &(size_t){0}, 1, &out), BP_NDJSON_MORE);
}

static void
tail_kept_unless_eof(void **state)
{
    (void)state;
    bp_ndjson_lines_t l;
    struct bp_ndjson_line out;
    const char *in = "a\n{\"tail\":1}\r";
    size_t off = 0, len = strlen(in);
    bp_ndjson_lines_init(&l, 64);
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_LINE);
    /* not at eof: the tail waits for more, none of it used */
    assert_int_equal(next(&l, in, len, &off, 0, &out), BP_NDJSON_MORE);
    assert_int_equal(off, 2);
    /* at eof: it is the last line (its "\r" dropped), then the end */
    assert_int_equal(next(&l, in, len, &off, 1, &out), BP_NDJSON_LINE);
    assert_int_equal(out.len, 10);
    assert_memory_equal(out.p, "{\"tail\":1}", 10);
    assert_int_equal(off, len);
    assert_int_equal(next(&l, in, len, &off, 1, &out), BP_NDJSON_MORE);
    /* a tail longer than max_line at eof is one whole over-long line */
    bp_ndjson_lines_init(&l, 4);
    off = 0;
    assert_int_equal(next(&l, "abcdef", 6, &off, 1, &out), BP_NDJSON_TOO_LONG);
    assert_int_equal(out.full_len, 6);
    assert_int_equal(off, 6);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crlf_and_blank_lines),
        cmocka_unit_test(long_line_whole),
        cmocka_unit_test(long_line_across_two_feeds),
        cmocka_unit_test(tail_kept_unless_eof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
