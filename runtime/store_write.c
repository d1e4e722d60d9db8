/* store_write.c - rows to BigQuery through the Storage Write API (bigquery.method =
 * storage_write): each table's batches are AppendRows requests on the table's default stream
 * (projects/P/datasets/D/tables/T/streams/_default, at-least-once: the service keeps no insertId,
 * so a batch sent again after a lost reply is stored twice), over one gRPC bidirectional stream
 * per table kept open across batches (grpc_channel.c: one HTTP/2 connection on the loop).
 *
 * It fills store.h's rows_put only; archive objects stay with the cloud store (GCS uploads), so
 * batch.c sees the same contract as with insertAll: done exactly once, row errors by index (the
 * rows the table refused: dead letters of stage insert), BP_STORE_REFUSED for NOT_FOUND and
 * PERMISSION_DENIED (a table being created, a grant propagating), BP_STORE_PERMANENT for the other
 * codes no retry can change, -1 after retry.attempts of retryable codes (the messages are
 * redelivered). A batch is acked only after its AppendRowsResponse said append_result.
 *
 * Rows: batch.c hands over the insertAll entries the schema check passed
 * ({"insertId":..,"json":{row}}) and, beside them, the rows the batch loop also wrote as
 * protobuf from the map's own table (row_protos.c, rows_put_encoded) under the schema of a
 * serial. While that is still the table's schema (the DDL's, or the live table's once known)
 * those bytes are copied as they are (the dead letters and a route's metadata columns are written
 * so by C, dispatch.c; exactly_once's held batches keep theirs). Any other row (written before
 * its table's schema changed, or a C-built row its table cannot take as its JSON says it) is
 * read from its entry into a Lua table of a
 * state of this store's own (entry_lua.c: integers past 2^53 exact as int64 cdata) and written
 * by proto_row.c against the table's schema, as the batch loop would have: both ways give the
 * same bytes, the second costs a decode per row.
 *
 * Requests: a batch is one AppendRows request, or several when its rows pass one request's
 * 10 MB as protobuf (a row's protobuf can be larger than its JSON: a packed negative INT64 takes
 * 10 bytes where its text took 3, so a batch under insertAll's limit may not fit): a row that
 * does not fit opens the next request, in the batch's order. The batch's done runs once, after
 * its last request ended, with the first failure's status or else every request's row errors.
 *
 * Writer schemas: a row's field numbers follow its table's columns in order, so rows encoded
 * before a reload that dropped or moved a column cannot go under the newer writer schema. Each
 * request holds the writer schema its rows were encoded under (struct sw_desc, refcounted: the
 * table holds the newest; versions and the rows' encoding are store_write_rows.c's) and carries it when it is not the one its call last sent, so old and
 * new rows each go with their own, on the same call. A writer schema is the call's only once
 * the request that carried it is answered without an error (the server may refuse a request
 * before it reads its writer schema, and would read the rows sent behind it under the one it
 * held before): none is sent behind it until then, and after an error reply the next request
 * carries its own again. Rows whose writer schema names a column
 * the table has since dropped are refused by the service for that: on the default stream their
 * messages come again (-1) and are mapped against the table as it is now.
 *
 * A reply's updated_schema (the table changed under the run) goes to the owner
 * (schema_updated), which takes it as the table's live schema: the next batches are checked and
 * written against it, without a reload.
 *
 * Ordering: requests on one stream are answered in order, so the replies are matched to a FIFO
 * of requests in flight. A reply with row_errors wrote none of its request: those rows are
 * reported as row errors and the others are sent again in a new request, at the head of the
 * queue (as Google's managed writers do).
 *
 * exactly_once (bigquery.exactly_once): each table's rows go to a COMMITTED stream this process
 * creates, one append in flight with its offset; before it is sent the append log (append_log.h)
 * records which messages it carries (a batch of several requests is several appends, each with
 * its offset and record; a message whose rows span two is recorded as two parts of it, so a
 * restart skips the part written and sends the rest). A lost reply sends the append again at the same offset
 * until it is answered (ALREADY_EXISTS: it was written). At start the previous process's streams
 * are finalized before any batch goes; a batch's rows the log then calls stored are left out of
 * the append and count as written. The drain finalizes this process's streams. That half lives
 * in store_write_eo.c; the state both share is in store_write_int.h. */
