-- bepipe.cdef: the FFI declarations of runtime/bp_ffi.h, declared once per Lua state.
-- The block between the markers must match the header's; tests/unit/ffi_cdef.c checks it.
local ffi = require "ffi"

local M = { ABI = 4 }

ffi.cdef [[
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
]]

return M
