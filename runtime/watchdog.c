/* watchdog.c - the scripts' time budgets (lua.budget_ms per event, lua.batch_budget_ms per batch,
 * lua.hard_ms).
 *
 * The loop thread is blocked while a Lua batch runs, so no ev_timer can fire; LuaJIT runs count
 * hooks only in interpreted code (Debian's build lacks LUAJIT_ENABLE_CHECKHOOK), so a hook set up
 * front would cost every batch and still miss a compiled `while true do end`. Instead:
 *
 *   - the loop thread arms the watchdog before each batch call and disarms it after: a clock read
 *     and an uncontended mutex each time, nothing per event;
 *   - a thread wakes every budget/10 (5..100 ms) and notes which event is running (see below):
 *     an event's time starts at the first wake that sees it, so each event has its own budget
 *     (give or take one wake), and a slow batch never lands the blame on an innocent event that
 *     happens to run when the batch's time is up;
 *   - past an event's budget it sets a hook with lua_sethook, which LuaJIT allows from outside
 *     the running code (lua.c does it from its SIGINT handler). The hook, on the loop thread at
 *     the next interpreted instruction, checks that the same event still runs, notes it as a
 *     suspect (written to the suspects file once, after the batch: one fsync per batch at most,
 *     not one per interrupt on the loop) and raises an error, which bepipe.host turns into a
 *     dead letter of that one event; the batch goes on;
 *   - past lua.batch_budget_ms from the batch's start it lowers b->n to just past the running
 *     event: host.lua reads b.n before each event, so it finishes the one running and returns.
 *     bp_watchdog_disarm says how many events ran; the runtime runs the rest in a later batch,
 *     after the loop has served its timers and I/O (health checks, leases, acks);
 *   - when the hook has not run within lua.hard_ms - lua.budget_ms of being set (a compiled loop,
 *     a long C call, or a script whose own pcall swallowed the error), the thread records the
 *     running event (and the suspects noted so far) and ends the process with BP_WATCHDOG_EXIT.
 *     Nothing is lost: no event of the batch was acked, and the restarted process dead-letters
 *     the suspect on sight. Flushing the JIT (luaJIT_setmode) from another thread while a trace
 *     runs would crash, and a compiled loop never leaves its trace to notice a flag, so exiting
 *     is the only sure stop.
 *
 * lua_sethook from this thread writes LuaJIT's hook mask and dispatch table while the loop thread
 * runs; those are word-sized stores the interpreter picks up at its next instruction, which is
 * what lua.c relies on from a signal handler too. It happens only once an event is over budget.
 * b->n is an aligned int32 store host.lua picks up before its next event the same way.
 *
 * Which event is running: before the call every result's route is filled with a value Lua never
 * writes (BP_RESULT_UNSTARTED); host.lua sets route = -1 when it starts an event, so the running
 * event is the last one whose route changed, and the events that ran are those before the first
 * unchanged one. A SIGTERM is serviced once the batch ends: after at most lua.batch_budget_ms
 * plus one event's budget, or the process ends at lua.hard_ms. */
#include "watchdog.h"
#include "log.h"
#include "timefmt.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BP_RESULT_UNSTARTED 0x7e7e7e7e
#define RESULT_FILL 0x7e

/* Suspect records noted by the hook, written after the batch (or by give_up). Holds at least
 * 32 records; a 33rd in one batch writes them at once. */
#define PENDING_MAX (32 * BP_QUARANTINE_LINE)

struct bp_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    int stop;
    double budget, hard;        /* seconds, per event */
    double batch_budget;        /* seconds one batch may run; 0 = no cap */
    struct timespec poll;
    struct bp_quarantine *q;
    /* the batch running (loop thread writes under mu) */
    int running;
    lua_State *L;
    bp_batch_t *b;
    int32_t armed_n;            /* b->n at arm: restored at disarm */
    int cut;                    /* b->n was lowered (the batch's time ran out) */
    unsigned long seq;          /* batches armed */
    double started;             /* batch start */
    int cur_idx;                /* the event seen running at the last wake, and since when */
    double cur_since;
    int target_idx;             /* the event the pending hook is for */
    double interrupt_at;        /* hook set at, 0 = none pending */
    int hook_set;
    int fired_idx;              /* event last interrupted, and in which batch */
    unsigned long fired_seq;
    unsigned interrupts;        /* of the current batch */
    char pending[PENDING_MAX];  /* suspect records not yet written */
    size_t pending_len;
    int pending_failed;         /* errno of a write of them that failed (logged at disarm) */
};

/* The hook has no user data: the process's one watchdog (set by bp_watchdog_new). */
static struct bp_watchdog *active;

/* Index of the event running in a batch of n (the last one host.lua has started), -1 before the
 * first. n is the batch's size at arm: b->n may have been lowered since, and the event after
 * the new end may have started just before. */
