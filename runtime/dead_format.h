/* dead_format.h - the two formats of dead-letter rows (dead_letter.format): rejected_events, our
 * own (built in dispatch.c), and dataflow, the error records of Google's Pub/Sub-to-BigQuery
 * Dataflow template (timestamp, payloadString, payloadBytes, attributes as key/value records,
 * errorMessage, stacktrace), so a migration from the template keeps its error tables. */
#ifndef BP_DEAD_FORMAT_H
#define BP_DEAD_FORMAT_H

#include "bp_ffi.h"
#include "buf.h"
#include "common.h"
#include "schema.h"

/* Fields of dead-letter rows are cut here (escaped bytes), so that a dead letter always fits one
 * insertAll request whatever the message held: raw payload and attributes may be as large as a
 * message (10 MB), the others come from the event or a reply. The archive keeps the whole line. */
#define BP_DEAD_PAYLOAD_MAX (1024 * 1024)
#define BP_DEAD_ATTRS_MAX (256 * 1024)
#define BP_DEAD_FIELD_MAX (8 * 1024)

/* Writes into b (reset first) the insertAll entry of one dead letter in the template's format:
 * insertId the message id; timestamp now_str; payloadString the raw payload (cut at
 * BP_DEAD_PAYLOAD_MAX, invalid UTF-8 as U+FFFD); payloadBytes the base64 of the raw bytes (of
 * the first 3/4 of BP_DEAD_PAYLOAD_MAX); attributes one {key, value} record per attribute (up to
 * BP_DEAD_ATTRS_MAX); errorMessage "<stage>: <reason>"; stacktrace where it failed (stage, event
 * type, message id, publish time). Returns 0, or -1 when b's cap is reached. Dead letters only:
 * parses the attributes with jansson. */
int bp_dead_dataflow_entry(bp_buf_t *b, const bp_msg_t *m, const char *stage, const char *reason,
                           size_t reason_len, const char *etype, size_t etype_len,
                           const char *now_str) BP_WUR;

/* --check and start: the dead-letter table's schema (when the DDL has one) must have the columns
 * of `format` ("rejected_events" or "dataflow"). Returns 0, or -1 with err naming the table, the
 * format and the first missing column. */
int bp_dead_check_table(const struct bp_schema_set *set, const char *table, const char *format,
                        char *err, size_t errlen) BP_WUR;

#endif
