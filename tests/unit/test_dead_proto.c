/* Unit tests: the rows C writes as protobuf beside their insertAll JSON (bigquery.method =
 * storage_write): dead letters of both formats (dead_format.c) and the metadata columns added to
 * the map's row (row_meta.c's bp_meta_proto), with proto_put.c's functions for them.
 *
 * The differential cases hold each C-built row against what the store would send without it:
 * the JSON entry read back into a Lua table (entry_lua.c) and written by proto_row.c. Both are
 * decoded with the test's own wire reader into a canonical form (per field number, in order; the
 * last value of a single field, as a protobuf reader keeps it; RECORDs compared the same way,
 * since the two writers order a record's fields apart) and must be equal: invalid UTF-8, control
 * characters, escapes, cuts of payloads and attributes, attribute values that are not strings,
 * nulls. A row the JSON could say and the protobuf could not must fail, never differ. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>

#include "dead_format.h"
#include "entry_lua.h"
#include "proto_put.h"
#include "proto_row.h"
#include "proto_wire_read.h"
#include "row_meta.h"
#include "schema.h"

#ifndef SRC_ROOT
#define SRC_ROOT "."
#endif

#define NOW "2025-12-02T00:00:01.123456Z"
#define PT "2025-12-02T00:00:00.250000Z"

static const char rejected_schema[] =
    "[{\"name\":\"message_id\",\"type\":\"STRING\"},{\"name\":\"event_type\",\"type\":\"STRING\"},"
    "{\"name\":\"error_stage\",\"type\":\"STRING\"},{\"name\":\"reason\",\"type\":\"STRING\"},"
    "{\"name\":\"raw_payload\",\"type\":\"STRING\"},{\"name\":\"attributes\",\"type\":\"JSON\"},"
    "{\"name\":\"publish_time\",\"type\":\"TIMESTAMP\"},"
    "{\"name\":\"ingestion_time\",\"type\":\"TIMESTAMP\"}]";

static const char dataflow_schema[] =
    "[{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"payloadString\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"payloadBytes\",\"type\":\"BYTES\",\"mode\":\"REQUIRED\"},"
    "{\"name\":\"attributes\",\"type\":\"RECORD\",\"mode\":\"REPEATED\",\"fields\":["
    "  {\"name\":\"key\",\"type\":\"STRING\"},{\"name\":\"value\",\"type\":\"STRING\"}]},"
    "{\"name\":\"errorMessage\",\"type\":\"STRING\"},{\"name\":\"stacktrace\",\"type\":\"STRING\"}]";

static struct bp_schema *
schema(const char *json)
{
    char why[300];
    struct bp_schema *s = bp_schema_from_json(json, strlen(json), why, sizeof(why));
    if (!s)
        fail_msg("schema: %s", why);
    return s;
}

static bp_entry_lua_t *
reader(void)
{
    char err[300];
    bp_entry_lua_t *r = bp_entry_lua_new(SRC_ROOT "/scripts", err, sizeof(err));
    if (!r)
        fail_msg("entry reader: %s", err);
    return r;
}

/* The canonical text of message body p[0..n) of RECORD rec into out (see the file's comment). */
static void
canon(const struct bp_schema_field *rec, const uint8_t *p, size_t n, bp_buf_t *out)
{
    struct wf *fs = calloc(4096, sizeof(*fs));
    size_t nf = wire_fields(p, n, fs, 4096);
    char t[64];
    for (size_t k = 1; k <= rec->nfields; k++) {
        const struct bp_schema_field *f = &rec->fields[k - 1];
        size_t last = nf;
        for (size_t i = 0; i < nf; i++) {
            if (fs[i].num != k)
                continue;
            if (f->mode != BP_SCHEMA_REPEATED) {
                last = i;
                continue;
            }
            snprintf(t, sizeof(t), "%zu[", k);
            assert_int_equal(bp_buf_append_str(out, t), 0);
            canon(f, fs[i].p, fs[i].n, out);
            assert_int_equal(bp_buf_append_str(out, "]"), 0);
        }
        if (last == nf)
            continue;
        const struct wf *v = &fs[last];
        if (f->type == BP_SCHEMA_RECORD) {
            snprintf(t, sizeof(t), "%zu{", k);
            assert_int_equal(bp_buf_append_str(out, t), 0);
            canon(f, v->p, v->n, out);
            assert_int_equal(bp_buf_append_str(out, "}"), 0);
        } else if (v->wt == 2) {
            snprintf(t, sizeof(t), "%zu=%zu:", k, v->n);
            assert_int_equal(bp_buf_append_str(out, t), 0);
            assert_int_equal(bp_buf_append(out, v->p, v->n), 0);
        } else {
            snprintf(t, sizeof(t), "%zu=%d/%llu", k, v->wt, (unsigned long long)v->u);
            assert_int_equal(bp_buf_append_str(out, t), 0);
        }
        assert_int_equal(bp_buf_append(out, ";", 1), 0);
    }
    for (size_t i = 0; i < nf; i++)
        if (fs[i].num == 0 || fs[i].num > rec->nfields)
            fail_msg("field %u is no column", fs[i].num);
    free(fs);
}

