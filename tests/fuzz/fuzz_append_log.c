/* Fuzz target: the append log's reader (runtime/append_log.c, append_log_codec.c). Any bytes
 * as a file left by a crashed process: the log is refused or loaded, never a crash or a read out
 * of bounds (ASan); once loaded, its recovered streams are finalized and the answers must hold
 * together: a STORED message has every row's bit set, a PARTIAL one some but not all, and
 * asking twice gives the same answer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "append_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *ids[] = { "m1", "m2", "m3", "m4", "m5", "m6", "d", "f", "g", "h" };

static void
check(bp_append_log_t *log, const char *id)
{
    struct bp_append_log_answer a, b;
    bp_append_log_lookup(log, id, strlen(id), &a);
    uint32_t set = 0;
    if (a.stored)
        for (uint32_t i = 0; i < a.row_total; i++)
            set += a.stored[i / 8] >> (i % 8) & 1;
    if ((a.state == BP_APPEND_LOG_STORED && set != a.row_total) ||
        (a.state == BP_APPEND_LOG_PARTIAL && (set == 0 || set == a.row_total)) ||
        (a.state == BP_APPEND_LOG_NOT_STORED && set != 0))
        __builtin_trap();
    bp_append_log_lookup(log, id, strlen(id), &b);
    if (a.state != b.state || a.row_total != b.row_total)
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a TTL of a century, so that the seeds' records never expire */
    struct bp_append_log_params p = { "/nonexistent", "proj/ds/sub", 0, 1 << 20,
                                      100L * 366 * 86400, 0 };
    char err[512];
    bp_append_log_t *log = bp_append_log_open_buf(&p, data, size, err, sizeof(err));
    if (!log)
        return 0;
    for (size_t i = 0; i < BP_ARRAY_LEN(ids); i++)
        check(log, ids[i]);
    /* finalize every recovered stream with a row count taken from the input's size */
    const char *s;
    while ((s = bp_append_log_unfinalized(log, 0)) != NULL)
        if (bp_append_log_finalized(log, s, (int64_t)(size % 7), err, sizeof(err)) != 0)
            __builtin_trap();
    for (size_t i = 0; i < BP_ARRAY_LEN(ids); i++) {
        check(log, ids[i]);
        if (bp_append_log_acked(log, ids[i], strlen(ids[i]), err, sizeof(err)) != 0)
            __builtin_trap();
    }
    bp_append_log_expire(log, (time_t)1 << 62);
    if (bp_append_log_recovering(log) != 0)
        __builtin_trap();
    bp_append_log_free(log);
    return 0;
}
