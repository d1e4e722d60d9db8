/* source_pubsub.c - events from a Pub/Sub subscription over REST: several pulls in flight, flow
 * control (outstanding messages and bytes) that pauses pulling, batched acknowledge, nack for
 * messages a destination failed (its growing deadline and the lease extension are in
 * source_pubsub_lease.c), and nack (deadline 0) for what is left at shutdown. Every duration is
 * on the monotonic clock.
 *
 * A message lives here from its pull to its verdict, indexed by its ack slot; its bytes do not:
 * they are decoded into a per-pull buffer, run through Lua and the sinks, and freed at once.
 * Pull replies are read by pull_reply.c's scanner, which also decodes the base64 data. */
#include "ack.h"
#include "api.h"
#include "json_out.h"
#include "log.h"
#include "pubsub_ids.h"
#include "pull_reply.h"
#include "source.h"
#include "source_pubsub_int.h"
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Pull replies in flight together hold at most this much memory: each pull's reply is capped at
 * its share, but never below REPLY_MIN, which holds one message of the API's 10 MB maximum
 * (13.4 MB as base64) with its attributes, so any message Pub/Sub accepts can be pulled. */
#define REPLY_BUDGET ((size_t)64 * 1024 * 1024)
#define REPLY_MIN ((size_t)16 * 1024 * 1024)
/* Raw text of a message that is not base64, kept for its dead letter. */
#define BAD_DATA_KEEP 1024

static void start_pulls(struct source_pubsub *s);

static void
idq_push(struct idq *q, char *id, double deadline, int secs)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 256;
        q->v = bp_xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->n++] = (struct bp_ps_qid){ id, deadline, secs };
}

/* The queued nacks, one call per deadline asked for (the queue holds a few distinct ones). */
static void
send_nacks(struct source_pubsub *s)
{
    struct idq *q = &s->nacks;
    while (q->n) {
        int secs = q->v[0].secs;
        size_t same = 0, other = 0;
        struct bp_ps_qid *mine = bp_xcalloc(q->n, sizeof(*mine));
        for (size_t i = 0; i < q->n; i++) {
            if (q->v[i].secs == secs)
                mine[same++] = q->v[i];
            else
                q->v[other++] = q->v[i];
        }
        q->n = other;
        bp_ps_send_ids(&s->q, BP_PS_NACK, secs, mine, same);
        free(mine);
    }
}

static void
flush_ids(struct source_pubsub *s)
{
    if (s->acks.n) {
        bp_ps_send_ids(&s->q, BP_PS_ACK, -1, s->acks.v, s->acks.n);
        s->acks.n = 0;
    }
    send_nacks(s);
}

/* Every 100 ms: the queued ids go out, and pulling resumes if it waited for acknowledges
 * to be confirmed (start_pulls). */
static void
on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct source_pubsub *s = w->data;
    (void)loop;
    (void)revents;
    flush_ids(s);
    if (!s->stopped)
        start_pulls(s);
}

/* The ack tracker's verdict: queue an ack (all stored) or a nack (redeliver later). An acked
 * message leaves the books here, but its lease is kept by its acknowledge call until the server
 * confirmed it. */
static void
ps_acked(struct bp_source *bs, uint32_t slot, int ok)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    if (slot >= s->mcap || !s->m[slot].live)
        return;
    struct pmsg *p = &s->m[slot];
    if (ok) {
        idq_push(&s->acks, p->ack_id, p->deadline, -1);
        s->st.acked++;
        s->nack_run = 0;   /* the destinations work: the next failure starts short again */
        struct nack_seen *e = &s->nack_seen[p->id_hash % NACK_SEEN];
        if (p->id_hash && e->id_hash == p->id_hash)
            e->nacks = 0;   /* its own count too */
        bp_rt_observe_ack_latency(s->rt, mono_now(s) - p->pulled_at);
        if (p->msg_id)
            bp_rt_message_acked(s->rt, p->msg_id, strlen(p->msg_id));
    } else {
        idq_push(&s->nacks, p->ack_id, 0, bp_pubsub_nack_seconds(s, p));
        s->st.nacked++;
    }
    p->ack_id = NULL;
    free(p->msg_id);
    p->msg_id = NULL;
    p->live = 0;
    p->ext_at = 0;
    s->outstanding--;
    s->outstanding_bytes -= p->bytes;
    if (s->acks.n >= ACK_IDS_PER_CALL)
        flush_ids(s);
    if (!s->stopped)
        start_pulls(s);
}

