/* store_write_int.h - the state of the Storage Write API store, shared by store_write.c (the
 * AppendRows calls, requests and their replies) and store_write_eo.c (exactly_once: committed
 * streams, offsets, the append log, recovery and finalization). Not for other modules: they
 * use store_write.h. */
#ifndef BP_STORE_WRITE_INT_H
#define BP_STORE_WRITE_INT_H

#include "append_log.h"
#include "buf.h"
#include "entry_lua.h"
#include "grpc_channel.h"
#include "store_write.h"


struct sw_store;
struct sw_table;

/* exactly_once: a batch row's message: its log id (the Pub/Sub message id, 0x1f, the table:
 * each table's rows of a message are answered on their own) and its place among the message's
 * rows of the batch (ord of tot). */
struct eo_row {
    size_t key_at, key_len;
    uint32_t ord, tot;
};

/* exactly_once: a batch held until the previous process's streams are finalized, then until
 * its table's queue has room (store_write_eo.c: EO_QUEUED). */
struct deferred {
    struct deferred *next;
    char *table;
    const char *entries;
    size_t len, nrows;
    struct bp_encoded_rows enc; /* the rows' protobuf (lent as entries are), when has_enc */
    int has_enc;
    bp_store_done_fn done;
    void *arg;
};

/* One batch of rows_put: its requests (several when its rows pass one request's size: the
 * protobuf form of a row can be larger than its JSON, a packed negative INT64 takes 10 bytes
 * where its text took 3) and what they ended with, until the last one ends and done runs once.
 * With exactly_once each request is its own append (its offset, its log record, in order); a
 * message whose rows span two appends is recorded as two parts of it, as a request's rest after
 * row errors is, so a restart answers the part written and sends the rest. */
struct put {
    bp_store_done_fn done;
    void *arg;
    size_t left;                /* requests not ended, plus one while the batch is being split */
    int status;                 /* 0, or the first failure's */
    char *msg;
    struct bp_row_error *errs;  /* the row errors of the requests that ended 0 */
    size_t nerrs;
    struct eo_row *eo;          /* exactly_once: batch row -> its message's log id and place */
    bp_buf_t keys;              /* exactly_once: the log ids eo points into */
};

/* A writer schema: the DescriptorProto of the table's schema some rows were encoded under. The
 * table holds the newest; each request holds the one of its own rows until it ends, so rows
 * queued before a reload moved the table's columns (a column dropped, or dropped and added
 * again: the field numbers follow the columns' order) still go with the numbering they were
 * encoded in, whatever the table's writer schema is by the time they are sent. */
struct sw_desc {
    unsigned refs;
    unsigned gen;               /* its table's count of writer schemas, from 1 */
    bp_buf_t bytes;
};

struct req {
    struct sw_store *s;
    struct sw_table *t;
    struct req *next;           /* in its table's queue or flight list */
    bp_buf_t rows;              /* ProtoRows body: the rows still to write */
    size_t nrows;
    size_t *orig;               /* row i of rows -> its index in the batch */
    struct bp_row_error *errs;  /* rows refused so far (reasons malloc'd) */
    size_t nerrs;
    int attempt;                /* failed attempts of retryable codes */
    double sent_at;
    int64_t offset;             /* exactly_once: the append's first offset, -1 before one */
    struct put *put;            /* the batch it is a part of */
    struct sw_desc *desc;       /* the writer schema its rows were encoded under (a reference) */
    int carried;                /* in flight with its writer schema (the call's until answered) */
};

struct sw_table {
    struct sw_store *s;
    struct sw_table *next;
    char *name;
    char *stream;               /* projects/P/datasets/D/tables/T/streams/_default */
    char *params;               /* write_stream=<escaped stream> */
    struct sw_desc *desc;       /* the newest writer schema (a reference), NULL before a batch */
    struct bp_grpc_stream *gs;  /* open AppendRows call, or NULL */
    unsigned sent_gen;          /* the gen of the writer schema the open call last sent, 0 =
                                 * none yet: a request of another one carries its own */
    struct req *queue, *queue_tail;     /* waiting to be sent */
    struct req *flight, *flight_tail;   /* sent, reply owed: oldest first */
    size_t nflight;
    int carrying;               /* requests in flight carrying a writer schema (0 or 1): none
                                 * is sent behind one before its reply */
    double retry_at;            /* monotonic: nothing is sent before it (a backoff) */
    int schema_error_logged;    /* an unreadable updated_schema was logged (once a table) */
    /* exactly_once: the table's COMMITTED stream of this process (stream, params) */
    int created, creating, finalizing, finalized;
    int64_t next_offset;        /* the stream's rows, as far as this process wrote them */
    int releasing;              /* exactly_once: its held batches are being encoded */
};

struct sw_store {
    struct bp_store base;
    struct ev_loop *loop;
    struct bp_grpc_channel *ch;
    struct bp_api *api;         /* the one retry policy (bp_api_backoff, retry.attempts) */
    struct bp_auth *auth;       /* NULL: no token (an emulator) */
    int max_attempts;
    double rpc_timeout;
    char *project, *dataset;
    bp_store_schema_fn schema_for;
    bp_store_schema_update_fn schema_updated;
    void *owner;
    bp_entry_lua_t *rows;       /* the batches' entries read into Lua tables (entry_lua.h) */
    struct sw_table *tables;
    size_t pending;
    ev_timer timer;             /* backoffs and the replies' deadline */
    bp_append_log_t *log;       /* exactly_once, else NULL */
    int recovered;              /* the previous process's streams are all finalized */
    size_t unary;               /* CreateWriteStream / FinalizeWriteStream calls in flight */
    struct deferred *defer, *defer_tail;   /* exactly_once: batches not encoded yet */
    int trim_on_write;          /* no redelivery (a file source): records die once written */
    double recover_at;          /* monotonic: the next try to finalize recovered streams */
    struct bp_store_write_stats stats;
};

