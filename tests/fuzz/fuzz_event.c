/* Fuzz target: the event path through the shipped scripts: scripts/pipeline.lua's host runs one
 * batch whose messages are the input's lines (up to 16; a line "data\0attrs" carries attributes
 * as JSON text), exactly as bp_rt_process hands them over. What dispatch would read next is
 * checked here: every result lies inside the out buffer and names a known stage and route.
 * Dispatch itself needs a started runtime and is not run. */
#include <stdint.h>
#include <string.h>

#include "fuzz_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSGS 16

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bp_batch_t b;   /* the out buffer is reused from batch to batch, as in rt.c */
    bp_msg_t msgs[MAX_MSGS];
    bp_result_t res[MAX_MSGS];
    const char *p = (const char *)data, *end = p + size;
    size_t n = 0, nroutes = 0;
    char err[2048];
    memset(msgs, 0, sizeof(msgs));
    while (p <= end && n < MAX_MSGS) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *z = memchr(p, '\0', (size_t)(le - p));
        msgs[n].data = p;
        msgs[n].len = (size_t)((z ? z : le) - p);
        if (z) {
            msgs[n].attrs = z + 1;
            msgs[n].attrs_len = (size_t)(le - z - 1);
        }
        msgs[n].id = "fuzz:1";
        msgs[n].id_len = 6;
        msgs[n].publish_time = 1764547200.0;
        n++;
        if (!nl)
            break;
        p = nl + 1;
    }
    b.msgs = msgs;
    b.results = res;
    b.n = (int32_t)n;
    b.now = 1764547200.5;
    strcpy(b.now_str, "2025-12-01T00:00:00.500000Z");
    struct bp_lua_host *h = fuzz_host();
    bp_lua_host_routes(h, &nroutes);
    if (bp_lua_host_process(h, &b, err, sizeof(err)) != 0) {
        if (getenv("FUZZ_DEBUG"))
            fprintf(stderr, "event: %s\n", err);
        return 0;
    }
    if (getenv("FUZZ_DEBUG"))
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "event %zu: stage %d route %d: %.*s\n", i, res[i].stage,
                    res[i].route, (int)res[i].len, b.out + res[i].off);   /* the whole batch would be dead-lettered: not a crash */
    for (size_t i = 0; i < n; i++) {
        const bp_result_t *r = &res[i];
        if (r->stage < BP_STAGE_OK || r->stage > BP_STAGE_INSERT ||
            (size_t)r->off + r->len > b.out_len ||
            (size_t)r->etype_off + r->etype_len > b.out_len ||
            (r->stage == BP_STAGE_OK && (r->route < 0 || (size_t)r->route >= nroutes)))
            __builtin_trap();
    }
    return 0;
}
