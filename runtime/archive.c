/* archive.c - groups raw lines into archive objects. Lines arrive in any hour order (late events,
 * backfills), so any number of objects stay open, found by (type, hour) in a hash table. What
 * bounds them is a budget in bytes: the cloud store holds objects in memory until they are
 * uploaded; the local store writes them as they grow, and its bytes are counted alike, so a local
 * run makes the objects an upload would. When the budget is full the objects holding the most
 * bytes are finished (they free the most per object made); when flow control needs acks, those
 * holding the most messages (the current hours': a late folder's few messages stay until
 * roll_seconds, so it gets one object, not one per late event).
 *
 * A store that writes as objects grow (files) would need a descriptor per open object: here an
 * object's lines stay pending in memory until they pass PENDING_CHUNK, and only then get a file,
 * so only large objects hold one (at most max_files of them); small late folders cost no
 * descriptor until they are finished, and with every file taken the bytes stay pending, bounded
 * by the budget. */
#include "archive.h"
#include "archive_line.h"
#include "log.h"
#include "timefmt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pending bytes of an object past which they are written to its store object. */
#define PENDING_CHUNK (64 * 1024)
/* A full budget finishes objects down to this share of it, so one sort serves many lines. */
#define BUDGET_LOW 0.9

void
bp_archive_init(struct bp_archive *a, struct bp_store *store, struct bp_ack *ack,
                const struct bp_archive_params *p)
{
    memset(a, 0, sizeof(*a));
    a->store = store;
    a->ack = ack;
    a->prefix = bp_xstrdup(p->prefix ? p->prefix : "");
    a->roll_bytes = p->roll_bytes ? p->roll_bytes : 1;
    a->roll_seconds = p->roll_seconds;
    a->budget = p->budget_bytes;
    a->max_files = p->max_files ? p->max_files : 1;
    a->write_through = store->ops->objects_in_memory;
    /* a line re-encoded (archive_line.h): base64 of the largest message a line accepts */
    bp_buf_init(&a->line, 512 * 1024 * 1024);
    bp_seen_init(&a->seen, p->dedup_ids);
    a->stamp_sec = -1;
    a->nbuckets = 64;
    a->buckets = bp_xcalloc(a->nbuckets, sizeof(*a->buckets));
    a->class_head = bp_xcalloc(BP_ARCHIVE_SIZE_CLASSES, sizeof(*a->class_head));
    a->class_tail = bp_xcalloc(BP_ARCHIVE_SIZE_CLASSES, sizeof(*a->class_tail));
}

/* Who hears that the store refused an object for good (a missing bucket, no permission). */
void
bp_archive_on_fatal(struct bp_archive *a, void (*fn)(void *owner, const char *why), void *owner)
{
    a->fatal = fn;
    a->fatal_owner = owner;
}

static void
obj_free(struct bp_archive_obj *o)
{
    free(o->pending);
    if (o->slots != o->few_slots)
        free(o->slots);
    free(o->ids);
    free(o);
}

/* Objects still open are aborted and their messages nacked: callers finish them first
 * (bp_archive_finish_all) on drain. Objects handed to the store and not answered are freed and
 * their messages nacked too: the store must not answer them afterwards (at exit its calls end
 * without callbacks). */
void
bp_archive_free(struct bp_archive *a)
{
    if (!a)
        return;
    for (struct bp_archive_obj *o = a->oldest, *next; o; o = next) {
        next = o->newer;
        if (o->obj)
            a->store->ops->object_abort(o->obj);
        for (size_t k = 0; k < o->nslots; k++)
            bp_ack_done(a->ack, o->slots[k], 0);
        obj_free(o);
    }
    /* the store never answers these now (its calls end without callbacks at exit): their
     * messages are nacked like the open objects' */
    for (struct bp_archive_obj *o = a->finishing, *next; o; o = next) {
        next = o->newer;
        for (size_t k = 0; k < o->nslots; k++)
            bp_ack_done(a->ack, o->slots[k], 0);
        obj_free(o);
    }
    for (size_t i = 0; i < a->ntypes; i++)
        free(a->types[i]);
    free(a->types);
    free(a->buckets);
    free(a->class_head);
    free(a->class_tail);
    free(a->scratch);
    free(a->prefix);
    bp_buf_free(&a->line);
    bp_seen_free(&a->seen);
    memset(a, 0, sizeof(*a));
}

/* ---- the table of open objects: (type, hour) -> object ---- */

