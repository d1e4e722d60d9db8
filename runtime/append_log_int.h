/* append_log_int.h - the append log's file format, shared by append_log.c (state) and
 * append_log_codec.c (bytes). Not for other modules: they use append_log.h.
 *
 * A file is a sequence of records, each
 *     u32 len | u32 crc32c | u8 version | u8 type | payload (len - 2 bytes)
 * little-endian, the CRC32C over the len field and the len bytes that follow it. The first record
 * is the header; then appends and finalizations in the order they were written. */
#ifndef BP_APPEND_LOG_INT_H
#define BP_APPEND_LOG_INT_H

#include "append_log.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum { AL_REC_HEADER = 1, AL_REC_APPEND = 2, AL_REC_FINAL = 3 };

#define AL_FRAME 8                 /* len + crc */
#define AL_MAGIC "bpapplog"
#define AL_MAGIC_LEN 8
#define AL_MAX_PIPELINE 1024

/* A record as read: pointers into the buffer it was read from. */
struct al_record {
    int type;
    int version;
    size_t size;                   /* bytes of the whole record, frame included */
    /* AL_REC_HEADER */
    const char *pipeline;
    size_t pipeline_len;
    uint32_t worker;
    uint64_t created;
    /* AL_REC_APPEND and AL_REC_FINAL */
    const char *stream;
    size_t stream_len;
    /* AL_REC_APPEND */
    uint64_t time;
    int64_t offset;
    uint32_t rows;
    uint32_t n;
    const uint8_t *entries;        /* n entries, read one by one with al_entry_next */
    /* AL_REC_FINAL */
    int64_t row_count;
};

/* A writer over a buffer sized beforehand (al_*_size). */
struct al_out {
    uint8_t *p;
    size_t len;
};

/* Results of al_parse. */
enum { AL_OK = 0, AL_TRUNCATED = -1, AL_BAD = -2 };

int al_parse(const uint8_t *p, size_t avail, struct al_record *r);
void al_entry_next(const uint8_t **cur, struct bp_append_log_msg *m);
int al_valid_after(const uint8_t *p, size_t len, size_t from);

size_t al_header_size(size_t pipeline_len);
size_t al_append_size(size_t stream_len, size_t n, size_t ids_len);
size_t al_final_size(size_t stream_len);
void al_begin(struct al_out *o, uint8_t *buf, int type);
void al_put_u16(struct al_out *o, uint16_t v);
void al_put_u32(struct al_out *o, uint32_t v);
void al_put_u64(struct al_out *o, uint64_t v);
void al_put_bytes(struct al_out *o, const void *p, size_t n);
size_t al_end(struct al_out *o);

/* State shared by append_log.c (memory, messages, records) and append_log_file.c (the file). */
#define DEFAULT_MAX_MEM (8u << 20)
#define DEFAULT_TTL (7 * 86400L)   /* Pub/Sub keeps an unacked message at most 7 days */
#define DEFAULT_COMPACT_MIN (64u << 10)
#define AL_HDR 16                     /* the size kept before each counted allocation */

struct al_stream {
    struct al_stream *next;
    struct al_rec *head, *tail;    /* its records, in log order */
    size_t nrecs;
    int64_t final_n;               /* FinalizeWriteStream's row count; -1 before */
    int recovered;                 /* written by a previous process */
    size_t name_len;
    char name[];
};

struct al_ent {
    struct al_msg *m;              /* NULL once the message is acked */
    uint32_t row_total, first_row, rows;
    uint32_t pos;                  /* rows of the append before this entry's */
};

struct al_rec {
    struct al_rec *prev, *next;    /* every record, in log order */
    struct al_rec *sprev, *snext;  /* its stream's */
    struct al_stream *stream;
    uint8_t *raw;                  /* the record's bytes as written (rewritten as they are) */
    size_t size;
    uint64_t time;
    int64_t offset;
    uint32_t rows, n;
    uint32_t live;                 /* entries whose message is not acked yet */
    int recovered;
    struct al_ent e[];
};

struct al_ref {
    struct al_rec *r;
    uint32_t i;
};

struct al_msg {
    struct al_msg *hnext;
    struct al_ref *refs;           /* &one while one is enough (most messages: one append) */
    struct al_ref one;
    uint32_t nrefs, cap;
    uint32_t pending;              /* entries of a record being built (not linked yet) */
    size_t id_len;
    char id[];
};

struct bp_append_log {
    char path[4200];
    char dir[4096];
    char *pipeline;
    int worker;
    int fd;
    int broken;                    /* a failed write left the file in doubt: rewrite first */
    uint64_t size;                 /* bytes of whole records in the file */
    uint64_t dead;                 /* of them, records no longer needed */
    size_t mem, max_mem, compact_min;
    long ttl;
    struct al_rec *head, *tail;
    struct al_stream *streams;
    struct al_msg **buckets;
    size_t nbuckets, nmsgs;
    size_t recovering;             /* recovered records still alive */
    uint8_t *bits;                 /* the answer's bitmap */
    size_t bits_cap;
};

void *al_mem_alloc(bp_append_log_t *log, size_t n);
void al_mem_free(bp_append_log_t *log, void *q);
struct al_stream *al_stream_get(bp_append_log_t *log, const char *name, size_t len,
                                int recovered);
void al_stream_release(bp_append_log_t *log, struct al_stream *s);
struct al_rec *al_rec_new(bp_append_log_t *log, const uint8_t *raw, size_t size, uint32_t n);
void al_rec_discard(bp_append_log_t *log, struct al_rec *r);
int al_rec_fill(bp_append_log_t *log, struct al_rec *r, uint32_t i,
                const struct bp_append_log_msg *m, uint32_t pos);
void al_rec_unlink(bp_append_log_t *log, struct al_rec *r, int unref);
void al_rec_link(bp_append_log_t *log, struct al_stream *s, struct al_rec *r);
void al_set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b);
int al_file_append(bp_append_log_t *log, const uint8_t *p, size_t len, char *err,
                   size_t errlen);
int al_maybe_compact(bp_append_log_t *log, char *err, size_t errlen);
int al_expired(const bp_append_log_t *log, uint64_t t, time_t now);

#endif
