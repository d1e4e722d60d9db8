/* shim.c - allocation-failure injection for the unit tests (make alloc-fail-build). The test
 * binaries link a copy of libbepipe.a whose malloc/calloc/realloc references were renamed
 * bp_af_* (objcopy --redefine-sym), so every allocation the runtime makes comes here; the test's
 * own and those of shared libraries (libc internals, libcurl, LuaJIT) do not, except jansson's:
 * as in bepipe-lua (main.c), jansson allocates through bp_xmalloc (bp_alloc_json_init), which
 * here calls the shim.
 *   BP_ALLOC_FAIL_AT=N   the N-th allocation (1-based) returns NULL, the rest succeed
 *   BP_ALLOC_COUNT=1     prints "bp-alloc: N allocations" to stderr at exit
 *   BP_ALLOC_TRACE=1     prints the stack of the allocation made to fail */
#include <sanitizer/common_interface_defs.h>
#include <stdio.h>
#include <stdlib.h>

void bp_alloc_json_init(void);
void *bp_af_malloc(size_t n);
void *bp_af_calloc(size_t n, size_t size);
void *bp_af_realloc(void *p, size_t n);

static unsigned long count, fail_at;
static int ready, trace;

static void
report(void)
{
    fprintf(stderr, "bp-alloc: %lu allocations\n", count);
}

/* Whether this allocation is the one to fail. */
static int
should_fail(void)
{
    if (!ready) {
        const char *at = getenv("BP_ALLOC_FAIL_AT"), *rep = getenv("BP_ALLOC_COUNT");
        ready = 1;
        fail_at = at ? strtoul(at, NULL, 10) : 0;
        trace = getenv("BP_ALLOC_TRACE") != NULL;
        if (rep && *rep == '1')
            atexit(report);
    }
    if (++count != fail_at)
        return 0;
    if (trace) {
        fprintf(stderr, "bp-alloc: failing allocation %lu here:\n", count);
        __sanitizer_print_stack_trace();
    }
    return 1;
}

void *
bp_af_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *
bp_af_calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *
bp_af_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

__attribute__((constructor)) static void
route_jansson(void)
{
    bp_alloc_json_init();
}
