/* store.h - where rows and archive objects go. Two kinds fill these ops: local files
 * (store_local.c) and Google's APIs (BigQuery insertAll + GCS uploads). The rest of the core only
 * sees this interface, so adding the cloud kind reshapes nothing: completion is always reported
 * through a done callback, synchronously for local files, after the HTTP reply for the cloud. */
#ifndef BP_STORE_H
#define BP_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct bp_store;
struct bp_object;

/* One row BigQuery refused inside an otherwise accepted insertAll (insertErrors[]). */
struct bp_row_error {
    size_t index;          /* 0-based row of the request */
    const char *reason;    /* "invalid: no such field: x" */
};

/* A status of rows_put / object_finish: nothing stored, and sending the same request again cannot
 * help (404 table or bucket, 403, a 400 that is not a per-row error): see bp_api_permanent. */
#define BP_STORE_PERMANENT (-2)
/* A status of rows_put / object_finish: nothing stored, refused in a way that often passes
 * within minutes (403 quota or permissions, 404: bp_api_refused_transient). The caller holds
 * the work and tries again later; it treats the refusal as BP_STORE_PERMANENT once it lasted
 * bigquery.refused_grace_seconds. */
#define BP_STORE_REFUSED (-3)

/* status 0 = durable, except the rows listed in errs (rows_put only); otherwise a negative code
 * (BP_STORE_PERMANENT, BP_STORE_REFUSED, or -1 for a failure worth redelivering) and a message,
 * and nothing of the request is stored. errs and the message are valid during the call only.
 *
 * The one contract of rows_put and object_finish, for both stores: done then runs exactly once,
 * whatever happens: inside the call (local files, or a failure known at once) or later from the
 * loop (the cloud's HTTP reply). The return value only repeats a failure known at once: -1 means
 * done HAS already run with a negative status; the caller must not fail the work a second time. */
/* A batch's rows already written in the store's own form beside their entries (the Storage
 * Write API's protobuf, row_protos.h), row by row in the batch's order. */
struct bp_encoded_rows {
    const char *data;           /* the encoded rows back to back */
    const uint32_t *len;        /* per row: its bytes in data; 0 = none (its entry stands) */
    unsigned long serial;       /* the schema they were written under (struct bp_schema) */
};

typedef void (*bp_store_done_fn)(void *arg, int status, const char *errmsg,
                                 const struct bp_row_error *errs, size_t nerrs);

struct bp_store_ops {
    const char *kind;
    /* Archive objects are held in memory until finished (cloud), not written as they grow. */
    int objects_in_memory;
    /* Writes a batch of insertAll entries, one JSON object per line ('\n'-terminated). The
     * entries stay valid until done runs. done runs exactly once (see bp_store_done_fn); returns
     * 0, or -1 when it already ran with a failure. */
    int (*rows_put)(struct bp_store *s, const char *table, const char *entries, size_t len,
                    size_t nrows, bp_store_done_fn done, void *arg);
    /* Opens a new archive object named `name` (bucket-relative) for appending. */
    struct bp_object *(*object_open)(struct bp_store *s, const char *name, char *err,
                                     size_t errlen);
    int (*object_write)(struct bp_object *o, const void *p, size_t n);
    /* Makes the object visible under its name (never overwriting one) and frees o; done runs
     * exactly once, when it is (or cannot be); returns 0, or -1 when done already ran with a
     * failure. */
    int (*object_finish)(struct bp_object *o, bp_store_done_fn done, void *arg);
    /* Throws the object away unfinished and frees o. */
    void (*object_abort)(struct bp_object *o);
    /* Writes in flight (cloud); the drain waits for 0. */
    size_t (*pending)(struct bp_store *s);
    void (*destroy)(struct bp_store *s);
    /* rows_put with the rows also encoded (enc, valid until done runs, as the entries): a store
     * may send those as they are when they fit its schema, and reads the entries otherwise.
     * NULL for a store without its own form (batch.c calls rows_put then). */
    int (*rows_put_encoded)(struct bp_store *s, const char *table, const char *entries,
                            size_t len, size_t nrows, const struct bp_encoded_rows *enc,
                            bp_store_done_fn done, void *arg);
};

struct bp_store {
    const struct bp_store_ops *ops;
};

struct bp_store *bp_store_local_new(const char *dir, const char *bucket, char *err,
                                    size_t errlen);
void bp_store_local_set_sync(struct bp_store *s, int sync);
void bp_store_local_set_tmpfile(struct bp_store *s, int on);

struct bp_api;
struct bp_endpoints;
struct ev_loop;
struct bp_store *bp_store_cloud_new(struct bp_api *bq_api, struct bp_api *gcs_api,
                                    const struct bp_endpoints *ep, const char *project,
                                    const char *dataset, const char *bucket, size_t max_object,
                                    size_t max_uploads);
/* Archive uploads the bucket refuses for now (403, 404) are held and sent again on loop's
 * timers until refused for grace seconds, then fail for good (0: at once). */
void bp_store_cloud_set_refused(struct bp_store *s, struct ev_loop *loop, double grace);
/* archive.compression = gzip: objects gzip-compressed as they grow (zlib level `level`),
 * uploaded with contentEncoding gzip. Returns 0, or -1 when the compressor cannot be
 * allocated. */
int bp_store_cloud_set_gzip(struct bp_store *s, int level) BP_WUR;
/* The bucket's last refusal while uploads wait (NULL when none waits): /readyz. */
const char *bp_store_cloud_refusing(const struct bp_store *s);

/* The cloud store's upload queue: finished objects wait first in first out while max_uploads
 * uploads are in flight. */
struct bp_store_cloud_stats {
    unsigned long objects;      /* objects handed to the store (finished) */
    size_t max_uploading;       /* most uploads in flight at once */
    size_t max_queued;          /* most objects waiting for an upload slot at once */
};
const struct bp_store_cloud_stats *bp_store_cloud_stats(const struct bp_store *s);

#endif
