/* proto_put.c - protobuf rows written column by column from C values. The wire forms are those
 * of proto_row.c (field k of a RECORD = its k-th column; a length-delimited value written after
 * a 5-byte hole its length then fills); written by hand for the same reason: the message type is
 * only known at run time. */
#include "proto_put.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { WT_VARINT = 0, WT_LEN = 2 };

static void BP_PRINTF(2, 3)
fail(struct bp_proto_put *w, const char *fmt, ...)
{
    if (w->failed)
        return;
    w->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof(w->err), fmt, ap);
    va_end(ap);
}

static void
put_varint(struct bp_proto_put *w, uint64_t v)
{
    if (w->failed)
        return;
    if (bp_buf_reserve(w->b, 10) != 0) {
        fail(w, "the rows pass the request's size limit");
        return;
    }
    uint8_t *o = (uint8_t *)w->b->data + w->b->len;
    size_t k = 0;
    while (v >= 0x80) {
        o[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[k++] = (uint8_t)v;
    w->b->len += k;
}

/* A 5-byte hole for a length, at w->mark[depth]. */
static void
open_len(struct bp_proto_put *w, int depth)
{
    if (!w->failed && bp_buf_reserve(w->b, 5) != 0)
        fail(w, "the rows pass the request's size limit");
    if (w->failed)
        return;
    w->mark[depth] = w->b->len;
    w->b->len += 5;
}

static void
close_len(struct bp_proto_put *w, int depth)
{
    if (w->failed)
        return;
    size_t mark = w->mark[depth], n = w->b->len - mark - 5;
    uint8_t v[10];
    size_t k = 0;
    for (uint64_t x = n; ; x >>= 7) {
        v[k++] = (uint8_t)((x & 0x7f) | (x >= 0x80 ? 0x80 : 0));
        if (x < 0x80)
            break;
    }
    memcpy(w->b->data + mark, v, k);
    memmove(w->b->data + mark + k, w->b->data + mark + 5, n);
    w->b->len = mark + k + n;
}

/* Column col of the open RECORD, checked against the kinds of value the call writes (a mask of
 * 1 << bp_schema_type); its tag written. NULL after a failure. */
static const struct bp_schema_field *
column(struct bp_proto_put *w, const char *col, unsigned types, int wt)
{
    if (w->failed)
        return NULL;
    const struct bp_schema_field *rec = w->rec[w->depth], *f = NULL;
    for (size_t i = 0; i < rec->nfields && !f; i++)
        if (strcasecmp(rec->fields[i].name, col) == 0)
            f = &rec->fields[i];
    if (!f) {
        fail(w, "%s: no such column", col);
        return NULL;
    }
    if (!(types & (1u << f->type))) {
        fail(w, "%s: a %s column cannot take this value", col, f->type_name);
        return NULL;
    }
    if (f->required_index >= 0)
        w->seen[w->depth][f->required_index / 64] |= (uint64_t)1 << (f->required_index % 64);
    put_varint(w, ((uint64_t)(f - rec->fields) + 1) << 3 | (uint64_t)wt);
    return f;
}

static void
put_len_value(struct bp_proto_put *w, const void *p, size_t n)
{
    put_varint(w, n);
    if (!w->failed && bp_buf_append(w->b, p, n) != 0)
        fail(w, "the rows pass the request's size limit");
}

/* See proto_put.h. */
void
bp_proto_put_begin(struct bp_proto_put *w, const struct bp_schema *s, bp_buf_t *rows)
{
    memset(w, 0, sizeof(*w));
    w->s = s;
    w->b = rows;
    w->start = rows->len;
    w->rec[0] = &s->root;
    put_varint(w, (1 << 3) | WT_LEN);     /* ProtoRows.serialized_rows */
    open_len(w, 0);
}

/* See proto_put.h. */
void
bp_proto_put_string(struct bp_proto_put *w, const char *col, const char *p, size_t n)
{
    unsigned text = 1u << BP_SCHEMA_STRING | 1u << BP_SCHEMA_JSON | 1u << BP_SCHEMA_NUMERIC |
                    1u << BP_SCHEMA_TIME | 1u << BP_SCHEMA_DATETIME;
    if (column(w, col, text, WT_LEN))
        put_len_value(w, p, n);
}

/* See proto_put.h. */
void
bp_proto_put_bytes(struct bp_proto_put *w, const char *col, const void *p, size_t n)
{
    if (column(w, col, 1u << BP_SCHEMA_BYTES, WT_LEN))
        put_len_value(w, p, n);
}

/* See proto_put.h. */
void
bp_proto_put_int64(struct bp_proto_put *w, const char *col, int64_t v)
{
    if (column(w, col, 1u << BP_SCHEMA_INT64, WT_VARINT))
        put_varint(w, (uint64_t)v);
}

/* See proto_put.h. */
void
bp_proto_put_timestamp(struct bp_proto_put *w, const char *col, int64_t us)
{
    if (column(w, col, 1u << BP_SCHEMA_TIMESTAMP, WT_VARINT))
        put_varint(w, (uint64_t)us);
}

/* See proto_put.h. */
void
bp_proto_put_open(struct bp_proto_put *w, const char *col)
{
    const struct bp_schema_field *f = column(w, col, 1u << BP_SCHEMA_RECORD, WT_LEN);
    if (!f)
        return;
    if (w->depth + 1 >= (int)BP_ARRAY_LEN(w->rec)) {
        fail(w, "%s: RECORDs nested too deep", col);
        return;
    }
    w->depth++;
    w->rec[w->depth] = f;
    memset(w->seen[w->depth], 0, sizeof(w->seen[0]));
    open_len(w, w->depth);
}

/* A missing REQUIRED column of the open RECORD fails the row. */
static void
check_required(struct bp_proto_put *w)
{
    const struct bp_schema_field *rec = w->rec[w->depth];
    for (size_t i = 0; i < rec->nfields && !w->failed; i++) {
        int r = rec->fields[i].required_index;
        if (r >= 0 && !(w->seen[w->depth][r / 64] & ((uint64_t)1 << (r % 64))))
            fail(w, "%s: missing REQUIRED column", rec->fields[i].name);
    }
}

/* See proto_put.h. */
void
bp_proto_put_close(struct bp_proto_put *w)
{
    if (w->failed)
        return;
    if (w->depth == 0) {
        fail(w, "a RECORD closed that was not open");
        return;
    }
    check_required(w);
    close_len(w, w->depth);
    w->depth--;
}

/* See proto_put.h. */
int
bp_proto_put_end(struct bp_proto_put *w, char *err, size_t errlen)
{
    if (!w->failed && w->depth != 0)
        fail(w, "%d RECORD(s) left open", w->depth);
    if (!w->failed)
        check_required(w);
    if (!w->failed && w->b->len - w->mark[0] - 5 > BP_SCHEMA_MAX_ROW)
        fail(w, "%zu bytes, over BigQuery's row limit of %u bytes", w->b->len - w->mark[0] - 5,
             BP_SCHEMA_MAX_ROW);
    close_len(w, 0);
    if (w->failed) {
        w->b->len = w->start;
        snprintf(err, errlen, "%s", w->err);
        return -1;
    }
    return 0;
}
