/* source_pubsub.c - events from a Pub/Sub subscription over REST: several pulls in flight, flow
 * control (outstanding messages and bytes) that pauses pulling, lease extension with
 * modifyAckDeadline for every message not yet done, batched acknowledge, nack (deadline 0) for
 * messages a destination failed and for what is left at shutdown.
 *
 * A message lives here from its pull to its verdict, indexed by its ack slot; its bytes do not:
 * they are decoded into a per-pull buffer, run through Lua and the sinks, and freed at once.
 * Pull replies are read with lua-cjson (pull_reply.c says why), base64 is decoded by OpenSSL. */
#include "api.h"
#include "json_out.h"
#include "log.h"
#include "pull_reply.h"
#include "rt.h"
#include "timefmt.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACK_IDS_PER_CALL 2500    /* ackIds are <= 164 B; 2500 stays under the 512 KiB limit */
#define LEASE_MARGIN 5.0         /* extend a lease this long before it runs out */

struct pmsg {
    char *ack_id;
    size_t bytes;
    double deadline;             /* wall time the current lease ends */
    int live;
};

struct idq {                     /* queued ack ids (owned strings) */
    char **v;
    size_t n, cap;
};

struct source_pubsub {
    struct bp_source base;
    struct bp_rt *rt;
    struct bp_api *api;
    char *pull_url, *ack_url, *modack_url;
    int pulls, max_pulls;
    int stopped;
    size_t outstanding, outstanding_bytes;
    size_t max_msgs, max_bytes;
    struct pmsg *m;              /* by ack slot */
    size_t mcap;
    struct idq acks, nacks;
    size_t calls;                /* acknowledge / modifyAckDeadline calls in flight */
    double sub_deadline;         /* the subscription's ack deadline (first lease) */
    double lease;                /* seconds each extension asks for */
    ev_timer ack_timer, lease_timer;
    size_t batch_max;
    size_t pull_max;
    unsigned long pulled, acked, nacked, extended;
};

static void start_pulls(struct source_pubsub *s);

static void
idq_push(struct idq *q, char *id)
{
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 256;
        q->v = bp_xrealloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->n++] = id;
}

struct ids_call {
    struct source_pubsub *s;
    const char *what;
    size_t n;
};

static void
ids_done(void *arg, const struct bp_http_result *res)
{
    struct ids_call *c = arg;
    c->s->calls--;
    if (res->status != 200)
        bp_log(BP_LOG_WARN, "pubsub", "%s of %zu messages failed (%ld %s); they will be "
               "redelivered", c->what, c->n, res->status, res->error ? res->error : "");
    free(c);
}

/* Sends up to ACK_IDS_PER_CALL ids of q per call: {"ackIds":[...]} (+ deadline for modacks). */
static void
send_ids(struct source_pubsub *s, struct idq *q, const char *url, int deadline, const char *what)
{
    size_t i = 0;
    while (i < q->n) {
        size_t end = q->n - i > ACK_IDS_PER_CALL ? i + ACK_IDS_PER_CALL : q->n;
        bp_buf_t b;
        bp_buf_init(&b, 1024 * 1024);   /* 2,500 ids of <= 164 B stay under the API's 512 KiB */
        int rc = bp_buf_append_str(&b, "{\"ackIds\":[");
        for (size_t k = i; k < end; k++) {
            if (k > i)
                rc |= bp_buf_append(&b, ",", 1);
            rc |= bp_json_string(&b, q->v[k], strlen(q->v[k]));
        }
        char tail[64];
        if (deadline >= 0)
            snprintf(tail, sizeof(tail), "],\"ackDeadlineSeconds\":%d}", deadline);
        else
            snprintf(tail, sizeof(tail), "]}");
        rc |= bp_buf_append_str(&b, tail);
        struct ids_call *c = bp_xcalloc(1, sizeof(*c));
        c->s = s;
        c->what = what;
        c->n = end - i;
        s->calls++;
        if (rc != 0 || bp_api_call(s->api, "POST", url, "application/json", NULL, b.data, b.len,
                                   60000, ids_done, c) != 0) {
            s->calls--;
            free(c);
            if (rc != 0)
                bp_buf_free(&b);
        }
        i = end;
    }
    for (size_t k = 0; k < q->n; k++)
        free(q->v[k]);
    q->n = 0;
}