static uint32_t
key_hash(const char *type, int32_t hour)
{
    uint32_t h = 2166136261u;               /* FNV-1a over the type, then the hour mixed in */
    for (const unsigned char *p = (const unsigned char *)type; *p; p++)
        h = (h ^ *p) * 16777619u;
    h ^= (uint32_t)hour * 2654435761u;
    h ^= h >> 16;                           /* murmur3's finalizer: linear probing needs the low
                                             * bits to depend on every bit of the key */
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    return h ^ (h >> 16);
}

/* A backfill's line mostly opens a new folder: the probe ends at an empty slot without reading
 * any object (hash and hour are in the slot; the type only on a match). */
static struct bp_archive_obj *
lookup(const struct bp_archive *a, const char *type, int32_t hour, uint32_t h)
{
    size_t mask = a->nbuckets - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct bp_archive_slot *s = &a->buckets[i];
        if (!s->obj)
            return NULL;
        if (s->hash == h && s->hour == hour && strcmp(s->obj->type, type) == 0)
            return s->obj;
    }
}

static void
slot_put(struct bp_archive_slot *t, size_t n, uint32_t h, int32_t hour, struct bp_archive_obj *o)
{
    size_t i = h & (n - 1);
    while (t[i].obj)
        i = (i + 1) & (n - 1);
    t[i].hash = h;
    t[i].hour = hour;
    t[i].obj = o;
}

/* Doubles the table; slots carry their hashes, so no object is read. */
static void
table_grow(struct bp_archive *a)
{
    size_t n = a->nbuckets * 2;
    struct bp_archive_slot *t = bp_xcalloc(n, sizeof(*t));
    for (size_t i = 0; i < a->nbuckets; i++)
        if (a->buckets[i].obj)
            slot_put(t, n, a->buckets[i].hash, a->buckets[i].hour, a->buckets[i].obj);
    free(a->buckets);
    a->buckets = t;
    a->nbuckets = n;
}

/* Empties o's slot and moves back the entries after it that probed past it (linear probing's
 * deletion: no tombstones, so probes stay short however many objects came and went). */
static void
slot_remove(struct bp_archive *a, const struct bp_archive_obj *o)
{
    struct bp_archive_slot *t = a->buckets;
    size_t mask = a->nbuckets - 1, i = o->hash & mask;
    while (t[i].obj != o)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; t[j].obj; j = (j + 1) & mask) {
        size_t home = t[j].hash & mask;
        /* the entry at j stays when its home lies cyclically in (i, j] */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        t[i] = t[j];
        i = j;
    }
    t[i].obj = NULL;
}

static void
table_remove(struct bp_archive *a, struct bp_archive_obj *o)
{
    slot_remove(a, o);
    if (o->older)
        o->older->newer = o->newer;
    else
        a->oldest = o->newer;
    if (o->newer)
        o->newer->older = o->older;
    else
        a->newest = o->older;
    if (a->last == o)
        a->last = NULL;
}

/* Route names belong to the Lua host, which a reload replaces: objects keep a copy, one per
 * distinct name. */
static const char *
intern(struct bp_archive *a, const char *type)
{
    for (size_t i = 0; i < a->ntypes; i++)
        if (strcmp(a->types[i], type) == 0)
            return a->types[i];
    a->types = bp_xrealloc(a->types, (a->ntypes + 1) * sizeof(*a->types));
    a->types[a->ntypes] = bp_xstrdup(type);
    return a->types[a->ntypes++];
}

/* ---- store objects ---- */

static int
store_open(struct bp_archive *a, struct bp_archive_obj *o)
{
    char name[1024], err[512];
    /* objects opened in the same second share the stamp: one gmtime per second */
    double sec = floor(o->opened_wall);
    if (sec != a->stamp_sec) {
        bp_time_compact(sec, a->stamp);
        a->stamp_sec = sec;
    }
    bp_archive_object_name_at(name, sizeof(name), a->prefix, o->type, o->hour, a->stamp);
    o->obj = a->store->ops->object_open(a->store, name, err, sizeof(err));
    if (!o->obj) {
        bp_log(BP_LOG_ERROR, "archive", "cannot open %s: %s", name, err);
        a->failures++;
        return -1;
    }
    return 0;
}

static int
write_pending(struct bp_archive *a, struct bp_archive_obj *o)
{
    if (o->npending && a->store->ops->object_write(o->obj, o->pending, o->npending) != 0) {
        a->failures++;
        return -1;
    }
    o->npending = 0;
    return 0;
}

