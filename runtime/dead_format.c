/* dead_format.c - dead-letter rows in our own format (rejected_events) and in the format of
 * Google's Pub/Sub-to-BigQuery Dataflow template (its error-records table:
 * streaming_source_deadletter_table_schema.json in GoogleCloudPlatform/DataflowTemplates), and the
 * check that a dead-letter table has the columns of its format.
 *
 * Each row is written as its insertAll entry (JSON) and, for the Storage Write API, as protobuf
 * in the same pass (bp_proto_put): every string value goes into the protobuf from the JSON string
 * just written (its escapes undone), so the cuts, the U+FFFD of invalid UTF-8 and the attribute
 * records left out are those of the JSON by construction, and the store sends exactly the values
 * it would have read back from the entry, without reading it back. */
#include "dead_format.h"
#include "json_out.h"
#include "timefmt.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends s as a quoted base64 string (BigQuery's BYTES in JSON). */
static int
base64_string(bp_buf_t *b, const unsigned char *s, size_t len)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (bp_buf_reserve(b, (len + 2) / 3 * 4 + 2) != 0)
        return -1;
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < len ? (unsigned)s[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    return 0;
}

/* The JSON string just written at b[at..) into w's column col too (w NULL: none). */
static void
also_put(struct bp_proto_put *w, const char *col, const bp_buf_t *b, size_t at)
{
    if (w)
        bp_proto_put_json_string(w, col, b->data + at, b->len - at);
}

/* Appends s[0..len) as a JSON string cut at max (bp_json_string_cut) and puts it in w's col. */
static int
cut_column(bp_buf_t *b, struct bp_proto_put *w, const char *col, const char *s, size_t len,
           size_t max)
{
    size_t at = b->len;
    if (bp_json_string_cut(b, s, len, max) != 0)
        return -1;
    also_put(w, col, b, at);
    return 0;
}

/* One {"key":…,"value":…} record; a value that is not a string (a hostile reply) as its JSON. */
static int
attribute_record(bp_buf_t *b, struct bp_proto_put *w, const char *key, json_t *value)
{
    if (w)
        bp_proto_put_open(w, "attributes");
    int rc = bp_buf_append_str(b, "{\"key\":") != 0 ||
             cut_column(b, w, "key", key, strlen(key), BP_DEAD_FIELD_MAX) != 0 ||
             bp_buf_append_str(b, ",\"value\":") != 0;
    if (!rc && json_is_string(value)) {
        rc = cut_column(b, w, "value", json_string_value(value), json_string_length(value),
                        BP_DEAD_ATTRS_MAX / 2) != 0;
    } else if (!rc) {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = cut_column(b, w, "value", text ? text : "null", text ? strlen(text) : 4,
                        BP_DEAD_ATTRS_MAX / 2) != 0;
        free(text);
    }
    if (w)
        bp_proto_put_close(w);
    return rc || bp_buf_append(b, "}", 1) != 0 ? -1 : 0;
}

/* The attributes column: REPEATED RECORD {key, value}, [] without attributes. Past
 * BP_DEAD_ATTRS_MAX bytes the rest is left out and a last record says how many. */
static int
attribute_records(bp_buf_t *b, struct bp_proto_put *w, const bp_msg_t *m)
{
    /* JSON reads an array into a REPEATED column only; protobuf would take a RECORD's */
    const struct bp_schema_field *col = w ? bp_schema_field_find(&w->s->root, "attributes", 10)
                                          : NULL;
    if (w && (!col || col->mode != BP_SCHEMA_REPEATED))
        bp_proto_put_fail(w, "attributes: not a REPEATED column");
    json_t *obj = m->attrs && m->attrs_len ? json_loadb(m->attrs, m->attrs_len, 0, NULL) : NULL;
    size_t start = b->len, left = 0;
    int rc = bp_buf_append(b, "[", 1);
    const char *key;
    json_t *value;
    if (obj && json_is_object(obj)) {
        json_object_foreach(obj, key, value) {
            if (rc == 0 && b->len - start > BP_DEAD_ATTRS_MAX) {
                left++;
                continue;
            }
            rc |= (b->len - start > 1 && bp_buf_append(b, ",", 1) != 0) ||
                  attribute_record(b, w, key, value) != 0;
        }
    } else if (m->attrs && m->attrs_len) {
        /* not an object (cannot come from Pub/Sub): kept as one record */
        json_t *text = json_stringn_nocheck(m->attrs, m->attrs_len);
        rc |= attribute_record(b, w, "attributes", text);
        json_decref(text);
    }
    json_decref(obj);
    if (rc == 0 && left) {
        char note[64];
        snprintf(note, sizeof(note), "%zu more attributes left out", left);
        json_t *v = json_string(note);
        rc |= bp_buf_append(b, ",", 1) != 0 || attribute_record(b, w, "truncated", v) != 0;
        json_decref(v);
    }
    return rc || bp_buf_append(b, "]", 1) != 0 ? -1 : 0;
}

