/* guard.h - what keeps a script from hanging or exhausting the process, for the runtime: the
 * watchdog (time budget), the suspects file (dead-lettered on sight) and the memory cap. */
#ifndef BP_GUARD_H
#define BP_GUARD_H

#include "bp_ffi.h"
#include "common.h"

struct bp_rt;
struct bp_guard;

int bp_guard_start(struct bp_rt *rt, char *err, size_t errlen) BP_WUR;
void bp_guard_free(struct bp_guard *g);
size_t bp_guard_screen(struct bp_rt *rt, const bp_msg_t **msgs, const uint32_t **slots, size_t n,
                       int *rc);
void bp_guard_arm(struct bp_rt *rt, bp_batch_t *b);
size_t bp_guard_disarm(struct bp_rt *rt, size_t n);
int bp_guard_check_memory(const struct bp_rt *rt) BP_WUR;
struct bp_quarantine *bp_guard_quarantine(struct bp_rt *rt);

#endif
