/* dead_format.c - dead-letter rows in the format of Google's Pub/Sub-to-BigQuery Dataflow
 * template (its error-records table: streaming_source_deadletter_table_schema.json in
 * GoogleCloudPlatform/DataflowTemplates), and the check that a dead-letter table has the columns
 * of its format. The cut limits are those of the rejected_events rows (dead_format.h). */
#include "dead_format.h"
#include "json_out.h"
#include "timefmt.h"

#include <jansson.h>
#include <stdio.h>
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

/* One {"key":…,"value":…} record; a value that is not a string (a hostile reply) as its JSON. */
static int
attribute_record(bp_buf_t *b, const char *key, json_t *value)
{
    int rc = bp_buf_append_str(b, "{\"key\":") != 0 ||
             bp_json_string_cut(b, key, strlen(key), BP_DEAD_FIELD_MAX) != 0 ||
             bp_buf_append_str(b, ",\"value\":") != 0;
    if (!rc && json_is_string(value)) {
        rc = bp_json_string_cut(b, json_string_value(value), json_string_length(value),
                                BP_DEAD_ATTRS_MAX / 2) != 0;
    } else if (!rc) {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
        rc = bp_json_string_cut(b, text ? text : "null", text ? strlen(text) : 4,
                                BP_DEAD_ATTRS_MAX / 2) != 0;
        free(text);
    }
    return rc || bp_buf_append(b, "}", 1) != 0 ? -1 : 0;
}

/* The attributes column: REPEATED RECORD {key, value}, [] without attributes. Past
 * BP_DEAD_ATTRS_MAX bytes the rest is left out and a last record says how many. */
static int
attribute_records(bp_buf_t *b, const bp_msg_t *m)
{
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
                  attribute_record(b, key, value) != 0;
        }
    } else if (m->attrs && m->attrs_len) {
        /* not an object (cannot come from Pub/Sub): kept as one record */
        json_t *text = json_stringn_nocheck(m->attrs, m->attrs_len);
        rc |= attribute_record(b, "attributes", text);
        json_decref(text);
    }
    json_decref(obj);
    if (rc == 0 && left) {
        char note[64];
        snprintf(note, sizeof(note), "%zu more attributes left out", left);
        json_t *v = json_string(note);
        rc |= bp_buf_append(b, ",", 1) != 0 || attribute_record(b, "truncated", v) != 0;
        json_decref(v);
    }
    return rc || bp_buf_append(b, "]", 1) != 0 ? -1 : 0;
}

/* stacktrace: where the event failed and which message it was, since the template's schema has
 * no columns for them. */
static int
where_failed(bp_buf_t *b, const bp_msg_t *m, const char *stage, const char *etype,
             size_t etype_len)
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
    return bp_json_string_cut(b, text, n < 0 ? 0 : (size_t)n < sizeof(text) ? (size_t)n
                                                                           : sizeof(text) - 1,
                              BP_DEAD_FIELD_MAX);
}

/* The template-format entry of one dead letter (dead_format.h). Loop thread, per dead letter. */
int
bp_dead_dataflow_entry(bp_buf_t *b, const bp_msg_t *m, const char *stage, const char *reason,
                       size_t reason_len, const char *etype, size_t etype_len,
                       const char *now_str)
{
    /* payloadBytes: whole base64 groups of the first 3/4 of the cut, as payloadString's */
    size_t raw = m->len < BP_DEAD_PAYLOAD_MAX / 4 * 3 ? m->len : BP_DEAD_PAYLOAD_MAX / 4 * 3;
    bp_buf_reset(b);
    int rc = 0;
    rc |= bp_buf_append_str(b, "{\"insertId\":");
    rc |= bp_json_string_cut(b, m->id, m->id_len, BP_DEAD_FIELD_MAX);
    rc |= bp_buf_append_str(b, ",\"json\":{\"timestamp\":\"");
    rc |= bp_buf_append_str(b, now_str);
    rc |= bp_buf_append_str(b, "\",\"payloadString\":");
    rc |= bp_json_string_cut(b, m->data, m->len, BP_DEAD_PAYLOAD_MAX);
    rc |= bp_buf_append_str(b, ",\"payloadBytes\":");
    rc |= base64_string(b, (const unsigned char *)m->data, raw);
    rc |= bp_buf_append_str(b, ",\"attributes\":");
    rc |= attribute_records(b, m);
    /* errorMessage: "validate: amount must be a number", the stage as our rejected_events
     * error_stage names it */
    rc |= bp_buf_append_str(b, ",\"errorMessage\":");
    bp_buf_t t;
    bp_buf_init(&t, BP_DEAD_FIELD_MAX + 64);
    rc |= bp_buf_append_str(&t, stage) != 0 || bp_buf_append(&t, ": ", 2) != 0 ||
          bp_buf_append(&t, reason, reason_len < BP_DEAD_FIELD_MAX ? reason_len
                                                                   : BP_DEAD_FIELD_MAX) != 0;
    rc |= bp_json_string_cut(b, t.data ? t.data : "", t.len, BP_DEAD_FIELD_MAX);
    bp_buf_free(&t);
    rc |= bp_buf_append_str(b, ",\"stacktrace\":");
    rc |= where_failed(b, m, stage, etype, etype_len);
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
