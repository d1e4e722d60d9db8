/* store_cloud.c - the cloud kind of store: rows by BigQuery tabledata.insertAll, archive objects
 * by GCS uploads. Every call goes through api.c (token, retries with backoff); what this file
 * adds is the wire format of each API and what a reply means for the rows and objects.
 *
 * JSON replies are read with jansson: they are small (insertErrors lists, object metadata) and
 * rare next to the rows we write, so the parser's speed does not show; jansson is Debian's, has
 * a strict parser and explicit lengths, and needs no Lua state outside the batch call. */
#include "api.h"
#include "endpoints.h"
#include "gz.h"
#include "gcs_reply.h"
#include "insert_reply.h"
#include "log.h"
#include "store.h"
#include "timefmt.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Archive names carry the second their object was opened, so two objects of one folder opened in
 * the same second (size-capped objects filling fast on a backlog) got the same name: the second
 * upload met a 412, paid an MD5 of the first object, a GET and a second full upload (~1% of
 * bepipe-lua's CPU end to end). Names this process used lately take their next suffix at once;
 * a 412 still handles everything else (another writer, an earlier process). */
#define RECENT 64

/* Replies larger than the API ever sends for the call are cut off there (http.c) and count as a
 * failed attempt: an upload's or a metadata GET's reply is one object resource (about 1 KB; its
 * custom metadata is at most 8 KB) or an error envelope; an insertAll reply lists at most one
 * entry per row sent, each a few hundred bytes (a reason, a location, a message). */
#define OBJECT_REPLY_MAX ((size_t)64 * 1024)
#define INSERT_REPLY_BASE ((size_t)64 * 1024)
#define INSERT_REPLY_PER_ROW ((size_t)4 * 1024)

struct store_cloud {
    struct bp_store base;
    struct bp_api *bq_api;
    struct bp_api *gcs_api;
    char *bq_base;          /* .../bigquery/v2/projects/P/datasets/D/tables */
    char *upload_base;      /* .../upload/storage/v1/b/BUCKET/o */
    char *objects_base;     /* .../storage/v1/b/BUCKET/o */
    size_t pending;         /* rows calls and objects not answered (queued ones included) */
    size_t max_object;
    /* Finished objects wait here, first in first out, while max_uploads are in flight: each
     * upload holds a connection (HTTP/1.1: one each) and libcurl's buffers, ~16 KB, so a
     * backfill that finishes an object per event must not start them all at once. What bounds
     * the queue itself is the archive's pressure (pressure.c): its bytes pause pulling. */
    size_t max_uploads;
    size_t uploading;       /* uploads started, not answered */
    /* those uploads (held ones included): the store frees them at exit, when the drain's
     * deadline passed with calls the API layer then drops without their callbacks */
    struct object_call *started;
    struct rows_call *rows_started;     /* insertAll calls unanswered, freed at exit alike */
    struct object_call *queue_head, *queue_tail;
    size_t queued;
    int pumping;            /* guards pump() against re-entry from a done callback */
    struct bp_store_cloud_stats stats;
    char *bucket;           /* as the object resource names it (upload replies are checked) */
    /* uploads the bucket refused for now (403 quota or permissions, 404): held and sent again
     * after a growing backoff, until refused_grace has passed (then refused for good) */
    struct ev_loop *loop;           /* NULL: refused uploads fail at once (no timer to wait on) */
    double refused_grace;
    struct object_call *held;       /* waiting for their next attempt */
    char *refusing;                 /* the bucket's last refusal while uploads wait, or NULL */
    size_t refused_n;               /* uploads refused for now and not ended since */
    /* archive.compression = gzip: objects are compressed as they grow, one deflate state for
     * all of them (gz.h), and uploaded with contentEncoding gzip */
    int gzip;
    struct bp_gz gz;
    unsigned long long bytes_plain, bytes_stored;   /* of objects handed to the store */
    /* the last RECENT names this process uploaded (base name, highest suffix taken) */
    struct recent_name {
        char *base;
        int suffix;
    } recent[RECENT];
    unsigned recent_next;
};

struct bp_object {
    struct store_cloud *s;
    char *name;
    bp_buf_t data;          /* the stored bytes: plain, or the gzip member so far */
    bp_buf_t plain;         /* gzip: lines not yet compressed (up to BP_GZ_CHUNK) */
    struct bp_gz_member member;
    uint64_t plain_len;     /* gzip: every plain byte written */
    int broken;             /* gzip: a write failed halfway, so the member is not valid gzip:
                             * every later write and the finish fail (its messages are nacked) */
};

struct rows_call {
    struct store_cloud *s;
    struct rows_call *prev, *next;  /* in s->rows_started while unanswered */
    char *table;
    size_t nrows;
    bp_store_done_fn done;
    void *arg;
};

struct object_call {
    struct store_cloud *s;
    char *name;             /* the name tried (a suffix is added after a 412) */
    char *base_name;
    int suffix;
    char *data;
    size_t len;
    char md5[32];           /* base64 MD5 of data, as GCS reports md5Hash */
    int gzip;               /* data is a gzip member: uploaded with contentEncoding gzip */
    int bad_replies;        /* 2xx replies that were not our object resource */
    double refused_since;   /* monotonic time of the first refusal in a row, 0 = none */
    struct bp_backoff backoff;
    ev_timer retry;         /* the wait after a refusal */
    struct object_call *prev, *next;    /* in s->held while waiting */
    struct object_call *sprev, *snext;  /* in s->started from the start to the end */
    bp_store_done_fn done;
    void *arg;
    struct object_call *next_queued;
};

static void
rows_unlink(struct rows_call *rc)
{
    if (rc->prev)
        rc->prev->next = rc->next;
    else
        rc->s->rows_started = rc->next;
    if (rc->next)
        rc->next->prev = rc->prev;
    rc->prev = rc->next = NULL;
}

static void
rows_done(void *arg, const struct bp_http_result *res)
{
    struct rows_call *rc = arg;
    char err[1200];
    rows_unlink(rc);
    rc->s->pending--;
    if (res->status != 200 || res->body_truncated) {
        snprintf(err, sizeof(err), "insertAll %s: %s%ld %.*s%s%s", rc->table,
                 res->status ? "HTTP " : "", res->status,
                 (int)(res->body_len > 400 ? 400 : res->body_len), res->body,
                 res->body_truncated ? " (reply over its cap)" : "",
                 res->error ? res->error : "");
        /* over quota, a grant not yet seen, a table being recreated: the batch holds the rows
         * and tries again (batch.c); the rest of the 4xx cannot be fixed by sending again */
        int st = bp_api_refused_transient(res) ? BP_STORE_REFUSED
                 : bp_api_permanent(res) ? BP_STORE_PERMANENT : -1;
        rc->done(rc->arg, st, err, NULL, 0);
    } else {
        struct bp_row_error *errs = NULL;
        char **reasons = NULL;
        long n = bp_insert_reply_errors(res->body, res->body_len, rc->nrows, &errs, &reasons, err,
                                     sizeof(err));
        if (n < 0)
            rc->done(rc->arg, -1, err, NULL, 0);
        else
            rc->done(rc->arg, 0, NULL, errs, (size_t)n);
        for (long k = 0; k < n; k++)
            free(reasons[k]);
        free(reasons);
        free(errs);
    }
    free(rc->table);
    free(rc);
}

/* {"skipInvalidRows":true,"rows":[<entry>,<entry>...]} from '\n'-separated entries.
 * skipInvalidRows: a bad row is refused alone (and dead-lettered) instead of stopping the rest. */
static char *
insert_body(const char *entries, size_t len, size_t *out_len)
{
    static const char head[] = "{\"skipInvalidRows\":true,\"ignoreUnknownValues\":false,\"rows\":[";
    size_t hl = sizeof(head) - 1;
    char *b = bp_xmalloc(hl + len + 3);
    memcpy(b, head, hl);
    memcpy(b + hl, entries, len);
    size_t n = hl + len;
    while (n > hl && b[n - 1] == '\n')
        n--;
    /* JSON strings escape newlines, so these are only separators */
    for (char *p = b + hl, *end = b + n; (p = memchr(p, '\n', (size_t)(end - p))); p++)
        *p = ',';
    b[n++] = ']';
    b[n++] = '}';
    b[n] = '\0';
    *out_len = n;
    return b;
}

static int
cloud_rows_put(struct bp_store *bs, const char *table, const char *entries, size_t len,
               size_t nrows, bp_store_done_fn done, void *arg)
{
    struct store_cloud *s = (struct store_cloud *)bs;
    char url[2048];
    char *t = bp_url_escape(table, 0);
    snprintf(url, sizeof(url), "%s/%s/insertAll", s->bq_base, t);
    free(t);
    size_t blen;
    char *body = insert_body(entries, len, &blen);
    struct rows_call *rc = bp_xcalloc(1, sizeof(*rc));
    rc->s = s;
    rc->table = bp_xstrdup(table);
    rc->nrows = nrows;
    rc->done = done;
    rc->arg = arg;
    rc->next = s->rows_started;
    if (s->rows_started)
        s->rows_started->prev = rc;
    s->rows_started = rc;
    s->pending++;
    size_t cap = nrows < (BP_API_MAX_REPLY - INSERT_REPLY_BASE) / INSERT_REPLY_PER_ROW
                     ? INSERT_REPLY_BASE + nrows * INSERT_REPLY_PER_ROW
                     : BP_API_MAX_REPLY;
    if (bp_api_call_small(s->bq_api, "POST", url, "application/json", body, blen, 60000, cap,
                          rows_done, rc) != 0) {
        /* nothing started and rows_done will not run (the api freed body): done runs here,
         * as store.h promises */
        s->pending--;
        rows_unlink(rc);
        free(rc->table);
        free(rc);
        done(arg, -1, "insertAll could not be started", NULL, 0);
        return -1;
    }
    return 0;
}

static struct bp_object *
cloud_object_open(struct bp_store *bs, const char *name, char *err, size_t errlen)
{
    struct store_cloud *s = (struct store_cloud *)bs;
    (void)err;
    (void)errlen;
    struct bp_object *o = bp_xcalloc(1, sizeof(*o));
    o->s = s;
    o->name = bp_xstrdup(name);
    bp_buf_init(&o->data, s->max_object);
    bp_buf_init(&o->plain, s->max_object);
    return o;
}

/* Compresses the gathered lines into the member (last: and ends it). A failure leaves the
 * member unusable: the object is marked broken. */
static int
compress_plain(struct bp_object *o, int last)
{
    if (bp_gz_add(&o->s->gz, &o->member, o->plain.data, o->plain.len, last, &o->data) != 0) {
        o->broken = 1;
        return -1;
    }
    o->plain.len = 0;
    /* a line far over the chunk grew the buffer: give that back, keep a chunk's worth */
    if (o->plain.cap > 2 * BP_GZ_CHUNK)
        bp_buf_free(&o->plain);
    return 0;
}

static int
cloud_object_write(struct bp_object *o, const void *p, size_t n)
{
    if (!o->s->gzip)
        return bp_buf_append(&o->data, p, n);
    if (o->broken)
        return -1;
    /* compressed before the buffer would grow past a chunk: an object holds at most a chunk
     * of plain lines (256 KB, 128 at least a time), never the doubling's twice that */
    if (o->plain.len + n > o->plain.cap && o->plain.len >= BP_GZ_CHUNK / 2 &&
        compress_plain(o, 0) != 0)
        return -1;
    if (bp_buf_append(&o->plain, p, n) != 0) {
        o->broken = 1;
        return -1;
    }
    o->plain_len += n;
    return o->plain.len >= BP_GZ_CHUNK ? compress_plain(o, 0) : 0;
}

static void cloud_object_abort(struct bp_object *o);
static void start_upload(struct object_call *oc);
static void upload_finish(struct object_call *oc, const struct bp_http_result *res);
static void upload_end(struct object_call *oc, const char *err);

/* Uploads whose 2xx reply is not our object resource are sent again this many times, at once
 * (the API layer sees a 2xx as final; each new call has its retry policy for 5xx and timeouts):
 * one that did land shows as a 412 and is recognised by its MD5, so no copy is made. After that
 * the object fails and its messages are nacked, never acked; redelivered, they go into a new
 * object, finished at the next archive roll, which paces the attempts. */
#define BAD_REPLY_RETRIES 2

/* Whether the object's metadata (JSON) is our object and carries our md5Hash. */
static int
same_md5(const struct object_call *oc, const struct bp_http_result *res)
{
    char why[160];
    if (res->status != 200)
        return 0;
    json_t *root = json_loadb(res->body, res->body_len, 0, NULL);
    const char *md5 = json_string_value(json_object_get(root, "md5Hash"));
    int same = md5 && strcmp(md5, oc->md5) == 0;
    json_decref(root);
    return same && bp_gcs_reply_check(res->body, res->body_len, oc->s->bucket, oc->name, oc->len,
                                      oc->md5, why, sizeof(why)) == 0;
}

/* "a/b_1.json" for base "a/b.json" and suffix 1 (the suffix goes before ".json"). */
static char *
suffixed_name(const char *base, int suffix)
{
    char name[2048];
    size_t bl = strlen(base);
    int json = bl > 5 && strcmp(base + bl - 5, ".json") == 0;
    snprintf(name, sizeof(name), "%.*s_%d%s", (int)(json ? bl - 5 : bl), base, suffix,
             json ? ".json" : "");
    return bp_xstrdup(name);
}

static void
existing_checked(void *arg, const struct bp_http_result *res)
{
    struct object_call *oc = arg;
    if (res->body_truncated) {
        /* a metadata reply past any real one's size proves nothing either way */
        char err[1200];
        snprintf(err, sizeof(err), "upload of %s: HTTP 412, and the existing object's metadata "
                 "reply passed %zu bytes", oc->name, OBJECT_REPLY_MAX);
        upload_end(oc, err);
        return;
    }
    if (same_md5(oc, res)) {
        /* an earlier attempt of ours landed and only its reply was lost: done, no copy */
        bp_log(BP_LOG_INFO, "archive", "%s was already stored by an earlier attempt", oc->name);
        struct bp_http_result ok;
        memset(&ok, 0, sizeof(ok));
        ok.status = 200;
        ok.body = "";
        upload_finish(oc, &ok);
        return;
    }
    /* someone else's object: never overwrite, add a suffix */
    oc->suffix++;
    free(oc->name);
    oc->name = suffixed_name(oc->base_name, oc->suffix);
    start_upload(oc);
}

/* A 2xx reply that is not our object resource proves nothing: the upload is sent again, or
 * fails once that was tried BAD_REPLY_RETRIES times. Returns 1 when it took over the call. */
static int
bad_reply(struct object_call *oc, const struct bp_http_result *res)
{
    char why[160], err[1200];
    if (res->status >= 200 && res->status < 300 && res->body_truncated)
        snprintf(why, sizeof(why), "the reply passed %zu bytes", OBJECT_REPLY_MAX);
    else if (res->status < 200 || res->status >= 300 ||
             bp_gcs_reply_check(res->body, res->body_len, oc->s->bucket, oc->name, oc->len,
                                oc->md5[0] ? oc->md5 : NULL, why, sizeof(why)) == 0)
        return 0;
    bp_log(BP_LOG_WARN, "archive", "upload of %s answered HTTP %ld but %s%s", oc->name,
           res->status, why, oc->bad_replies < BAD_REPLY_RETRIES ? "; sending it again" : "");
    if (oc->bad_replies++ < BAD_REPLY_RETRIES) {
        start_upload(oc);
        return 1;
    }
    snprintf(err, sizeof(err), "upload of %s: HTTP %ld but %s", oc->name, res->status, why);
    upload_end(oc, err);
    return 1;
}

static void
upload_done(void *arg, const struct bp_http_result *res)
{
    struct object_call *oc = arg;
    if (res->status == 412 && oc->suffix < 1000) {
        /* ifGenerationMatch=0 refused: the name exists. Ours (a retried upload whose first
         * reply was lost) or another writer's? The MD5 tells; it is computed only now, as it
         * is needed only now (hashing every object cost ~0.5 CPU-s per million events). */
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        if (!oc->md5[0] &&
            EVP_Digest(oc->data ? oc->data : "", oc->len, digest, &dlen, EVP_md5(), NULL) == 1)
            EVP_EncodeBlock((unsigned char *)oc->md5, digest, (int)dlen);
        char url[4096];
        char *n = bp_url_escape(oc->name, 0);
        snprintf(url, sizeof(url), "%s/%s?fields=bucket,name,size,md5Hash", oc->s->objects_base,
                 n);
        free(n);
        if (bp_api_call_small(oc->s->gcs_api, "GET", url, NULL, NULL, 0, 30000,
                              OBJECT_REPLY_MAX, existing_checked, oc) == 0)
            return;
    }
    if (!bad_reply(oc, res))
        upload_finish(oc, res);
}

static void pump(struct store_cloud *s);

/* Reports the object's outcome (err NULL = stored; permanent: the bucket refuses it for good),
 * frees the call and starts the next upload waiting. */
static void
upload_end_status(struct object_call *oc, const char *err, int permanent)
{
    struct store_cloud *s = oc->s;
    s->pending--;
    s->uploading--;
    if (oc->sprev)
        oc->sprev->snext = oc->snext;
    else
        s->started = oc->snext;
    if (oc->snext)
        oc->snext->sprev = oc->sprev;
    if (oc->refused_since && --s->refused_n == 0) {
        free(s->refusing);
        s->refusing = NULL;
    }
    if (!err) {
        bp_log(BP_LOG_DEBUG, "archive", "uploaded %s (%zu bytes)", oc->name, oc->len);
        oc->done(oc->arg, 0, NULL, NULL, 0);
    } else {
        oc->done(oc->arg, permanent ? BP_STORE_PERMANENT : -1, err, NULL, 0);
    }
    free(oc->name);
    free(oc->base_name);
    free(oc->data);
    free(oc);
    pump(s);
}

static void
upload_end(struct object_call *oc, const char *err)
{
    upload_end_status(oc, err, 0);
}

/* Uploads a paused bucket keeps wait backoff delays this long at first, doubling up to
 * REFUSED_MAX: quota windows and permission propagation take minutes. */
#define REFUSED_MIN 1.0
#define REFUSED_MAX 60.0

static void
unhold(struct object_call *oc)
{
    struct store_cloud *s = oc->s;
    if (oc->prev)
        oc->prev->next = oc->next;
    else
        s->held = oc->next;
    if (oc->next)
        oc->next->prev = oc->prev;
    oc->prev = oc->next = NULL;
}

static void
on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct object_call *oc = w->data;
    (void)loop;
    (void)revents;
    unhold(oc);
    start_upload(oc);
}