/* Whether a line of the message id is in an object already stored (within the last
 * archive.dedup_ids such lines). O(1). */
int
bp_archive_seen(const struct bp_archive *a, const char *id, size_t id_len)
{
    return a->seen.cap && id_len && bp_seen_has(&a->seen, bp_seen_hash(id, id_len));
}

/* The stored object o's message ids join the set. */
static void
remember_stored(struct bp_archive *a, const struct bp_archive_obj *o)
{
    if (a->seen.cap)
        for (size_t k = 0; k < o->nids; k++)
            bp_seen_add(&a->seen, o->ids[k]);
}

/* The store's answer for a finished object o (out of the table; it waits for the answer as its
 * own context, so finishing allocates nothing). */
static void
finish_done(void *arg, int status, const char *errmsg, const struct bp_row_error *errs,
            size_t nerrs)
{
    struct bp_archive_obj *o = arg;
    struct bp_archive *a = o->owner;
    (void)errs;
    (void)nerrs;
    if (o->older)
        o->older->newer = o->newer;
    else
        a->finishing = o->newer;
    if (o->newer)
        o->newer->older = o->older;
    a->in_flight--;
    a->held_finishing -= o->nslots;
    a->bytes_finishing -= o->bytes;
    if (status == 0) {
        a->objects_done++;
        a->lines_done += o->lines;
        a->bytes_done += o->bytes;
        remember_stored(a, o);
    } else {
        a->failures++;
        bp_log(BP_LOG_ERROR, "archive", "object of %lu lines not stored, their messages will be "
               "redelivered: %s", o->lines, errmsg ? errmsg : "error");
    }
    /* the bucket refuses for good: redelivering would only archive the same lines again and
     * again into uploads that fail, so the owner stops the pipeline */
    if (status == BP_STORE_PERMANENT && a->fatal)
        a->fatal(a->fatal_owner, errmsg ? errmsg : "refused");
    for (size_t k = 0; k < o->nslots; k++)
        bp_ack_done(a->ack, o->slots[k], status == 0);
    obj_free(o);
}

/* Size classes of the budget's choice: 256-byte steps, all objects past 256 KB in the last.
 * One class for every large object keeps the order they passed 256 KB among them: in a
 * time-ordered stream the previous hour's object, complete, goes before the current hour's,
 * still growing (finer classes up to 64 MB, largest first, made 79 objects for 34 folders of the
 * ordered corpus instead of 59). */
#define SIZE_CLASSES BP_ARCHIVE_SIZE_CLASSES
#define SIZE_STEP 256

static size_t
size_class(size_t bytes)
{
    size_t c = bytes / SIZE_STEP;
    return c < SIZE_CLASSES - 1 ? c : SIZE_CLASSES - 1;
}

/* o joins the list of its size class (by its bytes). Below 256 KB at its tail: within such a
 * class the object that reached it first is finished first (it stopped growing the longest
 * ago), and an object passes through hundreds of classes, so each move is O(1). The last class
 * stays in open order (the oldest messages first): an object enters it once, and it holds at
 * most budget / 256 KB objects, so the walk from its tail is short; finishing there by arrival
 * instead kept late folders' pending bytes longer (live corpus: peak RSS 56 MB instead of 43). */
static void
class_enter(struct bp_archive *a, struct bp_archive_obj *o)
{
    size_t c = o->cls = size_class(o->bytes);
    struct bp_archive_obj *prev = a->class_tail[c];
    if (c == SIZE_CLASSES - 1)
        while (prev && prev->seq > o->seq)
            prev = prev->cls_prev;
    o->cls_prev = prev;
    o->cls_next = prev ? prev->cls_next : a->class_head[c];
    if (prev)
        prev->cls_next = o;
    else
        a->class_head[c] = o;
    if (o->cls_next)
        o->cls_next->cls_prev = o;
    else
        a->class_tail[c] = o;
}

static void
class_leave(struct bp_archive *a, struct bp_archive_obj *o)
{
    if (o->cls_prev)
        o->cls_prev->cls_next = o->cls_next;
    else
        a->class_head[o->cls] = o->cls_next;
    if (o->cls_next)
        o->cls_next->cls_prev = o->cls_prev;
    else
        a->class_tail[o->cls] = o->cls_prev;
}

/* Takes o out of the table and hands it to the store; its messages' verdicts follow the
 * store's answer (now for local files, after the upload for the cloud). */
