/* ndjson_lines.h - splits a byte buffer into NDJSON lines, the same way for every source that
 * reads NDJSON (--input's source_ndjson.c, replay's source_replay.c). It owns only the state of
 * an over-long line being skipped across reads; the bytes stay in the caller's buffer. */
#ifndef BP_NDJSON_LINES_H
#define BP_NDJSON_LINES_H

#include <stddef.h>

#define BP_NDJSON_KEEP 1024   /* bytes of an over-long line kept for its dead letter */

enum bp_ndjson_kind {
    BP_NDJSON_MORE,       /* no complete line in the bytes given: read more (at eof: the end) */
    BP_NDJSON_LINE,       /* a line, without its "\n" or "\r\n" */
    BP_NDJSON_BLANK,      /* only spaces, tabs and carriage returns: to be skipped */
    BP_NDJSON_TOO_LONG,   /* longer than max_line: its first bytes and its full length */
};

struct bp_ndjson_line {
    const char *p;        /* LINE: into the caller's bytes; TOO_LONG: the splitter's keep[] */
    size_t len;           /* LINE: the line's length; TOO_LONG: the bytes kept (<= KEEP) */
    size_t full_len;      /* TOO_LONG: the whole line's length without its "\n" (and, when it
                           * came whole, without the "\r" before it) */
};

typedef struct bp_ndjson_lines {
    size_t max_line;      /* longer lines are TOO_LONG */
    int skipping;         /* inside an over-long line whose end has not been read yet */
    size_t skipped_len;   /* its bytes so far */
    size_t keep_len;
    char keep[BP_NDJSON_KEEP];
} bp_ndjson_lines_t;

void bp_ndjson_lines_init(bp_ndjson_lines_t *l, size_t max_line);
enum bp_ndjson_kind bp_ndjson_lines_next(bp_ndjson_lines_t *l, const char *data, size_t len,
                                         int eof, size_t *used, struct bp_ndjson_line *out);

#endif
