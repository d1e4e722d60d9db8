/* append_log_file.c - the append log's file (contract in append_log.h): the synced append of a
 * record, the rewrite without dead records (temporary file, sync, rename, folder sync), and the
 * reading of a previous process's file at open, which tells a torn last record (cut off) from
 * corruption in the middle, another pipeline's or worker's file, or another format (refused). */
#include "append_log_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the file ---- */

/* Formats err (when given) with two string arguments. */
void
al_set_err(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, a, b);
}

/* Appends len bytes and syncs them. On failure the file is cut back to its last whole record
 * (so a later record never follows a torn one); when even that or the sync fails, the file is in
 * doubt and the next write rewrites it first. Returns 0, or -1 with err set. */
int
al_file_append(bp_append_log_t *log, const uint8_t *p, size_t len, char *err, size_t errlen)
{
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(log->fd, p + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            al_set_err(err, errlen, "%s: write: %s", log->path, strerror(e));
            if (ftruncate(log->fd, (off_t)log->size) != 0)
                log->broken = 1;
            return -1;
        }
        done += (size_t)w;
    }
    if (fdatasync(log->fd) != 0) {
        /* after a failed sync the kernel may have dropped the pages: nothing is known */
        al_set_err(err, errlen, "%s: fdatasync: %s", log->path, strerror(errno));
        log->broken = 1;
        return -1;
    }
    log->size += len;
    return 0;
}

