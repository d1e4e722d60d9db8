/* archive_line.h - the line an archived payload becomes, and back. The archive is NDJSON: one
 * record per line, whatever the payload holds. Most payloads are one line of UTF-8 text and are
 * written as they came. The others:
 *   - valid JSON holding newlines or carriage returns (a pretty-printed event) is compacted to one
 *     line: the whitespace between tokens is removed, every other byte (strings, numbers, key
 *     order) stays as sent, so replay gives the same event;
 *   - anything else a line cannot carry as is (invalid JSON with a newline, a carriage return,
 *     NUL or another control byte, invalid UTF-8, an empty or blank payload) is carried whole as
 *         {"bepipe_raw_b64":"<standard base64 of the exact bytes>"}
 *     and replay decodes it back to those bytes. A payload whose own line would begin with the
 *     marker's text is carried encoded too, so a line that begins with it is always a marker. */
#ifndef BP_ARCHIVE_LINE_H
#define BP_ARCHIVE_LINE_H

#include "buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The exact first bytes of a marker line; the line ends with "\"}". */
#define BP_RAW_MARK "{\"bepipe_raw_b64\":\""

enum bp_archive_line_kind {
    BP_LINE_AS_IS,      /* the payload is its own line */
    BP_LINE_COMPACT,    /* valid JSON made one line */
    BP_LINE_RAW,        /* carried base64-encoded in a marker line */
};

/* The archive line of the payload p[0..len). Returns BP_LINE_AS_IS (out untouched: the line is p
 * itself), BP_LINE_COMPACT or BP_LINE_RAW (the line, without '\n', replaces out's bytes), or -1
 * when out's maximum is too small for it. Loop thread only (one JSON parser per thread); costs a
 * scan of the bytes eight at a time for the common ASCII line. */
int bp_archive_line_encode(const char *p, size_t len, bp_buf_t *out) BP_WUR;

/* The payload an archive line stands for: 0 when the line is the payload itself (not a marker),
 * 1 when it is a marker whose bytes replace out's bytes, -1 when out's maximum is too small. A
 * line that begins with the marker but is not a well-formed one is its own payload (0): it then
 * fails as the event it is. */
int bp_archive_line_decode(const char *line, size_t len, bp_buf_t *out) BP_WUR;

/* Payloads decoded from marker lines for one batch of messages, which points into them until
 * the batch is processed (a source's scratch). */
struct bp_raw_lines {
    char **v;
    size_t n, cap;
};

/* The payload for line: *data and *len point at the line itself, or at its decoded bytes, which stay
 * valid until bp_raw_lines_reset. Returns 0, or -1 when a decoded payload cannot be held (the
 * line is then left as it is). */
int bp_raw_lines_take(struct bp_raw_lines *r, const char *line, size_t len, const char **data,
                      size_t *dlen) BP_WUR;
void bp_raw_lines_reset(struct bp_raw_lines *r);
void bp_raw_lines_free(struct bp_raw_lines *r);

#ifdef __cplusplus
}
#endif

#endif
