/* archive.c - groups raw lines into archive objects. Lines arrive in any hour order (late events),
 * so several objects stay open; past max_open the least recently opened one is finished. */
#include "archive.h"
#include "log.h"
#include "timefmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
bp_archive_init(struct bp_archive *a, struct bp_store *store, struct bp_ack *ack,
                const char *prefix, size_t roll_bytes, double roll_seconds, size_t max_open)
{
    memset(a, 0, sizeof(*a));
    a->store = store;
    a->ack = ack;
    a->prefix = bp_xstrdup(prefix ? prefix : "");
    a->roll_bytes = roll_bytes;
    a->roll_seconds = roll_seconds;
    a->max_open = max_open ? max_open : 1;
    a->open = bp_xcalloc(a->max_open, sizeof(*a->open));
}

/* Objects still open are aborted: callers finish them first (bp_archive_finish_all) on drain. */
/* Who hears that the store refused an object for good (a missing bucket, no permission). */
void
bp_archive_on_fatal(struct bp_archive *a, void (*fn)(void *owner, const char *why), void *owner)
{
    a->fatal = fn;
    a->fatal_owner = owner;
}

void
bp_archive_free(struct bp_archive *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nopen; i++) {
        a->store->ops->object_abort(a->open[i].obj);
        for (size_t k = 0; k < a->open[i].nslots; k++)
            bp_ack_done(a->ack, a->open[i].slots[k], 0);
        free(a->open[i].slots);
        free(a->open[i].type);
    }
    free(a->open);
    free(a->prefix);
    a->open = NULL;
    a->nopen = 0;
}

/* "<prefix>/<type>/YYYY/MM/DD/HH/<type>_YYYYMMDDHHMMSS.json"; the stamp is the wall time the
 * object was opened, the folder the hour of the events in it. */
void
bp_archive_object_name(char *out, size_t outlen, const char *prefix, const char *type,
                       int32_t hour, double wall)
{
    char stamp[16];
    bp_time_compact(wall, stamp);
    int h = hour % 100, d = hour / 100 % 100, m = hour / 10000 % 100, y = hour / 1000000;
    snprintf(out, outlen, "%s%s%s/%04d/%02d/%02d/%02d/%s_%s.json", prefix, *prefix ? "/" : "",
             type, y, m, d, h, type, stamp);
}

struct finish_ctx {
    struct bp_archive *a;
    unsigned long lines;
    size_t bytes;
    uint32_t *slots;
    size_t nslots;
};

static void
finish_done(void *arg, int status, const char *errmsg, const struct bp_row_error *errs,
            size_t nerrs)
{
    struct finish_ctx *fc = arg;
    (void)errs;
    (void)nerrs;
    fc->a->in_flight--;
    if (status == 0) {
        fc->a->objects_done++;
        fc->a->lines_done += fc->lines;
        fc->a->bytes_done += fc->bytes;
    } else {
        fc->a->failures++;
        bp_log(BP_LOG_ERROR, "archive", "object of %lu lines not stored, their messages will be "
               "redelivered: %s", fc->lines, errmsg ? errmsg : "error");
    }
    /* the bucket refuses for good: redelivering would only archive the same lines again and
     * again into uploads that fail, so the owner stops the pipeline */
    if (status == BP_STORE_PERMANENT && fc->a->fatal)
        fc->a->fatal(fc->a->fatal_owner, errmsg ? errmsg : "refused");
    for (size_t k = 0; k < fc->nslots; k++)
        bp_ack_done(fc->a->ack, fc->slots[k], status == 0);
    free(fc->slots);
    free(fc);
}

static int
finish_at(struct bp_archive *a, size_t i)
{
    struct bp_archive_obj o = a->open[i];
    memmove(&a->open[i], &a->open[i + 1], (a->nopen - i - 1) * sizeof(*a->open));
    a->nopen--;
    struct finish_ctx *fc = bp_xcalloc(1, sizeof(*fc));
    fc->a = a;
    fc->lines = o.lines;
    fc->bytes = o.bytes;
    fc->slots = o.slots;
    fc->nslots = o.nslots;
    a->in_flight++;
    int rc = a->store->ops->object_finish(o.obj, finish_done, fc);
    free(o.type);
    return rc;
}

static int
find_or_open(struct bp_archive *a, const char *type, int32_t hour, double now)
{
    for (size_t i = 0; i < a->nopen; i++)
        if (a->open[i].hour == hour && strcmp(a->open[i].type, type) == 0)
            return (int)i;
    if (a->nopen == a->max_open && finish_at(a, 0) != 0)
        return -1;
    char name[1024], err[512];
    bp_archive_object_name(name, sizeof(name), a->prefix, type, hour, bp_time_now());
    struct bp_object *obj = a->store->ops->object_open(a->store, name, err, sizeof(err));
    if (!obj) {
        bp_log(BP_LOG_ERROR, "archive", "cannot open %s: %s", name, err);
        a->failures++;
        return -1;
    }
    struct bp_archive_obj *o = &a->open[a->nopen];
    memset(o, 0, sizeof(*o));
    o->type = bp_xstrdup(type);
    o->hour = hour;
    o->obj = obj;
    o->opened_at = now;
    return (int)a->nopen++;
}

/* Appends one raw line (without '\n') of the message in `slot` to the object of (type, hour);
 * the slot gets one pending write, completed when the object is stored. Returns 0 or -1. */
int
bp_archive_add(struct bp_archive *a, const char *type, int32_t hour, const char *line,
               size_t len, uint32_t slot, double now)
{
    int i = find_or_open(a, type, hour, now);
    if (i < 0)
        return -1;
    struct bp_archive_obj *o = &a->open[i];
    if (a->store->ops->object_write(o->obj, line, len) != 0 ||
        a->store->ops->object_write(o->obj, "\n", 1) != 0) {
        a->failures++;
        return -1;
    }
    o->bytes += len + 1;
    o->lines++;
    if (slot != BP_ACK_NONE) {
        if (o->nslots == o->slots_cap) {
            o->slots_cap = o->slots_cap ? o->slots_cap * 2 : 64;
            o->slots = bp_xrealloc(o->slots, o->slots_cap * sizeof(*o->slots));
        }
        o->slots[o->nslots++] = slot;
        bp_ack_add(a->ack, slot, 1);
    }
    if (o->bytes >= a->roll_bytes)
        return finish_at(a, (size_t)i);
    return 0;
}

/* Finishes objects older than roll_seconds. */
int
bp_archive_tick(struct bp_archive *a, double now)
{
    return bp_archive_roll_older(a, now, a->roll_seconds);
}

/* Finishes objects at least min_age old. Used with a short age under flow-control pressure:
 * messages are acked only once their object is stored, so objects held to roll_seconds would
 * cap throughput at max_outstanding_messages / roll_seconds. */
int
bp_archive_roll_older(struct bp_archive *a, double now, double min_age)
{
    int rc = 0;
    for (size_t i = 0; i < a->nopen;) {
        if (now - a->open[i].opened_at >= min_age) {
            if (finish_at(a, i) != 0)
                rc = -1;
        } else {
            i++;
        }
    }
    return rc;
}

int
bp_archive_finish_all(struct bp_archive *a)
{
    int rc = 0;
    while (a->nopen)
        if (finish_at(a, 0) != 0)
            rc = -1;
    return rc;
}

/* Bytes in objects still open. */
size_t
bp_archive_open_bytes(const struct bp_archive *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->nopen; i++)
        n += a->open[i].bytes;
    return n;
}
