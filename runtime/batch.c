/* batch.c - per-table row batches. A batch never passes max_bytes: a row that would push it over
 * flushes the batch first, so every request stays under the API's 10 MB. */
#include "batch.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

/* The API's hard limit on one insertAll request; batch_bytes is capped below it in config.c. */
#define BP_BATCH_HARD_MAX (10 * 1024 * 1024)

void
bp_batches_init(struct bp_batches *b, struct bp_store *store, size_t max_rows, size_t max_bytes,
                double max_age)
{
    memset(b, 0, sizeof(*b));
    b->store = store;
    b->max_rows = max_rows;
    b->max_bytes = max_bytes;
    b->max_age = max_age;
}

void
bp_batches_free(struct bp_batches *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i].table);
        bp_buf_free(&b->v[i].buf);
    }
    free(b->v);
    b->v = NULL;
    b->n = 0;
}

/* The index of the batch of `table`, created on first use (routes may add tables on reload). */
size_t
bp_batches_index(struct bp_batches *b, const char *table)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->v[i].table, table) == 0)
            return i;
    b->v = bp_xrealloc(b->v, (b->n + 1) * sizeof(*b->v));
    struct bp_rowbatch *rb = &b->v[b->n];
    memset(rb, 0, sizeof(*rb));
    rb->table = bp_xstrdup(table);
    bp_buf_init(&rb->buf, BP_BATCH_HARD_MAX);
    return b->n++;
}

struct flush_ctx {
    struct bp_batches *b;
    struct bp_rowbatch *rb;
    size_t nrows;
};

static void
flush_done(void *arg, int status, const char *errmsg)
{
    struct flush_ctx *fc = arg;
    if (status == 0) {
        fc->rb->rows_stored += fc->nrows;
    } else {
        fc->b->failures++;
        bp_log(BP_LOG_ERROR, "batch", "table %s: %zu rows not stored: %s", fc->rb->table,
               fc->nrows, errmsg ? errmsg : "error");
    }
}

static int
flush_one(struct bp_batches *b, struct bp_rowbatch *rb)
{
    if (rb->nrows == 0)
        return 0;
    /* Local stores complete synchronously; the cloud store will own a heap context. */
    struct flush_ctx fc = { b, rb, rb->nrows };
    int rc = b->store->ops->rows_put(b->store, rb->table, rb->buf.data, rb->buf.len, rb->nrows,
                                     flush_done, &fc);
    bp_buf_reset(&rb->buf);
    rb->nrows = 0;
    return rc;
}

/* Adds one entry (a line without its '\n') to batch idx, flushing at the limits.
 * Returns 0, or -1 when the store failed or the entry alone passes the request limit. */
int
bp_batches_add(struct bp_batches *b, size_t idx, const char *entry, size_t len, double now)
{
    struct bp_rowbatch *rb = &b->v[idx];
    if (len + 1 > BP_BATCH_HARD_MAX)
        return -1;
    if (rb->nrows && rb->buf.len + len + 1 > b->max_bytes && flush_one(b, rb) != 0)
        return -1;
    if (rb->nrows == 0)
        rb->first_at = now;
    if (bp_buf_append(&rb->buf, entry, len) != 0 || bp_buf_append(&rb->buf, "\n", 1) != 0)
        return -1;
    rb->nrows++;
    if (rb->nrows >= b->max_rows || rb->buf.len >= b->max_bytes)
        return flush_one(b, rb);
    return 0;
}

/* Flushes batches whose oldest row is older than max_age. Returns 0 or -1 on a store error. */
int
bp_batches_tick(struct bp_batches *b, double now)
{
    int rc = 0;
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i].nrows && now - b->v[i].first_at >= b->max_age && flush_one(b, &b->v[i]) != 0)
            rc = -1;
    return rc;
}

int
bp_batches_flush_all(struct bp_batches *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->n; i++)
        if (flush_one(b, &b->v[i]) != 0)
            rc = -1;
    return rc;
}
