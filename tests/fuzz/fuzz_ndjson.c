/* Fuzz target: NDJSON line splitting, the real runtime/source_ndjson.c (with its splitter,
 * runtime/ndjson_lines.c) reading the input from a file on a libev loop, against a stand-in
 * runtime: the bp_rt_* functions runtime/source.h lets
 * a source call are defined here, so rt.c is not linked. Checks what the splitter promises: every line delivered
 * holds no newline and is at most max_line_bytes long, blank lines are skipped, and every byte
 * of every non-blank line is delivered or (too long) dead-lettered. A line of the archive's
 * marker ({"bepipe_raw_b64":"..."}) is delivered decoded: its payload may hold a newline, only
 * when the input has a marker. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the stand-in runtime: what the source may read of it */
struct bp_rt {
    struct ev_loop *loop;
    struct bp_config cfg;
};

#define PAD (256 * 1024 - 4)

static struct bp_rt rt;
static int done;
static int has_marker;      /* the input holds the archive's marker text */
static size_t delivered_bytes, delivered_lines, dead_lines;

int
bp_rt_process(struct bp_rt *r, const bp_msg_t *msgs, const uint32_t *slots, size_t n)
{
    (void)r;
    (void)slots;
    if (n == 0 || n > (size_t)rt.cfg.batch_messages)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        if (msgs[i].len > (size_t)rt.cfg.max_line_bytes ||
            (memchr(msgs[i].data, '\n', msgs[i].len) && !has_marker))
            __builtin_trap();
        delivered_bytes += msgs[i].len;
        delivered_lines++;
    }
    return 0;
}

int
bp_rt_process_dead(struct bp_rt *r, const bp_msg_t *m, uint32_t slot, int stage,
                   const char *reason)
{
    (void)r;
    (void)slot;
    (void)reason;
    if (stage != BP_STAGE_PARSE || m->len > 1024)
        __builtin_trap();
    dead_lines++;
    return 0;
}

void
bp_rt_source_failed(struct bp_rt *r, const char *why)
{
    (void)r;
    (void)why;
    done = 2;
    ev_break(rt.loop, EVBREAK_ALL);
}

void
bp_rt_source_finished(struct bp_rt *r)
{
    (void)r;
    done = 1;
    ev_break(rt.loop, EVBREAK_ALL);
}

struct ev_loop *
bp_rt_loop(struct bp_rt *r)
{
    return r->loop;
}

const struct bp_config *
bp_rt_config(const struct bp_rt *r)
{
    return &r->cfg;
}

int
bp_rt_sinks_busy(struct bp_rt *r)
{
    (void)r;
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    char err[512];
    if (!rt.loop) {
        rt.loop = ev_loop_new(EVFLAG_AUTO);
        snprintf(path, sizeof(path), "/tmp/bp-fuzz-ndjson-%d", (int)getpid());
    }
    /* the first byte picks small limits, so that long lines and full batches are common */
    rt.cfg.max_line_bytes = size ? 1 + data[0] % 64 : 8;
    rt.cfg.batch_messages = size ? 1 + data[0] / 64 : 1;
    /* byte 1 = 0xff: the input follows 262,140 bytes of 'x', so that the source's first 256 KB
     * read ends inside it and lines (long or not) straddle two reads */
    static uint8_t file[PAD + 65536];
    size_t pad = size >= 2 && data[1] == 0xff && size <= 65536 ? PAD : 0;
    memset(file, 'x', pad);
    memcpy(file + pad, data, size);
    data = file;
    size += pad;
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    done = 0;
    delivered_bytes = delivered_lines = dead_lines = 0;
    has_marker = memmem(data, size, "{\"bepipe_raw_b64\":\"", 19) != NULL;
    struct bp_source *s = bp_source_ndjson_new(&rt, path, err, sizeof(err));
    if (!s || s->ops->start(s, err, sizeof(err)) != 0)
        abort();
    ev_run(rt.loop, 0);
    if (done != 1)
        __builtin_trap();   /* a read failure, or the loop ran dry before the end of the file */
    /* every non-blank line is delivered or (too long) dead-lettered; a blank line may be too */
    size_t lines = 0, nonblank = 0;
    for (size_t i = 0; i < size;) {
        const uint8_t *nl = memchr(data + i, '\n', size - i);
        size_t e = nl ? (size_t)(nl - data) : size, k;
        for (k = i; k < e && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r'); k++)
            ;
        lines++;
        nonblank += k < e;
        i = e + 1;
    }
    if (delivered_bytes > size || delivered_lines + dead_lines < nonblank ||
        delivered_lines + dead_lines > lines)
        __builtin_trap();
    s->ops->destroy(s);
    return 0;
}
