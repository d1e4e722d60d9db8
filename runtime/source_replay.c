/* source_replay.c - the source of `bepipe-lua replay`: archived NDJSON objects read back one after
 * the other, each line a message with an ack slot, so an object counts as finished (and goes to
 * --resume FILE) only once every one of its lines is stored or dead-lettered.
 *
 * Memory stays at one read (a Range request of BP_REPLAY_CHUNK bytes for gs://, one read()
 * locally: replay_read.c) plus the longest accepted line, whatever the objects' sizes: lines
 * longer than source.max_line_bytes are dead-lettered (stage parse) with their first bytes, as
 * --input does. A line of the archive's marker ({"bepipe_raw_b64":"..."}, archive_line.h) is
 * the payload it encodes: multi-line and binary payloads come back byte for byte.
 * All the work runs from an ev_idle watcher, one batch or one read per loop iteration, so signals,
 * timers and HTTP replies run in between; it pauses (a timer looks again) while the sinks are
 * behind, while max_outstanding_messages lines wait for their stores, or while --max-rate's token
 * bucket is empty. Progress: a bar redrawn in place on a terminal, else a log line every
 * progress_seconds. */
#include "archive_line.h"
#include "gcs_read.h"
#include "log.h"
#include "ndjson_lines.h"
#include "replay.h"
#include "replay_read.h"
#include "timefmt.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ID_SLOT 128
#define WAIT_SECONDS 0.02      /* sinks behind: look again this soon */
#define BAR_SECONDS 0.25       /* a terminal's bar is redrawn at most this often */

enum phase { LISTING, READING, ENDED };

struct source_replay {
    struct bp_source base;
    struct bp_rt *rt;
    struct bp_replay_opts o;
    struct bp_api *api;
    char *gcs_base;
    struct bp_replay_list list;
    enum phase phase;
    size_t next_source;         /* SOURCE arguments listed so far */
    int listing;                /* a gs:// listing in flight */
    char *list_source, *list_bucket;  /* the gs:// SOURCE being listed */
    /* the object being read */
    size_t cur;
    int open;
    struct bp_replay_read rd;   /* its bytes (replay_read.c) */
    size_t max_line;
    bp_ndjson_lines_t split;    /* the object's lines, with an over-long line's state */
    /* one batch of lent messages */
    bp_msg_t *msgs;
    uint32_t *slots;
    char *ids;
    size_t batch_max;
    struct bp_raw_lines raw;    /* payloads decoded from marker lines, for one batch */
    uint32_t *slot_obj;         /* ack slot -> index of its object */
    size_t slot_cap;
    unsigned long outstanding;
    /* --max-rate */
    double tokens, burst, refilled_at;
    ev_idle idle;
    ev_timer wait, progress;
    int stopped;
    int resume_fd;
    int tty, bar_drawn;
    unsigned long lines, blank;
    size_t objects_done, objects_failed;
    double read_started;
};

static void fail(struct source_replay *s, const char *fmt, ...) BP_PRINTF(2, 3);

static void
go(struct source_replay *s)
{
    if (!s->stopped)
        ev_idle_start(bp_rt_loop(s->rt), &s->idle);
}

static void
pause_for(struct source_replay *s, double seconds)
{
    ev_idle_stop(bp_rt_loop(s->rt), &s->idle);
    ev_timer_stop(bp_rt_loop(s->rt), &s->wait);
    ev_timer_set(&s->wait, seconds, 0.);
    ev_timer_start(bp_rt_loop(s->rt), &s->wait);
}

static void
stop_watchers(struct source_replay *s)
{
    ev_idle_stop(bp_rt_loop(s->rt), &s->idle);
    ev_timer_stop(bp_rt_loop(s->rt), &s->wait);
    ev_timer_stop(bp_rt_loop(s->rt), &s->progress);
}

