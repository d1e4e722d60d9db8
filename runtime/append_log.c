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

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_MAX_MEM (8u << 20)
#define DEFAULT_TTL (7 * 86400L)   /* Pub/Sub keeps an unacked message at most 7 days */
#define DEFAULT_COMPACT_MIN (64u << 10)
#define HDR 16                     /* the size kept before each counted allocation */

struct al_stream {
    struct al_stream *next;
    struct al_rec *head, *tail;    /* its records, in log order */
    size_t nrecs;
    int64_t final_n;               /* FinalizeWriteStream's row count; -1 before */
    int recovered;                 /* written by a previous process */
    size_t name_len;
    char name[];
};

struct al_ent {
    struct al_msg *m;              /* NULL once the message is acked */
    uint32_t row_total, first_row, rows;
    uint32_t pos;                  /* rows of the append before this entry's */
};

struct al_rec {
    struct al_rec *prev, *next;    /* every record, in log order */
    struct al_rec *sprev, *snext;  /* its stream's */
    struct al_stream *stream;
    uint8_t *raw;                  /* the record's bytes as written (rewritten as they are) */
    size_t size;
    uint64_t time;
    int64_t offset;
    uint32_t rows, n;
    uint32_t live;                 /* entries whose message is not acked yet */
    int recovered;
    struct al_ent e[];
};

struct al_ref {
    struct al_rec *r;
    uint32_t i;
};

struct al_msg {
    struct al_msg *hnext;
    struct al_ref *refs;
    uint32_t nrefs, cap;
    uint32_t pending;              /* entries of a record being built (not linked yet) */
    size_t id_len;
    char id[];
};

struct bp_append_log {
    char path[4200];
    char dir[4096];
    char *pipeline;
    int worker;
    int fd;
    int broken;                    /* a failed write left the file in doubt: rewrite first */
    uint64_t size;                 /* bytes of whole records in the file */
    uint64_t dead;                 /* of them, records no longer needed */
    size_t mem, max_mem, compact_min;
    long ttl;
    struct al_rec *head, *tail;
    struct al_stream *streams;
    struct al_msg **buckets;
    size_t nbuckets, nmsgs;
    size_t recovering;             /* recovered records still alive */
    uint8_t *bits;                 /* the answer's bitmap */
    size_t bits_cap;
};

/* ---- counted memory ---- */

static void *
mem_alloc(bp_append_log_t *log, size_t n)
{
    if (n > log->max_mem || log->mem + n + HDR > log->max_mem)
        return NULL;
    size_t *p = malloc(n + HDR);
    if (!p)
        return NULL;
    p[0] = n + HDR;
    log->mem += n + HDR;
    return (char *)p + HDR;
}

static void
mem_free(bp_append_log_t *log, void *q)
{
    if (!q)
        return;
    size_t *p = (size_t *)(void *)((char *)q - HDR);
    log->mem -= p[0];
    free(p);
}

/* ---- messages ---- */

