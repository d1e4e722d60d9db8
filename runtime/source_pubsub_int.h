/* source_pubsub_int.h - the Pub/Sub source's state, shared by its two files: source_pubsub.c
 * (pulls, flow control, acknowledges) and source_pubsub_lease.c (lease extension and the
 * deadline a nack asks for). Nothing else includes it: the source's interface is source.h. */
#ifndef BP_SOURCE_PUBSUB_INT_H
#define BP_SOURCE_PUBSUB_INT_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "pubsub_ids.h"
#include "source.h"
#include "timefmt.h"

/* A lease is extended when less than half of it is left, and at least LEASE_MARGIN s (3 s
 * into the subscription's first lease of 10 s), so a stalled or failed extension has time to
 * be repeated: one not answered within EXTEND_AGAIN s (more than one attempt's timeout) is
 * sent again alongside. */
#define LEASE_MARGIN 7.0
#define EXTEND_AGAIN 4.0
/* A nack asks for redelivery after NACK_MIN s, doubling per delivery attempt (Pub/Sub's
 * deliveryAttempt when the subscription has a dead-letter policy, else the source's run of
 * failures) up to NACK_MAX s (the API's maximum deadline), so an outage is not a redelivery
 * storm. Shutdown nacks ask for 0: another worker takes the messages at once. */
#define NACK_MIN 10.0
#define NACK_MAX 600.0
/* Nacks per message id, for subscriptions without a dead-letter policy (no deliveryAttempt): in
 * a partial outage (one table failing while the others ack) the rounds since the last ack start
 * again at every ack, so the failing table's messages need their own count to back off. A fixed
 * table indexed by the id's hash: a collision only makes one message's next nack shorter. */
#define NACK_SEEN 4096
struct nack_seen {
    uint64_t id_hash;
    uint32_t nacks;
};

struct pmsg {
    char *ack_id;
    size_t bytes;
    double deadline;             /* monotonic time the current lease ends */
    double pulled_at;            /* monotonic time of the pull reply: ack latency (metrics) */
    uint32_t gen;                /* admissions into this slot: a lease extension's answer
                                  * finds its message by (slot, gen) */
    int attempt;                 /* Pub/Sub's deliveryAttempt, 0 when not known */
    uint64_t id_hash;            /* of its message id: its nacks are counted by it (nack_seen) */
    double ext_at;               /* monotonic time an extension was sent: 0 none in flight,
                                  * HUGE_VAL the server refuses this id (never again) */
    char *msg_id;                /* its message id, kept only when bp_rt_wants_acked_ids */
    uint8_t live;
    uint8_t extended;            /* the lease is ours (s->lease), not the subscription's */
};

struct idq {
    struct bp_ps_qid *v;
    size_t n, cap;
};

struct source_pubsub;

/* A pull in flight and the messages it asked for (they count against flow control until it
 * answers); a free slot asks for 0. */
struct pull_slot {
    struct source_pubsub *s;
    size_t want;
};

struct source_pubsub {
    struct bp_source base;
    struct bp_rt *rt;
    struct bp_api *api;
    char *subscription;
    char *pull_url, *ack_url, *modack_url;
    int pulls, max_pulls;
    struct pull_slot slot[64];   /* source.pull_concurrency is at most 64 */
    size_t asked;                /* the sum of the slots' want */
    int stopped;
    size_t outstanding, outstanding_bytes;
    size_t max_msgs, max_bytes;
    struct pmsg *m;              /* by ack slot */
    size_t mcap;
    struct idq acks, nacks;
    struct bp_ps_calls q;        /* acknowledge / modifyAckDeadline calls not yet settled */
    double sub_deadline;         /* the subscription's ack deadline (first lease) */
    double lease;                /* seconds each extension asks for */
    ev_timer ack_timer, lease_timer;
    size_t batch_max;
    size_t pull_max;             /* source.pull_max_messages */
    size_t want_max;             /* maxMessages now: shrinks after a reply passed its cap */
    size_t reply_cap;            /* bytes one pull reply may take */
    struct bp_backoff pull_backoff;   /* over the pulls in a row that brought nothing */
    ev_timer pull_timer;         /* its wait */
    unsigned nack_run;           /* rounds of nacks since the last ack (nack backoff) */
    struct nack_seen nack_seen[NACK_SEEN];  /* nacks per message id (NACK_SEEN) */
    double nack_run_at;          /* monotonic time the current round began */
    struct bp_source_stats st;
    unsigned mono_iter;          /* the loop iteration mono was read in */
    double mono;
};

/* Monotonic time, read once per loop iteration: a pull reply admits hundreds of messages and a
 * finished batch acks hundreds, each wanting the time for the ack latency metric (a clock read
 * each was 0.5% of the CPU end to end); an iteration's span is far below the metric's buckets. */
static inline double
mono_now(struct source_pubsub *s)
{
    unsigned it = ev_iteration(bp_rt_loop(s->rt));
    if (it != s->mono_iter || s->mono == 0) {
        s->mono_iter = it;
        s->mono = bp_time_mono();
    }
    return s->mono;
}

/* The deadline (seconds) a nack of p asks for; counts the nack in s's backoff state. */
int bp_pubsub_nack_seconds(struct source_pubsub *s, const struct pmsg *p);
/* The api's lease callback (bp_ps_calls.lease): what became of each id of an extension. */
void bp_pubsub_lease_results(void *owner, struct bp_ps_call *c, const uint8_t *out);
/* The lease timer's callback (w->data is the source): extends the leases that end soon. */
void bp_pubsub_on_lease_timer(struct ev_loop *loop, ev_timer *w, int revents);

#endif