/* store_write.c */
/* Sends t's queued requests while its call has room (opens the call, or, with exactly_once, the
 * table's stream first). */
void bp_sw_pump(struct sw_table *t);
/* Runs the store's timer within `in` seconds (sooner if already due). */
void bp_sw_arm_timer(struct sw_store *s, double in);
/* r failed with a gRPC code: queued again after a backoff (retryable codes; with exactly_once an
 * append holding an offset without limit), or finished with the status the code maps to.
 * Returns 1 when queued again, 0 when finished. */
int bp_sw_req_failed(struct sw_table *t, struct req *r, int code, const char *msg);
/* rows_put's work once a batch may go (store.h's contract), with the rows also in protobuf (enc,
 * or NULL: rows_put_encoded's) copied where they fit the schema in force. Neither entries nor
 * enc is kept after it returns. */
int bp_sw_put(struct sw_store *s, const char *table, const char *entries, size_t len,
              size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done,
              void *arg);
/* Whether bs is a Storage Write store. */
int bp_sw_is(const struct bp_store *bs);

/* store_write_rows.c */
/* AppendRows takes 10 MB per request (the rows, the descriptor and the stream's name) */
#define BP_SW_MAX_REQUEST (10 * 1000 * 1000 - 64 * 1024)
/* Records row index of its batch as refused by r, for reason (copied). */
void bp_sw_req_error(struct req *r, size_t index, const char *reason);
/* Drops a reference to d; frees it with the last. NULL is fine. */
void bp_sw_desc_unref(struct sw_desc *d);
/* Makes t's writer schema the DescriptorProto of schema: the one it holds when that is the same
 * (by content), else a new one of the next gen. Returns 0, or -1 with why when schema cannot be
 * written as a DescriptorProto (t unchanged). */
int bp_sw_desc_update(struct sw_table *t, const struct bp_schema *schema, char *why,
                      size_t whylen) BP_WUR;
/* Whether d is not the writer schema of t's schema as it is now (a reload changed it). */
int bp_sw_desc_outdated(struct sw_table *t, const struct sw_desc *d);
/* Encodes the batch's nrows entries (one per line, len bytes) into requests of put under t's
 * writer schema (schema's), appended to *out (*nout of them) in the batch's order: a row enc
 * holds under schema's serial is copied, any other read from its entry; a row that does not fit
 * in the current request starts the next; a row that cannot be written (or does not fit even
 * alone) is a row error; rows skip marks (exactly_once: stored by a crashed process) are left
 * out. Each request holds a reference to t's writer schema and counts in put->left and
 * s->pending. */
void bp_sw_encode_rows(struct sw_store *s, struct sw_table *t, struct put *put,
                       const struct bp_schema *schema, const char *entries, size_t len,
                       size_t nrows, const struct bp_encoded_rows *enc,
                       const unsigned char *skip, struct req ***out, size_t *nout);

/* store_write_eo.c */
/* Opens the append log of o (state_dir, pipeline, worker) and starts the recovery from the
 * loop. Returns 0, or -1 with err set. */
int bp_sw_eo_open(struct sw_store *s, const struct bp_store_write_opts *o, char *err,
                  size_t errlen);
/* Holds a batch until the previous process's streams are finalized (counted pending). */
void bp_sw_eo_defer(struct sw_store *s, const char *table, const char *entries, size_t len,
                    size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done,
                    void *arg);
/* rows_put with exactly_once: the batch is held (bp_sw_eo_defer) and encoded (bp_sw_put) once
 * the recovery is done and its table's queue has room; at once when it has. */
void bp_sw_eo_put(struct sw_store *s, const char *table, const char *entries, size_t len,
                  size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done,
                  void *arg);
/* Encodes t's held batches while its queue has room (from bp_sw_pump; re-entry is a no-op). */
void bp_sw_eo_release(struct sw_table *t);
/* Whether batches of t are still held (the drain must not finalize its stream yet). */
int bp_sw_eo_holds(const struct sw_table *t);
/* Fills put's log ids and marks in skip the rows the log calls stored. Returns 0, or -1 when
 * the log cannot answer yet. */
int bp_sw_eo_scan(struct sw_store *s, struct sw_table *t, struct put *put, const char *entries,
                  size_t len, size_t nrows, unsigned char *skip);
/* Records r at t's next offset before it is sent. Returns 0, or -1 (tried again later). */
int bp_sw_eo_record(struct sw_table *t, struct req *r);
/* r is written: t's offset moves past it. */
void bp_sw_eo_written(struct sw_table *t, struct req *r);
/* Starts the CreateWriteStream of t's COMMITTED stream (once). */
void bp_sw_eo_create(struct sw_table *t);
/* Finalizes the recovered streams; once none is left, the held batches go. */
void bp_sw_eo_recover(struct sw_store *s);

#endif
