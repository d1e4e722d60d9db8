/* batch.h - one row batch per table, flushed as one insertAll request (or one local append) at
 * N rows, N bytes or N ms, whichever comes first. */
#ifndef BP_BATCH_H
#define BP_BATCH_H

#include "buf.h"
#include "store.h"

struct bp_rowbatch {
    char *table;
    bp_buf_t buf;          /* entries, one per line */
    size_t nrows;
    double first_at;       /* loop time of the oldest row in buf */
    unsigned long rows_stored;
};

struct bp_batches {
    struct bp_store *store;
    struct bp_rowbatch *v;
    size_t n;
    size_t max_rows;
    size_t max_bytes;
    double max_age;
    unsigned long failures;
};

void bp_batches_init(struct bp_batches *b, struct bp_store *store, size_t max_rows,
                     size_t max_bytes, double max_age);
void bp_batches_free(struct bp_batches *b);
size_t bp_batches_index(struct bp_batches *b, const char *table);
int bp_batches_add(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                   double now) BP_WUR;
int bp_batches_tick(struct bp_batches *b, double now) BP_WUR;
int bp_batches_flush_all(struct bp_batches *b) BP_WUR;

#endif
