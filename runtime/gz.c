/* gz.c - gzip for archive objects, with Debian's zlib.
 *
 * Why zlib and not libdeflate: libdeflate compresses a whole buffer in one call and cannot
 * continue a stream, so an object would have to be held plain until it is finished and then
 * compressed into a second buffer (two copies of the largest objects at once); zlib's z_stream
 * compresses as the lines arrive. Measured on the demo's corpus (tests/tools/gen_events.lua,
 * 200,000 events of ~400 bytes, ordered and live; MB stored and CPU-s per 1M events, this
 * machine, compression and CRC only): zlib level 1 in 256 KB chunks 112 MB, 2.8-3.5 s;
 * zlib level 1 as one stream 109 MB, 3.1-3.9 s; libdeflate level 1 whole 99 MB, 1.7-2.2 s;
 * zlib level 6 in 256 KB chunks 93 MB, 6.3-7.0 s; libdeflate level 6 whole 83 MB, 3.9 s.
 * Raw: 403 MB. So level 1: level 6 saves another 17% of a bill that is already a quarter of
 * the raw one, for twice the CPU.
 *
 * One deflate state for every object: a deflate stream keeps ~256 KB of state, and a backfill
 * keeps tens of thousands of objects open at once. So an object's bytes are compressed a chunk
 * at a time (BP_GZ_CHUNK, gathered by the caller) with the shared state reset before each
 * chunk, and each chunk ends with a sync flush (byte-aligned, no final bit), so the chunks of
 * one object follow each other as blocks of one deflate stream: one gzip member, as every
 * reader expects (GCS's decompressive transcoding, BigQuery's load jobs, gzip(1)). A chunk
 * starting without the previous chunk's history costs ~2% of the stored bytes at 256 KB (6% at
 * 64 KB); the sync flush marker costs 5 bytes a chunk. */
#include "gz.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

