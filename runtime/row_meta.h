/* row_meta.h - message metadata columns in rows, as Pub/Sub BigQuery subscriptions'
 * write_metadata writes them: a route that asks (its module's `metadata`) gets the columns
 * message_id, publish_time, attributes, subscription_name and delivery_attempt added to each row
 * in C, after Lua encoded it, so asking costs no Lua work and not asking costs one branch. */
#ifndef BP_ROW_META_H
#define BP_ROW_META_H

#include "bp_ffi.h"
#include "buf.h"
#include "common.h"
#include "schema.h"

/* One bit per column, in the order the columns are written. */
enum {
    BP_META_MESSAGE_ID = 1u << 0,
    BP_META_PUBLISH_TIME = 1u << 1,
    BP_META_ATTRIBUTES = 1u << 2,
    BP_META_SUBSCRIPTION_NAME = 1u << 3,
    BP_META_DELIVERY_ATTEMPT = 1u << 4,
    BP_META_ALL = (1u << 5) - 1
};
#define BP_META_COLUMNS 5

/* The column names, by bit position. */
extern const char *const bp_meta_names[BP_META_COLUMNS];

/* The bit of a column name, or 0 when it is not one of bp_meta_names. */
unsigned bp_meta_bit(const char *name);

/* Adds the columns of `mask` to the row object that ends at b->len (its last byte is its closing
 * brace, its first is at row_at): the brace is replaced by `,"message_id":"…",…}`. Values: the
 * message id; the publish time (RFC 3339, null when unknown); the attributes as JSON text for a
 * JSON column (null without attributes); `subscription` (NULL: null, e.g. a file source); the
 * delivery attempt (null when Pub/Sub sent none). Returns 0, or -1 when the buffer's cap is
 * reached or the row is not an object (b is then left as it was up to row_at..). Hot path:
 * appends only, no allocation beyond the buffer's growth. */
int bp_meta_splice(bp_buf_t *b, size_t row_at, unsigned mask, const bp_msg_t *m,
                   const char *subscription) BP_WUR;

/* The same columns for the Storage Write API: appends to b the map's row (row, n bytes: one
 * serialized_rows entry, as the batch loop wrote it under schema s) with the columns of mask
 * after its own, with the values bp_meta_splice writes as the store would read them from the
 * JSON (a TIMESTAMP in microseconds, the attributes as JSON text; a null column left out).
 * A later field wins in protobuf as the later JSON key does. Returns 0, or -1 with b as it was
 * when the row cannot say what the JSON says: a column s lacks or of another type, a null in a
 * REQUIRED column or over a value the map wrote, text that is not UTF-8 (which JSON carries as
 * U+FFFD), b's cap. Hot path for routes with metadata: appends only. */
int bp_meta_proto(bp_buf_t *b, const struct bp_schema *s, const void *row, size_t n,
                  unsigned mask, const bp_msg_t *m, const char *subscription) BP_WUR;

/* The index (in bp_meta_names) of the first column of `mask` that schema `s` has no top-level
 * field of, or -1 when it has them all. For --check and start: the route needs the columns. */
int bp_meta_missing(const struct bp_schema *s, unsigned mask);

/* Every route asking for metadata whose table has a schema (in `set`) must have the columns it
 * asks for. Returns 0, or -1 with err naming the route, the table and the missing column. A
 * table without a schema is not judged here (--check reports a route without DDL). */
struct bp_route;
int bp_meta_check_routes(const struct bp_route *routes, size_t n,
                         const struct bp_schema_set *set, char *err, size_t errlen) BP_WUR;

#endif