static int
digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

/* "2024-05-01T12:00:00.123456789Z" (the server's own format) -> epoch seconds, or 0 when
 * unreadable (the archive then uses the time it was read). Per message, so no sscanf. */
static double
parse_rfc3339(const char *t)
{
    if (!t || strlen(t) < 20 || t[4] != '-' || t[7] != '-' || t[10] != 'T' || t[13] != ':' ||
        t[16] != ':')
        return 0;
    int y = digits(t, 4), mo = digits(t + 5, 2), d = digits(t + 8, 2), h = digits(t + 11, 2),
        mi = digits(t + 14, 2), sec = digits(t + 17, 2);
    if (y < 1900 || mo < 1 || mo > 12 || d < 0 || h < 0 || mi < 0 || sec < 0)
        return 0;
    double frac = 0, scale = 0.1;
    for (const char *p = t + 19 + (t[19] == '.'); t[19] == '.' && *p >= '0' && *p <= '9'; p++) {
        frac += (*p - '0') * scale;
        scale /= 10;
    }
    /* days since 1970-01-01 of the civil date (H. Hinnant's days_from_civil), not timegm: it
     * takes glibc's time-zone lock and conversion per message (0.6% of the CPU end to end).
     * Out-of-range days, hours, ... carry over as timegm normalizes them. */
    long yy = mo <= 2 ? y - 1 : y, era = yy / 400, yoe = yy - era * 400;
    long doy = (153 * (mo > 2 ? mo - 3 : mo + 9) + 2) / 5 + d - 1;
    long days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    return (double)(days * 86400 + h * 3600L + mi * 60L + sec) + frac;
}

static int
ensure_slot(struct source_pubsub *s, uint32_t slot)
{
    if (slot < s->mcap)
        return 0;
    size_t ncap = s->mcap ? s->mcap : 1024;
    while (ncap <= slot)
        ncap *= 2;
    s->m = bp_xrealloc(s->m, ncap * sizeof(*s->m));
    memset(s->m + s->mcap, 0, (ncap - s->mcap) * sizeof(*s->m));
    s->mcap = ncap;
    return 0;
}