static int
finish(struct bp_archive *a, struct bp_archive_obj *o)
{
    table_remove(a, o);
    class_leave(a, o);
    a->nopen--;
    a->open_bytes -= o->bytes + BP_ARCHIVE_OBJ_COST;
    a->held -= o->nslots;
    if (o->obj)
        a->nfiles--;
    o->owner = a;
    o->older = NULL;
    o->newer = a->finishing;
    if (a->finishing)
        a->finishing->older = o;
    a->finishing = o;
    a->in_flight++;
    a->held_finishing += o->nslots;
    a->bytes_finishing += o->bytes;
    if ((!o->obj && store_open(a, o) != 0) || write_pending(a, o) != 0) {
        if (o->obj)
            a->store->ops->object_abort(o->obj);
        finish_done(o, -1, "the object could not be written", NULL, 0);
        return -1;
    }
    /* the bytes are the store's now: only the answer is awaited */
    free(o->pending);
    o->pending = NULL;
    o->pending_cap = 0;
    return a->store->ops->object_finish(o->obj, finish_done, o);
}

/* ---- choosing what to finish ---- */

/* The open objects in a->scratch (n of them), in open order. */
static size_t
collect(struct bp_archive *a)
{
    if (a->scratch_cap < a->nopen) {
        a->scratch_cap = a->nopen * 2;
        a->scratch = bp_xrealloc(a->scratch, a->scratch_cap * sizeof(*a->scratch));
    }
    size_t n = 0;
    for (struct bp_archive_obj *o = a->oldest; o; o = o->newer)
        a->scratch[n++] = o;
    return n;
}

static int
by_messages(const void *x, const void *y)
{
    const struct bp_archive_obj *p = *(struct bp_archive_obj *const *)x;
    const struct bp_archive_obj *q = *(struct bp_archive_obj *const *)y;
    if (p->nslots != q->nslots)
        return p->nslots > q->nslots ? -1 : 1;
    return (p->opened_at > q->opened_at) - (p->opened_at < q->opened_at);
}

/* The budget is full: finish the largest objects (within a size class in the order class_enter
 * keeps) until the open ones are back to BUDGET_LOW of it. The class lists give them without
 * looking at the smaller objects: a backfill holds tens of thousands of them, and a pass over
 * those on every full budget was most of the archive's own time. */
static int
over_budget(struct bp_archive *a)
{
    size_t low = (size_t)((double)a->budget * BUDGET_LOW);
    int rc = 0;
    for (size_t c = SIZE_CLASSES; c-- > 0 && a->open_bytes > low;)
        while (a->class_head[c] && a->open_bytes > low) {
            a->by_budget++;
            if (finish(a, a->class_head[c]) != 0)
                rc = -1;
        }
    return rc;
}

/* Finishes open objects at least min_age old, those holding the most messages first, until
 * `messages` ack slots are on their way to be stored (counting objects already being stored),
 * or until open objects hold no more than `keep`. Flow control calls it when outstanding
 * messages pile up: the current hours' objects hold thousands each and go first; a late
 * folder's few messages stay until roll_seconds while all of them together fit in keep.
 * Returns 0 or -1 when a store failed. */
int
bp_archive_release(struct bp_archive *a, double now, size_t messages, size_t keep,
                   double min_age)
{
    if (messages <= a->held_finishing || a->held <= keep)
        return 0;
    size_t n = collect(a), young = 0;
    for (size_t i = 0; i < n; i++)
        if (now - a->scratch[i]->opened_at < min_age)
            young += a->scratch[i]->nslots;
    /* objects too young to go do not count against keep: they are the current hours' */
    keep += young;
    qsort(a->scratch, n, sizeof(*a->scratch), by_messages);
    int rc = 0;
    /* a local store answers inside finish: what it freed no longer shows in held_finishing */
    size_t freed = a->held_finishing;
    for (size_t i = 0; i < n && freed < messages && a->held > keep; i++) {
        struct bp_archive_obj *o = a->scratch[i];
        if (o->nslots == 0)
            break;
        if (now - o->opened_at < min_age)
            continue;
        a->by_pressure++;
        freed += o->nslots;
        if (finish(a, o) != 0)
            rc = -1;
    }
    return rc;
}

