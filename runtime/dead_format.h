/* dead_format.h - the two formats of dead-letter rows (dead_letter.format): rejected_events, our
 * own (built in dispatch.c), and dataflow, the error records of Google's Pub/Sub-to-BigQuery
 * Dataflow template (timestamp, payloadString, payloadBytes, attributes as key/value records,
 * errorMessage, stacktrace), so a migration from the template keeps its error tables. */
#ifndef BP_DEAD_FORMAT_H
#define BP_DEAD_FORMAT_H

#include "bp_ffi.h"
#include "buf.h"
#include "common.h"
#include "proto_put.h"
#include "schema.h"

/* Fields of dead-letter rows are cut here (escaped bytes), so that a dead letter always fits one
 * insertAll request whatever the message held: raw payload and attributes may be as large as a
 * message (10 MB), the others come from the event or a reply. The archive keeps the whole line. */
#define BP_DEAD_PAYLOAD_MAX (1024 * 1024)
#define BP_DEAD_ATTRS_MAX (256 * 1024)
#define BP_DEAD_FIELD_MAX (8 * 1024)

/* One dead letter, as both formats take it. */
struct bp_dead_letter {
    const bp_msg_t *m;
    const char *stage;              /* its error_stage name: "validate" */
    const char *reason;
    size_t reason_len;
    const char *etype;              /* the event's type, etype_len 0: unknown */
    size_t etype_len;
    const char *now_str;            /* when it was dead-lettered, RFC 3339 */
    const char *publish_str;        /* the publish time (now when unknown), RFC 3339 */
};

/* Writes into b (reset first) the insertAll entry of one dead letter in our own format
 * (ddl/rejected_events.sql): insertId and message_id the message id, event_type (null when
 * unknown), error_stage, reason, raw_payload (cut at BP_DEAD_PAYLOAD_MAX, invalid UTF-8 as
 * U+FFFD), attributes as JSON text (past BP_DEAD_ATTRS_MAX: {"truncated":"<their start>…"}),
 * publish_time, ingestion_time; the others cut at BP_DEAD_FIELD_MAX.
 * w: NULL, or a row (bp_proto_put_begin, of the dead-letter table's schema, in another buffer
 * than b) that gets the same columns with the same values as the store would read them from the
 * entry; the caller ends it, and a row that fails is simply not used.
 * Returns 0, or -1 when b's cap is reached. Loop thread, per dead letter. */
int bp_dead_rejected_entry(bp_buf_t *b, const struct bp_dead_letter *d,
                           struct bp_proto_put *w) BP_WUR;

/* The same in the template's format: insertId the message id; timestamp now_str; payloadString
 * the raw payload (cut at BP_DEAD_PAYLOAD_MAX, invalid UTF-8 as U+FFFD); payloadBytes the base64
 * of the raw bytes (of the first 3/4 of BP_DEAD_PAYLOAD_MAX; the raw bytes in w); attributes one
 * {key, value} record per attribute (up to BP_DEAD_ATTRS_MAX); errorMessage "<stage>: <reason>";
 * stacktrace where it failed (stage, event type, message id, publish time). Returns 0, or -1
 * when b's cap is reached. Dead letters only: parses the attributes with jansson. */
int bp_dead_dataflow_entry(bp_buf_t *b, const struct bp_dead_letter *d,
                           struct bp_proto_put *w) BP_WUR;

/* --check and start: the dead-letter table's schema (when the DDL has one) must have the columns
 * of `format` ("rejected_events" or "dataflow"). Returns 0, or -1 with err naming the table, the
 * format and the first missing column. */
int bp_dead_check_table(const struct bp_schema_set *set, const char *table, const char *format,
                        char *err, size_t errlen) BP_WUR;

#endif