/* FNV-1a of a message id, never 0 (0 = no id: nothing to count by). */
static uint64_t
id_hash(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* Takes one pulled message into the source's books: an ack slot, its lease, flow control. */
static uint32_t
admit(struct source_pubsub *s, const struct bp_pull_msg *pm, size_t bytes, double now)
{
    uint32_t slot = bp_ack_new(bp_rt_ack(s->rt), 0);
    ensure_slot(s, slot);
    struct pmsg *p = &s->m[slot];
    p->ack_id = bp_xstrndup(pm->ack_id, pm->ack_id_len);
    p->bytes = bytes;
    p->deadline = now + s->sub_deadline;
    p->pulled_at = mono_now(s);
    p->gen++;
    p->attempt = pm->delivery_attempt;
    p->id_hash = pm->message_id ? id_hash(pm->message_id, pm->message_id_len) : 0;
    free(p->msg_id);
    p->msg_id = pm->message_id && bp_rt_wants_acked_ids(s->rt)
                    ? bp_xstrndup(pm->message_id, pm->message_id_len) : NULL;
    p->live = 1;
    p->ext_at = 0;
    p->extended = 0;
    s->outstanding++;
    s->outstanding_bytes += bytes;
    s->st.pulled++;
    return slot;
}

static void
fill_msg(bp_msg_t *m, const struct bp_pull_msg *pm, const char *data, size_t len)
{
    m->data = data;
    m->len = len;
    m->id = pm->message_id ? pm->message_id : pm->ack_id;
    m->id_len = pm->message_id ? pm->message_id_len : pm->ack_id_len;
    m->publish_time = parse_rfc3339(pm->publish_time);
    m->attrs = pm->attrs;
    m->attrs_len = pm->attrs_len;
    m->delivery_attempt = pm->delivery_attempt;
}

/* Runs the decoded messages through the pipeline in batches (or nacks them when draining).
 * Returns 0, or -1 when a sink failed (the messages not yet processed are nacked). */
static int
run_messages(struct source_pubsub *s, const bp_msg_t *msgs, const uint32_t *slots, size_t n)
{
    struct bp_ack *ack = bp_rt_ack(s->rt);
    if (s->stopped || bp_rt_draining(s->rt)) {
        for (size_t i = 0; i < n; i++)
            bp_ack_done(ack, slots[i], 0);
        return 0;
    }
    for (size_t i = 0; i < n; i += s->batch_max) {
        size_t cnt = n - i < s->batch_max ? n - i : s->batch_max;
        if (bp_rt_process(s->rt, msgs + i, slots + i, cnt) != 0) {
            for (size_t j = i + cnt; j < n; j++)   /* never reached a destination */
                bp_ack_done(ack, slots[j], 0);
            return -1;
        }
    }
    return 0;
}

/* A reply that passed its cap: the next pulls ask for as many messages as the part received
 * held whole (the ackIds counted in it, less the cut one; one when the cap was known from the
 * Content-Length and nothing was read), down to one, which always fits (REPLY_MIN). */
static void
shrink_pulls(struct source_pubsub *s, const struct bp_http_result *res)
{
    size_t seen = 0, was = s->want_max;
    const char *p = res->body, *end = res->body + res->body_len;
    while (p && p < end && (p = memmem(p, (size_t)(end - p), "\"ackId\"", 7)) != NULL) {
        seen++;
        p += 7;
    }
    s->want_max = seen > 1 ? seen - 1 : 1;
    if (s->want_max > was)
        s->want_max = was;
    bp_log(BP_LOG_WARN, "pubsub", "a pull reply passed %zu MB with maxMessages=%zu; asking "
           "for %zu per pull (its messages come back after their lease)", s->reply_cap >> 20,
           was, s->want_max);
}

/* After a full reply well under the cap, pulls may ask for more again (doubling). */
static void
grow_pulls(struct source_pubsub *s, size_t nmsgs, size_t bytes)
{
    if (nmsgs >= s->want_max && bytes < s->reply_cap / 4 && s->want_max < s->pull_max)
        s->want_max = s->want_max * 2 < s->pull_max ? s->want_max * 2 : s->pull_max;
}

/* Turns one pull reply into messages and runs them. A message whose data is not base64 is
 * dead-lettered (stage parse) with the first bytes of its text. Returns 0, -1 when the reply
 * is not a pull reply (nothing was taken: the server redelivers), or -2 when a sink failed. */
static int
handle_pull(struct source_pubsub *s, const char *body, size_t len)
{
    struct bp_pull_reply reply;
    char err[512];
    if (bp_pull_reply_decode(&reply, body, len, err,
                             sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "pubsub", "%s; the messages will be redelivered", err);
        return -1;
    }
    size_t n = reply.n, total = 0, good = 0;
    for (size_t i = 0; i < n; i++)
        total += reply.msgs[i].data_b64_len / 4 * 3;
    bp_msg_t *msgs = bp_xcalloc(n ? n : 1, sizeof(*msgs));
    uint32_t *slots = bp_xcalloc(n ? n : 1, sizeof(*slots));
    char *raw = bp_xmalloc(total ? total : 1), *at = raw;
    double now = mono_now(s);   /* leases are durations: never the wall clock */
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct bp_pull_msg *pm = &reply.msgs[i];
        long out = bp_pull_data_decode(at, pm->data_b64 ? pm->data_b64 : "", pm->data_b64_len);
        if (out >= 0) {
            slots[good] = admit(s, pm, (size_t)out, now);
            fill_msg(&msgs[good++], pm, at, (size_t)out);
            at += out;
            continue;
        }
        bp_msg_t bad;
        char why[160];
        size_t keep = pm->data_b64_len < BAD_DATA_KEEP ? pm->data_b64_len : BAD_DATA_KEEP;
        fill_msg(&bad, pm, pm->data_b64, keep);
        snprintf(why, sizeof(why), "message data is not valid base64 (%zu bytes); raw_payload "
                 "holds its first %zu bytes as received", pm->data_b64_len, keep);
        if (bp_rt_process_dead(s->rt, &bad, admit(s, pm, keep, now), BP_STAGE_PARSE, why) != 0)
            rc = -2;
    }
    grow_pulls(s, n, len);
    if (rc == 0 && run_messages(s, msgs, slots, good) != 0)
        rc = -2;
    else if (rc != 0)
        for (size_t j = 0; j < good; j++)
            bp_ack_done(bp_rt_ack(s->rt), slots[j], 0);
    free(raw);
    free(msgs);
    free(slots);
    bp_pull_reply_free(&reply);
    return rc;
}