static uint64_t
fnv64(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static struct al_msg **
msg_slot(bp_append_log_t *log, const char *id, size_t len)
{
    if (!log->nbuckets)
        return NULL;
    struct al_msg **s = &log->buckets[fnv64(id, len) & (log->nbuckets - 1)];
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
    struct al_msg **b = mem_alloc(log, nb * sizeof(*b));
    if (!b)
        return;
    memset(b, 0, nb * sizeof(*b));
    for (size_t i = 0; i < log->nbuckets; i++) {
        for (struct al_msg *m = log->buckets[i], *next; m; m = next) {
            next = m->hnext;
            size_t s = fnv64(m->id, m->id_len) & (nb - 1);
            m->hnext = b[s];
            b[s] = m;
        }
    }
    mem_free(log, log->buckets);
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
        m = mem_alloc(log, sizeof(*m) + len);
        if (!m)
            return NULL;
        memset(m, 0, sizeof(*m));
        memcpy(m->id, id, len);
        m->id_len = len;
        *s = m;
        log->nmsgs++;
    }
    if (m->nrefs + m->pending + 1 > m->cap) {
        uint32_t cap = m->cap ? m->cap * 2 : 2;
        struct al_ref *refs = mem_alloc(log, cap * sizeof(*refs));
        if (!refs) {
            msg_release(log, m);
            return NULL;
        }
        if (m->nrefs)
            memcpy(refs, m->refs, m->nrefs * sizeof(*refs));
        mem_free(log, m->refs);
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
    mem_free(log, m->refs);
    mem_free(log, m);
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

static struct al_stream *
stream_get(bp_append_log_t *log, const char *name, size_t len, int recovered)
{
    struct al_stream *s = stream_find(log, name, len);
    if (s)
        return s;
    s = mem_alloc(log, sizeof(*s) + len + 1);
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

static void
stream_release(bp_append_log_t *log, struct al_stream *s)
{
    if (s->nrecs)
        return;
    struct al_stream **p = &log->streams;
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    mem_free(log, s);
}

/* A record of n entries with a copy of its bytes; entries filled by rec_fill. */
static struct al_rec *
rec_new(bp_append_log_t *log, const uint8_t *raw, size_t size, uint32_t n)
{
    struct al_rec *r = mem_alloc(log, sizeof(*r) + n * sizeof(struct al_ent));
    if (!r)
        return NULL;
    memset(r, 0, sizeof(*r) + n * sizeof(struct al_ent));
    r->raw = mem_alloc(log, size);
    if (!r->raw) {
        mem_free(log, r);
        return NULL;
    }
    if (raw)
        memcpy(r->raw, raw, size);
    r->size = size;
    r->n = n;
    return r;
}

/* Frees a record that was never linked, releasing the messages it had reserved. */
static void
rec_discard(bp_append_log_t *log, struct al_rec *r)
{
    if (!r)
        return;
    for (uint32_t i = 0; i < r->n; i++) {
        if (r->e[i].m) {
            r->e[i].m->pending--;
            msg_release(log, r->e[i].m);
        }
    }
    mem_free(log, r->raw);
    mem_free(log, r);
}

/* Sets entry i from m (its message reserved through msg_get). Returns 0, or -1 (memory). */
static int
rec_fill(bp_append_log_t *log, struct al_rec *r, uint32_t i, const struct bp_append_log_msg *m,
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
static void
rec_unlink(bp_append_log_t *log, struct al_rec *r, int unref)
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
    stream_release(log, r->stream);
    if (r->recovered)
        log->recovering--;
    log->dead += r->size;
    mem_free(log, r->raw);
    mem_free(log, r);
}

/* Links a filled record after every other: the stream's records it overlaps are void (see the
 * top of the file), its messages refer to it. Cannot fail. */
static void
rec_link(bp_append_log_t *log, struct al_stream *s, struct al_rec *r)
{
    s->nrecs++;   /* first, so that voiding its other records never frees the stream */
    for (struct al_rec *x = s->head, *next; x; x = next) {
        next = x->snext;
        if (x->offset < r->offset + (int64_t)r->rows && r->offset < x->offset + (int64_t)x->rows)
            rec_unlink(log, x, 1);
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

/* ---- the file ---- */

static void
set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

/* Appends len bytes and syncs them. On failure the file is cut back to its last whole record
 * (so a later record never follows a torn one); when even that or the sync fails, the file is in
 * doubt and the next write rewrites it first. Returns 0, or -1 with err set. */
static int
file_append(bp_append_log_t *log, const uint8_t *p, size_t len, char *err, size_t errlen)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(log->fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            set_err(err, errlen, "%s: write: %s", log->path, strerror(e));
            if (ftruncate(log->fd, (off_t)log->size) != 0)
                log->broken = 1;
            return -1;
        }
        done += (size_t)w;
    }
    if (fdatasync(log->fd) != 0) {
        /* after a failed sync the kernel may have dropped the pages: nothing is known */
        set_err(err, errlen, "%s: fdatasync: %s", log->path, strerror(errno));
        log->broken = 1;
        return -1;
    }
    log->size += len;
    return 0;
}

static int
mkdir_p(const char *path)
{
    char d[4096];
    snprintf(d, sizeof(d), "%s", path);
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(d, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(d, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* Encodes the header into a counted buffer; NULL on the memory cap. */
static uint8_t *
header_encode(bp_append_log_t *log, size_t *len)
{
    size_t plen = strlen(log->pipeline);
    uint8_t *buf = mem_alloc(log, al_header_size(plen));
    if (!buf)
        return NULL;
    struct al_out o;
    al_begin(&o, buf, AL_REC_HEADER);
    al_put_bytes(&o, AL_MAGIC, AL_MAGIC_LEN);
    al_put_u16(&o, (uint16_t)plen);
    al_put_bytes(&o, log->pipeline, plen);
    al_put_u32(&o, (uint32_t)log->worker);
    al_put_u64(&o, (uint64_t)time(NULL));
    *len = al_end(&o);
    return buf;
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes the finalized row counts of streams that still have records, then every record. */
static int
compact_body(bp_append_log_t *log, int fd, uint64_t *total)
{
    for (struct al_stream *s = log->streams; s; s = s->next) {
        if (s->final_n < 0)
            continue;
        uint8_t buf[AL_FRAME + 2 + 2 + BP_APPEND_LOG_MAX_STREAM + 8];
        struct al_out o;
        al_begin(&o, buf, AL_REC_FINAL);
        al_put_u16(&o, (uint16_t)s->name_len);
        al_put_bytes(&o, s->name, s->name_len);
        al_put_u64(&o, (uint64_t)s->final_n);
        size_t len = al_end(&o);
        if (write_all(fd, buf, len) != 0)
            return -1;
        *total += len;
    }
    for (struct al_rec *r = log->head; r; r = r->next) {
        if (write_all(fd, r->raw, r->size) != 0)
            return -1;
        *total += r->size;
    }
    return 0;
}

/* Rewrites the file with only the records still needed: a temporary file beside it, synced,
 * renamed over it, and the folder synced, so a crash at any point leaves the old file or the new
 * one whole. Clears the doubt a failed write left. Returns 0, or -1 with err set (the old file
 * stays in use unless the rename happened). */
int
bp_append_log_compact(bp_append_log_t *log, char *err, size_t errlen)
{
    char tmp[4300];
    size_t hlen = 0;
    uint64_t total = 0;
    uint8_t *hdr = NULL;
    int fd = -1;
    if (log->fd < 0) {
        set_err(err, errlen, "%s%s: no file", log->path, "");
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", log->path);
    hdr = header_encode(log, &hlen);
    if (!hdr) {
        set_err(err, errlen, "%s: rewrite: %s", log->path, "memory cap reached");
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, hdr, hlen) != 0 || compact_body(log, fd, &total) != 0 ||
        fdatasync(fd) != 0 || rename(tmp, log->path) != 0) {
        set_err(err, errlen, "%s: rewrite: %s", tmp, strerror(errno));
        goto fail;
    }
    mem_free(log, hdr);
    close(log->fd);
    log->fd = fd;
    log->size = hlen + total;
    log->dead = 0;
    log->broken = 0;
    int dfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        /* the new file is whole and in place; the old one, should it come back, is too */
        set_err(err, errlen, "%s: fsync: %s", log->dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
fail:
    mem_free(log, hdr);
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    return -1;
}

/* Rewrites when dead records are past compact_min and half the file. */
static int
maybe_compact(bp_append_log_t *log, char *err, size_t errlen)
{
    if (log->fd < 0 || log->dead < log->compact_min || log->dead * 2 < log->size)
        return 0;
    return bp_append_log_compact(log, err, errlen);
}

/* ---- reading the file ---- */

/* Whether a record written at t (seconds, from the file: any value) is past the TTL at now. */
static int
expired(const bp_append_log_t *log, uint64_t t, time_t now)
{
    return now > log->ttl && t < (uint64_t)now - (uint64_t)log->ttl;
}

/* Takes one append record read from the file as a recovered one (skipped when older than the
 * TTL). Returns 0, or -1 on the memory cap. */
static int
load_append(bp_append_log_t *log, const uint8_t *p, const struct al_record *rec, time_t now)
{
    if (expired(log, rec->time, now)) {
        log->dead += rec->size;
        return 0;
    }
    struct al_stream *s = stream_get(log, rec->stream, rec->stream_len, 1);
    struct al_rec *r = s ? rec_new(log, p, rec->size, rec->n) : NULL;
    if (!r)
        return -1;
    const uint8_t *cur = rec->entries;
    uint32_t pos = 0;
    for (uint32_t i = 0; i < rec->n; i++) {
        struct bp_append_log_msg m;
        al_entry_next(&cur, &m);
        if (rec_fill(log, r, i, &m, pos) != 0) {
            rec_discard(log, r);
            if (!s->nrecs)
                stream_release(log, s);
            return -1;
        }
        pos += m.rows;
    }
    r->time = rec->time;
    r->offset = rec->offset;
    r->rows = rec->rows;
    r->recovered = 1;
    rec_link(log, s, r);
    return 0;
}

/* The header: ours (magic, version), this pipeline's and this worker's. Returns 0, or -1 with
 * err set (refused: the file is left as it is). */
static int
load_header(bp_append_log_t *log, const struct al_record *r, char *err, size_t errlen)
{
    char what[160];
    if (r->version != BP_APPEND_LOG_VERSION) {
        snprintf(what, sizeof(what), "format version %d (this build reads %d)", r->version,
                 BP_APPEND_LOG_VERSION);
        goto refuse;
    }
    if (r->type != AL_REC_HEADER) {
        snprintf(what, sizeof(what), "no header");
        goto refuse;
    }
    if (r->pipeline_len != strlen(log->pipeline) ||
        memcmp(r->pipeline, log->pipeline, r->pipeline_len) != 0) {
        snprintf(what, sizeof(what), "another pipeline's (%.*s)",
                 (int)(r->pipeline_len > 100 ? 100 : r->pipeline_len), r->pipeline);
        goto refuse;
    }
    if ((int)r->worker != log->worker) {
        snprintf(what, sizeof(what), "worker %u's", r->worker);
        goto refuse;
    }
    return 0;
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: refusing it (move it away to start without the "
                 "exactly-once record of the appends it holds)", log->path, what);
    return -1;
}

/* A bad or incomplete record at pos: the torn end of the last write when nothing valid follows
 * (the file is then cut there: that write's append was never sent, its sync not having
 * returned), else corruption in the middle, refused. Returns 0 (torn) or -1 with err set. */
static int
load_bad(bp_append_log_t *log, const uint8_t *p, size_t len, size_t pos, char *err,
         size_t errlen)
{
    if (!al_valid_after(p, len, pos + 1))
        return 0;
    if (err && errlen)
        snprintf(err, errlen, "%s: corrupt record at byte %zu with valid records after it: "
                 "refusing it (move it away to start without the exactly-once record of the "
                 "appends it holds)", log->path, pos);
    return -1;
}

/* Reads a file's bytes into the recovered state; *good is the length of its whole records (0:
 * the header is to be written). Returns 0, or -1 with err set (refused). */
static int
load(bp_append_log_t *log, const uint8_t *p, size_t len, size_t *good, char *err,
     size_t errlen)
{
    struct al_record r;
    time_t now = time(NULL);
    *good = 0;
    if (len == 0)
        return 0;
    /* a file not starting with our magic is not ours, however short: never cut it */
    size_t m = len < AL_FRAME + 2 + AL_MAGIC_LEN ? 0 : AL_MAGIC_LEN;
    if (len > AL_FRAME + 2 && memcmp(p + AL_FRAME + 2, AL_MAGIC, m ? m : len - AL_FRAME - 2)) {
        set_err(err, errlen, "%s: not an append log%s: refusing it", log->path, "");
        return -1;
    }
    if (al_parse(p, len, &r) != AL_OK)
        return load_bad(log, p, len, 0, err, errlen);
    if (load_header(log, &r, err, errlen) != 0)
        return -1;
    size_t pos = r.size;
    while (pos < len) {
        int rc = al_parse(p + pos, len - pos, &r);
        if (rc == AL_OK && r.version != BP_APPEND_LOG_VERSION) {
            snprintf(err, errlen, "%s: a record of format version %d at byte %zu: refusing it",
                     log->path, r.version, pos);
            return -1;
        }
        if (rc != AL_OK || r.type == AL_REC_HEADER) {
            if (load_bad(log, p, len, pos, err, errlen) != 0)
                return -1;
            break;
        }
        if (r.type == AL_REC_FINAL) {
            struct al_stream *s = stream_get(log, r.stream, r.stream_len, 1);
            if (!s)
                goto mem;
            s->final_n = r.row_count;
            log->dead += r.size;   /* rewritten from the stream's state */
        } else if (load_append(log, p + pos, &r, now) != 0) {
            goto mem;
        }
        pos += r.size;
    }
    *good = pos;
    /* FINAL records of streams whose records are all gone */
    for (struct al_stream *s = log->streams, *next; s; s = next) {
        next = s->next;
        stream_release(log, s);
    }
    return 0;
mem:
    snprintf(err, errlen, "%s: more than append_log's memory cap (%zu bytes) to hold",
             log->path, log->max_mem);
    return -1;
}

static bp_append_log_t *
log_new(const struct bp_append_log_params *p)
{
    bp_append_log_t *log = bp_xcalloc(1, sizeof(*log));
    log->fd = -1;
    log->pipeline = bp_xstrdup(p->pipeline ? p->pipeline : "");
    log->worker = p->worker;
    log->max_mem = p->max_mem ? p->max_mem : DEFAULT_MAX_MEM;
    log->ttl = p->ttl_seconds > 0 ? p->ttl_seconds : DEFAULT_TTL;
    log->compact_min = p->compact_min ? p->compact_min : DEFAULT_COMPACT_MIN;
    snprintf(log->dir, sizeof(log->dir), "%s", p->dir ? p->dir : ".");
    snprintf(log->path, sizeof(log->path), "%s/appends-%d.log", log->dir, p->worker);
    return log;
}

static int
params_ok(const struct bp_append_log_params *p, char *err, size_t errlen)
{
    if (!p->pipeline || strlen(p->pipeline) > AL_MAX_PIPELINE || p->worker < 0 || !p->dir ||
        strlen(p->dir) > 4000) {
        set_err(err, errlen, "append log: %s%s", "bad parameters (pipeline, worker, dir)", "");
        return -1;
    }
    return 0;
}

/* A log read from bytes instead of a file (the fuzz target, tests): the same checks as open,
 * and every write refused (no file). Returns the log, or NULL with err set. */
bp_append_log_t *
bp_append_log_open_buf(const struct bp_append_log_params *p, const void *data, size_t len,
                       char *err, size_t errlen)
{
    size_t good;
    if (params_ok(p, err, errlen) != 0)
        return NULL;
    bp_append_log_t *log = log_new(p);
    snprintf(log->path, sizeof(log->path), "(buffer)");
    if (load(log, data, len, &good, err, errlen) != 0) {
        bp_append_log_free(log);
        return NULL;
    }
    log->size = good;
    return log;
}

/* Reads the whole file (at most max_mem bytes) into a counted buffer. */
static uint8_t *
read_file(bp_append_log_t *log, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(log->fd, &st) != 0) {
        set_err(err, errlen, "%s: %s", log->path, strerror(errno));
        return NULL;
    }
    *len = (size_t)st.st_size;
    uint8_t *buf = (uint64_t)st.st_size < log->max_mem ? mem_alloc(log, *len) : NULL;
    if (!buf) {
        set_err(err, errlen, "%s: %s", log->path, "larger than append_log's memory cap");
        return NULL;
    }
    for (size_t done = 0; done < *len;) {
        ssize_t r = pread(log->fd, buf + done, *len - done, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            set_err(err, errlen, "%s: read: %s", log->path, r < 0 ? strerror(errno) : "short");
            mem_free(log, buf);
            return NULL;
        }
        done += (size_t)r;
    }
    return buf;
}

/* Opens (creating dir 0700 and the file 0600) <dir>/appends-<worker>.log and reads what a
 * previous process left there: its records become the recovered state, a torn last record is
 * cut off. Refused with a message naming the file: another pipeline's or worker's file, another
 * format version, a corrupt record with valid ones after it, more than max_mem to hold. Start-up
 * only (it syncs). Returns the log, or NULL with err set. */
bp_append_log_t *
bp_append_log_open(const struct bp_append_log_params *p, char *err, size_t errlen)
{
    size_t len = 0, good = 0, hlen;
    uint8_t *buf = NULL, *hdr = NULL;
    if (params_ok(p, err, errlen) != 0)
        return NULL;
    bp_append_log_t *log = log_new(p);
    if (mkdir_p(log->dir) != 0) {
        set_err(err, errlen, "state_dir %s: %s", log->dir, strerror(errno));
        goto fail;
    }
    log->fd = open(log->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log->fd < 0 || fchmod(log->fd, 0600) != 0) {
        set_err(err, errlen, "%s: %s", log->path, strerror(errno));
        goto fail;
    }
    buf = read_file(log, &len, err, errlen);
    if (!buf || load(log, buf, len, &good, err, errlen) != 0)
        goto fail;
    mem_free(log, buf);
    buf = NULL;
    if (good < len && (ftruncate(log->fd, (off_t)good) != 0 || fdatasync(log->fd) != 0)) {
        set_err(err, errlen, "%s: cutting a torn record: %s", log->path, strerror(errno));
        goto fail;
    }
    log->size = good;
    if (good == 0) {
        hdr = header_encode(log, &hlen);
        if (!hdr) {
            set_err(err, errlen, "%s: %s", log->path, "memory cap reached");
            goto fail;
        }
        if (file_append(log, hdr, hlen, err, errlen) != 0)
            goto fail;
        mem_free(log, hdr);
    }
    return log;
fail:
    if (log) {
        mem_free(log, buf);
        mem_free(log, hdr);
    }
    bp_append_log_free(log);
    return NULL;
}

/* Frees the log and closes its file (nothing is written: the file is always up to date).
 * NULL-safe. */
void
bp_append_log_free(bp_append_log_t *log)
{
    if (!log)
        return;
    while (log->head)
        rec_unlink(log, log->head, 1);
    while (log->streams) {
        struct al_stream *s = log->streams;
        log->streams = s->next;
        mem_free(log, s);
    }
    mem_free(log, log->buckets);
    mem_free(log, log->bits);
    if (log->fd >= 0)
        close(log->fd);
    free(log->pipeline);
    free(log);
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
encode_append(uint8_t *buf, const char *stream, int64_t offset, const struct bp_append_log_msg *msgs,
              size_t n, uint32_t rows, uint64_t now)
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
        set_err(err, errlen, "append log: %s%s", "bad append (stream, offset, ids or rows)", "");
        return -1;
    }
    if (log->fd < 0) {
        set_err(err, errlen, "%s%s: no file", log->path, "");
        return -1;
    }
    if (log->broken && bp_append_log_compact(log, err, errlen) != 0)
        return -1;
    s = stream_get(log, stream, strlen(stream), 0);
    if (s && s->recovered) {
        set_err(err, errlen, "append log: stream %s is a previous process's%s", stream, "");
        return -1;
    }
    r = s ? rec_new(log, NULL, size, (uint32_t)n) : NULL;
    if (!r)
        goto mem;
    for (size_t i = 0; i < n; i++) {
        if (rec_fill(log, r, (uint32_t)i, &msgs[i], pos) != 0)
            goto mem;
        pos += msgs[i].rows;
    }
    r->time = (uint64_t)time(NULL);
    r->offset = offset;
    r->rows = pos;
    encode_append(r->raw, stream, offset, msgs, n, pos, r->time);
    if (file_append(log, r->raw, size, err, errlen) != 0)
        goto fail;
    rec_link(log, s, r);
    return 0;
mem:
    set_err(err, errlen, "%s: %s", log->path, "append_log's memory cap reached");
fail:
    rec_discard(log, r);
    if (s)
        stream_release(log, s);
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
            rec_unlink(log, ref.r, 0);
    }
    msg_drop(log, m);
    return maybe_compact(log, err, errlen);
}

/* Drops every record older than the TTL (ttl_seconds before now): their messages are past
 * Pub/Sub's retention. Recovered streams never finalized are dropped this way too. */
void
bp_append_log_expire(bp_append_log_t *log, time_t now)
{
    for (struct al_rec *r = log->head, *next; r; r = next) {
        next = r->next;
        if (expired(log, r->time, now))
            rec_unlink(log, r, 1);
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
 * (the answers stay PENDING: call again). */
int
bp_append_log_finalized(bp_append_log_t *log, const char *stream, int64_t row_count, char *err,
                        size_t errlen)
{
    size_t slen = stream ? strlen(stream) : 0;
    struct al_stream *s = slen ? stream_find(log, stream, slen) : NULL;
    if (!s || slen > BP_APPEND_LOG_MAX_STREAM)
        return 0;
    if (row_count < 0 || !s->recovered || (s->final_n >= 0 && s->final_n != row_count)) {
        set_err(err, errlen, "append log: stream %s: %s", stream,
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
        if (file_append(log, buf, len, err, errlen) != 0)
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
        mem_free(log, log->bits);
        log->bits_cap = 0;
        log->bits = mem_alloc(log, need);
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
 * record expired or voided), when the previous process's state is gone. */
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