static void
end_bar(struct source_replay *s)
{
    if (s->bar_drawn) {
        fputc('\n', stderr);
        s->bar_drawn = 0;
    }
}

/* The replay cannot go on: the reason is logged, the runtime drains and exits non-zero. */
static void
fail(struct source_replay *s, const char *fmt, ...)
{
    char why[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    stop_watchers(s);
    end_bar(s);
    s->stopped = 1;
    bp_replay_read_stop(&s->rd);
    s->phase = ENDED;
    bp_log(BP_LOG_ERROR, "replay", "%s", why);
    bp_rt_source_failed(s->rt, "replay failed");
}

/* ---- progress ---- */

static void
draw(struct source_replay *s, int bar)
{
    struct bp_replay_progress p = {
        .objects_read = s->cur, .objects = s->list.n, .objects_done = s->objects_done,
        .lines = s->lines, .bytes_read = s->rd.bytes_read, .bytes_total = s->list.bytes,
        .seconds = s->read_started > 0 ? bp_time_mono() - s->read_started : 0,
    };
    bp_replay_progress_print(&p, bar);
    s->bar_drawn |= bar;
}

static void
draw_bar(struct source_replay *s)
{
    draw(s, 1);
}

static void
on_progress(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct source_replay *s = w->data;
    (void)loop;
    (void)revents;
    draw(s, s->tty);
}

/* ---- objects finished ---- */

/* Appends the object's identity to --resume FILE, durably before anything relies on it. */
static int
record_finished(struct source_replay *s, const struct bp_replay_obj *ob)
{
    if (s->resume_fd < 0)
        return 0;
    size_t n = strlen(ob->key);
    char *line = bp_xmalloc(n + 1);
    memcpy(line, ob->key, n);
    line[n] = '\n';
    ssize_t w = write(s->resume_fd, line, n + 1);
    free(line);
    if (w != (ssize_t)(n + 1) || fdatasync(s->resume_fd) != 0)
        return -1;
    return 0;
}

/* An object whose lines have all been read and answered is finished: recorded, or failed. */
static void
maybe_finished(struct source_replay *s, struct bp_replay_obj *ob)
{
    if (!ob->read_done || ob->pending || ob->finished)
        return;
    ob->finished = 1;
    if (ob->failed) {
        s->objects_failed++;
        fail(s, "%s: some lines could not be stored (see above); it is not recorded as "
             "finished: run the replay again (with --resume) once the cause is fixed",
             ob->label);
        return;
    }
    s->objects_done++;
    bp_log(BP_LOG_DEBUG, "replay", "finished %s lines=%lu", ob->label, ob->lines);
    if (record_finished(s, ob) != 0)
        fail(s, "--resume %s: %s", s->o.resume, strerror(errno));
}

static void
rp_acked(struct bp_source *bs, uint32_t slot, int ok)
{
    struct source_replay *s = (struct source_replay *)bs;
    if (slot >= s->slot_cap)
        return;
    struct bp_replay_obj *ob = &s->list.v[s->slot_obj[slot]];
    ob->pending--;
    s->outstanding--;
    if (!ok)
        ob->failed = 1;
    maybe_finished(s, ob);
}

/* ---- lines to messages ---- */

static uint32_t
new_slot(struct source_replay *s)
{
    uint32_t slot = bp_ack_new(bp_rt_ack(s->rt), s->cur);
    if (slot >= s->slot_cap) {
        size_t ncap = s->slot_cap ? s->slot_cap : 1024;
        while (ncap <= slot)
            ncap *= 2;
        s->slot_obj = bp_xrealloc(s->slot_obj, ncap * sizeof(*s->slot_obj));
        s->slot_cap = ncap;
    }
    s->slot_obj[slot] = (uint32_t)s->cur;
    s->list.v[s->cur].pending++;
    s->outstanding++;
    return slot;
}

/* Message i of the batch for the current object's next line (a marker line gives the payload
 * it encodes). Returns 0, or -1 when a decoded payload cannot be held (no slot taken). */
static int
fill_msg(struct source_replay *s, size_t i, const char *p, size_t len)
{
    struct bp_replay_obj *ob = &s->list.v[s->cur];
    bp_msg_t *m = &s->msgs[i];
    char *id = s->ids + i * ID_SLOT;
    int n = snprintf(id, ID_SLOT, "%s:%lu", ob->idbase, ob->lines);
    memset(m, 0, sizeof(*m));
    m->id = id;
    m->id_len = n < ID_SLOT ? (size_t)n : ID_SLOT - 1;
    /* the archive keeps no publish time: the start of the folder hour stands in for it */
    m->publish_time = ob->hour > 0 ? ob->hour : bp_time_now();
    if (bp_raw_lines_take(&s->raw, p, len, &m->data, &m->len) != 0)
        return -1;
    s->slots[i] = new_slot(s);
    return 0;
}

static int
dead_too_long(struct source_replay *s, const struct bp_ndjson_line *l)
{
    char reason[200];
    s->list.v[s->cur].lines++;
    s->lines++;
    if (fill_msg(s, 0, l->p, l->len) != 0)
        return -1;
    snprintf(reason, sizeof(reason), "line of %zu bytes exceeds source.max_line_bytes (%zu); "
             "raw_payload holds its first %zu bytes", l->full_len, s->max_line, l->len);
    return bp_rt_process_dead(s->rt, &s->msgs[0], s->slots[0], BP_STAGE_PARSE, reason);
}

/* Hands up to `allowed` complete lines of the buffer (at eof the unterminated tail too) to the
 * runtime as one batch. Returns the lines consumed (blank and over-long ones included), or -1
 * when a sink failed. */
static long
deliver(struct source_replay *s, size_t allowed)
{
    struct bp_replay_obj *ob = &s->list.v[s->cur];
    /* nothing read yet: its data pointer may still be NULL */
    const char *base = s->rd.buf.data ? s->rd.buf.data : "";
    size_t n = 0, off = 0, used = 0;
    long consumed = 0;
    int rc = 0;
    struct bp_ndjson_line l;
    enum bp_ndjson_kind k = BP_NDJSON_LINE;
    while (n < allowed && rc == 0 &&
           (k = bp_ndjson_lines_next(&s->split, base + off, s->rd.buf.len - off, s->rd.eof,
                                     &used, &l)) != BP_NDJSON_MORE) {
        off += used;
        consumed++;
        if (k == BP_NDJSON_BLANK) {
            ob->lines++;
            s->blank++;
        } else if (k == BP_NDJSON_TOO_LONG) {
            if (n)
                rc = bp_rt_process(s->rt, s->msgs, s->slots, n);
            n = 0;
            bp_raw_lines_reset(&s->raw);
            if (rc == 0)
                rc = dead_too_long(s, &l);
        } else {
            ob->lines++;
            s->lines++;
            if (fill_msg(s, n, l.p, l.len) != 0) {
                bp_log(BP_LOG_ERROR, "replay", "%s line %lu: no memory to decode it", ob->label,
                       ob->lines);
                rc = -1;
                break;
            }
            n++;
        }
    }
    if (k == BP_NDJSON_MORE)
        off += used;   /* the start of an over-long line */
    if (rc == 0 && n)
        rc = bp_rt_process(s->rt, s->msgs, s->slots, n);
    bp_raw_lines_reset(&s->raw);
    bp_buf_consume(&s->rd.buf, off);
    return rc == 0 ? consumed : -1;
}

/* ---- reading objects ---- */

/* A Range request of the current object ended (replay_read.c): its lines next, or the end. */
static void
on_read(void *arg, int status, const char *why)
{
    struct source_replay *s = arg;
    if (status != 0) {
        fail(s, "%s", why);
        return;
    }
    go(s);
}

static int
open_object(struct source_replay *s)
{
    char err[1200];
    bp_ndjson_lines_init(&s->split, s->max_line);
    if (bp_replay_read_open(&s->rd, &s->list.v[s->cur], err, sizeof(err)) != 0) {
        fail(s, "%s", err);
        return -1;
    }
    s->open = 1;
    return 0;
}

static void
close_object(struct source_replay *s)
{
    struct bp_replay_obj *ob = &s->list.v[s->cur];
    bp_replay_read_close(&s->rd);
    s->open = 0;
    ob->read_done = 1;
    s->cur++;
    maybe_finished(s, ob);
}

/* Every object is read: the runtime drains (the last objects finish as their stores answer). */
static void
all_read(struct source_replay *s)
{
    s->phase = ENDED;
    stop_watchers(s);
    if (s->tty && s->read_started > 0)
        draw_bar(s);
    end_bar(s);
    bp_rt_source_finished(s->rt);
}

/* How many lines the next batch may have, or 0 after arranging to look again later. */
static size_t
allowance(struct source_replay *s)
{
    const struct bp_config *c = bp_rt_config(s->rt);
    if (bp_rt_sinks_busy(s->rt) || s->outstanding >= (unsigned long)c->max_outstanding_messages) {
        pause_for(s, WAIT_SECONDS);
        return 0;
    }
    if (s->o.max_rate <= 0)
        return s->batch_max;
    /* token bucket: max_rate a second, `burst` at most (a tenth of a second's worth, up to a
     * batch); it sleeps (a timer, never a busy wait) until a whole burst is there, so batches
     * stay large (a Lua call per few events would cost the CPU the limit is meant to spare) */
    double now = bp_time_mono();   /* a rate: never the wall clock */
    s->tokens += (now - s->refilled_at) * s->o.max_rate;
    if (s->tokens > s->burst)
        s->tokens = s->burst;
    s->refilled_at = now;
    if (s->tokens < s->burst) {
        pause_for(s, (s->burst - s->tokens) / s->o.max_rate);
        return 0;
    }
    return (size_t)s->tokens;
}

/* One step of reading: a batch of lines, or one read, or the next object. */
static void
read_step(struct source_replay *s)
{
    if (!s->open) {
        if (s->cur == s->list.n) {
            all_read(s);
            return;
        }
        if (open_object(s) != 0)
            return;
    }
    size_t allowed = allowance(s);
    if (allowed == 0)
        return;
    long got = deliver(s, allowed);
    if (got < 0) {
        fail(s, "%s: a sink failed", s->list.v[s->cur].label);
        return;
    }
    if (s->o.max_rate > 0)
        s->tokens -= (double)got;
    if (got > 0)
        return;
    if (s->rd.eof) {
        close_object(s);
        return;
    }
    char err[1200];
    int rc = bp_replay_read_next(&s->rd, err, sizeof(err));
    if (rc < 0)
        fail(s, "%s", err);
    else if (rc == 1)
        ev_idle_stop(bp_rt_loop(s->rt), &s->idle);   /* on_read starts it again */
}

/* ---- listing ---- */

static void
list_done(void *arg, int ok, const char *err)
{
    struct source_replay *s = arg;
    s->listing = 0;
    free(s->list_source);
    free(s->list_bucket);
    s->list_source = s->list_bucket = NULL;
    if (s->stopped)
        return;
    if (!ok) {
        fail(s, "%s", err);
        return;
    }
    s->next_source++;
    go(s);
}

static int
list_item(void *arg, const char *name, const char *generation, uint64_t size)
{
    struct source_replay *s = arg;
    char err[512];
    if (s->stopped)
        return -1;
    return bp_replay_list_add(&s->list, &s->o, bp_rt_config(s->rt)->dead_letter_prefix,
                              s->list_source, s->list_bucket, name, generation, size, err,
                              sizeof(err));
}

/* The listing is complete: read (or, for --dry-run, print and end). */
static void
listed(struct source_replay *s)
{
    bp_log(BP_LOG_INFO, "replay", "%zu objects to replay (%" PRIu64 " bytes); left out: "
           "finished=%lu outside_range=%lu dead_letter_folder=%lu", s->list.n, s->list.bytes,
           s->list.resumed, s->list.out_of_range, s->list.dead_folder);
    if (s->o.dry_run || s->list.n == 0) {
        if (s->o.dry_run)
            bp_replay_list_print(&s->list, stdout);
        all_read(s);
        return;
    }
    s->phase = READING;
    s->read_started = bp_time_mono();
    s->refilled_at = bp_time_mono();
    double every = s->tty ? BAR_SECONDS : s->o.progress_seconds;
    if (every > 0) {
        ev_timer_init(&s->progress, on_progress, every, every);
        s->progress.data = s;
        ev_timer_start(bp_rt_loop(s->rt), &s->progress);
    }
}

/* Lists the next SOURCE: a local one at once, a gs:// one with calls (the idle watcher stops
 * until they end). */
static void
list_step(struct source_replay *s)
{
    char err[1024], *bucket = NULL, *prefix = NULL;
    if (s->next_source == s->o.nsources) {
        listed(s);
        return;
    }
    const char *src = s->o.sources[s->next_source];
    const char *dlp = bp_rt_config(s->rt)->dead_letter_prefix;
    int gs = bp_replay_split_gs(src, &bucket, &prefix);
    if (gs == 0) {
        if (bp_replay_list_scan(&s->list, &s->o, dlp, src, err, sizeof(err)) != 0)
            fail(s, "%s", err);
        s->next_source++;
        return;
    }
    if (gs < 0 || !s->api) {
        fail(s, "%s: %s", src, gs < 0 ? "no bucket in the gs:// URL" : "no Cloud Storage API");
    } else {
        s->list_source = bp_xstrdup(src);
        s->list_bucket = bp_xstrdup(bucket);
        if (bp_gcs_list_start(s->api, s->gcs_base, bucket, prefix, list_item, list_done, s, err,
                              sizeof(err)) != 0) {
            fail(s, "%s", err);
        } else {
            s->listing = 1;
            ev_idle_stop(bp_rt_loop(s->rt), &s->idle);
        }
    }
    free(bucket);
    free(prefix);
}

static void
on_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    struct source_replay *s = w->data;
    (void)loop;
    (void)revents;
    if (s->stopped)
        ev_idle_stop(loop, w);
    else if (s->phase == LISTING)
        list_step(s);
    else if (s->phase == READING)
        read_step(s);
    else
        ev_idle_stop(loop, w);
}