static void
flush_ids(struct source_pubsub *s)
{
    if (s->acks.n)
        send_ids(s, &s->acks, s->ack_url, -1, "acknowledge");
    if (s->nacks.n)
        send_ids(s, &s->nacks, s->modack_url, 0, "nack");
}

static void
on_ack_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    flush_ids(w->data);
}

/* The ack tracker's verdict: queue an ack (all stored) or a nack (redeliver). */
static void
ps_acked(struct bp_source *bs, uint64_t slot, int ok)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    if (slot >= s->mcap || !s->m[slot].live)
        return;
    struct pmsg *p = &s->m[slot];
    idq_push(ok ? &s->acks : &s->nacks, p->ack_id);
    if (ok)
        s->acked++;
    else
        s->nacked++;
    p->ack_id = NULL;
    p->live = 0;
    s->outstanding--;
    s->outstanding_bytes -= p->bytes;
    if (s->acks.n >= ACK_IDS_PER_CALL)
        flush_ids(s);
    if (!s->stopped)
        start_pulls(s);
}

static void
on_lease_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct source_pubsub *s = w->data;
    (void)loop;
    (void)revents;
    double now = bp_time_now();
    struct idq q = { 0 };
    for (size_t i = 0; i < s->mcap; i++)
        if (s->m[i].live && s->m[i].deadline - now < LEASE_MARGIN) {
            idq_push(&q, bp_xstrdup(s->m[i].ack_id));
            s->m[i].deadline = now + s->lease;
        }
    if (q.n) {
        s->extended += q.n;
        send_ids(s, &q, s->modack_url, (int)s->lease, "modifyAckDeadline");
    }
    free(q.v);
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
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = digits(t, 4) - 1900;
    tm.tm_mon = digits(t + 5, 2) - 1;
    tm.tm_mday = digits(t + 8, 2);
    tm.tm_hour = digits(t + 11, 2);
    tm.tm_min = digits(t + 14, 2);
    tm.tm_sec = digits(t + 17, 2);
    if (tm.tm_year < 0 || tm.tm_mon < 0 || tm.tm_mday < 0 || tm.tm_hour < 0 || tm.tm_min < 0 ||
        tm.tm_sec < 0)
        return 0;
    double frac = 0, scale = 0.1;
    for (const char *p = t + 19 + (t[19] == '.'); t[19] == '.' && *p >= '0' && *p <= '9'; p++) {
        frac += (*p - '0') * scale;
        scale /= 10;
    }
    return (double)timegm(&tm) + frac;
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

/* Decodes base64 text into out (room for len / 4 * 3 + 3 bytes). Returns the length, or -1. */
static int
b64_decode(char *out, const char *in, size_t len)
{
    if (len == 0)
        return 0;
    if (len % 4 != 0)
        return -1;
    int n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the bytes of '=' padding as zeros */
    for (size_t p = len; p > 0 && in[p - 1] == '='; p--)
        n--;
    return n;
}

