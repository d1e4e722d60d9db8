/* source_pubsub_lease.c - how long Pub/Sub keeps a message ours: lease extension with
 * modifyAckDeadline for every message not yet done and every acknowledge not yet confirmed,
 * and the deadline a nack asks for, growing with the failures so an outage is no redelivery
 * storm. The source's state is in source_pubsub_int.h; every duration is on the monotonic
 * clock. */
#include "log.h"
#include "source_pubsub_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The deadline a nack of p asks for: 0 while draining (another worker takes it at once), else
 * NACK_MIN doubling per delivery attempt (deliveryAttempt when Pub/Sub sends it, else the
 * rounds of nacks since the last ack: one round per NACK_MIN seconds of failures) up to
 * NACK_MAX. */
int
bp_pubsub_nack_seconds(struct source_pubsub *s, const struct pmsg *p)
{
    if (s->stopped || bp_rt_draining(s->rt))
        return 0;
    double now = mono_now(s);
    if (s->nack_run == 0 || now - s->nack_run_at >= NACK_MIN) {
        s->nack_run++;
        s->nack_run_at = now;
    }
    unsigned n = p->attempt > 1 ? (unsigned)p->attempt - 1 : 0;
    if (s->nack_run - 1 > n)
        n = s->nack_run - 1;
    struct nack_seen *e = p->id_hash ? &s->nack_seen[p->id_hash % NACK_SEEN] : NULL;
    if (e && e->id_hash != p->id_hash) {
        e->id_hash = p->id_hash;
        e->nacks = 0;
    }
    if (e && e->nacks > n)
        n = e->nacks;
    if (e && e->nacks < UINT32_MAX)
        e->nacks++;
    double secs = ldexp(NACK_MIN, n < 16 ? (int)n : 16);
    return (int)(secs < NACK_MAX ? secs : NACK_MAX);
}

/* What became of each id of a lease extension (see BP_PS_LEASE_OK...). */
void
bp_pubsub_lease_results(void *owner, struct bp_ps_call *c, const uint8_t *out)
{
    struct source_pubsub *s = owner;
    if (c->kind != BP_PS_MODACK)
        return;
    double until = c->sent_at + s->lease;
    int any_ok = 0, any_again = 0;
    for (size_t k = 0; k < c->n; k++) {
        any_ok |= out[k] == BP_PS_LEASE_OK;
        any_again |= out[k] == BP_PS_LEASE_AGAIN;
        struct pmsg *p = c->slots && c->slots[k] < s->mcap ? &s->m[c->slots[k]] : NULL;
        if (!p || !p->live || p->gen != c->gens[k])
            continue;   /* settled meanwhile (or the slot holds another message now) */
        p->ext_at = out[k] == BP_PS_LEASE_REFUSED ? HUGE_VAL : 0;
        if (out[k] == BP_PS_LEASE_OK && until > p->deadline) {
            p->deadline = until;   /* an older extension answering late never shortens it */
            p->extended = 1;
        }
    }
    for (struct bp_ps_call *a = c->of_ack ? s->q.head : NULL; a; a = a->next)
        if (a->serial == c->of_ack) {
            a->ext_at = !any_ok && !any_again ? HUGE_VAL : 0;
            if (any_ok && until > a->lease_end)
                a->lease_end = until;
            break;
        }
}

/* Copies of the ids of the live messages whose lease ends within LEASE_MARGIN, as lease
 * extension calls (ACK_IDS_PER_CALL each) that know their messages. */
static void
extend_live(struct source_pubsub *s, double now)
{
    struct bp_ps_call *c = NULL;
    for (size_t i = 0; i < s->mcap; i++) {
        struct pmsg *p = &s->m[i];
        double margin = p->extended && s->lease / 2 > LEASE_MARGIN ? s->lease / 2
                                                                   : LEASE_MARGIN;
        if (!p->live || (p->ext_at != 0 && now - p->ext_at < EXTEND_AGAIN) ||
            p->deadline - now >= margin)
            continue;
        if (!c) {
            c = bp_ps_call_new(&s->q, BP_PS_MODACK, (int)s->lease,
                               bp_xcalloc(ACK_IDS_PER_CALL, sizeof(char *)), 0);
            c->slots = bp_xcalloc(ACK_IDS_PER_CALL, sizeof(*c->slots));
            c->gens = bp_xcalloc(ACK_IDS_PER_CALL, sizeof(*c->gens));
        }
        c->ids[c->n] = bp_xstrdup(p->ack_id);
        c->slots[c->n] = (uint32_t)i;
        c->gens[c->n++] = p->gen;
        p->ext_at = now;
        s->st.extended++;
        if (c->n == ACK_IDS_PER_CALL) {
            bp_ps_call_send(c);
            c = NULL;
        }
    }
    if (c)
        bp_ps_call_send(c);
}

/* Every tick: extend the leases that end soon, of the messages in flight and of those whose
 * acknowledge the server has not confirmed yet (an ack that stalls or fails must not let the
 * lease lapse: the message would be delivered and processed again). */
void
bp_pubsub_on_lease_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct source_pubsub *s = w->data;
    (void)loop;
    (void)revents;
    double now = bp_time_mono();
    extend_live(s, now);
    for (struct bp_ps_call *a = s->q.head; a; a = a->next) {
        if (a->kind != BP_PS_ACK || (a->ext_at != 0 && now - a->ext_at < EXTEND_AGAIN) ||
            a->lease_end - now >= LEASE_MARGIN)
            continue;
        char **ids = bp_xcalloc(a->n, sizeof(*ids));
        for (size_t k = 0; k < a->n; k++)
            ids[k] = bp_xstrdup(a->ids[k]);
        /* new calls go to the head of the list: this walk does not meet them */
        struct bp_ps_call *c = bp_ps_call_new(&s->q, BP_PS_MODACK, (int)s->lease, ids, a->n);
        c->of_ack = a->serial;
        a->ext_at = now;
        s->st.extended += a->n;
        bp_ps_call_send(c);
    }
}
