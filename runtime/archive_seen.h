/* archive_seen.h - a fixed-size set of 64-bit hashes of message ids: the ids of lines in stored
 * archive objects, the last `cap` of them (FIFO), so that a redelivered message is not archived
 * again (archive.dedup_ids). A ring of the hashes in the order they were added and an
 * open-addressing index into it (linear probing, backward-shift deletion): memory is fixed at
 * start, whatever the traffic, and every operation is O(1). */
#ifndef BP_ARCHIVE_SEEN_H
#define BP_ARCHIVE_SEEN_H

#include "common.h"

struct bp_seen {
    uint64_t *ring;         /* hashes in the order they were added */
    uint32_t *index;        /* ring position + 1; 0 = empty; nindex a power of two >= 2 cap */
    size_t cap, n, head, nindex;
};

/* cap 0: an empty set that remembers nothing (no memory). cap < 2^31. */
void bp_seen_init(struct bp_seen *s, size_t cap);
void bp_seen_free(struct bp_seen *s);
uint64_t bp_seen_hash(const char *id, size_t len);
int bp_seen_has(const struct bp_seen *s, uint64_t h);
void bp_seen_add(struct bp_seen *s, uint64_t h);

#endif
