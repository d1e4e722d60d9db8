/* proto_msg.c - the Storage Write API's fixed messages through protobuf-c.
 *
 * Why Debian's protobuf-c and not a hand encoder: the service's replies are hostile input
 * (nested messages, lengths, repeated fields), and libprotobuf-c's unpacker is the parser
 * packaged, fuzzed and maintained for that; the requests then come from the same generated code.
 * The one recursive message a reply holds (updated_schema's TableFieldSchema) is carried as bytes
 * and its depth checked here first (protobuf-c's unpacker has no depth limit, and a reply nesting
 * thousands of levels must not run the stack out). Rows and the writer schema's bytes go into a
 * request as they are: proto/storage_write.proto declares both `bytes`, the same on the wire. */
#include "proto_msg.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_write.pb-c.h"

/* Packs any generated message to the end of out. */
static int
pack(bp_buf_t *out, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (bp_buf_reserve(out, n) != 0)
        return -1;
    out->len += protobuf_c_message_pack(m, (uint8_t *)out->data + out->len);
    return 0;
}

/* protobuf-c's strings are char *, never written by pack: the casts drop only a const. */
static char *
str(const char *s)
{
    return s ? (char *)s : (char *)"";
}

/* See proto_msg.h. */
int
bp_proto_append_request(bp_buf_t *out, const struct bp_append_req *req)
{
    Bpw__AppendRowsRequest m = BPW__APPEND_ROWS_REQUEST__INIT;
    Bpw__Int64Value off = BPW__INT64_VALUE__INIT;
    Bpw__ProtoData data = BPW__PROTO_DATA__INIT;
    Bpw__ProtoSchema schema = BPW__PROTO_SCHEMA__INIT;
    m.write_stream = str(req->write_stream);
    m.trace_id = str(req->trace_id);
    if (req->has_offset) {
        off.value = req->offset;
        m.offset = &off;
    }
    if (req->descriptor) {
        schema.proto_descriptor.data = (uint8_t *)req->descriptor;
        schema.proto_descriptor.len = req->descriptor_len;
        data.writer_schema = &schema;
    }
    data.rows.data = (uint8_t *)req->rows;
    data.rows.len = req->rows_len;
    m.rows_case = BPW__APPEND_ROWS_REQUEST__ROWS_PROTO_ROWS;
    m.proto_rows = &data;
    return pack(out, &m.base);
}

/* See proto_msg.h. */
int
bp_proto_create_stream_request(bp_buf_t *out, const char *parent, int type)
{
    Bpw__CreateWriteStreamRequest m = BPW__CREATE_WRITE_STREAM_REQUEST__INIT;
    Bpw__WriteStream ws = BPW__WRITE_STREAM__INIT;
    ws.type = type;
    m.parent = str(parent);
    m.write_stream = &ws;
    return pack(out, &m.base);
}

/* See proto_msg.h. */
int
bp_proto_finalize_request(bp_buf_t *out, const char *name)
{
    Bpw__FinalizeWriteStreamRequest m = BPW__FINALIZE_WRITE_STREAM_REQUEST__INIT;
    m.name = str(name);
    return pack(out, &m.base);
}

/* See proto_msg.h. */
int
bp_proto_get_stream_request(bp_buf_t *out, const char *name, int view)
{
    Bpw__GetWriteStreamRequest m = BPW__GET_WRITE_STREAM_REQUEST__INIT;
    m.name = str(name);
    m.view = view;
    return pack(out, &m.base);
}

/* See proto_msg.h. */
int
bp_proto_batch_commit_request(bp_buf_t *out, const char *parent, const char *const *streams,
                              size_t n)
{
    Bpw__BatchCommitWriteStreamsRequest m = BPW__BATCH_COMMIT_WRITE_STREAMS_REQUEST__INIT;
    m.parent = str(parent);
    m.write_streams = (char **)streams;
    m.n_write_streams = n;
    return pack(out, &m.base);
}

