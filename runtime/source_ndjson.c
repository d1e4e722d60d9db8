/* source_ndjson.c - events from an NDJSON file or stdin, streamed: memory stays at one read
 * chunk plus the longest accepted line, whatever the input size. A line longer than
 * source.max_line_bytes is skipped to its end and dead-lettered (stage parse) with its first
 * bytes, never fatal. Blank lines are skipped. A line of the archive's marker
 * ({"bepipe_raw_b64":"..."}, archive_line.h) is the payload it encodes, so an archive object given
 * as --input replays its multi-line and binary payloads byte for byte.
 *
 * A regular file is always "readable" and epoll refuses it, so it is read from an ev_idle watcher,
 * one chunk per loop iteration (signals and timers run in between); pipes and terminals use ev_io. */
#include "archive_line.h"
#include "buf.h"
#include "log.h"
#include "ndjson_lines.h"
#include "source.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (256 * 1024)
#define ID_SLOT 64

struct source_ndjson {
    struct bp_source base;
    struct bp_rt *rt;
    int fd;
    int use_idle;
    int stopped;
    ev_io io;
    ev_idle idle;
    ev_timer wait;            /* sinks busy: check again shortly */
    char name[41];            /* message ids are "<name>:<line>" */
    bp_buf_t buf;
    unsigned long line_no;
    size_t max_line;
    bp_ndjson_lines_t lines;  /* the splitter, with an over-long line's state */
    /* one batch of lent messages */
    bp_msg_t *msgs;
    char *ids;
    size_t batch_max;
    unsigned long skipped;    /* blank lines */
    struct bp_raw_lines raw;  /* payloads decoded from marker lines, for one batch */
};

static void
make_id(struct source_ndjson *s, size_t slot, bp_msg_t *m)
{
    char *id = s->ids + slot * ID_SLOT;
    int n = snprintf(id, ID_SLOT, "%s:%lu", s->name, s->line_no);
    m->id = id;
    m->id_len = n < ID_SLOT ? (size_t)n : ID_SLOT - 1;
}

static int
flush_batch(struct source_ndjson *s, size_t *n)
{
    int rc = bp_rt_process(s->rt, s->msgs, NULL, *n);
    *n = 0;
    bp_raw_lines_reset(&s->raw);
    return rc;
}

static int
dead_too_long(struct source_ndjson *s, const struct bp_ndjson_line *l)
{
    char reason[160];
    bp_msg_t m;
    memset(&m, 0, sizeof(m));
    s->line_no++;
    make_id(s, 0, &m);
    m.data = l->p;
    m.len = l->len;
    m.publish_time = bp_time_now();
    snprintf(reason, sizeof(reason), "line of %zu bytes exceeds source.max_line_bytes (%zu); "
             "raw_payload holds its first %zu bytes", l->full_len, s->max_line, l->len);
    return bp_rt_process_dead(s->rt, &m, BP_ACK_NONE, BP_STAGE_PARSE, reason);
}

/* Hands every complete line in buf to the runtime, in batches; at EOF the unterminated tail too.
 * Keeps the incomplete tail (the splitter consumes an over-long one). Returns 0 or -1 on a sink
 * failure. */
static int
deliver(struct source_ndjson *s, int eof)
{
    size_t off = 0, used, n = 0;
    double now = bp_time_now();
    struct bp_ndjson_line l;
    enum bp_ndjson_kind k;
    while ((k = bp_ndjson_lines_next(&s->lines, s->buf.data + off, s->buf.len - off, eof, &used,
                                     &l)) != BP_NDJSON_MORE) {
        off += used;
        if (k == BP_NDJSON_BLANK) {
            s->line_no++;
            s->skipped++;
        } else if (k == BP_NDJSON_TOO_LONG) {
            if ((n && flush_batch(s, &n) != 0) || dead_too_long(s, &l) != 0)
                return -1;
        } else {
            s->line_no++;
            bp_msg_t *m = &s->msgs[n];
            if (bp_raw_lines_take(&s->raw, l.p, l.len, &m->data, &m->len) != 0) {
                bp_log(BP_LOG_ERROR, "source", "%s:%lu: no memory to decode the line",
                       s->name, s->line_no);
                return -1;
            }
            m->publish_time = now;
            m->attrs = NULL;
            m->attrs_len = 0;
            m->delivery_attempt = 0;
            make_id(s, n, m);
            if (++n == s->batch_max && flush_batch(s, &n) != 0)
                return -1;
        }
    }
    off += used;   /* the start of an over-long line */
    if (n && flush_batch(s, &n) != 0)
        return -1;
    bp_buf_consume(&s->buf, off);
    return 0;
}

static void
stop_watchers(struct source_ndjson *s)
{
    ev_io_stop(bp_rt_loop(s->rt), &s->io);
    ev_idle_stop(bp_rt_loop(s->rt), &s->idle);
}

static void
stop_all(struct source_ndjson *s)
{
    stop_watchers(s);
    ev_timer_stop(bp_rt_loop(s->rt), &s->wait);
}

