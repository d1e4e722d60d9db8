/* gz.c - gzip for archive objects: ISA-L's igzip compresses, zlib inflates (replay).
 *
 * Why ISA-L's igzip (libisal, already linked for CRC32C): it compresses a stream as the lines
 * arrive, with zlib's sync flush, so an object is one gzip member built in one pass, and it is
 * the fastest of the three Debian libraries measured. On the demo's corpus
 * (tests/tools/gen_events.lua, 200,000 events of ~400 bytes, ordered and live alike; MB stored
 * and CPU-s per 1M events, this machine shared, compression and CRC only, 256 KB chunks):
 * zlib level 1 112 MB, 3.6 s; libdeflate level 1 101 MB, 1.8 s; igzip level 1 106 MB, 0.6 s;
 * igzip level 2 104 MB, 0.7 s. Raw: 403 MB.
 *
 * Why not libdeflate, though it stores 5% fewer bytes: it compresses a whole buffer in one call
 * and cannot continue a deflate stream, so an object built a chunk at a time would be several
 * gzip members one after another. RFC 1952 (2.2) allows that and gzip(1), Python's gzip module,
 * Node's zlib (nodejs/node#5120), urllib3 (urllib3/urllib3#1289, under google-cloud-storage) and
 * Go read every member; but browsers, which send Accept-Encoding: gzip and so receive the stored
 * bytes, stop after the first one (the WHATWG Compression Streams standard reads one member; see
 * curl/curl#22156, where curl --compressed also failed on them), and neither Cloud Storage's
 * decompressive transcoding (cloud.google.com/storage/docs/transcoding) nor BigQuery's load
 * jobs of gzip JSON (bigquery/docs/loading-data-cloud-storage-json) say whether they read past
 * the first member. A reader that stops there loses lines silently. One member is what every
 * reader reads.
 *
 * One compressor for every object: igzip's state (about 80 KB) and level buffer (about 280 KB)
 * are allocated once, and a backfill keeps tens of thousands of objects open at once. So an
 * object's bytes are compressed a chunk at a time (BP_GZ_CHUNK, gathered by the caller) with the
 * shared state reset before each chunk, and each chunk ends with a sync flush (byte-aligned, no
 * final bit), so the chunks of one object follow each other as blocks of one deflate stream:
 * one gzip member. A chunk starting without the previous chunk's history costs ~2% of the stored
 * bytes at 256 KB; the sync flush marker costs 5 bytes a chunk. */
#include "gz.h"

#include <isa-l/crc.h>
#include <isa-l/igzip_lib.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* igzip's level buffer, the size its header suggests for each level (0 needs none) */
static size_t
level_buf_size(int level)
{
    return level == 1 ? ISAL_DEF_LVL1_DEFAULT : level == 2 ? ISAL_DEF_LVL2_DEFAULT
         : level == 3 ? ISAL_DEF_LVL3_DEFAULT : 0;
}

/* See gz.h. */
int
bp_gz_init(struct bp_gz *g, int level)
{
    memset(g, 0, sizeof(*g));
    if (level < ISAL_DEF_MIN_LEVEL || level > ISAL_DEF_MAX_LEVEL)
        return -1;
    g->level = level;
    g->level_buf_size = level_buf_size(level);
    /* the runtime's malloc (tests/alloc_fail injects failures here): a failure is returned,
     * never an abort, and the run refuses to start with the reason (rt_start.c). Zeroed:
     * igzip's match finder reads hash slots no reset clears (a stale slot is only a poorer
     * guess it checks), and valgrind, which the unit tests run under, flags unset ones */
    g->zs = calloc(1, sizeof(*g->zs));
    if (!g->zs)
        return -1;
    if (g->level_buf_size && !(g->level_buf = calloc(1, g->level_buf_size))) {
        free(g->zs);
        g->zs = NULL;
        return -1;
    }
    isal_deflate_init(g->zs);
    g->ready = 1;
    return 0;
}

/* See gz.h. */
void
bp_gz_free(struct bp_gz *g)
{
    if (!g)
        return;
    free(g->zs);
    free(g->level_buf);
    g->zs = NULL;
    g->level_buf = NULL;
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

/* The most deflate can take for n bytes: stored blocks of at most 64 KB, 5 bytes a block, and
 * room for the block headers and the sync flush marker. */
static size_t
deflate_bound(size_t n)
{
    return n + (n >> 12) + 5 * (n / 65535 + 1) + 1024;
}

/* Runs igzip on what g's stream holds until it is used up and the chunk ended (the sync flush
 * out, or with last the final block), writing at the end of out. Returns 0, or -1 (out's cap, or
 * igzip refused). */
static int
deflate_into(struct bp_gz *g, int last, bp_buf_t *out)
{
    struct isal_zstream *s = g->zs;
    size_t want = deflate_bound(s->avail_in);
    for (;;) {
        size_t room = out->max - out->len;
        if (want > room)
            want = room;
        if (want == 0 || bp_buf_reserve(out, want) != 0)
            return -1;
        room = out->cap - out->len;
        if (room > UINT32_MAX)
            room = UINT32_MAX;
        uint32_t in_before = s->avail_in;
        s->next_out = (uint8_t *)out->data + out->len;
        s->avail_out = (uint32_t)room;
        int rc = isal_deflate(s);
        size_t made = room - s->avail_out;
        out->len += made;
        if (rc != COMP_OK)
            return -1;
        /* igzip's own test for a finished flush (igzip_lib.h): its state back at a new block */
        if (s->avail_in == 0 &&
            s->internal_state.state == (last ? ZSTATE_END : ZSTATE_NEW_HDR))
            return 0;
        if (made == 0 && s->avail_in == in_before) {
            /* no progress: it wants more room than it was given; never spin at the cap */
            if (out->max - out->len <= out->cap - out->len)
                return -1;
            want = 2 * (out->cap - out->len) + 4096;
        } else {
            want = deflate_bound(s->avail_in);
        }
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
    if (!g->ready || m->ended || n > UINT32_MAX)
        return -1;
    if (!m->started) {
        head[8] = g->level <= 1 ? 4 : 0;
        if (bp_buf_append(out, head, sizeof(head)) != 0)
            return -1;
        m->started = 1;
    }
    if (n == 0 && !last)
        return 0;
    /* igzip's CRC-32 of gzip (crc32_gzip_refl: zlib's crc32, continued from the last value) */
    m->crc = crc32_gzip_refl(m->crc, (unsigned char *)(uintptr_t)p, (uint64_t)n);
    m->isize += (uint32_t)n;
    struct isal_zstream *s = g->zs;
    /* a fresh deflate state for each chunk; reset keeps no setting of ours, so all are set */
    isal_deflate_reset(s);
    s->level = (uint32_t)g->level;
    s->level_buf = g->level_buf;
    s->level_buf_size = (uint32_t)g->level_buf_size;
    s->gzip_flag = 0;       /* raw deflate: the header and trailer are written here */
    s->flush = SYNC_FLUSH;
    s->end_of_stream = last ? 1 : 0;
    s->next_in = (uint8_t *)(uintptr_t)p;
    s->avail_in = (uint32_t)n;
    int rc = deflate_into(g, last, out);
    s->next_in = NULL;
    s->avail_in = 0;
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
