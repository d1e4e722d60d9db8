/* gz.h - gzip for archive objects (ISA-L's igzip writes, zlib reads). Writing: an object's lines
 * become one gzip member a chunk at a time as the object grows, every open object sharing one
 * deflate state (struct bp_gz), so thousands of open objects cost their bytes, not a compressor
 * each. Reading: an
 * inflater that turns a stream of gzip bytes (one member or several after another, as gzip(1)
 * writes them) back into NDJSON in bounded steps, so a small object that inflates to gigabytes
 * never needs more memory than one step. */
#ifndef BP_GZ_H
#define BP_GZ_H

#include "buf.h"
#include "common.h"

#include <zlib.h>

/* Plain bytes of an object compressed at a time, at most (a caller may compress less, down to
 * half, rather than grow its buffer); each chunk starts a fresh deflate history: see gz.c for
 * the cost in bytes. */
#define BP_GZ_CHUNK (256 * 1024)

struct isal_zstream;

/* The compressor every object of a store shares. */
struct bp_gz {
    struct isal_zstream *zs;        /* igzip's state */
    unsigned char *level_buf;       /* igzip's working memory for levels 1..3 */
    size_t level_buf_size;
    int ready;                      /* both allocated */
    int level;
};

/* One object's gzip member while it is written. Zeroed = not started. */
struct bp_gz_member {
    uint32_t crc;           /* CRC-32 of the plain bytes so far */
    uint32_t isize;         /* plain bytes so far, modulo 2^32 (gzip's ISIZE) */
    int started;            /* the header is out */
    int ended;              /* the trailer is out: nothing more may be added */
};

/* Sets up g to compress at igzip level `level` (0..3: 1 is the archive's, about zlib's level 1
 * in bytes at a sixth of its CPU). Its memory (about 360 KB at level 1) comes from the runtime's
 * malloc. Returns 0, or -1 for a level out of range or when it cannot be allocated (g is then
 * safe to free). */
int bp_gz_init(struct bp_gz *g, int level) BP_WUR;
void bp_gz_free(struct bp_gz *g);

/* Appends the n plain bytes at p to member m, compressed, at the end of out (the member's
 * header first when m is new); last = 1 ends the member (its final block and trailer). out's
 * cap bounds the object: passing it is an error, as is any igzip failure. The stored bytes of a
 * member are valid gzip only once last was given. Returns 0, or -1 (m must then be dropped). */
int bp_gz_add(struct bp_gz *g, struct bp_gz_member *m, const void *p, size_t n, int last,
              bp_buf_t *out) BP_WUR;

/* Whether the first bytes (n of them, 2 suffice) are a gzip member's magic (1f 8b). An archive
 * line never starts with 0x1f, so this tells a compressed object from a plain one. */
int bp_gz_magic(const void *p, size_t n);

/* Reading gzip back. Zeroed, or after bp_gunzip_reset, it expects a member's first byte. */
struct bp_gunzip {
    z_stream zs;
    int ready;              /* inflateInit2 done */
    int in_member;          /* a member started and its trailer has not been read */
    uint64_t members;       /* members read to their end */
};

/* Starts over for another stream (keeps the inflater's memory). */
void bp_gunzip_reset(struct bp_gunzip *z);
void bp_gunzip_free(struct bp_gunzip *z);

/* Inflates from *in (*inlen bytes, both advanced past what was used) to the end of out, adding
 * at most max_out bytes (and no more than out's cap leaves room for), and stops there or when
 * the input is used up: the input left is the caller's to give again. Returns 0, or -1 with err
 * set: the bytes are not gzip (corrupt data, a bad checksum or length, bytes after a member that
 * start no other), memory ran out, or out has no room at all. */
int bp_gunzip_run(struct bp_gunzip *z, const unsigned char **in, size_t *inlen, bp_buf_t *out,
                  size_t max_out, char *err, size_t errlen) BP_WUR;

/* The input ended: returns 0 when it ended between members (at least one read), or -1 with err
 * set (cut short inside a member, or no member at all). */
int bp_gunzip_end(const struct bp_gunzip *z, char *err, size_t errlen) BP_WUR;

#endif