/* A file for o's bytes (stores that write as objects grow). Past max_files, with a budget the
 * bytes stay pending: the budget bounds them as it bounds an upload's, and finishing a file's
 * object instead made an extra object of a current hour each time a late folder passed
 * PENDING_CHUNK (live corpus, 1M events: 783 objects for 508 folders). Without a budget the
 * largest object holding a file is finished to free it. */
static int
spill(struct bp_archive *a, struct bp_archive_obj *o)
{
    if (!o->obj) {
        if (a->nfiles >= a->max_files && a->budget)
            return 0;
        while (a->nfiles >= a->max_files) {
            struct bp_archive_obj *big = NULL;
            for (struct bp_archive_obj *p = a->oldest; p; p = p->newer)
                if (p->obj && (!big || p->bytes > big->bytes))
                    big = p;
            if (!big || finish(a, big) != 0)
                return -1;
        }
        if (store_open(a, o) != 0)
            return -1;
        a->nfiles++;
    }
    return write_pending(a, o);
}

static struct bp_archive_obj *
find_or_open(struct bp_archive *a, const char *type, int32_t hour, double now)
{
    struct bp_archive_obj *o = a->last;
    /* most lines go where the previous one went (the current hour of a busy type) */
    if (o && o->hour == hour && strcmp(o->type, type) == 0)
        return o;
    uint32_t h = key_hash(type, hour);
    o = lookup(a, type, hour, h);
    if (o)
        return a->last = o;
    o = bp_xcalloc(1, sizeof(*o));
    o->type = intern(a, type);
    o->hour = hour;
    o->hash = h;
    o->opened_at = now;
    o->seq = ++a->opened_seq;
    o->opened_wall = bp_time_now();
    if (a->write_through && store_open(a, o) != 0) {
        obj_free(o);
        return NULL;
    }
    if (2 * (a->nopen + 1) > a->nbuckets)
        table_grow(a);
    slot_put(a->buckets, a->nbuckets, h, hour, o);
    o->older = a->newest;
    if (a->newest)
        a->newest->newer = o;
    else
        a->oldest = o;
    a->newest = o;
    a->nopen++;
    a->nfiles += o->obj != NULL;
    a->open_bytes += BP_ARCHIVE_OBJ_COST;
    class_enter(a, o);
    return a->last = o;
}

static int
append_line(struct bp_archive *a, struct bp_archive_obj *o, const char *line, size_t len)
{
    if (a->write_through)
        return a->store->ops->object_write(o->obj, line, len) != 0 ||
               a->store->ops->object_write(o->obj, "\n", 1) != 0 ? -1 : 0;
    if (o->npending + len + 1 > o->pending_cap) {
        /* half again, not double: most late objects hold a few lines, and the budget counts
         * bytes, not the slack */
        size_t cap = o->pending_cap ? o->pending_cap + o->pending_cap / 2 : 256;
        if (cap < o->npending + len + 1)
            cap = o->npending + len + 1 + 128;
        o->pending = bp_xrealloc(o->pending, cap);
        o->pending_cap = cap;
    }
    memcpy(o->pending + o->npending, line, len);
    o->pending[o->npending + len] = '\n';
    o->npending += len + 1;
    return o->npending >= PENDING_CHUNK ? spill(a, o) : 0;
}

/* Appends the archive line of one message's payload (archive_line.h: the payload itself, or
 * compacted, or base64 in a marker line, so that the object keeps one record per line) to the
 * object of (type, hour); the slot gets one pending write, completed when the object is stored
 * (maybe inside this call, for a local store, when the line fills the object or the budget).
 * A message of an acked source (slot set) whose id (id_len > 0) is among the ids of lines
 * already stored (archive.dedup_ids) is a redelivery: nothing is written and the slot gets no
 * write. id_len 0 or no slot: always written.
 * Returns 0 or -1. */