/* ---- replies ---- */

/* Skips one field's value of wire type wt at *i; -1 when it runs past n or is a group. When the
 * value is length-delimited, *sub / *sublen are set to it. */
static int
skip_value(const uint8_t *p, size_t n, size_t *i, int wt, const uint8_t **sub, size_t *sublen)
{
    uint64_t len = 0;
    int shift = 0;
    switch (wt) {
    case 0:
        while (*i < n && (p[*i] & 0x80))
            (*i)++;
        return *i < n ? (int)((*i)++, 0) : -1;
    case 1:
        if (n - *i < 8)
            return -1;
        *i += 8;
        return 0;
    case 5:
        if (n - *i < 4)
            return -1;
        *i += 4;
        return 0;
    case 2:
        do {
            if (*i >= n || shift > 63)
                return -1;
            len |= (uint64_t)(p[*i] & 0x7f) << shift;
            shift += 7;
        } while (p[(*i)++] & 0x80);
        if (len > n - *i)
            return -1;
        *sub = p + *i;
        *sublen = (size_t)len;
        *i += (size_t)len;
        return 0;
    default:
        return -1;      /* groups (3, 4) have no place in these proto3 messages */
    }
}

/* Whether a TableSchema (nested = 1) or TableFieldSchema (nested = 4) body nests its
 * TableFieldSchemas at most `left` levels deep. Bounded recursion: left decreases. */
static int
schema_depth_ok(const uint8_t *p, size_t n, uint64_t nested, int left)
{
    size_t i = 0;
    while (i < n) {
        uint64_t key = 0;
        int shift = 0;
        do {
            if (i >= n || shift > 63)
                return 0;
            key |= (uint64_t)(p[i] & 0x7f) << shift;
            shift += 7;
        } while (p[i++] & 0x80);
        const uint8_t *sub = NULL;
        size_t sublen = 0;
        if (skip_value(p, n, &i, (int)(key & 7), &sub, &sublen) != 0)
            return 0;
        if (sub && (key >> 3) == nested &&
            (left == 0 || !schema_depth_ok(sub, sublen, 4, left - 1)))
            return 0;
    }
    return 1;
}

static const char *const TYPE_NAMES[] = {
    NULL, "STRING", "INT64", "FLOAT64", "RECORD", "BYTES", "BOOL", "TIMESTAMP", "DATE", "TIME",
    "DATETIME", "GEOGRAPHY", "NUMERIC", "BIGNUMERIC", "INTERVAL", "JSON", "RANGE"
};
static const char *const MODE_NAMES[] = {"NULLABLE", "NULLABLE", "REQUIRED", "REPEATED"};

/* The fields as a BigQuery fields array (what bp_schema_from_json reads); NULL for a type or mode
 * it does not know, or a name that is not UTF-8. */