static int
running_index(const bp_batch_t *b, int32_t n)
{
    const volatile bp_result_t *r = b->results;
    for (int32_t i = 0; i < n; i++)
        if (r[i].route == BP_RESULT_UNSTARTED)
            return i - 1;
    return n - 1;
}

static void
msg_id(const bp_batch_t *b, int idx, const char **id, int *len)
{
    *id = idx >= 0 ? b->msgs[idx].id : "(none)";
    *len = idx >= 0 ? (int)b->msgs[idx].id_len : 6;
}

/* Writes the suspects noted so far; mu held. */
static void
flush_pending(struct bp_watchdog *w)
{
    if (w->pending_len && w->q && bp_quarantine_append(w->q, w->pending, w->pending_len) != 0)
        w->pending_failed = errno ? errno : EIO;
    w->pending_len = 0;
}

/* Notes m as a suspect of kind; written at disarm (or at once when the buffer is full). mu
 * held. */
static void
note_suspect(struct bp_watchdog *w, const bp_msg_t *m, int kind)
{
    if (!w->q)
        return;
    if (w->pending_len + BP_QUARANTINE_LINE > sizeof(w->pending))
        flush_pending(w);
    w->pending_len += bp_quarantine_format(m, kind, w->pending + w->pending_len);
}

/* The Lua hook, on the loop thread inside the batch: interrupt the running event (see top). */
static void
hook(lua_State *L, lua_Debug *ar)
{
    struct bp_watchdog *w = active;
    (void)ar;
    pthread_mutex_lock(&w->mu);
    lua_sethook(L, NULL, 0, 0);
    w->hook_set = 0;
    int idx = running_index(w->b, w->armed_n);
    if (!w->running || !w->interrupt_at || idx != w->target_idx) {
        /* stale, or the slow event ended before the hook ran: the one running now is innocent
         * (its own time is counted from the next wake) */
        w->interrupt_at = 0;
        pthread_mutex_unlock(&w->mu);
        return;
    }
    if (idx == w->fired_idx && w->seq == w->fired_seq) {
        /* this event swallowed our error once already: the hard limit decides */
        pthread_mutex_unlock(&w->mu);
        return;
    }
    w->fired_idx = idx;
    w->fired_seq = w->seq;
    w->interrupts++;
    w->interrupt_at = 0;
    /* should the script swallow the error, the next hook comes a whole budget later and then
     * leaves the event to the hard limit */
    w->cur_since = bp_time_mono();
    const char *id;
    int len;
    msg_id(w->b, idx, &id, &len);
    if (idx >= 0)
        note_suspect(w, &w->b->msgs[idx], BP_SUSPECT_TIMEOUT);
    bp_log(BP_LOG_WARN, "lua", "message %.*s ran past the time budget (lua.budget_ms=%.0f); "
           "interrupted and dead-lettered", len, id, w->budget * 1000);
    double ms = w->budget * 1000;
    pthread_mutex_unlock(&w->mu);
    /* level 0: in a hook that is the function being interrupted, so the reason says where */
    luaL_where(L, 0);
    lua_pushfstring(L, "time budget exceeded: the event ran past lua.budget_ms (%d ms)", (int)ms);
    lua_concat(L, 2);
    lua_error(L);
}

/* Watchdog thread, mu held, the loop thread stuck: record the suspect and end the process. */
static void
give_up(struct bp_watchdog *w, double now)
{
    int idx = running_index(w->b, w->armed_n);
    const char *id;
    int len;
    msg_id(w->b, idx, &id, &len);
    flush_pending(w);
    int rc = idx >= 0 && w->q ? bp_quarantine_add(w->q, &w->b->msgs[idx], BP_SUSPECT_KILLED) : -1;
    bp_log(BP_LOG_ERROR, "lua", "message %.*s has run %.0f ms, past lua.hard_ms=%.0f, and cannot "
           "be interrupted (compiled code or a C call); %s; exiting with code %d for a restart",
           len, id, (now - w->cur_since) * 1000, w->hard * 1000,
           rc == 0 ? "recorded as a suspect, to be dead-lettered on sight"
                   : "could NOT record it as a suspect (see state_dir)", BP_WATCHDOG_EXIT);
    fflush(stderr);
    /* _exit, not exit: the loop thread is running Lua; atexit handlers and stdio teardown under
     * it are not safe. Nothing needs flushing: no message of this batch was acked. */
    _exit(BP_WATCHDOG_EXIT);
}

/* The batch has held the loop batch_budget: no event starts after the running one (host.lua
 * reads b->n before each). At least one event runs, so every batch makes progress. mu held. */
static void
cut_batch(struct bp_watchdog *w, int idx)
{
    int32_t n = idx + 1 > 1 ? idx + 1 : 1;
    volatile int32_t *np = &w->b->n;
    if (n < *np)
        *np = n;
    w->cut = 1;
}

