/* append_log.c - the exactly-once record of Storage Write API appends (contract in append_log.h,
 * bytes in append_log_codec.c).
 *
 * In memory: every record still needed (its bytes as written, for the rewrite, and its entries),
 * the streams they are on, and a hash of message ids, each with references to the entries that
 * carry it. A record lives while one of its entries' messages is not acked; a recovered record
 * (from the file at open) the same way, so the previous process's knowledge survives a second
 * crash until each of its messages has been acked by this one.
 *
 * A later record on a stream whose offsets overlap an earlier one's voids the earlier one. The
 * caller writes a new record for offsets only once the append that had them failed for sure (an
 * error reply: BigQuery wrote none of its rows) — a retry of an append whose fate is unknown goes
 * out with the same rows at the same offsets (ALREADY_EXISTS then means done). So the last record
 * covering an offset says what is there, and a voided one can claim nothing.
 *
 * Sizes come from outside data, so every allocation is counted against max_mem and fails softly
 * (the write is refused, the caller retries later); the log's own struct is a small fixed one. */
#include "append_log_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- counted memory ---- */

/* n bytes counted against max_mem (a size kept before them for al_mem_free); NULL past the
 * cap or when malloc fails. */
void *
al_mem_alloc(bp_append_log_t *log, size_t n)
{
    if (n > log->max_mem || log->mem + n + AL_HDR > log->max_mem)
        return NULL;
    size_t *p = malloc(n + AL_HDR);
    if (!p)
        return NULL;
    p[0] = n + AL_HDR;
    log->mem += n + AL_HDR;
    return (char *)p + AL_HDR;
}

/* Frees what al_mem_alloc gave and uncounts it; NULL-safe. */
void
al_mem_free(bp_append_log_t *log, void *q)
{
    if (!q)
        return;
    size_t *p = (size_t *)(void *)((char *)q - AL_HDR);
    log->mem -= p[0];
    free(p);
}

/* ---- messages ---- */

static struct al_msg **
msg_slot(bp_append_log_t *log, const char *id, size_t len)
{
    if (!log->nbuckets)
        return NULL;
    struct al_msg **s = &log->buckets[bp_fnv64(id, len) & (log->nbuckets - 1)];
    while (*s && ((*s)->id_len != len || memcmp((*s)->id, id, len) != 0))
        s = &(*s)->hnext;
    return s;
}

static struct al_msg *
msg_find(bp_append_log_t *log, const char *id, size_t len)
{
    struct al_msg **s = msg_slot(log, id, len);
    return s ? *s : NULL;
}

/* Doubles the table when it is full; a failed allocation keeps the old one (longer chains). */
static void
msg_grow(bp_append_log_t *log)
{
    if (log->nbuckets && log->nmsgs < log->nbuckets)
        return;
    size_t nb = log->nbuckets ? log->nbuckets * 2 : 64;
    struct al_msg **b = al_mem_alloc(log, nb * sizeof(*b));
    if (!b)
        return;
    memset(b, 0, nb * sizeof(*b));
    for (size_t i = 0; i < log->nbuckets; i++) {
        for (struct al_msg *m = log->buckets[i], *next; m; m = next) {
            next = m->hnext;
            size_t s = bp_fnv64(m->id, m->id_len) & (nb - 1);
            m->hnext = b[s];
            b[s] = m;
        }
    }
    al_mem_free(log, log->buckets);
    log->buckets = b;
    log->nbuckets = nb;
}

static void msg_release(bp_append_log_t *log, struct al_msg *m);

/* The message with this id, created when new; NULL when the memory cap is reached. Room is
 * reserved for one more reference (m->pending counts those reserved). */
static struct al_msg *
msg_get(bp_append_log_t *log, const char *id, size_t len)
{
    msg_grow(log);
    struct al_msg **s = msg_slot(log, id, len);
    if (!s)
        return NULL;
    struct al_msg *m = *s;
    if (!m) {
        m = al_mem_alloc(log, sizeof(*m) + len);
        if (!m)
            return NULL;
        memset(m, 0, sizeof(*m));
        memcpy(m->id, id, len);
        m->id_len = len;
        /* the first reference inside the message: a log holds as many messages as flow
         * control lets out unacked, nearly all of them in one append, and an allocation of
         * its own for each one's single reference was about a quarter of the log's memory */
        m->refs = &m->one;
        m->cap = 1;
        *s = m;
        log->nmsgs++;
    }
    if (m->nrefs + m->pending + 1 > m->cap) {
        uint32_t cap = m->cap * 2;
        struct al_ref *refs = al_mem_alloc(log, cap * sizeof(*refs));
        if (!refs) {
            msg_release(log, m);
            return NULL;
        }
        if (m->nrefs)
            memcpy(refs, m->refs, m->nrefs * sizeof(*refs));
        if (m->refs != &m->one)
            al_mem_free(log, m->refs);
        m->refs = refs;
        m->cap = cap;
    }
    m->pending++;
    return m;
}

