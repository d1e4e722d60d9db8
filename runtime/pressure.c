/* pressure.c - one place for the thresholds at which the sinks' backlog slows the sources and
 * hurries the archive: files are read only while the sinks keep up (a file has no flow control of
 * its own), and archive objects are finished early when their messages hold flow control.
 *
 * Flow control and the archive: a message is acked only once its archive object is stored, and
 * pulling pauses at max_outstanding_messages, so messages parked in open objects hold pulling
 * back. Past RELEASE_FILL of the limit, the archive is asked to send messages on their way to be
 * acked, down to RELEASE_LOW of the limit, taking the objects that hold the most messages first:
 * the current hours' objects, which fill again at once. Open objects may keep up to RELEASE_KEEP
 * of the limit: a late folder's few messages stay until roll_seconds (one object per late folder,
 * not one per late event) as long as all late folders together fit in it, and the current hours
 * always have the rest of the window, so late data cannot starve them. The archive's bytes are
 * bounded by its own budget (archive.max_open_bytes, archive.c).
 *
 * Finished objects of a cloud store wait in memory for an upload slot (archive.max_uploads,
 * store_cloud.c). Flow control alone bounds them only by max_outstanding_messages, and a
 * backfill spread over years makes an object per event or two: once the waiting objects' bytes
 * (plus QUEUED_OBJ_COST each) pass QUEUE_SHARE of the archive's budget, the queue is full and
 * every source pauses, Pub/Sub's pulls included (leases are still extended), until uploads
 * bring it back under. */
#include "rt.h"

/* More requests than this in flight and a file source waits. */
#define SINK_REQUESTS_MAX 32
/* Outstanding messages (fractions of max_outstanding_messages) at which the archive releases
 * messages, down to which, and how many open objects may keep. */
#define RELEASE_FILL 0.5
#define RELEASE_LOW 0.25
#define RELEASE_KEEP 0.5
/* Share of max_outstanding_bytes that open archive objects may hold. */
#define RELEASE_BYTES 0.75
/* Objects younger than this are left alone: their messages just arrived, and uploading every
 * tick would make an object per tick. */
#define RELEASE_MIN_AGE 0.5
/* What an object waiting for its upload holds besides its bytes: the upload call, its names, the
 * archive's record of it and its ack slots, and the allocator's slack on each (~1 KB measured
 * on a backfill of one-line objects). */
#define QUEUED_OBJ_COST 1024
/* Share of archive.max_open_bytes that objects waiting for their upload may hold before sources
 * pause. Every message waits in an open or a finished object until stored, so with
 * max_outstanding_messages spread events this share is what keeps the objects held at once
 * (and the peak RSS) well below one per outstanding message: a quarter (8 MB by default) let a
 * 300,000-event backfill peak at <= 60 MB, a half at 64.5 MB. */
#define QUEUE_SHARE 0.25
/* Open objects (a fraction of max_outstanding_messages) past which the archive finishes them.
 * RELEASE_KEEP lets late folders keep half the window in open objects until roll_seconds; live
 * data has a few hundred late folders at once, but a backfill spread over years opens one per
 * event or two, so that half of the window (~15,000 messages, each ~1.3 KB of RSS held by the
 * source until acked, plus each object's own record) sat in open objects beside a full upload
 * queue: a 300,000-event backfill peaked at 66-68 MB. Past this many open objects, the ones
 * holding most messages go (down to half), the queue fills, pulling pauses with fewer messages
 * outstanding; pulling also waits while more are open (they are finished on the next tick once
 * RELEASE_MIN_AGE old). Counting objects rather than lowering RELEASE_KEEP leaves live late folders
 * (objects per folder) alone; lowering max_outstanding_messages would cost live throughput. */
#define OPEN_OBJ_SHARE 0.125
/* ... but never fewer than this: a small window holds little memory anyway, and an ordinary
 * corpus's late folders (tens of them) must not pause pulling or be finished early. */
#define OPEN_OBJ_MIN 256

/* Whether the objects a cloud store holds until uploaded fill their share of the budget. */
static int
queue_full(const struct bp_rt *rt)
{
    const struct bp_archive *a = &rt->archive;
    return rt->store->ops->objects_in_memory &&
           (double)(a->bytes_finishing + a->in_flight * QUEUED_OBJ_COST) >
               QUEUE_SHARE * (double)a->budget;
}