#include "store_write.h"
#include "store_write_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "endpoints.h"
#include "grpc_channel.h"
#include "log.h"
#include "proto_desc.h"
#include "proto_msg.h"
#include "timefmt.h"

#define APPEND_PATH "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"
/* requests in flight on one table's stream: replies are in order, a few keep the pipe full */
#define MAX_IN_FLIGHT 4

/* ---- requests ---- */

static void
req_free(struct req *r)
{
    for (size_t i = 0; i < r->nerrs; i++)
        free((char *)r->errs[i].reason);
    free(r->errs);
    free(r->orig);
    bp_buf_free(&r->rows);
    bp_sw_desc_unref(r->desc);
    free(r);
}

/* One part of put ended (or, with dropped, went without an answer: the store is going): once
 * none is left, the batch's done runs (unless dropped) with the first failure, else 0 and every
 * part's row errors, and put is freed. */
static void
put_part(struct put *put, int status, const char *msg, const struct req *r, int dropped)
{
    if (dropped) {
        put->done = NULL;
    } else if (status != 0 && put->status == 0) {
        put->status = status;
        put->msg = bp_xstrdup(msg ? msg : "");
    } else if (status == 0 && r && r->nerrs) {
        put->errs = bp_xrealloc(put->errs, (put->nerrs + r->nerrs) * sizeof(*put->errs));
        for (size_t i = 0; i < r->nerrs; i++) {
            put->errs[put->nerrs].index = r->errs[i].index;
            put->errs[put->nerrs].reason = bp_xstrdup(r->errs[i].reason);
            put->nerrs++;
        }
    }
    if (--put->left)
        return;
    if (put->done)
        put->done(put->arg, put->status, put->msg, put->status == 0 ? put->errs : NULL,
                  put->status == 0 ? put->nerrs : 0);
    for (size_t i = 0; i < put->nerrs; i++)
        free((char *)put->errs[i].reason);
    free(put->errs);
    free(put->msg);
    free(put->eo);
    bp_buf_free(&put->keys);
    free(put);
}

/* Ends r with status (its batch's done runs once every part has ended) and frees r. */
static void
req_finish(struct req *r, int status, const char *msg)
{
    struct sw_store *s = r->s;
    s->pending--;
    if (status == 0) {
        s->stats.rows_written += r->nrows;
        s->stats.rows_refused += r->nerrs;
    } else {
        s->stats.failures++;
    }
    put_part(r->put, status, msg, r, 0);
    req_free(r);
}

static void
queue_front(struct sw_table *t, struct req *r)
{
    r->next = t->queue;
    t->queue = r;
    if (!t->queue_tail)
        t->queue_tail = r;
}

static void
queue_back(struct sw_table *t, struct req *r)
{
    r->next = NULL;
    if (t->queue_tail)
        t->queue_tail->next = r;
    else
        t->queue = r;
    t->queue_tail = r;
}

static struct req *
flight_pop(struct sw_table *t)
{
    struct req *r = t->flight;
    if (r) {
        t->flight = r->next;
        if (!t->flight)
            t->flight_tail = NULL;
        t->nflight--;
        t->carrying -= r->carried;
        r->carried = 0;
        r->next = NULL;
    }
    return r;
}

/* Puts the requests in flight back at the head of the queue, oldest first. */
static void
requeue_flight(struct sw_table *t)
{
    struct req *head = t->flight, *tail = t->flight_tail;
    if (!head)
        return;
    for (struct req *r = head; r; r = r->next)
        r->carried = 0;
    tail->next = t->queue;
    t->queue = head;
    if (!t->queue_tail)
        t->queue_tail = tail;
    t->flight = t->flight_tail = NULL;
    t->nflight = 0;
    t->carrying = 0;
}

/* See store_write_int.h. */
void
bp_sw_arm_timer(struct sw_store *s, double in)
{
    if (in < 0.001)
        in = 0.001;
    if (ev_is_active(&s->timer) && ev_timer_remaining(s->loop, &s->timer) <= in)
        return;
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_set(&s->timer, in, 0.);
    ev_timer_start(s->loop, &s->timer);
}

