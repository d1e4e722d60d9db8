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
    r->chunk = bp_xmalloc(BP_REPLAY_CHUNK);
}

/* Bytes of the object arrive: appended to the buffer (the splitter drops an over-long line's
 * bytes as they come, so it holds at most max_line bytes of an unfinished line). */
static int
take(struct bp_replay_read *r, const char *data, size_t n)
{
    r->bytes_read += n;
    if (bp_buf_append(&r->buf, data, n) != 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
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
        r->eof = 1;
    if (take(r, data, len) != 0) {
        snprintf(why, sizeof(why), "%s: a sink failed", ob->label);
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
    if (bp_gcs_get_start(r->api, r->gcs_base, ob->bucket, ob->name, ob->generation, r->off, len,
                         on_range, r, why, sizeof(why)) != 0) {
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
        r->eof = 1;
    if (take(r, r->chunk, (size_t)n) != 0) {
        snprintf(err, errlen, "%s: a sink failed", r->ob->label);
        return -1;
    }
    return 0;
}

/* See replay_read.h. */
int
bp_replay_read_open(struct bp_replay_read *r, const struct bp_replay_obj *ob, char *err,
                    size_t errlen)
{
    r->ob = ob;
    r->off = 0;
    r->eof = ob->bucket && ob->size == 0;
    bp_buf_reset(&r->buf);
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
    free(r->chunk);
    r->chunk = NULL;
}