static void
msg_drop(bp_append_log_t *log, struct al_msg *m)
{
    for (uint32_t k = 0; k < m->nrefs; k++)
        m->refs[k].r->e[m->refs[k].i].m = NULL;
    struct al_msg **s = msg_slot(log, m->id, m->id_len);
    *s = m->hnext;
    log->nmsgs--;
    if (m->refs != &m->one)
        al_mem_free(log, m->refs);
    al_mem_free(log, m);
}

/* Drops a message nothing refers to and no record being built holds. */
static void
msg_release(bp_append_log_t *log, struct al_msg *m)
{
    if (m && m->nrefs == 0 && m->pending == 0)
        msg_drop(log, m);
}

/* ---- streams and records ---- */

static struct al_stream *
stream_find(bp_append_log_t *log, const char *name, size_t len)
{
    for (struct al_stream *s = log->streams; s; s = s->next)
        if (s->name_len == len && memcmp(s->name, name, len) == 0)
            return s;
    return NULL;
}

/* The stream of this name, created (not yet holding records) when new; NULL on the memory cap. */
struct al_stream *
al_stream_get(bp_append_log_t *log, const char *name, size_t len, int recovered)
{
    struct al_stream *s = stream_find(log, name, len);
    if (s)
        return s;
    s = al_mem_alloc(log, sizeof(*s) + len + 1);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    memcpy(s->name, name, len);
    s->name[len] = '\0';
    s->name_len = len;
    s->final_n = -1;
    s->recovered = recovered;
    s->next = log->streams;
    log->streams = s;
    return s;
}

/* Frees the stream once it holds no record (the caller's pointer is then stale). */
void
al_stream_release(bp_append_log_t *log, struct al_stream *s)
{
    if (s->nrecs)
        return;
    struct al_stream **p = &log->streams;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    al_mem_free(log, s);
}

/* A record of n entries with a copy of its bytes; entries filled by al_rec_fill. */
struct al_rec *
al_rec_new(bp_append_log_t *log, const uint8_t *raw, size_t size, uint32_t n)
{
    struct al_rec *r = al_mem_alloc(log, sizeof(*r) + n * sizeof(struct al_ent));
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r) + n * sizeof(struct al_ent));
    r->raw = al_mem_alloc(log, size);
    if (!r->raw) {
        al_mem_free(log, r);
        return NULL;
    }
    if (raw)
        memcpy(r->raw, raw, size);
    r->size = size;
    r->n = n;
    return r;
}

/* Frees a record that was never linked, releasing the messages it had reserved. */
void
al_rec_discard(bp_append_log_t *log, struct al_rec *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->e[i].m) {
            r->e[i].m->pending--;
            msg_release(log, r->e[i].m);
        }
    }
    al_mem_free(log, r->raw);
    al_mem_free(log, r);
}

/* Sets entry i from m (its message reserved through msg_get). Returns 0, or -1 (memory). */
int
al_rec_fill(bp_append_log_t *log, struct al_rec *r, uint32_t i, const struct bp_append_log_msg *m,
         uint32_t pos)
{
    struct al_ent *e = &r->e[i];
    e->m = msg_get(log, m->id, m->id_len);
    if (!e->m)
        return -1;
    e->row_total = m->row_total;
    e->first_row = m->first_row;
    e->rows = m->rows;
    e->pos = pos;
    return 0;
}

/* Takes a linked record out of every list; with unref, its messages forget it (those left with
 * no reference are dropped). Counts it dead in the file. */
void
al_rec_unlink(bp_append_log_t *log, struct al_rec *r, int unref)
{
    if (unref) {
        for (uint32_t i = 0; i < r->n; i++) {
            struct al_msg *m = r->e[i].m;
            if (!m)
                continue;
            for (uint32_t k = 0; k < m->nrefs; k++) {
                if (m->refs[k].r == r && m->refs[k].i == i) {
                    m->refs[k] = m->refs[--m->nrefs];
                    break;
                }
            }
            msg_release(log, m);
        }
    }
    *(r->prev ? &r->prev->next : &log->head) = r->next;
    *(r->next ? &r->next->prev : &log->tail) = r->prev;
    *(r->sprev ? &r->sprev->snext : &r->stream->head) = r->snext;
    *(r->snext ? &r->snext->sprev : &r->stream->tail) = r->sprev;
    r->stream->nrecs--;
    al_stream_release(log, r->stream);
    if (r->recovered)
        log->recovering--;
    log->dead += r->size;
    al_mem_free(log, r->raw);
    al_mem_free(log, r);
}

