/* ndjson_lines.c - the NDJSON line splitter (see ndjson_lines.h). A line ends at "\n"; a "\r"
 * before it is dropped; a line of blanks is reported so that the caller counts and skips it. A
 * line longer than max_line is reported once with its first BP_NDJSON_KEEP bytes, whether it came
 * whole in the bytes given or across several calls: then the splitter consumes its bytes as they
 * come, so a caller's buffer never has to hold more than max_line bytes of an unfinished line. */
#include "ndjson_lines.h"

#include <string.h>

/* Resets l for a new stream (file or object) whose lines may be up to max_line bytes long. */
void
bp_ndjson_lines_init(bp_ndjson_lines_t *l, size_t max_line)
{
    l->max_line = max_line;
    l->skipping = 0;
    l->skipped_len = 0;
    l->keep_len = 0;
}

static int
is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return 0;
    return 1;
}

/* Adds the bytes of an over-long line to the count, keeping the first ones. */
static void
keep_more(bp_ndjson_lines_t *l, const char *p, size_t n)
{
    size_t room = BP_NDJSON_KEEP - l->keep_len;
    size_t k = room < n ? room : n;
    memcpy(l->keep + l->keep_len, p, k);
    l->keep_len += k;
    l->skipped_len += n;
}

static enum bp_ndjson_kind
too_long(bp_ndjson_lines_t *l, struct bp_ndjson_line *out)
{
    l->skipping = 0;
    out->p = l->keep;
    out->len = l->keep_len;
    out->full_len = l->skipped_len;
    return BP_NDJSON_TOO_LONG;
}

/* Inside an over-long line: its bytes up to the newline are consumed (the first ones kept); it
 * is reported at its newline, or at eof. */
static enum bp_ndjson_kind
skip_on(bp_ndjson_lines_t *l, const char *data, size_t len, int eof, size_t *used,
        struct bp_ndjson_line *out)
{
    const char *nl = len ? memchr(data, '\n', len) : NULL;
    size_t part = nl ? (size_t)(nl - data) : len;
    keep_more(l, data, part);
    *used = nl ? part + 1 : part;
    return nl || eof ? too_long(l, out) : BP_NDJSON_MORE;
}

/* The next line of data[0..len): what it is, with *used set to the bytes it took (the caller
 * drops them before the next call; pointers in *out stay valid until then). The unterminated
 * tail is a line only at eof; before that it is left (MORE, *used 0) unless it already passes
 * max_line, in which case it is consumed as the start of an over-long line. CRLF lines lose their
 * "\r" before the max_line and blank checks. Call again until MORE; with eof set, MORE means the
 * stream is done. Pure computation on l and data: never fails, never calls back. */
enum bp_ndjson_kind
bp_ndjson_lines_next(bp_ndjson_lines_t *l, const char *data, size_t len, int eof, size_t *used,
                     struct bp_ndjson_line *out)
{
    *used = 0;
    if (l->skipping)
        return skip_on(l, data, len, eof, used, out);
    if (len == 0)
        return BP_NDJSON_MORE;
    const char *nl = memchr(data, '\n', len);
    if (!nl && !eof) {
        if (len <= l->max_line)
            return BP_NDJSON_MORE;
        /* no newline within max_line bytes: the line is too long, skip to its end */
        l->skipping = 1;
        l->keep_len = l->skipped_len = 0;
        keep_more(l, data, len);
        *used = len;
        return BP_NDJSON_MORE;
    }
    size_t n = nl ? (size_t)(nl - data) : len;
    *used = nl ? n + 1 : n;
    if (n && data[n - 1] == '\r')
        n--;
    if (is_blank(data, n))
        return BP_NDJSON_BLANK;
    if (n > l->max_line) {
        /* a long line that arrived whole */
        l->keep_len = l->skipped_len = 0;
        keep_more(l, data, n);
        return too_long(l, out);
    }
    out->p = data;
    out->len = n;
    return BP_NDJSON_LINE;
}