/* After a pull that brought nothing: the next one waits (struct bp_backoff: doubling, equal
 * jitter, never 0) over the failures in a row, so a broken subscription or a hostile server
 * never sees a request storm. */
static void
back_off(struct source_pubsub *s)
{
    s->st.pull_failures++;
    double delay = bp_backoff_fail(&s->pull_backoff);
    ev_timer_stop(bp_rt_loop(s->rt), &s->pull_timer);
    ev_timer_set(&s->pull_timer, delay, 0.);
    ev_timer_start(bp_rt_loop(s->rt), &s->pull_timer);
}

static void
pull_done(void *arg, const struct bp_http_result *res)
{
    struct pull_slot *slot = arg;
    struct source_pubsub *s = slot->s;
    /* what this pull asked for: pulls sent together meet the cap together, and the first reply
     * to shrink want_max must not make the others' replies failures */
    size_t want = slot->want;
    s->asked -= slot->want;
    slot->want = 0;
    s->pulls--;
    int failed = 1;
    if (res->status == 200 && res->body_truncated && want > 1)
        shrink_pulls(s, res);
    if (res->status == 200 && !res->body_truncated) {
        int rc = handle_pull(s, res->body, res->body_len);
        if (rc == -2) {
            bp_rt_source_failed(s->rt, "sink failure");
            return;
        }
        failed = rc != 0;
    } else if (res->status == 404) {
        bp_log(BP_LOG_ERROR, "pubsub", "subscription %s was not found (404): check "
               "source.subscription (--input_subscription) and the project; stopping",
               s->subscription);
        bp_rt_source_failed(s->rt, "subscription not found");
        return;
    } else if (res->status == 200 && res->body_truncated && want > 1) {
        failed = 0;   /* too big a reply: the next pull asks for fewer at once */
    } else {
        bp_log(BP_LOG_ERROR, "pubsub", "pull failed: %s%ld %.*s%s%s", res->status ? "HTTP " : "",
               res->status, (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
               res->body_truncated ? " (reply over its cap)" : "", res->error ? res->error : "");
    }
    if (failed)
        back_off(s);
    else
        bp_backoff_reset(&s->pull_backoff);
    if (!s->stopped)
        start_pulls(s);
    else
        flush_ids(s);   /* draining: the nacks of what this pull brought go out now */
}

static void
on_pull_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    start_pulls(w->data);
}

/* Keeps max_pulls pulls in flight while flow control allows, the archive's uploads keep up
 * (bp_rt_pull_paused) and no backoff is running. Acknowledges not yet confirmed hold their
 * ids (kept leased by extensions) but not their flow-control slots: while the acknowledge
 * endpoint stalls, they may number max_outstanding_messages at most besides, or the ids in
 * flight (and the extensions sent for them) would grow with the backlog; the ack timer
 * resumes pulling once they are confirmed. */
