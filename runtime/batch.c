/* batch.c - per-table row batches. A batch never passes max_bytes: a row that would push it over
 * flushes the batch first, so every request stays under the API's 10 MB. A flushed batch's rows
 * and slots move into a flight record the store keeps until it answers, and the table starts a
 * fresh buffer: many requests of one table may be in flight at once. */
#include "batch.h"
#include "log.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API's hard limit on one insertAll request; batch_bytes is capped below it in config.c. */
#define BP_BATCH_HARD_MAX (10 * 1024 * 1024)

struct flight {
    struct bp_batches *b;
    struct bp_rowbatch *rb;
    bp_buf_t buf;
    bp_buf_t enc;           /* the rows in the store's form, when enc_len */
    uint32_t *enc_len;
    unsigned long enc_serial;
    uint32_t *slots;
    int32_t *attempts;      /* the dead-letter table's rows: delivery attempts */
    size_t nrows;
    struct flight *next;   /* in its table's held list */
    struct flight *fprev, *fnext;   /* in b->flying while its request is unanswered */
    int probe;             /* sent to test a paused table */
};

/* A paused table is tried again after uniform(d/2, d), d doubling from PROBE_MIN to PROBE_MAX
 * seconds: quota windows and permission propagation take minutes, and a request a minute per
 * table costs nothing against any quota. */
#define PROBE_MIN 1.0
#define PROBE_MAX 60.0

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
    b->refused_grace = 600;
}