static void
on_wait(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    go(w->data);
}

/* ---- the source's ops ---- */

static int
rp_start(struct bp_source *bs, char *err, size_t errlen)
{
    struct source_replay *s = (struct source_replay *)bs;
    if (s->o.resume && !s->o.dry_run) {
        s->resume_fd = open(s->o.resume, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->resume_fd < 0) {
            snprintf(err, errlen, "--resume %s: %s", s->o.resume, strerror(errno));
            return -1;
        }
    }
    go(s);
    return 0;
}

static size_t
rp_outstanding(struct bp_source *bs)
{
    return ((struct source_replay *)bs)->outstanding;
}

static size_t
rp_in_flight(struct bp_source *bs)
{
    struct source_replay *s = (struct source_replay *)bs;
    return (size_t)(s->rd.fetching + s->listing);
}

static void
rp_resume(struct bp_source *bs)
{
    go((struct source_replay *)bs);
}

static void
rp_stop(struct bp_source *bs)
{
    struct source_replay *s = (struct source_replay *)bs;
    if (!s->stopped && s->phase == READING) {
        if (s->tty)
            draw_bar(s);
        end_bar(s);
        bp_log(BP_LOG_INFO, "replay", "stopped: %zu of %zu objects finished%s", s->objects_done,
               s->list.n, s->o.resume ? "; --resume continues from there" : "");
    }
    s->stopped = 1;
    bp_replay_read_stop(&s->rd);
    stop_watchers(s);
}

