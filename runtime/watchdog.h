/* watchdog.h - the scripts' time budgets: a thread that interrupts a Lua event running past its
 * budget, ends a batch early (no new event) past the batch's budget, and ends the process when an
 * interrupt cannot take. */
#ifndef BP_WATCHDOG_H
#define BP_WATCHDOG_H

#include "bp_ffi.h"
#include "common.h"
#include "quarantine.h"

struct lua_State;
struct bp_watchdog;

/* Exit code of a process the watchdog ended (a supervisor restarts it). */
#define BP_WATCHDOG_EXIT 3

struct bp_watchdog *bp_watchdog_new(long budget_ms, long hard_ms, long batch_ms,
                                    struct bp_quarantine *q, char *err, size_t errlen);
void bp_watchdog_free(struct bp_watchdog *w);
void bp_watchdog_arm(struct bp_watchdog *w, struct lua_State *L, bp_batch_t *b);
unsigned bp_watchdog_disarm(struct bp_watchdog *w, size_t *ran);

#endif
