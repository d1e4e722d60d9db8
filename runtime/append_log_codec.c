/* append_log_codec.c - the bytes of the append log (format in append_log_int.h): CRC32C, record
 * writers, and a parser that validates every field before anything is believed.
 *
 * Why CRC32C, and from ISA-L: the checksum guards against torn and corrupted records, where any
 * 32-bit CRC would do; CRC32C (Castagnoli) is the one with an instruction on x86-64 (SSE 4.2) and
 * arm64, and the one Google's own formats use. zlib's crc32 is the other polynomial and OpenSSL
 * has none; Debian 12 ships no libcrc32c, but ISA-L (libisal-dev, the library Ceph and SPDK take
 * their checksums from) is in Debian 12 on every architecture we build for and picks the fastest
 * code at run time. Its crc32_iscsi is CRC32C without the final inversion: we invert on both
 * sides, so the value is the standard one (check value 0xE3069283 for "123456789"). */
#include "append_log_int.h"

#include <isa-l/crc.h>
#include <limits.h>
#include <string.h>

/* The standard CRC32C of p[0..len). */
uint32_t
bp_append_log_crc32c(const void *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    const unsigned char *b = p;
    /* crc32_iscsi takes an int length and a non-const pointer it only reads */
    while (len > 0) {
        int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
        c = crc32_iscsi((unsigned char *)b, chunk, c);
        b += chunk;
        len -= (size_t)chunk;
    }
    return c ^ 0xffffffffu;
}

static uint16_t
get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* A cursor over a payload that refuses to read past its end. */
struct in {
    const uint8_t *p;
    size_t left;
    int bad;
};

static const uint8_t *
take(struct in *in, size_t n)
{
    if (in->bad || in->left < n) {
        in->bad = 1;
        return NULL;
    }
    const uint8_t *p = in->p;
    in->p += n;
    in->left -= n;
    return p;
}

static uint32_t
take32(struct in *in)
{
    const uint8_t *p = take(in, 4);
    return p ? get32(p) : 0;
}

static uint64_t
take64(struct in *in)
{
    const uint8_t *p = take(in, 8);
    return p ? get64(p) : 0;
}

/* A length-prefixed (u16) byte string of 1..max bytes. */
static const char *
take_str(struct in *in, size_t max, size_t *len)
{
    const uint8_t *l = take(in, 2);
    *len = l ? get16(l) : 0;
    if (!l || *len == 0 || *len > max) {
        in->bad = 1;
        return NULL;
    }
    return (const char *)take(in, *len);
}

/* Checks an append's entries: ids 1..MAX_ID bytes, rows within the message's row_total, and the
 * rows of the entries adding up to the append's. */
static int
parse_entries(struct in *in, struct al_record *r)
{
    uint64_t sum = 0;
    r->entries = in->p;
    for (uint32_t i = 0; i < r->n && !in->bad; i++) {
        size_t id_len;
        if (!take_str(in, BP_APPEND_LOG_MAX_ID, &id_len))
            return -1;
        uint32_t total = take32(in), first = take32(in), rows = take32(in);
        if (in->bad || total == 0 || total > BP_APPEND_LOG_MAX_ROWS || rows == 0 ||
            first >= total || rows > total - first)
            return -1;
        sum += rows;
    }
    return in->bad || sum != r->rows ? -1 : 0;
}

static int
parse_payload(struct in *in, struct al_record *r)
{
    if (r->type == AL_REC_HEADER) {
        const uint8_t *m = take(in, AL_MAGIC_LEN);
        if (!m || memcmp(m, AL_MAGIC, AL_MAGIC_LEN) != 0)
            return -1;
        r->pipeline = take_str(in, AL_MAX_PIPELINE, &r->pipeline_len);
        r->worker = take32(in);
        r->created = take64(in);
        return in->bad ? -1 : 0;
    }
    if (r->type == AL_REC_APPEND) {
        r->time = take64(in);
        r->stream = take_str(in, BP_APPEND_LOG_MAX_STREAM, &r->stream_len);
        r->offset = (int64_t)take64(in);
        r->rows = take32(in);
        r->n = take32(in);
        if (in->bad || r->offset < 0 || r->rows == 0 || r->rows > BP_APPEND_LOG_MAX_ROWS ||
            r->n == 0 || r->n > r->rows || (uint64_t)r->offset > (uint64_t)INT64_MAX - r->rows)
            return -1;
        return parse_entries(in, r);
    }
    if (r->type == AL_REC_FINAL) {
        r->stream = take_str(in, BP_APPEND_LOG_MAX_STREAM, &r->stream_len);
        r->row_count = (int64_t)take64(in);
        return in->bad || r->row_count < 0 ? -1 : 0;
    }
    return -1;
}