/* See gz.h. */
int
bp_gz_init(struct bp_gz *g, int level)
{
    memset(g, 0, sizeof(*g));
    /* the runtime's allocator (alloc.c): zlib's allocation failures are the runtime's, counted
     * and injected by tests/alloc_fail, and answered as errors, not aborts */
    g->zs.zalloc = bp_zalloc;
    g->zs.zfree = bp_zfree;
    g->level = level;
    /* raw deflate (-15): the gzip header and trailer are written here, once per object,
     * around chunks compressed by a state reset for each */
    if (deflateInit2(&g->zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    g->ready = 1;
    return 0;
}

/* See gz.h. */
void
bp_gz_free(struct bp_gz *g)
{
    if (g && g->ready)
        deflateEnd(&g->zs);
    if (g)
        g->ready = 0;
}

static void
put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* Runs deflate on what g's stream holds until it is used up (and, with Z_FINISH, the stream
 * ended), writing at the end of out. Returns 0, or -1 (out's cap, or zlib refused). */
static int
deflate_into(struct bp_gz *g, int flush, bp_buf_t *out)
{
    for (;;) {
        size_t want = deflateBound(&g->zs, g->zs.avail_in) + 16;
        size_t room = out->max - out->len;
        if (room == 0 || bp_buf_reserve(out, want < room ? want : room) != 0)
            return -1;
        room = out->cap - out->len;
        if (room > UINT_MAX)
            room = UINT_MAX;
        g->zs.next_out = (Bytef *)out->data + out->len;
        g->zs.avail_out = (uInt)room;
        int rc = deflate(&g->zs, flush);
        out->len += room - g->zs.avail_out;
        if (rc == Z_STREAM_ERROR)
            return -1;
        if (flush == Z_FINISH ? rc == Z_STREAM_END
                              : g->zs.avail_in == 0 && g->zs.avail_out != 0)
            return 0;
        /* out of room: the next turn reserves more (or meets out's cap) */
    }
}

/* See gz.h. */
int
bp_gz_add(struct bp_gz *g, struct bp_gz_member *m, const void *p, size_t n, int last,
          bp_buf_t *out)
{
    /* magic, deflate, no flags, no time, extra flags (4: the fastest), OS 3 (Unix) */
    unsigned char head[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3 };
    unsigned char tail[8];
    if (!g->ready || m->ended || n > UINT_MAX)
        return -1;
    if (!m->started) {
        head[8] = g->level == 1 ? 4 : g->level == 9 ? 2 : 0;
        if (bp_buf_append(out, head, sizeof(head)) != 0)
            return -1;
        m->started = 1;
    }
    if (n == 0 && !last)
        return 0;
    m->crc = (uint32_t)crc32_z(m->crc, p, n);
    m->isize += (uint32_t)n;
    if (deflateReset(&g->zs) != Z_OK)
        return -1;
    g->zs.next_in = (Bytef *)(uintptr_t)p;
    g->zs.avail_in = (uInt)n;
    int rc = deflate_into(g, last ? Z_FINISH : Z_SYNC_FLUSH, out);
    g->zs.next_in = NULL;
    g->zs.avail_in = 0;
    if (rc != 0)
        return -1;
    if (last) {
        put_le32(tail, m->crc);
        put_le32(tail + 4, m->isize);
        if (bp_buf_append(out, tail, sizeof(tail)) != 0)
            return -1;
        m->ended = 1;
    }
    return 0;
}

/* See gz.h. */
int
bp_gz_magic(const void *p, size_t n)
{
    const unsigned char *b = p;
    return n >= 2 && b[0] == 0x1f && b[1] == 0x8b;
}

/* ---- reading ---- */

/* See gz.h. */
void
bp_gunzip_reset(struct bp_gunzip *z)
{
    if (z->ready)
        inflateReset(&z->zs);
    z->in_member = 0;
    z->members = 0;
}

/* See gz.h. */
void
bp_gunzip_free(struct bp_gunzip *z)
{
    if (z && z->ready)
        inflateEnd(&z->zs);
    if (z) {
        z->ready = 0;
        z->in_member = 0;
        z->members = 0;
    }
}

static int
gunzip_fail(struct bp_gunzip *z, int rc, char *err, size_t errlen)
{
    if (rc == Z_MEM_ERROR)
        snprintf(err, errlen, "out of memory inflating gzip");
    else
        snprintf(err, errlen, "not valid gzip: %s", z->zs.msg ? z->zs.msg : "corrupt data");
    return -1;
}

/* See gz.h. */
int
bp_gunzip_run(struct bp_gunzip *z, const unsigned char **in, size_t *inlen, bp_buf_t *out,
              size_t max_out, char *err, size_t errlen)
{
    if (!z->ready) {
        memset(&z->zs, 0, sizeof(z->zs));
        z->zs.zalloc = bp_zalloc;
        z->zs.zfree = bp_zfree;
        /* 16 + 15: a gzip header and trailer (checked: CRC-32 and length) around deflate */
        if (inflateInit2(&z->zs, 16 + 15) != Z_OK)
            return gunzip_fail(z, Z_MEM_ERROR, err, errlen);
        z->ready = 1;
    }
    size_t added = 0;
    while (*inlen && added < max_out) {
        if (!z->in_member) {
            /* gzip(1) reads members one after another; anything else after one is not ours */
            if ((*in)[0] != 0x1f || (*inlen > 1 && (*in)[1] != 0x8b)) {
                snprintf(err, errlen, "not valid gzip: %s", z->members
                         ? "bytes after the end of the compressed data" : "no gzip header");
                return -1;
            }
            if (z->members && inflateReset(&z->zs) != Z_OK)
                return gunzip_fail(z, Z_STREAM_ERROR, err, errlen);
            z->in_member = 1;
        }
        size_t room = max_out - added;
        if (room > out->max - out->len)
            room = out->max - out->len;
        if (room == 0 && added)
            break;      /* the caller consumes what came, then calls again */
        if (room == 0 || bp_buf_reserve(out, room) != 0) {
            snprintf(err, errlen, "no room for the inflated bytes");
            return -1;
        }
        size_t in_now = *inlen < UINT_MAX ? *inlen : UINT_MAX;
        uInt out_now = room < UINT_MAX ? (uInt)room : UINT_MAX;
        z->zs.next_in = (Bytef *)(uintptr_t)*in;
        z->zs.avail_in = (uInt)in_now;
        z->zs.next_out = (Bytef *)out->data + out->len;
        z->zs.avail_out = out_now;
        int rc = inflate(&z->zs, Z_NO_FLUSH);
        size_t used = in_now - z->zs.avail_in, made = out_now - z->zs.avail_out;
        z->zs.next_in = NULL;
        z->zs.avail_in = 0;
        *in += used;
        *inlen -= used;
        out->len += made;
        added += made;
        if (rc == Z_STREAM_END) {
            z->in_member = 0;
            z->members++;
        } else if (rc == Z_BUF_ERROR && used == 0 && made == 0) {
            break;      /* cannot happen with input and room; never spin on it */
        } else if (rc != Z_OK) {
            return gunzip_fail(z, rc, err, errlen);
        }
    }
    return 0;
}

/* See gz.h. */
int
bp_gunzip_end(const struct bp_gunzip *z, char *err, size_t errlen)
{
    if (z->in_member || !z->members) {
        snprintf(err, errlen, "not valid gzip: the compressed data is cut short");
        return -1;
    }
    return 0;
}
