/* ffi_core.c - the functions Lua reaches through ffi.C. Thin and re-entry free: none of them
 * touches a lua_State, runs the loop or calls back into Lua (STYLE: the FFI boundary). */
#include "bp_ffi.h"
#include "common.h"
#include "log.h"

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