/* stacktrace: where the event failed and which message it was, since the template's schema has
 * no columns for them. */
static int
where_failed(bp_buf_t *b, struct bp_proto_put *w, const bp_msg_t *m, const char *stage,
             const char *etype, size_t etype_len)
{
    char pt[BP_TIME_STRLEN], text[1024];
    if (m->publish_time > 0)
        bp_time_rfc3339(m->publish_time, pt);
    else
        snprintf(pt, sizeof(pt), "unknown");
    int n = snprintf(text, sizeof(text), "bepipe-lua stage %s, event_type %.*s, message_id "
                     "%.*s, publish_time %s", stage, etype_len ? (int)(etype_len > 200 ? 200 :
                     etype_len) : 1, etype_len ? etype : "-", (int)(m->id_len > 300 ? 300 :
                     m->id_len), m->id, pt);
    return cut_column(b, w, "stacktrace", text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n
                                                                 : sizeof(text) - 1,
                      BP_DEAD_FIELD_MAX);
}

/* The attributes column of rejected_events is JSON: attributes past BP_DEAD_ATTRS_MAX are
 * replaced by the valid JSON object {"truncated":"<the start of their text>…[truncated N
 * bytes]"}. */
static int
dead_attributes(bp_buf_t *b, struct bp_proto_put *w, const bp_msg_t *m)
{
    size_t at = b->len;
    if (!m->attrs) {
        if (w)
            bp_proto_put_null(w, "attributes");
        return bp_buf_append(b, "null", 4);
    }
    /* a JSON column takes a string of JSON text */
    if (m->attrs_len <= BP_DEAD_ATTRS_MAX) {
        if (bp_json_string(b, m->attrs, m->attrs_len) != 0)
            return -1;
        also_put(w, "attributes", b, at);
        return 0;
    }
    bp_buf_t t;
    bp_buf_init(&t, 2 * BP_DEAD_ATTRS_MAX);
    int rc = bp_buf_append_str(&t, "{\"truncated\":") != 0 ||
             bp_json_string_cut(&t, m->attrs, m->attrs_len, BP_DEAD_ATTRS_MAX / 2) != 0 ||
             bp_buf_append(&t, "}", 1) != 0 || bp_json_string(b, t.data, t.len) != 0;
    bp_buf_free(&t);
    if (!rc)
        also_put(w, "attributes", b, at);
    return rc ? -1 : 0;
}

/* The rejected_events entry of one dead letter (dead_format.h). Loop thread, per dead letter. */
int
bp_dead_rejected_entry(bp_buf_t *b, const struct bp_dead_letter *d, struct bp_proto_put *w)
{
    const bp_msg_t *m = d->m;
    bp_buf_reset(b);
    int rc = 0;
    /* a cut insertId still de-duplicates: it is the same cut on every redelivery */
    rc |= bp_buf_append_str(b, "{\"insertId\":");
    rc |= bp_json_string_cut(b, m->id, m->id_len, BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"json\":{\"message_id\":");
    rc |= cut_column(b, w, "message_id", m->id, m->id_len, BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"event_type\":");
    if (d->etype_len) {
        rc |= cut_column(b, w, "event_type", d->etype, d->etype_len, BP_DEAD_FIELD_MAX);
    } else {
        rc |= bp_buf_append_str(b, "null");
        if (w)
            bp_proto_put_null(w, "event_type");
    }
    rc |= bp_buf_append_str(b, ",\"error_stage\":");
    rc |= cut_column(b, w, "error_stage", d->stage, strlen(d->stage), BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"reason\":");
    rc |= cut_column(b, w, "reason", d->reason, d->reason_len, BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"raw_payload\":");
    rc |= cut_column(b, w, "raw_payload", m->data, m->len, BP_DEAD_PAYLOAD_MAX);
    rc |= bp_buf_append_str(b, ",\"attributes\":");
    rc |= dead_attributes(b, w, m);
    rc |= bp_buf_append_str(b, ",\"publish_time\":\"");
    rc |= bp_buf_append_str(b, d->publish_str);
    rc |= bp_buf_append_str(b, "\",\"ingestion_time\":\"");
    rc |= bp_buf_append_str(b, d->now_str);
    rc |= bp_buf_append_str(b, "\"}}");
    if (w) {
        bp_proto_put_timestamp_text(w, "publish_time", d->publish_str, strlen(d->publish_str));
        bp_proto_put_timestamp_text(w, "ingestion_time", d->now_str, strlen(d->now_str));
    }
    return rc ? -1 : 0;
}

