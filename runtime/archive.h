/* archive.h - the raw archive: one open object per (type, hour folder), named
 * <prefix>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json, finished at a size, at an age, when
 * the open objects pass a budget in bytes (the largest first), or when flow control needs their
 * messages acked (the objects holding the most messages first). Late events join the open object
 * of their folder, so a folder gets one object per roll period however late its events are. */
#ifndef BP_ARCHIVE_H
#define BP_ARCHIVE_H

#include "ack.h"
#include "archive_seen.h"
#include "buf.h"
#include "store.h"

struct bp_archive_obj {
    const char *type;       /* interned by the archive */
    int32_t hour;
    uint32_t hash;
    struct bp_archive_obj *older, *newer;   /* open order: the oldest is finished first by age */
    struct bp_archive_obj *cls_prev, *cls_next;     /* its size class's list, in the order
                                                     * objects entered the class */
    size_t cls;             /* its size class (bytes / 256, capped) */
    unsigned long long seq; /* open order */
    struct bp_object *obj;  /* the store's object; NULL while every byte is still pending */
    char *pending;          /* lines not yet written to the store (stores that write as they go) */
    size_t npending, pending_cap;
    size_t bytes;           /* every byte of the object: written + pending */
    unsigned long lines;
    double opened_at;       /* monotonic time (never the wall clock: ages) */
    double opened_wall;     /* wall time, for the name's stamp */
    uint32_t *slots;        /* ack slot per line (BP_ACK_NONE ones are not kept): few_slots
                             * until they outgrow it */
    size_t nslots, slots_cap;
    uint64_t *ids;          /* hash of each line's message id (dedup on; lines without an id
                             * are not kept), remembered once the object is stored */
    size_t nids, ids_cap;
    struct bp_archive *owner;               /* while finishing: whose counters the answer updates */
    uint32_t few_slots[4];  /* most objects of a backfill hold a line or two: no allocation */
};

/* One entry of the table of open objects: the key's hash and hour beside the object, so a probe
 * that misses (a backfill's new folder, most of its lines) reads no object. */
struct bp_archive_slot {
    uint32_t hash;
    int32_t hour;
    struct bp_archive_obj *obj;     /* NULL: empty */
};

struct bp_archive_params {
    const char *prefix;     /* "" or "output" */
    size_t roll_bytes;      /* an object is finished at this size */
    double roll_seconds;    /* ... at this age */
    size_t budget_bytes;    /* open objects' bytes (+ a small cost each) beyond which the
                             * largest are finished; 0 = no budget */
    size_t max_files;       /* stores that write as objects grow: objects with a file open at
                             * once (smaller objects are kept as pending bytes, no file) */
    size_t dedup_ids;       /* message ids of lines in stored objects remembered, so that a
                             * redelivered message is not archived again; 0 = off */
};


struct bp_archive {
    struct bp_store *store;
    struct bp_ack *ack;
    size_t in_flight;       /* objects finishing (uploads), not answered */
    char *prefix;
    size_t roll_bytes;
    double roll_seconds;
    size_t budget;
    size_t max_files;
    int write_through;      /* the store keeps objects in memory: nothing pending here */
    struct bp_archive_slot *buckets;        /* open addressing, linear probing */
    size_t nbuckets;        /* a power of two, at least twice nopen */
    struct bp_archive_obj *oldest, *newest;
    struct bp_archive_obj *finishing;       /* handed to the store, not answered (linked by
                                             * older/newer): freed by bp_archive_free */
    struct bp_archive_obj *last;            /* the object the last line went to */
    size_t nopen;
    size_t nfiles;          /* open objects holding a store object (a file, locally) */
    size_t open_bytes;      /* charged bytes of open objects (bp_archive_open_bytes) */
    size_t held;            /* ack slots in open objects */
    size_t held_finishing;  /* ack slots in objects being stored */
    size_t bytes_finishing; /* bytes of objects being stored (uploads hold them in memory) */
    char **types;           /* interned type names (a few) */
    size_t ntypes;
    struct bp_archive_obj **scratch;        /* for sorting the open objects */
    size_t scratch_cap;
    unsigned long objects_done;
    unsigned long lines_done;
    unsigned long long bytes_done;      /* bytes of stored objects (metrics) */
    unsigned long failures;
    void (*fatal)(void *owner, const char *why);   /* the store refused an object for good */
    void *fatal_owner;
    unsigned long by_budget;        /* objects finished because the budget was full */
    unsigned long by_pressure;      /* ... because flow control needed their acks */
    int discard;            /* replay without --archive: lines are dropped, not archived */
    struct bp_archive_obj **class_head, **class_tail;  /* BP_ARCHIVE_SIZE_CLASSES lists of the
                             * open objects by size class, kept as they grow, so a full budget
                             * takes the largest without a pass over the rest */
    unsigned long long opened_seq;  /* objects opened so far */
    double stamp_sec;       /* the second whose name stamp is in stamp (-1: none yet) */
    char stamp[16];
    bp_buf_t line;          /* a payload's line when it is not its own (archive_line.h) */
    unsigned long lines_compacted;  /* multi-line JSON made one line */
    unsigned long lines_raw;        /* payloads carried base64-encoded in a marker line */
    struct bp_seen seen;            /* ids of lines already stored */
    unsigned long dedup_skipped;    /* redelivered lines not archived again */
};

/* Size classes of the budget's choice (archive.c): 256-byte steps, the last for all past 256 KB. */
#define BP_ARCHIVE_SIZE_CLASSES 1024

/* Per open object, on top of its bytes, in the budget: its bookkeeping. */
#define BP_ARCHIVE_OBJ_COST 256

void bp_archive_init(struct bp_archive *a, struct bp_store *store, struct bp_ack *ack,
                     const struct bp_archive_params *p);
void bp_archive_on_fatal(struct bp_archive *a, void (*fn)(void *owner, const char *why),
                        void *owner);
void bp_archive_free(struct bp_archive *a);
int bp_archive_add(struct bp_archive *a, const char *type, int32_t hour, const char *id,
                   size_t id_len, const char *payload, size_t len, uint32_t slot,
                   double now) BP_WUR;
int bp_archive_seen(const struct bp_archive *a, const char *id, size_t id_len);
int bp_archive_tick(struct bp_archive *a, double now) BP_WUR;
int bp_archive_finish_all(struct bp_archive *a) BP_WUR;
int bp_archive_roll_older(struct bp_archive *a, double now, double min_age) BP_WUR;
int bp_archive_release(struct bp_archive *a, double now, size_t messages, size_t keep,
                       double min_age) BP_WUR;
size_t bp_archive_open_bytes(const struct bp_archive *a);
/* Recounts the open objects (bytes, slots, size class lists, the table) against the running
 * totals: 0 when they agree, -1 when not. O(open objects): for tests. */
int bp_archive_check(const struct bp_archive *a);
/* "<prefix>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json" into out (outlen bytes, always
 * terminated): hour is YYYYMMDDHH, wall the time the object was opened (archive_name.c). */
void bp_archive_object_name(char *out, size_t outlen, const char *prefix, const char *type,
                            int32_t hour, double wall);
/* The same name with its 14-digit stamp given (an open object keeps its stamp). */
void bp_archive_object_name_at(char *out, size_t outlen, const char *prefix, const char *type,
                               int32_t hour, const char *stamp);

#endif