/* Links a filled record after every other: the stream's records it overlaps are void (see the
 * top of the file), its messages refer to it. Cannot fail. */
void
al_rec_link(bp_append_log_t *log, struct al_stream *s, struct al_rec *r)
{
    s->nrecs++;   /* first, so that voiding its other records never frees the stream */
    for (struct al_rec *x = s->head, *next; x; x = next) {
        next = x->snext;
        if (x->offset < r->offset + (int64_t)r->rows && r->offset < x->offset + (int64_t)x->rows)
            al_rec_unlink(log, x, 1);
    }
    r->stream = s;
    r->prev = log->tail;
    *(log->tail ? &log->tail->next : &log->head) = r;
    log->tail = r;
    r->sprev = s->tail;
    *(s->tail ? &s->tail->snext : &s->head) = r;
    s->tail = r;
    for (uint32_t i = 0; i < r->n; i++) {
        struct al_msg *m = r->e[i].m;
        m->pending--;
        m->refs[m->nrefs++] = (struct al_ref){ r, i };
    }
    r->live = r->n;
    if (r->recovered)
        log->recovering++;
}

/* ---- appends and acks ---- */

/* Checks one write's arguments; returns the bytes its record takes, 0 when refused. */
static size_t
write_size(const char *stream, int64_t offset, const struct bp_append_log_msg *msgs, size_t n)
{
    size_t slen = stream ? strlen(stream) : 0, ids = 0;
    uint64_t rows = 0;
    if (slen == 0 || slen > BP_APPEND_LOG_MAX_STREAM || offset < 0 || n == 0 ||
        n > BP_APPEND_LOG_MAX_ROWS)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const struct bp_append_log_msg *m = &msgs[i];
        if (!m->id || m->id_len == 0 || m->id_len > BP_APPEND_LOG_MAX_ID || m->row_total == 0 ||
            m->row_total > BP_APPEND_LOG_MAX_ROWS || m->rows == 0 ||
            m->first_row >= m->row_total || m->rows > m->row_total - m->first_row)
            return 0;
        ids += m->id_len;
        rows += m->rows;
    }
    if (rows > BP_APPEND_LOG_MAX_ROWS || (uint64_t)offset > (uint64_t)INT64_MAX - rows)
        return 0;
    size_t size = al_append_size(slen, n, ids);
    return size <= BP_APPEND_LOG_MAX_RECORD ? size : 0;
}

static void
encode_append(uint8_t *buf, const char *stream, int64_t offset,
              const struct bp_append_log_msg *msgs, size_t n, uint32_t rows, uint64_t now)
{
    struct al_out o;
    size_t slen = strlen(stream);
    al_begin(&o, buf, AL_REC_APPEND);
    al_put_u64(&o, now);
    al_put_u16(&o, (uint16_t)slen);
    al_put_bytes(&o, stream, slen);
    al_put_u64(&o, (uint64_t)offset);
    al_put_u32(&o, rows);
    al_put_u32(&o, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        al_put_u16(&o, (uint16_t)msgs[i].id_len);
        al_put_bytes(&o, msgs[i].id, msgs[i].id_len);
        al_put_u32(&o, msgs[i].row_total);
        al_put_u32(&o, msgs[i].first_row);
        al_put_u32(&o, msgs[i].rows);
    }
    al_end(&o);
}

/* Records, on disk and synced, that the append about to be sent to `stream` at `offset` carries
 * msgs[0..n) in this order (their rows adding up to the append's). Call it before sending; send
 * only when it returns 0. The stream must be this process's own (not a recovered one). A new
 * record for offsets an earlier one had is taken to mean that earlier append failed for sure.
 * Returns 0, or -1 with err set and nothing recorded: bad arguments, the memory cap, a write or
 * sync error (disk full...) — the append must not be sent: retry later, or nack. Not from inside
 * a callback of the log (there are none); blocks for the sync. */
