/* batch.h - one row batch per table, flushed as one insertAll request (or one local append) at
 * N rows, N bytes or N ms, whichever comes first. Each row remembers the ack slot of its
 * message; when the store answers, every slot hears whether its row is stored. */
#ifndef BP_BATCH_H
#define BP_BATCH_H

#include "ack.h"
#include "api.h"
#include "buf.h"
#include "store.h"

/* The largest insertAll entry sent: BigQuery's limits are 10 MB per request and per row; a
 * larger entry is refused before it is sent (a dead letter), well below them. */
#define BP_ROW_MAX (9 * 1024 * 1024)

/* A row BigQuery refused (insertErrors): the owner dead-letters it (stage insert). entry is the
 * insertAll entry as sent. Returns 0, or -1 when it could not (the message is then nacked). */
typedef int (*bp_rejected_fn)(void *owner, const char *table, const char *entry, size_t len,
                              const char *reason, uint32_t slot);

/* The dead-letter table refused the dead-letter row of the message in slot (insertErrors), on
 * its delivery `attempt` (Pub/Sub's deliveryAttempt, 0 when unknown). Returns 0 when the owner
 * set the message aside (it charged the slot with whatever that takes: the message is then
 * acked once that is stored), or -1 to have it nacked and redelivered. */
typedef int (*bp_dead_refused_fn)(void *owner, const char *table, const char *entry, size_t len,
                                  const char *reason, uint32_t slot, int attempt);

/* The dead-letter table failed permanently: nothing can be dead-lettered any more, so the owner
 * stops the pipeline (the rows' messages are nacked). */
typedef void (*bp_fatal_fn)(void *owner, const char *table, const char *why);

struct flight;

struct bp_rowbatch {
    char *table;
    bp_buf_t buf;          /* entries, one per line */
    bp_buf_t enc;          /* the rows also in the store's form (bp_batches_add_encoded) */
    uint32_t *enc_len;     /* per row: its bytes in enc, 0 = none; NULL: no row has any */
    unsigned long enc_serial;   /* the schema enc's rows were written under */
    uint32_t *slots;       /* ack slot per row */
    int32_t *attempts;     /* the dead-letter table's: delivery attempt per row */
    size_t nrows;
    size_t slots_cap;
    double first_at;       /* monotonic time of the oldest row in buf */
    int is_dead_letter;    /* refused rows of this table cannot be dead-lettered again */
    unsigned long rows_stored;
    unsigned long rows_rejected;
    size_t last_len;       /* bytes and rows of the last batch sent: the next one's sizes */
    size_t last_rows;
    /* paused: the table refused a request in a way that often passes (BP_STORE_REFUSED).
     * Its requests wait in held (their rows' messages stay outstanding, so flow control stops
     * the pulls once they fill it) and one is sent again after a growing backoff; the first
     * success sends the rest. */
    struct flight *held, *held_tail;
    size_t held_rows;
    int probing;           /* one held request is out, testing the table */
    double refused_since;  /* monotonic time of the first refusal in a row, 0 = none */
    double retry_at;       /* monotonic time of the next probe */
    struct bp_backoff backoff;
    char *paused_why;      /* the table's last answer while paused, NULL when not paused */
};

struct bp_batches {
    struct bp_store *store;
    struct bp_ack *ack;
    bp_rejected_fn rejected;
    bp_dead_refused_fn dead_refused;
    bp_fatal_fn fatal;
    void *owner;
    struct bp_rowbatch **v;
    size_t n;
    size_t max_rows;
    size_t max_bytes;
    double max_age;
    size_t in_flight;      /* requests sent, not answered */
    struct flight *flying; /* those requests' rows: freed with the batches when the drain's
                            * deadline passed (the API layer drops the calls unanswered) */
    unsigned long failures;
    unsigned long permanent;   /* requests a table refused for good (rows dead-lettered) */
    unsigned long refused;     /* requests a table refused for now (held and sent again) */
    double refused_grace;      /* seconds a refusal may last before it counts as for good */
};

void bp_batches_init(struct bp_batches *b, struct bp_store *store, struct bp_ack *ack,
                     size_t max_rows, size_t max_bytes, double max_age);
void bp_batches_on_rejected(struct bp_batches *b, bp_rejected_fn fn, void *owner);
void bp_batches_on_fatal(struct bp_batches *b, bp_fatal_fn fn);
void bp_batches_on_dead_refused(struct bp_batches *b, bp_dead_refused_fn fn);
void bp_batches_free(struct bp_batches *b);
size_t bp_batches_index(struct bp_batches *b, const char *table);
int bp_batches_add(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                   uint32_t slot, double now) BP_WUR;
int bp_batches_add_attempt(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                           uint32_t slot, int attempt, double now) BP_WUR;
/* bp_batches_add with the row also in the store's own form (enc, n bytes, written under the
 * schema of that serial; NULL: none), handed to a store that has rows_put_encoded beside the
 * entries. A row whose schema is not the one of the batch's earlier encoded rows goes without
 * (the store reads its entry). */
int bp_batches_add_encoded(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                           const void *enc, size_t n, unsigned long serial, uint32_t slot,
                           double now) BP_WUR;
/* bp_batches_add_encoded with the message's delivery attempt (bp_batches_add_attempt): the
 * dead-letter table's rows. */
int bp_batches_add_encoded_attempt(struct bp_batches *b, size_t idx, const char *entry,
                                   size_t len, const void *enc, size_t n, unsigned long serial,
                                   uint32_t slot, int attempt, double now) BP_WUR;
int bp_batches_tick(struct bp_batches *b, double now) BP_WUR;
int bp_batches_flush_all(struct bp_batches *b) BP_WUR;
size_t bp_batches_buffered(const struct bp_batches *b);

/* How long (seconds) a table may refuse requests with BP_STORE_REFUSED before its held rows
 * are dead-lettered (the dead-letter table: the owner's fatal callback). Default 600. */
void bp_batches_set_refused_grace(struct bp_batches *b, double seconds);

/* The first paused table and its last answer, or NULL when no table is paused (/readyz). */
const struct bp_rowbatch *bp_batches_paused(const struct bp_batches *b);

/* Rows held by paused tables (bp_batches_tick sends them again; the drain waits for them). */
size_t bp_batches_held_rows(const struct bp_batches *b);

/* Nacks every held row's message and drops the held requests: the drain's end. */
void bp_batches_nack_held(struct bp_batches *b);

#endif
