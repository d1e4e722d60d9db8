/* rt_defer.c - messages whose batch ran out of time (lua.batch_budget_ms, watchdog.c) wait here
 * and run in later batches, each after the loop has had a turn: /healthz answers, leases are
 * extended, acks go out between two slices of a slow batch instead of after all of it.
 *
 * Sources lend their messages only for the bp_rt_process call, so what waits is copied (one
 * allocation per message; this happens only to batches that ran out of time, never on the fast
 * path). While anything waits, new batches queue behind it, so messages keep their order and a
 * source that calls bp_rt_process several times in one callback (a file chunk) does not hold
 * the loop either. Memory is bounded by the sources: Pub/Sub's flow control counts waiting
 * messages as outstanding, and file sources wait while bp_rt_sinks_busy (pressure.c) says so.
 * Loop thread only. */
#include "rt.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

struct bp_defer_msg {
    bp_msg_t m;            /* points into mem */
    uint32_t slot;
    char *mem;
};

/* A copy of m whose bytes live in one allocation (*mem). */
static void
copy_msg(struct bp_defer_msg *d, const bp_msg_t *m, uint32_t slot)
{
    size_t total = m->len + m->id_len + m->attrs_len + 1;
    char *p = bp_xmalloc(total);
    d->mem = p;
    d->m = *m;
    d->slot = slot;
    if (m->len)
        memcpy(p, m->data, m->len);
    d->m.data = p;
    p += m->len;
    if (m->id_len)
        memcpy(p, m->id, m->id_len);
    d->m.id = p;
    p += m->id_len;
    if (m->attrs && m->attrs_len)
        memcpy(p, m->attrs, m->attrs_len);
    d->m.attrs = m->attrs ? p : NULL;
}

/* Room for n more at the tail: the queue is v[head .. head + n). */
static void
reserve_tail(struct bp_defer *q, size_t n)
{
    if (q->head && q->head + q->n + n > q->cap) {
        memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
        q->head = 0;
    }
    if (q->head + q->n + n > q->cap) {
        size_t cap = q->cap ? q->cap : 256;
        while (cap < q->head + q->n + n)
            cap *= 2;
        q->v = bp_xrealloc(q->v, cap * sizeof(*q->v));
        q->cap = cap;
    }
}

static void on_defer(struct ev_loop *loop, ev_idle *w, int revents);

/* Copies msgs[0..n) (slots may be NULL) to wait for a later batch: at the queue's front when
 * front (the rest of a slice taken from it, which must keep its place), else at its tail. The
 * front has room: a slice was taken from there. Starts the timer that runs them. */
void
bp_rt_defer(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots, size_t n, int front)
{
    struct bp_defer *q = &rt->defer;
    if (!n)
        return;
    if (front && q->head >= n) {
        q->head -= n;
        for (size_t i = 0; i < n; i++)
            copy_msg(&q->v[q->head + i], &msgs[i], slots ? slots[i] : BP_ACK_NONE);
    } else {
        reserve_tail(q, n);
        for (size_t i = 0; i < n; i++)
            copy_msg(&q->v[q->head + q->n + i], &msgs[i], slots ? slots[i] : BP_ACK_NONE);
    }
    q->n += n;
    q->deferred += n;
    if (!ev_is_active(&q->idle)) {
        ev_idle_init(&q->idle, on_defer);
        ev_idle_start(rt->loop, &q->idle);
    }
}

/* Messages waiting for a later batch. */
size_t
bp_rt_deferred(const struct bp_rt *rt)
{
    return rt->defer.n;
}

/* One slice of the queue (at most source.batch_messages), from the loop once it has nothing
 * else to do (an idle watcher: a health check takes several iterations, accept, read, write,
 * and each would otherwise wait for a slice); again while messages wait. Once the queue is empty
 * during a drain, the sinks are flushed (the drain flushed them when it began, and the tick that
 * flushes by age is stopped). */
static void
on_defer(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct bp_rt *rt = ev_userdata(loop);
    struct bp_defer *q = &rt->defer;
    (void)w;
    (void)revents;
    size_t k = q->n < (size_t)rt->cfg.batch_messages ? q->n : (size_t)rt->cfg.batch_messages;
    bp_msg_t *msgs = bp_xmalloc(k * sizeof(*msgs));
    uint32_t *slots = bp_xmalloc(k * sizeof(*slots));
    char **mem = bp_xmalloc(k * sizeof(*mem));
    for (size_t i = 0; i < k; i++) {
        msgs[i] = q->v[q->head + i].m;
        slots[i] = q->v[q->head + i].slot;
        mem[i] = q->v[q->head + i].mem;
    }
    q->head += k;
    q->n -= k;
    if (!q->n)
        q->head = 0;
    q->running = 1;
    int rc = bp_rt_process(rt, msgs, slots, k);
    q->running = 0;
    for (size_t i = 0; i < k; i++)
        free(mem[i]);
    free(mem);
    free(slots);
    free(msgs);
    if (rc != 0) {
        bp_log(BP_LOG_ERROR, "main", "a sink failed; stopping");
        bp_rt_source_failed(rt, "sink failure");
    }
    if (!q->n)
        ev_idle_stop(loop, &q->idle);
    if (!q->n && rt->draining && (bp_batches_flush_all(&rt->tables) != 0 ||
                                  bp_archive_finish_all(&rt->archive) != 0))
        rt->exit_code = 1;
}

/* Whether bp_rt_process must queue a new batch behind the waiting ones (order), rather than
 * run it now. */
int
bp_rt_defer_first(const struct bp_rt *rt)
{
    return rt->defer.n && !rt->defer.running;
}

/* Frees what still waits (at exit: the drain nacked their messages or ran out of time). */
void
bp_rt_defer_free(struct bp_rt *rt)
{
    struct bp_defer *q = &rt->defer;
    if (rt->loop)
        ev_idle_stop(rt->loop, &q->idle);
    for (size_t i = 0; i < q->n; i++)
        free(q->v[q->head + i].mem);
    free(q->v);
    memset(q, 0, sizeof(*q));
}