static void
rp_stats(struct bp_source *bs, struct bp_source_stats *out)
{
    struct source_replay *s = (struct source_replay *)bs;
    memset(out, 0, sizeof(*out));
    out->skipped = s->blank;
}

static void
rp_destroy(struct bp_source *bs)
{
    struct source_replay *s = (struct source_replay *)bs;
    if (!s)
        return;
    stop_watchers(s);
    bp_replay_read_free(&s->rd);
    if (s->resume_fd >= 0)
        close(s->resume_fd);
    bp_replay_list_free(&s->list);
    free(s->list_source);
    free(s->list_bucket);
    free(s->gcs_base);
    bp_raw_lines_free(&s->raw);
    free(s->msgs);
    free(s->slots);
    free(s->ids);
    free(s->slot_obj);
    free(s);
}

static const struct bp_source_ops replay_ops = {
    .kind = "replay",
    .start = rp_start,
    .acked = rp_acked,
    .outstanding = rp_outstanding,
    .in_flight = rp_in_flight,
    .resume = rp_resume,
    .stop = rp_stop,
    .stats = rp_stats,
    .destroy = rp_destroy,
};

/* See replay.h. */
void
bp_source_replay_counts(struct bp_source *bs, struct bp_replay_counts *out)
{
    struct source_replay *s = (struct source_replay *)bs;
    memset(out, 0, sizeof(*out));
    out->objects = s->list.n;
    out->objects_done = s->objects_done;
    out->objects_failed = s->objects_failed;
    out->lines = s->lines;
    out->skipped_resume = s->list.resumed;
    out->out_of_range = s->list.out_of_range;
    out->dead_folder = s->list.dead_folder;
    out->bytes_total = s->list.bytes;
    out->bytes_read = s->rd.bytes_read;
}

