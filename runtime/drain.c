/* drain.c - the end of a run, as a small state machine stepped by a 50 ms timer: stop the
 * source, flush every sink, wait for their answers, ack what was stored and nack the rest, wait
 * for those calls, leave the loop. Past drain_seconds whatever is still outstanding is nacked, so
 * Pub/Sub redelivers it soon instead of after its lease. */
#include "log.h"
#include "rt.h"
#include "store_write.h"
#include "timefmt.h"

static int
flush_all(struct bp_rt *rt)
{
    int rc = 0;
    if (bp_batches_flush_all(&rt->tables) != 0)
        rc = -1;
    if (bp_archive_finish_all(&rt->archive) != 0)
        rc = -1;
    return rc;
}

/* Everything written has been answered (stores, batches, archive uploads), and no message
 * waits for a later batch (rt_defer.c runs them, then flushes). */
static int
sinks_idle(struct bp_rt *rt)
{
    return bp_rt_deferred(rt) == 0 && bp_batches_held_rows(&rt->tables) == 0 &&
           rt->tables.in_flight == 0 && rt->archive.in_flight == 0 &&
           (!rt->store || rt->store->ops->pending(rt->store) == 0) &&
           (!rt->row_store || rt->row_store->ops->pending(rt->row_store) == 0);
}

static int
source_idle(struct bp_rt *rt)
{
    return !rt->source || !rt->source->ops->in_flight ||
           rt->source->ops->in_flight(rt->source) == 0;
}

static int
acks_unconfirmed(struct bp_rt *rt)
{
    return rt->source && rt->source->ops->acks_unconfirmed &&
           rt->source->ops->acks_unconfirmed(rt->source) != 0;
}

static void
on_drain_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    (void)w;
    (void)revents;
    int late = bp_time_mono() - rt->drain_started > rt->cfg.drain_seconds;
    switch (rt->drain_phase) {
    case BP_DRAIN_SINKS:
        /* a paused table keeps being tried (the sinks' tick is stopped): a refusal that passes
         * within drain_seconds costs nothing */
        if (bp_batches_held_rows(&rt->tables) && !late &&
            bp_batches_tick(&rt->tables, ev_now(loop)) != 0)
            rt->exit_code = 1;
        if (!sinks_idle(rt) && !late)
            return;
        /* exactly_once: the streams are finalized once their rows are all answered */
        if (!late && rt->row_store && bp_store_write_finalize(rt->row_store) > 0)
            return;
        /* answers may have queued more writes after the flush (a row refused by its table
         * dead-lettered, a refused dead letter set aside under quarantine/): flush again */
        if (!late && (bp_batches_buffered(&rt->tables) || rt->archive.nopen)) {
            if (flush_all(rt) != 0)
                rt->exit_code = 1;
            return;
        }
        if (!sinks_idle(rt)) {
            bp_log(BP_LOG_WARN, "main", "drain timeout: sinks still busy; nacking what is left");
            rt->exit_code = 1;
            bp_batches_nack_held(&rt->tables);
        }
        if (rt->source) {
            rt->source->ops->stop(rt->source);   /* flushes the acks queued meanwhile */
            if (rt->source->ops->nack_all)
                rt->source->ops->nack_all(rt->source);
        }
        rt->drain_phase = BP_DRAIN_ACKS;
        /* acknowledges get what is left of drain_seconds (5 s at least): one left unanswered
         * brings its messages back after their lease, past BigQuery's insertId window, to be
         * stored and archived again; the other calls (a pull may be a long-poll) get 5 s */
        rt->drain_acks_until = rt->drain_started + rt->cfg.drain_seconds;
        rt->drain_started = bp_time_mono() - rt->cfg.drain_seconds + 5.0;  /* 5 s for acks */
        if (rt->drain_acks_until < bp_time_mono() + 5.0)
            rt->drain_acks_until = bp_time_mono() + 5.0;
        return;
    case BP_DRAIN_ACKS:
        if (!source_idle(rt) && !late)
            return;
        if (acks_unconfirmed(rt) && bp_time_mono() < rt->drain_acks_until)
            return;
        rt->drain_phase = BP_DRAIN_DONE;
        ev_timer_stop(loop, &rt->drain_timer);
        ev_break(loop, EVBREAK_ALL);
        return;
    case BP_DRAIN_RUNNING:
    case BP_DRAIN_DONE:
        return;
    }
}

/* Stops reading and flushes every sink; the loop ends once they have answered and the acks
 * are out (at once for local files). Idempotent; safe from any callback on the loop. */
void
bp_rt_drain(struct bp_rt *rt, const char *why)
{
    if (rt->draining)
        return;
    rt->draining = 1;
    bp_log(BP_LOG_INFO, "main", "draining (%s)", why);
    if (rt->source)
        rt->source->ops->stop(rt->source);
    /* a store that fails at once (local disk) is fatal; cloud failures were answered by
     * nacks and redelivery, and are no reason for a failed exit */
    if (flush_all(rt) != 0)
        rt->exit_code = 1;
    ev_timer_stop(rt->loop, &rt->tick);
    ev_timer_stop(rt->loop, &rt->stats_timer);
    ev_signal_stop(rt->loop, &rt->sighup);
    rt->drain_phase = BP_DRAIN_SINKS;
    rt->drain_started = bp_time_mono();
    ev_timer_init(&rt->drain_timer, on_drain_timer, 0., 0.05);
    ev_timer_start(rt->loop, &rt->drain_timer);
}

/* Whether the runtime is draining (for sources). */
int
bp_rt_draining(const struct bp_rt *rt)
{
    return rt->draining;
}

/* The source has delivered everything it will (end of file). */
void
bp_rt_source_finished(struct bp_rt *rt)
{
    bp_rt_drain(rt, "end of input");
}

/* The source cannot go on: drain, exit non-zero. */
void
bp_rt_source_failed(struct bp_rt *rt, const char *why)
{
    rt->exit_code = 1;
    bp_rt_drain(rt, why);
}