/* The canonical text of a serialized_rows entry. */
static void
canon_entry(const struct bp_schema *s, const void *e, size_t n, bp_buf_t *out)
{
    struct wf outer[2];
    assert_int_equal(wire_fields(e, n, outer, 2), 1);
    assert_int_equal(outer[0].num, 1);
    bp_buf_reset(out);
    canon(&s->root, outer[0].p, outer[0].n, out);
}

/* The JSON entry (one line) read back and written by proto_row.c, as the store would: 0 with
 * its canonical text in out, or -1 (a row error). */
static int
read_back(bp_entry_lua_t *r, const struct bp_schema *s, const char *e, size_t n, bp_buf_t *out)
{
    char why[600];
    bp_buf_t b;
    bp_buf_init(&b, 64 << 20);
    int rc = bp_entry_lua_push(r, e, n, why, sizeof(why));
    if (rc == 0) {
        rc = bp_proto_row_append(s, bp_entry_lua_state(r), -1, NULL, &b, why, sizeof(why));
        lua_settop(bp_entry_lua_state(r), 0);
    }
    if (rc == 0)
        canon_entry(s, b.data, b.len, out);
    bp_buf_free(&b);
    return rc;
}

static bp_msg_t
msg(const char *data, size_t len, const char *attrs, size_t attrs_len)
{
    bp_msg_t m;
    memset(&m, 0, sizeof(m));
    m.data = data;
    m.len = len;
    m.id = "1796169623716000";
    m.id_len = strlen(m.id);
    m.publish_time = 1764633600.25;
    m.attrs = attrs;
    m.attrs_len = attrs_len;
    return m;
}

/* Dead letter d in format dataflow (or not) both ways: the two must be equal. */
static void
same_dead_letter(bp_entry_lua_t *r, const struct bp_schema *s, int dataflow,
                 const struct bp_dead_letter *d)
{
    bp_buf_t json, pb, mine, back;
    bp_buf_init(&json, 16 << 20);
    bp_buf_init(&pb, 16 << 20);
    bp_buf_init(&mine, 64 << 20);
    bp_buf_init(&back, 64 << 20);
    struct bp_proto_put w;
    char err[300];
    bp_proto_put_begin(&w, s, &pb);
    int rc = dataflow ? bp_dead_dataflow_entry(&json, d, &w) : bp_dead_rejected_entry(&json, d, &w);
    assert_int_equal(rc, 0);
    if (bp_proto_put_end(&w, err, sizeof(err)) != 0)
        fail_msg("the dead letter's protobuf: %s", err);
    canon_entry(s, pb.data, pb.len, &mine);
    assert_int_equal(read_back(r, s, json.data, json.len, &back), 0);
    if (mine.len != back.len || memcmp(mine.data, back.data, mine.len) != 0)
        fail_msg("C wrote %.*s\nread back %.*s", (int)(mine.len > 3000 ? 3000 : mine.len),
                 mine.data, (int)(back.len > 3000 ? 3000 : back.len), back.data);
    bp_buf_free(&json);
    bp_buf_free(&pb);
    bp_buf_free(&mine);
    bp_buf_free(&back);
}