/* A failure of a whole request (its status, not a row's): retried under the one policy while
 * the code is worth it, else the batch ends with the store status the code means. Returns 1 when
 * r went back to the queue (the table then waits for a backoff), 0 when it finished. */
/* See store_write_int.h. */
int
bp_sw_req_failed(struct sw_table *t, struct req *r, int code, const char *msg)
{
    struct sw_store *s = t->s;
    char text[700];
    snprintf(text, sizeof(text), "AppendRows %s: %s %.500s", t->name, bp_grpc_code_name(code),
             msg);
    /* exactly_once: an append whose fate is unknown goes again at its offset until it has an
     * answer; given up, its offset could not be given to other rows without risking them */
    int again = bp_grpc_retryable(code) || code == BP_GRPC_UNAUTHENTICATED ||
                (s->log && code == BP_GRPC_OUT_OF_RANGE);
    if (again && (r->attempt + 1 < s->max_attempts || (s->log && r->offset >= 0))) {
        double delay = bp_api_backoff(s->api, r->attempt);
        r->attempt++;
        s->stats.retries++;
        if (code == BP_GRPC_UNAUTHENTICATED && s->auth)
            bp_auth_invalidate(s->auth);
        bp_log_rl(BP_LOG_WARN, "bigquery", t->name, "%s; retry %d in %.2f s", text, r->attempt,
                  delay);
        queue_front(t, r);
        double at = bp_time_mono() + delay;
        if (at > t->retry_at)
            t->retry_at = at;
        bp_sw_arm_timer(s, delay);
        return 1;
    }
    int status = code == BP_GRPC_NOT_FOUND || code == BP_GRPC_PERMISSION_DENIED
                     ? BP_STORE_REFUSED
               : bp_grpc_retryable(code) || code == BP_GRPC_UNAUTHENTICATED ? -1
                                                                             : BP_STORE_PERMANENT;
    req_finish(r, status, text);
    return 0;
}

/* ---- the AppendRows call of a table ---- */

/* Whether an error reply refuses the writer schema for a field the table lacks. */
static int
extra_fields(const struct bp_append_reply *rep)
{
    return rep->code == BP_GRPC_INVALID_ARGUMENT &&
           (rep->storage_code == BP_STORAGE_SCHEMA_MISMATCH_EXTRA_FIELDS ||
            strstr(rep->message, "has more fields than BigQuery schema") != NULL);
}

