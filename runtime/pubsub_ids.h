/* pubsub_ids.h - the acknowledge / modifyAckDeadline calls of the Pub/Sub source
 * (source_pubsub.c), in pubsub_ids.c: each call keeps its ids until it is settled, so a refused
 * request can be split (a bounded number of times) or sent again, exactly-once delivery's per-id
 * results are read, a failed acknowledge goes again while its ids stay leased, and a lease
 * extension tells its owner what became of each id. A private header of those two files. */
#ifndef BP_PUBSUB_IDS_H
#define BP_PUBSUB_IDS_H

#include <ev.h>

#include "api.h"

#define ACK_IDS_PER_CALL 2500    /* ackIds are <= 164 B; 2500 stays under the 512 KiB limit */

enum { BP_PS_ACK, BP_PS_NACK, BP_PS_MODACK };

/* What became of an id of a lease extension: _OK, its new deadline counts from when it was
 * sent; _AGAIN, the next tick extends it again (a failed extension is repeated within a second,
 * not a lease later); _REFUSED, the server refuses that id for good: it is not extended again
 * (its message, if any, is redelivered when the lease ends). */
enum { BP_PS_LEASE_OK, BP_PS_LEASE_AGAIN, BP_PS_LEASE_REFUSED };

struct bp_ps_qid {               /* a queued ack or nack id (owned) */
    char *id;
    double deadline;             /* ack: monotonic end of its lease */
    int secs;                    /* nack: the deadline to ask for */
};

struct bp_ps_call;
struct split_family;

/* The calls of one subscription, embedded in its source. */
struct bp_ps_calls {
    struct bp_api *api;
    struct ev_loop *loop;
    const char *ack_url, *modack_url;    /* the source's, outliving the calls */
    struct bp_ps_call *head;     /* the calls not yet settled */
    size_t n;
    unsigned long serial;
    unsigned long rejected;      /* ack ids the server refused (dropped; redelivered) */
    size_t acking;               /* ids in acknowledge calls not yet settled (flow control) */
    double split_tokens, split_at;   /* the bucket of split calls (pubsub_ids.c) */
    /* a lease extension's outcome, out[k] (BP_PS_LEASE_*) for ids[k], before it is settled */
    void (*lease)(void *owner, struct bp_ps_call *c, const uint8_t *out);
    void *owner;
};

/* One acknowledge / modifyAckDeadline call. Its ids are kept (owned) until it is settled: a
 * request the server refuses can be split or repeated without the ids it rejects, and the
 * lease of an acknowledge's ids is extended until the server confirmed it. */
struct bp_ps_call {
    struct bp_ps_calls *q;
    int kind;                    /* BP_PS_ACK, _NACK or _MODACK */
    int deadline;                /* ackDeadlineSeconds; -1 for acknowledge */
    char **ids;
    size_t n;
    unsigned long serial;
    /* acknowledge: its ids' lease, kept until the server confirmed the ack */
    double lease_end;            /* monotonic */
    double ext_at;               /* an extension of it was sent then (0 none, HUGE_VAL never) */
    int rounds;                  /* rounds that failed after all their attempts */
    ev_timer again;              /* the wait before the next round */
    struct split_family *family; /* the refused request this call is a part of, or NULL */
    /* lease extension: what it extends, to record the new deadline when it succeeded */
    uint32_t *slots, *gens;      /* live messages (n of each), or NULL */
    unsigned long of_ack;        /* the acknowledge whose ids these are (serial), or 0 */
    double sent_at;
    struct bp_ps_call *prev, *next;    /* q's calls not yet settled */
};

/* A new call of kind (deadline: ackDeadlineSeconds, -1 for an acknowledge) for ids[0..n)
 * (taken), on q's list until it is settled. Not sent yet: the caller may fill in what it
 * extends (slots, gens, of_ack) or its lease_end first. */
struct bp_ps_call *bp_ps_call_new(struct bp_ps_calls *q, int kind, int deadline, char **ids,
                                  size_t n);
/* Sends c; from then on it settles itself (done, given up, or could not start). */
void bp_ps_call_send(struct bp_ps_call *c);
/* Takes c off its list and frees it (without its outcome: exit only, or from pubsub_ids.c). */
void bp_ps_call_settle(struct bp_ps_call *c);
/* Sends the ids of v[0..n) (taken) as calls of kind, ACK_IDS_PER_CALL per call; an
 * acknowledge's lease is the earliest of its ids'. */
void bp_ps_send_ids(struct bp_ps_calls *q, int kind, int deadline, const struct bp_ps_qid *v,
                    size_t n);

#endif
