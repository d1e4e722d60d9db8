/* fuzz_host.h - the pipeline's Lua host for fuzz targets: scripts/pipeline.lua with the shipped
 * scripts, built once per process (as the daemon builds it once per generation).
 *
 * LeakSanitizer does not scan LuaJIT's own heap (mmap'd arenas), so malloc'd memory that only a
 * Lua object points to (lua-cjson keeps an encode buffer in each instance's userdata, freed by its
 * __gc) looks leaked; the host is built with leak checking off for that reason. */
#ifndef BP_FUZZ_HOST_H
#define BP_FUZZ_HOST_H

#include <sanitizer/lsan_interface.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lua.h>

#include "lua_host.h"

/* Coverage of the Lua code for libFuzzer: LuaJIT is not instrumented, so a line hook counts
 * (chunk, previous line, line) edges into libFuzzer's extra counters; without it the mutator
 * would be blind to which branch of a script an input reached. Line hooks keep LuaJIT in its
 * interpreter, which is slower but is what makes the coverage visible. */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t fuzz_lua_cov[1 << 14];

static void
fuzz_line_hook(lua_State *L, lua_Debug *ar)
{
    static uintptr_t prev;
    if (!lua_getinfo(L, "S", ar))
        return;
    uintptr_t here = (uintptr_t)ar->source * 2654435761u + (uintptr_t)ar->currentline;
    fuzz_lua_cov[(here ^ (prev >> 1)) % sizeof(fuzz_lua_cov)]++;
    prev = here;
}

static struct bp_lua_host *
fuzz_host(void)
{
    static struct bp_lua_host *h;
    char err[1024];
    if (!h) {
        __lsan_disable();
        h = bp_lua_host_new(SRC_ROOT "/scripts/pipeline.lua", SRC_ROOT "/scripts", 1, err,
                            sizeof(err));
        __lsan_enable();
        if (h)
            lua_sethook(bp_lua_host_state(h), fuzz_line_hook, LUA_MASKLINE, 0);
        if (!h) {
            fprintf(stderr, "fuzz: cannot build the Lua host: %s\n", err);
            abort();
        }
    }
    return h;
}

#endif