/* See replay.h. */
struct bp_source *
bp_source_replay_new(struct bp_rt *rt, const struct bp_replay_opts *o, struct bp_api *api,
                     const char *base, char *err, size_t errlen)
{
    const struct bp_config *c = bp_rt_config(rt);
    struct source_replay *s = bp_xcalloc(1, sizeof(*s));
    s->base.ops = &replay_ops;
    s->rt = rt;
    s->o = *o;
    s->api = api;
    s->gcs_base = base ? bp_xstrdup(base) : NULL;
    s->resume_fd = -1;
    s->max_line = (size_t)c->max_line_bytes;
    bp_replay_read_init(&s->rd, api, s->gcs_base, s->max_line, on_read, s);
    s->batch_max = (size_t)c->batch_messages;
    s->burst = o->max_rate / 10 > 1 ? o->max_rate / 10 : 1;
    if (s->burst > (double)s->batch_max)
        s->burst = (double)s->batch_max;
    s->burst = (double)(size_t)s->burst;
    s->tokens = s->burst;
    s->tty = isatty(STDERR_FILENO);
    s->msgs = bp_xcalloc(s->batch_max, sizeof(*s->msgs));
    s->slots = bp_xcalloc(s->batch_max, sizeof(*s->slots));
    s->ids = bp_xcalloc(s->batch_max, ID_SLOT);
    if (o->resume && bp_replay_list_load_resume(&s->list, o->resume, err, errlen) != 0) {
        rp_destroy(&s->base);
        return NULL;
    }
    ev_idle_init(&s->idle, on_idle);
    s->idle.data = s;
    ev_timer_init(&s->wait, on_wait, WAIT_SECONDS, 0.);
    s->wait.data = s;
    ev_timer_init(&s->progress, on_progress, 1., 1.);
    s->progress.data = s;
    return &s->base;
}
