/* proto_put.h - a protobuf row of a table's writer schema (proto_desc.h) written column by column
 * from C values: the rows C builds itself (the dead letters of dead_format.c) and the columns it
 * adds to a map's row (row_meta.c's metadata), as proto_row.h writes the rows a map returns.
 * Errors are sticky: a row is a run of calls, checked once at the end; a row that fails is left
 * out whole, and its JSON entry then stands for it. */
#ifndef BP_PROTO_PUT_H
#define BP_PROTO_PUT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"
#include "schema.h"

struct bp_proto_put {
    const struct bp_schema *s;
    bp_buf_t *b;
    size_t start;                                   /* b->len at begin: undone on an error */
    int depth;                                      /* open RECORDs (0: the row itself) */
    const struct bp_schema_field *rec[BP_SCHEMA_MAX_DEPTH + 2];
    size_t mark[BP_SCHEMA_MAX_DEPTH + 2];           /* where each open value's length goes */
    uint64_t seen[BP_SCHEMA_MAX_DEPTH + 2][BP_SCHEMA_MAX_REQUIRED / 64];
    int failed;
    char err[200];
};

/* Starts a row of schema s at the end of rows (a ProtoRows body, as bp_proto_row_append's). */
void bp_proto_put_begin(struct bp_proto_put *w, const struct bp_schema *s, bp_buf_t *rows);

/* A value of column col (a name of the open RECORD's columns; for a REPEATED column each call
 * adds an element). string: a column written as a proto string (STRING, JSON, NUMERIC, TIME,
 * DATETIME, GEOGRAPHY), the text as it is; bytes: a BYTES column, raw bytes (not base64);
 * int64: INT64; timestamp: TIMESTAMP, microseconds since the epoch. A column the RECORD does not
 * have, or of another type, fails the row. */
void bp_proto_put_string(struct bp_proto_put *w, const char *col, const char *p, size_t n);
void bp_proto_put_bytes(struct bp_proto_put *w, const char *col, const void *p, size_t n);
void bp_proto_put_int64(struct bp_proto_put *w, const char *col, int64_t v);
void bp_proto_put_timestamp(struct bp_proto_put *w, const char *col, int64_t us);

/* Values given as the JSON path gives them, for rows C writes as insertAll JSON too (a row
 * error, never another value, where the two could differ): a single value (a REPEATED column
 * fails) of a STRING or JSON column (JSON: the text must be JSON, as BigQuery's JSON type takes
 * it), or NULL.
 * text: the bytes as they are; text that is not UTF-8 fails (JSON would carry U+FFFD instead).
 * json_string: the text of q[0..n), a quoted JSON string as json_out.c writes them (escapes
 * undone: "\u00XX" one byte, "\ufffd" U+FFFD); anything else in it fails.
 * timestamp_text: a TIMESTAMP column from its text (the forms bp_schema_timestamp_us takes).
 * null: nothing written; fails when col is REQUIRED, not a column, or already in the row (a value
 * put before, or in the entry bp_proto_put_resume took: protobuf has no way to unset it). */
void bp_proto_put_text(struct bp_proto_put *w, const char *col, const char *p, size_t n);
void bp_proto_put_json_string(struct bp_proto_put *w, const char *col, const char *q, size_t n);
void bp_proto_put_timestamp_text(struct bp_proto_put *w, const char *col, const char *p, size_t n);
void bp_proto_put_null(struct bp_proto_put *w, const char *col);

/* Fails the row with why (a value the caller found it cannot write as the JSON path would). */
void bp_proto_put_fail(struct bp_proto_put *w, const char *why);

/* Starts a row of schema s at the end of rows as a copy of entry (n bytes: one serialized_rows
 * entry of s, as bp_proto_row_append writes them), whose columns count as put: the columns put
 * next follow them in the message, and a reader keeps a column's last value, so they win over
 * the entry's (as the later of two JSON keys does). An entry that is not one fails the row. */
void bp_proto_put_resume(struct bp_proto_put *w, const struct bp_schema *s, bp_buf_t *rows,
                         const void *entry, size_t n);

/* Opens a value of RECORD column col (its columns are then put until bp_proto_put_close); for
 * a REPEATED RECORD, once per element. */
void bp_proto_put_open(struct bp_proto_put *w, const char *col);
void bp_proto_put_close(struct bp_proto_put *w);

/* Ends the row: 0, or -1 with the first error in err (a missing REQUIRED column, an unknown
 * column, a wrong type, RECORDs left open, rows past its maximum or the row past BigQuery's
 * 10 MB) and rows as it was at begin. */
int bp_proto_put_end(struct bp_proto_put *w, char *err, size_t errlen) BP_WUR;

#endif
