/* archive.h - the raw archive: one open object per (type, hour folder), finished at a size or
 * an age, named <prefix>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json. */
#ifndef BP_ARCHIVE_H
#define BP_ARCHIVE_H

#include "ack.h"
#include "store.h"

struct bp_archive_obj {
    char *type;
    int32_t hour;
    struct bp_object *obj;
    size_t bytes;
    unsigned long lines;
    double opened_at;       /* loop time */
    uint32_t *slots;        /* ack slot per line (BP_ACK_NONE ones are not kept) */
    size_t nslots, slots_cap;
};

struct bp_archive {
    struct bp_store *store;
    struct bp_ack *ack;
    size_t in_flight;       /* objects finishing (uploads), not answered */
    char *prefix;           /* "" or "output" */
    size_t roll_bytes;
    double roll_seconds;
    size_t max_open;
    struct bp_archive_obj *open;
    size_t nopen;
    unsigned long objects_done;
    unsigned long lines_done;
    unsigned long long bytes_done;      /* bytes of stored objects (metrics) */
    unsigned long failures;
    void (*fatal)(void *owner, const char *why);   /* the store refused an object for good */
    void *fatal_owner;
};

void bp_archive_init(struct bp_archive *a, struct bp_store *store, struct bp_ack *ack,
                     const char *prefix, size_t roll_bytes, double roll_seconds, size_t max_open);
void bp_archive_on_fatal(struct bp_archive *a, void (*fn)(void *owner, const char *why),
                        void *owner);
void bp_archive_free(struct bp_archive *a);
int bp_archive_add(struct bp_archive *a, const char *type, int32_t hour, const char *line,
                   size_t len, uint32_t slot, double now) BP_WUR;
int bp_archive_tick(struct bp_archive *a, double now) BP_WUR;
int bp_archive_finish_all(struct bp_archive *a) BP_WUR;
int bp_archive_roll_older(struct bp_archive *a, double now, double min_age) BP_WUR;
size_t bp_archive_open_bytes(const struct bp_archive *a);
void bp_archive_object_name(char *out, size_t outlen, const char *prefix, const char *type,
                            int32_t hour, double wall);

#endif
