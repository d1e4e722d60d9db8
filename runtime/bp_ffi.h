/* bp_ffi.h - the whole C <-> Lua surface. The text between BP_CDEF_BEGIN and BP_CDEF_END is
 * mirrored byte for byte (after whitespace folding) by scripts/bepipe/cdef.lua; a unit test
 * fails when the two drift apart, which OpenResty's Lua-only prototypes never notice.
 *
 * Shape of a batch call: the core fills a bp_batch_t (messages lent for the duration of the call),
 * calls the Lua entry once, and Lua writes one bp_result_t per message and copies every row /
 * reason back to back into the C-owned out buffer (ffi.copy, compiled inline); results point into
 * it with (off, len). The buffer is reused from batch to batch, so rows cost no allocation on the
 * C side and no big Lua string; bp_ffi_batch_reserve, which grows it, is the only FFI call and runs
 * only when a batch outgrows every earlier one. */
#ifndef BP_FFI_H
#define BP_FFI_H

#include <stddef.h>
#include <stdint.h>

/* Bumped whenever a struct below changes shape; the Lua library refuses to run on a mismatch. */
#define BP_FFI_ABI 4

/* BP_CDEF_BEGIN */
enum {
    BP_STAGE_OK = 0,
    BP_STAGE_PARSE = 1,
    BP_STAGE_ROUTE = 2,
    BP_STAGE_VALIDATE = 3,
    BP_STAGE_MAP = 4,
    BP_STAGE_INSERT = 5,
    BP_STAGE_SCHEMA = 6
};

typedef struct bp_msg {
    const char *data;
    size_t len;
    const char *id;
    size_t id_len;
    double publish_time;
    const char *attrs;
    size_t attrs_len;
    int32_t delivery_attempt;   /* Pub/Sub deliveryAttempt (a dead-letter policy), else 0 */
} bp_msg_t;

typedef struct bp_result {
    int32_t route;
    int32_t stage;
    int32_t hour;
    uint32_t off;
    uint32_t len;
    uint32_t etype_off;
    uint32_t etype_len;
} bp_result_t;

typedef struct bp_batch {
    const bp_msg_t *msgs;
    bp_result_t *results;
    int32_t n;
    int32_t generation;
    double now;
    char now_str[32];
    char *out;
    size_t out_len;
    size_t out_cap;
} bp_batch_t;

int bp_ffi_abi_version(void);
int bp_ffi_batch_reserve(bp_batch_t *b, size_t extra);
int bp_ffi_log_enabled(int level);
void bp_ffi_log(int level, const char *component, const char *msg, size_t len);
/* BP_CDEF_END */

#endif
