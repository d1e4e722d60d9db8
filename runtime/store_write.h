/* store_write.h - the rows half of a store (store.h) over the BigQuery Storage Write API's
 * default stream (bigquery.method = storage_write): AppendRows on a gRPC stream per table, on
 * the process's loop. Archive objects are not its job (the cloud store keeps them). */
#ifndef BP_STORE_WRITE_H
#define BP_STORE_WRITE_H

#include <ev.h>

#include "schema.h"
#include "store.h"

struct bp_api;
struct bp_auth;

/* The schema rows of table are written with (the one the schema check holds: the live table's,
 * else the DDL's), or NULL when none is known. Asked for each batch: a writer schema built from
 * it that differs from the last one goes with the next request of that batch's rows. */
typedef const struct bp_schema *(*bp_store_schema_fn)(void *owner, const char *table);

/* An AppendRows reply's updated_schema: table's schema changed (it gained columns) under the
 * run. The owner takes the schema (frees it) and from then on answers schema_for with it, as
 * after a table sync: the next batch's rows are checked and written against it (a new writer
 * schema on the open call). */
typedef void (*bp_store_schema_update_fn)(void *owner, const char *table,
                                          struct bp_schema *taken);

struct bp_store_write_opts {
    struct ev_loop *loop;
    const char *host;           /* bp_endpoint_storage_write's */
    int port;
    int tls;                    /* 0: h2c with prior knowledge (an emulator) */
    const char *ca_file;        /* extra CA bundle, or NULL */
    const char *user_agent;
    struct bp_api *api;         /* the retry policy's backoff; token refreshes */
    struct bp_auth *auth;       /* bearer tokens, or NULL for none */
    int max_attempts;           /* retry.attempts */
    double rpc_timeout;         /* seconds a request may wait for its reply; 0 = 60 */
    const char *project, *dataset;
    bp_store_schema_fn schema_for;
    bp_store_schema_update_fn schema_updated;   /* NULL: updated_schema only logged */
    void *owner;
    const char *lib_dir;        /* the bepipe Lua library (bepipe.int64) */
    /* bigquery.exactly_once: a COMMITTED stream per table, an offset on every append, each
     * recorded before it is sent in state_dir/appends-<worker>.log (append_log.h) */
    int exactly_once;
    const char *state_dir, *pipeline;
    int worker;
    int trim_on_write;          /* a source that never redelivers (a file): no log kept past
                                 * the append's reply */
};

/* A store whose rows_put appends each batch to projects/P/datasets/D/tables/T/streams/_default
 * (store.h's contract: done exactly once; row errors by index; BP_STORE_REFUSED for NOT_FOUND
 * and PERMISSION_DENIED; BP_STORE_PERMANENT for codes no retry changes; -1 when retryable
 * codes outlast retry.attempts). Its object_* ops are NULL: give archives another store.
 * Returns NULL with err filled when the channel or the row reader cannot be set up. */
struct bp_store *bp_store_write_new(const struct bp_store_write_opts *o, char *err,
                                    size_t errlen);

struct bp_store_write_stats {
    unsigned long calls;            /* AppendRows calls opened (one per table, again after an
                                     * end) */
    unsigned long requests;         /* AppendRowsRequests sent */
    unsigned long retries;          /* requests sent again after a retryable code */
    unsigned long failures;         /* batches that ended without being written */
    unsigned long rows_written;
    unsigned long rows_refused;     /* row errors: dead letters of stage insert */
    unsigned long row_error_replies;
    unsigned long rows_skipped;     /* exactly_once: rows of redelivered messages found stored */
    unsigned long rows_encoded;     /* sent as the batch loop wrote them in protobuf */
    unsigned long rows_read_back;   /* read from their JSON entry first (no protobuf of the
                                     * schema in force: a schema changed since, a row C could not
                                     * write) */
    unsigned long long bytes_sent;  /* on the channel's connections (filled when read) */
};
const struct bp_store_write_stats *bp_store_write_stats(const struct bp_store *s);

/* The drain's last step with exactly_once: FinalizeWriteStream on each table's stream once its
 * rows are all answered (no append may follow). Starts the calls once; returns how many are
 * still in flight (0 when done, or for a store without exactly_once or of another kind). */
size_t bp_store_write_finalize(struct bp_store *s);

/* exactly_once: the message with this id was acked; the append log forgets its rows in every
 * table (a no-op for ids it does not hold, and for a store without exactly_once). */
void bp_store_write_acked(struct bp_store *s, const char *id, size_t len);

#endif