/* Reads the record at p (avail bytes there). AL_OK with r filled (pointers into p); AL_TRUNCATED
 * when the record does not fit in avail (a torn last record, or a length field gone wrong);
 * AL_BAD when its checksum or a field is wrong. A record of another version is AL_OK with
 * r->version telling it: the caller decides. Trailing bytes inside a record are AL_BAD. */
int
al_parse(const uint8_t *p, size_t avail, struct al_record *r)
{
    memset(r, 0, sizeof(*r));
    if (avail < AL_FRAME + 2)
        return AL_TRUNCATED;
    uint32_t len = get32(p);
    if (len < 2 || len > BP_APPEND_LOG_MAX_RECORD)
        return AL_BAD;
    if (avail - AL_FRAME < len)
        return AL_TRUNCATED;
    uint8_t lenb[4];
    memcpy(lenb, p, 4);
    uint32_t c = 0xffffffffu;
    c = crc32_iscsi(lenb, 4, c);
    c = crc32_iscsi((unsigned char *)p + AL_FRAME, (int)len, c);
    if ((c ^ 0xffffffffu) != get32(p + 4))
        return AL_BAD;
    r->size = AL_FRAME + (size_t)len;
    r->version = p[AL_FRAME];
    r->type = p[AL_FRAME + 1];
    if (r->version != BP_APPEND_LOG_VERSION)
        return AL_OK;
    struct in in = { p + AL_FRAME + 2, len - 2, 0 };
    if (parse_payload(&in, r) != 0 || in.left != 0)
        return AL_BAD;
    return AL_OK;
}

/* The next entry of a record al_parse accepted (the ids point into the record). */
void
al_entry_next(const uint8_t **cur, struct bp_append_log_msg *m)
{
    const uint8_t *p = *cur;
    m->id_len = get16(p);
    m->id = (const char *)p + 2;
    p += 2 + m->id_len;
    m->row_total = get32(p);
    m->first_row = get32(p + 4);
    m->rows = get32(p + 8);
    *cur = p + 12;
}

/* Whether a whole, valid record starts anywhere in p[from..len): tells a torn last record (only
 * garbage or nothing after it) from a corrupted one in the middle (good records after it). */
int
al_valid_after(const uint8_t *p, size_t len, size_t from)
{
    struct al_record r;
    for (size_t q = from; q + AL_FRAME + 2 <= len; q++) {
        uint32_t l = get32(p + q);
        /* cheap tests first: most positions fail them without a CRC */
        if (l < 2 || l > len - q - AL_FRAME || p[q + AL_FRAME] != BP_APPEND_LOG_VERSION ||
            p[q + AL_FRAME + 1] < AL_REC_HEADER || p[q + AL_FRAME + 1] > AL_REC_FINAL)
            continue;
        if (al_parse(p + q, len - q, &r) == AL_OK)
            return 1;
    }
    return 0;
}

size_t
al_header_size(size_t pipeline_len)
{
    return AL_FRAME + 2 + AL_MAGIC_LEN + 2 + pipeline_len + 4 + 8;
}

size_t
al_append_size(size_t stream_len, size_t n, size_t ids_len)
{
    return AL_FRAME + 2 + 8 + 2 + stream_len + 8 + 4 + 4 + n * (2 + 12) + ids_len;
}

size_t
al_final_size(size_t stream_len)
{
    return AL_FRAME + 2 + 2 + stream_len + 8;
}

/* Starts a record of this type in buf (sized with al_*_size). */
void
al_begin(struct al_out *o, uint8_t *buf, int type)
{
    o->p = buf;
    o->len = AL_FRAME;
    buf[o->len++] = BP_APPEND_LOG_VERSION;
    buf[o->len++] = (uint8_t)type;
}

void
al_put_u16(struct al_out *o, uint16_t v)
{
    o->p[o->len++] = (uint8_t)v;
    o->p[o->len++] = (uint8_t)(v >> 8);
}

void
al_put_u32(struct al_out *o, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        o->p[o->len++] = (uint8_t)(v >> (8 * i));
}

void
al_put_u64(struct al_out *o, uint64_t v)
{
    al_put_u32(o, (uint32_t)v);
    al_put_u32(o, (uint32_t)(v >> 32));
}

void
al_put_bytes(struct al_out *o, const void *p, size_t n)
{
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

/* Fills the frame (length, then the CRC over it and the body); returns the record's size. */
size_t
al_end(struct al_out *o)
{
    uint32_t len = (uint32_t)(o->len - AL_FRAME);
    struct al_out f = { o->p, 0 };
    al_put_u32(&f, len);
    uint32_t c = 0xffffffffu;
    c = crc32_iscsi(o->p, 4, c);
    c = crc32_iscsi(o->p + AL_FRAME, (int)len, c);
    al_put_u32(&f, c ^ 0xffffffffu);
    return o->len;
}