static void
on_message(struct bp_grpc_stream *gs, const uint8_t *msg, size_t len, void *arg)
{
    struct sw_table *t = arg;
    struct sw_store *s = t->s;
    (void)gs;
    struct req *r = flight_pop(t);
    if (!r) {
        bp_log_rl(BP_LOG_WARN, "bigquery", "sw-unasked", "AppendRows %s: a reply to no request "
                  "(ignored)", t->name);
        return;
    }
    struct bp_append_reply rep;
    char err[300];
    if (bp_proto_append_reply_decode(msg, len, r->nrows, &rep, err, sizeof(err)) != 0) {
        /* the request's fate is unknown: sent again (at-least-once) on a new call */
        char m[400];
        snprintf(m, sizeof(m), "unreadable reply: %s", err);
        bp_grpc_stream_cancel(t->gs);
        t->gs = NULL;
        t->sent_gen = 0;
        requeue_flight(t);
        bp_sw_req_failed(t, r, BP_GRPC_INTERNAL, m);
        bp_sw_pump(t);
        return;
    }
    if (rep.schema_error && !t->schema_error_logged) {
        /* the rows' fate is read from the rest of the reply as usual; only the news of a
         * changed table is lost, and a table sync (reload) still brings it */
        t->schema_error_logged = 1;
        bp_log(BP_LOG_WARN, "bigquery", "AppendRows %s: a reply's updated_schema was dropped "
               "(%s); rows keep the schema in force (logged once for this table)", t->name,
               rep.schema_error);
    }
    if (rep.updated_schema && s->schema_updated) {
        /* the table changed under the run (it gained columns): its schema from now on, for
         * the check and the writer schema of the next batch, as a table sync would give it */
        bp_log(BP_LOG_INFO, "bigquery", "AppendRows %s: the table's schema changed "
               "(updated_schema, %zu columns): the next rows are checked and written against it",
               t->name, rep.updated_schema->root.nfields);
        s->schema_updated(s->owner, t->name, rep.updated_schema);
        rep.updated_schema = NULL;
    } else if (rep.updated_schema) {
        bp_log_rl(BP_LOG_INFO, "bigquery", "sw-updated", "AppendRows %s: the table's schema "
                  "changed (updated_schema); rows keep the schema in force", t->name);
    }
    /* an error reply may have come before the server took the writer schema the request
     * carried (the first of a call, or the first under a newer or older one): the next request
     * carries its own again, or the server would read its rows under the one it held before
     * (after a reload that moved columns, values in other columns without an error) */
    if (rep.has_error)
        t->sent_gen = 0;
    if (rep.nrow_errors) {
        /* none of the request was written (row_errors say so, beside an error as the service
         * sends them, or an append_result or nothing as an odd server might: acking those
         * would ack rows not stored): the refused rows are row errors, the rest go again */
        bp_buf_t rest;
        bp_buf_init(&rest, r->rows.max);
        size_t *orig = bp_xmalloc((r->nrows ? r->nrows : 1) * sizeof(*orig));
        size_t n = 0, off = 0;
        unsigned char *bad = bp_xcalloc(r->nrows ? r->nrows : 1, 1);
        for (size_t i = 0; i < rep.nrow_errors; i++)
            if (rep.row_errors[i].index < r->nrows && !bad[rep.row_errors[i].index]) {
                bad[rep.row_errors[i].index] = 1;
                bp_sw_req_error(r, r->orig[rep.row_errors[i].index], rep.row_errors[i].message);
            }
        /* ProtoRows.serialized_rows entries: tag 0x0a, varint length, bytes */
        for (size_t i = 0; i < r->nrows && off < r->rows.len; i++) {
            size_t at = off + 1, l = 0;
            int shift = 0;
            const unsigned char *d = (const unsigned char *)r->rows.data;
            while (at < r->rows.len) {
                l |= (size_t)(d[at] & 0x7f) << shift;
                shift += 7;
                if (!(d[at++] & 0x80))
                    break;
            }
            size_t next = at + l;
            if (!bad[i] && bp_buf_append(&rest, d + off, next - off) == 0)
                orig[n++] = r->orig[i];
            off = next;
        }
        free(bad);
        bp_buf_free(&r->rows);
        r->rows = rest;
        free(r->orig);
        r->orig = orig;
        r->nrows = n;
        s->stats.row_error_replies++;
        /* nothing of it was written: the rest takes the same offset, under a new record */
        r->offset = -1;
        if (n == 0)
            req_finish(r, 0, NULL);
        else
            queue_front(t, r);
    } else if (rep.has_error && s->log && r->offset >= 0 && rep.code == BP_GRPC_ALREADY_EXISTS) {
        /* an append sent again after its reply was lost, found written: done */
        bp_log_rl(BP_LOG_INFO, "bigquery", "sw-exists", "AppendRows %s: offset %" PRId64
                  " already written (a retry of a written append): taken as written", t->name,
                  r->offset);
        bp_sw_eo_written(t, r);
        req_finish(r, 0, NULL);
    } else if (rep.has_error && s->log && r->offset >= 0 && rep.code == BP_GRPC_OUT_OF_RANGE) {
        /* nothing written: the stream ends before the offset. Resync from the row count the
         * service names and send again under a new record */
        const char *e = strstr(rep.message, "expected offset ");
        long long at = e ? strtoll(e + 16, NULL, 10) : -1;
        if (at >= 0 && at != r->offset) {
            bp_log(BP_LOG_ERROR, "bigquery", "AppendRows %s: the stream has %lld rows, this "
                   "process counted %" PRId64 ": resynced", t->name, at, r->offset);
            t->next_offset = at;
            r->offset = -1;
        }
        bp_sw_req_failed(t, r, rep.code, rep.message);
    } else if (rep.has_error && !s->log && extra_fields(&rep) && bp_sw_desc_outdated(t, r->desc)) {
        /* rows encoded before a reload dropped a column their writer schema names: the service
         * refuses that writer schema, not the rows. Not written: their messages come again and
         * are mapped against the table as it is now (dead-lettering them would keep good rows
         * out). The default stream only: with exactly_once the append's log record stays for
         * its offset, so it ends as any refused append does */
        char m[700];
        snprintf(m, sizeof(m), "AppendRows %s: %s %.500s (rows encoded before the table's "
                 "schema changed)", t->name, bp_grpc_code_name(rep.code), rep.message);
        req_finish(r, -1, m);
    } else if (rep.has_error) {
        if (s->log && !bp_grpc_retryable(rep.code))
            r->offset = -1;   /* refused for sure: its offset stays free */
        bp_sw_req_failed(t, r, rep.code, rep.message);
    } else if (!rep.has_result) {
        /* neither written nor refused: not an answer to count as stored */
        bp_sw_req_failed(t, r, BP_GRPC_INTERNAL, "a reply with neither append_result nor error");
    } else {
        if (s->log)
            bp_sw_eo_written(t, r);
        req_finish(r, 0, NULL);
    }
    bp_proto_append_reply_free(&rep);
    bp_sw_pump(t);
}