static int
mkdir_p(const char *path)
{
    char d[4096];
    snprintf(d, sizeof(d), "%s", path);
    for (char *p = d + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(d, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(d, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

/* Encodes the header into a counted buffer; NULL on the memory cap. */
static uint8_t *
header_encode(bp_append_log_t *log, size_t *len)
{
    size_t plen = strlen(log->pipeline);
    uint8_t *buf = al_mem_alloc(log, al_header_size(plen));
    if (!buf)
        return NULL;
    struct al_out o;
    al_begin(&o, buf, AL_REC_HEADER);
    al_put_bytes(&o, AL_MAGIC, AL_MAGIC_LEN);
    al_put_u16(&o, (uint16_t)plen);
    al_put_bytes(&o, log->pipeline, plen);
    al_put_u32(&o, (uint32_t)log->worker);
    al_put_u64(&o, (uint64_t)time(NULL));
    *len = al_end(&o);
    return buf;
}

static int
write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes the finalized row counts of streams that still have records, then every record. */
static int
compact_body(bp_append_log_t *log, int fd, uint64_t *total)
{
    for (struct al_stream *s = log->streams; s; s = s->next) {
        if (s->final_n < 0)
            continue;
        uint8_t buf[AL_FRAME + 2 + 2 + BP_APPEND_LOG_MAX_STREAM + 8];
        struct al_out o;
        al_begin(&o, buf, AL_REC_FINAL);
        al_put_u16(&o, (uint16_t)s->name_len);
        al_put_bytes(&o, s->name, s->name_len);
        al_put_u64(&o, (uint64_t)s->final_n);
        size_t len = al_end(&o);
        if (write_all(fd, buf, len) != 0)
            return -1;
        *total += len;
    }
    for (struct al_rec *r = log->head; r; r = r->next) {
        if (write_all(fd, r->raw, r->size) != 0)
            return -1;
        *total += r->size;
    }
    return 0;
}

/* Rewrites the file with only the records still needed: a temporary file beside it, synced,
 * renamed over it, and the folder synced, so a crash at any point leaves the old file or the new
 * one whole. Clears the doubt a failed write left. Returns 0, or -1 with err set (the old file
 * stays in use unless the rename happened). */
int
bp_append_log_compact(bp_append_log_t *log, char *err, size_t errlen)
{
    char tmp[4300];
    size_t hlen = 0;
    uint64_t total = 0;
    uint8_t *hdr = NULL;
    int fd = -1;
    if (log->fd < 0) {
        al_set_err(err, errlen, "%s%s: no file", log->path, "");
        return -1;
    }
    snprintf(tmp, sizeof(tmp), "%s.tmp", log->path);
    hdr = header_encode(log, &hlen);
    if (!hdr) {
        al_set_err(err, errlen, "%s: rewrite: %s", log->path, "memory cap reached");
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    /* locked before it takes the file's name, so that the lock never lapses */
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0 || write_all(fd, hdr, hlen) != 0 || compact_body(log, fd, &total) != 0 ||
        fdatasync(fd) != 0 || rename(tmp, log->path) != 0) {
        al_set_err(err, errlen, "%s: rewrite: %s", tmp, strerror(errno));
        goto fail;
    }
    al_mem_free(log, hdr);
    close(log->fd);
    log->fd = fd;
    log->size = hlen + total;
    log->dead = 0;
    log->broken = 0;
    int dfd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        /* the new file is whole and in place; the old one, should it come back, is too */
        al_set_err(err, errlen, "%s: fsync: %s", log->dir, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        return -1;
    }
    close(dfd);
    return 0;
fail:
    al_mem_free(log, hdr);
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    return -1;
}

/* Rewrites when dead records are past compact_min and half the file. */
int
al_maybe_compact(bp_append_log_t *log, char *err, size_t errlen)
{
    if (log->fd < 0 || log->dead < log->compact_min || log->dead * 2 < log->size)
        return 0;
    return bp_append_log_compact(log, err, errlen);
}

/* ---- reading the file ---- */

/* Whether a record written at t (seconds, from the file: any value) is past the TTL at now. */
int
al_expired(const bp_append_log_t *log, uint64_t t, time_t now)
{
    return now > log->ttl && t < (uint64_t)now - (uint64_t)log->ttl;
}

/* Takes one append record read from the file as a recovered one (skipped when older than the
 * TTL). Returns 0, or -1 on the memory cap. */
static int
load_append(bp_append_log_t *log, const uint8_t *p, const struct al_record *rec, time_t now)
{
    if (al_expired(log, rec->time, now)) {
        log->dead += rec->size;
        return 0;
    }
    struct al_stream *s = al_stream_get(log, rec->stream, rec->stream_len, 1);
    struct al_rec *r = s ? al_rec_new(log, p, rec->size, rec->n) : NULL;
    if (!r)
        return -1;
    const uint8_t *cur = rec->entries;
    uint32_t pos = 0;
    for (uint32_t i = 0; i < rec->n; i++) {
        struct bp_append_log_msg m;
        al_entry_next(&cur, &m);
        if (al_rec_fill(log, r, i, &m, pos) != 0) {
            al_rec_discard(log, r);
            if (!s->nrecs)
                al_stream_release(log, s);
            return -1;
        }
        pos += m.rows;
    }
    r->time = rec->time;
    r->offset = rec->offset;
    r->rows = rec->rows;
    r->recovered = 1;
    al_rec_link(log, s, r);
    return 0;
}

/* The header: ours (magic, version), this pipeline's and this worker's. Returns 0, or -1 with
 * err set (refused: the file is left as it is). */
static int
load_header(bp_append_log_t *log, const struct al_record *r, char *err, size_t errlen)
{
    char what[160];
    if (r->version != BP_APPEND_LOG_VERSION) {
        snprintf(what, sizeof(what), "format version %d (this build reads %d)", r->version,
                 BP_APPEND_LOG_VERSION);
        goto refuse;
    }
    if (r->type != AL_REC_HEADER) {
        snprintf(what, sizeof(what), "no header");
        goto refuse;
    }
    if (r->pipeline_len != strlen(log->pipeline) ||
        memcmp(r->pipeline, log->pipeline, r->pipeline_len) != 0) {
        snprintf(what, sizeof(what), "another pipeline's (%.*s)",
                 (int)(r->pipeline_len > 100 ? 100 : r->pipeline_len), r->pipeline);
        goto refuse;
    }
    if ((int)r->worker != log->worker) {
        snprintf(what, sizeof(what), "worker %u's", r->worker);
        goto refuse;
    }
    return 0;
refuse:
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: refusing it (move it away to start without the "
                 "exactly-once record of the appends it holds)", log->path, what);
    return -1;
}

/* A bad or incomplete record at pos: the torn end of the last write when nothing valid follows
 * (the file is then cut there: that write's append was never sent, its sync not having
 * returned), else corruption in the middle, refused. Returns 0 (torn) or -1 with err set. */
static int
load_bad(bp_append_log_t *log, const uint8_t *p, size_t len, size_t pos, char *err,
         size_t errlen)
{
    if (!al_valid_after(p, len, pos + 1))
        return 0;
    if (err && errlen)
        snprintf(err, errlen, "%s: corrupt record at byte %zu with valid records after it: "
                 "refusing it (move it away to start without the exactly-once record of the "
                 "appends it holds)", log->path, pos);
    return -1;
}

/* Reads a file's bytes into the recovered state; *good is the length of its whole records (0:
 * the header is to be written). Returns 0, or -1 with err set (refused). */
static int
load(bp_append_log_t *log, const uint8_t *p, size_t len, size_t *good, char *err,
     size_t errlen)
{
    struct al_record r;
    time_t now = time(NULL);
    *good = 0;
    if (len == 0)
        return 0;
    /* a file not starting with our magic is not ours, however short: never cut it */
    size_t m = len < AL_FRAME + 2 + AL_MAGIC_LEN ? 0 : AL_MAGIC_LEN;
    if (len > AL_FRAME + 2 && memcmp(p + AL_FRAME + 2, AL_MAGIC, m ? m : len - AL_FRAME - 2)) {
        al_set_err(err, errlen, "%s: not an append log%s: refusing it", log->path, "");
        return -1;
    }
    if (al_parse(p, len, &r) != AL_OK)
        return load_bad(log, p, len, 0, err, errlen);
    if (load_header(log, &r, err, errlen) != 0)
        return -1;
    size_t pos = r.size;
    while (pos < len) {
        int rc = al_parse(p + pos, len - pos, &r);
        if (rc == AL_OK && r.version != BP_APPEND_LOG_VERSION) {
            snprintf(err, errlen, "%s: a record of format version %d at byte %zu: refusing it",
                     log->path, r.version, pos);
            return -1;
        }
        if (rc != AL_OK || r.type == AL_REC_HEADER) {
            if (load_bad(log, p, len, pos, err, errlen) != 0)
                return -1;
            break;
        }
        if (r.type == AL_REC_FINAL) {
            struct al_stream *s = al_stream_get(log, r.stream, r.stream_len, 1);
            if (!s)
                goto mem;
            s->final_n = r.row_count;
            log->dead += r.size;   /* rewritten from the stream's state */
        } else if (load_append(log, p + pos, &r, now) != 0) {
            goto mem;
        }
        pos += r.size;
    }
    *good = pos;
    /* FINAL records of streams whose records are all gone */
    for (struct al_stream *s = log->streams, *next; s; s = next) {
        next = s->next;
        al_stream_release(log, s);
    }
    return 0;
mem:
    snprintf(err, errlen, "%s: more than append_log's memory cap (%zu bytes) to hold",
             log->path, log->max_mem);
    return -1;
}

static bp_append_log_t *
log_new(const struct bp_append_log_params *p)
{
    bp_append_log_t *log = bp_xcalloc(1, sizeof(*log));
    log->fd = -1;
    log->pipeline = bp_xstrdup(p->pipeline ? p->pipeline : "");
    log->worker = p->worker;
    log->max_mem = p->max_mem ? p->max_mem : DEFAULT_MAX_MEM;
    log->ttl = p->ttl_seconds > 0 ? p->ttl_seconds : DEFAULT_TTL;
    log->compact_min = p->compact_min ? p->compact_min : DEFAULT_COMPACT_MIN;
    snprintf(log->dir, sizeof(log->dir), "%s", p->dir ? p->dir : ".");
    snprintf(log->path, sizeof(log->path), "%s/appends-%d.log", log->dir, p->worker);
    return log;
}

static int
params_ok(const struct bp_append_log_params *p, char *err, size_t errlen)
{
    if (!p->pipeline || strlen(p->pipeline) > AL_MAX_PIPELINE || p->worker < 0 || !p->dir ||
        strlen(p->dir) > 4000) {
        al_set_err(err, errlen, "append log: %s%s", "bad parameters (pipeline, worker, dir)", "");
        return -1;
    }
    return 0;
}

/* A log read from bytes instead of a file (the fuzz target, tests): the same checks as open,
 * and every write refused (no file). Returns the log, or NULL with err set. */
bp_append_log_t *
bp_append_log_open_buf(const struct bp_append_log_params *p, const void *data, size_t len,
                       char *err, size_t errlen)
{
    size_t good;
    if (params_ok(p, err, errlen) != 0)
        return NULL;
    bp_append_log_t *log = log_new(p);
    snprintf(log->path, sizeof(log->path), "(buffer)");
    if (load(log, data, len, &good, err, errlen) != 0) {
        bp_append_log_free(log);
        return NULL;
    }
    log->size = good;
    return log;
}

/* Reads the whole file (at most max_mem bytes) into a counted buffer. */
static uint8_t *
read_file(bp_append_log_t *log, size_t *len, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(log->fd, &st) != 0) {
        al_set_err(err, errlen, "%s: %s", log->path, strerror(errno));
        return NULL;
    }
    *len = (size_t)st.st_size;
    uint8_t *buf = (uint64_t)st.st_size < log->max_mem ? al_mem_alloc(log, *len) : NULL;
    if (!buf) {
        al_set_err(err, errlen, "%s: %s", log->path, "larger than append_log's memory cap");
        return NULL;
    }
    for (size_t done = 0; done < *len;) {
        ssize_t r = pread(log->fd, buf + done, *len - done, (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            al_set_err(err, errlen, "%s: read: %s", log->path, r < 0 ? strerror(errno) : "short");
            al_mem_free(log, buf);
            return NULL;
        }
        done += (size_t)r;
    }
    return buf;
}

/* Opens (creating dir 0700 and the file 0600) <dir>/appends-<worker>.log and reads what a
 * previous process left there: its records become the recovered state, a torn last record is
 * cut off. Refused with a message naming the file: another pipeline's or worker's file, another
 * format version, a corrupt record with valid ones after it, more than max_mem to hold. Start-up
 * only (it syncs). Returns the log, or NULL with err set. */
bp_append_log_t *
bp_append_log_open(const struct bp_append_log_params *p, char *err, size_t errlen)
{
    size_t len = 0, good = 0, hlen;
    uint8_t *buf = NULL, *hdr = NULL;
    if (params_ok(p, err, errlen) != 0)
        return NULL;
    bp_append_log_t *log = log_new(p);
    if (mkdir_p(log->dir) != 0) {
        al_set_err(err, errlen, "state_dir %s: %s", log->dir, strerror(errno));
        goto fail;
    }
    log->fd = open(log->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log->fd < 0 || fchmod(log->fd, 0600) != 0) {
        al_set_err(err, errlen, "%s: %s", log->path, strerror(errno));
        goto fail;
    }
    /* two writers would interleave records and each trim the other's: one process per file
     * (the lock goes with the process, kill -9 included) */
    if (flock(log->fd, LOCK_EX | LOCK_NB) != 0) {
        al_set_err(err, errlen, "%s: %s", log->path, errno == EWOULDBLOCK
                   ? "in use by another process (each worker of a pipeline needs its own index)"
                   : strerror(errno));
        goto fail;
    }
    buf = read_file(log, &len, err, errlen);
    if (!buf || load(log, buf, len, &good, err, errlen) != 0)
        goto fail;
    al_mem_free(log, buf);
    buf = NULL;
    if (good < len && (ftruncate(log->fd, (off_t)good) != 0 || fdatasync(log->fd) != 0)) {
        al_set_err(err, errlen, "%s: cutting a torn record: %s", log->path, strerror(errno));
        goto fail;
    }
    log->size = good;
    if (good == 0) {
        hdr = header_encode(log, &hlen);
        if (!hdr) {
            al_set_err(err, errlen, "%s: %s", log->path, "memory cap reached");
            goto fail;
        }
        if (al_file_append(log, hdr, hlen, err, errlen) != 0)
            goto fail;
        al_mem_free(log, hdr);
    }
    return log;
fail:
    if (log) {
        al_mem_free(log, buf);
        al_mem_free(log, hdr);
    }
    bp_append_log_free(log);
    return NULL;
}

/* Frees the log and closes its file (nothing is written: the file is always up to date).
 * NULL-safe. */
void
bp_append_log_free(bp_append_log_t *log)
{
    if (!log)
        return;
    while (log->head)
        al_rec_unlink(log, log->head, 1);
    while (log->streams) {
        struct al_stream *s = log->streams;
        log->streams = s->next;
        al_mem_free(log, s);
    }
    al_mem_free(log, log->buckets);
    al_mem_free(log, log->bits);
    if (log->fd >= 0)
        close(log->fd);
    free(log->pipeline);
    free(log);
}