void
bp_batches_set_refused_grace(struct bp_batches *b, double seconds)
{
    b->refused_grace = seconds;
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

static void
flight_free(struct flight *f)
{
    bp_buf_free(&f->buf);
    bp_buf_free(&f->enc);
    free(f->enc_len);
    free(f->slots);
    free(f->attempts);
    free(f);
}

/* Frees the batches, and the rows of requests still unanswered: at exit the API layer drops
 * its calls without their callbacks (rt.c frees it first), so none of them answers later; their
 * messages were nacked by the drain. */
void
bp_batches_free(struct bp_batches *b)
{
    if (!b)
        return;
    while (b->flying) {
        struct flight *f = b->flying;
        b->flying = f->fnext;
        flight_free(f);
    }
    for (size_t i = 0; i < b->n; i++) {
        for (struct flight *f = b->v[i]->held, *next; f; f = next) {
            next = f->next;
            flight_free(f);
        }
        free(b->v[i]->paused_why);
        free(b->v[i]->table);
        bp_buf_free(&b->v[i]->buf);
        bp_buf_free(&b->v[i]->enc);
        free(b->v[i]->enc_len);
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
    bp_buf_init(&rb->enc, BP_BATCH_HARD_MAX);
    bp_backoff_init(&rb->backoff, PROBE_MIN, PROBE_MAX);
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
hold(struct bp_rowbatch *rb, struct flight *f, int front)
{
    if (front) {
        f->next = rb->held;
        rb->held = f;
        if (!rb->held_tail)
            rb->held_tail = f;
    } else {
        f->next = NULL;
        if (rb->held_tail)
            rb->held_tail->next = f;
        else
            rb->held = f;
        rb->held_tail = f;
    }
    rb->held_rows += f->nrows;
}

static struct flight *
unhold(struct bp_rowbatch *rb)
{
    struct flight *f = rb->held;
    if (f) {
        rb->held = f->next;
        if (!rb->held)
            rb->held_tail = NULL;
        rb->held_rows -= f->nrows;
        f->next = NULL;
    }
    return f;
}

/* The table answered a refusal that often passes (quota, a grant propagating, a table being
 * recreated): the request waits in the table's held list and the table is paused, unless the
 * refusals have lasted refused_grace: then it and every held request get what a refusal for
 * good gets (dead letters; for the dead-letter table, the owner stops). */
static void
refused_for_now(struct bp_batches *b, struct flight *f, const char *errmsg)
{
    struct bp_rowbatch *rb = f->rb;
    double now = bp_time_mono();
    int was_probe = f->probe;
    if (was_probe)
        rb->probing = 0;
    f->probe = 0;
    if (!rb->refused_since)
        rb->refused_since = now;
    if (now - rb->refused_since >= b->refused_grace) {
        bp_log(BP_LOG_ERROR, "batch", "table %s has refused requests for %.0f s "
               "(bigquery.refused_grace_seconds=%.0f): giving up on %zu held rows", rb->table,
               now - rb->refused_since, b->refused_grace, rb->held_rows + f->nrows);
        free(rb->paused_why);
        rb->paused_why = NULL;
        refused_for_good(b, f, errmsg);
        flight_free(f);
        for (struct flight *h; (h = unhold(rb)) != NULL; flight_free(h))
            refused_for_good(b, h, errmsg);
        return;
    }
    b->refused++;
    if (!rb->paused_why)
        bp_log(BP_LOG_WARN, "batch", "table %s refused %zu rows for now; the table is paused "
               "and they are sent again (dead letters after bigquery.refused_grace_seconds=%.0f): "
               "%s", rb->table, f->nrows, b->refused_grace, errmsg);
    free(rb->paused_why);
    rb->paused_why = bp_xstrdup(errmsg);
    hold(rb, f, 1);
    /* the probe's refusal sets the next probe; refusals of requests sent before the pause
     * began do not push it further */
    if (was_probe || !rb->retry_at || rb->retry_at <= now)
        rb->retry_at = now + bp_backoff_fail(&rb->backoff);
}

/* The table stored a request: a pause ends, and its held requests go at the next tick. */
static void
accepted(struct bp_rowbatch *rb)
{
    if (!rb->refused_since)
        return;
    if (rb->paused_why)
        bp_log(BP_LOG_INFO, "batch", "table %s accepts rows again after %.0f s; sending its %zu "
               "held rows", rb->table, bp_time_mono() - rb->refused_since, rb->held_rows);
    rb->refused_since = 0;
    rb->retry_at = 0;
    rb->probing = 0;
    bp_backoff_reset(&rb->backoff);
    free(rb->paused_why);
    rb->paused_why = NULL;
}

/* A paused table's probe failed otherwise than by a refusal for now (an error the api's
 * retries did not get past, its own rows refused for good): no answer about the pause. The next
 * held request is probed when the backoff says; with none held, the table is no longer paused,
 * since pulling waits on a paused table and nothing would probe it again (its next request goes
 * out at once; refused_since stays, so the grace keeps counting should it be refused). */
static void
probe_failed(struct bp_rowbatch *rb)
{
    rb->probing = 0;
    rb->retry_at = bp_time_mono() + bp_backoff_fail(&rb->backoff);
    if (!rb->held) {
        free(rb->paused_why);
        rb->paused_why = NULL;
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
    if (f->fprev)
        f->fprev->fnext = f->fnext;
    else
        b->flying = f->fnext;
    if (f->fnext)
        f->fnext->fprev = f->fprev;
    f->fprev = f->fnext = NULL;
    if (status == BP_STORE_REFUSED) {
        refused_for_now(b, f, errmsg ? errmsg : "refused");
        return;     /* f is held (or freed) */
    }
    if (status != 0 && f->probe)
        probe_failed(rb);
    if (status == BP_STORE_PERMANENT) {
        refused_for_good(b, f, errmsg ? errmsg : "refused");
        goto out;
    }
    if (status == 0)
        accepted(rb);
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
    flight_free(f);
}

static int
send_flight(struct bp_batches *b, struct flight *f)
{
    b->in_flight++;
    f->fprev = NULL;
    f->fnext = b->flying;
    if (b->flying)
        b->flying->fprev = f;
    b->flying = f;
    if (f->enc_len && b->store->ops->rows_put_encoded) {
        struct bp_encoded_rows enc = {f->enc.data, f->enc_len, f->enc_serial};
        return b->store->ops->rows_put_encoded(b->store, f->rb->table, f->buf.data, f->buf.len,
                                               f->nrows, &enc, flight_done, f);
    }
    return b->store->ops->rows_put(b->store, f->rb->table, f->buf.data, f->buf.len, f->nrows,
                                   flight_done, f);
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
    f->enc = rb->enc;
    f->enc_len = rb->enc_len;
    f->enc_serial = rb->enc_serial;
    f->slots = rb->slots;
    f->attempts = rb->attempts;
    f->nrows = rb->nrows;
    rb->last_len = f->buf.len;
    rb->last_rows = f->nrows;
    bp_buf_init(&rb->buf, BP_BATCH_HARD_MAX);
    bp_buf_init(&rb->enc, BP_BATCH_HARD_MAX);
    rb->enc_len = NULL;
    rb->slots = NULL;
    rb->attempts = NULL;
    rb->slots_cap = 0;
    rb->nrows = 0;
    if (rb->held || rb->paused_why) {
        /* paused: the request waits its turn instead of meeting the same refusal */
        hold(rb, f, 0);
        return 0;
    }
    return send_flight(b, f);
}

/* A paused table's next probe when it is due; after a success, every held request. */
static int
send_held(struct bp_batches *b, struct bp_rowbatch *rb, double mono)
{
    int rc = 0;
    if (rb->refused_since) {
        if (rb->probing || mono < rb->retry_at)
            return 0;
        struct flight *f = unhold(rb);
        rb->probing = 1;
        f->probe = 1;
        return send_flight(b, f);
    }
    for (struct flight *f; (f = unhold(rb)) != NULL;)
        if (send_flight(b, f) != 0)
            rc = -1;
    return rc;
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

/* Keeps row rb->nrows's encoded form (enc, n bytes; NULL: none) beside its entry: enc_len
 * grows with the slots (slots_cap), and stays NULL until a row of the batch has one. A row
 * that cannot be kept (another schema than the batch's earlier ones, no room) goes without. */
static void
keep_encoded(struct bp_rowbatch *rb, const void *enc, size_t n, unsigned long serial)
{
    int any = rb->enc_len && rb->enc.len > 0;
    if (enc && n && n <= UINT32_MAX && (!any || serial == rb->enc_serial)) {
        if (!rb->enc_len)
            rb->enc_len = bp_xcalloc(rb->slots_cap, sizeof(*rb->enc_len));
        if (bp_buf_append(&rb->enc, enc, n) == 0) {
            rb->enc_serial = serial;
            rb->enc_len[rb->nrows] = (uint32_t)n;
            return;
        }
    }
    if (rb->enc_len)
        rb->enc_len[rb->nrows] = 0;
}

static int
add_row(struct bp_batches *b, size_t idx, const char *entry, size_t len, const void *enc,
        size_t n, unsigned long serial, uint32_t slot, int attempt, double now)
{
    struct bp_rowbatch *rb = b->v[idx];
    if (len > BP_ROW_MAX)
        return refuse_oversized(b, rb, entry, len, slot);
    if (rb->nrows && rb->buf.len + len + 1 > b->max_bytes) {
        /* the store may answer the flush at once, and the rows it refuses go to the rejected
         * callback, which writes its dead letter where the runtime lends entry and enc from
         * (rt->entry): they are copied first (once per batch) */
        char *copy = bp_xmalloc(len + n + 1);
        memcpy(copy, entry, len);
        if (enc && n)
            memcpy(copy + len, enc, n);
        int rc = flush_one(b, rb) != 0 ? -1
                 : add_row(b, idx, copy, len, enc && n ? copy + len : enc, n, serial, slot,
                           attempt, now);
        free(copy);
        return rc;
    }
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
        if (rb->enc_len)
            rb->enc_len = bp_xrealloc(rb->enc_len, rb->slots_cap * sizeof(*rb->enc_len));
    }
    if (rb->is_dead_letter)
        rb->attempts[rb->nrows] = attempt;
    if (enc || rb->enc_len)
        keep_encoded(rb, enc, n, serial);
    rb->slots[rb->nrows++] = slot;
    bp_ack_add(b->ack, slot, 1);
    if (rb->nrows >= b->max_rows || rb->buf.len >= b->max_bytes)
        return flush_one(b, rb);
    return 0;
}

/* bp_batches_add with the message's delivery attempt (Pub/Sub's deliveryAttempt, 0 when
 * unknown), which the dead-letter table's rows keep for bp_dead_refused_fn. */
int
bp_batches_add_attempt(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                       uint32_t slot, int attempt, double now)
{
    return add_row(b, idx, entry, len, NULL, 0, 0, slot, attempt, now);
}

/* See batch.h. */
int
bp_batches_add_encoded(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                       const void *enc, size_t n, unsigned long serial, uint32_t slot,
                       double now)
{
    return add_row(b, idx, entry, len, enc, n, serial, slot, 0, now);
}

/* See batch.h. */
int
bp_batches_add_encoded_attempt(struct bp_batches *b, size_t idx, const char *entry, size_t len,
                               const void *enc, size_t n, unsigned long serial, uint32_t slot,
                               int attempt, double now)
{
    return add_row(b, idx, entry, len, enc, n, serial, slot, attempt, now);
}

/* Flushes batches whose oldest row is older than max_age. Returns 0 or -1 on a store error. */
int
bp_batches_tick(struct bp_batches *b, double now)
{
    int rc = 0;
    double mono = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->v[i]->nrows && now - b->v[i]->first_at >= b->max_age &&
            flush_one(b, b->v[i]) != 0)
            rc = -1;
        if (b->v[i]->held) {
            if (!mono)
                mono = bp_time_mono();
            if (send_held(b, b->v[i], mono) != 0)
                rc = -1;
        }
    }
    return rc;
}

/* The drain ran out of time while tables were paused: their rows will not be stored by this
 * process, so their messages are nacked (redelivered to the next one) instead of waiting for
 * their lease. */
void
bp_batches_nack_held(struct bp_batches *b)
{
    for (size_t i = 0; i < b->n; i++) {
        struct bp_rowbatch *rb = b->v[i];
        if (rb->held)
            bp_log(BP_LOG_WARN, "batch", "table %s is paused (%s): nacking its %zu held rows",
                   rb->table, rb->paused_why ? rb->paused_why : "refused", rb->held_rows);
        for (struct flight *f; (f = unhold(rb)) != NULL; flight_free(f))
            for (size_t k = 0; k < f->nrows; k++)
                bp_ack_done(b->ack, f->slots[k], 0);
    }
}

const struct bp_rowbatch *
bp_batches_paused(const struct bp_batches *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->v[i]->paused_why)
            return b->v[i];
    return NULL;
}

size_t
bp_batches_held_rows(const struct bp_batches *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++)
        n += b->v[i]->held_rows;
    return n;
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