static void
on_writable(struct bp_grpc_stream *gs, void *arg)
{
    (void)gs;
    bp_sw_pump(arg);
}

static void
on_done(struct bp_grpc_stream *gs, const struct bp_grpc_status *st, void *arg)
{
    struct sw_table *t = arg;
    (void)gs;
    t->gs = NULL;
    t->sent_gen = 0;
    if (!t->flight && t->queue && st->code != BP_GRPC_OK) {
        /* the call failed before its first request was taken (a connection that could not
         * even start: a name that does not resolve, an unreachable address, no socket): the
         * head of the queue counts the attempt and the table waits out its backoff; opening
         * the next call at once would spin (and, inside the channel's dispatch, never return
         * to the loop) */
        struct req *first = t->queue;
        t->queue = first->next;
        if (!t->queue)
            t->queue_tail = NULL;
        first->next = NULL;
        bp_sw_req_failed(t, first, st->code, st->message);
        bp_sw_pump(t);
        return;
    }
    if (!t->flight) {
        /* an idle call the server ended (GOAWAY, its idle limit): the next batch opens one */
        if (st->code != BP_GRPC_OK && st->code != BP_GRPC_UNAVAILABLE)
            bp_log_rl(BP_LOG_INFO, "bigquery", t->name, "AppendRows %s ended: %s %s", t->name,
                      bp_grpc_code_name(st->code), st->message);
        bp_sw_pump(t);
        return;
    }
    /* the requests without a reply: their fate is unknown, so they go again (at-least-once),
     * in order; the oldest counts the failed attempt and takes the backoff */
    /* a call that ended without a verdict (no grpc-status, OK with replies owed) tells
     * nothing about the requests: they go again like after UNAVAILABLE */
    int code = st->code == BP_GRPC_OK || st->code == BP_GRPC_UNKNOWN ? BP_GRPC_UNAVAILABLE
                                                                     : st->code;
    char why[400];
    snprintf(why, sizeof(why), "%s%s", st->code == BP_GRPC_OK
             ? "the call ended with requests unanswered" : st->message,
             st->code == BP_GRPC_UNKNOWN ? " (UNKNOWN)" : "");
    const char *msg = why;
    requeue_flight(t);
    struct req *first = t->queue;
    t->queue = first->next;
    if (!t->queue)
        t->queue_tail = NULL;
    first->next = NULL;
    bp_sw_req_failed(t, first, code, msg);
    bp_sw_pump(t);
}

static const struct bp_grpc_stream_cbs stream_cbs = { on_message, on_writable, on_done };

/* Opens t's AppendRows call. Returns 0, or -1 (then retried from the timer). */
static int
open_call(struct sw_table *t)
{
    struct sw_store *s = t->s;
    const char *token = NULL;
    if (s->auth) {
        token = bp_auth_token(s->auth, bp_time_mono());
        if (!token) {
            /* the REST calls keep the token fresh (bp_api's refresh); wait for it */
            bp_api_ensure_token(s->api);
            double at = bp_time_mono() + 0.5;
            if (at > t->retry_at)
                t->retry_at = at;
            bp_sw_arm_timer(s, 0.5);
            return -1;
        }
    }
    struct bp_grpc_call_opts o = { token, t->params, 0 };
    t->gs = bp_grpc_stream_open(s->ch, APPEND_PATH, &o, &stream_cbs, t);
    t->sent_gen = 0;
    if (!t->gs) {
        double at = bp_time_mono() + 1;
        if (at > t->retry_at)
            t->retry_at = at;
        bp_sw_arm_timer(s, 1);
        return -1;
    }
    s->stats.calls++;
    return 0;
}