/* The template-format entry of one dead letter (dead_format.h). Loop thread, per dead letter. */
int
bp_dead_dataflow_entry(bp_buf_t *b, const struct bp_dead_letter *d, struct bp_proto_put *w)
{
    const bp_msg_t *m = d->m;
    /* payloadBytes: whole base64 groups of the first 3/4 of the cut, as payloadString's */
    size_t raw = m->len < BP_DEAD_PAYLOAD_MAX / 4 * 3 ? m->len : BP_DEAD_PAYLOAD_MAX / 4 * 3;
    bp_buf_reset(b);
    int rc = 0;
    rc |= bp_buf_append_str(b, "{\"insertId\":");
    rc |= bp_json_string_cut(b, m->id, m->id_len, BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"json\":{\"timestamp\":\"");
    rc |= bp_buf_append_str(b, d->now_str);
    if (w)
        bp_proto_put_timestamp_text(w, "timestamp", d->now_str, strlen(d->now_str));
    rc |= bp_buf_append_str(b, "\",\"payloadString\":");
    rc |= cut_column(b, w, "payloadString", m->data, m->len, BP_DEAD_PAYLOAD_MAX);
    rc |= bp_buf_append_str(b, ",\"payloadBytes\":");
    rc |= base64_string(b, (const unsigned char *)m->data, raw);
    if (w) {
        /* the JSON's base64 is read back as these bytes; JSON takes one value, not an array */
        const struct bp_schema_field *f = bp_schema_field_find(&w->s->root, "payloadBytes", 12);
        if (f && f->mode == BP_SCHEMA_REPEATED)
            bp_proto_put_fail(w, "payloadBytes: a REPEATED column");
        bp_proto_put_bytes(w, "payloadBytes", m->data, raw);
    }
    rc |= bp_buf_append_str(b, ",\"attributes\":");
    rc |= attribute_records(b, w, m);
    /* errorMessage: "validate: amount must be a number", the stage as our rejected_events
     * error_stage names it */
    rc |= bp_buf_append_str(b, ",\"errorMessage\":");
    bp_buf_t t;
    bp_buf_init(&t, BP_DEAD_FIELD_MAX + 64);
    rc |= bp_buf_append_str(&t, d->stage) != 0 || bp_buf_append(&t, ": ", 2) != 0 ||
          bp_buf_append(&t, d->reason, d->reason_len < BP_DEAD_FIELD_MAX ? d->reason_len
                                                                         : BP_DEAD_FIELD_MAX) != 0;
    rc |= cut_column(b, w, "errorMessage", t.data ? t.data : "", t.len, BP_DEAD_FIELD_MAX);
    bp_buf_free(&t);
    rc |= bp_buf_append_str(b, ",\"stacktrace\":");
    rc |= where_failed(b, w, m, d->stage, d->etype, d->etype_len);
    rc |= bp_buf_append_str(b, "}}");
    return rc ? -1 : 0;
}

/* The columns each format writes. */
static const char *const rejected_columns[] = {
    "message_id", "event_type", "error_stage", "reason", "raw_payload", "attributes",
    "publish_time", "ingestion_time", NULL
};
static const char *const dataflow_columns[] = {
    "timestamp", "payloadString", "payloadBytes", "attributes", "errorMessage", "stacktrace", NULL
};

static int
has_column(const struct bp_schema *s, const char *name)
{
    size_t len = strlen(name);
    for (size_t k = 0; k < s->root.nfields; k++)
        if (s->root.fields[k].name_len == len && memcmp(s->root.fields[k].name, name, len) == 0)
            return 1;
    return 0;
}

/* The dead-letter table has its format's columns (dead_format.h). Start, reload, --check. */
int
bp_dead_check_table(const struct bp_schema_set *set, const char *table, const char *format,
                    char *err, size_t errlen)
{
    const struct bp_schema *s = bp_schema_set_find(set, table);
    int dataflow = strcmp(format, "dataflow") == 0;
    const char *const *cols = dataflow ? dataflow_columns : rejected_columns;
    for (size_t i = 0; s && cols[i]; i++)
        if (!has_column(s, cols[i])) {
            snprintf(err, errlen, "dead_letter.table %s has no column %s, which "
                     "dead_letter.format %s writes (its DDL is %s)", table, cols[i], format,
                     dataflow ? "ddl/error_records.sql" : "ddl/rejected_events.sql");
            return -1;
        }
    return 0;
}