/* Turns one pull reply into messages and runs them through the pipeline in batches. */
static void
handle_pull(struct source_pubsub *s, const char *body, size_t len)
{
    struct bp_pull_reply reply;
    char err[512];
    if (bp_pull_reply_decode(&reply, s->rt->host, body, len, err, sizeof(err)) != 0) {
        bp_log(BP_LOG_ERROR, "pubsub", "%s; the messages will be redelivered", err);
        return;
    }
    size_t n = reply.n;
    bp_msg_t *msgs = bp_xcalloc(n ? n : 1, sizeof(*msgs));
    uint32_t *slots = bp_xcalloc(n ? n : 1, sizeof(*slots));
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += reply.msgs[i].data_b64_len / 4 * 3 + 3;
    char *raw = bp_xmalloc(total ? total : 1), *at = raw;
    double now = bp_time_now();
    for (size_t i = 0; i < n; i++) {
        const struct bp_pull_msg *pm = &reply.msgs[i];
        int out = b64_decode(at, pm->data_b64 ? pm->data_b64 : "", pm->data_b64_len);
        if (out < 0) {
            /* not base64: pass the text itself on, it is dead-lettered as unparseable */
            size_t keep = pm->data_b64_len < 1024 ? pm->data_b64_len : 1024;
            memcpy(at, pm->data_b64, keep);
            out = (int)keep;
        }
        uint32_t slot = bp_ack_new(&s->rt->ack, 0);
        ensure_slot(s, slot);
        struct pmsg *p = &s->m[slot];
        p->ack_id = bp_xstrndup(pm->ack_id, pm->ack_id_len);
        p->bytes = (size_t)out;
        p->deadline = now + s->sub_deadline;
        p->live = 1;
        s->outstanding++;
        s->outstanding_bytes += (size_t)out;
        s->pulled++;
        msgs[i].data = at;
        msgs[i].len = (size_t)out;
        msgs[i].id = pm->message_id ? pm->message_id : pm->ack_id;
        msgs[i].id_len = pm->message_id ? pm->message_id_len : pm->ack_id_len;
        msgs[i].publish_time = parse_rfc3339(pm->publish_time);
        msgs[i].attrs = pm->attrs;
        msgs[i].attrs_len = pm->attrs_len;
        slots[i] = slot;
        at += out;
    }
    int failed = 0;
    if (s->stopped) {
        /* draining: give them straight back */
        for (size_t i = 0; i < n; i++)
            bp_ack_done(&s->rt->ack, slots[i], 0);
    } else {
        for (size_t i = 0; i < n && !failed; i += s->batch_max) {
            size_t cnt = n - i < s->batch_max ? n - i : s->batch_max;
            if (bp_rt_process(s->rt, msgs + i, slots + i, cnt) != 0) {
                failed = 1;
                /* the rest never reached a destination */
                for (size_t j = i + cnt; j < n; j++)
                    bp_ack_done(&s->rt->ack, slots[j], 0);
            }
        }
    }
    free(raw);
    free(msgs);
    free(slots);
    bp_pull_reply_free(&reply);
    if (failed) {
        s->rt->exit_code = 1;
        bp_rt_drain(s->rt, "sink failure");
    }
}

static void
pull_done(void *arg, const struct bp_http_result *res)
{
    struct source_pubsub *s = arg;
    s->pulls--;
    if (res->status == 200 && !res->body_truncated)
        handle_pull(s, res->body, res->body_len);
    else
        bp_log(BP_LOG_ERROR, "pubsub", "pull failed after retries: %ld %.*s%s", res->status,
               (int)(res->body_len > 300 ? 300 : res->body_len), res->body,
               res->error ? res->error : "");
    if (!s->stopped)
        start_pulls(s);
    else
        flush_ids(s);   /* draining: the nacks of what this pull brought go out now */
}

/* Keeps max_pulls pulls in flight while flow control allows. */
static void
start_pulls(struct source_pubsub *s)
{
    while (!s->stopped && s->pulls < s->max_pulls && s->outstanding < s->max_msgs &&
           s->outstanding_bytes < s->max_bytes) {
        size_t room = s->max_msgs - s->outstanding;
        /* what earlier pulls may still bring counts against the room too */
        size_t want = room / (size_t)(s->max_pulls) ? room / (size_t)s->max_pulls : 1;
        if (want > s->pull_max)
            want = s->pull_max;
        char *body = bp_xmalloc(64);
        int blen = snprintf(body, 64, "{\"maxMessages\":%zu}", want);
        s->pulls++;
        if (bp_api_call(s->api, "POST", s->pull_url, "application/json", NULL, body,
                        (size_t)blen, 90000, pull_done, s) != 0) {
            s->pulls--;
            return;
        }
    }
}

static void
ps_pause(struct bp_source *bs)
{
    (void)bs;   /* flow control pauses by itself: no pull starts above the limits */
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
    flush_ids(s);
}

static size_t
ps_outstanding(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    return s->outstanding;
}