/* Payloads and attributes at their edges. */
static void
dead_letters_hold_what_their_json_reads_back_as(void **state)
{
    (void)state;
    bp_entry_lua_t *r = reader();
    struct bp_schema *rej = schema(rejected_schema), *df = schema(dataflow_schema);
    static const char odd[] = "{\"x\":\"\xff\xfe\xc3\x28 \x01\x1f\t\n\\\"\x7f\xe2\x82\xac"
                              "\xf0\x9f\x98\x80\xed\xa0\x80\xe2\x82\"}";
    size_t big = (size_t)BP_DEAD_PAYLOAD_MAX + 5000;
    char *large = malloc(big);
    for (size_t i = 0; i < big; i++)
        large[i] = "ab\"\\\x01\xc3\xa9\xff"[i % 8];
    size_t nattrs = BP_DEAD_ATTRS_MAX + 999;
    char *attrs = malloc(nattrs + 64);
    size_t at = (size_t)sprintf(attrs, "{\"k\":\"");
    memset(attrs + at, 'v', nattrs - at - 2);
    memcpy(attrs + nattrs - 2, "\"}", 3);
    /* many attributes: the records past BP_DEAD_ATTRS_MAX are left out, a last one says so */
    bp_buf_t many;
    bp_buf_init(&many, 8 << 20);
    assert_int_equal(bp_buf_append_str(&many, "{"), 0);
    for (int i = 0; i < 400; i++) {
        char kv[64];
        snprintf(kv, sizeof(kv), "%s\"key%d\":\"", i ? "," : "", i);
        assert_int_equal(bp_buf_append_str(&many, kv), 0);
        for (int k = 0; k < 1000; k++)
            assert_int_equal(bp_buf_append(&many, i % 2 ? "\\u00e9" : "x", i % 2 ? 6 : 1), 0);
        assert_int_equal(bp_buf_append_str(&many, "\""), 0);
    }
    assert_int_equal(bp_buf_append(&many, "}", 1), 0);
    struct {
        const char *data;
        size_t len;
        const char *attrs;
        size_t attrs_len;
        const char *etype;
    } cases[] = {
        {"{\"event_type\":\"order\"}", 22, "{\"src\":\"web\",\"n\":\"caf\xc3\xa9 \\\"q\\\"\"}",
         0, "order"},
        {odd, sizeof(odd) - 1, NULL, 0, NULL},
        {"", 0, "{}", 0, "inv\xffntory"},
        {large, big, attrs, nattrs, NULL},
        {"x", 1, many.data, many.len, NULL},
        {"x", 1, "{\"n\":1,\"o\":{\"a\":[true,null]},\"s\":\"\\u0000\"}", 0, NULL},
        {"x", 1, "[1,2]", 0, NULL},     /* not an object: one record (dataflow) */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* attrs_len 0: the text's length */
        size_t alen = cases[i].attrs && !cases[i].attrs_len ? strlen(cases[i].attrs)
                                                           : cases[i].attrs_len;
        bp_msg_t m = msg(cases[i].data, cases[i].len, cases[i].attrs, alen);
        char reason[200];
        snprintf(reason, sizeof(reason), "case %zu: \"bad\"\\ \x02 \xfe", i);
        struct bp_dead_letter d = {&m, i % 2 ? "validate" : "insert", reason, strlen(reason),
                                   cases[i].etype, cases[i].etype ? strlen(cases[i].etype) : 0,
                                   NOW, PT};
        same_dead_letter(r, rej, 0, &d);
        same_dead_letter(r, df, 1, &d);
    }
    bp_buf_free(&many);
    free(attrs);
    free(large);
    bp_schema_free(rej);
    bp_schema_free(df);
    bp_entry_lua_free(r);
}

/* A dead-letter table whose columns cannot take the values as the JSON says them: no protobuf
 * (the store reads the entry back and reports it), the buffer as it was. */
