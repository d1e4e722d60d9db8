/* replay_read.c - reading the objects of a replay back, one at a time: gs:// objects in Range
 * requests of the listed generation (gcs_read.c), so an object overwritten since the listing is
 * an error rather than other bytes, and local files in read()s. Either way a read is at most
 * BP_REPLAY_CHUNK bytes and lands in one buffer that the source consumes line by line. */
#include "replay_read.h"
#include "gcs_read.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* See replay_read.h. */
void
bp_replay_read_init(struct bp_replay_read *r, struct bp_api *api, const char *base,
                    size_t max_line, bp_replay_read_fn done, void *arg)
{
    memset(r, 0, sizeof(*r));
    r->api = api;
    r->gcs_base = base;
    r->fd = -1;
    r->done = done;
    r->arg = arg;
    /* the longest accepted line, plus one read arriving after it */
    bp_buf_init(&r->buf, max_line + BP_REPLAY_CHUNK + 1024);
    /* (one read, and the byte of a first read too short to tell gzip from plain text) */
    bp_buf_init(&r->zin, BP_REPLAY_CHUNK + 1);
    r->chunk = bp_xmalloc(BP_REPLAY_CHUNK);
}

/* gzip: inflates what waits in zin, at most BP_REPLAY_CHUNK plain bytes (the buffer's room
 * past the longest line), and at the end of the stored bytes checks that the gzip data ended
 * too. Returns 0, or -1 with err set (not valid gzip: the reason names the object). */
static int
inflate_step(struct bp_replay_read *r, char *err, size_t errlen)
{
    char why[300];
    const unsigned char *in = (const unsigned char *)r->zin.data;
    size_t left = r->zin.len;
    if (left && bp_gunzip_run(&r->gz, &in, &left, &r->buf, BP_REPLAY_CHUNK, why,
                              sizeof(why)) != 0) {
        snprintf(err, errlen, "%s: %s (stored bytes around %" PRIu64 "): the object cannot be "
                 "replayed", r->ob->label, why, r->off - left);
        return -1;
    }
    bp_buf_consume(&r->zin, r->zin.len - left);
    if (r->in_eof && r->zin.len == 0) {
        if (bp_gunzip_end(&r->gz, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "%s: %s: the object cannot be replayed", r->ob->label, why);
            return -1;
        }
        r->eof = 1;
    }
    return 0;
}

/* Stored bytes of the object arrive: appended to the buffer (the splitter drops an over-long
 * line's bytes as they come, so it holds at most max_line bytes of an unfinished line), or, when
 * the object's first bytes are gzip's, inflated into it a step at a time. */
static int
take(struct bp_replay_read *r, const char *data, size_t n, char *err, size_t errlen)
{
    r->bytes_read += n;
    /* the object's first two bytes tell; a first read of one byte (a server may send fewer
     * than asked) waits in zin for the next, unless the object ends there */
    if (r->gzip < 0) {
        if (bp_buf_append(&r->zin, data, n) != 0) {
            snprintf(err, errlen, "%s: no room for the stored bytes", r->ob->label);
            return -1;
        }
        if (r->zin.len < 2 && !r->in_eof)
            return 0;
        r->gzip = bp_gz_magic(r->zin.data, r->zin.len);
        if (r->gzip == 1)
            return inflate_step(r, err, errlen);
        data = r->zin.data;
        n = r->zin.len;
    }
    if (r->gzip != 1) {
        r->eof = r->in_eof;
        int rc = bp_buf_append(&r->buf, data, n);
        bp_buf_reset(&r->zin);
        if (rc != 0) {
            snprintf(err, errlen, "%s: a sink failed", r->ob->label);
            return -1;
        }
        return 0;
    }
    if (bp_buf_append(&r->zin, data, n) != 0) {
        snprintf(err, errlen, "%s: no room for the stored bytes", r->ob->label);
        return -1;
    }
    return inflate_step(r, err, errlen);
}

static void
on_range(void *arg, int status, const char *data, size_t len, const char *err)
{
    struct bp_replay_read *r = arg;
    const struct bp_replay_obj *ob = r->ob;
    char why[1200];
    r->fetching = 0;
    if (r->stopped)
        return;
    if (status != 0) {
        snprintf(why, sizeof(why), "reading %s: %s", ob->label, err);
        r->done(r->arg, -1, why);
        return;
    }
    r->off += len;
    if (len == 0 || r->off >= ob->size)
        r->in_eof = 1;
    if (take(r, data, len, why, sizeof(why)) != 0) {
        r->done(r->arg, -1, why);
        return;
    }
    r->done(r->arg, 0, NULL);
}

static int
fetch(struct bp_replay_read *r, char *err, size_t errlen)
{
    const struct bp_replay_obj *ob = r->ob;
    char why[512];
    uint64_t left = ob->size - r->off;
    size_t len = left < BP_REPLAY_CHUNK ? (size_t)left : BP_REPLAY_CHUNK;
    if (bp_gcs_get_start(r->api, r->gcs_base, ob->bucket, ob->name, ob->generation, ob->size,
                         r->off, len, on_range, r, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    r->fetching = 1;
    return 1;
}

static int
read_local(struct bp_replay_read *r, char *err, size_t errlen)
{
    ssize_t n = read(r->fd, r->chunk, BP_REPLAY_CHUNK);
    if (n < 0 && errno == EINTR)
        return 0;
    if (n < 0) {
        snprintf(err, errlen, "reading %s: %s", r->ob->label, strerror(errno));
        return -1;
    }
    if (n == 0)
        r->in_eof = 1;
    r->off += (uint64_t)n;
    return take(r, r->chunk, (size_t)n, err, errlen);
}

/* See replay_read.h. */
int
bp_replay_read_open(struct bp_replay_read *r, const struct bp_replay_obj *ob, char *err,
                    size_t errlen)
{
    r->ob = ob;
    r->off = 0;
    r->in_eof = r->eof = ob->bucket && ob->size == 0;
    r->gzip = -1;
    bp_buf_reset(&r->buf);
    bp_buf_reset(&r->zin);
    bp_gunzip_reset(&r->gz);
    if (!ob->bucket && (r->fd = open(ob->name, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot read %s: %s", ob->label, strerror(errno));
        return -1;
    }
    bp_log(BP_LOG_DEBUG, "replay", "reading %s (%" PRIu64 " bytes)", ob->label, ob->size);
    return 0;
}

/* See replay_read.h. */
int
bp_replay_read_next(struct bp_replay_read *r, char *err, size_t errlen)
{
    /* a gzip object's stored bytes already here go first: one inflated step at a time */
    if (r->gzip == 1 && (r->zin.len || r->in_eof))
        return inflate_step(r, err, errlen);
    return r->ob->bucket ? fetch(r, err, errlen) : read_local(r, err, errlen);
}

/* See replay_read.h. */
void
bp_replay_read_close(struct bp_replay_read *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

/* See replay_read.h. */
void
bp_replay_read_stop(struct bp_replay_read *r)
{
    r->stopped = 1;
}

/* See replay_read.h. */
void
bp_replay_read_free(struct bp_replay_read *r)
{
    bp_replay_read_close(r);
    bp_buf_free(&r->buf);
    bp_buf_free(&r->zin);
    bp_gunzip_free(&r->gz);
    free(r->chunk);
    r->chunk = NULL;
}
