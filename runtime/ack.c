/* ack.c - slots with a free list, so a message costs 24 bytes while in flight and nothing after.
 * A slot starts with one "hold" write that the dispatcher releases after it has handed the
 * message to every destination, so a destination that completes synchronously (local files)
 * cannot finish the message before its other destinations even got it. */
#include "ack.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

void
bp_ack_init(struct bp_ack *a, bp_ack_fn fn, void *owner)
{
    memset(a, 0, sizeof(*a));
    a->fn = fn;
    a->owner = owner;
    a->free_head = BP_ACK_NONE;
}

void
bp_ack_free(struct bp_ack *a)
{
    if (!a)
        return;
    free(a->slots);
    a->slots = NULL;
    a->cap = a->used = 0;
}

/* A new slot for a message, holding one pending write (the dispatcher's hold, released with
 * bp_ack_done once the message is handed to all its destinations). */
uint32_t
bp_ack_new(struct bp_ack *a, uint64_t cookie)
{
    if (a->free_head == BP_ACK_NONE) {
        uint32_t ncap = a->cap ? a->cap * 2 : 1024;
        a->slots = bp_xrealloc(a->slots, ncap * sizeof(*a->slots));
        for (uint32_t i = a->cap; i < ncap; i++) {
            a->slots[i].used = 0;
            a->slots[i].next_free = i + 1 < ncap ? i + 1 : BP_ACK_NONE;
        }
        a->free_head = a->cap;
        a->cap = ncap;
    }
    uint32_t s = a->free_head;
    struct bp_ack_slot *sl = &a->slots[s];
    a->free_head = sl->next_free;
    sl->cookie = cookie;
    sl->pending = 1;
    sl->failed = 0;
    sl->used = 1;
    a->used++;
    return s;
}

/* The message was handed to `writes` more destinations. */
void
bp_ack_add(struct bp_ack *a, uint32_t slot, uint32_t writes)
{
    if (slot == BP_ACK_NONE)
        return;
    a->slots[slot].pending += writes;
}

/* One destination finished (ok = stored). When it was the last, the owner hears the verdict and
 * the slot is reused. */
void
bp_ack_done(struct bp_ack *a, uint32_t slot, int ok)
{
    if (slot == BP_ACK_NONE)
        return;
    struct bp_ack_slot *sl = &a->slots[slot];
    if (!sl->used || sl->pending == 0) {
        bp_log(BP_LOG_ERROR, "ack", "slot %u completed twice (a bug): ignored", slot);
        return;
    }
    if (!ok)
        sl->failed = 1;
    if (--sl->pending)
        return;
    uint64_t cookie = sl->cookie;
    int all_ok = !sl->failed;
    sl->used = 0;
    sl->next_free = a->free_head;
    a->free_head = slot;
    a->used--;
    a->fn(a->owner, slot, cookie, all_ok);
}

/* Messages still in flight. */
uint32_t
bp_ack_outstanding(const struct bp_ack *a)
{
    return a->used;
}
