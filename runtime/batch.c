/* batch.c - per-table row batches. A batch never passes max_bytes: a row that would push it over
 * flushes the batch first, so every request stays under the API's 10 MB. A flushed batch's rows
 * and slots move into a flight record the store keeps until it answers, and the table starts a
 * fresh buffer: many requests of one table may be in flight at once. */
#include "batch.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API's hard limit on one insertAll request; batch_bytes is capped below it in config.c. */
#define BP_BATCH_HARD_MAX (10 * 1024 * 1024)

struct flight {
    struct bp_batches *b;
    struct bp_rowbatch *rb;
    bp_buf_t buf;
    uint32_t *slots;
    int32_t *attempts;      /* the dead-letter table's rows: delivery attempts */
    size_t nrows;
};

void
bp_batches_init(struct bp_batches *b, struct bp_store *store, struct bp_ack *ack,
                size_t max_rows, size_t max_bytes, double max_age)
{
    memset(b, 0, sizeof(*b));
    b->store = store;
    b->ack = ack;
    b->max_rows = max_rows;
    b->max_bytes = max_bytes;
    b->max_age = max_age;
}

/* Rows refused by the store go to fn (dead letter); without it they fail their message. */
/* Who hears that the dead-letter table failed for good (the owner of on_rejected). */
void
bp_batches_on_fatal(struct bp_batches *b, bp_fatal_fn fn)
{
    b->fatal = fn;
}

/* Who decides what becomes of a message whose dead-letter row the dead-letter table refused
 * (set aside, or nacked for another attempt); without it the message is nacked. The owner is
 * on_rejected's. */
void
bp_batches_on_dead_refused(struct bp_batches *b, bp_dead_refused_fn fn)
{
    b->dead_refused = fn;
}

void
bp_batches_on_rejected(struct bp_batches *b, bp_rejected_fn fn, void *owner)
{
    b->rejected = fn;
    b->owner = owner;
}

/* Frees the batches. Requests still in flight keep their own memory and must be finished by
 * the store's destroy (which answers them as failures) before this runs. */
void
bp_batches_free(struct bp_batches *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++) {
        free(b->v[i]->table);
        bp_buf_free(&b->v[i]->buf);
        free(b->v[i]->slots);
        free(b->v[i]->attempts);
        free(b->v[i]);
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
        if (strcmp(b->v[i]->table, table) == 0)
            return i;
    b->v = bp_xrealloc(b->v, (b->n + 1) * sizeof(*b->v));
    struct bp_rowbatch *rb = bp_xcalloc(1, sizeof(*rb));
    rb->table = bp_xstrdup(table);
    bp_buf_init(&rb->buf, BP_BATCH_HARD_MAX);
    b->v[b->n] = rb;
    return b->n++;
}