static json_t *
fields_json(Bpw__TableFieldSchema **f, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        int t = f[i]->type, m = f[i]->mode;
        json_t *o = NULL;
        if (t > 0 && t < (int)BP_ARRAY_LEN(TYPE_NAMES) && m >= 0 && m < 4)
            o = json_pack("{s:s, s:s, s:s}", "name", f[i]->name, "type", TYPE_NAMES[t], "mode",
                          MODE_NAMES[m]);
        if (o && f[i]->n_fields) {
            json_t *sub = fields_json(f[i]->fields, f[i]->n_fields);
            if (!sub || json_object_set_new(o, "fields", sub) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* An unpacked TableSchema as a bp_schema, or NULL with err (what names the schema: prefix). */
static struct bp_schema *
schema_of(const Bpw__TableSchema *ts, const char *what, char *err, size_t errlen)
{
    json_t *fields = fields_json(ts->fields, ts->n_fields);
    char *text = fields ? json_dumps(fields, JSON_COMPACT) : NULL;
    json_decref(fields);
    struct bp_schema *s = NULL;
    char why[300];
    if (text)
        s = bp_schema_from_json(text, strlen(text), why, sizeof(why));
    if (!s)
        snprintf(err, errlen, "%s: %s", what, text ? why : "an unknown type or mode");
    free(text);
    return s;
}

/* updated_schema's bytes as a bp_schema, or NULL with err. */
static struct bp_schema *
updated_schema(const uint8_t *p, size_t n, char *err, size_t errlen)
{
    if (!schema_depth_ok(p, n, 1, BP_SCHEMA_MAX_DEPTH + 1)) {
        snprintf(err, errlen, "updated_schema: not a TableSchema, or nested deeper than %d",
                 BP_SCHEMA_MAX_DEPTH);
        return NULL;
    }
    Bpw__TableSchema *ts = bpw__table_schema__unpack(NULL, n, p);
    if (!ts) {
        snprintf(err, errlen, "updated_schema: not a TableSchema");
        return NULL;
    }
    struct bp_schema *s = schema_of(ts, "updated_schema", err, errlen);
    bpw__table_schema__free_unpacked(ts, NULL);
    return s;
}

/* The StorageError among a Status's details (its type URL's last part), or NULL. */
static Bpw__StorageError *
storage_error(const Bpw__Status *st)
{
    static const char name[] = "google.cloud.bigquery.storage.v1.StorageError";
    for (size_t i = 0; st && i < st->n_details; i++) {
        const char *url = st->details[i]->type_url;
        const char *slash = url ? strrchr(url, '/') : NULL;
        if (slash && strcmp(slash + 1, name) == 0)
            return bpw__storage_error__unpack(NULL, st->details[i]->value.len,
                                              st->details[i]->value.data);
    }
    return NULL;
}

/* See proto_msg.h. */
int
bp_proto_append_reply_decode(const void *p, size_t n, size_t nrows, struct bp_append_reply *r,
                             char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    Bpw__AppendRowsResponse *m = bpw__append_rows_response__unpack(NULL, n, p);
    if (!m) {
        snprintf(err, errlen, "AppendRowsResponse: not a protobuf message of that type");
        return -1;
    }
    if (m->response_case == BPW__APPEND_ROWS_RESPONSE__RESPONSE_APPEND_RESULT) {
        r->has_result = 1;
        if (m->append_result && m->append_result->offset) {
            r->has_offset = 1;
            r->offset = m->append_result->offset->value;
        }
    } else if (m->response_case == BPW__APPEND_ROWS_RESPONSE__RESPONSE_ERROR) {
        r->has_error = 1;
        r->code = m->error ? m->error->code : 0;
        r->message = bp_xstrdup(m->error ? m->error->message : "");
        Bpw__StorageError *se = storage_error(m->error);
        if (se) {
            r->storage_code = se->code;
            r->storage_entity = bp_xstrdup(se->entity);
            bpw__storage_error__free_unpacked(se, NULL);
        }
    }
    r->write_stream = bp_xstrdup(m->write_stream);
    if (m->n_row_errors) {
        r->row_errors = bp_xcalloc(m->n_row_errors, sizeof(*r->row_errors));
        for (size_t i = 0; i < m->n_row_errors; i++) {
            Bpw__RowError *e = m->row_errors[i];
            if (e->index < 0 || (uint64_t)e->index >= nrows) {
                snprintf(err, errlen, "AppendRowsResponse: row_errors names row %lld of %zu",
                         (long long)e->index, nrows);
                goto fail;
            }
            r->row_errors[i].index = (size_t)e->index;
            r->row_errors[i].code = e->code;
            r->row_errors[i].message = bp_xstrdup(e->message);
            r->nrow_errors = i + 1;
        }
    }
    if (m->updated_schema.len) {
        /* a schema this build cannot read says nothing about the rows: the reply's fate
         * (append_result, error, row_errors) stands, or rows written would be sent again and
         * stored twice; the schema is dropped with its reason for the caller to log */
        char why[300];
        r->updated_schema = updated_schema(m->updated_schema.data, m->updated_schema.len, why,
                                           sizeof(why));
        if (!r->updated_schema)
            r->schema_error = bp_xstrdup(why);
    }
    bpw__append_rows_response__free_unpacked(m, NULL);
    return 0;
fail:
    bpw__append_rows_response__free_unpacked(m, NULL);
    bp_proto_append_reply_free(r);
    return -1;
}

/* See proto_msg.h. */
void
bp_proto_append_reply_free(struct bp_append_reply *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrow_errors; i++)
        free(r->row_errors[i].message);
    free(r->row_errors);
    free(r->message);
    free(r->storage_entity);
    free(r->write_stream);
    free(r->schema_error);
    bp_schema_free(r->updated_schema);
    memset(r, 0, sizeof(*r));
}

/* See proto_msg.h. */
int
bp_proto_write_stream_decode(const void *p, size_t n, char **name, struct bp_schema **schema,
                             char *err, size_t errlen)
{
    Bpw__WriteStream *m = NULL;
    const uint8_t *b = p;
    size_t i = 0;
    if (schema)
        *schema = NULL;
    /* the table_schema's depth bounded before protobuf-c recurses into it */
    while (i < n) {
        uint64_t key = 0;
        int shift = 0;
        do {
            if (i >= n || shift > 63)
                goto bad;
            key |= (uint64_t)(b[i] & 0x7f) << shift;
            shift += 7;
        } while (b[i++] & 0x80);
        const uint8_t *sub = NULL;
        size_t sublen = 0;
        if (skip_value(b, n, &i, (int)(key & 7), &sub, &sublen) != 0)
            goto bad;
        if ((key >> 3) == 5 && sub && !schema_depth_ok(sub, sublen, 1, BP_SCHEMA_MAX_DEPTH + 1))
            goto bad;
    }
    m = bpw__write_stream__unpack(NULL, n, p);
    if (!m || !m->name[0])
        goto bad;
    if (schema && m->table_schema && m->table_schema->n_fields &&
        !(*schema = schema_of(m->table_schema, "WriteStream.table_schema", err, errlen))) {
        bpw__write_stream__free_unpacked(m, NULL);
        return -1;
    }
    *name = bp_xstrdup(m->name);
    bpw__write_stream__free_unpacked(m, NULL);
    return 0;
bad:
    if (m)
        bpw__write_stream__free_unpacked(m, NULL);
    snprintf(err, errlen, "WriteStream: not a protobuf message of that type, or without a name");
    return -1;
}

/* See proto_msg.h. */
int
bp_proto_finalize_reply_decode(const void *p, size_t n, int64_t *row_count, char *err,
                               size_t errlen)
{
    Bpw__FinalizeWriteStreamResponse *m = bpw__finalize_write_stream_response__unpack(NULL, n, p);
    if (!m) {
        snprintf(err, errlen, "FinalizeWriteStreamResponse: not a protobuf message of that type");
        return -1;
    }
    *row_count = m->row_count;
    bpw__finalize_write_stream_response__free_unpacked(m, NULL);
    return 0;
}

/* See proto_msg.h. */
int
bp_proto_status_decode(const void *p, size_t n, int *code, char *msg, size_t msglen,
                       int *storage_code, char *err, size_t errlen)
{
    Bpw__Status *m = bpw__status__unpack(NULL, n, p);
    if (!m) {
        snprintf(err, errlen, "google.rpc.Status: not a protobuf message of that type");
        return -1;
    }
    *code = m->code;
    snprintf(msg, msglen, "%s", m->message);
    Bpw__StorageError *se = storage_error(m);
    *storage_code = se ? se->code : 0;
    if (se)
        bpw__storage_error__free_unpacked(se, NULL);
    bpw__status__free_unpacked(m, NULL);
    return 0;
}