static void
dead_letter_tables_that_differ_write_no_protobuf(void **state)
{
    (void)state;
    static const char *const schemas[] = {
        /* a column missing */
        "[{\"name\":\"message_id\",\"type\":\"STRING\"}]",
        /* REQUIRED event_type, here unknown (null) */
        "[{\"name\":\"message_id\",\"type\":\"STRING\"},{\"name\":\"event_type\",\"type\":"
        "\"STRING\",\"mode\":\"REQUIRED\"},{\"name\":\"error_stage\",\"type\":\"STRING\"},"
        "{\"name\":\"reason\",\"type\":\"STRING\"},{\"name\":\"raw_payload\",\"type\":\"STRING\"},"
        "{\"name\":\"attributes\",\"type\":\"JSON\"},{\"name\":\"publish_time\",\"type\":"
        "\"TIMESTAMP\"},{\"name\":\"ingestion_time\",\"type\":\"TIMESTAMP\"}]",
        /* publish_time a STRING, reason a NUMERIC, a REPEATED message_id */
        "[{\"name\":\"message_id\",\"type\":\"STRING\"},{\"name\":\"event_type\",\"type\":"
        "\"STRING\"},{\"name\":\"error_stage\",\"type\":\"STRING\"},"
        "{\"name\":\"reason\",\"type\":\"STRING\"},{\"name\":\"raw_payload\",\"type\":\"STRING\"},"
        "{\"name\":\"attributes\",\"type\":\"JSON\"},{\"name\":\"publish_time\",\"type\":"
        "\"STRING\"},{\"name\":\"ingestion_time\",\"type\":\"TIMESTAMP\"}]",
        "[{\"name\":\"message_id\",\"type\":\"STRING\"},{\"name\":\"event_type\",\"type\":"
        "\"STRING\"},{\"name\":\"error_stage\",\"type\":\"STRING\"},"
        "{\"name\":\"reason\",\"type\":\"NUMERIC\"},{\"name\":\"raw_payload\",\"type\":\"STRING\"},"
        "{\"name\":\"attributes\",\"type\":\"JSON\"},{\"name\":\"publish_time\",\"type\":"
        "\"TIMESTAMP\"},{\"name\":\"ingestion_time\",\"type\":\"TIMESTAMP\"}]",
        "[{\"name\":\"message_id\",\"type\":\"STRING\",\"mode\":\"REPEATED\"}]",
    };
    bp_msg_t m = msg("x", 1, "{\"a\":\"b\"}", 9);
    struct bp_dead_letter d = {&m, "parse", "r", 1, NULL, 0, NOW, PT};
    for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++) {
        struct bp_schema *s = schema(schemas[i]);
        bp_buf_t json, pb;
        bp_buf_init(&json, 1 << 20);
        bp_buf_init(&pb, 1 << 20);
        assert_int_equal(bp_buf_append(&pb, "kept", 4), 0);
        struct bp_proto_put w;
        char err[300];
        bp_proto_put_begin(&w, s, &pb);
        assert_int_equal(bp_dead_rejected_entry(&json, &d, &w), 0);
        assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
        assert_int_equal(pb.len, 4);
        bp_buf_free(&json);
        bp_buf_free(&pb);
        bp_schema_free(s);
    }
    /* the template's attributes as a RECORD that is not REPEATED */
    struct bp_schema *s = schema(
        "[{\"name\":\"timestamp\",\"type\":\"TIMESTAMP\"},{\"name\":\"payloadString\","
        "\"type\":\"STRING\"},{\"name\":\"payloadBytes\",\"type\":\"BYTES\"},{\"name\":"
        "\"attributes\",\"type\":\"RECORD\",\"fields\":[{\"name\":\"key\",\"type\":\"STRING\"},"
        "{\"name\":\"value\",\"type\":\"STRING\"}]},{\"name\":\"errorMessage\",\"type\":"
        "\"STRING\"},{\"name\":\"stacktrace\",\"type\":\"STRING\"}]");
    bp_buf_t json, pb;
    bp_buf_init(&json, 1 << 20);
    bp_buf_init(&pb, 1 << 20);
    struct bp_proto_put w;
    char err[300];
    bp_proto_put_begin(&w, s, &pb);
    assert_int_equal(bp_dead_dataflow_entry(&json, &d, &w), 0);
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
    assert_string_equal(err, "attributes: not a REPEATED column");
    assert_int_equal(pb.len, 0);
    bp_buf_free(&json);
    bp_buf_free(&pb);
    bp_schema_free(s);
}

static const char meta_schema[] =
    "[{\"name\":\"a\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},{\"name\":\"n\",\"type\":\"INT64\"},"
    "{\"name\":\"message_id\",\"type\":\"STRING\"},{\"name\":\"publish_time\",\"type\":\"TIMESTAMP\"},"
    "{\"name\":\"attributes\",\"type\":\"JSON\"},{\"name\":\"subscription_name\",\"type\":\"STRING\"},"
    "{\"name\":\"delivery_attempt\",\"type\":\"INT64\"}]";