/* The bucket refused the upload in a way that often passes (quota, a grant propagating, a
 * bucket being recreated): the object is held, its messages stay outstanding, and it is sent
 * again after a growing backoff. Returns 1 when it took the call, 0 once the refusals have
 * lasted refused_grace (the caller then reports them for good, as before). */
static int
hold_refused(struct object_call *oc, const char *err)
{
    struct store_cloud *s = oc->s;
    double now = bp_time_mono();
    if (!s->loop)
        return 0;
    if (!oc->refused_since) {
        oc->refused_since = now;
        s->refused_n++;
        bp_backoff_init(&oc->backoff, REFUSED_MIN, REFUSED_MAX);
    }
    if (now - oc->refused_since >= s->refused_grace) {
        bp_log(BP_LOG_ERROR, "archive", "the bucket has refused %s for %.0f s "
               "(bigquery.refused_grace_seconds=%.0f): giving up", oc->name,
               now - oc->refused_since, s->refused_grace);
        return 0;
    }
    double delay = bp_backoff_fail(&oc->backoff);
    bp_log_rl(BP_LOG_WARN, "archive", "refused upload", "the bucket refused an upload for now; "
              "the object is held and sent again in %.1f s: %s", delay, err);
    free(s->refusing);
    s->refusing = bp_xstrdup(err);
    oc->next = s->held;
    oc->prev = NULL;
    if (s->held)
        s->held->prev = oc;
    s->held = oc;
    ev_timer_init(&oc->retry, on_retry, delay, 0.);
    oc->retry.data = oc;
    ev_timer_start(s->loop, &oc->retry);
    return 1;
}

