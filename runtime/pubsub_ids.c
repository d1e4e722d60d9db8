/* pubsub_ids.c - acknowledge / modifyAckDeadline calls (pubsub_ids.h): a refused request split
 * a bounded number of times, exactly-once delivery's per-id results, acknowledges repeated while
 * their ids stay leased, lease extensions reported per id to their owner (source_pubsub.c). */
#include "ack.h"
#include "json_out.h"
#include "log.h"
#include "pubsub_ids.h"
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One attempt of an acknowledge (or nack) and of a lease extension: well inside the lease that
 * is kept meanwhile, and a lease extension inside the source's margin (5 s), so a stalled one is
 * repeated (by the API layer's retries, then by the next lease tick) before the lease ends. */
#define ACK_TIMEOUT_MS 10000
#define MODACK_TIMEOUT_MS 3000
/* Rounds of an acknowledge that failed after all its attempts (timeouts, 5xx) before its ids
 * are given up (their messages are redelivered); the lease is kept in between. */
#define ACK_ROUNDS 8
/* Calls one refused (400) request may become while it is split to find the ids the server
 * refuses: enough for one bad id in 2,500 (2 x 12 halvings), never 2 x n for n bad ids. And
 * over all requests, split calls come from a bucket of SPLIT_BURST refilled at SPLIT_RATE a
 * second, so a server that refuses every id sees a few calls a second, not a storm. */
#define SPLIT_CALLS 32
/* An answer holds at most a result per id (ErrorInfo's metadata: the id and a reason of a few
 * dozen bytes) besides the error's text: past this it is cut off (a failed attempt). */
#define REPLY_BASE (64 * 1024)
#define REPLY_PER_ID 128
#define SPLIT_BURST 64.0
#define SPLIT_RATE 4.0

/* The calls a refused request was split into: a budget of calls, and one log line at the end
 * for every id the server refused. */
struct split_family {
    int calls_left;
    int refs;
    size_t ids, refused;
    const char *what;
};

static void on_again(struct ev_loop *loop, ev_timer *w, int revents);

/* Whether q's bucket holds the two calls of one more split (and takes them). */
static int
split_allowed(struct bp_ps_calls *q)
{
    double now = bp_time_mono();
    double t = q->split_at == 0 ? SPLIT_BURST
                                : q->split_tokens + (now - q->split_at) * SPLIT_RATE;
    q->split_tokens = t < SPLIT_BURST ? t : SPLIT_BURST;
    q->split_at = now;
    if (q->split_tokens < 2)
        return 0;
    q->split_tokens -= 2;
    return 1;
}

/* The same outcome for every id of c. */
static void
lease_extended(struct bp_ps_call *c, int outcome)
{
    if (c->kind != BP_PS_MODACK)
        return;
    uint8_t *out = bp_xcalloc(c->n ? c->n : 1, 1);
    memset(out, outcome, c->n);
    c->q->lease(c->q->owner, c, out);
    free(out);
}

static void
ids_free(char **ids, size_t n)
{
    for (size_t k = 0; k < n; k++)
        free(ids[k]);
    free(ids);
}

static const char *
call_what(const struct bp_ps_call *c)
{
    return c->kind == BP_PS_ACK ? "acknowledge" : c->kind == BP_PS_NACK ? "nack"
                                                                       : "modifyAckDeadline";
}

/* See pubsub_ids.h. */
struct bp_ps_call *
bp_ps_call_new(struct bp_ps_calls *q, int kind, int deadline, char **ids, size_t n)
{
    struct bp_ps_call *c = bp_xcalloc(1, sizeof(*c));
    c->q = q;
    c->kind = kind;
    c->deadline = deadline;
    c->ids = ids;
    c->n = n;
    c->serial = ++q->serial;
    if (kind == BP_PS_ACK)
        q->acking += n;
    ev_timer_init(&c->again, on_again, 0., 0.);
    c->again.data = c;
    c->next = q->head;
    if (q->head)
        q->head->prev = c;
    q->head = c;
    q->n++;
    return c;
}

static void
family_drop(struct split_family *f)
{
    if (!f || --f->refs > 0)
        return;
    if (f->refused) {
        /* one line per refused request, and repeats of it counted (log.h), not one per id */
        bp_log_rl(BP_LOG_WARN, "pubsub", f->what, "%s: the server refused ack ids: %zu of %zu "
                  "(HTTP 400); dropped, their messages (if any) are redelivered", f->what,
                  f->refused, f->ids);
    }
    free(f);
}

/* See pubsub_ids.h. */
void
bp_ps_call_settle(struct bp_ps_call *c)
{
    struct bp_ps_calls *q = c->q;
    if (c->prev)
        c->prev->next = c->next;
    else
        q->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    q->n--;
    if (c->kind == BP_PS_ACK)
        q->acking -= c->n;
    ev_timer_stop(q->loop, &c->again);
    family_drop(c->family);
    ids_free(c->ids, c->n);
    free(c->slots);
    free(c->gens);
    free(c);
}

/* Another call of the same kind for ids (taken) that c's ids were part of: same lease, same
 * family. */
static struct bp_ps_call *
call_child(struct bp_ps_call *c, char **ids, size_t n)
{
    struct bp_ps_call *k = bp_ps_call_new(c->q, c->kind, c->deadline, ids, n);
    k->lease_end = c->lease_end;
    k->rounds = c->rounds;
    k->family = c->family;
    if (k->family)
        k->family->refs++;
    return k;
}

/* A 400 (INVALID_ARGUMENT: an ack id the server does not know, a fake one from a hostile reply)
 * without per-id results fails the whole request: it is split in halves and each half sent
 * again, so the good ids get through in log2(n) rounds and a lone refused id is dropped (its
 * message, if there is one, is redelivered). The request's calls are bounded (SPLIT_CALLS):
 * when every id is refused, its ids are dropped after a few rounds, never 2n calls. */
static void
ids_split(struct bp_ps_call *c)
{
    struct bp_ps_calls *q = c->q;
    if (!c->family) {
        c->family = bp_xcalloc(1, sizeof(*c->family));
        *c->family = (struct split_family){ SPLIT_CALLS, 1, c->n, 0, call_what(c) };
    }
    if (c->n == 1 || c->family->calls_left < 2 || !split_allowed(q)) {
        q->rejected += c->n;
        c->family->refused += c->n;
        lease_extended(c, BP_PS_LEASE_REFUSED);
        bp_ps_call_settle(c);
        return;
    }
    c->family->calls_left -= 2;
    size_t half = c->n / 2;
    if (c->kind == BP_PS_ACK)
        q->acking -= c->n - half;   /* they move to the second half's call */
    char **rest = bp_xcalloc(c->n - half, sizeof(*rest));
    memcpy(rest, c->ids + half, (c->n - half) * sizeof(*rest));
    struct bp_ps_call *k = call_child(c, rest, c->n - half);
    k->sent_at = c->sent_at;
    k->of_ack = c->of_ack;
    if (c->slots) {
        k->slots = bp_xcalloc(k->n, sizeof(*k->slots));
        k->gens = bp_xcalloc(k->n, sizeof(*k->gens));
        memcpy(k->slots, c->slots + half, k->n * sizeof(*k->slots));
        memcpy(k->gens, c->gens + half, k->n * sizeof(*k->gens));
    }
    bp_ps_call_send(k);
    c->n = half;   /* c keeps the first half and goes again */
    bp_ps_call_send(c);
}

static void
on_again(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    bp_ps_call_send(w->data);
}

/* An acknowledge whose ids are still leased goes again after a wait (doubling, up to 30 s),
 * at most ACK_ROUNDS rounds; anything else is settled. Returns 1 when it will go again. */
static int
again_later(struct bp_ps_call *c)
{
    if (c->kind != BP_PS_ACK || ++c->rounds >= ACK_ROUNDS)
        return 0;
    double wait = ldexp(0.5, c->rounds);
    ev_timer_set(&c->again, wait < 30 ? wait : 30, 0.);
    ev_timer_start(c->q->loop, &c->again);
    return 1;
}

/* A refused request with per-id results (exactly-once delivery): the ids named transient go
 * again (an acknowledge, later; a lease extension at the next tick), those named permanent are
 * dropped, the others were done. */
static void
ids_verdicts(struct bp_ps_call *c, const uint8_t *v)
{
    struct bp_ps_calls *q = c->q;
    size_t nt = 0, np = 0;
    char **again = bp_xcalloc(c->n, sizeof(*again));
    for (size_t k = 0; k < c->n; k++) {
        if (v[k] == BP_ACKID_TRANSIENT) {
            again[nt++] = c->ids[k];
            c->ids[k] = NULL;
        } else if (v[k] == BP_ACKID_PERMANENT) {
            np++;
        }
    }
    if (np) {
        q->rejected += np;
        bp_log_rl(BP_LOG_WARN, "pubsub", "per-id", "%s: the server refused %zu of %zu ack ids "
                  "for good (exactly-once delivery: expired or unknown); dropped, their "
                  "messages are redelivered", call_what(c), np, c->n);
    }
    if (c->kind == BP_PS_MODACK) {
        uint8_t *out = bp_xcalloc(c->n ? c->n : 1, 1);
        for (size_t k = 0; k < c->n; k++)
            out[k] = v[k] == BP_ACKID_OK ? BP_PS_LEASE_OK
                     : v[k] == BP_ACKID_TRANSIENT ? BP_PS_LEASE_AGAIN : BP_PS_LEASE_REFUSED;
        c->q->lease(c->q->owner, c, out);
        free(out);
    }
    if (nt && c->kind == BP_PS_ACK) {
        struct bp_ps_call *k = call_child(c, again, nt);
        if (!again_later(k))
            bp_ps_call_settle(k);
    } else {
        ids_free(again, nt);
    }
}

static void
ids_done(void *arg, const struct bp_http_result *res)
{
    struct bp_ps_call *c = arg;
    if (res->status == 200) {
        lease_extended(c, BP_PS_LEASE_OK);
        bp_ps_call_settle(c);
        return;
    }
    if (res->status == 400 || res->status == 412) {
        uint8_t *v = bp_xcalloc(c->n ? c->n : 1, 1);
        int named = bp_ack_reply_verdicts(res->body, res->body_len, c->ids, c->n, v);
        if (named > 0)
            ids_verdicts(c, v);
        free(v);
        if (named > 0) {
            bp_ps_call_settle(c);
            return;
        }
        if (res->status == 400) {
            ids_split(c);
            return;
        }
    }
    if (c->kind == BP_PS_MODACK) {
        lease_extended(c, BP_PS_LEASE_AGAIN);
        bp_log_rl(BP_LOG_WARN, "pubsub", "modack-failed", "modifyAckDeadline of %zu messages "
                  "failed (%ld %s); it is repeated before their lease ends", c->n, res->status,
                  res->error ? res->error : "");
        bp_ps_call_settle(c);
        return;
    }
    if (bp_api_retryable(res) && again_later(c)) {
        bp_log_rl(BP_LOG_WARN, "pubsub", "ack-failed", "acknowledge of %zu messages failed "
                  "(%ld %s); their lease is kept and it goes again (round %d of %d)", c->n,
                  res->status, res->error ? res->error : "", c->rounds + 1, ACK_ROUNDS);
        return;
    }
    bp_log(BP_LOG_WARN, "pubsub", "%s of %zu messages failed (%ld %s); they will be "
           "redelivered", call_what(c), c->n, res->status, res->error ? res->error : "");
    bp_ps_call_settle(c);
}

/* See pubsub_ids.h: {"ackIds":[...]} (+ the deadline for modacks). A call that cannot be built
 * or started is settled (its messages are redelivered). */
void
bp_ps_call_send(struct bp_ps_call *c)
{
    struct bp_ps_calls *q = c->q;
    bp_buf_t b;
    bp_buf_init(&b, 1024 * 1024);   /* 2,500 ids of <= 164 B stay under the API's 512 KiB */
    int rc = bp_buf_append_str(&b, "{\"ackIds\":[");
    for (size_t k = 0; k < c->n; k++) {
        if (k)
            rc |= bp_buf_append(&b, ",", 1);
        rc |= bp_json_string(&b, c->ids[k], strlen(c->ids[k]));
    }
    char tail[64];
    if (c->deadline >= 0)
        snprintf(tail, sizeof(tail), "],\"ackDeadlineSeconds\":%d}", c->deadline);
    else
        snprintf(tail, sizeof(tail), "]}");
    rc |= bp_buf_append_str(&b, tail);
    size_t reply_max = REPLY_BASE + 2 * b.len + c->n * REPLY_PER_ID;
    if (rc != 0) {
        bp_log(BP_LOG_ERROR, "pubsub", "%s of %zu messages: out of memory; they will be "
               "redelivered", call_what(c), c->n);
        bp_buf_free(&b);
        lease_extended(c, BP_PS_LEASE_AGAIN);
        bp_ps_call_settle(c);
        return;
    }
    c->sent_at = bp_time_mono();
    if (bp_api_call_small(q->api, "POST", c->kind == BP_PS_ACK ? q->ack_url : q->modack_url,
                          "application/json", b.data, b.len,
                          c->kind == BP_PS_MODACK ? MODACK_TIMEOUT_MS : ACK_TIMEOUT_MS,
                          reply_max, ids_done, c) != 0) {
        /* nothing started: done will not run; the body was freed */
        bp_log(BP_LOG_ERROR, "pubsub", "%s of %zu messages could not start; they will be "
               "redelivered", call_what(c), c->n);
        lease_extended(c, BP_PS_LEASE_AGAIN);
        bp_ps_call_settle(c);
    }
}

/* See pubsub_ids.h. */
void
bp_ps_send_ids(struct bp_ps_calls *q, int kind, int deadline, const struct bp_ps_qid *v,
               size_t n)
{
    for (size_t i = 0; i < n; i += ACK_IDS_PER_CALL) {
        size_t cnt = n - i > ACK_IDS_PER_CALL ? ACK_IDS_PER_CALL : n - i;
        char **ids = bp_xcalloc(cnt, sizeof(*ids));
        double lease_end = v[i].deadline;
        for (size_t k = 0; k < cnt; k++) {
            ids[k] = v[i + k].id;
            if (v[i + k].deadline < lease_end)
                lease_end = v[i + k].deadline;
        }
        struct bp_ps_call *c = bp_ps_call_new(q, kind, deadline, ids, cnt);
        c->lease_end = lease_end;
        bp_ps_call_send(c);
    }
}