static void
finish(struct source_ndjson *s, int failed)
{
    stop_all(s);
    s->stopped = 1;
    if (failed) {
        bp_rt_source_failed(s->rt, "source failure");
    } else {
        bp_rt_source_finished(s->rt);
    }
}

static void
read_chunk(struct source_ndjson *s)
{
    if (bp_buf_reserve(&s->buf, CHUNK) != 0) {
        bp_log(BP_LOG_ERROR, "source", "%s: out of memory for the read buffer", s->name);
        finish(s, 1);
        return;
    }
    ssize_t r = read(s->fd, s->buf.data + s->buf.len, CHUNK);
    if (r < 0) {
        if (errno == EINTR || errno == EAGAIN)
            return;
        bp_log(BP_LOG_ERROR, "source", "%s: read: %s", s->name, strerror(errno));
        finish(s, 1);
        return;
    }
    s->buf.len += (size_t)r;
    int eof = r == 0;
    if (deliver(s, eof) != 0) {
        finish(s, 1);
        return;
    }
    if (eof)
        finish(s, 0);
}

/* Reads on unless the sinks are behind (cloud stores fed from a fast file): then the watchers
 * stop and a short timer looks again, so memory stays bounded whatever the file's size. */
static void
read_or_wait(struct source_ndjson *s)
{
    if (bp_rt_sinks_busy(s->rt)) {
        stop_watchers(s);
        ev_timer_start(bp_rt_loop(s->rt), &s->wait);
        return;
    }
    read_chunk(s);
}

static void nd_resume(struct bp_source *bs);

static void
on_wait(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct source_ndjson *s = w->data;
    (void)loop;
    (void)revents;
    if (!bp_rt_sinks_busy(s->rt)) {
        ev_timer_stop(bp_rt_loop(s->rt), &s->wait);
        nd_resume(&s->base);
    }
}

static void
on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)revents;
    read_or_wait(w->data);
}

static void
on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    read_or_wait(w->data);
}

static void
nd_resume(struct bp_source *bs)
{
    struct source_ndjson *s = (struct source_ndjson *)bs;
    if (s->stopped)
        return;
    if (s->use_idle)
        ev_idle_start(bp_rt_loop(s->rt), &s->idle);
    else
        ev_io_start(bp_rt_loop(s->rt), &s->io);
}

static void
nd_stop(struct bp_source *bs)
{
    struct source_ndjson *s = (struct source_ndjson *)bs;
    stop_all(s);
    s->stopped = 1;
}

static void
nd_destroy(struct bp_source *bs)
{
    struct source_ndjson *s = (struct source_ndjson *)bs;
    if (!s)
        return;
    stop_all(s);
    if (s->fd > 0)
        close(s->fd);
    bp_buf_free(&s->buf);
    bp_raw_lines_free(&s->raw);
    free(s->msgs);
    free(s->ids);
    free(s);
}

static int
nd_start(struct bp_source *bs, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    nd_resume(bs);
    return 0;
}

static void
nd_stats(struct bp_source *bs, struct bp_source_stats *out)
{
    struct source_ndjson *s = (struct source_ndjson *)bs;
    memset(out, 0, sizeof(*out));
    out->skipped = s->skipped;
}

/* A file has no acks and no calls: nothing outstanding, nothing in flight. */
static const struct bp_source_ops ndjson_ops = {
    .kind = "ndjson",
    .start = nd_start,
    .resume = nd_resume,
    .stop = nd_stop,
    .stats = nd_stats,
    .destroy = nd_destroy,
};

/* Opens path ("-" = stdin); reading starts with ops->start. Returns the source or NULL + err. */
struct bp_source *
bp_source_ndjson_new(struct bp_rt *rt, const char *path, char *err, size_t errlen)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        if (fd > 0)
            close(fd);
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "cannot read %s: is a directory", path);
        close(fd);
        return NULL;
    }
    struct source_ndjson *s = bp_xcalloc(1, sizeof(*s));
    s->base.ops = &ndjson_ops;
    s->rt = rt;
    s->fd = fd;
    s->use_idle = S_ISREG(st.st_mode);
    s->max_line = (size_t)bp_rt_config(rt)->max_line_bytes;
    bp_ndjson_lines_init(&s->lines, s->max_line);
    s->batch_max = (size_t)bp_rt_config(rt)->batch_messages;
    const char *base = strrchr(path, '/');
    snprintf(s->name, sizeof(s->name), "%s", strcmp(path, "-") == 0 ? "stdin" : base ? base + 1
                                                                                  : path);
    /* room for the longest accepted line plus one read */
    bp_buf_init(&s->buf, s->max_line + 2 * CHUNK);
    s->msgs = bp_xcalloc(s->batch_max, sizeof(*s->msgs));
    s->ids = bp_xcalloc(s->batch_max, ID_SLOT);
    if (!s->use_idle)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    ev_io_init(&s->io, on_io, fd, EV_READ);
    s->io.data = s;
    ev_idle_init(&s->idle, on_idle);
    s->idle.data = s;
    ev_timer_init(&s->wait, on_wait, 0.02, 0.02);
    s->wait.data = s;
    return &s->base;
}
