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

#endif