int
bp_archive_add(struct bp_archive *a, const char *type, int32_t hour, const char *id,
               size_t id_len, const char *payload, size_t plen, uint32_t slot, double now)
{
    if (a->discard)
        return 0;   /* a replay: the line is already in the archive it came from */
    uint64_t idh = 0;
    /* only acked sources redeliver: a file's lines cost no hashing */
    int dedup = a->seen.cap && id_len && slot != BP_ACK_NONE;
    if (dedup) {
        idh = bp_seen_hash(id, id_len);
        if (bp_seen_has(&a->seen, idh)) {
            a->dedup_skipped++;
            return 0;
        }
    }
    const char *line = payload;
    size_t len = plen;
    int kind = bp_archive_line_encode(payload, plen, &a->line);
    if (kind < 0) {
        bp_log(BP_LOG_ERROR, "archive", "a payload of %zu bytes cannot be encoded as a line", plen);
        a->failures++;
        return -1;
    }
    if (kind != BP_LINE_AS_IS) {
        line = a->line.data;
        len = a->line.len;
        if (kind == BP_LINE_COMPACT)
            a->lines_compacted++;
        else
            a->lines_raw++;
    }
    struct bp_archive_obj *o = find_or_open(a, type, hour, now);
    if (!o)
        return -1;
    if (append_line(a, o, line, len) != 0) {
        a->failures++;
        return -1;
    }
    if (dedup) {
        if (o->nids == o->ids_cap) {
            o->ids_cap = o->ids_cap ? o->ids_cap * 2 : 4;
            o->ids = bp_xrealloc(o->ids, o->ids_cap * sizeof(*o->ids));
        }
        o->ids[o->nids++] = idh;
    }
    o->bytes += len + 1;
    if (size_class(o->bytes) != o->cls) {
        class_leave(a, o);
        class_enter(a, o);
    }
    a->open_bytes += len + 1;
    o->lines++;
    if (slot != BP_ACK_NONE) {
        if (o->nslots == o->slots_cap) {
            if (!o->slots_cap) {
                o->slots = o->few_slots;
                o->slots_cap = BP_ARRAY_LEN(o->few_slots);
            } else {
                uint32_t *old = o->slots == o->few_slots ? NULL : o->slots;
                o->slots = bp_xrealloc(old, o->slots_cap * 2 * sizeof(*o->slots));
                if (!old)
                    memcpy(o->slots, o->few_slots, sizeof(o->few_slots));
                o->slots_cap *= 2;
            }
        }
        o->slots[o->nslots++] = slot;
        a->held++;
        bp_ack_add(a->ack, slot, 1);
    }
    if (o->bytes >= a->roll_bytes)
        return finish(a, o);
    if (a->budget && a->open_bytes > a->budget)
        return over_budget(a);
    return 0;
}

/* Finishes objects older than roll_seconds. */
int
bp_archive_tick(struct bp_archive *a, double now)
{
    return bp_archive_roll_older(a, now, a->roll_seconds);
}

/* Finishes objects at least min_age old. The list is in open order, so this stops at the first
 * younger one. */
int
bp_archive_roll_older(struct bp_archive *a, double now, double min_age)
{
    int rc = 0;
    while (a->oldest && now - a->oldest->opened_at >= min_age)
        if (finish(a, a->oldest) != 0)
            rc = -1;
    return rc;
}

int
bp_archive_finish_all(struct bp_archive *a)
{
    int rc = 0;
    while (a->oldest)
        if (finish(a, a->oldest) != 0)
            rc = -1;
    return rc;
}

/* Bytes charged to open objects: their bytes plus BP_ARCHIVE_OBJ_COST each. O(1). */
size_t
bp_archive_open_bytes(const struct bp_archive *a)
{
    return a->open_bytes;
}

/* Recounts the open objects against the running totals (tests): every object in its table
 * slot and in the list of its size class, each list linked both ways. */
int
bp_archive_check(const struct bp_archive *a)
{
    size_t bytes = 0, held = 0, n = 0, files = 0, listed = 0, slots = 0;
    int ok = 1;
    for (const struct bp_archive_obj *o = a->oldest; o; o = o->newer) {
        bytes += o->bytes + BP_ARCHIVE_OBJ_COST;
        held += o->nslots;
        files += o->obj != NULL;
        ok &= o->cls == size_class(o->bytes) && lookup(a, o->type, o->hour, o->hash) == o;
        n++;
    }
    for (size_t c = 0; c < SIZE_CLASSES; c++) {
        const struct bp_archive_obj *prev = NULL;
        for (const struct bp_archive_obj *o = a->class_head[c]; o; prev = o, o = o->cls_next) {
            ok &= o->cls == c && o->cls_prev == prev &&
                  (c < SIZE_CLASSES - 1 || !prev || prev->seq < o->seq);
            listed++;
        }
        ok &= a->class_tail[c] == prev;
    }
    for (size_t i = 0; i < a->nbuckets; i++)
        slots += a->buckets[i].obj != NULL;
    ok &= bytes == a->open_bytes && held == a->held && n == a->nopen && files == a->nfiles &&
          listed == n && slots == n && 2 * n <= a->nbuckets;
    return ok ? 0 : -1;
}