int
bp_append_log_write(bp_append_log_t *log, const char *stream, int64_t offset,
                    const struct bp_append_log_msg *msgs, size_t n, char *err, size_t errlen)
{
    struct al_stream *s = NULL;
    struct al_rec *r = NULL;
    size_t size = write_size(stream, offset, msgs, n);
    uint32_t pos = 0;
    if (size == 0) {
        al_set_err(err, errlen, "append log: %s%s", "bad append (stream, offset, ids or rows)", "");
        return -1;
    }
    if (log->fd < 0) {
        al_set_err(err, errlen, "%s%s: no file", log->path, "");
        return -1;
    }
    if (log->broken && bp_append_log_compact(log, err, errlen) != 0)
        return -1;
    s = al_stream_get(log, stream, strlen(stream), 0);
    if (s && s->recovered) {
        al_set_err(err, errlen, "append log: stream %s is a previous process's%s", stream, "");
        return -1;
    }
    r = s ? al_rec_new(log, NULL, size, (uint32_t)n) : NULL;
    if (!r)
        goto mem;
    for (size_t i = 0; i < n; i++) {
        if (al_rec_fill(log, r, (uint32_t)i, &msgs[i], pos) != 0)
            goto mem;
        pos += msgs[i].rows;
    }
    r->time = (uint64_t)time(NULL);
    r->offset = offset;
    r->rows = pos;
    encode_append(r->raw, stream, offset, msgs, n, pos, r->time);
    if (al_file_append(log, r->raw, size, err, errlen) != 0)
        goto fail;
    al_rec_link(log, s, r);
    return 0;
mem:
    al_set_err(err, errlen, "%s: %s", log->path, "append_log's memory cap reached");
fail:
    al_rec_discard(log, r);
    if (s)
        al_stream_release(log, s);
    return -1;
}

/* The message's ack is confirmed (Pub/Sub took it): the records whose messages are all acked die,
 * a recovered message is resolved, and the file is rewritten when dead records are half of it.
 * An id the log does not hold is a no-op. Returns 0, or -1 with err set when the rewrite failed
 * (not fatal: the file keeps its dead records and stays correct). */
int
bp_append_log_acked(bp_append_log_t *log, const char *id, size_t id_len, char *err,
                    size_t errlen)
{
    struct al_msg *m = msg_find(log, id, id_len);
    if (!m)
        return 0;
    while (m->nrefs) {
        struct al_ref ref = m->refs[--m->nrefs];
        ref.r->e[ref.i].m = NULL;
        /* live counts entries: it reaches 0 only at the record's last un-acked one, so no other
         * message refers to the record any more */
        if (--ref.r->live == 0)
            al_rec_unlink(log, ref.r, 0);
    }
    msg_drop(log, m);
    return al_maybe_compact(log, err, errlen);
}

/* Drops every record older than the TTL (ttl_seconds before now): their messages are past
 * Pub/Sub's retention. Recovered streams never finalized are dropped this way too. */
void
bp_append_log_expire(bp_append_log_t *log, time_t now)
{
    for (struct al_rec *r = log->head, *next; r; r = next) {
        next = r->next;
        if (al_expired(log, r->time, now))
            al_rec_unlink(log, r, 1);
    }
}

/* ---- recovery ---- */

/* The i-th recovered stream still to be finalized (FinalizeWriteStream, then
 * bp_append_log_finalized), or NULL past the last. The pointer is valid until the next call that
 * changes the log. */
const char *
bp_append_log_unfinalized(const bp_append_log_t *log, size_t i)
{
    for (const struct al_stream *s = log->streams; s; s = s->next)
        if (s->recovered && s->final_n < 0 && i-- == 0)
            return s->name;
    return NULL;
}

/* FinalizeWriteStream answered row_count for this recovered stream: its rows at offsets below
 * row_count are in the table (BigQuery writes an append whole or not at all). Recorded on disk
 * so that a second crash needs no second finalization. Returns 0 (also when the stream is not
 * in the log any more, or was already told the same count), or -1 with err set: a negative
 * count, a count other than the one already recorded, a stream of this process, a write error
 * (the answers stay PENDING: call again). A stream BigQuery no longer knows (NOT_FOUND) has no
 * count to give: pass 0, and its messages are appended again (duplicates possible, no loss). */