/* Start of row i in the '\n'-separated entries. */
static const char *
nth_line(const char *p, const char *end, size_t i, size_t *len)
{
    while (i-- && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    return p;
}

/* The table refused the whole request for good (404, 403, a bad request): every row becomes a
 * dead letter of stage insert with the API's answer, so its message is acked instead of being
 * redelivered (and archived again) forever. The dead-letter table itself: the owner stops. */
static void
refused_for_good(struct bp_batches *b, struct flight *f, const char *errmsg)
{
    struct bp_rowbatch *rb = f->rb;
    b->permanent++;
    if (rb->is_dead_letter || !b->rejected) {
        for (size_t i = 0; i < f->nrows; i++)
            bp_ack_done(b->ack, f->slots[i], 0);
        if (b->fatal)
            b->fatal(b->owner, rb->table, errmsg);
        return;
    }
    bp_log_rl(BP_LOG_ERROR, "batch", rb->table, "table %s refused %zu rows for good; they are "
              "dead-lettered: %s", rb->table, f->nrows, errmsg);
    const char *p = f->buf.data, *end = f->buf.data + f->buf.len;
    for (size_t i = 0; i < f->nrows; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        rb->rows_rejected++;
        int ok = b->rejected(b->owner, rb->table, p, len, errmsg, f->slots[i]) == 0;
        bp_ack_done(b->ack, f->slots[i], ok);
        p = nl ? nl + 1 : end;
    }
}

static void
flight_done(void *arg, int status, const char *errmsg, const struct bp_row_error *errs,
            size_t nerrs)
{
    struct flight *f = arg;
    struct bp_batches *b = f->b;
    struct bp_rowbatch *rb = f->rb;
    b->in_flight--;
    if (status == BP_STORE_PERMANENT) {
        refused_for_good(b, f, errmsg ? errmsg : "refused");
        goto out;
    }
    if (status != 0) {
        b->failures++;
        bp_log(BP_LOG_ERROR, "batch", "table %s: %zu rows not stored, their messages will be "
               "redelivered: %s", rb->table, f->nrows, errmsg ? errmsg : "error");
        for (size_t i = 0; i < f->nrows; i++)
            bp_ack_done(b->ack, f->slots[i], 0);
        goto out;
    }
    /* refused rows first: dead-lettering adds a destination to the slot before its row's own
     * completion below, so the message is not acked in between */
    char *refused = nerrs ? bp_xcalloc(f->nrows, 1) : NULL;
    for (size_t e = 0; e < nerrs; e++) {
        size_t i = errs[e].index, len;
        if (i >= f->nrows || refused[i])
            continue;
        refused[i] = 1;
        rb->rows_rejected++;
        const char *line = nth_line(f->buf.data, f->buf.data + f->buf.len, i, &len);
        int ok;
        if (rb->is_dead_letter)
            /* a dead letter cannot be dead-lettered: the owner counts the attempts and sets the
             * message aside at the last, so it does not loop forever */
            ok = b->dead_refused &&
                 b->dead_refused(b->owner, rb->table, line, len, errs[e].reason, f->slots[i],
                                 f->attempts ? f->attempts[i] : 0) == 0;
        else
            ok = b->rejected &&
                 b->rejected(b->owner, rb->table, line, len, errs[e].reason, f->slots[i]) == 0;
        if (!ok && !(rb->is_dead_letter && b->dead_refused))
            bp_log(BP_LOG_ERROR, "batch", "table %s refused a row that cannot be dead-lettered; "
                   "its message will be redelivered: %s", rb->table, errs[e].reason);
        bp_ack_done(b->ack, f->slots[i], ok);
    }
    for (size_t i = 0; i < f->nrows; i++)
        if (!refused || !refused[i]) {
            rb->rows_stored++;
            bp_ack_done(b->ack, f->slots[i], 1);
        }
    free(refused);
out:
    bp_buf_free(&f->buf);
    free(f->slots);
    free(f->attempts);
    free(f);
}

static int
flush_one(struct bp_batches *b, struct bp_rowbatch *rb)
{
    if (rb->nrows == 0)
        return 0;
    struct flight *f = bp_xcalloc(1, sizeof(*f));
    f->b = b;
    f->rb = rb;
    f->buf = rb->buf;
    f->slots = rb->slots;
    f->attempts = rb->attempts;
    f->nrows = rb->nrows;
    rb->last_len = f->buf.len;
    rb->last_rows = f->nrows;
    bp_buf_init(&rb->buf, BP_BATCH_HARD_MAX);
    rb->slots = NULL;
    rb->attempts = NULL;
    rb->slots_cap = 0;
    rb->nrows = 0;
    b->in_flight++;
    return b->store->ops->rows_put(b->store, rb->table, f->buf.data, f->buf.len, f->nrows,
                                   flight_done, f);
}

/* An entry past BP_ROW_MAX would fail its whole request, and again after every redelivery:
 * it is refused here, as BigQuery would refuse it, and goes to the rejected callback (a dead
 * letter). Returns 0 when dead-lettered, -1 when it cannot be (rows of the dead-letter table). */
static int
refuse_oversized(struct bp_batches *b, struct bp_rowbatch *rb, const char *entry, size_t len,
                 uint32_t slot)
{
    char why[128];
    snprintf(why, sizeof(why), "row of %zu bytes exceeds the insertAll limit", len);
    rb->rows_rejected++;
    if (!rb->is_dead_letter && b->rejected &&
        b->rejected(b->owner, rb->table, entry, len, why, slot) == 0)
        return 0;
    bp_log(BP_LOG_ERROR, "batch", "table %s: %s and cannot be dead-lettered", rb->table, why);
    return -1;
}

/* Adds one entry (a line without its '\\n') of the message in `slot` to batch idx, flushing at
 * the limits; the slot gets one pending write. An entry over BP_ROW_MAX is dead-lettered instead
 * (through the rejected callback, which charges the slot itself). Returns 0, or -1 when the
 * store failed at once or an oversized entry could not be dead-lettered (the slot is not
 * charged then). */
int
bp_batches_add(struct bp_batches *b, size_t idx, const char *entry, size_t len, uint32_t slot,
               double now)
{
    return bp_batches_add_attempt(b, idx, entry, len, slot, 0, now);
}

/* bp_batches_add with the message's delivery attempt (Pub/Sub's deliveryAttempt, 0 when
 * unknown), which the dead-letter table's rows keep for bp_dead_refused_fn. */
int
bp_batches_add_attempt(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                       uint32_t slot, int attempt, double now)
{
    struct bp_rowbatch *rb = b->v[idx];
    if (len > BP_ROW_MAX)
        return refuse_oversized(b, rb, entry, len, slot);
    if (rb->nrows && rb->buf.len + len + 1 > b->max_bytes && flush_one(b, rb) != 0)
        return -1;
    if (rb->nrows == 0) {
        rb->first_at = now;
        /* a new batch's buffer starts at the last one's size, not at 256 bytes doubled ten
         * times (each realloc a copy: ~1% of the local path) */
        size_t hint = rb->last_len + rb->last_len / 8;
        if (bp_buf_reserve(&rb->buf, hint < rb->buf.max ? hint : rb->buf.max) != 0)
            return -1;
    }
    if (bp_buf_append(&rb->buf, entry, len) != 0 || bp_buf_append(&rb->buf, "\n", 1) != 0)
        return -1;
    if (rb->nrows == rb->slots_cap) {
        rb->slots_cap = rb->slots_cap ? rb->slots_cap * 2
                                      : (rb->last_rows > 64 ? rb->last_rows + 8 : 64);
        rb->slots = bp_xrealloc(rb->slots, rb->slots_cap * sizeof(*rb->slots));
        if (rb->is_dead_letter)
            rb->attempts = bp_xrealloc(rb->attempts, rb->slots_cap * sizeof(*rb->attempts));
    }
    if (rb->is_dead_letter)
        rb->attempts[rb->nrows] = attempt;
    rb->slots[rb->nrows++] = slot;
    bp_ack_add(b->ack, slot, 1);
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
        if (b->v[i]->nrows && now - b->v[i]->first_at >= b->max_age &&
            flush_one(b, b->v[i]) != 0)
            rc = -1;
    return rc;
}

int
bp_batches_flush_all(struct bp_batches *b)
{
    int rc = 0;
    for (size_t i = 0; i < b->n; i++)
        if (flush_one(b, b->v[i]) != 0)
            rc = -1;
    return rc;
}

/* Rows waiting in batches (not yet sent). */
size_t
bp_batches_buffered(const struct bp_batches *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += b->v[i]->nrows;
    return n;
}
