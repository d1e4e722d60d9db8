/* ack.h - the ack tracker: a message is acknowledged only when every destination it was sent
 * to has it. Each message holds a slot counting its pending writes; when the count reaches zero
 * the owner (the source) is told whether all of them succeeded, and acks or nacks it. */
#ifndef BP_ACK_H
#define BP_ACK_H

#include "common.h"

#define BP_ACK_NONE UINT32_MAX   /* a message nobody needs to hear about (file input) */

/* ok = 1 when every write succeeded. Runs from whatever completed the last write. */
typedef void (*bp_ack_fn)(void *owner, uint32_t slot, uint64_t cookie, int ok);

struct bp_ack_slot {
    uint64_t cookie;     /* the owner's handle for the message (index into its ack ids) */
    uint32_t pending;
    uint32_t next_free;
    uint8_t used;
    uint8_t failed;
};

struct bp_ack {
    struct bp_ack_slot *slots;
    uint32_t cap;
    uint32_t free_head;
    uint32_t used;
    bp_ack_fn fn;
    void *owner;
};

void bp_ack_init(struct bp_ack *a, bp_ack_fn fn, void *owner);
void bp_ack_free(struct bp_ack *a);
uint32_t bp_ack_new(struct bp_ack *a, uint64_t cookie);
void bp_ack_add(struct bp_ack *a, uint32_t slot, uint32_t writes);
void bp_ack_done(struct bp_ack *a, uint32_t slot, int ok);
uint32_t bp_ack_outstanding(const struct bp_ack *a);

/* ack_reply.c: the per-id results of an acknowledge / modifyAckDeadline request Pub/Sub refused
 * (exactly-once delivery's ErrorInfo metadata). */
enum { BP_ACKID_OK, BP_ACKID_PERMANENT, BP_ACKID_TRANSIENT };

/* Reads the refused request's answer body (len bytes, not NUL-terminated) and sets out[k] for
 * ids[k]: BP_ACKID_OK when the metadata does not name it, BP_ACKID_TRANSIENT for a value that
 * starts "TRANSIENT_" (send it again), BP_ACKID_PERMANENT for any other value. Returns how many
 * of the ids the metadata named: 0 when the answer carries no per-id results (a subscription
 * without exactly-once delivery: out is then all OK and means nothing), -1 when the body is not
 * JSON (out untouched). Pure: any thread, no allocation kept. */
int bp_ack_reply_verdicts(const char *body, size_t len, char *const *ids, size_t n,
                          uint8_t *out) BP_WUR;

#endif
