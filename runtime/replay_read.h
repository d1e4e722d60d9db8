/* replay_read.h - the bytes of the object a replay reads (source_replay.c), one object at a time:
 * a gs:// object in Range requests of the generation it was listed with, a local file in read()s,
 * BP_REPLAY_CHUNK bytes each, appended to a buffer the source splits into lines and consumes.
 * An object whose stored bytes are gzip (archive.compression = gzip, or a file gzip(1) wrote:
 * told by its first two bytes, whatever its name) is inflated on the way, BP_REPLAY_CHUNK plain
 * bytes at a time. Memory stays at one read (and its inflated step) plus the longest accepted
 * line, whatever the object's size or its compression ratio. */
#ifndef BP_REPLAY_READ_H
#define BP_REPLAY_READ_H

#include "api.h"
#include "buf.h"
#include "gz.h"
#include "replay.h"

#define BP_REPLAY_CHUNK (4 * 1024 * 1024)

/* A Range request ended: status 0 when its bytes are in the buffer (eof may be set), or -1 when
 * the object cannot be read (why, for the log). Runs from the loop, never inside a call below;
 * not after bp_replay_read_stop. */
typedef void (*bp_replay_read_fn)(void *arg, int status, const char *why);

struct bp_replay_read {
    struct bp_api *api;         /* lent: NULL when every SOURCE is local */
    const char *gcs_base;       /* lent: ".../storage/v1" */
    const struct bp_replay_obj *ob;     /* the object opened last (lent) */
    int fd;                     /* a local object's, or -1 */
    uint64_t off;               /* bytes of it fetched or read */
    int fetching;               /* a Range request in flight */
    int eof;                    /* every byte of the object is in buf */
    int in_eof;                 /* every stored byte of the object was fetched or read */
    int gzip;                   /* -1: not known yet (under two bytes seen), 0: plain, 1: gzip */
    bp_buf_t zin;               /* gzip: stored bytes not inflated yet (at most one read);
                                 * not known yet: the first byte */
    struct bp_gunzip gz;
    int stopped;                /* replies are dropped */
    bp_buf_t buf;               /* read and not yet consumed (bp_buf_consume) */
    char *chunk;                /* local reads */
    uint64_t bytes_read;        /* of every object so far */
    bp_replay_read_fn done;
    void *arg;
};

/* Sets r up for objects through api at base (both lent, kept for r's life; api may be NULL when
 * every object is local) with lines of at most max_line bytes; done(arg, ...) answers Range
 * requests. */
void bp_replay_read_init(struct bp_replay_read *r, struct bp_api *api, const char *base,
                         size_t max_line, bp_replay_read_fn done, void *arg);

/* Starts reading ob (lent until the next open or free) from its first byte, with an empty
 * buffer; a local file is opened here. Returns 0, or -1 with err set (the file cannot be
 * opened). */
int bp_replay_read_open(struct bp_replay_read *r, const struct bp_replay_obj *ob, char *err,
                        size_t errlen) BP_WUR;

/* The next read of the open object: a local file's bytes at once (0; a read interrupted by a
 * signal adds nothing), or a gs:// Range request started (1: done follows from the loop; one at
 * a time). Returns -1 with err set when the object cannot be read. */
int bp_replay_read_next(struct bp_replay_read *r, char *err, size_t errlen) BP_WUR;

/* The object is read to its end (or given up): a local file is closed. */
void bp_replay_read_close(struct bp_replay_read *r);

/* The source stopped: a Range reply that arrives from now on is dropped without a callback. */
void bp_replay_read_stop(struct bp_replay_read *r);

/* Closes the file and frees the buffers (a request in flight must be dropped by the API). */
void bp_replay_read_free(struct bp_replay_read *r);

#endif