/* The map's row (JSON text) with the metadata columns of mask both ways: C's bp_meta_proto on
 * the row's protobuf, and the spliced JSON read back. Returns bp_meta_proto's result; when 0,
 * the two are equal. */
static int
meta_both_ways(bp_entry_lua_t *r, const struct bp_schema *s, const char *row, unsigned mask,
               const bp_msg_t *m, const char *sub)
{
    char why[300];
    bp_buf_t json, rows, mine, back;
    bp_buf_init(&json, 1 << 20);
    bp_buf_init(&rows, 1 << 20);
    bp_buf_init(&mine, 1 << 20);
    bp_buf_init(&back, 1 << 20);
    /* the map's row as the batch loop writes it */
    assert_int_equal(bp_buf_append_str(&json, "{\"insertId\":\"1\",\"json\":"), 0);
    size_t row_at = json.len;
    assert_int_equal(bp_buf_append_str(&json, row), 0);
    assert_int_equal(bp_buf_append(&json, "}", 1), 0);
    if (bp_entry_lua_push(r, json.data, json.len, why, sizeof(why)) != 0)
        fail_msg("%s: %s", row, why);
    if (bp_proto_row_append(s, bp_entry_lua_state(r), -1, NULL, &rows, why, sizeof(why)) != 0)
        fail_msg("%s: %s", row, why);
    lua_settop(bp_entry_lua_state(r), 0);
    size_t n = rows.len;
    assert_int_equal(bp_buf_append(&rows, "x", 1), 0);      /* what the row is added after */
    int rc = bp_meta_proto(&rows, s, rows.data, n, mask, m, sub);
    if (rc == 0) {
        canon_entry(s, rows.data + n + 1, rows.len - n - 1, &mine);
        /* the JSON: the columns spliced in, read back */
        json.len--;
        assert_int_equal(bp_meta_splice(&json, row_at, mask, m, sub), 0);
        assert_int_equal(bp_buf_append(&json, "}", 1), 0);
        assert_int_equal(read_back(r, s, json.data, json.len, &back), 0);
        if (mine.len != back.len || memcmp(mine.data, back.data, mine.len) != 0)
            fail_msg("%s: C wrote %.*s\nread back %.*s", row, (int)mine.len, mine.data,
                     (int)back.len, back.data);
    } else {
        assert_int_equal(rows.len, n + 1);
    }
    bp_buf_free(&json);
    bp_buf_free(&rows);
    bp_buf_free(&mine);
    bp_buf_free(&back);
    return rc;
}

static void
metadata_columns_hold_what_their_json_reads_back_as(void **state)
{
    (void)state;
    bp_entry_lua_t *r = reader();
    struct bp_schema *s = schema(meta_schema);
    const char *sub = "projects/p/subscriptions/s";
    static const char attrs[] = "{\"src\":\"web\",\"n\":\"caf\xc3\xa9\"}";
    bp_msg_t m = msg("x", 1, attrs, sizeof(attrs) - 1);
    m.delivery_attempt = 3;
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\",\"n\":5}", BP_META_ALL, &m, sub), 0);
    /* the map's own message_id and attributes lose to the columns', as the later JSON key */
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\",\"message_id\":\"mine\",\"attributes\":"
                                    "\"{}\"}", BP_META_ALL, &m, sub), 0);
    /* subsets; nulls of columns the map did not write (left out) */
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"\"}", BP_META_MESSAGE_ID |
                                    BP_META_DELIVERY_ATTEMPT, &m, NULL), 0);
    bp_msg_t bare = msg("x", 1, NULL, 0);
    bare.publish_time = 0;
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\",\"n\":-1}", BP_META_ALL, &bare, NULL), 0);
    /* a null over the map's value: protobuf cannot unset it */
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\",\"publish_time\":\"2025-01-01T00:00:00Z\"}",
                                    BP_META_PUBLISH_TIME, &bare, NULL), -1);
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\",\"subscription_name\":\"s\"}",
                                    BP_META_SUBSCRIPTION_NAME, &m, NULL), -1);
    /* an id that is not UTF-8 (JSON would carry U+FFFD); attributes that are not JSON text */
    bp_msg_t odd = m;
    odd.id = "12\xff";
    odd.id_len = 3;
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\"}", BP_META_MESSAGE_ID, &odd, sub), -1);
    odd = m;
    odd.attrs = "{nope";
    odd.attrs_len = 5;
    assert_int_equal(meta_both_ways(r, s, "{\"a\":\"x\"}", BP_META_ATTRIBUTES, &odd, sub), -1);
    bp_schema_free(s);
    /* columns of other types than the JSON's values take, or REQUIRED and null */
    static const char *const others[] = {
        "[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"delivery_attempt\",\"type\":\"STRING\"}]",
        "[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"delivery_attempt\",\"type\":\"INT64\","
        "\"mode\":\"REPEATED\"}]",
        "[{\"name\":\"a\",\"type\":\"STRING\"},{\"name\":\"delivery_attempt\",\"type\":\"INT64\","
        "\"mode\":\"REQUIRED\"}]",
        "[{\"name\":\"a\",\"type\":\"STRING\"}]",
    };
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
        s = schema(others[i]);
        /* (the map's row has the REQUIRED column, or it would not be protobuf at all) */
        assert_int_equal(meta_both_ways(r, s, i == 2 ? "{\"a\":\"x\",\"delivery_attempt\":7}"
                                                     : "{\"a\":\"x\"}",
                                        BP_META_DELIVERY_ATTEMPT, i == 2 ? &bare : &m, sub), -1);
        bp_schema_free(s);
    }
    bp_entry_lua_free(r);
}

