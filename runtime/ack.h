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

#endif