static void
start_pulls(struct source_pubsub *s)
{
    if (ev_is_active(&s->pull_timer))
        return;
    while (!s->stopped && s->pulls < s->max_pulls && s->outstanding + s->asked < s->max_msgs &&
           s->outstanding_bytes < s->max_bytes && s->q.acking < s->max_msgs &&
           !bp_rt_pull_paused(s->rt)) {
        /* what the pulls in flight may still bring counts against the room too, so that
         * outstanding messages never pass max_outstanding_messages */
        size_t room = s->max_msgs - s->outstanding - s->asked;
        size_t share = room / (size_t)(s->max_pulls - s->pulls);
        size_t want = share ? share : 1;
        if (want > s->want_max)
            want = s->want_max;
        struct pull_slot *slot = s->slot;
        while (slot->want)
            slot++;
        slot->s = s;
        slot->want = want;
        s->asked += want;
        char *body = bp_xmalloc(64);
        int blen = snprintf(body, 64, "{\"maxMessages\":%zu}", want);
        s->pulls++;
        /* Pub/Sub holds an empty pull about 90 s before it answers {}: the timeout leaves it
         * that long and a margin, or every idle pull would end as a failed attempt */
        if (bp_api_call_capped(s->api, "POST", s->pull_url, "application/json", body,
                               (size_t)blen, 100000, s->reply_cap, pull_done, slot) != 0) {
            /* nothing started and done will not run: try again after a backoff, never in a
             * loop here */
            s->pulls--;
            s->asked -= want;
            slot->want = 0;
            free(body);
            back_off(s);
            return;
        }
    }
}

static void
ps_resume(struct bp_source *bs)
{
    start_pulls((struct source_pubsub *)bs);
}

/* Drain: no more pulls; queued acks go out now. */
static void
ps_stop(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    s->stopped = 1;
    ev_timer_stop(bp_rt_loop(s->rt), &s->pull_timer);
    flush_ids(s);
}

static size_t
ps_outstanding(struct bp_source *bs)
{
    return ((struct source_pubsub *)bs)->outstanding;
}

/* Pulls and acknowledge / modifyAckDeadline calls still in flight: the drain waits for them, so
 * messages a late pull brings are nacked (not left to their lease) and every ack is out. */
static size_t
ps_in_flight(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    return s->q.n + (size_t)s->pulls;
}

/* Acknowledged messages whose acknowledge call has not been settled (confirmed, or given up). */
static size_t
ps_acks_unconfirmed(struct bp_source *bs)
{
    return ((struct source_pubsub *)bs)->q.acking;
}

/* Nacks every message still outstanding (drain timeout), then sends the queued ids. */
static void
ps_nack_all(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    for (size_t i = 0; i < s->mcap; i++)
        if (s->m[i].live) {
            idq_push(&s->nacks, s->m[i].ack_id, 0, 0);   /* redelivered at once, elsewhere */
            s->m[i].ack_id = NULL;
            free(s->m[i].msg_id);
            s->m[i].msg_id = NULL;
            s->m[i].live = 0;
            s->st.nacked++;
        }
    s->outstanding = s->outstanding_bytes = 0;
    flush_ids(s);
}

static void
ps_stats(struct bp_source *bs, struct bp_source_stats *out)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    *out = s->st;
    out->ack_rejected = s->q.rejected;
    out->outstanding_bytes = s->outstanding_bytes;
}

static int
ps_start(struct bp_source *bs, char *err, size_t errlen)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    (void)err;
    (void)errlen;
    s->q.loop = bp_rt_loop(s->rt);
    ev_timer_start(bp_rt_loop(s->rt), &s->ack_timer);
    ev_timer_start(bp_rt_loop(s->rt), &s->lease_timer);
    start_pulls(s);
    return 0;
}