/* proto_put.c's functions for values given as the JSON path gives them. */
static void
put_json_values(void **state)
{
    (void)state;
    struct bp_schema *s = schema(
        "[{\"name\":\"s\",\"type\":\"STRING\"},{\"name\":\"j\",\"type\":\"JSON\"},"
        "{\"name\":\"t\",\"type\":\"TIMESTAMP\",\"mode\":\"REQUIRED\"},"
        "{\"name\":\"r\",\"type\":\"STRING\",\"mode\":\"REPEATED\"},"
        "{\"name\":\"d\",\"type\":\"DATETIME\"}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct bp_proto_put w;
    char err[300];
    static const char q[] = "\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\\ufffd\\u00e9\\u20acz\"";
    static const char want[] = "a\"\\/\b\f\n\r\t\0\x1f\xef\xbf\xbd\xc3\xa9\xe2\x82\xacz";
    bp_proto_put_begin(&w, s, &b);
    bp_proto_put_json_string(&w, "s", q, sizeof(q) - 1);
    bp_proto_put_json_string(&w, "j", "\"{\\\"a\\\":1}\"", 11);
    bp_proto_put_timestamp_text(&w, "t", "1970-01-01T00:00:01.5Z", 22);
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), 0);
    struct wf outer[1], fs[4];
    assert_int_equal(wire_fields(b.data, b.len, outer, 1), 1);
    assert_int_equal(wire_fields(outer[0].p, outer[0].n, fs, 4), 3);
    assert_int_equal(fs[0].n, sizeof(want) - 1);
    assert_memory_equal(fs[0].p, want, sizeof(want) - 1);
    assert_true(fs[1].n == 7 && memcmp(fs[1].p, "{\"a\":1}", 7) == 0);
    assert_int_equal(fs[2].u, 1500000);
    /* each failure: the message, the buffer as it was */
    static const char *const errs[] = {
        "s: not a JSON string", "s: an escape json_out.c does not write",
        "s: an escape json_out.c does not write", "s: an escape json_out.c does not write",
        "j: not JSON text, which a JSON column takes", "s: not UTF-8",
        "r: a REPEATED column cannot take a single value",
        "d: a DATETIME column cannot take this value", "t: \"yesterday\" is not a TIMESTAMP",
        "t: missing REQUIRED column (null)", "s: null after a value, which protobuf cannot unset",
        "t: missing REQUIRED column",
    };
    for (int k = 0; k < (int)(sizeof(errs) / sizeof(errs[0])); k++) {
        size_t before = b.len;
        bp_proto_put_begin(&w, s, &b);
        if (k != 11)
            bp_proto_put_timestamp(&w, "t", 0);
        switch (k) {
        case 0: bp_proto_put_json_string(&w, "s", "\"a", 2); break;
        case 1: bp_proto_put_json_string(&w, "s", "\"\\ud83d\"", 8); break;
        case 2: bp_proto_put_json_string(&w, "s", "\"\\x\"", 4); break;
        case 3: bp_proto_put_json_string(&w, "s", "\"a\"b\"", 5); break;
        case 4: bp_proto_put_json_string(&w, "j", "\"{\"", 3); break;
        case 5: bp_proto_put_text(&w, "s", "\xc3", 1); break;
        case 6: bp_proto_put_text(&w, "r", "x", 1); break;
        case 7: bp_proto_put_text(&w, "d", "2025-01-01 00:00:00", 19); break;
        case 8: bp_proto_put_timestamp_text(&w, "t", "yesterday", 9); break;
        case 9: bp_proto_put_null(&w, "t"); break;
        case 10: bp_proto_put_text(&w, "s", "x", 1); bp_proto_put_null(&w, "s"); break;
        default: bp_proto_put_null(&w, "s"); break;
        }
        assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
        assert_string_equal(err, errs[k]);
        assert_int_equal(b.len, before);
    }
    bp_buf_free(&b);
    bp_schema_free(s);
}

