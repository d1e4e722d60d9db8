/* proto_put.c - protobuf rows written column by column from C values. The wire forms are those
 * of proto_row.c (field k of a RECORD = its k-th column; a length-delimited value written after
 * a 5-byte hole its length then fills); written by hand for the same reason: the message type is
 * only known at run time. The values C also writes as insertAll JSON are put as that JSON reads
 * back (the same text, the same TIMESTAMP, nothing where it is null) or not at all: where the two
 * could differ the row fails, and the store reads its JSON instead, so a C-built protobuf is a
 * shortcut that never changes what is stored. */
#include "proto_put.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json_out.h"
#include "schema_scalar.h"

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

/* The value after the hole at mark ends at w->b->len: its length in the hole, the value moved
 * back over the bytes the length left. */
static void
close_at(struct bp_proto_put *w, size_t mark)
{
    if (w->failed)
        return;
    size_t n = w->b->len - mark - 5;
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

static void
close_len(struct bp_proto_put *w, int depth)
{
    close_at(w, w->mark[depth]);
}

/* Column col of the open RECORD, or NULL (the row failed). */
static const struct bp_schema_field *
lookup(struct bp_proto_put *w, const char *col)
{
    if (w->failed)
        return NULL;
    const struct bp_schema_field *rec = w->rec[w->depth];
    for (size_t i = 0; i < rec->nfields; i++)
        if (strcasecmp(rec->fields[i].name, col) == 0)
            return &rec->fields[i];
    fail(w, "%s: no such column", col);
    return NULL;
}

/* Column col of the open RECORD, checked against the kinds of value the call writes (a mask of
 * 1 << bp_schema_type) and, when single, not REPEATED; its tag written. NULL after a failure. */
static const struct bp_schema_field *
column_as(struct bp_proto_put *w, const char *col, unsigned types, int wt, bool single)
{
    const struct bp_schema_field *rec = w->rec[w->depth], *f = lookup(w, col);
    if (!f)
        return NULL;
    if (single && f->mode == BP_SCHEMA_REPEATED) {
        fail(w, "%s: a REPEATED column cannot take a single value", col);
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

static const struct bp_schema_field *
column(struct bp_proto_put *w, const char *col, unsigned types, int wt)
{
    return column_as(w, col, types, wt, false);
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

/* The kinds of column the JSON path writes a JSON string into as it is (proto_row.c checks the
 * others' text, which C-built rows never need). */
#define TEXT_COLUMNS (1u << BP_SCHEMA_STRING | 1u << BP_SCHEMA_JSON)

/* The value just written at w->b[at..) into a column f of type JSON must be JSON text. */
static void
json_text_check(struct bp_proto_put *w, const struct bp_schema_field *f, size_t at)
{
    if (!w->failed && f->type == BP_SCHEMA_JSON &&
        !bp_schema_json_text_ok(w->b->data + at, w->b->len - at))
        fail(w, "%s: not JSON text, which a JSON column takes", f->name);
}

/* See proto_put.h. */
void
bp_proto_put_text(struct bp_proto_put *w, const char *col, const char *p, size_t n)
{
    if (!w->failed && bp_utf8_valid_prefix(p, n) != n)
        fail(w, "%s: not UTF-8", col);
    const struct bp_schema_field *f = column_as(w, col, TEXT_COLUMNS, WT_LEN, true);
    if (!f)
        return;
    put_len_value(w, p, n);
    json_text_check(w, f, w->b->len - n);
}

/* The hex digits of a \u escape at p (4 bytes), or -1. */
static long
hex4(const char *p)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The text of the JSON string body s[0..n) at o (room for n bytes: no escape is shorter than
 * what it stands for); its end, or NULL on an escape json_out.c does not write (a surrogate, an
 * unknown letter, a quote left bare). */
static char *
unescape(char *o, const char *s, size_t n)
{
    const char *e = s + n;
    while (s < e) {
        const char *bs = memchr(s, '\\', (size_t)(e - s));
        size_t run = bs ? (size_t)(bs - s) : (size_t)(e - s);
        if (memchr(s, '"', run))
            return NULL;
        memcpy(o, s, run);
        o += run;
        s += run;
        if (!bs)
            break;
        if (e - s < 2)
            return NULL;
        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
        const char *k = s[1] ? strchr(from, s[1]) : NULL;
        if (k) {
            *o++ = to[k - from];
            s += 2;
            continue;
        }
        long v = s[1] == 'u' && e - s >= 6 ? hex4(s + 2) : -1;
        if (v < 0 || (v >= 0xd800 && v <= 0xdfff))
            return NULL;
        if (v < 0x80) {
            *o++ = (char)v;
        } else if (v < 0x800) {
            *o++ = (char)(0xc0 | v >> 6);
            *o++ = (char)(0x80 | (v & 0x3f));
        } else {
            *o++ = (char)(0xe0 | v >> 12);
            *o++ = (char)(0x80 | ((v >> 6) & 0x3f));
            *o++ = (char)(0x80 | (v & 0x3f));
        }
        s += 6;
    }
    return o;
}

/* See proto_put.h. */
void
bp_proto_put_json_string(struct bp_proto_put *w, const char *col, const char *q, size_t n)
{
    if (!w->failed && (n < 2 || q[0] != '"' || q[n - 1] != '"'))
        fail(w, "%s: not a JSON string", col);
    const struct bp_schema_field *f = column_as(w, col, TEXT_COLUMNS, WT_LEN, true);
    if (!f)
        return;
    /* the text is at most as long as its escaped form: one reservation, then written in place
     * (q may lie in another buffer only: w->b does not move while it is read) */
    if (bp_buf_reserve(w->b, n + 5) != 0) {
        fail(w, "the rows pass the request's size limit");
        return;
    }
    size_t mark = w->b->len;
    char *end = unescape(w->b->data + mark + 5, q + 1, n - 2);
    if (!end) {
        fail(w, "%s: an escape json_out.c does not write", col);
        return;
    }
    w->b->len = (size_t)(end - w->b->data);
    json_text_check(w, f, mark + 5);
    close_at(w, mark);
}

/* See proto_put.h. */
void
bp_proto_put_timestamp_text(struct bp_proto_put *w, const char *col, const char *p, size_t n)
{
    int64_t us = 0;
    if (!w->failed && bp_schema_timestamp_us(p, n, &us) != 0)
        fail(w, "%s: \"%.*s\" is not a TIMESTAMP", col, (int)(n > 40 ? 40 : n), p);
    if (column_as(w, col, 1u << BP_SCHEMA_TIMESTAMP, WT_VARINT, true))
        put_varint(w, (uint64_t)us);
}

static int
read_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*i >= n)
            return -1;
        uint8_t b = p[(*i)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* The next field of the message body p[0..n) from *i: its number, the value skipped. -1 when the
 * bytes there are not a field. */
static int
next_field(const uint8_t *p, size_t n, size_t *i, uint64_t *num)
{
    uint64_t key, v;
    if (read_varint(p, n, i, &key) != 0)
        return -1;
    *num = key >> 3;
    switch (key & 7) {
    case WT_VARINT:
        return read_varint(p, n, i, &v);
    case WT_LEN:
        if (read_varint(p, n, i, &v) != 0 || v > n - *i)
            return -1;
        *i += (size_t)v;
        return 0;
    case 1: case 5:     /* fixed64, fixed32 */
        v = (key & 7) == 1 ? 8 : 4;
        if (v > n - *i)
            return -1;
        *i += (size_t)v;
        return 0;
    default:
        return -1;
    }
}

/* Whether the open RECORD's value written so far holds field f (a malformed value: yes). */
static bool
holds(const struct bp_proto_put *w, const struct bp_schema_field *f)
{
    uint64_t want = (uint64_t)(f - w->rec[w->depth]->fields) + 1, num;
    size_t start = w->mark[w->depth] + 5, i = 0;
    const uint8_t *p = (const uint8_t *)w->b->data + start;
    while (i < w->b->len - start) {
        if (next_field(p, w->b->len - start, &i, &num) != 0 || num == want)
            return true;
    }
    return false;
}

/* See proto_put.h. */
void
bp_proto_put_null(struct bp_proto_put *w, const char *col)
{
    const struct bp_schema_field *f = lookup(w, col);
    if (!f)
        return;
    if (f->mode == BP_SCHEMA_REQUIRED)
        fail(w, "%s: missing REQUIRED column (null)", col);
    else if (holds(w, f))
        fail(w, "%s: null after a value, which protobuf cannot unset", col);
}

/* See proto_put.h. */
void
bp_proto_put_fail(struct bp_proto_put *w, const char *why)
{
    fail(w, "%s", why);
}

/* See proto_put.h. */
void
bp_proto_put_resume(struct bp_proto_put *w, const struct bp_schema *s, bp_buf_t *rows,
                    const void *entry, size_t n)
{
    bp_proto_put_begin(w, s, rows);
    const uint8_t *p = entry;
    size_t i = 0;
    uint64_t num;
    /* one field: serialized_rows (1, length-delimited) whose value ends the entry */
    if (n < 2 || p[0] != ((1 << 3) | WT_LEN) || next_field(p, n, &i, &num) != 0 || i != n) {
        fail(w, "not a serialized_rows entry");
        return;
    }
    size_t body = 1;
    while (p[body] & 0x80)
        body++;
    body++;
    if (!w->failed && bp_buf_append(w->b, p + body, n - body) != 0)
        fail(w, "the rows pass the request's size limit");
    const struct bp_schema_field *rec = &s->root;
    for (i = body; !w->failed && i < n; ) {
        if (next_field(p, n, &i, &num) != 0 || num == 0 || num > rec->nfields) {
            fail(w, "the entry is not a row of this schema");
            break;
        }
        int r = rec->fields[num - 1].required_index;
        if (r >= 0)
            w->seen[0][r / 64] |= (uint64_t)1 << (r % 64);
    }
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