int
bp_append_log_finalized(bp_append_log_t *log, const char *stream, int64_t row_count, char *err,
                        size_t errlen)
{
    size_t slen = stream ? strlen(stream) : 0;
    struct al_stream *s = slen ? stream_find(log, stream, slen) : NULL;
    if (!s || slen > BP_APPEND_LOG_MAX_STREAM)
        return 0;
    if (row_count < 0 || !s->recovered || (s->final_n >= 0 && s->final_n != row_count)) {
        al_set_err(err, errlen, "append log: stream %s: %s", stream,
                !s->recovered ? "this process's own" : "a row count other than before");
        return -1;
    }
    if (s->final_n == row_count)
        return 0;
    uint8_t buf[AL_FRAME + 2 + 2 + BP_APPEND_LOG_MAX_STREAM + 8];
    struct al_out o;
    al_begin(&o, buf, AL_REC_FINAL);
    al_put_u16(&o, (uint16_t)slen);
    al_put_bytes(&o, stream, slen);
    al_put_u64(&o, (uint64_t)row_count);
    size_t len = al_end(&o);
    if (log->fd >= 0) {
        if (log->broken && bp_append_log_compact(log, err, errlen) != 0)
            return -1;
        if (al_file_append(log, buf, len, err, errlen) != 0)
            return -1;
        log->dead += len;   /* rewritten from the stream's state */
    }
    s->final_n = row_count;
    return 0;
}

/* Sets in log->bits the rows of m that recovered records place below their stream's row count.
 * Returns the message's row total (that of its last record: a redelivery mapped by changed
 * scripts may yield other rows), 0 on the memory cap; *pending when a stream is unfinalized. */
static uint32_t
stored_rows(bp_append_log_t *log, const struct al_msg *m, int *pending, int *any)
{
    const struct al_ent *last = NULL;
    const struct al_rec *lastr = NULL;
    for (uint32_t k = 0; k < m->nrefs; k++) {
        const struct al_rec *r = m->refs[k].r;
        if (r->recovered && (!lastr || lastr->time <= r->time)) {
            lastr = r;
            last = &r->e[m->refs[k].i];
        }
    }
    *any = lastr != NULL;
    if (!last)
        return 0;
    uint32_t total = last->row_total;
    size_t need = (total + 7) / 8;
    if (need > log->bits_cap) {
        al_mem_free(log, log->bits);
        log->bits_cap = 0;
        log->bits = al_mem_alloc(log, need);
        if (!log->bits)
            return 0;
        log->bits_cap = need;
    }
    memset(log->bits, 0, need);
    for (uint32_t k = 0; k < m->nrefs; k++) {
        const struct al_rec *r = m->refs[k].r;
        const struct al_ent *e = &r->e[m->refs[k].i];
        if (!r->recovered || e->row_total != total)
            continue;
        if (r->stream->final_n < 0) {
            *pending = 1;
            continue;
        }
        for (uint32_t j = 0; j < e->rows; j++) {
            if (r->offset + e->pos + j < r->stream->final_n) {
                uint32_t row = e->first_row + j;
                log->bits[row / 8] |= (uint8_t)(1u << (row % 8));
            }
        }
    }
    return total;
}

/* What the recovered records say of a (redelivered) message: see enum bp_append_log_state. Asking
 * again gives the same answer until the message is acked (bp_append_log_acked), so a message
 * delivered twice is answered twice alike. The answer's bitmap lives in the log until its next
 * call. Never fails: on the memory cap the answer is PENDING (wait and ask again). */
void
bp_append_log_lookup(bp_append_log_t *log, const char *id, size_t id_len,
                     struct bp_append_log_answer *out)
{
    const struct al_msg *m = msg_find(log, id, id_len);
    int pending = 0, any = 0;
    memset(out, 0, sizeof(*out));
    if (!m)
        return;
    uint32_t total = stored_rows(log, m, &pending, &any);
    if (!any)
        return;
    out->state = BP_APPEND_LOG_PENDING;
    if (total == 0)
        return;
    uint32_t set = 0;
    for (uint32_t i = 0; i < total; i++)
        set += log->bits[i / 8] >> (i % 8) & 1;
    out->row_total = total;
    out->stored = log->bits;
    if (set == total)
        out->state = BP_APPEND_LOG_STORED;
    else if (!pending)
        out->state = set ? BP_APPEND_LOG_PARTIAL : BP_APPEND_LOG_NOT_STORED;
}

/* How many recovered records are still alive: 0 once every recovered message is acked (or its
 * record al_expired or voided), when the previous process's state is gone. */
size_t
bp_append_log_recovering(const bp_append_log_t *log)
{
    return log->recovering;
}

/* Bytes of memory the log holds (counted against max_mem). */
size_t
bp_append_log_mem(const bp_append_log_t *log)
{
    return log->mem;
}

/* Bytes of whole records in the file. */
uint64_t
bp_append_log_size(const bp_append_log_t *log)
{
    return log->size;
}

/* The file's path (for messages). */
const char *
bp_append_log_path(const bp_append_log_t *log)
{
    return log->path;
}
