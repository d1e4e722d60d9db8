/* store_write_eo.c - bigquery.exactly_once for the Storage Write API store (store_write.c):
 * each table's rows go to a COMMITTED stream this process creates (CreateWriteStream), every
 * append with its offset and recorded in the append log (append_log.h) before it is sent.
 *
 * The log's ids are "<message id> 0x1f <table>": each table's rows of a message are answered on
 * their own, and a batch's rows are read back to their message by the entry's insertId (the
 * message id dispatch writes first). At start the previous process's streams are finalized
 * (FinalizeWriteStream: their row counts) before any batch goes; the batch's rows the log then
 * calls stored are left out of the append and count as written. A message leaves the log when
 * the source reports its ack (bp_store_write_acked), or once written when nothing redelivers. */
#include "store_write_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "endpoints.h"
#include "log.h"
#include "proto_msg.h"
#include "timefmt.h"

#define CREATE_PATH "/google.cloud.bigquery.storage.v1.BigQueryWrite/CreateWriteStream"
#define FINALIZE_PATH "/google.cloud.bigquery.storage.v1.BigQueryWrite/FinalizeWriteStream"
/* the previous processes' records are kept this long for their redeliveries */
#define EO_TTL_SECONDS 86400

/* See store_write_int.h. */
int
bp_sw_eo_open(struct sw_store *s, const struct bp_store_write_opts *o, char *err, size_t errlen)
{
    struct bp_append_log_params lp = { 0 };
    lp.dir = o->state_dir;
    lp.pipeline = o->pipeline;
    lp.worker = o->worker;
    lp.ttl_seconds = EO_TTL_SECONDS;
    s->trim_on_write = o->trim_on_write;
    s->log = bp_append_log_open(&lp, err, errlen);
    if (!s->log)
        return -1;
    bp_append_log_expire(s->log, time(NULL));
    if (bp_append_log_unfinalized(s->log, 0))
        bp_log(BP_LOG_INFO, "bigquery", "%s holds a previous process's appends: its streams "
               "are finalized before any batch is sent", bp_append_log_path(s->log));
    bp_sw_arm_timer(s, 0);   /* bp_sw_eo_recover from the loop */
    return 0;
}

/* exactly_once: appends of a table waiting encoded behind the one in flight. Its other batches
 * wait as they came (the batcher's entries, which it holds until done anyway) and are encoded
 * as the queue empties: one append in flight per table makes batches wait whenever the pull is
 * faster than the appends, and encoded (the protobuf rows, the log ids) each would hold about
 * as much again as its entries, for as long as the backlog lasts. One waiting encoded keeps the
 * next append ready the moment the reply to the one in flight comes. */
#define EO_QUEUED 1

static void eo_run_deferred(struct sw_store *s);

/* See store_write_int.h. */
void
bp_sw_eo_defer(struct sw_store *s, const char *table, const char *entries, size_t len,
               size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done,
               void *arg)
{
    /* exactly_once: which rows a crashed process stored is known once its streams are
     * finalized; the batch waits for that, then for its table's queue (bp_sw_eo_release) */
    struct deferred *d = bp_xcalloc(1, sizeof(*d));
    d->table = bp_xstrdup(table);
    d->entries = entries;
    d->len = len;
    d->nrows = nrows;
    if (enc) {
        d->enc = *enc;
        d->has_enc = 1;
    }
    d->done = done;
    d->arg = arg;
    if (s->defer_tail)
        s->defer_tail->next = d;
    else
        s->defer = d;
    s->defer_tail = d;
    s->pending++;
}

/* Whether t holds EO_QUEUED requests waiting to be sent. */
static int
eo_queue_full(const struct sw_table *t)
{
    size_t n = 0;
    for (const struct req *r = t->queue; r && n < EO_QUEUED; r = r->next)
        n++;
    return n >= EO_QUEUED;
}

/* Takes the oldest held batch of `table` out of the list, or NULL. */
static struct deferred *
eo_take(struct sw_store *s, const char *table)
{
    struct deferred **p = &s->defer, *prev = NULL;
    while (*p && strcmp((*p)->table, table) != 0) {
        prev = *p;
        p = &(*p)->next;
    }
    struct deferred *d = *p;
    if (!d)
        return NULL;
    *p = d->next;
    if (s->defer_tail == d)
        s->defer_tail = prev;
    s->pending--;
    return d;
}

