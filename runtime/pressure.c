/* pressure.c - one place for the thresholds at which the sinks' backlog slows the sources and
 * hurries the archive: files are read only while the sinks keep up (a file has no flow control of
 * its own), and archive objects are finished early when their messages hold flow control or their
 * bytes hold memory. */
#include "rt.h"

/* More requests than this in flight and a file source waits. */
#define SINK_REQUESTS_MAX 32
/* Flow control this full (outstanding messages, as a fraction) and objects roll at half a
 * second: their messages are acked only once the object is stored, and pulling waits for acks. */
#define ROLL_EARLY_FILL 0.5
#define ROLL_EARLY_AGE 0.5

/* Reads the sinks' and the source's backlog into out. Cheap: called per file chunk and per
 * tick. */
void
bp_rt_pressure(struct bp_rt *rt, struct bp_pressure *out)
{
    const struct bp_config *c = &rt->cfg;
    int in_memory = rt->store->ops->objects_in_memory;
    size_t open_bytes = bp_archive_open_bytes(&rt->archive);
    size_t outstanding = rt->source && rt->source->ops->outstanding
                             ? rt->source->ops->outstanding(rt->source) : 0;

    out->sinks_busy = rt->tables.in_flight + rt->archive.in_flight > SINK_REQUESTS_MAX ||
                      (in_memory && open_bytes > (size_t)c->max_outstanding_bytes);
    out->roll_age = (double)c->roll_seconds;
    if ((double)outstanding >= ROLL_EARLY_FILL * (double)c->max_outstanding_messages)
        out->roll_age = ROLL_EARLY_AGE;
    /* objects held in memory (cloud) are finished before they pass the byte budget, whatever
     * the source */
    if (in_memory && open_bytes > (size_t)c->max_outstanding_bytes / 2)
        out->roll_age = 0;
}