/* The open objects past which the fullest are finished (OPEN_OBJ_SHARE). */
static size_t
open_cap(const struct bp_rt *rt)
{
    size_t cap = (size_t)(OPEN_OBJ_SHARE * (double)rt->cfg.max_outstanding_messages);
    return cap < OPEN_OBJ_MIN ? OPEN_OBJ_MIN : cap;
}

/* Whether pulling should wait: too many archive objects are open (the tick finishes the older
 * ones), the upload queue is full, or a destination refuses for now (a table or the bucket
 * answering 403/404, held and probed with a growing backoff): new messages would only wait
 * beside the held ones, their leases extended, so the backlog stays in Pub/Sub. */
static int
pull_blocked(const struct bp_rt *rt)
{
    if (rt->archive.nopen > open_cap(rt) || queue_full(rt) ||
        bp_batches_paused(&rt->tables) != NULL)
        return 1;
    return !rt->cfg.local_out && rt->store && bp_store_cloud_refusing(rt->store) != NULL;
}

/* Whether a source with flow control of its own (Pub/Sub) should stop pulling for now
 * (pull_blocked). The source looks again as its messages are acked; the tick
 * (bp_rt_pressure_tick) resumes it should nothing be acked. O(1). */
int
bp_rt_pull_paused(struct bp_rt *rt)
{
    if (!pull_blocked(rt))
        return 0;
    if (!rt->pulls_paused)
        rt->pull_pauses++;
    rt->pulls_paused = 1;
    return 1;
}

/* Called every tick: a source paused by bp_rt_pull_paused resumes once nothing blocks it. */
void
bp_rt_pressure_tick(struct bp_rt *rt)
{
    if (rt->pulls_paused && !pull_blocked(rt)) {
        rt->pulls_paused = 0;
        if (rt->source && rt->source->ops->resume && !rt->draining)
            rt->source->ops->resume(rt->source);
    }
}

/* Reads the sinks' and the source's backlog into out. Cheap: called per file chunk and per
 * tick. */
void
bp_rt_pressure(struct bp_rt *rt, struct bp_pressure *out)
{
    const struct bp_config *c = &rt->cfg;
    const struct bp_archive *a = &rt->archive;
    size_t outstanding = rt->source && rt->source->ops->outstanding
                             ? rt->source->ops->outstanding(rt->source) : 0;
    double max = (double)c->max_outstanding_messages;

    /* uploads hold their objects' bytes until answered: a file read faster than they go
     * waits once they hold their share of the archive's budget */
    out->sinks_busy = rt->tables.in_flight + a->in_flight > SINK_REQUESTS_MAX || queue_full(rt) ||
                      bp_batches_paused(&rt->tables) != NULL || bp_rt_deferred(rt);
    out->roll_age = (double)c->roll_seconds;
    out->release_messages = 0;
    out->release_keep = (size_t)(RELEASE_KEEP * max);
    out->release_age = RELEASE_MIN_AGE;
    if ((double)outstanding >= RELEASE_FILL * max)
        out->release_messages = outstanding - (size_t)(RELEASE_LOW * max);
    /* many open objects (a spread backfill): finish the fullest until half the cap is left */
    size_t max_open = open_cap(rt);
    if (outstanding && a->held && a->nopen > max_open) {
        size_t keep = (size_t)((double)a->held * (double)max_open / 2 / (double)a->nopen);
        out->release_messages = a->held_finishing + a->held;
        if (keep < out->release_keep)
            out->release_keep = keep;
    }
    /* pulling also pauses at max_outstanding_bytes: open objects may hold at most
     * RELEASE_BYTES of it (with the defaults the archive's own budget is below that, and this
     * never fires); messages stand in for bytes */
    size_t open = bp_archive_open_bytes(a);
    size_t cap = (size_t)(RELEASE_BYTES * (double)c->max_outstanding_bytes);
    if (outstanding && a->held && open > cap) {
        size_t keep = (size_t)((double)a->held * (double)cap / 2 / (double)open);
        if (out->release_messages < a->held)
            out->release_messages = a->held;
        if (keep < out->release_keep)
            out->release_keep = keep;
    }
}