static struct sw_table *
eo_table(struct sw_store *s, const char *name)
{
    for (struct sw_table *t = s->tables; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

/* exactly_once: held batches of a table that go as one append, up to this many bytes of
 * entries. One append in flight per table means one round trip per append: batches that came
 * during one go together in the next, so the table keeps up with the pull (as the default
 * stream's appends in flight do) instead of holding the backlog. The group's entries are copied
 * for the encoding only; its protobuf is under a request's 10 MB (larger ones are split). */
#define EO_GROUP_BYTES (2u << 20)

/* A group's batches: where each one's rows start among the group's, and its own done. */
struct eo_group {
    size_t n;
    struct eo_member {
        size_t first, nrows;
        bp_store_done_fn done;
        void *arg;
    } m[];
};

/* The group's done: each batch's own, with its rows' errors renumbered from its first row. */
static void
eo_group_done(void *arg, int status, const char *msg, const struct bp_row_error *errs,
              size_t nerrs)
{
    struct eo_group *g = arg;
    struct bp_row_error *mine = nerrs ? bp_xcalloc(nerrs, sizeof(*mine)) : NULL;
    for (size_t i = 0; i < g->n; i++) {
        const struct eo_member *b = &g->m[i];
        size_t k = 0;
        for (size_t e = 0; e < nerrs; e++) {
            if (errs[e].index >= b->first && errs[e].index - b->first < b->nrows) {
                mine[k].index = errs[e].index - b->first;
                mine[k].reason = errs[e].reason;
                k++;
            }
        }
        b->done(b->arg, status, msg, status == 0 ? mine : NULL, status == 0 ? k : 0);
    }
    free(mine);
    free(g);
}

/* Takes d and the held batches of its table after it (up to EO_GROUP_BYTES of entries in all)
 * out of the list and writes them as one batch (bp_sw_put; d alone goes as it is). */
static void
eo_put_group(struct sw_store *s, struct deferred *d)
{
    size_t n = 1, bytes = d->len + 1;
    for (struct deferred *x = s->defer; x; x = x->next) {
        if (strcmp(x->table, d->table) != 0)
            continue;
        if (bytes + x->len + 1 > EO_GROUP_BYTES)
            break;
        bytes += x->len + 1;
        n++;
    }
    if (n == 1) {
        (void)bp_sw_put(s, d->table, d->entries, d->len, d->nrows, d->has_enc ? &d->enc : NULL,
                        d->done, d->arg);
        free(d->table);
        free(d);
        return;
    }
    struct eo_group *g = bp_xcalloc(1, sizeof(*g) + n * sizeof(g->m[0]));
    char *all = bp_xmalloc(bytes);
    size_t len = 0, rows = 0;
    /* the members' protobuf rows back to back, those of the first member's schema (a member
     * of another, or without, has its rows read from their entries) */
    bp_buf_t edata;
    bp_buf_init(&edata, 4 * EO_GROUP_BYTES);   /* protobuf rows are about half their JSON */
    uint32_t *elen = NULL;
    size_t ecap = 0;
    unsigned long serial = 0;
    int any = 0;
    for (struct deferred *x = d; x && g->n < n; x = eo_take(s, d->table)) {
        if (rows + x->nrows > ecap) {
            ecap = (rows + x->nrows) * 2;
            elen = bp_xrealloc(elen, ecap * sizeof(*elen));
        }
        size_t ebytes = 0;
        if (x->has_enc && (!any || x->enc.serial == serial)) {
            for (size_t k = 0; k < x->nrows; k++)
                ebytes += x->enc.len[k];
        }
        if (x->has_enc && (!any || x->enc.serial == serial) &&
            bp_buf_append(&edata, x->enc.data, ebytes) == 0) {
            memcpy(elen + rows, x->enc.len, x->nrows * sizeof(*elen));
            serial = x->enc.serial;
            any = 1;
        } else if (x->nrows) {
            memset(elen + rows, 0, x->nrows * sizeof(*elen));
        }
        struct eo_member *b = &g->m[g->n++];
        b->first = rows;
        b->nrows = x->nrows;
        b->done = x->done;
        b->arg = x->arg;
        memcpy(all + len, x->entries, x->len);
        len += x->len;
        if (x->len && x->entries[x->len - 1] != '\n')
            all[len++] = '\n';   /* the next batch's rows start on a line of their own */
        rows += x->nrows;
        if (x != d) {
            free(x->table);
            free(x);
        }
    }
    char *table = d->table;
    free(d);
    struct bp_encoded_rows enc = {edata.data, elen, serial};
    /* encoded and recorded by the time it returns: the copies are not needed after */
    (void)bp_sw_put(s, table, all, len, rows, any ? &enc : NULL, eo_group_done, g);
    free(all);
    bp_buf_free(&edata);
    free(elen);
    free(table);
}

/* Encodes held batches of `table` (bp_sw_put) until its queue holds EO_QUEUED requests, in the
 * order they came. bp_sw_put pumps the table, which comes back here: the table's flag keeps
 * that call out, and this loop goes on. */
static void
eo_release(struct sw_store *s, const char *table)
{
    struct sw_table *t = eo_table(s, table);
    if (!s->recovered || (t && (t->releasing || eo_queue_full(t))))
        return;
    if (t)
        t->releasing = 1;
    struct deferred *d;
    while ((!t || !eo_queue_full(t)) && (d = eo_take(s, table)) != NULL) {
        eo_put_group(s, d);
        if (!t && (t = eo_table(s, table)) != NULL)
            t->releasing = 1;   /* the table's first batch made it */
    }
    if (t)
        t->releasing = 0;
}

/* See store_write_int.h. */
void
bp_sw_eo_put(struct sw_store *s, const char *table, const char *entries, size_t len,
             size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done, void *arg)
{
    bp_sw_eo_defer(s, table, entries, len, nrows, enc, done, arg);
    eo_release(s, table);
}

/* See store_write_int.h. */
void
bp_sw_eo_release(struct sw_table *t)
{
    struct sw_store *s = t->s;
    if (s->defer && !t->releasing && !eo_queue_full(t))
        eo_release(s, t->name);
}

/* See store_write_int.h. */
int
bp_sw_eo_holds(const struct sw_table *t)
{
    for (const struct deferred *d = t->s->defer; d; d = d->next)
        if (strcmp(d->table, t->name) == 0)
            return 1;
    return 0;
}

/* The log id of the entry's message (its insertId, which dispatch writes first) and table. */
static int
eo_key(bp_buf_t *b, const char *e, size_t n, const char *table)
{
    static const char pre[] = "{\"insertId\":\"";
    const char *id = "-";
    size_t len = 1;
    if (n > sizeof(pre) && memcmp(e, pre, sizeof(pre) - 1) == 0) {
        const char *q = memchr(e + sizeof(pre) - 1, '"', n - (sizeof(pre) - 1));
        if (q && q > e + sizeof(pre) - 1) {
            id = e + sizeof(pre) - 1;
            len = (size_t)(q - id);
        }
    }
    if (len > BP_APPEND_LOG_MAX_ID / 2)
        len = BP_APPEND_LOG_MAX_ID / 2;
    return bp_buf_append(b, id, len) != 0 || bp_buf_append(b, "\x1f", 1) != 0 ||
           bp_buf_append(b, table, strlen(table)) != 0 || bp_buf_append(b, "", 1) != 0 ? -1 : 0;
}

/* Fills put->eo and put->keys for the batch's rows and marks in skip the rows a crashed process's
 * append stored (the log's answer for their message). Returns 0, or -1 when the log cannot
 * answer yet (its memory cap: the batch fails and comes back). */
/* See store_write_int.h. */
int
bp_sw_eo_scan(struct sw_store *s, struct sw_table *t, struct put *put, const char *entries,
              size_t len, size_t nrows, unsigned char *skip)
{
    put->eo = bp_xcalloc(nrows ? nrows : 1, sizeof(*put->eo));
    bp_buf_init(&put->keys, 64u << 20);
    const char *p = entries, *end = entries + len;
    size_t i;
    for (i = 0; i < nrows && p < end; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t at = put->keys.len;
        if (eo_key(&put->keys, p, n, t->name) != 0)
            return -1;
        put->eo[i].key_at = at;
        put->eo[i].key_len = put->keys.len - at - 1;
        if (i > 0 && put->eo[i - 1].key_len == put->eo[i].key_len &&
            memcmp(put->keys.data + put->eo[i - 1].key_at, put->keys.data + at,
                   put->eo[i].key_len) == 0) {
            put->keys.len = at;   /* the same message: one copy of its id */
            put->eo[i].key_at = put->eo[i - 1].key_at;
            put->eo[i].ord = put->eo[i - 1].ord + 1;
        }
        p = nl ? nl + 1 : end;
    }
    for (size_t k = i; k-- > 0;)
        put->eo[k].tot = k + 1 < i && put->eo[k + 1].key_at == put->eo[k].key_at &&
                               put->eo[k + 1].ord == put->eo[k].ord + 1
                           ? put->eo[k + 1].tot : put->eo[k].ord + 1;
    for (size_t k = 0; k < i; k++) {
        if (put->eo[k].ord != 0)
            continue;
        struct bp_append_log_answer a;
        bp_append_log_lookup(s->log, put->keys.data + put->eo[k].key_at, put->eo[k].key_len, &a);
        if (a.state == BP_APPEND_LOG_PENDING)
            return -1;
        if (a.state != BP_APPEND_LOG_STORED && a.state != BP_APPEND_LOG_PARTIAL)
            continue;
        for (uint32_t j = 0; j < put->eo[k].tot; j++)
            if (a.state == BP_APPEND_LOG_STORED ||
                (j < a.row_total && (a.stored[j / 8] >> (j % 8) & 1)))
                skip[k + j] = 1;
    }
    return 0;
}

/* Writes r's record (its rows' messages at the table's next offset) before it is sent.
 * Returns 0, or -1 when the log refused (disk, memory): tried again in a second. */
/* See store_write_int.h. */
int
bp_sw_eo_record(struct sw_table *t, struct req *r)
{
    struct sw_store *s = t->s;
    struct bp_append_log_msg *m = bp_xcalloc(r->nrows ? r->nrows : 1, sizeof(*m));
    size_t n = 0;
    for (size_t i = 0; i < r->nrows; i++) {
        const struct eo_row *e = &r->put->eo[r->orig[i]];
        struct bp_append_log_msg *last = n ? &m[n - 1] : NULL;
        if (last && last->id == r->put->keys.data + e->key_at &&
            last->first_row + last->rows == e->ord) {
            last->rows++;
            continue;
        }
        m[n].id = r->put->keys.data + e->key_at;
        m[n].id_len = e->key_len;
        m[n].row_total = e->tot;
        m[n].first_row = e->ord;
        m[n].rows = 1;
        n++;
    }
    char err[400];
    int rc = bp_append_log_write(s->log, t->stream, t->next_offset, m, n, err, sizeof(err));
    free(m);
    if (rc != 0) {
        bp_log_rl(BP_LOG_ERROR, "bigquery", "sw-log", "AppendRows %s: %s; the append waits",
                  t->name, err);
        double at = bp_time_mono() + 1;
        if (at > t->retry_at)
            t->retry_at = at;
        bp_sw_arm_timer(s, 1);
        return -1;
    }
    r->offset = t->next_offset;
    return 0;
}

/* r is written at its offset: the stream's end moves past it. Its messages leave the log when
 * Pub/Sub acks them (bp_store_write_acked), or now when nothing can redeliver them. */
/* See store_write_int.h. */
void
bp_sw_eo_written(struct sw_table *t, struct req *r)
{
    struct sw_store *s = t->s;
    t->next_offset = r->offset + (int64_t)r->nrows;
    if (!s->trim_on_write)
        return;
    char err[300];
    for (size_t i = 0; i < r->nrows; i++) {
        const struct eo_row *e = &r->put->eo[r->orig[i]];
        if (e->ord == 0 &&
            bp_append_log_acked(s->log, r->put->keys.data + e->key_at, e->key_len, err,
                                sizeof(err)) != 0)
            bp_log_rl(BP_LOG_WARN, "bigquery", "sw-log", "%s", err);
    }
}

static void
on_created(void *arg, const struct bp_grpc_status *st, const uint8_t *reply, size_t len)
{
    struct sw_table *t = arg;
    struct sw_store *s = t->s;
    s->unary--;
    t->creating = 0;
    char *name = NULL;
    char err[300];
    int code = st->code;
    const char *msg = st->message;
    if (code == BP_GRPC_OK &&
        bp_proto_write_stream_decode(reply, len, &name, NULL, err, sizeof(err)) != 0) {
        code = BP_GRPC_INTERNAL;
        msg = err;
    }
    if (code != BP_GRPC_OK) {
        /* the head batch carries the failure: a retry after a backoff, or its end */
        struct req *r = t->queue;
        if (r) {
            t->queue = r->next;
            if (!t->queue)
                t->queue_tail = NULL;
            r->next = NULL;
            bp_sw_req_failed(t, r, code, msg);
        }
        bp_sw_pump(t);
        return;
    }
    free(t->stream);
    free(t->params);
    t->stream = name;
    char *esc = bp_url_escape(t->stream, 1);
    size_t n = strlen(esc) + 16;
    t->params = bp_xmalloc(n);
    snprintf(t->params, n, "write_stream=%s", esc);
    free(esc);
    t->created = 1;
    t->next_offset = 0;
    bp_log(BP_LOG_INFO, "bigquery", "table %s: rows go to the committed stream %s", t->name,
           t->stream);
    bp_sw_pump(t);
}

static const char *
eo_token(struct sw_store *s)
{
    return s->auth ? bp_auth_token(s->auth, bp_time_mono()) : NULL;
}

/* Creates the table's COMMITTED stream (CreateWriteStream) once. */
/* See store_write_int.h. */
void
bp_sw_eo_create(struct sw_table *t)
{
    struct sw_store *s = t->s;
    if (t->creating)
        return;
    if (s->auth && !eo_token(s)) {
        bp_api_ensure_token(s->api);
        bp_sw_arm_timer(s, 0.5);
        return;
    }
    size_t n = strlen(s->project) + strlen(s->dataset) + strlen(t->name) + 64;
    char *parent = bp_xmalloc(n);
    snprintf(parent, n, "projects/%s/datasets/%s/tables/%s", s->project, s->dataset, t->name);
    char *esc = bp_url_escape(parent, 1);
    char *params = bp_xmalloc(strlen(esc) + 16);
    sprintf(params, "parent=%s", esc);
    bp_buf_t b;
    bp_buf_init(&b, 1u << 20);
    struct bp_grpc_call_opts o = { eo_token(s), params, s->rpc_timeout };
    if (bp_proto_create_stream_request(&b, parent, 1) == 0 &&
        bp_grpc_unary(s->ch, CREATE_PATH, &o, b.data, b.len, on_created, t) != NULL) {
        t->creating = 1;
        s->unary++;
    } else {
        bp_sw_arm_timer(s, 1);
    }
    bp_buf_free(&b);
    free(params);
    free(esc);
    free(parent);
}

struct fin {
    struct sw_store *s;
    struct sw_table *t;         /* this process's stream (the drain), or NULL (a recovered one) */
    char *name;
};

static void
on_finalized(void *arg, const struct bp_grpc_status *st, const uint8_t *reply, size_t len)
{
    struct fin *f = arg;
    struct sw_store *s = f->s;
    s->unary--;
    int64_t rows = -1;
    char err[300];
    snprintf(err, sizeof(err), "%s %s", bp_grpc_code_name(st->code), st->message);
    if (st->code == BP_GRPC_OK &&
        bp_proto_finalize_reply_decode(reply, len, &rows, err, sizeof(err)) != 0)
        rows = -1;
    if (st->code == BP_GRPC_NOT_FOUND && !f->t)
        rows = 0;   /* a stream BigQuery forgot holds nothing it would count: append again */
    if (f->t) {
        f->t->finalizing = 0;
        f->t->finalized = rows >= 0;
        if (rows >= 0)
            bp_log(BP_LOG_INFO, "bigquery", "table %s: stream %s finalized with %" PRId64
                   " rows", f->t->name, f->name, rows);
        else
            bp_log(BP_LOG_WARN, "bigquery", "table %s: FinalizeWriteStream %s: %s (its rows "
                   "are written; a restart finalizes it)", f->t->name, f->name, err);
        f->t->finalized = 1;   /* once: the drain does not wait on it again */
    } else if (rows >= 0) {
        char e2[300];
        if (bp_append_log_finalized(s->log, f->name, rows, e2, sizeof(e2)) != 0)
            bp_log(BP_LOG_ERROR, "bigquery", "%s", e2);
        else
            bp_log(BP_LOG_INFO, "bigquery", "the previous process's stream %s holds %" PRId64
                   " rows: its redelivered messages are answered from %s", f->name, rows,
                   bp_append_log_path(s->log));
    } else {
        bp_log_rl(BP_LOG_WARN, "bigquery", "sw-recover", "FinalizeWriteStream %s: %s; tried "
                  "again (batches wait)", f->name, err);
        s->recover_at = bp_time_mono() + 2;
        bp_sw_arm_timer(s, 2);
    }
    free(f->name);
    free(f);
    if (!s->recovered && s->unary == 0)
        bp_sw_eo_recover(s);
}

static int
eo_finalize(struct sw_store *s, struct sw_table *t, const char *name)
{
    if (s->auth && !eo_token(s)) {
        bp_api_ensure_token(s->api);
        return -1;
    }
    bp_buf_t b;
    bp_buf_init(&b, 1u << 20);
    char *esc = bp_url_escape(name, 1);
    char *params = bp_xmalloc(strlen(esc) + 16);
    sprintf(params, "name=%s", esc);
    struct fin *f = bp_xcalloc(1, sizeof(*f));
    f->s = s;
    f->t = t;
    f->name = bp_xstrdup(name);
    struct bp_grpc_call_opts o = { eo_token(s), params, s->rpc_timeout };
    int rc = -1;
    if (bp_proto_finalize_request(&b, name) == 0 &&
        bp_grpc_unary(s->ch, FINALIZE_PATH, &o, b.data, b.len, on_finalized, f) != NULL) {
        s->unary++;
        rc = 0;
    } else {
        free(f->name);
        free(f);
    }
    bp_buf_free(&b);
    free(params);
    free(esc);
    return rc;
}

/* Finalizes the previous process's streams the log names; once none is left, the held batches
 * go. */
/* See store_write_int.h. */
void
bp_sw_eo_recover(struct sw_store *s)
{
    if (s->recovered || s->unary)
        return;
    if (bp_time_mono() < s->recover_at) {
        bp_sw_arm_timer(s, s->recover_at - bp_time_mono());
        return;
    }
    const char *name = bp_append_log_unfinalized(s->log, 0);
    if (!name) {
        s->recovered = 1;
        eo_run_deferred(s);
        return;
    }
    for (size_t i = 0; (name = bp_append_log_unfinalized(s->log, i)) != NULL; i++) {
        if (eo_finalize(s, NULL, name) != 0) {
            s->recover_at = bp_time_mono() + 1;
            bp_sw_arm_timer(s, 1);
            return;
        }
    }
}

/* The held batches, once the recovery is done: each table's go as its queue has room. */
static void
eo_run_deferred(struct sw_store *s)
{
    /* the names first: releasing changes the list */
    size_t n = 0, cap = 0;
    char **names = NULL;
    for (const struct deferred *d = s->defer; d; d = d->next) {
        size_t i = 0;
        while (i < n && strcmp(names[i], d->table) != 0)
            i++;
        if (i < n)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            names = bp_xrealloc(names, cap * sizeof(*names));
        }
        names[n++] = bp_xstrdup(d->table);
    }
    for (size_t i = 0; i < n; i++) {
        eo_release(s, names[i]);
        free(names[i]);
    }
    free(names);
}

/* See store_write.h. */
void
bp_store_write_acked(struct bp_store *bs, const char *id, size_t len)
{
    struct sw_store *s = (struct sw_store *)bs;
    if (!s || !bp_sw_is(bs) || !s->log)
        return;
    if (len > BP_APPEND_LOG_MAX_ID / 2)
        len = BP_APPEND_LOG_MAX_ID / 2;   /* cut as eo_key cuts it */
    char key[BP_APPEND_LOG_MAX_ID + 1024 + 2];
    char err[300];
    memcpy(key, id, len);
    key[len] = '\x1f';
    for (struct sw_table *t = s->tables; t; t = t->next) {
        size_t n = strlen(t->name);
        if (n > 1024)
            continue;
        memcpy(key + len + 1, t->name, n);
        if (bp_append_log_acked(s->log, key, len + 1 + n, err, sizeof(err)) != 0)
            bp_log_rl(BP_LOG_WARN, "bigquery", "sw-log", "%s", err);
    }
}

/* See store_write.h. */
size_t
bp_store_write_finalize(struct bp_store *bs)
{
    struct sw_store *s = (struct sw_store *)bs;
    if (!s || !bp_sw_is(bs) || !s->log)
        return 0;
    size_t n = 0;
    for (struct sw_table *t = s->tables; t; t = t->next) {
        if (!t->created || t->finalized || t->queue || t->flight || bp_sw_eo_holds(t))
            continue;
        if (!t->finalizing && eo_finalize(s, t, t->stream) == 0)
            t->finalizing = 1;
        n += t->finalizing;
    }
    return n;
}

