/* Fuzz target: the archive's line of a payload and back (runtime/archive_line.cpp). Checks what
 * the archive promises: every payload becomes exactly one line (no newline, no carriage return,
 * not blank), and the line gives the payload back: the same bytes as is or through the base64
 * marker, or, compacted, JSON text with no more bytes that a second compaction leaves alone.
 * Any line at all is also decoded, and the bytes of a marker come back from their own line
 * (unless they are multi-line JSON, which is compacted). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive_line.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    bp_buf_t line, back, again;
    bp_buf_init(&line, 4 * size + 64);
    bp_buf_init(&back, 4 * size + 64);
    bp_buf_init(&again, 4 * size + 64);
    int kind = bp_archive_line_encode(p, size, &line);
    if (kind < 0)
        __builtin_trap();
    const char *l = kind == BP_LINE_AS_IS ? p : line.data;
    size_t ll = kind == BP_LINE_AS_IS ? size : line.len;
    if (memchr(l, '\n', ll) || memchr(l, '\r', ll) || blank(l, ll))
        __builtin_trap();
    int dec = bp_archive_line_decode(l, ll, &back);
    if (dec < 0 || dec != (kind == BP_LINE_RAW))
        __builtin_trap();
    if (kind == BP_LINE_RAW && (back.len != size || (size && memcmp(back.data, p, size) != 0)))
        __builtin_trap();
    if (kind == BP_LINE_COMPACT) {
        /* a compact line is its own line: nothing more to take out */
        if (ll >= size || bp_archive_line_encode(l, ll, &again) != BP_LINE_AS_IS)
            __builtin_trap();
    }
    /* the input read as a line: a marker decodes to bytes whose line is that marker again */
    bp_buf_reset(&back);
    dec = bp_archive_line_decode(p, size, &back);
    if (dec < 0)
        __builtin_trap();
    if (dec == 1) {
        bp_buf_reset(&again);
        const char *d = back.data ? back.data : "";
        int k2 = bp_archive_line_encode(d, back.len, &again);
        const char *l2 = k2 == BP_LINE_AS_IS ? d : again.data;
        size_t n2 = k2 == BP_LINE_AS_IS ? back.len : again.len;
        bp_buf_t third;
        bp_buf_init(&third, 4 * size + 64);
        int d3 = bp_archive_line_decode(l2, n2, &third);
        const char *b3 = d3 == 1 ? third.data : l2;
        size_t n3 = d3 == 1 ? third.len : n2;
        /* (compacted: the same JSON, fewer bytes; checked above for any payload) */
        if (d3 != (k2 == BP_LINE_RAW) ||
            (k2 != BP_LINE_COMPACT && (n3 != back.len || (n3 && memcmp(b3, d, n3) != 0))))
            __builtin_trap();
        bp_buf_free(&third);
    }
    bp_buf_free(&line);
    bp_buf_free(&back);
    bp_buf_free(&again);
    return 0;
}
