/* dispatch.h - the results of one Lua batch become work for the sinks (dispatch.c). */
#ifndef BP_DISPATCH_H
#define BP_DISPATCH_H

#include "bp_ffi.h"
#include "common.h"

struct bp_rt;

/* Stage names as stored in the dead letter's error_stage, indexed by BP_STAGE_*. */
extern const char *const bp_stage_names[BP_STAGE_SCHEMA + 1];

/* Sends each of the n messages where its result says: a row to its table's batch and its raw
 * line to the archive of its type, or a dead letter. out holds the rows and reasons the results
 * point into. The slots' verdicts may come back before this returns (local stores). Returns 0,
 * or -1 when a sink failed (the messages not yet sent got a failed verdict). */
int bp_dispatch_batch(struct bp_rt *rt, const bp_msg_t *msgs, const uint32_t *slots,
                      const bp_result_t *res, size_t n, const char *out, size_t outlen) BP_WUR;

#endif
