/* archive_seen.c - the set of message ids of stored archive lines (archive_seen.h). */
#include "archive_seen.h"

#include <stdint.h>
#include <stdlib.h>

/* See archive_seen.h. */
void
bp_seen_init(struct bp_seen *s, size_t cap)
{
    s->ring = NULL;
    s->index = NULL;
    s->cap = cap;
    s->n = s->head = s->nindex = 0;
    if (!cap)
        return;
    s->nindex = 64;
    while (s->nindex < 2 * cap)
        s->nindex *= 2;
    s->ring = bp_xcalloc(cap, sizeof(*s->ring));
    s->index = bp_xcalloc(s->nindex, sizeof(*s->index));
}

/* See archive_seen.h. NULL-safe. */
void
bp_seen_free(struct bp_seen *s)
{
    if (!s)
        return;
    free(s->ring);
    free(s->index);
    bp_seen_init(s, 0);
}

/* 64-bit FNV-1a of the id, finished by murmur3's 64-bit mixer. The set keeps hashes, not ids, so
 * its memory is fixed; a new id matches one of 10^5 stored hashes by chance with a probability
 * of 5 x 10^-15. */
uint64_t
bp_seen_hash(const char *id, size_t len)
{
    uint64_t h = bp_fnv64(id, len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* The index slot holding ring position pos, or of h when pos is SIZE_MAX (0 when absent). */
static size_t
find(const struct bp_seen *s, uint64_t h, size_t pos, int *found)
{
    size_t mask = s->nindex - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = s->index[i];
        if (!e) {
            *found = 0;
            return i;
        }
        if (pos == SIZE_MAX ? s->ring[e - 1] == h : (size_t)(e - 1) == pos) {
            *found = 1;
            return i;
        }
    }
}

/* Empties index slot i, moving back the entries after it that probed past it. */
static void
remove_at(struct bp_seen *s, size_t i)
{
    size_t mask = s->nindex - 1;
    for (size_t j = (i + 1) & mask; s->index[j]; j = (j + 1) & mask) {
        size_t home = (size_t)s->ring[s->index[j] - 1] & mask;
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        s->index[i] = s->index[j];
        i = j;
    }
    s->index[i] = 0;
}

/* Remembers h; past cap the oldest hash is forgotten. A set of cap 0 remembers nothing. */
void
bp_seen_add(struct bp_seen *s, uint64_t h)
{
    if (!s->cap)
        return;
    int found;
    size_t i = find(s, h, SIZE_MAX, &found);
    if (found)
        return;
    if (s->n == s->cap) {
        size_t old = find(s, s->ring[s->head], s->head, &found);
        if (found)
            remove_at(s, old);
        s->n--;
        i = find(s, h, SIZE_MAX, &found);
    }
    s->ring[s->head] = h;
    s->index[i] = (uint32_t)s->head + 1;
    s->head = (s->head + 1) % s->cap;
    s->n++;
}

/* Whether h is among the hashes remembered. */
int
bp_seen_has(const struct bp_seen *s, uint64_t h)
{
    int found = 0;
    if (s->cap)
        (void)find(s, h, SIZE_MAX, &found);
    return found;
}
