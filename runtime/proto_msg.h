/* proto_msg.h - the fixed messages of the BigQuery Storage Write API (BigQueryWrite's
 * AppendRows, CreateWriteStream, GetWriteStream, FinalizeWriteStream, BatchCommitWriteStreams):
 * requests written and replies read with Debian's protobuf-c, from proto/storage_write.proto.
 * These are message bodies: the gRPC framing (flag + length) is the transport's. */
#ifndef BP_PROTO_MSG_H
#define BP_PROTO_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "common.h"
#include "schema.h"

/* One AppendRowsRequest. Strings are NUL-terminated; NULL (or has_offset 0, descriptor NULL)
 * leaves the field out. */
struct bp_append_req {
    const char *write_stream;   /* projects/P/datasets/D/tables/T/streams/S (or _default) */
    int has_offset;             /* offset: committed streams only, never on _default */
    int64_t offset;
    const void *descriptor;     /* writer schema (bp_proto_descriptor's bytes): required on a
                                 * connection's first request and when the schema changes */
    size_t descriptor_len;
    const void *rows;           /* a ProtoRows body (bp_proto_row_append's buffer) */
    size_t rows_len;
    const char *trace_id;       /* first request only */
};

/* Appends the AppendRowsRequest to out. Returns 0, or -1 (out as it was) when out would pass its
 * maximum. Copies everything: req's memory may go after the call. */
int bp_proto_append_request(bp_buf_t *out, const struct bp_append_req *req) BP_WUR;

/* CreateWriteStreamRequest{parent, write_stream{type}} (type: 1 COMMITTED, 2 PENDING,
 * 3 BUFFERED). Returns 0, or -1 when out would pass its maximum. */
int bp_proto_create_stream_request(bp_buf_t *out, const char *parent, int type) BP_WUR;

/* FinalizeWriteStreamRequest{name} / GetWriteStreamRequest{name, view} (view 0: left out). */
int bp_proto_finalize_request(bp_buf_t *out, const char *name) BP_WUR;
int bp_proto_get_stream_request(bp_buf_t *out, const char *name, int view) BP_WUR;

/* BatchCommitWriteStreamsRequest{parent, write_streams[0..n)}. */
int bp_proto_batch_commit_request(bp_buf_t *out, const char *parent, const char *const *streams,
                                  size_t n) BP_WUR;

/* google.cloud.bigquery.storage.v1.StorageError codes (from a Status's details or a batch
 * commit's stream_errors). */
enum bp_storage_error {
    BP_STORAGE_TABLE_NOT_FOUND = 1, BP_STORAGE_STREAM_ALREADY_COMMITTED = 2,
    BP_STORAGE_STREAM_NOT_FOUND = 3, BP_STORAGE_INVALID_STREAM_TYPE = 4,
    BP_STORAGE_INVALID_STREAM_STATE = 5, BP_STORAGE_STREAM_FINALIZED = 6,
    BP_STORAGE_SCHEMA_MISMATCH_EXTRA_FIELDS = 7, BP_STORAGE_OFFSET_ALREADY_EXISTS = 8,
    BP_STORAGE_OFFSET_OUT_OF_RANGE = 9
};

struct bp_append_row_error {
    size_t index;               /* into the request's rows, checked below nrows */
    int code;                   /* RowError.code: 1 FIELDS_ERROR */
    char *message;
};

/* An AppendRowsResponse, decoded. Strings are NUL-terminated copies (never NULL), cut at the
 * first NUL a hostile reply may carry. */
struct bp_append_reply {
    int has_result;             /* append_result: the rows are written */
    int has_offset;             /* append_result.offset (committed streams) */
    int64_t offset;
    int has_error;              /* error: the request was not written */
    int code;                   /* its google.rpc.Code (ALREADY_EXISTS 6, OUT_OF_RANGE 11...) */
    char *message;
    int storage_code;           /* a StorageError among the error's details (enum
                                 * bp_storage_error), or 0 */
    char *storage_entity;
    struct bp_append_row_error *row_errors;    /* the rows that failed: none of the request's was
                                         * written; send the others again */
    size_t nrow_errors;
    struct bp_schema *updated_schema;   /* the table gained columns: NULL, or a new schema */
    char *schema_error;         /* NULL, or why an updated_schema the reply carried was dropped
                                 * (not a schema this build reads); the rest of the reply holds */
    char *write_stream;
};

/* Decodes an AppendRowsResponse body from the service (hostile input: any bytes). nrows: the
 * request's row count, which every row_errors index must be below. Returns 0 with r filled
 * (free with bp_proto_append_reply_free), or -1 with the reason in err and r empty: not a
 * protobuf message of that type, or a row index out of range. An updated_schema that cannot be
 * read (nested deeper than BigQuery allows, an unknown type or mode, not a valid schema) does not
 * fail the reply: it is dropped, updated_schema NULL and the reason in schema_error. Never calls
 * back; safe in any callback. */
int bp_proto_append_reply_decode(const void *p, size_t n, size_t nrows, struct bp_append_reply *r,
                                 char *err, size_t errlen) BP_WUR;

/* Frees what a decode filled and leaves r empty; an empty r is fine. */
void bp_proto_append_reply_free(struct bp_append_reply *r);

/* A WriteStream (CreateWriteStream's and GetWriteStream's reply): its name (a malloc'd copy) into
 * *name and, when schema is not NULL, its table_schema (GetWriteStream's FULL view) into *schema
 * (NULL when the reply has none; free with bp_schema_free). Returns 0, or -1 with err (and
 * nothing to free) for bytes that are not one, a stream without a name, or a table_schema that
 * is not a valid schema or nests deeper than BigQuery allows. Hostile input safe. */
int bp_proto_write_stream_decode(const void *p, size_t n, char **name, struct bp_schema **schema,
                                 char *err, size_t errlen) BP_WUR;

/* A FinalizeWriteStreamResponse's row_count. Returns 0, or -1 with err. */
int bp_proto_finalize_reply_decode(const void *p, size_t n, int64_t *row_count, char *err,
                                   size_t errlen) BP_WUR;

/* A google.rpc.Status (grpc-status-details-bin, base64-decoded by the transport): its code, a
 * copy of its message into msg (cut to msglen) and the code of a StorageError among its details
 * (0 for none). Returns 0, or -1 with err. */
int bp_proto_status_decode(const void *p, size_t n, int *code, char *msg, size_t msglen,
                           int *storage_code, char *err, size_t errlen) BP_WUR;

#endif