static void
upload_finish(struct object_call *oc, const struct bp_http_result *res)
{
    char err[1200];
    if (res->status == 200) {
        upload_end(oc, NULL);
        return;
    }
    snprintf(err, sizeof(err), "upload of %s: %s%ld %.*s%s", oc->name,
             res->status ? "HTTP " : "", res->status,
             (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
             res->error ? res->error : "");
    if (bp_api_refused_transient(res) && hold_refused(oc, err))
        return;
    /* a bucket that does not exist or that we may not write to: redelivery cannot fix it */
    upload_end_status(oc, err, bp_api_permanent(res));
}

static void
start_upload(struct object_call *oc)
{
    struct store_cloud *s = oc->s;
    char url[4096];
    char *n = bp_url_escape(oc->name, 0);
    /* contentEncoding (a query parameter of media uploads) makes the object's metadata say
     * Content-Encoding: gzip: GCS stores the bytes as sent and serves them decompressed to
     * readers that do not accept gzip (decompressive transcoding) */
    snprintf(url, sizeof(url), "%s?uploadType=media&name=%s&ifGenerationMatch=0%s",
             s->upload_base, n, oc->gzip ? "&contentEncoding=gzip" : "");
    free(n);
    /* the object's bytes stay ours (borrowed) until the call ends: a 412 may need them again */
    if (bp_api_call_ref_capped(s->gcs_api, "POST", url, "application/x-ndjson", oc->data,
                               oc->len, 120000, OBJECT_REPLY_MAX, upload_done, oc) != 0) {
        struct bp_http_result res;
        memset(&res, 0, sizeof(res));
        res.error = "cannot start the upload";
        res.body = "";
        upload_done(oc, &res);
    }
}

/* The suffix the object's name needs: 0 for a name this process has not used lately, else the
 * next one after the highest it took. */
static int
recent_suffix(struct store_cloud *s, const char *base)
{
    for (size_t i = 0; i < RECENT; i++)
        if (s->recent[i].base && strcmp(s->recent[i].base, base) == 0)
            return ++s->recent[i].suffix;
    struct recent_name *r = &s->recent[s->recent_next++ % RECENT];
    free(r->base);
    r->base = bp_xstrdup(base);
    r->suffix = 0;
    return 0;
}

/* Starts queued uploads, oldest first, while fewer than max_uploads are in flight. */
static void
pump(struct store_cloud *s)
{
    if (s->pumping)
        return;     /* an upload that ended at once, inside start_upload: the loop goes on */
    s->pumping = 1;
    while (s->queue_head && s->uploading < s->max_uploads) {
        struct object_call *oc = s->queue_head;
        s->queue_head = oc->next_queued;
        if (!s->queue_head)
            s->queue_tail = NULL;
        s->queued--;
        s->uploading++;
        oc->sprev = NULL;
        oc->snext = s->started;
        if (s->started)
            s->started->sprev = oc;
        s->started = oc;
        if (s->uploading > s->stats.max_uploading)
            s->stats.max_uploading = s->uploading;
        start_upload(oc);
    }
    s->pumping = 0;
}

static int
cloud_object_finish(struct bp_object *o, bp_store_done_fn done, void *arg)
{
    if (o->s->gzip && (o->broken || compress_plain(o, 1) != 0)) {
        bp_log(BP_LOG_ERROR, "archive", "%s could not be compressed (out of memory, or past "
               "its size cap)", o->name);
        cloud_object_abort(o);
        done(arg, -1, "the object could not be compressed", NULL, 0);
        return -1;
    }
    bp_buf_free(&o->plain);
    o->s->bytes_plain += o->s->gzip ? o->plain_len : o->data.len;
    o->s->bytes_stored += o->data.len;
    struct object_call *oc = bp_xcalloc(1, sizeof(*oc));
    oc->gzip = o->s->gzip;
    oc->s = o->s;
    oc->base_name = o->name;
    oc->suffix = recent_suffix(o->s, o->name);
    oc->name = oc->suffix ? suffixed_name(oc->base_name, oc->suffix) : bp_xstrdup(o->name);
    oc->data = o->data.data;
    oc->len = o->data.len;
    /* it may wait a while: the growth slack (up to half the buffer) goes back now */
    if (oc->data && o->data.cap - oc->len > oc->len / 4) {
        char *p = realloc(oc->data, oc->len ? oc->len : 1);
        if (p)
            oc->data = p;
    }
    oc->done = done;
    oc->arg = arg;
    free(o);
    struct store_cloud *s = oc->s;
    s->pending++;
    s->stats.objects++;
    if (s->queue_tail)
        s->queue_tail->next_queued = oc;
    else
        s->queue_head = oc;
    s->queue_tail = oc;
    if (++s->queued > s->stats.max_queued)
        s->stats.max_queued = s->queued;
    pump(s);
    return 0;
}

static void
cloud_object_abort(struct bp_object *o)
{
    bp_buf_free(&o->data);
    bp_buf_free(&o->plain);
    free(o->name);
    free(o);
}

static size_t
cloud_pending(struct bp_store *bs)
{
    return ((struct store_cloud *)bs)->pending;
}

/* The upload queue's counters so far (store.h); s must be a cloud store. */
const struct bp_store_cloud_stats *
bp_store_cloud_stats(const struct bp_store *s)
{
    return &((const struct store_cloud *)s)->stats;
}

static void
cloud_destroy(struct bp_store *bs)
{
    struct store_cloud *s = (struct store_cloud *)bs;
    if (!s)
        return;
    if (s->stats.objects)
        bp_log(BP_LOG_INFO, "archive", "uploads: %lu objects, at most %zu in flight at once "
               "(archive.max_uploads=%zu), at most %zu waiting; bytes_plain=%llu "
               "bytes_stored=%llu compression=%s", s->stats.objects, s->stats.max_uploading,
               s->max_uploads, s->stats.max_queued, s->bytes_plain, s->bytes_stored,
               s->gzip ? "gzip" : "none");
    bp_gz_free(&s->gz);
    /* held uploads end without their callback, like the api's calls in flight at exit (their
     * messages were nacked by the drain); the API layers were freed first (rt.c), so no
     * call of theirs answers one of these later */
    while (s->held) {
        struct object_call *oc = s->held;
        unhold(oc);
        ev_timer_stop(s->loop, &oc->retry);
    }
    while (s->rows_started) {
        struct rows_call *rc = s->rows_started;
        s->rows_started = rc->next;
        free(rc->table);
        free(rc);
    }
    while (s->started) {
        struct object_call *oc = s->started;
        s->started = oc->snext;
        free(oc->name);
        free(oc->base_name);
        free(oc->data);
        free(oc);
    }
    /* what still waits after the drain's deadline is dropped unanswered, as the calls in
     * flight are: its messages were nacked with the rest */
    while (s->queue_head) {
        struct object_call *oc = s->queue_head;
        s->queue_head = oc->next_queued;
        free(oc->name);
        free(oc->base_name);
        free(oc->data);
        free(oc);
    }
    free(s->refusing);
    free(s->bq_base);
    free(s->upload_base);
    free(s->objects_base);
    free(s->bucket);
    for (size_t i = 0; i < RECENT; i++)
        free(s->recent[i].base);
    free(s);
}

static const struct bp_store_ops cloud_ops = {
    .kind = "cloud",
    .objects_in_memory = 1,
    .rows_put = cloud_rows_put,
    .object_open = cloud_object_open,
    .object_write = cloud_object_write,
    .object_finish = cloud_object_finish,
    .object_abort = cloud_object_abort,
    .pending = cloud_pending,
    .destroy = cloud_destroy,
};

/* Uploads the bucket refuses for now (bp_api_refused_transient) are held and sent again on
 * loop's timers until they have been refused for grace seconds; without this, or with grace 0,
 * they fail for good at once. */
void
bp_store_cloud_set_refused(struct bp_store *bs, struct ev_loop *loop, double grace)
{
    struct store_cloud *s = (struct store_cloud *)bs;
    s->loop = grace > 0 ? loop : NULL;
    s->refused_grace = grace;
}

/* archive.compression = gzip: objects opened from now on are compressed as they grow and
 * uploaded with contentEncoding gzip (their MD5, and the 412 check, are of the stored bytes).
 * Returns 0, or -1 when the compressor cannot be allocated. */
int
bp_store_cloud_set_gzip(struct bp_store *bs, int level)
{
    struct store_cloud *s = (struct store_cloud *)bs;
    if (s->gzip)
        return 0;
    if (bp_gz_init(&s->gz, level) != 0) {
        bp_gz_free(&s->gz);
        return -1;
    }
    s->gzip = 1;
    return 0;
}

/* The bucket's last refusal while uploads wait for another attempt, or NULL (/readyz). */
const char *
bp_store_cloud_refusing(const struct bp_store *bs)
{
    const struct store_cloud *s = (const struct store_cloud *)bs;
    return s->refused_n ? s->refusing : NULL;
}

/* The cloud store for dataset project/dataset and bucket. max_object caps one archive object
 * in memory (objects are held until uploaded; flow control bounds how many lines they hold).
 * At most max_uploads (at least 1) uploads are in flight; finished objects past it wait. */
struct bp_store *
bp_store_cloud_new(struct bp_api *bq_api, struct bp_api *gcs_api, const struct bp_endpoints *ep,
                   const char *project, const char *dataset, const char *bucket,
                   size_t max_object, size_t max_uploads)
{
    struct store_cloud *s = bp_xcalloc(1, sizeof(*s));
    char buf[2048];
    char *p = bp_url_escape(project, 0), *d = bp_url_escape(dataset, 0),
         *b = bp_url_escape(bucket, 0);
    s->base.ops = &cloud_ops;
    s->bq_api = bq_api;
    s->gcs_api = gcs_api;
    snprintf(buf, sizeof(buf), "%s/projects/%s/datasets/%s/tables", ep->bigquery, p, d);
    s->bq_base = bp_xstrdup(buf);
    snprintf(buf, sizeof(buf), "%s/b/%s/o", ep->upload, b);
    s->upload_base = bp_xstrdup(buf);
    snprintf(buf, sizeof(buf), "%s/b/%s/o", ep->storage, b);
    s->objects_base = bp_xstrdup(buf);
    s->max_object = max_object;
    s->max_uploads = max_uploads ? max_uploads : 1;
    s->bucket = bp_xstrdup(bucket);
    free(p);
    free(d);
    free(b);
    return &s->base;
}