/* bp_proto_put_resume: an entry taken whole, its REQUIRED columns counted, a later value of a
 * column after the entry's; what is not an entry of the schema refused. */
static void
put_resume(void **state)
{
    (void)state;
    struct bp_schema *s = schema(
        "[{\"name\":\"a\",\"type\":\"STRING\",\"mode\":\"REQUIRED\"},{\"name\":\"n\",\"type\":"
        "\"INT64\"},{\"name\":\"f\",\"type\":\"FLOAT64\"},{\"name\":\"s\",\"type\":\"STRING\"}]");
    bp_buf_t b;
    bp_buf_init(&b, 1 << 20);
    struct bp_proto_put w;
    char err[300];
    /* a = "xy", n = 300, f = 1.0 (fixed64) */
    static const uint8_t entry[] = {0x0a, 0x10, 0x0a, 0x02, 'x', 'y', 0x10, 0xac, 0x02,
                                    0x19, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
    assert_int_equal(bp_buf_append(&b, "z", 1), 0);
    bp_proto_put_resume(&w, s, &b, entry, sizeof(entry));
    bp_proto_put_null(&w, "s");
    bp_proto_put_text(&w, "a", "w", 1);
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), 0);
    struct wf outer[1], fs[8];
    assert_int_equal(wire_fields(b.data + 1, b.len - 1, outer, 1), 1);
    size_t nf = wire_fields(outer[0].p, outer[0].n, fs, 8);
    assert_int_equal(nf, 4);
    assert_memory_equal(outer[0].p, entry + 2, sizeof(entry) - 2);
    assert_true(wire_find(fs, nf, 1, 1)->n == 1 && wire_find(fs, nf, 1, 1)->p[0] == 'w');
    assert_int_equal(wire_find(fs, nf, 2, 0)->u, 300);
    static const uint8_t bad[][6] = {
        {0x12, 0x02, 0x0a, 0x00},           /* not field 1 */
        {0x0a, 0x03, 0x0a, 0x00},           /* the length past the end */
        {0x0a, 0x02, 0x28, 0x01},           /* field 5: no such column */
        {0x0a, 0x02, 0x0f, 0x01},           /* wire type 7 */
        {0x0a, 0x02, 0x10, 0x01},           /* a REQUIRED without a value */
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        size_t before = b.len;
        bp_proto_put_resume(&w, s, &b, bad[k], 4);
        assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
        assert_int_equal(b.len, before);
    }
    /* the map's value, then a null: refused */
    bp_proto_put_resume(&w, s, &b, entry, sizeof(entry));
    bp_proto_put_null(&w, "n");
    assert_int_equal(bp_proto_put_end(&w, err, sizeof(err)), -1);
    assert_string_equal(err, "n: null after a value, which protobuf cannot unset");
    bp_buf_free(&b);
    bp_schema_free(s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_json_values),
        cmocka_unit_test(put_resume),
        cmocka_unit_test(dead_letters_hold_what_their_json_reads_back_as),
        cmocka_unit_test(dead_letter_tables_that_differ_write_no_protobuf),
        cmocka_unit_test(metadata_columns_hold_what_their_json_reads_back_as),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