static void
ps_destroy(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    if (!s)
        return;
    struct ev_loop *loop = bp_rt_loop(s->rt);
    ev_timer_stop(loop, &s->ack_timer);
    ev_timer_stop(loop, &s->lease_timer);
    ev_timer_stop(loop, &s->pull_timer);
    for (size_t i = 0; i < s->mcap; i++) {
        free(s->m[i].ack_id);
        free(s->m[i].msg_id);
    }
    free(s->m);
    for (size_t i = 0; i < s->acks.n; i++)
        free(s->acks.v[i].id);
    for (size_t i = 0; i < s->nacks.n; i++)
        free(s->nacks.v[i].id);
    /* calls still alive at exit (the API layer drops them without their callbacks) */
    while (s->q.head)
        bp_ps_call_settle(s->q.head);
    free(s->acks.v);
    free(s->nacks.v);
    free(s->pull_url);
    free(s->ack_url);
    free(s->modack_url);
    free(s->subscription);
    free(s);
}

static const struct bp_source_ops pubsub_ops = {
    .kind = "pubsub",
    .start = ps_start,
    .acked = ps_acked,
    .outstanding = ps_outstanding,
    .in_flight = ps_in_flight,
    .acks_unconfirmed = ps_acks_unconfirmed,
    .resume = ps_resume,
    .stop = ps_stop,
    .nack_all = ps_nack_all,
    .stats = ps_stats,
    .destroy = ps_destroy,
};

/* Pulls subscription ("projects/P/subscriptions/S") through api at base ("…/v1"); pulling
 * starts with ops->start. Returns the source, or NULL with err set. */
struct bp_source *
bp_source_pubsub_new(struct bp_rt *rt, struct bp_api *api, const char *base,
                     const char *subscription, char *err, size_t errlen)
{
    if (strncmp(subscription, "projects/", 9) != 0 || !strstr(subscription, "/subscriptions/")) {
        snprintf(err, errlen, "subscription '%s' is not projects/P/subscriptions/S",
                 subscription);
        return NULL;
    }
    const struct bp_config *c = bp_rt_config(rt);
    struct source_pubsub *s = bp_xcalloc(1, sizeof(*s));
    char url[2048];
    s->base.ops = &pubsub_ops;
    s->rt = rt;
    s->api = api;
    s->subscription = bp_xstrdup(subscription);
    snprintf(url, sizeof(url), "%s/%s:pull", base, subscription);
    s->pull_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s/%s:acknowledge", base, subscription);
    s->ack_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s/%s:modifyAckDeadline", base, subscription);
    s->modack_url = bp_xstrdup(url);
    s->q = (struct bp_ps_calls){ .api = api, .loop = bp_rt_loop(rt), .ack_url = s->ack_url,
                                 .modack_url = s->modack_url, .lease = bp_pubsub_lease_results,
                                 .owner = s };
    s->max_pulls = (int)c->pull_concurrency;
    s->max_msgs = (size_t)c->max_outstanding_messages;
    s->max_bytes = (size_t)c->max_outstanding_bytes;
    s->batch_max = (size_t)c->batch_messages;
    s->pull_max = s->want_max = (size_t)c->pull_max_messages;
    s->reply_cap = REPLY_BUDGET / (size_t)s->max_pulls;
    if (s->reply_cap < REPLY_MIN)
        s->reply_cap = REPLY_MIN;
    s->sub_deadline = 10.0;   /* the API's minimum: safe before we know the subscription's */
    s->lease = (double)c->lease_seconds;
    ev_timer_init(&s->ack_timer, on_ack_timer, 0.1, 0.1);
    s->ack_timer.data = s;
    ev_timer_init(&s->lease_timer, bp_pubsub_on_lease_timer, 1.0, 1.0);
    s->lease_timer.data = s;
    bp_backoff_init(&s->pull_backoff, 0.5, 30.0);
    ev_timer_init(&s->pull_timer, on_pull_timer, 0., 0.);
    s->pull_timer.data = s;
    return &s->base;
}
