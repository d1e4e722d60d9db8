/* append_log.h - the crash-safe record of Storage Write API appends that makes them exactly once
 * across a crash (kill -9, OOM, power loss) of the process that sent them.
 *
 * Before each append to an application-created COMMITTED stream is sent, the caller writes here
 * which messages it carries: the stream, the append's first offset and, in the order of the
 * append's rows, each Pub/Sub message id with the indexes of its rows. The record is on disk
 * (fdatasync) before the call returns. As acks are confirmed, the records whose messages are all
 * acked die; the file is rewritten without them once they are half of it.
 *
 * After a restart the file's records are the previous process's appends ("recovered"). The caller
 * finalizes each of their streams (FinalizeWriteStream returns its row count N) and says so here;
 * BigQuery commits an append whole or not at all, so a row is in the table exactly when its
 * offset is below N. For a redelivered message the log then answers stored (ack it without a new
 * append), not stored (append it again), or partly stored (append only the rows not stored).
 *
 * One file per pipeline and worker: <state_dir>/appends-<worker>.log, mode 0600. Not for more than
 * one process at a time (the workers of one pipeline each have their own index). */
#ifndef BP_APPEND_LOG_H
#define BP_APPEND_LOG_H

#include "common.h"

#include <stdint.h>
#include <time.h>

/* The format this build writes and reads (a header of another version is refused). */
#define BP_APPEND_LOG_VERSION 1
/* Limits of what one record may carry (larger inputs are refused, never cut). */
#define BP_APPEND_LOG_MAX_ID 1024              /* bytes of a message id */
#define BP_APPEND_LOG_MAX_STREAM 1024          /* bytes of a stream name */
#define BP_APPEND_LOG_MAX_ROWS (1u << 20)      /* rows of one message, of one append */
#define BP_APPEND_LOG_MAX_RECORD (4u << 20)    /* bytes of one record */

typedef struct bp_append_log bp_append_log_t;

struct bp_append_log_params {
    const char *dir;          /* state_dir: created (0700) when missing */
    const char *pipeline;     /* who writes: a file written for another pipeline is refused */
    int worker;               /* --workers index (0 for one process): the file's name */
    size_t max_mem;           /* bytes this log may hold in memory (0: 8 MiB) */
    long ttl_seconds;         /* recovered records older than this are dropped (0: 7 days) */
    size_t compact_min;       /* dead bytes before a rewrite is considered (0: 64 KiB) */
};

/* One message's rows in an append: `rows` consecutive rows of the append, which are the rows
 * first_row .. first_row + rows - 1 of the `row_total` rows the message yields in all tables.
 * A message whose rows are not consecutive in an append takes several entries. */
struct bp_append_log_msg {
    const char *id;
    size_t id_len;
    uint32_t row_total;
    uint32_t first_row;
    uint32_t rows;
};

enum bp_append_log_state {
    BP_APPEND_LOG_UNKNOWN = 0,   /* not in any recovered record: process it as usual */
    BP_APPEND_LOG_PENDING,       /* in a recovered stream not finalized yet: wait (nack) */
    BP_APPEND_LOG_STORED,        /* every row is in the table: ack without appending */
    BP_APPEND_LOG_NOT_STORED,    /* no row is in the table: append it again */
    BP_APPEND_LOG_PARTIAL,       /* some rows are: append only those whose bit is clear */
};

struct bp_append_log_answer {
    enum bp_append_log_state state;
    uint32_t row_total;          /* rows the message yields (STORED, NOT_STORED, PARTIAL) */
    const uint8_t *stored;       /* bit i (stored[i / 8] >> i % 8) set: row i is stored; valid
                                    until the next call on the log */
};

bp_append_log_t *bp_append_log_open(const struct bp_append_log_params *p, char *err,
                                    size_t errlen);
bp_append_log_t *bp_append_log_open_buf(const struct bp_append_log_params *p, const void *data,
                                        size_t len, char *err, size_t errlen);
void bp_append_log_free(bp_append_log_t *log);
int bp_append_log_write(bp_append_log_t *log, const char *stream, int64_t offset,
                        const struct bp_append_log_msg *msgs, size_t n, char *err,
                        size_t errlen) BP_WUR;
int bp_append_log_acked(bp_append_log_t *log, const char *id, size_t id_len, char *err,
                        size_t errlen) BP_WUR;
const char *bp_append_log_unfinalized(const bp_append_log_t *log, size_t i);
int bp_append_log_finalized(bp_append_log_t *log, const char *stream, int64_t row_count,
                            char *err, size_t errlen) BP_WUR;
void bp_append_log_lookup(bp_append_log_t *log, const char *id, size_t id_len,
                          struct bp_append_log_answer *out);
size_t bp_append_log_recovering(const bp_append_log_t *log);
void bp_append_log_expire(bp_append_log_t *log, time_t now);
int bp_append_log_compact(bp_append_log_t *log, char *err, size_t errlen) BP_WUR;
size_t bp_append_log_mem(const bp_append_log_t *log);
uint64_t bp_append_log_size(const bp_append_log_t *log);
const char *bp_append_log_path(const bp_append_log_t *log);

/* The file format (append_log_codec.c), shared with the loader and the tests. */
uint32_t bp_append_log_crc32c(const void *p, size_t len);

#endif
