/* Unit tests: the Storage Write API's fixed messages (proto_msg.c). Requests read back with the
 * test's wire reader (field numbers as googleapis' storage.proto has them); replies written here
 * by hand, the way the service would, including hostile ones: truncated, garbage, a row index
 * out of range, an updated_schema nested 100000 levels deep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto_msg.h"
#include "proto_wire_read.h"

/* ---- a small writer for the replies ---- */

static void
w_varint(bp_buf_t *b, uint64_t v)
{
    uint8_t t[10];
    size_t k = 0;
    while (v >= 0x80) {
        t[k++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[k++] = (uint8_t)v;
    assert_int_equal(bp_buf_append(b, t, k), 0);
}

static void
w_int(bp_buf_t *b, uint32_t num, uint64_t v)
{
    w_varint(b, (uint64_t)num << 3);
    w_varint(b, v);
}

static void
w_bytes(bp_buf_t *b, uint32_t num, const void *p, size_t n)
{
    w_varint(b, ((uint64_t)num << 3) | 2);
    w_varint(b, n);
    assert_int_equal(bp_buf_append(b, p, n), 0);
}

static void
w_str(bp_buf_t *b, uint32_t num, const char *s)
{
    w_bytes(b, num, s, strlen(s));
}

/* Appends sub as a length-delimited field num of b, and empties sub. */
static void
w_msg(bp_buf_t *b, uint32_t num, bp_buf_t *sub)
{
    w_bytes(b, num, sub->data, sub->len);
    bp_buf_reset(sub);
}

static void
append_request_fields(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct bp_append_req req = {"projects/p/datasets/d/tables/t/streams/s1", 1, 0, "DESC", 4,
                                "\x0a\x01x\x0a\x00", 5, "bepipe-lua"};
    assert_int_equal(bp_proto_append_request(&b, &req), 0);
    struct wf fs[10], sub[5], sub2[5];
    size_t n = wire_fields(b.data, b.len, fs, 10);
    assert_int_equal(n, 4);
    assert_true(wire_is(wire_find(fs, n, 1, 0), "projects/p/datasets/d/tables/t/streams/s1"));
    /* offset 0 is set: an Int64Value present though empty (proto3 leaves its zero out) */
    const struct wf *off = wire_find(fs, n, 2, 0);
    assert_non_null(off);
    assert_int_equal(off->n, 0);
    const struct wf *pr = wire_find(fs, n, 4, 0);
    size_t k = wire_fields(pr->p, pr->n, sub, 5);
    assert_int_equal(k, 2);
    assert_int_equal(wire_fields(wire_find(sub, k, 1, 0)->p, wire_find(sub, k, 1, 0)->n, sub2, 5),
                     1);
    assert_true(wire_is(&sub2[0], "DESC"));
    const struct wf *rows = wire_find(sub, k, 2, 0);
    assert_true(rows->n == 5 && memcmp(rows->p, "\x0a\x01x\x0a\x00", 5) == 0);
    assert_true(wire_is(wire_find(fs, n, 6, 0), "bepipe-lua"));
    /* a later request on the _default stream: no offset, no schema, no trace id */
    bp_buf_reset(&b);
    struct bp_append_req later = {"projects/p/datasets/d/tables/t/streams/_default", 0, 0, NULL,
                                  0, "\x0a\x00", 2, NULL};
    assert_int_equal(bp_proto_append_request(&b, &later), 0);
    n = wire_fields(b.data, b.len, fs, 10);
    assert_int_equal(n, 2);
    assert_null(wire_find(fs, n, 2, 0));
    pr = wire_find(fs, n, 4, 0);
    k = wire_fields(pr->p, pr->n, sub, 5);
    assert_int_equal(k, 1);
    assert_int_equal(sub[0].num, 2);
    /* offset 1234567890123 */
    bp_buf_reset(&b);
    req.offset = 1234567890123LL;
    assert_int_equal(bp_proto_append_request(&b, &req), 0);
    n = wire_fields(b.data, b.len, fs, 10);
    off = wire_find(fs, n, 2, 0);
    assert_int_equal(wire_fields(off->p, off->n, sub, 5), 1);
    assert_int_equal(sub[0].u, 1234567890123ULL);
    /* over the buffer's limit: -1, nothing appended */
    bp_buf_t small;
    bp_buf_init(&small, 10);
    assert_int_equal(bp_proto_append_request(&small, &req), -1);
    assert_int_equal(small.len, 0);
    bp_buf_free(&small);
    bp_buf_free(&b);
}

static void
stream_requests(void **state)
{
    (void)state;
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct wf fs[10], sub[5];
    assert_int_equal(bp_proto_create_stream_request(&b, "projects/p/datasets/d/tables/t", 1), 0);
    size_t n = wire_fields(b.data, b.len, fs, 10);
    assert_int_equal(n, 2);
    assert_true(wire_is(wire_find(fs, n, 1, 0), "projects/p/datasets/d/tables/t"));
    assert_int_equal(wire_fields(fs[1].p, fs[1].n, sub, 5), 1);
    assert_int_equal(sub[0].num, 2);
    assert_int_equal(sub[0].u, 1);
    bp_buf_reset(&b);
    assert_int_equal(bp_proto_finalize_request(&b, "s"), 0);
    n = wire_fields(b.data, b.len, fs, 10);
    assert_true(n == 1 && wire_is(&fs[0], "s") && fs[0].num == 1);
    bp_buf_reset(&b);
    assert_int_equal(bp_proto_get_stream_request(&b, "s", 2), 0);
    n = wire_fields(b.data, b.len, fs, 10);
    assert_true(n == 2 && fs[1].num == 3 && fs[1].u == 2);
    bp_buf_reset(&b);
    const char *streams[] = {"a", "b"};
    assert_int_equal(bp_proto_batch_commit_request(&b, "t", streams, 2), 0);
    n = wire_fields(b.data, b.len, fs, 10);
    assert_int_equal(n, 3);
    assert_true(wire_is(wire_find(fs, n, 2, 0), "a") && wire_is(wire_find(fs, n, 2, 1), "b"));
    bp_buf_free(&b);
}

static int
decode(bp_buf_t *b, size_t nrows, struct bp_append_reply *r, char *err)
{
    return bp_proto_append_reply_decode(b->data, b->len, nrows, r, err, 300);
}

static void
append_replies(void **state)
{
    (void)state;
    bp_buf_t b, s1, s2;
    bp_buf_init(&b, 1 << 24);
    bp_buf_init(&s1, 1 << 24);
    bp_buf_init(&s2, 1 << 24);
    struct bp_append_reply r;
    char err[300];
    /* append_result{offset{42}} and an unknown field, skipped */
    w_int(&s2, 1, 42);
    w_msg(&s1, 1, &s2);
    w_msg(&b, 1, &s1);
    w_int(&b, 99, 7);
    w_str(&b, 5, "projects/p/datasets/d/tables/t/streams/s1");
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_true(r.has_result && r.has_offset && !r.has_error);
    assert_int_equal(r.offset, 42);
    assert_string_equal(r.write_stream, "projects/p/datasets/d/tables/t/streams/s1");
    bp_proto_append_reply_free(&r);
    /* the default stream's: an empty append_result */
    bp_buf_reset(&b);
    w_msg(&b, 1, &s1);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_true(r.has_result && !r.has_offset);
    bp_proto_append_reply_free(&r);
    /* an empty reply: nothing set */
    bp_buf_reset(&b);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_true(!r.has_result && !r.has_error && r.nrow_errors == 0 && !r.updated_schema);
    assert_string_equal(r.write_stream, "");
    bp_proto_append_reply_free(&r);
    /* error: ALREADY_EXISTS with a StorageError OFFSET_ALREADY_EXISTS in its details */
    bp_buf_reset(&b);
    w_int(&s2, 1, 8);
    w_str(&s2, 2, "projects/p/datasets/d/tables/t/streams/s1");
    bp_buf_t any;
    bp_buf_init(&any, 1 << 20);
    w_str(&any, 1, "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError");
    w_msg(&any, 2, &s2);
    w_int(&s1, 1, 6);
    w_str(&s1, 2, "offset already exists");
    w_str(&s2, 1, "type.googleapis.com/google.rpc.DebugInfo");
    w_msg(&s1, 3, &s2);
    w_msg(&s1, 3, &any);
    w_msg(&b, 2, &s1);
    assert_int_equal(decode(&b, 3, &r, err), 0);
    assert_true(r.has_error && !r.has_result);
    assert_int_equal(r.code, 6);
    assert_string_equal(r.message, "offset already exists");
    assert_int_equal(r.storage_code, BP_STORAGE_OFFSET_ALREADY_EXISTS);
    assert_string_equal(r.storage_entity, "projects/p/datasets/d/tables/t/streams/s1");
    bp_proto_append_reply_free(&r);
    /* row_errors: indexes below the request's row count */
    bp_buf_reset(&b);
    w_int(&s1, 1, 1);
    w_int(&s1, 2, 1);
    w_str(&s1, 3, "Field price: FLOAT64 expected");
    w_msg(&b, 4, &s1);
    w_int(&s1, 1, 3);
    w_int(&s1, 2, 1);
    w_msg(&b, 4, &s1);
    assert_int_equal(decode(&b, 4, &r, err), 0);
    assert_int_equal(r.nrow_errors, 2);
    assert_int_equal(r.row_errors[0].index, 1);
    assert_int_equal(r.row_errors[0].code, 1);
    assert_string_equal(r.row_errors[0].message, "Field price: FLOAT64 expected");
    assert_int_equal(r.row_errors[1].index, 3);
    assert_string_equal(r.row_errors[1].message, "");
    bp_proto_append_reply_free(&r);
    assert_int_equal(decode(&b, 3, &r, err), -1);
    assert_string_equal(err, "AppendRowsResponse: row_errors names row 3 of 3");
    assert_null(r.row_errors);
    bp_buf_reset(&b);
    w_int(&s1, 1, (uint64_t)-1LL);
    w_msg(&b, 4, &s1);
    assert_int_equal(decode(&b, 3, &r, err), -1);
    assert_string_equal(err, "AppendRowsResponse: row_errors names row -1 of 3");
    bp_buf_free(&any);
    bp_buf_free(&s2);
    bp_buf_free(&s1);
    bp_buf_free(&b);
}

/* A TableFieldSchema body: name, type, mode, and sub-fields (already encoded) */
static void
field(bp_buf_t *out, uint32_t num, const char *name, int type, int mode, bp_buf_t *subs)
{
    bp_buf_t f;
    bp_buf_init(&f, 1 << 24);
    w_str(&f, 1, name);
    w_int(&f, 2, (uint64_t)type);
    if (mode)
        w_int(&f, 3, (uint64_t)mode);
    if (subs && subs->len)
        assert_int_equal(bp_buf_append(&f, subs->data, subs->len), 0);
    w_msg(out, num, &f);
    bp_buf_free(&f);
}

static void
updated_schemas(void **state)
{
    (void)state;
    bp_buf_t b, ts, subs;
    bp_buf_init(&b, 1 << 24);
    bp_buf_init(&ts, 1 << 24);
    bp_buf_init(&subs, 1 << 24);
    struct bp_append_reply r;
    char err[300];
    field(&subs, 4, "x", 7, 0, NULL);
    field(&ts, 1, "a", 2, 2, NULL);
    field(&ts, 1, "r", 4, 3, &subs);
    field(&ts, 1, "n", 13, 1, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    const struct bp_schema *s = r.updated_schema;
    assert_non_null(s);
    assert_int_equal(s->root.nfields, 3);
    assert_string_equal(s->root.fields[0].name, "a");
    assert_int_equal(s->root.fields[0].type, BP_SCHEMA_INT64);
    assert_int_equal(s->root.fields[0].mode, BP_SCHEMA_REQUIRED);
    assert_int_equal(s->root.fields[1].type, BP_SCHEMA_RECORD);
    assert_int_equal(s->root.fields[1].mode, BP_SCHEMA_REPEATED);
    assert_int_equal(s->root.fields[1].fields[0].type, BP_SCHEMA_TIMESTAMP);
    assert_string_equal(s->root.fields[2].type_name, "BIGNUMERIC");
    assert_null(r.schema_error);
    bp_proto_append_reply_free(&r);
    /* an unknown type, and a STRUCT without fields: not a schema, dropped with its reason */
    bp_buf_reset(&b);
    field(&ts, 1, "a", 77, 0, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_null(r.updated_schema);
    assert_string_equal(r.schema_error, "updated_schema: an unknown type or mode");
    bp_proto_append_reply_free(&r);
    bp_buf_reset(&b);
    field(&ts, 1, "rec", 4, 0, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_null(r.updated_schema);
    assert_string_equal(r.schema_error, "updated_schema: rec: RECORD without fields");
    bp_proto_append_reply_free(&r);
    /* nested 100000 levels (3 or 4 bytes a level: a TableFieldSchema holding only its fields),
     * written from the inside out: refused before protobuf-c's unbounded recursion sees it */
    bp_buf_reset(&b);
    size_t cap = 500000, pos = cap;
    uint8_t *deep = malloc(cap);
    assert_non_null(deep);
    for (int i = 0; i < 100000; i++) {
        uint8_t t[10];
        size_t k = 0;
        uint64_t len = cap - pos;
        do {
            t[k++] = (uint8_t)((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
            len >>= 7;
        } while (len);
        pos -= k;
        memcpy(deep + pos, t, k);
        deep[--pos] = i == 99999 ? (1 << 3) | 2 : (4 << 3) | 2;    /* the outermost: field 1 */
    }
    w_bytes(&b, 3, deep + pos, cap - pos);
    free(deep);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_null(r.updated_schema);
    assert_string_equal(r.schema_error,
                        "updated_schema: not a TableSchema, or nested deeper than 16");
    bp_proto_append_reply_free(&r);
    /* bytes that are no protobuf at all */
    bp_buf_reset(&b);
    w_bytes(&b, 3, "\x0a\xff\xff", 3);
    assert_int_equal(decode(&b, 0, &r, err), 0);
    assert_null(r.updated_schema);
    assert_non_null(r.schema_error);
    bp_proto_append_reply_free(&r);
    bp_buf_free(&subs);
    bp_buf_free(&ts);
    bp_buf_free(&b);
}

/* A reply whose rows were written but whose updated_schema cannot be read: read as written (the
 * schema dropped, its reason kept), or the caller would send the rows again and store them twice.
 * The same for an error and row_errors beside such a schema; a malformed append_result still
 * makes the reply unreadable. */
static void
unreadable_updated_schema_dropped(void **state)
{
    (void)state;
    bp_buf_t b, s1, s2, ts;
    bp_buf_init(&b, 1 << 20);
    bp_buf_init(&s1, 1 << 20);
    bp_buf_init(&s2, 1 << 20);
    bp_buf_init(&ts, 1 << 20);
    struct bp_append_reply r;
    char err[300];
    /* append_result{} + updated_schema{fields{name:"a" type:77}} */
    w_msg(&b, 1, &s1);
    field(&ts, 1, "a", 77, 0, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 2, &r, err), 0);
    assert_true(r.has_result && !r.has_error && r.nrow_errors == 0);
    assert_null(r.updated_schema);
    assert_string_equal(r.schema_error, "updated_schema: an unknown type or mode");
    bp_proto_append_reply_free(&r);
    assert_null(r.schema_error);
    /* error{code 3} + row_errors{index 1} + updated_schema with an unknown mode */
    bp_buf_reset(&b);
    w_int(&s1, 1, 3);
    w_str(&s1, 2, "bad row");
    w_msg(&b, 2, &s1);
    w_int(&s1, 1, 1);
    w_int(&s1, 2, 1);
    w_str(&s1, 3, "no such field");
    w_msg(&b, 4, &s1);
    field(&ts, 1, "a", 1, 9, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 2, &r, err), 0);
    assert_true(r.has_error && r.code == 3 && !r.has_result);
    assert_int_equal(r.nrow_errors, 1);
    assert_int_equal(r.row_errors[0].index, 1);
    assert_null(r.updated_schema);
    assert_string_equal(r.schema_error, "updated_schema: an unknown type or mode");
    bp_proto_append_reply_free(&r);
    /* a malformed append_result beside it: still unreadable */
    bp_buf_reset(&b);
    w_bytes(&b, 1, "\x0a\xff", 2);
    field(&ts, 1, "a", 77, 0, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 2, &r, err), -1);
    assert_null(r.schema_error);
    assert_null(r.updated_schema);
    /* a row index out of range beside it: still unreadable */
    bp_buf_reset(&b);
    w_int(&s1, 1, 5);
    w_msg(&b, 4, &s1);
    field(&ts, 1, "a", 77, 0, NULL);
    w_msg(&b, 3, &ts);
    assert_int_equal(decode(&b, 2, &r, err), -1);
    assert_null(r.schema_error);
    bp_buf_free(&ts);
    bp_buf_free(&s2);
    bp_buf_free(&s1);
    bp_buf_free(&b);
}

static void
garbage_and_truncation(void **state)
{
    (void)state;
    struct bp_append_reply r;
    char err[300];
    static const char *const bad[] = {
        "\xff\xff\xff", "\x0a\x05\x0a", "\x12", "\x22\x02\x08", "\x0b", "\x09\x01",
        "\x1a\x03\x0a\x01", "\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
    };
    for (size_t i = 0; i < BP_ARRAY_LEN(bad); i++) {
        if (bp_proto_append_reply_decode(bad[i], strlen(bad[i]), 5, &r, err, sizeof(err)) != -1)
            fail_msg("bad reply %zu decoded", i);
        assert_null(r.message);
    }
    /* every prefix of a good reply: decoded or refused, never more */
    bp_buf_t b, s1, s2;
    bp_buf_init(&b, 1 << 20);
    bp_buf_init(&s1, 1 << 20);
    bp_buf_init(&s2, 1 << 20);
    w_int(&s2, 1, 42);
    w_msg(&s1, 1, &s2);
    w_msg(&b, 1, &s1);
    w_int(&s1, 1, 0);
    w_str(&s1, 3, "bad row");
    w_msg(&b, 4, &s1);
    for (size_t n = 0; n <= b.len; n++) {
        if (bp_proto_append_reply_decode(b.data, n, 1, &r, err, sizeof(err)) == 0)
            bp_proto_append_reply_free(&r);
    }
    assert_int_equal(bp_proto_append_reply_decode(b.data, b.len, 1, &r, err, sizeof(err)), 0);
    assert_int_equal(r.nrow_errors, 1);
    bp_proto_append_reply_free(&r);
    bp_proto_append_reply_free(NULL);
    bp_buf_free(&s2);
    bp_buf_free(&s1);
    bp_buf_free(&b);
}

static void
other_replies(void **state)
{
    (void)state;
    bp_buf_t b, s1;
    bp_buf_init(&b, 1 << 20);
    bp_buf_init(&s1, 1 << 20);
    char err[300], msg[16], *name = NULL;
    w_str(&b, 1, "projects/p/datasets/d/tables/t/streams/abc");
    w_int(&b, 2, 1);
    field(&s1, 1, "a", 1, 0, NULL);
    w_msg(&b, 5, &s1);
    struct bp_schema *sch = NULL;
    assert_int_equal(bp_proto_write_stream_decode(b.data, b.len, &name, &sch, err, sizeof(err)),
                     0);
    assert_string_equal(name, "projects/p/datasets/d/tables/t/streams/abc");
    assert_non_null(sch);
    assert_int_equal(sch->root.nfields, 1);
    assert_int_equal(sch->root.fields[0].type, BP_SCHEMA_STRING);
    bp_schema_free(sch);
    free(name);
    assert_int_equal(bp_proto_write_stream_decode(b.data, b.len, &name, NULL, err, sizeof(err)),
                     0);
    free(name);
    bp_buf_reset(&b);
    w_int(&b, 2, 1);
    assert_int_equal(bp_proto_write_stream_decode(b.data, b.len, &name, NULL, err, sizeof(err)),
                     -1);
    /* a stream whose table_schema has a type no one knows */
    bp_buf_reset(&b);
    w_str(&b, 1, "s");
    field(&s1, 1, "a", 99, 0, NULL);
    w_msg(&b, 5, &s1);
    assert_int_equal(bp_proto_write_stream_decode(b.data, b.len, &name, &sch, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "WriteStream.table_schema: an unknown type or mode");
    assert_null(sch);
    int64_t rows = -1;
    bp_buf_reset(&b);
    w_int(&b, 1, 12345);
    assert_int_equal(bp_proto_finalize_reply_decode(b.data, b.len, &rows, err, sizeof(err)), 0);
    assert_int_equal(rows, 12345);
    assert_int_equal(bp_proto_finalize_reply_decode("\x08", 1, &rows, err, sizeof(err)), -1);
    int code, sc;
    bp_buf_reset(&b);
    w_int(&b, 1, 11);
    w_str(&b, 2, "offset out of range: 17 > 12");
    w_str(&s1, 1, "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError");
    bp_buf_t se;
    bp_buf_init(&se, 100);
    w_int(&se, 1, 9);
    w_msg(&s1, 2, &se);
    w_msg(&b, 3, &s1);
    assert_int_equal(bp_proto_status_decode(b.data, b.len, &code, msg, sizeof(msg), &sc, err,
                                            sizeof(err)), 0);
    assert_int_equal(code, 11);
    assert_string_equal(msg, "offset out of r");     /* cut to the caller's buffer */
    assert_int_equal(sc, BP_STORAGE_OFFSET_OUT_OF_RANGE);
    assert_int_equal(bp_proto_status_decode("\x12\x05", 2, &code, msg, sizeof(msg), &sc, err,
                                            sizeof(err)), -1);
    bp_buf_free(&se);
    bp_buf_free(&s1);
    bp_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(append_request_fields),
        cmocka_unit_test(stream_requests),
        cmocka_unit_test(append_replies),
        cmocka_unit_test(updated_schemas),
        cmocka_unit_test(unreadable_updated_schema_dropped),
        cmocka_unit_test(garbage_and_truncation),
        cmocka_unit_test(other_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
