/* ffi_core.c - the functions Lua reaches through ffi.C. Thin and re-entry free: none of them
 * touches a lua_State, runs the loop or calls back into Lua (STYLE: the FFI boundary). */
#include "bp_ffi.h"
#include "common.h"
#include "log.h"

#include <stdlib.h>

/* Largest output of one batch: rows of a batch of the largest messages fit; past it the event is
 * dead-lettered (stage map) by the Lua side. */
#define BP_BATCH_OUT_MAX ((size_t)512 * 1024 * 1024)

/* Lets the Lua library check at load that it was written against this header. */
BP_EXPORT int
bp_ffi_abi_version(void)
{
    return BP_FFI_ABI;
}

/* Lua asks before formatting a message, so disabled debug logs cost one call, no string work. */
BP_EXPORT int
bp_ffi_log_enabled(int level)
{
    return level <= bp_log_level();
}

/* Logs a message formatted by Lua. The bytes are copied into the line at once; the pointer is
 * not kept (Lua may collect the string as soon as this returns). */
BP_EXPORT void
bp_ffi_log(int level, const char *component, const char *msg, size_t len)
{
    if (level > bp_log_level())
        return;
    if (len > 1500)
        len = 1500;
    bp_log_write(level, component ? component : "lua", "%.*s", (int)len, msg);
}

/* Grows b->out so that `extra` more bytes fit. Returns 0, or -1 past BP_BATCH_OUT_MAX or when
 * memory runs out (the event being written is then dead-lettered; nothing else changes). */
BP_EXPORT int
bp_ffi_batch_reserve(bp_batch_t *b, size_t extra)
{
    if (extra > BP_BATCH_OUT_MAX || b->out_len > BP_BATCH_OUT_MAX - extra)
        return -1;
    size_t need = b->out_len + extra;
    if (need <= b->out_cap)
        return 0;
    size_t cap = b->out_cap ? b->out_cap : 64 * 1024;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->out, cap);
    if (!p)
        return -1;
    b->out = p;
    b->out_cap = cap;
    return 0;
}