static void
ps_destroy(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    if (!s)
        return;
    ev_timer_stop(s->rt->loop, &s->ack_timer);
    ev_timer_stop(s->rt->loop, &s->lease_timer);
    for (size_t i = 0; i < s->mcap; i++)
        free(s->m[i].ack_id);
    free(s->m);
    for (size_t i = 0; i < s->acks.n; i++)
        free(s->acks.v[i]);
    for (size_t i = 0; i < s->nacks.n; i++)
        free(s->nacks.v[i]);
    free(s->acks.v);
    free(s->nacks.v);
    free(s->pull_url);
    free(s->ack_url);
    free(s->modack_url);
    free(s);
}

/* Nacks every message still outstanding (drain timeout), then sends the queued ids. */
void
bp_source_pubsub_nack_all(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    for (size_t i = 0; i < s->mcap; i++)
        if (s->m[i].live) {
            idq_push(&s->nacks, s->m[i].ack_id);
            s->m[i].ack_id = NULL;
            s->m[i].live = 0;
            s->nacked++;
        }
    s->outstanding = s->outstanding_bytes = 0;
    flush_ids(s);
}

/* Pulls and acknowledge / modifyAckDeadline calls still in flight: the drain waits for them, so
 * messages a late pull brings are nacked (not left to their lease) and every ack is out. */
size_t
bp_source_pubsub_calls(struct bp_source *bs)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    return s->calls + (size_t)s->pulls;
}

void
bp_source_pubsub_stats(struct bp_source *bs, unsigned long *pulled, unsigned long *acked,
                       unsigned long *nacked, unsigned long *extended)
{
    struct source_pubsub *s = (struct source_pubsub *)bs;
    *pulled = s->pulled;
    *acked = s->acked;
    *nacked = s->nacked;
    *extended = s->extended;
}

static const struct bp_source_ops pubsub_ops = {
    .kind = "pubsub",
    .acked = ps_acked,
    .outstanding = ps_outstanding,
    .pause = ps_pause,
    .resume = ps_resume,
    .stop = ps_stop,
    .destroy = ps_destroy,
};

/* Pulls subscription ("projects/P/subscriptions/S") through api at base ("…/v1"). */
struct bp_source *
bp_source_pubsub_new(struct bp_rt *rt, struct bp_api *api, const char *base,
                     const char *subscription, char *err, size_t errlen)
{
    if (strncmp(subscription, "projects/", 9) != 0 || !strstr(subscription, "/subscriptions/")) {
        snprintf(err, errlen, "subscription '%s' is not projects/P/subscriptions/S",
                 subscription);
        return NULL;
    }
    struct source_pubsub *s = bp_xcalloc(1, sizeof(*s));
    char url[2048];
    s->base.ops = &pubsub_ops;
    s->rt = rt;
    s->api = api;
    snprintf(url, sizeof(url), "%s/%s:pull", base, subscription);
    s->pull_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s/%s:acknowledge", base, subscription);
    s->ack_url = bp_xstrdup(url);
    snprintf(url, sizeof(url), "%s/%s:modifyAckDeadline", base, subscription);
    s->modack_url = bp_xstrdup(url);
    s->max_pulls = (int)rt->cfg.pull_concurrency;
    s->max_msgs = (size_t)rt->cfg.max_outstanding_messages;
    s->max_bytes = (size_t)rt->cfg.max_outstanding_bytes;
    s->batch_max = (size_t)rt->cfg.batch_messages;
    s->pull_max = (size_t)rt->cfg.pull_max_messages;
    s->sub_deadline = 10.0;   /* the API's minimum: safe before we know the subscription's */
    s->lease = (double)rt->cfg.lease_seconds;
    ev_timer_init(&s->ack_timer, on_ack_timer, 0.1, 0.1);
    s->ack_timer.data = s;
    ev_timer_start(rt->loop, &s->ack_timer);
    ev_timer_init(&s->lease_timer, on_lease_timer, 1.0, 1.0);
    s->lease_timer.data = s;
    ev_timer_start(rt->loop, &s->lease_timer);
    start_pulls(s);
    return &s->base;
}