/* Sends queued requests while the call has room. */
/* See store_write_int.h. */
void
bp_sw_pump(struct sw_table *t)
{
    struct sw_store *s = t->s;
    if (s->log)
        bp_sw_eo_release(t);    /* exactly_once: held batches, as the queue has room */
    if (!t->queue || bp_time_mono() < t->retry_at) {
        if (t->queue)
            bp_sw_arm_timer(s, t->retry_at - bp_time_mono());
        return;
    }
    if (s->log && !t->created) {
        bp_sw_eo_create(t);
        return;
    }
    if (!t->gs && open_call(t) != 0)
        return;
    /* exactly_once: one append in flight per stream, so that each offset follows a known end */
    while (t->queue && t->nflight < (s->log ? 1 : MAX_IN_FLIGHT)) {
        /* a writer schema in flight is not the call's until its request is answered: one
         * sent behind it without its own would be read under the one the server held before,
         * should the server refuse the request that carried it */
        if (t->carrying)
            return;
        struct req *r = t->queue;
        if (s->log && r->offset < 0 && bp_sw_eo_record(t, r) != 0)
            return;
        bp_buf_t out;
        bp_buf_init(&out, 2 * BP_SW_MAX_REQUEST);
        struct bp_append_req ar = { 0 };
        ar.write_stream = t->stream;
        if (t->sent_gen != r->desc->gen) {
            /* the call's first request, or rows encoded under another writer schema than the
             * call's last one (older or newer than it, after a reload) */
            ar.descriptor = r->desc->bytes.data;
            ar.descriptor_len = r->desc->bytes.len;
            ar.trace_id = "bepipe-lua";
        }
        ar.rows = r->rows.data;
        ar.rows_len = r->rows.len;
        if (s->log) {
            ar.has_offset = 1;
            ar.offset = r->offset;
        }
        int rc = bp_proto_append_request(&out, &ar);
        if (rc == 0)
            rc = bp_grpc_stream_send(t->gs, out.data, out.len);
        bp_buf_free(&out);
        if (rc == -2 || rc == -3) {
            if (rc == -3)
                bp_sw_arm_timer(s, 0.1);
            return;     /* on_writable (or the timer) pumps again */
        }
        t->queue = r->next;
        if (!t->queue)
            t->queue_tail = NULL;
        if (rc != 0) {
            /* the call is ending: its on_done sends r again */
            r->next = NULL;
            queue_front(t, r);
            return;
        }
        t->sent_gen = r->desc->gen;
        r->carried = ar.descriptor != NULL;
        t->carrying += r->carried;
        r->sent_at = bp_time_mono();
        r->next = NULL;
        if (t->flight_tail)
            t->flight_tail->next = r;
        else
            t->flight = r;
        t->flight_tail = r;
        t->nflight++;
        s->stats.requests++;
        bp_sw_arm_timer(s, s->rpc_timeout);
    }
    if (s->log)
        bp_sw_eo_release(t);    /* the next append encoded while this one is in flight */
}

/* Backoffs that ended, and replies past their deadline (the call is cancelled: its requests go
 * again on a new one). */
static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sw_store *s = (struct sw_store *)((char *)w - offsetof(struct sw_store, timer));
    (void)loop;
    (void)revents;
    double now = bp_time_mono();
    if (s->log && !s->recovered)
        bp_sw_eo_recover(s);
    for (struct sw_table *t = s->tables; t; t = t->next) {
        if (t->flight && now - t->flight->sent_at >= s->rpc_timeout && t->gs) {
            /* the next call goes on a new connection: a silent one would swallow it too */
            bp_grpc_stream_abandon(t->gs);
            struct bp_grpc_status st = { BP_GRPC_DEADLINE_EXCEEDED, "no reply in time", NULL, 0,
                                         0, 1 };
            on_done(NULL, &st, t);
            continue;
        }
        if (t->flight)
            bp_sw_arm_timer(s, t->flight->sent_at + s->rpc_timeout - now);
        bp_sw_pump(t);
    }
}