static void *
watch(void *arg)
{
    struct bp_watchdog *w = arg;
    for (;;) {
        nanosleep(&w->poll, NULL);
        pthread_mutex_lock(&w->mu);
        if (w->stop) {
            pthread_mutex_unlock(&w->mu);
            return NULL;
        }
        double now = bp_time_mono();
        if (w->running) {
            int idx = running_index(w->b, w->armed_n);
            if (idx != w->cur_idx) {
                w->cur_idx = idx;       /* a new event: its own budget starts */
                w->cur_since = now;
                if (w->interrupt_at && w->target_idx != idx) {
                    /* the hook was for an event that has ended since: not for this one */
                    if (w->hook_set)
                        lua_sethook(w->L, NULL, 0, 0);
                    w->hook_set = 0;
                    w->interrupt_at = 0;
                }
            }
            if (w->batch_budget > 0 && !w->cut && now - w->started >= w->batch_budget)
                cut_batch(w, idx);
            if (!w->interrupt_at && idx >= 0 && now - w->cur_since >= w->budget) {
                w->interrupt_at = now;
                w->target_idx = idx;
                lua_sethook(w->L, hook, LUA_MASKCOUNT | LUA_MASKCALL | LUA_MASKRET, 1);
                w->hook_set = 1;
            } else if (w->interrupt_at && now - w->interrupt_at >= w->hard - w->budget) {
                give_up(w, now);
            }
        }
        pthread_mutex_unlock(&w->mu);
    }
}

/* Starts the watchdog thread (signals blocked in it: they belong to the loop). budget_ms is
 * each event's budget, batch_ms the time a batch may run before no new event starts (0: no
 * cap); budget_ms 0 turns both off (returns NULL without error). q (may be NULL) receives the suspects.
 * Returns the watchdog, or NULL with err set. One per process; start-up only. */
struct bp_watchdog *
bp_watchdog_new(long budget_ms, long hard_ms, long batch_ms, struct bp_quarantine *q, char *err,
                size_t errlen)
{
    if (budget_ms <= 0)
        return NULL;
    struct bp_watchdog *w = bp_xcalloc(1, sizeof(*w));
    w->budget = budget_ms / 1000.0;
    w->batch_budget = batch_ms > 0 ? batch_ms / 1000.0 : 0;
    w->hard = (hard_ms > budget_ms ? hard_ms : budget_ms * 2) / 1000.0;
    long poll_ms = budget_ms / 10 < 5 ? 5 : budget_ms / 10 > 100 ? 100 : budget_ms / 10;
    w->poll.tv_sec = 0;
    w->poll.tv_nsec = poll_ms * 1000000L;
    w->q = q;
    w->fired_idx = -2;
    pthread_mutex_init(&w->mu, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the script watchdog thread: %s", strerror(rc));
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    active = w;
    return w;
}

/* Stops and joins the thread. NULL-safe. */
void
bp_watchdog_free(struct bp_watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->mu);
    if (active == w)
        active = NULL;
    free(w);
}

/* Marks every result of b as not started (see top). */
static void
mark_results(bp_batch_t *b)
{
    memset(b->results, RESULT_FILL, (size_t)b->n * sizeof(*b->results));
}

/* Before a batch call on L (loop thread): starts the budget. NULL-safe. */
void
bp_watchdog_arm(struct bp_watchdog *w, lua_State *L, bp_batch_t *b)
{
    if (!w)
        return;
    mark_results(b);
    pthread_mutex_lock(&w->mu);
    w->L = L;
    w->b = b;
    w->armed_n = b->n;
    w->cut = 0;
    w->seq++;
    w->started = bp_time_mono();
    w->cur_idx = -2;            /* the first wake starts the first event's time */
    w->cur_since = w->started;
    w->interrupt_at = 0;
    w->interrupts = 0;
    w->running = 1;
    pthread_mutex_unlock(&w->mu);
}

/* After the batch call (loop thread): stops the budget, removes a hook that did not fire and
 * writes the batch's suspects (one fsync at most). *ran (may be NULL) gets how many events of
 * the batch ran: all of them, or fewer when lua.batch_budget_ms cut the batch (b->n is set back
 * to what it was at arm). Returns how many events the batch had interrupted. NULL-safe (*ran is
 * then left alone). */
unsigned
bp_watchdog_disarm(struct bp_watchdog *w, size_t *ran)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->running = 0;
    if (w->hook_set)
        lua_sethook(w->L, NULL, 0, 0);
    w->hook_set = 0;
    unsigned n = w->interrupts;
    if (w->cut) {
        w->b->n = w->armed_n;
        int last = running_index(w->b, w->armed_n);
        if (ran)
            *ran = (size_t)(last + 1);
    } else if (ran) {
        *ran = (size_t)w->armed_n;
    }
    flush_pending(w);
    int failed = w->pending_failed;
    w->pending_failed = 0;
    pthread_mutex_unlock(&w->mu);
    if (failed)
        bp_log(BP_LOG_ERROR, "lua", "the suspects file could not be written: %s",
               strerror(failed));
    return n;
}
