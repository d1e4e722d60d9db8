/* guard.c - the runtime's side of the script budgets: starts the watchdog with
 * the suspects file, screens each batch for suspects before Lua sees it, and tells the runtime
 * when the Lua state hit lua.memory_mb (it rebuilds the state). Loop thread only (the watchdog
 * thread lives in watchdog.c). */
#include "guard.h"
#include "log.h"
#include "quarantine.h"
#include "rt.h"
#include "timefmt.h"
#include "watchdog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bp_guard {
    struct bp_rt *rt;
    struct bp_quarantine *q;
    struct bp_watchdog *w;
    bp_msg_t *msgs;           /* a screened batch: the messages Lua may see */
    uint32_t *slots;
    size_t cap;
    double next_refresh;      /* loop time of the next look at the suspects file */
};

/* Opens the suspects file and starts the watchdog (lua.budget_ms > 0). A state_dir that cannot
 * be made is logged and the process runs on without suspects (a read-only file system must not
 * stop the pipeline); only a failed thread start is an error. Returns 0, or -1 with err set. */
int
bp_guard_start(struct bp_rt *rt, char *err, size_t errlen)
{
    char dir[4096], qerr[4200];
    struct bp_guard *g = bp_xcalloc(1, sizeof(*g));
    rt->guard = g;
    g->rt = rt;
    if (rt->cfg.state_dir)
        snprintf(dir, sizeof(dir), "%s", rt->cfg.state_dir);
    else
        bp_quarantine_default_dir(dir, sizeof(dir));
    g->q = bp_quarantine_open(dir, qerr, sizeof(qerr));
    if (!g->q)
        bp_log(BP_LOG_WARN, "lua", "no suspects file (%s): an event that makes the scripts "
               "overrun lua.hard_ms will stop every restart; set state_dir", qerr);
    else if (bp_quarantine_count(g->q))
        bp_log(BP_LOG_INFO, "lua", "%zu suspect messages in %s will be dead-lettered on sight",
               bp_quarantine_count(g->q), bp_quarantine_path(g->q));
    long hard = rt->cfg.lua_hard_ms ? rt->cfg.lua_hard_ms : rt->cfg.lua_budget_ms * 4;
    err[0] = '\0';
    g->w = bp_watchdog_new(rt->cfg.lua_budget_ms, hard, rt->cfg.lua_batch_budget_ms, g->q, err,
                           errlen);
    return !g->w && err[0] ? -1 : 0;
}

/* Stops the watchdog thread (before the host it watches is freed) and frees the rest.
 * NULL-safe. */
void
bp_guard_free(struct bp_guard *g)
{
    if (!g)
        return;
    bp_watchdog_free(g->w);
    bp_quarantine_free(g->q);
    free(g->msgs);
    free(g->slots);
    free(g);
}

/* Dead-letters the suspects of a batch before Lua runs it: messages that were delivered before
 * and never completed (see quarantine.c). When there are some, *msgs / *slots are pointed at a
 * copy without them. Returns the count left; *rc is -1 when a sink failed. Costs nothing while
 * the suspects file is empty. */
size_t
bp_guard_screen(struct bp_rt *rt, const bp_msg_t **msgs, const uint32_t **slots, size_t n, int *rc)
{
    struct bp_guard *g = rt->guard;
    *rc = 0;
    /* Pub/Sub's deliveryAttempt (a subscription with a dead-letter policy) belongs here too:
     * attempts = max(bp_quarantine_attempts, deliveryAttempt - 1), once bp_msg_t carries it. */
    if (!g)
        return n;
    /* records other workers (or our own hook) appended: at most once a second (monotonic: a
     * wall clock stepped back would stop the refresh for as long) */
    double now = bp_time_mono();
    if (g->q && now >= g->next_refresh) {
        g->next_refresh = now + 1.0;
        if (bp_quarantine_refresh(g->q) != 0)
            bp_log(BP_LOG_WARN, "lua", "%s: %s", bp_quarantine_path(g->q), strerror(errno));
    }
    if (bp_quarantine_count(g->q) == 0)
        return n;
    if (g->cap < n) {
        g->cap = n;
        g->msgs = bp_xrealloc(g->msgs, n * sizeof(*g->msgs));
        g->slots = bp_xrealloc(g->slots, n * sizeof(*g->slots));
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const bp_msg_t *m = &(*msgs)[i];
        uint32_t slot = *slots ? (*slots)[i] : BP_ACK_NONE;
        int attempts = bp_quarantine_attempts(g->q, m);
        if (!attempts) {
            g->msgs[kept] = *m;
            g->slots[kept++] = slot;
            continue;
        }
        char reason[256];
        snprintf(reason, sizeof(reason), "delivered %d times without completing: the scripts "
                 "overran their time budget on it (lua.budget_ms; suspects file %s)", attempts,
                 bp_quarantine_path(g->q));
        bp_log(BP_LOG_WARN, "lua", "message %.*s: %s", (int)m->id_len, m->id, reason);
        rt->stats.read++;   /* bp_rt_process counts only what Lua sees */
        int drc = bp_rt_dead_letter(rt, m, slot, BP_STAGE_VALIDATE, reason, NULL, 0);
        bp_ack_done(&rt->ack, slot, drc == 0);
        if (drc != 0) {
            *rc = -1;
            return 0;
        }
    }
    if (kept < n) {
        *msgs = g->msgs;
        *slots = *slots ? g->slots : NULL;
    }
    return kept;
}

/* The suspects file, or NULL (no guard, or no state_dir): set_aside.c counts refused dead
 * letters there too. */
struct bp_quarantine *
bp_guard_quarantine(struct bp_rt *rt)
{
    return rt->guard ? rt->guard->q : NULL;
}

/* Before the batch call: starts the time budget of b. */
void
bp_guard_arm(struct bp_rt *rt, bp_batch_t *b)
{
    if (rt->guard)
        bp_watchdog_arm(rt->guard->w, bp_lua_host_state(rt->host), b);
}

/* After the batch call of n events: stops the budget (removes a hook that did not fire, writes
 * the batch's suspects). Returns how many events ran: n, or fewer when lua.batch_budget_ms cut
 * the batch (the runtime runs the rest later). */
size_t
bp_guard_disarm(struct bp_rt *rt, size_t n)
{
    size_t ran = n;
    if (rt->guard)
        (void)bp_watchdog_disarm(rt->guard->w, &ran);
    return ran <= n ? ran : n;
}

/* After the batch is dispatched: returns 1 when the guard runs and the state hit its memory cap
 * (lua.memory_mb), so that the runtime rebuilds it (bp_rt_rebuild_soon), else 0. */
int
bp_guard_check_memory(const struct bp_rt *rt)
{
    return rt->guard && bp_lua_host_memory_hit(rt->host);
}