/* ---- the store ---- */

static struct sw_table *
table_for(struct sw_store *s, const char *name)
{
    for (struct sw_table *t = s->tables; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    struct sw_table *t = bp_xcalloc(1, sizeof(*t));
    t->s = s;
    t->name = bp_xstrdup(name);
    size_t n = strlen(s->project) + strlen(s->dataset) + strlen(name) + 64;
    t->stream = bp_xmalloc(n);
    snprintf(t->stream, n, "projects/%s/datasets/%s/tables/%s/streams/_default", s->project,
             s->dataset, name);
    /* x-goog-request-params: the routing header, URL-encoded as the client libraries do */
    char *esc = bp_url_escape(t->stream, 1);
    n = strlen(esc) + 16;
    t->params = bp_xmalloc(n);
    snprintf(t->params, n, "write_stream=%s", esc);
    free(esc);
    t->next = s->tables;
    s->tables = t;
    return t;
}

/* See store_write_int.h. */
int
bp_sw_put(struct sw_store *s, const char *table, const char *entries, size_t len, size_t nrows,
          const struct bp_encoded_rows *enc, bp_store_done_fn done, void *arg)
{
    struct sw_table *t = table_for(s, table);
    const struct bp_schema *schema = s->schema_for(s->owner, table);
    char why[400];
    if (!schema) {
        snprintf(why, sizeof(why), "table %s: no schema known (the Storage Write API needs the "
                 "table's columns: its DDL or the live table)", table);
        done(arg, BP_STORE_PERMANENT, why, NULL, 0);
        return -1;
    }
    if (bp_sw_desc_update(t, schema, why, sizeof(why)) != 0) {
        char m[600];
        snprintf(m, sizeof(m), "table %s: %s", table, why);
        done(arg, BP_STORE_PERMANENT, m, NULL, 0);
        return -1;
    }
    struct put *put = bp_xcalloc(1, sizeof(*put));
    put->done = done;
    put->arg = arg;
    put->left = 1;              /* held while the batch is split: no done before the end */
    unsigned char *skip = NULL;
    if (s->log) {
        skip = bp_xcalloc(nrows ? nrows : 1, 1);
        if (bp_sw_eo_scan(s, t, put, entries, len, nrows, skip) != 0) {
            free(skip);
            put->done = NULL;
            put_part(put, 0, NULL, NULL, 1);
            done(arg, -1, "the append log cannot answer for the batch's messages yet", NULL, 0);
            return -1;
        }
    }
    struct req **parts = NULL;
    size_t nparts = 0;
    bp_sw_encode_rows(s, t, put, schema, entries, len, nrows, enc, skip, &parts, &nparts);
    if (skip) {
        size_t n = 0;
        for (size_t i = 0; i < nrows; i++)
            n += skip[i];
        if (n)
            bp_log_rl(BP_LOG_INFO, "bigquery", "sw-stored", "table %s: %zu rows of redelivered "
                      "messages were stored by the previous process (append log): acked without "
                      "a new append", table, n);
        s->stats.rows_skipped += n;
        free(skip);
    }
    /* the parts in the batch's order: with exactly_once each is its own append, recorded and
     * given its offset when it is sent, one at a time */
    for (size_t i = 0; i < nparts; i++) {
        if (parts[i]->nrows == 0)
            req_finish(parts[i], 0, NULL);
        else
            queue_back(t, parts[i]);
    }
    free(parts);
    put_part(put, 0, NULL, NULL, 0);
    bp_sw_pump(t);
    return 0;
}

static int
sw_rows_put_encoded(struct bp_store *bs, const char *table, const char *entries, size_t len,
                    size_t nrows, const struct bp_encoded_rows *enc, bp_store_done_fn done,
                    void *arg)
{
    struct sw_store *s = (struct sw_store *)bs;
    if (s->log) {
        /* held as entries (with their protobuf) while the table's append is in flight */
        bp_sw_eo_put(s, table, entries, len, nrows, enc, done, arg);
        return 0;
    }
    return bp_sw_put(s, table, entries, len, nrows, enc, done, arg);
}

static int
sw_rows_put(struct bp_store *bs, const char *table, const char *entries, size_t len,
            size_t nrows, bp_store_done_fn done, void *arg)
{
    return sw_rows_put_encoded(bs, table, entries, len, nrows, NULL, done, arg);
}

static size_t
sw_pending(struct bp_store *bs)
{
    struct sw_store *s = (struct sw_store *)bs;
    return s->pending + s->unary;
}

static void
sw_destroy(struct bp_store *bs)
{
    struct sw_store *s = (struct sw_store *)bs;
    if (!s)
        return;
    ev_timer_stop(s->loop, &s->timer);
    if (s->stats.requests)
        bp_log(BP_LOG_INFO, "bigquery", "storage_write: %lu AppendRows requests on %lu calls, "
               "%lu rows written, %lu refused (dead letters), %lu retries, %lu batches failed; "
               "bytes_sent=%lu rows_encoded=%lu rows_read_back=%lu", s->stats.requests,
               s->stats.calls, s->stats.rows_written, s->stats.rows_refused, s->stats.retries,
               s->stats.failures, bp_grpc_channel_stats(s->ch)->bytes_sent,
               s->stats.rows_encoded, s->stats.rows_read_back);
    /* the calls go without callbacks; requests still owed a done are dropped with the drain's
     * end, as the cloud store's calls are */
    bp_grpc_channel_free(s->ch);
    struct sw_table *t = s->tables;
    while (t) {
        struct sw_table *next = t->next;
        struct req *r;
        while ((r = flight_pop(t)) != NULL) {
            put_part(r->put, 0, NULL, NULL, 1);
            req_free(r);
        }
        while ((r = t->queue) != NULL) {
            t->queue = r->next;
            put_part(r->put, 0, NULL, NULL, 1);
            req_free(r);
        }
        free(t->name);
        free(t->stream);
        free(t->params);
        bp_sw_desc_unref(t->desc);
        free(t);
        t = next;
    }
    while (s->defer) {
        struct deferred *d = s->defer;
        s->defer = d->next;
        free(d->table);
        free(d);
    }
    bp_append_log_free(s->log);
    bp_entry_lua_free(s->rows);
    free(s->project);
    free(s->dataset);
    free(s);
}

static const struct bp_store_ops write_ops = {
    .kind = "storage_write",
    .objects_in_memory = 0,
    .rows_put = sw_rows_put,
    .pending = sw_pending,
    .destroy = sw_destroy,
    .rows_put_encoded = sw_rows_put_encoded,
};

/* See store_write.h. */
struct bp_store *
bp_store_write_new(const struct bp_store_write_opts *o, char *err, size_t errlen)
{
    struct sw_store *s = bp_xcalloc(1, sizeof(*s));
    s->base.ops = &write_ops;
    s->loop = o->loop;
    s->api = o->api;
    s->auth = o->auth;
    s->max_attempts = o->max_attempts > 0 ? o->max_attempts : 8;
    s->rpc_timeout = o->rpc_timeout > 0 ? o->rpc_timeout : 60;
    s->project = bp_xstrdup(o->project);
    s->dataset = bp_xstrdup(o->dataset);
    s->schema_for = o->schema_for;
    s->schema_updated = o->schema_updated;
    s->owner = o->owner;
    ev_timer_init(&s->timer, on_timer, 0., 0.);
    struct bp_grpc_channel_opts co = { 0 };
    co.host = o->host;
    co.port = o->port;
    co.tls = o->tls;
    co.ca_file = o->ca_file;
    co.user_agent = o->user_agent;
    s->ch = bp_grpc_channel_new(o->loop, &co, err, errlen);
    if (!s->ch || !(s->rows = bp_entry_lua_new(o->lib_dir, err, errlen))) {
        sw_destroy(&s->base);
        return NULL;
    }
    if (o->exactly_once && bp_sw_eo_open(s, o, err, errlen) != 0) {
        sw_destroy(&s->base);
        return NULL;
    }
    return &s->base;
}

/* See store_write_int.h. */
int
bp_sw_is(const struct bp_store *bs)
{
    return bs && bs->ops == &write_ops;
}

/* See store_write.h. */
const struct bp_store_write_stats *
bp_store_write_stats(const struct bp_store *bs)
{
    struct sw_store *s = (struct sw_store *)bs;
    s->stats.bytes_sent = bp_grpc_channel_stats(s->ch)->bytes_sent;
    return &s->stats;
}
